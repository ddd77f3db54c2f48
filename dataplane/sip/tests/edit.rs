//! Editing without reparse, response/ACK/CANCEL construction, and the allocation count of
//! the parse → edit path once buffers are warm.
#![allow(unsafe_code)] // reason: a counting global allocator needs `unsafe impl GlobalAlloc`.

use sip::edit::{
    ack_for_non2xx, cancel_for, error_response_for_unparsed, EditError, Editor, ResponseBuilder,
};
use sip::{HeaderName, Message, Method};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;
thread_local! { static ALLOCS: Cell<u64> = const { Cell::new(0) }; }
// SAFETY: forwards to the system allocator unchanged; only counts calls per thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

#[test]
fn proxy_forwarding_edits() {
    let m = Message::parse(INVITE).unwrap();
    let mut ed = Editor::new(&m);
    ed.push_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1");
    assert_eq!(ed.decrement_max_forwards(), Ok(69));
    ed.add_record_route(b"<sip:192.0.2.1;lr>");
    ed.pop_route().unwrap();
    ed.set_request_uri(b"sip:bob@192.0.2.200:5062").unwrap();
    ed.add_raw_header(b"X-Tenant: acme");
    let mut out = Vec::new();
    ed.write(&mut out).unwrap();
    let f =
        Message::parse(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    assert_eq!(
        f.request_uri().unwrap().as_bytes(),
        b"sip:bob@192.0.2.200:5062"
    );
    let vias: Vec<_> = f.vias().collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].branch(), Some(&b"z9hG4bKproxy1"[..]));
    assert_eq!(vias[1].branch(), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(f.max_forwards(), Some(69));
    let rr: Vec<_> = f.record_routes().collect();
    assert_eq!(rr.len(), 1);
    let routes: Vec<_> = f.routes().collect();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].uri.host.unwrap().text, b"p2.example.com");
    assert_eq!(f.header_by_name(b"x-tenant"), Some(&b"acme"[..]));
    assert_eq!(f.body(), b"v=0\n");
    assert_eq!(f.call_id(), m.call_id());
}

#[test]
fn max_forwards_zero_is_too_many_hops_and_absent_becomes_70() {
    let zero = String::from_utf8_lossy(INVITE).replace("Max-Forwards: 70", "Max-Forwards: 0");
    let m = Message::parse(zero.as_bytes()).unwrap();
    assert_eq!(
        Editor::new(&m).decrement_max_forwards(),
        Err(EditError::TooManyHops)
    );
    let none = String::from_utf8_lossy(INVITE).replace("Max-Forwards: 70\r\n", "");
    let m = Message::parse(none.as_bytes()).unwrap();
    let mut ed = Editor::new(&m);
    assert_eq!(ed.decrement_max_forwards(), Ok(70));
    let mut out = Vec::new();
    ed.write(&mut out).unwrap();
    assert_eq!(Message::parse(&out).unwrap().max_forwards(), Some(70));
}

#[test]
fn pop_via_from_a_multi_value_line_and_received_rport() {
    let resp = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/UDP pc33.example.com;branch=z9hG4bKuac;rport\r\n\
To: <sip:bob@example.com>;tag=b1\r\nFrom: <sip:alice@example.com>;tag=a1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let m = Message::parse(resp).unwrap();
    let mut ed = Editor::new(&m);
    ed.pop_via().unwrap();
    let mut out = Vec::new();
    ed.write(&mut out).unwrap();
    let f = Message::parse(&out).unwrap();
    assert_eq!(f.vias().count(), 1);
    assert_eq!(f.top_via().branch(), Some(&b"z9hG4bKuac"[..]));

    let m = Message::parse(INVITE).unwrap();
    let mut ed = Editor::new(&m);
    ed.set_top_via_received(b"198.51.100.7", Some(40_123))
        .unwrap();
    ed.write(&mut out).unwrap();
    let f = Message::parse(&out).unwrap();
    assert_eq!(f.top_via().received(), Some(&b"198.51.100.7"[..]));
    assert_eq!(f.top_via().rport(), Some(Some(40_123)));
    assert_eq!(f.top_via().branch(), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(
        f.top_via()
            .params
            .iter()
            .filter(|(n, _)| *n == b"rport")
            .count(),
        1
    );
}

#[test]
fn body_replacement_fixes_content_length() {
    let m = Message::parse(INVITE).unwrap();
    let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    let mut ed = Editor::new(&m);
    ed.set_body(sdp, Some(b"application/sdp"));
    let mut out = Vec::new();
    ed.write(&mut out).unwrap();
    let f = Message::parse(&out).unwrap();
    assert_eq!(f.body(), sdp);
    assert_eq!(f.content_length(), Some(sdp.len() as u32));
    assert_eq!(f.header_values(HeaderName::ContentType).count(), 1);
}

#[test]
fn response_copies_dialog_headers_and_adds_to_tag() {
    let m = Message::parse(INVITE).unwrap();
    let mut out = Vec::new();
    ResponseBuilder::new(&m, 486, b"Busy Here")
        .to_tag(b"srv42")
        .header(HeaderName::RetryAfter, b"30")
        .write(&mut out);
    let r = Message::parse(&out).unwrap();
    assert_eq!(r.status(), Some(486));
    assert_eq!(r.reason(), Some(&b"Busy Here"[..]));
    assert_eq!(r.to_tag(), Some(&b"srv42"[..]));
    assert_eq!(r.from_tag(), m.from_tag());
    assert_eq!(r.call_id(), m.call_id());
    assert_eq!(r.cseq(), m.cseq());
    assert_eq!(r.top_via(), m.top_via());
    assert_eq!(r.header(HeaderName::RetryAfter), Some(&b"30"[..]));
    assert_eq!(r.content_length(), Some(0));

    ResponseBuilder::new(&m, 100, b"Trying")
        .to_tag(b"ignored")
        .write(&mut out);
    let r = Message::parse(&out).unwrap();
    assert_eq!(r.to_tag(), None, "100 Trying carries no To tag");
}

#[test]
fn ack_and_cancel_follow_rfc3261() {
    let m = Message::parse(INVITE).unwrap();
    let mut resp = Vec::new();
    ResponseBuilder::new(&m, 486, b"Busy Here")
        .to_tag(b"t9")
        .write(&mut resp);
    let r = Message::parse(&resp).unwrap();
    let mut out = Vec::new();
    ack_for_non2xx(&m, &r, &mut out);
    let ack = Message::parse(&out).unwrap();
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.request_uri(), m.request_uri());
    assert_eq!(ack.cseq().seq, 314_159);
    assert_eq!(ack.cseq().method, b"ACK");
    assert_eq!(ack.to_tag(), Some(&b"t9"[..]));
    assert_eq!(ack.vias().count(), 1);
    assert_eq!(ack.top_via().branch(), m.top_via().branch());
    assert_eq!(ack.routes().count(), 2);

    cancel_for(&m, &mut out);
    let c = Message::parse(&out).unwrap();
    assert_eq!(c.method(), Some(Method::Cancel));
    assert_eq!(c.cseq().method, b"CANCEL");
    assert_eq!(c.to_tag(), None);
    assert_eq!(c.top_via().branch(), m.top_via().branch());
}

#[test]
fn error_response_for_unparseable_request() {
    let bad = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/rfc4475/ncl.dat"
    ))
    .unwrap();
    assert!(Message::parse(&bad).is_err());
    let mut out = Vec::new();
    assert!(error_response_for_unparsed(
        &bad,
        400,
        b"Bad Content-Length",
        &mut out
    ));
    let r = Message::parse(&out).unwrap();
    assert_eq!(r.status(), Some(400));
    assert_eq!(r.call_id(), b"ncl.0ha0isndaksdj2193423r542w35");
    assert!(!error_response_for_unparsed(
        b"SIP/2.0 200 OK\r\n\r\n",
        400,
        b"x",
        &mut out
    ));
    assert!(!error_response_for_unparsed(
        b"garbage", 400, b"x", &mut out
    ));
}

#[test]
fn parse_and_edit_allocate_nothing_once_warm() {
    let mut out = Vec::with_capacity(4096);
    let run = |out: &mut Vec<u8>| {
        let m = Message::parse(INVITE).unwrap();
        let mut ed = Editor::new(&m);
        ed.push_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1");
        ed.decrement_max_forwards().unwrap();
        ed.add_record_route(b"<sip:192.0.2.1;lr>");
        ed.set_top_via_received(b"198.51.100.7", Some(5060))
            .unwrap();
        ed.write(out).unwrap();
        let _ = std::hint::black_box(m.vias().count() + m.routes().count());
    };
    run(&mut out);
    let before = allocs();
    for _ in 0..100 {
        run(&mut out);
    }
    assert_eq!(
        allocs() - before,
        0,
        "parse + edit allocated on the warm path"
    );
}
