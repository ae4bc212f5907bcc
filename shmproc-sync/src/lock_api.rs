//! The public face every lock handle shares, written once for `Lock`
//! and `RLock`.

/// The public face every lock handle shares (`Lock`, `RLock`): the guard
/// type, `acquire`/`try_acquire`/`acquire_timeout`/`recover` and the
/// owner-died rules, written once. The handle provides `me()`, `word()`,
/// `take_fast(me)` (the uncontended take, clean only), `take(me, deadline)`,
/// `try_take(me)`, `unlock_level()` and `unlock_poisoned()`.
#[cfg(not(loom))]
macro_rules! lock_api {
    ($Lock:ident, $Guard:ident, $marker:ty, $what:literal) => {
        #[doc = concat!("Holds a [`", stringify!($Lock), "`] (one level) until dropped.")]
        #[must_use = "the lock is released when the guard is dropped"]
        pub struct $Guard<'a> {
            pub(crate) lock: &'a $Lock,
            /// From `recover`: dropped unmarked, the lock stays inconsistent.
            recovering: bool,
            _marker: std::marker::PhantomData<$marker>,
        }

        impl fmt::Debug for $Guard<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($Guard))
                    .field("recovering", &self.recovering)
                    .finish()
            }
        }

        impl Drop for $Guard<'_> {
            #[inline]
            fn drop(&mut self) {
                if self.recovering && self.lock.word().inconsistent() {
                    self.lock.unlock_poisoned();
                } else {
                    self.lock.unlock_level();
                }
            }
        }

        impl $Guard<'_> {
            /// Python's `release()`: releases the lock now (as dropping the
            /// guard does), for code that reads as acquire ... release.
            #[inline]
            pub fn release(self) {
                drop(self);
            }

            /// Declares the data the lock guards repaired: after this guard
            /// drops, acquires succeed again. Call it on the guard of
            #[doc = concat!("[`", stringify!($Lock), "::recover`]; on any other guard it does nothing harmful.")]
            pub fn mark_consistent(&self) {
                self.lock.word().mark_consistent();
            }
        }

        impl $Lock {
            #[inline]
            fn guard(&self, recovering: bool) -> $Guard<'_> {
                $Guard {
                    lock: self,
                    recovering,
                    _marker: std::marker::PhantomData,
                }
            }

            /// The guard for a take, or the lock released again (left
            /// inconsistent) with the error when its holder had died.
            fn taken(&self, taken: Taken) -> Result<$Guard<'_>, OwnerDied> {
                match taken {
                    Taken::Clean => Ok(self.guard(false)),
                    Taken::OwnerDied => Err(self.poison()),
                }
            }

            #[cold]
            fn poison(&self) -> OwnerDied {
                let pid = self.word().dead_task();
                self.unlock_poisoned();
                OwnerDied { pid }
            }

            #[doc = concat!("Blocks until the ", $what, " is held.")]
            ///
            /// # Errors
            ///
            /// [`OwnerDied`] when its holder died holding it, or it was left
            /// inconsistent since: the lock is **not** held then, and every
            /// acquire fails the same way until someone calls
            #[doc = concat!("[`", stringify!($Lock), "::recover`] and marks it consistent.")]
            #[inline]
            pub fn acquire(&self) -> Result<$Guard<'_>, OwnerDied> {
                let me = Self::me();
                if self.take_fast(me) {
                    return Ok(self.guard(false));
                }
                self.acquire_slow(me)
            }

            #[cold]
            fn acquire_slow(&self, me: u32) -> Result<$Guard<'_>, OwnerDied> {
                // Without a deadline the wait ends only with the lock held.
                let taken = self.take(me, None).unwrap_or(Taken::Clean);
                self.taken(taken)
            }

            #[doc = concat!("Takes the ", $what, " if that needs no waiting.")]
            ///
            /// # Errors
            ///
            /// [`TryAcquireError::WouldBlock`] when someone holds it (a dead
            /// holder too: only waiting acquirers check liveness),
            /// [`TryAcquireError::OwnerDied`] when it was left inconsistent.
            #[inline]
            pub fn try_acquire(&self) -> Result<$Guard<'_>, TryAcquireError> {
                match self.try_take(Self::me()) {
                    None => Err(TryAcquireError::WouldBlock),
                    Some(taken) => Ok(self.taken(taken)?),
                }
            }

            #[doc = concat!("Waits up to `timeout` for the ", $what, ".")]
            ///
            /// # Errors
            ///
            /// [`AcquireTimeoutError::Timeout`] when it is still held then,
            /// [`AcquireTimeoutError::OwnerDied`] as for `acquire`.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<$Guard<'_>, AcquireTimeoutError> {
                match self.take(Self::me(), Some(Deadline::after(timeout))) {
                    None => Err(AcquireTimeoutError::Timeout(timeout)),
                    Some(taken) => Ok(self.taken(taken)?),
                }
            }

            #[doc = concat!("Takes the ", $what, " whatever its state (blocking), to repair what it guards:")]
            /// call [`mark_consistent`](Self::is_inconsistent) on the guard
            /// before dropping it, or the lock stays inconsistent and every
            /// acquire keeps failing with [`OwnerDied`].
            pub fn recover(&self) -> $Guard<'_> {
                // A take from a dead holder marks it inconsistent; the guard
                // decides at drop.
                let _ = self.take(Self::me(), None);
                self.guard(true)
            }

            /// Whether a holder died holding it and nobody has marked it
            /// consistent since: the data it guards may be half-updated.
            pub fn is_inconsistent(&self) -> bool {
                self.word().inconsistent()
            }
        }
    };
}
