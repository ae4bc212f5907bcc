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
//! Outside [`encode`]/[`decode`] (a message put on a `Queue` or sent over
//! a `Pipe` after the receiver started, say), a shared object serialises
//! *by reference*: the sender's pid and start time, the number of its
//! descriptor, and the file's device and inode. The receiver opens the
//! descriptor through `/proc/<pid>/fd/<n>` (the same user may), checks that
//! the sender is the same process and the file the same file, and attaches
//! with the full header and type check. Such a message is good while the
//! sender still holds the object; after that, receiving it is a clear
//! error, never another file.
//!
//! A function reference ([`FnRef`](crate::FnRef)) goes further: it travels
//! only in a process bootstrap, whose message carries the code offsets of
//! the functions among the arguments beside the target's own; the arguments
//! hold indices into that list, which the child resolves after checking that
//! it runs its parent's executable. The public [`encode`] and [`decode`]
//! refuse one, so no bytes from a queue, a pipe or a file become a call.
//!
//! When a shared object fails to attach, [`decode`] reports the segment's
//! own error ([`HandleError::Object`]): an object's `Deserialize` passes it
//! through [`decode_error`], since postcard keeps no message of a custom
//! error.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use serde::de::DeserializeOwned;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{HandleError, SegmentError};
use crate::segment::Segment;
use crate::sys;

/// What an [`encode`] under way collects beside the bytes.
struct Outgoing {
    fds: Vec<RawFd>,
    /// Code offsets of the function references met (see
    /// [`FnRef`](crate::FnRef)); `None` outside a process bootstrap, where a
    /// function reference refuses to serialise.
    fns: Option<Vec<u64>>,
}

/// What a [`decode`] under way hands out to the objects it meets.
struct Incoming {
    fds: Vec<Option<OwnedFd>>,
    /// Functions resolved by the bootstrap of this process, which checked
    /// that its parent runs this very executable; `None` anywhere else, where
    /// a function reference refuses to deserialise.
    fns: Option<Vec<fn()>>,
    /// The first error an object of this crate met: postcard keeps no
    /// message of a `Deserialize` impl's custom error, so the cause is
    /// carried here.
    cause: Option<HandleError>,
}

thread_local! {
    /// Why the last shared object sent by reference could not be opened
    /// (see [`take_plain_cause`]).
    static PLAIN_CAUSE: RefCell<Option<String>> = const { RefCell::new(None) };
    static OUTGOING: RefCell<Option<Outgoing>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

/// Serialises `value`, collecting the descriptors of the shared objects in it.
///
/// The descriptors are borrowed from objects inside `value`: they stay valid
/// while `value` lives.
///
/// # Errors
///
/// [`HandleError::Encode`] when `value` does not serialise (a function
/// reference among it does not: it travels only as the argument of a
/// process), [`HandleError::TooManyObjects`] past 253 shared objects.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<RawFd>), HandleError> {
    encode_with(value, None).map(|(bytes, fds, _)| (bytes, fds))
}

/// Argument bytes, the descriptors of the shared objects among them and the
/// code offsets of their function references.
pub(crate) type Encoded = (Vec<u8>, Vec<RawFd>, Vec<u64>);

/// As [`encode`], also collecting the code offsets of the function
/// references in `value` (for a process bootstrap only).
pub(crate) fn encode_job<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, HandleError> {
    encode_with(value, Some(Vec::new()))
}

fn encode_with<T: Serialize + ?Sized>(value: &T, fns: Option<Vec<u64>>) -> Result<Encoded, HandleError> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            OUTGOING.with(|o| o.borrow_mut().take());
        }
    }
    OUTGOING.with(|o| *o.borrow_mut() = Some(Outgoing { fds: Vec::new(), fns }));
    let _reset = Reset;
    let bytes = postcard::to_allocvec(value).map_err(|e| HandleError::Encode(e.to_string()))?;
    let out = OUTGOING.with(|o| o.borrow_mut().take());
    let (fds, fns) = out.map(|o| (o.fds, o.fns.unwrap_or_default())).unwrap_or_default();
    if fds.len() > sys::MAX_FDS_PER_MESSAGE {
        return Err(HandleError::TooManyObjects {
            count: fds.len(),
            max: sys::MAX_FDS_PER_MESSAGE,
        });
    }
    Ok((bytes, fds, fns))
}

/// Deserialises a value made by [`encode`], with the descriptors that came
/// with it. Descriptors no object claimed are closed.
///
/// A function reference among the value is refused: one is accepted only
/// from the bootstrap of a process this library started.
///
/// # Errors
///
/// [`HandleError::Object`] when a shared object among the value fails its
/// header or type check (the cause kept); [`HandleError::Decode`] for
/// malformed bytes, a descriptor index out of range or used twice, or a
/// function reference.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, HandleError> {
    decode_with(bytes, fds, None)
}

/// As [`decode`], with the functions the bootstrap of this process resolved
/// after checking that its parent runs this very executable.
pub(crate) fn decode_job<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
    fns: Vec<fn()>,
) -> Result<T, HandleError> {
    decode_with(bytes, fds, Some(fns))
}

fn decode_with<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>, fns: Option<Vec<fn()>>) -> Result<T, HandleError> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            INCOMING.with(|i| i.borrow_mut().take());
        }
    }
    INCOMING.with(|i| {
        *i.borrow_mut() = Some(Incoming {
            fds: fds.into_iter().map(Some).collect(),
            fns,
            cause: None,
        });
    });
    let _reset = Reset;
    postcard::from_bytes(bytes).map_err(|e| {
        let cause = INCOMING.with(|i| i.borrow_mut().as_mut().and_then(|inc| inc.cause.take()));
        cause.unwrap_or_else(|| HandleError::Decode(e.to_string()))
    })
}

/// The error a `Deserialize` impl returns when a shared object among the
/// arguments fails to attach. Inside [`decode`] the cause is kept, so that
/// [`decode`] reports it as [`HandleError::Object`] (postcard itself keeps
/// no message of a custom error).
pub fn decode_error<E: serde::de::Error>(cause: SegmentError) -> E {
    let err = E::custom(&cause);
    keep_cause(HandleError::Object(cause));
    err
}

/// As [`decode_error`] for a refusal that is no segment's error.
pub(crate) fn refuse<E: serde::de::Error>(why: &'static str) -> E {
    keep_cause(HandleError::Decode(why.to_owned()));
    E::custom(why)
}

fn keep_cause(cause: HandleError) {
    INCOMING.with(|i| {
        if let Some(inc) = i.borrow_mut().as_mut()
            && inc.cause.is_none()
        {
            inc.cause = Some(cause);
        }
    });
}

/// Why the last shared object received by reference (outside a process
/// bootstrap: a queue's or a pipe's message) failed to open, once: postcard
/// keeps no message of a `Deserialize` impl's error, so a channel that
/// failed to decode a message asks here.
pub fn take_plain_cause() -> Option<String> {
    PLAIN_CAUSE.with(|c| c.borrow_mut().take())
}

/// Inside [`encode_job`]: records a function's code offset and returns its
/// index. `None` anywhere else.
pub(crate) fn push_fn(offset: u64) -> Option<usize> {
    OUTGOING.with(|o| {
        let mut o = o.borrow_mut();
        let fns = o.as_mut()?.fns.as_mut()?;
        fns.push(offset);
        Some(fns.len() - 1)
    })
}

/// Inside [`decode_job`]: the function at `index` of the bootstrap's table.
pub(crate) fn take_fn(index: u32) -> Result<fn(), &'static str> {
    INCOMING.with(|i| {
        let i = i.borrow();
        let fns = i.as_ref().and_then(|inc| inc.fns.as_ref()).ok_or(
            "a function reference is accepted only from the bootstrap of a process started by shm, \
             never from other bytes",
        )?;
        fns.get(index as usize)
            .copied()
            .ok_or("function reference index out of range")
    })
}

#[derive(Serialize, Deserialize)]
struct SegmentWire {
    fd_index: u32,
    name: Option<String>,
}

/// A segment serialised outside a process bootstrap: where to find it.
#[derive(Serialize, Deserialize)]
struct SegmentRef {
    pid: u32,
    start: u64,
    fd: i32,
    dev: u64,
    ino: u64,
    name: Option<String>,
}

impl SegmentRef {
    fn of(seg: &Segment) -> Result<Self, std::io::Error> {
        let (dev, ino) = sys::file_identity(seg.fd())?;
        Ok(Self {
            pid: sys::getpid(),
            start: crate::liveness::own_start_time(),
            fd: seg.fd().as_raw_fd(),
            dev,
            ino,
            name: seg.name().map(str::to_owned),
        })
    }

    fn open(&self) -> Result<Segment, SegmentError> {
        let gone = |why: &str| SegmentError::Io {
            op: "open a segment sent by reference",
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{why} (descriptor {} of process {}): a handle sent as a message is good only while its \
                     sender holds the object",
                    self.fd, self.pid
                ),
            ),
        };
        if self.start != 0 && crate::liveness::start_time(self.pid) != Some(self.start) {
            return Err(gone("its sender has ended"));
        }
        let fd = sys::open_fd_of(self.pid, self.fd).map_err(|_| gone("its sender no longer holds it"))?;
        if sys::file_identity(fd.as_fd()).ok() != Some((self.dev, self.ino)) {
            return Err(gone("its sender no longer holds it (another file has its descriptor)"));
        }
        let mut seg = Segment::from_fd(fd, None)?;
        seg.set_name(self.name.clone());
        Ok(seg)
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = OUTGOING.with(|o| {
            o.borrow_mut().as_mut().map(|out| {
                out.fds.push(self.fd().as_raw_fd());
                out.fds.len() - 1
            })
        });
        let Some(index) = index else {
            return SegmentRef::of(self).map_err(S::Error::custom)?.serialize(serializer);
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
        if INCOMING.with(|i| i.borrow().is_none()) {
            let by_ref = SegmentRef::deserialize(deserializer)?;
            return by_ref.open().map_err(|e| {
                PLAIN_CAUSE.with(|c| *c.borrow_mut() = Some(e.to_string()));
                D::Error::custom(e)
            });
        }
        let wire = SegmentWire::deserialize(deserializer)?;
        let fd = INCOMING.with(|i| {
            let mut slot = i.borrow_mut();
            let inc = slot
                .as_mut()
                .ok_or("shared objects deserialise only in a process bootstrap")?;
            inc.fds
                .get_mut(wire.fd_index as usize)
                .ok_or("descriptor index out of range")?
                .take()
                .ok_or("descriptor index used twice")
        });
        let fd = fd.map_err(refuse)?;
        let mut seg = Segment::from_fd(fd, None).map_err(decode_error)?;
        seg.set_name(wire.name);
        Ok(seg)
    }
}
