//! [`PoolApi`] for [`Pool`] (the inherent methods) and [`ThreadPool`]
//! (its threads, given the trait's functions as closures).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PoolApi;
use crate::error::PoolError;
use crate::results::{AsyncResult, IMap};
use crate::task::{StarTask, Task};
use crate::thread::{ThreadSource, take_all, take_one};
use crate::{Pool, ThreadPool};

impl<S: 'static> PoolApi for Pool<S> {
    type State = S;

    fn map<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::map(self, f, items)
    }

    fn map_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::map_chunked(self, f, items, chunksize)
    }

    fn map_async<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::map_async(self, f, items)
    }

    fn map_async_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::map_async_chunked(self, f, items, chunksize)
    }

    fn starmap<F, Args, R, M>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::starmap(self, f, items)
    }

    fn starmap_async<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::starmap_async(self, f, items)
    }

    fn apply<F, Args, R, M>(&self, f: F, args: Args) -> Result<R, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::apply(self, f, args)
    }

    fn apply_async<F, Args, R, M>(&self, f: F, args: Args) -> Result<AsyncResult<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::apply_async(self, f, args)
    }

    fn imap<'a, F, A, R, M>(&'a self, f: F, items: impl IntoIterator<Item = A> + 'a) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::imap(self, f, items)
    }

    fn imap_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::imap_chunked(self, f, items, chunksize)
    }

    fn imap_unordered<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::imap_unordered(self, f, items)
    }

    fn imap_unordered_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        Self::imap_unordered_chunked(self, f, items, chunksize)
    }

    fn close(&self) {
        Self::close(self);
    }

    fn terminate(&self) {
        Self::terminate(self);
    }

    fn join(&self) -> Result<(), PoolError> {
        Self::join(self)
    }

    fn finished(&self) -> u64 {
        Self::finished(self)
    }

    fn processes(&self) -> usize {
        Self::processes(self)
    }
}

impl<S: 'static> PoolApi for ThreadPool<S> {
    type State = S;

    fn map<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        self.map_placed(Arc::new(move |s: &mut S, a| Task::run(&f, s, a)), items, None)
    }

    fn map_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        self.map_placed(
            Arc::new(move |s: &mut S, a| Task::run(&f, s, a)),
            items,
            Some(chunksize),
        )
    }

    fn map_async<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        let job = self.submit(Arc::new(move |s: &mut S, a| Task::run(&f, s, a)), items, None, None)?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
        }))
    }

    fn map_async_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        let job = self.submit(
            Arc::new(move |s: &mut S, a| Task::run(&f, s, a)),
            items,
            Some(chunksize),
            None,
        )?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
        }))
    }

    fn starmap<F, Args, R, M>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        self.map_placed(Arc::new(move |s: &mut S, a| StarTask::run(&f, s, a)), items, None)
    }

    fn starmap_async<F, Args, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        let job = self.submit(Arc::new(move |s: &mut S, a| StarTask::run(&f, s, a)), items, None, None)?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_all::<R>,
        }))
    }

    fn apply<F, Args, R, M>(&self, f: F, args: Args) -> Result<R, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        let job = self.submit(
            Arc::new(move |s: &mut S, a| StarTask::run(&f, s, a)),
            [args],
            Some(1),
            None,
        )?;
        AsyncResult::new(ThreadSource {
            job,
            take: take_one::<R>,
        })
        .get()
    }

    fn apply_async<F, Args, R, M>(&self, f: F, args: Args) -> Result<AsyncResult<R>, PoolError>
    where
        F: StarTask<S, Args, R, M>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        let job = self.submit(
            Arc::new(move |s: &mut S, a| StarTask::run(&f, s, a)),
            [args],
            Some(1),
            None,
        )?;
        Ok(AsyncResult::new(ThreadSource {
            job,
            take: take_one::<R>,
        }))
    }

    fn imap<'a, F, A, R, M>(&'a self, f: F, items: impl IntoIterator<Item = A> + 'a) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        self.imap_with(Arc::new(move |s: &mut S, a| Task::run(&f, s, a)), items, 1, true)
    }

    fn imap_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        self.imap_with(
            Arc::new(move |s: &mut S, a| Task::run(&f, s, a)),
            items,
            chunksize,
            true,
        )
    }

    fn imap_unordered<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        self.imap_with(Arc::new(move |s: &mut S, a| Task::run(&f, s, a)), items, 1, false)
    }

    fn imap_unordered_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<IMap<'a, R>, PoolError>
    where
        F: Task<S, A, R, M>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        M: 'static,
    {
        self.imap_with(
            Arc::new(move |s: &mut S, a| Task::run(&f, s, a)),
            items,
            chunksize,
            false,
        )
    }

    fn close(&self) {
        Self::close(self);
    }

    fn terminate(&self) {
        Self::terminate(self);
    }

    fn join(&self) -> Result<(), PoolError> {
        Self::join(self)
    }

    fn finished(&self) -> u64 {
        Self::finished(self)
    }

    fn processes(&self) -> usize {
        Self::processes(self)
    }
}
