//! RFC 5118 IPv6 torture messages: the valid ones parse to the right hosts, ports and Via
//! parameters; the invalid one is refused with the error that names its defect. Fixtures
//! live in `tests/fixtures/rfc5118` (see its INDEX.md for where the bytes came from).

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use sip::{Contact, HeaderName, HostKind, Message, Method, ParseError, Scheme, UriError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/rfc5118")
        .join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn parse_ok<'a>(name: &str, buf: &'a [u8]) -> Message<'a> {
    Message::parse(buf).unwrap_or_else(|e| panic!("{name}: expected to parse, got {e:?}"))
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Asserts a host is an IPv6 reference written as `text` (no brackets) meaning `addr`.
fn assert_v6(host: Option<sip::Host<'_>>, text: &str, addr: &str) {
    let host = host.expect("a host");
    assert_eq!(host.kind, HostKind::V6, "{host:?}");
    assert_eq!(host.text, text.as_bytes());
    assert_eq!(host.ip(), Some(IpAddr::V6(v6(addr))));
}

fn first_contact<'a>(m: &Message<'a>) -> sip::NameAddr<'a> {
    match m.contacts().next().expect("a Contact") {
        Contact::Addr(a) => a,
        Contact::Star => panic!("expected an address, got *"),
    }
}

/// Every fixture's Content-Length matches its body exactly.
#[test]
fn content_length_matches_body() {
    for name in [
        "ipv6-good",
        "ipv6-bad",
        "port-ambiguous",
        "port-unambiguous",
        "via-received-param-with-delim",
        "via-received-param-no-delim",
        "ipv6-in-sdp",
        "mult-ip-in-header",
        "mult-ip-in-sdp",
        "ipv4-mapped-ipv6",
        "ipv6-bug-abnf-3-colons",
        "ipv6-correct-abnf-2-colons",
    ] {
        let buf = fixture(name);
        let text = std::str::from_utf8(&buf).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(!text.replace("\r\n", "").contains('\n'), "{name}: bare LF");
        let cl: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cl, body.len(), "{name}");
    }
}

/// §4.1: IPv6 references in the Request-URI, Via and Contact.
#[test]
fn ipv6_good_valid_ipv6_reference() {
    let buf = fixture("ipv6-good");
    let m = parse_ok("ipv6-good", &buf);
    assert_eq!(m.method(), Some(Method::Register));
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.scheme, Scheme::Sip);
    assert_eq!(ruri.user, None);
    assert_v6(ruri.host, "2001:db8::10", "2001:db8::10");
    assert_eq!(ruri.port, None);
    let via = m.top_via();
    assert_eq!(via.transport, b"UDP");
    assert_v6(Some(via.host), "2001:db8::9:1", "2001:db8::9:1");
    assert_eq!(via.port, None);
    assert_eq!(via.branch(), Some(&b"z9hG4bKas3-111"[..]));
    let c = first_contact(&m);
    assert_eq!(c.display_name, Some(&br#""Caller""#[..]));
    assert_eq!(c.uri.user, Some(&b"caller"[..]));
    assert_v6(c.uri.host, "2001:db8::1", "2001:db8::1");
    assert_eq!(m.from_tag(), Some(&b"81x2"[..]));
    assert_eq!(m.call_id(), b"SSG9559905523997077@hlau_4100");
    assert_eq!(m.cseq().seq, 98176);
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.content_length(), Some(0));
}

/// §4.2: `sip:2001:db8::10` without brackets. The parser reads `2001` as the host and
/// `db8::10` as the port, which is not a number.
#[test]
fn ipv6_bad_request_uri_without_brackets() {
    let buf = fixture("ipv6-bad");
    let e = Message::parse(&buf).expect_err("RFC 5118 §4.2: must be refused");
    assert_eq!(e, ParseError::BadRequestUri(UriError::BadPort));
    assert_eq!(e.status_code(), 400);
}

/// §4.3: `[2001:db8::10:5070]` is a single IPv6 address with no port.
#[test]
fn port_ambiguous_is_an_address_without_port() {
    let buf = fixture("port-ambiguous");
    let m = parse_ok("port-ambiguous", &buf);
    let ruri = m.request_uri().unwrap();
    assert_v6(ruri.host, "2001:db8::10:5070", "2001:db8::10:5070");
    assert_eq!(ruri.port, None);
    assert_eq!(ruri.as_bytes(), b"sip:[2001:db8::10:5070]");
}

/// §4.4: `[2001:db8::10]:5070` is an address and port 5070.
#[test]
fn port_unambiguous_address_and_port() {
    let buf = fixture("port-unambiguous");
    let m = parse_ok("port-unambiguous", &buf);
    let ruri = m.request_uri().unwrap();
    assert_v6(ruri.host, "2001:db8::10", "2001:db8::10");
    assert_eq!(ruri.port, Some(5070));
}

/// §4.5: `received` with brackets. Not RFC 3261 grammar, but the RFC requires robust
/// implementations to parse it. The value is handed out as written.
#[test]
fn via_received_param_with_delim() {
    let buf = fixture("via-received-param-with-delim");
    let m = parse_ok("via-received-param-with-delim", &buf);
    assert_eq!(m.method(), Some(Method::Bye));
    let via = m.top_via();
    assert_v6(Some(via.host), "2001:db8::9:1", "2001:db8::9:1");
    assert_eq!(via.received(), Some(&b"[2001:db8::9:255]"[..]));
    assert_eq!(via.branch(), Some(&b"z9hG4bKas3-111"[..]));
    assert_eq!(m.to_tag(), Some(&b"bd76ya"[..]));
    let received = via.received().unwrap();
    let inner = std::str::from_utf8(&received[1..received.len() - 1]).unwrap();
    assert_eq!(inner.parse::<Ipv6Addr>().unwrap(), v6("2001:db8::9:255"));
}

/// §4.5: `received` without brackets, as RFC 3261's grammar has it; the parameter after it
/// is still read.
#[test]
fn via_received_param_no_delim() {
    let buf = fixture("via-received-param-no-delim");
    let m = parse_ok("via-received-param-no-delim", &buf);
    assert_eq!(m.method(), Some(Method::Options));
    let via = m.top_via();
    assert_v6(Some(via.host), "2001:db8::9:1", "2001:db8::9:1");
    assert_eq!(via.received(), Some(&b"2001:db8::9:255"[..]));
    let r = std::str::from_utf8(via.received().unwrap()).unwrap();
    assert_eq!(r.parse::<Ipv6Addr>().unwrap(), v6("2001:db8::9:255"));
    assert_eq!(via.branch(), Some(&b"z9hG4bKas3"[..]));
    assert_v6(first_contact(&m).uri.host, "2001:db8::9:1", "2001:db8::9:1");
}

/// §4.6: IPv6 in the Request-URI, To, Via, Contact and (unbracketed) in the SDP body.
#[test]
fn ipv6_in_sdp() {
    let buf = fixture("ipv6-in-sdp");
    let m = parse_ok("ipv6-in-sdp", &buf);
    assert_eq!(m.method(), Some(Method::Invite));
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.user, Some(&b"user"[..]));
    assert_v6(ruri.host, "2001:db8::10", "2001:db8::10");
    assert_v6(m.to().uri.host, "2001:db8::10", "2001:db8::10");
    assert_v6(Some(m.top_via().host), "2001:db8::20", "2001:db8::20");
    assert_v6(first_contact(&m).uri.host, "2001:db8::20", "2001:db8::20");
    assert!(m.content_type().unwrap().unwrap().is_sdp());
    assert_eq!(m.body().len(), 251);
    let body = std::str::from_utf8(m.body()).unwrap();
    assert!(body.starts_with("v=0\r\n"));
    assert!(body.contains("\r\nc=IN IP6 2001:db8::20\r\n"));
    assert!(body.ends_with("a=rtpmap:107 H263-1998/90000\r\n"));
}

/// §4.7: a Via list mixing IPv6 references (one with a port) and IPv4.
#[test]
fn mult_ip_in_header() {
    let buf = fixture("mult-ip-in-header");
    let m = parse_ok("mult-ip-in-header", &buf);
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].transport, b"UDP");
    assert_v6(Some(vias[0].host), "2001:db8::9:1", "2001:db8::9:1");
    assert_eq!(vias[0].port, Some(6050));
    assert_eq!(vias[0].branch(), Some(&b"z9hG4bKas3-111"[..]));
    assert_eq!(vias[1].transport, b"UDP");
    assert_eq!(vias[1].host.kind, HostKind::V4);
    assert_eq!(
        vias[1].host.ip(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert_eq!(vias[1].port, None);
    assert_eq!(vias[1].branch(), Some(&b"z9hG4bKjhja8781hjuaij65144"[..]));
    assert_eq!(vias[2].transport, b"TCP");
    assert_v6(Some(vias[2].host), "2001:db8::9:255", "2001:db8::9:255");
    assert_eq!(vias[2].branch(), Some(&b"z9hG4bK451jj"[..]));
    assert_eq!(vias[2].received(), Some(&b"192.0.2.200"[..]));
    assert_eq!(m.to_tag(), Some(&b"9817--94"[..]));
    assert_eq!(m.request_uri().unwrap().host.unwrap().kind, HostKind::Name);
}

/// §4.8: per-media `c=` lines, one IPv4 and one IPv6.
#[test]
fn mult_ip_in_sdp() {
    let buf = fixture("mult-ip-in-sdp");
    let m = parse_ok("mult-ip-in-sdp", &buf);
    assert_v6(
        m.request_uri().unwrap().host,
        "2001:db8::10",
        "2001:db8::10",
    );
    assert_v6(Some(m.top_via().host), "2001:db8::9:1", "2001:db8::9:1");
    assert_eq!(m.body().len(), 189);
    let body = std::str::from_utf8(m.body()).unwrap();
    assert!(body.contains("\r\nc=IN IP4 192.0.2.1\r\n"));
    assert!(body.contains("\r\nc=IN IP6 2001:db8::1\r\n"));
}

/// §4.9: IPv4-mapped IPv6 addresses in Via (one with a port), Contact and SDP.
#[test]
fn ipv4_mapped_ipv6() {
    let buf = fixture("ipv4-mapped-ipv6");
    let m = parse_ok("ipv4-mapped-ipv6", &buf);
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), 2);
    assert_v6(Some(vias[0].host), "::ffff:192.0.2.10", "::ffff:192.0.2.10");
    assert_eq!(vias[0].port, Some(19823));
    assert_eq!(vias[0].branch(), Some(&b"z9hG4bKbh19"[..]));
    assert_v6(Some(vias[1].host), "::ffff:192.0.2.2", "::ffff:192.0.2.2");
    assert_eq!(vias[1].port, None);
    let c = first_contact(&m);
    assert_eq!(c.display_name, Some(&br#""T. desk phone""#[..]));
    assert_eq!(c.uri.user, Some(&b"ted"[..]));
    assert_v6(c.uri.host, "::ffff:192.0.2.2", "::ffff:192.0.2.2");
    assert_eq!(m.body().len(), 245);
    assert!(std::str::from_utf8(m.body())
        .unwrap()
        .contains("\r\nc=IN IP6 ::ffff:192.0.2.2\r\n"));
}

/// §4.10: RFC 3261's ABNF admits three colons before an embedded IPv4 address; RFC 5118
/// says an implementation must tolerate it. It names the same address as the two-colon form.
#[test]
fn ipv6_bug_abnf_3_colons_is_tolerated() {
    let buf = fixture("ipv6-bug-abnf-3-colons");
    let m = parse_ok("ipv6-bug-abnf-3-colons", &buf);
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.user, Some(&b"user"[..]));
    let host = ruri.host.unwrap();
    assert_eq!(host.kind, HostKind::V6);
    assert_eq!(host.text, b"2001:db8:::192.0.2.1");
    // The same address as the two-colon form.
    let same = IpAddr::V6(v6("2001:db8::192.0.2.1"));
    assert_eq!(host.ip(), Some(same));
    let to = m.to().uri.host.unwrap();
    assert_eq!(to.kind, HostKind::V6);
    assert_eq!(to.ip(), Some(same));
}

/// §4.10: the correct two-colon form.
#[test]
fn ipv6_correct_abnf_2_colons() {
    let buf = fixture("ipv6-correct-abnf-2-colons");
    let m = parse_ok("ipv6-correct-abnf-2-colons", &buf);
    assert_eq!(m.method(), Some(Method::Options));
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.user, Some(&b"user"[..]));
    assert_v6(ruri.host, "2001:db8::192.0.2.1", "2001:db8::c000:201");
    assert_v6(m.to().uri.host, "2001:db8::192.0.2.1", "2001:db8::c000:201");
    assert_eq!(m.from().uri.host.unwrap().kind, HostKind::Name);
    assert_eq!(m.top_via().host.text, b"lab1.east.example.com");
    assert_eq!(m.header(HeaderName::CSeq), Some(&b"689 OPTIONS"[..]));
}

/// Every fixture in the directory is covered by a verdict above.
#[test]
fn every_fixture_has_a_verdict() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/rfc5118");
    let n = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "dat")
        })
        .count();
    assert_eq!(n, 12);
}
