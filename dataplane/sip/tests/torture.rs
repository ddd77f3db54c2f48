//! RFC 4475 torture messages: the valid ones parse to the right values, the invalid ones are
//! refused with the error that names their defect. Fixtures are the RFC's bytes, copied into
//! `tests/fixtures/rfc4475`.

use sip::header::ValueError;
use sip::{HeaderName, Message, Method, ParseError, Scheme, UriError};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/rfc4475")
        .join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn parse_ok<'a>(name: &str, buf: &'a [u8]) -> Message<'a> {
    Message::parse(buf).unwrap_or_else(|e| panic!("{name}: expected to parse, got {e:?}"))
}

fn parse_err(name: &str) -> ParseError {
    let buf = fixture(name);
    match Message::parse(&buf) {
        Ok(m) => panic!("{name}: expected a parse error, parsed {m:?}"),
        Err(e) => e,
    }
}

#[test]
fn wsinv_short_tortuous_invite() {
    let buf = fixture("wsinv");
    let m = parse_ok("wsinv", &buf);
    assert_eq!(m.method(), Some(Method::Invite));
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.user, Some(&b"vivekg"[..]));
    assert!(ruri.params.has(b"unknownparam"));
    assert_eq!(m.to_tag(), Some(&b"1918181833n"[..]));
    assert_eq!(m.from_tag(), Some(&b"98asjd8"[..]));
    assert_eq!(m.from().display_name, Some(&br#""J Rosenberg \\\"""#[..]));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.call_id(), b"wsinv.ndaksdj@192.0.2.1");
    assert_eq!(m.cseq().seq, 9);
    assert_eq!(m.cseq().method, b"INVITE");
    assert_eq!(m.content_length(), Some(150));
    assert_eq!(m.body().len(), 150);
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].transport, b"UDP");
    assert_eq!(vias[0].host.text, b"192.0.2.2");
    assert_eq!(vias[0].branch(), Some(&b"390skdjuw"[..]));
    assert_eq!(vias[1].transport, b"TCP");
    assert_eq!(vias[1].host.text, b"spindle.example.com");
    assert_eq!(vias[1].branch(), Some(&b"z9hG4bK9ikj8"[..]));
    assert_eq!(vias[2].host.text, b"192.168.255.111");
    assert_eq!(vias[2].branch(), Some(&b"z9hG4bK30239"[..]));
    assert_eq!(m.header(HeaderName::Subject), Some(&b""[..]));
    assert!(m
        .header_by_name(b"NewFangledHeader")
        .unwrap()
        .ends_with(b"continued newfangled value"));
    assert_eq!(
        m.header_by_name(b"UnknownHeaderWithUnusualValue"),
        Some(&b";;,,;;,;"[..])
    );
    let routes: Vec<_> = m.routes().collect();
    assert_eq!(routes.len(), 1);
    assert!(routes[0].uri.is_loose_route());
    let contacts: Vec<_> = m.contacts().collect();
    assert_eq!(contacts.len(), 1);
    let sip::Contact::Addr(c) = contacts[0] else {
        panic!("star")
    };
    assert_eq!(c.params.value(b"newparam"), Some(&b"newvalue"[..]));
    assert!(c.params.has(b"secondparam"));
    assert_eq!(c.q_millis(), Some(330));
}

#[test]
fn intmeth_wide_range_of_valid_characters() {
    let buf = fixture("intmeth");
    let m = parse_ok("intmeth", &buf);
    assert_eq!(
        m.method(),
        Some(Method::Other(
            b"!interesting-Method0123456789_*+`.%indeed'~"
        ))
    );
    let ruri = m.request_uri().unwrap();
    assert_eq!(
        ruri.user,
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(
        ruri.password,
        Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
    );
    assert_eq!(ruri.host.unwrap().text, b"example.com");
    assert_eq!(
        m.call_id(),
        br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#
    );
    assert_eq!(m.from_tag(), Some(&b"_token~1'+`*%!-."[..]));
    assert_eq!(m.top_via().branch(), Some(&b"z9hG4bK-.!%66*_+`'~"[..]));
    assert_eq!(m.max_forwards(), Some(255));
}

#[test]
fn esc01_escaped_characters() {
    let buf = fixture("esc01");
    let m = parse_ok("esc01", &buf);
    assert_eq!(
        m.request_uri().unwrap().user,
        Some(&b"sips%3Auser%40example.com"[..])
    );
    assert_eq!(m.to().uri.user, Some(&b"%75se%72"[..]));
    assert_eq!(m.call_id(), b"esc01.239409asdfakjkn23onasd0-3234");
    assert!(m.content_type().unwrap().unwrap().is_sdp());
    assert_eq!(m.contacts().count(), 1);
}

#[test]
fn escnull_escaped_nulls() {
    let buf = fixture("escnull");
    let m = parse_ok("escnull", &buf);
    assert_eq!(m.to().uri.user, Some(&b"null-%00-null"[..]));
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn esc02_percent_not_an_escape() {
    let buf = fixture("esc02");
    let m = parse_ok("esc02", &buf);
    assert_eq!(m.method(), Some(Method::Other(b"RE%47IST%45R")));
    // C%6Fntact is an unknown header, not a Contact.
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(
        m.header_by_name(b"C%6Fntact"),
        Some(&b"<sip:alias2@host2.example.com>"[..])
    );
}

#[test]
fn lwsdisp_no_lws_between_display_name_and_laquot() {
    let buf = fixture("lwsdisp");
    let m = parse_ok("lwsdisp", &buf);
    assert_eq!(m.from().display_name, Some(&b"caller"[..]));
    assert_eq!(m.from_tag(), Some(&b"323"[..]));
}

#[test]
fn longreq_long_values() {
    let buf = fixture("longreq");
    let m = parse_ok("longreq", &buf);
    assert_eq!(m.vias().count(), 34);
    assert_eq!(m.top_via().host.text, b"sip33.example.com");
    assert!(m.from_tag().is_some_and(|t| t.len() > 100));
    assert_eq!(m.to().uri.port, Some(6000));
    assert_eq!(m.body().len(), m.content_length().unwrap() as usize);
}

#[test]
fn dblreq_extra_bytes_after_content_length_are_ignored() {
    let buf = fixture("dblreq");
    let m = parse_ok("dblreq", &buf);
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.call_id(), b"dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert!(m.body().is_empty());
    assert!(m.as_bytes().len() < buf.len());
}

#[test]
fn semiuri_semicolon_in_user_part() {
    let buf = fixture("semiuri");
    let m = parse_ok("semiuri", &buf);
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.user, Some(&b"user;par=u%40example.net"[..]));
    assert_eq!(ruri.host.unwrap().text, b"example.com");
    assert_eq!(m.list_values(HeaderName::Accept).count(), 6);
}

#[test]
fn transports_unusual_transports() {
    let buf = fixture("transports");
    let m = parse_ok("transports", &buf);
    let t: Vec<_> = m.vias().map(|v| v.transport).collect();
    assert_eq!(t, [&b"UDP"[..], b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]);
}

#[test]
fn mpart01_multipart_body() {
    let buf = fixture("mpart01");
    let m = parse_ok("mpart01", &buf);
    let ct = m.content_type().unwrap().unwrap();
    assert_eq!(ct.kind, b"multipart");
    assert_eq!(ct.params.value(b"boundary"), Some(&b"7a9cbec02ceef655"[..]));
    assert_eq!(m.body().len(), 553);
}

#[test]
fn unreason_unusual_reason_phrase() {
    let buf = fixture("unreason");
    let m = parse_ok("unreason", &buf);
    assert_eq!(m.status(), Some(200));
    assert!(m.reason().unwrap().starts_with(b"= 2**3 * 5**2 "));
    assert!(std::str::from_utf8(m.reason().unwrap()).is_ok());
}

#[test]
fn noreason_empty_reason_phrase() {
    let buf = fixture("noreason");
    let m = parse_ok("noreason", &buf);
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason(), Some(&b""[..]));
}

#[test]
fn badinv01_extraneous_separators() {
    assert!(matches!(
        parse_err("badinv01"),
        ParseError::BadHeaderValue(HeaderName::Via, _)
    ));
}

#[test]
fn clerr_content_length_larger_than_message() {
    assert!(matches!(
        parse_err("clerr"),
        ParseError::ContentLengthExceedsBody { declared: 9999, .. }
    ));
}

#[test]
fn ncl_negative_content_length() {
    assert_eq!(
        parse_err("ncl"),
        ParseError::BadHeaderValue(HeaderName::ContentLength, ValueError::BadNumber)
    );
}

#[test]
fn scalar02_request_scalar_fields_overlarge() {
    assert_eq!(
        parse_err("scalar02"),
        ParseError::BadHeaderValue(HeaderName::CSeq, ValueError::BadNumber)
    );
}

#[test]
fn scalarlg_response_scalar_fields_overlarge() {
    assert_eq!(
        parse_err("scalarlg"),
        ParseError::BadHeaderValue(HeaderName::CSeq, ValueError::BadNumber)
    );
}

#[test]
fn quotbal_unterminated_quoted_string() {
    assert_eq!(
        parse_err("quotbal"),
        ParseError::BadHeaderValue(HeaderName::To, ValueError::UnterminatedQuote)
    );
}

#[test]
fn ltgtruri_angle_brackets_around_request_uri() {
    assert_eq!(
        parse_err("ltgtruri"),
        ParseError::BadRequestUri(UriError::BadScheme)
    );
}

#[test]
fn lwsruri_lws_in_request_uri() {
    assert_eq!(parse_err("lwsruri"), ParseError::BadStartLine);
}

#[test]
fn lwsstart_multiple_spaces_in_request_line() {
    assert_eq!(parse_err("lwsstart"), ParseError::BadStartLine);
}

#[test]
fn trws_trailing_whitespace_on_request_line() {
    assert_eq!(parse_err("trws"), ParseError::BadStartLine);
}

#[test]
fn escruri_escaped_headers_in_request_uri() {
    assert_eq!(
        parse_err("escruri"),
        ParseError::BadRequestUri(UriError::HeadersNotAllowed)
    );
}

#[test]
fn baddate_non_gmt_date() {
    assert_eq!(
        parse_err("baddate"),
        ParseError::BadHeaderValue(HeaderName::Date, ValueError::BadDate)
    );
}

#[test]
fn regbadct_contact_with_headers_outside_angle_brackets() {
    assert_eq!(
        parse_err("regbadct"),
        ParseError::BadHeaderValue(
            HeaderName::Contact,
            ValueError::Uri(UriError::HeadersNotAllowed)
        )
    );
}

#[test]
fn badaspec_spaces_inside_addr_spec() {
    assert_eq!(
        parse_err("badaspec"),
        ParseError::BadHeaderValue(HeaderName::To, ValueError::SpaceInAddrSpec)
    );
}

#[test]
fn baddn_unquoted_non_token_display_name() {
    assert_eq!(
        parse_err("baddn"),
        ParseError::BadHeaderValue(HeaderName::From, ValueError::BadDisplayName)
    );
}

#[test]
fn badvers_sip_version_7() {
    let e = parse_err("badvers");
    assert_eq!(e, ParseError::UnsupportedVersion);
    assert_eq!(e.status_code(), 505);
}

#[test]
fn mismatch01_cseq_method_mismatch() {
    assert_eq!(parse_err("mismatch01"), ParseError::CSeqMethodMismatch);
}

#[test]
fn mismatch02_unknown_method_cseq_mismatch() {
    assert_eq!(parse_err("mismatch02"), ParseError::CSeqMethodMismatch);
}

#[test]
fn bigcode_overlarge_status_code() {
    assert_eq!(parse_err("bigcode"), ParseError::BadStatusCode);
}

#[test]
fn badbranch_parses_with_cookie_only_branch() {
    // RFC 4475 §3.2.1: the branch "z9hG4bK" alone is syntactically fine; the transaction layer
    // must not treat it as an RFC 3261 branch.
    let buf = fixture("badbranch");
    let m = parse_ok("badbranch", &buf);
    assert_eq!(m.top_via().branch(), Some(&b"z9hG4bK"[..]));
    assert!(!m.top_via().has_rfc3261_branch());
}

#[test]
fn insuf_missing_required_headers() {
    assert!(matches!(parse_err("insuf"), ParseError::MissingHeader(_)));
}

#[test]
fn multi01_multiple_values_in_single_value_headers() {
    assert!(matches!(
        parse_err("multi01"),
        ParseError::DuplicateHeader(_)
    ));
}

#[test]
fn mcl01_multiple_content_length() {
    assert_eq!(
        parse_err("mcl01"),
        ParseError::DuplicateHeader(HeaderName::ContentLength)
    );
}

/// §3.3 application-layer cases parse; what to answer is the application's decision.
#[test]
fn application_layer_cases_parse() {
    for name in [
        "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01", "bcast", "zeromf",
        "cparam01", "cparam02", "regescrt", "sdp01", "inv2543",
    ] {
        let buf = fixture(name);
        parse_ok(name, &buf);
    }
}

#[test]
fn application_layer_values() {
    let buf = fixture("unkscm");
    let m = parse_ok("unkscm", &buf);
    assert_eq!(
        m.request_uri().unwrap().scheme,
        Scheme::Other(b"nobodyKnowsThisScheme")
    );

    let buf = fixture("novelsc");
    let m = parse_ok("novelsc", &buf);
    assert_eq!(m.request_uri().unwrap().scheme, Scheme::Other(b"soap.beep"));

    let buf = fixture("unksm2");
    let m = parse_ok("unksm2", &buf);
    assert_eq!(m.to().uri.scheme, Scheme::Other(b"isbn"));

    let buf = fixture("bext01");
    let m = parse_ok("bext01", &buf);
    assert!(m.has_option_tag(HeaderName::Require, b"nothingSupportsThis"));
    assert!(m.has_option_tag(HeaderName::ProxyRequire, b"norDoAnyProxiesSupportThis"));

    let buf = fixture("zeromf");
    assert_eq!(parse_ok("zeromf", &buf).max_forwards(), Some(0));

    let buf = fixture("cparam01");
    let m = parse_ok("cparam01", &buf);
    let sip::Contact::Addr(c) = m.contacts().next().unwrap() else {
        panic!()
    };
    // Without angle brackets the parameter belongs to the header, not the URI.
    assert!(c.params.has(b"unknownparam"));
    assert!(c.uri.params.is_empty());

    let buf = fixture("cparam02");
    let m = parse_ok("cparam02", &buf);
    let sip::Contact::Addr(c) = m.contacts().next().unwrap() else {
        panic!()
    };
    assert!(c.uri.params.has(b"unknownparam"));
    assert!(c.params.is_empty());

    let buf = fixture("regescrt");
    let m = parse_ok("regescrt", &buf);
    let sip::Contact::Addr(c) = m.contacts().next().unwrap() else {
        panic!()
    };
    assert_eq!(c.uri.headers, b"Route=%3Csip:sip.example.com%3E");

    let buf = fixture("inv2543");
    let m = parse_ok("inv2543", &buf);
    assert_eq!(m.top_via().branch(), None);
    assert_eq!(m.max_forwards(), None);

    let buf = fixture("bcast");
    let m = parse_ok("bcast", &buf);
    assert_eq!(m.vias().nth(1).unwrap().host.text, b"255.255.255.255");
}

/// Every fixture in the directory is covered by a verdict above.
#[test]
fn every_fixture_has_a_verdict() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/rfc4475");
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
    assert_eq!(n, 49);
}
