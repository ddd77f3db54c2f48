//! Symmetric-RTP latching through [`Leg::on_packet`]: first packet latches, strangers are
//! dropped and counted, a verified change re-latches after K packets, random attackers
//! never take over a live stream, a NAT port change mid-stream re-latches.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use rtp::leg::{LegConfig, LegEvent};
use rtp::{DropReason, Leg, RtpBuilder, Verdict};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let b = RtpBuilder::new(8, ssrc)
        .sequence(seq)
        .timestamp(u32::from(seq).wrapping_mul(160))
        .payload(&[0xd5; 160]);
    let mut buf = vec![0u8; b.len()];
    b.write(&mut buf).unwrap();
    buf
}

const PHONE: &str = "203.0.113.5:30000";
const PHONE_NEW_PORT: &str = "203.0.113.5:30188";
const ATTACKER: &str = "198.51.100.66:4444";

fn at(t0: Instant, i: u64) -> Instant {
    t0 + Duration::from_millis(20 * i)
}

#[test]
fn first_packet_latches_and_strangers_are_counted() {
    let t0 = Instant::now();
    let mut leg = Leg::new(t0, LegConfig::default());
    assert_eq!(leg.send_addr(), None);
    assert_eq!(leg.on_packet(t0, addr(PHONE), &rtp(1, 1)), Verdict::Forward);
    assert_eq!(leg.latched(), Some(addr(PHONE)));
    assert_eq!(
        leg.poll_event(),
        Some(LegEvent::Latched { addr: addr(PHONE) })
    );
    for i in 0..5 {
        assert_eq!(
            leg.on_packet(t0, addr(ATTACKER), &rtp(99, i)),
            Verdict::Drop(DropReason::Stranger)
        );
    }
    let c = leg.counters();
    assert_eq!((c.latches, c.strangers, c.rtp_packets), (1, 5, 1));
    assert_eq!(leg.poll_event(), None);
}

#[test]
fn expected_address_is_only_a_hint_under_symmetric_policy() {
    let t0 = Instant::now();
    let sdp = addr("10.0.0.5:30000"); // private address behind NAT
    let mut leg = Leg::new(
        t0,
        LegConfig {
            expected_peer: Some(sdp),
            ..LegConfig::default()
        },
    );
    assert_eq!(leg.send_addr(), Some(sdp));
    assert_eq!(leg.on_packet(t0, addr(PHONE), &rtp(1, 1)), Verdict::Forward);
    assert_eq!(leg.send_addr(), Some(addr(PHONE)));
}

#[test]
fn nat_port_change_mid_stream_relatches_after_k() {
    let t0 = Instant::now();
    let mut leg = Leg::new(t0, LegConfig::default());
    let mut seq = 65_530u16; // and across the wrap
    for i in 0..50 {
        assert_eq!(
            leg.on_packet(at(t0, i), addr(PHONE), &rtp(7, seq)),
            Verdict::Forward
        );
        seq = seq.wrapping_add(1);
    }
    leg.poll_event();
    // NAT rebinding: same SSRC, continuing sequence, new port, no silence.
    for k in 0..3u64 {
        let v = leg.on_packet(at(t0, 50 + k), addr(PHONE_NEW_PORT), &rtp(7, seq));
        seq = seq.wrapping_add(1);
        if k < 2 {
            assert_eq!(v, Verdict::Drop(DropReason::Stranger), "packet {k}");
        } else {
            assert_eq!(v, Verdict::Forward);
        }
    }
    assert_eq!(leg.latched(), Some(addr(PHONE_NEW_PORT)));
    assert_eq!(
        leg.poll_event(),
        Some(LegEvent::Relatched {
            from: addr(PHONE),
            to: addr(PHONE_NEW_PORT)
        })
    );
    // The old binding is now the stranger.
    assert_eq!(
        leg.on_packet(at(t0, 60), addr(PHONE), &rtp(7, seq)),
        Verdict::Drop(DropReason::Stranger)
    );
    let c = leg.counters();
    assert_eq!((c.relatches, c.strangers, c.ssrc_changes), (1, 3, 0));
    // Two packets went missing from the receiver's view (dropped while verifying).
    assert_eq!(leg.stats().cumulative_lost(), 2);
}

#[test]
fn new_ssrc_after_silence_relatches() {
    let t0 = Instant::now();
    let mut leg = Leg::new(t0, LegConfig::default());
    for i in 0..10 {
        leg.on_packet(at(t0, i), addr(PHONE), &rtp(1, i as u16));
    }
    // Before the silence threshold a different SSRC never qualifies.
    for i in 0..10u16 {
        assert_eq!(
            leg.on_packet(
                at(t0, 11 + u64::from(i)),
                addr(PHONE_NEW_PORT),
                &rtp(2, 500 + i)
            ),
            Verdict::Drop(DropReason::Stranger)
        );
    }
    // 1 s after the latched source's last packet, K in-sequence packets take over.
    let later = at(t0, 9) + Duration::from_secs(1);
    let mut verdicts = Vec::new();
    for i in 0..3u16 {
        verdicts.push(leg.on_packet(
            later + Duration::from_millis(20 * u64::from(i)),
            addr(PHONE_NEW_PORT),
            &rtp(2, 600 + i),
        ));
    }
    assert_eq!(
        verdicts,
        [
            Verdict::Drop(DropReason::Stranger),
            Verdict::Drop(DropReason::Stranger),
            Verdict::Forward
        ]
    );
    let c = leg.counters();
    assert_eq!((c.relatches, c.ssrc_changes), (1, 1));
}

#[test]
fn packet_from_latched_source_cancels_candidate() {
    let t0 = Instant::now();
    let mut leg = Leg::new(t0, LegConfig::default());
    let mut seq = 100u16;
    for i in 0..10 {
        leg.on_packet(at(t0, i), addr(PHONE), &rtp(7, seq));
        seq += 1;
    }
    // Interleaved: new port, old port, new port, ... never K consecutive.
    for i in 0..20 {
        let from = if i % 2 == 0 { PHONE_NEW_PORT } else { PHONE };
        leg.on_packet(at(t0, 10 + i), addr(from), &rtp(7, seq));
        seq += 1;
    }
    assert_eq!(leg.latched(), Some(addr(PHONE)));
    assert_eq!(leg.counters().relatches, 0);
}

#[test]
fn random_attackers_never_relatch_a_live_stream() {
    let t0 = Instant::now();
    let mut rng = Rng(42);
    let mut leg = Leg::new(t0, LegConfig::default());
    let mut seq = 1000u16;
    let mut forwarded_from_attackers = 0;
    for i in 0..20_000u64 {
        // The real phone sends every 20 ms; between its packets, a flood of attacker
        // packets with random SSRC and sequence from a few addresses.
        leg.on_packet(at(t0, i), addr(PHONE), &rtp(0xabc, seq));
        seq = seq.wrapping_add(1);
        for _ in 0..3 {
            let r = rng.next_u64();
            let port = 1024 + (r % 4) as u16;
            let src = SocketAddr::new(addr(ATTACKER).ip(), port);
            let bytes = rtp((r >> 16) as u32, (r >> 48) as u16);
            if leg.on_packet(at(t0, i), src, &bytes) == Verdict::Forward {
                forwarded_from_attackers += 1;
            }
        }
    }
    assert_eq!(forwarded_from_attackers, 0);
    assert_eq!(leg.latched(), Some(addr(PHONE)));
    let c = leg.counters();
    assert_eq!((c.relatches, c.strangers), (0, 60_000));
}

#[test]
fn rtcp_mux_follows_rtp_latch() {
    let t0 = Instant::now();
    let mut leg = Leg::new(t0, LegConfig::default());
    // RR, no report blocks.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
    assert_eq!(
        leg.on_packet(t0, addr(PHONE), &rr),
        Verdict::Drop(DropReason::NotYetLatched)
    );
    leg.on_packet(t0, addr(PHONE), &rtp(7, 1));
    assert_eq!(leg.on_packet(t0, addr(PHONE), &rr), Verdict::Forward);
    assert_eq!(
        leg.on_packet(t0, addr(ATTACKER), &rr),
        Verdict::Drop(DropReason::Stranger)
    );
    assert_eq!(leg.counters().rtcp_packets, 1);
}

#[test]
fn separate_rtcp_port_latches_and_follows_rtp_ip() {
    let t0 = Instant::now();
    let mut leg = Leg::new(t0, LegConfig::default());
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
    leg.on_packet(t0, addr(PHONE), &rtp(7, 1));
    leg.on_packet(t0, addr(PHONE), &rtp(7, 2));
    assert_eq!(
        leg.on_rtcp_port_packet(t0, addr("203.0.113.5:30001"), &rr),
        Verdict::Forward
    );
    // Same IP, new port, sender SSRC of the RTP stream: follows.
    assert_eq!(
        leg.on_rtcp_port_packet(t0, addr("203.0.113.5:30189"), &rr),
        Verdict::Forward
    );
    // Another IP: stranger.
    assert_eq!(
        leg.on_rtcp_port_packet(t0, addr("198.51.100.66:30001"), &rr),
        Verdict::Drop(DropReason::Stranger)
    );
    assert_eq!(leg.counters().rtcp_latches, 2);
}

#[test]
fn counters_sum_per_core() {
    let t0 = Instant::now();
    let mut a = Leg::new(t0, LegConfig::default());
    let mut b = Leg::new(t0, LegConfig::default());
    a.on_packet(t0, addr(PHONE), &rtp(1, 1));
    b.on_packet(t0, addr(PHONE), &rtp(1, 1));
    b.on_packet(t0, addr(ATTACKER), &rtp(1, 1));
    let mut core = rtp::LegCounters::default();
    core.add(&a.counters());
    core.add(&b.counters());
    assert_eq!((core.rtp_packets, core.strangers, core.latches), (2, 1, 2));
}

#[test]
fn copies_of_the_moving_stream_do_not_block_relatch() {
    let t0 = Instant::now();
    let mut leg = Leg::new(t0, LegConfig::default());
    let mut seq = 10u16;
    for i in 0..10 {
        leg.on_packet(at(t0, i), addr(PHONE), &rtp(7, seq));
        seq += 1;
    }
    // Each packet from the new port is echoed by a third party right after.
    let mut forwarded = Vec::new();
    for i in 0..3 {
        let bytes = rtp(7, seq);
        seq += 1;
        forwarded.push(leg.on_packet(at(t0, 10 + i), addr(PHONE_NEW_PORT), &bytes));
        assert_eq!(
            leg.on_packet(at(t0, 10 + i), addr(ATTACKER), &bytes),
            Verdict::Drop(DropReason::Stranger)
        );
    }
    assert_eq!(forwarded[2], Verdict::Forward);
    assert_eq!(leg.latched(), Some(addr(PHONE_NEW_PORT)));
}
