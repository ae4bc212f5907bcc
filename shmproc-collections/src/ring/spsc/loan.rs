//! The loans: a free slot written in place, a published one read in place.

#[allow(
    clippy::wildcard_imports,
    reason = "the parent's code, split into files: it shares its imports"
)]
use super::*;

/// A free slot lent by [`Producer::reserve`]; write it through `DerefMut`,
/// then [`SendLoan::commit`]. Dropped without commit, nothing is published.
///
/// The `&T`/`&mut T` it hands out points into shared memory: no reader
/// looks at the slot until commit (the consumer reads only below the
/// published `tail`), so the reference is sound while the consumer keeps the
/// protocol. A consumer that scribbles on a slot it does not own breaks
/// that; [`Producer::try_send`] (a copy through atomic words) is the path
/// that stays sound under any peer.
pub struct SendLoan<'a, T: ShmSafe> {
    pub(super) producer: &'a mut Producer<T>,
    pub(super) slot: NonNull<T>,
}

impl<T: ShmSafe> SendLoan<'_, T> {
    /// Publishes the slot to the consumer.
    pub fn commit(self) {
        self.producer.publish(1);
    }
}

impl<T: ShmSafe> Deref for SendLoan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot is free and lent to us alone until commit (the
        // consumer does not look past `tail`); T accepts any bit pattern, so
        // whatever an earlier message left there is a valid T.
        unsafe { self.slot.as_ref() }
    }
}

impl<T: ShmSafe> DerefMut for SendLoan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { self.slot.as_mut() }
    }
}

impl<T: ShmSafe> fmt::Debug for SendLoan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendLoan")
    }
}

/// A published element lent by [`Consumer::peek`]; read it through `Deref`.
/// The slot returns to the producer when this is dropped.
///
/// This is a zero-copy read loan: the `&T` points into shared memory and is
/// sound only while the producer keeps the protocol (it does not write a
/// published slot before the consumer releases it). A buggy or hostile
/// producer that writes it anyway makes the reference a data race; against
/// such a peer use [`Consumer::try_recv`], which copies through atomic words
/// and is sound under any peer (crate `shm`'s trust model).
pub struct RecvLoan<'a, T: ShmSafe> {
    pub(super) consumer: &'a mut Consumer<T>,
    pub(super) slot: NonNull<T>,
}

impl<T: ShmSafe> Deref for RecvLoan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot was published (Acquire) and the producer does not
        // reuse it until `head` moves past it, which happens on drop.
        unsafe { self.slot.as_ref() }
    }
}

impl<T: ShmSafe> Drop for RecvLoan<'_, T> {
    fn drop(&mut self) {
        self.consumer.release(1);
    }
}

impl<T: ShmSafe> fmt::Debug for RecvLoan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecvLoan")
    }
}
