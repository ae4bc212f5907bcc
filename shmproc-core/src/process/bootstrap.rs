//! The message that tells a spawned or forkserver child what to run, and the
//! child's side of it: check, attach, report, run, exit.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::current::{self, ChildInfo};
use super::popen::Report;
use super::target::{self, EncodedJob};
use crate::error::{BootstrapError, ProcessError};
use crate::{log, sys};

/// Environment variable that marks a spawned child: its bootstrap socket's descriptor.
pub(crate) const SPAWN_ENV: &str = "SHM_SPAWN_FD";
/// Arguments larger than this travel in a memfd instead of inline.
const INLINE_ARGS_MAX: usize = 32 * 1024;
/// Largest bootstrap packet.
const PACKET_MAX: usize = 64 * 1024;
/// Largest argument payload accepted from a memfd (1 GiB).
const ARGS_MAX: u64 = 1 << 30;

#[derive(Serialize, Deserialize)]
struct Bootstrap {
    exe: (u64, u64),
    info: ChildInfo,
    entry: u64,
    target: u64,
    /// Code offsets of the function references among the arguments, which
    /// deserialise as indices into this list ([`target::FnRef`]).
    fns: Vec<u64>,
    /// `None` when the arguments travel in the first descriptor.
    args: Option<Vec<u8>>,
}

/// The running executable's identity, computed once.
pub(crate) fn exe_identity() -> (u64, u64) {
    static EXE: OnceLock<(u64, u64)> = OnceLock::new();
    *EXE.get_or_init(|| sys::exe_identity().unwrap_or((0, 0)))
}

/// Sends the bootstrap for `job` over `sock`.
pub(crate) fn send(sock: BorrowedFd<'_>, info: &ChildInfo, job: &EncodedJob) -> Result<(), ProcessError> {
    let mut fds: Vec<RawFd> = Vec::with_capacity(job.fds.len() + 1);
    let args_fd;
    let inline = if job.args.len() <= INLINE_ARGS_MAX {
        args_fd = None;
        Some(job.args.clone())
    } else {
        let fd = sys::memfd_with(c"shm:args", &job.args).map_err(ProcessError::io("memfd"))?;
        args_fd = Some(fd);
        None
    };
    let msg = Bootstrap {
        exe: exe_identity(),
        info: info.clone(),
        entry: job.entry,
        target: job.target,
        fns: job.fns.clone(),
        args: inline,
    };
    let bytes = postcard::to_allocvec(&msg).map_err(|e| crate::HandleError::Encode(e.to_string()))?;
    if let Some(fd) = &args_fd {
        fds.push(std::os::fd::AsRawFd::as_raw_fd(fd));
    }
    fds.extend_from_slice(&job.fds);
    // SAFETY: every descriptor is open for the duration of this call: the
    // args memfd is owned above, and the object descriptors are owned by the
    // arguments, which the caller keeps alive until `send` returns.
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) }).collect();
    match sys::send_packet(sock, &bytes, &borrowed) {
        Ok(()) => Ok(()),
        // The child is already gone; `join` will report how it ended.
        Err(e) if sys::is_peer_gone(&e) => Ok(()),
        Err(e) => Err(ProcessError::Io {
            op: "sendmsg",
            source: e,
        }),
    }
}

fn report(sock: BorrowedFd<'_>, r: &Report) {
    if let Ok(bytes) = postcard::to_allocvec(r) {
        let _ = sys::send_packet(sock, &bytes, &[]);
    }
}

/// In a fresh child: reads the bootstrap from `sock`, checks it, reports
/// (`Started` only when `confirm`: a spawned child may be a program that
/// forgot `shmproc::init()`, a forkserver child cannot), runs the target and
/// exits. Never returns.
pub(crate) fn run_child(sock: OwnedFd, confirm: bool) -> ! {
    let prepared = receive(sock.as_fd());
    match prepared {
        Ok((start, run)) => {
            if confirm {
                report(sock.as_fd(), &Report::Started);
            }
            drop(sock);
            super::launch::child_main(start, run)
        }
        Err(e) => {
            report(sock.as_fd(), &Report::Failed(e.clone()));
            let _ = writeln!(std::io::stderr(), "shm: {e}");
            sys::exit_now(1)
        }
    }
}

type Prepared = (super::launch::ChildStart, Box<dyn FnOnce() -> i32>);

fn receive(sock: BorrowedFd<'_>) -> Result<Prepared, BootstrapError> {
    let (bytes, mut fds) =
        sys::recv_packet(sock, PACKET_MAX).map_err(|e| BootstrapError::BadMessage(format!("receiving: {e}")))?;
    if bytes.is_empty() {
        return Err(BootstrapError::BadMessage(
            "the parent closed the socket before sending".into(),
        ));
    }
    let msg: Bootstrap = postcard::from_bytes(&bytes).map_err(|e| BootstrapError::BadMessage(e.to_string()))?;
    let mine = exe_identity();
    if msg.exe != mine {
        return Err(BootstrapError::NotSameExecutable {
            parent: msg.exe,
            child: mine,
        });
    }
    let args = if let Some(a) = msg.args {
        a
    } else {
        if fds.is_empty() {
            return Err(BootstrapError::BadMessage("argument descriptor missing".into()));
        }
        let fd = fds.remove(0);
        sys::read_whole(fd.as_fd(), ARGS_MAX)
            .map_err(|e| BootstrapError::BadMessage(format!("reading arguments: {e}")))?
    };
    // SAFETY: the offsets (target, entry and function references) were
    // produced by `FnJob::encode` in the parent, which runs the same
    // executable file as this process (checked above).
    let run = unsafe { target::prepare(msg.entry, msg.target, &msg.fns, &args, fds)? };
    if let Some(level) = msg.info.log_level {
        log::init_child_logging(level);
    }
    super::launch::install_panic_hook();
    let start = super::launch::ChildStart::of(&msg.info);
    current::become_child(msg.info);
    let _ = BOOTSTRAPPED.set(());
    // The target may call `init()` again (libraries do, defensively): it
    // must neither dispatch nor fork a server of its own; a fork server, if
    // this child needs one, is spawned on first use.
    super::init_done();
    Ok((start, run))
}

static BOOTSTRAPPED: OnceLock<()> = OnceLock::new();

/// Whether this process is a spawn or forkserver child: its `main` called
/// `shmproc::init()` (that is how it got here), so this executable can be
/// spawned again to serve as a fork server.
pub(crate) fn bootstrapped() -> bool {
    BOOTSTRAPPED.get().is_some()
}

/// Whether this process was spawned by shm and has not yet taken its
/// bootstrap (`shmproc::init()` missing from `main`).
pub(crate) fn pending_spawn() -> bool {
    // Decided at the first start: `init()`, which removes the variable, runs
    // before any start in a program that calls it.
    static PENDING: OnceLock<bool> = OnceLock::new();
    *PENDING.get_or_init(|| std::env::var_os(SPAWN_ENV).is_some())
}

/// Reports a missing `init()` to the parent of a spawned child.
pub(crate) fn report_missing_init() {
    if let Some(fd) = std::env::var_os(SPAWN_ENV).and_then(|v| v.to_str()?.parse::<RawFd>().ok()) {
        // SAFETY: the spawn protocol placed our bootstrap socket at this
        // descriptor and nothing else in the process claims it.
        if let Ok(sock) = unsafe { sys::adopt_fd(fd) } {
            report(sock.as_fd(), &Report::Failed(BootstrapError::MissingInit));
            std::mem::forget(sock);
        }
    }
}

/// The environment for a child program: ours, without shm's private variables.
pub(crate) fn child_env(extra: &[(&str, String)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != SPAWN_ENV && k != super::forkserver::SERVER_ENV && k != super::forkserver::CLIENT_ENV)
        .collect();
    env.extend(extra.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::StartMethod;
    use crate::process::target::{FnJob, Job};

    fn info() -> ChildInfo {
        ChildInfo {
            name: "Process-test".into(),
            identity: vec![9],
            daemon: false,
            parent_pid: 1,
            parent_start: 0,
            parent_name: "MainProcess".into(),
            parent_main_thread: true,
            method: StartMethod::Spawn,
            log_level: None,
        }
    }

    fn target(x: u32) -> u32 {
        x
    }

    fn encoded() -> EncodedJob {
        let job = FnJob { target, args: 5u32 };
        job.encode().expect("a fn of this executable encodes")
    }

    /// Sends `msg` (with no descriptors) and runs the child's side of it.
    fn receive_raw(bytes: &[u8]) -> Result<Prepared, BootstrapError> {
        let (a, b) = sys::seqpacket_pair().expect("socketpair");
        sys::send_packet(a.as_fd(), bytes, &[]).expect("send");
        receive(b.as_fd())
    }

    fn receive_msg(msg: &Bootstrap) -> Result<Prepared, BootstrapError> {
        receive_raw(&postcard::to_allocvec(msg).expect("serialise"))
    }

    fn message(job: &EncodedJob) -> Bootstrap {
        Bootstrap {
            exe: exe_identity(),
            info: info(),
            entry: job.entry,
            target: job.target,
            fns: job.fns.clone(),
            args: Some(job.args.clone()),
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads the executable's identity and code range from the OS")]
    fn a_good_bootstrap_prepares_the_target() {
        let (got, run) = receive_msg(&message(&encoded())).expect("valid bootstrap");
        assert_eq!(got.method, StartMethod::Spawn);
        assert_eq!(crate::current_process().name(), "Process-test");
        assert_eq!(run(), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads the executable's identity and code range from the OS")]
    fn another_executable_is_refused() {
        let mut msg = message(&encoded());
        msg.exe = (1, 2);
        assert!(matches!(
            receive_msg(&msg).map(|_| ()),
            Err(BootstrapError::NotSameExecutable { parent: (1, 2), .. })
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads the executable's identity and code range from the OS")]
    fn offsets_outside_the_code_are_refused() {
        let mut msg = message(&encoded());
        msg.target = u64::MAX;
        assert!(matches!(
            receive_msg(&msg).map(|_| ()),
            Err(BootstrapError::NoSuchTarget { .. })
        ));
        let mut msg = message(&encoded());
        msg.entry = 1 << 40;
        assert!(matches!(
            receive_msg(&msg).map(|_| ()),
            Err(BootstrapError::NoSuchTarget { .. })
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs SOCK_SEQPACKET sockets, which Miri lacks")]
    fn malformed_messages_are_refused() {
        assert!(matches!(
            receive_raw(b"\xff\xff\xff").map(|_| ()),
            Err(BootstrapError::BadMessage(_))
        ));
        let (a, b) = sys::seqpacket_pair().expect("socketpair");
        drop(a);
        assert!(matches!(
            receive(b.as_fd()).map(|_| ()),
            Err(BootstrapError::BadMessage(_))
        ));
        let mut msg = message(&encoded());
        msg.args = None;
        let err = receive_msg(&msg).map(|_| ()).expect_err("no argument descriptor");
        assert!(err.to_string().contains("argument descriptor missing"), "{err}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads the executable's identity and code range from the OS")]
    fn bad_arguments_are_an_error_for_this_child_only() {
        let mut msg = message(&encoded());
        msg.args = Some(vec![]);
        assert!(matches!(
            receive_msg(&msg).map(|_| ()),
            Err(BootstrapError::Arguments(_))
        ));
    }
}
