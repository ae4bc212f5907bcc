//! The peers ours is measured against, and the ends and drivers that run
//! them between two processes or threads.
//!
//! - [`raw_sync`]: futex wait/wake, a bare futex mutex and
//!   glibc's process-shared pthread mutexes;
//! - [`hand_ring`]: a hand-tuned SPSC ring of `u64`;
//! - [`ends`]: the ends of every peer case (ours, the hand ring, pipes,
//!   sockets, ipc-channel, crossbeam) behind small traits;
//! - [`ice`]: iceoryx2's publish-subscribe ends;
//! - [`drive`]: the round-trip and one-way drivers that walk the ends;
//! - [`mp_queue_pipe`]: `shmproc::Queue` and `Pipe` against Python's
//!   `multiprocessing.Queue` and `Pipe`.

pub mod drive;
pub mod ends;
pub mod hand_ring;
pub mod ice;
pub mod mp_queue_pipe;
pub mod raw_sync;
