//! Editing a parsed message without reparsing it, and building responses, ACKs and CANCELs
//! from requests (RFC 3261 §8.2.6, §9.1, §16.6, §17.1.1.3).
//!
//! An [`Editor`] records splices against the original bytes (insert, replace, remove) and
//! writes the result in one pass into a caller-owned `Vec<u8>`. Once that buffer has grown to
//! the largest message it sees, editing allocates nothing: the edit list lives inline and
//! numbers are formatted into inline buffers.
//!
//! It does not re-validate: values the caller inserts are written as given.

use crate::chars::skip_lws;
use crate::header::{HeaderName, ListIter};
use crate::message::{Header, Message, Method, StartLine};
use smallvec::SmallVec;

/// Bytes an edit writes: borrowed, or a short value formatted inline.
#[derive(Debug, Clone, Copy)]
enum Piece<'e> {
    Borrowed(&'e [u8]),
    Inline { buf: [u8; 64], len: u8 },
}

impl Piece<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Piece::Borrowed(b) => b,
            Piece::Inline { buf, len } => &buf[..*len as usize],
        }
    }

    /// Formats `prefix`, `value` (as bytes) and a decimal into an inline piece.
    fn inline(parts: &[&[u8]]) -> Option<Piece<'static>> {
        let mut buf = [0u8; 64];
        let mut len = 0usize;
        for p in parts {
            if len + p.len() > buf.len() {
                return None;
            }
            buf[len..len + p.len()].copy_from_slice(p);
            len += p.len();
        }
        Some(Piece::Inline {
            buf,
            len: len as u8,
        })
    }
}

/// One splice: `orig[start..end]` is replaced by `before + piece + after`.
#[derive(Debug, Clone, Copy)]
struct Edit<'e> {
    start: u32,
    end: u32,
    before: &'static [u8],
    piece: Piece<'e>,
    after: &'static [u8],
}

/// Why an edit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditError {
    /// Max-Forwards is already zero: the proxy must answer 483 (RFC 3261 §16.3).
    TooManyHops,
    /// The header or list element to remove or change is not there.
    NotPresent,
    /// Two edits touch the same bytes.
    Overlap,
    /// A value too long for an inline edit (over 64 bytes).
    TooLong,
    /// The operation applies to requests only (or responses only).
    WrongKind,
}

/// Decimal digits of `n` without allocating.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Offset of `sub` within `buf`; `sub` must be a sub-slice of `buf`.
fn offset_in(buf: &[u8], sub: &[u8]) -> usize {
    let off = (sub.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    assert!(
        off <= buf.len() && off + sub.len() <= buf.len(),
        "slice not inside the message"
    );
    off
}

/// Records edits against a message and writes the edited message.
#[derive(Debug)]
pub struct Editor<'m, 'a, 'e> {
    msg: &'m Message<'a>,
    edits: SmallVec<[Edit<'e>; 12]>,
    body: Option<&'e [u8]>,
}

impl<'m, 'a, 'e> Editor<'m, 'a, 'e> {
    /// Starts an edit session over `msg`.
    pub fn new(msg: &'m Message<'a>) -> Self {
        Editor {
            msg,
            edits: SmallVec::new(),
            body: None,
        }
    }

    fn push(
        &mut self,
        start: usize,
        end: usize,
        before: &'static [u8],
        piece: Piece<'e>,
        after: &'static [u8],
    ) {
        self.edits.push(Edit {
            start: start as u32,
            end: end as u32,
            before,
            piece,
            after,
        });
    }

    /// Offset where header lines start (just past the start line).
    fn headers_start(&self) -> usize {
        self.msg.start_line_end()
    }

    fn first(&self, name: HeaderName) -> Option<&'m Header> {
        self.msg.headers().iter().find(|h| h.name == name)
    }

    /// Inserts a whole header line `Name: value` before the first line of `before_name`, or at
    /// the top of the header section when there is none.
    fn insert_line(&mut self, before_name: HeaderName, name: &'static [u8], value: &'e [u8]) {
        let at = self
            .first(before_name)
            .map_or(self.headers_start(), |h| h.start as usize);
        self.push(at, at, name, Piece::Borrowed(value), b"\r\n");
    }

    /// Replaces the Request-URI (requests only).
    pub fn set_request_uri(&mut self, uri: &'e [u8]) -> Result<(), EditError> {
        let StartLine::Request { uri: old, .. } = self.msg.start_line() else {
            return Err(EditError::WrongKind);
        };
        let start = offset_in(self.msg.buffer(), old.as_bytes());
        self.push(
            start,
            start + old.as_bytes().len(),
            b"",
            Piece::Borrowed(uri),
            b"",
        );
        Ok(())
    }

    /// Adds a Via above the existing ones (`value` is the element, e.g.
    /// `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK...;rport`).
    pub fn push_via(&mut self, value: &'e [u8]) {
        self.insert_line(HeaderName::Via, b"Via: ", value);
    }

    /// Removes the topmost Via element (a proxy forwarding a response, RFC 3261 §16.7).
    pub fn pop_via(&mut self) -> Result<(), EditError> {
        self.remove_first_element(HeaderName::Via)
    }

    /// Removes the topmost Route element (loose routing, RFC 3261 §16.4 / §16.12).
    pub fn pop_route(&mut self) -> Result<(), EditError> {
        self.remove_first_element(HeaderName::Route)
    }

    fn remove_first_element(&mut self, name: HeaderName) -> Result<(), EditError> {
        let h = *self.first(name).ok_or(EditError::NotPresent)?;
        let value = self.msg.value(&h);
        let mut it = ListIter::new(value);
        let first = it.next().ok_or(EditError::NotPresent)?;
        match it.next() {
            // Only element on the line: remove the whole line.
            None => self.push(
                h.start as usize,
                h.end as usize,
                b"",
                Piece::Borrowed(b""),
                b"",
            ),
            // Remove the element and its comma, up to the next element.
            Some(second) => {
                let buf = self.msg.buffer();
                let s = offset_in(buf, first);
                let e = offset_in(buf, second);
                self.push(s, e, b"", Piece::Borrowed(b""), b"");
            }
        }
        Ok(())
    }

    /// Adds a Record-Route on top (`value` is the name-addr, e.g. `<sip:192.0.2.1;lr>`).
    pub fn add_record_route(&mut self, value: &'e [u8]) {
        self.insert_line(HeaderName::RecordRoute, b"Record-Route: ", value);
    }

    /// Adds a Route on top of the route set.
    pub fn push_route(&mut self, value: &'e [u8]) {
        self.insert_line(HeaderName::Route, b"Route: ", value);
    }

    /// Decrements Max-Forwards, adding `Max-Forwards: 70` when absent (RFC 3261 §16.6 step 3).
    /// Returns the new value, or [`EditError::TooManyHops`] when it is already zero.
    pub fn decrement_max_forwards(&mut self) -> Result<u8, EditError> {
        match self.msg.max_forwards() {
            Some(0) => Err(EditError::TooManyHops),
            Some(n) => {
                let h = *self
                    .first(HeaderName::MaxForwards)
                    .ok_or(EditError::NotPresent)?;
                let mut d = [0u8; 20];
                let piece = Piece::inline(&[decimal(u64::from(n - 1), &mut d)])
                    .ok_or(EditError::TooLong)?;
                self.push(
                    h.value_start as usize,
                    h.value_end as usize,
                    b"",
                    piece,
                    b"",
                );
                Ok(n - 1)
            }
            None => {
                let at = self.headers_start();
                self.push(at, at, b"Max-Forwards: ", Piece::Borrowed(b"70"), b"\r\n");
                Ok(70)
            }
        }
    }

    /// Fills in `received` and `rport` on the top Via (RFC 3261 §18.2.1, RFC 3581), replacing
    /// any `received`/`rport` already there. `received` is the source address as text.
    pub fn set_top_via_received(
        &mut self,
        received: &[u8],
        rport: Option<u16>,
    ) -> Result<(), EditError> {
        let h = *self.first(HeaderName::Via).ok_or(EditError::NotPresent)?;
        let buf = self.msg.buffer();
        let el = ListIter::new(self.msg.value(&h))
            .next()
            .ok_or(EditError::NotPresent)?;
        let el_start = offset_in(buf, el);
        // Remove existing received / rport parameters (from their ';' to the next one).
        let mut i = 0;
        while let Some(semi) = el[i..].iter().position(|&b| b == b';').map(|p| p + i) {
            let name_start = skip_lws(el, semi + 1);
            let mut name_end = name_start;
            while name_end < el.len() && crate::chars::is_token(el[name_end]) {
                name_end += 1;
            }
            let next = el[name_end..]
                .iter()
                .position(|&b| b == b';')
                .map_or(el.len(), |p| p + name_end);
            let pname = &el[name_start..name_end];
            if pname.eq_ignore_ascii_case(b"received") || pname.eq_ignore_ascii_case(b"rport") {
                self.push(
                    el_start + semi,
                    el_start + next,
                    b"",
                    Piece::Borrowed(b""),
                    b"",
                );
            }
            i = next;
            if i >= el.len() {
                break;
            }
        }
        let el_end = el_start + el.len();
        let mut d = [0u8; 20];
        let piece = match rport {
            Some(p) => Piece::inline(&[
                b";received=",
                received,
                b";rport=",
                decimal(u64::from(p), &mut d),
            ]),
            None => Piece::inline(&[b";received=", received]),
        }
        .ok_or(EditError::TooLong)?;
        self.push(el_end, el_end, b"", piece, b"");
        Ok(())
    }

    /// Removes every line of the named header.
    pub fn remove_header(&mut self, name: HeaderName) {
        let lines: SmallVec<[(u16, u16); 8]> = self
            .msg
            .headers()
            .iter()
            .filter(|h| h.name == name)
            .map(|h| (h.start, h.end))
            .collect();
        for (s, e) in lines {
            self.push(s as usize, e as usize, b"", Piece::Borrowed(b""), b"");
        }
    }

    /// Removes every line of a header this crate has no [`HeaderName`] for, by its name
    /// (case-insensitive), e.g. `X-Tenant`.
    pub fn remove_raw_header(&mut self, name: &[u8]) {
        let lines: SmallVec<[(u16, u16); 4]> = self
            .msg
            .headers()
            .iter()
            .filter(|h| {
                h.name == HeaderName::Other && self.msg.raw_name(h).eq_ignore_ascii_case(name)
            })
            .map(|h| (h.start, h.end))
            .collect();
        for (s, e) in lines {
            self.push(s as usize, e as usize, b"", Piece::Borrowed(b""), b"");
        }
    }

    /// Replaces the value of the first line of the named header, or adds the header at the end
    /// of the header section when absent.
    pub fn set_header(&mut self, name: HeaderName, value: &'e [u8]) {
        match self.first(name) {
            Some(h) => {
                let (s, e) = (h.value_start as usize, h.value_end as usize);
                self.push(s, e, b"", Piece::Borrowed(value), b"");
            }
            None => self.add_header(name, value),
        }
    }

    /// Adds a header line at the end of the header section.
    pub fn add_header(&mut self, name: HeaderName, value: &'e [u8]) {
        let at = self.msg.head_end();
        self.edits.push(Edit {
            start: at as u32,
            end: at as u32,
            before: name_with_colon(name),
            piece: Piece::Borrowed(value),
            after: b"\r\n",
        });
    }

    /// Adds a header line with a name this crate has no [`HeaderName`] for. `line` is the whole
    /// line without CRLF, e.g. `X-Tenant: acme`.
    pub fn add_raw_header(&mut self, line: &'e [u8]) {
        let at = self.msg.head_end();
        self.push(at, at, b"", Piece::Borrowed(line), b"\r\n");
    }

    /// Replaces the body, fixing Content-Length (and setting Content-Type when given).
    pub fn set_body(&mut self, body: &'e [u8], content_type: Option<&'e [u8]>) {
        self.body = Some(body);
        if let Some(ct) = content_type {
            self.set_header(HeaderName::ContentType, ct);
        }
    }

    /// Writes the edited message into `out` (cleared first).
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), EditError> {
        let msg = self.msg;
        let buf = msg.buffer();
        let mut edits = self.edits.clone();
        // Body edits: Content-Length follows the new body.
        let mut cl_digits = [0u8; 20];
        let new_body = self.body;
        if let Some(b) = new_body {
            let digits = decimal(b.len() as u64, &mut cl_digits);
            let piece = Piece::inline(&[digits]).ok_or(EditError::TooLong)?;
            match msg
                .headers()
                .iter()
                .find(|h| h.name == HeaderName::ContentLength)
            {
                Some(h) => edits.push(Edit {
                    start: u32::from(h.value_start),
                    end: u32::from(h.value_end),
                    before: b"",
                    piece,
                    after: b"",
                }),
                None => edits.push(Edit {
                    start: msg.head_end() as u32,
                    end: msg.head_end() as u32,
                    before: b"Content-Length: ",
                    piece,
                    after: b"\r\n",
                }),
            }
        }
        // Stable sort keeps insertions at one offset in the order they were made.
        edits.sort_by_key(|e| (e.start, e.end));
        for w in edits.windows(2) {
            if w[1].start < w[0].end {
                return Err(EditError::Overlap);
            }
        }
        out.clear();
        let head_stop = msg.body_offset();
        let mut pos = 0usize;
        for e in &edits {
            out.extend_from_slice(&buf[pos..e.start as usize]);
            out.extend_from_slice(e.before);
            out.extend_from_slice(e.piece.as_bytes());
            out.extend_from_slice(e.after);
            pos = e.end as usize;
        }
        if head_stop > msg.head_end() {
            out.extend_from_slice(&buf[pos..head_stop]);
        } else {
            // The datagram had no empty line after the headers: add one.
            out.extend_from_slice(&buf[pos..head_stop]);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(new_body.unwrap_or(msg.body()));
        Ok(())
    }
}

fn name_with_colon(name: HeaderName) -> &'static [u8] {
    macro_rules! names {
        ($($v:ident => $s:literal),* $(,)?) => {
            match name { $(HeaderName::$v => $s,)* _ => b"X-Unnamed: " }
        };
    }
    names! {
        Via => b"Via: ", From => b"From: ", To => b"To: ", CallId => b"Call-ID: ",
        CSeq => b"CSeq: ", MaxForwards => b"Max-Forwards: ", Contact => b"Contact: ",
        Route => b"Route: ", RecordRoute => b"Record-Route: ", ContentLength => b"Content-Length: ",
        ContentType => b"Content-Type: ", Expires => b"Expires: ", MinExpires => b"Min-Expires: ",
        Authorization => b"Authorization: ", WwwAuthenticate => b"WWW-Authenticate: ",
        ProxyAuthenticate => b"Proxy-Authenticate: ", ProxyAuthorization => b"Proxy-Authorization: ",
        Supported => b"Supported: ", Require => b"Require: ", Unsupported => b"Unsupported: ",
        Allow => b"Allow: ", Accept => b"Accept: ", UserAgent => b"User-Agent: ", Server => b"Server: ",
        RetryAfter => b"Retry-After: ", Warning => b"Warning: ", Reason => b"Reason: ",
        Date => b"Date: ", Timestamp => b"Timestamp: ", Event => b"Event: ",
        SessionExpires => b"Session-Expires: ", MinSe => b"Min-SE: ", Path => b"Path: ",
        ServiceRoute => b"Service-Route: ", AuthenticationInfo => b"Authentication-Info: ",
        PAssertedIdentity => b"P-Asserted-Identity: ", Privacy => b"Privacy: ",
        ProxyRequire => b"Proxy-Require: ", AllowEvents => b"Allow-Events: ",
    }
}

/// Builds a response to `req` (RFC 3261 §8.2.6): copies every Via (in order), From, To (adding
/// `to_tag` when the request's To has none and the status is above 100), Call-ID and CSeq;
/// then extra headers; then Content-Length and the body.
#[derive(Debug)]
pub struct ResponseBuilder<'m, 'a, 'e> {
    req: &'m Message<'a>,
    code: u16,
    reason: &'e [u8],
    to_tag: Option<&'e [u8]>,
    extra: SmallVec<[(&'static [u8], &'e [u8]); 8]>,
    raw_extra: SmallVec<[&'e [u8]; 4]>,
    body: Option<(&'e [u8], &'e [u8])>,
    copy_record_route: bool,
}

impl<'m, 'a, 'e> ResponseBuilder<'m, 'a, 'e> {
    /// Starts a response with this status line.
    pub fn new(req: &'m Message<'a>, code: u16, reason: &'e [u8]) -> Self {
        assert!(
            (100..700).contains(&code),
            "status code {code} out of range"
        );
        ResponseBuilder {
            req,
            code,
            reason,
            to_tag: None,
            extra: SmallVec::new(),
            raw_extra: SmallVec::new(),
            body: None,
            copy_record_route: false,
        }
    }

    /// The To tag to add when the request has none (ignored for 100).
    pub fn to_tag(mut self, tag: &'e [u8]) -> Self {
        self.to_tag = Some(tag);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: &'e [u8]) -> Self {
        self.extra.push((name_with_colon(name), value));
        self
    }

    /// Adds a raw header line (without CRLF).
    pub fn raw_header(mut self, line: &'e [u8]) -> Self {
        self.raw_extra.push(line);
        self
    }

    /// Copies Record-Route (a UAS answering a dialog-creating request, RFC 3261 §12.1.1).
    pub fn copy_record_route(mut self) -> Self {
        self.copy_record_route = true;
        self
    }

    /// Sets the body and its content type.
    pub fn body(mut self, content_type: &'e [u8], body: &'e [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// Writes the response into `out` (cleared first).
    pub fn write(&self, out: &mut Vec<u8>) {
        let req = self.req;
        out.clear();
        let mut d = [0u8; 20];
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(decimal(u64::from(self.code), &mut d));
        out.push(b' ');
        out.extend_from_slice(self.reason);
        out.extend_from_slice(b"\r\n");
        let buf = req.buffer();
        for h in req.headers() {
            let copy = match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => true,
                HeaderName::RecordRoute => self.copy_record_route,
                HeaderName::Timestamp => self.code == 100,
                HeaderName::To => {
                    out.extend_from_slice(&buf[h.start as usize..h.value_end as usize]);
                    if let (Some(tag), None, true) = (self.to_tag, req.to_tag(), self.code > 100) {
                        out.extend_from_slice(b";tag=");
                        out.extend_from_slice(tag);
                    }
                    out.extend_from_slice(b"\r\n");
                    false
                }
                _ => false,
            };
            if copy {
                out.extend_from_slice(&buf[h.start as usize..h.end as usize]);
            }
        }
        for (name, value) in &self.extra {
            out.extend_from_slice(name);
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        for line in &self.raw_extra {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        let (ct, body) = self.body.unwrap_or((b"", b""));
        if !body.is_empty() {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(ct);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(decimal(body.len() as u64, &mut d));
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }
}

/// Writes the ACK a client transaction sends for a non-2xx final response (RFC 3261
/// §17.1.1.3): same Request-URI, Call-ID, From and CSeq number; To from the response; one Via
/// (the request's top Via); the request's Route headers; Content-Length 0.
pub fn ack_for_non2xx(request: &Message<'_>, response: &Message<'_>, out: &mut Vec<u8>) {
    assert!(
        request.method() == Some(Method::Invite),
        "ACK for non-2xx answers an INVITE"
    );
    in_transaction_request(request, b"ACK", Some(response), out);
}

/// Writes the CANCEL for a pending request (RFC 3261 §9.1): same Request-URI, Call-ID, To,
/// From and CSeq number with method CANCEL; one Via (the request's top Via, same branch); the
/// request's Route headers; Content-Length 0.
pub fn cancel_for(request: &Message<'_>, out: &mut Vec<u8>) {
    assert!(request.is_request(), "CANCEL targets a request");
    in_transaction_request(request, b"CANCEL", None, out);
}

fn in_transaction_request(
    req: &Message<'_>,
    method: &[u8],
    resp: Option<&Message<'_>>,
    out: &mut Vec<u8>,
) {
    out.clear();
    let buf = req.buffer();
    let uri = req
        .request_uri()
        .map_or(&b"sip:invalid"[..], |u| u.as_bytes());
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    // Top Via element only.
    if let Some(first) = req.list_values(HeaderName::Via).next() {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(first);
        out.extend_from_slice(b"\r\n");
    }
    for h in req.headers() {
        match h.name {
            HeaderName::Route | HeaderName::From | HeaderName::CallId => {
                out.extend_from_slice(&buf[h.start as usize..h.end as usize]);
            }
            HeaderName::To => match resp {
                Some(r) => {
                    out.extend_from_slice(b"To: ");
                    out.extend_from_slice(r.header(HeaderName::To).unwrap_or(req.value(h)));
                    out.extend_from_slice(b"\r\n");
                }
                None => out.extend_from_slice(&buf[h.start as usize..h.end as usize]),
            },
            _ => {}
        }
    }
    let mut d = [0u8; 20];
    out.extend_from_slice(b"CSeq: ");
    out.extend_from_slice(decimal(u64::from(req.cseq().seq), &mut d));
    out.push(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(b"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
}

/// Builds an error response (typically 400) for bytes that failed to parse, by scanning the
/// header lines leniently for Via, From, To, Call-ID and CSeq. Returns `false` (and leaves
/// `out` empty) when the bytes are not a request or lack what a response needs to be
/// routed (a Via and a CSeq): such input is dropped and counted instead.
pub fn error_response_for_unparsed(
    bytes: &[u8],
    code: u16,
    reason: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if bytes.len() >= 4 && bytes[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let mut has_via = false;
    let mut has_cseq = false;
    let mut d = [0u8; 20];
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(decimal(u64::from(code), &mut d));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    let mut lines = bytes.split(|&b| b == b'\n').skip(1);
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(crate::chars::trim(&line[..colon]));
        if line.iter().any(|&b| b < 0x20 && b != b'\t') {
            continue;
        }
        match name {
            HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq => {
                has_via |= name == HeaderName::Via;
                has_cseq |= name == HeaderName::CSeq;
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    if !(has_via && has_cseq) {
        out.clear();
        return false;
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    true
}
