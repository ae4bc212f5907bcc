#[allow(clippy::cast_possible_truncation, reason = "test byte patterns")]
mod basics {
    use std::time::Duration;

    use std::sync::atomic::Ordering::Relaxed;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::super::shared::*;
    use super::super::*;
    use shmproc_core::{Fault, RecvError, RecvTimeoutError, SendError, TryRecvError};

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Job {
        id: u64,
        name: String,
    }

    #[test]
    fn fifo_maxsize_and_counts() {
        let q = Queue::<Job>::new(3).expect("queue");
        assert!(q.empty() && !q.full());
        for id in 0..3 {
            q.put(Job {
                id,
                name: format!("job {id}"),
            })
            .expect("room");
        }
        assert!(q.full());
        assert_eq!(q.qsize(), 3);
        let e = q
            .put_timeout(
                Job {
                    id: 9,
                    name: String::new(),
                },
                Duration::from_millis(20),
            )
            .unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(e.into_inner().id, 9, "the item comes back");
        let e = q
            .try_put(Job {
                id: 10,
                name: String::new(),
            })
            .unwrap_err();
        assert!(e.is_full());
        assert_eq!(e.into_inner().id, 10, "the item comes back");
        for id in 0..3 {
            assert_eq!(q.get().expect("item").id, id);
        }
        assert_eq!(
            q.get_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout(Duration::from_millis(20)))
        );
        assert_eq!(q.try_get(), Err(TryRecvError::Empty));
    }

    #[test]
    fn items_that_cannot_be_serialised_fail_at_put() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        impl<'de> Deserialize<'de> for Bad {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                Ok(Bad)
            }
        }
        let q = Queue::<Bad>::new(0).expect("queue");
        assert!(matches!(q.put(Bad), Err(SendError::Fault(Bad, Fault::Encode(_)))));
        assert_eq!(q.qsize(), 0, "nothing was sent");
    }

    #[test]
    fn a_message_that_does_not_deserialise_is_an_error_for_it_alone() {
        let q = Queue::<u8>::new(0).expect("queue");
        q.shared.put_bytes(Payload::Bytes(&[]), None).expect("raw");
        q.shared.put_bytes(Payload::Bytes(&[1, 2]), None).expect("raw");
        q.put(7).expect("room");
        assert!(matches!(q.get(), Err(RecvError::Fault(Fault::Decode(_)))), "too short");
        assert!(matches!(q.get(), Err(RecvError::Fault(Fault::Decode(_)))), "too long");
        assert_eq!(q.get(), Ok(7));
    }

    #[test]
    fn large_items_stream_through_a_small_ring() {
        let q = Queue::<Vec<u8>>::with_capacity(0, 4096).expect("queue");
        let big: Vec<u8> = (0..if cfg!(miri) { 20_000 } else { 16usize << 20 })
            .map(|i| (i % 251) as u8)
            .collect();
        std::thread::scope(|s| {
            let q2 = q.clone();
            let big2 = big.clone();
            s.spawn(move || {
                q2.put(vec![1, 2, 3]).expect("small");
                q2.put(big2).expect("big");
                q2.put(vec![4]).expect("small");
            });
            assert_eq!(q.get().expect("small"), [1, 2, 3]);
            assert!(q.get().expect("big") == big, "16 MiB intact");
            assert_eq!(q.get().expect("small"), [4]);
        });
    }

    #[test]
    fn many_threads_put_and_get_everything_once() {
        let q = Queue::<(u32, u32)>::with_capacity(16, 256).expect("queue");
        let per = if cfg!(miri) { 200 } else { 5000u32 };
        let got = std::thread::scope(|s| {
            for p in 0..3 {
                let q = q.clone();
                s.spawn(move || (0..per).for_each(|i| q.put((p, i)).expect("put")));
            }
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut seen = Vec::new();
                        while let Ok(x) = q.get_timeout(Duration::from_secs(2)) {
                            seen.push(x);
                        }
                        seen
                    })
                })
                .collect();
            consumers
                .into_iter()
                .map(|c| c.join().expect("consumer"))
                .collect::<Vec<_>>()
        });
        for seen in &got {
            for p in 0..3 {
                let mine: Vec<u32> = seen.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "FIFO per producer");
            }
        }
        let mut all: Vec<_> = got.into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all.len(), 3 * per as usize);
        all.dedup();
        assert_eq!(all.len(), 3 * per as usize, "no duplicates");
    }

    #[test]
    fn joinable_counts_tasks() {
        let q = JoinableQueue::<u32>::new(0).expect("queue");
        for i in 0..4 {
            q.put(i).expect("room");
        }
        assert_eq!(q.unfinished(), 4);
        std::thread::scope(|s| {
            s.spawn(|| {
                while let Ok(_item) = q.get_timeout(Duration::from_millis(200)) {
                    q.task_done().expect("one per item");
                }
            });
            q.join();
        });
        assert_eq!(q.unfinished(), 0);
        assert_eq!(q.task_done(), Err(TaskDoneError));
        assert_eq!(
            shmproc_core::Error::from(TaskDoneError).kind(),
            shmproc_core::ErrorKind::Usage
        );
    }

    #[test]
    fn a_scribbled_ring_is_an_error_not_a_crash() {
        let q = Queue::<u64>::with_capacity(0, 256).expect("queue");
        // Scribbled caches are not trusted: nothing is lost.
        q.shared.header().put_head.store(0xdead_beef, Relaxed);
        q.shared.header().get_tail.store(0xdead_beef, Relaxed);
        q.put(4).expect("room");
        assert_eq!(q.get(), Ok(4));
        // Scribbled counts are clamped.
        q.shared.header().gets.store(77, Relaxed);
        assert_eq!(q.qsize(), 0);
        q.shared
            .header()
            .gets
            .store(q.shared.header().puts.load(Relaxed), Relaxed);
        q.put(5).expect("room");
        q.shared.raw.header().tail.store(1 << 20, Relaxed);
        assert!(matches!(
            q.get(),
            Err(RecvError::Fault(Fault::Corrupted { object: "queue", .. }))
        ));
    }

    #[test]
    fn a_received_queue_of_another_type_or_size_is_refused() {
        let q = Queue::<u64>::new(0).expect("queue");
        let seg = q.shared.seg.try_clone().expect("clone");
        assert!(QueueShared::attach(seg, &Queue::<String>::identity()).is_err());
        let seg = q.shared.seg.try_clone().expect("clone");
        q.shared.raw.header().capacity.store(12345, Relaxed);
        assert!(QueueShared::attach(seg, &Queue::<u64>::identity()).is_err());
    }
}

/// The child half of [`named_queue_opens_in_an_unrelated_process`]: run
/// by the parent as a new process of this test binary, given only the
/// queues' names (in the environment). Does nothing when run alone.
#[test]
#[ignore = "run by named_queue_opens_in_an_unrelated_process"]
fn named_queue_child() {
    use std::time::Duration;

    use super::{Queue, SimpleQueue};

    let Ok(name) = std::env::var("SHM_TEST_NAMED_QUEUE") else {
        return;
    };
    let requests = Queue::<String>::open(&name).expect("open the request queue");
    let replies = SimpleQueue::<String>::open(&format!("{name}-reply")).expect("open the reply queue");
    for _ in 0..3 {
        let word = requests.get_timeout(Duration::from_secs(60)).expect("a request");
        replies.put(word.to_uppercase()).expect("reply");
    }
}

/// A queue made by name is opened by a process we did not start as a
/// `Process` (a fresh run of this test binary, given only the name), and
/// items go both ways; opening it as another type or kind fails, naming
/// both.
#[test]
#[cfg_attr(miri, ignore = "spawns a process and opens named segments in /dev/shm")]
fn named_queue_opens_in_an_unrelated_process() {
    use std::time::Duration;

    use shmproc_core::{Segment, SegmentError};

    use super::{JoinableQueue, Queue, SimpleQueue};

    let name = format!("shmproc-collections-test-queue-{}", std::process::id());
    let reply_name = format!("{name}-reply");
    let requests = Queue::<String>::create_named(&name, 0).expect("named queue");
    let replies = SimpleQueue::<String>::create_named(&reply_name).expect("named reply queue");
    let wrong = Queue::<u32>::open(&name).expect_err("a queue of Strings is not one of u32");
    let message = wrong.to_string();
    assert!(
        matches!(wrong, SegmentError::TypeMismatch { .. }) && message.contains("u32") && message.contains("String"),
        "{message}"
    );
    let not_joinable = JoinableQueue::<String>::open(&name).expect_err("not joinable");
    assert!(
        matches!(not_joinable, SegmentError::TypeMismatch { .. }),
        "{not_joinable}"
    );
    for word in ["one", "two", "three"] {
        requests.put(word.into()).expect("room");
    }
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "queue::tests::named_queue_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env("SHM_TEST_NAMED_QUEUE", &name)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the child");
    let got: Vec<String> = (0..3)
        .map(|_| replies.get_timeout(Duration::from_secs(60)).expect("a reply"))
        .collect();
    assert_eq!(got, ["ONE", "TWO", "THREE"]);
    // The child's gets are bounded (60 s each): this wait ends.
    assert!(child.wait().expect("child status").success(), "the child failed");
    Segment::unlink(&name).expect("unlink");
    Segment::unlink(&reply_name).expect("unlink");
}
