//! The loans of a byte ring's ends: bytes written or read in place.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::frame::{Frame, Kind, Spot};
use super::{ByteConsumer, ByteProducer};

/// Bytes lent by [`ByteProducer::reserve`]; write them through `DerefMut`,
/// then [`SendLoan::commit`]. Dropped without commit, nothing is sent.
///
/// The `&mut [u8]` points into shared memory; it is sound because no reader
/// looks at these bytes until commit (the reader stops at the published
/// `tail`). A reader that scribbles on them anyway breaks that;
/// [`ByteProducer::send`] (a copy through atomic words) is sound under any
/// peer.
pub struct SendLoan<'a> {
    pub(super) producer: &'a mut ByteProducer,
    pub(super) spot: Spot,
    pub(super) len: u32,
}

impl SendLoan<'_> {
    /// Sends the whole loan as one message.
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len as usize);
    }

    /// Sends the first `len` bytes of the loan as one message.
    ///
    /// # Panics
    ///
    /// If `len` is larger than the loan.
    pub fn commit_len(self, len: usize) {
        assert!(len <= self.len as usize, "committing more than was reserved");
        let p = self.producer;
        let len = u32::try_from(len).expect("at most the loan's u32 length");
        p.ring.raw.commit(&mut p.c, self.spot, len, Kind::Whole);
    }
}

impl Deref for SendLoan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the spot was found for `len` bytes and nothing was
        // committed since (the loan borrows the producer mutably).
        unsafe { self.producer.ring.raw.payload_mut(self.spot, self.len) }
    }
}

impl DerefMut for SendLoan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`.
        unsafe { self.producer.ring.raw.payload_mut(self.spot, self.len) }
    }
}

impl fmt::Debug for SendLoan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendLoan").field("len", &self.len).finish()
    }
}

/// A message lent by [`ByteConsumer::peek`], read in place; handed back to
/// the writer (consumed) when dropped.
///
/// A zero-copy read loan: the `&[u8]` points into shared memory and is
/// sound only while the writer keeps the protocol (it does not write a
/// published frame before the reader hands it back). Against a buggy or
/// hostile writer use [`ByteConsumer::recv`], which copies through atomic
/// words and validates every frame header (crate `shm`'s trust model).
pub struct RecvLoan<'a> {
    pub(super) consumer: &'a mut ByteConsumer,
    pub(super) frame: Frame,
}

impl Deref for RecvLoan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.ring.raw.payload(&self.frame)
    }
}

impl Drop for RecvLoan<'_> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        c.ring.raw.release(&mut c.c, &self.frame);
    }
}

impl fmt::Debug for RecvLoan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvLoan").field("len", &self.frame.len).finish()
    }
}
