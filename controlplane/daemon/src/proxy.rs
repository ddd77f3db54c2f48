//! A call-stateful SIP proxy for calls between registered subscribers, with media anchored
//! on the dataplane — sans-IO: requests and responses in (with their source address), the
//! datagrams to send out. Record-Routes itself, so every in-dialog request of a call it set
//! up comes back through it; follows each call by Call-ID and forwards by direction.
//!
//! What it does: INVITE to a registered subscriber of a served domain (404 unknown user,
//! 480 not registered, 483 Max-Forwards exhausted, 488 for an offer it cannot anchor, 503
//! when the media plane refuses a session); `100 Trying` at once (and again for a
//! retransmitted INVITE); the forwarded INVITE goes to the contact with the highest q, to the
//! address its REGISTER came from (NAT); the SDP offer and answer are rewritten so both
//! legs' media go through a dataplane session ([`MediaAnchor`]) created before the offer
//! leaves and told the callee's address when the answer arrives; responses return along the
//! Via path; ACK for a non-2xx final response is generated towards the callee and the
//! caller's absorbed; CANCEL is answered and forwarded; in-dialog requests (ACK, BYE,
//! re-INVITE with SDP, INFO, ...) are forwarded to the other party; BYE or a failure ends the
//! media session.
//!
//! What it does not do (yet): authenticate callers (407), parallel forking to every contact,
//! serial failover, trunks/DIDs/routes, its own retransmission of requests it forwards over
//! UDP (the endpoints' end-to-end retransmissions cover a lost datagram, except an INVITE
//! lost after the caller received `100 Trying`), TCP/TLS, more than the first audio stream
//! anchored, session timers, BYE towards both sides when media times out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sip::edit::{ack_for_non2xx, cancel_for, Editor, ResponseBuilder};
use sip::sdp::{Sdp, SdpRewrite};
use sip::{Message, Method};

use crate::registrar::Registrar;

/// A media session on the dataplane: the relay's address and the ports each party sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Session id (for updates and delete).
    pub id: u64,
    /// The relay's media address.
    pub addr: IpAddr,
    /// Where the caller sends (leg A's port).
    pub port_a: u16,
    /// Where the callee sends (leg B's port).
    pub port_b: u16,
}

/// What a leg's media looks like, from its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegMedia {
    /// Where the party receives (the SDP's address and port), if it named one.
    pub remote: Option<SocketAddr>,
    /// (payload type, clock rate) of the formats offered.
    pub payload_types: Vec<(u8, u32)>,
    /// telephone-event payload type.
    pub telephone_event: Option<u8>,
}

/// The media plane as the proxy uses it (the control plane's media API).
pub trait MediaAnchor {
    /// Creates a session whose leg A is the caller's media.
    fn create(&mut self, a: &LegMedia) -> Result<Anchor, String>;
    /// Tells the session where the callee (leg B) receives.
    fn set_callee(&mut self, id: u64, b: &LegMedia) -> Result<(), String>;
    /// Tells the session where the caller (leg A) receives now (re-INVITE).
    fn set_caller(&mut self, id: u64, a: &LegMedia) -> Result<(), String>;
    /// Ends the session.
    fn delete(&mut self, id: u64);
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Initial INVITEs forwarded.
    pub calls: u64,
    /// Calls answered (2xx to the initial INVITE).
    pub answered: u64,
    /// Calls refused here (404, 480, 483, 500, 503).
    pub refused: u64,
    /// Calls ended by BYE.
    pub ended: u64,
    /// In-dialog requests forwarded.
    pub in_dialog: u64,
    /// Requests or responses that matched no call and were dropped.
    pub stray: u64,
    /// ACKs for non-2xx final responses this proxy sent itself, absorbed.
    pub acks_absorbed: u64,
    /// Media sessions that could not be created or updated.
    pub media_errors: u64,
}

impl std::ops::AddAssign for ProxyStats {
    fn add_assign(&mut self, o: ProxyStats) {
        self.calls += o.calls;
        self.answered += o.answered;
        self.refused += o.refused;
        self.ended += o.ended;
        self.in_dialog += o.in_dialog;
        self.stray += o.stray;
        self.acks_absorbed += o.acks_absorbed;
        self.media_errors += o.media_errors;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Proceeding,
    Confirmed,
    Ended,
}

#[derive(Debug)]
struct Call {
    caller: SocketAddr,
    callee: SocketAddr,
    /// Branch of the caller's INVITE (retransmissions, CANCEL).
    in_branch: Vec<u8>,
    /// The INVITE as forwarded (for CANCEL and the ACK of a non-2xx).
    invite_out: Vec<u8>,
    anchor: Option<Anchor>,
    phase: Phase,
    touched: Instant,
}

/// Datagrams to send.
pub type Out = Vec<(SocketAddr, Vec<u8>)>;

/// The proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Our SIP address (Via, Record-Route).
    me: SocketAddr,
    calls: HashMap<Vec<u8>, Call>,
    /// Our branch → where the response goes (the request's source).
    pending: HashMap<Vec<u8>, (SocketAddr, Instant)>,
    seq: u64,
    stats: ProxyStats,
}

/// How long an unanswered call or a pending in-dialog transaction is kept.
pub const PENDING_TTL: Duration = Duration::from_secs(180);
/// How long an ended call is kept (to absorb retransmissions).
pub const ENDED_TTL: Duration = Duration::from_secs(32);

fn sdp_media(body: &[u8]) -> Option<LegMedia> {
    let sdp = Sdp::parse(body).ok()?;
    let index = sdp
        .media()
        .iter()
        .position(|m| m.is_rtp() && !m.is_disabled())?;
    let m = &sdp.media()[index];
    let remote = sdp
        .connection_for(index)
        .and_then(sip::sdp::Connection::ip)
        .map(|ip| SocketAddr::new(ip, m.port));
    let mut payload_types = Vec::new();
    for pt in sdp.payload_types(index) {
        if let Some(r) = sdp.rtpmap(index, pt) {
            if let Some(hz) = r.clock_rate_hz {
                payload_types.push((pt, hz));
            }
        }
    }
    Some(LegMedia {
        remote,
        payload_types,
        telephone_event: sdp.telephone_event(index).map(|r| r.pt),
    })
}

/// The SDP with the anchored stream's address and port replaced by the relay's.
fn rewrite_sdp(body: &[u8], addr: IpAddr, port: u16) -> Option<Vec<u8>> {
    let sdp = Sdp::parse(body).ok()?;
    let index = sdp
        .media()
        .iter()
        .position(|m| m.is_rtp() && !m.is_disabled())?;
    let mut rw = SdpRewrite::new(&sdp)
        .connection(addr)
        .origin_address(addr)
        .media_port(index, port);
    if sdp.rtcp(index).is_some() {
        rw = rw.rtcp(index, port + 1, Some(addr));
    }
    rw.to_vec().ok()
}

/// Where to send a request for a registered contact: the contact's own address, unless it
/// names a private address other than the one its REGISTER came from (the phone is behind
/// NAT: use the source of the REGISTER) or a host name (no DNS here: likewise).
pub fn contact_destination(contact: &str, received: SocketAddr) -> SocketAddr {
    let Ok(uri) = sip::Uri::parse(contact.as_bytes(), true) else {
        return received;
    };
    let Some(ip) = uri
        .host
        .and_then(|h| std::str::from_utf8(h.text).ok())
        .and_then(|t| t.parse::<IpAddr>().ok())
    else {
        return received;
    };
    let private = match ip {
        // RFC 1918, link-local, and RFC 6598 carrier-grade NAT (100.64.0.0/10).
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    if private && ip != received.ip() {
        return received;
    }
    SocketAddr::new(ip, uri.port.unwrap_or(5060))
}

fn branch_of(msg: &Message<'_>) -> Vec<u8> {
    msg.top_via().branch().unwrap_or_default().to_vec()
}

impl Proxy {
    /// A proxy whose Via and Record-Route name `me`.
    pub fn new(me: SocketAddr) -> Proxy {
        Proxy {
            me,
            calls: HashMap::new(),
            pending: HashMap::new(),
            seq: 0,
            stats: ProxyStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ProxyStats {
        self.stats
    }

    /// Calls being set up or up.
    pub fn active_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.phase != Phase::Ended)
            .count()
    }

    fn new_branch(&mut self) -> String {
        self.seq += 1;
        format!("z9hG4bK-tl{:x}-{:x}", std::process::id(), self.seq)
    }

    fn via(&self, branch: &str) -> String {
        format!("SIP/2.0/UDP {};branch={branch}", self.me)
    }

    fn record_route(&self) -> String {
        format!("<sip:{};lr>", self.me)
    }

    /// Drops ended calls and stale transactions; ends the media of calls that never got an
    /// answer.
    pub fn sweep(&mut self, now: Instant, media: &mut dyn MediaAnchor) {
        self.calls.retain(|_, c| {
            let ttl = if c.phase == Phase::Ended {
                ENDED_TTL
            } else if c.phase == Phase::Proceeding {
                PENDING_TTL
            } else {
                return true;
            };
            let keep = now.duration_since(c.touched) < ttl;
            if !keep {
                if let Some(a) = c.anchor.take() {
                    media.delete(a.id);
                }
            }
            keep
        });
        self.pending
            .retain(|_, (_, t)| now.duration_since(*t) < PENDING_TTL);
    }

    fn respond(
        msg: &Message<'_>,
        code: u16,
        reason: &[u8],
        tag: &[u8],
        out: &mut Out,
        to: SocketAddr,
    ) {
        let mut b = Vec::new();
        let mut r = ResponseBuilder::new(msg, code, reason);
        if code > 100 {
            r = r.to_tag(tag);
        }
        r.write(&mut b);
        out.push((to, b));
    }

    /// Handles a request (not REGISTER) from `source`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_request(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        registrar: &Registrar,
        media: Option<&mut dyn MediaAnchor>,
        now: Instant,
        unix_now: u64,
        tag: &[u8],
    ) -> Out {
        let mut out = Out::new();
        let Some(method) = msg.method() else {
            return out;
        };
        let call_id = msg.call_id().to_vec();
        if method == Method::Invite && msg.to_tag().is_none() {
            self.initial_invite(
                msg, source, registrar, media, now, unix_now, tag, &call_id, &mut out,
            );
            return out;
        }
        if method == Method::Cancel {
            let branch = branch_of(msg);
            let Some(call) = self.calls.get(&call_id).filter(|c| c.in_branch == branch) else {
                Self::respond(
                    msg,
                    481,
                    b"Call/Transaction Does Not Exist",
                    tag,
                    &mut out,
                    source,
                );
                return out;
            };
            Self::respond(msg, 200, b"OK", tag, &mut out, source);
            if call.phase == Phase::Proceeding {
                if let Ok(inv) = Message::parse(&call.invite_out) {
                    let mut c = Vec::new();
                    cancel_for(&inv, &mut c);
                    out.push((call.callee, c));
                }
            }
            return out;
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            if method == Method::Ack {
                // Most likely the ACK of a 404/480/483/503 sent from here.
                self.stats.acks_absorbed += 1;
            } else {
                Self::respond(
                    msg,
                    481,
                    b"Call/Transaction Does Not Exist",
                    tag,
                    &mut out,
                    source,
                );
                self.stats.stray += 1;
            }
            return out;
        };
        call.touched = now;
        if method == Method::Ack && branch_of(msg) == call.in_branch {
            // The caller's ACK for a non-2xx final response: hop by hop, ours was sent.
            self.stats.acks_absorbed += 1;
            return out;
        }
        let from_caller = source == call.caller;
        let dest = if from_caller {
            call.callee
        } else {
            call.caller
        };
        let mut body = None;
        if !msg.body().is_empty() {
            if let (Some(a), Some(m), Some(leg)) = (call.anchor, media, sdp_media(msg.body())) {
                let (port, update) = if from_caller {
                    (a.port_b, m.set_caller(a.id, &leg))
                } else {
                    (a.port_a, m.set_callee(a.id, &leg))
                };
                if update.is_err() {
                    self.stats.media_errors += 1;
                }
                body = rewrite_sdp(msg.body(), a.addr, port);
            }
        }
        if method == Method::Bye && call.phase != Phase::Ended {
            call.phase = Phase::Ended;
            self.stats.ended += 1;
        }
        let branch = self.new_branch();
        let via = self.via(&branch);
        let mut ed = Editor::new(msg);
        if ed.decrement_max_forwards().is_err() {
            Self::respond(msg, 483, b"Too Many Hops", tag, &mut out, source);
            return out;
        }
        // Our own Record-Route comes back as a Route naming us: remove it.
        if msg.routes().next().is_some_and(|r| {
            r.uri
                .host
                .and_then(|h| std::str::from_utf8(h.text).ok())
                .and_then(|t| t.parse::<IpAddr>().ok())
                == Some(self.me.ip())
                && r.uri.port.unwrap_or(5060) == self.me.port()
        }) {
            let _ = ed.pop_route();
        }
        ed.push_via(via.as_bytes());
        if let Some(b) = &body {
            ed.set_body(b, None);
        }
        let mut fwd = Vec::new();
        if ed.write(&mut fwd).is_err() {
            return out;
        }
        if method != Method::Ack {
            self.pending.insert(branch.into_bytes(), (source, now));
        }
        self.stats.in_dialog += 1;
        out.push((dest, fwd));
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn initial_invite(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        registrar: &Registrar,
        media: Option<&mut dyn MediaAnchor>,
        now: Instant,
        unix_now: u64,
        tag: &[u8],
        call_id: &[u8],
        out: &mut Out,
    ) {
        let branch = branch_of(msg);
        if let Some(c) = self.calls.get(call_id) {
            if c.in_branch == branch {
                // A retransmission: the caller has not heard our 100 yet.
                Self::respond(msg, 100, b"Trying", tag, out, source);
            } else {
                Self::respond(msg, 482, b"Loop Detected", tag, out, source);
            }
            return;
        }
        if msg.max_forwards() == Some(0) {
            self.stats.refused += 1;
            Self::respond(msg, 483, b"Too Many Hops", tag, out, source);
            return;
        }
        let Some(ruri) = msg.request_uri() else {
            return;
        };
        let (Some(user), Some(host)) = (ruri.user, ruri.host) else {
            self.stats.refused += 1;
            Self::respond(msg, 404, b"Not Found", tag, out, source);
            return;
        };
        let Some(aor) = registrar.aor_for(user, host.text) else {
            self.stats.refused += 1;
            Self::respond(msg, 404, b"Not Found", tag, out, source);
            return;
        };
        let Some(target) = registrar.lookup(&aor, unix_now).into_iter().next() else {
            self.stats.refused += 1;
            Self::respond(msg, 480, b"Temporarily Unavailable", tag, out, source);
            return;
        };
        Self::respond(msg, 100, b"Trying", tag, out, source);
        let mut anchor = None;
        let mut body = None;
        if let (Some(m), false) = (media, msg.body().is_empty()) {
            // An offer we cannot anchor is refused: forwarding it would let the media bypass
            // the relay unseen.
            let Some(leg) = sdp_media(msg.body()) else {
                self.stats.refused += 1;
                Self::respond(msg, 488, b"Not Acceptable Here", tag, out, source);
                return;
            };
            let a = match m.create(&leg) {
                Ok(a) => a,
                Err(_) => {
                    self.stats.media_errors += 1;
                    self.stats.refused += 1;
                    Self::respond(msg, 503, b"Media Unavailable", tag, out, source);
                    return;
                }
            };
            body = rewrite_sdp(msg.body(), a.addr, a.port_b);
            if body.is_none() {
                m.delete(a.id);
                self.stats.refused += 1;
                Self::respond(msg, 488, b"Not Acceptable Here", tag, out, source);
                return;
            }
            anchor = Some((a, m));
        }
        let out_branch = self.new_branch();
        let via = self.via(&out_branch);
        let rr = self.record_route();
        let mut ed = Editor::new(msg);
        // Zero was refused above; an absent Max-Forwards is added as 70.
        let _ = ed.decrement_max_forwards();
        ed.push_via(via.as_bytes());
        ed.add_record_route(rr.as_bytes());
        if let Some(b) = &body {
            ed.set_body(b, None);
        }
        let mut fwd = Vec::new();
        if ed.set_request_uri(target.contact.as_bytes()).is_err() || ed.write(&mut fwd).is_err() {
            // The registered contact or the request cannot be written out: say so.
            if let Some((a, m)) = anchor {
                m.delete(a.id);
            }
            self.stats.refused += 1;
            Self::respond(msg, 500, b"Cannot Forward", tag, out, source);
            return;
        }
        let anchor = anchor.map(|(a, _)| a);
        let callee = contact_destination(&target.contact, target.received);
        self.calls.insert(
            call_id.to_vec(),
            Call {
                caller: source,
                callee,
                in_branch: branch,
                invite_out: fwd.clone(),
                anchor,
                phase: Phase::Proceeding,
                touched: now,
            },
        );
        self.pending.insert(out_branch.into_bytes(), (source, now));
        self.stats.calls += 1;
        out.push((callee, fwd));
    }

    /// Handles a response from `source`.
    pub fn on_response(
        &mut self,
        msg: &Message<'_>,
        _source: SocketAddr,
        mut media: Option<&mut dyn MediaAnchor>,
        now: Instant,
    ) -> Out {
        let mut out = Out::new();
        let branch = branch_of(msg);
        if msg.cseq_method() == Method::Cancel {
            // The callee's answer to our CANCEL: the caller's CANCEL was answered here.
            return out;
        }
        let Some(&(dest, _)) = self.pending.get(&branch) else {
            self.stats.stray += 1;
            return out;
        };
        let status = msg.status().unwrap_or(0);
        let is_invite = msg.cseq_method() == Method::Invite;
        let call_id = msg.call_id().to_vec();
        let mut body = None;
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.touched = now;
            let initial = is_invite && call.phase == Phase::Proceeding;
            let failed = initial && status >= 300;
            if is_invite && !failed && !msg.body().is_empty() {
                if let (Some(a), Some(m), Some(leg)) =
                    (call.anchor, media.as_deref_mut(), sdp_media(msg.body()))
                {
                    // The answer: its sender's leg learns where it receives; the SDP names
                    // the relay port facing the party it goes to.
                    let to_caller = dest == call.caller;
                    let r = if to_caller {
                        m.set_callee(a.id, &leg)
                    } else {
                        m.set_caller(a.id, &leg)
                    };
                    if r.is_err() {
                        self.stats.media_errors += 1;
                    }
                    let port = if to_caller { a.port_a } else { a.port_b };
                    body = rewrite_sdp(msg.body(), a.addr, port);
                }
            }
            if initial && (200..300).contains(&status) {
                call.phase = Phase::Confirmed;
                self.stats.answered += 1;
            }
            if failed {
                // Hop-by-hop ACK to the callee; the call is over.
                if let Ok(inv) = Message::parse(&call.invite_out) {
                    let mut ack = Vec::new();
                    ack_for_non2xx(&inv, msg, &mut ack);
                    out.push((call.callee, ack));
                }
                call.phase = Phase::Ended;
            }
            if msg.cseq_method() == Method::Bye && status >= 200 {
                call.phase = Phase::Ended;
            }
            if call.phase == Phase::Ended {
                if let (Some(a), Some(m)) = (call.anchor.take(), media) {
                    m.delete(a.id);
                }
            }
        }
        if status >= 200 {
            self.pending.remove(&branch);
        }
        let mut ed = Editor::new(msg);
        if ed.pop_via().is_err() {
            return out;
        }
        if let Some(b) = &body {
            ed.set_body(b, None);
        }
        let mut fwd = Vec::new();
        if ed.write(&mut fwd).is_ok() {
            out.push((dest, fwd));
        }
        out
    }
}
