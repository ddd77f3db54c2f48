//! Helpers shared by the fuzz targets and by `dataplane/sip/tests/fuzz_corpus_smoke.rs`
//! (which includes this file with `#[path]` so the stable-toolchain smoke test walks exactly
//! what the fuzzers walk).
//!
//! Every function here only reads: it calls each accessor of a parsed view and folds the
//! results into a checksum, so the optimiser cannot drop the calls and a panic anywhere in
//! an accessor surfaces as a fuzz crash.

use sip::digest::{
    parse_challenge, parse_credentials, respond, Challenge, ChallengeView, Challenger,
    ChallengerConfig, Credential, Credentials, Param, ParamValue, Request,
};
use sip::framing::{next_frame, Frame, FrameLimits};
use sip::header::{tokens, NameAddr};
use sip::sdp::{AttrKind, Direction, Sdp, SdpRewrite};
use sip::uri::Params;
use sip::{Contact, HeaderName, Message, StartLine, Uri, Via};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Every header name the crate knows, to drive `header_values` / `list_values`.
const NAMES: &[HeaderName] = &[
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::Contact,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Expires,
    HeaderName::Authorization,
    HeaderName::WwwAuthenticate,
    HeaderName::ProxyAuthenticate,
    HeaderName::ProxyAuthorization,
    HeaderName::Supported,
    HeaderName::Require,
    HeaderName::Allow,
    HeaderName::Date,
    HeaderName::ReferTo,
    HeaderName::PAssertedIdentity,
    HeaderName::Other,
];

fn fold(acc: &mut u64, bytes: &[u8]) {
    *acc = acc.rotate_left(5) ^ bytes.len() as u64;
    if let (Some(&a), Some(&b)) = (bytes.first(), bytes.last()) {
        *acc = acc.wrapping_add(u64::from(a) << 8 | u64::from(b));
    }
}

fn fold_opt(acc: &mut u64, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => fold(acc, b),
        None => *acc = acc.rotate_left(1),
    }
}

/// Walks a parameter list: iteration plus the lookups the proxy does.
pub fn exercise_params(acc: &mut u64, p: &Params<'_>) {
    fold(acc, p.as_bytes());
    *acc ^= u64::from(p.is_empty());
    for (n, v) in p.iter() {
        fold(acc, n);
        fold_opt(acc, v);
        // Looking a name up again must find a parameter (possibly an earlier duplicate).
        assert!(p.has(n), "Params::has misses a name its iterator yields");
    }
    for name in [
        &b"tag"[..],
        b"branch",
        b"lr",
        b"transport",
        b"expires",
        b"q",
        b"received",
    ] {
        fold_opt(acc, p.value(name));
        *acc ^= u64::from(p.has(name));
    }
}

/// Walks a URI: every field, its parameters, and the derived accessors.
pub fn exercise_uri(acc: &mut u64, u: &Uri<'_>) {
    fold(acc, u.as_bytes());
    fold_opt(acc, u.user);
    fold_opt(acc, u.password);
    if let Some(h) = &u.host {
        fold(acc, h.text);
        if let Some(ip) = h.ip() {
            *acc ^= u64::from(ip.is_loopback());
        }
    }
    *acc ^= u64::from(u.port.unwrap_or(0));
    fold(acc, u.headers);
    fold(acc, u.opaque);
    *acc ^= u64::from(u.is_sip()) ^ u64::from(u.is_loose_route());
    fold_opt(acc, u.transport());
    exercise_params(acc, &u.params);
    let _ = format!("{u:?}");
}

/// Walks a name-addr.
pub fn exercise_name_addr(acc: &mut u64, na: &NameAddr<'_>) {
    fold_opt(acc, na.display_name);
    exercise_uri(acc, &na.uri);
    exercise_params(acc, &na.params);
    fold_opt(acc, na.tag());
    *acc ^= u64::from(na.expires().unwrap_or(0));
    *acc ^= u64::from(na.q_millis().unwrap_or(0));
    *acc ^= u64::from(na.angle);
}

/// Walks a Via.
pub fn exercise_via(acc: &mut u64, v: &Via<'_>) {
    fold(acc, v.transport);
    fold(acc, v.host.text);
    let _ = v.host.ip();
    *acc ^= u64::from(v.port.unwrap_or(0));
    exercise_params(acc, &v.params);
    fold_opt(acc, v.branch());
    *acc ^= u64::from(v.has_rfc3261_branch());
    fold_opt(acc, v.received());
    if let Some(rport) = v.rport() {
        *acc ^= u64::from(rport.unwrap_or(1));
    }
    fold_opt(acc, v.maddr());
    *acc ^= u64::from(v.ttl().unwrap_or(0));
}

/// Calls every accessor and iterator of a parsed message and checks the invariants a caller
/// relies on (offsets inside the buffer, body length equal to Content-Length).
pub fn exercise_message(m: &Message<'_>) -> u64 {
    let mut acc = 0u64;
    let buf = m.buffer();
    fold(&mut acc, m.as_bytes());
    assert!(m.start_line_end() <= buf.len());
    assert!(m.start_line_end() <= m.head_end());
    assert!(m.head_end() <= m.body_offset());
    assert!(m.body_offset() <= buf.len());
    match m.start_line() {
        StartLine::Request { method, uri } => {
            fold(&mut acc, method.as_bytes());
            exercise_uri(&mut acc, uri);
            assert!(m.is_request());
            assert_eq!(m.method().map(|x| x.as_bytes()), Some(method.as_bytes()));
            assert!(m.request_uri().is_some() && m.status().is_none() && m.reason().is_none());
            let _ = method.to_string();
        }
        StartLine::Response { code, reason } => {
            assert!((100..=699).contains(code));
            fold(&mut acc, reason);
            assert!(!m.is_request() && m.method().is_none() && m.request_uri().is_none());
            assert_eq!(m.status(), Some(*code));
            fold_opt(&mut acc, m.reason());
        }
    }
    fold(&mut acc, m.cseq_method().as_bytes());
    fold(&mut acc, m.call_id());
    let cseq = m.cseq();
    acc ^= u64::from(cseq.seq);
    fold(&mut acc, cseq.method);
    exercise_name_addr(&mut acc, m.from());
    exercise_name_addr(&mut acc, m.to());
    fold_opt(&mut acc, m.from_tag());
    fold_opt(&mut acc, m.to_tag());
    exercise_via(&mut acc, m.top_via());
    acc ^= u64::from(m.max_forwards().unwrap_or(0));
    if let Some(cl) = m.content_length() {
        assert_eq!(
            cl as usize,
            m.body().len(),
            "body length differs from Content-Length"
        );
    }
    fold(&mut acc, m.body());

    for h in m.headers() {
        assert!(h.start <= h.name_end && h.name_end <= h.value_start);
        assert!(h.value_start <= h.value_end && h.value_end <= h.end);
        assert!(h.end as usize <= buf.len());
        fold(&mut acc, m.raw_name(h));
        fold(&mut acc, m.value(h));
        fold(&mut acc, h.name.as_str().as_bytes());
        acc ^= u64::from(h.name.compact().unwrap_or(0)) ^ u64::from(h.name.is_list());
        // Looking the line up by its written name must find some line's value.
        assert!(m.header_by_name(m.raw_name(h)).is_some());
    }
    for &name in NAMES {
        fold_opt(&mut acc, m.header(name));
        for v in m.header_values(name) {
            fold(&mut acc, v);
            for t in tokens(v) {
                fold(&mut acc, t);
            }
        }
        for v in m.list_values(name) {
            fold(&mut acc, v);
        }
        acc ^= u64::from(m.has_option_tag(name, b"100rel"));
    }
    fold_opt(&mut acc, m.header_by_name(b"X-Unknown-Header"));

    let mut n_vias = 0usize;
    for v in m.vias() {
        exercise_via(&mut acc, &v);
        n_vias += 1;
    }
    assert!(n_vias >= 1, "a parsed message yields no Via");
    for c in m.contacts() {
        match c {
            Contact::Star => acc ^= 0x2a,
            Contact::Addr(na) => exercise_name_addr(&mut acc, &na),
        }
    }
    for r in m.routes() {
        exercise_name_addr(&mut acc, &r);
    }
    for r in m.record_routes() {
        exercise_name_addr(&mut acc, &r);
    }
    acc ^= u64::from(m.expires().unwrap_or(0));
    match m.content_type() {
        Some(Ok(ct)) => {
            fold(&mut acc, ct.kind);
            fold(&mut acc, ct.subtype);
            exercise_params(&mut acc, &ct.params);
            acc ^= u64::from(ct.is_sdp());
        }
        Some(Err(e)) => acc ^= e.to_string().len() as u64,
        None => {}
    }
    // What a proxy does next with a parsed message: read the SDP body and the credentials.
    if !m.body().is_empty() {
        acc ^= sdp(m.body());
    }
    for name in [HeaderName::Authorization, HeaderName::ProxyAuthorization] {
        for v in m.header_values(name) {
            acc ^= credentials(v);
        }
    }
    for name in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
        for v in m.header_values(name) {
            acc ^= challenge(v);
        }
    }
    let _ = format!("{m:?}");
    acc
}

/// Parses `data` as one message and, when it parses, walks it. Errors must format and map
/// to a status code without panicking.
pub fn parse_message(data: &[u8]) -> u64 {
    match Message::parse(data) {
        Ok(m) => {
            assert!(m.as_bytes().len() <= data.len());
            exercise_message(&m)
        }
        Err(e) => {
            let code = e.status_code();
            assert!(code == 400 || code == 505 || code == 513);
            e.to_string().len() as u64 ^ u64::from(code)
        }
    }
}

// ---------------------------------------------------------------------------------------
// SDP

/// Parses `data` as SDP; when it parses, walks every accessor of every media section (and
/// one index past the end, which must answer "none", not panic), then rewrites it: with no
/// edits and with edits chosen from the input's bytes. Whatever the rewriter writes must
/// parse again.
pub fn sdp(data: &[u8]) -> u64 {
    let sdp = match Sdp::parse(data) {
        Ok(s) => s,
        Err(e) => return e.to_string().len() as u64 ^ e.line().unwrap_or(0) as u64,
    };
    let mut acc = 0u64;
    fold(&mut acc, sdp.as_bytes());
    acc ^= sdp.line_count() as u64;
    let o = sdp.origin();
    fold(&mut acc, o.username.as_bytes());
    fold(&mut acc, o.session_id.as_bytes());
    fold(&mut acc, o.address.as_bytes());
    acc ^= o.session_version ^ o.line as u64;
    fold(&mut acc, o.addrtype.as_str().as_bytes());
    fold(&mut acc, sdp.session_name());
    if let Some(c) = sdp.connection() {
        fold(&mut acc, c.address.as_bytes());
        acc ^= u64::from(c.is_hold_address()) ^ u64::from(c.ip().is_some());
    }
    for t in sdp.timings() {
        acc ^= t.start ^ t.stop;
    }
    for b in sdp.bandwidths() {
        fold(&mut acc, b.bwtype.as_bytes());
        acc ^= b.value;
    }
    for a in sdp.attributes() {
        acc ^= attribute(a);
    }
    fold(&mut acc, sdp.session_direction().as_str().as_bytes());
    let n = sdp.media().len();
    for (i, m) in sdp.media().iter().enumerate() {
        fold(&mut acc, m.media.as_bytes());
        fold(&mut acc, m.proto.as_bytes());
        acc ^= u64::from(m.port) ^ u64::from(m.num_ports.unwrap_or(0));
        acc ^= u64::from(m.is_rtp()) ^ u64::from(m.is_disabled());
        for f in m.formats() {
            fold(&mut acc, f.as_bytes());
        }
        for pt in m.payload_types() {
            acc ^= u64::from(pt);
        }
        assert!(
            sdp.direction(i).is_some(),
            "an existing media section has a direction"
        );
    }
    for i in 0..=n {
        for a in sdp.media_attributes(i) {
            acc ^= attribute(a);
        }
        for b in sdp.media_bandwidths(i) {
            acc ^= b.value;
        }
        if let Some(c) = sdp.connection_for(i) {
            fold(&mut acc, c.address.as_bytes());
        }
        if let Some(d) = sdp.direction(i) {
            fold(&mut acc, d.reversed().as_str().as_bytes());
        }
        for pt in sdp.payload_types(i) {
            if let Some(r) = sdp.rtpmap(i, pt) {
                fold(&mut acc, r.encoding.as_bytes());
                acc ^= u64::from(r.clock_rate_hz.unwrap_or(0));
            }
            if let Some(f) = sdp.fmtp(i, pt) {
                fold(&mut acc, f.params.as_bytes());
            }
        }
        if let Some(te) = sdp.telephone_event(i) {
            acc ^= u64::from(te.pt);
        }
        acc ^= sdp.ptime(i).map_or(0, |d| d.as_micros() as u64);
        acc ^= sdp.maxptime(i).map_or(0, |d| d.as_micros() as u64);
        if let Some(r) = sdp.rtcp(i) {
            acc ^= u64::from(r.port);
        }
        acc ^= u64::from(sdp.rtcp_mux(i));
        acc ^= u64::from(sdp.media_attribute(i, "rtpmap").is_some());
    }
    assert!(sdp.direction(n).is_none() && sdp.rtpmap(n, 0).is_none());
    let _ = format!("{sdp:?}");

    // Identity rewrite: documented to reproduce the input (CRLF line ends).
    let same = SdpRewrite::new(&sdp)
        .to_vec()
        .expect("an empty edit list always writes");
    if let Err(e) = Sdp::parse(&same) {
        panic!("identity rewrite does not parse again: {e}");
    }
    // Edits chosen by the input's bytes, so the fuzzer steers them.
    let pick = |i: usize| {
        data.get(data.len().wrapping_sub(1 + i))
            .copied()
            .unwrap_or(0)
    };
    let index = usize::from(pick(0) % 3);
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, pick(1)));
    let v6 = IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0,
        0,
        0,
        0,
        0,
        u16::from(pick(2)),
    ));
    let addr = if pick(3) & 1 == 0 { v4 } else { v6 };
    let mut rw = SdpRewrite::new(&sdp);
    let ops = pick(4);
    if ops & 1 != 0 {
        rw = rw.connection(addr);
    }
    if ops & 2 != 0 {
        rw = rw.origin_address(addr).bump_version();
    }
    if ops & 4 != 0 {
        rw = rw.media_port(index, u16::from_be_bytes([pick(5), pick(6)]));
    }
    if ops & 8 != 0 {
        rw = rw.rtcp(
            index,
            u16::from(pick(7)) + 1,
            (ops & 16 != 0).then_some(addr),
        );
    }
    if ops & 32 != 0 {
        rw = rw.remove_rtcp(index).rtcp_mux(index, pick(8) & 1 == 0);
    }
    if ops & 64 != 0 {
        let d = [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ][usize::from(pick(9) % 4)];
        rw = rw.direction(index, d);
    }
    if ops & 128 != 0 {
        rw = rw.remove_payload_types(index, &[pick(10) % 128, 101]);
    }
    if pick(11) == 0xff {
        rw = rw.session_version(u64::MAX).bump_version();
    }
    match rw.to_vec() {
        Ok(out) => {
            if let Err(e) = Sdp::parse(&out) {
                panic!(
                    "rewrite output does not parse: {e}\n--- output ---\n{}",
                    out.escape_ascii()
                );
            }
            acc ^= out.len() as u64;
        }
        Err(e) => acc ^= e.to_string().len() as u64,
    }
    acc
}

fn attribute(a: &sip::sdp::Attribute<'_>) -> u64 {
    let mut acc = a.line as u64;
    fold(&mut acc, a.name.as_bytes());
    fold_opt(&mut acc, a.value.map(str::as_bytes));
    match a.kind {
        AttrKind::Rtpmap(r) => {
            acc ^= u64::from(r.pt) ^ u64::from(r.channels.unwrap_or(0));
            acc ^= u64::from(r.is_telephone_event());
        }
        AttrKind::Fmtp(f) => fold(&mut acc, f.format.as_bytes()),
        AttrKind::Ptime(d) | AttrKind::MaxPtime(d) => acc ^= d.as_nanos() as u64,
        AttrKind::Rtcp(r) => {
            if let Some((t, addr)) = r.address {
                fold(&mut acc, t.as_str().as_bytes());
                fold(&mut acc, addr.as_bytes());
            }
        }
        AttrKind::Direction(d) => fold(&mut acc, d.as_str().as_bytes()),
        AttrKind::RtcpMux | AttrKind::Other => acc ^= 1,
    }
    acc
}

// ---------------------------------------------------------------------------------------
// Digest

const REALM: &str = "carrier.example.net";
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";

fn param_value(acc: &mut u64, v: &ParamValue<'_>) {
    fold(acc, v.raw());
    *acc ^= u64::from(v.is_quoted());
    let unescaped = v.unescaped();
    assert_eq!(unescaped.len(), v.bytes().count());
    assert!(v.eq_bytes(&unescaped));
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` value: parse, walk, and when it is a Digest
/// challenge, answer it; the answer must parse as Digest credentials.
pub fn challenge(value: &[u8]) -> u64 {
    let mut acc = 0u64;
    let c = match parse_challenge(value) {
        Ok(Challenge::Digest(c)) => c,
        Ok(Challenge::Other { scheme, data }) => {
            fold(&mut acc, scheme);
            fold(&mut acc, data);
            return acc;
        }
        Err(e) => return e.to_string().len() as u64,
    };
    assert!(
        ChallengeView::parse(value).is_ok(),
        "the two challenge parsers disagree"
    );
    param_value(&mut acc, &c.realm());
    param_value(&mut acc, &c.nonce());
    for v in [c.opaque(), c.domain()].into_iter().flatten() {
        param_value(&mut acc, &v);
    }
    let _ = (c.algorithm_param(), c.algorithm(), c.qop_options());
    acc ^= u64::from(c.stale()) ^ u64::from(c.userhash());
    for item in c.params().iter() {
        let (name, v) = item.expect("params were validated at parse time");
        fold(&mut acc, name);
        param_value(&mut acc, &v);
    }
    let request = Request {
        method: b"INVITE",
        uri: b"sip:+15551234567@carrier.example.net",
        body: b"v=0\r\n",
    };
    if let Ok(answer) = respond(
        &c,
        &request,
        b"alice",
        Credential::Password(b"secret"),
        b"0a4f113b",
        1,
    ) {
        match parse_credentials(answer.as_bytes()) {
            Ok(Credentials::Digest(_)) => {}
            other => panic!("respond() wrote credentials that do not parse: {other:?}\n{answer}"),
        }
    }
    acc
}

/// An `Authorization` / `Proxy-Authorization` value: parse, walk, and when it is Digest,
/// verify it against a fresh challenger (it will almost always be refused; it must not
/// panic).
pub fn credentials(value: &[u8]) -> u64 {
    let mut acc = 0u64;
    let a = match parse_credentials(value) {
        Ok(Credentials::Digest(a)) => a,
        Ok(Credentials::Other { scheme, data }) => {
            fold(&mut acc, scheme);
            fold(&mut acc, data);
            return acc;
        }
        Err(e) => return e.to_string().len() as u64,
    };
    for v in [a.username(), a.realm(), a.nonce(), a.uri(), a.response()] {
        param_value(&mut acc, &v);
    }
    for v in [a.cnonce(), a.opaque()].into_iter().flatten() {
        param_value(&mut acc, &v);
    }
    acc ^= u64::from(a.nc().unwrap_or(0)) ^ u64::from(a.userhash());
    let _ = (a.algorithm_param(), a.algorithm(), a.qop());
    for item in a.params().iter() {
        let (name, v) = item.expect("params were validated at parse time");
        fold(&mut acc, name);
        param_value(&mut acc, &v);
    }
    let _ = a.params().get(Param::Nonce);
    let now = Duration::from_secs(1_750_000_000);
    let mut challenger = Challenger::new(ChallengerConfig::new(REALM, SECRET), now)
        .expect("the fuzz challenger's config is valid");
    let request = Request {
        method: b"REGISTER",
        uri: a.uri().raw(),
        body: b"",
    };
    let verdict = challenger.verify(&a, &request, Credential::Password(b"secret"), now);
    acc ^= u64::from(verdict.is_ok());
    acc
}

/// The digest fuzz target: the input as a challenge and as credentials.
pub fn digest(data: &[u8]) -> u64 {
    challenge(data) ^ credentials(data)
}

// ---------------------------------------------------------------------------------------
// Stream framing

/// Frames a stream buffer the way a TCP connection's reader does: take frames off the front
/// until one is incomplete or the stream is refused, parsing each message. Limits come from
/// the first byte, so the fuzzer also meets small ones.
pub fn framing(data: &[u8]) -> u64 {
    let limits = match data.first() {
        Some(b) if b & 0x80 != 0 => FrameLimits {
            max_header_bytes: 64 + usize::from(b & 0x3f) * 16,
            max_body_bytes: usize::from(b & 0x3f) * 8,
        },
        _ => FrameLimits::default(),
    };
    let mut acc = 0u64;
    let mut rest = data;
    loop {
        let frame = match next_frame(rest, &limits) {
            Ok(f) => f,
            Err(e) => return acc ^ e.to_string().len() as u64,
        };
        assert!(
            frame.len() <= rest.len(),
            "{frame:?} is longer than the buffer"
        );
        match frame {
            Frame::Incomplete => {
                assert!(frame.is_empty());
                return acc;
            }
            Frame::Message { len } => {
                assert!(len > 0, "an empty message frame would never make progress");
                assert!(
                    len <= limits.max_header_bytes + limits.max_body_bytes,
                    "frame of {len} bytes exceeds {limits:?}"
                );
                acc ^= parse_message(&rest[..len]);
            }
            // The documented shapes: a ping is CRLF CRLF, a pong one CRLF.
            Frame::Ping => assert!(rest.starts_with(b"\r\n\r\n"), "Ping framed over {rest:?}"),
            Frame::Pong => assert!(rest.starts_with(b"\r\n"), "Pong framed over {rest:?}"),
            Frame::Stray => assert!(
                matches!(rest.first(), Some(b'\r' | b'\n')),
                "Stray framed over {rest:?}"
            ),
        }
        rest = &rest[frame.len()..];
    }
}
