//! The driver and its workers' lives: deaths, replacements, overdue tasks,
//! the end of the pool.

use super::{Abort, Chunk, Driver, Duration, Exit, INIT_STRIKES, Instant, KILLED_STRIKES, Ordering, TaskFailure, wire};

impl Driver {
    /// A worker broke the protocol (a scribbled ring): kill it and handle
    /// its death.
    pub(super) fn condemn(&mut self, slot: usize, why: &str) {
        if let Some(w) = self.workers[slot].as_ref() {
            tracing::warn!(worker = %w.name, "pool worker killed: {why}");
            let _ = w.process.kill();
            let _ = w.process.join_timeout(shmproc_core::LIVENESS_SLICE);
        }
        self.on_death(slot);
    }

    /// Checks that the workers live, and kills one whose task is overdue.
    pub(super) fn check_workers(&mut self) -> bool {
        let mut any = false;
        for slot in 0..self.workers.len() {
            let Some(w) = self.workers[slot].as_mut() else {
                continue;
            };
            if !w.process.is_alive() {
                any |= self.on_death(slot);
                continue;
            }
            let Some(limit) = self.cfg.task_timeout else { continue };
            let now = Instant::now();
            match self.shared.bell.running(slot) {
                Some(seq) if w.running.is_none_or(|(s, _)| s != seq) => w.running = Some((seq, now)),
                Some(seq) => {
                    let since = w.running.map_or(now, |(_, t)| t);
                    if now.duration_since(since) > limit && w.overdue.is_none() {
                        w.overdue = Some(seq);
                        let _ = w.process.kill();
                    }
                }
                None => w.running = None,
            }
        }
        any
    }

    /// Handles the end of the worker in `slot`: takes its last results,
    /// fails or retries the task it ran, hands its other tasks back, and
    /// starts a replacement.
    pub(super) fn on_death(&mut self, slot: usize) -> bool {
        // Results it sent before it died count.
        let _ = self.drain(slot);
        let Some(mut w) = self.workers[slot].take() else {
            return false;
        };
        let code = if let Ok(Some(code)) = w.process.join_timeout(shmproc_core::LIVENESS_SLICE) {
            Some(code)
        } else {
            let _ = w.process.kill();
            w.process.join_timeout(shmproc_core::LIVENESS_SLICE).ok().flatten()
        };
        let exit = Exit::from_code(code);
        let retiring = w.budget == Some(0) && w.in_flight.is_empty() && exit == Exit::Code(0);
        if !w.ready && !retiring && !w.stopping {
            self.init_strikes[slot] += 1;
            let deliberate = matches!(exit, Exit::Code(_));
            // SIGKILL and SIGTERM come from outside (a user, the OOM
            // killer), not from the initializer: a worker killed while it
            // starts is started again, many times before the pool gives up.
            let limit = if matches!(exit, Exit::Signal(9 | 15)) {
                KILLED_STRIKES
            } else {
                INIT_STRIKES
            };
            if deliberate || self.init_strikes[slot] >= limit {
                let cause = if exit == Exit::Code(crate::worker::INIT_FAILED) {
                    "the initializer panicked".to_owned()
                } else {
                    format!("the worker ended in its initializer ({exit})")
                };
                self.workers[slot] = Some(w);
                self.terminate(Abort::Initializer {
                    worker: self.workers[slot]
                        .as_ref()
                        .map(|w| w.name.to_string())
                        .unwrap_or_default(),
                    cause,
                });
                return true;
            }
        }
        let running = self.shared.bell.running(slot);
        let failure = match w.overdue {
            Some(_) => TaskFailure::TimedOut(self.cfg.task_timeout.unwrap_or_default()),
            None => TaskFailure::WorkerDied(exit),
        };
        let mut back: Vec<Chunk> = Vec::new();
        for f in w.in_flight.drain(..) {
            let mut chunk = f.chunk;
            chunk.lo += f.reported;
            let first_seq = f.first_seq + f.reported as u64;
            let culprit = running
                .filter(|&s| s >= first_seq && s < first_seq + chunk.len() as u64)
                .map(|s| chunk.lo + usize::try_from(s - first_seq).expect("within the chunk"));
            let Some(at) = culprit else {
                back.push(chunk);
                continue;
            };
            if at > chunk.lo {
                back.push(chunk.sub(chunk.lo, at));
            }
            let mut one = chunk.sub(at, at + 1);
            if one.attempts < self.cfg.retries {
                one.attempts += 1;
                back.push(one);
            } else {
                one.fail(&w.name, &failure);
            }
            if at + 1 < chunk.hi {
                back.push(chunk.sub(at + 1, chunk.hi));
            }
        }
        for c in back.into_iter().rev() {
            self.pending.push_front(c);
        }
        let (_, in_flight) = &self.shared.credit[slot];
        in_flight.store(0, Ordering::Relaxed);
        if !w.stopping && self.shared.broken().is_none() {
            tracing::debug!(worker = %w.name, %exit, "pool worker ended; replacing it");
            self.replace(slot);
        }
        self.publish_workers();
        true
    }

    /// Reads what a dead worker's ring still holds.
    pub(super) fn drain(&mut self, slot: usize) -> bool {
        let mut any = false;
        loop {
            let Some(w) = self.workers[slot].as_mut() else {
                return any;
            };
            match w.results.try_recv(&mut self.buf) {
                Ok(()) => {
                    any = true;
                    if self.on_frame(slot).is_err() {
                        return any;
                    }
                }
                Err(_) => return any,
            }
        }
    }

    /// Starts a worker in `slot`; a failure to start breaks the pool.
    pub(super) fn replace(&mut self, slot: usize) {
        self.shared.bell.reset(slot);
        let (credited, _) = &self.shared.credit[slot];
        credited.store(0, Ordering::Relaxed);
        match (self.cfg.spawn)(slot) {
            Ok(w) => self.workers[slot] = Some(w),
            Err(e) => {
                self.terminate(Abort::Initializer {
                    worker: format!("a new worker for slot {slot}"),
                    cause: e.to_string(),
                });
            }
        }
    }

    /// Gives up: fails every call's unfinished tasks with `why`, kills the
    /// workers.
    pub(super) fn terminate(&mut self, why: Abort) {
        {
            let mut b = self
                .shared
                .broken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if b.is_none() {
                *b = Some(why.clone());
            }
        }
        for c in self.pending.drain(..) {
            c.job.abort(why.clone());
        }
        for c in self.shared.inbox().chunks.drain(..) {
            c.job.abort(why.clone());
        }
        for w in self.workers.iter_mut().flatten() {
            for f in w.in_flight.drain(..) {
                f.chunk.job.abort(why.clone());
            }
            w.stopping = true;
            let _ = w.process.terminate();
        }
        for w in self.workers.iter().flatten() {
            if !matches!(w.process.join_timeout(Duration::from_secs(1)), Ok(Some(_))) {
                let _ = w.process.kill();
                let _ = w.process.join_timeout(Duration::from_secs(1));
            }
        }
        for w in &mut self.workers {
            *w = None;
        }
        self.publish_workers();
    }

    /// Asks every worker to exit, and waits for them.
    pub(super) fn stop_workers(&mut self) {
        for w in self.workers.iter_mut().flatten() {
            w.stopping = true;
            let _ = w.tasks.send_timeout(&[wire::STOP], Duration::from_secs(1));
        }
        for w in self.workers.iter().flatten() {
            if !matches!(w.process.join_timeout(Duration::from_secs(5)), Ok(Some(_))) {
                let _ = w.process.kill();
                let _ = w.process.join_timeout(Duration::from_secs(1));
            }
        }
        for w in &mut self.workers {
            *w = None;
        }
        self.publish_workers();
    }
}
