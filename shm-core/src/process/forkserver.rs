//! The fork server: a single-threaded process that forks children on request.
//!
//! `shm::init()` forks it at the top of `main`, while the program is still
//! single-threaded, so its children start from a clean, lock-free image yet
//! cost only a fork. If it dies it is started again by spawning this
//! executable (safe from a multi-threaded client), which runs `init()` and
//! becomes the server.
//!
//! Protocol, all over `SOCK_SEQPACKET` sockets:
//!
//! 1. The client makes a socket pair `(a, b)`, sends the child's bootstrap on
//!    `a` (it waits in `b`), then sends a request with `b` and a pidfd of
//!    itself to the server over the shared control socket.
//! 2. The server forks. The child reads its bootstrap from `b` and runs. The
//!    server sends `Forked { pid }` with a pidfd of the child on `b`.
//! 3. When the child ends, the server reaps it and sends `Exited { code }`
//!    on `b`, then closes it.
//! 4. When a requester dies, the server SIGKILLs the daemonic children it
//!    asked for; when the main client dies, the server kills all daemonic
//!    children and exits. Non-daemonic children live on, as in Python.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::bootstrap;
use super::popen::{Outcome, Popen, REPORT_MAX, Reaper, Report};
use crate::error::ProcessError;
use crate::sys;

/// Environment variable marking an exec'd fork server: its control socket.
pub(crate) const SERVER_ENV: &str = "SHM_FORKSERVER_FD";
/// Environment variable giving an exec'd fork server its client's pid.
pub(crate) const CLIENT_ENV: &str = "SHM_FORKSERVER_CLIENT";

#[derive(Serialize, Deserialize)]
struct Request {
    daemon: bool,
    requester: u32,
}

struct Client {
    control: OwnedFd,
    server_pid: u32,
}

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

/// Whether a server was started in this process (or inherited by fork).
pub(crate) fn is_running() -> bool {
    CLIENT.lock().is_ok_and(|c| c.is_some())
}

/// The pid of the fork server this process talks to, if one was started.
pub fn server_pid() -> Option<u32> {
    CLIENT
        .lock()
        .ok()
        .and_then(|c| c.as_ref().map(|c| c.server_pid))
}

/// Forks the server from this (single-threaded) process.
pub(crate) fn start_by_fork() -> Result<(), ProcessError> {
    let (ours, theirs) = sys::seqpacket_pair().map_err(ProcessError::io("socketpair"))?;
    let client_pid = sys::getpid();
    // SAFETY: called from `init()` only when this process has a single
    // thread, so the child may run ordinary code.
    match unsafe { sys::fork() }.map_err(ProcessError::io("fork"))? {
        sys::Forked::Child => {
            drop(ours);
            serve(theirs, client_pid)
        }
        sys::Forked::Parent(pid) => {
            drop(theirs);
            set_client(ours, pid);
            tracing::debug!(server = pid, "fork server started");
            Ok(())
        }
    }
}

/// Starts the server by spawning this executable (safe with threads).
fn start_by_spawn() -> Result<(), ProcessError> {
    let (ours, theirs) = sys::seqpacket_pair().map_err(ProcessError::io("socketpair"))?;
    let env = bootstrap::child_env(&[
        (SERVER_ENV, "3".into()),
        (CLIENT_ENV, sys::getpid().to_string()),
    ]);
    let argv: Vec<_> = std::env::args_os().take(1).collect();
    let pid =
        sys::spawn_self(&argv, &env, theirs.as_fd()).map_err(ProcessError::io("posix_spawn"))?;
    drop(theirs);
    set_client(ours, pid);
    tracing::debug!(server = pid, "fork server (re)started by spawn");
    Ok(())
}

fn set_client(control: OwnedFd, server_pid: u32) {
    let mut c = CLIENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(old) = c.take() {
        // Reap a server that died (it is our child); ignore one of another process.
        let _ = sys::try_reap_pid(old.server_pid);
    }
    *c = Some(Client {
        control,
        server_pid,
    });
}

/// In a process exec'd as a fork server: serve. Never returns.
pub(crate) fn serve_from_env(fd: &str) -> ! {
    let client: u32 = std::env::var(CLIENT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let Ok(raw) = fd.parse() else {
        sys::exit_now(2)
    };
    // SAFETY: the spawning client placed the control socket at this
    // descriptor; nothing else in this fresh process owns it.
    let Ok(control) = (unsafe { sys::adopt_fd(raw) }) else {
        sys::exit_now(2)
    };
    serve(control, client)
}

/// Asks the server for a child that will run the bootstrap already queued on
/// `b`'s peer. Restarts the server once if it has died.
pub(crate) fn request(
    a: &OwnedFd,
    b: OwnedFd,
    daemon: bool,
) -> Result<(Popen, Outcome), ProcessError> {
    let body = postcard::to_allocvec(&Request {
        daemon,
        requester: sys::getpid(),
    })
    .expect("a small struct serialises");
    let me = sys::pidfd_open(sys::getpid()).map_err(ProcessError::io("pidfd_open"))?;
    for attempt in 0..2 {
        let sent = {
            let c = CLIENT
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match c.as_ref() {
                Some(c) => {
                    sys::send_packet(c.control.as_fd(), &body, &[b.as_fd(), me.as_fd()]).is_ok()
                }
                None => false,
            }
        };
        if !sent {
            if attempt == 0 {
                start_by_spawn()?;
                continue;
            }
            return Err(ProcessError::Io {
                op: "fork server request",
                source: std::io::Error::other(
                    "the fork server is not running and could not be restarted",
                ),
            });
        }
        drop(b);
        return await_forked(a);
    }
    unreachable!("the loop returns on its second attempt")
}

/// Waits for the server's `Forked`. The child's own first report may come
/// before it: such reports are kept in the returned outcome.
fn await_forked(a: &OwnedFd) -> Result<(Popen, Outcome), ProcessError> {
    let mut early = Outcome::default();
    loop {
        let (bytes, mut fds) =
            sys::recv_packet(a.as_fd(), REPORT_MAX).map_err(ProcessError::io("recvmsg"))?;
        if bytes.is_empty() && fds.is_empty() {
            return Err(ProcessError::StatusLost {
                name: String::new(),
                why: "the fork server closed the connection before forking",
            });
        }
        let report = postcard::from_bytes(&bytes);
        if let Ok(Report::Started) = report {
            early.started = true;
        } else if let Ok(Report::Failed(e)) = report {
            early.failure = Some(e);
        } else if let Ok(Report::Forked { pid }) = report {
            let pidfd = fds.pop().ok_or_else(|| ProcessError::Io {
                op: "fork server reply",
                source: std::io::Error::other("no pidfd with the reply"),
            })?;
            let conn = a.try_clone().map_err(ProcessError::io("dup"))?;
            let popen = Popen {
                pid,
                pidfd: Arc::new(pidfd),
                conn: Some(Arc::new(conn)),
                reaper: Reaper::Server,
            };
            return Ok((popen, early));
        }
    }
}

struct Kid {
    pidfd: OwnedFd,
    conn: OwnedFd,
    daemon: bool,
    requester: u32,
}

struct Requester {
    pid: u32,
    pidfd: OwnedFd,
}

/// The server loop. Never returns.
fn serve(control: OwnedFd, client_pid: u32) -> ! {
    sys::set_thread_name(c"shm-forkserver");
    // Ctrl-C goes to the whole process group; the server must survive it so
    // that the children it reaps keep their reports (Python does the same).
    sys::ignore_interrupt(true);
    let Ok(client) = sys::pidfd_open(client_pid) else {
        sys::exit_now(0)
    };
    let mut kids: Vec<Kid> = Vec::new();
    let mut requesters: Vec<Requester> = Vec::new();
    loop {
        let mut fds: Vec<BorrowedFd<'_>> = vec![control.as_fd(), client.as_fd()];
        fds.extend(requesters.iter().map(|r| r.pidfd.as_fd()));
        fds.extend(kids.iter().map(|k| k.pidfd.as_fd()));
        let Ok(ready) = sys::poll_readable(&fds, None) else {
            shutdown(&kids)
        };
        let (nr, nk) = (requesters.len(), kids.len());
        let kid_ready: Vec<bool> = ready[2 + nr..2 + nr + nk].to_vec();
        let req_ready: Vec<bool> = ready[2..2 + nr].to_vec();
        if ready[1] {
            shutdown(&kids);
        }
        // Children that ended: reap and report.
        let mut i = 0;
        let mut k = 0;
        kids.retain(|kid| {
            let mut ended = false;
            if kid_ready[k]
                && let Ok(Some(code)) = sys::wait_pidfd(kid.pidfd.as_fd(), false)
            {
                let bytes = postcard::to_allocvec(&Report::Exited { code }).unwrap_or_default();
                let _ = sys::send_packet(kid.conn.as_fd(), &bytes, &[]);
                ended = true;
            }
            k += 1;
            !ended
        });
        // Requesters that died: their daemonic children die with them.
        requesters.retain(|r| {
            let dead = req_ready[i];
            i += 1;
            if dead {
                for kid in kids
                    .iter()
                    .filter(|kid| kid.daemon && kid.requester == r.pid)
                {
                    let _ = sys::pidfd_signal(kid.pidfd.as_fd(), sys::SIGKILL);
                }
            }
            !dead
        });
        if ready[0] {
            match sys::recv_packet(control.as_fd(), 256) {
                Ok((bytes, mut got)) if got.len() == 2 => {
                    let Ok(req) = postcard::from_bytes::<Request>(&bytes) else {
                        continue;
                    };
                    let requester_fd = got.pop().expect("two descriptors");
                    let conn = got.pop().expect("two descriptors");
                    let requester = req.requester;
                    // SAFETY: the server is single-threaded.
                    match unsafe { sys::fork() } {
                        Ok(sys::Forked::Child) => {
                            drop(kids);
                            drop(requesters);
                            drop(requester_fd);
                            drop(client);
                            drop(control);
                            sys::ignore_interrupt(false);
                            if req.daemon {
                                // Dies with the server, which dies with the client.
                                let _ = sys::kill_me_with_parent();
                            }
                            super::bootstrap::run_child(conn)
                        }
                        Ok(sys::Forked::Parent(pid)) => {
                            let Ok(pidfd) = sys::pidfd_open(pid) else {
                                continue;
                            };
                            let bytes =
                                postcard::to_allocvec(&Report::Forked { pid }).unwrap_or_default();
                            let _ = sys::send_packet(conn.as_fd(), &bytes, &[pidfd.as_fd()]);
                            if !requesters.iter().any(|r| r.pid == requester) {
                                requesters.push(Requester {
                                    pid: requester,
                                    pidfd: requester_fd,
                                });
                            }
                            kids.push(Kid {
                                pidfd,
                                conn,
                                daemon: req.daemon,
                                requester,
                            });
                        }
                        Err(_) => {
                            let bytes = postcard::to_allocvec(&Report::Failed(
                                crate::BootstrapError::BadMessage(
                                    "the fork server could not fork".into(),
                                ),
                            ))
                            .unwrap_or_default();
                            let _ = sys::send_packet(conn.as_fd(), &bytes, &[]);
                        }
                    }
                }
                // A malformed request: ignore it.
                Ok((bytes, got)) if !bytes.is_empty() || !got.is_empty() => {}
                // End of file or an error: the client is gone.
                _ => shutdown(&kids),
            }
        }
    }
}

/// Kills the daemonic children and exits.
fn shutdown(kids: &[Kid]) -> ! {
    for kid in kids.iter().filter(|k| k.daemon) {
        let _ = sys::pidfd_signal(kid.pidfd.as_fd(), sys::SIGKILL);
    }
    sys::exit_now(0)
}
