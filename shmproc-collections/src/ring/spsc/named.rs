//! Named rings: created under a name, and each end opened by name from any
//! process (one not started by us too).
//!
//! An end is held by the last process that used it (its pid is in the
//! header's `producer` or `consumer` word) for as long as that process
//! lives: [`Producer::open`] and [`Consumer::open`] claim the end and refuse
//! it while a live process holds it. A creator that hands an end to another
//! program therefore drops that end without using it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use shmproc_core::{Segment, SegmentError, ShmSafe};

use super::{Consumer, Producer, Ring, Word};
use crate::sync;

/// Why an end of a named ring could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The segment is missing, of another type, or not a ring's.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A live process holds that end.
    #[error("the {end} of the ring {name:?} is held by live process {pid}")]
    Held {
        /// The ring's name.
        name: String,
        /// `"producer"` or `"consumer"`.
        end: &'static str,
        /// The holder.
        pid: u32,
    },
}

impl From<OpenError> for shmproc_core::Error {
    fn from(e: OpenError) -> Self {
        let kind = match &e {
            OpenError::Segment(_) => shmproc_core::ErrorKind::Segment,
            OpenError::Held { .. } => shmproc_core::ErrorKind::WouldBlock,
        };
        Self::new(kind, e)
    }
}

/// Creates a ring as [`channel`](super::channel) does, in a named segment
/// whose ends other processes open with [`Producer::open`] and
/// [`Consumer::open`]. The name stays until [`Segment::unlink`].
///
/// # Errors
///
/// As [`channel`](super::channel), and as [`Segment::create_named`] (a bad
/// or taken name).
pub fn create_named<T: ShmSafe>(name: &str, capacity: usize) -> Result<(Producer<T>, Consumer<T>), SegmentError> {
    sync::membarrier_register();
    let ring = Arc::new(Ring::<T>::create(capacity, Some(name))?);
    Ok((Producer::new(Arc::clone(&ring)), Consumer::new(ring)))
}

/// Opens the ring `name` (segment, type and layout checked) and claims the
/// end whose holder word is `role` of it.
fn open_end<T: ShmSafe>(
    name: &str,
    end: &'static str,
    role: impl Fn(&Ring<T>) -> &Word,
) -> Result<Arc<Ring<T>>, OpenError> {
    let seg = Segment::open_named(name, Some(&Ring::<T>::identity()))?;
    let ring = Ring::<T>::attach(seg)?;
    let me = sync::owner_id();
    let word = role(&ring);
    // Relaxed: an owner id for liveness checks only (as in `claim`); the
    // indices the end starts from are read when it first acts.
    let holder = word.load(Relaxed);
    let held = |id: u32| id != 0 && (id == me || sync::owner_alive(id));
    if held(holder) {
        return Err(OpenError::Held {
            name: name.to_owned(),
            end,
            pid: sync::pid_of(holder),
        });
    }
    // Relaxed: as above; a racing opener that claimed first wins.
    if let Err(now) = word.compare_exchange(holder, me, Relaxed, Relaxed) {
        return Err(OpenError::Held {
            name: name.to_owned(),
            end,
            pid: sync::pid_of(now),
        });
    }
    sync::membarrier_register();
    Ok(Arc::new(ring))
}

impl<T: ShmSafe> Producer<T> {
    /// Opens the producer of the named ring `name` and claims it.
    ///
    /// # Errors
    ///
    /// [`OpenError::Segment`] (missing, another element type, not a ring's
    /// layout), [`OpenError::Held`] while a live process (this one too)
    /// holds the producer.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        open_end(name, "producer", |r: &Ring<T>| &r.header().producer).map(Self::new)
    }
}

impl<T: ShmSafe> Producer<T> {
    /// Gives up the claim [`Producer::open`] made (for an open of several
    /// ends that failed part way).
    pub(crate) fn release_claim(&self) {
        // Relaxed: an owner id, as in `open_end`; only ours is taken down.
        let _ = self
            .h()
            .producer
            .compare_exchange(sync::owner_id(), 0, Relaxed, Relaxed);
    }
}

impl<T: ShmSafe> Consumer<T> {
    /// Opens the consumer of the named ring `name` and claims it.
    ///
    /// # Errors
    ///
    /// As [`Producer::open`], for the consumer.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        open_end(name, "consumer", |r: &Ring<T>| &r.header().consumer).map(Self::new)
    }
}
