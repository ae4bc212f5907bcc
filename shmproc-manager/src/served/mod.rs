//! User types served by a manager process (Python's `BaseManager.register`
//! and its proxies, `NamespaceProxy` included).
//!
//! A type implements [`Served`] (the [`served!`](crate::served) macro writes
//! the impl and a typed handle trait); a [`Manager`](crate::Manager) built
//! with it registered starts a manager process that owns every instance
//! created through [`Manager::create`](crate::Manager::create) and answers
//! method calls and attribute reads and writes from any process holding a
//! [`Proxy`].

pub(crate) mod hub;
pub(crate) mod server;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::hub::Hub;
use crate::dict::{decode, encode};
use crate::error::ManagerError;

/// Why a served call failed inside the manager process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CallFailure {
    /// The type has no method of that name.
    NoSuchMethod,
    /// The type has no attribute of that name.
    NoSuchAttribute,
    /// The arguments (or a value set) did not deserialise as the method's
    /// parameters.
    BadArguments(String),
    /// The method panicked or returned an error; its message.
    Failed(String),
}

/// What a served call returns inside the manager process: the reply's
/// bytes (postcard), or why it failed.
pub type Reply = Result<Vec<u8>, CallFailure>;

/// A type whose instances a manager process owns and serves.
///
/// Write it with [`served!`](crate::served) rather than by hand. An
/// instance travels to the manager process by value when it is created
/// (hence `Serialize + DeserializeOwned`), and lives there until the
/// manager shuts down.
pub trait Served: Serialize + DeserializeOwned + Send + 'static {
    /// Calls method `method` with its arguments (a postcard tuple).
    fn call(&mut self, method: &str, args: &[u8]) -> Reply;
    /// Reads attribute `name`.
    fn get_attr(&self, name: &str) -> Reply;
    /// Sets attribute `name` from its serialised value.
    fn set_attr(&mut self, name: &str, value: &[u8]) -> Result<(), CallFailure>;
}

/// What the manager process keeps of an instance: [`Served`] without its
/// serde bounds, so instances of every type sit in one table.
pub(crate) trait Object: Send {
    fn call(&mut self, method: &str, args: &[u8]) -> Reply;
    fn get_attr(&self, name: &str) -> Reply;
    fn set_attr(&mut self, name: &str, value: &[u8]) -> Result<(), CallFailure>;
    fn snapshot(&self) -> Reply;
}

impl<T: Served> Object for T {
    fn call(&mut self, method: &str, args: &[u8]) -> Reply {
        Served::call(self, method, args)
    }
    fn get_attr(&self, name: &str) -> Reply {
        Served::get_attr(self, name)
    }
    fn set_attr(&mut self, name: &str, value: &[u8]) -> Result<(), CallFailure> {
        Served::set_attr(self, name, value)
    }
    fn snapshot(&self) -> Reply {
        postcard::to_allocvec(self).map_err(|e| CallFailure::Failed(e.to_string()))
    }
}

/// A request to the manager process.
#[derive(Serialize, Deserialize)]
pub(crate) enum Request {
    Create { type_name: String, value: Vec<u8> },
    Call { object: u64, method: String, args: Vec<u8> },
    GetAttr { object: u64, name: String },
    SetAttr { object: u64, name: String, value: Vec<u8> },
    Snapshot { object: u64 },
    Release { object: u64 },
}

/// The manager process's answer.
#[derive(Serialize, Deserialize)]
pub(crate) enum Response {
    Ok(Vec<u8>),
    Created(u64),
    Failed(CallFailure),
    NoType,
    NoObject,
}

/// A handle to an instance of `T` owned by a manager process (Python's
/// proxy). Cheap to clone; passed to children like any shared object.
///
/// Calls go through the hub's mailboxes to the manager process and back
/// (about a microsecond when both sides are awake). If the manager process
/// is gone, every call fails with [`ManagerError::ManagerGone`] within a
/// liveness slice.
pub struct Proxy<T> {
    hub: Arc<Hub>,
    object: u64,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Proxy<T> {
    fn clone(&self) -> Self {
        Self {
            hub: Arc::clone(&self.hub),
            object: self.object,
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Proxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("type", &std::any::type_name::<T>())
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

fn type_name<T>() -> String {
    std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Sends `request` and decodes the response.
pub(crate) fn round_trip(hub: &Hub, request: &Request) -> Result<Response, ManagerError> {
    let bytes = encode("request", request)?;
    let reply = hub.call(&bytes)?;
    decode("the manager process's reply", &reply)
}

impl<T: Served> Proxy<T> {
    pub(crate) fn new(hub: Arc<Hub>, object: u64) -> Self {
        Self {
            hub,
            object,
            _type: PhantomData,
        }
    }

    fn ask(&self, request: &Request, name: &str) -> Result<Vec<u8>, ManagerError> {
        let failed = |f: CallFailure| match f {
            CallFailure::NoSuchMethod | CallFailure::NoSuchAttribute => ManagerError::NoMethod {
                type_name: type_name::<T>(),
                method: name.to_owned(),
            },
            CallFailure::BadArguments(m) | CallFailure::Failed(m) => ManagerError::MethodFailed {
                type_name: type_name::<T>(),
                method: name.to_owned(),
                message: m,
            },
        };
        match round_trip(&self.hub, request)? {
            Response::Ok(bytes) => Ok(bytes),
            Response::Failed(f) => Err(failed(f)),
            Response::NoObject => Err(ManagerError::MethodFailed {
                type_name: type_name::<T>(),
                method: name.to_owned(),
                message: "the instance was released".into(),
            }),
            Response::NoType | Response::Created(_) => {
                Err(ManagerError::Process("an answer to another request".into()))
            }
        }
    }

    /// Calls method `method` with `args` (a tuple: `()`, `(x,)`, `(x, y)`)
    /// in the manager process and returns what it returns.
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: A) -> Result<R, ManagerError> {
        let request = Request::Call {
            object: self.object,
            method: method.to_owned(),
            args: encode("argument", &args)?,
        };
        decode("return value", &self.ask(&request, method)?)
    }

    /// As [`Self::call`] with serialised arguments and return value
    /// (postcard), for a process that forwards calls without knowing their
    /// types (`shmproc-mpi`). Not API.
    #[doc(hidden)]
    pub fn __call_raw(&self, method: &str, args: Vec<u8>) -> Result<Vec<u8>, ManagerError> {
        let request = Request::Call {
            object: self.object,
            method: method.to_owned(),
            args,
        };
        self.ask(&request, method)
    }

    /// As [`Self::getattr`], serialised. Not API.
    #[doc(hidden)]
    pub fn __getattr_raw(&self, name: &str) -> Result<Vec<u8>, ManagerError> {
        let request = Request::GetAttr {
            object: self.object,
            name: name.to_owned(),
        };
        self.ask(&request, name)
    }

    /// As [`Self::setattr`], serialised. Not API.
    #[doc(hidden)]
    pub fn __setattr_raw(&self, name: &str, value: Vec<u8>) -> Result<(), ManagerError> {
        let request = Request::SetAttr {
            object: self.object,
            name: name.to_owned(),
            value,
        };
        self.ask(&request, name).map(drop)
    }

    /// As [`Self::copy`], serialised. Not API.
    #[doc(hidden)]
    pub fn __copy_raw(&self) -> Result<Vec<u8>, ManagerError> {
        self.ask(&Request::Snapshot { object: self.object }, "copy")
    }

    /// Reads attribute `name` (Python's `NamespaceProxy` `__getattr__`).
    pub fn getattr<R: DeserializeOwned>(&self, name: &str) -> Result<R, ManagerError> {
        let request = Request::GetAttr {
            object: self.object,
            name: name.to_owned(),
        };
        decode("attribute", &self.ask(&request, name)?)
    }

    /// Sets attribute `name`.
    pub fn setattr<V: Serialize + ?Sized>(&self, name: &str, value: &V) -> Result<(), ManagerError> {
        let request = Request::SetAttr {
            object: self.object,
            name: name.to_owned(),
            value: encode("attribute", value)?,
        };
        self.ask(&request, name).map(drop)
    }

    /// A copy of the whole instance as it is now.
    pub fn copy(&self) -> Result<T, ManagerError> {
        let request = Request::Snapshot { object: self.object };
        decode("instance", &self.ask(&request, "copy")?)
    }

    /// Ends the instance in the manager process; every handle to it then
    /// fails. (Instances otherwise live until the manager shuts down.)
    pub fn release(self) -> Result<(), ManagerError> {
        let request = Request::Release { object: self.object };
        self.ask(&request, "release").map(drop)
    }
}

#[derive(Serialize, Deserialize)]
struct ProxyWire {
    object: u64,
    #[serde(with = "hub_serde")]
    hub: Arc<Hub>,
}

mod hub_serde {
    use std::sync::Arc;

    use serde::{Deserializer, Serialize, Serializer};

    use super::Hub;

    pub(super) fn serialize<S: Serializer>(hub: &Arc<Hub>, s: S) -> Result<S::Ok, S::Error> {
        (**hub).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Hub>, D::Error> {
        super::hub::deserialize(d)
    }
}

impl<T> Serialize for Proxy<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ProxyWire {
            object: self.object,
            hub: Arc::clone(&self.hub),
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Proxy<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = ProxyWire::deserialize(deserializer)?;
        Ok(Self {
            hub: w.hub,
            object: w.object,
            _type: PhantomData,
        })
    }
}

/// Helpers for [`served!`](crate::served)'s expansion; not API.
#[doc(hidden)]
pub mod __private {
    pub use postcard;

    pub use super::{CallFailure, Reply};

    /// Decodes a call's arguments.
    pub fn args<A: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<A, CallFailure> {
        postcard::from_bytes(bytes).map_err(|e| CallFailure::BadArguments(e.to_string()))
    }

    /// Encodes a return value.
    pub fn ret<R: serde::Serialize>(r: &R) -> Reply {
        postcard::to_allocvec(r).map_err(|e| CallFailure::Failed(format!("its return value does not serialise: {e}")))
    }
}

/// Makes a type servable by a manager process: writes its [`Served`] impl
/// (methods by name, attributes by name) and a handle trait for
/// [`Proxy`] with one method per served method.
///
/// ```ignore
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Counter { x: i64 }
/// impl Counter {
///     fn change(&mut self) { self.x += 200 }
///     fn get(&self) -> i64 { self.x }
///     fn withdraw(&mut self, n: i64) -> Result<i64, String> { ... }
/// }
/// shmproc::served! {
///     impl Counter as CounterHandle {
///         attrs { x: i64 }
///         fn change(&mut self);
///         fn get(&self) -> i64;
///         // Methods returning `Result<T, E: Display>`: an `Err` comes
///         // back as `ManagerError::MethodFailed` naming the method.
///         fallible { fn withdraw(&mut self, n: i64) -> i64; }
///     }
/// }
/// // then: let c = manager.create(Counter { x: 10 })?; c.change()?;
/// // c.getattr::<i64>("x")?; c.setattr("x", &5)?;
/// ```
#[macro_export]
macro_rules! served {
    (
        impl $ty:ident as $handle:ident {
            $(attrs { $($attr:ident : $aty:ty),* $(,)? })?
            $(fn $m:ident(& $(mut)? self $(, $a:ident : $t:ty)* $(,)?) $(-> $r:ty)?;)*
            $(fallible { $(fn $fm:ident(& $(mut)? self $(, $fa:ident : $ft:ty)* $(,)?) -> $fr:ty;)* })?
        }
    ) => {
        impl $crate::Served for $ty {
            #[allow(unused_variables, unused_parens, clippy::unused_unit)]
            fn call(&mut self, method: &str, args: &[u8]) -> $crate::Reply {
                use $crate::__served::{args as __args, ret as __ret};
                match method {
                    $(stringify!($m) => {
                        let ($($a,)*): ($($t,)*) = __args(args)?;
                        __ret(&<$ty>::$m(self $(, $a)*))
                    })*
                    $($(stringify!($fm) => {
                        let ($($fa,)*): ($($ft,)*) = __args(args)?;
                        match <$ty>::$fm(self $(, $fa)*) {
                            ::core::result::Result::Ok(v) => __ret(&v),
                            ::core::result::Result::Err(e) => ::core::result::Result::Err($crate::CallFailure::Failed(::std::string::ToString::to_string(&e))),
                        }
                    })*)?
                    _ => ::core::result::Result::Err($crate::CallFailure::NoSuchMethod),
                }
            }

            #[allow(unused_variables)]
            fn get_attr(&self, name: &str) -> $crate::Reply {
                match name {
                    $($(stringify!($attr) => $crate::__served::ret(&self.$attr),)*)?
                    _ => ::core::result::Result::Err($crate::CallFailure::NoSuchAttribute),
                }
            }

            #[allow(unused_variables)]
            fn set_attr(&mut self, name: &str, value: &[u8]) -> ::core::result::Result<(), $crate::CallFailure> {
                match name {
                    $($(stringify!($attr) => {
                        self.$attr = $crate::__served::args::<$aty>(value)?;
                        ::core::result::Result::Ok(())
                    })*)?
                    _ => ::core::result::Result::Err($crate::CallFailure::NoSuchAttribute),
                }
            }
        }

        /// Calls of the served type through its `Proxy` (generated by `served!`).
        pub trait $handle {
            $(
                #[allow(missing_docs)]
                fn $m(&self $(, $a: $t)*) -> ::core::result::Result<$crate::__served_ret!($($r)?), $crate::ManagerError>;
            )*
            $($(
                #[allow(missing_docs)]
                fn $fm(&self $(, $fa: $ft)*) -> ::core::result::Result<$fr, $crate::ManagerError>;
            )*)?
        }

        impl $handle for $crate::Proxy<$ty> {
            $(
                fn $m(&self $(, $a: $t)*) -> ::core::result::Result<$crate::__served_ret!($($r)?), $crate::ManagerError> {
                    self.call(stringify!($m), ($($a,)*))
                }
            )*
            $($(
                fn $fm(&self $(, $fa: $ft)*) -> ::core::result::Result<$fr, $crate::ManagerError> {
                    self.call(stringify!($fm), ($($fa,)*))
                }
            )*)?
        }
    };
}

/// The return type of a served method: `()` when none is written.
#[doc(hidden)]
#[macro_export]
macro_rules! __served_ret {
    () => {
        ()
    };
    ($r:ty) => {
        $r
    };
}
