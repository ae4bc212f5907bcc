//! Named duplex channels: the mailbox segment is named `name`, the rings
//! `name.ab` (first end to second) and `name.ba`; any process (one not
//! started by us too) opens an end by name.

use std::sync::Arc;

use shmproc_core::{Segment, SegmentError, ShmSafe};

use super::{Duplex, Ends, MAIL_LEN, Mail, identity};
use crate::ring::spsc::{self, Consumer, OpenError, Producer};

/// The names of the two rings of the duplex channel `name`: from the first
/// end to the second, and back.
fn ring_names(name: &str) -> [String; 2] {
    [format!("{name}.ab"), format!("{name}.ba")]
}

/// Creates a duplex channel as [`channel`](super::channel) does, in named
/// segments (`name`, `name.ab`, `name.ba`) whose ends other processes open
/// with [`Duplex::open`]. The names stay until [`unlink`].
///
/// # Errors
///
/// As [`channel`](super::channel), and as [`Segment::create_named`] (a bad
/// or taken name); nothing is left behind on failure.
pub fn create_named<A: ShmSafe, B: ShmSafe>(name: &str, capacity: usize) -> Result<Ends<A, B>, SegmentError> {
    let [ab, ba] = ring_names(name);
    let seg = Segment::create_named(name, &identity::<A, B>(), MAIL_LEN)?;
    let rings = spsc::create_named::<A>(&ab, capacity).and_then(|abr| match spsc::create_named::<B>(&ba, capacity) {
        Ok(bar) => Ok((abr, bar)),
        Err(e) => {
            let _ = Segment::unlink(&ab);
            Err(e)
        }
    });
    let ((ab_tx, ab_rx), (ba_tx, ba_rx)) = match rings {
        Ok(rings) => rings,
        Err(e) => {
            let _ = Segment::unlink(name);
            return Err(e);
        }
    };
    let mail = Arc::new(Mail { seg });
    let first = Duplex::new(0, Arc::clone(&mail), ab_tx, ba_rx);
    let second = Duplex::new(1, mail, ba_tx, ab_rx);
    Ok((first, second))
}

/// Removes the names of the duplex channel `name` (its three segments).
/// Processes that have it open keep using it.
///
/// # Errors
///
/// As [`Segment::unlink`], for the first name that fails.
pub fn unlink(name: &str) -> Result<(), SegmentError> {
    let [ab, ba] = ring_names(name);
    let results = [Segment::unlink(name), Segment::unlink(&ab), Segment::unlink(&ba)];
    results.into_iter().collect()
}

impl<S: ShmSafe, R: ShmSafe> Duplex<S, R> {
    /// Opens an end of the named duplex channel `name` that sends `S` and
    /// receives `R`, and claims it: the first end when the channel carries
    /// `S` first, else the second (when both carry one type: the first
    /// that no live process holds).
    ///
    /// # Errors
    ///
    /// [`OpenError::Segment`] (missing, [`SegmentError::TypeMismatch`] for
    /// other types, a layout not a duplex channel's), [`OpenError::Held`]
    /// while a live process (this one too) holds the end.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let seg = Segment::open_named(name, None)?;
        if seg.payload_len() != MAIL_LEN {
            return Err(SegmentError::BadPayload {
                len: seg.payload_len() as u64,
                elem_size: MAIL_LEN as u64,
            }
            .into());
        }
        let sides: Vec<usize> = [(0, identity::<S, R>()), (1, identity::<R, S>())]
            .into_iter()
            .filter(|(_, id)| seg.check_type(id).is_ok())
            .map(|(side, _)| side)
            .collect();
        if sides.is_empty() {
            return Err(seg.check_type(&identity::<S, R>()).err().map_or_else(
                || {
                    OpenError::Segment(SegmentError::BadPayload {
                        len: seg.payload_len() as u64,
                        elem_size: MAIL_LEN as u64,
                    })
                },
                OpenError::Segment,
            ));
        }
        let mail = Arc::new(Mail { seg });
        let [ab, ba] = ring_names(name);
        let mut last = None;
        for side in sides {
            let (tx_name, rx_name) = if side == 0 { (&ab, &ba) } else { (&ba, &ab) };
            let tx = match Producer::<S>::open(tx_name) {
                Ok(tx) => tx,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match Consumer::<R>::open(rx_name) {
                Ok(rx) if rx.capacity() == tx.capacity() => return Ok(Self::new(side, Arc::clone(&mail), tx, rx)),
                Ok(_) => {
                    tx.release_claim();
                    return Err(SegmentError::BadPayload {
                        len: MAIL_LEN as u64,
                        elem_size: MAIL_LEN as u64,
                    }
                    .into());
                }
                Err(e) => {
                    tx.release_claim();
                    last = Some(e);
                }
            }
        }
        // At least one side was tried: `last` is its error.
        Err(last.unwrap_or_else(|| SegmentError::NotFound { name: name.to_owned() }.into()))
    }
}
