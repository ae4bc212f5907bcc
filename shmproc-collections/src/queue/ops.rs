//! The mapped queue's operations: put and get under their locks, the waits
//! for room and messages, recovery after a holder that died, close, and
//! `JoinableQueue`'s count.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

use shmproc_core::sys::Deadline;
use shmproc_sync::ProcessLock;

use super::TaskDoneError;
use super::shared::{IN_PLACE, Payload, QueueShared};
use crate::bytes::{Fail, Kind, RawRing, ReadCursor, Stop, WriteCursor, wait_until};
use crate::ring::wake_for_close;
use crate::sync::{self, fence};

/// Takes `lock` for this process, waiting until `deadline` (forever with
/// `None`; a passed one, as for `try_*`: not at all, so a lock another
/// process holds at this instant reads as no room or no item). `None` when
/// not taken; `Some(true)` when taken from a holder that died holding it.
#[inline]
fn take(lock: &ProcessLock, deadline: Option<Deadline>) -> Option<bool> {
    if deadline.is_some_and(|d| d.has_passed()) {
        if lock.try_lock() {
            return Some(false);
        }
        return lock.take_if_holder_dead().then_some(true);
    }
    lock.lock_until(deadline)
}

/// Unlocks a [`ProcessLock`] when dropped.
struct Unlock<'a>(&'a ProcessLock);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}
impl QueueShared {
    /// Whether the producer streaming a message is gone (dead, or it let
    /// go of the put lock with the stream unfinished).
    pub(super) fn streamer_gone(&self) -> bool {
        let holder = self.header().put_lock.holder();
        // Acquire: with the Relaxed read of the lock word above, pairs with
        // the Release of its unlock, so the frames it published before
        // unlocking are seen by the caller's next look.
        fence(Acquire);
        holder.is_none_or(|pid| pid != sync::cached_pid() && !sync::task_alive(pid))
    }

    /// Repairs what a producer killed under the put lock left.
    pub(super) fn recover_put(&self) {
        let h = self.header();
        let rh = self.raw.header();
        // Relaxed: we hold the put lock; the dead holder's stores are
        // complete (it is dead) and the lock's Acquire take ordered us
        // after what it released.
        if h.put_pending.load(Relaxed) != 0 {
            if rh.tail.load(Relaxed) == h.put_pending_tail.load(Relaxed) {
                // Perhaps counted, never published: the count as it was
                // before (whether or not the holder got to count).
                h.puts.store(h.put_pending_puts.load(Relaxed), Relaxed);
                if self.joinable() {
                    // As a `task_done` of the item never put (a joiner
                    // waiting for it is woken), though never below zero.
                    let _ = self.task_done();
                }
            }
            h.put_pending.store(0, Relaxed);
        }
        // Acquire: as in `RawRing::spot`; the dead holder's cached copy of
        // `head` may be older than the `tail` it published.
        h.put_head.store(rh.head.load(Acquire), Relaxed);
    }

    /// Repairs what a consumer killed under the get lock left.
    pub(super) fn recover_get(&self) {
        let h = self.header();
        let rh = self.raw.header();
        // Relaxed: as in `recover_put`, for the get lock.
        if h.get_pending.load(Relaxed) != 0 {
            if rh.head.load(Relaxed) == h.get_pending_head.load(Relaxed) {
                // Perhaps counted, never handed back: the count as it was
                // before, and the next get takes the message.
                h.gets.store(h.get_pending_gets.load(Relaxed), Relaxed);
            }
            h.get_pending.store(0, Relaxed);
        }
        // Acquire: pairs with producers' Release store of `tail`.
        h.get_tail.store(rh.tail.load(Acquire), Relaxed);
    }

    pub(super) fn qsize(&self) -> u32 {
        let h = self.header();
        // Acquire: pairs with the holders' unlocks; a snapshot.
        let n = h.puts.load(Acquire).wrapping_sub(h.gets.load(Acquire));
        // A get counts its message as the put's count is being taken back
        // (recovery), so a moment's -1 reads as 0.
        if n > i32::MAX as u32 { 0 } else { n }
    }

    /// Puts a message; false when a [`Payload::InPlace`] did not fit (or
    /// found no room at once) and nothing was sent.
    pub(super) fn put_bytes(&self, msg: Payload<'_>, deadline: Option<Deadline>) -> Result<bool, Fail> {
        self.register();
        if self.closed() {
            return Err(Fail::Disconnected);
        }
        let h = self.header();
        let died = take(&h.put_lock, deadline).ok_or(Fail::Full)?;
        let _unlock = Unlock(&h.put_lock);
        if died {
            self.recover_put();
        }
        let rh = self.raw.header();
        let gone = |slice_over: bool| self.closed() || (slice_over && !self.others_alive());
        let stop = |stop: Stop| match stop {
            Stop::Timeout => Fail::Full,
            Stop::Gone => Fail::Disconnected,
        };
        let maxsize = self.maxsize();
        if maxsize != 0 {
            // Relaxed: ours, under the put lock.
            let puts = h.puts.load(Relaxed);
            // Acquire: pairs with consumers' unlocks of the get lock.
            // A count below zero (a peer scribbled on `gets`, or a bump
            // being taken back) reads as an empty queue, as in `qsize`.
            let room = || {
                let n = puts.wrapping_sub(h.gets.load(Acquire));
                n < maxsize || n > i32::MAX as u32
            };
            wait_until(&rh.head, &rh.writer_sleeping, deadline, room, gone).map_err(stop)?;
        }
        // Relaxed: only put-lock holders write `tail` and the cached head.
        let tail = rh.tail.load(Relaxed);
        let mut cached_head = h.put_head.load(Relaxed);
        if tail.wrapping_sub(cached_head) > self.raw.capacity() {
            // A cache a peer scribbled on: the real index decides.
            // Acquire: as in `RawRing::spot`.
            cached_head = rh.head.load(Acquire);
        }
        let mut c = WriteCursor { tail, cached_head };
        let wait = |raw: &RawRing, c: &mut WriteCursor, len: u32, started: bool| {
            let tail = c.tail;
            let deadline = if started { None } else { deadline };
            wait_until(
                &rh.head,
                &rh.writer_sleeping,
                deadline,
                || raw.has_room(tail, len),
                gone,
            )
            .map_err(stop)
        };
        let streamed = matches!(msg, Payload::Bytes(b) if b.len() > self.raw.max_payload() as usize);
        let joinable = self.joinable();
        let mark = || {
            // Relaxed: under the put lock; the publishing Release store of
            // `tail` that follows carries these to consumers.
            // A load and a store, not a read-modify-write: only put-lock
            // holders write `puts`. The count before is recorded first, so
            // a kill anywhere in here is undone exactly by `recover_put`.
            let puts = h.puts.load(Relaxed);
            h.put_pending_puts.store(puts, Relaxed);
            h.put_pending_tail.store(rh.tail.load(Relaxed), Relaxed);
            h.put_pending.store(1, Relaxed);
            h.puts.store(puts.wrapping_add(1), Relaxed);
            if joinable {
                // Relaxed: under the put lock; the publishing Release store
                // of `tail` carries it to the consumer whose `task_done`
                // takes it back (`join`'s pair is in `task_done`).
                h.unfinished.fetch_add(1, Relaxed);
            }
            if streamed {
                h.stream_open.store(1, Relaxed);
            }
        };
        // Relaxed: ours, under the put lock.
        let stream_open = h.stream_open.load(Relaxed) != 0;
        let result = match msg {
            // The general path ends a dead producer's stream first.
            Payload::InPlace(_) if stream_open => Ok(false),
            Payload::InPlace(write) => {
                let most = IN_PLACE.min(self.raw.max_payload());
                self.raw.spot(&mut c, most).map(|spot| {
                    let Some(spot) = spot else { return false };
                    // SAFETY: the spot was just found for `most` bytes on this
                    // cursor, and nothing was committed since. A write loan
                    // over shared memory: no reader looks at these bytes
                    // before the commit (a reader that scribbles on them
                    // breaks the protocol; the item is then garbage to the
                    // consumer, which validates it when it deserialises).
                    let room = unsafe { self.raw.payload_mut(spot, most) };
                    let Some(len) = write(room).and_then(|n| u32::try_from(n).ok()).filter(|&n| n <= most) else {
                        return false;
                    };
                    mark();
                    self.raw.commit(&mut c, spot, len, Kind::Whole);
                    true
                })
            }
            Payload::Bytes(bytes) => {
                let aborted = if stream_open {
                    self.raw.abort(&mut c, wait).map(|()| h.stream_open.store(0, Relaxed))
                } else {
                    Ok(())
                };
                aborted
                    .and_then(|()| self.raw.send(&mut c, bytes, wait, mark))
                    .map(|()| true)
            }
        };
        // Relaxed: under the put lock, released by the unlock.
        h.put_pending.store(0, Relaxed);
        if result.is_ok() && streamed {
            h.stream_open.store(0, Relaxed);
        }
        h.put_head.store(c.cached_head, Relaxed);
        result
    }

    /// Takes the next message, copied into `out`, and returns what
    /// `decode` makes of it. A whole message is copied and decoded before
    /// its frame is handed back to the ring (the commit), so a consumer
    /// killed anywhere in here before that store leaves the message to the
    /// next one. A streamed message (larger than half the ring) is handed
    /// back part by part as it is read, so one is lost with a consumer
    /// killed while reading it.
    pub(super) fn get_with<R>(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Deadline>,
        decode: impl FnOnce(&[u8]) -> Result<R, Fail>,
    ) -> Result<R, Fail> {
        self.register();
        let h = self.header();
        let Some(died) = take(&h.get_lock, deadline) else {
            return Err(if self.closed() && self.qsize() == 0 {
                Fail::Disconnected
            } else {
                Fail::Empty
            });
        };
        let _unlock = Unlock(&h.get_lock);
        if died {
            self.recover_get();
        }
        let rh = self.raw.header();
        // Relaxed: only get-lock holders write `head` and the cached tail.
        let head = rh.head.load(Relaxed);
        let mut cached_tail = h.get_tail.load(Relaxed);
        if cached_tail.wrapping_sub(head) > self.raw.capacity() {
            // A cache a peer scribbled on: the real index decides.
            // Acquire: pairs with producers' Release store of `tail`.
            cached_tail = rh.tail.load(Acquire);
        }
        let mut c = ReadCursor { head, cached_tail };
        let wait = |raw: &RawRing, c: &mut ReadCursor, assembling: bool| {
            let head = c.head;
            let ready = || raw.has_frame(head);
            if assembling {
                // The rest of a streamed message follows whatever the
                // deadline, unless its producer is gone.
                let gone = |slice_over: bool| slice_over && self.streamer_gone();
                return Ok(wait_until(&rh.tail, &rh.reader_sleeping, None, ready, gone).is_ok() || raw.has_frame(head));
            }
            let gone = |slice_over: bool| self.closed() || (slice_over && !self.others_alive());
            match wait_until(&rh.tail, &rh.reader_sleeping, deadline, ready, gone) {
                Ok(()) => Ok(true),
                Err(_) if raw.has_frame(head) => Ok(true),
                Err(Stop::Timeout) => Err(Fail::Empty),
                Err(Stop::Gone) => Err(Fail::Disconnected),
            }
        };
        let mut wait = wait;
        let mut mark = || {
            // Relaxed: under the get lock; the Release store of `head` that
            // follows carries these.
            // Only get-lock holders write `gets`; the count before is
            // recorded first, as in `put_bytes`.
            let gets = h.gets.load(Relaxed);
            h.get_pending_gets.store(gets, Relaxed);
            h.get_pending_head.store(rh.head.load(Relaxed), Relaxed);
            h.get_pending.store(1, Relaxed);
            h.gets.store(gets.wrapping_add(1), Relaxed);
        };
        let result = loop {
            match self.raw.peek_frame(&mut c) {
                Err(e) => break Err(e),
                Ok(Some(f)) if f.kind == Kind::Whole => {
                    // Copy, decode, then commit: the order that makes a
                    // kill before the `head` store harmless.
                    out.clear();
                    out.extend_from_slice(self.raw.payload(&f));
                    let decoded = decode(out);
                    mark();
                    self.raw.release(&mut c, &f);
                    break decoded;
                }
                // A streamed message: its parts go back as they are read.
                Ok(Some(f)) if f.kind == Kind::First => {
                    break self
                        .raw
                        .recv(&mut c, out, &mut wait, &mut mark)
                        .and_then(|()| decode(out));
                }
                // Parts left by a consumer or producer that died mid-message.
                Ok(Some(f)) => self.raw.release(&mut c, &f),
                Ok(None) => {
                    self.raw.release_padding(&mut c);
                    if let Err(e) = wait(&self.raw, &mut c, false) {
                        break Err(e);
                    }
                }
            }
        };
        // Relaxed: under the get lock, released by the unlock.
        h.get_pending.store(0, Relaxed);
        h.get_tail.store(c.cached_tail, Relaxed);
        result
    }

    /// `JoinableQueue::task_done`: one unfinished task fewer.
    pub(super) fn task_done(&self) -> Result<(), TaskDoneError> {
        let h = self.header();
        // A Dekker pair with `join_until` (it raises `join_waiters`, then
        // reads `unfinished`; we lower `unfinished`, then read
        // `join_waiters`), made of SeqCst fences between each side's store
        // and load: one of the two sees the other. (SeqCst on the accesses
        // alone would do in C++ too, but loom models SeqCst accesses as
        // AcqRel and reported a lost wake-up; fences it models in full.)
        // AcqRel: the count's read-modify-write; the fence orders it.
        let before = h
            .unfinished
            .fetch_update(AcqRel, Acquire, |n| n.checked_sub(1))
            .map_err(|_| TaskDoneError)?;
        fence(SeqCst);
        // Relaxed: ordered by the fence above.
        if before == 1 && h.join_waiters.load(Relaxed) != 0 {
            sync::futex_wake(&h.unfinished, u32::MAX);
        }
        Ok(())
    }

    /// `JoinableQueue::join`: waits until no task is unfinished (not past
    /// `deadline`); false when the deadline came first.
    pub(super) fn join_until(&self, deadline: Option<Deadline>) -> bool {
        let h = self.header();
        // Relaxed + SeqCst fence: the other side of `task_done`'s pair.
        h.join_waiters.fetch_add(1, Relaxed);
        fence(SeqCst);
        let done = loop {
            // Acquire: pairs with the last `task_done`'s AcqRel, so the
            // tasks' effects are seen once `join` returns.
            let n = h.unfinished.load(Acquire);
            if n == 0 {
                break true;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                break false;
            }
            let slice = Deadline::after(shmproc_sync::park::LIVENESS_SLICE);
            sync::futex_wait(&h.unfinished, n, Some(deadline.map_or(slice, |d| d.min(slice))));
        };
        // Relaxed: a count of sleepers; a wake it causes is only spurious.
        h.join_waiters.fetch_sub(1, Relaxed);
        done
    }

    pub(super) fn close(&self) {
        // Release: pairs with the Acquire in `closed`.
        self.header().closed.store(1, Release);
        let rh = self.raw.header();
        wake_for_close(&rh.tail, &rh.reader_sleeping);
        wake_for_close(&rh.head, &rh.writer_sleeping);
    }
}
