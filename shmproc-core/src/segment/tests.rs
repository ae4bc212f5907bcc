use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
#[allow(clippy::disallowed_types, reason = "a test-local counter, not shared memory")]
use std::sync::atomic::{AtomicU32 as Counter, Ordering::Relaxed};

use super::*;

#[allow(clippy::disallowed_types, reason = "a test-local counter, not shared memory")]
fn unique(tag: &str) -> String {
    static N: Counter = Counter::new(0);
    format!("shm-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Relaxed))
}

fn id_u64() -> TypeIdentity {
    TypeIdentity::of::<u64>(SegmentKind::VALUE)
}

/// Tests that sweep run one at a time: a sweep removes every dead
/// creator's segment, so a concurrent one would report another test's.
static SWEEPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sweep_alone() -> std::sync::MutexGuard<'static, ()> {
    SWEEPING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes a named segment when the test ends, pass or fail.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.0);
    }
}

fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .expect("segment file exists");
    f.write_all_at(bytes, offset).expect("write header bytes");
}

#[test]
fn anonymous_segment_is_zeroed_and_validated() {
    let seg = Segment::create(&id_u64(), 8).expect("create");
    assert_eq!(seg.payload_len(), 8);
    assert_eq!(seg.info().kind, SegmentKind::VALUE);
    assert_eq!(seg.info().type_name, "u64");
    assert_eq!(seg.info().creator_pid, std::process::id());
    // SAFETY: the payload holds 8 bytes and is 128-aligned.
    assert_eq!(unsafe { seg.payload().cast::<u64>().as_ptr().read() }, 0);
    assert_eq!(seg.payload().as_ptr().addr() % MAX_ALIGN, 0);
}

#[test]
fn anonymous_segment_cannot_be_resized() {
    let seg = Segment::create(&id_u64(), 8).expect("create");
    assert!(sys::is_shrink_sealed(seg.fd()));
    assert!(sys::set_len(seg.fd(), 4).is_err(), "a sealed memfd refuses to shrink");
    assert!(sys::set_len(seg.fd(), 1 << 20).is_err(), "and to grow");
}

#[test]
fn attach_by_fd_checks_type() {
    let seg = Segment::create(&id_u64(), 8).expect("create");
    let fd = seg.fd().try_clone_to_owned().expect("dup");
    let again = Segment::from_fd(fd, Some(&id_u64())).expect("same type attaches");
    assert_eq!(again.info(), seg.info());
    let fd = seg.fd().try_clone_to_owned().expect("dup");
    let wrong = TypeIdentity::of::<f64>(SegmentKind::VALUE);
    assert!(matches!(
        Segment::from_fd(fd, Some(&wrong)),
        Err(SegmentError::TypeMismatch { .. })
    ));
    let fd = seg.fd().try_clone_to_owned().expect("dup");
    let wrong_kind = TypeIdentity::of::<u64>(SegmentKind::ARRAY);
    let err = Segment::from_fd(fd, Some(&wrong_kind)).expect_err("kind differs");
    assert!(err.to_string().contains("expected array of u64"), "{err}");
}

#[test]
fn zero_and_absurd_sizes_are_refused() {
    assert!(matches!(
        Segment::create(&id_u64(), 0),
        Err(SegmentError::InvalidSize { requested: 0, .. })
    ));
    assert!(matches!(
        Segment::create(&id_u64(), usize::MAX),
        Err(SegmentError::InvalidSize { .. })
    ));
    assert!(matches!(
        Segment::create(&id_u64(), 1 << 60),
        Err(SegmentError::InvalidSize { .. })
    ));
}

#[test]
fn over_aligned_types_are_refused() {
    #[repr(C, align(256))]
    struct Big(u8);
    let id = TypeIdentity::of::<Big>(SegmentKind::VALUE);
    assert!(matches!(
        Segment::create(&id, 256),
        Err(SegmentError::UnsupportedType { .. })
    ));
}

#[test]
fn invalid_names_are_refused() {
    for (name, why) in [
        ("", "empty"),
        ("a/b", "only letters"),
        (".hidden", "dot"),
        ("sp ace", "only letters"),
    ] {
        let err = Segment::create_named(name, &id_u64(), 8).expect_err(name);
        assert!(matches!(err, SegmentError::InvalidName { .. }), "{name}: {err}");
        assert!(err.to_string().contains(why), "{name}: {err}");
    }
    let long = "x".repeat(MAX_NAME_LEN + 1);
    assert!(matches!(
        Segment::open_named(&long, None),
        Err(SegmentError::InvalidName { .. })
    ));
}

#[test]
fn named_segment_round_trip_and_unlink() {
    let name = unique("named");
    let _c = Cleanup(name.clone());
    let seg = Segment::create_named(&name, &id_u64(), 8).expect("create");
    // SAFETY: the payload holds a u64.
    unsafe { seg.payload().cast::<u64>().as_ptr().write(42) };
    let other = Segment::open_named(&name, Some(&id_u64())).expect("open");
    // SAFETY: as above; both map the same object.
    assert_eq!(unsafe { other.payload().cast::<u64>().as_ptr().read() }, 42);
    assert_eq!(other.name(), Some(name.as_str()));
    assert!(matches!(
        Segment::create_named(&name, &id_u64(), 8),
        Err(SegmentError::AlreadyExists { .. })
    ));
    Segment::unlink(&name).expect("unlink");
    assert!(matches!(
        Segment::open_named(&name, None),
        Err(SegmentError::NotFound { .. })
    ));
    assert!(matches!(Segment::unlink(&name), Err(SegmentError::NotFound { .. })));
    // SAFETY: the mapping outlives the name.
    assert_eq!(unsafe { other.payload().cast::<u64>().as_ptr().read() }, 42);
}

/// Makes a named u64 segment, lets `damage` scribble on it, and returns
/// what opening it says.
fn open_after(damage: impl FnOnce(&str)) -> SegmentError {
    let name = unique("bad");
    let _c = Cleanup(name.clone());
    drop(Segment::create_named(&name, &id_u64(), 8).expect("create"));
    damage(&name);
    Segment::open_named(&name, Some(&id_u64())).expect_err("damaged segment must not open")
}

#[test]
#[cfg_attr(miri, ignore = "writes files in /dev/shm directly")]
fn corrupted_headers_give_distinct_errors() {
    assert!(matches!(
        open_after(|n| poke(n, 0, b"NOTSHM!!")),
        SegmentError::BadMagic { .. }
    ));
    assert!(matches!(
        open_after(|n| poke(n, 8, &7u32.to_le_bytes())),
        SegmentError::VersionMismatch { expected: 1, found: 7 }
    ));
    assert!(matches!(
        open_after(|n| poke(n, 12, &0u32.to_le_bytes())),
        SegmentError::NotInitialized
    ));
    assert!(matches!(
        open_after(|n| poke(n, 40, &4096u64.to_le_bytes())),
        SegmentError::LengthMismatch { header: 4096, .. }
    ));
    assert!(matches!(
        open_after(|n| poke(n, 48, &7u64.to_le_bytes())),
        SegmentError::Corrupted {
            field: "payload_offset",
            ..
        }
    ));
    assert!(matches!(
        open_after(|n| poke(n, 56, &u64::MAX.to_le_bytes())),
        SegmentError::Corrupted {
            field: "payload_len",
            ..
        }
    ));
    assert!(matches!(
        open_after(|n| poke(n, 20, &3u32.to_le_bytes())),
        SegmentError::Corrupted {
            field: "elem_align",
            ..
        }
    ));
    assert!(matches!(
        open_after(|n| poke(n, 32, &1u64.to_le_bytes())),
        SegmentError::TypeMismatch { .. }
    ));
}

#[test]
#[cfg_attr(miri, ignore = "writes files in /dev/shm directly")]
fn short_and_grown_files_are_refused() {
    let err = open_after(|n| {
        let f = OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{n}"))
            .expect("open");
        f.set_len(10).expect("truncate");
    });
    assert!(matches!(err, SegmentError::TooShort { len: 10, .. }), "{err}");
    let err = open_after(|n| {
        let f = OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{n}"))
            .expect("open");
        f.set_len(1 << 16).expect("grow");
    });
    assert!(matches!(err, SegmentError::LengthMismatch { .. }), "{err}");
}

#[test]
#[cfg_attr(miri, ignore = "writes files in /dev/shm directly")]
fn foreign_object_is_not_a_segment() {
    let _alone = sweep_alone();
    let name = unique("foreign");
    let _c = Cleanup(name.clone());
    std::fs::write(format!("/dev/shm/{name}"), vec![0xAB; 4096]).expect("write a foreign object");
    assert!(matches!(
        Segment::open_named(&name, None),
        Err(SegmentError::BadMagic { .. })
    ));
    // The sweep never touches what is not ours.
    sweep().expect("sweep");
    assert!(std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

#[test]
#[cfg_attr(miri, ignore = "the census reads /proc")]
fn sweep_keeps_segments_of_live_creators() {
    let _alone = sweep_alone();
    let name = unique("live");
    let _c = Cleanup(name.clone());
    let _seg = Segment::create_named(&name, &id_u64(), 8).expect("create");
    let swept = sweep().expect("sweep");
    assert!(swept.iter().all(|s| s.name != name));
    let listed = list_named().expect("list");
    let me = listed.iter().find(|s| s.name == name).expect("listed");
    assert!(me.creator_alive);
    assert_eq!(me.creator_pid, std::process::id());
}

#[test]
#[cfg_attr(miri, ignore = "writes files in /dev/shm directly")]
fn sweep_removes_segments_of_dead_creators() {
    let _alone = sweep_alone();
    let name = unique("dead");
    let _c = Cleanup(name.clone());
    drop(Segment::create_named(&name, &id_u64(), 8).expect("create"));
    // Pretend the creator was a process that no longer exists.
    poke(&name, 64, &u32::MAX.to_le_bytes());
    let swept = sweep().expect("sweep");
    assert!(
        swept.iter().any(|s| s.name == name && s.creator_pid == u32::MAX),
        "{swept:?}"
    );
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

#[test]
#[cfg_attr(miri, ignore = "opens a named segment in /dev/shm")]
fn damaged_headers_are_errors_not_garbage() {
    // A creator that died before writing anything leaves an all-zero header.
    assert!(matches!(
        open_after(|n| poke(n, 0, &[0u8; HEADER_LEN])),
        SegmentError::NotInitialized
    ));
    // Zero magic with the state still READY is not "not yet ready": it is
    // not a segment of ours.
    assert!(matches!(
        open_after(|n| poke(n, 0, &0u64.to_le_bytes())),
        SegmentError::BadMagic { found: 0, .. }
    ));
    // A wrong magic over a header whose state was never published.
    assert!(matches!(
        open_after(|n| {
            poke(n, 0, b"garbage!");
            poke(n, 12, &0u32.to_le_bytes());
        }),
        SegmentError::BadMagic { .. }
    ));
    // The header's length disagrees with the file's.
    assert!(matches!(
        open_after(|n| poke(n, 40, &(HEADER_LEN as u64 + 16).to_le_bytes())),
        SegmentError::LengthMismatch { .. }
    ));
}

#[test]
#[cfg_attr(miri, ignore = "memfd_create and mmap are syscalls")]
fn anonymous_all_zero_file_is_not_initialized() {
    let fd = sys::memfd(c"shm-test-zero").expect("memfd");
    sys::set_len(fd.as_fd(), 4096).expect("ftruncate");
    assert!(matches!(Segment::from_fd(fd, None), Err(SegmentError::NotInitialized)));
}
