//! An end's operations: sends and receives through the mailbox cell or
//! the rings, closing, and the blocking receive's sleep.

#[allow(
    clippy::wildcard_imports,
    reason = "the parent's code, split into files: it shares its imports"
)]
use super::*;

#[allow(
    clippy::inline_always,
    reason = "the request/answer hop: inlined whole, a round trip is 10-20% shorter (benches, same-run A/B)"
)]
impl<S: ShmSafe, R: ShmSafe> Duplex<S, R> {
    pub(super) fn new(side: usize, mail: Arc<Mail>, tx: Producer<S>, rx: Consumer<R>) -> Self {
        let cells = if side == 0 {
            cells::<S, R>().map(|[s, r]| (s, r))
        } else {
            cells::<R, S>().map(|[r, s]| (s, r))
        };
        let cap = u32::try_from(tx.capacity()).expect("ring capacities fit u32");
        Self {
            side,
            #[cfg(not(loom))]
            base: mail.seg.payload(),
            mail,
            cap,
            tx,
            rx,
            cells,
            mailed: 0,
            taken: 0,
            closed: 0,
            since_refresh: 0,
            claimed: 0,
            _t: PhantomData,
        }
    }

    /// The mailbox.
    #[inline(always)]
    pub(super) fn m(&self) -> &Mailbox {
        #[cfg(not(loom))]
        {
            // SAFETY: `base` is the mailbox segment's payload, MAIL_LEN
            // bytes, 128-aligned, mapped while `mail` lives; every field of
            // a Mailbox is an atomic (the cells included), so the reference
            // covers only interior-mutable bytes that the peer may write
            // concurrently, and any bits are valid.
            unsafe { self.base.cast::<Mailbox>().as_ref() }
        }
        #[cfg(loom)]
        {
            self.mail.header()
        }
    }

    /// The payload bytes at `offset` of the mailbox line, for one access
    /// the protocol gives us (direction `dir`'s cell).
    #[inline(always)]
    fn cell(&self, dir: usize, offset: usize) -> NonNull<u8> {
        debug_assert!(dir < 2 && offset < LINE);
        #[cfg(not(loom))]
        {
            // SAFETY: offset < LINE < MAIL_LEN, inside the mapped mailbox.
            unsafe { self.base.add(offset) }
        }
        #[cfg(loom)]
        {
            self.mail.cell(dir, offset)
        }
    }

    /// Our sending direction, and the peer's.
    #[inline(always)]
    fn dirs(&self) -> (usize, usize) {
        (self.side, 1 - self.side)
    }

    /// Records this process in both rings and picks up the counts where the
    /// end's last owner left them, the first time the end acts in a process.
    #[inline(always)]
    fn claim(&mut self) {
        let me = sync::cached_pid();
        if self.claimed != me {
            self.claim_slow(me);
        }
    }

    #[cold]
    fn claim_slow(&mut self, me: u32) {
        self.tx.claim_now();
        self.rx.claim_now();
        let (out, inn) = self.dirs();
        let m = self.m();
        // Relaxed: our own words, last written by us or by an owner of
        // this end that handed it over.
        let mailed = split(m.word[out].load(Relaxed)).0;
        let taken = m.taken[inn].load(Relaxed);
        self.mailed = mailed & COUNT;
        self.taken = taken & COUNT;
        self.closed = (mailed | taken) & CLOSED;
        self.claimed = me;
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] (value handed back),
    /// [`TrySendError::Disconnected`] once the peer closed,
    /// [`TrySendError::Fault`] ([`Fault::Corrupted`]).
    #[inline(always)]
    pub fn try_send(&mut self, value: S) -> Result<(), TrySendError<S>> {
        self.claim();
        let free = match self.mail_free() {
            Ok(free) => free,
            Err(None) => return Err(TrySendError::Disconnected(value)),
            Err(Some(f)) => return Err(TrySendError::Fault(value, f)),
        };
        if free
            && let Some((cell, _)) = self.cells
            && self.tx.drained()
        {
            self.mail(cell, value);
            return Ok(());
        }
        self.tx.try_send(value)?;
        self.since_refresh += 1;
        if self.since_refresh >= REFRESH_EVERY {
            self.since_refresh = 0;
            self.tx.refresh_head();
        }
        self.ring_bell(self.side);
        Ok(())
    }

    /// Whether the peer took our last cell message; `Err(None)`
    /// (disconnected) once either end closed, `Err(Some(_))` for a count no
    /// legal history produces.
    #[inline(always)]
    fn mail_free(&self) -> Result<bool, Option<Fault>> {
        // Acquire: pairs with the Release store of `taken` in `take_cell`
        // (the peer is done reading the payload we are about to
        // overwrite) and in `close`.
        let taken = self.m().taken[self.side].load(Acquire);
        if (taken | self.closed) & CLOSED != 0 {
            Err(None)
        } else if taken == self.mailed {
            Ok(true)
        } else if taken == self.mailed.wrapping_sub(1) & COUNT {
            Ok(false)
        } else {
            Err(Some(corrupted(
                "mailbox taken count",
                format_args!("{} or one behind it", self.mailed),
                taken,
            )))
        }
    }

    /// Writes `value` in our free cell and publishes it.
    #[inline(always)]
    fn mail(&mut self, cell: usize, value: S) {
        let out = self.side;
        // SAFETY: `cells` placed the cell inside the mailbox line, aligned
        // for S; it is free (the peer took the last message in it, Acquire
        // in `mail_free`) and only we write it; an atomic-word copy
        // (`copy`), so a peer writing it anyway is no data race.
        unsafe { store_slot(self.cell(out, cell).cast::<S>().as_ptr(), value) };
        self.mailed = self.mailed.wrapping_add(1) & COUNT;
        let word = u64::from(self.mailed) << 32 | u64::from(self.tx.tail());
        // Release: pairs with the peer's Acquire load in `take_cell`.
        self.m().word[out].store(word, Release);
        self.ring_bell(out);
    }

    /// Wakes the receiver of direction `dir` if it sleeps.
    #[inline(always)]
    fn ring_bell(&self, dir: usize) {
        let m = self.m();
        // A compiler barrier: the sleeper's membarrier is the hardware one.
        sync::light_barrier();
        // Relaxed: ordered by the membarrier of whoever raised it.
        let up = m.sleeping[dir].load(Relaxed);
        if up != 0 {
            // Relaxed: the futex compares the value; a sleeper that has not
            // reached its futex call yet returns from it at once.
            m.bell[dir].fetch_add(1, Relaxed);
            wake_sleeper(&m.bell[dir], &m.sleeping[dir], up);
        }
    }

    /// Sends, waiting for room as long as needed.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the peer closed or died,
    /// [`SendError::Fault`]; the value is handed back.
    pub fn send(&mut self, value: S) -> Result<(), SendError<S>> {
        let value = match self.try_send(value) {
            Ok(()) => return Ok(()),
            Err(e) => full_or_stop(e).map_err(|(v, stop)| stop.send(v))?,
        };
        // Full means the ring is full: wait for room as its producer does.
        self.tx.send(value)?;
        self.ring_bell(self.side);
        Ok(())
    }

    /// Sends, waiting for room up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (with `timeout`),
    /// [`SendTimeoutError::Disconnected`], [`SendTimeoutError::Fault`].
    pub fn send_timeout(&mut self, value: S, timeout: Duration) -> Result<(), SendTimeoutError<S>> {
        let value = match self.try_send(value) {
            Ok(()) => return Ok(()),
            Err(e) => full_or_stop(e).map_err(|(v, stop)| stop.send_timeout(v, timeout))?,
        };
        self.tx.send_timeout(value, timeout)?;
        self.ring_bell(self.side);
        Ok(())
    }

    /// Receives without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], [`TryRecvError::Disconnected`] once the
    /// peer closed and everything it sent was received,
    /// [`TryRecvError::Fault`] ([`Fault::Corrupted`]).
    #[inline(always)]
    pub fn try_recv(&mut self) -> Result<R, TryRecvError> {
        self.claim();
        if self.closed != 0 {
            return Err(TryRecvError::Disconnected);
        }
        let first = self.take_cell()?;
        if let Cell::Took(v) = first {
            return Ok(v);
        }
        if self.rx.ready().map_err(|d| TryRecvError::Fault(d.into()))? > 0 {
            // Look again: a cell message sent before the ring message we
            // now see is visible now, and comes first.
            return match self.take_cell()? {
                Cell::Took(v) => Ok(v),
                Cell::Nothing(_) | Cell::AfterRing => self.rx.try_recv(),
            };
        }
        self.try_recv_empty(&first)
    }

    /// The rest of `try_recv` when the ring is empty and the cell holds
    /// nothing to take (`first`: what it held before we looked at the ring).
    #[cold]
    fn try_recv_empty(&mut self, first: &Cell<R>) -> Result<R, TryRecvError> {
        match first {
            // The ring messages before the cell's were pushed before the
            // cell's word was stored: our Acquire of the word and the
            // fresh read of `tail` in `ready` must have seen them.
            Cell::AfterRing => Err(TryRecvError::Fault(corrupted(
                "mailbox message",
                "after the ring messages before it",
                "ring messages that are not there",
            ))),
            // The close was stored after everything the peer sent (the
            // word's Release, our Acquire), and nothing is left of it.
            Cell::Nothing(true) => Err(TryRecvError::Disconnected),
            // (`Took` was returned before the ring was looked at.)
            Cell::Nothing(false) | Cell::Took(_) => {
                // Idle: a good time to see whether our own ring drained,
                // so that the next send may use the cell.
                if !self.tx.drained() {
                    self.tx.refresh_head();
                }
                Err(TryRecvError::Empty)
            }
        }
    }

    /// Takes the message in the receiving cell if it is the next one.
    #[inline(always)]
    fn take_cell(&mut self) -> Result<Cell<R>, TryRecvError> {
        let inn = 1 - self.side;
        let m = self.m();
        // Acquire: pairs with the Release stores in the peer's `mail` and
        // `close`: the payload, and the ring messages before it, are
        // visible.
        let word = m.word[inn].load(Acquire);
        let (mailed, tail) = split(word);
        let closed = mailed & CLOSED != 0;
        let mailed = mailed & COUNT;
        if mailed == self.taken {
            return Ok(Cell::Nothing(closed));
        }
        let Some((_, cell)) = self.cells else {
            return Err(TryRecvError::Fault(corrupted(
                "mailbox count",
                format_args!("{} (a channel without cells)", self.taken),
                mailed,
            )));
        };
        if mailed != self.taken.wrapping_add(1) & COUNT {
            return Err(TryRecvError::Fault(corrupted(
                "mailbox count",
                format_args!("{} or the next", self.taken),
                mailed,
            )));
        }
        let before = tail.wrapping_sub(self.rx.head());
        if before > self.cap {
            return Err(TryRecvError::Fault(corrupted(
                "mailbox message position",
                format_args!("at most {} ahead of the ring's head", self.cap),
                before,
            )));
        }
        if before > 0 {
            return Ok(Cell::AfterRing);
        }
        // SAFETY: `cells` placed the cell inside the mailbox line, aligned
        // for R; the peer published it (Acquire above) and does not write it
        // again until we hand it back below; an atomic-word copy (`copy`),
        // so a peer writing it anyway tears the value, no data race; R
        // accepts any bits.
        let value = unsafe { load_slot(self.cell(inn, cell).cast::<R>().as_ptr()) };
        self.taken = mailed;
        // Release: pairs with the Acquire load in the peer's `mail_free`.
        self.m().taken[inn].store(mailed | self.closed, Release);
        Ok(Cell::Took(value))
    }

    /// Receives, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] when the peer closed or died and
    /// everything it sent was received, [`RecvError::Fault`].
    pub fn recv(&mut self) -> Result<R, RecvError> {
        receive(self, None, Self::try_recv).map_err(Stop::recv)
    }

    /// Receives, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] (with `timeout`),
    /// [`RecvTimeoutError::Disconnected`], [`RecvTimeoutError::Fault`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<R, RecvTimeoutError> {
        receive(self, Some(Deadline::after(timeout)), Self::try_recv).map_err(|stop| stop.recv_timeout(timeout))
    }

    /// Closes the channel both ways: the peer receives what was sent, then
    /// gets [`RecvError::Disconnected`]; its sends fail with it. This end's
    /// own sends and receives fail with it from now on (what the peer sent
    /// and this end did not receive is dropped, as with a closed Python
    /// `Connection`).
    pub fn close(&mut self) {
        self.claim();
        self.closed = CLOSED;
        self.tx.close();
        self.rx.close();
        let (out, inn) = self.dirs();
        let m = self.m();
        // Relaxed: our own word. Release: pairs with the peer's Acquire in
        // `take_cell`, after everything we sent.
        let word = m.word[out].load(Relaxed);
        m.word[out].store(word | u64::from(CLOSED) << 32, Release);
        // Release: pairs with the peer's Acquire in `mail_free`.
        m.taken[inn].store(self.taken | CLOSED, Release);
        // Release: pairs with the Acquire load of the bell in `sleep`. The
        // bump makes a sleeping peer's futex call return; but a peer about
        // to sleep may read the bumped value as the one to wait on, and
        // then only seeing the close keeps it awake. With a Relaxed bump it
        // could miss the close and sleep a whole liveness slice (loom found
        // it, `loom_tests.rs`).
        m.bell[self.side].fetch_add(1, Release);
        sync::futex_wake(&m.bell[self.side], 1);
    }

    /// The capacity of each direction's ring.
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// Whether request/answer pairs of these types go through the mailbox
    /// line (both fit in it with its words: 32 bytes for the two payloads
    /// together), rather than through the rings alone.
    pub fn uses_mailbox(&self) -> bool {
        self.cells.is_some()
    }
}

impl<S: ShmSafe, R: ShmSafe> Receive for Duplex<S, R> {
    fn sender_gone(&self, check_alive: bool) -> bool {
        self.rx.producer_gone(check_alive)
    }

    fn sleep(&self, deadline: Option<Deadline>) -> Slept {
        let inn = 1 - self.side;
        let m = self.m();
        // Acquire: pairs with the Release bump in `close`, so that `ready`
        // sees a close whose bump we read here (a bump after this load
        // makes the futex call return at once). The bump in `ring_bell`
        // needs no Release: the handshake's barrier orders the message it
        // announces (module docs).
        let seen = m.bell[inn].load(Acquire);
        let ready = || {
            // Acquire: as in `take_cell`.
            split(m.word[inn].load(Acquire)).0 != self.taken || self.rx.published()
        };
        sleep_on(&m.bell[inn], seen, &m.sleeping[inn], deadline, ready)
    }
}
