//! What a child runs, and how a function travels to a new program.
//!
//! Under fork the child simply calls the target it inherited. Under spawn and
//! forkserver the child is another process image of the *same executable
//! file*, so a function is named by its code address relative to the start
//! of the executable's image: the same in every process running that file,
//! whatever address the loader picked. The parent sends two offsets: the
//! target `fn(A) -> R` itself and a monomorphised [`entry::<A, R>`] that
//! knows how to deserialise `A` and call a `fn(A) -> R`.
//!
//! The child trusts these offsets only after it has checked that it runs the
//! very file its parent runs (device and inode of `/proc/self/exe`, compared
//! in `bootstrap`) and that each offset lies inside this executable's code.
//! Nothing else can name code: there is no registry to forget, and no target
//! can "not exist" in a child that passed the check.

use std::os::fd::{OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BootstrapError, HandleError, ProcessError};
use crate::{handle, sys};

/// What a target's return value means for the exit code: `()` and plain
/// values give 0 (as a Python target's return value is ignored); `Err(e)`
/// prints `e` on stderr with the process name and gives 1.
pub trait ExitReport {
    /// The exit code this value stands for.
    fn exit_code(self) -> i32;
}

impl ExitReport for () {
    fn exit_code(self) -> i32 {
        0
    }
}

impl<T, E: std::fmt::Debug> ExitReport for Result<T, E> {
    fn exit_code(self) -> i32 {
        match self {
            Ok(_) => 0,
            Err(e) => {
                let me = super::current::current_process();
                eprintln!("Process {} (pid {}) failed: {e:?}", me.name(), me.pid());
                1
            }
        }
    }
}

macro_rules! value_exit_report {
    ($($t:ty),*) => {$(
        impl ExitReport for $t {
            fn exit_code(self) -> i32 { 0 }
        }
    )*};
}
value_exit_report!(
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str
);

impl<T> ExitReport for Vec<T> {
    fn exit_code(self) -> i32 {
        0
    }
}

impl<T> ExitReport for Option<T> {
    fn exit_code(self) -> i32 {
        0
    }
}

/// The type of [`entry`] once its generic parameters are fixed.
type Entry = fn(usize, &[u8], Vec<OwnedFd>, Vec<fn()>) -> Result<Box<dyn FnOnce() -> i32>, BootstrapError>;

/// A target with its arguments, ready for any start method.
pub(crate) trait Job: Send {
    /// Serialises the target for a new program image.
    fn encode(&self) -> Result<EncodedJob, ProcessError>;
    /// Runs the target in this process (a fork child, which exits after it)
    /// and returns the exit code.
    fn run(self: Box<Self>) -> i32;
}

/// A target as it travels: code offsets, argument bytes, the descriptors
/// of the shared objects among the arguments and the code offsets of the
/// function references among them ([`FnRef`]).
pub(crate) struct EncodedJob {
    pub entry: u64,
    pub target: u64,
    pub args: Vec<u8>,
    pub fds: Vec<RawFd>,
    pub fns: Vec<u64>,
}

/// `fn(A) -> R` with its arguments.
pub(crate) struct FnJob<A, R> {
    pub target: fn(A) -> R,
    pub args: A,
}

impl<A, R> Job for FnJob<A, R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: ExitReport + 'static,
{
    fn encode(&self) -> Result<EncodedJob, ProcessError> {
        let entry_fn: Entry = entry::<A, R>;
        let entry = code_offset(entry_fn as *const () as usize)?;
        let target = code_offset(self.target as *const () as usize)?;
        let (args, fds, fns) = handle::encode_job(&self.args)?;
        Ok(EncodedJob {
            entry,
            target,
            args,
            fds,
            fns,
        })
    }

    fn run(self: Box<Self>) -> i32 {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the box's contents are read exactly once and the box is
        // never used or freed again (ManuallyDrop): `run` is called only in a
        // fork child, which exits after it, and freeing would only write to a
        // heap page that the child shares copy-on-write with its parent.
        let FnJob { target, args } = unsafe { std::ptr::read(&raw const **this) };
        run_target(move || target(args))
    }
}

/// A closure: only a fork child can run it.
pub(crate) struct ClosureJob<F>(pub F);

impl<F, R> Job for ClosureJob<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: ExitReport,
{
    fn encode(&self) -> Result<EncodedJob, ProcessError> {
        Err(ProcessError::ClosureNeedsFork)
    }

    fn run(self: Box<Self>) -> i32 {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: as in `FnJob::run`: read once, never used or freed again.
        let ClosureJob(f) = unsafe { std::ptr::read(&raw const **this) };
        run_target(f)
    }
}

/// Runs a target, turning a panic into exit code 1 (the panic hook installed
/// in every child has printed the message with the process name).
pub(crate) fn run_target<R: ExitReport>(f: impl FnOnce() -> R) -> i32 {
    tracing::debug!("running target");
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.exit_code(),
        Err(_) => 1,
    }
}

/// Deserialises `A` (with the function references `fns` the bootstrap
/// resolved) and prepares a call of the `fn(A) -> R` at `target`.
fn entry<A, R>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
    fns: Vec<fn()>,
) -> Result<Box<dyn FnOnce() -> i32>, BootstrapError>
where
    A: DeserializeOwned + 'static,
    R: ExitReport + 'static,
{
    let args: A = handle::decode_job(args, fds, fns).map_err(arguments_error)?;
    // SAFETY: `target` is the address, in this process, of the function the
    // parent took as a `fn(A) -> R`: the parent sent its offset from the
    // image start, the child checked it runs the same executable file and
    // that the offset lies in its code (`resolve`), and this very `entry`
    // instance was chosen by the parent for the same `A` and `R`.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(target as *const ()) };
    Ok(Box::new(move || run_target(move || f(args))))
}

/// The bootstrap error for arguments that did not decode, keeping the cause
/// (and not repeating what the caller says around it).
fn arguments_error(e: HandleError) -> BootstrapError {
    match e {
        HandleError::Object(cause) => BootstrapError::Object(cause.to_string()),
        HandleError::Decode(detail) => BootstrapError::Arguments(detail),
        other => BootstrapError::Arguments(other.to_string()),
    }
}

/// Calls the entry at offset `entry` for the target at offset `target`, with
/// the function references at offsets `fns`.
///
/// # Safety
///
/// The offsets must come from [`FnJob::encode`] in a process running the
/// same executable file as this one.
pub(crate) unsafe fn prepare(
    entry_off: u64,
    target_off: u64,
    fn_offs: &[u64],
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Box<dyn FnOnce() -> i32>, BootstrapError> {
    let entry_addr = resolve(entry_off)?;
    let target_addr = resolve(target_off)?;
    let mut fns: Vec<fn()> = Vec::with_capacity(fn_offs.len());
    for &off in fn_offs {
        let addr = resolve(off)?;
        // SAFETY: by this function's contract the offset was taken from a
        // `fn()` (`FnRef::serialize` under `encode_job`) in a process running
        // this executable file; `resolve` checked it lies in its code.
        fns.push(unsafe { std::mem::transmute::<*const (), fn()>(addr as *const ()) });
    }
    // SAFETY: by this function's contract the offset names an `entry::<A, R>`
    // of this executable, whose type is `Entry`; `resolve` checked that the
    // address lies in this executable's code.
    let entry = unsafe { std::mem::transmute::<*const (), Entry>(entry_addr as *const ()) };
    entry(target_addr, args, fds, fns)
}

/// Offset of a code address from the image start.
fn code_offset(addr: usize) -> Result<u64, ProcessError> {
    let (start, end) = sys::code_range();
    if (start..end).contains(&addr) {
        Ok((addr - start) as u64)
    } else {
        Err(HandleError::Encode(
            "the target function is not code of the main executable (a function from a shared library cannot be \
             named in a new process)"
                .into(),
        )
        .into())
    }
}

/// Address of code offset `off`, if it lies inside this executable's code.
fn resolve(off: u64) -> Result<usize, BootstrapError> {
    let (start, end) = sys::code_range();
    let len = (end - start) as u64;
    if off < len {
        Ok(start + usize::try_from(off).expect("off < len, which fits usize"))
    } else {
        Err(BootstrapError::NoSuchTarget {
            offset: off,
            code_len: len,
        })
    }
}

/// The offset of code address `addr` from the start of this executable's
/// code, for a caller that sends it to a process of the same executable
/// over a channel only the two of them hold (a pool's task rings carry it
/// authenticated; see `shmproc-pool`). Not public API.
///
/// # Errors
///
/// [`ProcessError::Handle`] when `addr` is not code of the main executable.
#[doc(hidden)]
pub fn code_offset_of(addr: usize) -> Result<u64, ProcessError> {
    code_offset(addr)
}

/// The address of code offset `off` in this executable, if it lies inside
/// its code (see [`code_offset_of`]). Not public API.
///
/// # Errors
///
/// [`BootstrapError::NoSuchTarget`] for an offset past the code.
#[doc(hidden)]
pub fn code_address_of(off: u64) -> Result<usize, BootstrapError> {
    resolve(off)
}

/// A plain function that can travel to a child process of the same
/// executable (a barrier's action, say).
///
/// Under fork the child inherits it. Under spawn and forkserver it travels
/// only as (part of) the arguments of a [`Process`](crate::Process): its code
/// offset goes in the bootstrap message, beside the target's, and the child
/// resolves it only after checking that it runs its parent's very
/// executable. Anywhere else it neither serialises nor deserialises: bytes
/// from a queue, a pipe, a file or [`handle::decode`] can never become a
/// call.
#[derive(Clone, Copy)]
pub struct FnRef {
    f: fn(),
}

impl std::fmt::Debug for FnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnRef(..)")
    }
}

impl FnRef {
    /// Wraps `f`.
    pub fn new(f: fn()) -> Self {
        Self { f }
    }

    /// Calls the function.
    pub fn call(&self) {
        (self.f)();
    }
}

/// Outside a process bootstrap.
const FN_REF_ONLY_AS_ARGUMENT: &str = "a function reference travels only among the arguments of a process \
                                       started by shm (spawn or forkserver), never as other bytes";

impl Serialize for FnRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let off = code_offset(self.f as *const () as usize).map_err(serde::ser::Error::custom)?;
        let index = handle::push_fn(off).ok_or_else(|| serde::ser::Error::custom(FN_REF_ONLY_AS_ARGUMENT))?;
        u32::try_from(index)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for FnRef {
    /// Only an index into the table of functions that this process's
    /// bootstrap resolved: no bytes name code.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index: u32 = serde::Deserialize::deserialize(deserializer)?;
        let f = handle::take_fn(index).map_err(handle::refuse)?;
        Ok(Self { f })
    }
}

#[cfg(test)]
mod tests {
    use crate::sync::shared::AtomicU8;
    use crate::sync::shared::Ordering::Relaxed;

    use super::*;

    static CALLS: AtomicU8 = AtomicU8::new(0);

    fn bump() {
        // Relaxed: a counter read by this test's thread only.
        CALLS.fetch_add(1, Relaxed);
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads the executable's identity and code range from the OS")]
    fn fn_refs_never_come_from_plain_bytes() {
        // Index 0, and the old wire form (executable identity, offset).
        let forged = [
            postcard::to_allocvec(&0u32).expect("serialise"),
            postcard::to_allocvec(&(super::super::bootstrap::exe_identity(), 0u64)).expect("serialise"),
        ];
        for bytes in &forged {
            assert!(postcard::from_bytes::<FnRef>(bytes).is_err());
            let err = handle::decode::<FnRef>(bytes, Vec::new()).expect_err("forged bytes are no function");
            assert!(err.to_string().contains("bootstrap"), "{err}");
        }
        assert!(postcard::to_allocvec(&FnRef::new(bump)).is_err());
        assert!(handle::encode(&FnRef::new(bump)).is_err());
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads the executable's identity and code range from the OS")]
    fn fn_refs_travel_as_indices_into_the_bootstrap_table() {
        let (bytes, fds, fns) = handle::encode_job(&(7u8, FnRef::new(bump))).expect("encode");
        assert!(fds.is_empty() && fns.len() == 1);
        let (n, f): (u8, FnRef) = handle::decode_job(&bytes, Vec::new(), vec![bump]).expect("decode");
        f.call();
        assert_eq!((n, CALLS.load(Relaxed)), (7, 1));
        // An index past the table is an error, not a call.
        let bytes = postcard::to_allocvec(&(7u8, 1u32)).expect("serialise");
        assert!(handle::decode_job::<(u8, FnRef)>(&bytes, Vec::new(), vec![bump]).is_err());
    }
}
