//! A started child as the parent sees it: a pidfd (signals that cannot hit a
//! recycled pid, readiness on exit) and, for spawn and forkserver children,
//! the socket over which the child and the fork server report.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{BootstrapError, ProcessError};
use crate::sys;

/// Largest report packet.
pub(crate) const REPORT_MAX: usize = 4096;

/// What travels back to the parent over a child's socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The child took its bootstrap and is about to run its target.
    Started,
    /// The child could not run its target.
    Failed(BootstrapError),
    /// The fork server forked the child (its pidfd travels with this).
    Forked { pid: u32 },
    /// The fork server reaped the child.
    Exited { code: i32 },
}

/// How the parent learns that the child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reaper {
    /// A child of ours: we reap it through its pidfd.
    Us,
    /// A child of the fork server, which reaps it and reports the code.
    Server,
}

/// A started child.
#[derive(Debug)]
pub(crate) struct Popen {
    pub pid: u32,
    pub pidfd: OwnedFd,
    pub conn: Option<OwnedFd>,
    pub reaper: Reaper,
}

/// What a wait found out.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub code: Option<i32>,
    pub started: bool,
    pub failure: Option<BootstrapError>,
    pub status_lost: bool,
}

impl Popen {
    /// Sends `sig` to the child (nothing if it has ended).
    pub fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        sys::pidfd_signal(self.pidfd.as_fd(), sig).map_err(ProcessError::io("pidfd_send_signal"))
    }

    /// Waits up to `timeout` (forever if `None`) for the child to end,
    /// collecting what it reported on the way into `out`.
    pub fn wait(&self, timeout: Option<Duration>, out: &mut Outcome) -> Result<(), ProcessError> {
        match self.reaper {
            Reaper::Us => self.wait_ours(timeout, out),
            Reaper::Server => self.wait_server(timeout, out),
        }
    }

    fn wait_ours(&self, timeout: Option<Duration>, out: &mut Outcome) -> Result<(), ProcessError> {
        // Without a timeout, one blocking waitid; with one, poll first.
        if timeout.is_some() {
            let ready = sys::poll_readable(&[self.pidfd.as_fd()], timeout).map_err(ProcessError::io("poll"))?;
            if !ready[0] {
                return Ok(());
            }
        }
        let block = timeout.is_none();
        if let Some(code) = sys::wait_pidfd(self.pidfd.as_fd(), block).map_err(ProcessError::io("waitid"))? {
            out.code = Some(code);
            // The child has ended: whatever it reported is already queued.
            if let Some(conn) = &self.conn {
                drain(conn, Some(Duration::ZERO), out);
            }
        }
        Ok(())
    }

    fn wait_server(&self, timeout: Option<Duration>, out: &mut Outcome) -> Result<(), ProcessError> {
        let conn = self.conn.as_ref().expect("forkserver children have a report socket");
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !drain(conn, left, out) {
                // The server went away without reporting: it was killed. The
                // child is no child of ours, so its status is gone; wait for
                // it to end through its pidfd.
                let ready = sys::poll_readable(&[self.pidfd.as_fd()], left).map_err(ProcessError::io("poll"))?;
                if ready[0] {
                    out.status_lost = true;
                }
                return Ok(());
            }
            if out.code.is_some() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }
    }
}

/// Reads reports until there is nothing more within `timeout` or an exit is
/// seen. Returns false when the peer closed without an exit report.
pub(crate) fn drain(conn: &OwnedFd, timeout: Option<Duration>, out: &mut Outcome) -> bool {
    let mut wait = timeout;
    loop {
        match sys::poll_readable(&[conn.as_fd()], wait) {
            Ok(r) if r[0] => {}
            _ => return true,
        }
        let Ok((bytes, _fds)) = sys::recv_packet(conn.as_fd(), REPORT_MAX) else {
            return false;
        };
        if bytes.is_empty() {
            return out.code.is_some();
        }
        match postcard::from_bytes::<Report>(&bytes) {
            Ok(Report::Started) => out.started = true,
            Ok(Report::Failed(e)) => out.failure = Some(e),
            Ok(Report::Exited { code }) => {
                out.code = Some(code);
                return true;
            }
            // Forked is consumed at start; a malformed report is ignored: the
            // exit status still comes from the kernel or the server.
            Ok(Report::Forked { .. }) | Err(_) => {}
        }
        wait = Some(Duration::ZERO);
    }
}
