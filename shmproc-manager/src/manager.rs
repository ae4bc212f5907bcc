//! [`Manager`]: Python's `SyncManager` set in one place.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_collections::queue::{JoinableQueue, Queue};
use shmproc_core::sys::{Deadline, futex_wait};
use shmproc_core::{FnRef, Process, ShmSafe, StartMethod};
use shmproc_sync::{Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, Value};

use crate::error::ManagerError;
use crate::served::hub::Hub;
use crate::served::server::{ServeArgs, creator, serve};
use crate::served::{Proxy, Request, Response, Served, round_trip};
use crate::{Dict, List, Namespace};

/// Hands out every object of Python's `SyncManager`: containers used in
/// place ([`Dict`], [`List`], [`Namespace`]), `Value`, `Array`, the
/// synchronisation objects and queues (each in shared memory of its own),
/// and instances of user types served by a manager process.
///
/// Python's manager runs a server process for everything; here only user
/// types need one, so [`Manager::new`] starts no process, and
/// [`Manager::builder`] with [`register`](ManagerBuilder::register)ed
/// types starts one (a daemon named `SyncManager-1`, like Python's).
/// Dropping the manager shuts that process down; the objects it served go
/// with it (handles to them then fail with
/// [`ManagerError::ManagerGone`]). Everything else lives on while any
/// process holds a handle.
///
/// ```
/// # fn main() -> Result<(), shmproc_manager::ManagerError> {
/// let m = shmproc_manager::Manager::new()?;
/// let d = m.dict::<u32, u32>()?;
/// d.set(&1, &2)?;
/// let l = m.list::<String>()?;
/// l.push(&"a".into())?;
/// # Ok(()) }
/// ```
pub struct Manager {
    server: Option<Server>,
}

struct Server {
    hub: Arc<Hub>,
    process: Process,
    types: Vec<String>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("server_pid", &self.server_pid())
            .field("types", &self.server.as_ref().map(|s| &s.types))
            .finish()
    }
}

/// Builds a [`Manager`] with user types registered.
#[derive(Default)]
pub struct ManagerBuilder {
    types: Vec<(String, FnRef)>,
    method: Option<StartMethod>,
}

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("types", &self.types.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("method", &self.method)
            .finish()
    }
}

fn type_key<T>() -> String {
    std::any::type_name::<T>().to_owned()
}

impl ManagerBuilder {
    /// Registers `T` (Python's `BaseManager.register`): the manager process
    /// can then own instances of it, made with [`Manager::create`].
    #[must_use]
    pub fn register<T: Served>(mut self) -> Self {
        self.types.push((type_key::<T>(), creator::<T>()));
        self
    }

    /// The start method of the manager process (default: the context's).
    #[must_use]
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Starts the manager (and its process, if a type was registered);
    /// returns once the process serves.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Segment`] when the hub cannot be made;
    /// [`ManagerError::Process`] when the process does not start or dies
    /// before it serves.
    pub fn start(self) -> Result<Manager, ManagerError> {
        if self.types.is_empty() {
            return Ok(Manager { server: None });
        }
        let hub = Hub::create()?;
        let names = self.types.iter().map(|(n, _)| n.clone()).collect();
        let args = ServeArgs {
            hub: Arc::clone(&hub),
            types: self.types,
        };
        let mut process = Process::new(serve, args).with_name("SyncManager-1").with_daemon(true);
        if let Some(m) = self.method {
            process = process.with_start_method(m);
        }
        process.start().map_err(|e| ManagerError::Process(e.to_string()))?;
        while hub.server() == 0 {
            if let Some(code) = process.exitcode() {
                return Err(ManagerError::Process(format!(
                    "the manager process ended with code {code} before it served"
                )));
            }
            futex_wait(
                hub.server_word(),
                0,
                Some(Deadline::after(shmproc_core::LIVENESS_SLICE)),
            );
        }
        Ok(Manager {
            server: Some(Server {
                hub,
                process,
                types: names,
            }),
        })
    }
}

impl Manager {
    /// A manager with no user types (no process; see [`Manager::builder`]).
    pub fn new() -> Result<Self, ManagerError> {
        ManagerBuilder::default().start()
    }

    /// A builder, to register user types.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// The manager process's pid, if it runs one.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(|s| s.process.pid())
    }

    /// A new, empty [`Dict`].
    pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<Dict<K, V>, ManagerError> {
        Dict::new()
    }

    /// A new, empty [`List`].
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<List<T>, ManagerError> {
        List::new()
    }

    /// A new [`Namespace`] with no attributes.
    pub fn namespace(&self) -> Result<Namespace, ManagerError> {
        Namespace::new()
    }

    /// A [`Value`] with its own lock (Python's `manager.Value(typecode, v)`).
    pub fn value<T: ShmSafe>(&self, value: T) -> Result<Value<T>, ManagerError> {
        Ok(Value::new(value)?)
    }

    /// An [`Array`] holding a copy of `items`, with its own lock.
    pub fn array<T: ShmSafe>(&self, items: &[T]) -> Result<Array<T>, ManagerError> {
        Ok(Array::from_slice(items)?)
    }

    /// A new [`Lock`].
    pub fn lock(&self) -> Result<Lock, ManagerError> {
        Ok(Lock::new()?)
    }

    /// A new [`RLock`].
    pub fn rlock(&self) -> Result<RLock, ManagerError> {
        Ok(RLock::new()?)
    }

    /// A new [`Semaphore`] starting at `value`.
    pub fn semaphore(&self, value: u32) -> Result<Semaphore, ManagerError> {
        Ok(Semaphore::new(value)?)
    }

    /// A new [`BoundedSemaphore`] starting (and bounded) at `value`.
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphore, ManagerError> {
        Ok(BoundedSemaphore::new(value)?)
    }

    /// A new [`Condition`] with its own lock.
    pub fn condition(&self) -> Result<Condition, ManagerError> {
        Ok(Condition::new()?)
    }

    /// A new, unset [`Event`].
    pub fn event(&self) -> Result<Event, ManagerError> {
        Ok(Event::new()?)
    }

    /// A new [`Barrier`] for `parties`.
    pub fn barrier(&self, parties: u32) -> Result<Barrier, ManagerError> {
        Ok(Barrier::new(parties)?)
    }

    /// A new [`Queue`] of at most `maxsize` items (0: the default bound).
    pub fn queue<T: Serialize + DeserializeOwned>(&self, maxsize: usize) -> Result<Queue<T>, ManagerError> {
        Ok(Queue::new(maxsize)?)
    }

    /// A new [`JoinableQueue`] of at most `maxsize` items.
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueue<T>, ManagerError> {
        Ok(JoinableQueue::new(maxsize)?)
    }

    /// Hands `value` to the manager process, which owns it from now on;
    /// returns a handle to it (Python's `manager.Counter()`). `T` must have
    /// been [`register`](ManagerBuilder::register)ed.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Process`] if `T` is not registered (or no process
    /// runs); [`ManagerError::ManagerGone`] if the process died.
    pub fn create<T: Served>(&self, value: T) -> Result<Proxy<T>, ManagerError> {
        let Some(server) = &self.server else {
            return Err(ManagerError::Process(format!(
                "{} is not registered with this manager (Manager::builder().register::<T>())",
                type_key::<T>()
            )));
        };
        let request = Request::Create {
            type_name: type_key::<T>(),
            value: crate::dict::encode("instance", &value)?,
        };
        match round_trip(&server.hub, &request)? {
            Response::Created(id) => Ok(Proxy::new(Arc::clone(&server.hub), id)),
            Response::NoType => Err(ManagerError::Process(format!(
                "{} is not registered with this manager",
                type_key::<T>()
            ))),
            Response::Failed(f) => Err(ManagerError::MethodFailed {
                type_name: type_key::<T>(),
                method: "create".into(),
                message: format!("{f:?}"),
            }),
            _ => Err(ManagerError::Process("an answer to another request".into())),
        }
    }

    /// Stops the manager process (if any) and waits for it; handles to the
    /// objects it served fail from then on. Dropping the manager does this.
    pub fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.hub.shut_down();
            let ended = server.process.join_timeout(std::time::Duration::from_secs(5));
            if !matches!(ended, Ok(Some(_))) {
                let _ = server.process.kill();
                let _ = server.process.join();
            }
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.shutdown();
    }
}
