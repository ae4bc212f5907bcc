//! [`ThreadPool`]'s calls: Python's `map`, `starmap`, `apply`, `imap` and
//! their forms.

use std::sync::Arc;

use crate::error::PoolError;
use crate::results::{AsyncResult, IMap};

use super::{IMAP_CHUNK, ThreadPool, ThreadSource, ThreadStarTask, ThreadTask, all, one, take_all, take_one, then};

impl<S: 'static> ThreadPool<S> {
    /// Python's `map`: `f` over `items`, results in input order.
    ///
    /// # Errors
    ///
    /// The first failed task in input order, or why the pool could not
    /// take the call.
    pub fn map<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, PoolError>
    where
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.map_placed(Arc::new(move |s: &mut S, a: A| f.run(s, a)), items, None)
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
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.map_placed(Arc::new(move |s: &mut S, a: A| f.run(s, a)), items, Some(chunksize))
    }

    /// Python's `map_async`.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Terminated`].
    pub fn map_async<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Send + 'static,
    {
        let job = self.submit(Self::wrap(f), items, None, None)?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
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
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Send + 'static,
    {
        let job = self.submit(Self::wrap(f), items, Some(chunksize), None)?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
        }))
    }

    /// Python's `map_async` with `callback` and `error_callback`, called in
    /// the thread that finished the last task; the callback gets a copy of
    /// the results (they stay for `get`).
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
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Clone + Send + 'static,
    {
        let on_done = then(all::<R>, callback, error_callback);
        let job = self.submit(Self::wrap(f), items, None, Some(on_done))?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
        }))
    }

    /// Python's `starmap`: `f(a, b, ...)` for each tuple `(a, b, ...)`.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    pub fn starmap<F, Args, R, M>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R>, PoolError>
    where
        F: ThreadStarTask<S, Args, R, M>,
        Args: Send + 'static,
        R: Send + 'static,
    {
        self.map_placed(Arc::new(move |s: &mut S, a: Args| f.run(s, a)), items, None)
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
        F: ThreadStarTask<S, Args, R, M>,
        Args: Send + 'static,
        R: Send + 'static,
    {
        let job = self.submit(Self::wrap_star(f), items, None, None)?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
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
        F: ThreadStarTask<S, Args, R, M>,
        Args: Send + 'static,
        R: Send + 'static,
    {
        let job = self.submit(Self::wrap_star(f), items, Some(chunksize), None)?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
        }))
    }

    /// Python's `starmap_async` with callbacks (see [`Self::map_async_then`]).
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
        F: ThreadStarTask<S, Args, R, M>,
        Args: Send + 'static,
        R: Clone + Send + 'static,
    {
        let on_done = then(all::<R>, callback, error_callback);
        let job = self.submit(Self::wrap_star(f), items, None, Some(on_done))?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
        }))
    }

    /// Python's `apply`.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    pub fn apply<F, Args, R, M>(&self, f: F, args: Args) -> Result<R, PoolError>
    where
        F: ThreadStarTask<S, Args, R, M>,
        Args: Send + 'static,
        R: Send + 'static,
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
        F: ThreadStarTask<S, Args, R, M>,
        Args: Send + 'static,
        R: Send + 'static,
    {
        let job = self.submit(Self::wrap_star(f), [args], Some(1), None)?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_one::<R>,
        }))
    }

    /// Python's `apply_async` with callbacks (see [`Self::map_async_then`]).
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
        F: ThreadStarTask<S, Args, R, M>,
        Args: Send + 'static,
        R: Clone + Send + 'static,
    {
        let on_done = then(one::<R>, callback, error_callback);
        let job = self.submit(Self::wrap_star(f), [args], Some(1), Some(on_done))?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_one::<R>,
        }))
    }

    /// Python's `imap`: results in input order, input read lazily a window
    /// ahead (an endless iterator works).
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn imap<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.imap_with(Self::wrap(f), items, IMAP_CHUNK, true)
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
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.imap_with(Self::wrap(f), items, chunksize, true)
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
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.imap_with(Self::wrap(f), items, IMAP_CHUNK, false)
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
        F: ThreadTask<S, A, R, M>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.imap_with(Self::wrap(f), items, chunksize, false)
    }
}
