//! Proves the per-packet path allocates nothing: a counting global allocator, armed per
//! thread, around `Leg::on_packet` (RTP with stats, DTMF, RTCP, strangers, re-latching,
//! malformed input) and `ReceiveStats::update`/`take_report`.
//!
//! One #[test] only, so no other test's allocations can land in the count.

#![allow(unsafe_code)]
// reason: a #[global_allocator] must implement the unsafe GlobalAlloc trait.
// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use rtp::dtmf::TelephoneEvent;
use rtp::leg::LegConfig;
use rtp::stats::ReceiveStats;
use rtp::{Leg, RtpBuilder, RtpPacket};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the bookkeeping touches only const-initialised thread-locals
// (no allocation, no lazy init) and `try_with` tolerates thread teardown.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc`/`realloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as is; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    ALLOCATIONS.with(|n| n.get())
}

#[test]
fn packet_path_allocates_nothing() {
    // Everything the loop needs is prepared before arming, as the engine would at start-up.
    let t0 = Instant::now();
    let phone: SocketAddr = "203.0.113.5:30000".parse().unwrap();
    let moved: SocketAddr = "203.0.113.5:30188".parse().unwrap();
    let attacker: SocketAddr = "198.51.100.66:4444".parse().unwrap();
    let mut leg = Leg::new(
        t0,
        LegConfig {
            dtmf_payload_type: Some(101),
            ..LegConfig::default()
        },
    );
    let mut stats = ReceiveStats::new();
    let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 7];
    let garbage = [0x90u8, 0, 1];

    // Sanity: the counter sees allocations at all.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 64]))) > 0);

    let n = allocations_during(|| {
        let mut buf = [0u8; 200];
        for i in 0..5_000u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            let seq = (i as u16).wrapping_add(65_000);
            let dtmf = TelephoneEvent {
                code: 5,
                end: i % 10 >= 7,
                volume: 10,
                duration: (i % 10) as u16 * 160,
            }
            .to_bytes();
            let b = if i % 50 < 10 {
                RtpBuilder::new(101, 7)
                    .sequence(seq)
                    .timestamp(i / 10 * 1600)
                    .payload(&dtmf)
            } else {
                RtpBuilder::new(0, 7)
                    .sequence(seq)
                    .timestamp(i * 160)
                    .payload(&[0xff; 160])
            };
            let len = b.write(&mut buf).unwrap();
            let src = if i < 2_500 { phone } else { moved };
            let _ = leg.on_packet(now, src, &buf[..len]);
            let _ = leg.on_packet(now, attacker, &buf[..len]);
            let _ = leg.on_packet(now, src, &rr);
            let _ = leg.on_rtcp_port_packet(now, src, &rr);
            let _ = leg.on_packet(now, src, &garbage);
            while leg.poll_event().is_some() {}
            let p = RtpPacket::new(&buf[..len]).unwrap();
            let _ = stats.update(now, &p, Some(8000));
            if i % 250 == 0 {
                let _ = stats.take_report();
                let _ = leg.stats_mut().take_report();
            }
            let _ = leg.is_expired(now);
            let _ = leg.counters();
        }
    });
    assert_eq!(n, 0, "the packet path allocated {n} times");
    // The run did what it claims: RTP forwarded, a re-latch, DTMF seen.
    let c = leg.counters();
    assert!(
        c.rtp_packets > 4_000 && c.relatches == 1 && c.dtmf_events > 0,
        "{c:?}"
    );
}
