//! Start methods and contexts, as in Python's `multiprocessing.get_context`.

use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::start_method::{StartMethod, UnknownStartMethod};

use super::{ExitReport, Process};
use crate::error::ContextError;

/// `None` until set or first used; then fixed unless forced.
static DEFAULT: Mutex<Option<StartMethod>> = Mutex::new(None);

/// The method used when the environment says nothing: `ForkServer`, or the
/// value of `SHM_START_METHOD` (handy to run one program under each method).
fn initial_method() -> StartMethod {
    std::env::var("SHM_START_METHOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(StartMethod::ForkServer)
}

/// Sets the default start method for this process.
///
/// # Errors
///
/// [`ContextError`] if it was already set (or used) and `force` is false.
pub fn set_start_method(method: StartMethod, force: bool) -> Result<(), ContextError> {
    let mut d = DEFAULT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match *d {
        Some(current) if !force => Err(ContextError { current }),
        _ => {
            *d = Some(method);
            Ok(())
        }
    }
}

/// The default start method; fixes it if it was not set.
pub fn get_start_method() -> StartMethod {
    *DEFAULT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_with(initial_method)
}

/// The start methods this platform supports.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    StartMethod::ALL.to_vec()
}

/// A context: the process API bound to one start method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// The context of `method`, or of the default method when `None`.
pub fn get_context(method: Option<StartMethod>) -> Context {
    Context {
        method: method.unwrap_or_else(get_start_method),
    }
}

impl Context {
    /// Its start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that runs `target(args)` with this context's method.
    pub fn process<A, R>(&self, target: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: ExitReport + 'static,
    {
        Process::new(target, args).with_start_method(self.method)
    }
}
