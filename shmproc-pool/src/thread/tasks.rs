//! The task functions a thread pool takes: closures that may capture.

use crate::task::{Plain, WithState};

/// A function a thread pool maps: `Fn(A) -> R`, or `Fn(&mut S, A) -> R` to
/// use the thread's state. Closures may capture.
pub trait ThreadTask<S, A, R, M>: Send + Sync + 'static {
    /// Runs it.
    fn run(&self, state: &mut S, arg: A) -> R;
}

impl<S, A, R, F: Fn(A) -> R + Send + Sync + 'static> ThreadTask<S, A, R, Plain> for F {
    #[inline]
    fn run(&self, _state: &mut S, arg: A) -> R {
        self(arg)
    }
}

impl<S, A, R, F: Fn(&mut S, A) -> R + Send + Sync + 'static> ThreadTask<S, A, R, WithState> for F {
    #[inline]
    fn run(&self, state: &mut S, arg: A) -> R {
        self(state, arg)
    }
}

/// A function a thread pool's `starmap` and `apply` call with the fields
/// of a tuple (up to six), or with the thread's state first.
pub trait ThreadStarTask<S, Args, R, M>: Send + Sync + 'static {
    /// Runs it.
    fn run(&self, state: &mut S, args: Args) -> R;
}

macro_rules! thread_star_task {
    ($($a:ident),*) => {
        impl<S, R, F, $($a),*> ThreadStarTask<S, ($($a,)*), R, Plain> for F
        where
            F: Fn($($a),*) -> R + Send + Sync + 'static,
        {
            #[inline]
            #[allow(non_snake_case)]
            fn run(&self, _state: &mut S, ($($a,)*): ($($a,)*)) -> R {
                self($($a),*)
            }
        }
        impl<S, R, F, $($a),*> ThreadStarTask<S, ($($a,)*), R, WithState> for F
        where
            F: Fn(&mut S, $($a),*) -> R + Send + Sync + 'static,
        {
            #[inline]
            #[allow(non_snake_case)]
            fn run(&self, state: &mut S, ($($a,)*): ($($a,)*)) -> R {
                self(state, $($a),*)
            }
        }
    };
}
thread_star_task!();
thread_star_task!(A1);
thread_star_task!(A1, A2);
thread_star_task!(A1, A2, A3);
thread_star_task!(A1, A2, A3, A4);
thread_star_task!(A1, A2, A3, A4, A5);
thread_star_task!(A1, A2, A3, A4, A5, A6);
