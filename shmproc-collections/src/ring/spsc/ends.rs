//! The two ends' operations: sends, receives, batches and the ways to
//! wait.

#[allow(
    clippy::wildcard_imports,
    reason = "the parent's code, split into files: it shares its imports"
)]
use super::*;

impl<T: ShmSafe> Producer<T> {
    cached_ring!();

    pub(super) fn new(ring: Arc<Ring<T>>) -> Self {
        Self {
            at: At::of(&ring),
            ring,
            tail: 0,
            cached_head: 0,
            claimed: 0,
        }
    }

    #[inline]
    fn claim(&mut self) {
        let me = sync::cached_pid();
        if self.claimed != me {
            claim(&self.h().producer);
            // Relaxed: our own index, last published by us (or a previous
            // owner of this end that handed it over).
            self.tail = self.h().tail.load(Relaxed);
            // Acquire: as in `free_fresh`.
            self.cached_head = self.h().head.load(Acquire);
            self.claimed = me;
        }
    }

    /// Free slots as last seen (a lower bound).
    #[inline]
    fn free(&mut self) -> Result<u32, BadDistance> {
        let used = self.tail.wrapping_sub(self.cached_head);
        if used > self.at.capacity {
            return Err(BadDistance {
                capacity: self.at.capacity,
                found: used,
            });
        }
        Ok(self.at.capacity - used)
    }

    /// Free slots, re-reading the consumer's index if the cache says none.
    #[inline]
    fn free_fresh(&mut self, want: u32) -> Result<u32, BadDistance> {
        let free = self.free()?;
        if free >= want {
            return Ok(free);
        }
        // Acquire: pairs with the Release store of `head` in the consumer;
        // the slots it handed back are ours to overwrite.
        self.cached_head = self.h().head.load(Acquire);
        self.free()
    }

    /// Whether a slot is free now: `Full` or `Disconnected` (when the
    /// consumer closed) when not.
    #[inline]
    fn room(&mut self) -> Result<(), TrySendError<()>> {
        self.claim();
        match self.free_fresh(1) {
            Ok(0) if self.closed_bits() & CONSUMER_CLOSED != 0 => Err(TrySendError::Disconnected(())),
            Ok(0) => Err(TrySendError::Full(())),
            Ok(_) => Ok(()),
            Err(d) => Err(TrySendError::Fault((), d.into())),
        }
    }

    #[inline]
    pub(super) fn publish(&mut self, n: u32) {
        self.tail = self.tail.wrapping_add(n);
        let h = self.h();
        // Release: pairs with the consumer's Acquire load of `tail`.
        h.tail.store(self.tail, Release);
        wake_if_sleeping(&h.tail, &h.consumer_sleeping);
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] (value handed back),
    /// [`TrySendError::Disconnected`] once the consumer closed,
    /// [`TrySendError::Fault`] ([`Fault::Corrupted`]) for impossible indices.
    #[inline]
    pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
        if let Err(e) = self.room() {
            return Err(with_value(e, value));
        }
        // SAFETY: the slot at `tail` is inside the ring (masked) and free
        // (`room`): the consumer does not read it until `tail` is
        // published below; a scribbling peer's racing accesses are atomic
        // too (`copy`), so they tear the value, never race.
        unsafe { store_slot(self.slot(self.tail).as_ptr(), value) };
        self.publish(1);
        Ok(())
    }

    /// Sends, waiting for room as long as needed.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the consumer closed or died,
    /// [`SendError::Fault`]; the value is handed back.
    pub fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        match self.try_send(value) {
            Ok(()) => Ok(()),
            Err(e) => {
                let value = full_or_stop(e).map_err(|(v, stop)| stop.send(v))?;
                self.send_until(value, None).map_err(|(v, stop)| stop.send(v))
            }
        }
    }

    /// Sends, waiting for room up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (with `timeout`),
    /// [`SendTimeoutError::Disconnected`], [`SendTimeoutError::Fault`]; the
    /// value is handed back.
    pub fn send_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(value, Some(Deadline::after(timeout)))
            .map_err(|(v, stop)| stop.send_timeout(v, timeout))
    }

    fn send_until(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), (T, Stop)> {
        self.wait_room(deadline).map_err(|stop| (value, stop))?;
        match self.try_send(value) {
            Ok(()) => Ok(()),
            // Only this end fills the ring: room seen stays room.
            Err(e) => Err(full_or_stop(e).map_or_else(|stop| stop, |v| (v, Stop::Disconnected))),
        }
    }

    /// Waits until a slot is free: spin a while, then sleep in liveness
    /// slices; a consumer that closed or died ends the wait.
    fn wait_room(&mut self, deadline: Option<Deadline>) -> Result<(), Stop> {
        let mut spins = shmproc_sync::park::spins();
        let mut slice_over = false;
        loop {
            match self.room() {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(())) => {}
                Err(e) => return Err(full_or_stop(e).map_or_else(|((), stop)| stop, |()| Stop::Disconnected)),
            }
            if spins > 0 {
                spins -= 1;
                core::hint::spin_loop();
                continue;
            }
            let h = self.h();
            if peer_gone(self.closed_bits(), CONSUMER_CLOSED, &h.consumer, slice_over) {
                return Err(Stop::Disconnected);
            }
            let seen = self.cached_head;
            let cap = self.at.capacity;
            let tail = self.tail;
            // Acquire: as in `free_fresh`.
            // The consumer's close too, in the last look (see `sleep_on`).
            let room = || tail.wrapping_sub(h.head.load(Acquire)) < cap || self.closed_bits() & CONSUMER_CLOSED != 0;
            match sleep_on(&h.head, seen, &h.producer_sleeping, deadline, room) {
                Slept::DeadlinePassed => return Err(Stop::Timeout),
                slept => slice_over = slept == Slept::SliceOver,
            }
        }
    }

    /// Sends as many of `items` as fit, in one publication; returns how
    /// many (at least one).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when none fit (or `items` is empty),
    /// [`TrySendError::Disconnected`] once the consumer closed,
    /// [`TrySendError::Fault`].
    pub fn try_send_slice(&mut self, items: &[T]) -> Result<usize, TrySendError<()>> {
        self.claim();
        let want = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let n = self
            .free_fresh(want)
            .map_err(|d| TrySendError::Fault((), d.into()))?
            .min(want);
        if n == 0 {
            return Err(if self.closed_bits() & CONSUMER_CLOSED != 0 {
                TrySendError::Disconnected(())
            } else {
                TrySendError::Full(())
            });
        }
        let mut pos = self.tail;
        for item in items.iter().take(n as usize) {
            // SAFETY: positions tail..tail+n are free (n <= free) and in the
            // ring (masked); atomic-word copy as in `try_send`.
            unsafe { store_slot(self.slot(pos).as_ptr(), *item) };
            pos = pos.wrapping_add(1);
        }
        self.publish(n);
        Ok(n as usize)
    }

    /// Lends the next free slot to be written in place (the zero-copy path);
    /// nothing is visible to the consumer until [`SendLoan::commit`].
    ///
    /// The loan is a `&mut T` into shared memory, sound because no reader
    /// looks at the slot until commit; see [`SendLoan`] for what that trusts.
    ///
    /// # Errors
    ///
    /// As [`Producer::try_send`].
    pub fn try_reserve(&mut self) -> Result<SendLoan<'_, T>, TrySendError<()>> {
        self.room()?;
        Ok(self.loan())
    }

    /// Lends the next free slot, waiting for one as long as needed.
    ///
    /// # Errors
    ///
    /// As [`Producer::send`].
    pub fn reserve(&mut self) -> Result<SendLoan<'_, T>, SendError<()>> {
        self.wait_room(None).map_err(|stop| stop.send(()))?;
        Ok(self.loan())
    }

    /// Lends the next free slot, waiting for one up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Producer::send_timeout`].
    pub fn reserve_timeout(&mut self, timeout: Duration) -> Result<SendLoan<'_, T>, SendTimeoutError<()>> {
        self.wait_room(Some(Deadline::after(timeout)))
            .map_err(|stop| stop.send_timeout((), timeout))?;
        Ok(self.loan())
    }

    /// The loan of the slot at `tail`, known free.
    fn loan(&mut self) -> SendLoan<'_, T> {
        let slot = self.slot(self.tail);
        SendLoan { producer: self, slot }
    }

    /// Marks this end closed: the consumer drains what is left, then gets
    /// [`RecvError::Disconnected`].
    pub fn close(&mut self) {
        let h = self.h();
        // Release: everything pushed before is visible with the close.
        h.closed.fetch_or(PRODUCER_CLOSED, Release);
        wake_for_close(&h.tail, &h.consumer_sleeping);
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.at.capacity as usize
    }

    /// Records this process as the producer now, not at the first push
    /// (for `duplex`, whose messages may all bypass the ring).
    pub(crate) fn claim_now(&mut self) {
        self.claim();
    }

    /// Whether the consumer took everything, as last seen (a stale view
    /// may say no when the answer is yes, never the other way).
    #[inline]
    pub(crate) fn drained(&self) -> bool {
        self.tail == self.cached_head
    }

    /// Re-reads the consumer's index.
    pub(crate) fn refresh_head(&mut self) {
        // Acquire: as in `free_fresh`.
        self.cached_head = self.h().head.load(Acquire);
    }

    /// Our position: the number of messages pushed so far (wrapping).
    #[inline]
    pub(crate) fn tail(&self) -> u32 {
        self.tail
    }
}

impl<T: ShmSafe> Consumer<T> {
    cached_ring!();

    pub(super) fn new(ring: Arc<Ring<T>>) -> Self {
        Self {
            at: At::of(&ring),
            ring,
            head: 0,
            cached_tail: 0,
            claimed: 0,
        }
    }

    #[inline]
    fn claim(&mut self) {
        let me = sync::cached_pid();
        if self.claimed != me {
            claim(&self.h().consumer);
            // Relaxed: our own index.
            self.head = self.h().head.load(Relaxed);
            // Acquire: as in `available_fresh`.
            self.cached_tail = self.h().tail.load(Acquire);
            self.claimed = me;
        }
    }

    #[inline]
    fn available(&mut self) -> Result<u32, BadDistance> {
        let n = self.cached_tail.wrapping_sub(self.head);
        if n > self.at.capacity {
            return Err(BadDistance {
                capacity: self.at.capacity,
                found: n,
            });
        }
        Ok(n)
    }

    /// Elements ready, re-reading the producer's index if the cache holds
    /// fewer than `want`.
    #[inline]
    fn available_fresh(&mut self, want: u32) -> Result<u32, BadDistance> {
        let n = self.available()?;
        if n >= want {
            return Ok(n);
        }
        // Acquire: pairs with the producer's Release store of `tail`.
        self.cached_tail = self.h().tail.load(Acquire);
        self.available()
    }

    /// At least `want` (>= 1) elements ready, or why not: `Empty`, or
    /// `Disconnected` once the producer closed and nothing is left.
    #[inline]
    fn ready_at_least(&mut self, want: u32) -> Result<u32, TryRecvError> {
        self.claim();
        let n = self.available_fresh(want).map_err(|d| TryRecvError::Fault(d.into()))?;
        if n > 0 {
            return Ok(n);
        }
        let closed = self.closed_bits() & PRODUCER_CLOSED != 0;
        // A close is seen after everything sent before it: look once more.
        if closed && self.available_fresh(1).map_err(|d| TryRecvError::Fault(d.into()))? == 0 {
            Err(TryRecvError::Disconnected)
        } else if closed {
            self.available_fresh(want).map_err(|d| TryRecvError::Fault(d.into()))
        } else {
            Err(TryRecvError::Empty)
        }
    }

    #[inline]
    pub(super) fn release(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        let h = self.h();
        // Release: pairs with the producer's Acquire load of `head`.
        h.head.store(self.head, Release);
        wake_if_sleeping(&h.head, &h.producer_sleeping);
    }

    /// Receives without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], [`TryRecvError::Disconnected`] once the
    /// producer closed and everything was read, [`TryRecvError::Fault`]
    /// ([`Fault::Corrupted`]) for impossible indices.
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.ready_at_least(1)?;
        // SAFETY: the slot at `head` is inside the ring (masked) and was
        // published by the producer (head < tail), ours until `head` is
        // released; the copy goes through atomic words (`copy`), so a peer
        // writing it anyway tears the value, never races; T accepts any bits.
        let value = unsafe { load_slot(self.slot(self.head).as_ptr()) };
        self.release(1);
        Ok(value)
    }

    /// Receives, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] when the producer closed or died and
    /// everything it published was read, [`RecvError::Fault`].
    pub fn recv(&mut self) -> Result<T, RecvError> {
        receive(self, None, Self::try_recv).map_err(Stop::recv)
    }

    /// Receives, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] (with `timeout`),
    /// [`RecvTimeoutError::Disconnected`], [`RecvTimeoutError::Fault`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        receive(self, Some(Deadline::after(timeout)), Self::try_recv).map_err(|stop| stop.recv_timeout(timeout))
    }

    /// Receives up to `out.len()` elements in one release; returns how many
    /// (at least one).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when none is ready (or `out` is empty),
    /// [`TryRecvError::Disconnected`], [`TryRecvError::Fault`].
    pub fn try_recv_slice(&mut self, out: &mut [T]) -> Result<usize, TryRecvError> {
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if want == 0 {
            return Err(TryRecvError::Empty);
        }
        let n = self.ready_at_least(want)?.min(want);
        let mut pos = self.head;
        for slot in out.iter_mut().take(n as usize) {
            // SAFETY: positions head..head+n are published, ours and in the
            // ring (masked); atomic-word copy as in `try_recv`.
            *slot = unsafe { load_slot(self.slot(pos).as_ptr()) };
            pos = pos.wrapping_add(1);
        }
        self.release(n);
        Ok(n as usize)
    }

    /// Lends the next element to be read in place (the zero-copy path); the
    /// slot goes back to the producer when the [`RecvLoan`] is dropped.
    ///
    /// The `&T` is sound only while the producer keeps the protocol (see
    /// [`RecvLoan`]); [`Consumer::try_recv`] is the defensive, copying path.
    ///
    /// # Errors
    ///
    /// As [`Consumer::try_recv`].
    pub fn try_peek(&mut self) -> Result<RecvLoan<'_, T>, TryRecvError> {
        self.ready_at_least(1)?;
        Ok(self.loan())
    }

    /// Lends the next element, waiting for one as long as needed.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv`].
    pub fn peek(&mut self) -> Result<RecvLoan<'_, T>, RecvError> {
        receive(self, None, |c| c.ready_at_least(1)).map_err(Stop::recv)?;
        Ok(self.loan())
    }

    /// Lends the next element, waiting for one up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv_timeout`].
    pub fn peek_timeout(&mut self, timeout: Duration) -> Result<RecvLoan<'_, T>, RecvTimeoutError> {
        receive(self, Some(Deadline::after(timeout)), |c| c.ready_at_least(1))
            .map_err(|stop| stop.recv_timeout(timeout))?;
        Ok(self.loan())
    }

    /// The loan of the slot at `head`, known published.
    fn loan(&mut self) -> RecvLoan<'_, T> {
        let slot = self.slot(self.head);
        RecvLoan { consumer: self, slot }
    }

    /// Elements ready to read now.
    pub fn len(&mut self) -> usize {
        self.available_fresh(u32::MAX).unwrap_or(0) as usize
    }

    /// Whether nothing is ready to read now.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Marks this end closed: a blocked or later send fails with
    /// [`SendError::Disconnected`].
    pub fn close(&mut self) {
        let h = self.h();
        // Release: pairs with the producer's Acquire load in `closed`.
        h.closed.fetch_or(CONSUMER_CLOSED, Release);
        wake_for_close(&h.head, &h.producer_sleeping);
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.at.capacity as usize
    }

    /// Records this process as the consumer now (see
    /// [`Producer::claim_now`]).
    pub(crate) fn claim_now(&mut self) {
        self.claim();
    }

    /// Our position: the number of messages popped so far (wrapping).
    #[inline]
    pub(crate) fn head(&self) -> u32 {
        self.head
    }

    /// Messages ready, re-reading the producer's index if the cache has
    /// none.
    #[inline]
    pub(crate) fn ready(&mut self) -> Result<u32, BadDistance> {
        self.available_fresh(1)
    }

    /// Whether the producer published past our position (a fresh read).
    pub(crate) fn published(&self) -> bool {
        // Acquire: pairs with the producer's Release store of `tail`.
        self.h().tail.load(Acquire) != self.head
    }

    /// Whether the producer closed its end or (when `check_alive`) died.
    pub(crate) fn producer_gone(&self, check_alive: bool) -> bool {
        peer_gone(self.closed_bits(), PRODUCER_CLOSED, &self.h().producer, check_alive)
    }
}

impl<T: ShmSafe> Receive for Consumer<T> {
    fn sender_gone(&self, check_alive: bool) -> bool {
        self.producer_gone(check_alive)
    }

    fn sleep(&self, deadline: Option<Deadline>) -> Slept {
        let h = self.h();
        let head = self.head;
        // Acquire: as in `available_fresh`.
        // The producer's close too, in the last look (see `sleep_on`).
        let data = || h.tail.load(Acquire) != head || self.closed_bits() & PRODUCER_CLOSED != 0;
        sleep_on(&h.tail, self.cached_tail, &h.consumer_sleeping, deadline, data)
    }
}
