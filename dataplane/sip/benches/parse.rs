//! Parse benchmark: `sip::Message::parse` against `rsip` 0.4 on the messages a carrier proxy
//! sees most — a softphone's INVITE with SDP, the 200 OK answering it (SDP, Record-Route), and
//! a REGISTER carrying digest credentials.
//!
//! Each side parses the same bytes and then reads what a proxy needs (Call-ID, CSeq, From and
//! To tags, top Via branch, Max-Forwards, Content-Length, body) — ours through the zero-copy
//! view, rsip's through its typed headers where it has them. Both run on this one thread in
//! interleaved batches, so frequency changes and noise hit them alike.
//!
//! - `cargo bench -p sip --bench parse` (argument `--bench`): a few seconds per message; prints
//!   msgs/s, the ratio, p50/p99/p99.9 per-parse latency and heap allocations per parse.
//! - Without `--bench` (`cargo test --all-targets` runs it so): a smoke of a few hundred
//!   parses that still asserts both parsers parse every message and agree on the fields, and
//!   that ours makes no heap allocation on the INVITE.
//!
//! Both modes end each message with one JSON line (`{"bench":"sip_parse",...}`) for tooling.
//!
//! Latency percentiles are per parse, averaged over a batch of [`BATCH_PARSES`]: timing single
//! parses of a few hundred nanoseconds would mostly measure the clock.
#![allow(unsafe_code)] // reason: the counting #[global_allocator] must implement the unsafe trait GlobalAlloc; nothing else here is unsafe.

use hdrhistogram::Histogram;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A softphone's INVITE (Zoiper-style): 13 header lines, SDP offering PCMU, PCMA and
/// telephone-event. 984 bytes.
const INVITE: &[u8] = b"INVITE sip:+15551234567@carrier.example.net;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.45:5060;branch=z9hG4bK-524287-1---a3f9c1d27e5b8a40;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.0.2.45:5060;transport=UDP>\r\n\
To: <sip:+15551234567@carrier.example.net;user=phone>\r\n\
From: \"Alice Smith\" <sip:alice@carrier.example.net;transport=UDP>;tag=8f2c41a9\r\n\
Call-ID: ZTg5YzQxNjE1MWQ1ZTg3NGM5ZjM4ZWU0MmQ1ZDYwMjE.@192.0.2.45\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Supported: replaces, norefersub, extended-refer, timer, outbound, path, X-cisco-serviceuri\r\n\
User-Agent: Z 5.6.4 v2.10.20.2\r\n\
Allow-Events: presence, kpml, talk\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 253\r\n\
\r\n\
v=0\r\n\
o=Zoiper 1715000000123 1 IN IP4 192.0.2.45\r\n\
s=Zoiper\r\n\
c=IN IP4 192.0.2.45\r\n\
t=0 0\r\n\
m=audio 8000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

/// The 200 OK answering [`INVITE`] after two proxies: two Via lines, two Record-Route lines,
/// SDP answer with PCMU and telephone-event.
const OK_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK3f1c.8a2b4e6d0c1f2a3b4c5d6e7f8a9b0c1d.0\r\n\
Via: SIP/2.0/UDP 192.0.2.45:5060;branch=z9hG4bK-524287-1---a3f9c1d27e5b8a40;rport=5060;received=192.0.2.45\r\n\
Record-Route: <sip:198.51.100.10;lr;ftag=8f2c41a9;did=3a1.b7f2c4d1>\r\n\
Record-Route: <sip:203.0.113.5;transport=udp;lr>\r\n\
Contact: <sip:+15551234567@203.0.113.77:5060;transport=udp>\r\n\
To: <sip:+15551234567@carrier.example.net;user=phone>;tag=as6d8f1b2c\r\n\
From: \"Alice Smith\" <sip:alice@carrier.example.net;transport=UDP>;tag=8f2c41a9\r\n\
Call-ID: ZTg5YzQxNjE1MWQ1ZTg3NGM5ZjM4ZWU0MmQ1ZDYwMjE.@192.0.2.45\r\n\
CSeq: 1 INVITE\r\n\
Server: Trunkline-SBC\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 214\r\n\
\r\n\
v=0\r\n\
o=- 4105922367 4105922368 IN IP4 203.0.113.77\r\n\
s=-\r\n\
c=IN IP4 203.0.113.77\r\n\
t=0 0\r\n\
m=audio 31488 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// A re-REGISTER answering a 401: digest credentials with qop=auth, no body.
const REGISTER: &[u8] = b"REGISTER sip:carrier.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.45:5060;branch=z9hG4bK-524287-1---7c0e19f2b84d5a63;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.0.2.45:5060;transport=UDP>;expires=3600\r\n\
To: <sip:alice@carrier.example.net;transport=UDP>\r\n\
From: <sip:alice@carrier.example.net;transport=UDP>;tag=1d9e5b37\r\n\
Call-ID: NGQ3ZDUzYmM0ZjJhYjE4OTcyMTk1ZTBkNWU0OGU2ZjA.@192.0.2.45\r\n\
CSeq: 2 REGISTER\r\n\
Expires: 3600\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
User-Agent: Z 5.6.4 v2.10.20.2\r\n\
Authorization: Digest username=\"alice\",realm=\"carrier.example.net\",\
nonce=\"6a3c1f0e2b9d48a7c5e1f3b2a4d6c8e0\",uri=\"sip:carrier.example.net;transport=UDP\",\
response=\"0f4a8b2c6d1e3f5a7b9c0d2e4f6a8b1c\",cnonce=\"9b8a7c6d5e4f3a2b\",nc=00000001,\
qop=auth,algorithm=MD5\r\n\
Allow-Events: presence, kpml, talk\r\n\
Content-Length: 0\r\n\
\r\n";

/// The messages measured, by name.
const MESSAGES: [(&str, &[u8]); 3] = [
    ("invite", INVITE),
    ("ok200", OK_200),
    ("register", REGISTER),
];

/// Parses per timed batch: long enough that `Instant::now` (~20-30 ns) is noise.
const BATCH_PARSES: u32 = 64;
/// Full mode: measuring time per message (both parsers together), after warm-up.
const FULL_MEASURE: Duration = Duration::from_secs(4);
const FULL_WARMUP: Duration = Duration::from_millis(300);
/// Smoke mode: batches per parser per message (5 x 64 = 320 parses each).
const SMOKE_ROUNDS: u32 = 5;
/// Parses over which allocations are counted.
const FULL_ALLOC_PARSES: u64 = 10_000;
const SMOKE_ALLOC_PARSES: u64 = 256;
/// The performance contract on the INVITE (reported, not asserted: timing in CI is noise).
const TARGET_RATIO_INVITE: f64 = 10.0;

// ---------------------------------------------------------------------------------------
// Allocation counting

/// Counts `alloc`/`alloc_zeroed`/`realloc` calls while [`COUNTING`] is set; otherwise a plain
/// pass-through, so the timed loops pay one relaxed load per allocation and no atomic RMW.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[inline]
fn count_allocation() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter only observes calls and never touches the memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: our caller upholds `GlobalAlloc::alloc`'s preconditions for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`; our
        // caller upholds `realloc`'s preconditions.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Heap allocations per call of `f(buf)`, averaged over `parses` calls.
fn allocations_per_parse(f: fn(&[u8]) -> u64, buf: &[u8], parses: u64) -> f64 {
    // One call outside the counted window: lazy statics inside a parser are start-up cost.
    black_box(f(black_box(buf)));
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..parses {
        black_box(f(black_box(buf)));
    }
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATIONS.load(Ordering::Relaxed) as f64 / parses as f64
}

// ---------------------------------------------------------------------------------------
// What a proxy reads, through each parser

/// The fields both parsers must agree on, as owned values (smoke checks only; not timed).
#[derive(Debug, PartialEq, Eq)]
struct ProxyFields {
    call_id: String,
    cseq_seq: u32,
    cseq_method: String,
    from_tag: Option<String>,
    to_tag: Option<String>,
    top_via_branch: Option<String>,
    max_forwards: Option<u32>,
    content_length: Option<u32>,
    body_len: usize,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fields_ours(buf: &[u8]) -> Result<ProxyFields, sip::ParseError> {
    let m = sip::Message::parse(buf)?;
    Ok(ProxyFields {
        call_id: lossy(m.call_id()),
        cseq_seq: m.cseq().seq,
        cseq_method: lossy(m.cseq().method),
        from_tag: m.from_tag().map(lossy),
        to_tag: m.to_tag().map(lossy),
        top_via_branch: m.top_via().branch().map(lossy),
        max_forwards: m.max_forwards().map(u32::from),
        content_length: m.content_length(),
        body_len: m.body().len(),
    })
}

fn fields_rsip(buf: &[u8]) -> Result<ProxyFields, rsip::Error> {
    use rsip::prelude::*;
    let m = rsip::SipMessage::try_from(buf)?;
    let cseq = m.cseq_header()?.typed()?;
    Ok(ProxyFields {
        call_id: m.call_id_header()?.value().to_owned(),
        cseq_seq: cseq.seq,
        cseq_method: cseq.method.to_string(),
        from_tag: m.from_header()?.tag()?.map(|t| t.value().to_owned()),
        to_tag: m.to_header()?.tag()?.map(|t| t.value().to_owned()),
        top_via_branch: m
            .via_header()?
            .typed()?
            .branch()
            .map(|b| b.value().to_owned()),
        max_forwards: m.max_forwards_header().ok().map(|h| h.num()).transpose()?,
        content_length: rsip_content_length(&m).transpose()?,
        body_len: m.body().len(),
    })
}

/// rsip's `HeadersExt` has no Content-Length accessor; find the header in the list.
fn rsip_content_length(m: &rsip::SipMessage) -> Option<Result<u32, rsip::Error>> {
    use rsip::prelude::*;
    m.headers().iter().find_map(|h| match h {
        rsip::Header::ContentLength(cl) => Some(cl.length()),
        _ => None,
    })
}

/// Timed path, ours: parse, then read each field a proxy needs. `black_box` on every read
/// keeps the compiler from skipping accessors whose result would otherwise be unused.
#[inline(never)]
fn proxy_read_ours(buf: &[u8]) -> u64 {
    let Ok(m) = sip::Message::parse(buf) else {
        return u64::MAX;
    };
    black_box(m.call_id());
    let cseq = black_box(m.cseq());
    black_box(m.from_tag());
    black_box(m.to_tag());
    black_box(m.top_via().branch());
    black_box(m.max_forwards());
    black_box(m.content_length());
    black_box(m.body());
    u64::from(cseq.seq)
}

/// Timed path, rsip: parse, then read the same fields through its typed headers (Call-ID,
/// Max-Forwards and Content-Length have only untyped forms, read as rsip offers them).
#[inline(never)]
fn proxy_read_rsip(buf: &[u8]) -> u64 {
    use rsip::prelude::*;
    let Ok(m) = rsip::SipMessage::try_from(buf) else {
        return u64::MAX;
    };
    let _ = black_box(m.call_id_header().map(|h| h.value()));
    let seq = match m.cseq_header().and_then(|h| h.typed()) {
        Ok(c) => black_box(c).seq,
        Err(_) => 0,
    };
    let _ = black_box(m.from_header().and_then(|h| h.tag()));
    let _ = black_box(m.to_header().and_then(|h| h.tag()));
    let _ = black_box(
        m.via_header()
            .and_then(|h| h.typed())
            .map(|v| v.branch().cloned()),
    );
    let _ = black_box(m.max_forwards_header().and_then(|h| h.num()));
    black_box(rsip_content_length(&m));
    black_box(m.body());
    u64::from(seq)
}

// ---------------------------------------------------------------------------------------
// Measurement

/// One parser's measurements on one message.
struct Side {
    /// Per-parse nanoseconds, one sample per batch.
    latency_ns: Histogram<u64>,
    parses: u64,
    busy: Duration,
    allocs_per_parse: f64,
}

impl Side {
    fn new() -> Side {
        Side {
            // 1 ns .. 10 ms per parse, 3 significant figures.
            latency_ns: Histogram::new_with_bounds(1, 10_000_000, 3)
                .expect("static histogram bounds are valid"),
            parses: 0,
            busy: Duration::ZERO,
            allocs_per_parse: 0.0,
        }
    }

    fn batch(&mut self, f: fn(&[u8]) -> u64, buf: &[u8]) {
        let t0 = Instant::now();
        for _ in 0..BATCH_PARSES {
            black_box(f(black_box(buf)));
        }
        let elapsed = t0.elapsed();
        let per_parse_ns = (elapsed.as_nanos() / u128::from(BATCH_PARSES)).max(1) as u64;
        self.latency_ns.saturating_record(per_parse_ns);
        self.parses += u64::from(BATCH_PARSES);
        self.busy += elapsed;
    }

    fn msgs_per_s(&self) -> f64 {
        self.parses as f64 / self.busy.as_secs_f64()
    }

    fn p(&self, q: f64) -> u64 {
        self.latency_ns.value_at_quantile(q)
    }
}

struct Report {
    name: &'static str,
    bytes: usize,
    ours: Side,
    rsip: Side,
}

impl Report {
    fn ratio(&self) -> f64 {
        self.ours.msgs_per_s() / self.rsip.msgs_per_s()
    }

    fn json(&self, mode: &str) -> String {
        format!(
            concat!(
                "{{\"bench\":\"sip_parse\",\"message\":\"{}\",\"mode\":\"{}\",\"bytes\":{},",
                "\"batch_parses\":{},",
                "\"ours_msgs_per_s\":{:.0},\"rsip_msgs_per_s\":{:.0},\"ratio\":{:.2},",
                "\"ours_p50_ns\":{},\"ours_p99_ns\":{},\"ours_p999_ns\":{},",
                "\"rsip_p50_ns\":{},\"rsip_p99_ns\":{},\"rsip_p999_ns\":{},",
                "\"ours_allocs_per_parse\":{:.2},\"rsip_allocs_per_parse\":{:.2},",
                "\"ours_parses\":{},\"rsip_parses\":{}}}"
            ),
            self.name,
            mode,
            self.bytes,
            BATCH_PARSES,
            self.ours.msgs_per_s(),
            self.rsip.msgs_per_s(),
            self.ratio(),
            self.ours.p(0.5),
            self.ours.p(0.99),
            self.ours.p(0.999),
            self.rsip.p(0.5),
            self.rsip.p(0.99),
            self.rsip.p(0.999),
            self.ours.allocs_per_parse,
            self.rsip.allocs_per_parse,
            self.ours.parses,
            self.rsip.parses,
        )
    }
}

/// Interleaves batches of both parsers: alternating which goes first each round, so neither
/// always runs with the other's cache footprint.
fn measure(name: &'static str, buf: &[u8], full: bool) -> Report {
    let mut ours = Side::new();
    let mut rsip = Side::new();
    if full {
        let mut scratch = (Side::new(), Side::new());
        let t0 = Instant::now();
        while t0.elapsed() < FULL_WARMUP {
            scratch.0.batch(proxy_read_ours, buf);
            scratch.1.batch(proxy_read_rsip, buf);
        }
    }
    let mut round: u64 = 0;
    let t0 = Instant::now();
    loop {
        let done = if full {
            t0.elapsed() >= FULL_MEASURE
        } else {
            round >= u64::from(SMOKE_ROUNDS)
        };
        if done {
            break;
        }
        if round % 2 == 0 {
            ours.batch(proxy_read_ours, buf);
            rsip.batch(proxy_read_rsip, buf);
        } else {
            rsip.batch(proxy_read_rsip, buf);
            ours.batch(proxy_read_ours, buf);
        }
        round += 1;
    }
    let alloc_parses = if full {
        FULL_ALLOC_PARSES
    } else {
        SMOKE_ALLOC_PARSES
    };
    ours.allocs_per_parse = allocations_per_parse(proxy_read_ours, buf, alloc_parses);
    rsip.allocs_per_parse = allocations_per_parse(proxy_read_rsip, buf, alloc_parses);
    Report {
        name,
        bytes: buf.len(),
        ours,
        rsip,
    }
}

/// Both parsers accept the message, consume all of it, and read the same values.
fn check_agreement(name: &str, buf: &[u8]) {
    let ours = fields_ours(buf).unwrap_or_else(|e| panic!("{name}: sip refuses it: {e}"));
    let theirs = fields_rsip(buf).unwrap_or_else(|e| panic!("{name}: rsip refuses it: {e}"));
    assert_eq!(ours, theirs, "{name}: the parsers disagree");
    let m = sip::Message::parse(buf).expect("parsed just above");
    assert_eq!(
        m.as_bytes().len(),
        buf.len(),
        "{name}: Content-Length does not cover the body exactly"
    );
    assert!(
        ours.top_via_branch.is_some() && ours.from_tag.is_some(),
        "{name}: a benchmark message without branch or from-tag measures the wrong thing"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    let full = std::env::args().any(|a| a == "--bench");
    let mode = if full { "full" } else { "smoke" };

    for (name, buf) in MESSAGES {
        check_agreement(name, buf);
    }

    let reports: Vec<Report> = MESSAGES
        .iter()
        .map(|&(name, buf)| measure(name, buf, full))
        .collect();

    println!(
        "sip_parse ({mode}): {BATCH_PARSES} parses per timed batch; latency is per parse (batch mean)"
    );
    println!(
        "{:<9} {:>5} | {:>12} {:>12} {:>7} | {:>21} | {:>21} | {:>13}",
        "message",
        "bytes",
        "sip msgs/s",
        "rsip msgs/s",
        "ratio",
        "sip p50/p99/p99.9 ns",
        "rsip p50/p99/p99.9 ns",
        "allocs sip/rsip"
    );
    for r in &reports {
        println!(
            "{:<9} {:>5} | {:>12.0} {:>12.0} {:>6.1}x | {:>21} | {:>21} | {:>13}",
            r.name,
            r.bytes,
            r.ours.msgs_per_s(),
            r.rsip.msgs_per_s(),
            r.ratio(),
            format!("{}/{}/{}", r.ours.p(0.5), r.ours.p(0.99), r.ours.p(0.999)),
            format!("{}/{}/{}", r.rsip.p(0.5), r.rsip.p(0.99), r.rsip.p(0.999)),
            format!(
                "{:.1}/{:.1}",
                r.ours.allocs_per_parse, r.rsip.allocs_per_parse
            ),
        );
    }
    for r in &reports {
        println!("{}", r.json(mode));
    }
    if let Some(inv) = reports.iter().find(|r| r.name == "invite") {
        let met = if inv.ratio() >= TARGET_RATIO_INVITE {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "target: >= {TARGET_RATIO_INVITE:.0}x rsip on invite: {met} ({:.1}x)",
            inv.ratio()
        );
        // The zero-allocation contract holds in both modes; throughput is only reported.
        assert_eq!(
            inv.ours.allocs_per_parse, 0.0,
            "sip::Message::parse allocated on the INVITE"
        );
    }
}
