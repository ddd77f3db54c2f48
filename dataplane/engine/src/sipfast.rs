//! The SIP fast path of a dataplane core: what a SIP datagram needs no control-plane decision
//! for is answered here, everything else goes up the ring.
//!
//! Answered here:
//! - **keepalives**: a datagram of only CR/LF (RFC 5626 §4.4.1 pings; some phones send them
//!   over UDP too) is counted and dropped;
//! - **OPTIONS** (the keepalive probe of trunks and phones) gets 200 with Allow, Accept and
//!   Server, exactly as the control plane's stateless endpoint would answer it;
//! - **request retransmissions** (RFC 3261 §17.2): the first copy of a request goes up and
//!   opens a slot keyed by its top Via branch (RFC 3261 magic cookie only), its method and
//!   its source; the response the control plane sends back down for it is kept in the slot,
//!   and a retransmission gets that response again without leaving the core. A
//!   retransmission arriving before any response is dropped (the control plane has the
//!   first copy), but only for [`PENDING`]; after that it goes up again, so a first copy the
//!   control plane never saw (it was restarting) is not lost. A retransmitted INVITE after a
//!   2xx is dropped (RFC 6026: the 2xx is the UAS's to retransmit, end to end).
//!
//! Everything else — new requests, ACK, responses, anything that does not parse (the control
//! plane answers it 400 naming the defect) — goes up as RawSipUp records.
//!
//! The slot table is direct-mapped and preallocated: a collision replaces the older entry,
//! whose retransmissions then go up to the control plane, which handles them correctly (it
//! keeps its own transactions). The fast path is a saving, never the only copy of state.
//! Nothing here allocates after start-up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shmq::schema::{RawSipFragment, RawSipReassembler};
use shmq::Meta;
use sip::edit::ResponseBuilder;
use sip::{HeaderName, Message, Method, Scheme, ALLOW};

/// Slots of the retransmission table (a power of two).
pub const ABSORB_SLOTS: usize = 4096;
/// Largest response kept for retransmission; a larger one is sent but not kept.
pub const STORED_MAX: usize = 1472;
/// How long a slot with a response absorbs retransmissions (64·T1, timers H/J).
pub const LINGER: Duration = Duration::from_secs(32);
/// How long a slot still waiting for the control plane's response absorbs retransmissions.
pub const PENDING: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    /// Sent up; no response yet.
    Pending,
    /// The response to send again is in the slot.
    Stored,
    /// An INVITE answered 2xx: retransmissions are dropped.
    Accepted,
}

#[derive(Debug)]
struct Slot {
    key: u64,
    state: State,
    until: Option<Instant>,
    len: u16,
    data: [u8; STORED_MAX],
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// CR/LF only: counted, dropped.
    Keepalive,
    /// A local answer is in [`SipPath::reply`]: send it to the source.
    Reply,
    /// A retransmission: send slot `slot`'s stored response ([`SipPath::stored`]) again.
    Resend { slot: usize },
    /// A retransmission that needs nothing sent: dropped.
    Absorbed,
    /// Hand it to the control plane; on success call [`SipPath::sent_up`] with `key`.
    Up { key: Option<u64> },
}

/// Fast-path counters of one core.
#[derive(Debug, Default, Clone, Copy)]
pub struct SipCounters {
    /// Datagrams received on SIP listeners.
    pub received: u64,
    /// Messages handed to the control plane.
    pub up: u64,
    /// Retransmissions answered or dropped here.
    pub absorbed: u64,
    /// Keepalives and OPTIONS answered here.
    pub local: u64,
}

/// The fast path's state on one core.
#[derive(Debug)]
pub struct SipPath {
    slots: Box<[Slot]>,
    reassembler: RawSipReassembler,
    /// The last whole message sent down.
    down: Vec<u8>,
    reply: Vec<u8>,
    tag_seq: u64,
    /// Counters.
    pub counters: SipCounters,
}

impl Default for SipPath {
    fn default() -> Self {
        Self::new()
    }
}

/// The slot key of a request's (or response's) transaction: top Via branch, CSeq method
/// and the peer. `None` without an RFC 3261 branch (RFC 2543 peers are matched by the
/// control plane).
pub fn transaction_key(msg: &Message<'_>, method: &[u8], peer: SocketAddr) -> Option<u64> {
    let branch = msg.top_via().branch()?;
    if branch.len() < 8 || !branch[..7].eq_ignore_ascii_case(b"z9hG4bK") {
        return None;
    }
    // FNV-1a, 64 bits: short keys, no allocation, good enough spread for a direct map.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(branch);
    eat(method);
    match peer {
        SocketAddr::V4(a) => eat(&a.ip().octets()),
        SocketAddr::V6(a) => eat(&a.ip().octets()),
    }
    eat(&peer.port().to_be_bytes());
    Some(h)
}

impl SipPath {
    /// Allocates the slot table, the reassembly buffer and the reply buffer.
    pub fn new() -> SipPath {
        let slots = (0..ABSORB_SLOTS)
            .map(|_| Slot {
                key: 0,
                state: State::Empty,
                until: None,
                len: 0,
                data: [0u8; STORED_MAX],
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        SipPath {
            slots,
            reassembler: RawSipReassembler::new(),
            down: Vec::with_capacity(shmq::schema::MAX_SIP_BYTES),
            reply: Vec::with_capacity(4096),
            tag_seq: 0,
            counters: SipCounters::default(),
        }
    }

    fn index(key: u64) -> usize {
        (key as usize) & (ABSORB_SLOTS - 1)
    }

    /// The local answer of the last [`Decision::Reply`].
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }

    /// The stored response of a [`Decision::Resend`].
    pub fn stored(&self, slot: usize) -> &[u8] {
        self.slots
            .get(slot)
            .map_or(&[][..], |s| &s.data[..usize::from(s.len)])
    }

    /// Decides what to do with a datagram from `peer` received at `now`.
    pub fn on_datagram(&mut self, now: Instant, peer: SocketAddr, bytes: &[u8]) -> Decision {
        self.counters.received += 1;
        if bytes.iter().all(|&b| b == b'\r' || b == b'\n') {
            self.counters.local += 1;
            return Decision::Keepalive;
        }
        let Ok(msg) = Message::parse(bytes) else {
            return self.up(None);
        };
        let Some(method) = msg.method() else {
            return self.up(None); // a response: the control plane's client transaction
        };
        match method {
            Method::Ack => return self.up(None),
            Method::Options if self.answer_options(&msg) => {
                self.counters.local += 1;
                return Decision::Reply;
            }
            _ => {}
        }
        let Some(key) = transaction_key(&msg, method.as_bytes(), peer) else {
            return self.up(None);
        };
        let i = Self::index(key);
        let slot = &self.slots[i];
        let live = slot.key == key && slot.until.is_some_and(|u| now < u);
        if !live {
            return self.up(Some(key));
        }
        self.counters.absorbed += 1;
        match slot.state {
            State::Stored => Decision::Resend { slot: i },
            State::Pending | State::Accepted => Decision::Absorbed,
            State::Empty => self.up(Some(key)),
        }
    }

    fn up(&mut self, key: Option<u64>) -> Decision {
        Decision::Up { key }
    }

    /// The message went up: later copies are absorbed for [`PENDING`].
    pub fn sent_up(&mut self, key: Option<u64>, now: Instant) {
        self.counters.up += 1;
        if let Some(key) = key {
            let s = &mut self.slots[Self::index(key)];
            s.key = key;
            s.state = State::Pending;
            s.until = Some(now + PENDING);
            s.len = 0;
        }
    }

    /// OPTIONS → 200 into `self.reply`, unless it needs the control plane's answer
    /// (an unsupported URI scheme is 416, a Require header 420).
    fn answer_options(&mut self, msg: &Message<'_>) -> bool {
        let scheme_ok = matches!(
            msg.request_uri().map(|u| u.scheme),
            Some(Scheme::Sip | Scheme::Sips | Scheme::Tel)
        );
        if !scheme_ok || msg.header(HeaderName::Require).is_some() {
            return false;
        }
        self.tag_seq += 1;
        let mut tag = [0u8; 16];
        hex_tag(self.tag_seq, &mut tag);
        ResponseBuilder::new(msg, 200, b"OK")
            .to_tag(&tag)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::Accept, b"application/sdp")
            .header(HeaderName::Server, sip::SERVER)
            .write(&mut self.reply);
        true
    }

    /// Feeds one RawSipDown fragment; when the message is whole, returns it (listener,
    /// destination, bytes) to send, after keeping a response in its transaction's slot.
    pub fn on_down(
        &mut self,
        now: Instant,
        meta: Meta,
        frag: &RawSipFragment,
    ) -> Option<(u32, SocketAddr, &[u8])> {
        let mut retried = false;
        let (listener, addr) = loop {
            match self.reassembler.push(meta, frag) {
                Ok(Some(m)) => {
                    self.down.clear();
                    self.down.extend_from_slice(m.bytes);
                    break (m.listener, m.addr);
                }
                Ok(None) => return None,
                // A fragment 0 that interrupted a broken message starts its own.
                Err(_) if !retried => retried = true,
                Err(_) => return None,
            }
        };
        if self.down.starts_with(b"SIP/2.0 ") {
            if let Ok(resp) = Message::parse(&self.down) {
                keep(&mut self.slots, now, &resp, addr);
            }
        }
        Some((listener, addr, &self.down))
    }
}

/// Keeps `resp` (sent to `dest`) in its transaction's slot.
fn keep(slots: &mut [Slot], now: Instant, resp: &Message<'_>, dest: SocketAddr) {
    let Some(status) = resp.status() else {
        return;
    };
    let method = resp.cseq().method;
    if method.eq_ignore_ascii_case(b"ACK") {
        return;
    }
    let Some(key) = transaction_key(resp, method, dest) else {
        return;
    };
    let s = &mut slots[SipPath::index(key)];
    let bytes = resp.as_bytes();
    s.key = key;
    s.until = Some(now + LINGER);
    if method.eq_ignore_ascii_case(b"INVITE") && (200..300).contains(&status) {
        s.state = State::Accepted;
        s.len = 0;
    } else if bytes.len() <= STORED_MAX {
        s.state = State::Stored;
        s.data[..bytes.len()].copy_from_slice(bytes);
        s.len = bytes.len() as u16;
    } else {
        // Too large to keep: retransmissions go up.
        s.state = State::Empty;
        s.until = None;
        s.len = 0;
    }
}

/// A To tag from a counter (mixed, so consecutive tags do not look sequential).
fn hex_tag(seq: u64, buf: &mut [u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x6461_7461_706c_616e;
    for b in buf.iter_mut() {
        *b = HEX[(x & 0xf) as usize];
        x >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "192.0.2.7:5062".parse().unwrap_or_else(|_| unreachable!())
    }

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: c1@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    fn response(code: u16, method: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-1\r\n\
From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\n\
Call-ID: c1@x\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn down(p: &mut SipPath, now: Instant, bytes: &[u8]) {
        let mut recs = vec![[0u8; shmq::RECORD_SIZE]; 4];
        let meta = Meta { seq: 9, core: 0 };
        let n = shmq::schema::encode_raw_sip(
            shmq::schema::SipDirection::Down,
            meta,
            0,
            peer(),
            bytes,
            &mut recs,
        )
        .unwrap_or_else(|_| unreachable!());
        let mut sent = None;
        for r in &recs[..n] {
            if let Ok((m, shmq::Command::RawSipDown(f))) = shmq::Command::decode(r) {
                sent = p.on_down(now, m, &f).map(|(_, a, b)| (a, b.to_vec()));
            }
        }
        assert_eq!(sent, Some((peer(), bytes.to_vec())));
    }

    #[test]
    fn a_retransmission_is_absorbed_until_answered_then_gets_the_answer_again() {
        let mut p = SipPath::new();
        let t0 = Instant::now();
        let Decision::Up { key } = p.on_datagram(t0, peer(), INVITE) else {
            panic!("first copy goes up")
        };
        assert!(key.is_some());
        p.sent_up(key, t0);
        assert_eq!(p.on_datagram(t0, peer(), INVITE), Decision::Absorbed);
        down(&mut p, t0, &response(180, "INVITE"));
        let Decision::Resend { slot } = p.on_datagram(t0, peer(), INVITE) else {
            panic!("stored 180 resent")
        };
        assert!(p.stored(slot).starts_with(b"SIP/2.0 180"));
        down(&mut p, t0, &response(200, "INVITE"));
        assert_eq!(p.on_datagram(t0, peer(), INVITE), Decision::Absorbed);
        // After the linger time the slot is dead: up again.
        assert!(matches!(
            p.on_datagram(t0 + LINGER, peer(), INVITE),
            Decision::Up { .. }
        ));
        assert_eq!(p.counters.absorbed, 3);
    }

    #[test]
    fn a_pending_slot_lets_copies_through_after_a_while_and_other_sources_are_separate() {
        let mut p = SipPath::new();
        let t0 = Instant::now();
        let Decision::Up { key } = p.on_datagram(t0, peer(), INVITE) else {
            panic!()
        };
        p.sent_up(key, t0);
        let other: SocketAddr = "192.0.2.8:5062".parse().unwrap_or_else(|_| unreachable!());
        assert!(matches!(
            p.on_datagram(t0, other, INVITE),
            Decision::Up { .. }
        ));
        assert!(matches!(
            p.on_datagram(t0 + PENDING, peer(), INVITE),
            Decision::Up { .. }
        ));
    }

    #[test]
    fn keepalives_options_ack_and_garbage() {
        let mut p = SipPath::new();
        let t0 = Instant::now();
        assert_eq!(p.on_datagram(t0, peer(), b"\r\n\r\n"), Decision::Keepalive);
        let options = b"OPTIONS sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-o\r\n\
From: <sip:probe@example.com>;tag=p\r\nTo: <sip:192.0.2.1>\r\nCall-ID: o1\r\nCSeq: 7 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(p.on_datagram(t0, peer(), options), Decision::Reply);
        let r = Message::parse(p.reply()).unwrap_or_else(|_| unreachable!());
        assert_eq!(r.status(), Some(200));
        assert_eq!(r.call_id(), b"o1");
        assert!(r.to_tag().is_some());
        assert_eq!(r.header(HeaderName::Allow), Some(ALLOW));
        let ack = b"ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-1\r\n\
From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: c1@x\r\n\
CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(p.on_datagram(t0, peer(), ack), Decision::Up { key: None });
        assert_eq!(
            p.on_datagram(t0, peer(), b"NOT SIP AT ALL\r\n\r\n"),
            Decision::Up { key: None }
        );
        assert_eq!(p.counters.local, 2);
    }
}
