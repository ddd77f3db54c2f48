//! Property tests: random valid SIP messages, rendered with random (legal) layout, parse back
//! to exactly the generated values; removing or duplicating required headers is refused with
//! the right error; no input, however mangled, makes the parser panic.
//!
//! Layout choices (LWS, folding, compact forms, header-name case, header order) come from a
//! small deterministic RNG seeded by the strategy. Seed 0 gives the plainest layout, so a
//! shrunk failure shows whether layout matters.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::sample::select;
use sip::{Contact, HeaderName, HostKind, Message, ParseError, Scheme, Uri};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// ---------------------------------------------------------------------------------------------
// Generated values
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum GHost {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl GHost {
    /// As written in a URI or Via sent-by.
    fn render(&self) -> String {
        match self {
            GHost::Name(n) => n.clone(),
            GHost::V4(a) => a.to_string(),
            GHost::V6(a) => format!("[{a}]"),
        }
    }
    /// `Host::text`: without brackets.
    fn text(&self) -> String {
        match self {
            GHost::Name(n) => n.clone(),
            GHost::V4(a) => a.to_string(),
            GHost::V6(a) => a.to_string(),
        }
    }
    fn kind(&self) -> HostKind {
        match self {
            GHost::Name(_) => HostKind::Name,
            GHost::V4(_) => HostKind::V4,
            GHost::V6(_) => HostKind::V6,
        }
    }
    fn ip(&self) -> Option<IpAddr> {
        match self {
            GHost::Name(_) => None,
            GHost::V4(a) => Some(IpAddr::V4(*a)),
            GHost::V6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

#[derive(Debug, Clone)]
enum GUri {
    Sip {
        sips: bool,
        user: Option<String>,
        password: Option<String>,
        host: GHost,
        port: Option<u16>,
        /// Rendered parameter section (`;a=b;lr`), possibly empty.
        params: String,
    },
    Tel {
        number: String,
        params: String,
    },
}

impl GUri {
    fn render(&self) -> String {
        match self {
            GUri::Sip {
                sips,
                user,
                password,
                host,
                port,
                params,
            } => {
                let mut s = String::from(if *sips { "sips:" } else { "sip:" });
                if let Some(u) = user {
                    s.push_str(u);
                    if let Some(p) = password {
                        s.push(':');
                        s.push_str(p);
                    }
                    s.push('@');
                }
                s.push_str(&host.render());
                if let Some(p) = port {
                    s.push_str(&format!(":{p}"));
                }
                s.push_str(params);
                s
            }
            GUri::Tel { number, params } => format!("tel:{number}{params}"),
        }
    }
}

#[derive(Debug, Clone)]
enum GDisplay {
    /// Tokens; joined with LWS at render time.
    Tokens(Vec<String>),
    /// The quoted string as written, quotes included.
    Quoted(String),
}

#[derive(Debug, Clone)]
struct GNameAddr {
    display: Option<GDisplay>,
    angle: bool,
    uri: GUri,
    /// Header parameters (name, value).
    params: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
struct GVia {
    transport: String,
    host: GHost,
    port: Option<u16>,
    branch: String,
    rport: Option<Option<u16>>,
    /// Rendered received value (IPv4, bare IPv6 or bracketed IPv6).
    received: Option<String>,
}

#[derive(Debug, Clone)]
enum GContacts {
    None,
    Star,
    List(Vec<GNameAddr>),
}

#[derive(Debug, Clone)]
enum GStart {
    Request { method: String, uri: GUri },
    Response { code: u16, reason: String },
}

#[derive(Debug, Clone)]
struct GMsg {
    start: GStart,
    cseq_method: String,
    cseq: u32,
    vias: Vec<GVia>,
    from: GNameAddr,
    to: GNameAddr,
    call_id: String,
    max_forwards: Option<u8>,
    contacts: GContacts,
    routes: Vec<GUri>,
    record_routes: Vec<GUri>,
    /// (name, value) of extension headers; names unique.
    extras: Vec<(String, String)>,
    body: Vec<u8>,
    content_length: bool,
    seed: u64,
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

const TOKEN: &str = "[A-Za-z0-9.!%*_+`'~-]";
const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{TOKEN}{{1,{max}}}")).unwrap()
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(&KNOWN_METHODS[..]).prop_map(String::from),
        1 => token(12),
    ]
}

fn hostname() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        "[a-zA-Z]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?(\\.[a-zA-Z]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?){0,3}",
    )
    .unwrap()
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<[u16; 8]>().prop_map(Ipv6Addr::from),
        // Runs of zeros, so that `::` shows up in every position.
        (any::<[u16; 8]>(), 0usize..8, 0usize..8).prop_map(|(mut s, a, b)| {
            let (lo, hi) = (a.min(b), a.max(b));
            for x in &mut s[lo..=hi] {
                *x = 0;
            }
            Ipv6Addr::from(s)
        }),
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_ipv6_mapped()),
        Just(Ipv6Addr::LOCALHOST),
        Just(Ipv6Addr::UNSPECIFIED),
    ]
}

fn host() -> impl Strategy<Value = GHost> {
    prop_oneof![
        hostname().prop_map(GHost::Name),
        any::<[u8; 4]>().prop_map(|o| GHost::V4(Ipv4Addr::from(o))),
        ipv6().prop_map(GHost::V6),
    ]
}

/// A user part with escapes. `restricted` leaves out what can't appear in an addr-spec
/// outside angle brackets in a list header (`;`, `,`, `?`).
fn user(restricted: bool) -> impl Strategy<Value = String> {
    let re = if restricted {
        "([A-Za-z0-9_.!~*'()&=+$/-]|%[0-9A-Fa-f]{2}){1,10}"
    } else {
        "([A-Za-z0-9_.!~*'()&=+$,;?/-]|%[0-9A-Fa-f]{2}){1,10}"
    };
    proptest::string::string_regex(re).unwrap()
}

fn uri_params() -> impl Strategy<Value = String> {
    let param = prop_oneof![
        Just(";lr".to_string()),
        select(&["udp", "tcp", "tls", "sctp", "ws"][..]).prop_map(|t| format!(";transport={t}")),
        Just(";user=phone".to_string()),
        (
            proptest::string::string_regex("([A-Za-z0-9_.!~*'()-]|%[0-9A-Fa-f]{2}){1,8}").unwrap(),
            proptest::option::of(
                proptest::string::string_regex(
                    "([A-Za-z0-9_.!~*'()\\[\\]/:&+$-]|%[0-9A-Fa-f]{2}){1,8}"
                )
                .unwrap()
            )
        )
            .prop_map(|(n, v)| match v {
                Some(v) => format!(";{n}={v}"),
                None => format!(";{n}"),
            }),
    ];
    proptest::collection::vec(param, 0..4).prop_map(|v| v.concat())
}

fn sip_uri(restricted: bool) -> impl Strategy<Value = GUri> {
    (
        any::<bool>(),
        proptest::option::of((
            user(restricted),
            proptest::option::of(
                proptest::string::string_regex(if restricted {
                    "([A-Za-z0-9&=+$_.!~*'()-]|%[0-9A-Fa-f]{2}){1,8}"
                } else {
                    "([A-Za-z0-9&=+$,_.!~*'()-]|%[0-9A-Fa-f]{2}){1,8}"
                })
                .unwrap(),
            ),
        )),
        host(),
        proptest::option::of(any::<u16>()),
        if restricted {
            Just(String::new()).boxed()
        } else {
            uri_params().boxed()
        },
    )
        .prop_map(|(sips, up, host, port, params)| {
            let (user, password) = match up {
                Some((u, p)) => (Some(u), p),
                None => (None, None),
            };
            GUri::Sip {
                sips,
                user,
                password,
                host,
                port,
                params,
            }
        })
}

fn tel_uri() -> impl Strategy<Value = GUri> {
    (
        prop_oneof![
            proptest::string::string_regex("\\+[0-9][0-9.()-]{0,12}").unwrap(),
            proptest::string::string_regex("[0-9A-F*#][0-9A-F*#.-]{0,8}").unwrap(),
        ],
        prop_oneof![
            Just(String::new()),
            hostname().prop_map(|h| format!(";phone-context={h}")),
        ],
    )
        .prop_map(|(number, params)| GUri::Tel { number, params })
}

fn any_uri() -> impl Strategy<Value = GUri> {
    prop_oneof![4 => sip_uri(false), 1 => tel_uri()]
}

fn quoted_display() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => proptest::string::string_regex("[ !#-\\[\\]-~]").unwrap(),
        1 => Just("\\\"".to_string()),
        1 => Just("\\\\".to_string()),
        1 => Just("é".to_string()),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| format!("\"{}\"", v.concat()))
}

fn display() -> impl Strategy<Value = Option<GDisplay>> {
    prop_oneof![
        Just(None),
        proptest::collection::vec(token(8), 1..4).prop_map(|t| Some(GDisplay::Tokens(t))),
        quoted_display().prop_map(|q| Some(GDisplay::Quoted(q))),
    ]
}

/// A name-addr or addr-spec; `params` are header parameters.
fn name_addr(
    params: impl Strategy<Value = Vec<(String, Option<String>)>>,
    allow_tel: bool,
) -> impl Strategy<Value = GNameAddr> {
    let angled = (
        display(),
        if allow_tel {
            any_uri().boxed()
        } else {
            sip_uri(false).boxed()
        },
    )
        .prop_map(|(display, uri)| (display, true, uri));
    let bare = sip_uri(true).prop_map(|uri| (None, false, uri));
    (prop_oneof![3 => angled, 1 => bare], params).prop_map(|((display, angle, uri), params)| {
        GNameAddr {
            display,
            angle,
            uri,
            params,
        }
    })
}

fn from_to_params(tag: bool) -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    (
        if tag {
            token(12).prop_map(Some).boxed()
        } else {
            proptest::option::of(token(12)).boxed()
        },
        proptest::option::of((
            proptest::string::string_regex("x-[a-z]{1,5}").unwrap(),
            token(6),
        )),
    )
        .prop_map(|(tag, extra)| {
            let mut v = Vec::new();
            if let Some(t) = tag {
                v.push(("tag".to_string(), Some(t)));
            }
            if let Some((n, val)) = extra {
                v.push((n, Some(val)));
            }
            v
        })
}

fn contact_params() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    (
        proptest::option::of(0u32..100_000),
        proptest::option::of(0u16..=1000),
        any::<bool>(),
    )
        .prop_map(|(expires, q, flag)| {
            let mut v = Vec::new();
            if let Some(e) = expires {
                v.push(("expires".to_string(), Some(e.to_string())));
            }
            if let Some(q) = q {
                let q = if q == 1000 {
                    "1".to_string()
                } else {
                    format!("0.{q:03}")
                };
                v.push(("q".to_string(), Some(q)));
            }
            if flag {
                v.push(("+sip.flag".to_string(), None));
            }
            v
        })
}

fn received() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
        ipv6().prop_map(|a| a.to_string()),
        ipv6().prop_map(|a| format!("[{a}]")),
    ]
}

fn via() -> impl Strategy<Value = GVia> {
    (
        prop_oneof![
            3 => select(&["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp"][..]).prop_map(String::from),
            1 => token(6),
        ],
        host(),
        proptest::option::of(any::<u16>()),
        token(16),
        proptest::option::of(proptest::option::of(any::<u16>())),
        proptest::option::of(received()),
    )
        .prop_map(|(transport, host, port, b, rport, received)| GVia {
            transport,
            host,
            port,
            branch: format!("z9hG4bK{b}"),
            rport,
            received,
        })
}

fn call_id() -> impl Strategy<Value = String> {
    let word = "[A-Za-z0-9.!%*_+`'~()<>:/\\[\\]?{}\\\\\"-]";
    proptest::string::string_regex(&format!("{word}{{1,16}}(@{word}{{1,10}})?")).unwrap()
}

fn extras() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            proptest::string::string_regex("[A-Za-z0-9-]{1,8}").unwrap(),
            proptest::string::string_regex("[!-~]( ?[!-~]){0,20}").unwrap(),
        ),
        0..4,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (n, val))| (format!("X-{i}-{n}"), val))
            .collect()
    })
}

fn start_line() -> impl Strategy<Value = (GStart, String)> {
    prop_oneof![
        3 => (method(), any_uri()).prop_map(|(m, uri)| (
            GStart::Request {
                method: m.clone(),
                uri
            },
            m
        )),
        1 => (
            100u16..700,
            proptest::string::string_regex("([!-~]( ?[!-~]){0,20})?").unwrap(),
            method()
        )
            .prop_map(|(code, reason, m)| (GStart::Response { code, reason }, m)),
    ]
}

fn gmsg() -> impl Strategy<Value = GMsg> {
    (
        (
            start_line(),
            0u32..(1 << 31),
            proptest::collection::vec(via(), 1..=5),
            name_addr(from_to_params(true), true),
            name_addr(from_to_params(false), true),
            call_id(),
            proptest::option::of(any::<u8>()),
        ),
        (
            prop_oneof![
                Just(GContacts::None),
                Just(GContacts::Star),
                proptest::collection::vec(name_addr(contact_params(), false), 1..4)
                    .prop_map(GContacts::List),
            ],
            proptest::collection::vec(sip_uri(false), 0..3),
            proptest::collection::vec(sip_uri(false), 0..3),
            extras(),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
            prop_oneof![1 => Just(0u64), 3 => any::<u64>()],
        ),
    )
        .prop_map(
            |(
                ((start, cseq_method), cseq, vias, from, to, call_id, max_forwards),
                (contacts, routes, record_routes, extras, body, cl, seed),
            )| GMsg {
                start,
                cseq_method,
                cseq,
                vias,
                from,
                to,
                call_id,
                max_forwards,
                contacts,
                routes,
                record_routes,
                extras,
                // Without Content-Length the body is the rest of the datagram; keep it
                // when present, so it's exactly what was generated either way.
                content_length: cl || !body.is_empty(),
                body,
                seed,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// xorshift64*; a zero seed always answers 0, the plainest choice.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        if self.0 == 0 {
            return 0;
        }
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 16
    }
    fn pick<'s>(&mut self, options: &[&'s str]) -> &'s str {
        options[(self.next() % options.len() as u64) as usize]
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.0 != 0 && self.next() % one_in == 0
    }
    /// Fisher-Yates; leaves the order alone for the zero seed.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        if self.0 == 0 {
            return;
        }
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
    /// Optional LWS, folds included.
    fn olws(&mut self) -> &'static str {
        if self.chance(2) {
            self.pick(&["", " ", "\t", "  ", "\r\n ", "\r\n\t", " \r\n  "])
        } else {
            ""
        }
    }
    /// Required LWS.
    fn rlws(&mut self) -> &'static str {
        self.pick(&[" ", "\t", "  ", "\r\n ", "\r\n\t", " \r\n "])
    }
}

fn render_display(d: &GDisplay, rng: &mut Rng) -> String {
    match d {
        GDisplay::Quoted(q) => q.clone(),
        GDisplay::Tokens(t) => {
            let mut s = String::new();
            for (i, tok) in t.iter().enumerate() {
                if i > 0 {
                    s.push_str(rng.rlws());
                }
                s.push_str(tok);
            }
            s
        }
    }
}

fn render_params(params: &[(String, Option<String>)], rng: &mut Rng) -> String {
    let mut s = String::new();
    for (n, v) in params {
        s.push_str(rng.olws());
        s.push(';');
        s.push_str(rng.olws());
        s.push_str(n);
        if let Some(v) = v {
            s.push_str(rng.olws());
            s.push('=');
            s.push_str(rng.olws());
            s.push_str(v);
        }
    }
    s
}

/// Renders a name-addr; returns it and the display name as it must come back.
fn render_name_addr(na: &GNameAddr, rng: &mut Rng) -> (String, Option<String>) {
    let mut s = String::new();
    let mut dn = None;
    if let Some(d) = &na.display {
        let r = render_display(d, rng);
        s.push_str(&r);
        s.push_str(match d {
            // LWS between tokens and '<' is optional (RFC 4475 lwsdisp).
            GDisplay::Tokens(_) => {
                if rng.chance(2) {
                    ""
                } else {
                    rng.rlws()
                }
            }
            GDisplay::Quoted(_) => rng.olws(),
        });
        dn = Some(r);
    }
    if na.angle {
        s.push('<');
        s.push_str(&na.uri.render());
        s.push('>');
    } else {
        s.push_str(&na.uri.render());
    }
    s.push_str(&render_params(&na.params, rng));
    (s, dn)
}

fn render_via(v: &GVia, rng: &mut Rng) -> String {
    let mut s = String::new();
    s.push_str(rng.pick(&["SIP", "sip"]));
    s.push_str(rng.olws());
    s.push('/');
    s.push_str(rng.olws());
    s.push_str("2.0");
    s.push_str(rng.olws());
    s.push('/');
    s.push_str(rng.olws());
    s.push_str(&v.transport);
    s.push_str(rng.rlws());
    s.push_str(&v.host.render());
    if let Some(p) = v.port {
        s.push_str(rng.olws());
        s.push(':');
        s.push_str(rng.olws());
        s.push_str(&p.to_string());
    }
    let mut params = vec![("branch".to_string(), Some(v.branch.clone()))];
    if let Some(r) = v.rport {
        params.push(("rport".to_string(), r.map(|p| p.to_string())));
    }
    if let Some(r) = &v.received {
        params.push(("received".to_string(), Some(r.clone())));
    }
    // Random parameter order.
    rng.shuffle(&mut params);
    s.push_str(&render_params(&params, rng));
    s
}

/// Joins list elements over one or more header lines.
fn split_list(elements: Vec<String>, rng: &mut Rng) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for e in elements {
        match lines.last_mut() {
            Some(l) if !rng.chance(3) => {
                l.push_str(rng.olws());
                l.push(',');
                l.push_str(rng.olws());
                l.push_str(&e);
            }
            _ => lines.push(e),
        }
    }
    lines
}

fn header_name(name: HeaderName, rng: &mut Rng) -> String {
    let full = name.as_str();
    let written: String = match name.compact() {
        Some(c) if rng.chance(3) => (c as char).to_string(),
        _ => full.to_string(),
    };
    written
        .chars()
        .map(|c| {
            if rng.chance(4) {
                if c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }
            } else {
                c
            }
        })
        .collect()
}

/// One header line, without its CRLF.
fn line(name: &str, value: &str, rng: &mut Rng) -> String {
    let before = if rng.chance(3) {
        rng.pick(&[" ", "\t", "  "])
    } else {
        ""
    };
    let after = if rng.chance(3) {
        rng.pick(&["", "\t", "  ", "\r\n ", " \r\n\t"])
    } else {
        " "
    };
    let trail = if rng.chance(4) {
        rng.pick(&[" ", "\t"])
    } else {
        ""
    };
    format!("{name}{before}:{after}{value}{trail}")
}

/// Header lines grouped (a group stays together, in order), tagged with the header name.
type Groups = Vec<Vec<(HeaderName, String)>>;

fn render_groups(g: &GMsg, rng: &mut Rng) -> (String, Groups, Vec<Option<String>>) {
    let start = match &g.start {
        GStart::Request { method, uri } => {
            format!(
                "{method} {} {}",
                uri.render(),
                rng.pick(&["SIP/2.0", "sip/2.0"])
            )
        }
        GStart::Response { code, reason } => format!("SIP/2.0 {code} {reason}"),
    };
    let mut groups: Groups = Vec::new();
    let mut named = |name: HeaderName, values: Vec<String>, rng: &mut Rng| {
        let grp = values
            .into_iter()
            .map(|v| (name, line(&header_name(name, rng), &v, rng)))
            .collect::<Vec<_>>();
        groups.push(grp);
    };
    let vias: Vec<String> = g.vias.iter().map(|v| render_via(v, rng)).collect();
    let vias = split_list(vias, rng);
    named(HeaderName::Via, vias, rng);
    let (from, from_dn) = render_name_addr(&g.from, rng);
    named(HeaderName::From, vec![from], rng);
    let (to, to_dn) = render_name_addr(&g.to, rng);
    named(HeaderName::To, vec![to], rng);
    named(HeaderName::CallId, vec![g.call_id.clone()], rng);
    let cseq = format!("{}{}{}", g.cseq, rng.rlws(), g.cseq_method);
    named(HeaderName::CSeq, vec![cseq], rng);
    if let Some(mf) = g.max_forwards {
        named(HeaderName::MaxForwards, vec![mf.to_string()], rng);
    }
    let mut contact_dns = Vec::new();
    match &g.contacts {
        GContacts::None => {}
        GContacts::Star => named(HeaderName::Contact, vec!["*".to_string()], rng),
        GContacts::List(list) => {
            let mut els = Vec::new();
            for c in list {
                let (s, dn) = render_name_addr(c, rng);
                els.push(s);
                contact_dns.push(dn);
            }
            let lines = split_list(els, rng);
            named(HeaderName::Contact, lines, rng);
        }
    }
    for (name, list) in [
        (HeaderName::Route, &g.routes),
        (HeaderName::RecordRoute, &g.record_routes),
    ] {
        if !list.is_empty() {
            let els = list.iter().map(|u| format!("<{}>", u.render())).collect();
            let lines = split_list(els, rng);
            named(name, lines, rng);
        }
    }
    for (n, v) in &g.extras {
        // Fold inside the value at a space, sometimes.
        let v = if rng.chance(3) {
            v.replacen(' ', "\r\n ", 1)
        } else {
            v.clone()
        };
        groups.push(vec![(HeaderName::Other, line(n, &v, rng))]);
    }
    if g.content_length {
        let cl = g.body.len().to_string();
        let grp = vec![(
            HeaderName::ContentLength,
            line(&header_name(HeaderName::ContentLength, rng), &cl, rng),
        )];
        groups.push(grp);
    }
    // Shuffle group order.
    rng.shuffle(&mut groups);
    let mut dns = vec![from_dn, to_dn];
    dns.extend(contact_dns);
    (start, groups, dns)
}

fn assemble(start: &str, lines: &[(HeaderName, String)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(start.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (_, l) in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The message text and the display names (From, To, Contacts...) as they must come back.
fn render(g: &GMsg) -> (Vec<u8>, Vec<Option<String>>) {
    let mut rng = Rng(g.seed);
    let (start, groups, dns) = render_groups(g, &mut rng);
    let lines: Vec<_> = groups.into_iter().flatten().collect();
    (assemble(&start, &lines, &g.body), dns)
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

fn b(s: &str) -> &[u8] {
    s.as_bytes()
}

fn check_host(got: &sip::Host<'_>, exp: &GHost) {
    assert_eq!(got.kind, exp.kind(), "{got:?} vs {exp:?}");
    assert_eq!(got.text, b(&exp.text()));
    assert_eq!(got.ip(), exp.ip());
}

fn check_uri(got: &Uri<'_>, exp: &GUri) {
    assert_eq!(got.as_bytes(), b(&exp.render()));
    match exp {
        GUri::Sip {
            sips,
            user,
            password,
            host,
            port,
            params,
        } => {
            assert_eq!(got.scheme, if *sips { Scheme::Sips } else { Scheme::Sip });
            assert_eq!(got.user, user.as_deref().map(b));
            assert_eq!(got.password, password.as_deref().map(b));
            check_host(got.host.as_ref().expect("a host"), host);
            assert_eq!(got.port, *port);
            assert_eq!(got.params.as_bytes(), b(params));
        }
        GUri::Tel { number, params } => {
            assert_eq!(got.scheme, Scheme::Tel);
            assert_eq!(got.user, Some(b(number)));
            assert_eq!(got.host, None);
            assert_eq!(got.params.as_bytes(), b(params));
        }
    }
}

fn check_name_addr(got: &sip::NameAddr<'_>, exp: &GNameAddr, dn: &Option<String>) {
    assert_eq!(got.angle, exp.angle);
    assert_eq!(got.display_name, dn.as_deref().map(b));
    check_uri(&got.uri, &exp.uri);
    let params: Vec<_> = got.params.iter().collect();
    assert_eq!(params.len(), exp.params.len(), "{:?}", got.params);
    for ((gn, gv), (en, ev)) in params.iter().zip(&exp.params) {
        assert_eq!(*gn, b(en));
        assert_eq!(*gv, ev.as_deref().map(b));
    }
}

fn check(g: &GMsg, buf: &[u8], dns: &[Option<String>]) {
    let m = Message::parse(buf)
        .unwrap_or_else(|e| panic!("refused with {e:?}:\n{}", String::from_utf8_lossy(buf)));
    match &g.start {
        GStart::Request { method, uri } => {
            assert_eq!(m.method().expect("a request").as_bytes(), b(method));
            check_uri(m.request_uri().expect("a request"), uri);
        }
        GStart::Response { code, reason } => {
            assert_eq!(m.status(), Some(*code));
            assert_eq!(m.reason(), Some(b(reason)));
        }
    }
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), g.vias.len());
    for (got, exp) in vias.iter().zip(&g.vias) {
        assert_eq!(got.transport, b(&exp.transport));
        check_host(&got.host, &exp.host);
        assert_eq!(got.port, exp.port);
        assert_eq!(got.branch(), Some(b(&exp.branch)));
        assert_eq!(got.rport(), exp.rport);
        assert_eq!(got.received(), exp.received.as_deref().map(b));
    }
    assert_eq!(m.top_via(), &vias[0]);
    check_name_addr(m.from(), &g.from, &dns[0]);
    check_name_addr(m.to(), &g.to, &dns[1]);
    assert_eq!(m.from_tag(), g.from.params[0].1.as_deref().map(b));
    assert_eq!(m.call_id(), b(&g.call_id));
    assert_eq!(m.cseq().seq, g.cseq);
    assert_eq!(m.cseq().method, b(&g.cseq_method));
    assert_eq!(m.max_forwards(), g.max_forwards);
    let contacts: Vec<_> = m.contacts().collect();
    match &g.contacts {
        GContacts::None => assert!(contacts.is_empty()),
        GContacts::Star => assert_eq!(contacts, [Contact::Star]),
        GContacts::List(list) => {
            assert_eq!(contacts.len(), list.len());
            for (i, (got, exp)) in contacts.iter().zip(list).enumerate() {
                let Contact::Addr(got) = got else {
                    panic!("contact {i} is *")
                };
                check_name_addr(got, exp, &dns[2 + i]);
            }
        }
    }
    let routes: Vec<_> = m.routes().collect();
    assert_eq!(routes.len(), g.routes.len());
    for (got, exp) in routes.iter().zip(&g.routes) {
        check_uri(&got.uri, exp);
    }
    let rr: Vec<_> = m.record_routes().collect();
    assert_eq!(rr.len(), g.record_routes.len());
    for (got, exp) in rr.iter().zip(&g.record_routes) {
        check_uri(&got.uri, exp);
    }
    for (n, v) in &g.extras {
        let got = m.header_by_name(b(n)).expect("extension header");
        // Folds come back as written; compare with them taken out.
        let unfolded: Vec<u8> = String::from_utf8_lossy(got)
            .replace("\r\n ", " ")
            .into_bytes();
        assert_eq!(unfolded, b(v));
    }
    assert_eq!(
        m.content_length(),
        g.content_length.then_some(g.body.len() as u32)
    );
    assert_eq!(m.body(), &g.body[..]);
    assert_eq!(m.as_bytes(), buf);
}

/// `cases` by default; `PROPTEST_CASES` overrides it for a longer hunt.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// A generated message parses back to every generated value.
    #[test]
    fn roundtrip(g in gmsg()) {
        let (buf, dns) = render(&g);
        check(&g, &buf, &dns);
    }

    /// Removing every line of a required header gives `MissingHeader(that)`.
    #[test]
    fn missing_required_header(
        g in gmsg(),
        which in select(&[
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ][..]),
    ) {
        let mut rng = Rng(g.seed);
        let (start, groups, _) = render_groups(&g, &mut rng);
        let lines: Vec<_> = groups.into_iter().flatten().filter(|(n, _)| *n != which).collect();
        let buf = assemble(&start, &lines, &g.body);
        prop_assert_eq!(Message::parse(&buf).unwrap_err(), ParseError::MissingHeader(which));
    }

    /// Repeating a single-valued header line gives `DuplicateHeader(that)`.
    #[test]
    fn duplicate_single_valued_header(
        g in gmsg(),
        pick in 0usize..6,
        at_end in any::<bool>(),
    ) {
        let mut rng = Rng(g.seed);
        let (start, groups, _) = render_groups(&g, &mut rng);
        let mut lines: Vec<_> = groups.into_iter().flatten().collect();
        let candidates: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| matches!(
                n,
                HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
                    | HeaderName::MaxForwards
                    | HeaderName::ContentLength
            ))
            .map(|(i, _)| i)
            .collect();
        let i = candidates[pick % candidates.len()];
        let dup = lines[i].clone();
        if at_end {
            lines.push(dup.clone());
        } else {
            lines.insert(i + 1, dup.clone());
        }
        let buf = assemble(&start, &lines, &g.body);
        prop_assert_eq!(Message::parse(&buf).unwrap_err(), ParseError::DuplicateHeader(dup.0));
    }

    /// Every prefix of a valid message parses or is refused; none panics.
    #[test]
    fn truncation_never_panics(g in gmsg()) {
        let (buf, _) = render(&g);
        for end in 0..buf.len() {
            let _ = Message::parse(&buf[..end]);
        }
    }

    /// Flipping bytes of a valid message never panics.
    #[test]
    fn mutation_never_panics(
        g in gmsg(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (mut buf, _) = render(&g);
        for (i, v) in edits {
            let i = i.index(buf.len());
            buf[i] = v;
        }
        let _ = Message::parse(&buf);
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary bytes never panic.
    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::parse(&buf);
    }

    /// Arbitrary SIP-ish text never panics: bytes drawn from the characters that matter.
    #[test]
    fn sipish_bytes_never_panic(
        buf in proptest::collection::vec(
            select(&b"SIP/2.0 :;,<>\"\\[]@%=\r\n\tabvz9%0123456789"[..]),
            0..512,
        ),
    ) {
        let _ = Message::parse(&buf);
    }
}

/// The plainest rendering of a fixed message, as a sanity check of the generator itself.
#[test]
fn generator_sanity_plain_layout() {
    let g = GMsg {
        start: GStart::Request {
            method: "INVITE".into(),
            uri: GUri::Sip {
                sips: false,
                user: Some("alice".into()),
                password: None,
                host: GHost::V6("2001:db8::1".parse().unwrap()),
                port: Some(5060),
                params: ";transport=tcp".into(),
            },
        },
        cseq_method: "INVITE".into(),
        cseq: 1,
        vias: vec![GVia {
            transport: "UDP".into(),
            host: GHost::V4(Ipv4Addr::new(192, 0, 2, 1)),
            port: None,
            branch: "z9hG4bK1".into(),
            rport: Some(None),
            received: None,
        }],
        from: GNameAddr {
            display: Some(GDisplay::Quoted("\"A\"".into())),
            angle: true,
            uri: GUri::Tel {
                number: "+1555".into(),
                params: String::new(),
            },
            params: vec![("tag".into(), Some("t1".into()))],
        },
        to: GNameAddr {
            display: None,
            angle: false,
            uri: GUri::Sip {
                sips: false,
                user: Some("bob".into()),
                password: None,
                host: GHost::Name("example.com".into()),
                port: None,
                params: String::new(),
            },
            params: vec![],
        },
        call_id: "c@h".into(),
        max_forwards: Some(70),
        contacts: GContacts::Star,
        routes: vec![],
        record_routes: vec![],
        extras: vec![("X-0-a".into(), "b c".into())],
        body: b"hi".to_vec(),
        content_length: true,
        seed: 0,
    };
    let (buf, dns) = render(&g);
    assert_eq!(
        String::from_utf8(buf.clone()).unwrap(),
        "INVITE sip:alice@[2001:db8::1]:5060;transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;rport\r\n\
         From: \"A\"<tel:+1555>;tag=t1\r\n\
         To: sip:bob@example.com\r\n\
         Call-ID: c@h\r\n\
         CSeq: 1 INVITE\r\n\
         Max-Forwards: 70\r\n\
         Contact: *\r\n\
         X-0-a: b c\r\n\
         Content-Length: 2\r\n\
         \r\n\
         hi"
    );
    check(&g, &buf, &dns);
}
