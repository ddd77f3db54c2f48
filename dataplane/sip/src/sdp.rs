//! SDP (RFC 8866, formerly RFC 4566) parsing and rewriting, sans-IO.
//!
//! What it does:
//! - [`Sdp::parse`] checks a whole session description held in a `&[u8]` (CRLF or bare LF
//!   line ends) and returns a zero-copy view that borrows the input. Every defect is an
//!   [`SdpError`] naming what is wrong and the 1-based line where it is.
//! - Session-level `v=`, `o=`, `s=`, `c=`, `t=`, `b=` and attributes; any number of media
//!   sections (`m=`, with their own `c=`, `b=` and attributes). The attributes media anchoring
//!   needs are typed ([`AttrKind`]): `rtpmap`, `fmtp`, `ptime`, `maxptime`, `rtcp` (RFC 3605),
//!   `rtcp-mux` and the four directions. Every other attribute (`ice-*`, `crypto`,
//!   `candidate`, ...) is kept opaque as `name[:value]`.
//! - Offer/answer helpers: [`Sdp::connection_for`], [`Sdp::direction`],
//!   [`Sdp::payload_types`], [`Sdp::rtpmap`] (with the RFC 3551 static payload types),
//!   [`Sdp::telephone_event`].
//! - [`SdpRewrite`]: an edit list (connection address, origin address and version, media
//!   ports, `a=rtcp`, `a=rtcp-mux`, direction, payload type removal) applied in one pass over
//!   the original lines. Lines no edit touches are copied byte for byte and in order; every
//!   line is written with CRLF.
//!
//! What it does not do:
//! - Offer/answer negotiation (RFC 3264): choosing codecs or answering is the caller's job.
//! - Typed views of ICE, DTLS, SRTP crypto, `rtcp-fb`, `ssrc`, `group` or `extmap`: they are
//!   opaque attributes (removing a payload type does drop its `a=rtcp-fb` lines).
//! - Network types other than `IN` and address types other than `IP4`/`IP6` are rejected;
//!   so are IPv6 zone identifiers (`fe80::1%eth0`).
//! - `r=`, `z=`, `k=`, `i=`, `u=`, `e=`, `p=` are accepted and kept, but not interpreted.
//! - Free text (`s=`, `i=`, ...) may be in any charset and is returned as bytes; every
//!   structured line must be UTF-8.
//! - Trailing empty lines are ignored (and not written back by the rewriter); a missing
//!   final line end is accepted (and written back as CRLF).
//! - Session-level lines are accepted in any order after `v=` (real-world peers are not
//!   always strict), but session-only fields inside a media section are rejected.

use core::fmt;
use core::ops::Range;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use smallvec::SmallVec;

/// Most lines one session description may have (a long ICE candidate list is ~100).
pub const MAX_SDP_LINES: usize = 1024;
/// Most media sections (`m=` lines) one session description may have.
pub const MAX_MEDIA_SECTIONS: usize = 64;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a session description was rejected. `line` is 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// The body holds no lines at all.
    Empty,
    /// More than [`MAX_SDP_LINES`] lines.
    TooManyLines { limit: usize },
    /// More than [`MAX_MEDIA_SECTIONS`] media sections; `line` is the first `m=` over the limit.
    TooManyMedia { line: usize, limit: usize },
    /// The line is not `<letter>=<value>`, or holds a byte it may not.
    BadLine { line: usize, reason: LineDefect },
    /// The first line is not `v=`.
    MissingVersion { line: usize },
    /// `v=` is not `v=0`.
    BadVersion { line: usize },
    /// A mandatory field (`o`, `s` or `t`) is absent; `line` is where it was due (the first
    /// `m=` line, or one past the last line).
    MissingField { line: usize, field: char },
    /// A field that may appear once per section appears again.
    DuplicateField { line: usize, field: char },
    /// A session-only field (`v`, `o`, `s`, `t`, `r`, `z`, `u`, `e`, `p`) inside a media section.
    MisplacedField { line: usize, field: char },
    /// Bad `o=` line.
    BadOrigin { line: usize, reason: &'static str },
    /// Bad `c=` line.
    BadConnection { line: usize, reason: &'static str },
    /// Bad `b=` line.
    BadBandwidth { line: usize },
    /// Bad `t=` line.
    BadTiming { line: usize },
    /// Bad `m=` line (other than its port).
    BadMedia { line: usize, reason: &'static str },
    /// The port or number of ports of an `m=` line is not a number in range.
    BadPort { line: usize },
    /// Bad `a=` line: the name is not a token, or a typed attribute's value is malformed.
    BadAttribute { line: usize, reason: &'static str },
}

/// What is wrong with a line's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineDefect {
    /// An empty line before the end of the body.
    Empty,
    /// No `=` as the second byte (`m =video`, `v`).
    NoEquals,
    /// The type is not a lowercase ASCII letter.
    BadType,
    /// A lowercase letter that is not an SDP field type.
    UnknownType,
    /// NUL or a bare CR inside the line.
    ControlByte,
    /// A structured line that is not UTF-8.
    NotUtf8,
}

impl SdpError {
    /// The 1-based line number of the defect, where there is one.
    pub fn line(&self) -> Option<usize> {
        match *self {
            SdpError::Empty | SdpError::TooManyLines { .. } => None,
            SdpError::TooManyMedia { line, .. }
            | SdpError::BadLine { line, .. }
            | SdpError::MissingVersion { line }
            | SdpError::BadVersion { line }
            | SdpError::MissingField { line, .. }
            | SdpError::DuplicateField { line, .. }
            | SdpError::MisplacedField { line, .. }
            | SdpError::BadOrigin { line, .. }
            | SdpError::BadConnection { line, .. }
            | SdpError::BadBandwidth { line }
            | SdpError::BadTiming { line }
            | SdpError::BadMedia { line, .. }
            | SdpError::BadPort { line }
            | SdpError::BadAttribute { line, .. } => Some(line),
        }
    }
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::Empty => write!(f, "empty session description"),
            SdpError::TooManyLines { limit } => write!(f, "more than {limit} lines"),
            SdpError::TooManyMedia { line, limit } => {
                write!(f, "line {line}: more than {limit} media sections")
            }
            SdpError::BadLine { line, reason } => write!(f, "line {line}: bad line: {reason:?}"),
            SdpError::MissingVersion { line } => write!(f, "line {line}: first line is not v="),
            SdpError::BadVersion { line } => write!(f, "line {line}: version is not 0"),
            SdpError::MissingField { line, field } => {
                write!(f, "line {line}: missing mandatory {field}= line")
            }
            SdpError::DuplicateField { line, field } => {
                write!(f, "line {line}: duplicate {field}= line")
            }
            SdpError::MisplacedField { line, field } => {
                write!(f, "line {line}: {field}= is not allowed in a media section")
            }
            SdpError::BadOrigin { line, reason } => write!(f, "line {line}: bad o=: {reason}"),
            SdpError::BadConnection { line, reason } => {
                write!(f, "line {line}: bad c=: {reason}")
            }
            SdpError::BadBandwidth { line } => write!(f, "line {line}: bad b="),
            SdpError::BadTiming { line } => write!(f, "line {line}: bad t="),
            SdpError::BadMedia { line, reason } => write!(f, "line {line}: bad m=: {reason}"),
            SdpError::BadPort { line } => write!(f, "line {line}: bad port in m="),
            SdpError::BadAttribute { line, reason } => {
                write!(f, "line {line}: bad a=: {reason}")
            }
        }
    }
}

impl std::error::Error for SdpError {}

// ---------------------------------------------------------------------------------------
// Field types
// ---------------------------------------------------------------------------------------

/// `IP4` or `IP6` (the network type is always `IN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrType {
    Ip4,
    Ip6,
}

impl AddrType {
    /// The SDP token: `IP4` or `IP6`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
        }
    }

    /// The address type of an IP address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }
}

/// `o=<username> <sess-id> <sess-version> IN <addrtype> <unicast-address>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub username: &'a str,
    /// Kept as text: RFC 8866 only asks for a numeric string, which may exceed 64 bits.
    pub session_id: &'a str,
    pub session_version: u64,
    pub addrtype: AddrType,
    /// An IP literal or a domain name.
    pub address: &'a str,
    pub line: usize,
}

/// `c=IN <addrtype> <address>[/<ttl>][/<number of addresses>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection<'a> {
    pub addrtype: AddrType,
    /// The address without `/ttl` or `/number`: an IP literal or a domain name.
    pub address: &'a str,
    /// Multicast TTL (IPv4 only).
    pub ttl: Option<u8>,
    /// Number of multicast addresses.
    pub num_addrs: Option<u32>,
    pub line: usize,
}

impl Connection<'_> {
    /// The address as an IP address, or `None` for a domain name.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.addrtype {
            AddrType::Ip4 => self.address.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            AddrType::Ip6 => self.address.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        }
    }

    /// `c=IN IP4 0.0.0.0`: the RFC 2543 way to put a call on hold.
    pub fn is_hold_address(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// `t=<start-time> <stop-time>` (NTP seconds; 0 means unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
    pub line: usize,
}

/// `b=<bwtype>:<bandwidth>`. The unit depends on the type: kbit/s for `AS` and `CT`,
/// bit/s for `TIAS`, `RR` and `RS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth<'a> {
    pub bwtype: &'a str,
    pub value: u64,
    pub line: usize,
}

/// Media direction (RFC 3264 §5.1). Absent everywhere means `SendRecv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The attribute name: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction seen from the other end (an answer to `sendonly` is `recvonly`).
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.as_str()))
    }
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtpmap<'a> {
    pub pt: u8,
    pub encoding: &'a str,
    /// Absent only in a malformed but tolerated `a=rtpmap:<pt> <name>`.
    pub clock_rate_hz: Option<u32>,
    /// Audio channels when given (absent means 1).
    pub channels: Option<u16>,
}

impl Rtpmap<'_> {
    /// RFC 4733 `telephone-event` (DTMF).
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }
}

/// `a=fmtp:<format> <format specific parameters>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fmtp<'a> {
    /// The format as written (a payload type for RTP).
    pub format: &'a str,
    /// The payload type when the format is one (0..=127).
    pub pt: Option<u8>,
    pub params: &'a str,
}

/// `a=rtcp:<port> [IN <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp<'a> {
    pub port: u16,
    pub address: Option<(AddrType, &'a str)>,
}

/// The typed reading of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind<'a> {
    Rtpmap(Rtpmap<'a>),
    Fmtp(Fmtp<'a>),
    Ptime(Duration),
    MaxPtime(Duration),
    Rtcp(Rtcp<'a>),
    RtcpMux,
    Direction(Direction),
    /// Any other attribute: read `name` and `value`.
    Other,
}

/// `a=<name>[:<value>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
    pub kind: AttrKind<'a>,
    pub line: usize,
}

/// One media section: `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` and the lines
/// under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media<'a> {
    /// `audio`, `video`, `application`, `image`, ...
    pub media: &'a str,
    /// 0 means the stream is rejected or disabled (RFC 3264 §6).
    pub port: u16,
    pub num_ports: Option<u16>,
    pub proto: &'a str,
    /// The format list as written (space separated).
    pub formats: &'a str,
    /// The first media-level `c=` line.
    pub connection: Option<Connection<'a>>,
    pub line: usize,
    attrs: Range<usize>,
    bandwidths: Range<usize>,
}

impl<'a> Media<'a> {
    /// The formats in order.
    pub fn formats(&self) -> impl Iterator<Item = &'a str> + 'a {
        split_fields(self.formats)
    }

    /// Whether the transport is RTP (`RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`, ...), in which
    /// case every format is a payload type.
    pub fn is_rtp(&self) -> bool {
        is_rtp_proto(self.proto)
    }

    /// The payload types in order (empty when the transport is not RTP).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + 'a {
        let rtp = self.is_rtp();
        self.formats()
            .filter(move |_| rtp)
            .filter_map(|f| f.parse::<u8>().ok())
    }

    /// Port 0: the stream is rejected or disabled.
    pub fn is_disabled(&self) -> bool {
        self.port == 0
    }
}

/// The RFC 3551 static payload types (those with a fixed meaning).
pub fn static_rtpmap(pt: u8) -> Option<Rtpmap<'static>> {
    let (encoding, clock_rate_hz, channels) = match pt {
        0 => ("PCMU", 8000, None),
        3 => ("GSM", 8000, None),
        4 => ("G723", 8000, None),
        5 => ("DVI4", 8000, None),
        6 => ("DVI4", 16000, None),
        7 => ("LPC", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        10 => ("L16", 44100, Some(2)),
        11 => ("L16", 44100, None),
        12 => ("QCELP", 8000, None),
        13 => ("CN", 8000, None),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, None),
        16 => ("DVI4", 11025, None),
        17 => ("DVI4", 22050, None),
        18 => ("G729", 8000, None),
        25 => ("CelB", 90000, None),
        26 => ("JPEG", 90000, None),
        28 => ("nv", 90000, None),
        31 => ("H261", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        34 => ("H263", 90000, None),
        _ => return None,
    };
    Some(Rtpmap {
        pt,
        encoding,
        clock_rate_hz: Some(clock_rate_hz),
        channels,
    })
}

// ---------------------------------------------------------------------------------------
// The parsed view
// ---------------------------------------------------------------------------------------

/// A checked session description borrowing its input.
#[derive(Debug, Clone)]
pub struct Sdp<'a> {
    src: &'a [u8],
    lines: SmallVec<[LineSpan; 32]>,
    origin: Origin<'a>,
    session_name: &'a [u8],
    connection: Option<Connection<'a>>,
    timings: SmallVec<[Timing; 1]>,
    /// All `b=` lines in order: session-level first, then each media's.
    bandwidths: SmallVec<[Bandwidth<'a>; 4]>,
    session_bandwidths: Range<usize>,
    /// All `a=` lines in order: session-level first, then each media's.
    attributes: SmallVec<[Attribute<'a>; 16]>,
    session_attrs: Range<usize>,
    media: SmallVec<[Media<'a>; 4]>,
}

/// Where a line lies in the input. Line number = index in `Sdp::lines` + 1.
#[derive(Debug, Clone)]
struct LineSpan {
    kind: u8,
    /// The line without its line end.
    content: Range<usize>,
}

impl<'a> Sdp<'a> {
    /// Parses and checks a whole session description.
    pub fn parse(src: &'a [u8]) -> Result<Self, SdpError> {
        let spans = split_lines(src)?;
        let mut p = Parser::default();
        for (index, content) in spans.iter().enumerate() {
            p.line(src, index + 1, content.clone())?;
        }
        p.finish(src, spans.len())
    }

    /// The input this view borrows.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.src
    }

    /// Number of lines (trailing empty lines not counted).
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    pub fn origin(&self) -> &Origin<'a> {
        &self.origin
    }

    /// `s=` text, in whatever charset the sender used.
    pub fn session_name(&self) -> &'a [u8] {
        self.session_name
    }

    /// The session-level `c=`.
    pub fn connection(&self) -> Option<&Connection<'a>> {
        self.connection.as_ref()
    }

    /// The `t=` lines (at least one).
    pub fn timings(&self) -> &[Timing] {
        &self.timings
    }

    /// Session-level `b=` lines.
    pub fn bandwidths(&self) -> &[Bandwidth<'a>] {
        &self.bandwidths[self.session_bandwidths.clone()]
    }

    /// Session-level attributes in order.
    pub fn attributes(&self) -> &[Attribute<'a>] {
        &self.attributes[self.session_attrs.clone()]
    }

    /// The media sections in order.
    pub fn media(&self) -> &[Media<'a>] {
        &self.media
    }

    /// The attributes of media section `index` in order (empty if there is no such section).
    pub fn media_attributes(&self, index: usize) -> &[Attribute<'a>] {
        match self.media.get(index) {
            Some(m) => &self.attributes[m.attrs.clone()],
            None => &[],
        }
    }

    /// The `b=` lines of media section `index` (empty if there is no such section).
    pub fn media_bandwidths(&self, index: usize) -> &[Bandwidth<'a>] {
        match self.media.get(index) {
            Some(m) => &self.bandwidths[m.bandwidths.clone()],
            None => &[],
        }
    }

    /// The connection media section `index` uses: its own `c=`, else the session's.
    pub fn connection_for(&self, index: usize) -> Option<&Connection<'a>> {
        let m = self.media.get(index)?;
        m.connection.as_ref().or(self.connection.as_ref())
    }

    /// The session-level direction (`SendRecv` when none is given).
    pub fn session_direction(&self) -> Direction {
        direction_of(self.attributes()).unwrap_or_default()
    }

    /// The direction of media section `index`: its own attribute, else the session's, else
    /// `SendRecv`. `None` if there is no such section.
    pub fn direction(&self, index: usize) -> Option<Direction> {
        self.media.get(index)?;
        Some(direction_of(self.media_attributes(index)).unwrap_or_else(|| self.session_direction()))
    }

    /// The payload types of media section `index` in preference order.
    pub fn payload_types(&self, index: usize) -> impl Iterator<Item = u8> + 'a {
        self.media
            .get(index)
            .map(|m| m.payload_types())
            .into_iter()
            .flatten()
    }

    /// The mapping of payload type `pt` in media section `index`: its `a=rtpmap`, else the
    /// static RFC 3551 meaning.
    pub fn rtpmap(&self, index: usize, pt: u8) -> Option<Rtpmap<'a>> {
        self.media.get(index)?;
        self.media_attributes(index)
            .iter()
            .find_map(|a| match a.kind {
                AttrKind::Rtpmap(r) if r.pt == pt => Some(r),
                _ => None,
            })
            .or_else(|| static_rtpmap(pt))
    }

    /// The `a=fmtp` of payload type `pt` in media section `index`.
    pub fn fmtp(&self, index: usize, pt: u8) -> Option<Fmtp<'a>> {
        self.media_attributes(index)
            .iter()
            .find_map(|a| match a.kind {
                AttrKind::Fmtp(f) if f.pt == Some(pt) => Some(f),
                _ => None,
            })
    }

    /// The first `telephone-event` payload type offered in media section `index`.
    pub fn telephone_event(&self, index: usize) -> Option<Rtpmap<'a>> {
        self.payload_types(index)
            .filter_map(|pt| self.rtpmap(index, pt))
            .find(Rtpmap::is_telephone_event)
    }

    /// `a=ptime` of media section `index`, else the session's.
    pub fn ptime(&self, index: usize) -> Option<Duration> {
        let find = |attrs: &[Attribute<'a>]| {
            attrs.iter().find_map(|a| match a.kind {
                AttrKind::Ptime(d) => Some(d),
                _ => None,
            })
        };
        self.media.get(index)?;
        find(self.media_attributes(index)).or_else(|| find(self.attributes()))
    }

    /// `a=maxptime` of media section `index`, else the session's.
    pub fn maxptime(&self, index: usize) -> Option<Duration> {
        let find = |attrs: &[Attribute<'a>]| {
            attrs.iter().find_map(|a| match a.kind {
                AttrKind::MaxPtime(d) => Some(d),
                _ => None,
            })
        };
        self.media.get(index)?;
        find(self.media_attributes(index)).or_else(|| find(self.attributes()))
    }

    /// `a=rtcp` of media section `index`.
    pub fn rtcp(&self, index: usize) -> Option<Rtcp<'a>> {
        self.media_attributes(index)
            .iter()
            .find_map(|a| match a.kind {
                AttrKind::Rtcp(r) => Some(r),
                _ => None,
            })
    }

    /// Whether media section `index` has `a=rtcp-mux`.
    pub fn rtcp_mux(&self, index: usize) -> bool {
        self.media_attributes(index)
            .iter()
            .any(|a| a.kind == AttrKind::RtcpMux)
    }

    /// The first attribute called `name` (ASCII case-insensitive) in media section `index`.
    pub fn media_attribute(&self, index: usize, name: &str) -> Option<&Attribute<'a>> {
        self.media_attributes(index)
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

fn direction_of(attrs: &[Attribute<'_>]) -> Option<Direction> {
    attrs.iter().find_map(|a| match a.kind {
        AttrKind::Direction(d) => Some(d),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// The rewriter
// ---------------------------------------------------------------------------------------

/// Why a rewrite could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewriteError {
    /// An edit names a media section the description does not have.
    NoSuchMedia { index: usize, count: usize },
    /// Removing payload types would leave an `m=` line without formats.
    NoFormatsLeft { index: usize },
    /// Bumping the session version past `u64::MAX`.
    VersionOverflow,
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewriteError::NoSuchMedia { index, count } => {
                write!(f, "media section {index} does not exist ({count} sections)")
            }
            RewriteError::NoFormatsLeft { index } => {
                write!(f, "media section {index} would have no formats left")
            }
            RewriteError::VersionOverflow => write!(f, "session version overflows"),
        }
    }
}

impl std::error::Error for RewriteError {}

/// An edit list over a parsed [`Sdp`], written out in one pass.
///
/// ```
/// # use sip::sdp::{Sdp, SdpRewrite, Direction};
/// let offer = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
///               m=audio 4000 RTP/AVP 0\r\n";
/// let sdp = Sdp::parse(offer).expect("valid");
/// let mut out = Vec::new();
/// SdpRewrite::new(&sdp)
///     .connection("192.0.2.1".parse().expect("ip"))
///     .media_port(0, 30000)
///     .direction(0, Direction::SendOnly)
///     .bump_version()
///     .write(&mut out)
///     .expect("edits fit");
/// assert!(out.ends_with(b"m=audio 30000 RTP/AVP 0\r\na=sendonly\r\n"));
/// ```
#[derive(Debug, Clone)]
pub struct SdpRewrite<'s, 'a> {
    sdp: &'s Sdp<'a>,
    connection: Option<IpAddr>,
    origin_address: Option<IpAddr>,
    version: VersionEdit,
    media: SmallVec<[MediaEdit; 4]>,
    /// The first edit that named a missing media section; reported by `write`.
    error: Option<RewriteError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionEdit {
    Keep,
    Bump,
    Set(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RtcpEdit {
    Keep,
    Remove,
    Set(u16, Option<IpAddr>),
}

#[derive(Debug, Clone)]
struct MediaEdit {
    port: Option<u16>,
    rtcp: RtcpEdit,
    rtcp_mux: Option<bool>,
    direction: Option<Direction>,
    remove_pts: SmallVec<[u8; 8]>,
}

impl Default for MediaEdit {
    fn default() -> Self {
        MediaEdit {
            port: None,
            rtcp: RtcpEdit::Keep,
            rtcp_mux: None,
            direction: None,
            remove_pts: SmallVec::new(),
        }
    }
}

impl<'s, 'a> SdpRewrite<'s, 'a> {
    /// An empty edit list: writing it reproduces the input (with CRLF line ends).
    pub fn new(sdp: &'s Sdp<'a>) -> Self {
        let mut media = SmallVec::new();
        media.resize(sdp.media.len(), MediaEdit::default());
        SdpRewrite {
            sdp,
            connection: None,
            origin_address: None,
            version: VersionEdit::Keep,
            media,
            error: None,
        }
    }

    /// Sets the session-level `c=` and every media-level `c=` to `addr` (with the matching
    /// address type; TTL and address count are dropped). Where neither the session nor a
    /// media section has a `c=`, one is added to that media section.
    pub fn connection(mut self, addr: IpAddr) -> Self {
        self.connection = Some(addr);
        self
    }

    /// Sets the `o=` address (and its address type).
    pub fn origin_address(mut self, addr: IpAddr) -> Self {
        self.origin_address = Some(addr);
        self
    }

    /// Increments the `o=` session version (RFC 3264 §8: a changed offer bumps it).
    pub fn bump_version(mut self) -> Self {
        self.version = VersionEdit::Bump;
        self
    }

    /// Sets the `o=` session version.
    pub fn session_version(mut self, version: u64) -> Self {
        self.version = VersionEdit::Set(version);
        self
    }

    /// Sets the port of media section `index` (keeps `/<number of ports>`).
    pub fn media_port(mut self, index: usize, port: u16) -> Self {
        if let Some(m) = self.edit(index) {
            m.port = Some(port);
        }
        self
    }

    /// Sets `a=rtcp:<port>[ IN <addrtype> <addr>]` in media section `index`, replacing any
    /// there, or adding one at the end of the section.
    pub fn rtcp(mut self, index: usize, port: u16, addr: Option<IpAddr>) -> Self {
        if let Some(m) = self.edit(index) {
            m.rtcp = RtcpEdit::Set(port, addr);
        }
        self
    }

    /// Removes every `a=rtcp` line of media section `index`.
    pub fn remove_rtcp(mut self, index: usize) -> Self {
        if let Some(m) = self.edit(index) {
            m.rtcp = RtcpEdit::Remove;
        }
        self
    }

    /// Adds (`true`) or removes (`false`) `a=rtcp-mux` in media section `index`.
    pub fn rtcp_mux(mut self, index: usize, on: bool) -> Self {
        if let Some(m) = self.edit(index) {
            m.rtcp_mux = Some(on);
        }
        self
    }

    /// Sets the direction of media section `index`: replaces its direction attribute, or adds
    /// one at the end of the section (a media-level direction overrides the session's).
    pub fn direction(mut self, index: usize, direction: Direction) -> Self {
        if let Some(m) = self.edit(index) {
            m.direction = Some(direction);
        }
        self
    }

    /// Removes payload types from media section `index`: from the `m=` line, and their
    /// `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines.
    pub fn remove_payload_types(mut self, index: usize, pts: &[u8]) -> Self {
        if let Some(m) = self.edit(index) {
            m.remove_pts.extend_from_slice(pts);
        }
        self
    }

    /// Writes the edited description to `out` (appending).
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let sdp = self.sdp;
        for (index, (m, e)) in sdp.media.iter().zip(&self.media).enumerate() {
            if !e.remove_pts.is_empty() && kept_formats(m, e).next().is_none() {
                return Err(RewriteError::NoFormatsLeft { index });
            }
        }
        let version = match self.version {
            VersionEdit::Keep => sdp.origin.session_version,
            VersionEdit::Bump => sdp
                .origin
                .session_version
                .checked_add(1)
                .ok_or(RewriteError::VersionOverflow)?,
            VersionEdit::Set(v) => v,
        };
        let origin_changed = version != sdp.origin.session_version || self.origin_address.is_some();

        let mut w = Writer {
            rw: self,
            out,
            media: None,
            pending_connection: false,
            seen_rtcp: false,
            seen_mux: false,
            seen_direction: false,
        };
        let mut attr_index = 0;
        for span in &sdp.lines {
            let content = &sdp.src[span.content.clone()];
            if span.kind == b'm' {
                w.finish_media();
                let index = w.media.map_or(0, |i| i + 1);
                w.start_media(index, content);
                continue;
            }
            if w.pending_connection && span.kind != b'i' {
                w.emit_connection();
            }
            match span.kind {
                b'o' if origin_changed => w.emit_origin(version),
                b'c' if self.connection.is_some() => w.emit_connection(),
                b'a' => {
                    assert!(
                        attr_index < sdp.attributes.len(),
                        "a= lines and attributes agree"
                    );
                    let attr = &sdp.attributes[attr_index];
                    attr_index += 1;
                    w.attribute(attr, content);
                }
                _ => w.line(content),
            }
        }
        w.finish_media();
        assert_eq!(
            attr_index,
            sdp.attributes.len(),
            "every attribute was visited"
        );
        Ok(())
    }

    /// [`write`](Self::write) into a new buffer.
    pub fn to_vec(&self) -> Result<Vec<u8>, RewriteError> {
        let mut out = Vec::with_capacity(self.sdp.src.len() + 64);
        self.write(&mut out)?;
        Ok(out)
    }

    fn edit(&mut self, index: usize) -> Option<&mut MediaEdit> {
        let count = self.media.len();
        let m = self.media.get_mut(index);
        if m.is_none() && self.error.is_none() {
            self.error = Some(RewriteError::NoSuchMedia { index, count });
        }
        m
    }
}

fn kept_formats<'a>(m: &Media<'a>, e: &MediaEdit) -> impl Iterator<Item = &'a str> {
    let rtp = m.is_rtp();
    let remove = e.remove_pts.clone();
    m.formats()
        .filter(move |f| !(rtp && f.parse::<u8>().is_ok_and(|pt| remove.contains(&pt))))
}

/// The state of one `SdpRewrite::write` pass.
struct Writer<'w, 's, 'a> {
    rw: &'w SdpRewrite<'s, 'a>,
    out: &'w mut Vec<u8>,
    /// The media section being written, `None` at session level.
    media: Option<usize>,
    /// A `c=` must be added to this media section before its first non-`i=` line.
    pending_connection: bool,
    seen_rtcp: bool,
    seen_mux: bool,
    seen_direction: bool,
}

impl<'w> Writer<'w, '_, '_> {
    fn line(&mut self, content: &[u8]) {
        self.out.extend_from_slice(content);
        self.out.extend_from_slice(b"\r\n");
    }

    fn media_edit(&self) -> Option<&'w MediaEdit> {
        let rw: &'w SdpRewrite<'_, '_> = self.rw;
        rw.media.get(self.media?)
    }

    fn start_media(&mut self, index: usize, content: &[u8]) {
        assert!(index < self.rw.sdp.media.len(), "m= lines and media agree");
        self.media = Some(index);
        self.seen_rtcp = false;
        self.seen_mux = false;
        self.seen_direction = false;
        let m = &self.rw.sdp.media[index];
        let e = &self.rw.media[index];
        self.pending_connection = self.rw.connection.is_some()
            && self.rw.sdp.connection.is_none()
            && m.connection.is_none();
        if e.port.is_none() && e.remove_pts.is_empty() {
            self.line(content);
            return;
        }
        let port = e.port.unwrap_or(m.port);
        let mut s = format!("m={} {port}", m.media);
        if let Some(n) = m.num_ports {
            s.push_str(&format!("/{n}"));
        }
        s.push(' ');
        s.push_str(m.proto);
        for f in kept_formats(m, e) {
            s.push(' ');
            s.push_str(f);
        }
        self.line(s.as_bytes());
    }

    fn finish_media(&mut self) {
        if self.pending_connection {
            self.emit_connection();
        }
        let Some(e) = self.media_edit() else {
            return;
        };
        let (rtcp, mux, direction) = (e.rtcp, e.rtcp_mux, e.direction);
        if let RtcpEdit::Set(port, addr) = rtcp {
            if !self.seen_rtcp {
                self.emit_rtcp(port, addr);
            }
        }
        if mux == Some(true) && !self.seen_mux {
            self.line(b"a=rtcp-mux");
        }
        if let Some(d) = direction {
            if !self.seen_direction {
                self.emit_direction(d);
            }
        }
    }

    fn emit_connection(&mut self) {
        self.pending_connection = false;
        let Some(addr) = self.rw.connection else {
            return;
        };
        let s = format!("c=IN {} {addr}", AddrType::of(addr).as_str());
        self.line(s.as_bytes());
    }

    fn emit_origin(&mut self, version: u64) {
        let o = &self.rw.sdp.origin;
        let s = match self.rw.origin_address {
            Some(addr) => format!(
                "o={} {} {version} IN {} {addr}",
                o.username,
                o.session_id,
                AddrType::of(addr).as_str()
            ),
            None => format!(
                "o={} {} {version} IN {} {}",
                o.username,
                o.session_id,
                o.addrtype.as_str(),
                o.address
            ),
        };
        self.line(s.as_bytes());
    }

    fn emit_rtcp(&mut self, port: u16, addr: Option<IpAddr>) {
        let s = match addr {
            Some(a) => format!("a=rtcp:{port} IN {} {a}", AddrType::of(a).as_str()),
            None => format!("a=rtcp:{port}"),
        };
        self.line(s.as_bytes());
    }

    fn emit_direction(&mut self, d: Direction) {
        let s = format!("a={}", d.as_str());
        self.line(s.as_bytes());
    }

    fn attribute(&mut self, attr: &Attribute<'_>, content: &[u8]) {
        let Some(e) = self.media_edit() else {
            self.line(content);
            return;
        };
        let (rtcp, mux, direction) = (e.rtcp, e.rtcp_mux, e.direction);
        let removed = |pt: u8| e.remove_pts.contains(&pt);
        match attr.kind {
            AttrKind::Rtpmap(r) if removed(r.pt) => {}
            AttrKind::Fmtp(Fmtp { pt: Some(pt), .. }) if removed(pt) => {}
            AttrKind::Other
                if attr.name.eq_ignore_ascii_case("rtcp-fb")
                    && attr
                        .value
                        .and_then(|v| v.split_ascii_whitespace().next())
                        .and_then(|f| f.parse::<u8>().ok())
                        .is_some_and(removed) => {}
            AttrKind::Rtcp(_) => match rtcp {
                RtcpEdit::Keep => self.line(content),
                RtcpEdit::Remove => {}
                RtcpEdit::Set(port, addr) => {
                    if !self.seen_rtcp {
                        self.emit_rtcp(port, addr);
                    }
                    self.seen_rtcp = true;
                }
            },
            AttrKind::RtcpMux => match mux {
                None => self.line(content),
                Some(false) => {}
                Some(true) => {
                    if !self.seen_mux {
                        self.line(content);
                    }
                    self.seen_mux = true;
                }
            },
            AttrKind::Direction(_) => match direction {
                None => self.line(content),
                Some(d) => {
                    if !self.seen_direction {
                        self.emit_direction(d);
                    }
                    self.seen_direction = true;
                }
            },
            _ => self.line(content),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parsing internals
// ---------------------------------------------------------------------------------------

/// Splits at LF (dropping a CR before it); drops trailing empty lines.
fn split_lines(src: &[u8]) -> Result<SmallVec<[Range<usize>; 32]>, SdpError> {
    let mut spans: SmallVec<[Range<usize>; 32]> = SmallVec::new();
    let mut pos = 0;
    while pos < src.len() {
        let (end, next) = match src[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let lf = pos + i;
                let end = if lf > pos && src[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                (end, lf + 1)
            }
            None => (src.len(), src.len()),
        };
        if spans.len() == MAX_SDP_LINES {
            return Err(SdpError::TooManyLines {
                limit: MAX_SDP_LINES,
            });
        }
        spans.push(pos..end);
        pos = next;
    }
    while spans.last().is_some_and(|r| r.is_empty()) {
        spans.pop();
    }
    if spans.is_empty() {
        return Err(SdpError::Empty);
    }
    Ok(spans)
}

#[derive(Default)]
struct Parser<'a> {
    lines: SmallVec<[LineSpan; 32]>,
    origin: Option<Origin<'a>>,
    session_name: Option<&'a [u8]>,
    connection: Option<Connection<'a>>,
    timings: SmallVec<[Timing; 1]>,
    bandwidths: SmallVec<[Bandwidth<'a>; 4]>,
    attributes: SmallVec<[Attribute<'a>; 16]>,
    media: SmallVec<[Media<'a>; 4]>,
    /// Counts of session-level bandwidths and attributes, fixed at the first `m=`.
    session_bandwidths: Option<usize>,
    session_attrs: Option<usize>,
}

impl<'a> Parser<'a> {
    fn line(&mut self, src: &'a [u8], line: usize, span: Range<usize>) -> Result<(), SdpError> {
        let content = &src[span.clone()];
        let bad = |reason| SdpError::BadLine { line, reason };
        if content.is_empty() {
            return Err(bad(LineDefect::Empty));
        }
        if content.len() < 2 || content[1] != b'=' {
            return Err(bad(LineDefect::NoEquals));
        }
        let kind = content[0];
        if !kind.is_ascii_lowercase() {
            return Err(bad(LineDefect::BadType));
        }
        let value = &content[2..];
        if value.iter().any(|&b| b == 0 || b == b'\r') {
            return Err(bad(LineDefect::ControlByte));
        }
        let text = || core::str::from_utf8(value).map_err(|_| bad(LineDefect::NotUtf8));
        let in_media = !self.media.is_empty();
        let field = char::from(kind);

        if line == 1 {
            if kind != b'v' {
                return Err(SdpError::MissingVersion { line });
            }
            if value != b"0" {
                return Err(SdpError::BadVersion { line });
            }
            self.lines.push(LineSpan {
                kind,
                content: span,
            });
            return Ok(());
        }
        let session_only = matches!(
            kind,
            b'v' | b'o' | b's' | b't' | b'r' | b'z' | b'u' | b'e' | b'p'
        );
        if in_media && session_only {
            return Err(SdpError::MisplacedField { line, field });
        }
        match kind {
            b'v' => return Err(SdpError::DuplicateField { line, field }),
            b'o' => {
                if self.origin.is_some() {
                    return Err(SdpError::DuplicateField { line, field });
                }
                self.origin = Some(parse_origin(text()?, line)?);
            }
            b's' => {
                if self.session_name.is_some() {
                    return Err(SdpError::DuplicateField { line, field });
                }
                self.session_name = Some(value);
            }
            b'i' | b'u' | b'e' | b'p' | b'k' | b'r' | b'z' => {}
            b'c' => {
                let c = parse_connection(text()?, line)?;
                match self.media.last_mut() {
                    Some(m) => {
                        m.connection.get_or_insert(c);
                    }
                    None if self.connection.is_some() => {
                        return Err(SdpError::DuplicateField { line, field });
                    }
                    None => self.connection = Some(c),
                }
            }
            b'b' => {
                let b = parse_bandwidth(text()?, line)?;
                self.bandwidths.push(b);
                if let Some(m) = self.media.last_mut() {
                    m.bandwidths.end = self.bandwidths.len();
                }
            }
            b't' => {
                let t = parse_timing(text()?, line)?;
                self.timings.push(t);
            }
            b'm' => {
                if self.media.len() == MAX_MEDIA_SECTIONS {
                    return Err(SdpError::TooManyMedia {
                        line,
                        limit: MAX_MEDIA_SECTIONS,
                    });
                }
                self.session_bandwidths.get_or_insert(self.bandwidths.len());
                self.session_attrs.get_or_insert(self.attributes.len());
                let mut m = parse_media(text()?, line)?;
                m.attrs = self.attributes.len()..self.attributes.len();
                m.bandwidths = self.bandwidths.len()..self.bandwidths.len();
                self.media.push(m);
            }
            b'a' => {
                let a = parse_attribute(text()?, line)?;
                self.attributes.push(a);
                if let Some(m) = self.media.last_mut() {
                    m.attrs.end = self.attributes.len();
                }
            }
            _ => return Err(bad(LineDefect::UnknownType)),
        }
        self.lines.push(LineSpan {
            kind,
            content: span,
        });
        Ok(())
    }

    fn finish(self, src: &'a [u8], line_count: usize) -> Result<Sdp<'a>, SdpError> {
        let due = self.media.first().map_or(line_count + 1, |m| m.line);
        let missing = |field| SdpError::MissingField { line: due, field };
        let origin = self.origin.ok_or(missing('o'))?;
        let session_name = self.session_name.ok_or(missing('s'))?;
        if self.timings.is_empty() {
            return Err(missing('t'));
        }
        assert_eq!(self.lines.len(), line_count, "one span per line");
        let session_bandwidths = 0..self.session_bandwidths.unwrap_or(self.bandwidths.len());
        let session_attrs = 0..self.session_attrs.unwrap_or(self.attributes.len());
        Ok(Sdp {
            src,
            lines: self.lines,
            origin,
            session_name,
            connection: self.connection,
            timings: self.timings,
            bandwidths: self.bandwidths,
            session_bandwidths,
            attributes: self.attributes,
            session_attrs,
            media: self.media,
        })
    }
}

/// Splits off the next space-separated token: `(token, rest)`.
fn next_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches([' ', '\t']);
    if s.is_empty() {
        return None;
    }
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(&b))
}

fn parse_digits<T: core::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_addrtype(s: &str) -> Option<AddrType> {
    match s {
        "IP4" => Some(AddrType::Ip4),
        "IP6" => Some(AddrType::Ip6),
        _ => None,
    }
}

/// An IP literal of the given type, or a plausible domain name.
fn valid_address(addrtype: AddrType, s: &str) -> bool {
    match addrtype {
        AddrType::Ip4 if s.parse::<Ipv4Addr>().is_ok() => return true,
        AddrType::Ip6 if s.parse::<Ipv6Addr>().is_ok() => return true,
        _ => {}
    }
    // A domain name: letters, digits, '-' and '.', and not all digits and dots (a bad IPv4).
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn parse_origin(v: &str, line: usize) -> Result<Origin<'_>, SdpError> {
    let bad = |reason| SdpError::BadOrigin { line, reason };
    let mut it = v.split_ascii_whitespace();
    let mut next = |what| it.next().ok_or(bad(what));
    let username = next("missing username")?;
    let session_id = next("missing session id")?;
    let version = next("missing session version")?;
    let nettype = next("missing network type")?;
    let addrtype = next("missing address type")?;
    let address = next("missing address")?;
    if it.next().is_some() {
        return Err(bad("too many fields"));
    }
    if !session_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("session id is not numeric"));
    }
    let session_version = parse_digits(version).ok_or(bad("session version is not a u64"))?;
    if nettype != "IN" {
        return Err(bad("network type is not IN"));
    }
    let addrtype = parse_addrtype(addrtype).ok_or(bad("address type is not IP4 or IP6"))?;
    if !valid_address(addrtype, address) {
        return Err(bad("bad address"));
    }
    Ok(Origin {
        username,
        session_id,
        session_version,
        addrtype,
        address,
        line,
    })
}

fn parse_connection(v: &str, line: usize) -> Result<Connection<'_>, SdpError> {
    let bad = |reason| SdpError::BadConnection { line, reason };
    let mut it = v.split_ascii_whitespace();
    let nettype = it.next().ok_or(bad("missing network type"))?;
    let addrtype = it.next().ok_or(bad("missing address type"))?;
    let full = it.next().ok_or(bad("missing address"))?;
    if it.next().is_some() {
        return Err(bad("too many fields"));
    }
    if nettype != "IN" {
        return Err(bad("network type is not IN"));
    }
    let addrtype = parse_addrtype(addrtype).ok_or(bad("address type is not IP4 or IP6"))?;
    let mut parts = full.split('/');
    let address = parts.next().unwrap_or_default();
    if !valid_address(addrtype, address) {
        return Err(bad("bad address"));
    }
    let (mut ttl, mut num_addrs) = (None, None);
    match addrtype {
        AddrType::Ip4 => {
            if let Some(t) = parts.next() {
                ttl = Some(parse_digits::<u8>(t).ok_or(bad("bad TTL"))?);
            }
            if let Some(n) = parts.next() {
                num_addrs = Some(parse_digits::<u32>(n).ok_or(bad("bad number of addresses"))?);
            }
        }
        AddrType::Ip6 => {
            if let Some(n) = parts.next() {
                num_addrs = Some(parse_digits::<u32>(n).ok_or(bad("bad number of addresses"))?);
            }
        }
    }
    if parts.next().is_some() || num_addrs == Some(0) {
        return Err(bad("bad multicast suffix"));
    }
    Ok(Connection {
        addrtype,
        address,
        ttl,
        num_addrs,
        line,
    })
}

fn parse_bandwidth(v: &str, line: usize) -> Result<Bandwidth<'_>, SdpError> {
    let bad = SdpError::BadBandwidth { line };
    let (bwtype, value) = v.split_once(':').ok_or(bad)?;
    if !is_token(bwtype) {
        return Err(bad);
    }
    let value = parse_digits(value.trim_end()).ok_or(bad)?;
    Ok(Bandwidth {
        bwtype,
        value,
        line,
    })
}

fn parse_timing(v: &str, line: usize) -> Result<Timing, SdpError> {
    let bad = SdpError::BadTiming { line };
    let mut it = v.split_ascii_whitespace();
    let start = it.next().and_then(parse_digits).ok_or(bad)?;
    let stop = it.next().and_then(parse_digits).ok_or(bad)?;
    if it.next().is_some() {
        return Err(bad);
    }
    Ok(Timing { start, stop, line })
}

fn is_rtp_proto(proto: &str) -> bool {
    proto.split('/').any(|p| p.eq_ignore_ascii_case("RTP"))
}

fn parse_media(v: &str, line: usize) -> Result<Media<'_>, SdpError> {
    let bad = |reason| SdpError::BadMedia { line, reason };
    let (media, rest) = next_token(v).ok_or(bad("missing media type"))?;
    if !is_token(media) {
        return Err(bad("media type is not a token"));
    }
    let (port_field, rest) = next_token(rest).ok_or(SdpError::BadPort { line })?;
    let (port, num_ports) = match port_field.split_once('/') {
        Some((p, n)) => (p, Some(n)),
        None => (port_field, None),
    };
    let port = parse_digits::<u16>(port).ok_or(SdpError::BadPort { line })?;
    let num_ports = match num_ports {
        Some(n) => Some(
            parse_digits::<u16>(n)
                .filter(|&n| n > 0)
                .ok_or(SdpError::BadPort { line })?,
        ),
        None => None,
    };
    let (proto, rest) = next_token(rest).ok_or(bad("missing protocol"))?;
    if !proto.split('/').all(is_token) {
        return Err(bad("protocol is not a token"));
    }
    let formats = rest.trim_matches([' ', '\t']);
    if formats.is_empty() {
        return Err(bad("no formats"));
    }
    // RFC 8866 §9: `fmt` is a token and the separator is SP. Anything else (a form feed, a
    // control byte) would make readers disagree on how many formats the line has.
    if !split_fields(formats).all(is_token) {
        return Err(bad("format is not a token"));
    }
    if is_rtp_proto(proto)
        && !split_fields(formats).all(|f| parse_digits::<u8>(f).is_some_and(|pt| pt <= 127))
    {
        return Err(bad("RTP format is not a payload type 0..=127"));
    }
    Ok(Media {
        media,
        port,
        num_ports,
        proto,
        formats,
        connection: None,
        line,
        attrs: 0..0,
        bandwidths: 0..0,
    })
}

/// The space-separated fields of a line (SP, and HTAB for the lenient).
fn split_fields(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', '\t']).filter(|f| !f.is_empty())
}

fn parse_payload_type(s: &str) -> Option<u8> {
    parse_digits::<u8>(s).filter(|&pt| pt <= 127)
}

/// `20`, `20.5`, `0.125` milliseconds; zero is not a packet time.
fn parse_ptime(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let whole_ms: u64 = parse_digits(whole)?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) || whole_ms > 1_000_000 {
        return None;
    }
    let mut frac_ns: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_ns += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    let d = Duration::from_millis(whole_ms) + Duration::from_nanos(frac_ns);
    (!d.is_zero()).then_some(d)
}

fn parse_attribute(v: &str, line: usize) -> Result<Attribute<'_>, SdpError> {
    let bad = |reason| SdpError::BadAttribute { line, reason };
    let (name, value) = match v.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (v, None),
    };
    if !is_token(name) {
        return Err(bad("name is not a token"));
    }
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    let need = |what| value.ok_or(bad(what));
    let kind = if is("rtpmap") {
        let (pt, rest) = next_token(need("rtpmap without value")?).ok_or(bad("empty rtpmap"))?;
        let pt = parse_payload_type(pt).ok_or(bad("rtpmap payload type"))?;
        let map = rest.trim();
        let mut parts = map.split('/');
        let encoding = parts.next().unwrap_or_default();
        if encoding.is_empty() || encoding.contains([' ', '\t']) {
            return Err(bad("rtpmap encoding name"));
        }
        // RFC 8866 makes the clock rate mandatory, but RFC 4475's own test bodies carry
        // `a=rtpmap:31 LPC`; such a line is kept, with no clock rate.
        let clock_rate_hz = match parts.next() {
            Some(r) => Some(parse_digits(r).ok_or(bad("rtpmap clock rate"))?),
            None => None,
        };
        let channels = match parts.next() {
            Some(c) => Some(parse_digits(c).ok_or(bad("rtpmap channels"))?),
            None => None,
        };
        if parts.next().is_some() {
            return Err(bad("rtpmap has too many parts"));
        }
        AttrKind::Rtpmap(Rtpmap {
            pt,
            encoding,
            clock_rate_hz,
            channels,
        })
    } else if is("fmtp") {
        let (format, rest) = next_token(need("fmtp without value")?).ok_or(bad("empty fmtp"))?;
        AttrKind::Fmtp(Fmtp {
            format,
            pt: parse_payload_type(format),
            params: rest.trim_matches([' ', '\t']),
        })
    } else if is("ptime") {
        AttrKind::Ptime(parse_ptime(need("ptime without value")?).ok_or(bad("ptime"))?)
    } else if is("maxptime") {
        AttrKind::MaxPtime(parse_ptime(need("maxptime without value")?).ok_or(bad("maxptime"))?)
    } else if is("rtcp") {
        let mut it = need("rtcp without value")?.split_ascii_whitespace();
        let port = it
            .next()
            .and_then(parse_digits::<u16>)
            .ok_or(bad("rtcp port"))?;
        let address = match it.next() {
            None => None,
            Some(nettype) => {
                let addrtype = it.next().and_then(parse_addrtype);
                let addr = it.next();
                match (nettype, addrtype, addr, it.next()) {
                    ("IN", Some(t), Some(a), None) if valid_address(t, a) => Some((t, a)),
                    _ => return Err(bad("rtcp address")),
                }
            }
        };
        AttrKind::Rtcp(Rtcp { port, address })
    } else if is("rtcp-mux") {
        AttrKind::RtcpMux
    } else if let Some(d) = Direction::from_name(name) {
        AttrKind::Direction(d)
    } else {
        AttrKind::Other
    };
    Ok(Attribute {
        name,
        value,
        kind,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptime_forms() {
        assert_eq!(parse_ptime("20"), Some(Duration::from_millis(20)));
        assert_eq!(parse_ptime("20.5"), Some(Duration::from_micros(20_500)));
        assert_eq!(parse_ptime("0.125"), Some(Duration::from_micros(125)));
        assert_eq!(parse_ptime("0"), None);
        assert_eq!(parse_ptime("x"), None);
        assert_eq!(parse_ptime("20."), Some(Duration::from_millis(20)));
        assert_eq!(parse_ptime(".5"), None);
    }

    #[test]
    fn addresses() {
        assert!(valid_address(AddrType::Ip4, "192.0.2.1"));
        assert!(valid_address(AddrType::Ip4, "host.example.com"));
        assert!(!valid_address(AddrType::Ip4, "300.1.1.1"));
        assert!(!valid_address(AddrType::Ip4, "2001:db8::1"));
        assert!(valid_address(AddrType::Ip6, "2001:db8::1"));
        assert!(!valid_address(AddrType::Ip6, "fe80::1%eth0"));
        assert!(!valid_address(AddrType::Ip4, ""));
    }

    #[test]
    fn tokens() {
        assert_eq!(next_token("  a b"), Some(("a", " b")));
        assert_eq!(next_token("   "), None);
        assert!(is_token("rtcp-mux"));
        assert!(!is_token("a b"));
    }
}
