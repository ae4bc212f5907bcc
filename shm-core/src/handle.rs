//! How shared objects cross into a child started by spawn or forkserver.
//!
//! Arguments are serialised with postcard. A shared object serialises as a
//! small descriptor (an index into the message's descriptor list, plus its
//! name if it has one); its file descriptor is collected on the side and
//! travels beside the bytes with `SCM_RIGHTS`. On the other side the
//! descriptor list is installed before deserialising, and each object
//! re-attaches its segment with the full header and type check. Users never
//! see a descriptor. This is the scheme of ipc-channel's
//! `OS_IPC_CHANNELS_FOR_SERIALIZATION`.
//!
//! Outside [`encode`]/[`decode`] (say, serialising a value into a file), a
//! shared object refuses to serialise with a clear message.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::HandleError;
use crate::segment::Segment;
use crate::sys;

thread_local! {
    static OUTGOING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Serialises `value`, collecting the descriptors of the shared objects in it.
///
/// The descriptors are borrowed from objects inside `value`: they stay valid
/// while `value` lives.
///
/// # Errors
///
/// [`HandleError::Encode`] when `value` does not serialise,
/// [`HandleError::TooManyObjects`] past 253 shared objects.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<RawFd>), HandleError> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            OUTGOING.with(|o| o.borrow_mut().take());
        }
    }
    OUTGOING.with(|o| *o.borrow_mut() = Some(Vec::new()));
    let _reset = Reset;
    let bytes = postcard::to_allocvec(value).map_err(|e| HandleError::Encode(e.to_string()))?;
    let fds = OUTGOING.with(|o| o.borrow_mut().take()).unwrap_or_default();
    if fds.len() > sys::MAX_FDS_PER_MESSAGE {
        return Err(HandleError::TooManyObjects {
            count: fds.len(),
            max: sys::MAX_FDS_PER_MESSAGE,
        });
    }
    Ok((bytes, fds))
}

/// Deserialises a value made by [`encode`], with the descriptors that came
/// with it. Descriptors no object claimed are closed.
///
/// # Errors
///
/// [`HandleError::Decode`] for malformed bytes, a descriptor index out of
/// range or used twice, or a segment that fails its header or type check.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, HandleError> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            INCOMING.with(|i| i.borrow_mut().take());
        }
    }
    INCOMING.with(|i| *i.borrow_mut() = Some(fds.into_iter().map(Some).collect()));
    let _reset = Reset;
    postcard::from_bytes(bytes).map_err(|e| HandleError::Decode(e.to_string()))
}

#[derive(Serialize, Deserialize)]
struct SegmentWire {
    fd_index: u32,
    name: Option<String>,
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = OUTGOING.with(|o| {
            o.borrow_mut().as_mut().map(|fds| {
                fds.push(self.fd().as_raw_fd());
                fds.len() - 1
            })
        });
        let Some(index) = index else {
            return Err(S::Error::custom(
                "shared objects serialise only as arguments of a process (or a message of an shm channel)",
            ));
        };
        SegmentWire {
            fd_index: u32::try_from(index).map_err(S::Error::custom)?,
            name: self.name().map(str::to_owned),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SegmentWire::deserialize(deserializer)?;
        let fd = INCOMING.with(|i| {
            let mut slot = i.borrow_mut();
            let fds = slot
                .as_mut()
                .ok_or("shared objects deserialise only in a process bootstrap")?;
            fds.get_mut(wire.fd_index as usize)
                .ok_or("descriptor index out of range")?
                .take()
                .ok_or("descriptor index used twice")
        });
        let fd = fd.map_err(D::Error::custom)?;
        let mut seg = Segment::from_fd(fd, None).map_err(D::Error::custom)?;
        seg.set_name(wire.name);
        Ok(seg)
    }
}
