//! [`DistPool`]'s calls: Python's `map`, `imap`, `imap_unordered`,
//! `starmap`, `apply` and their async forms, across the job.
//!
//! Each call takes its task function by value only to name its type: the
//! function is zero-sized, and the workers conjure it from the type.

use std::sync::mpsc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_pool::{StarTask, Task};

use super::results::{Decode, DistAsyncResult, DistIMap, decode_all, decode_one};
use super::{Chunk, DistPool, Entry, Star, StarMark, entry};
use crate::world::MpiError;

/// The chunks of `items`, `size` items each, encoded behind `head`.
fn chunks<'a, A: Serialize + 'a>(
    head: Vec<u8>,
    items: impl Iterator<Item = A> + 'a,
    size: usize,
) -> impl Iterator<Item = Chunk> + 'a {
    let mut items = items.peekable();
    std::iter::from_fn(move || {
        items.peek()?;
        let chunk: Vec<A> = items.by_ref().take(size).collect();
        let encoded = postcard::to_extend(&chunk, head.clone()).map_err(|e| MpiError::Message(e.to_string()));
        Some((chunk.len(), encoded))
    })
}

/// The head of every chunk for `F` over `A` giving `R`: its entry's code
/// offset.
fn entry_head<F, A, R, M>() -> Result<Vec<u8>, MpiError>
where
    F: Task<(), A, R, M>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
    M: 'static,
{
    crate::code::head(entry::<F, A, R, M> as Entry as usize).map_err(MpiError::Message)
}

impl DistPool {
    /// Python's default chunk size for `n` items over the job's workers.
    fn default_chunksize(&self, n: usize) -> usize {
        n.div_ceil(self.workers() * 4).max(1)
    }

    /// Streams `items` through `F` in chunks of `size`.
    fn stream<'a, F, A, R, M>(
        &'a self,
        items: impl IntoIterator<Item = A> + 'a,
        size: usize,
        ordered: bool,
    ) -> Result<DistIMap<'a, R>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.caller()?;
        if size == 0 {
            return Err(MpiError::Unsupported("a chunk size of 0"));
        }
        let head = entry_head::<F, A, R, M>()?;
        let items = items.into_iter();
        let (lo, hi) = items.size_hint();
        let remaining = (Some(lo) == hi).then_some(lo);
        Ok(DistIMap::new(
            self,
            Box::new(chunks(head, items, size)),
            ordered,
            remaining,
        ))
    }

    /// Hands every chunk out now; the async result gathers them.
    fn submit_all<F, A, R, M, T>(
        &self,
        items: impl IntoIterator<Item = A>,
        size: Option<usize>,
        decode: Decode<T>,
    ) -> Result<DistAsyncResult<T>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.caller()?;
        let head = entry_head::<F, A, R, M>()?;
        let items: Vec<A> = items.into_iter().collect();
        let size = size.unwrap_or_else(|| self.default_chunksize(items.len()));
        if size == 0 {
            return Err(MpiError::Unsupported("a chunk size of 0"));
        }
        let (done_tx, done) = mpsc::channel();
        let mut lens = Vec::new();
        for (k, (len, body)) in chunks(head, items.into_iter(), size).enumerate() {
            lens.push(len);
            self.submit(k, body?, &done_tx)?;
        }
        Ok(DistAsyncResult::new(done, lens, decode))
    }

    /// Python's `map`: `f` over `items`, results in input order, with
    /// Python's default chunk size over every worker of the job. Call it
    /// on a rank that leads its node (rank 0 always does).
    ///
    /// # Errors
    ///
    /// The first task that failed in input order ([`MpiError::Task`]: it
    /// panicked, or its worker died and was replaced), a node's refusal,
    /// or [`MpiError::Unsupported`] on a rank that leads no node.
    pub fn map<F, A, R, M>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let size = self.default_chunksize(items.len());
        self.map_chunked(f, items, size)
    }

    /// As [`Self::map`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::map`], and [`MpiError::Unsupported`] for a chunk size
    /// of 0.
    pub fn map_chunked<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.stream::<F, A, R, M>(items, chunksize, true)?.collect()
    }

    /// Python's `map_async`: every chunk is handed out now; the result
    /// gathers them.
    ///
    /// # Errors
    ///
    /// An argument that does not serialise, or a rank that leads no node.
    pub fn map_async<F, A, R, M>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<DistAsyncResult<Vec<R>>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.submit_all::<F, A, R, M, _>(items, None, decode_all::<R>)
    }

    /// Python's `imap`: results in input order, as they are ready. The
    /// input is read lazily, a window of chunks ahead of the results (an
    /// endless iterator works); one task per chunk, as Python's default.
    ///
    /// # Errors
    ///
    /// A rank that leads no node (each item carries its own task's error).
    pub fn imap<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<DistIMap<'a, R>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.stream::<F, A, R, M>(items, 1, true)
    }

    /// As [`Self::imap`] with `chunksize` tasks per chunk (a round trip to
    /// another node costs tens of microseconds: chunks amortise it).
    ///
    /// # Errors
    ///
    /// As [`Self::imap`], and a chunk size of 0.
    pub fn imap_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<DistIMap<'a, R>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.stream::<F, A, R, M>(items, chunksize, true)
    }

    /// Python's `imap_unordered`: results as their chunks finish.
    ///
    /// # Errors
    ///
    /// As [`Self::imap`].
    pub fn imap_unordered<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<DistIMap<'a, R>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.stream::<F, A, R, M>(items, 1, false)
    }

    /// As [`Self::imap_unordered`] with `chunksize` tasks per chunk.
    ///
    /// # Errors
    ///
    /// As [`Self::imap_chunked`].
    pub fn imap_unordered_chunked<'a, F, A, R, M>(
        &'a self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<DistIMap<'a, R>, MpiError>
    where
        F: Task<(), A, R, M>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.stream::<F, A, R, M>(items, chunksize, false)
    }

    /// Python's `starmap`: `f(a, b, ...)` for each tuple `(a, b, ...)`.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    pub fn starmap<F, Args, R, M>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R>, MpiError>
    where
        F: StarTask<(), Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        let items: Vec<Args> = items.into_iter().collect();
        let size = self.default_chunksize(items.len());
        self.stream::<Star<F, M>, Args, R, StarMark<M>>(items, size, true)?
            .collect()
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
    ) -> Result<DistAsyncResult<Vec<R>>, MpiError>
    where
        F: StarTask<(), Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.submit_all::<Star<F, M>, Args, R, StarMark<M>, _>(items, None, decode_all::<R>)
    }

    /// Python's `apply`: `f(args...)` on some worker of the job, waited for.
    ///
    /// # Errors
    ///
    /// As [`Self::map`].
    pub fn apply<F, Args, R, M>(&self, f: F, args: Args) -> Result<R, MpiError>
    where
        F: StarTask<(), Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Python's `apply_async`: `f(args...)` on some worker of the job (the
    /// next free lane's node).
    ///
    /// # Errors
    ///
    /// As [`Self::map_async`].
    pub fn apply_async<F, Args, R, M>(&self, f: F, args: Args) -> Result<DistAsyncResult<R>, MpiError>
    where
        F: StarTask<(), Args, R, M>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        M: 'static,
    {
        let _ = f;
        self.submit_all::<Star<F, M>, Args, R, StarMark<M>, _>([args], Some(1), decode_one::<R>)
    }
}
