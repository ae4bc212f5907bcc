//! The ring's steps (one attempt at a put or a get) and the operations
//! built on them: `try_put`/`try_get`, `put`/`get`, `put_timeout`/`get_timeout`.

#[allow(
    clippy::wildcard_imports,
    reason = "the parent's code, split into files: it shares its imports"
)]
use super::*;

enum Step<V> {
    Done(V),
    /// Someone else made progress: look again.
    Retry,
    /// The slot of `pos` is claimed by `owner`, who should move on at once.
    Held {
        pos: u32,
        owner: u32,
    },
    Blocked {
        slot_seq: u32,
        pos: u32,
    },
}

/// How many times `try_put`/`try_get` look again at a slot another process
/// is in the middle of putting or getting before they give up (`Full` or
/// `Empty`) rather than wait for it.
pub const TRY_HELD_SPINS: u32 = 64;

/// Watches a claim that another side holds: one that stays put (same
/// position, same owner, the owner alive) for [`CLAIM_BOUND`] is a scribbled
/// owner word, and the call returns [`Fault::Stalled`] instead of
/// spinning on it forever.
#[derive(Default)]
struct Stall {
    pos: u32,
    owner: u32,
    since: Option<Instant>,
}

impl Stall {
    fn check(&mut self, pos: u32, owner: u32) -> Result<(), Fault> {
        match self.since {
            Some(t) if self.pos == pos && self.owner == owner => {
                // Loom's clock has no time: its models bound the loops.
                let waited = t.elapsed();
                if cfg!(not(loom)) && waited >= CLAIM_BOUND {
                    return Err(Fault::Stalled {
                        object: OBJECT,
                        pid: sync::pid_of(owner),
                        waited,
                    });
                }
                Ok(())
            }
            _ => {
                *self = Self {
                    pos,
                    owner,
                    since: Some(Instant::now()),
                };
                Ok(())
            }
        }
    }
}

/// The error for a slot sequence number outside what a legal history
/// allows at `pos`.
#[cold]
fn bad_seq(side: &'static str, pos: u32, legal: &[u32], seq: u32) -> Fault {
    let legal: Vec<String> = legal.iter().map(u32::to_string).collect();
    Fault::corrupted(
        OBJECT,
        side,
        format_args!("{} (at position {pos})", legal.join(" or ")),
        seq,
    )
}

impl<T: ShmSafe> Mpmc<T> {
    /// Claims the slot of `pos` for this process, taking over a dead claim;
    /// on failure, the holder.
    fn claim(slot: &Slot, me: u32, check_dead: bool) -> Result<u32, u32> {
        // Acquire: orders us after the previous holder's Release of the claim.
        match slot.owner.compare_exchange(0, me, Acquire, Relaxed) {
            Ok(_) => Ok(0),
            Err(other) if check_dead && other != me && !sync::owner_alive(other) => {
                slot.owner.compare_exchange(other, me, Acquire, Relaxed).map(|_| other)
            }
            Err(other) => Err(other),
        }
    }

    fn push_step(&mut self, value: &T, force_check: bool) -> Result<Step<()>, Fault> {
        let ring = &*self.ring;
        let h = ring.header();
        let cap = ring.capacity;
        let me = sync::owner_id();
        // Acquire: pairs with the Release of the CAS that moved `enq` here,
        // so that the slot's sequence number reads at least as new as the
        // previous lap's (a staler one would look like a corrupted slot).
        let pos = h.enq.load(Acquire);
        let slot = ring.slot(pos);
        // Acquire: pairs with the consumer's Release recycling the slot.
        let seq = slot.seq.load(Acquire);
        let d = seq.wrapping_sub(pos).cast_signed();
        if d == 0 {
            let ripe = self.suspect.ripe(pos, force_check);
            let previous = match Self::claim(slot, me, ripe) {
                Ok(previous) => previous,
                Err(owner) => return Ok(Step::Held { pos, owner }),
            };
            // Release: pairs with the Acquire load of `enq` above (in others).
            if h.enq
                .compare_exchange(pos, pos.wrapping_add(1), Release, Relaxed)
                .is_err()
            {
                // Someone moved on; give the claim back as it was.
                slot.owner.store(previous, Release);
                return Ok(Step::Retry);
            }
            // SAFETY: the value slot of `pos` is inside the ring (masked), and
            // we hold position `pos` (claimed, enq moved past it): no
            // consumer reads it before seq = pos + 1 below; an atomic-word
            // copy (`copy`), so a peer writing it anyway is no data race.
            unsafe { store_slot(ring.value(pos).as_ptr(), *value) };
            // Relaxed: published by the Release store of seq below.
            slot.tomb.store(0, Relaxed);
            // Release: publishes the value to the consumer of `pos`.
            slot.seq.store(pos.wrapping_add(1), Release);
            slot.owner.store(0, Release);
            wake_sleepers(&slot.seq, &h.pop_sleepers);
            return Ok(Step::Done(()));
        }
        if d < 0 {
            // The slot still holds the message of position pos - cap. If its
            // consumer took it (deq moved on) and died, recycle the slot.
            let previous = pos.wrapping_sub(cap);
            if seq == previous.wrapping_add(1) && h.deq.load(Relaxed).wrapping_sub(previous).cast_signed() > 0 {
                let owner = slot.owner.load(Relaxed);
                if owner != 0 && self.suspect.ripe(pos, force_check) && !sync::owner_alive(owner) {
                    if slot.seq.compare_exchange(seq, pos, Release, Relaxed).is_ok() {
                        let _ = slot.owner.compare_exchange(owner, 0, Release, Relaxed);
                    }
                    return Ok(Step::Retry);
                }
            }
            // Legal here: the previous lap's producer has not published yet
            // (pos - cap) or its message waits for its consumer (pos - cap + 1);
            // the Acquire load of `enq` keeps older values out of sight.
            if seq != previous && seq != previous.wrapping_add(1) {
                return Err(bad_seq(
                    "slot sequence (push side)",
                    pos,
                    &[pos, previous, previous.wrapping_add(1)],
                    seq,
                ));
            }
            return Ok(Step::Blocked { slot_seq: seq, pos });
        }
        // The slot is ahead of `pos`: whoever took `pos` moved `enq` past it
        // before writing `seq`, and our Acquire load of `seq` orders that
        // move before the load below. If `enq` still reads `pos`, a peer
        // wrote over the sequence number (or over `enq`).
        // Acquire: as the load of `enq` above.
        if h.enq.load(Acquire) == pos {
            return Err(bad_seq(
                "slot sequence (push side, ahead of enq)",
                pos,
                &[pos, pos.wrapping_sub(cap), pos.wrapping_sub(cap).wrapping_add(1)],
                seq,
            ));
        }
        Ok(Step::Retry)
    }

    fn pop_step(&mut self, force_check: bool) -> Result<Step<T>, Fault> {
        let ring = &*self.ring;
        let h = ring.header();
        let cap = ring.capacity;
        let me = sync::owner_id();
        // Acquire: as in `push_step`, with the Release CAS of `deq`.
        let pos = h.deq.load(Acquire);
        let slot = ring.slot(pos);
        // Acquire: pairs with the producer's Release publishing `pos`.
        let seq = slot.seq.load(Acquire);
        let d = seq.wrapping_sub(pos.wrapping_add(1)).cast_signed();
        if d == 0 {
            let ripe = self.suspect.ripe(pos, force_check);
            let previous = match Self::claim(slot, me, ripe) {
                Ok(previous) => previous,
                Err(owner) => return Ok(Step::Held { pos, owner }),
            };
            // Release: pairs with the Acquire load of `deq` above (in others).
            if h.deq
                .compare_exchange(pos, pos.wrapping_add(1), Release, Relaxed)
                .is_err()
            {
                slot.owner.store(previous, Release);
                return Ok(Step::Retry);
            }
            // SAFETY: the value slot of `pos` is inside the ring (masked);
            // position `pos` is published (seq = pos + 1, Acquire) and ours
            // (claimed, deq moved past it); an atomic-word copy (`copy`), so
            // a peer writing it anyway tears it, no data race; T accepts any
            // bits.
            let value = unsafe { load_slot(ring.value(pos).as_ptr()) };
            // Relaxed: ordered by the Acquire load of seq above.
            let tomb = slot.tomb.load(Relaxed) != 0;
            // Release: hands the slot to the producer of the next lap.
            slot.seq.store(pos.wrapping_add(cap), Release);
            slot.owner.store(0, Release);
            wake_sleepers(&slot.seq, &h.push_sleepers);
            // A tombstone stands for a message whose producer died writing it.
            return Ok(if tomb { Step::Retry } else { Step::Done(value) });
        }
        if d < 0 {
            // Unpublished. If a producer claimed `pos` (enq moved past it)
            // and died before publishing, publish a tombstone instead.
            if seq == pos && h.enq.load(Relaxed).wrapping_sub(pos).cast_signed() > 0 {
                let owner = slot.owner.load(Relaxed);
                if owner != 0 && self.suspect.ripe(pos, force_check) && !sync::owner_alive(owner) {
                    self.tombstone(slot, pos, owner);
                    return Ok(Step::Retry);
                }
            }
            // Legal here: not yet published (pos), or the previous lap's
            // consumer has not recycled it yet (pos - cap + 1).
            let previous = pos.wrapping_sub(cap).wrapping_add(1);
            if seq != pos && seq != previous {
                return Err(bad_seq(
                    "slot sequence (pop side)",
                    pos,
                    &[pos.wrapping_add(1), pos, previous],
                    seq,
                ));
            }
            return Ok(Step::Blocked { slot_seq: seq, pos });
        }
        // Ahead of `pos`: as in `push_step`, `deq` must have moved.
        // Acquire: as the load of `deq` above.
        if h.deq.load(Acquire) == pos {
            return Err(bad_seq(
                "slot sequence (pop side, ahead of deq)",
                pos,
                &[pos.wrapping_add(1), pos, pos.wrapping_sub(cap).wrapping_add(1)],
                seq,
            ));
        }
        Ok(Step::Retry)
    }

    /// Publishes a tombstone in the slot of `pos`, whose producer `dead`
    /// claimed it and died before publishing. The claim is taken over
    /// first: only the holder of a slot writes it, so a consumer that comes
    /// late (say a lap later, after another one did the work) finds the
    /// claim gone and cannot mark a live message as dead.
    #[cold]
    fn tombstone(&self, slot: &Slot, pos: u32, dead: u32) {
        // Acquire: orders us after the previous holder's Release of the claim.
        if slot
            .owner
            .compare_exchange(dead, sync::owner_id(), Acquire, Relaxed)
            .is_err()
        {
            return;
        }
        // Relaxed: the slot cannot move while we hold its claim.
        let unpublished = slot.seq.load(Relaxed) == pos;
        if unpublished {
            // Relaxed: published by the Release store of seq below.
            slot.tomb.store(1, Relaxed);
            // Release: publishes the tombstone to the consumer of `pos`.
            slot.seq.store(pos.wrapping_add(1), Release);
        }
        // Release: hands the claim on (given back as it was if the slot had
        // moved, which the claim should have made impossible).
        slot.owner.store(if unpublished { 0 } else { dead }, Release);
        wake_sleepers(&slot.seq, &self.ring.header().pop_sleepers);
    }

    /// Puts without waiting. When another process is between the steps of
    /// its own put on the slot at the tail, it retries [`TRY_HELD_SPINS`]
    /// times (a few hundred nanoseconds) and then reports `Full`, although
    /// there may be room once that put ends: it never waits for another
    /// process.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] (value handed back), [`TrySendError::Fault`]:
    /// [`Fault::Corrupted`] for a slot word no legal history produces.
    pub fn try_put(&mut self, value: T) -> Result<(), TrySendError<T>> {
        let mut held = 0;
        loop {
            match self.push_step(&value, false) {
                Ok(Step::Done(())) => return Ok(()),
                Ok(Step::Retry) => sync::before_retry(),
                Ok(Step::Held { .. }) => {
                    held += 1;
                    // Loom's models bound their own loops; there a retry is
                    // a scheduling point, not a spin.
                    if cfg!(not(loom)) && held >= TRY_HELD_SPINS {
                        return Err(TrySendError::Full(value));
                    }
                    sync::before_retry();
                }
                Ok(Step::Blocked { .. }) => return Err(TrySendError::Full(value)),
                Err(f) => return Err(TrySendError::Fault(value, f)),
            }
        }
    }

    /// Gets without waiting: when another process is between the steps of
    /// its own get of the message at the head, it retries
    /// [`TRY_HELD_SPINS`] times and then reports `Empty`, although more
    /// messages may follow that one (see [`Mpmc::try_put`]).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], [`TryRecvError::Fault`] (as in
    /// [`Mpmc::try_put`]).
    pub fn try_get(&mut self) -> Result<T, TryRecvError> {
        let mut held = 0;
        loop {
            match self.pop_step(false).map_err(TryRecvError::Fault)? {
                Step::Done(v) => return Ok(v),
                Step::Retry => sync::before_retry(),
                Step::Held { .. } => {
                    held += 1;
                    if cfg!(not(loom)) && held >= TRY_HELD_SPINS {
                        return Err(TryRecvError::Empty);
                    }
                    sync::before_retry();
                }
                Step::Blocked { .. } => return Err(TryRecvError::Empty),
            }
        }
    }

    /// Puts, waiting for room as long as needed.
    ///
    /// # Errors
    ///
    /// [`SendError::Fault`] (as in [`Mpmc::try_put`], and
    /// [`Fault::Stalled`] for a live claimant that never moves); an MPMC
    /// ring is never disconnected.
    pub fn put(&mut self, value: T) -> Result<(), SendError<T>> {
        self.put_until(value, None).map_err(|(v, stop)| stop.send(v))
    }

    /// Puts, waiting for room up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (with `timeout`),
    /// [`SendTimeoutError::Fault`].
    pub fn put_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.put_until(value, Some(Deadline::after(timeout)))
            .map_err(|(v, stop)| stop.send_timeout(v, timeout))
    }

    fn put_until(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), (T, Stop)> {
        let mut spins = shmproc_sync::park::spins();
        let mut force = false;
        let mut stall = Stall::default();
        loop {
            match self.push_step(&value, force) {
                Ok(Step::Done(())) => return Ok(()),
                Ok(Step::Retry) => sync::before_retry(),
                Ok(Step::Held { pos, owner }) => {
                    if deadline.is_some_and(|d| d.has_passed()) {
                        return Err((value, Stop::Timeout));
                    }
                    if let Err(f) = stall.check(pos, owner) {
                        return Err((value, Stop::Fault(f)));
                    }
                    sync::before_retry();
                }
                Err(f) => return Err((value, Stop::Fault(f))),
                Ok(Step::Blocked { slot_seq, pos }) => {
                    if spins > 0 {
                        spins -= 1;
                        core::hint::spin_loop();
                        continue;
                    }
                    let ring = &*self.ring;
                    let slot = ring.slot(pos);
                    if sleep_counted(&slot.seq, slot_seq, &ring.header().push_sleepers, deadline) {
                        return Err((value, Stop::Timeout));
                    }
                    // After a sleep slice, look for a dead holder at once.
                    force = true;
                }
            }
        }
    }

    /// Gets, waiting for a message as long as needed.
    ///
    /// # Errors
    ///
    /// [`RecvError::Fault`] (as in [`Mpmc::try_put`]).
    pub fn get(&mut self) -> Result<T, RecvError> {
        self.get_until(None).map_err(Stop::recv)
    }

    /// Gets, waiting for a message up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] (with `timeout`),
    /// [`RecvTimeoutError::Fault`].
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.get_until(Some(Deadline::after(timeout)))
            .map_err(|stop| stop.recv_timeout(timeout))
    }

    fn get_until(&mut self, deadline: Option<Deadline>) -> Result<T, Stop> {
        let mut spins = shmproc_sync::park::spins();
        let mut force = false;
        let mut stall = Stall::default();
        loop {
            match self.pop_step(force).map_err(Stop::Fault)? {
                Step::Done(v) => return Ok(v),
                Step::Retry => sync::before_retry(),
                Step::Held { pos, owner } => {
                    if deadline.is_some_and(|d| d.has_passed()) {
                        return Err(Stop::Timeout);
                    }
                    stall.check(pos, owner).map_err(Stop::Fault)?;
                    sync::before_retry();
                }
                Step::Blocked { slot_seq, pos } => {
                    if spins > 0 {
                        spins -= 1;
                        core::hint::spin_loop();
                        continue;
                    }
                    let ring = &*self.ring;
                    let slot = ring.slot(pos);
                    if sleep_counted(&slot.seq, slot_seq, &ring.header().pop_sleepers, deadline) {
                        return Err(Stop::Timeout);
                    }
                    force = true;
                }
            }
        }
    }

    /// Messages published and not yet taken (a snapshot).
    pub fn len(&self) -> usize {
        let h = self.ring.header();
        // Relaxed: a snapshot.
        let (enq, deq) = (h.enq.load(Relaxed), h.deq.load(Relaxed));
        (enq.wrapping_sub(deq) as usize).min(self.ring.capacity as usize)
    }

    /// Whether no message is waiting now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }
}
