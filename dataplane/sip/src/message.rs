//! Zero-copy SIP message parsing (RFC 3261 §7, §25).
//!
//! [`Message::parse`] takes one complete message (a UDP datagram, or a frame cut by
//! [`crate::framing`]) and returns a view that borrows it. Parsing is strict about what a
//! proxy relies on and lazy about the rest:
//!
//! - eager and validated: start line, every header line's name, Via (all of them), From,
//!   To, Call-ID, CSeq (and its match with the method), Max-Forwards, Content-Length,
//!   Contact, Route, Record-Route, Date; duplicates of single-valued headers are refused;
//! - lazy: every other header is located and handed out as raw bytes, with typed parsers in
//!   [`crate::header`] to call when a value matters.
//!
//! It does not allocate for messages of up to [`INLINE_HEADERS`] header lines, never panics
//! on any input, and refuses input with a [`ParseError`] that names the defect.
//!
//! Speed comes from fast paths for the common shapes (a header line without folds, a plain
//! `sip:` URI, parameters without white space) that accept a subset of what the general code
//! accepts and produce the same views; anything else, valid or not, falls through to the
//! general code, which also names the defect. Validation is therefore exactly as strict as
//! before the fast paths existed: they change how fast, never what, is accepted.

use crate::chars::{all_token, eq_ic, parse_u64_max};
use crate::header::{
    parse_decimal, validate_call_id, validate_date, CSeq, Contact, HeaderName, ListIter, NameAddr,
    ValueError, Via,
};
use crate::uri::{Uri, UriError};
use core::fmt;
use smallvec::SmallVec;

/// Header lines held without a heap allocation. Messages with more still parse (up to
/// [`MAX_HEADERS`]), at the cost of one allocation.
pub const INLINE_HEADERS: usize = 48;
/// Upper bound on header lines in one message; more is refused as [`ParseError::TooManyHeaders`].
pub const MAX_HEADERS: usize = 256;
/// Upper bound on a message's size (header + body): the largest UDP payload.
pub const MAX_MESSAGE_BYTES: usize = 65_535;

/// Known request methods; anything else is carried as [`Method::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// PUBLISH (RFC 3903)
    Publish,
    /// INFO (RFC 6086)
    Info,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// UPDATE (RFC 3311)
    Update,
    /// An extension method; the token as written.
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Maps a method token (case-sensitive, RFC 3261 §7.1) to a method.
    pub fn from_bytes(b: &'a [u8]) -> Method<'a> {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            other => Method::Other(other),
        }
    }

    /// The method token.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Prack => b"PRACK",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Publish => b"PUBLISH",
            Method::Info => b"INFO",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Update => b"UPDATE",
            Method::Other(b) => b,
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Why a message was refused. Each variant names the defect; requests refused with one of
/// these deserve a `400 Bad Request` (or `505` for [`ParseError::UnsupportedVersion`]) when a
/// response can be routed, and a counted drop otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No bytes, or only white space.
    Empty,
    /// Larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// The header section does not end with an empty line.
    Truncated,
    /// The start line is neither `Method SP Request-URI SP SIP-Version` nor
    /// `SIP-Version SP Status-Code SP Reason-Phrase` (extra or missing spaces included).
    BadStartLine,
    /// The method is not a token.
    BadMethod,
    /// The Request-URI is malformed.
    BadRequestUri(UriError),
    /// The SIP version is not 2.0.
    UnsupportedVersion,
    /// Status code is not three digits in 100..=699.
    BadStatusCode,
    /// Reason phrase holds control characters.
    BadReasonPhrase,
    /// A header line with no colon, a bad name, or a stray continuation line.
    BadHeaderLine {
        /// 1-based line number in the message.
        line: u32,
    },
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// A header every request and response must carry is absent.
    MissingHeader(HeaderName),
    /// A single-valued header appears more than once (or with several values).
    DuplicateHeader(HeaderName),
    /// A header value does not follow its grammar.
    BadHeaderValue(HeaderName, ValueError),
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
    /// Content-Length promises more bytes than the datagram holds.
    ContentLengthExceedsBody {
        /// What the header says.
        declared: u32,
        /// What arrived after the header section.
        available: u32,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty message"),
            ParseError::TooLarge => f.write_str("message too large"),
            ParseError::Truncated => f.write_str("header section not terminated"),
            ParseError::BadStartLine => f.write_str("malformed start line"),
            ParseError::BadMethod => f.write_str("malformed method"),
            ParseError::BadRequestUri(e) => write!(f, "malformed Request-URI: {e}"),
            ParseError::UnsupportedVersion => f.write_str("unsupported SIP version"),
            ParseError::BadStatusCode => f.write_str("malformed status code"),
            ParseError::BadReasonPhrase => f.write_str("malformed reason phrase"),
            ParseError::BadHeaderLine { line } => write!(f, "malformed header line {line}"),
            ParseError::TooManyHeaders => f.write_str("too many header lines"),
            ParseError::MissingHeader(h) => write!(f, "missing {} header", h.as_str()),
            ParseError::DuplicateHeader(h) => write!(f, "duplicate {} header", h.as_str()),
            ParseError::BadHeaderValue(h, e) => write!(f, "malformed {} header: {e}", h.as_str()),
            ParseError::CSeqMethodMismatch => f.write_str("CSeq method does not match request"),
            ParseError::ContentLengthExceedsBody {
                declared,
                available,
            } => {
                write!(
                    f,
                    "Content-Length {declared} exceeds the {available} body bytes received"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The status a server should answer a request refused with this error.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion => 505,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A request line.
    Request {
        /// Method.
        method: Method<'a>,
        /// Request-URI.
        uri: Uri<'a>,
    },
    /// A status line.
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase as written (may be empty).
        reason: &'a [u8],
    },
}

/// One header line's position in the message. Offsets are byte offsets into the message,
/// which is at most [`MAX_MESSAGE_BYTES`] long, so each fits in a `u16`: twelve bytes an
/// entry keeps the inline header array of a [`Message`] (moved on every return) small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Which header, compact forms folded.
    pub name: HeaderName,
    /// Start of the line.
    pub start: u16,
    /// End of the name as written.
    pub name_end: u16,
    /// Start of the value (after the colon and leading white space).
    pub value_start: u16,
    /// End of the value (before trailing white space and the line end).
    pub value_end: u16,
    /// End of the line, past its CRLF (and past any continuation lines).
    pub end: u16,
}

// Every offset, the end of the last line included, fits the `u16` fields.
const _: () = assert!(MAX_MESSAGE_BYTES <= u16::MAX as usize);
const _: () = assert!(core::mem::size_of::<Header>() == 12);

/// A parsed SIP message borrowing its bytes.
#[derive(Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    start: StartLine<'a>,
    /// End of the start line including its line end.
    start_end: u32,
    headers: SmallVec<[Header; INLINE_HEADERS]>,
    /// Offset of the empty line that ends the header section.
    head_end: u32,
    body: &'a [u8],
    call_id: &'a [u8],
    cseq: CSeq<'a>,
    from: NameAddr<'a>,
    to: NameAddr<'a>,
    top_via: Via<'a>,
    max_forwards: Option<u8>,
    content_length: Option<u32>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("call_id", &String::from_utf8_lossy(self.call_id))
            .field("cseq", &self.cseq)
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Index of the first `\n` at or after `from`.
#[inline]
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', &buf[from..]).map(|i| i + from)
}

/// `(content_end, next_line_start)` of the line whose `\n` is at `lf`.
#[inline]
fn line_bounds(buf: &[u8], line_start: usize, lf: usize) -> usize {
    if lf > line_start && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    }
}

/// `(vs, ve)`: the bounds of `buf[from..to]` without leading and trailing LWS.
#[inline]
fn trim_bounds(buf: &[u8], from: usize, to: usize) -> (usize, usize) {
    let mut vs = from;
    while vs < to && crate::chars::is_lws(buf[vs]) {
        vs += 1;
    }
    let mut ve = to;
    while ve > vs && crate::chars::is_lws(buf[ve - 1]) {
        ve -= 1;
    }
    (vs, ve)
}

/// The common header value: from `from` to the line's CRLF (or bare LF), with no CR before
/// it and no continuation line after it. Returns `(lf, value_start, value_end)`, or `None`
/// when the line needs the general path (fold, stray CR, no line end).
#[inline]
fn value_fast(buf: &[u8], from: usize) -> Option<(usize, usize, usize)> {
    let end = from + memchr::memchr2(b'\r', b'\n', &buf[from..])?;
    let lf = if buf[end] == b'\n' {
        end
    } else if buf.get(end + 1) == Some(&b'\n') {
        end + 1
    } else {
        return None;
    };
    if matches!(buf.get(lf + 1), Some(b' ' | b'\t')) {
        return None;
    }
    let (vs, ve) = trim_bounds(buf, from, end);
    Some((lf, vs, ve))
}

impl<'a> Message<'a> {
    /// Parses one complete message (datagram semantics: without Content-Length the body is
    /// the rest of the buffer; with it, bytes past the body are ignored).
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge);
        }
        // RFC 3261 §7.5: ignore CRLFs before the start line.
        let mut pos = 0;
        while pos < buf.len() && (buf[pos] == b'\r' || buf[pos] == b'\n') {
            pos += 1;
        }
        if pos >= buf.len() {
            return Err(ParseError::Empty);
        }
        let lf = find_lf(buf, pos).ok_or(ParseError::Truncated)?;
        let line_end = line_bounds(buf, pos, lf);
        let start = parse_start_line(&buf[pos..line_end])?;
        let start_end = lf + 1;
        pos = start_end;

        let mut headers: SmallVec<[Header; INLINE_HEADERS]> = SmallVec::new();
        let mut line_no: u32 = 1;
        let head_end;
        loop {
            line_no += 1;
            if pos >= buf.len() {
                // The datagram ends right after a complete header line, without the empty
                // line. Tolerated (robustness principle): the message has no body. Streams
                // never get here, since framing requires the empty line.
                if headers.is_empty() {
                    return Err(ParseError::Truncated);
                }
                head_end = pos;
                break;
            }
            // Empty line: end of the header section.
            if buf[pos] == b'\n' {
                head_end = pos;
                pos += 1;
                break;
            }
            if buf[pos] == b'\r' && buf.get(pos + 1) == Some(&b'\n') {
                head_end = pos;
                pos += 2;
                break;
            }
            if buf[pos] == b' ' || buf[pos] == b'\t' {
                // A continuation line with no header before it.
                return Err(ParseError::BadHeaderLine { line: line_no });
            }
            let line_start = pos;
            // Header name: token, then optional white space, then ':'.
            let mut i = crate::chars::span(&crate::chars::TOKEN, buf, pos);
            let name_end = i;
            while i < buf.len() && (buf[i] == b' ' || buf[i] == b'\t') {
                i += 1;
            }
            if name_end == line_start || i >= buf.len() || buf[i] != b':' {
                return Err(ParseError::BadHeaderLine { line: line_no });
            }
            i += 1;
            // Value: to the end of the line plus any continuation lines. The common line
            // (one CRLF or LF, no fold, no stray CR) is found with one scan; anything else
            // takes the general path below.
            let (lf, vs, ve) = match value_fast(buf, i) {
                Some(bounds) => bounds,
                None => {
                    let mut lf = find_lf(buf, i).ok_or(ParseError::Truncated)?;
                    while lf + 1 < buf.len() && (buf[lf + 1] == b' ' || buf[lf + 1] == b'\t') {
                        line_no += 1;
                        lf = find_lf(buf, lf + 1).ok_or(ParseError::Truncated)?;
                    }
                    let content_end = line_bounds(buf, line_start, lf);
                    let (vs, ve) = trim_bounds(buf, i, content_end);
                    // A bare CR inside a value is not a fold.
                    if memchr::memchr(b'\r', &buf[vs..ve])
                        .is_some_and(|r| buf.get(vs + r + 1) != Some(&b'\n'))
                    {
                        return Err(ParseError::BadHeaderLine { line: line_no });
                    }
                    (lf, vs, ve)
                }
            };
            if headers.len() == MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            // All offsets are at most buf.len() <= MAX_MESSAGE_BYTES (checked on entry).
            headers.push(Header {
                name: HeaderName::from_bytes(&buf[line_start..name_end]),
                start: line_start as u16,
                name_end: name_end as u16,
                value_start: vs as u16,
                value_end: ve as u16,
                end: (lf + 1) as u16,
            });
            pos = lf + 1;
        }

        let v = validate(buf, &start, &headers, pos)?;
        Ok(Message {
            buf,
            start,
            start_end: start_end as u32,
            headers,
            head_end: head_end as u32,
            body: v.body,
            call_id: v.call_id,
            cseq: v.cseq,
            from: v.from,
            to: v.to,
            top_via: v.top_via,
            max_forwards: v.max_forwards,
            content_length: v.content_length,
        })
    }

    /// The bytes of the message as parsed: start line through the end of the body.
    pub fn as_bytes(&self) -> &'a [u8] {
        let end = self.body_offset() + self.body.len();
        &self.buf[..end]
    }

    /// The buffer passed to [`Message::parse`] (may extend past the message).
    pub fn buffer(&self) -> &'a [u8] {
        self.buf
    }

    /// Start line.
    pub fn start_line(&self) -> &StartLine<'a> {
        &self.start
    }

    /// Byte offset where the start line ends (past its line end).
    pub fn start_line_end(&self) -> usize {
        self.start_end as usize
    }

    /// Byte offset of the empty line that ends the header section.
    pub fn head_end(&self) -> usize {
        self.head_end as usize
    }

    /// Byte offset of the body.
    pub fn body_offset(&self) -> usize {
        let e = self.head_end as usize;
        match self.buf.get(e) {
            Some(b'\r') => e + 2,
            Some(_) => e + 1,
            None => e,
        }
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method, `None` for responses.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Request-URI, `None` for responses.
    pub fn request_uri(&self) -> Option<&Uri<'a>> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// Status code, `None` for requests.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// Reason phrase, `None` for requests.
    pub fn reason(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// The transaction's method: the request's, or the CSeq method of a response.
    pub fn cseq_method(&self) -> Method<'a> {
        Method::from_bytes(self.cseq.method)
    }

    /// Call-ID.
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    /// CSeq.
    pub fn cseq(&self) -> CSeq<'a> {
        self.cseq
    }

    /// From.
    pub fn from(&self) -> &NameAddr<'a> {
        &self.from
    }

    /// To.
    pub fn to(&self) -> &NameAddr<'a> {
        &self.to
    }

    /// From tag.
    pub fn from_tag(&self) -> Option<&'a [u8]> {
        self.from.tag()
    }

    /// To tag.
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        self.to.tag()
    }

    /// The first (topmost) Via.
    pub fn top_via(&self) -> &Via<'a> {
        &self.top_via
    }

    /// Max-Forwards, when present.
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }

    /// Content-Length, when present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// Body (exactly Content-Length bytes when the header is present).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// All header lines in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// A header line's name as written.
    pub fn raw_name(&self, h: &Header) -> &'a [u8] {
        &self.buf[h.start as usize..h.name_end as usize]
    }

    /// A header line's value (folds included, outer white space trimmed).
    pub fn value(&self, h: &Header) -> &'a [u8] {
        &self.buf[h.value_start as usize..h.value_end as usize]
    }

    /// The first value of the named header.
    pub fn header(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| self.value(h))
    }

    /// The first value of a header looked up by its written name (case-insensitive); useful
    /// for headers with no [`HeaderName`].
    pub fn header_by_name(&self, name: &[u8]) -> Option<&'a [u8]> {
        let known = HeaderName::from_bytes(name);
        self.headers
            .iter()
            .find(|h| {
                if known == HeaderName::Other {
                    h.name == HeaderName::Other && eq_ic(self.raw_name(h), name)
                } else {
                    h.name == known
                }
            })
            .map(|h| self.value(h))
    }

    /// Every line's value for the named header, in order.
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| self.value(h))
    }

    /// Every list element of the named header across all its lines, in order.
    pub fn list_values(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.header_values(name).flat_map(ListIter::new)
    }

    /// All Via elements, top first. Each was validated at parse time.
    pub fn vias(&self) -> impl Iterator<Item = Via<'a>> + '_ {
        self.list_values(HeaderName::Via)
            .filter_map(|v| Via::parse(v).ok())
    }

    /// All Contact elements, in order. Each was validated at parse time.
    pub fn contacts(&self) -> impl Iterator<Item = Contact<'a>> + '_ {
        self.list_values(HeaderName::Contact)
            .filter_map(|v| Contact::parse(v).ok())
    }

    /// All Route elements, top first. Each was validated at parse time.
    pub fn routes(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.list_values(HeaderName::Route)
            .filter_map(|v| NameAddr::parse(v).ok())
    }

    /// All Record-Route elements, top first. Each was validated at parse time.
    pub fn record_routes(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.list_values(HeaderName::RecordRoute)
            .filter_map(|v| NameAddr::parse(v).ok())
    }

    /// Expires header, saturating at `u32::MAX` (RFC 4475 §3.1.2.4: a huge value is treated
    /// as the largest the element supports). `None` when absent or not a number.
    pub fn expires(&self) -> Option<u32> {
        self.header(HeaderName::Expires)
            .and_then(|v| crate::chars::parse_u32_saturating(crate::chars::trim(v)))
    }

    /// Content-Type, parsed. `None` when absent; `Some(Err)` when malformed.
    pub fn content_type(&self) -> Option<Result<crate::header::MediaType<'a>, ValueError>> {
        self.header(HeaderName::ContentType)
            .map(crate::header::MediaType::parse)
    }

    /// True when the named option tag is listed in any Supported/Require/... line.
    pub fn has_option_tag(&self, name: HeaderName, tag: &[u8]) -> bool {
        self.list_values(name).any(|t| eq_ic(t, tag))
    }
}

struct Validated<'a> {
    body: &'a [u8],
    call_id: &'a [u8],
    cseq: CSeq<'a>,
    from: NameAddr<'a>,
    to: NameAddr<'a>,
    top_via: Via<'a>,
    max_forwards: Option<u8>,
    content_length: Option<u32>,
}

/// Validates what the proxy relies on and locates the body. Inlined into its one caller so
/// that the views it builds land in the message without another copy.
#[inline(always)]
fn validate<'a>(
    buf: &'a [u8],
    start: &StartLine<'a>,
    headers: &[Header],
    body_start: usize,
) -> Result<Validated<'a>, ParseError> {
    let mut call_id = None;
    let mut cseq = None;
    let mut from = None;
    let mut to = None;
    let mut top_via = None;
    let mut max_forwards = None;
    let mut content_length = None;
    for h in headers {
        let v = &buf[h.value_start as usize..h.value_end as usize];
        let bad = |e| ParseError::BadHeaderValue(h.name, e);
        let once = |slot: bool| {
            if slot {
                Err(ParseError::DuplicateHeader(h.name))
            } else {
                Ok(())
            }
        };
        match h.name {
            HeaderName::Via => {
                for el in ListIter::new(v) {
                    let via = Via::parse(el).map_err(bad)?;
                    if top_via.is_none() {
                        top_via = Some(via);
                    }
                }
            }
            HeaderName::CallId => {
                once(call_id.is_some())?;
                validate_call_id(v).map_err(bad)?;
                call_id = Some(v);
            }
            HeaderName::CSeq => {
                once(cseq.is_some())?;
                cseq = Some(CSeq::parse(v).map_err(bad)?);
            }
            HeaderName::From => {
                once(from.is_some())?;
                from = Some(NameAddr::parse(v).map_err(bad)?);
            }
            HeaderName::To => {
                once(to.is_some())?;
                to = Some(NameAddr::parse(v).map_err(bad)?);
            }
            HeaderName::MaxForwards => {
                once(max_forwards.is_some())?;
                max_forwards = Some(parse_decimal(v, 255).map_err(bad)? as u8);
            }
            HeaderName::ContentLength => {
                once(content_length.is_some())?;
                content_length =
                    Some(parse_decimal(v, MAX_MESSAGE_BYTES as u64).map_err(bad)? as u32);
            }
            HeaderName::Contact => {
                for (n, el) in ListIter::new(v).enumerate() {
                    if el.is_empty() {
                        return Err(bad(ValueError::EmptyListElement));
                    }
                    // Contact::parse, without moving the address into the enum only to drop it.
                    if crate::chars::trim(el) == b"*" {
                        if n > 0 {
                            return Err(bad(ValueError::TrailingGarbage));
                        }
                    } else {
                        NameAddr::check(el).map_err(bad)?;
                    }
                }
            }
            HeaderName::Route | HeaderName::RecordRoute => {
                for el in ListIter::new(v) {
                    if el.is_empty() {
                        return Err(bad(ValueError::EmptyListElement));
                    }
                    if !NameAddr::check(el).map_err(bad)? {
                        // rec-route / route = name-addr: angle brackets are required.
                        return Err(bad(ValueError::BadAngleBrackets));
                    }
                }
            }
            HeaderName::Date => validate_date(v).map_err(bad)?,
            _ => {}
        }
    }
    let call_id = call_id.ok_or(ParseError::MissingHeader(HeaderName::CallId))?;
    let cseq = cseq.ok_or(ParseError::MissingHeader(HeaderName::CSeq))?;
    let from = from.ok_or(ParseError::MissingHeader(HeaderName::From))?;
    let to = to.ok_or(ParseError::MissingHeader(HeaderName::To))?;
    let top_via = top_via.ok_or(ParseError::MissingHeader(HeaderName::Via))?;
    if let StartLine::Request { method, .. } = start {
        if method.as_bytes() != cseq.method {
            return Err(ParseError::CSeqMethodMismatch);
        }
    }
    let available = buf.len() - body_start;
    let body_len = match content_length {
        Some(cl) if cl as usize > available => {
            return Err(ParseError::ContentLengthExceedsBody {
                declared: cl,
                available: available as u32,
            })
        }
        Some(cl) => cl as usize,
        None => available,
    };
    Ok(Validated {
        body: &buf[body_start..body_start + body_len],
        call_id,
        cseq,
        from,
        to,
        top_via,
        max_forwards,
        content_length,
    })
}

/// Parses the start line (without its line end).
#[inline(always)]
fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp1 = crate::chars::find1(line, b' ').ok_or(ParseError::BadStartLine)?;
        check_version(&line[..sp1])?;
        let rest = &line[sp1 + 1..];
        if rest.len() < 3 {
            return Err(ParseError::BadStatusCode);
        }
        let (code, after) = match rest.iter().position(|&b| b == b' ') {
            Some(sp) => (&rest[..sp], Some(&rest[sp + 1..])),
            None => (rest, None),
        };
        if code.len() != 3 {
            return Err(ParseError::BadStatusCode);
        }
        let code = parse_u64_max(code, 699)
            .filter(|c| *c >= 100)
            .ok_or(ParseError::BadStatusCode)?;
        // A missing SP before an empty reason phrase is tolerated (common in the wild).
        let reason = after.unwrap_or(&[]);
        if reason.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(ParseError::BadReasonPhrase);
        }
        return Ok(StartLine::Response {
            code: code as u16,
            reason,
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly two single spaces.
    let sp1 = crate::chars::find1(line, b' ').ok_or(ParseError::BadStartLine)?;
    let method = &line[..sp1];
    let rest = &line[sp1 + 1..];
    let sp2 = crate::chars::find1(rest, b' ').ok_or(ParseError::BadStartLine)?;
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if method.is_empty() || uri.is_empty() || version.contains(&b' ') || version.contains(&b'\t') {
        return Err(ParseError::BadStartLine);
    }
    if !all_token(method) {
        return Err(ParseError::BadMethod);
    }
    check_version(version)?;
    let uri = Uri::parse(uri, false).map_err(ParseError::BadRequestUri)?;
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        uri,
    })
}

fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    // SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT: well-formed but not 2.0 → 505.
    let ok_shape = v.len() > 6
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].split(|&b| b == b'.').count() == 2
        && v[4..]
            .split(|&b| b == b'.')
            .all(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    if ok_shape {
        Err(ParseError::UnsupportedVersion)
    } else {
        Err(ParseError::BadStartLine)
    }
}
