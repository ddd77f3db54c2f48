//! Header names and typed views of the header values a proxy relies on.
//!
//! Every view borrows the message bytes. Values may contain folded lines (CRLF + SP/HT);
//! parsers here treat those as white space.

use crate::chars::{
    all_in, all_token, eq_ic, find1, find2, find3, is_lws, parse_u32_saturating, parse_u64_max,
    scan_quoted, skip_lws, span, trim, CALL_ID, TOKEN, TOKEN_OR_COLON,
};
use crate::uri::{Host, Params, Uri, UriError};
use core::fmt;

macro_rules! header_names {
    ($( $variant:ident => $canon:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Compact forms map to their full name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( #[doc = $canon] $variant, )*
            /// Any header this crate has no name for; compare the raw name instead.
            Other,
        }

        impl HeaderName {
            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other => "",
                }
            }

            /// The compact form letter, if the header has one (RFC 3261 §7.3.3 and extensions).
            pub fn compact(self) -> Option<u8> {
                match self {
                    $( $( HeaderName::$variant => Some($compact), )? )*
                    _ => None,
                }
            }

            fn from_compact(c: u8) -> HeaderName {
                match c.to_ascii_lowercase() {
                    $( $( $compact => HeaderName::$variant, )? )*
                    _ => HeaderName::Other,
                }
            }

            /// Looks a name up case-insensitively, compact forms included.
            // Inlined into the header-line loop, where its chain of dependent loads (name,
            // table, key) overlaps the scan of the next line instead of stalling a call.
            #[inline(always)]
            pub fn from_bytes(name: &[u8]) -> HeaderName {
                match name.len() {
                    0 => return HeaderName::Other,
                    1 => return Self::from_compact(name[0]),
                    _ => {}
                }
                // One probe of a collision-free table (hashed on the words the compare
                // reads anyway), then one case-insensitive compare of three words, instead of
                // comparing against every name.
                if name.len() > NAME_KEY_BYTES {
                    return HeaderName::Other;
                }
                let words = name_words(name);
                let entry = NAME_TABLE[name_hash(&words, name.len(), NAME_HASH_MUL)];
                if entry == 0 {
                    return HeaderName::Other;
                }
                let key = &NAME_KEYS[usize::from(entry - 1)];
                if usize::from(key.len) == name.len() && key.matches(&words) {
                    key.name
                } else {
                    HeaderName::Other
                }
            }
        }

        /// Every named header with its canonical spelling, in declaration order.
        const KNOWN_NAMES: &[(HeaderName, &[u8])] = &[ $( (HeaderName::$variant, $canon.as_bytes()), )* ];
    };
}

/// Longest known name, rounded up to whole 8-byte words.
const NAME_KEY_BYTES: usize = 24;

/// A known name prepared for a case-insensitive compare a word at a time. A name of length
/// `n` is read as three little-endian words (see [`name_words`]): its first `w` bytes, bytes
/// 8..16 (names over 16 bytes only, else 0) and its last `w` bytes, overlapping where the name
/// is short, with `w` = 8 for `n >= 8`, 4 for `n >= 4`, else 2. `lower` holds those words of
/// the name in lower case and `mask` has 0x20 on their letters, so a candidate word `x`
/// matches exactly when `x | mask == lower` (only a letter's two cases pass; every other byte
/// must be equal).
struct NameKey {
    name: HeaderName,
    len: u8,
    lower: [u64; 3],
    mask: [u64; 3],
}

impl NameKey {
    /// A candidate of length `self.len`, read by [`name_words`], equals this name ignoring
    /// ASCII case.
    #[inline(always)]
    fn matches(&self, words: &[u64; 3]) -> bool {
        let diff = |i: usize| (words[i] | self.mask[i]) ^ self.lower[i];
        diff(0) | diff(1) | diff(2) == 0
    }
}

/// The three words [`NameKey`] compares, for a name of 2 to [`NAME_KEY_BYTES`] bytes.
#[inline(always)]
fn name_words(name: &[u8]) -> [u64; 3] {
    let n = name.len();
    let mid = name
        .get(8..16)
        .filter(|_| n > 16)
        .and_then(|w| w.first_chunk::<8>())
        .map_or(0, |w| u64::from_le_bytes(*w));
    let (head, tail) = if n >= 8 {
        (
            name.first_chunk::<8>()
                .map_or(0, |w| u64::from_le_bytes(*w)),
            name.last_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w)),
        )
    } else if n >= 4 {
        (
            name.first_chunk::<4>()
                .map_or(0, |w| u64::from(u32::from_le_bytes(*w))),
            name.last_chunk::<4>()
                .map_or(0, |w| u64::from(u32::from_le_bytes(*w))),
        )
    } else {
        (
            name.first_chunk::<2>()
                .map_or(0, |w| u64::from(u16::from_le_bytes(*w))),
            name.last_chunk::<2>()
                .map_or(0, |w| u64::from(u16::from_le_bytes(*w))),
        )
    };
    [head, mid, tail]
}

/// [`name_words`] at compile time, over a byte array holding a name of length `n`.
const fn const_words(bytes: &[u8; NAME_KEY_BYTES], n: usize) -> [u64; 3] {
    let w = if n >= 8 {
        8
    } else if n >= 4 {
        4
    } else {
        2
    };
    let mid = if n > 16 { const_word(bytes, 8, 8) } else { 0 };
    [const_word(bytes, 0, w), mid, const_word(bytes, n - w, w)]
}

/// `len` bytes of `bytes` from `from` as a little-endian word, at compile time.
const fn const_word(bytes: &[u8; NAME_KEY_BYTES], from: usize, len: usize) -> u64 {
    let mut v = 0u64;
    let mut j = 0;
    while j < len {
        v |= (bytes[from + j] as u64) << (8 * j);
        j += 1;
    }
    v
}

const fn build_name_keys() -> [NameKey; KNOWN_NAMES.len()] {
    let mut keys = [const {
        NameKey {
            name: HeaderName::Other,
            len: 0,
            lower: [0; 3],
            mask: [0; 3],
        }
    }; KNOWN_NAMES.len()];
    let mut i = 0;
    while i < KNOWN_NAMES.len() {
        let name = KNOWN_NAMES[i].1;
        assert!(name.len() >= 2 && name.len() <= NAME_KEY_BYTES);
        let mut lower = [0u8; NAME_KEY_BYTES];
        let mut mask = [0u8; NAME_KEY_BYTES];
        let mut j = 0;
        while j < name.len() {
            let b = name[j];
            lower[j] = b.to_ascii_lowercase();
            mask[j] = if b.is_ascii_alphabetic() { 0x20 } else { 0 };
            j += 1;
        }
        keys[i] = NameKey {
            name: KNOWN_NAMES[i].0,
            len: name.len() as u8,
            lower: const_words(&lower, name.len()),
            mask: const_words(&mask, name.len()),
        };
        i += 1;
    }
    keys
}

static NAME_KEYS: [NameKey; KNOWN_NAMES.len()] = build_name_keys();

/// Slots of [`NAME_TABLE`]: eight times the names, so that a multiplier which puts every
/// name in its own slot is found after a few dozen tries.
const NAME_TABLE_SLOTS: usize = 512;

/// The slot of a name of length `n` read as `words` ([`name_words`]). Case-insensitive for
/// letters (`| 0x20` on every byte); other bytes must match exactly anyway, so folding them
/// too only lets a non-name land on a name's slot, where the compare refuses it.
#[inline(always)]
const fn name_hash(words: &[u64; 3], n: usize, mul: u64) -> usize {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let x = (words[0] | FOLD) ^ (words[2] | FOLD).rotate_left(23) ^ (n as u64);
    // The top nine bits: a slot below NAME_TABLE_SLOTS.
    (x.wrapping_mul(mul) >> (64 - 9)) as usize
}

/// The words [`name_hash`] reads, of the canonical name `i` as written.
const fn known_words(i: usize) -> [u64; 3] {
    let name = KNOWN_NAMES[i].1;
    let mut bytes = [0u8; NAME_KEY_BYTES];
    let mut j = 0;
    while j < name.len() {
        bytes[j] = name[j];
        j += 1;
    }
    const_words(&bytes, name.len())
}

/// True when `mul` sends every known name to its own slot.
const fn hash_is_perfect(mul: u64) -> bool {
    let mut used = [false; NAME_TABLE_SLOTS];
    let mut i = 0;
    while i < KNOWN_NAMES.len() {
        let slot = name_hash(&known_words(i), KNOWN_NAMES[i].1.len(), mul);
        if used[slot] {
            return false;
        }
        used[slot] = true;
        i += 1;
    }
    true
}

/// The first odd multiplier of a fixed pseudo-random sequence for which [`name_hash`] is
/// collision-free over [`KNOWN_NAMES`]; found at compile time, so adding a name can never
/// make a lookup probe twice.
const NAME_HASH_MUL: u64 = {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut tries = 0;
    loop {
        assert!(tries < 100_000, "no collision-free header-name hash");
        let mul = seed | 1;
        if hash_is_perfect(mul) {
            break mul;
        }
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        tries += 1;
    }
};

/// Known name index + 1 by [`name_hash`] slot, 0 for an empty slot; built at compile time.
static NAME_TABLE: [u8; NAME_TABLE_SLOTS] = {
    assert!(KNOWN_NAMES.len() < 255);
    let mut table = [0u8; NAME_TABLE_SLOTS];
    let mut i = 0;
    while i < KNOWN_NAMES.len() {
        let slot = name_hash(&known_words(i), KNOWN_NAMES[i].1.len(), NAME_HASH_MUL);
        assert!(table[slot] == 0);
        table[slot] = (i + 1) as u8;
        i += 1;
    }
    table
};

header_names! {
    Via => "Via", b'v';
    From => "From", b'f';
    To => "To", b't';
    CallId => "Call-ID", b'i';
    CSeq => "CSeq";
    MaxForwards => "Max-Forwards";
    Contact => "Contact", b'm';
    Route => "Route";
    RecordRoute => "Record-Route";
    ContentLength => "Content-Length", b'l';
    ContentType => "Content-Type", b'c';
    ContentEncoding => "Content-Encoding", b'e';
    ContentDisposition => "Content-Disposition";
    Expires => "Expires";
    MinExpires => "Min-Expires";
    Authorization => "Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    AuthenticationInfo => "Authentication-Info";
    Supported => "Supported", b'k';
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Unsupported => "Unsupported";
    Allow => "Allow";
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    UserAgent => "User-Agent";
    Server => "Server";
    Subject => "Subject", b's';
    Date => "Date";
    Timestamp => "Timestamp";
    RetryAfter => "Retry-After";
    Warning => "Warning";
    Event => "Event", b'o';
    AllowEvents => "Allow-Events", b'u';
    SubscriptionState => "Subscription-State";
    ReferTo => "Refer-To", b'r';
    ReferredBy => "Referred-By", b'b';
    SessionExpires => "Session-Expires", b'x';
    MinSe => "Min-SE";
    RSeq => "RSeq";
    RAck => "RAck";
    Path => "Path";
    ServiceRoute => "Service-Route";
    PAssertedIdentity => "P-Asserted-Identity";
    PPreferredIdentity => "P-Preferred-Identity";
    Privacy => "Privacy";
    Reason => "Reason";
    Organization => "Organization";
    Priority => "Priority";
    ReplyTo => "Reply-To";
    InReplyTo => "In-Reply-To";
    ErrorInfo => "Error-Info";
    AlertInfo => "Alert-Info";
    CallInfo => "Call-Info";
    MimeVersion => "MIME-Version";
    AcceptContact => "Accept-Contact", b'a';
    RejectContact => "Reject-Contact", b'j';
    RequestDisposition => "Request-Disposition", b'd';
    Identity => "Identity", b'y';
    IdentityInfo => "Identity-Info", b'n';
}

impl HeaderName {
    /// Headers whose value is a comma-separated list that may be split across lines
    /// (RFC 3261 §7.3.1). Others are single-valued or opaque.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported
                | HeaderName::Allow
                | HeaderName::Accept
                | HeaderName::AcceptEncoding
                | HeaderName::AcceptLanguage
                | HeaderName::AllowEvents
                | HeaderName::Path
                | HeaderName::ServiceRoute
                | HeaderName::ContentEncoding
                | HeaderName::Warning
                | HeaderName::PAssertedIdentity
        )
    }
}

/// What is wrong with a header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    /// Empty where a value is required.
    Empty,
    /// A quoted string with no closing quote.
    UnterminatedQuote,
    /// `<` without `>`, or text after `>` that is not a parameter.
    BadAngleBrackets,
    /// A display name that is neither tokens nor a quoted string.
    BadDisplayName,
    /// White space inside `<...>` around the URI.
    SpaceInAddrSpec,
    /// The URI inside the value is malformed.
    Uri(UriError),
    /// A `;` parameter that is empty or malformed.
    BadParam,
    /// Empty element in a comma-separated list.
    EmptyListElement,
    /// A number that is not a decimal or is out of range.
    BadNumber,
    /// Via sent-protocol is not `SIP/2.0/<transport>`.
    BadSentProtocol,
    /// Via sent-by host or port is malformed.
    BadSentBy,
    /// CSeq method is not a token.
    BadMethod,
    /// Call-ID contains characters outside `word ["@" word]`.
    BadCallId,
    /// Date is not an RFC 1123 date in GMT.
    BadDate,
    /// Media type is not `type/subtype *(;param)`.
    BadMediaType,
    /// Bytes after the value that belong to no part of its grammar.
    TrailingGarbage,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Uri(e) => write!(f, "{e}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Splits a list header value on commas outside quotes and angle brackets.
#[derive(Debug, Clone)]
pub struct ListIter<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> ListIter<'a> {
    /// Iterates the elements of `value`. Elements are trimmed; an empty element is yielded
    /// as an empty slice so that validators can refuse it.
    pub fn new(value: &'a [u8]) -> Self {
        ListIter { rest: Some(value) }
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        // Most values hold one element: without a comma there is nothing to split.
        if find1(s, b',').is_none() {
            self.rest = None;
            return Some(trim(s));
        }
        let mut i = 0;
        let mut in_angle = false;
        // Jump between the bytes that matter: outside `<>` a `,` ends the element, a `"`
        // opens a quoted string and `<` an address (a stray `>` changes nothing); inside,
        // only `"` and the closing `>` do.
        loop {
            let found = if in_angle {
                find2(&s[i..], b'"', b'>')
            } else {
                find3(&s[i..], b',', b'"', b'<')
            };
            let Some(off) = found else { break };
            i += off;
            match s[i] {
                b'"' => match scan_quoted(s, i) {
                    Some(e) => i = e,
                    None => break,
                },
                b'<' => {
                    in_angle = true;
                    i += 1;
                }
                b'>' => {
                    in_angle = false;
                    i += 1;
                }
                _ => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(trim(&s[..i]));
                }
            }
        }
        self.rest = None;
        Some(trim(s))
    }
}

/// Validates header parameters `*( SEMI generic-param )` allowing LWS around `;` and `=`.
/// gen-value = token / host / quoted-string.
pub(crate) fn validate_header_params(s: &[u8]) -> Result<(), ValueError> {
    scan_header_params(s, |_, _| {})
}

/// [`validate_header_params`], handing each parameter's name and value (as
/// [`Params`] would yield them) to `on_param` as it goes, so that callers who check a few
/// parameters need no second pass.
fn scan_header_params<'a>(
    s: &'a [u8],
    mut on_param: impl FnMut(&'a [u8], Option<&'a [u8]>),
) -> Result<(), ValueError> {
    let mut i = skip_lws(s, 0);
    while i < s.len() {
        if s[i] != b';' {
            return Err(ValueError::TrailingGarbage);
        }
        i = skip_lws(s, i + 1);
        let name_start = i;
        i = span(&TOKEN, s, i);
        if i == name_start {
            return Err(ValueError::BadParam);
        }
        let name = &s[name_start..i];
        i = skip_lws(s, i);
        let mut value = None;
        if i < s.len() && s[i] == b'=' {
            i = skip_lws(s, i + 1);
            if i >= s.len() {
                return Err(ValueError::BadParam);
            }
            let value_start = i;
            if s[i] == b'"' {
                i = scan_quoted(s, i).ok_or(ValueError::UnterminatedQuote)?;
            } else if s[i] == b'[' {
                let close = s[i..]
                    .iter()
                    .position(|&b| b == b']')
                    .ok_or(ValueError::BadParam)?;
                Host::parse(&s[i..=i + close]).map_err(|_| ValueError::BadParam)?;
                i += close + 1;
            } else {
                // One unrolled pass; it stops at the next ';' (not in the class) as a search
                // for ';' followed by a class check would, without reading the bytes twice.
                i = span(&TOKEN_OR_COLON, s, i);
                if i == value_start {
                    return Err(ValueError::BadParam);
                }
            }
            value = Some(&s[value_start..i]);
            i = skip_lws(s, i);
        }
        on_param(name, value);
    }
    Ok(())
}

/// A name-addr or addr-spec with header parameters: the value of From, To, Contact, Route,
/// Record-Route, Reply-To, Refer-To, P-Asserted-Identity and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes included when quoted), if any.
    pub display_name: Option<&'a [u8]>,
    /// The URI.
    pub uri: Uri<'a>,
    /// Header parameters after the URI (`;tag=`, `;expires=`, `;q=`).
    pub params: Params<'a>,
    /// True when the URI was written inside `<>`.
    pub angle: bool,
    /// The tag parameter's value, found while validating the parameters.
    tag: Option<&'a [u8]>,
}

impl<'a> NameAddr<'a> {
    /// Parses one name-addr / addr-spec with its parameters.
    pub fn parse(value: &'a [u8]) -> Result<NameAddr<'a>, ValueError> {
        NameAddr::parse_inline(value)
    }

    /// Validates `value` exactly as [`NameAddr::parse`] does and says whether the URI was in
    /// angle brackets, for callers that keep nothing else (Contact, Route): with the view
    /// dropped, the compiler skips building it (and copying its URI).
    #[inline(never)]
    pub(crate) fn check(value: &'a [u8]) -> Result<bool, ValueError> {
        NameAddr::parse_inline(value).map(|na| na.angle)
    }

    #[inline(always)]
    fn parse_inline(value: &'a [u8]) -> Result<NameAddr<'a>, ValueError> {
        let s = trim(value);
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        let mut display_name = None;
        let lt;
        if s[0] == b'"' {
            let end = scan_quoted(s, 0).ok_or(ValueError::UnterminatedQuote)?;
            display_name = Some(&s[..end]);
            let i = skip_lws(s, end);
            if i >= s.len() || s[i] != b'<' {
                return Err(ValueError::BadAngleBrackets);
            }
            lt = Some(i);
        } else {
            // Either `*(token LWS) <uri>` or a bare addr-spec. A '<' outside a quoted string
            // decides which.
            lt = find1(s, b'<');
            if let Some(l) = lt {
                let dn = trim(&s[..l]);
                if !dn.is_empty() {
                    // display-name = *(token LWS): every run of non-LWS must be a token.
                    if !dn
                        .split(|&b| is_lws(b))
                        .all(|t| t.is_empty() || all_token(t))
                    {
                        return Err(ValueError::BadDisplayName);
                    }
                    display_name = Some(dn);
                }
            }
        }
        if let Some(l) = lt {
            let gt = find1(&s[l..], b'>').ok_or(ValueError::BadAngleBrackets)? + l;
            let inner = &s[l + 1..gt];
            if inner.first().is_some_and(|&b| is_lws(b)) || inner.last().is_some_and(|&b| is_lws(b))
            {
                return Err(ValueError::SpaceInAddrSpec);
            }
            let uri = Uri::parse(inner, true).map_err(ValueError::Uri)?;
            let rest = &s[gt + 1..];
            let tag = scan_tag(rest)?;
            return Ok(NameAddr {
                display_name,
                uri,
                params: Params::new(trim(rest)),
                angle: true,
                tag,
            });
        }
        // addr-spec form: the URI runs to the first ';' (parameters after it are header
        // parameters, RFC 3261 §20) and may not carry headers.
        let end = s
            .iter()
            .position(|&b| b == b';' || is_lws(b))
            .unwrap_or(s.len());
        let uri = Uri::parse(&s[..end], false).map_err(ValueError::Uri)?;
        let rest = &s[end..];
        let tag = scan_tag(rest)?;
        Ok(NameAddr {
            display_name: None,
            uri,
            params: Params::new(trim(rest)),
            angle: false,
            tag,
        })
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.tag
    }

    /// The `expires` parameter of a Contact, saturating at `u32::MAX`.
    pub fn expires(&self) -> Option<u32> {
        self.params.value(b"expires").and_then(parse_u32_saturating)
    }

    /// The `q` parameter of a Contact in thousandths (q=0.5 → 500), `None` when absent or bad.
    pub fn q_millis(&self) -> Option<u16> {
        let v = self.params.value(b"q")?;
        parse_qvalue(v)
    }
}

/// Validates header parameters and returns the value of the first `tag` (what
/// `Params::value(b"tag")` would return).
fn scan_tag(params: &[u8]) -> Result<Option<&[u8]>, ValueError> {
    let mut tag = None;
    scan_header_params(params, |name, value| {
        if tag.is_none() && eq_ic(name, b"tag") {
            tag = Some(value);
        }
    })?;
    Ok(tag.flatten())
}

fn parse_qvalue(v: &[u8]) -> Option<u16> {
    // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(d) => (&v[..d], &v[d + 1..]),
        None => (v, &v[v.len()..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut millis = match int[0] {
        b'0' => 0u16,
        b'1' => 1000,
        _ => return None,
    };
    let mut scale = 100;
    for &d in frac {
        millis += u16::from(d - b'0') * scale;
        scale /= 10;
    }
    (millis <= 1000).then_some(millis)
}

/// A Contact header element: `*` or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a zero-copy view, built on the stack per parse; boxing the address would \
              allocate on the hot path"
)]
pub enum Contact<'a> {
    /// `Contact: *` (unregister all, only with Expires: 0).
    Star,
    /// One contact address.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact list element.
    pub fn parse(value: &'a [u8]) -> Result<Contact<'a>, ValueError> {
        if trim(value) == b"*" {
            return Ok(Contact::Star);
        }
        NameAddr::parse(value).map(Contact::Addr)
    }
}

/// One Via header element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, anything else), as written.
    pub transport: &'a [u8],
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// All parameters.
    pub params: Params<'a>,
    /// The branch parameter's value, found while validating the parameters.
    branch: Option<&'a [u8]>,
}

impl<'a> Via<'a> {
    /// Parses one Via element: `SIP / 2.0 / transport LWS sent-by *(; via-params)`.
    pub fn parse(value: &'a [u8]) -> Result<Via<'a>, ValueError> {
        let s = trim(value);
        if s.is_empty() {
            return Err(ValueError::EmptyListElement);
        }
        // `SIP/2.0/` written without white space (nearly always) is what the token-by-token
        // reading below accepts for it, and ends at the same place.
        let mut i = match s.first_chunk::<8>() {
            Some(&[a, b, c, b'/', b'2', b'.', b'0', b'/']) if eq_ic(&[a, b, c], b"SIP") => 8,
            _ => sent_protocol_end(s)?,
        };
        let (transport, j) = token_at(s, i);
        if transport.is_empty() {
            return Err(ValueError::BadSentProtocol);
        }
        // LWS is required between the protocol and sent-by.
        if j >= s.len() || !is_lws(s[j]) {
            return Err(ValueError::BadSentBy);
        }
        i = skip_lws(s, j);
        // sent-by = host [ COLON port ]; COLON allows white space around ':'.
        let host_start = i;
        let host = if i < s.len() && s[i] == b'[' {
            let close = s[i..]
                .iter()
                .position(|&b| b == b']')
                .ok_or(ValueError::BadSentBy)?;
            i += close + 1;
            Host::parse(&s[host_start..i])
        } else {
            let scan = crate::chars::scan_host(s, i);
            i = scan.end;
            if i == host_start {
                Err(UriError::BadHost)
            } else {
                Host::from_scan(&s[host_start..i], scan)
            }
        }
        .map_err(|_| ValueError::BadSentBy)?;
        let mut port = None;
        let k = skip_lws(s, i);
        if k < s.len() && s[k] == b':' {
            let p = skip_lws(s, k + 1);
            let mut e = p;
            while e < s.len() && s[e].is_ascii_digit() {
                e += 1;
            }
            port = Some(parse_u64_max(&s[p..e], 65535).ok_or(ValueError::BadSentBy)? as u16);
            i = e;
        }
        let params = &s[i..];
        // The first ttl, rport and branch (what `Params::get` would find), checked once the
        // whole section is known to be well formed.
        let mut ttl = None;
        let mut rport = None;
        let mut branch = None;
        scan_header_params(params, |name, value| {
            let slot = match name.len() {
                3 if eq_ic(name, b"ttl") => &mut ttl,
                5 if eq_ic(name, b"rport") => &mut rport,
                6 if eq_ic(name, b"branch") => &mut branch,
                _ => return,
            };
            slot.get_or_insert(value);
        })?;
        if let Some(ttl) = ttl {
            ttl.and_then(|t| parse_u64_max(t, 255))
                .ok_or(ValueError::BadParam)?;
        }
        if let Some(Some(p)) = rport {
            parse_u64_max(p, 65535).ok_or(ValueError::BadParam)?;
        }
        if let Some(b) = branch {
            if !b.is_some_and(all_token) {
                return Err(ValueError::BadParam);
            }
        }
        Ok(Via {
            transport,
            host,
            port,
            params: Params::new(trim(params)),
            branch: branch.flatten(),
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    /// True when the branch carries the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > 7 && b.starts_with(b"z9hG4bK"))
    }

    /// `received` parameter.
    pub fn received(&self) -> Option<&'a [u8]> {
        self.params.value(b"received")
    }

    /// `rport`: `None` absent, `Some(None)` requested (empty), `Some(Some(p))` filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get(b"rport")
            .map(|v| v.and_then(|p| parse_u64_max(p, 65535)).map(|p| p as u16))
    }

    /// `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.value(b"maddr")
    }

    /// `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params
            .value(b"ttl")
            .and_then(|t| parse_u64_max(t, 255))
            .map(|t| t as u8)
    }
}

/// Where `SIP / 2.0 /` (white space allowed around each slash) ends at the start of `s`.
fn sent_protocol_end(s: &[u8]) -> Result<usize, ValueError> {
    let (name, j) = token_at(s, 0);
    if !eq_ic(name, b"SIP") {
        return Err(ValueError::BadSentProtocol);
    }
    let i = expect_slash(s, j)?;
    let (version, j) = token_at(s, i);
    if version != b"2.0" {
        return Err(ValueError::BadSentProtocol);
    }
    expect_slash(s, j)
}

fn token_at(s: &[u8], i: usize) -> (&[u8], usize) {
    let i = skip_lws(s, i);
    let j = span(&TOKEN, s, i);
    (&s[i..j], j)
}

fn expect_slash(s: &[u8], i: usize) -> Result<usize, ValueError> {
    let i = skip_lws(s, i);
    if i < s.len() && s[i] == b'/' {
        Ok(i + 1)
    } else {
        Err(ValueError::BadSentProtocol)
    }
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number, below 2**31 (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method token as written.
    pub method: &'a [u8],
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(value: &'a [u8]) -> Result<CSeq<'a>, ValueError> {
        let s = trim(value);
        let mut i = 0;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let seq = parse_u64_max(&s[..i], (1 << 31) - 1).ok_or(ValueError::BadNumber)? as u32;
        if i >= s.len() || !is_lws(s[i]) {
            return Err(ValueError::BadMethod);
        }
        let method = trim(&s[i..]);
        if !all_token(method) {
            return Err(ValueError::BadMethod);
        }
        Ok(CSeq { seq, method })
    }
}

/// Validates a Call-ID: `word [ "@" word ]`.
pub fn validate_call_id(value: &[u8]) -> Result<(), ValueError> {
    if value.is_empty() {
        return Err(ValueError::Empty);
    }
    // Every byte a word byte or '@', with at most one '@' and words on both sides of it.
    if !all_in(&CALL_ID, value) {
        return Err(ValueError::BadCallId);
    }
    if let Some(at) = find1(value, b'@') {
        if at == 0 || at == value.len() - 1 || find1(&value[at + 1..], b'@').is_some() {
            return Err(ValueError::BadCallId);
        }
    }
    Ok(())
}

/// Parses a decimal header (Content-Length, Max-Forwards, Expires) up to `max`.
pub fn parse_decimal(value: &[u8], max: u64) -> Result<u64, ValueError> {
    parse_u64_max(trim(value), max).ok_or(ValueError::BadNumber)
}

/// Validates `rfc1123-date = wkday "," SP date1 SP time SP "GMT"`.
pub fn validate_date(value: &[u8]) -> Result<(), ValueError> {
    const WKDAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let s = trim(value);
    // "Sat, 13 Nov 2010 23:29:00 GMT" is exactly 29 bytes.
    if s.len() != 29 {
        return Err(ValueError::BadDate);
    }
    let digits = |r: core::ops::Range<usize>| s[r].iter().all(u8::is_ascii_digit);
    let ok = WKDAYS.contains(&&s[0..3])
        && &s[3..5] == b", "
        && digits(5..7)
        && s[7] == b' '
        && MONTHS.contains(&&s[8..11])
        && s[11] == b' '
        && digits(12..16)
        && s[16] == b' '
        && digits(17..19)
        && s[19] == b':'
        && digits(20..22)
        && s[22] == b':'
        && digits(23..25)
        && &s[25..29] == b" GMT";
    if ok {
        Ok(())
    } else {
        Err(ValueError::BadDate)
    }
}

/// A media type: `type "/" subtype *( SEMI m-parameter )`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// Top-level type (`application`).
    pub kind: &'a [u8],
    /// Subtype (`sdp`).
    pub subtype: &'a [u8],
    /// Parameters.
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parses a Content-Type value.
    pub fn parse(value: &'a [u8]) -> Result<MediaType<'a>, ValueError> {
        let s = trim(value);
        let (kind, i) = token_at(s, 0);
        let i = skip_lws(s, i);
        if kind.is_empty() || i >= s.len() || s[i] != b'/' {
            return Err(ValueError::BadMediaType);
        }
        let (subtype, j) = token_at(s, i + 1);
        if subtype.is_empty() {
            return Err(ValueError::BadMediaType);
        }
        let params = &s[j..];
        validate_header_params(params)?;
        Ok(MediaType {
            kind,
            subtype,
            params: Params::new(trim(params)),
        })
    }

    /// True for `application/sdp`.
    pub fn is_sdp(&self) -> bool {
        eq_ic(self.kind, b"application") && eq_ic(self.subtype, b"sdp")
    }
}

/// Iterates the comma-separated tokens of Supported / Require / Allow and similar.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    ListIter::new(value).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The lookup `from_bytes` replaced: compare against every known name.
    fn from_bytes_linear(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return HeaderName::from_compact(name[0]);
        }
        KNOWN_NAMES
            .iter()
            .find(|(_, canon)| canon.eq_ignore_ascii_case(name))
            .map_or(HeaderName::Other, |&(known, _)| known)
    }

    #[test]
    fn name_addr_check_agrees_with_parse() {
        for v in [
            &b"<sip:alice@192.0.2.45:5060;transport=UDP>;expires=3600"[..],
            b"\"Alice\" <sip:alice@example.net>;tag=1",
            b"sip:bob@example.net;tag=2",
            b"Bob <sip:bob@example.net",
            b"<sip:bob@example.net> junk",
            b"",
            b"tel:+1555",
            b"<sips:[2001:db8::1]:5061;lr>",
        ] {
            assert_eq!(
                NameAddr::check(v),
                NameAddr::parse(v).map(|na| na.angle),
                "{}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn every_known_name_in_any_case() {
        for &(known, canon) in KNOWN_NAMES {
            let lower = canon.to_ascii_lowercase();
            let upper = canon.to_ascii_uppercase();
            let alternating: Vec<u8> = canon
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if i % 2 == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        b.to_ascii_lowercase()
                    }
                })
                .collect();
            for name in [canon, &lower[..], &upper[..], &alternating[..]] {
                assert_eq!(
                    HeaderName::from_bytes(name),
                    known,
                    "{}",
                    String::from_utf8_lossy(name)
                );
            }
            // A non-letter flipped by 0x20 (`-` to CR, digits to control bytes) is not a match.
            for i in 0..canon.len() {
                if !canon[i].is_ascii_alphabetic() {
                    let mut near = canon.to_vec();
                    near[i] ^= 0x20;
                    assert_eq!(HeaderName::from_bytes(&near), from_bytes_linear(&near));
                }
            }
            assert_eq!(
                HeaderName::from_bytes(&canon[..canon.len() - 1]),
                from_bytes_linear(&canon[..canon.len() - 1])
            );
        }
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(
            HeaderName::from_bytes(b"X-Very-Long-Vendor-Header-Name"),
            HeaderName::Other
        );
    }

    proptest! {
        #[test]
        fn from_bytes_matches_linear_lookup(name in proptest::collection::vec(
            prop_oneof![
                Just(b'-'), Just(b'\r'), Just(b'a'), Just(b'A'), Just(b'c'), Just(b'C'),
                Just(b'o'), Just(b't'), Just(b'e'), Just(b'n'), Just(b'i'), Just(b'd'),
                Just(b'\x0d'), Just(b'@'), Just(b'`'), any::<u8>(),
            ], 0..24)) {
            prop_assert_eq!(HeaderName::from_bytes(&name), from_bytes_linear(&name));
        }

        /// The `SIP/2.0/` shortcut in `Via::parse` takes only what the token-by-token
        /// reading takes, and ends where it ends.
        #[test]
        fn via_protocol_shortcut_agrees(s in "[sSiIpP]{3}[/ ]{1,2}2[.]0[/ ]{1,2}(UDP|tcp|x)?") {
            let s = s.as_bytes();
            if let Some(&[a, b, c, b'/', b'2', b'.', b'0', b'/']) = s.first_chunk::<8>() {
                if eq_ic(&[a, b, c], b"SIP") {
                    prop_assert_eq!(sent_protocol_end(s), Ok(8));
                }
            }
        }

        #[test]
        fn from_bytes_matches_linear_on_mutated_names(i in 0usize..KNOWN_NAMES.len(), at in 0usize..24, b in any::<u8>()) {
            let mut name = KNOWN_NAMES[i].1.to_vec();
            let at = at % name.len();
            name[at] = b;
            prop_assert_eq!(HeaderName::from_bytes(&name), from_bytes_linear(&name));
        }
    }
}
