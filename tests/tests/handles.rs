//! Shared objects handed to children under every start method: shared, not
//! copied; named segments swept after their creator is killed by `SIGKILL`.

use std::sync::atomic::Ordering::{Relaxed, Release};

use shmproc::{Process, RawArray, RawValue, Segment, StartMethod};
use shmproc_tests::{check, run_all, wait_flag};

type Result = shmproc_tests::TestResult;

fn add_many((v, n): (RawValue<u64>, u64)) {
    for _ in 0..n {
        v.fetch_add(1, Relaxed);
    }
}

fn write_pattern(a: RawArray<u32>) {
    for i in 0..a.len() {
        a.set(i, u32::try_from(i).expect("small") * 3).expect("in range");
    }
}

fn bump_all(vs: Vec<RawValue<i64>>) {
    for (i, v) in vs.iter().enumerate() {
        v.fetch_add(i64::try_from(i).expect("small") + 1, Relaxed);
    }
}

fn check_named((seg, name): (Segment, String)) -> std::result::Result<(), String> {
    if seg.name() == Some(name.as_str()) && seg.payload_len() == 64 {
        Ok(())
    } else {
        Err(format!("got {:?} with {} bytes", seg.name(), seg.payload_len()))
    }
}

fn create_named_then_wait((name, ready): (String, RawValue<u32>)) {
    let seg = RawValue::create_named(&name, 1u64).expect("create named segment");
    // Release: pairs with the parent's Acquire; the segment exists before.
    ready.store(1, Release);
    let _ = seg.get();
    // The segment stays mapped (and named) until this process is killed.
    shmproc_tests::sleep_until_killed();
}

fn value_and_array(m: StartMethod) -> Result {
    let v = RawValue::new(0u64)?;
    let procs: Vec<Process> = (0..4)
        .map(|_| Process::new(add_many, (v.clone(), 10_000)).with_start_method(m))
        .collect();
    run_all(&procs)?;
    check(
        v.load(Relaxed) == 40_000,
        format!("4 x 10 000 atomic adds gave {}", v.load(Relaxed)),
    )?;
    let a = RawArray::<u32>::new(1000)?;
    let p = Process::new(write_pattern, a.clone()).with_start_method(m);
    p.start()?;
    p.join()?;
    check(
        a.to_vec().iter().enumerate().all(|(i, &x)| x as usize == i * 3),
        "array pattern",
    )?;
    let vs: Vec<RawValue<i64>> = (0..20)
        .map(|_| RawValue::new(0i64))
        .collect::<std::result::Result<_, _>>()?;
    let p = Process::new(bump_all, vs.clone()).with_start_method(m);
    p.start()?;
    p.join()?;
    check(
        vs.iter()
            .enumerate()
            .all(|(i, v)| v.get() == i64::try_from(i).expect("small") + 1),
        "20 values",
    )
}

fn named_segment_keeps_its_name(m: StartMethod) -> Result {
    let name = format!("shm-test-handle-{m}-{}", std::process::id());
    let id = shmproc::TypeIdentity::of::<u8>(shmproc::SegmentKind::BYTES);
    let seg = Segment::create_named(&name, &id, 64)?;
    let p = Process::new(check_named, (seg, name.clone())).with_start_method(m);
    p.start()?;
    let code = p.join()?;
    Segment::unlink(&name)?;
    check(code == 0, "child saw another segment")
}

fn sweep_after_sigkill(m: StartMethod) -> Result {
    let name = format!("shm-test-sweep-{m}-{}", std::process::id());
    let ready = RawValue::new(0u32)?;
    let p = Process::new(create_named_then_wait, (name.clone(), ready.clone())).with_start_method(m);
    p.start()?;
    wait_flag(&ready);
    let path = format!("/dev/shm/{name}");
    check(std::path::Path::new(&path).exists(), "child did not create the segment")?;
    // The creator lives: a sweep leaves its segment alone.
    check(
        shmproc::segment::sweep()?.iter().all(|s| s.name != name),
        "swept a live creator's segment",
    )?;
    p.kill()?;
    check(p.join()? == -9, "child not killed")?;
    check(
        std::path::Path::new(&path).exists(),
        "a SIGKILLed creator cannot unlink",
    )?;
    let swept = shmproc::segment::sweep()?;
    check(
        swept.iter().any(|s| s.name == name),
        format!("sweep missed {name}: {swept:?}"),
    )?;
    check(!std::path::Path::new(&path).exists(), "residue in /dev/shm after sweep")
}

fn plain_serialisation_is_by_reference() -> Result {
    let v = RawValue::new(1u8)?;
    // Outside a process bootstrap (a message on a queue or a pipe), an
    // object serialises by reference to the sender's descriptor.
    let bytes = postcard::to_allocvec(&v).map_err(|e| e.to_string())?;
    let w: RawValue<u8> = postcard::from_bytes(&bytes).map_err(|e| e.to_string())?;
    w.set(5);
    check(v.get() == 5, "the received value shares the segment")?;
    check(
        postcard::from_bytes::<RawValue<u64>>(&bytes).is_err(),
        "the type is still checked",
    )?;
    drop(v);
    drop(w);
    // Another file may now have the descriptor's number: never taken for it.
    let _other = RawValue::new(7u8)?;
    check(
        postcard::from_bytes::<RawValue<u8>>(&bytes).is_err(),
        "a reference whose sender dropped the object is refused",
    )?;
    // A bootstrap still carries the descriptor itself.
    let v = RawValue::new(1u8)?;
    let (bytes, fds) = shmproc::handle::encode(&v)?;
    check(fds.len() == 1 && !bytes.is_empty(), "encode collects one descriptor")?;
    check(
        shmproc::handle::decode::<RawValue<u8>>(&bytes, Vec::new()).is_err(),
        "decode without its descriptor",
    )?;
    Ok(())
}

shmproc_tests::trials! {
    per_method {
        value_and_array_shared => value_and_array,
        named_segment_keeps_its_name,
        sweep_after_sigkill,
    }
    once {
        plain_serialisation_is_by_reference,
    }
}
