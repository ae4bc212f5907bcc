//! The manager process: owns the served instances and answers the hub's
//! mailboxes.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shmproc_core::FnRef;
use shmproc_core::sys::{Deadline, futex_wait, futex_wake};
use shmproc_sync::park::process_owner_id;

use super::hub::{ATTENTION, BUSY, Hub, REPLY, REQUEST, SLOTS};
use super::{CallFailure, Object, Request, Response, Served};
use crate::sync::atomic::Ordering;

/// Makes an instance from its serialised value.
type Creator = fn(&[u8]) -> Result<Box<dyn Object>, String>;

fn create<T: Served>(bytes: &[u8]) -> Result<Box<dyn Object>, String> {
    postcard::from_bytes::<T>(bytes)
        .map(|t| Box::new(t) as Box<dyn Object>)
        .map_err(|e| e.to_string())
}

// `FnRef` is one `fn()`: with the same size, its bytes are the pointer's.
const _: () = assert!(size_of::<FnRef>() == size_of::<fn()>());

/// `T`'s creator, as a function reference that can travel to the manager
/// process.
pub(crate) fn creator<T: Served>() -> FnRef {
    let f: Creator = create::<T>;
    // SAFETY: fn pointers have one size and layout; only the signature is
    // erased, and `restore` gives it back before any call.
    FnRef::new(unsafe { std::mem::transmute::<Creator, fn()>(f) })
}

fn restore(r: FnRef) -> Creator {
    // SAFETY: every FnRef in a `ServeArgs` was made by `creator`, from a
    // `Creator` (the manager process receives them only from its bootstrap,
    // which checked that it runs its parent's executable); FnRef holds
    // exactly one `fn()` (size asserted above).
    let f = unsafe { std::mem::transmute_copy::<FnRef, fn()>(&r) };
    // SAFETY: as said above: `f` was made from a `Creator`.
    unsafe { std::mem::transmute::<fn(), Creator>(f) }
}

/// The manager process's arguments.
#[derive(Serialize, Deserialize)]
pub(crate) struct ServeArgs {
    #[serde(with = "super::hub_serde")]
    pub(crate) hub: Arc<Hub>,
    pub(crate) types: Vec<(String, FnRef)>,
}

/// Spins before the manager process sleeps.
const SPINS: u32 = 50_000;

/// The manager process's body.
pub(crate) fn serve(args: ServeArgs) -> i32 {
    let hub = args.hub;
    let types: HashMap<String, Creator> = args.types.into_iter().map(|(n, f)| (n, restore(f))).collect();
    let mut objects: HashMap<u64, Box<dyn Object>> = HashMap::new();
    let mut next = 1u64;
    // Release: pairs with the Acquire load of callers (`Hub::server`).
    hub.server_word().store(process_owner_id(), Ordering::Release);
    futex_wake(hub.server_word(), u32::MAX);
    tracing::debug!("manager process serving");
    loop {
        // Acquire: pairs with callers' SeqCst `fetch_or`, after their
        // Release store of REQUEST.
        let bits = hub.pending().swap(0, Ordering::Acquire);
        for i in 0..SLOTS {
            if bits & (1 << i) != 0 {
                answer(&hub, i, &types, &mut objects, &mut next);
            }
        }
        if hub.shutdown_word().load(Ordering::Acquire) == 1 {
            break;
        }
        if bits & !ATTENTION != 0 {
            continue;
        }
        let mut spins = 0;
        while spins < SPINS && hub.pending().load(Ordering::Relaxed) == 0 {
            std::hint::spin_loop();
            spins += 1;
        }
        if spins < SPINS {
            continue;
        }
        // SeqCst, with callers' SeqCst `fetch_or` then load of `sleeping`.
        hub.sleeping().store(1, Ordering::SeqCst);
        if hub.pending().load(Ordering::SeqCst) == 0 && hub.shutdown_word().load(Ordering::SeqCst) == 0 {
            futex_wait(hub.pending(), 0, Some(Deadline::after(shmproc_core::LIVENESS_SLICE)));
        }
        hub.sleeping().store(0, Ordering::Relaxed);
    }
    tracing::debug!(objects = objects.len(), "manager process shutting down");
    0
}

fn answer(
    hub: &Hub,
    i: usize,
    types: &HashMap<String, Creator>,
    objects: &mut HashMap<u64, Box<dyn Object>>,
    next: &mut u64,
) {
    let slot = hub.slot(i);
    // Acquire: pairs with the caller's Release store of REQUEST.
    if slot.state.load(Ordering::Acquire) != REQUEST {
        return;
    }
    slot.state.store(BUSY, Ordering::Relaxed);
    let response = match hub
        .read_buf(i)
        .and_then(|b| crate::dict::decode::<Request>("request", &b))
    {
        Ok(request) => respond(request, types, objects, next),
        Err(e) => Response::Failed(CallFailure::BadArguments(e.to_string())),
    };
    let bytes = postcard::to_allocvec(&response).unwrap_or_default();
    if hub.write_buf(i, &bytes).is_err() {
        let too_big = Response::Failed(CallFailure::Failed(format!(
            "the reply of {} bytes is larger than a mailbox ({} bytes)",
            bytes.len(),
            super::hub::SLOT_BYTES
        )));
        let _ = hub.write_buf(i, &postcard::to_allocvec(&too_big).unwrap_or_default());
    }
    // SeqCst: the reply is written before REPLY (Release semantics), and
    // with the caller's SeqCst store of `waiting` then load of the state,
    // one of the two sees the other.
    slot.state.store(REPLY, Ordering::SeqCst);
    if slot.waiting.load(Ordering::SeqCst) == 1 {
        futex_wake(slot.state, 1);
    }
}

fn guarded<R>(f: impl FnOnce() -> Result<R, CallFailure>) -> Result<R, CallFailure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(CallFailure::Failed(format!("panicked: {msg}")))
        }
    }
}

fn respond(
    request: Request,
    types: &HashMap<String, Creator>,
    objects: &mut HashMap<u64, Box<dyn Object>>,
    next: &mut u64,
) -> Response {
    let done = |r: Result<Vec<u8>, CallFailure>| match r {
        Ok(b) => Response::Ok(b),
        Err(f) => Response::Failed(f),
    };
    match request {
        Request::Create { type_name, value } => match types.get(&type_name) {
            None => Response::NoType,
            Some(make) => match guarded(|| make(&value).map_err(CallFailure::BadArguments)) {
                Ok(obj) => {
                    let id = *next;
                    *next += 1;
                    objects.insert(id, obj);
                    Response::Created(id)
                }
                Err(f) => Response::Failed(f),
            },
        },
        Request::Call { object, method, args } => match objects.get_mut(&object) {
            Some(obj) => done(guarded(|| obj.call(&method, &args))),
            None => Response::NoObject,
        },
        Request::GetAttr { object, name } => match objects.get(&object) {
            Some(obj) => done(guarded(|| obj.get_attr(&name))),
            None => Response::NoObject,
        },
        Request::SetAttr { object, name, value } => match objects.get_mut(&object) {
            Some(obj) => done(guarded(|| obj.set_attr(&name, &value).map(|()| Vec::new()))),
            None => Response::NoObject,
        },
        Request::Snapshot { object } => match objects.get(&object) {
            Some(obj) => done(guarded(|| obj.snapshot())),
            None => Response::NoObject,
        },
        Request::Release { object } => match objects.remove(&object) {
            Some(obj) => {
                drop(guarded(move || {
                    drop(obj);
                    Ok(())
                }));
                Response::Ok(Vec::new())
            }
            None => Response::NoObject,
        },
    }
}
