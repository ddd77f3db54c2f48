//! Seeded simulation of a G.711 stream (20 ms, 160 timestamp units a packet) through a
//! lossy, duplicating, reordering, jittery network into [`ReceiveStats`], checking the
//! RFC 3550 A.1/A.3/A.8 figures against what the simulation injected.
//!
//! Replay one seed with `RTP_SIM_SEED=<seed> cargo test -p rtp --test stats_sim`.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use rtp::stats::{Arrival, ReceiveStats};
use rtp::{RtpBuilder, RtpPacket};
use std::time::{Duration, Instant};

/// splitmix64: tiny, seedable, good enough for fault injection.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("RTP_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("RTP_SIM_SEED is a u64")],
        Err(_) => vec![1, 2, 3, 0xdead_beef],
    }
}

const PACKETS: u32 = 10_000;
const PTIME: Duration = Duration::from_millis(20);
const TS_STEP: u32 = 160;
const CLOCK_HZ: u32 = 8000;
const FIRST_SEQ: u16 = 65_000; // crosses the 16-bit wrap after 536 packets

#[derive(Debug, Clone, Copy)]
struct Delivery {
    at_us: u64,
    index: u32,
    duplicate: bool,
}

struct Injected {
    deliveries: Vec<Delivery>,
    lost: u64,
    duplicates: u64,
}

struct Faults {
    every_nth_lost: u32,
    loss_p: f64,
    dup_p: f64,
    reorder_p: f64,
    /// Uniform arrival noise, 0..noise_us.
    noise_us: u64,
}

/// Send times i × 20 ms; the first 20 and last 5 packets are clean so probation and the
/// final highest sequence number are known.
fn simulate(rng: &mut Rng, f: &Faults) -> Injected {
    let mut deliveries = Vec::new();
    let (mut lost, mut duplicates) = (0, 0);
    for i in 0..PACKETS {
        let sent_us = u64::from(i) * PTIME.as_micros() as u64;
        let clean = !(20..PACKETS - 5).contains(&i);
        if !clean && ((i % f.every_nth_lost == 0) || rng.chance(f.loss_p)) {
            lost += 1;
            continue;
        }
        let mut at_us = sent_us;
        if !clean {
            at_us += rng.below(f.noise_us.max(1));
            if rng.chance(f.reorder_p) {
                // Held back 1..5 packet times: well inside MAX_MISORDER.
                at_us += (1 + rng.below(5)) * 20_000;
            }
        }
        deliveries.push(Delivery {
            at_us,
            index: i,
            duplicate: false,
        });
        if !clean && rng.chance(f.dup_p) {
            duplicates += 1;
            deliveries.push(Delivery {
                at_us: at_us + 1 + rng.below(30_000),
                index: i,
                duplicate: true,
            });
        }
    }
    deliveries.sort_by_key(|d| (d.at_us, d.duplicate));
    Injected {
        deliveries,
        lost,
        duplicates,
    }
}

fn deliver(stats: &mut ReceiveStats, t0: Instant, ssrc: u32, d: &Delivery) -> Arrival {
    let mut buf = [0u8; 12 + 160];
    let seq = FIRST_SEQ.wrapping_add(d.index as u16);
    let n = RtpBuilder::new(0, ssrc)
        .sequence(seq)
        .timestamp(0x7fff_0000u32.wrapping_add(d.index * TS_STEP))
        .payload(&[0xd5; 160])
        .write(&mut buf)
        .unwrap();
    let p = RtpPacket::new(&buf[..n]).unwrap();
    stats.update(t0 + Duration::from_micros(d.at_us), &p, Some(CLOCK_HZ))
}

#[test]
fn loss_duplicates_reordering_and_wrap_are_counted_exactly() {
    for seed in seeds() {
        let mut rng = Rng(seed);
        let faults = Faults {
            every_nth_lost: 97,
            loss_p: 0.02,
            dup_p: 0.01,
            reorder_p: 0.02,
            noise_us: 30_000,
        };
        let inj = simulate(&mut rng, &faults);
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        // Reference bookkeeping for out-of-order: unique packets arriving behind the max.
        let mut max_index = 0u32;
        let mut expected_late = 0u64;
        for (k, d) in inj.deliveries.iter().enumerate() {
            let arrival = deliver(&mut stats, t0, 0x5eed, d);
            if k == 0 {
                assert_eq!(arrival, Arrival::NewSource, "seed {seed}");
            }
            if !d.duplicate {
                if d.index < max_index {
                    expected_late += 1;
                }
                max_index = max_index.max(d.index);
            }
        }
        // Probation validates the second packet (index 1): expected covers 1..PACKETS-1.
        let expected = u64::from(PACKETS - 1);
        assert_eq!(u64::from(stats.expected()), expected, "seed {seed}");
        assert_eq!(
            stats.extended_max(),
            u32::from(FIRST_SEQ) + PACKETS - 1,
            "seed {seed}: wrap across 65535 counted once"
        );
        let c = stats.counters();
        assert_eq!(c.duplicates, inj.duplicates, "seed {seed}");
        assert_eq!(c.out_of_order, expected_late, "seed {seed}");
        assert_eq!(c.jumps + c.resyncs + c.ssrc_changes, 0, "seed {seed}");
        // RFC 3550 counts duplicates as received, so they offset loss one for one.
        let lost = inj.lost as i64;
        assert_eq!(
            stats.cumulative_lost(),
            lost - inj.duplicates as i64,
            "seed {seed}: injected {lost} lost, {} duplicated",
            inj.duplicates
        );
        assert!(inj.lost > 250 && inj.duplicates > 50 && expected_late > 100);
        let report = stats.take_report();
        assert_eq!(
            i64::from(report.cumulative_lost),
            lost - inj.duplicates as i64
        );
        assert_eq!(report.extended_highest_sequence, stats.extended_max());
    }
}

/// Arrival noise uniform on [0, A): D = N_i − N_{i−1} is triangular on (−A, A) and
/// E|D| = A/3, which A.8's estimator tracks. A = 10 ms = 80 timestamp units → 26.7.
/// The time average of the estimate must be within 5 % of that (the integer form floors,
/// about −0.5 units), and the final value within 30 % (one EWMA sample, σ ≈ 3.4 units).
#[test]
fn jitter_tracks_uniform_noise() {
    for seed in seeds() {
        let mut rng = Rng(seed ^ 0x1234);
        let noise_us = 10_000u64;
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        let mut sum = 0u64;
        let mut samples = 0u64;
        for i in 0..PACKETS {
            let at_us = u64::from(i) * 20_000 + rng.below(noise_us);
            let d = Delivery {
                at_us,
                index: i,
                duplicate: false,
            };
            assert!(deliver(&mut stats, t0, 9, &d).counted() || i == 0);
            if i >= 1000 {
                sum += u64::from(stats.jitter());
                samples += 1;
            }
        }
        let theory = (noise_us as f64 / 1e6) * f64::from(CLOCK_HZ) / 3.0;
        let mean = sum as f64 / samples as f64;
        assert!(
            (mean - theory).abs() <= 0.05 * theory,
            "seed {seed}: mean jitter {mean:.2}, theory {theory:.2}"
        );
        let last = f64::from(stats.jitter());
        assert!(
            (last - theory).abs() <= 0.30 * theory,
            "seed {seed}: final jitter {last}, theory {theory:.2}"
        );
    }
}

#[test]
fn no_noise_means_no_jitter() {
    let t0 = Instant::now();
    let mut stats = ReceiveStats::new();
    for i in 0..500 {
        let d = Delivery {
            at_us: u64::from(i) * 20_000,
            index: i,
            duplicate: false,
        };
        deliver(&mut stats, t0, 9, &d);
    }
    assert_eq!(stats.jitter(), 0);
    assert_eq!(stats.cumulative_lost(), 0);
}

#[test]
fn large_jump_resyncs_after_probation() {
    let t0 = Instant::now();
    let mut stats = ReceiveStats::new();
    let mut at = 0u64;
    let mut send = |stats: &mut ReceiveStats, index: u32| {
        at += 20_000;
        deliver(
            stats,
            t0,
            77,
            &Delivery {
                at_us: at,
                index,
                duplicate: false,
            },
        )
    };
    for i in 0..100 {
        send(&mut stats, i);
    }
    assert_eq!(stats.cumulative_lost(), 0);
    // One stray far ahead: not counted, and the stream goes on undisturbed.
    assert_eq!(send(&mut stats, 40_000), Arrival::Jump);
    assert_eq!(send(&mut stats, 100), Arrival::InOrder);
    assert_eq!(stats.cumulative_lost(), 0);
    // The sender restarts 20,000 sequence numbers later without changing SSRC: the first
    // packet is a jump, the next in sequence after it resyncs (A.1 `bad_seq`).
    assert_eq!(send(&mut stats, 20_000), Arrival::Jump);
    assert_eq!(send(&mut stats, 20_001), Arrival::Resync);
    assert_eq!((stats.expected(), stats.received()), (1, 1));
    for i in 20_002..20_100 {
        assert_eq!(send(&mut stats, i), Arrival::InOrder);
    }
    assert_eq!(stats.cumulative_lost(), 0);
    // Cycles restart with the resync (A.1 `init_seq`).
    assert_eq!(
        stats.extended_max(),
        u32::from(FIRST_SEQ.wrapping_add(20_099u32 as u16))
    );
    let c = stats.counters();
    assert_eq!((c.jumps, c.resyncs), (2, 1));
}
