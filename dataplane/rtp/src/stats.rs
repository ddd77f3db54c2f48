//! Per-stream receive statistics, as RFC 3550 Appendix A.1 (sequence validity), A.3
//! (expected and lost packets) and A.8 (interarrival jitter) compute them.
//!
//! The code follows the appendix line by line; where it differs it says so:
//! - A.1's `seq == s->max_seq + 1` promotes to `int`, so a source on probation across
//!   65535 → 0 is never accepted; here the comparison wraps, as the text intends.
//! - A.8 is computed with the appendix's integer form (jitter scaled by 16). The first packet
//!   after a (re)start or a payload type change only sets the transit baseline, and
//!   duplicates are left out: a copy tells nothing about the sender's clock.
//! - Duplicates and late (reordered) packets are *also* recognised with a 128-packet bitmap
//!   behind the highest sequence number, so they can be counted. `received` still counts
//!   them as A.1 does, so `cumulative_lost` is the RFC's figure (which duplicates lower).
//!
//! A new SSRC restarts the sequence state (A.1 `init_seq` plus probation) and is counted,
//! so a sender restart or an SSRC switch never shows up as 30,000 lost packets.

use crate::packet::RtpPacket;
use std::time::Instant;

/// A.1: largest forward gap still taken as in order.
pub const MAX_DROPOUT: u16 = 3000;
/// A.1: how far behind the highest sequence number a packet is taken as late, not a jump.
pub const MAX_MISORDER: u16 = 100;
/// A.1: consecutive packets a new source must send before it counts.
pub const MIN_SEQUENTIAL: u32 = 2;

const RTP_SEQ_MOD: u32 = 1 << 16;
/// Bits in the duplicate window; must cover MAX_MISORDER.
const SEEN_WINDOW: u16 = 128;
const _: () = assert!(MAX_MISORDER < SEEN_WINDOW);

/// How one packet was taken by [`ReceiveStats::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First packet of a new SSRC (the very first, or a change): probation starts.
    NewSource,
    /// Source still on probation (A.1 returns 0): not counted.
    Probation,
    /// In order, possibly after a gap of less than [`MAX_DROPOUT`].
    InOrder,
    /// Behind the highest sequence number and not seen before.
    Late,
    /// Seen before (within the last 128 sequence numbers).
    Duplicate,
    /// A jump too large to be a gap; not counted (A.1 returns 0). A second packet in
    /// sequence after it resyncs.
    Jump,
    /// Second packet in sequence after a jump: the state restarted at this packet.
    Resync,
}

impl Arrival {
    /// True when A.1 counts the packet as received.
    pub fn counted(&self) -> bool {
        matches!(
            self,
            Arrival::InOrder | Arrival::Late | Arrival::Duplicate | Arrival::Resync
        )
    }
}

/// What goes into an RTCP reception report block (A.3), taken at report time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceptionReport {
    /// Source reported on.
    pub ssrc: u32,
    /// Lost since the previous report, in 1/256 (0 when none or more arrived than expected).
    pub fraction_lost: u8,
    /// Cumulative lost, clamped to 24-bit signed.
    pub cumulative_lost: i32,
    /// Cycles << 16 | highest sequence number.
    pub extended_highest_sequence: u32,
    /// Interarrival jitter, timestamp units.
    pub jitter: u32,
}

/// Counters that survive SSRC changes and resyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamCounters {
    /// Packets seen by `update`.
    pub packets: u64,
    /// Bytes (whole RTP datagrams) seen by `update`.
    pub bytes: u64,
    /// Duplicates recognised.
    pub duplicates: u64,
    /// Late (reordered) packets recognised.
    pub out_of_order: u64,
    /// Jumps larger than MAX_DROPOUT (each packet not counted).
    pub jumps: u64,
    /// Restarts after a jump (A.1 resync).
    pub resyncs: u64,
    /// SSRC changes (the first SSRC is not a change).
    pub ssrc_changes: u64,
}

/// Receive statistics for one leg's incoming RTP stream. Fixed size, no allocation.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    ssrc: Option<u32>,
    // --- A.1 source state ---
    max_seq: u16,
    /// Shifted count of sequence number cycles (multiples of 65536).
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Bit i set: sequence `max_seq - i` was seen.
    seen: u128,
    // --- A.8 ---
    /// Relative transit of the previous packet, timestamp units; None: no baseline.
    transit: Option<u32>,
    /// Jitter × 16 (A.8 integer form).
    jitter_q4: u32,
    last_payload_type: Option<u8>,
    /// Origin of the arrival clock in timestamp units.
    epoch: Option<Instant>,
    counters: StreamCounters,
}

impl Default for ReceiveStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceiveStats {
    /// No source yet.
    pub fn new() -> ReceiveStats {
        ReceiveStats {
            ssrc: None,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            seen: 0,
            transit: None,
            jitter_q4: 0,
            last_payload_type: None,
            epoch: None,
            counters: StreamCounters::default(),
        }
    }

    /// Takes one packet arriving at `now`. `clock_rate_hz` is the payload type's RTP clock;
    /// `None` leaves jitter alone (unknown rate, or telephone-event whose timestamp is the
    /// event start, not the sampling instant).
    pub fn update(
        &mut self,
        now: Instant,
        packet: &RtpPacket<'_>,
        clock_rate_hz: Option<u32>,
    ) -> Arrival {
        self.counters.packets += 1;
        self.counters.bytes += packet.len() as u64;
        let seq = packet.sequence();
        let ssrc = packet.ssrc();
        let arrival = if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.counters.ssrc_changes += 1;
            }
            self.ssrc = Some(ssrc);
            self.jitter_q4 = 0;
            self.start_probation(seq);
            // The first packet of a source only starts probation (A.1 `update_seq` on the
            // first packet with probation = MIN_SEQUENTIAL moves it to MIN_SEQUENTIAL - 1).
            self.update_seq(seq);
            Arrival::NewSource
        } else {
            self.update_seq(seq)
        };
        match arrival {
            Arrival::Duplicate => self.counters.duplicates += 1,
            Arrival::Late => self.counters.out_of_order += 1,
            Arrival::Jump => self.counters.jumps += 1,
            Arrival::Resync => self.counters.resyncs += 1,
            _ => {}
        }
        match arrival {
            Arrival::InOrder | Arrival::Late => self.update_jitter(now, packet, clock_rate_hz),
            Arrival::Duplicate => {}
            _ => self.transit = None,
        }
        arrival
    }

    /// A.1 source initialisation for a new SSRC: `init_seq` then probation.
    fn start_probation(&mut self, seq: u16) {
        self.init_seq(seq);
        self.max_seq = seq.wrapping_sub(1);
        self.probation = MIN_SEQUENTIAL;
        self.transit = None;
    }

    /// A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.seen = 1;
    }

    /// A.1 `update_seq`, returning how the packet was taken instead of 0/1.
    fn update_seq(&mut self, seq: u16) -> Arrival {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return Arrival::InOrder;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return Arrival::Probation;
        }
        let arrival = if udelta < MAX_DROPOUT {
            if udelta == 0 {
                Arrival::Duplicate
            } else {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
                }
                self.max_seq = seq;
                self.seen = if udelta >= SEEN_WINDOW {
                    1
                } else {
                    (self.seen << udelta) | 1
                };
                Arrival::InOrder
            }
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets: the sender restarted without telling us.
                self.init_seq(seq);
                Arrival::Resync
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return Arrival::Jump;
            }
        } else {
            // Duplicate or reordered: `back` < MAX_MISORDER < SEEN_WINDOW.
            let back = self.max_seq.wrapping_sub(seq);
            let bit = 1u128 << back;
            if self.seen & bit != 0 {
                Arrival::Duplicate
            } else {
                self.seen |= bit;
                Arrival::Late
            }
        };
        self.received = self.received.wrapping_add(1);
        arrival
    }

    /// A.8, integer form.
    fn update_jitter(&mut self, now: Instant, packet: &RtpPacket<'_>, clock_rate_hz: Option<u32>) {
        let pt = packet.payload_type();
        let Some(rate) = clock_rate_hz.filter(|r| *r > 0) else {
            self.transit = None;
            return;
        };
        if self.last_payload_type != Some(pt) {
            // Different payload, maybe a different clock: restart the baseline.
            self.last_payload_type = Some(pt);
            self.transit = None;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let elapsed_ns = now.saturating_duration_since(epoch).as_nanos();
        // Arrival time in timestamp units; wraps like the RTP timestamp does.
        let arrival = (elapsed_ns * u128::from(rate) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(packet.timestamp());
        if let Some(prev) = self.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            // jitter += d - ((jitter + 8) >> 4), in wrapping-free form.
            self.jitter_q4 = self.jitter_q4.saturating_add(d) - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Current SSRC, once a packet has been seen.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// True while the current source is on probation.
    pub fn on_probation(&self) -> bool {
        self.probation > 0
    }

    /// Highest sequence number seen (during probation: the last one).
    pub fn max_sequence(&self) -> u16 {
        self.max_seq
    }

    /// A.3 extended highest sequence number.
    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// A.3 expected packets since the source was validated.
    pub fn expected(&self) -> u32 {
        if self.probation > 0 || self.ssrc.is_none() {
            return 0;
        }
        self.extended_max()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// A.1 received count (duplicates and late packets included).
    pub fn received(&self) -> u32 {
        self.received
    }

    /// A.3 cumulative lost (expected − received), unclamped.
    pub fn cumulative_lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// A.8 interarrival jitter, timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// Counters that survive restarts.
    pub fn counters(&self) -> StreamCounters {
        self.counters
    }

    /// A.3 at report time: the report block values, and the interval starts again.
    pub fn take_report(&mut self) -> ReceptionReport {
        let expected = self.expected();
        let lost = self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff) as i32;
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        ReceptionReport {
            ssrc: self.ssrc.unwrap_or(0),
            fraction_lost,
            cumulative_lost: lost,
            extended_highest_sequence: self.extended_max(),
            jitter: self.jitter(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::RtpBuilder;
    use std::time::Duration;

    fn feed(s: &mut ReceiveStats, t0: Instant, ssrc: u32, seq: u16, i: u32) -> Arrival {
        let mut buf = [0u8; 32];
        let n = RtpBuilder::new(0, ssrc)
            .sequence(seq)
            .timestamp(i * 160)
            .write(&mut buf)
            .expect("fits");
        let p = RtpPacket::new(&buf[..n]).expect("valid");
        s.update(
            t0 + Duration::from_millis(20 * u64::from(i)),
            &p,
            Some(8000),
        )
    }

    #[test]
    fn probation_then_counting() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new();
        assert_eq!(feed(&mut s, t0, 7, 100, 0), Arrival::NewSource);
        assert_eq!(s.expected(), 0);
        assert_eq!(feed(&mut s, t0, 7, 101, 1), Arrival::InOrder);
        assert_eq!((s.expected(), s.received()), (1, 1));
        assert_eq!(feed(&mut s, t0, 7, 103, 2), Arrival::InOrder);
        assert_eq!(s.cumulative_lost(), 1);
        assert_eq!(feed(&mut s, t0, 7, 102, 3), Arrival::Late);
        assert_eq!(feed(&mut s, t0, 7, 102, 4), Arrival::Duplicate);
        assert_eq!(s.cumulative_lost(), -1);
        let r = s.take_report();
        assert_eq!((r.fraction_lost, r.cumulative_lost), (0, -1));
    }

    #[test]
    fn probation_across_wrap() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new();
        feed(&mut s, t0, 1, 65535, 0);
        assert_eq!(feed(&mut s, t0, 1, 0, 1), Arrival::InOrder);
        assert_eq!(s.extended_max(), 0);
    }

    #[test]
    fn jump_then_resync() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new();
        for i in 0..10u16 {
            feed(&mut s, t0, 1, i, u32::from(i));
        }
        assert_eq!(feed(&mut s, t0, 1, 20_000, 10), Arrival::Jump);
        assert_eq!(feed(&mut s, t0, 1, 20_001, 11), Arrival::Resync);
        assert_eq!((s.expected(), s.received(), s.cumulative_lost()), (1, 1, 0));
        assert_eq!(feed(&mut s, t0, 1, 20_002, 12), Arrival::InOrder);
    }

    #[test]
    fn fraction_lost_per_interval() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new();
        for i in 0..101u16 {
            if i % 4 != 3 {
                feed(&mut s, t0, 1, i, u32::from(i));
            }
        }
        // Validated at seq 1; seqs 1..=100 expected (100), 25 lost (3, 7, ..., 99).
        let r = s.take_report();
        assert_eq!(r.cumulative_lost, 25);
        assert_eq!(r.fraction_lost, 64);
        let r = s.take_report();
        assert_eq!(r.fraction_lost, 0);
    }

    #[test]
    fn ssrc_change_restarts_and_counts() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new();
        for i in 0..10u16 {
            feed(&mut s, t0, 1, i, u32::from(i));
        }
        assert_eq!(feed(&mut s, t0, 2, 40_000, 10), Arrival::NewSource);
        assert_eq!(feed(&mut s, t0, 2, 40_001, 11), Arrival::InOrder);
        assert_eq!(s.cumulative_lost(), 0);
        assert_eq!(s.counters().ssrc_changes, 1);
    }
}
