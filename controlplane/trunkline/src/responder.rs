//! The SIP endpoint of this build: a stateless UAS over UDP, TCP and TLS built on the `sip`
//! crate.
//!
//! It answers what needs no registrar, router or dialog state, per RFC 3261 and RFC 4475 §3.3:
//! OPTIONS → 200 with Allow/Accept/Supported; unknown URI scheme → 416; unsupported `Require`
//! → 420 with Unsupported; a malformed request → 400 (505 for another SIP version) whose
//! reason names the defect; a stray CANCEL → 481; ACK and responses are absorbed; REGISTER
//! goes to the registrar ([`controlplane::registrar`]); every other request → 501 until the
//! proxy lands. Each outcome is counted.
//!
//! Every listener thread — UDP here ([`serve_udp`]), TCP and TLS in [`crate::tcp`] — hands each
//! message to [`Shared::handle`]: the one proxy ([`Calls`]) and registrar are shared by all
//! of them, so a call may come in over one transport and leave over another. What the proxy
//! sends goes through the [`Router`]: over the live TCP connection to that address if
//! there is one, else over UDP.

use controlplane::registrar::Registrar;
use sip::edit::{error_response_for_unparsed, ResponseBuilder};
use sip::{HeaderName, Message, Method, ParseError, Scheme};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use controlplane::proxy::{MediaAnchor, Out, Proxy};

use crate::media_client::MediaClient;

/// The proxy of all listeners with its media-API client (shared behind a mutex, held while
/// one message is handled).
#[derive(Debug)]
pub struct Calls {
    /// The proxy.
    pub proxy: Proxy,
    /// The media plane, when it runs.
    pub media: Option<MediaClient>,
}

impl Calls {
    /// Forgets calls and transactions past their time (call about once a second).
    pub fn sweep(&mut self) {
        let mut none = NoMedia;
        let m: &mut dyn MediaAnchor = match self.media.as_mut() {
            Some(m) => m,
            None => &mut none,
        };
        self.proxy.sweep(Instant::now(), m);
    }

    /// Runs the proxy's timers (retransmissions, failover, probes); returns what to send.
    fn tick(&mut self) -> Out {
        let media = self.media.as_mut().map(|m| m as &mut dyn MediaAnchor);
        let out = self.proxy.tick(Instant::now(), media);
        for change in self.proxy.take_health_changes() {
            match change {
                controlplane::routing::HealthChange::Down(g) => {
                    eprintln!("trunkline: gateway {g} stopped answering OPTIONS: disabled");
                }
                controlplane::routing::HealthChange::Up(g) => {
                    eprintln!("trunkline: gateway {g} answers OPTIONS again: enabled");
                }
            }
        }
        out
    }

    /// Hands one call-related datagram to the proxy; returns what to send where.
    fn handle(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        seq: u64,
        registrar: &Mutex<Registrar>,
    ) -> Out {
        let Ok(msg) = Message::parse(datagram) else {
            return Out::new();
        };
        let media = self.media.as_mut().map(|m| m as &mut dyn MediaAnchor);
        if msg.is_request() {
            let Ok(mut r) = registrar.lock() else {
                return Out::new();
            };
            let unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let mut tag_buf = [0u8; 16];
            let tag = hex_tag(seq, &mut tag_buf);
            self.proxy
                .on_request(&msg, from, &mut r, media, Instant::now(), unix, tag)
        } else {
            self.proxy.on_response(&msg, from, media, Instant::now())
        }
    }
}

/// No media plane: nothing to delete.
struct NoMedia;

impl MediaAnchor for NoMedia {
    fn create(
        &mut self,
        _: &controlplane::proxy::LegMedia,
    ) -> Result<controlplane::proxy::Anchor, String> {
        Err("no media plane".into())
    }
    fn set_callee(&mut self, _: u64, _: &controlplane::proxy::LegMedia) -> Result<(), String> {
        Ok(())
    }
    fn set_caller(&mut self, _: u64, _: &controlplane::proxy::LegMedia) -> Result<(), String> {
        Ok(())
    }
    fn delete(&mut self, _: u64) {}
}

/// What happened to each datagram.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages received (UDP datagrams and messages framed on TCP connections).
    pub received: AtomicU64,
    /// OPTIONS answered 200.
    pub options_ok: AtomicU64,
    /// Requests answered 400/505 because they did not parse.
    pub malformed_answered: AtomicU64,
    /// Malformed datagrams dropped because no response could be routed.
    pub malformed_dropped: AtomicU64,
    /// Requests answered 416/420/481/501.
    pub rejected: AtomicU64,
    /// ACKs and responses absorbed.
    pub absorbed: AtomicU64,
    /// CRLF keepalives ignored.
    pub keepalives: AtomicU64,
    /// Send failures (including output for a TCP connection that has gone).
    pub send_errors: AtomicU64,
    /// TCP connections accepted.
    pub tcp_accepted: AtomicU64,
    /// TCP connections closed (every reason, by either side).
    pub tcp_closed: AtomicU64,
    /// TCP connections accepted beyond `tcp_max_connections` and closed at once.
    pub tcp_refused: AtomicU64,
    /// TCP connections closed for a framing error (no or bad Content-Length, a header
    /// section or body over the limit).
    pub tcp_framing_errors: AtomicU64,
    /// TCP connections closed for idling past `tcp_idle_timeout_s`.
    pub tcp_idle_closed: AtomicU64,
    /// TCP connections closed because the peer did not read what we sent (write queue full).
    pub tcp_write_overflows: AtomicU64,
    /// Times a TCP connection was no longer read because its answers were not read
    /// (backpressure; reading resumes when its queue drains).
    pub tcp_read_pauses: AtomicU64,
    /// accept() failures (e.g. out of file descriptors).
    pub tcp_accept_errors: AtomicU64,
    /// SIP messages received over TCP (also in `received`).
    pub tcp_messages: AtomicU64,
    /// TLS handshakes completed (TLS connections are TCP connections: they count in the
    /// `tcp_*` counters too).
    pub tls_handshakes: AtomicU64,
    /// TLS connections closed because the handshake failed (not TLS, no common parameters,
    /// the peer closed or failed during it).
    pub tls_handshake_failures: AtomicU64,
    /// TLS connections closed for a TLS error after the handshake (a bad record, a fatal
    /// alert from the peer).
    pub tls_errors: AtomicU64,
}

impl Counters {
    /// One line for logs.
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "received={} options_ok={} malformed_answered={} malformed_dropped={} rejected={} absorbed={} keepalives={} send_errors={} \
             tcp_accepted={} tcp_closed={} tcp_refused={} tcp_framing_errors={} tcp_idle_closed={} tcp_write_overflows={} tcp_read_pauses={} tcp_accept_errors={} tcp_messages={} \
             tls_handshakes={} tls_handshake_failures={} tls_errors={}",
            g(&self.received),
            g(&self.options_ok),
            g(&self.malformed_answered),
            g(&self.malformed_dropped),
            g(&self.rejected),
            g(&self.absorbed),
            g(&self.keepalives),
            g(&self.send_errors),
            g(&self.tcp_accepted),
            g(&self.tcp_closed),
            g(&self.tcp_refused),
            g(&self.tcp_framing_errors),
            g(&self.tcp_idle_closed),
            g(&self.tcp_write_overflows),
            g(&self.tcp_read_pauses),
            g(&self.tcp_accept_errors),
            g(&self.tcp_messages),
            g(&self.tls_handshakes),
            g(&self.tls_handshake_failures),
            g(&self.tls_errors)
        )
    }
}

use sip::{ALLOW, SERVER};

/// What [`answer`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `out` holds the answer for the source.
    Reply,
    /// Nothing to send.
    Nothing,
    /// A call-related request or a response: the proxy's business.
    Proxy,
}

/// Decides the answer to one datagram from `source`; writes it into `out` for
/// [`Decision::Reply`]. REGISTER goes to `registrar` (501 without one); with `proxy` on,
/// calls and responses are left to the proxy.
pub fn answer(
    datagram: &[u8],
    source: SocketAddr,
    tag_seq: u64,
    counters: &Counters,
    registrar: Option<&Mutex<Registrar>>,
    proxy: bool,
    out: &mut Vec<u8>,
) -> Decision {
    out.clear();
    if datagram.iter().all(|&b| b == b'\r' || b == b'\n') {
        counters.keepalives.fetch_add(1, Ordering::Relaxed);
        return Decision::Nothing;
    }
    let msg = match Message::parse(datagram) {
        Ok(m) => m,
        Err(e) if malformed(datagram, e, counters, out) => return Decision::Reply,
        Err(_) => return Decision::Nothing,
    };
    let Some(method) = msg.method() else {
        if proxy {
            return Decision::Proxy; // a response: the proxy routes it back
        }
        counters.absorbed.fetch_add(1, Ordering::Relaxed);
        return Decision::Nothing;
    };
    let mut tag_buf = [0u8; 16];
    let tag = hex_tag(tag_seq, &mut tag_buf);
    let reject = |code, reason: &'static [u8]| {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        ResponseBuilder::new(&msg, code, reason)
            .to_tag(tag)
            .header(HeaderName::Server, SERVER)
    };
    match method {
        Method::Ack if proxy => return Decision::Proxy,
        Method::Ack => {
            counters.absorbed.fetch_add(1, Ordering::Relaxed);
            return Decision::Nothing;
        }
        _ if !matches!(
            msg.request_uri().map(|u| u.scheme),
            Some(Scheme::Sip | Scheme::Sips | Scheme::Tel)
        ) =>
        {
            reject(416, b"Unsupported URI Scheme").write(out);
        }
        // A proxy does not look at Require on what it forwards (RFC 3261 §16.3).
        _ if msg.header(HeaderName::Require).is_some()
            && (!proxy || matches!(method, Method::Register | Method::Options)) =>
        {
            // No extension is supported yet: list every required tag as unsupported.
            let req = msg.header(HeaderName::Require).unwrap_or_default();
            reject(420, b"Bad Extension")
                .header(HeaderName::Unsupported, req)
                .write(out);
        }
        Method::Options => {
            counters.options_ok.fetch_add(1, Ordering::Relaxed);
            ResponseBuilder::new(&msg, 200, b"OK")
                .to_tag(tag)
                .header(HeaderName::Allow, ALLOW)
                .header(HeaderName::Accept, b"application/sdp")
                .header(HeaderName::Server, SERVER)
                .write(out);
        }
        Method::Register if registrar.is_some() => {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            if let Some(Ok(mut r)) = registrar.map(Mutex::lock) {
                r.handle(&msg, source, now, tag, out);
            } else {
                // A poisoned registrar (a panic elsewhere): say so rather than hang.
                reject(500, b"Registrar Unavailable").write(out);
            }
        }
        _ if proxy => return Decision::Proxy,
        Method::Cancel => reject(481, b"Call/Transaction Does Not Exist").write(out),
        _ => reject(501, b"Not Implemented")
            .header(HeaderName::Allow, ALLOW)
            .write(out),
    }
    Decision::Reply
}

fn malformed(datagram: &[u8], e: ParseError, counters: &Counters, out: &mut Vec<u8>) -> bool {
    let mut reason = [0u8; 96];
    let text = e.to_string();
    let n = text.len().min(reason.len());
    reason[..n].copy_from_slice(&text.as_bytes()[..n]);
    // Reason-Phrase must not contain CR/LF; the error texts never do.
    if error_response_for_unparsed(datagram, e.status_code(), &reason[..n], out) {
        counters.malformed_answered.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        counters.malformed_dropped.fetch_add(1, Ordering::Relaxed);
        false
    }
}

fn hex_tag(seq: u64, buf: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Mix so consecutive tags don't look sequential to peers.
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5452_554e_4b4c_494e;
    for b in buf.iter_mut() {
        *b = HEX[(x & 0xf) as usize];
        x >>= 4;
    }
    &buf[..]
}

/// Where the live TCP (or TLS) connection to a peer address is: the TCP or TLS listener
/// (lane) that owns
/// it and the connection's peer address (an alias maps a registered contact's address to
/// the connection its REGISTER came over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index of the TCP listener thread.
    pub lane: usize,
    /// The connection's peer address.
    pub peer: SocketAddr,
}

/// The way into one TCP or TLS listener thread from the others.
#[derive(Debug)]
pub struct Lane {
    /// (connection peer, bytes) to write on that connection.
    pub tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    /// Wakes the thread's poll.
    pub waker: Arc<mio::Waker>,
    /// The listener's address (the Via of requests the proxy sends over its connections).
    pub local: SocketAddr,
    /// A TLS listener: that Via names `SIP/2.0/TLS`.
    pub tls: bool,
}

/// Sends what the proxy and registrar produce: over the live TCP connection to the address
/// if there is one (RFC 3261 §18.2.2: responses go back on the connection the request came
/// in on), else over UDP.
#[derive(Debug, Default)]
pub struct Router {
    /// The first UDP listener's socket: UDP output of threads that have no socket of their own.
    pub udp: Option<UdpSocket>,
    /// Live TCP connections (and aliases) by address.
    pub conns: Mutex<HashMap<SocketAddr, Route>>,
    /// One per TCP listener.
    pub lanes: Vec<Lane>,
}

impl Router {
    /// The TCP connection for `addr`, if one is live.
    pub fn route(&self, addr: SocketAddr) -> Option<Route> {
        self.conns.lock().ok().and_then(|m| m.get(&addr).copied())
    }

    /// Records a live connection (or an alias for one).
    pub fn add(&self, addr: SocketAddr, route: Route) {
        if let Ok(mut m) = self.conns.lock() {
            m.insert(addr, route);
        }
    }

    /// Forgets `addr` if it still names the connection to `peer`.
    pub fn remove(&self, addr: SocketAddr, peer: SocketAddr) {
        if let Ok(mut m) = self.conns.lock() {
            if m.get(&addr).is_some_and(|r| r.peer == peer) {
                m.remove(&addr);
            }
        }
    }

    /// A request of ours leaving over TCP names TCP (TLS on a TLS listener's connection) and
    /// the listener in its Via (the proxy writes a UDP Via; RFC 3261 §18.1.1: the Via names
    /// the transport used).
    fn tcp_via(&self, bytes: Vec<u8>, lane: usize) -> Vec<u8> {
        let (Some(l), Some(udp)) = (
            self.lanes.get(lane),
            self.udp.as_ref().and_then(|u| u.local_addr().ok()),
        ) else {
            return bytes;
        };
        if bytes.starts_with(b"SIP/2.0 ") {
            return bytes;
        }
        let Ok(msg) = Message::parse(&bytes) else {
            return bytes;
        };
        let via = msg.top_via();
        let ours = via.transport.eq_ignore_ascii_case(b"UDP")
            && via.port == Some(udp.port())
            && std::str::from_utf8(via.host.text)
                .ok()
                .and_then(|h| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
                == Some(udp.ip());
        let Some(branch) = via.branch().filter(|_| ours) else {
            return bytes;
        };
        let new_via = format!(
            "SIP/2.0/{} {};branch={}",
            if l.tls { "TLS" } else { "TCP" },
            l.local,
            String::from_utf8_lossy(branch)
        );
        let mut ed = sip::edit::Editor::new(&msg);
        if ed.pop_via().is_err() {
            return bytes;
        }
        ed.push_via(new_via.as_bytes());
        let mut out = Vec::with_capacity(bytes.len() + 8);
        match ed.write(&mut out) {
            Ok(()) => out,
            Err(_) => bytes,
        }
    }

    /// Hands `bytes` to the TCP listener thread owning `route`.
    pub fn send_lane(&self, route: Route, bytes: Vec<u8>, counters: &Counters) {
        let ok = self
            .lanes
            .get(route.lane)
            .is_some_and(|l| l.tx.send((route.peer, bytes)).is_ok() && l.waker.wake().is_ok());
        if !ok {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends `bytes` to `to`: TCP when a connection is live, else UDP through `udp` (the
    /// calling thread's socket) or the first UDP listener's.
    pub fn send(
        &self,
        to: SocketAddr,
        bytes: Vec<u8>,
        udp: Option<&UdpSocket>,
        counters: &Counters,
    ) {
        if let Some(r) = self.route(to) {
            let bytes = self.tcp_via(bytes, r.lane);
            return self.send_lane(r, bytes, counters);
        }
        match udp.or(self.udp.as_ref()) {
            Some(s) if s.send_to(&bytes, to).is_ok() => {}
            // No UDP listener (a TCP-only configuration) or a send error.
            _ => {
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What all listener threads share.
#[derive(Debug)]
pub struct Shared {
    /// Counters.
    pub counters: Arc<Counters>,
    /// The registrar.
    pub registrar: Option<Arc<Mutex<Registrar>>>,
    /// The proxy (None: calls get 501).
    pub calls: Option<Arc<Mutex<Calls>>>,
    /// Where output goes.
    pub router: Router,
    /// Sequence for To tags, unique across threads.
    seq: AtomicU64,
}

impl Shared {
    /// Shares these among the listener threads.
    pub fn new(
        counters: Arc<Counters>,
        registrar: Option<Arc<Mutex<Registrar>>>,
        calls: Option<Arc<Mutex<Calls>>>,
        router: Router,
    ) -> Shared {
        Shared {
            counters,
            registrar,
            calls,
            router,
            seq: AtomicU64::new(0),
        }
    }

    /// Handles one message from `from`, whatever its transport. Returns true when `reply`
    /// holds the answer for `from` (to go back the way the message came); what the proxy
    /// sends elsewhere (or to `from` too) is appended to `sends`.
    pub fn handle(
        &self,
        message: &[u8],
        from: SocketAddr,
        reply: &mut Vec<u8>,
        sends: &mut Out,
    ) -> bool {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        match answer(
            message,
            from,
            seq,
            &self.counters,
            self.registrar.as_deref(),
            self.calls.is_some(),
            reply,
        ) {
            Decision::Reply => true,
            Decision::Nothing => false,
            Decision::Proxy => {
                if let (Some(c), Some(r)) = (self.calls.as_deref(), self.registrar.as_deref()) {
                    // The lock is held for this one message only.
                    if let Ok(mut c) = c.lock() {
                        sends.extend(c.handle(message, from, seq, r));
                    }
                }
                false
            }
        }
    }
}

impl Shared {
    /// Runs the proxy's timers (INVITE retransmissions, failover, ring timeouts, gateway
    /// probes) and sends what they produce.
    pub fn tick(&self) {
        let Some(c) = self.calls.as_deref() else {
            return;
        };
        let sends = match c.lock() {
            Ok(mut c) => c.tick(),
            Err(_) => return,
        };
        for (to, bytes) in sends {
            self.router.send(to, bytes, None, &self.counters);
        }
    }
}

/// Serves one UDP socket until `stop` is set.
pub fn serve_udp(
    sock: UdpSocket,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    let mut sends = Out::new();
    let counters = &shared.counters;
    while !stop.load(Ordering::Relaxed) {
        let (n, from): (usize, SocketAddr) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ICMP port unreachable from an earlier send surfaces here on Linux; not fatal.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        // Responses go back to the source address and port (RFC 3581 symmetric response
        // routing): correct behind NAT and for every loopback peer.
        if shared.handle(&buf[..n], from, &mut out, &mut sends) && sock.send_to(&out, from).is_err()
        {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
        }
        for (to, bytes) in sends.drain(..) {
            shared.router.send(to, bytes, Some(&sock), counters);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../tests/fixtures/rfc4475/{name}.dat",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn status(bytes: &[u8]) -> Option<u16> {
        let c = Counters::default();
        let mut out = Vec::new();
        // Read the status line directly: a 505 copies the peer's SIP/7.0 Via, which our own
        // parser rightly refuses.
        let from = SocketAddr::from(([127, 0, 0, 1], 5060));
        (answer(bytes, from, 1, &c, None, false, &mut out) == Decision::Reply).then(|| {
            assert!(
                out.starts_with(b"SIP/2.0 "),
                "{}",
                String::from_utf8_lossy(&out)
            );
            std::str::from_utf8(&out[8..11]).unwrap().parse().unwrap()
        })
    }

    #[test]
    fn rfc4475_application_layer_answers() {
        assert_eq!(status(&fixture("unkscm")), Some(416));
        assert_eq!(status(&fixture("novelsc")), Some(416));
        assert_eq!(status(&fixture("bext01")), Some(420));
        assert_eq!(status(&fixture("zeromf")), Some(200));
        assert_eq!(status(&fixture("badvers")), Some(505));
        assert_eq!(status(&fixture("ncl")), Some(400));
        // RFC 4475 §3.3.1: ideally answered 400 even without Call-ID/From/To (Via routes it).
        assert_eq!(status(&fixture("insuf")), Some(400));
        assert_eq!(
            status(&fixture("bigcode")),
            None,
            "responses are never answered"
        );
        assert_eq!(status(&fixture("inv2543")), Some(501));
    }
}
