//! [`DistJoinableQueue`]: Python's `JoinableQueue` across the job.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DistQueue, Local, message};
use crate::world::{MpiError, tag};

/// A [`DistQueue`] that counts unfinished tasks (Python's
/// `JoinableQueue`), made by [`World::joinable_queue`](crate::World::joinable_queue): every put adds
/// one, every [`task_done`](Self::task_done) from any rank takes one, and
/// [`join`](Self::join) on any rank waits for none. Derefs to the
/// [`DistQueue`] for `put` and `get`.
pub struct DistJoinableQueue<T> {
    pub(super) queue: DistQueue<T>,
}

impl<T> std::fmt::Debug for DistJoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistJoinableQueue").field("queue", &self.queue).finish()
    }
}

impl<T> std::ops::Deref for DistJoinableQueue<T> {
    type Target = DistQueue<T>;
    fn deref(&self) -> &DistQueue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> DistJoinableQueue<T> {
    /// Says that a task taken from the queue is finished.
    ///
    /// # Errors
    ///
    /// [`MpiError::Refused`] (or, in shared memory,
    /// [`MpiError::Message`]) when called more times than items were put.
    pub fn task_done(&self) -> Result<(), MpiError> {
        // (No flush first: the item a task_done is for came out of the
        // queue, so it was counted; a flush here could wait for room that
        // only this thread's gets make.)
        let q = &self.queue;
        if let Some(Local::Joinable(j)) = &q.local {
            q.stats.local();
            return j.task_done().map_err(message);
        }
        q.stats.remote();
        q.ask(tag::TASK_DONE, &[]).map(drop)
    }

    /// Waits until every item put (by any rank) has been marked done.
    ///
    /// # Errors
    ///
    /// Only for a remote owner that could not be asked.
    pub fn join(&self) -> Result<(), MpiError> {
        self.join_until(None).map(drop)
    }

    /// Waits up to `timeout`; whether every item was marked done.
    ///
    /// # Errors
    ///
    /// As [`Self::join`].
    pub fn join_timeout(&self, timeout: std::time::Duration) -> Result<bool, MpiError> {
        self.join_until(Some(timeout))
    }

    fn join_until(&self, timeout: Option<std::time::Duration>) -> Result<bool, MpiError> {
        let q = &self.queue;
        // This handle's puts count before it joins.
        q.flush()?;
        if let Some(Local::Joinable(j)) = &q.local {
            q.stats.local();
            return Ok(match timeout {
                None => {
                    j.join();
                    true
                }
                Some(t) => j.join_timeout(t),
            });
        }
        q.stats.remote();
        let ms = timeout.map_or(u64::MAX, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX - 1));
        let reply = q.ask(tag::JOIN, &ms.to_le_bytes())?;
        Ok(reply.first() == Some(&1))
    }

    /// Items put and not yet marked done, on a rank of the owner's node
    /// (`None` elsewhere).
    pub fn unfinished(&self) -> Option<usize> {
        match &self.queue.local {
            Some(Local::Joinable(j)) => Some(j.unfinished()),
            _ => None,
        }
    }
}
