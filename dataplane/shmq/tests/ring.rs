//! Ring behaviour: wrap-around, full/empty, batches, counters, sleep/wake, cross-thread.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{number_of, numbered, unique_name, Rng};
use shmq::{Direction, Region, RegionConfig, RegionError, Wake, RECORD_SIZE};

fn region(test: &str, cap: u32) -> (Region, shmq::UnlinkGuard) {
    let guard = unique_name(test);
    let r = Region::create(
        guard.name(),
        RegionConfig {
            cores: 2,
            ring_capacity: cap,
        },
    )
    .unwrap();
    (r, guard)
}

#[test]
fn empty_ring_pops_nothing() {
    let (r, _g) = region("empty", 8);
    let mut c = r.consumer(0, Direction::Commands).unwrap();
    assert_eq!(c.pop(), None);
    assert_eq!(c.available(), 0);
    let mut buf = [[0u8; RECORD_SIZE]; 4];
    assert_eq!(c.pop_batch(&mut buf), 0);
}

#[test]
fn full_ring_refuses_and_counts() {
    let (r, _g) = region("full", 4);
    let mut p = r.producer(0, Direction::Events).unwrap();
    let mut c = r.consumer(0, Direction::Events).unwrap();
    for i in 0..4 {
        let _ = p.push(&numbered(i)).unwrap();
    }
    let err = p.push(&numbered(4)).unwrap_err();
    assert_eq!((err.wanted, err.free), (1, 0));
    let err = p.push_batch(&[numbered(4), numbered(5)]).unwrap_err();
    assert_eq!((err.wanted, err.free), (2, 0));
    let counters = r.counters(0, Direction::Events).unwrap();
    assert_eq!(counters.rejected_pushes, 2);
    assert_eq!(counters.rejected_records, 3);
    assert_eq!(counters.depth(), 4);
    // One slot freed: a batch of two still does not fit, all or nothing.
    assert_eq!(number_of(&c.pop().unwrap()), 0);
    assert!(p.push_batch(&[numbered(4), numbered(5)]).is_err());
    let _ = p.push(&numbered(4)).unwrap();
    for i in 1..5 {
        assert_eq!(number_of(&c.pop().unwrap()), i);
    }
    assert_eq!(c.pop(), None);
    // The other rings are untouched.
    assert_eq!(
        r.counters(0, Direction::Commands).unwrap().rejected_pushes,
        0
    );
}

#[test]
fn wraps_around_many_times() {
    let (r, _g) = region("wrap", 8);
    let mut p = r.producer(1, Direction::Commands).unwrap();
    let mut c = r.consumer(1, Direction::Commands).unwrap();
    let mut next_in = 0u64;
    let mut next_out = 0u64;
    let mut rng = Rng(7);
    let mut buf = vec![[0u8; RECORD_SIZE]; 8];
    for _ in 0..2_000 {
        let n = rng.below(9) as usize;
        let batch: Vec<_> = (0..n as u64).map(|i| numbered(next_in + i)).collect();
        if p.push_batch(&batch).is_ok() {
            next_in += n as u64;
        }
        let k = rng.below(9) as usize;
        let got = c.pop_batch(&mut buf[..k]);
        for rec in &buf[..got] {
            assert_eq!(number_of(rec), next_out);
            next_out += 1;
        }
    }
    assert!(next_in > 1_000, "exercised wrap-around: {next_in}");
    let counters = r.counters(1, Direction::Commands).unwrap();
    assert_eq!(counters.pushed, next_in);
    assert_eq!(counters.popped, next_out);
}

#[test]
fn peek_without_commit_leaves_records() {
    let (r, _g) = region("peek", 8);
    let mut p = r.producer(0, Direction::Commands).unwrap();
    let mut c = r.consumer(0, Direction::Commands).unwrap();
    let _ = p
        .push_batch(&[numbered(1), numbered(2), numbered(3)])
        .unwrap();
    let mut buf = vec![[0u8; RECORD_SIZE]; 8];
    assert_eq!(c.peek_batch(&mut buf), 3);
    drop(c); // a consumer that dies before committing
    let mut c = r.consumer(0, Direction::Commands).unwrap();
    assert_eq!(c.peek_batch(&mut buf[..2]), 2);
    c.commit(1);
    assert_eq!(number_of(&c.pop().unwrap()), 2);
    assert_eq!(number_of(&c.pop().unwrap()), 3);
    assert_eq!(p.last_published().map(|r| number_of(&r)), Some(3));
}

#[test]
fn one_producer_per_ring_per_attachment() {
    let (r, _g) = region("claims", 8);
    let p = r.producer(0, Direction::Commands).unwrap();
    assert!(r.producer(0, Direction::Commands).is_none());
    assert!(r.clone().producer(0, Direction::Commands).is_none());
    assert!(
        r.producer(2, Direction::Commands).is_none(),
        "core out of range"
    );
    drop(p);
    assert!(r.producer(0, Direction::Commands).is_some());
}

#[test]
fn producer_wakes_only_a_sleeping_consumer() {
    let (r, _g) = region("wakeflag", 8);
    let mut p = r.producer(0, Direction::Events).unwrap();
    let mut c = r.consumer(0, Direction::Events).unwrap();
    assert_eq!(p.push(&numbered(0)).unwrap(), Wake::No);
    assert!(!c.prepare_sleep(), "records waiting: must not sleep");
    c.pop().unwrap();
    assert!(c.prepare_sleep());
    assert_eq!(p.push(&numbered(1)).unwrap(), Wake::Needed);
    assert_eq!(
        p.push(&numbered(2)).unwrap(),
        Wake::No,
        "one wake per sleep"
    );
    c.finish_sleep();
    assert_eq!(r.counters(0, Direction::Events).unwrap().wakeups_sent, 1);
}

#[test]
fn create_is_exclusive_and_attach_validates() {
    let (r, g) = region("excl", 8);
    assert!(matches!(
        Region::create(
            g.name(),
            RegionConfig {
                cores: 1,
                ring_capacity: 8
            }
        ),
        Err(RegionError::AlreadyExists(_))
    ));
    let a = Region::attach(g.name()).unwrap();
    assert_eq!(a.info(), r.info());
    assert_eq!(a.info().generation, 1);
    assert_eq!(a.info().dataplane_pid, std::process::id());
    let mode = std::fs::metadata(format!("/dev/shm/{}", g.name())).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );

    // Bad geometry is refused up front.
    assert!(matches!(
        Region::create(
            "trunkline-never",
            RegionConfig {
                cores: 1,
                ring_capacity: 3
            }
        ),
        Err(RegionError::BadConfig(_))
    ));
    assert!(matches!(Region::attach("a/b"), Err(RegionError::BadName)));
}

#[test]
fn attach_names_the_mismatch() {
    let g = unique_name("mismatch");
    let path = format!("/dev/shm/{}", g.name());
    std::fs::write(&path, [0u8; 16]).unwrap();
    assert!(matches!(
        Region::attach(g.name()),
        Err(RegionError::TooSmall { len: 16 })
    ));
    std::fs::write(&path, [0u8; 4096]).unwrap();
    assert!(matches!(
        Region::attach(g.name()),
        Err(RegionError::BadMagic { found: 0 })
    ));

    let cfg = RegionConfig {
        cores: 1,
        ring_capacity: 8,
    };
    let good_name = unique_name("mismatch-good");
    drop(Region::create(good_name.name(), cfg).unwrap());
    let good = std::fs::read(format!("/dev/shm/{}", good_name.name())).unwrap();
    let patch = |off: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        std::fs::write(&path, b).unwrap();
        Region::attach(g.name()).unwrap_err()
    };
    assert!(matches!(
        patch(8, &9u32.to_ne_bytes()),
        RegionError::VersionMismatch { found: 9, .. }
    ));
    assert!(matches!(
        patch(20, &128u32.to_ne_bytes()),
        RegionError::RecordSizeMismatch {
            found: 128,
            expected: 256
        }
    ));
    assert!(matches!(
        patch(16, &7u32.to_ne_bytes()),
        RegionError::BadGeometry { .. }
    ));
    assert!(matches!(
        patch(12, &2u32.to_ne_bytes()),
        RegionError::SizeMismatch { .. }
    ));
    // Commands ring of core 0: tail (offset 128) far ahead of head.
    assert!(matches!(
        patch(128, &100u64.to_ne_bytes()),
        RegionError::RingCorrupt {
            core: 0,
            direction: Direction::Commands,
            head: 0,
            tail: 100
        }
    ));
}

#[test]
fn replace_bumps_generation_and_marks_old_superseded() {
    let g = unique_name("replace");
    let cfg = RegionConfig {
        cores: 1,
        ring_capacity: 8,
    };
    let first = Region::create_or_replace(g.name(), cfg).unwrap();
    let attached = Region::attach(g.name()).unwrap();
    assert_eq!(attached.info().generation, 1);
    attached.check_current(g.name()).unwrap();
    // Same pid replaces its own region (a dataplane restarting in place).
    let second = Region::create_or_replace(g.name(), cfg).unwrap();
    assert_eq!(second.info().generation, 2);
    assert!(first.is_superseded());
    assert!(matches!(
        attached.check_current(g.name()),
        Err(RegionError::Superseded { generation: 1 })
    ));
    assert_eq!(Region::attach(g.name()).unwrap().info().generation, 2);
}

/// 1,000,000 numbered records, random batch sizes on both sides; the consumer sleeps on
/// the eventfd whenever the ring is empty, and the producer pauses now and then so the
/// sleep path is taken many times.
#[test]
fn cross_thread_million_with_sleep_and_wake() {
    const TOTAL: u64 = 1_000_000;
    let g = unique_name("xthread");
    let dp = shmq::Dataplane::create(
        g.name(),
        RegionConfig {
            cores: 1,
            ring_capacity: 1024,
        },
    )
    .unwrap();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    dp.handoff(&a).unwrap();
    let control = shmq::Control::attach(g.name(), Some(&b)).unwrap();
    let mut data_end = dp.data_end(0).unwrap();
    let mut control_end = control.control_end(0).unwrap();

    let started = Instant::now();
    let producer = std::thread::spawn(move || {
        let mut rng = Rng(0x5eed);
        let mut next = 0u64;
        let mut full = 0u64;
        while next < TOTAL {
            let n = (1 + rng.below(64)).min(TOTAL - next);
            let batch = (next..next + n).map(|i| (i, shmq::Command::Ping { echo: i }));
            match control_end.send_batch(batch) {
                Ok(()) => next += n,
                Err(shmq::SendError::Full(_)) => {
                    full += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("send failed: {e}"),
            }
            if rng.below(20_000) == 0 {
                std::thread::sleep(Duration::from_millis(2)); // let the consumer sleep
            }
        }
        full
    });
    let mut rng = Rng(0xfeed);
    let mut expected = 0u64;
    let mut sleeps = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while expected < TOTAL {
        assert!(Instant::now() < deadline, "stalled at {expected}");
        let max = 1 + rng.below(shmq::POLL_BATCH as u64) as usize;
        let got = data_end.poll_commands(max, |meta, cmd| {
            assert_eq!(cmd, Ok(shmq::Command::Ping { echo: expected }));
            assert_eq!(meta.seq, expected);
            expected += 1;
        });
        if got == 0 {
            sleeps += 1;
            data_end.wait_commands(Duration::from_millis(100)).unwrap();
        }
    }
    let elapsed = started.elapsed();
    let full = producer.join().unwrap();
    let (commands, _) = data_end.counters();
    assert_eq!(commands.pushed, TOTAL);
    assert_eq!(commands.popped, TOTAL);
    assert_eq!(commands.rejected_pushes, full);
    assert!(
        commands.wakeups_sent > 0,
        "the eventfd path was never exercised"
    );
    println!(
        "cross-thread: {TOTAL} records in {elapsed:?} = {:.0} records/s; {sleeps} empty polls, \
         {} eventfd wakes, {full} full rejections",
        TOTAL as f64 / elapsed.as_secs_f64(),
        commands.wakeups_sent
    );
}
