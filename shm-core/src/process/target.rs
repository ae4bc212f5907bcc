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
type Entry = fn(usize, &[u8], Vec<OwnedFd>) -> Result<Box<dyn FnOnce() -> i32>, BootstrapError>;

/// A target with its arguments, ready for any start method.
pub(crate) trait Job: Send {
    /// Serialises the target for a new program image.
    fn encode(&self) -> Result<EncodedJob, ProcessError>;
    /// Runs the target in this process (a fork child, which exits after it)
    /// and returns the exit code.
    fn run(self: Box<Self>) -> i32;
}

/// A target as it travels: code offsets, argument bytes and the descriptors
/// of the shared objects among the arguments.
pub(crate) struct EncodedJob {
    pub entry: u64,
    pub target: u64,
    pub args: Vec<u8>,
    pub fds: Vec<RawFd>,
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
        let (args, fds) = handle::encode(&self.args)?;
        Ok(EncodedJob {
            entry,
            target,
            args,
            fds,
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

/// Deserialises `A` and prepares a call of the `fn(A) -> R` at `target`.
fn entry<A, R>(target: usize, args: &[u8], fds: Vec<OwnedFd>) -> Result<Box<dyn FnOnce() -> i32>, BootstrapError>
where
    A: DeserializeOwned + 'static,
    R: ExitReport + 'static,
{
    let args: A = handle::decode(args, fds).map_err(|e| BootstrapError::Arguments(e.to_string()))?;
    // SAFETY: `target` is the address, in this process, of the function the
    // parent took as a `fn(A) -> R`: the parent sent its offset from the
    // image start, the child checked it runs the same executable file and
    // that the offset lies in its code (`resolve`), and this very `entry`
    // instance was chosen by the parent for the same `A` and `R`.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(target as *const ()) };
    Ok(Box::new(move || run_target(move || f(args))))
}

/// Calls the entry at offset `entry` for the target at offset `target`.
///
/// # Safety
///
/// The offsets must come from [`FnJob::encode`] in a process running the
/// same executable file as this one.
pub(crate) unsafe fn prepare(
    entry_off: u64,
    target_off: u64,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Box<dyn FnOnce() -> i32>, BootstrapError> {
    let entry_addr = resolve(entry_off)?;
    let target_addr = resolve(target_off)?;
    // SAFETY: by this function's contract the offset names an `entry::<A, R>`
    // of this executable, whose type is `Entry`; `resolve` checked that the
    // address lies in this executable's code.
    let entry = unsafe { std::mem::transmute::<*const (), Entry>(entry_addr as *const ()) };
    entry(target_addr, args, fds)
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

/// A plain function that can travel to another process of the same
/// executable (a barrier's action, say): it serialises as its code offset
/// and the executable's identity, and deserialises only in a process that
/// runs the very same file, at an offset inside its code.
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

impl Serialize for FnRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let off = code_offset(self.f as *const () as usize).map_err(serde::ser::Error::custom)?;
        (super::bootstrap::exe_identity(), off).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for FnRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (exe, off): ((u64, u64), u64) = serde::Deserialize::deserialize(deserializer)?;
        if exe != super::bootstrap::exe_identity() {
            return Err(serde::de::Error::custom(BootstrapError::NotSameExecutable {
                parent: exe,
                child: super::bootstrap::exe_identity(),
            }));
        }
        let addr = resolve(off).map_err(serde::de::Error::custom)?;
        // SAFETY: the offset was taken from a `fn()` (FnRef::serialize) in a
        // process running this very executable file (checked above), and it
        // lies inside this executable's code (`resolve`).
        let f = unsafe { std::mem::transmute::<*const (), fn()>(addr as *const ()) };
        Ok(Self { f })
    }
}
