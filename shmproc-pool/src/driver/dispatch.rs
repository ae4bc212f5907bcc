//! The driver's dispatch: who gets which tasks, and how many.

use super::{
    Chunk, Driver, InFlight, Instant, MAX_WINDOW, Ordering, QUEUED_WORK, TaskFailure, TrySendError, Worker, wire,
};

impl Driver {
    /// How many tasks worker `w` may have in flight: about
    /// [`QUEUED_WORK`] of its tasks, once their time is known; the call's
    /// chunk size before (as Python hands out chunks). The chunk size is
    /// Python's "approximate" one: a long chunk of quick tasks is cut, so
    /// that results flow back while the rest runs.
    pub(super) fn window(w: &Worker, chunk: usize) -> usize {
        /// Tasks shorter than this get one more queued behind them.
        const PREFETCH_BELOW: f64 = 10e-3;
        if w.task_secs > 0.0 {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a positive ratio, clamped below; `as` saturates"
            )]
            let n = (QUEUED_WORK / w.task_secs) as usize;
            // One task waits behind the running one unless tasks are so
            // long that the driver's wake-up between them is noise: then
            // none does, and no task waits behind a long one while another
            // worker idles.
            let least = if w.task_secs < PREFETCH_BELOW { 2 } else { 1 };
            n.clamp(least, MAX_WINDOW)
        } else {
            chunk.clamp(1, MAX_WINDOW)
        }
    }

    /// Hands pending tasks to workers: each time to the worker with the
    /// fewest tasks in flight (the one that last finished, among equals: it
    /// is awake), as many as its window holds and its share of what is
    /// pending.
    pub(super) fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(front) = self.pending.front() {
            let chunksize = front.chunksize.max(1);
            let pending: usize = self.pending.iter().map(Chunk::len).sum();
            let workers = self.workers.iter().flatten().filter(|w| !w.stopping).count().max(1);
            let mut best: Option<(usize, usize)> = None;
            for (slot, w) in self.workers.iter().enumerate() {
                let Some(w) = w else { continue };
                if w.stopping || w.budget == Some(0) {
                    continue;
                }
                let room = Self::window(w, chunksize).saturating_sub(w.tasks_in_flight);
                if room == 0 {
                    continue;
                }
                let better = best.is_none_or(|(b, _)| {
                    let bw = self.workers[b].as_ref().expect("a live slot");
                    (w.tasks_in_flight, std::cmp::Reverse(w.last_done))
                        < (bw.tasks_in_flight, std::cmp::Reverse(bw.last_done))
                });
                if better {
                    best = Some((slot, room));
                }
            }
            let Some((slot, room)) = best else {
                return any;
            };
            // Its room, half its window (so that one batch waits while
            // the other runs), and no more than its share.
            let half = Self::window(self.workers[slot].as_ref().expect("a live slot"), chunksize).div_ceil(2);
            let take = room.min(half).min(pending.div_ceil(workers)).max(1);
            if !self.send_to(slot, take) {
                return any;
            }
            any = true;
        }
        any
    }

    /// Sends up to `take` tasks from the front pending chunk (no more than
    /// the worker's budget allows) to the worker in `slot`; false if its
    /// ring is full.
    pub(super) fn send_to(&mut self, slot: usize, take: usize) -> bool {
        let Some(mut chunk) = self.pending.pop_front() else {
            return false;
        };
        let fn_id = if let Some(&id) = self.fn_ids.get(&chunk.fn_off) {
            id
        } else {
            let id = u32::try_from(self.fn_offs.len()).expect("fewer than 2^32 task functions");
            self.fn_ids.insert(chunk.fn_off, id);
            self.fn_offs.push(chunk.fn_off);
            id
        };
        let w = self.workers[slot].as_mut().expect("a live slot");
        let budget = w
            .budget
            .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX));
        let take = take.min(budget).min(chunk.len());
        if take < chunk.len() {
            let rest = chunk.split_off(chunk.lo + take);
            self.pending.push_front(rest);
        }
        while w.registered <= fn_id {
            let id = w.registered;
            let off = self.fn_offs[id as usize];
            let reg = wire::register_frame(id, off, self.cfg.key.tag(id, off));
            if w.tasks.try_send(&reg).is_err() {
                self.pending.push_front(chunk);
                return false;
            }
            w.registered += 1;
        }
        let first_seq = self.next_seq;
        let offsets = &chunk.offsets[chunk.lo..=chunk.hi];
        let frame_len = wire::chunk_frame_len(offsets);
        if frame_len > w.tasks.max_frame() {
            if chunk.len() > 1 {
                let mid = chunk.lo + chunk.len() / 2;
                let rest = chunk.split_off(mid);
                self.pending.push_front(rest);
                self.pending.push_front(chunk);
                return true;
            }
            let len = (offsets[1] - offsets[0]) as usize;
            let max = w.tasks.max_frame().saturating_sub(wire::CHUNK_HEAD + 8);
            chunk.fail(
                &w.name,
                &TaskFailure::TooLarge {
                    what: "argument".into(),
                    len,
                    max,
                },
            );
            return true;
        }
        // Written in place in the ring (a write loan: the worker looks at
        // it only once committed).
        match w.tasks.try_reserve(frame_len) {
            Ok(mut loan) => {
                wire::chunk_frame_into(&mut loan, first_seq, fn_id, offsets, &chunk.args);
                loan.commit();
                let n = chunk.len();
                self.next_seq += n as u64;
                w.tasks_in_flight += n;
                if let Some(b) = w.budget.as_mut() {
                    *b -= n as u64;
                }
                let (_, in_flight) = &self.shared.credit[slot];
                in_flight.store(w.tasks_in_flight as u64, Ordering::Relaxed);
                w.in_flight.push_back(InFlight {
                    chunk,
                    first_seq,
                    reported: 0,
                });
                true
            }
            Err(TrySendError::Full(())) => {
                self.pending.push_front(chunk);
                false
            }
            Err(_) => {
                // The worker is gone or its ring broken: its death is
                // handled at the next check.
                self.pending.push_front(chunk);
                self.next_check = Instant::now();
                false
            }
        }
    }
}
