//! Who holds each end of a ring, and whether that peer is gone.

use std::sync::atomic::Ordering::Relaxed;

use super::Word;
use crate::sync;

/// Makes `role` name this process, registering it for the membarrier
/// handshake the first time.
pub(crate) fn claim(role: &Word) {
    let me = sync::owner_id();
    // Relaxed: an owner id for liveness checks only.
    if role.load(Relaxed) != me {
        role.store(me, Relaxed);
        sync::membarrier_register();
    }
}

/// Whether the peer closed its end, or (only when `check_alive`, since it
/// reads `/proc`) its process died.
pub(crate) fn peer_gone(closed: u32, bit: u32, peer: &Word, check_alive: bool) -> bool {
    // Relaxed: an owner id for a liveness check.
    let owner = peer.load(Relaxed);
    closed & bit != 0 || (check_alive && owner != 0 && !sync::owner_alive(owner))
}
