//! A barrier's action: a function and its arguments that travel with the
//! barrier to children as a process target does.
//!
//! The functions travel as [`FnRef`]s: under spawn and forkserver an index
//! into the code the child's bootstrap resolved and checked, under fork the
//! same address. The arguments stay typed in the process (`Arc<dyn Any>`)
//! and are encoded only when the barrier is: inside a process's argument
//! encoding, so that shared objects among them travel as the target's own
//! arguments do (their descriptors go along). Three monomorphic trampolines
//! for the argument type `A`, made where `A` is known
//! ([`Action::new`]), do what needs the type: call, encode, decode.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc_core::FnRef;

/// The arguments of an action, of the type its trampolines know.
type Args = Arc<dyn Any + Send + Sync>;

/// What a trampoline is asked to do, and what it answers.
enum Call {
    /// `run`: call `f` with a clone of the arguments.
    Run(fn(), Args),
    /// `codec`: encode the arguments.
    Encode(Args),
    /// `codec`: decode the arguments.
    Decode(Vec<u8>),
    /// `codec`'s answer to `Encode`.
    Encoded(Result<Vec<u8>, String>),
    /// `codec`'s answer to `Decode`.
    Decoded(Result<Args, String>),
}

thread_local! {
    /// The request to (and answer of) the trampoline being called.
    static CALL: RefCell<Option<Call>> = const { RefCell::new(None) };
}

fn take_call() -> Option<Call> {
    CALL.with(|c| c.borrow_mut().take())
}

fn put_call(call: Call) {
    CALL.with(|c| *c.borrow_mut() = Some(call));
}

// `FnRef` is one `fn()`: with the same size, that field sits at offset 0
// and its bytes are the whole struct's.
const _: () = assert!(size_of::<FnRef>() == size_of::<fn()>());

fn fn_of(r: FnRef) -> fn() {
    // SAFETY: FnRef holds exactly one `fn()` and has its size (asserted
    // above), so its bytes are a valid `fn()`; a copy is taken, nothing moves.
    unsafe { std::mem::transmute_copy::<FnRef, fn()>(&r) }
}

/// `f` with its argument type erased, for `run::<A>` to restore.
fn erase<A>(f: fn(A)) -> fn() {
    // SAFETY: fn pointers have one size and layout; only the type is
    // erased, and `run::<A>` turns it back into `fn(A)` before calling it.
    unsafe { std::mem::transmute::<fn(A), fn()>(f) }
}

/// Calls the requested `fn(A)` with a clone of its arguments.
fn run<A: Clone + 'static>() {
    let Some(Call::Run(f, args)) = take_call() else {
        panic!("Barrier action: run called without a request");
    };
    let args = args
        .downcast_ref::<A>()
        .expect("Barrier action: arguments of the type its run was made for")
        .clone();
    // SAFETY: `f` was made from an `fn(A)` by `Action::new`, which paired it
    // with this very `run::<A>`: the same type is restored.
    let f = unsafe { std::mem::transmute::<fn(), fn(A)>(f) };
    f(args);
}

/// Encodes or decodes arguments of type `A`.
fn codec<A: Serialize + DeserializeOwned + Send + Sync + 'static>() {
    let answer = match take_call() {
        Some(Call::Encode(args)) => Call::Encoded(match args.downcast_ref::<A>() {
            Some(a) => postcard::to_allocvec(a).map_err(|e| e.to_string()),
            None => Err("arguments of another type than the action's".into()),
        }),
        Some(Call::Decode(bytes)) => Call::Decoded(
            postcard::from_bytes::<A>(&bytes)
                .map(|a| Arc::new(a) as Args)
                .map_err(|e| e.to_string()),
        ),
        _ => return,
    };
    put_call(answer);
}

/// A function and its arguments, called once per barrier round.
#[derive(Clone)]
pub(crate) struct Action {
    /// `run::<A>`.
    run: FnRef,
    /// `codec::<A>`.
    codec: FnRef,
    /// The user's `fn(A)`, its type erased; called only by `run::<A>`.
    f: FnRef,
    /// An `A`.
    args: Args,
}

impl Action {
    pub(crate) fn new<A>(f: fn(A), args: A) -> Self
    where
        A: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Self {
            run: FnRef::new(run::<A>),
            codec: FnRef::new(codec::<A>),
            f: FnRef::new(erase(f)),
            args: Arc::new(args),
        }
    }

    /// Calls the function with a clone of the arguments.
    pub(crate) fn call(&self) {
        put_call(Call::Run(fn_of(self.f), Arc::clone(&self.args)));
        let run = fn_of(self.run);
        let leftover = std::panic::catch_unwind(run);
        // A `run` that panicked before taking its request leaves nothing behind.
        take_call();
        if let Err(panic) = leftover {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        put_call(Call::Encode(Arc::clone(&self.args)));
        fn_of(self.codec)();
        let Some(Call::Encoded(bytes)) = take_call() else {
            return Err(serde::ser::Error::custom("Barrier action: its codec gave no answer"));
        };
        let bytes = bytes.map_err(|e| serde::ser::Error::custom(format!("Barrier action arguments: {e}")))?;
        (self.run, self.codec, self.f, bytes).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Action {
    /// The functions come only from a process bootstrap (`FnRef` refuses
    /// anything else); the arguments are decoded at once, inside it, so that
    /// shared objects among them find their descriptors.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (run, codec, f, bytes) = <(FnRef, FnRef, FnRef, Vec<u8>)>::deserialize(deserializer)?;
        put_call(Call::Decode(bytes));
        fn_of(codec)();
        let Some(Call::Decoded(args)) = take_call() else {
            return Err(serde::de::Error::custom("Barrier action: its codec gave no answer"));
        };
        let args = args.map_err(|e| serde::de::Error::custom(format!("Barrier action arguments: {e}")))?;
        Ok(Self { run, codec, f, args })
    }
}
