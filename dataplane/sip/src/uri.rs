//! SIP, SIPS, tel and absolute URIs as zero-copy views (RFC 3261 §19.1, §25; RFC 3966).
//!
//! A [`Uri`] borrows the bytes it was parsed from. Escapes are validated but not decoded:
//! comparisons that need decoding (RFC 3261 §19.1.4) are the caller's, on the raw parts.

use crate::chars::{
    eq_ic, escaped_class, is_hchar, is_paramchar, is_password, is_uric, is_user, scan_host,
    skip_lws, span, span_to, trim, HostScan, PARAMCHAR, PASSWORD, USER,
};
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a URI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriError {
    /// No `scheme:` prefix, or a scheme with characters outside ALPHA/DIGIT/+/-/.
    BadScheme,
    /// Characters outside the user or password grammar, or a bad `%` escape.
    BadUserInfo,
    /// Empty host, bad hostname characters, or a malformed IPv4/IPv6 address.
    BadHost,
    /// Port not a decimal in 0..=65535.
    BadPort,
    /// An empty `;` parameter or a parameter with characters outside paramchar.
    BadParam,
    /// URI headers (`?...`) with characters outside the grammar.
    BadHeaders,
    /// Headers (`?`) where they are not allowed: the Request-URI, or an addr-spec outside `<>`.
    HeadersNotAllowed,
    /// White space or other bytes that never appear in a URI.
    BadCharacter,
    /// tel: subscriber part is empty or has characters outside the RFC 3966 grammar.
    BadTelNumber,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            UriError::BadScheme => "bad URI scheme",
            UriError::BadUserInfo => "bad user or password in URI",
            UriError::BadHost => "bad host in URI",
            UriError::BadPort => "bad port in URI",
            UriError::BadParam => "bad URI parameter",
            UriError::BadHeaders => "bad URI headers",
            UriError::HeadersNotAllowed => "URI headers not allowed here",
            UriError::BadCharacter => "illegal character in URI",
            UriError::BadTelNumber => "bad tel: number",
        };
        f.write_str(s)
    }
}

/// URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other scheme (absoluteURI); the bytes are the scheme name.
    Other(&'a [u8]),
}

/// The kind of a host in a URI or Via.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A DNS name.
    Name,
    /// A dotted-quad IPv4 address.
    V4,
    /// An IPv6 reference; [`Host::text`] excludes the brackets.
    V6,
}

/// A host as written, with its kind.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Host<'a> {
    /// The host text, without IPv6 brackets.
    pub text: &'a [u8],
    /// What the text is.
    pub kind: HostKind,
}

impl fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Host({:?}, {})",
            self.kind,
            String::from_utf8_lossy(self.text)
        )
    }
}

impl<'a> Host<'a> {
    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        let s = core::str::from_utf8(self.text).ok()?;
        match self.kind {
            HostKind::V4 => parse_ipv4(self.text).map(IpAddr::V4),
            HostKind::V6 => parse_v6(s.as_bytes()).map(IpAddr::V6),
            HostKind::Name => None,
        }
    }

    /// Parses `host` (hostname / IPv4address / IPv6reference). `s` must be exactly the host.
    pub fn parse(s: &'a [u8]) -> Result<Host<'a>, UriError> {
        if s.is_empty() {
            return Err(UriError::BadHost);
        }
        if s[0] == b'[' {
            if s.len() < 3 || s[s.len() - 1] != b']' {
                return Err(UriError::BadHost);
            }
            let inner = &s[1..s.len() - 1];
            parse_v6(inner).ok_or(UriError::BadHost)?;
            return Ok(Host {
                text: inner,
                kind: HostKind::V6,
            });
        }
        let scan = scan_host(s, 0);
        if scan.end != s.len() {
            return Err(UriError::BadHost);
        }
        Host::from_scan(s, scan)
    }

    /// The host `s`: a non-empty run of hostname characters that [`scan_host`] returned
    /// `scan` for (its flags describe `s`).
    #[inline]
    pub(crate) fn from_scan(s: &'a [u8], scan: HostScan) -> Result<Host<'a>, UriError> {
        debug_assert!(!s.is_empty());
        if scan.digits_and_dots {
            parse_ipv4(s).ok_or(UriError::BadHost)?;
            return Ok(Host {
                text: s,
                kind: HostKind::V4,
            });
        }
        if s[0] == b'.' || s[0] == b'-' || scan.double_dot {
            return Err(UriError::BadHost);
        }
        Ok(Host {
            text: s,
            kind: HostKind::Name,
        })
    }
}

/// Parses a dotted-quad IPv4 address exactly as `Ipv4Addr::from_str` does (four decimal
/// octets of one to three digits, each at most 255, no leading zero unless the octet is
/// `0`), without the UTF-8 check and the generic parser it goes through: this runs for
/// every Via and most URIs.
pub(crate) fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    // One pass, one byte at a time: a dot closes an octet, a digit extends it. Four or more
    // digits without a leading zero always exceed 255, so `v > 255` also bounds the length.
    let mut octets = [0u8; 4];
    let mut n = 0;
    let mut v: u16 = 0;
    let mut digits = 0u8;
    for &b in s {
        if b == b'.' {
            if digits == 0 || n == 3 {
                return None;
            }
            octets[n] = v as u8;
            n = n.wrapping_add(1);
            v = 0;
            digits = 0;
        } else {
            let d = b.wrapping_sub(b'0');
            // A digit after a leading zero (`01`) is refused, as by the standard parser.
            if d > 9 || (digits == 1 && v == 0) {
                return None;
            }
            // `v <= 255` and `digits <= 3` here, so neither can wrap.
            v = v.wrapping_mul(10).wrapping_add(u16::from(d));
            digits = digits.wrapping_add(1);
            if v > 255 {
                return None;
            }
        }
    }
    if digits == 0 || n != 3 {
        return None;
    }
    octets[3] = v as u8;
    Some(Ipv4Addr::from(octets))
}

/// Parses an IPv6 address. RFC 3261's ABNF (before RFC 5954 fixed it) admits `:::` before an
/// embedded IPv4 address, and RFC 5118 §4.10 asks parsers to tolerate it: the extra colon is
/// dropped before the strict parse.
fn parse_v6(text: &[u8]) -> Option<Ipv6Addr> {
    let s = core::str::from_utf8(text).ok()?;
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Some(a);
    }
    let triple = s.find(":::")?;
    let mut buf = [0u8; 64];
    let fixed_len = text.len() - 1;
    if fixed_len > buf.len() || s[triple + 1..].contains(":::") {
        return None;
    }
    buf[..triple].copy_from_slice(&text[..triple]);
    buf[triple..fixed_len].copy_from_slice(&text[triple + 1..]);
    core::str::from_utf8(&buf[..fixed_len]).ok()?.parse().ok()
}

/// Splits `hostport` into host and optional port. Handles `[v6]:port`.
pub fn parse_hostport(s: &[u8]) -> Result<(Host<'_>, Option<u16>), UriError> {
    let (host, port) = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&b| b == b']').ok_or(UriError::BadHost)?;
        let rest = &s[close + 1..];
        let port = match rest {
            [] => None,
            [b':', p @ ..] => Some(parse_port(p)?),
            _ => return Err(UriError::BadHost),
        };
        (&s[..=close], port)
    } else {
        match s.iter().position(|&b| b == b':') {
            Some(c) => (&s[..c], Some(parse_port(&s[c + 1..])?)),
            None => (s, None),
        }
    };
    Ok((Host::parse(host)?, port))
}

fn parse_port(p: &[u8]) -> Result<u16, UriError> {
    if p.is_empty() || p.len() > 5 {
        return Err(UriError::BadPort);
    }
    crate::chars::parse_u64_max(p, 65535)
        .map(|v| v as u16)
        .ok_or(UriError::BadPort)
}

/// A `;name[=value]` parameter list as written. Iterating yields trimmed names and values;
/// lookups are case-insensitive on the name. Quoted values keep their quotes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a [u8],
}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    v.map(|v| String::from_utf8_lossy(v).into_owned()),
                )
            }))
            .finish()
    }
}

impl<'a> Params<'a> {
    /// Wraps an already-validated parameter section (starting with `;` or empty).
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Params { raw }
    }

    /// The raw bytes, starting with `;` when not empty.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Iterates `(name, value)` pairs.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// `Some(value)` when the parameter is present (`Some(None)` for a flag like `lr`).
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.iter().find(|(n, _)| eq_ic(n, name)).map(|(_, v)| v)
    }

    /// True when the parameter is present, with or without a value.
    pub fn has(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    /// The value of a parameter, `None` when absent or valueless.
    pub fn value(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.get(name).flatten()
    }
}

/// Iterator over [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = self.rest;
            let i = skip_lws(s, 0);
            if i >= s.len() {
                return None;
            }
            // Skip the separator.
            let start = if s[i] == b';' { i + 1 } else { i };
            // The next ';' ends the parameter unless a quoted string comes first.
            let end = match crate::chars::find2(&s[start..], b';', b'"') {
                None => s.len(),
                Some(k) if s[start + k] == b';' => start + k,
                Some(_) => param_end(s, start),
            };
            self.rest = &s[end..];
            let item = &s[start..end];
            if trim(item).is_empty() {
                continue;
            }
            return Some(match crate::chars::find1(item, b'=') {
                Some(eq) => (trim(&item[..eq]), Some(trim(&item[eq + 1..]))),
                None => (trim(item), None),
            });
        }
    }
}

/// End (exclusive) of the parameter starting at `start`: the next `;` outside quotes.
fn param_end(s: &[u8], start: usize) -> usize {
    let mut j = start;
    while j < s.len() {
        match s[j] {
            b';' => return j,
            b'"' => match crate::chars::scan_quoted(s, j) {
                Some(e) => j = e,
                None => return s.len(),
            },
            _ => j += 1,
        }
    }
    s.len()
}

/// Validates a URI parameter section `;p[=v];...` (no LWS allowed inside a URI).
fn validate_uri_params(s: &[u8]) -> Result<(), UriError> {
    debug_assert!(s.is_empty() || s[0] == b';');
    for part in s.split(|&b| b == b';').skip(1) {
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(eq) => (&part[..eq], Some(&part[eq + 1..])),
            None => (part, None),
        };
        if name.is_empty() || !escaped_class(name, is_paramchar) {
            return Err(UriError::BadParam);
        }
        if let Some(v) = value {
            if v.is_empty() || !escaped_class(v, is_paramchar) {
                return Err(UriError::BadParam);
            }
        }
    }
    Ok(())
}

/// A parsed URI.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a [u8],
    /// The scheme.
    pub scheme: Scheme<'a>,
    /// User part, still escaped (`sip`/`sips`), or the subscriber number (`tel`).
    pub user: Option<&'a [u8]>,
    /// Password, still escaped (deprecated by RFC 3261 but parsed).
    pub password: Option<&'a [u8]>,
    /// Host (`sip`/`sips` only).
    pub host: Option<Host<'a>>,
    /// Port, when written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`), or tel: parameters.
    pub params: Params<'a>,
    /// URI headers after `?`, still escaped, without the `?`.
    pub headers: &'a [u8],
    /// For schemes other than sip/sips/tel: everything after `scheme:`.
    pub opaque: &'a [u8],
}

impl fmt::Debug for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uri({})", String::from_utf8_lossy(self.raw))
    }
}

impl<'a> Uri<'a> {
    /// The URI exactly as written.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// `sip:` or `sips:`.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The `transport` parameter.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.params.value(b"transport")
    }

    /// True when the URI carries `;lr` (loose routing, RFC 3261 §16.12).
    pub fn is_loose_route(&self) -> bool {
        self.params.has(b"lr")
    }

    /// Parses a URI. `allow_headers` is false for a Request-URI (RFC 3261 §19.1.1: headers are
    /// not allowed there) and for an addr-spec outside angle brackets.
    pub fn parse(raw: &'a [u8], allow_headers: bool) -> Result<Uri<'a>, UriError> {
        // The common shape (sip/sips, plain host, no escapes, no headers) in one pass; any
        // other input, valid or not, takes the general parser, which also names the defect.
        match Uri::parse_plain_sip(raw) {
            Some(uri) => Ok(uri),
            None => Uri::parse_general(raw, allow_headers),
        }
    }

    /// One-pass parse of `sip:`/`sips:` URIs without `%` escapes, URI headers or an IPv6
    /// host. Returns `None` for anything else, valid or not: it accepts a subset of what
    /// [`Uri::parse_general`] accepts and returns the same value for it (checked by the
    /// differential tests below).
    fn parse_plain_sip(raw: &'a [u8]) -> Option<Uri<'a>> {
        // "sip:" / "sips:" in any case, as one word compare (0x20 folds only the letters).
        let head = raw.first_chunk::<5>()?;
        let word = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (scheme, rest_start) = if word | 0x0020_2020 == u32::from_le_bytes(*b"sip:") {
            (Scheme::Sip, 4)
        } else if word | 0x2020_2020 == u32::from_le_bytes(*b"sips")
            && head[4] == b':'
            && raw.len() > 5
        {
            (Scheme::Sips, 5)
        } else {
            return None;
        };
        let s = raw;
        let mut i = rest_start;
        let mut user = None;
        let mut password = None;
        // The first '@' anywhere ends the userinfo, as in the general parser.
        if let Some(at) = crate::chars::find1(&s[i..], b'@').map(|a| a + i) {
            let user_start = i;
            i = span_to(&USER, s, i, at);
            if i == user_start {
                return None;
            }
            user = Some(&s[user_start..i]);
            if i < at && s[i] == b':' {
                i += 1;
                let pw_start = i;
                i = span_to(&PASSWORD, s, i, at);
                password = Some(&s[pw_start..i]);
            }
            if i != at {
                return None;
            }
            i += 1;
        }
        // host: hostname or IPv4 (an IPv6 reference goes to the general parser).
        let host_start = i;
        let scan = scan_host(s, i);
        i = scan.end;
        if i == host_start {
            return None;
        }
        let host = Host::from_scan(&s[host_start..i], scan).ok()?;
        let mut port = None;
        if i < s.len() && s[i] == b':' {
            i += 1;
            let port_start = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            port = Some(parse_port(&s[port_start..i]).ok()?);
        }
        // uri-parameters: `;name[=value]`, both 1*paramchar, up to the end.
        let params_start = i;
        while i < s.len() {
            if s[i] != b';' {
                return None;
            }
            i += 1;
            let name_start = i;
            i = span(&PARAMCHAR, s, i);
            if i == name_start {
                return None;
            }
            if i < s.len() && s[i] == b'=' {
                i += 1;
                let value_start = i;
                i = span(&PARAMCHAR, s, i);
                if i == value_start {
                    return None;
                }
            }
        }
        Some(Uri {
            raw,
            scheme,
            user,
            password,
            host: Some(host),
            port,
            params: Params::new(&s[params_start..]),
            headers: &[],
            opaque: &[],
        })
    }

    /// The general parser: every scheme and form, and the error that names a defect.
    fn parse_general(raw: &'a [u8], allow_headers: bool) -> Result<Uri<'a>, UriError> {
        if raw.iter().any(|&b| b <= b' ' || b >= 0x7f) {
            return Err(UriError::BadCharacter);
        }
        let colon = raw
            .iter()
            .position(|&b| b == b':')
            .ok_or(UriError::BadScheme)?;
        let scheme_raw = &raw[..colon];
        if scheme_raw.is_empty()
            || !scheme_raw[0].is_ascii_alphabetic()
            || !scheme_raw
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(UriError::BadScheme);
        }
        let rest = &raw[colon + 1..];
        let mut uri = Uri {
            raw,
            scheme: Scheme::Other(scheme_raw),
            user: None,
            password: None,
            host: None,
            port: None,
            params: Params::default(),
            headers: &[],
            opaque: &[],
        };
        if eq_ic(scheme_raw, b"sip") || eq_ic(scheme_raw, b"sips") {
            uri.scheme = if scheme_raw.len() == 3 {
                Scheme::Sip
            } else {
                Scheme::Sips
            };
            uri.parse_sip(rest, allow_headers)?;
        } else if eq_ic(scheme_raw, b"tel") {
            uri.scheme = Scheme::Tel;
            uri.parse_tel(rest)?;
        } else {
            if rest.is_empty() || !escaped_class(rest, is_uric) {
                return Err(UriError::BadCharacter);
            }
            uri.opaque = rest;
        }
        Ok(uri)
    }

    fn parse_sip(&mut self, rest: &'a [u8], allow_headers: bool) -> Result<(), UriError> {
        // The first '@' ends userinfo: no character after it in the grammar can be an '@'.
        let (userinfo, hostpart) = match rest.iter().position(|&b| b == b'@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        if let Some(ui) = userinfo {
            let (user, password) = match ui.iter().position(|&b| b == b':') {
                Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                None => (ui, None),
            };
            if user.is_empty() || !escaped_class(user, is_user) {
                return Err(UriError::BadUserInfo);
            }
            if let Some(p) = password {
                if !escaped_class(p, is_password) {
                    return Err(UriError::BadUserInfo);
                }
            }
            self.user = Some(user);
            self.password = password;
        }
        let (before_headers, headers) = match hostpart.iter().position(|&b| b == b'?') {
            Some(q) => (&hostpart[..q], Some(&hostpart[q + 1..])),
            None => (hostpart, None),
        };
        if let Some(h) = headers {
            if !allow_headers {
                return Err(UriError::HeadersNotAllowed);
            }
            validate_uri_headers(h)?;
            self.headers = h;
        }
        // A ';' can't appear in hostport, so the first one starts the parameters.
        let (hostport, params) = match before_headers.iter().position(|&b| b == b';') {
            Some(s) => (&before_headers[..s], &before_headers[s..]),
            None => (before_headers, &before_headers[before_headers.len()..]),
        };
        let (host, port) = parse_hostport(hostport)?;
        validate_uri_params(params)?;
        self.host = Some(host);
        self.port = port;
        self.params = Params::new(params);
        Ok(())
    }

    fn parse_tel(&mut self, rest: &'a [u8]) -> Result<(), UriError> {
        let (number, params) = match rest.iter().position(|&b| b == b';') {
            Some(s) => (&rest[..s], &rest[s..]),
            None => (rest, &rest[rest.len()..]),
        };
        // global-number = "+" digits with visual separators; local-number = hex digits,
        // '*', '#' and visual separators (RFC 3966 §3).
        let digits = number.strip_prefix(b"+").unwrap_or(number);
        if digits.is_empty()
            || !digits
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b"*#-.()pPwW".contains(&b))
            || !digits
                .iter()
                .any(|&b| b.is_ascii_hexdigit() || b == b'*' || b == b'#')
        {
            return Err(UriError::BadTelNumber);
        }
        validate_uri_params(params)?;
        self.user = Some(number);
        self.params = Params::new(params);
        Ok(())
    }
}

fn validate_uri_headers(h: &[u8]) -> Result<(), UriError> {
    for hdr in h.split(|&b| b == b'&') {
        let eq = hdr
            .iter()
            .position(|&b| b == b'=')
            .ok_or(UriError::BadHeaders)?;
        let (name, value) = (&hdr[..eq], &hdr[eq + 1..]);
        if name.is_empty() || !escaped_class(name, is_hchar) || !escaped_class(value, is_hchar) {
            return Err(UriError::BadHeaders);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn std_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
        core::str::from_utf8(s).ok()?.parse().ok()
    }

    #[test]
    fn ipv4_edge_cases_match_std() {
        for s in [
            &b"0.0.0.0"[..],
            b"255.255.255.255",
            b"256.1.1.1",
            b"01.2.3.4",
            b"1.2.3",
            b"1.2.3.4.",
            b".1.2.3.4",
            b"1..2.3",
            b"1.2.3.0004",
            b"1.2.3.000",
            b"192.0.2.45",
            b"",
            b"1234.1.1.1",
        ] {
            assert_eq!(parse_ipv4(s), std_ipv4(s), "{}", String::from_utf8_lossy(s));
        }
    }

    proptest! {
        #[test]
        fn ipv4_matches_std(s in proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'0'), Just(b'1'), Just(b'2'), Just(b'5'), Just(b'9'), Just(b'/'), Just(b':'), Just(b'a')], 0..20)) {
            prop_assert_eq!(parse_ipv4(&s), std_ipv4(&s));
        }

        /// Whenever the one-pass parser takes a URI, the general parser takes it too and
        /// returns the same value.
        #[test]
        fn plain_sip_agrees_with_general(raw in proptest::string::string_regex(
            "(sip|SIPS|sips|Sip):([a-z+%0-9:;@?&=.]{0,8}@)?[a-z0-9._\\-\\[\\]:]{0,16}(;[a-z=%0-9;:\\[\\]]{0,12})?(\\?[a-z=&]{0,6})?"
        ).expect("regex")) {
            let raw = raw.as_bytes();
            if let Some(fast) = Uri::parse_plain_sip(raw) {
                for allow in [true, false] {
                    prop_assert_eq!(Ok(fast), Uri::parse_general(raw, allow));
                }
            }
        }
    }
}
