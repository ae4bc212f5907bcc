//! [`PoolApi`]: the interface [`Pool`](crate::Pool) and [`ThreadPool`](crate::ThreadPool) share, so that
//! code written over it switches between processes and threads in one line.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::PoolError;
use crate::results::{AsyncResult, IMap};
use crate::task::{StarTask, Task};

mod impls;

/// The interface of Python's `Pool`, shared by [`Pool`](crate::Pool) (processes) and
/// [`ThreadPool`](crate::ThreadPool) (threads). Its bounds are what both accept: functions or
/// closures that capture nothing, serde arguments and results.
///
/// ```no_run
/// use shmproc_pool::{Pool, PoolApi, PoolError, ThreadPool};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn sum_of_squares(pool: &impl PoolApi<State = ()>) -> Result<u64, PoolError> {
///     Ok(pool.map(square, 0..100)?.iter().sum())
/// }
///
/// fn main() -> Result<(), PoolError> {
///     shmproc_core::init();
///     assert_eq!(sum_of_squares(&Pool::new(2)?)?, sum_of_squares(&ThreadPool::new(2)?)?);
///     Ok(())
/// }
/// ```
pub trait PoolApi {
    /// The state each worker's initializer made (`()` without one).
    type State: 'static;

    /// Python's `map`.
    ///
    /// # Errors
    ///
    /// The first failed task in input order, or why the pool could not
    /// take the call.
    fn map<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, PoolError>
    where
        F: Task<Self::State, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// `map` with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    fn map_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        F: Task<Self::State, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// Python's `map_async`.
    ///
    /// # Errors
    ///
    /// Why the pool could not take the call.
    fn map_async<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<Self::State, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// `map_async` with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    fn map_async_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<Self::State, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// Python's `starmap`.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    fn starmap<F, Args, R, M>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R>, PoolError>
    where
        F: StarTask<Self::State, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// Python's `starmap_async`.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    fn starmap_async<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<Self::State, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// Python's `apply`.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    fn apply<F, Args, R, M>(&self, f: F, args: Args) -> Result<R, PoolError>
    where
        F: StarTask<Self::State, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// Python's `apply_async`.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    fn apply_async<F, Args, R, M>(&self, f: F, args: Args) -> Result<AsyncResult<R>, PoolError>
    where
        F: StarTask<Self::State, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// Python's `imap` (input order, input read lazily).
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    fn imap<'a, F, A, R, M>(&'a self, f: F, items: impl IntoIterator<Item = A> + 'a) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<Self::State, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// `imap` with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    fn imap_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<Self::State, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// Python's `imap_unordered` (completion order).
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    fn imap_unordered<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<Self::State, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// `imap_unordered` with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    fn imap_unordered_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<Self::State, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static;

    /// Python's `close`.
    fn close(&self);

    /// Python's `terminate`.
    fn terminate(&self);

    /// Python's `join`.
    ///
    /// # Errors
    ///
    /// [`PoolError::NotClosed`] if the pool is still open.
    fn join(&self) -> Result<(), PoolError>;

    /// Tasks finished so far, task by task.
    fn finished(&self) -> u64;

    /// The number of workers.
    fn processes(&self) -> usize;
}
