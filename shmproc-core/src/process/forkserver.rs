//! The fork server: a single-threaded process that forks children on request.
//!
//! `shmproc::init()` forks it at the top of `main`, while the program is still
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

/// The pid of the fork server this process talks to
/// ([`StartMethod::ForkServer`](crate::StartMethod::ForkServer)), or `None`
/// if none was started yet (`init()` starts it in the main process when
/// forkserver is the start method; the first forkserver start otherwise).
/// A fork server that died is replaced at the next start, under a new pid.
pub fn server_pid() -> Option<u32> {
    CLIENT.lock().ok().and_then(|c| c.as_ref().map(|c| c.server_pid))
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
    let env = bootstrap::child_env(&[(SERVER_ENV, "3".into()), (CLIENT_ENV, sys::getpid().to_string())]);
    let argv: Vec<_> = std::env::args_os().take(1).collect();
    let pid = sys::spawn_self(&argv, &env, theirs.as_fd()).map_err(ProcessError::io("posix_spawn"))?;
    drop(theirs);
    set_client(ours, pid);
    tracing::debug!(server = pid, "fork server (re)started by spawn");
    Ok(())
}

fn set_client(control: OwnedFd, server_pid: u32) {
    let mut c = CLIENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(old) = c.take() {
        // Reap a server that died (it is our child); ignore one of another process.
        let _ = sys::try_reap_pid(old.server_pid);
    }
    *c = Some(Client { control, server_pid });
}

/// In a process exec'd as a fork server: serve. Never returns.
pub(crate) fn serve_from_env(fd: &str) -> ! {
    let client: u32 = std::env::var(CLIENT_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: called from `init()`, first in `main` of a process exec'd as
    // the server: single-threaded, nobody else reads the environment.
    unsafe {
        std::env::remove_var(CLIENT_ENV);
    }
    let Ok(raw) = fd.parse() else { sys::exit_now(2) };
    // SAFETY: the spawning client placed the control socket at this
    // descriptor; nothing else in this fresh process owns it.
    let Ok(control) = (unsafe { sys::adopt_fd(raw) }) else {
        sys::exit_now(2)
    };
    serve(control, client)
}

/// A pidfd of this process, opened once per process (a fork child opens its own).
fn own_pidfd() -> Result<Arc<OwnedFd>, ProcessError> {
    static OWN: Mutex<Option<(u32, Arc<OwnedFd>)>> = Mutex::new(None);
    let pid = sys::getpid();
    let mut own = OWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((p, fd)) = own.as_ref()
        && *p == pid
    {
        return Ok(Arc::clone(fd));
    }
    let fd = Arc::new(sys::pidfd_open(pid).map_err(ProcessError::io("pidfd_open"))?);
    *own = Some((pid, Arc::clone(&fd)));
    Ok(fd)
}

/// Asks the server for a child that will run the bootstrap already queued on
/// `b`'s peer. Restarts the server once if it has died.
pub(crate) fn request(a: &OwnedFd, b: OwnedFd, daemon: bool) -> Result<(Popen, Outcome), ProcessError> {
    let body = postcard::to_allocvec(&Request {
        daemon,
        requester: sys::getpid(),
    })
    .expect("a small struct serialises");
    let me = own_pidfd()?;
    for attempt in 0..2 {
        let sent = {
            let c = CLIENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match c.as_ref() {
                Some(c) => sys::send_packet(c.control.as_fd(), &body, &[b.as_fd(), me.as_fd()]).is_ok(),
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
                source: std::io::Error::other("the fork server is not running and could not be restarted"),
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
        let (bytes, mut fds) = sys::recv_packet(a.as_fd(), REPORT_MAX).map_err(ProcessError::io("recvmsg"))?;
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
                pidfd,
                conn: Some(conn),
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

/// The fork server's state: its sockets and what it forked for whom.
struct Server {
    control: OwnedFd,
    client: OwnedFd,
    kids: Vec<Kid>,
    requesters: Vec<Requester>,
}

/// What one control message asks of the server.
enum Action {
    /// Nothing to do (a malformed request, or fork failed and was reported).
    Nothing,
    /// This process is the new child: run the bootstrap on `conn`.
    BecomeChild { conn: OwnedFd, daemon: bool },
    /// The client is gone.
    Shutdown,
}

/// The server loop. Never returns.
fn serve(control: OwnedFd, client_pid: u32) -> ! {
    // A server forked inside `init` must finish it here, or the children it
    // forks would find `init` running forever; one exec'd as the server
    // never ran it. Either way its children call `init()` in vain.
    super::init_done();
    sys::set_thread_name(c"shm-forkserver");
    // Ctrl-C goes to the whole process group; the server must survive it so
    // that the children it reaps keep their reports (Python does the same).
    sys::ignore_interrupt(true);
    // Computed once here, inherited by every child, which checks it.
    let _ = bootstrap::exe_identity();
    let Ok(client) = sys::pidfd_open(client_pid) else {
        sys::exit_now(0)
    };
    let mut server = Server {
        control,
        client,
        kids: Vec::new(),
        requesters: Vec::new(),
    };
    loop {
        let Some((control_ready, kid_ready, req_ready)) = server.poll() else {
            server.shutdown()
        };
        server.reap(&kid_ready);
        server.forget_requesters(&req_ready);
        if control_ready {
            match server.accept() {
                Action::Nothing => {}
                Action::Shutdown => server.shutdown(),
                Action::BecomeChild { conn, daemon } => {
                    // The child owns none of the server's descriptors.
                    drop(server);
                    sys::ignore_interrupt(false);
                    if daemon {
                        // Dies with the server, which dies with the client.
                        let _ = sys::kill_me_with_parent();
                    }
                    bootstrap::run_child(conn, false)
                }
            }
        }
    }
}

impl Server {
    /// Waits for work. Returns whether the control socket is readable and
    /// which children and requesters ended; `None` when the client died.
    fn poll(&self) -> Option<(bool, Vec<bool>, Vec<bool>)> {
        let mut fds: Vec<BorrowedFd<'_>> = vec![self.control.as_fd(), self.client.as_fd()];
        fds.extend(self.requesters.iter().map(|r| r.pidfd.as_fd()));
        fds.extend(self.kids.iter().map(|k| k.pidfd.as_fd()));
        let ready = sys::poll_readable(&fds, None).ok()?;
        if ready[1] {
            return None;
        }
        let nr = self.requesters.len();
        Some((ready[0], ready[2 + nr..].to_vec(), ready[2..2 + nr].to_vec()))
    }

    /// Reaps the children that ended and reports their exit codes.
    fn reap(&mut self, ready: &[bool]) {
        let mut k = 0;
        self.kids.retain(|kid| {
            let mut ended = false;
            if ready[k]
                && let Ok(Some(code)) = sys::wait_pidfd(kid.pidfd.as_fd(), false)
            {
                let bytes = postcard::to_allocvec(&Report::Exited { code }).unwrap_or_default();
                let _ = sys::send_packet(kid.conn.as_fd(), &bytes, &[]);
                ended = true;
            }
            k += 1;
            !ended
        });
    }

    /// Kills the daemonic children of requesters that died.
    fn forget_requesters(&mut self, ready: &[bool]) {
        let mut i = 0;
        let kids = &self.kids;
        self.requesters.retain(|r| {
            let dead = ready[i];
            i += 1;
            if dead {
                for kid in kids.iter().filter(|kid| kid.daemon && kid.requester == r.pid) {
                    let _ = sys::pidfd_signal(kid.pidfd.as_fd(), sys::SIGKILL);
                }
            }
            !dead
        });
    }

    /// Takes one request from the control socket and forks for it.
    fn accept(&mut self) -> Action {
        let (bytes, mut got) = match sys::recv_packet(self.control.as_fd(), 256) {
            Ok((bytes, got)) if bytes.is_empty() && got.is_empty() => return Action::Shutdown,
            Ok(packet) => packet,
            Err(_) => return Action::Shutdown,
        };
        let (Ok(req), 2) = (postcard::from_bytes::<Request>(&bytes), got.len()) else {
            return Action::Nothing;
        };
        let requester_fd = got.pop().expect("two descriptors");
        let conn = got.pop().expect("two descriptors");
        // SAFETY: the server is single-threaded.
        match unsafe { sys::fork() } {
            Ok(sys::Forked::Child) => Action::BecomeChild {
                conn,
                daemon: req.daemon,
            },
            Ok(sys::Forked::Parent(pid)) => {
                let Ok(pidfd) = sys::pidfd_open(pid) else {
                    return Action::Nothing;
                };
                let bytes = postcard::to_allocvec(&Report::Forked { pid }).unwrap_or_default();
                let _ = sys::send_packet(conn.as_fd(), &bytes, &[pidfd.as_fd()]);
                if !self.requesters.iter().any(|r| r.pid == req.requester) {
                    self.requesters.push(Requester {
                        pid: req.requester,
                        pidfd: requester_fd,
                    });
                }
                self.kids.push(Kid {
                    pidfd,
                    conn,
                    daemon: req.daemon,
                    requester: req.requester,
                });
                Action::Nothing
            }
            Err(_) => {
                let failed = Report::Failed(crate::BootstrapError::BadMessage(
                    "the fork server could not fork".into(),
                ));
                let bytes = postcard::to_allocvec(&failed).unwrap_or_default();
                let _ = sys::send_packet(conn.as_fd(), &bytes, &[]);
                Action::Nothing
            }
        }
    }

    /// Kills the daemonic children and exits.
    fn shutdown(&self) -> ! {
        for kid in self.kids.iter().filter(|k| k.daemon) {
            let _ = sys::pidfd_signal(kid.pidfd.as_fd(), sys::SIGKILL);
        }
        sys::exit_now(0)
    }
}
