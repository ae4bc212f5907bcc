//! The `shm` command: the live shared objects of this user and their state.
//!
//! ```text
//! shm list [--json]          every live object: named segments, and the
//!                            anonymous ones (memfds) found through /proc
//! shm inspect ID [--json]    one object in full (ID as `list` shows it)
//! shm clean [--json]         remove the named segments no live process uses
//! ```
//!
//! Objects are read, never written: each one's header and first bytes are
//! copied with `pread` and described from the copy (queue depth, lock
//! holder and whether it runs, semaphore value, pool workers, manager
//! containers). A header that does not validate is shown as such.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::{Value, json};
use shmproc::segment::{Field, LiveSegment, State};
use shmproc::{SegmentError, SegmentKind};

/// Payload bytes copied per object: every header a description reads (a
/// pool of 1024 workers included).
const PAYLOAD: usize = 64 << 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let rest: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--json").collect();
    let result = match rest.as_slice() {
        ["list"] => list(json),
        ["inspect", id] => inspect(id, json),
        ["clean"] => clean(json),
        _ => {
            eprintln!("usage: shm list [--json] | shm inspect ID [--json] | shm clean [--json]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shm {}: {e}", rest.first().copied().unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

fn list(json: bool) -> Result<ExitCode, SegmentError> {
    let all = shmproc::segment::census(PAYLOAD)?;
    if json {
        let v: Vec<Value> = all.iter().map(to_json).collect();
        println!("{}", Value::Array(v));
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no live shm objects of this user");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<18} {:>10} {:<15} {:<14} STATE",
        "ID", "TYPE", "BYTES", "CREATOR", "PROCESSES"
    );
    for s in &all {
        let holders = s.holders.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let state = match &s.info {
            Ok(_) => state_of(s).map(|st| one_line(&st)).unwrap_or_default(),
            Err(why) => format!("invalid: {why}"),
        };
        println!(
            "{:<28} {:<18} {:>10} {:<15} {:<14} {state}",
            s.id,
            kind_name(s),
            s.bytes,
            creator(s),
            if holders.is_empty() { "-".into() } else { holders },
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(id: &str, json: bool) -> Result<ExitCode, SegmentError> {
    let Some(s) = shmproc::segment::find(id, PAYLOAD)? else {
        eprintln!("shm inspect: no live object {id:?} (it may have ended; `shm list` shows what is there)");
        return Ok(ExitCode::from(3));
    };
    if json {
        println!("{}", to_json(&s));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(out, "id:        {}", s.id);
    let _ = writeln!(out, "label:     {}", s.label);
    if let Some(name) = &s.name {
        let _ = writeln!(out, "name:      {name}");
    }
    let _ = writeln!(out, "bytes:     {}", s.bytes);
    let _ = writeln!(out, "creator:   {}", creator(&s));
    let holders: Vec<String> = s
        .holders
        .iter()
        .map(|&p| format!("{p} ({})", alive_word(is_alive(p))))
        .collect();
    let _ = writeln!(out, "processes: {}", holders.join(", "));
    match &s.info {
        Ok(info) => {
            let _ = writeln!(out, "kind:      {}", kind_name(&s));
            let _ = writeln!(out, "type:      {}", info.type_name);
            let _ = writeln!(out, "payload:   {} bytes", info.payload_len);
            for (key, field) in state_of(&s).unwrap_or_default() {
                let _ = writeln!(out, "{:<10} {}", format!("{key}:"), human(&field));
            }
        }
        Err(why) => {
            let _ = writeln!(out, "header:    invalid: {why}");
        }
    }
    print!("{out}");
    Ok(if s.info.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    })
}

fn clean(json: bool) -> Result<ExitCode, SegmentError> {
    let swept = shmproc::segment::sweep()?;
    if json {
        let v: Vec<Value> = swept
            .iter()
            .map(|s| json!({ "name": s.name, "creator_pid": s.creator_pid }))
            .collect();
        println!("{}", Value::Array(v));
    } else {
        for s in &swept {
            println!(
                "removed {} (creator {} is gone, and no live process uses it)",
                s.name, s.creator_pid
            );
        }
        println!("{} segment(s) removed", swept.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// The state of an object, by its kind: each crate describes its own.
fn state_of(s: &LiveSegment) -> Option<State> {
    let info = s.info.as_ref().ok()?;
    let (kind, p) = (info.kind, s.payload.as_slice());
    shmproc_sync::inspect::describe(kind, p)
        .or_else(|| shmproc_collections::inspect::describe(kind, p))
        .or_else(|| shmproc_pool::inspect::describe(kind, p))
        .or_else(|| shmproc_manager::inspect::describe(kind, p))
        .or_else(|| {
            (info.elem_size > 0 && matches!(kind, SegmentKind::VALUE | SegmentKind::ARRAY))
                .then(|| vec![("elements", Field::Count(info.payload_len / info.elem_size))])
        })
}

fn kind_name(s: &LiveSegment) -> String {
    match &s.info {
        Ok(info) => info.kind.name().to_owned(),
        Err(_) => "?".to_owned(),
    }
}

fn creator(s: &LiveSegment) -> String {
    if s.creator_pid == 0 {
        return "-".into();
    }
    format!("{} ({})", s.creator_pid, alive_word(s.creator_alive))
}

fn is_alive(pid: u32) -> bool {
    shmproc::liveness::is_alive(pid, shmproc::liveness::Started::Any)
}

fn alive_word(alive: bool) -> &'static str {
    if alive { "alive" } else { "dead" }
}

fn human(f: &Field) -> String {
    match f {
        Field::Count(n) => n.to_string(),
        Field::Flag(b) => if *b { "yes" } else { "no" }.into(),
        Field::Task { pid, alive } => format!("pid {pid} ({})", alive_word(*alive)),
        Field::Text(t) => t.clone(),
    }
}

fn one_line(st: &State) -> String {
    st.iter()
        .map(|(k, f)| format!("{}={}", k.replace(' ', "_"), human(f).replace(' ', "")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn field_json(f: &Field) -> Value {
    match f {
        Field::Count(n) => json!(n),
        Field::Flag(b) => json!(b),
        Field::Task { pid, alive } => json!({ "pid": pid, "alive": alive }),
        Field::Text(t) => json!(t),
    }
}

fn to_json(s: &LiveSegment) -> Value {
    let mut v = json!({
        "id": s.id,
        "label": s.label,
        "name": s.name,
        "bytes": s.bytes,
        "creator": { "pid": s.creator_pid, "alive": s.creator_alive },
        "processes": s.holders.iter().map(|&p| json!({ "pid": p, "alive": is_alive(p) })).collect::<Vec<_>>(),
    });
    match &s.info {
        Ok(info) => {
            v["kind"] = json!(info.kind.name());
            v["type"] = json!(info.type_name);
            v["payload_bytes"] = json!(info.payload_len);
            // Repeated keys (a pool's workers) become lists.
            let mut state = serde_json::Map::new();
            for (k, f) in state_of(s).unwrap_or_default() {
                let val = field_json(&f);
                match state.get_mut(k) {
                    Some(Value::Array(a)) if k == "worker" => a.push(val),
                    _ if k == "worker" => {
                        state.insert(k.to_owned(), Value::Array(vec![val]));
                    }
                    _ => {
                        state.insert(k.to_owned(), val);
                    }
                }
            }
            v["state"] = Value::Object(state);
        }
        Err(why) => v["error"] = json!(why),
    }
    v
}
