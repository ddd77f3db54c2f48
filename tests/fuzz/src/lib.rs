//! Helpers shared by the fuzz targets and by `dataplane/sip/tests/fuzz_corpus_smoke.rs`
//! (which includes this file with `#[path]` so the stable-toolchain smoke test walks exactly
//! what the fuzzers walk).
//!
//! Every function here only reads: it calls each accessor of a parsed view and folds the
//! results into a checksum, so the optimiser cannot drop the calls and a panic anywhere in
//! an accessor surfaces as a fuzz crash.

use sip::header::{tokens, NameAddr};
use sip::uri::Params;
use sip::{Contact, HeaderName, Message, StartLine, Uri, Via};

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
    for name in [&b"tag"[..], b"branch", b"lr", b"transport", b"expires", b"q", b"received"] {
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
        assert_eq!(cl as usize, m.body().len(), "body length differs from Content-Length");
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
