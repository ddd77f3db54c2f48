//! One relay leg: where a call party's media comes from, whether to forward a datagram, and
//! what was seen (statistics, DTMF, counters, inactivity).
//!
//! # Latching (symmetric RTP, "comedia")
//!
//! SDP names an address that is often wrong behind NAT, so by default
//! ([`LatchPolicy::Symmetric`]) the leg *latches* to the source of the first valid RTP packet
//! and sends the other party's media back there. Once latched, datagrams from any other
//! source are dropped as [`DropReason::Stranger`], unless a **verified source change**
//! happens: a new source sends [`LegConfig::relatch_packets`] (K, default 3) consecutive valid
//! RTP packets, each with the same SSRC and a sequence number 1..[`MAX_DROPOUT`] ahead of the
//! previous one, and either
//! - (a) that SSRC is the latched stream's SSRC and the first of them continues the
//!   latched stream's sequence (NAT rebinding: same stream, new port), or
//! - (b) the latched source has sent nothing for [`LegConfig::relatch_silence`] (the phone
//!   moved, or restarted with a new SSRC).
//!
//! Then the leg re-latches and forwards the K-th packet; the K−1 before it were dropped as
//! strangers. One candidate is tracked at a time: a qualifying packet from a third source
//! replaces it unless it merely repeats (same SSRC, not ahead of) the candidate's stream.
//! A packet from the latched source in between cancels the candidate, so while
//! the real source talks, only someone who sees the stream (on path) could take it over —
//! the same exposure every symmetric-RTP relay has.
//!
//! RTCP on the RTP port (rtcp-mux, RFC 5761) follows the RTP latch and never latches by
//! itself ([`DropReason::NotYetLatched`] before the RTP latch). RTCP on a separate port
//! ([`Leg::on_rtcp_port_packet`]) latches on its first valid compound and re-latches when a
//! compound comes from the RTP latch's IP carrying the stream's SSRC as sender.
//!
//! [`LatchPolicy::ExpectedOnly`] accepts only the SDP address (port and IP), never latches
//! elsewhere, and drops everything as [`DropReason::NotYetLatched`] until one is known.

use crate::classify::{classify, Kind};
use crate::dtmf::{DtmfDetector, DtmfEvent};
use crate::packet::{RtpError, RtpPacket};
use crate::rtcp::{RtcpCompound, RtcpError};
use crate::stats::{Arrival, ReceiveStats, MAX_DROPOUT};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Default K for a verified source change.
pub const DEFAULT_RELATCH_PACKETS: u32 = 3;
/// Default silence of the latched source after which another source may take over.
pub const DEFAULT_RELATCH_SILENCE: Duration = Duration::from_secs(1);
/// Default media inactivity timeout.
pub const DEFAULT_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(60);
/// Events a leg holds until polled; more are counted in `events_dropped`.
pub const EVENT_QUEUE_LEN: usize = 8;

/// Which sources a leg accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchPolicy {
    /// Latch to the first valid RTP source; re-latch only on a verified change.
    Symmetric,
    /// Accept only [`LegConfig::expected_peer`].
    ExpectedOnly,
}

/// RTP clock rate per payload type (0 = unknown: no jitter for that type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRates {
    hz: [u32; 128],
}

impl ClockRates {
    /// Nothing known.
    pub fn empty() -> ClockRates {
        ClockRates { hz: [0; 128] }
    }

    /// The static payload types of RFC 3551 §6 (PCMU and PCMA are 8000 Hz).
    pub fn rfc3551() -> ClockRates {
        let mut r = ClockRates::empty();
        for pt in [0, 3, 4, 5, 7, 8, 9, 12, 13, 15, 18] {
            r.hz[pt] = 8000;
        }
        r.hz[6] = 16000;
        r.hz[10] = 44100;
        r.hz[11] = 44100;
        r.hz[16] = 11025;
        r.hz[17] = 22050;
        for pt in [14, 25, 26, 28, 31, 32, 33, 34] {
            r.hz[pt] = 90000;
        }
        r
    }

    /// Sets the rate of one payload type (from an SDP rtpmap); types above 127 are ignored.
    pub fn set(&mut self, payload_type: u8, hz: u32) {
        if let Some(slot) = self.hz.get_mut(usize::from(payload_type)) {
            *slot = hz;
        }
    }

    /// The rate, when known.
    pub fn get(&self, payload_type: u8) -> Option<u32> {
        self.hz
            .get(usize::from(payload_type))
            .copied()
            .filter(|hz| *hz > 0)
    }
}

impl Default for ClockRates {
    fn default() -> Self {
        ClockRates::rfc3551()
    }
}

/// How a leg is set up; from the control plane's install command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegConfig {
    /// Address from SDP, if any.
    pub expected_peer: Option<SocketAddr>,
    /// Source policy.
    pub policy: LatchPolicy,
    /// K: consecutive packets for a verified source change (at least 1).
    pub relatch_packets: u32,
    /// Silence of the latched source after which any stream may take over.
    pub relatch_silence: Duration,
    /// No forwarded packet for this long: the leg is expired.
    pub inactivity_timeout: Duration,
    /// Clock rates for jitter.
    pub clock_rates: ClockRates,
    /// Negotiated telephone-event payload type.
    pub dtmf_payload_type: Option<u8>,
}

impl Default for LegConfig {
    fn default() -> Self {
        LegConfig {
            expected_peer: None,
            policy: LatchPolicy::Symmetric,
            relatch_packets: DEFAULT_RELATCH_PACKETS,
            relatch_silence: DEFAULT_RELATCH_SILENCE,
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            clock_rates: ClockRates::rfc3551(),
            dtmf_payload_type: None,
        }
    }
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relay it to the other leg.
    Forward,
    /// Drop it, for this reason (already counted).
    Drop(DropReason),
}

/// Why a datagram is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Looked like RTP/RTCP but did not parse, or looked like nothing.
    Malformed(Malformed),
    /// STUN or DTLS: valid traffic this leg does not handle (the engine may, before us).
    NotMedia(Kind),
    /// From a source other than the latched (or expected) one.
    Stranger,
    /// Nothing to accept against yet: RTCP before the RTP latch, or no expected address
    /// under [`LatchPolicy::ExpectedOnly`].
    NotYetLatched,
}

/// Parse failure detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// RTP view refused it.
    Rtp(RtpError),
    /// RTCP view refused it.
    Rtcp(RtcpError),
    /// First byte matches no known protocol.
    Unrecognised,
}

/// Something the control plane wants to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// First latch.
    Latched {
        /// Media source.
        addr: SocketAddr,
    },
    /// Verified source change.
    Relatched {
        /// Old source.
        from: SocketAddr,
        /// New source.
        to: SocketAddr,
    },
    /// A telephone-event start or end.
    Dtmf(DtmfEvent),
}

/// Per-leg counters; plain integers so the engine can sum them per core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegCounters {
    /// RTP packets forwarded.
    pub rtp_packets: u64,
    /// RTP bytes forwarded (whole datagrams).
    pub rtp_bytes: u64,
    /// RTCP compounds forwarded.
    pub rtcp_packets: u64,
    /// RTCP bytes forwarded.
    pub rtcp_bytes: u64,
    /// Dropped: malformed.
    pub malformed: u64,
    /// Dropped: STUN/DTLS.
    pub not_media: u64,
    /// Dropped: strangers (including candidates still being verified).
    pub strangers: u64,
    /// Dropped: nothing to accept against yet.
    pub not_yet_latched: u64,
    /// RTP first latches (0 or 1 per leg).
    pub latches: u64,
    /// RTP verified source changes.
    pub relatches: u64,
    /// RTCP (separate port) latches and re-latches.
    pub rtcp_latches: u64,
    /// SSRC changes in forwarded RTP.
    pub ssrc_changes: u64,
    /// Duplicate RTP packets (forwarded; a relay does not dedupe).
    pub duplicates: u64,
    /// Late RTP packets.
    pub out_of_order: u64,
    /// Sequence jumps beyond MAX_DROPOUT.
    pub seq_jumps: u64,
    /// A.1 resyncs.
    pub resyncs: u64,
    /// DTMF starts and ends.
    pub dtmf_events: u64,
    /// Events lost because nobody polled.
    pub events_dropped: u64,
}

impl LegCounters {
    /// Adds `other` field by field (the engine sums legs per core).
    pub fn add(&mut self, other: &LegCounters) {
        let LegCounters {
            rtp_packets,
            rtp_bytes,
            rtcp_packets,
            rtcp_bytes,
            malformed,
            not_media,
            strangers,
            not_yet_latched,
            latches,
            relatches,
            rtcp_latches,
            ssrc_changes,
            duplicates,
            out_of_order,
            seq_jumps,
            resyncs,
            dtmf_events,
            events_dropped,
        } = *other;
        self.rtp_packets += rtp_packets;
        self.rtp_bytes += rtp_bytes;
        self.rtcp_packets += rtcp_packets;
        self.rtcp_bytes += rtcp_bytes;
        self.malformed += malformed;
        self.not_media += not_media;
        self.strangers += strangers;
        self.not_yet_latched += not_yet_latched;
        self.latches += latches;
        self.relatches += relatches;
        self.rtcp_latches += rtcp_latches;
        self.ssrc_changes += ssrc_changes;
        self.duplicates += duplicates;
        self.out_of_order += out_of_order;
        self.seq_jumps += seq_jumps;
        self.resyncs += resyncs;
        self.dtmf_events += dtmf_events;
        self.events_dropped += events_dropped;
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    last_seq: u16,
    count: u32,
}

/// One relay leg. Fixed size; never allocates.
#[derive(Debug, Clone)]
pub struct Leg {
    config: LegConfig,
    created_at: Instant,
    last_activity: Option<Instant>,
    rtp_latch: Option<SocketAddr>,
    /// Last time the latched RTP source sent a valid packet.
    latched_rx_at: Option<Instant>,
    rtcp_latch: Option<SocketAddr>,
    candidate: Option<Candidate>,
    stats: ReceiveStats,
    dtmf: Option<DtmfDetector>,
    events: [Option<LegEvent>; EVENT_QUEUE_LEN],
    events_head: usize,
    events_len: usize,
    counters: LegCounters,
}

impl Leg {
    /// A leg installed at `now`; the inactivity clock starts then.
    pub fn new(now: Instant, config: LegConfig) -> Leg {
        Leg {
            config,
            created_at: now,
            last_activity: None,
            rtp_latch: None,
            latched_rx_at: None,
            rtcp_latch: None,
            candidate: None,
            stats: ReceiveStats::new(),
            dtmf: config.dtmf_payload_type.map(DtmfDetector::new),
            events: [None; EVENT_QUEUE_LEN],
            events_head: 0,
            events_len: 0,
            counters: LegCounters::default(),
        }
    }

    /// A datagram that arrived on the leg's RTP port (RTP, or RTCP when muxed).
    pub fn on_packet(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) -> Verdict {
        match classify(bytes) {
            Kind::Rtp => self.on_rtp(now, src, bytes),
            Kind::Rtcp => self.on_muxed_rtcp(now, src, bytes),
            kind @ (Kind::Stun | Kind::Dtls) => {
                self.counters.not_media += 1;
                Verdict::Drop(DropReason::NotMedia(kind))
            }
            Kind::Unknown => self.malformed(Malformed::Unrecognised),
        }
    }

    /// A datagram that arrived on the leg's separate RTCP port (no rtcp-mux).
    pub fn on_rtcp_port_packet(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) -> Verdict {
        let compound = match RtcpCompound::new(bytes) {
            Ok(c) => c,
            Err(e) => return self.malformed(Malformed::Rtcp(e)),
        };
        let accept = match self.config.policy {
            LatchPolicy::ExpectedOnly => match self.config.expected_peer {
                None => return self.not_yet_latched(),
                Some(e) => e.ip() == src.ip(),
            },
            LatchPolicy::Symmetric => match self.rtcp_latch {
                None => {
                    self.rtcp_latch = Some(src);
                    self.counters.rtcp_latches += 1;
                    true
                }
                Some(l) if l == src => true,
                Some(_) => {
                    let follows_rtp = self.rtp_latch.map(|a| a.ip()) == Some(src.ip())
                        && compound.sender_ssrc().is_some()
                        && compound.sender_ssrc() == self.stats.ssrc();
                    if follows_rtp {
                        self.rtcp_latch = Some(src);
                        self.counters.rtcp_latches += 1;
                    }
                    follows_rtp
                }
            },
        };
        if !accept {
            self.counters.strangers += 1;
            return Verdict::Drop(DropReason::Stranger);
        }
        self.accept_rtcp(now, bytes.len())
    }

    fn on_rtp(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) -> Verdict {
        let packet = match RtpPacket::new(bytes) {
            Ok(p) => p,
            Err(e) => return self.malformed(Malformed::Rtp(e)),
        };
        match self.config.policy {
            LatchPolicy::ExpectedOnly => match self.config.expected_peer {
                None => return self.not_yet_latched(),
                Some(e) if e != src => return self.stranger(),
                Some(e) => {
                    if self.rtp_latch.is_none() {
                        self.latch(e);
                    }
                }
            },
            LatchPolicy::Symmetric => match self.rtp_latch {
                None => self.latch(src),
                Some(l) if l == src => self.candidate = None,
                Some(l) => {
                    if !self.verify_change(now, src, &packet) {
                        return self.stranger();
                    }
                    self.rtp_latch = Some(src);
                    self.counters.relatches += 1;
                    self.push_event(LegEvent::Relatched { from: l, to: src });
                }
            },
        }
        self.latched_rx_at = Some(now);
        self.last_activity = Some(now);
        self.counters.rtp_packets += 1;
        self.counters.rtp_bytes += bytes.len() as u64;

        let pt = packet.payload_type();
        let is_dtmf = self.config.dtmf_payload_type == Some(pt);
        let rate = if is_dtmf {
            None
        } else {
            self.config.clock_rates.get(pt)
        };
        match self.stats.update(now, &packet, rate) {
            Arrival::Duplicate => self.counters.duplicates += 1,
            Arrival::Late => self.counters.out_of_order += 1,
            Arrival::Jump => self.counters.seq_jumps += 1,
            Arrival::Resync => self.counters.resyncs += 1,
            Arrival::NewSource
                if self.stats.counters().ssrc_changes > self.counters.ssrc_changes =>
            {
                self.counters.ssrc_changes += 1;
            }
            _ => {}
        }
        if is_dtmf {
            if let Some(d) = self.dtmf.as_mut() {
                for e in d.on_packet(&packet) {
                    self.counters.dtmf_events += 1;
                    self.push_event(LegEvent::Dtmf(e));
                }
            }
        }
        Verdict::Forward
    }

    /// The verified-source-change rule (module docs). True when `src` takes over now.
    fn verify_change(&mut self, now: Instant, src: SocketAddr, packet: &RtpPacket<'_>) -> bool {
        let seq = packet.sequence();
        let ssrc = packet.ssrc();
        let silent = self
            .latched_rx_at
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.relatch_silence);
        let continues_stream =
            self.stats.ssrc() == Some(ssrc) && ahead(seq, self.stats.max_sequence());
        let extends_candidate = self
            .candidate
            .is_some_and(|c| c.addr == src && c.ssrc == ssrc && ahead(seq, c.last_seq));
        let replays_candidate = self
            .candidate
            .is_some_and(|c| c.addr != src && c.ssrc == ssrc && !ahead(seq, c.last_seq));
        if replays_candidate {
            // Another source repeating the candidate's stream (a copy, or someone on path):
            // it may not displace the candidate it trails.
            return false;
        }
        if extends_candidate {
            if let Some(c) = self.candidate.as_mut() {
                c.count += 1;
                c.last_seq = seq;
            }
        } else if continues_stream || silent {
            self.candidate = Some(Candidate {
                addr: src,
                ssrc,
                last_seq: seq,
                count: 1,
            });
        } else {
            // Qualifies for nothing: leave any candidate alone.
            return false;
        }
        let done = self
            .candidate
            .is_some_and(|c| c.count >= self.config.relatch_packets.max(1));
        if done {
            self.candidate = None;
        }
        done
    }

    fn on_muxed_rtcp(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) -> Verdict {
        if let Err(e) = RtcpCompound::new(bytes) {
            return self.malformed(Malformed::Rtcp(e));
        }
        let source = match self.config.policy {
            LatchPolicy::ExpectedOnly => self.config.expected_peer,
            LatchPolicy::Symmetric => self.rtp_latch,
        };
        match source {
            None => self.not_yet_latched(),
            Some(a) if a != src => self.stranger(),
            Some(_) => self.accept_rtcp(now, bytes.len()),
        }
    }

    fn accept_rtcp(&mut self, now: Instant, len: usize) -> Verdict {
        self.last_activity = Some(now);
        self.counters.rtcp_packets += 1;
        self.counters.rtcp_bytes += len as u64;
        Verdict::Forward
    }

    fn latch(&mut self, addr: SocketAddr) {
        self.rtp_latch = Some(addr);
        self.counters.latches += 1;
        self.push_event(LegEvent::Latched { addr });
    }

    fn malformed(&mut self, m: Malformed) -> Verdict {
        self.counters.malformed += 1;
        Verdict::Drop(DropReason::Malformed(m))
    }

    fn stranger(&mut self) -> Verdict {
        self.counters.strangers += 1;
        Verdict::Drop(DropReason::Stranger)
    }

    fn not_yet_latched(&mut self) -> Verdict {
        self.counters.not_yet_latched += 1;
        Verdict::Drop(DropReason::NotYetLatched)
    }

    fn push_event(&mut self, e: LegEvent) {
        if self.events_len == EVENT_QUEUE_LEN {
            self.counters.events_dropped += 1;
            return;
        }
        let at = (self.events_head + self.events_len) % EVENT_QUEUE_LEN;
        self.events[at] = Some(e);
        self.events_len += 1;
    }

    /// Next event for the control plane, oldest first.
    pub fn poll_event(&mut self) -> Option<LegEvent> {
        if self.events_len == 0 {
            return None;
        }
        let e = self.events[self.events_head].take();
        self.events_head = (self.events_head + 1) % EVENT_QUEUE_LEN;
        self.events_len -= 1;
        e
    }

    /// Where to send the other party's RTP: the latch, else the SDP address.
    pub fn send_addr(&self) -> Option<SocketAddr> {
        self.rtp_latch.or(self.config.expected_peer)
    }

    /// RTP source latched to.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.rtp_latch
    }

    /// RTCP source latched to on the separate RTCP port.
    pub fn rtcp_latched(&self) -> Option<SocketAddr> {
        self.rtcp_latch
    }

    /// New SDP address (re-INVITE); the latch stays, policy decides what it means.
    pub fn set_expected_peer(&mut self, peer: Option<SocketAddr>) {
        self.config.expected_peer = peer;
    }

    /// The configuration in force.
    pub fn config(&self) -> &LegConfig {
        &self.config
    }

    /// Last forwarded RTP or RTCP packet.
    pub fn last_activity(&self) -> Option<Instant> {
        self.last_activity
    }

    /// When the leg expires unless a packet is forwarded first.
    pub fn poll_timeout(&self) -> Instant {
        self.last_activity.unwrap_or(self.created_at) + self.config.inactivity_timeout
    }

    /// True when nothing was forwarded for the inactivity timeout.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.poll_timeout()
    }

    /// Receive statistics of the incoming RTP stream.
    pub fn stats(&self) -> &ReceiveStats {
        &self.stats
    }

    /// Mutable statistics, for [`ReceiveStats::take_report`] when sending RTCP.
    pub fn stats_mut(&mut self) -> &mut ReceiveStats {
        &mut self.stats
    }

    /// Counters so far.
    pub fn counters(&self) -> LegCounters {
        self.counters
    }

    /// Ends a DTMF event still in progress (leg torn down) and queues it.
    pub fn flush_dtmf(&mut self) {
        if let Some(e) = self.dtmf.as_mut().and_then(DtmfDetector::flush) {
            self.counters.dtmf_events += 1;
            self.push_event(LegEvent::Dtmf(e));
        }
    }
}

/// `a` is 1..MAX_DROPOUT sequence numbers after `b`.
fn ahead(a: u16, b: u16) -> bool {
    let d = a.wrapping_sub(b);
    d > 0 && d < MAX_DROPOUT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::RtpBuilder;

    fn rtp(buf: &mut [u8], ssrc: u32, seq: u16) -> &[u8] {
        let n = RtpBuilder::new(0, ssrc)
            .sequence(seq)
            .timestamp(u32::from(seq) * 160)
            .payload(&[0xff; 160])
            .write(buf)
            .expect("fits");
        &buf[..n]
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn latch_and_strangers() {
        let t0 = Instant::now();
        let mut leg = Leg::new(t0, LegConfig::default());
        let mut buf = [0u8; 256];
        let a = addr("192.0.2.1:4000");
        let b = addr("198.51.100.9:5000");
        assert_eq!(leg.on_packet(t0, a, rtp(&mut buf, 1, 10)), Verdict::Forward);
        assert_eq!(leg.poll_event(), Some(LegEvent::Latched { addr: a }));
        assert_eq!(
            leg.on_packet(t0, b, rtp(&mut buf, 2, 500)),
            Verdict::Drop(DropReason::Stranger)
        );
        assert_eq!(leg.counters().strangers, 1);
        assert_eq!(
            leg.on_packet(t0, a, &[0x00, 0x01, 0, 0]),
            Verdict::Drop(DropReason::NotMedia(Kind::Stun))
        );
        assert_eq!(
            leg.on_packet(t0, a, &[0x90, 0, 0, 0]),
            Verdict::Drop(DropReason::Malformed(Malformed::Rtp(RtpError::TooShort {
                len: 4
            })))
        );
    }

    #[test]
    fn expected_only() {
        let t0 = Instant::now();
        let a = addr("192.0.2.1:4000");
        let mut leg = Leg::new(
            t0,
            LegConfig {
                policy: LatchPolicy::ExpectedOnly,
                ..LegConfig::default()
            },
        );
        let mut buf = [0u8; 256];
        assert_eq!(
            leg.on_packet(t0, a, rtp(&mut buf, 1, 1)),
            Verdict::Drop(DropReason::NotYetLatched)
        );
        leg.set_expected_peer(Some(a));
        assert_eq!(leg.on_packet(t0, a, rtp(&mut buf, 1, 2)), Verdict::Forward);
        assert_eq!(
            leg.on_packet(t0, addr("192.0.2.1:4002"), rtp(&mut buf, 1, 3)),
            Verdict::Drop(DropReason::Stranger)
        );
    }

    #[test]
    fn inactivity() {
        let t0 = Instant::now();
        let mut leg = Leg::new(t0, LegConfig::default());
        assert_eq!(leg.poll_timeout(), t0 + DEFAULT_INACTIVITY_TIMEOUT);
        let mut buf = [0u8; 256];
        let t1 = t0 + Duration::from_secs(10);
        leg.on_packet(t1, addr("192.0.2.1:4000"), rtp(&mut buf, 1, 1));
        assert!(!leg.is_expired(t0 + DEFAULT_INACTIVITY_TIMEOUT));
        assert!(leg.is_expired(t1 + DEFAULT_INACTIVITY_TIMEOUT));
    }
}
