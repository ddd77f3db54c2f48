//! The proxy, sans-IO: forking and response aggregation, serial failover on failure and on
//! silence, INVITE retransmission, CANCEL, DIDs, outbound routes with number translation,
//! caller authentication (407), the tenant header, and gateway health probing.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use controlplane::proxy::{AuthPolicy, Out, Proxy};
use controlplane::registrar::{Registrar, RegistrarConfig, Tenant};
use controlplane::routing::{
    Algorithm, Did, Dispatcher, Gateway, Route, RouteTarget, Router, RoutingConfig, Timing,
    Translation,
};
use controlplane::store::StoredBinding;
use sip::digest::{self, Challenge, Credential};
use sip::edit::ResponseBuilder;
use sip::{HeaderName, Message};

const UNIX: u64 = 1_800_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn me() -> SocketAddr {
    addr("127.0.0.1:5060")
}

fn caller() -> SocketAddr {
    addr("127.0.0.1:6000")
}

fn registrar() -> Registrar {
    let cfg = RegistrarConfig {
        secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        algorithms: vec![digest::Algorithm::Md5],
        ..RegistrarConfig::default()
    };
    let t = Tenant {
        domain: "demo.example".into(),
        aliases: vec!["127.0.0.1".into()],
        subscribers: HashMap::from([
            ("alice".to_string(), "alice-secret".to_string()),
            ("bob".to_string(), "bob-secret".to_string()),
        ]),
    };
    let mut r = Registrar::new(cfg, vec![t], None, Duration::from_secs(UNIX)).unwrap();
    // bob has two phones; alice one.
    let b = |user: &str, port: u16| StoredBinding {
        aor: format!("{user}@demo.example"),
        contact: format!("sip:{user}@127.0.0.1:{port}"),
        expires_at: UNIX + 3600,
        call_id: format!("reg-{port}"),
        cseq: 1,
        q_millis: 1000,
        received: format!("127.0.0.1:{port}"),
        user_agent: "test".into(),
    };
    assert_eq!(
        r.restore(vec![b("bob", 7001), b("bob", 7002), b("alice", 7100)], UNIX),
        3
    );
    r
}

fn gw(name: &str, port: u16, probe: bool) -> Gateway {
    Gateway {
        name: name.into(),
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        probe,
    }
}

fn routing() -> RoutingConfig {
    RoutingConfig {
        gateways: vec![
            gw("gw-a", 8001, false),
            gw("gw-b", 8002, false),
            gw("fs1", 8101, true),
        ],
        dispatchers: vec![Dispatcher {
            name: "features".into(),
            gateways: vec!["fs1".into()],
            algorithm: Algorithm::RoundRobin,
        }],
        routes: vec![
            Route {
                tenant: None,
                prefix: "44".into(),
                target: RouteTarget::Gateways(vec!["gw-a".into(), "gw-b".into()]),
                translation: Translation {
                    strip: 2,
                    prepend: "0".into(),
                    replace: None,
                },
            },
            Route {
                tenant: None,
                prefix: "*".into(),
                target: RouteTarget::Dispatcher("features".into()),
                translation: Translation::default(),
            },
        ],
        dids: vec![Did {
            number: "15550100".into(),
            tenant: "demo.example".into(),
            user: "alice".into(),
        }],
        tenant_header: Some("X-Tenant".into()),
        timing: Timing {
            probe_interval: Duration::from_secs(5),
            probe_threshold: 2,
            failover_timeout: Duration::from_secs(2),
            ring_timeout: Duration::from_secs(60),
        },
    }
}

fn proxy(auth: AuthPolicy) -> Proxy {
    let cfg = routing();
    cfg.validate().unwrap();
    Proxy::with_routing(me(), Router::new(cfg).shared(), auth)
}

fn invite(to_user: &str, call_id: &str, extra: &str) -> Vec<u8> {
    format!(
        "INVITE sip:{to_user}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@demo.example>;tag=caller1\r\n\
         To: <sip:{to_user}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:6000>\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

struct Harness {
    p: Proxy,
    r: Registrar,
    now: Instant,
}

impl Harness {
    fn new(auth: AuthPolicy) -> Harness {
        Harness {
            p: proxy(auth),
            r: registrar(),
            now: Instant::now(),
        }
    }

    fn request(&mut self, bytes: &[u8], from: SocketAddr) -> Out {
        let m = Message::parse(bytes).unwrap();
        self.p
            .on_request(&m, from, &mut self.r, None, self.now, UNIX, b"ptag")
    }

    fn response(&mut self, bytes: &[u8], from: SocketAddr) -> Out {
        let m = Message::parse(bytes).unwrap();
        self.p.on_response(&m, from, None, self.now)
    }

    fn advance(&mut self, d: Duration) -> Out {
        self.now += d;
        self.p.tick(self.now, None)
    }
}

/// The response a downstream UA sends to a request we forwarded.
fn answer(req: &[u8], code: u16, tag: &str) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut out = Vec::new();
    ResponseBuilder::new(&m, code, b"X")
        .to_tag(tag.as_bytes())
        .write(&mut out);
    out
}

fn status(b: &[u8]) -> Option<u16> {
    Message::parse(b).unwrap().status()
}

fn method(b: &[u8]) -> String {
    let m = Message::parse(b).unwrap();
    String::from_utf8_lossy(m.method().map(|m| m.as_bytes()).unwrap_or(b"")).into_owned()
}

fn ruri(b: &[u8]) -> String {
    let m = Message::parse(b).unwrap();
    String::from_utf8_lossy(m.request_uri().unwrap().as_bytes()).into_owned()
}

/// The sent messages to `to`.
fn to(out: &Out, dest: SocketAddr) -> Vec<Vec<u8>> {
    out.iter()
        .filter(|(a, _)| *a == dest)
        .map(|(_, b)| b.clone())
        .collect()
}

#[test]
fn forks_to_every_contact_first_answer_wins_and_cancels_the_rest() {
    let mut h = Harness::new(AuthPolicy::Outbound);
    let out = h.request(&invite("bob", "fork1", ""), caller());
    assert_eq!(status(&to(&out, caller())[0]), Some(100));
    let p1 = to(&out, addr("127.0.0.1:7001"));
    let p2 = to(&out, addr("127.0.0.1:7002"));
    assert_eq!((p1.len(), p2.len()), (1, 1), "both phones get the INVITE");
    assert_eq!(ruri(&p1[0]), "sip:bob@127.0.0.1:7001");
    assert_eq!(ruri(&p2[0]), "sip:bob@127.0.0.1:7002");
    // Phone 1 rings: the caller hears it.
    let out = h.response(&answer(&p1[0], 180, "ph1"), addr("127.0.0.1:7001"));
    assert_eq!(status(&to(&out, caller())[0]), Some(180));
    // Phone 2 answers: forwarded, phone 1 is cancelled.
    let out = h.response(&answer(&p2[0], 200, "ph2"), addr("127.0.0.1:7002"));
    assert_eq!(status(&to(&out, caller())[0]), Some(200));
    let c = to(&out, addr("127.0.0.1:7001"));
    assert_eq!(method(&c[0]), "CANCEL");
    // Phone 1's 487 is ACKed and not forwarded.
    let out = h.response(&answer(&p1[0], 487, "ph1"), addr("127.0.0.1:7001"));
    assert!(to(&out, caller()).is_empty());
    assert_eq!(method(&to(&out, addr("127.0.0.1:7001"))[0]), "ACK");
    // The caller's BYE goes to the phone that answered.
    let bye = "BYE sip:bob@127.0.0.1:7002 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-bye1\r\n\
               Max-Forwards: 70\r\nFrom: <sip:alice@demo.example>;tag=caller1\r\nTo: <sip:bob@127.0.0.1>;tag=ph2\r\n\
               Call-ID: fork1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let out = h.request(bye.as_bytes(), caller());
    assert_eq!(to(&out, addr("127.0.0.1:7002")).len(), 1);
    let s = h.p.stats();
    assert_eq!(
        (s.calls, s.answered, s.branches, s.cancels_sent),
        (1, 1, 2, 1)
    );
}

#[test]
fn all_branches_fail_the_best_response_wins_and_503_becomes_500() {
    let mut h = Harness::new(AuthPolicy::Outbound);
    let out = h.request(&invite("bob", "fork2", ""), caller());
    let p1 = to(&out, addr("127.0.0.1:7001"));
    let p2 = to(&out, addr("127.0.0.1:7002"));
    let out = h.response(&answer(&p1[0], 503, "a"), addr("127.0.0.1:7001"));
    assert!(to(&out, caller()).is_empty(), "waits for the other branch");
    let out = h.response(&answer(&p2[0], 486, "b"), addr("127.0.0.1:7002"));
    assert_eq!(status(&to(&out, caller())[0]), Some(486), "4xx beats 5xx");

    let out = h.request(&invite("bob", "fork3", ""), caller());
    let p1 = to(&out, addr("127.0.0.1:7001"));
    let p2 = to(&out, addr("127.0.0.1:7002"));
    h.response(&answer(&p1[0], 503, "a"), addr("127.0.0.1:7001"));
    let out = h.response(&answer(&p2[0], 503, "b"), addr("127.0.0.1:7002"));
    assert_eq!(
        status(&to(&out, caller())[0]),
        Some(500),
        "RFC 3261 16.7 step 6"
    );

    // A 6xx ends the search at once and cancels the ringing branch.
    let out = h.request(&invite("bob", "fork4", ""), caller());
    let p1 = to(&out, addr("127.0.0.1:7001"));
    let p2 = to(&out, addr("127.0.0.1:7002"));
    h.response(&answer(&p1[0], 180, "a"), addr("127.0.0.1:7001"));
    let out = h.response(&answer(&p2[0], 603, "b"), addr("127.0.0.1:7002"));
    assert_eq!(status(&to(&out, caller())[0]), Some(603));
    assert_eq!(method(&to(&out, addr("127.0.0.1:7001"))[0]), "CANCEL");
}

#[test]
fn outbound_needs_authentication_then_fails_over_with_translation_and_tenant_header() {
    let mut h = Harness::new(AuthPolicy::Outbound);
    let inv = invite("+44-20-7946-0000", "out1", "X-Tenant: forged\r\n");
    let out = h.request(&inv, caller());
    let r = &to(&out, caller())[0];
    assert_eq!(status(r), Some(407));
    let resp = Message::parse(r).unwrap();
    let ch = resp.header(HeaderName::ProxyAuthenticate).unwrap();
    let Challenge::Digest(view) = digest::parse_challenge(ch).unwrap() else {
        panic!()
    };
    let creds = digest::respond(
        &view,
        &digest::Request {
            method: b"INVITE",
            uri: b"sip:+44-20-7946-0000@127.0.0.1",
            body: b"",
        },
        b"alice",
        Credential::Password(b"alice-secret"),
        b"abcdef",
        1,
    )
    .unwrap();
    // A wrong password is refused.
    let bad = digest::respond(
        &view,
        &digest::Request {
            method: b"INVITE",
            uri: b"sip:+44-20-7946-0000@127.0.0.1",
            body: b"",
        },
        b"alice",
        Credential::Password(b"guess"),
        b"abcdef",
        1,
    )
    .unwrap();
    let out = h.request(
        &invite(
            "+44-20-7946-0000",
            "out0",
            &format!("Proxy-Authorization: {bad}\r\n"),
        ),
        caller(),
    );
    assert_eq!(status(&to(&out, caller())[0]), Some(403));

    let inv = invite(
        "+44-20-7946-0000",
        "out1",
        &format!("Proxy-Authorization: {creds}\r\nX-Tenant: forged\r\n"),
    );
    let out = h.request(&inv, caller());
    assert_eq!(status(&to(&out, caller())[0]), Some(100));
    let a = to(&out, addr("127.0.0.1:8001"));
    assert_eq!(a.len(), 1, "primary gateway first");
    assert_eq!(
        ruri(&a[0]),
        "sip:02079460000@127.0.0.1:8001",
        "strip 2, prepend 0"
    );
    let fwd = Message::parse(&a[0]).unwrap();
    assert!(
        fwd.header(HeaderName::ProxyAuthorization).is_none(),
        "credentials consumed"
    );
    let tenants: Vec<&[u8]> = fwd
        .headers()
        .iter()
        .filter(|x| fwd.raw_name(x).eq_ignore_ascii_case(b"X-Tenant"))
        .map(|x| fwd.value(x))
        .collect();
    assert_eq!(tenants, [&b"demo.example"[..]], "forged header replaced");
    assert!(to(&out, addr("127.0.0.1:8002")).is_empty(), "backup waits");
    // The primary is overloaded: ACKed, the backup is tried.
    let out = h.response(&answer(&a[0], 503, "gwa"), addr("127.0.0.1:8001"));
    assert_eq!(method(&to(&out, addr("127.0.0.1:8001"))[0]), "ACK");
    assert!(to(&out, caller()).is_empty());
    let b = to(&out, addr("127.0.0.1:8002"));
    assert_eq!(ruri(&b[0]), "sip:02079460000@127.0.0.1:8002");
    let out = h.response(&answer(&b[0], 200, "gwb"), addr("127.0.0.1:8002"));
    assert_eq!(status(&to(&out, caller())[0]), Some(200));
    let s = h.p.stats();
    assert_eq!((s.failovers, s.answered, s.challenges), (1, 1, 1));
}

#[test]
fn a_silent_gateway_is_retransmitted_to_then_skipped() {
    let mut h = Harness::new(AuthPolicy::None);
    let out = h.request(&invite("4420", "silent", ""), caller());
    let a = to(&out, addr("127.0.0.1:8001"));
    assert_eq!(a.len(), 1);
    let out = h.advance(Duration::from_millis(600));
    assert_eq!(
        to(&out, addr("127.0.0.1:8001")),
        a,
        "timer A retransmission"
    );
    let out = h.advance(Duration::from_millis(1500));
    let b = to(&out, addr("127.0.0.1:8002"));
    assert_eq!(b.len(), 1, "failover after 2 s of silence");
    // The backup never answers either: 408 to the caller.
    let mut last = Out::new();
    for _ in 0..30 {
        last = h.advance(Duration::from_millis(100));
        if !to(&last, caller()).is_empty() {
            break;
        }
    }
    assert_eq!(status(&to(&last, caller())[0]), Some(408));
    let s = h.p.stats();
    assert_eq!((s.timeouts, s.failovers, s.failed), (2, 1, 1));
    assert!(s.retransmissions >= 2);
}

#[test]
fn cancel_reaches_ringing_branches_and_the_caller_gets_487() {
    let mut h = Harness::new(AuthPolicy::Outbound);
    let out = h.request(&invite("bob", "can1", ""), caller());
    let p1 = to(&out, addr("127.0.0.1:7001"));
    let p2 = to(&out, addr("127.0.0.1:7002"));
    h.response(&answer(&p1[0], 180, "a"), addr("127.0.0.1:7001"));
    let cancel = "CANCEL sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-can1\r\n\
                  Max-Forwards: 70\r\nFrom: <sip:alice@demo.example>;tag=caller1\r\nTo: <sip:bob@127.0.0.1>\r\n\
                  Call-ID: can1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    let out = h.request(cancel.as_bytes(), caller());
    assert_eq!(status(&to(&out, caller())[0]), Some(200));
    assert_eq!(method(&to(&out, addr("127.0.0.1:7001"))[0]), "CANCEL");
    assert!(
        to(&out, addr("127.0.0.1:7002")).is_empty(),
        "not before it rings"
    );
    // Phone 2 rings late: cancelled then.
    let out = h.response(&answer(&p2[0], 180, "b"), addr("127.0.0.1:7002"));
    assert_eq!(method(&to(&out, addr("127.0.0.1:7002"))[0]), "CANCEL");
    h.response(&answer(&p1[0], 487, "a"), addr("127.0.0.1:7001"));
    let out = h.response(&answer(&p2[0], 487, "b"), addr("127.0.0.1:7002"));
    assert_eq!(status(&to(&out, caller())[0]), Some(487));
}

#[test]
fn did_reaches_its_subscriber_and_unknown_numbers_are_404() {
    let mut h = Harness::new(AuthPolicy::Outbound);
    let out = h.request(&invite("+1-555-0100", "did1", ""), addr("127.0.0.1:8001"));
    assert_eq!(to(&out, addr("127.0.0.1:7100")).len(), 1, "alice's phone");
    // A gateway cannot transit to another gateway.
    let out = h.request(&invite("4499", "did2", ""), addr("127.0.0.1:8001"));
    assert_eq!(status(&to(&out, addr("127.0.0.1:8001"))[0]), Some(404));
    let out = h.request(&invite("carol", "nf", ""), caller());
    assert_eq!(status(&to(&out, caller())[0]), Some(404));
}

#[test]
fn probing_disables_a_silent_gateway_and_enables_it_when_it_answers() {
    let mut h = Harness::new(AuthPolicy::None);
    let fs = addr("127.0.0.1:8101");
    let out = h.advance(Duration::from_millis(10));
    let probe = to(&out, fs);
    assert_eq!(method(&probe[0]), "OPTIONS");
    // Two intervals without an answer: down.
    h.advance(Duration::from_secs(5));
    h.advance(Duration::from_secs(5));
    assert!(!h.p.router().health()[2].1.up);
    let out = h.request(&invite("*97", "fsdown", ""), caller());
    let r = &to(&out, caller())[0];
    assert_eq!(status(r), Some(503));
    assert!(Message::parse(r)
        .unwrap()
        .header(HeaderName::RetryAfter)
        .is_some());
    // It answers the next probe: up again, and calls reach it.
    let out = h.advance(Duration::from_secs(5));
    let probe = to(&out, fs);
    h.response(&answer(&probe[0], 200, "fs"), fs);
    assert!(h.p.router().health()[2].1.up);
    assert_eq!(h.p.take_health_changes().len(), 2);
    let out = h.request(&invite("*97", "fsup", ""), caller());
    assert_eq!(to(&out, fs).len(), 1);
    let s = h.p.stats();
    assert_eq!((s.gateways_down, s.gateways_up), (1, 1));
}

/// A media plane that anchors every call as session 7 and reports it dead on demand.
#[derive(Default)]
struct FakeMedia {
    dead: Vec<u64>,
    deleted: Vec<u64>,
    /// (leg, hold, remote) of every update.
    updates: Vec<(char, bool, Option<SocketAddr>)>,
}

impl controlplane::proxy::MediaAnchor for FakeMedia {
    fn create(
        &mut self,
        _: &controlplane::proxy::LegMedia,
    ) -> Result<controlplane::proxy::Anchor, String> {
        Ok(controlplane::proxy::Anchor {
            id: 7,
            addr: "127.0.0.1".parse().unwrap(),
            port_a: 20_000,
            port_b: 20_002,
        })
    }
    fn set_callee(&mut self, _: u64, b: &controlplane::proxy::LegMedia) -> Result<(), String> {
        self.updates.push(('b', b.hold, b.remote));
        Ok(())
    }
    fn set_caller(&mut self, _: u64, a: &controlplane::proxy::LegMedia) -> Result<(), String> {
        self.updates.push(('a', a.hold, a.remote));
        Ok(())
    }
    fn delete(&mut self, id: u64) {
        self.deleted.push(id);
    }
    fn timed_out(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.dead)
    }
}

#[test]
fn dead_media_ends_an_answered_call_with_a_bye_to_each_party() {
    let mut p = proxy(AuthPolicy::Outbound);
    let mut r = registrar();
    let mut m = FakeMedia::default();
    let now = Instant::now();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let inv = String::from_utf8(invite("alice", "md1", "Content-Type: application/sdp\r\n"))
        .unwrap()
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()),
        );
    let msg = Message::parse(inv.as_bytes()).unwrap();
    let out = p.on_request(&msg, caller(), &mut r, Some(&mut m), now, UNIX, b"t");
    let fwd = to(&out, addr("127.0.0.1:7100"));
    // The callee answers with its Contact.
    let m2 = Message::parse(&fwd[0]).unwrap();
    let mut ok = Vec::new();
    ResponseBuilder::new(&m2, 200, b"OK")
        .to_tag(b"callee9")
        .header(HeaderName::Contact, b"<sip:alice@127.0.0.1:7100>")
        .write(&mut ok);
    let resp = Message::parse(&ok).unwrap();
    p.on_response(&resp, addr("127.0.0.1:7100"), Some(&mut m), now);
    // Media dies.
    m.dead.push(7);
    let out = p.tick(now + Duration::from_millis(60), Some(&mut m));
    let to_callee = to(&out, addr("127.0.0.1:7100"));
    let to_caller = to(&out, caller());
    assert_eq!((to_callee.len(), to_caller.len()), (1, 1));
    let b = Message::parse(&to_callee[0]).unwrap();
    assert_eq!(method(&to_callee[0]), "BYE");
    assert_eq!(ruri(&to_callee[0]), "sip:alice@127.0.0.1:7100");
    assert_eq!(b.from_tag(), Some(&b"caller1"[..]));
    assert_eq!(b.to_tag(), Some(&b"callee9"[..]));
    assert_eq!(b.cseq().seq, 2);
    let c = Message::parse(&to_caller[0]).unwrap();
    assert_eq!(
        ruri(&to_caller[0]),
        "sip:alice@127.0.0.1:6000",
        "the caller's Contact"
    );
    assert_eq!(c.from_tag(), Some(&b"callee9"[..]));
    assert_eq!(c.to_tag(), Some(&b"caller1"[..]));
    assert_eq!(m.deleted, [7]);
    // Their 200s end here.
    let ok = answer(&to_caller[0], 200, "caller1");
    assert!(p
        .on_response(&Message::parse(&ok).unwrap(), caller(), None, now)
        .is_empty());
    let s = p.stats();
    assert_eq!((s.media_timeouts, s.ended, s.stray), (1, 1, 0));
}

fn with_sdp(req: &str, sdp: &str) -> Vec<u8> {
    req.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    )
    .into_bytes()
}

fn sdp(ip: &str, port: u16, dir: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{dir}"
    )
}

#[test]
fn re_invite_puts_the_callee_on_hold_and_takes_it_off_through_the_relay() {
    let mut p = proxy(AuthPolicy::Outbound);
    let mut r = registrar();
    let mut m = FakeMedia::default();
    let now = Instant::now();
    let inv = with_sdp(
        &String::from_utf8(invite("alice", "hold1", "")).unwrap(),
        &sdp("127.0.0.1", 40_000, ""),
    );
    let msg = Message::parse(&inv).unwrap();
    let out = p.on_request(&msg, caller(), &mut r, Some(&mut m), now, UNIX, b"t");
    let fwd = to(&out, addr("127.0.0.1:7100"));
    let m2 = Message::parse(&fwd[0]).unwrap();
    let body = sdp("127.0.0.1", 41_000, "");
    let mut ok = Vec::new();
    ResponseBuilder::new(&m2, 200, b"OK")
        .to_tag(b"cal")
        .header(HeaderName::Contact, b"<sip:alice@127.0.0.1:7100>")
        .body(b"application/sdp", body.as_bytes())
        .write(&mut ok);
    p.on_response(
        &Message::parse(&ok).unwrap(),
        addr("127.0.0.1:7100"),
        Some(&mut m),
        now,
    );
    m.updates.clear();
    // The caller holds: re-INVITE with a=sendonly, then c=0.0.0.0 (RFC 2543), then resumes.
    for (i, (ip, dir, hold, remote)) in [
        (
            "127.0.0.1",
            "a=sendonly\r\n",
            true,
            Some(addr("127.0.0.1:40000")),
        ),
        ("0.0.0.0", "", true, None),
        (
            "127.0.0.1",
            "a=sendrecv\r\n",
            false,
            Some(addr("127.0.0.1:40000")),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let cseq = 2 + i as u32;
        let reinv = format!(
            "INVITE sip:alice@127.0.0.1:7100 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-re{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@demo.example>;tag=caller1\r\nTo: <sip:alice@127.0.0.1>;tag=cal\r\n\
             Call-ID: hold1\r\nCSeq: {cseq} INVITE\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nContact: <sip:alice@127.0.0.1:6000>\r\nContent-Length: 0\r\n\r\n"
        );
        let reinv = with_sdp(&reinv, &sdp(ip, 40_000, dir));
        let msg = Message::parse(&reinv).unwrap();
        let out = p.on_request(&msg, caller(), &mut r, Some(&mut m), now, UNIX, b"t");
        let f = to(&out, addr("127.0.0.1:7100"));
        assert_eq!(f.len(), 1, "re-INVITE forwarded to the callee");
        let fm = Message::parse(&f[0]).unwrap();
        let text = String::from_utf8_lossy(fm.body()).into_owned();
        assert!(
            text.contains("c=IN IP4 127.0.0.1") && text.contains("m=audio 20002 "),
            "{text}"
        );
        assert!(fm.routes().next().is_none(), "our Route popped");
        assert_eq!(m.updates.last(), Some(&('a', hold, remote)), "step {i}");
    }
}

#[test]
fn message_reaches_the_subscriber_subscribe_gets_489_and_overload_gets_503() {
    let mut h = Harness::new(AuthPolicy::Outbound);
    let msg = "MESSAGE sip:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-m1\r\n\
               Max-Forwards: 70\r\nFrom: <sip:bob@demo.example>;tag=m1\r\nTo: <sip:alice@127.0.0.1>\r\n\
               Call-ID: msg1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    let out = h.request(msg.as_bytes(), caller());
    let f = to(&out, addr("127.0.0.1:7100"));
    assert_eq!(method(&f[0]), "MESSAGE");
    assert_eq!(Message::parse(&f[0]).unwrap().body(), b"hello");
    let out = h.response(&answer(&f[0], 200, "a"), addr("127.0.0.1:7100"));
    assert_eq!(status(&to(&out, caller())[0]), Some(200));
    let sub = msg
        .replace("MESSAGE", "SUBSCRIBE")
        .replace(
            "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
            "Event: presence\r\nContent-Length: 0\r\n\r\n",
        )
        .replace("msg1", "sub1");
    let out = h.request(sub.as_bytes(), caller());
    assert_eq!(status(&to(&out, caller())[0]), Some(489));

    h.p.set_max_calls(1);
    let out = h.request(&invite("bob", "ov1", ""), caller());
    assert_eq!(status(&to(&out, caller())[0]), Some(100));
    let out = h.request(&invite("bob", "ov2", ""), caller());
    let r = &to(&out, caller())[0];
    assert_eq!(status(r), Some(503));
    assert!(Message::parse(r)
        .unwrap()
        .header(HeaderName::RetryAfter)
        .is_some());
    let s = h.p.stats();
    assert_eq!((s.messages, s.bad_events, s.overload_refused), (1, 1, 1));
}

#[test]
fn a_preloaded_route_naming_the_proxy_is_removed() {
    let mut h = Harness::new(AuthPolicy::Outbound);
    let inv = invite(
        "alice",
        "pre1",
        "Route: <sip:127.0.0.1:5060;lr>\r\nRoute: <sip:192.0.2.9;lr>\r\n",
    );
    let out = h.request(&inv, caller());
    let f = to(&out, addr("192.0.2.9:5060"));
    let m = Message::parse(&f[0]).unwrap();
    let routes: Vec<String> = m
        .routes()
        .map(|r| String::from_utf8_lossy(r.uri.as_bytes()).into_owned())
        .collect();
    assert_eq!(routes, ["sip:192.0.2.9;lr"], "ours popped, the next kept");
    assert!(
        out.iter().any(|(a, _)| *a == addr("192.0.2.9:5060")),
        "sent to the next hop"
    );
    assert_eq!(
        ruri(&to(&out, addr("192.0.2.9:5060"))[0]),
        "sip:alice@127.0.0.1:7100"
    );
}

#[test]
fn the_sweep_forgets_ended_calls_and_abandons_unanswered_ones() {
    let mut p = proxy(AuthPolicy::Outbound);
    let mut r = registrar();
    let mut m = FakeMedia::default();
    let t0 = Instant::now();
    // An unanswered call with media, and a failed one.
    let inv = with_sdp(
        &String::from_utf8(invite("alice", "sw1", "")).unwrap(),
        &sdp("127.0.0.1", 40_000, ""),
    );
    p.on_request(
        &Message::parse(&inv).unwrap(),
        caller(),
        &mut r,
        Some(&mut m),
        t0,
        UNIX,
        b"t",
    );
    let out = p.on_request(
        &Message::parse(&invite("bob", "sw2", "")).unwrap(),
        caller(),
        &mut r,
        None,
        t0,
        UNIX,
        b"t",
    );
    for (dest, req) in &out {
        if *dest != caller() {
            p.on_response(
                &Message::parse(&answer(req, 486, "b")).unwrap(),
                *dest,
                None,
                t0,
            );
        }
    }
    assert_eq!(p.active_calls(), 1, "the failed call has ended");
    p.sweep(t0 + Duration::from_secs(70), &mut m);
    // The failed call is gone (a retransmitted INVITE would now be a new call); the
    // unanswered one stays until the pending TTL.
    let out = p.on_request(
        &Message::parse(&invite("bob", "sw2", "")).unwrap(),
        caller(),
        &mut r,
        None,
        t0 + Duration::from_secs(70),
        UNIX,
        b"t",
    );
    assert!(
        to(&out, addr("127.0.0.1:7001")).len() == 1,
        "sw2 was forgotten"
    );
    assert!(m.deleted.is_empty());
    p.sweep(t0 + Duration::from_secs(250), &mut m);
    assert_eq!(m.deleted, [7], "the abandoned call's media is freed");
}

#[test]
fn prack_follows_the_early_dialog_of_the_branch_that_sent_the_reliable_provisional() {
    let mut h = Harness::new(AuthPolicy::Outbound);
    let out = h.request(&invite("bob", "prack1", "Supported: 100rel\r\n"), caller());
    let p1 = to(&out, addr("127.0.0.1:7001"));
    let p2 = to(&out, addr("127.0.0.1:7002"));
    for (req, tag, from) in [
        (&p1[0], "e1", "127.0.0.1:7001"),
        (&p2[0], "e2", "127.0.0.1:7002"),
    ] {
        let m = Message::parse(req).unwrap();
        let mut r = Vec::new();
        ResponseBuilder::new(&m, 183, b"Session Progress")
            .to_tag(tag.as_bytes())
            .raw_header(b"Require: 100rel")
            .raw_header(b"RSeq: 1")
            .header(HeaderName::Contact, format!("<sip:bob@{from}>").as_bytes())
            .write(&mut r);
        let out = h.response(&r, addr(from));
        assert_eq!(status(&to(&out, caller())[0]), Some(183));
    }
    for (tag, dest) in [("e2", "127.0.0.1:7002"), ("e1", "127.0.0.1:7001")] {
        let prack = format!(
            "PRACK sip:bob@{dest} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-pr{tag}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@demo.example>;tag=caller1\r\nTo: <sip:bob@127.0.0.1>;tag={tag}\r\n\
             Call-ID: prack1\r\nCSeq: 2 PRACK\r\nRAck: 1 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let out = h.request(prack.as_bytes(), caller());
        let f = to(&out, addr(dest));
        assert_eq!(f.len(), 1, "PRACK for {tag} goes to {dest}");
        assert_eq!(method(&f[0]), "PRACK");
        let out = h.response(&answer(&f[0], 200, tag), addr(dest));
        assert_eq!(status(&to(&out, caller())[0]), Some(200));
    }
}
