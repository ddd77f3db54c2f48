//! A call-stateful SIP proxy (RFC 3261 §16) with media anchored on the dataplane — sans-IO:
//! requests and responses in (with their source address), timer ticks in, the datagrams to
//! send out. Record-Routes itself, so every in-dialog request of a call it set up comes back
//! through it.
//!
//! Routing of an initial INVITE, in order: a DID (→ that tenant's subscriber); a subscriber
//! of the Request-URI's served domain (→ every registered contact at once: parallel
//! forking); an outbound route by longest-prefix match (→ its gateways or dispatcher group
//! one after another: serial failover on 408, 5xx and on silence, with the route's number
//! translation and the tenant carried in a header). Calls from a configured gateway's
//! address are trusted and may reach DIDs and subscribers only. Callers are authenticated
//! with 407 per [`AuthPolicy`].
//!
//! Per call: `100 Trying` at once; one INVITE client transaction per destination (branch),
//! retransmitted on UDP (timer A) until a response; provisional responses go back to the
//! caller; the first 2xx answers the call and cancels every other branch (later 2xx are
//! forwarded too, RFC 3261 §16.7 step 5); a 6xx ends the search; otherwise, when every
//! branch and destination is done, the best final response goes back (lowest class, 6xx
//! first, 503 turned into 500 per §16.7 step 6, 408 when nothing answered, 487 after
//! CANCEL). Non-2xx finals are ACKed hop by hop. CANCEL from the caller is answered and
//! sent down every ringing branch (and to a silent one as soon as it rings). A ringing
//! branch is cancelled after the ring timeout.
//!
//! Media: the SDP offer and answer are rewritten so both legs' media go through one
//! dataplane session ([`MediaAnchor`]), created before the offer leaves and told the
//! callee's address by the answer of the branch that answered (early media: by the latest
//! provisional with SDP). BYE, a failed call or the sweep of an abandoned one ends it.
//!
//! Gateways marked for probing get OPTIONS every interval; unanswered probes disable them
//! for new calls until they answer again ([`crate::routing::Router`]).
//!
//! Not here (yet): TCP/TLS towards destinations (requests go out over UDP), more than the
//! first audio stream anchored, merging 401/407 challenges of several branches, session
//! timers, BYE towards both sides when media times out, hop-by-hop retransmission of
//! in-dialog requests (the endpoints retransmit those end to end).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sip::edit::{ack_for_non2xx, cancel_for, Editor, ResponseBuilder};
use sip::sdp::{Sdp, SdpRewrite};
use sip::{HeaderName, Message, Method};

use crate::registrar::{CallerAuth, Registrar};
use crate::routing::{HealthChange, Router, RoutingConfig, SharedRouter};

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
    /// The party does not want to receive (on hold: `sendonly`, `inactive`, or the RFC 2543
    /// `c=0.0.0.0`): the relay sends it nothing until it does again.
    pub hold: bool,
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
    /// Sessions whose media stopped (a leg silent past its inactivity timeout) since the
    /// last call.
    fn timed_out(&mut self) -> Vec<u64> {
        Vec::new()
    }
}

/// Which calls must prove their caller with `Proxy-Authorization` (407 challenge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    /// Nobody (a closed lab network).
    None,
    /// Calls that leave through a gateway (toll calls); subscriber-to-subscriber and DID
    /// calls need no proof. The default.
    Outbound,
    /// Every call not from a configured gateway.
    All,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Initial INVITEs routed (at least one destination tried).
    pub calls: u64,
    /// Calls answered (2xx to the initial INVITE).
    pub answered: u64,
    /// Calls refused here (403, 404, 480, 483, 488, 500, 503).
    pub refused: u64,
    /// Calls that ended with a final failure from downstream (or 408/487 of our own).
    pub failed: u64,
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
    /// Branches started (one per destination tried).
    pub branches: u64,
    /// Destinations after the first tried because the previous failed (serial failover).
    pub failovers: u64,
    /// Branches that never answered within the failover timeout.
    pub timeouts: u64,
    /// CANCELs this proxy sent down branches.
    pub cancels_sent: u64,
    /// INVITE retransmissions this proxy sent (timer A).
    pub retransmissions: u64,
    /// 407 challenges sent.
    pub challenges: u64,
    /// OPTIONS probes sent to gateways.
    pub probes_sent: u64,
    /// Gateways that stopped answering probes.
    pub gateways_down: u64,
    /// Gateways that answered again.
    pub gateways_up: u64,
    /// Answered calls ended here because their media stopped (BYE sent both ways).
    pub media_timeouts: u64,
    /// Out-of-dialog MESSAGEs forwarded to a subscriber (RFC 3428 pager mode).
    pub messages: u64,
    /// SUBSCRIBE/PUBLISH answered 489 (no event package is served here).
    pub bad_events: u64,
    /// INVITEs refused with 503 because `max_calls` calls were up.
    pub overload_refused: u64,
}

impl std::ops::AddAssign for ProxyStats {
    fn add_assign(&mut self, o: ProxyStats) {
        self.calls += o.calls;
        self.answered += o.answered;
        self.refused += o.refused;
        self.failed += o.failed;
        self.ended += o.ended;
        self.in_dialog += o.in_dialog;
        self.stray += o.stray;
        self.acks_absorbed += o.acks_absorbed;
        self.media_errors += o.media_errors;
        self.branches += o.branches;
        self.failovers += o.failovers;
        self.timeouts += o.timeouts;
        self.cancels_sent += o.cancels_sent;
        self.retransmissions += o.retransmissions;
        self.challenges += o.challenges;
        self.probes_sent += o.probes_sent;
        self.gateways_down += o.gateways_down;
        self.gateways_up += o.gateways_up;
        self.media_timeouts += o.media_timeouts;
        self.messages += o.messages;
        self.bad_events += o.bad_events;
        self.overload_refused += o.overload_refused;
    }
}

impl ProxyStats {
    /// `key=value` pairs for the log.
    pub fn summary(&self) -> String {
        format!(
            "calls={} calls_answered={} calls_refused={} calls_failed={} calls_ended={} \
             in_dialog={} stray={} acks_absorbed={} media_errors={} branches={} failovers={} \
             branch_timeouts={} cancels_sent={} invite_retransmissions={} call_challenges={} \
             probes_sent={} gateways_down={} gateways_up={} media_timeouts={} messages={} \
             bad_events={} overload_refused={}",
            self.calls,
            self.answered,
            self.refused,
            self.failed,
            self.ended,
            self.in_dialog,
            self.stray,
            self.acks_absorbed,
            self.media_errors,
            self.branches,
            self.failovers,
            self.timeouts,
            self.cancels_sent,
            self.retransmissions,
            self.challenges,
            self.probes_sent,
            self.gateways_down,
            self.gateways_up,
            self.media_timeouts,
            self.messages,
            self.bad_events,
            self.overload_refused
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Branches are being tried.
    Proceeding,
    /// Answered.
    Confirmed,
    /// Over (BYE, final failure); kept a while to absorb retransmissions.
    Ended,
}

/// One destination to try.
#[derive(Debug, Clone)]
struct Attempt {
    dest: SocketAddr,
    /// Request-URI for it.
    ruri: String,
    /// Gateway name (for gateways: tenant header, logs).
    gateway: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    /// Sent, nothing heard.
    Calling,
    /// A provisional arrived.
    Proceeding,
    /// A final response arrived or the branch was given up.
    Done,
}

#[derive(Debug)]
struct Branch {
    attempt: Attempt,
    id: Vec<u8>,
    /// The INVITE as sent (retransmissions, CANCEL, ACK).
    request: Vec<u8>,
    state: BranchState,
    /// When the current state began.
    since: Instant,
    retx_at: Instant,
    retx: Duration,
    /// The caller cancelled before this branch rang: CANCEL it when it does.
    cancel_pending: bool,
    /// The final status it ended with (ours: 408 on silence or ring timeout).
    status: u16,
}

impl Branch {
    /// Sends CANCEL for this branch's INVITE (RFC 3261 §9.1).
    fn send_cancel(&self, out: &mut Out, stats: &mut ProxyStats) {
        if let Ok(inv) = Message::parse(&self.request) {
            let mut c = Vec::new();
            cancel_for(&inv, &mut c);
            out.push((self.attempt.dest, c));
            stats.cancels_sent += 1;
        }
    }

    /// Ends a branch the call no longer needs: a ringing one is cancelled (and counts as
    /// 487), a silent one is cancelled as soon as it rings.
    fn abandon(&mut self, out: &mut Out, stats: &mut ProxyStats) {
        match self.state {
            BranchState::Proceeding => {
                self.send_cancel(out, stats);
                self.state = BranchState::Done;
                self.status = 487;
            }
            BranchState::Calling => self.cancel_pending = true,
            BranchState::Done => {}
        }
    }

    /// Still owes the call an answer: not done, and not a silent branch given up on.
    fn outstanding(&self) -> bool {
        match self.state {
            BranchState::Done => false,
            BranchState::Calling => !self.cancel_pending,
            BranchState::Proceeding => true,
        }
    }
}

/// The best final failure so far.
#[derive(Debug)]
enum Best {
    /// A response from downstream, as received.
    Received(u16, Vec<u8>),
    /// One this proxy makes up (408 on silence).
    Local(u16),
}

impl Best {
    fn status(&self) -> u16 {
        match self {
            Best::Received(s, _) | Best::Local(s) => *s,
        }
    }

    fn rank(&self) -> (u8, u8) {
        rank(self.status(), matches!(self, Best::Local(_)))
    }

    /// Keeps the better of `best` and `candidate`.
    fn keep_better(best: &mut Option<Best>, candidate: Best) {
        if best.as_ref().is_none_or(|b| candidate.rank() < b.rank()) {
            *best = Some(candidate);
        }
    }
}

/// Rank of a final failure: lower is preferred (RFC 3261 §16.7 step 6).
fn rank(status: u16, local: bool) -> (u8, u8) {
    let class = match status / 100 {
        6 => 0,
        3 => 1,
        4 => 2,
        _ => 3,
    };
    let within = match status {
        401 | 407 | 415 | 420 | 484 => 0,
        _ if local => 2,
        _ => 1,
    };
    (class, within)
}

/// A dialog on the callee's side (one per answering branch).
#[derive(Debug)]
struct Dialog {
    /// The callee's tag.
    tag: Vec<u8>,
    /// Where its requests go.
    peer: SocketAddr,
    /// The callee's To header value (with its tag) and Contact URI, for a BYE of ours.
    to: Vec<u8>,
    contact: Vec<u8>,
    /// Highest CSeq the callee used in this dialog.
    callee_cseq: u32,
}

#[derive(Debug)]
struct Call {
    caller: SocketAddr,
    caller_tag: Vec<u8>,
    /// Branch of the caller's INVITE (retransmissions, CANCEL).
    in_branch: Vec<u8>,
    /// The caller's INVITE as received (for responses this proxy makes up).
    invite_in: Vec<u8>,
    /// To-tag of responses this proxy makes up.
    tag: Vec<u8>,
    /// Tenant domain (tenant header towards gateways).
    tenant: Option<String>,
    /// Strip Proxy-Authorization (our realm's credentials) before forwarding.
    consumed_auth: bool,
    /// The offer as it goes out (anchored), when there is one.
    body_out: Option<Vec<u8>>,
    branches: Vec<Branch>,
    /// Destinations not tried yet (serial failover).
    next: VecDeque<Attempt>,
    best: Option<Best>,
    /// Index of the branch whose answer set the media's leg B.
    media_branch: Option<usize>,
    cancelled: bool,
    /// A final response went to the caller.
    final_sent: bool,
    dialogs: Vec<Dialog>,
    /// Highest CSeq the caller used (the INVITE's, then in-dialog requests').
    caller_cseq: u32,
    anchor: Option<Anchor>,
    phase: Phase,
    touched: Instant,
}

/// Datagrams to send.
pub type Out = Vec<(SocketAddr, Vec<u8>)>;

/// What an outstanding branch of ours belongs to.
#[derive(Debug)]
enum Pending {
    /// An in-dialog request forwarded from `source`: its responses go back there.
    InDialog(SocketAddr),
    /// A branch of a call's INVITE.
    Invite(Vec<u8>),
    /// A request this proxy made itself (a BYE when media died): its responses end here.
    Own,
}

/// The proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Our SIP address (Via, Record-Route).
    me: SocketAddr,
    calls: HashMap<Vec<u8>, Call>,
    pending: HashMap<Vec<u8>, Pending>,
    router: SharedRouter,
    auth: AuthPolicy,
    seq: u64,
    stats: ProxyStats,
    health_log: Vec<HealthChange>,
    /// Calls with a branch not done yet: the ones [`Proxy::tick`] visits.
    timed: std::collections::HashSet<Vec<u8>>,
    /// When to look at each call again (sweep), oldest first.
    expiry: VecDeque<(Instant, Vec<u8>)>,
    /// When each in-dialog or own transaction of `pending` is given up, oldest first.
    pending_expiry: VecDeque<(Instant, Vec<u8>)>,
    /// Most calls up at once (0: no limit); beyond it INVITEs get 503 + Retry-After.
    max_calls: usize,
}

/// How long an unanswered call or a pending in-dialog transaction is kept.
pub const PENDING_TTL: Duration = Duration::from_secs(180);
/// How long an ended call is kept (to absorb retransmissions).
pub const ENDED_TTL: Duration = Duration::from_secs(32);
/// Reason phrase of 481.
const NO_DIALOG: &[u8] = b"Call/Transaction Does Not Exist";
/// RFC 3261 T1: the first INVITE retransmission interval.
const T1: Duration = Duration::from_millis(500);
/// The longest retransmission interval used.
const RETX_CAP: Duration = Duration::from_secs(4);

fn sdp_media(body: &[u8]) -> Option<LegMedia> {
    let sdp = Sdp::parse(body).ok()?;
    let index = sdp
        .media()
        .iter()
        .position(|m| m.is_rtp() && !m.is_disabled())?;
    let m = &sdp.media()[index];
    let ip = sdp.connection_for(index).and_then(sip::sdp::Connection::ip);
    let unspecified = ip.is_some_and(|ip| ip.is_unspecified());
    // c=0.0.0.0 names no address: the leg keeps the one it has.
    let remote = ip
        .filter(|_| !unspecified)
        .map(|ip| SocketAddr::new(ip, m.port));
    let mut payload_types = Vec::new();
    for pt in sdp.payload_types(index) {
        if let Some(r) = sdp.rtpmap(index, pt) {
            if let Some(hz) = r.clock_rate_hz {
                payload_types.push((pt, hz));
            }
        }
    }
    let hold = unspecified
        || matches!(
            sdp.direction(index),
            Some(sip::sdp::Direction::SendOnly | sip::sdp::Direction::Inactive)
        );
    Some(LegMedia {
        remote,
        payload_types,
        telephone_event: sdp.telephone_event(index).map(|r| r.pt),
        hold,
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

fn is_failover_status(status: u16) -> bool {
    status == 408 || (500..600).contains(&status)
}

impl Proxy {
    /// A proxy whose Via and Record-Route name `me`, routing to registered subscribers only,
    /// with [`AuthPolicy::Outbound`].
    pub fn new(me: SocketAddr) -> Proxy {
        Proxy::with_routing(
            me,
            Router::new(RoutingConfig::default()).shared(),
            AuthPolicy::Outbound,
        )
    }

    /// A proxy with DIDs, gateways, dispatchers and routes (shared with the other listeners
    /// and the management API, which changes them at runtime).
    pub fn with_routing(me: SocketAddr, router: SharedRouter, auth: AuthPolicy) -> Proxy {
        Proxy {
            me,
            calls: HashMap::new(),
            pending: HashMap::new(),
            router,
            auth,
            seq: 0,
            stats: ProxyStats::default(),
            health_log: Vec::new(),
            timed: std::collections::HashSet::new(),
            expiry: VecDeque::new(),
            pending_expiry: VecDeque::new(),
            max_calls: 0,
        }
    }

    /// Refuses new calls (503, Retry-After) while `max` calls are up; 0: no limit.
    pub fn set_max_calls(&mut self, max: usize) {
        self.max_calls = max;
    }

    /// Counters.
    pub fn stats(&self) -> ProxyStats {
        self.stats
    }

    /// Routing state (gateway health), locked.
    pub fn router(&self) -> std::sync::MutexGuard<'_, Router> {
        crate::routing::lock(&self.router)
    }

    /// Gateway health changes since the last call (for the log).
    pub fn take_health_changes(&mut self) -> Vec<HealthChange> {
        std::mem::take(&mut self.health_log)
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

    /// Whether the top Route names this proxy (RFC 3261 §16.4: it is removed before
    /// forwarding — a phone's preloaded outbound-proxy Route, or our Record-Route coming
    /// back in a dialog).
    fn top_route_is_me(&self, msg: &Message<'_>) -> bool {
        msg.routes().next().is_some_and(|r| {
            r.uri
                .host
                .and_then(|h| std::str::from_utf8(h.text).ok())
                .and_then(|t| t.trim_matches(['[', ']']).parse::<IpAddr>().ok())
                == Some(self.me.ip())
                && r.uri.port.unwrap_or(5060) == self.me.port()
        })
    }

    /// The address of the first Route that does not name this proxy, when it is an IP
    /// literal (no DNS here).
    fn next_hop(&self, msg: &Message<'_>) -> Option<SocketAddr> {
        let mut routes = msg.routes();
        let mut r = routes.next()?;
        if self.top_route_is_me(msg) {
            r = routes.next()?;
        }
        let ip = r
            .uri
            .host
            .and_then(|h| std::str::from_utf8(h.text).ok())
            .and_then(|t| t.trim_matches(['[', ']']).parse::<IpAddr>().ok())?;
        Some(SocketAddr::new(ip, r.uri.port.unwrap_or(5060)))
    }

    fn record_route(&self) -> String {
        format!("<sip:{};lr>", self.me)
    }

    /// Drops ended calls and stale transactions; ends the media of calls that never got an
    /// answer.
    pub fn sweep(&mut self, now: Instant, media: &mut dyn MediaAnchor) {
        // Each call is looked at every ENDED_TTL (its entry in `expiry`), not every sweep:
        // the table holds every answered call and, for a while, every ended one.
        while self.expiry.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, id)) = self.expiry.pop_front() else {
                break;
            };
            let Some(c) = self.calls.get_mut(&id) else {
                continue;
            };
            let ttl = match c.phase {
                Phase::Ended => ENDED_TTL,
                Phase::Proceeding => PENDING_TTL,
                Phase::Confirmed => {
                    self.expiry.push_back((now + ENDED_TTL, id));
                    continue;
                }
            };
            if now.duration_since(c.touched) < ttl {
                let again = if c.phase == Phase::Ended {
                    c.touched + ENDED_TTL
                } else {
                    now + ENDED_TTL
                };
                self.expiry.push_back((again, id));
                continue;
            }
            if let Some(a) = c.anchor.take() {
                media.delete(a.id);
            }
            if let Some(c) = self.calls.remove(&id) {
                for b in &c.branches {
                    self.pending.remove(&b.id);
                }
            }
            self.timed.remove(&id);
        }
        while self
            .pending_expiry
            .front()
            .is_some_and(|(at, _)| *at <= now)
        {
            if let Some((_, branch)) = self.pending_expiry.pop_front() {
                if matches!(
                    self.pending.get(&branch),
                    Some(Pending::InDialog(_) | Pending::Own)
                ) {
                    self.pending.remove(&branch);
                }
            }
        }
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
        registrar: &mut Registrar,
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
            self.cancel(msg, source, media, now, tag, &call_id, &mut out);
            return out;
        }
        if msg.to_tag().is_none() && !self.calls.contains_key(&call_id) {
            match method {
                Method::Subscribe | Method::Publish => {
                    // No event package (presence, MWI, dialog) is served here.
                    self.stats.bad_events += 1;
                    Self::respond(msg, 489, b"Bad Event", tag, &mut out, source);
                    return out;
                }
                Method::Message => {
                    self.message(msg, source, registrar, now, unix_now, tag, &mut out);
                    return out;
                }
                _ => {}
            }
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            if method == Method::Ack {
                // Most likely the ACK of a 404/407/480/483/503 sent from here.
                self.stats.acks_absorbed += 1;
            } else {
                self.stats.stray += 1;
                Self::respond(msg, 481, NO_DIALOG, tag, &mut out, source);
            }
            return out;
        };
        call.touched = now;
        if method == Method::Ack && branch_of(msg) == call.in_branch {
            // The caller's ACK for a non-2xx final response: hop by hop, ours was sent.
            self.stats.acks_absorbed += 1;
            return out;
        }
        let from_caller = msg.from_tag().unwrap_or_default() == call.caller_tag.as_slice();
        let cseq = msg.cseq().seq;
        if from_caller {
            call.caller_cseq = call.caller_cseq.max(cseq);
        } else if let Some(d) = call
            .dialogs
            .iter_mut()
            .find(|d| Some(d.tag.as_slice()) == msg.from_tag())
        {
            d.callee_cseq = d.callee_cseq.max(cseq);
        }
        let dest = if from_caller {
            let to_tag = msg.to_tag().unwrap_or_default();
            match call
                .dialogs
                .iter()
                .find(|d| d.tag == to_tag)
                .or(call.dialogs.first())
            {
                Some(d) => d.peer,
                None => {
                    self.stats.stray += 1;
                    Self::respond(msg, 481, NO_DIALOG, tag, &mut out, source);
                    return out;
                }
            }
        } else {
            call.caller
        };
        // Only the dialog that owns the media moves it.
        let owns_media = !from_caller
            || call.media_branch.is_some_and(|i| {
                call.branches.get(i).is_some_and(|b| {
                    call.dialogs
                        .iter()
                        .any(|d| d.peer == b.attempt.dest && Some(d.tag.as_slice()) == msg.to_tag())
                })
            })
            || call.dialogs.len() <= 1;
        let mut body = None;
        if !msg.body().is_empty() && owns_media {
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
        if self.top_route_is_me(msg) {
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
            let branch = branch.into_bytes();
            self.pending_expiry
                .push_back((now + PENDING_TTL, branch.clone()));
            self.pending.insert(branch, Pending::InDialog(source));
        }
        self.stats.in_dialog += 1;
        out.push((dest, fwd));
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn cancel(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        media: Option<&mut dyn MediaAnchor>,
        now: Instant,
        tag: &[u8],
        call_id: &[u8],
        out: &mut Out,
    ) {
        let branch = branch_of(msg);
        let Some(call) = self
            .calls
            .get_mut(call_id)
            .filter(|c| c.in_branch == branch)
        else {
            Self::respond(msg, 481, NO_DIALOG, tag, out, source);
            return;
        };
        Self::respond(msg, 200, b"OK", tag, out, source);
        if call.phase != Phase::Proceeding || call.final_sent || call.cancelled {
            return;
        }
        call.cancelled = true;
        call.touched = now;
        call.next.clear();
        for b in &mut call.branches {
            match b.state {
                BranchState::Proceeding => {
                    b.send_cancel(out, &mut self.stats);
                }
                BranchState::Calling => b.cancel_pending = true,
                BranchState::Done => {}
            }
        }
        self.finish_if_done(call_id, media, out);
    }

    /// An out-of-dialog MESSAGE (RFC 3428): to the subscriber's (or DID owner's) contact
    /// with the highest q, statelessly but for the response's way back.
    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        registrar: &mut Registrar,
        now: Instant,
        unix_now: u64,
        tag: &[u8],
        out: &mut Out,
    ) {
        let from_gateway = self.router().gateway_at(source).is_some();
        if self.auth == AuthPolicy::All
            && !from_gateway
            && self
                .authenticate(msg, source, registrar, unix_now, tag, out)
                .is_none()
        {
            return;
        }
        let Some(ruri) = msg.request_uri() else {
            return;
        };
        let user = ruri
            .user
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .unwrap_or_default();
        let host = ruri.host.map(|h| h.text).unwrap_or_default();
        let did = self
            .router()
            .did(&user)
            .map(|d| (d.tenant.clone(), d.user.clone()));
        let target = did.or_else(|| {
            registrar
                .tenant_domain(host)
                .map(str::to_string)
                .filter(|d| registrar.is_subscriber(d, &user))
                .map(|d| (d, user.clone()))
        });
        let Some((tenant, u)) = target else {
            Self::respond(msg, 404, b"Not Found", tag, out, source);
            return;
        };
        let Some(b) = registrar
            .lookup(&format!("{u}@{tenant}"), unix_now)
            .into_iter()
            .next()
        else {
            Self::respond(msg, 480, b"Temporarily Unavailable", tag, out, source);
            return;
        };
        if msg.max_forwards() == Some(0) {
            Self::respond(msg, 483, b"Too Many Hops", tag, out, source);
            return;
        }
        let branch = self.new_branch();
        let via = self.via(&branch);
        let mut ed = Editor::new(msg);
        let _ = ed.decrement_max_forwards();
        if self.top_route_is_me(msg) {
            let _ = ed.pop_route();
        }
        ed.push_via(via.as_bytes());
        let mut fwd = Vec::new();
        if ed.set_request_uri(b.contact.as_bytes()).is_err() || ed.write(&mut fwd).is_err() {
            Self::respond(msg, 500, b"Cannot Forward", tag, out, source);
            return;
        }
        let branch = branch.into_bytes();
        self.pending_expiry
            .push_back((now + PENDING_TTL, branch.clone()));
        self.pending.insert(branch, Pending::InDialog(source));
        self.stats.messages += 1;
        out.push((contact_destination(&b.contact, b.received), fwd));
    }

    /// The caller's tenant when its credentials hold; otherwise the 407 or 403 is in `out`.
    fn authenticate(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        registrar: &mut Registrar,
        unix_now: u64,
        tag: &[u8],
        out: &mut Out,
    ) -> Option<String> {
        let mut b = Vec::new();
        let now = Duration::from_secs(unix_now);
        match registrar.authenticate_caller(msg, now, tag, &mut b) {
            CallerAuth::Authenticated { domain, .. } => Some(domain),
            CallerAuth::Challenged => {
                self.stats.challenges += 1;
                out.push((source, b));
                None
            }
            CallerAuth::Denied => {
                self.stats.refused += 1;
                out.push((source, b));
                None
            }
        }
    }

    /// Who an initial INVITE goes to, or the refusal already written into `out`.
    #[allow(clippy::too_many_arguments)]
    fn route_invite(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        registrar: &mut Registrar,
        unix_now: u64,
        tag: &[u8],
        out: &mut Out,
    ) -> Option<(Vec<Attempt>, bool, Option<String>, bool)> {
        let ruri = msg.request_uri()?;
        let from_gateway = self.router().gateway_at(source).is_some();
        let user = ruri.user.map(|u| String::from_utf8_lossy(u).into_owned());
        let host = ruri.host.map(|h| h.text).unwrap_or_default();
        let served = registrar.tenant_domain(host).map(str::to_string);
        let refuse = |s: &mut Self, code: u16, reason: &[u8], out: &mut Out| {
            s.stats.refused += 1;
            Self::respond(msg, code, reason, tag, out, source);
        };
        let Some(user) = user else {
            refuse(self, 404, b"Not Found", out);
            return None;
        };
        // Who the caller is, when the policy asks.
        let mut consumed_auth = false;
        let mut caller_tenant = None;
        if self.auth == AuthPolicy::All && !from_gateway {
            caller_tenant = Some(self.authenticate(msg, source, registrar, unix_now, tag, out)?);
            consumed_auth = true;
        }
        // 1. A DID.
        let did = self
            .router()
            .did(&user)
            .map(|d| (d.tenant.clone(), d.user.clone()));
        let local = match did {
            Some((t, u)) => Some((t, u)),
            None => served
                .as_ref()
                .filter(|d| registrar.is_subscriber(d, &user))
                .map(|d| (d.clone(), user.clone())),
        };
        if let Some((tenant, u)) = local {
            // 2. A subscriber: every registered contact at once.
            let aor = format!("{u}@{tenant}");
            let bindings = registrar.lookup(&aor, unix_now);
            if bindings.is_empty() {
                refuse(self, 480, b"Temporarily Unavailable", out);
                return None;
            }
            let attempts = bindings
                .into_iter()
                .map(|b| Attempt {
                    dest: contact_destination(&b.contact, b.received),
                    ruri: b.contact,
                    gateway: None,
                })
                .collect();
            return Some((attempts, true, Some(tenant), consumed_auth));
        }
        if from_gateway {
            // A trunk reaches our numbers, never another trunk.
            refuse(self, 404, b"Not Found", out);
            return None;
        }
        // 3. An outbound route.
        let route_tenant = caller_tenant.clone().or(served.clone()).unwrap_or_default();
        let found = self
            .router()
            .route(&route_tenant, &user)
            .map(|(r, n)| (r.target.clone(), r.tenant.clone(), n));
        let Some((target, route_tenant_owned, number)) = found else {
            refuse(self, 404, b"Not Found", out);
            return None;
        };
        let tenant = if self.auth == AuthPolicy::None {
            caller_tenant.or(served).or(route_tenant_owned)
        } else if let Some(t) = caller_tenant {
            Some(t)
        } else {
            let t = self.authenticate(msg, source, registrar, unix_now, tag, out)?;
            consumed_auth = true;
            Some(t)
        };
        let dests = self.router().destinations(&target);
        if dests.is_empty() {
            self.stats.refused += 1;
            let mut b = Vec::new();
            ResponseBuilder::new(msg, 503, b"No Gateway Available")
                .to_tag(tag)
                .header(HeaderName::RetryAfter, b"30")
                .write(&mut b);
            out.push((source, b));
            return None;
        }
        let attempts = dests
            .into_iter()
            .map(|d| Attempt {
                dest: d.address,
                ruri: format!("sip:{number}@{}", d.address),
                gateway: Some(d.gateway),
            })
            .collect();
        Some((attempts, false, tenant, consumed_auth))
    }

    #[allow(clippy::too_many_arguments)]
    fn initial_invite(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        registrar: &mut Registrar,
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
        if self.max_calls > 0 && self.active_calls() >= self.max_calls {
            // Overloaded: tell the caller when to come back rather than falling over.
            self.stats.overload_refused += 1;
            self.stats.refused += 1;
            let mut b = Vec::new();
            ResponseBuilder::new(msg, 503, b"Too Many Calls")
                .to_tag(tag)
                .header(HeaderName::RetryAfter, b"5")
                .write(&mut b);
            out.push((source, b));
            return;
        }
        let Some((attempts, parallel, tenant, consumed_auth)) =
            self.route_invite(msg, source, registrar, unix_now, tag, out)
        else {
            return;
        };
        Self::respond(msg, 100, b"Trying", tag, out, source);
        let mut anchor = None;
        let mut body_out = None;
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
                    let mut b = Vec::new();
                    ResponseBuilder::new(msg, 503, b"Media Unavailable")
                        .to_tag(tag)
                        .header(HeaderName::RetryAfter, b"10")
                        .write(&mut b);
                    out.push((source, b));
                    return;
                }
            };
            body_out = rewrite_sdp(msg.body(), a.addr, a.port_b);
            if body_out.is_none() {
                m.delete(a.id);
                self.stats.refused += 1;
                Self::respond(msg, 488, b"Not Acceptable Here", tag, out, source);
                return;
            }
            anchor = Some(a);
        }
        let mut call = Call {
            caller: source,
            caller_tag: msg.from_tag().unwrap_or_default().to_vec(),
            in_branch: branch,
            invite_in: msg.as_bytes().to_vec(),
            tag: tag.to_vec(),
            tenant,
            consumed_auth,
            body_out,
            branches: Vec::new(),
            next: VecDeque::new(),
            best: None,
            media_branch: None,
            cancelled: false,
            final_sent: false,
            dialogs: Vec::new(),
            caller_cseq: msg.cseq().seq,
            anchor,
            phase: Phase::Proceeding,
            touched: now,
        };
        let mut attempts = VecDeque::from(attempts);
        let first: Vec<Attempt> = if parallel {
            attempts.drain(..).collect()
        } else {
            attempts.pop_front().into_iter().collect()
        };
        call.next = attempts;
        self.stats.calls += 1;
        for a in first {
            self.start_branch(&mut call, msg, a, now, out);
        }
        let call_id = call_id.to_vec();
        let nothing_sent = call.branches.is_empty();
        self.calls.insert(call_id.clone(), call);
        self.expiry.push_back((now + ENDED_TTL, call_id.clone()));
        if nothing_sent {
            // No destination could be written out (a registered contact we cannot use).
            self.fail_over(&call_id, now, out);
            self.finish_if_done(&call_id, None, out);
        }
    }

    /// Sends the INVITE to one destination as a new branch of `call`.
    fn start_branch(
        &mut self,
        call: &mut Call,
        msg: &Message<'_>,
        attempt: Attempt,
        now: Instant,
        out: &mut Out,
    ) -> bool {
        let id = self.new_branch();
        let via = self.via(&id);
        let rr = self.record_route();
        let tenant_header = self.router().config().tenant_header.clone();
        let tenant_line = match (&tenant_header, &attempt.gateway, &call.tenant) {
            (Some(h), Some(_), Some(t)) => Some(format!("{h}: {t}")),
            _ => None,
        };
        let ruri = attempt.ruri.clone();
        let mut ed = Editor::new(msg);
        // Zero was refused before; an absent Max-Forwards is added as 70.
        let _ = ed.decrement_max_forwards();
        if self.top_route_is_me(msg) {
            let _ = ed.pop_route();
        }
        ed.push_via(via.as_bytes());
        ed.add_record_route(rr.as_bytes());
        if call.consumed_auth {
            ed.remove_header(HeaderName::ProxyAuthorization);
        }
        if let Some(h) = &tenant_header {
            ed.remove_raw_header(h.as_bytes());
        }
        if let Some(line) = &tenant_line {
            ed.add_raw_header(line.as_bytes());
        }
        if let Some(b) = &call.body_out {
            ed.set_body(b, None);
        }
        let mut request = Vec::new();
        if ed.set_request_uri(ruri.as_bytes()).is_err() || ed.write(&mut request).is_err() {
            // This destination cannot be written to: as if it failed at once.
            Best::keep_better(&mut call.best, Best::Local(500));
            return false;
        }
        self.stats.branches += 1;
        // Loose routing (RFC 3261 §16.6 step 7): a Route left after ours is the next hop;
        // the Request-URI still names the target.
        let mut attempt = attempt;
        if let Some(next) = self.next_hop(msg) {
            attempt.dest = next;
        }
        out.push((attempt.dest, request.clone()));
        self.pending.insert(
            id.clone().into_bytes(),
            Pending::Invite(msg.call_id().to_vec()),
        );
        self.timed.insert(msg.call_id().to_vec());
        call.branches.push(Branch {
            attempt,
            id: id.into_bytes(),
            request,
            state: BranchState::Calling,
            since: now,
            retx_at: now + T1,
            retx: T1,
            cancel_pending: false,
            status: 0,
        });
        true
    }

    /// Tries the next serial destination of a call whose branches all failed over.
    fn fail_over(&mut self, call_id: &[u8], now: Instant, out: &mut Out) {
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        while call.phase == Phase::Proceeding
            && !call.cancelled
            && !call.final_sent
            && !call.branches.iter().any(Branch::outstanding)
            && call
                .best
                .as_ref()
                .is_none_or(|b| is_failover_status(b.status()))
        {
            let Some(next) = call.next.pop_front() else {
                break;
            };
            if !call.branches.is_empty() {
                self.stats.failovers += 1;
            }
            let invite = call.invite_in.clone();
            let Ok(msg) = Message::parse(&invite) else {
                break;
            };
            self.start_branch(&mut call, &msg, next, now, out);
        }
        self.calls.insert(call_id.to_vec(), call);
    }

    /// When nothing is left to try, sends the best final response to the caller and ends
    /// the call.
    fn finish_if_done<'m>(
        &mut self,
        call_id: &[u8],
        media: Option<&mut (dyn MediaAnchor + 'm)>,
        out: &mut Out,
    ) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.final_sent
            || call.phase != Phase::Proceeding
            || !call.next.is_empty()
            || call.branches.iter().any(Branch::outstanding)
        {
            return;
        }
        call.final_sent = true;
        call.phase = Phase::Ended;
        self.stats.failed += 1;
        let Ok(invite) = Message::parse(&call.invite_in) else {
            return;
        };
        let mut b = Vec::new();
        let local = |code: u16, reason: &[u8], b: &mut Vec<u8>| {
            ResponseBuilder::new(&invite, code, reason)
                .to_tag(&call.tag)
                .write(b);
        };
        match &call.best {
            _ if call.cancelled && !matches!(&call.best, Some(Best::Received(487, _))) => {
                local(487, b"Request Terminated", &mut b);
            }
            Some(Best::Received(503, _)) => local(500, b"Service Unavailable Downstream", &mut b),
            Some(Best::Received(_, resp)) => {
                if let Ok(r) = Message::parse(resp) {
                    let mut ed = Editor::new(&r);
                    if ed.pop_via().is_err() || ed.write(&mut b).is_err() {
                        b.clear();
                    }
                }
                if b.is_empty() {
                    local(500, b"Server Internal Error", &mut b);
                }
            }
            Some(Best::Local(code)) if *code == 408 => local(408, b"Request Timeout", &mut b),
            Some(Best::Local(_)) => local(500, b"Cannot Forward", &mut b),
            None => local(408, b"Request Timeout", &mut b),
        }
        out.push((call.caller, b));
        if let (Some(a), Some(m)) = (call.anchor.take(), media) {
            m.delete(a.id);
        }
    }

    /// Ends answered calls whose media session timed out: a BYE to each party (RFC 3261
    /// §16 lets a proxy do it for a dialog it record-routes; the parties treat it as the
    /// other's), and the media session is deleted. Sessions of calls not answered yet are
    /// left to the call's own end.
    pub fn media_timed_out(
        &mut self,
        sessions: &[u64],
        now: Instant,
        media: Option<&mut dyn MediaAnchor>,
    ) -> Out {
        let mut out = Out::new();
        let mut ended = Vec::new();
        for (id, call) in &self.calls {
            if call.phase != Phase::Confirmed {
                continue;
            }
            if call.anchor.is_some_and(|a| sessions.contains(&a.id)) {
                ended.push(id.clone());
            }
        }
        let mut media = media;
        for id in ended {
            let mut byes = Vec::new();
            let Some(call) = self.calls.get(&id) else {
                continue;
            };
            let Ok(invite) = Message::parse(&call.invite_in) else {
                continue;
            };
            let Some(d) = call
                .media_branch
                .and_then(|i| call.branches.get(i))
                .and_then(|b| call.dialogs.iter().find(|d| d.peer == b.attempt.dest))
                .or(call.dialogs.first())
            else {
                continue;
            };
            let caller_from = invite.header(HeaderName::From).unwrap_or_default();
            let caller_contact = invite
                .contacts()
                .find_map(|c| match c {
                    sip::Contact::Addr(a) => Some(a.uri.as_bytes()),
                    sip::Contact::Star => None,
                })
                .unwrap_or_default();
            let call_id = String::from_utf8_lossy(&id).into_owned();
            let reason = "Reason: Q.850;cause=16;text=\"media timeout\"";
            // To the callee, as if from the caller.
            byes.push((
                d.peer,
                call.caller_cseq.saturating_add(1),
                String::from_utf8_lossy(&d.contact).into_owned(),
                String::from_utf8_lossy(caller_from).into_owned(),
                String::from_utf8_lossy(&d.to).into_owned(),
            ));
            // To the caller, as if from the callee.
            byes.push((
                call.caller,
                d.callee_cseq.saturating_add(1).max(1),
                String::from_utf8_lossy(caller_contact).into_owned(),
                String::from_utf8_lossy(&d.to).into_owned(),
                String::from_utf8_lossy(caller_from).into_owned(),
            ));
            let me = self.me;
            for (dest, cseq, ruri, from, to) in byes {
                let branch = self.new_branch();
                let ruri = if ruri.is_empty() {
                    format!("sip:{dest}")
                } else {
                    ruri
                };
                let bye = format!(
                    "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n\
                     Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                     CSeq: {cseq} BYE\r\n{reason}\r\nUser-Agent: Trunkline/{v}\r\n\
                     Content-Length: 0\r\n\r\n",
                    v = env!("CARGO_PKG_VERSION")
                );
                let branch = branch.into_bytes();
                self.pending_expiry
                    .push_back((now + PENDING_TTL, branch.clone()));
                self.pending.insert(branch, Pending::Own);
                out.push((dest, bye.into_bytes()));
            }
            if let Some(call) = self.calls.get_mut(&id) {
                call.phase = Phase::Ended;
                call.touched = now;
                self.stats.media_timeouts += 1;
                self.stats.ended += 1;
                if let (Some(a), Some(m)) = (call.anchor.take(), media.as_deref_mut()) {
                    m.delete(a.id);
                }
            }
        }
        out
    }

    /// Timers: INVITE retransmissions, failover on silence, ring timeouts, gateway probes.
    pub fn tick(&mut self, now: Instant, mut media: Option<&mut dyn MediaAnchor>) -> Out {
        let mut out = Out::new();
        let timing = self.router().timing();
        let mut check = Vec::new();
        // Only calls with a branch still waiting are visited: the call table also holds
        // every answered call and, for a while, every ended one.
        let ids: Vec<Vec<u8>> = self.timed.iter().cloned().collect();
        for call_id in ids {
            let Some(call) = self.calls.get_mut(&call_id) else {
                self.timed.remove(&call_id);
                continue;
            };
            if call.branches.iter().all(|b| b.state == BranchState::Done)
                || !matches!(call.phase, Phase::Proceeding | Phase::Confirmed)
            {
                self.timed.remove(&call_id);
                continue;
            }
            let mut changed = false;
            for b in &mut call.branches {
                match b.state {
                    BranchState::Calling
                        if now.duration_since(b.since) >= timing.failover_timeout =>
                    {
                        b.state = BranchState::Done;
                        b.status = 408;
                        self.stats.timeouts += 1;
                        changed = true;
                        Best::keep_better(&mut call.best, Best::Local(408));
                    }
                    BranchState::Calling if now >= b.retx_at => {
                        out.push((b.attempt.dest, b.request.clone()));
                        self.stats.retransmissions += 1;
                        b.retx = (b.retx * 2).min(RETX_CAP);
                        b.retx_at = now + b.retx;
                    }
                    BranchState::Proceeding
                        if call.phase == Phase::Proceeding
                            && now.duration_since(b.since) >= timing.ring_timeout =>
                    {
                        b.send_cancel(&mut out, &mut self.stats);
                        b.state = BranchState::Done;
                        b.status = 408;
                        changed = true;
                        Best::keep_better(&mut call.best, Best::Local(408));
                    }
                    _ => {}
                }
            }
            if changed {
                check.push(call_id.clone());
            }
        }
        for id in check {
            self.fail_over(&id, now, &mut out);
            self.finish_if_done(&id, media.as_deref_mut(), &mut out);
        }
        if let Some(m) = media {
            let dead = m.timed_out();
            if !dead.is_empty() {
                let byes = self.media_timed_out(&dead, now, Some(m));
                out.extend(byes);
            }
        }
        // Probes.
        let me = self.me;
        let mut seq = self.seq;
        let pid = std::process::id();
        let (probes, changes) = crate::routing::lock(&self.router).due_probes(now, || {
            seq += 1;
            format!("z9hG4bK-tlp{pid:x}-{seq:x}").into_bytes()
        });
        self.seq = seq;
        for ch in changes {
            if matches!(ch, HealthChange::Down(_)) {
                self.stats.gateways_down += 1;
            }
            self.health_log.push(ch);
        }
        for (_, addr, branch) in probes {
            let b = String::from_utf8_lossy(&branch);
            let req = format!(
                "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={b}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:trunkline@{me}>;tag={b}\r\nTo: <sip:{addr}>\r\n\
                 Call-ID: {b}@{ip}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: Trunkline/{v}\r\n\
                 Content-Length: 0\r\n\r\n",
                ip = me.ip(),
                v = env!("CARGO_PKG_VERSION")
            );
            self.stats.probes_sent += 1;
            out.push((addr, req.into_bytes()));
        }
        out
    }

    /// Handles a response from `source`.
    pub fn on_response(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        media: Option<&mut dyn MediaAnchor>,
        now: Instant,
    ) -> Out {
        let mut out = Out::new();
        let branch = branch_of(msg);
        let status = msg.status().unwrap_or(0);
        if msg.cseq_method() == Method::Options {
            let answered = self.router().probe_answered(&branch, status);
            if let Some((name, came_up)) = answered {
                if came_up {
                    self.stats.gateways_up += 1;
                    self.health_log.push(HealthChange::Up(name));
                }
                return out;
            }
        }
        if msg.cseq_method() == Method::Cancel {
            // The answer to a CANCEL of ours: the caller's CANCEL was answered here.
            return out;
        }
        let call_id = match self.pending.get(&branch) {
            Some(Pending::InDialog(dest)) => {
                let dest = *dest;
                return self.in_dialog_response(msg, dest, media, now, &branch);
            }
            Some(Pending::Invite(call_id)) => call_id.clone(),
            Some(Pending::Own) => {
                if status >= 200 {
                    self.pending.remove(&branch);
                }
                return out;
            }
            None => {
                self.stats.stray += 1;
                return out;
            }
        };
        let _ = source;
        let Some(call) = self.calls.get_mut(&call_id) else {
            self.stats.stray += 1;
            return out;
        };
        call.touched = now;
        let Some(bi) = call.branches.iter().position(|b| b.id == branch) else {
            self.stats.stray += 1;
            return out;
        };
        let first_answer = (200..300).contains(&status) && call.media_branch.is_none();
        {
            let b = &mut call.branches[bi];
            if status < 200 {
                if b.state == BranchState::Calling {
                    b.state = BranchState::Proceeding;
                    b.since = now;
                    if b.cancel_pending {
                        b.send_cancel(&mut out, &mut self.stats);
                    }
                }
            } else if status >= 300 {
                // Hop-by-hop ACK (also for a retransmitted final: ours was lost).
                if let Ok(inv) = Message::parse(&b.request) {
                    let mut ack = Vec::new();
                    ack_for_non2xx(&inv, msg, &mut ack);
                    out.push((b.attempt.dest, ack));
                }
                if b.state == BranchState::Done {
                    return out;
                }
                b.state = BranchState::Done;
                b.status = status;
            } else {
                b.state = BranchState::Done;
                b.status = status;
            }
        }
        if status == 100 {
            return out;
        }
        // A provisional with a To tag opens an early dialog (PRACK, UPDATE, early BYE are
        // routed by it, RFC 3262/3311); a 2xx confirms it.
        if status > 100 && status < 300 {
            if let Some(to_tag) = msg.to_tag() {
                let contact = msg.contacts().find_map(|c| match c {
                    sip::Contact::Addr(a) => Some(a.uri.as_bytes().to_vec()),
                    sip::Contact::Star => None,
                });
                let to = msg.header(HeaderName::To).unwrap_or_default().to_vec();
                let peer = call.branches[bi].attempt.dest;
                match call.dialogs.iter_mut().find(|d| d.tag == to_tag) {
                    Some(d) => {
                        if let Some(c) = contact {
                            d.contact = c;
                        }
                        d.to = to;
                    }
                    None => call.dialogs.push(Dialog {
                        tag: to_tag.to_vec(),
                        peer,
                        to,
                        contact: contact.unwrap_or_default(),
                        callee_cseq: 0,
                    }),
                }
            }
        }
        if (200..300).contains(&status) {
            // An answer: the call is up; every other branch is cancelled.
            if call.phase == Phase::Proceeding {
                call.phase = Phase::Confirmed;
                call.final_sent = true;
                self.stats.answered += 1;
                call.next.clear();
                for (i, b) in call.branches.iter_mut().enumerate() {
                    if i != bi {
                        b.abandon(&mut out, &mut self.stats);
                    }
                }
            }
        } else if status >= 300 {
            Best::keep_better(
                &mut call.best,
                Best::Received(status, msg.as_bytes().to_vec()),
            );
            if status >= 600 && !call.final_sent {
                // A 6xx ends the search: cancel the rest.
                call.next.clear();
                for b in &mut call.branches {
                    b.abandon(&mut out, &mut self.stats);
                }
            }
            self.fail_over(&call_id, now, &mut out);
            self.finish_if_done(&call_id, media, &mut out);
            return out;
        }
        // 1xx (but 100) or 2xx: forward to the caller, with the answer's SDP anchored.
        let Some(call) = self.calls.get_mut(&call_id) else {
            return out;
        };
        if status < 200 && call.final_sent {
            return out;
        }
        let mut body = None;
        let takes_media = status < 200 && call.media_branch.is_none() || first_answer;
        if !msg.body().is_empty() {
            if let (Some(a), Some(m)) = (call.anchor, media) {
                if takes_media {
                    if let Some(leg) = sdp_media(msg.body()) {
                        if m.set_callee(a.id, &leg).is_err() {
                            self.stats.media_errors += 1;
                        }
                    }
                }
                body = rewrite_sdp(msg.body(), a.addr, a.port_a);
            }
        }
        if first_answer {
            call.media_branch = Some(bi);
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
            out.push((call.caller, fwd));
        }
        out
    }

    /// A response to an in-dialog request: back to where the request came from.
    fn in_dialog_response(
        &mut self,
        msg: &Message<'_>,
        dest: SocketAddr,
        mut media: Option<&mut dyn MediaAnchor>,
        now: Instant,
        branch: &[u8],
    ) -> Out {
        let mut out = Out::new();
        let status = msg.status().unwrap_or(0);
        let call_id = msg.call_id().to_vec();
        let mut body = None;
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.touched = now;
            let to_caller = dest == call.caller;
            if msg.cseq_method() == Method::Invite && status < 300 && !msg.body().is_empty() {
                if let (Some(a), Some(m), Some(leg)) =
                    (call.anchor, media.as_deref_mut(), sdp_media(msg.body()))
                {
                    // A re-INVITE's answer: its sender's leg learns where it receives.
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
            if msg.cseq_method() == Method::Bye && status >= 200 {
                call.phase = Phase::Ended;
                if let (Some(a), Some(m)) = (call.anchor.take(), media) {
                    m.delete(a.id);
                }
            }
        }
        if status >= 200 {
            self.pending.remove(branch);
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
