//! RFC 4733 events through a leg: one start and one end per digit whatever the
//! retransmissions, back-to-back digits, other payload types ignored.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use rtp::dtmf::{DtmfDetector, DtmfEvent, TelephoneEvent, Tone};
use rtp::leg::{LegConfig, LegEvent};
use rtp::{Leg, RtpBuilder, RtpPacket, Verdict};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DTMF_PT: u8 = 101;

struct Sender {
    seq: u16,
}

impl Sender {
    fn packet(&mut self, pt: u8, ts: u32, ev: TelephoneEvent) -> Vec<u8> {
        let payload = ev.to_bytes();
        let b = RtpBuilder::new(pt, 0x44)
            .sequence(self.seq)
            .timestamp(ts)
            .payload(&payload);
        self.seq = self.seq.wrapping_add(1);
        let mut buf = vec![0u8; b.len()];
        b.write(&mut buf).unwrap();
        buf
    }

    /// A whole digit as a phone sends it: 5 progress packets, then the end packet × 3.
    fn digit(&mut self, pt: u8, code: u8, ts: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for k in 1..=5u16 {
            out.push(self.packet(
                pt,
                ts,
                TelephoneEvent {
                    code,
                    end: false,
                    volume: 10,
                    duration: 160 * k,
                },
            ));
        }
        for _ in 0..3 {
            out.push(self.packet(
                pt,
                ts,
                TelephoneEvent {
                    code,
                    end: true,
                    volume: 10,
                    duration: 960,
                },
            ));
        }
        out
    }
}

fn run(leg: &mut Leg, packets: &[Vec<u8>]) -> Vec<DtmfEvent> {
    let src: SocketAddr = "192.0.2.7:5004".parse().unwrap();
    let t0 = Instant::now();
    for (i, p) in packets.iter().enumerate() {
        let v = leg.on_packet(t0 + Duration::from_millis(20 * i as u64), src, p);
        assert_eq!(v, Verdict::Forward);
    }
    std::iter::from_fn(|| leg.poll_event())
        .filter_map(|e| match e {
            LegEvent::Dtmf(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn dtmf_leg() -> Leg {
    Leg::new(
        Instant::now(),
        LegConfig {
            dtmf_payload_type: Some(DTMF_PT),
            ..LegConfig::default()
        },
    )
}

#[test]
fn digit_five_with_three_end_retransmissions_is_one_start_one_end() {
    let mut s = Sender { seq: 1 };
    let mut leg = dtmf_leg();
    let events = run(&mut leg, &s.digit(DTMF_PT, 5, 8000));
    assert_eq!(
        events,
        [
            DtmfEvent::Start {
                tone: Tone::Digit(5),
                volume: 10,
                timestamp: 8000
            },
            DtmfEvent::End {
                tone: Tone::Digit(5),
                volume: 10,
                timestamp: 8000,
                duration: 960,
                end_seen: true
            }
        ]
    );
    assert_eq!(leg.counters().dtmf_events, 2);
}

#[test]
fn back_to_back_digits() {
    let mut s = Sender { seq: 1 };
    let mut packets = s.digit(DTMF_PT, 1, 1000);
    packets.extend(s.digit(DTMF_PT, 11, 2000)); // '#'
    packets.extend(s.digit(DTMF_PT, 1, 3000)); // same digit again: new timestamp, new event
    let mut leg = dtmf_leg();
    let events = run(&mut leg, &packets);
    let chars: Vec<(bool, char)> = events
        .iter()
        .map(|e| match e {
            DtmfEvent::Start { tone, .. } => (true, tone.as_char().unwrap()),
            DtmfEvent::End { tone, .. } => (false, tone.as_char().unwrap()),
        })
        .collect();
    assert_eq!(
        chars,
        [
            (true, '1'),
            (false, '1'),
            (true, '#'),
            (false, '#'),
            (true, '1'),
            (false, '1')
        ]
    );
}

#[test]
fn lost_end_packets_end_on_next_event() {
    let mut s = Sender { seq: 1 };
    let mut first = s.digit(DTMF_PT, 2, 1000);
    first.truncate(5); // all three end packets lost
    first.extend(s.digit(DTMF_PT, 3, 2000));
    let mut leg = dtmf_leg();
    let events = run(&mut leg, &first);
    assert_eq!(events.len(), 4);
    assert!(matches!(
        events[1],
        DtmfEvent::End {
            tone: Tone::Digit(2),
            end_seen: false,
            duration: 800,
            ..
        }
    ));
}

#[test]
fn wrong_payload_type_ignored() {
    let mut s = Sender { seq: 1 };
    let mut leg = dtmf_leg();
    assert!(run(&mut leg, &s.digit(100, 5, 8000)).is_empty());
    // And a leg without a telephone-event type reports nothing.
    let mut plain = Leg::new(Instant::now(), LegConfig::default());
    assert!(run(&mut plain, &s.digit(DTMF_PT, 5, 9000)).is_empty());
}

#[test]
fn late_packet_of_previous_event_is_ignored() {
    let mut s = Sender { seq: 1 };
    let a = s.digit(DTMF_PT, 4, 1000);
    let b = s.digit(DTMF_PT, 6, 2000);
    let mut d = DtmfDetector::new(DTMF_PT);
    let mut n = 0;
    for p in a.iter().chain(&b[..2]).chain(&a[5..6]).chain(&b[2..]) {
        n += d.on_packet(&RtpPacket::new(p).unwrap()).into_iter().count();
    }
    assert_eq!(n, 4);
}
