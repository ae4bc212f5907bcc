//! [`Pool`]'s calls: Python's `map`, `starmap`, `apply`, `imap` and their
//! forms.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::PoolError;
use crate::results::{self, AsyncResult, IMap, ProcSource};
use crate::task::{MapCall, StarCall, StarTask, Task};

use super::{Pool, then};

// Each call below takes its task function by value only to name its type:
// the function is zero-sized, and the worker conjures it from the type
// (`task::conjure`), so the value itself is dropped (`let _ = f;`).

impl<S: 'static> Pool<S> {
    /// Python's `map`: `f` over `items`, results in input order, with
    /// Python's default chunk size.
    ///
    /// # Errors
    ///
    /// The first failed task in input order ([`PoolError::Task`]), or why
    /// the pool could not take the call.
    pub fn map<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, None, None)?;
        crate::job::collect_streaming::<R, _>(&job)
    }

    /// As [`Self::map`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map`], and [`PoolError::ZeroChunksize`].
    pub fn map_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, Some(chunksize), None)?;
        crate::job::collect_streaming::<R, _>(&job)
    }

    /// Python's `map_async`.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Terminated`], an argument that
    /// does not serialise ([`PoolError::Encode`]).
    pub fn map_async<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, None, None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// As [`Self::map_async`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`], and [`PoolError::ZeroChunksize`].
    pub fn map_async_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, Some(chunksize), None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// Python's `map_async` with `callback` and `error_callback`: one of
    /// them is called, in the pool's thread, once every task finished.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn map_async_then<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let on_done = then(results::decode_all::<R>, callback, error_callback);
        let job = self.submit_all::<A, R, MapCall<F, M>>(items, None, Some(on_done))?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// Python's `starmap`: `f(a, b, ...)` for each tuple `(a, b, ...)`.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    pub fn starmap<F, Args, R, M>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<Args, R, StarCall<F, M>>(items, None, None)?;
        crate::job::collect_streaming::<R, _>(&job)
    }

    /// Python's `starmap_async`.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn starmap_async<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<Args, R, StarCall<F, M>>(items, None, None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// As [`Self::starmap_async`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`], and [`PoolError::ZeroChunksize`].
    pub fn starmap_async_chunked<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<Args, R, StarCall<F, M>>(items, Some(chunksize), None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// Python's `starmap_async` with `callback` and `error_callback`, called
    /// in the pool's thread once every task finished.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn starmap_async_then<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let on_done = then(results::decode_all::<R>, callback, error_callback);
        let job = self.submit_all::<Args, R, StarCall<F, M>>(items, None, Some(on_done))?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_all::<R>,
        }))
    }

    /// Python's `apply`: `f(args...)` on a worker, waiting for the result.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    pub fn apply<F, Args, R, M>(&self, f: F, args: Args) -> Result<R, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Python's `apply_async`.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn apply_async<F, Args, R, M>(&self, f: F, args: Args) -> Result<AsyncResult<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let job = self.submit_all::<Args, R, StarCall<F, M>>([args], Some(1), None)?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_one::<R>,
        }))
    }

    /// Python's `apply_async` with `callback` and `error_callback`, called
    /// in the pool's thread.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn apply_async_then<F, Args, R, M>(
        &self,
        f: F,
        args: Args,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let on_done = then(results::decode_one::<R>, callback, error_callback);
        let job = self.submit_all::<Args, R, StarCall<F, M>>([args], Some(1), Some(on_done))?;
        Ok(AsyncResult::new(ProcSource {
            job,
            decode: results::decode_one::<R>,
        }))
    }

    /// Python's `imap`: results in input order, as they are ready. The input
    /// is read lazily, a window of tasks ahead of the results (an endless
    /// iterator works); its length is reported by `size_hint` when the
    /// input knows it.
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`] (each item carries its own task's error).
    pub fn imap<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.imap_with(f, items, 1, true)
    }

    /// As [`Self::imap`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::imap`], and [`PoolError::ZeroChunksize`].
    pub fn imap_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.imap_with(f, items, chunksize, true)
    }

    /// Python's `imap_unordered`: results as they finish.
    ///
    /// # Errors
    ///
    /// As [`Self::imap`].
    pub fn imap_unordered<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.imap_with(f, items, 1, false)
    }

    /// As [`Self::imap_unordered`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::imap`], and [`PoolError::ZeroChunksize`].
    pub fn imap_unordered_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.imap_with(f, items, chunksize, false)
    }
}
