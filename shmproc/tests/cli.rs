//! The `shm` command lists named segments and cleans those of dead creators.

use std::os::unix::fs::FileExt;
use std::process::Command;

fn shm(arg: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shm"))
        .arg(arg)
        .output()
        .expect("run shm");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn list_and_clean_a_segment_whose_creator_died() {
    let name = format!("shm-cli-test-{}", std::process::id());
    let value = shmproc::RawValue::create_named(&name, 5u32).expect("create");
    let listed = shm("list");
    let line = listed.lines().find(|l| l.starts_with(&name)).expect("listed");
    assert!(
        line.contains("alive") && line.contains("value") && line.contains("u32"),
        "{line}"
    );
    // Make the creator a process that does not exist (pid field at offset 64).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .expect("open");
    f.write_all_at(&u32::MAX.to_le_bytes(), 64).expect("write");
    assert!(shm("list").lines().any(|l| l.starts_with(&name) && l.contains("dead")));
    let cleaned = shm("clean");
    assert!(cleaned.contains(&format!("removed {name}")), "{cleaned}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    // The mapping outlives the name.
    assert_eq!(value.get(), 5);
}

#[test]
fn unknown_command_prints_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_shm"))
        .arg("bogus")
        .output()
        .expect("run shm");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
