//! Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.
//!
//! What it does:
//! - Parses the *values* of `WWW-Authenticate` / `Proxy-Authenticate` ([`parse_challenge`])
//!   and `Authorization` / `Proxy-Authorization` ([`parse_credentials`]) into zero-copy views
//!   over the caller's bytes. Non-Digest schemes (`Basic`, RFC 4475's `NoOneKnowsThisScheme`)
//!   parse as [`Challenge::Other`] / [`Credentials::Other`] with their data kept opaque.
//!   Quoted strings keep their backslash escapes in the view; [`ParamValue::bytes`] and
//!   [`ParamValue::unescaped`] remove them. Every defect is a typed [`DigestError`].
//! - Server side: [`Challenger`] issues stateless nonces (timestamp, sequence number and an
//!   HMAC-SHA-256 tag keyed with a caller-supplied secret), one challenge per configured
//!   algorithm (RFC 8760: put SHA-256 first), and verifies credentials against a password or
//!   a stored HA1. Nonce counts must strictly increase per nonce; a bounded table remembers
//!   the highest count seen (oldest-issued nonce evicted first, evictions counted).
//! - Client side: [`respond`] builds an `Authorization` value for a parsed challenge.
//! - Algorithms MD5, SHA-256 and SHA-512-256, each with its `-sess` variant; qop `auth`,
//!   `auth-int` and RFC 2069 (no qop). Response digests are compared in constant time.
//!
//! What it does not do:
//! - No clock, RNG or I/O: callers pass `now` (time since the Unix epoch), the secret and the
//!   client nonce (`cnonce`).
//! - No user database: the caller looks up the password or HA1 for `username`/`realm`.
//! - No `username*` (RFC 7616 extended notation), no `charset` handling, no
//!   `Authentication-Info` / `rspauth`, no `opaque` issued by the server.
//! - With `userhash=true` the server cannot check a *password* (it does not know the real
//!   user name); pass the stored HA1 instead, looked up by the hashed name.
//! - Replay protection is per [`Challenger`]: servers sharing one secret do not share the
//!   nonce-count table, and RFC 2069 (no qop) responses carry no count, so they can be
//!   replayed within the nonce lifetime (disable with [`ChallengerConfig::accept_rfc2069`]).
//! - One challenge / credential per header value; values are not split on commas between
//!   challenges (RFC 3261 exempts these headers from comma-combining).
//! - Line folding inside a quoted string is kept as is (not replaced by a single space).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use md5::Md5;
use sha2::{Digest as _, Sha256, Sha512_256};

/// Most auth-params accepted in one header value; more is [`DigestError::TooManyParams`].
pub const PARAMS_MAX: usize = 32;
/// Shortest accepted server secret, in bytes.
pub const SECRET_LEN_MIN: usize = 16;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// A defect in a header value. Offsets (`at`) are byte offsets into the value given to the
/// parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestError {
    /// The value is empty or only whitespace.
    Empty,
    /// The value does not start with a scheme token.
    BadScheme { at: usize },
    /// An auth-param name (token) was expected.
    ExpectedParamName { at: usize },
    /// `=` was expected after a param name.
    ExpectedEquals { at: usize },
    /// A token or quoted string was expected after `=`.
    ExpectedValue { at: usize },
    /// `,` or the end of the value was expected after a param.
    ExpectedComma { at: usize },
    /// The quoted string opened at `at` has no closing quote.
    UnterminatedQuote { at: usize },
    /// A backslash escape of CR or LF (not allowed by `quoted-pair`).
    BadEscape { at: usize },
    /// A CR or LF that is not part of line folding (CRLF followed by SP or HT).
    BadLineBreak { at: usize },
    /// A control character where none is allowed.
    BadChar { at: usize, byte: u8 },
    /// A known param appears twice.
    DuplicateParam(Param),
    /// A param required for this header is missing.
    MissingParam(Param),
    /// `nc` is not exactly 8 hex digits.
    BadNc,
    /// More than [`PARAMS_MAX`] params.
    TooManyParams,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty header value"),
            Self::BadScheme { at } => write!(f, "expected auth scheme at byte {at}"),
            Self::ExpectedParamName { at } => write!(f, "expected param name at byte {at}"),
            Self::ExpectedEquals { at } => write!(f, "expected '=' at byte {at}"),
            Self::ExpectedValue { at } => write!(f, "expected param value at byte {at}"),
            Self::ExpectedComma { at } => write!(f, "expected ',' at byte {at}"),
            Self::UnterminatedQuote { at } => write!(f, "unterminated quoted string at byte {at}"),
            Self::BadEscape { at } => write!(f, "bad escape at byte {at}"),
            Self::BadLineBreak { at } => write!(f, "line break without folding at byte {at}"),
            Self::BadChar { at, byte } => write!(f, "bad character 0x{byte:02x} at byte {at}"),
            Self::DuplicateParam(p) => write!(f, "duplicate param {}", p.name()),
            Self::MissingParam(p) => write!(f, "missing param {}", p.name()),
            Self::BadNc => write!(f, "nc is not 8 hex digits"),
            Self::TooManyParams => write!(f, "more than {PARAMS_MAX} params"),
        }
    }
}

impl std::error::Error for DigestError {}

/// Why [`Challenger::verify`] rejected credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// `realm` is not this server's realm.
    RealmMismatch,
    /// `uri` differs from the Request-URI the caller passed.
    UriMismatch,
    /// The nonce was not issued with this secret and realm (or is malformed).
    ForgedNonce,
    /// The algorithm is unknown or not enabled on this server.
    UnsupportedAlgorithm,
    /// The qop is unknown or not offered by this server (or absent while RFC 2069 is off).
    UnsupportedQop,
    /// `userhash=true` with a password credential: pass the stored HA1 instead.
    UnsupportedUserhash,
    /// A param the chosen algorithm / qop needs is absent (e.g. `cnonce` for `-sess`).
    MissingParam(Param),
    /// The stored HA1 has the wrong length, is not hex, or is for another hash function.
    BadStoredHa1,
    /// The response digest is wrong (wrong password, or a tampered request).
    WrongResponse,
    /// The response is right but the nonce expired, predates this `Challenger`, or its
    /// replay state was evicted; challenge again with `stale=true`.
    StaleNonce,
    /// The nonce count did not increase.
    Replay { nc: u32, highest_seen: u32 },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RealmMismatch => write!(f, "realm mismatch"),
            Self::UriMismatch => write!(f, "uri does not match the Request-URI"),
            Self::ForgedNonce => write!(f, "nonce was not issued by this server"),
            Self::UnsupportedAlgorithm => write!(f, "unsupported algorithm"),
            Self::UnsupportedQop => write!(f, "unsupported qop"),
            Self::UnsupportedUserhash => write!(f, "userhash needs a stored HA1"),
            Self::MissingParam(p) => write!(f, "missing param {}", p.name()),
            Self::BadStoredHa1 => write!(f, "stored HA1 is malformed or for another hash"),
            Self::WrongResponse => write!(f, "wrong response digest"),
            Self::StaleNonce => write!(f, "stale nonce"),
            Self::Replay { nc, highest_seen } => {
                write!(f, "replayed nc {nc:08x} (highest seen {highest_seen:08x})")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// Why [`respond`] could not build credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespondError {
    /// The challenge names an algorithm this module does not implement.
    UnsupportedAlgorithm,
    /// The challenge offers only qop values this module does not implement.
    UnsupportedQop,
    /// A value is not UTF-8, contains control characters, or is empty where it must not be.
    BadValue(Param),
    /// `nc` must be at least 1.
    BadNc,
    /// The HA1 given has the wrong length, is not hex, or is for another hash function.
    BadStoredHa1,
}

impl fmt::Display for RespondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedAlgorithm => write!(f, "unsupported algorithm"),
            Self::UnsupportedQop => write!(f, "no supported qop offered"),
            Self::BadValue(p) => write!(f, "bad value for {}", p.name()),
            Self::BadNc => write!(f, "nc must be at least 1"),
            Self::BadStoredHa1 => write!(f, "HA1 is malformed or for another hash"),
        }
    }
}

impl std::error::Error for RespondError {}

/// Why a [`ChallengerConfig`] was refused (operator errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The realm is empty, not UTF-8-safe or contains control characters.
    BadRealm,
    /// The secret is shorter than [`SECRET_LEN_MIN`].
    SecretTooShort,
    /// The algorithm list is empty or has duplicates.
    BadAlgorithms,
    /// Neither qop is offered and RFC 2069 is off: nothing could ever verify.
    NoQop,
    /// The nonce lifetime is under one second.
    ZeroLifetime,
    /// The replay table capacity is zero.
    ZeroCapacity,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::BadRealm => "realm is empty or contains control characters",
            Self::SecretTooShort => "secret is too short",
            Self::BadAlgorithms => "algorithm list is empty or has duplicates",
            Self::NoQop => "no qop offered and RFC 2069 disabled",
            Self::ZeroLifetime => "nonce lifetime under one second",
            Self::ZeroCapacity => "replay table capacity is zero",
        };
        f.write_str(s)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------------

/// The auth-params this module knows. Others are accepted and ignored (see
/// [`DigestParams::iter`] to read them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    Realm,
    Nonce,
    Opaque,
    Algorithm,
    Qop,
    Stale,
    Domain,
    Username,
    Uri,
    Response,
    Cnonce,
    Nc,
    Userhash,
}

const PARAM_COUNT: usize = 13;
const PARAMS_ALL: [Param; PARAM_COUNT] = [
    Param::Realm,
    Param::Nonce,
    Param::Opaque,
    Param::Algorithm,
    Param::Qop,
    Param::Stale,
    Param::Domain,
    Param::Username,
    Param::Uri,
    Param::Response,
    Param::Cnonce,
    Param::Nc,
    Param::Userhash,
];

impl Param {
    /// The param's name as written in headers.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Realm => "realm",
            Self::Nonce => "nonce",
            Self::Opaque => "opaque",
            Self::Algorithm => "algorithm",
            Self::Qop => "qop",
            Self::Stale => "stale",
            Self::Domain => "domain",
            Self::Username => "username",
            Self::Uri => "uri",
            Self::Response => "response",
            Self::Cnonce => "cnonce",
            Self::Nc => "nc",
            Self::Userhash => "userhash",
        }
    }

    /// Case-insensitive lookup of a param name.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        PARAMS_ALL
            .iter()
            .copied()
            .find(|p| p.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// The hash function underlying an [`Algorithm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFn {
    Md5,
    Sha256,
    Sha512_256,
}

impl HashFn {
    /// Length of the lowercase hex digest, in bytes.
    pub const fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha256 | Self::Sha512_256 => 64,
        }
    }
}

/// A digest algorithm (RFC 7616 §3.3 and the IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

const ALGORITHMS_ALL: [Algorithm; 6] = [
    Algorithm::Md5,
    Algorithm::Md5Sess,
    Algorithm::Sha256,
    Algorithm::Sha256Sess,
    Algorithm::Sha512_256,
    Algorithm::Sha512_256Sess,
];

impl Algorithm {
    /// The token as written in headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
            Self::Sha512_256 => "SHA-512-256",
            Self::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Case-insensitive lookup of an algorithm token.
    pub fn from_token(token: &[u8]) -> Option<Self> {
        ALGORITHMS_ALL
            .iter()
            .copied()
            .find(|a| a.as_str().as_bytes().eq_ignore_ascii_case(token))
    }

    /// The hash function.
    pub const fn hash(self) -> HashFn {
        match self {
            Self::Md5 | Self::Md5Sess => HashFn::Md5,
            Self::Sha256 | Self::Sha256Sess => HashFn::Sha256,
            Self::Sha512_256 | Self::Sha512_256Sess => HashFn::Sha512_256,
        }
    }

    /// Whether HA1 is re-hashed with the nonce and cnonce (`-sess`).
    pub const fn is_sess(self) -> bool {
        matches!(
            self,
            Self::Md5Sess | Self::Sha256Sess | Self::Sha512_256Sess
        )
    }
}

/// Quality of protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// Authentication only.
    Auth,
    /// Authentication with integrity protection of the body.
    AuthInt,
}

impl Qop {
    /// The token as written in headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::AuthInt => "auth-int",
        }
    }

    /// Case-insensitive lookup of a qop token.
    pub fn from_token(token: &[u8]) -> Option<Self> {
        if token.eq_ignore_ascii_case(b"auth") {
            Some(Self::Auth)
        } else if token.eq_ignore_ascii_case(b"auth-int") {
            Some(Self::AuthInt)
        } else {
            None
        }
    }
}

/// The qop values a challenge offers (or a server is configured to offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QopOptions {
    pub auth: bool,
    pub auth_int: bool,
    /// Some other token was listed (parsing only).
    pub other: bool,
}

/// A param whose token is either one this module knows or something else, kept as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed<'a, T> {
    Known(T),
    Unknown(&'a [u8]),
}

/// Credentials the caller holds for a user.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// The clear-text password.
    Password(&'a [u8]),
    /// Stored `H(username ":" realm ":" password)` as hex, with the hash it was made with.
    Ha1 { hash: HashFn, hex: &'a [u8] },
}

/// The request being authenticated: SIP method, Request-URI and body (for `auth-int`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub body: &'a [u8],
}

// ---------------------------------------------------------------------------------------
// Zero-copy views
// ---------------------------------------------------------------------------------------

/// One auth-param value: a token, or the inside of a quoted string with escapes kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamValue<'a> {
    raw: &'a [u8],
    quoted: bool,
}

impl<'a> ParamValue<'a> {
    /// The bytes as they appear in the header (between the quotes, escapes kept).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether the value was a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// The value with backslash escapes removed, byte by byte.
    pub fn bytes(&self) -> Unescaped<'a> {
        Unescaped {
            raw: self.raw,
            quoted: self.quoted,
            i: 0,
        }
    }

    /// The value with backslash escapes removed; borrows when there are none.
    pub fn unescaped(&self) -> Cow<'a, [u8]> {
        if self.quoted && self.raw.contains(&b'\\') {
            Cow::Owned(self.bytes().collect())
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Whether the unescaped value equals `other`.
    pub fn eq_bytes(&self, other: &[u8]) -> bool {
        self.bytes().eq(other.iter().copied())
    }

    /// Feeds the unescaped value into `h` without allocating.
    fn feed(&self, h: &mut Hasher) {
        if !self.quoted {
            h.update(self.raw);
            return;
        }
        let mut rest = self.raw;
        while let Some(pos) = rest.iter().position(|&b| b == b'\\') {
            h.update(&rest[..pos]);
            h.update(rest.get(pos + 1..pos + 2).unwrap_or(&[]));
            rest = rest.get(pos + 2..).unwrap_or(&[]);
        }
        h.update(rest);
    }

    fn plain(raw: &'a [u8]) -> Self {
        Self { raw, quoted: false }
    }
}

/// Iterator over a [`ParamValue`] with escapes removed.
#[derive(Debug, Clone)]
pub struct Unescaped<'a> {
    raw: &'a [u8],
    quoted: bool,
    i: usize,
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.raw.get(self.i)?;
        if self.quoted && b == b'\\' {
            self.i += 2;
            self.raw.get(self.i - 1).copied()
        } else {
            self.i += 1;
            Some(b)
        }
    }
}

/// Iterator over the auth-params of a Digest value: `(name, value)` or the first defect.
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    s: &'a [u8],
    i: usize,
    first: bool,
    done: bool,
}

impl<'a> ParamIter<'a> {
    fn new(s: &'a [u8], start: usize) -> Self {
        Self {
            s,
            i: start,
            first: true,
            done: false,
        }
    }

    fn step(&mut self) -> Result<Option<(&'a [u8], ParamValue<'a>)>, DigestError> {
        let s = self.s;
        let mut i = skip_lws(s, self.i)?;
        if self.first && i == s.len() {
            return Ok(None);
        }
        self.first = false;
        let name_end = token_end(s, i);
        if name_end == i {
            return Err(DigestError::ExpectedParamName { at: i });
        }
        let name = &s[i..name_end];
        i = skip_lws(s, name_end)?;
        if s.get(i) != Some(&b'=') {
            return Err(DigestError::ExpectedEquals { at: i });
        }
        i = skip_lws(s, i + 1)?;
        let value = if s.get(i) == Some(&b'"') {
            let end = quoted_end(s, i)?;
            let v = ParamValue {
                raw: &s[i + 1..end - 1],
                quoted: true,
            };
            i = end;
            v
        } else {
            let end = token_end(s, i);
            if end == i {
                return Err(DigestError::ExpectedValue { at: i });
            }
            let v = ParamValue::plain(&s[i..end]);
            i = end;
            v
        };
        i = skip_lws(s, i)?;
        match s.get(i) {
            None => self.done = true,
            Some(b',') => self.i = i + 1,
            Some(_) => return Err(DigestError::ExpectedComma { at: i }),
        }
        Ok(Some((name, value)))
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Result<(&'a [u8], ParamValue<'a>), DigestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The auth-params of a Digest challenge or credentials, known ones indexed by [`Param`].
#[derive(Debug, Clone, Copy)]
pub struct DigestParams<'a> {
    value: &'a [u8],
    start: usize,
    fields: [Option<ParamValue<'a>>; PARAM_COUNT],
}

impl<'a> DigestParams<'a> {
    fn parse(value: &'a [u8], start: usize) -> Result<Self, DigestError> {
        let mut fields = [None; PARAM_COUNT];
        let mut count = 0usize;
        for item in ParamIter::new(value, start) {
            let (name, v) = item?;
            count += 1;
            if count > PARAMS_MAX {
                return Err(DigestError::TooManyParams);
            }
            if let Some(p) = Param::from_name(name) {
                let slot = &mut fields[p as usize];
                if slot.is_some() {
                    return Err(DigestError::DuplicateParam(p));
                }
                *slot = Some(v);
            }
        }
        Ok(Self {
            value,
            start,
            fields,
        })
    }

    /// A known param, if present.
    pub fn get(&self, p: Param) -> Option<ParamValue<'a>> {
        self.fields[p as usize]
    }

    /// All params in order, including unknown ones (already validated: yields no errors).
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter::new(self.value, self.start)
    }

    fn require(&self, p: Param) -> Result<ParamValue<'a>, DigestError> {
        self.get(p).ok_or(DigestError::MissingParam(p))
    }

    fn algorithm(&self) -> Option<Typed<'a, Algorithm>> {
        self.get(Param::Algorithm)
            .map(|v| match Algorithm::from_token(v.raw) {
                Some(a) => Typed::Known(a),
                None => Typed::Unknown(v.raw),
            })
    }

    fn flag(&self, p: Param) -> bool {
        self.get(p)
            .is_some_and(|v| v.raw.eq_ignore_ascii_case(b"true"))
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` value.
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived stack view; boxing would allocate on every parse"
)]
#[derive(Debug, Clone, Copy)]
pub enum Challenge<'a> {
    Digest(ChallengeView<'a>),
    /// Another scheme; `data` is everything after the scheme, unparsed.
    Other {
        scheme: &'a [u8],
        data: &'a [u8],
    },
}

/// A parsed `Authorization` / `Proxy-Authorization` value.
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived stack view; boxing would allocate on every parse"
)]
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    Digest(AuthorizationView<'a>),
    /// Another scheme; `data` is everything after the scheme, unparsed.
    Other {
        scheme: &'a [u8],
        data: &'a [u8],
    },
}

/// A Digest challenge. `realm` and `nonce` are present.
#[derive(Debug, Clone, Copy)]
pub struct ChallengeView<'a> {
    params: DigestParams<'a>,
    realm: ParamValue<'a>,
    nonce: ParamValue<'a>,
    algorithm: Option<Typed<'a, Algorithm>>,
    qop: Option<QopOptions>,
}

impl<'a> ChallengeView<'a> {
    /// Parses a Digest challenge; another scheme is an error here (see [`parse_challenge`]).
    pub fn parse(value: &'a [u8]) -> Result<Self, DigestError> {
        let (scheme, start) = split_scheme(value)?;
        if !scheme.eq_ignore_ascii_case(b"Digest") {
            return Err(DigestError::BadScheme { at: 0 });
        }
        Self::from_params(DigestParams::parse(value, start)?)
    }

    fn from_params(params: DigestParams<'a>) -> Result<Self, DigestError> {
        let realm = params.require(Param::Realm)?;
        let nonce = params.require(Param::Nonce)?;
        let qop = params.get(Param::Qop).map(|v| parse_qop_list(v.raw));
        Ok(Self {
            realm,
            nonce,
            algorithm: params.algorithm(),
            qop,
            params,
        })
    }

    pub fn realm(&self) -> ParamValue<'a> {
        self.realm
    }

    pub fn nonce(&self) -> ParamValue<'a> {
        self.nonce
    }

    pub fn opaque(&self) -> Option<ParamValue<'a>> {
        self.params.get(Param::Opaque)
    }

    pub fn domain(&self) -> Option<ParamValue<'a>> {
        self.params.get(Param::Domain)
    }

    /// The `algorithm` param as sent, `None` when absent.
    pub fn algorithm_param(&self) -> Option<Typed<'a, Algorithm>> {
        self.algorithm
    }

    /// The algorithm in force: MD5 when the param is absent.
    pub fn algorithm(&self) -> Typed<'a, Algorithm> {
        self.algorithm.unwrap_or(Typed::Known(Algorithm::Md5))
    }

    /// The offered qop values; `None` when the param is absent (RFC 2069 challenge).
    pub fn qop_options(&self) -> Option<QopOptions> {
        self.qop
    }

    /// `stale=true` (case-insensitive); anything else is false.
    pub fn stale(&self) -> bool {
        self.params.flag(Param::Stale)
    }

    /// `userhash=true` (RFC 7616 §3.4.4).
    pub fn userhash(&self) -> bool {
        self.params.flag(Param::Userhash)
    }

    pub fn params(&self) -> &DigestParams<'a> {
        &self.params
    }
}

/// Digest credentials. `username`, `realm`, `nonce`, `uri` and `response` are present;
/// with a qop, `cnonce` and a well-formed `nc` are too.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationView<'a> {
    params: DigestParams<'a>,
    username: ParamValue<'a>,
    realm: ParamValue<'a>,
    nonce: ParamValue<'a>,
    uri: ParamValue<'a>,
    response: ParamValue<'a>,
    algorithm: Option<Typed<'a, Algorithm>>,
    qop: Option<Typed<'a, Qop>>,
    nc: Option<u32>,
}

impl<'a> AuthorizationView<'a> {
    /// Parses Digest credentials; another scheme is an error here (see
    /// [`parse_credentials`]).
    pub fn parse(value: &'a [u8]) -> Result<Self, DigestError> {
        let (scheme, start) = split_scheme(value)?;
        if !scheme.eq_ignore_ascii_case(b"Digest") {
            return Err(DigestError::BadScheme { at: 0 });
        }
        Self::from_params(DigestParams::parse(value, start)?)
    }

    fn from_params(params: DigestParams<'a>) -> Result<Self, DigestError> {
        let username = params.require(Param::Username)?;
        let realm = params.require(Param::Realm)?;
        let nonce = params.require(Param::Nonce)?;
        let uri = params.require(Param::Uri)?;
        let response = params.require(Param::Response)?;
        let nc = match params.get(Param::Nc) {
            Some(v) => Some(parse_nc(v.raw).ok_or(DigestError::BadNc)?),
            None => None,
        };
        let qop = params
            .get(Param::Qop)
            .map(|v| match Qop::from_token(v.raw) {
                Some(q) => Typed::Known(q),
                None => Typed::Unknown(v.raw),
            });
        if qop.is_some() {
            params.require(Param::Cnonce)?;
            params.require(Param::Nc)?;
        }
        Ok(Self {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm: params.algorithm(),
            qop,
            nc,
            params,
        })
    }

    pub fn username(&self) -> ParamValue<'a> {
        self.username
    }

    pub fn realm(&self) -> ParamValue<'a> {
        self.realm
    }

    pub fn nonce(&self) -> ParamValue<'a> {
        self.nonce
    }

    pub fn uri(&self) -> ParamValue<'a> {
        self.uri
    }

    pub fn response(&self) -> ParamValue<'a> {
        self.response
    }

    pub fn cnonce(&self) -> Option<ParamValue<'a>> {
        self.params.get(Param::Cnonce)
    }

    pub fn opaque(&self) -> Option<ParamValue<'a>> {
        self.params.get(Param::Opaque)
    }

    /// The nonce count, when present.
    pub fn nc(&self) -> Option<u32> {
        self.nc
    }

    /// The `algorithm` param as sent, `None` when absent.
    pub fn algorithm_param(&self) -> Option<Typed<'a, Algorithm>> {
        self.algorithm
    }

    /// The algorithm in force: MD5 when the param is absent.
    pub fn algorithm(&self) -> Typed<'a, Algorithm> {
        self.algorithm.unwrap_or(Typed::Known(Algorithm::Md5))
    }

    /// The qop; `None` for RFC 2069 credentials.
    pub fn qop(&self) -> Option<Typed<'a, Qop>> {
        self.qop
    }

    /// `userhash=true`: `username` is `H(username ":" realm)`.
    pub fn userhash(&self) -> bool {
        self.params.flag(Param::Userhash)
    }

    pub fn params(&self) -> &DigestParams<'a> {
        &self.params
    }
}

/// Parses a `WWW-Authenticate` / `Proxy-Authenticate` header value.
pub fn parse_challenge(value: &[u8]) -> Result<Challenge<'_>, DigestError> {
    let (scheme, start) = split_scheme(value)?;
    if scheme.eq_ignore_ascii_case(b"Digest") {
        let params = DigestParams::parse(value, start)?;
        Ok(Challenge::Digest(ChallengeView::from_params(params)?))
    } else {
        Ok(Challenge::Other {
            scheme,
            data: trim_lws(&value[start..]),
        })
    }
}

/// Parses an `Authorization` / `Proxy-Authorization` header value.
pub fn parse_credentials(value: &[u8]) -> Result<Credentials<'_>, DigestError> {
    let (scheme, start) = split_scheme(value)?;
    if scheme.eq_ignore_ascii_case(b"Digest") {
        let params = DigestParams::parse(value, start)?;
        Ok(Credentials::Digest(AuthorizationView::from_params(params)?))
    } else {
        Ok(Credentials::Other {
            scheme,
            data: trim_lws(&value[start..]),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------

/// Server configuration. Build with [`ChallengerConfig::new`] and adjust the fields.
#[derive(Clone)]
pub struct ChallengerConfig {
    /// The protection realm (unquoted; escaped when written).
    pub realm: String,
    /// Key for the nonce MAC; at least [`SECRET_LEN_MIN`] bytes from a CSPRNG. Rotating it
    /// invalidates all outstanding nonces (clients see [`VerifyError::ForgedNonce`]).
    pub secret: Vec<u8>,
    /// Algorithms offered, one challenge each, in this order (RFC 8760: strongest first).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays fresh.
    pub nonce_lifetime: Duration,
    /// Most nonces whose highest nonce count is remembered.
    pub replay_capacity: usize,
    /// qop values offered.
    pub qop: QopOptions,
    /// Accept credentials without qop (RFC 2069). They have no nonce count, so no replay
    /// protection within the nonce lifetime.
    pub accept_rfc2069: bool,
}

impl ChallengerConfig {
    /// Defaults: SHA-256 then MD5, 300 s nonces, 4096 tracked nonces, qop `auth` and
    /// `auth-int`, RFC 2069 accepted.
    pub fn new(realm: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            realm: realm.into(),
            secret: secret.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            replay_capacity: 4096,
            qop: QopOptions {
                auth: true,
                auth_int: true,
                other: false,
            },
            accept_rfc2069: true,
        }
    }
}

impl fmt::Debug for ChallengerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChallengerConfig")
            .field("realm", &self.realm)
            .field("secret", &"<redacted>")
            .field("algorithms", &self.algorithms)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("replay_capacity", &self.replay_capacity)
            .field("qop", &self.qop)
            .field("accept_rfc2069", &self.accept_rfc2069)
            .finish()
    }
}

/// Counters of a [`Challenger`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChallengerStats {
    /// Live nonces dropped from the replay table because it was full.
    pub evictions: u64,
    /// Correct responses refused as stale because their replay state had been evicted.
    pub evicted_rejects: u64,
    /// Replays refused.
    pub replays: u64,
    /// Nonces currently tracked.
    pub tracked: usize,
}

/// Issues challenges and verifies credentials for one realm.
#[derive(Debug)]
pub struct Challenger {
    config: ChallengerConfig,
    started_secs: u64,
    seq_next: u64,
    /// Nonce (issue time, sequence) → highest nonce count accepted. Ordered so that the
    /// oldest-issued nonce is evicted first.
    seen: BTreeMap<NonceKey, u32>,
    /// Highest key evicted while still live: an untracked nonce at or below it may have been
    /// used before, so it is refused as stale.
    evicted_floor: Option<NonceKey>,
    stats: ChallengerStats,
}

type NonceKey = (u64, u64);

/// Nonce layout: issue time (s, big-endian) || sequence (big-endian) || MAC[..16], as hex.
const NONCE_RAW_LEN: usize = 8 + 8 + 16;
const NONCE_HEX_LEN: usize = NONCE_RAW_LEN * 2;

impl Challenger {
    /// Validates `config`. `now` is the time since the Unix epoch; nonces issued before this
    /// second (by a previous instance with the same secret, whose replay table is lost) are
    /// refused as stale.
    pub fn new(config: ChallengerConfig, now: Duration) -> Result<Self, ConfigError> {
        if config.realm.is_empty() || config.realm.bytes().any(is_ctl) {
            return Err(ConfigError::BadRealm);
        }
        if config.secret.len() < SECRET_LEN_MIN {
            return Err(ConfigError::SecretTooShort);
        }
        let algs = &config.algorithms;
        if algs.is_empty() || (1..algs.len()).any(|i| algs[..i].contains(&algs[i])) {
            return Err(ConfigError::BadAlgorithms);
        }
        if !config.qop.auth && !config.qop.auth_int && !config.accept_rfc2069 {
            return Err(ConfigError::NoQop);
        }
        if config.nonce_lifetime.as_secs() == 0 {
            return Err(ConfigError::ZeroLifetime);
        }
        if config.replay_capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        Ok(Self {
            config,
            started_secs: now.as_secs(),
            seq_next: 0,
            seen: BTreeMap::new(),
            evicted_floor: None,
            stats: ChallengerStats::default(),
        })
    }

    pub fn config(&self) -> &ChallengerConfig {
        &self.config
    }

    pub fn stats(&self) -> ChallengerStats {
        ChallengerStats {
            tracked: self.seen.len(),
            ..self.stats
        }
    }

    /// One `WWW-Authenticate` value per configured algorithm, in configured order, each with
    /// a fresh nonce. Pass `stale = true` after [`VerifyError::StaleNonce`].
    pub fn challenges(&mut self, now: Duration, stale: bool) -> Vec<String> {
        let algs = self.config.algorithms.clone();
        algs.into_iter()
            .map(|a| self.challenge(a, now, stale))
            .collect()
    }

    fn challenge(&mut self, algorithm: Algorithm, now: Duration, stale: bool) -> String {
        let nonce = self.issue_nonce(now.as_secs());
        let mut out = String::with_capacity(160);
        out.push_str("Digest realm=");
        push_quoted(&mut out, &self.config.realm);
        out.push_str(", nonce=\"");
        out.push_str(&nonce);
        out.push_str("\", algorithm=");
        out.push_str(algorithm.as_str());
        let qop = self.config.qop;
        match (qop.auth, qop.auth_int) {
            (true, true) => out.push_str(", qop=\"auth,auth-int\""),
            (true, false) => out.push_str(", qop=\"auth\""),
            (false, true) => out.push_str(", qop=\"auth-int\""),
            (false, false) => {}
        }
        if stale {
            out.push_str(", stale=true");
        }
        out
    }

    fn issue_nonce(&mut self, now_secs: u64) -> String {
        let seq = self.seq_next;
        self.seq_next += 1;
        let mut raw = [0u8; NONCE_RAW_LEN];
        raw[..8].copy_from_slice(&now_secs.to_be_bytes());
        raw[8..16].copy_from_slice(&seq.to_be_bytes());
        let tag = self.nonce_tag(&raw[..16]);
        raw[16..].copy_from_slice(&tag[..16]);
        let mut hex = HexDigest::default();
        hex.set(&raw);
        // Hex digits are ASCII.
        String::from_utf8_lossy(hex.as_bytes()).into_owned()
    }

    fn nonce_tag(&self, stamp: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.config.secret, &[stamp, self.config.realm.as_bytes()])
    }

    /// Decodes and authenticates a nonce; `None` when it was not issued with this secret.
    fn check_nonce(&self, nonce: ParamValue<'_>) -> Option<NonceKey> {
        let mut hex = [0u8; NONCE_HEX_LEN];
        let mut n = 0;
        for b in nonce.bytes() {
            *hex.get_mut(n)? = b;
            n += 1;
        }
        if n != NONCE_HEX_LEN {
            return None;
        }
        let mut raw = [0u8; NONCE_RAW_LEN];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            raw[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        let tag = self.nonce_tag(&raw[..16]);
        if !ct_eq(&tag[..16], &raw[16..]) {
            return None;
        }
        let ts = u64::from_be_bytes(raw[..8].try_into().ok()?);
        let seq = u64::from_be_bytes(raw[8..16].try_into().ok()?);
        Some((ts, seq))
    }

    /// Verifies credentials for `request` against the user's password or stored HA1.
    ///
    /// Checks, in order: realm, nonce MAC, uri, algorithm, qop, the response digest, nonce
    /// freshness, nonce count. Staleness is only reported for a correct response (RFC 7616
    /// §3.3), and the nonce count is recorded only then, so a wrong guess cannot burn a
    /// client's counts.
    pub fn verify(
        &mut self,
        auth: &AuthorizationView<'_>,
        request: &Request<'_>,
        credential: Credential<'_>,
        now: Duration,
    ) -> Result<(), VerifyError> {
        if !auth.realm.eq_bytes(self.config.realm.as_bytes()) {
            return Err(VerifyError::RealmMismatch);
        }
        let key = self
            .check_nonce(auth.nonce)
            .ok_or(VerifyError::ForgedNonce)?;
        if !auth.uri.eq_bytes(request.uri) {
            return Err(VerifyError::UriMismatch);
        }
        let algorithm = match auth.algorithm() {
            Typed::Known(a) if self.config.algorithms.contains(&a) => a,
            _ => return Err(VerifyError::UnsupportedAlgorithm),
        };
        let qop = match auth.qop {
            None if self.config.accept_rfc2069 => None,
            Some(Typed::Known(Qop::Auth)) if self.config.qop.auth => Some(Qop::Auth),
            Some(Typed::Known(Qop::AuthInt)) if self.config.qop.auth_int => Some(Qop::AuthInt),
            _ => return Err(VerifyError::UnsupportedQop),
        };
        let cnonce = auth.cnonce();
        if algorithm.is_sess() && cnonce.is_none() {
            return Err(VerifyError::MissingParam(Param::Cnonce));
        }
        let base_ha1 = match credential {
            Credential::Password(_) if auth.userhash() => {
                return Err(VerifyError::UnsupportedUserhash)
            }
            Credential::Password(pw) => {
                ha1_from_password(algorithm.hash(), auth.username, auth.realm, pw)
            }
            Credential::Ha1 { hash, hex } => {
                stored_ha1(algorithm.hash(), hash, hex).ok_or(VerifyError::BadStoredHa1)?
            }
        };
        let nc_text = auth.params.get(Param::Nc).map_or(&[][..], |v| v.raw);
        let expected = response_digest(&DigestInputs {
            algorithm,
            base_ha1: &base_ha1,
            nonce: auth.nonce,
            cnonce,
            nc: nc_text,
            qop,
            method: request.method,
            uri: auth.uri,
            body: request.body,
        });
        if !ct_eq_hex(expected.as_bytes(), auth.response) {
            return Err(VerifyError::WrongResponse);
        }
        let (issued_secs, _) = key;
        let age_secs = now.as_secs().saturating_sub(issued_secs);
        if age_secs > self.config.nonce_lifetime.as_secs() || issued_secs < self.started_secs {
            return Err(VerifyError::StaleNonce);
        }
        if let Some(nc) = auth.nc.filter(|_| qop.is_some()) {
            self.record_nc(key, nc, now.as_secs())?;
        }
        Ok(())
    }

    fn record_nc(&mut self, key: NonceKey, nc: u32, now_secs: u64) -> Result<(), VerifyError> {
        if let Some(highest) = self.seen.get_mut(&key) {
            if nc <= *highest {
                self.stats.replays += 1;
                return Err(VerifyError::Replay {
                    nc,
                    highest_seen: *highest,
                });
            }
            *highest = nc;
            return Ok(());
        }
        if self.evicted_floor.is_some_and(|floor| key <= floor) {
            self.stats.evicted_rejects += 1;
            return Err(VerifyError::StaleNonce);
        }
        if nc == 0 {
            self.stats.replays += 1;
            return Err(VerifyError::Replay {
                nc,
                highest_seen: 0,
            });
        }
        if self.seen.len() >= self.config.replay_capacity {
            // Expired nonces go first and are not counted: the age check refuses them anyway.
            let lifetime_secs = self.config.nonce_lifetime.as_secs();
            while let Some((&oldest, _)) = self.seen.first_key_value() {
                if now_secs.saturating_sub(oldest.0) <= lifetime_secs {
                    break;
                }
                self.seen.pop_first();
                self.raise_floor(oldest);
            }
        }
        if self.seen.len() >= self.config.replay_capacity {
            match self.seen.first_key_value() {
                Some((&oldest, _)) if oldest < key => {
                    self.seen.pop_first();
                    self.raise_floor(oldest);
                    self.stats.evictions += 1;
                }
                _ => {
                    // This nonce is older than every tracked one: track it no more than an
                    // evicted one, so the client fetches a fresh nonce.
                    self.raise_floor(key);
                    self.stats.evicted_rejects += 1;
                    return Err(VerifyError::StaleNonce);
                }
            }
        }
        self.seen.insert(key, nc);
        assert!(self.seen.len() <= self.config.replay_capacity);
        Ok(())
    }

    fn raise_floor(&mut self, key: NonceKey) {
        self.evicted_floor = Some(self.evicted_floor.map_or(key, |f| f.max(key)));
    }
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// Builds an `Authorization` / `Proxy-Authorization` value answering `challenge`.
///
/// Picks qop `auth` when offered, else `auth-int`, else none (RFC 2069). `cnonce` must be
/// a fresh unpredictable token from the caller; `nc` counts requests with this nonce,
/// starting at 1. With `userhash=true` in the challenge, the username is sent hashed.
pub fn respond(
    challenge: &ChallengeView<'_>,
    request: &Request<'_>,
    username: &[u8],
    secret: Credential<'_>,
    cnonce: &[u8],
    nc: u32,
) -> Result<String, RespondError> {
    let algorithm = match challenge.algorithm() {
        Typed::Known(a) => a,
        Typed::Unknown(_) => return Err(RespondError::UnsupportedAlgorithm),
    };
    let qop = match challenge.qop_options() {
        None => None,
        Some(o) if o.auth => Some(Qop::Auth),
        Some(o) if o.auth_int => Some(Qop::AuthInt),
        Some(_) => return Err(RespondError::UnsupportedQop),
    };
    if nc == 0 {
        return Err(RespondError::BadNc);
    }
    let username_str = header_text(username, Param::Username)?;
    let uri_str = header_text(request.uri, Param::Uri)?;
    let cnonce_str = header_text(cnonce, Param::Cnonce)?;
    if cnonce.is_empty() || cnonce.contains(&b'"') || cnonce.contains(&b'\\') {
        return Err(RespondError::BadValue(Param::Cnonce));
    }
    let realm_raw = wire_text(challenge.realm, Param::Realm)?;
    let nonce_raw = wire_text(challenge.nonce, Param::Nonce)?;
    let opaque_raw = match challenge.opaque() {
        Some(v) => Some(wire_text(v, Param::Opaque)?),
        None => None,
    };

    let hash = algorithm.hash();
    let base_ha1 = match secret {
        Credential::Password(pw) => {
            ha1_from_password(hash, ParamValue::plain(username), challenge.realm, pw)
        }
        Credential::Ha1 { hash: h, hex } => {
            stored_ha1(hash, h, hex).ok_or(RespondError::BadStoredHa1)?
        }
    };
    let nc_text = format!("{nc:08x}");
    let cnonce_v = ParamValue::plain(cnonce);
    let response = response_digest(&DigestInputs {
        algorithm,
        base_ha1: &base_ha1,
        nonce: challenge.nonce,
        cnonce: qop
            .map(|_| cnonce_v)
            .or(algorithm.is_sess().then_some(cnonce_v)),
        nc: nc_text.as_bytes(),
        qop,
        method: request.method,
        uri: ParamValue::plain(request.uri),
        body: request.body,
    });

    let mut out = String::with_capacity(256);
    out.push_str("Digest username=");
    if challenge.userhash() {
        let mut h = Hasher::new(hash);
        h.update(username);
        h.update(b":");
        challenge.realm.feed(&mut h);
        out.push('"');
        out.push_str(&String::from_utf8_lossy(h.finish().as_bytes()));
        out.push('"');
    } else {
        push_quoted(&mut out, username_str);
    }
    out.push_str(", realm=\"");
    out.push_str(realm_raw);
    out.push_str("\", nonce=\"");
    out.push_str(nonce_raw);
    out.push_str("\", uri=");
    push_quoted(&mut out, uri_str);
    out.push_str(", response=\"");
    out.push_str(&String::from_utf8_lossy(response.as_bytes()));
    out.push('"');
    if challenge.algorithm_param().is_some() {
        out.push_str(", algorithm=");
        out.push_str(algorithm.as_str());
    }
    if qop.is_some() || algorithm.is_sess() {
        out.push_str(", cnonce=\"");
        out.push_str(cnonce_str);
        out.push('"');
    }
    if let Some(o) = opaque_raw {
        out.push_str(", opaque=\"");
        out.push_str(o);
        out.push('"');
    }
    if let Some(q) = qop {
        out.push_str(", qop=");
        out.push_str(q.as_str());
        out.push_str(", nc=");
        out.push_str(&nc_text);
    }
    if challenge.userhash() {
        out.push_str(", userhash=true");
    }
    Ok(out)
}

/// Lowercase hex `H(username ":" realm ":" password)`, the HA1 operators store.
pub fn ha1_hex(hash: HashFn, username: &[u8], realm: &[u8], password: &[u8]) -> String {
    let d = ha1_from_password(
        hash,
        ParamValue::plain(username),
        ParamValue::plain(realm),
        password,
    );
    String::from_utf8_lossy(d.as_bytes()).into_owned()
}

// ---------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------

const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

const fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn token_end(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|&b| is_tchar(b)) {
        i += 1;
    }
    i
}

/// Index just after a line break starting at `i` (CRLF, or a lenient bare LF).
fn line_break_end(s: &[u8], i: usize) -> Result<usize, DigestError> {
    match (s.get(i), s.get(i + 1)) {
        (Some(b'\r'), Some(b'\n')) => Ok(i + 2),
        (Some(b'\n'), _) => Ok(i + 1),
        _ => Err(DigestError::BadLineBreak { at: i }),
    }
}

/// Skips linear white space, including folding. A line terminator at the very end (the
/// caller handed over the whole line) is accepted and skipped.
fn skip_lws(s: &[u8], mut i: usize) -> Result<usize, DigestError> {
    loop {
        match s.get(i) {
            Some(b' ' | b'\t') => i += 1,
            Some(b'\r' | b'\n') => {
                let nl = line_break_end(s, i)?;
                match s.get(nl) {
                    Some(b' ' | b'\t') => i = nl + 1,
                    None => return Ok(nl),
                    Some(_) => return Err(DigestError::BadLineBreak { at: i }),
                }
            }
            _ => return Ok(i),
        }
    }
}

/// `s[start]` is `"`; returns the index just after the closing quote.
fn quoted_end(s: &[u8], start: usize) -> Result<usize, DigestError> {
    let mut j = start + 1;
    loop {
        let Some(&b) = s.get(j) else {
            return Err(DigestError::UnterminatedQuote { at: start });
        };
        match b {
            b'"' => return Ok(j + 1),
            b'\\' => match s.get(j + 1) {
                None => return Err(DigestError::UnterminatedQuote { at: start }),
                Some(b'\r' | b'\n') => return Err(DigestError::BadEscape { at: j }),
                Some(_) => j += 2,
            },
            b'\r' | b'\n' => {
                let nl = line_break_end(s, j)?;
                match s.get(nl) {
                    Some(b' ' | b'\t') => j = nl + 1,
                    None => return Err(DigestError::UnterminatedQuote { at: start }),
                    Some(_) => return Err(DigestError::BadLineBreak { at: j }),
                }
            }
            b'\t' => j += 1,
            _ if is_ctl(b) => return Err(DigestError::BadChar { at: j, byte: b }),
            _ => j += 1,
        }
    }
}

fn trim_lws(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// The scheme token and the index where its params start.
fn split_scheme(value: &[u8]) -> Result<(&[u8], usize), DigestError> {
    let i = skip_lws(value, 0)?;
    if i == value.len() {
        return Err(DigestError::Empty);
    }
    let end = token_end(value, i);
    if end == i {
        return Err(DigestError::BadScheme { at: i });
    }
    match value.get(end) {
        None | Some(b' ' | b'\t' | b'\r' | b'\n') => Ok((&value[i..end], end)),
        Some(_) => Err(DigestError::BadScheme { at: end }),
    }
}

fn parse_qop_list(raw: &[u8]) -> QopOptions {
    let mut o = QopOptions::default();
    for item in raw.split(|&b| b == b',') {
        let t = trim_lws(item);
        match Qop::from_token(t) {
            Some(Qop::Auth) => o.auth = true,
            Some(Qop::AuthInt) => o.auth_int = true,
            None if t.is_empty() => {}
            None => o.other = true,
        }
    }
    o
}

fn parse_nc(raw: &[u8]) -> Option<u32> {
    if raw.len() != 8 {
        return None;
    }
    raw.iter()
        .try_fold(0u32, |acc, &b| Some((acc << 4) | u32::from(hex_val(b)?)))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Caller-supplied text going into a quoted string: UTF-8 without control characters.
fn header_text(bytes: &[u8], p: Param) -> Result<&str, RespondError> {
    if bytes.iter().any(|&b| is_ctl(b) && b != b'\t') {
        return Err(RespondError::BadValue(p));
    }
    std::str::from_utf8(bytes).map_err(|_| RespondError::BadValue(p))
}

/// A value echoed from a challenge, escapes kept, as text.
fn wire_text<'a>(v: ParamValue<'a>, p: Param) -> Result<&'a str, RespondError> {
    if v.raw.iter().any(|&b| matches!(b, b'\r' | b'\n')) {
        return Err(RespondError::BadValue(p));
    }
    std::str::from_utf8(v.raw).map_err(|_| RespondError::BadValue(p))
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Constant-time equality of equal-length secrets; lengths are not secret.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Compares a lowercase hex digest with a received one, ignoring hex case, in constant time.
fn ct_eq_hex(expected: &[u8], got: ParamValue<'_>) -> bool {
    let mut buf = [0u8; 64];
    let mut n = 0;
    for b in got.bytes() {
        let Some(slot) = buf.get_mut(n) else {
            return false;
        };
        *slot = b.to_ascii_lowercase();
        n += 1;
    }
    ct_eq(expected, &buf[..n])
}

/// A hex digest of at most 64 characters, kept on the stack.
#[derive(Clone, Copy)]
struct HexDigest {
    buf: [u8; 64],
    len: usize,
}

impl Default for HexDigest {
    fn default() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl HexDigest {
    fn set(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        assert!(bytes.len() * 2 <= self.buf.len());
        for (i, b) in bytes.iter().enumerate() {
            self.buf[2 * i] = HEX[usize::from(b >> 4)];
            self.buf[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        self.len = bytes.len() * 2;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
    Sha512_256(Sha512_256),
}

impl Hasher {
    fn new(hash: HashFn) -> Self {
        match hash {
            HashFn::Md5 => Self::Md5(Md5::new()),
            HashFn::Sha256 => Self::Sha256(Sha256::new()),
            HashFn::Sha512_256 => Self::Sha512_256(Sha512_256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha512_256(h) => h.update(data),
        }
    }

    fn finish(self) -> HexDigest {
        let mut out = HexDigest::default();
        match self {
            Self::Md5(h) => out.set(&h.finalize()),
            Self::Sha256(h) => out.set(&h.finalize()),
            Self::Sha512_256(h) => out.set(&h.finalize()),
        }
        out
    }
}

fn ha1_from_password(
    hash: HashFn,
    username: ParamValue<'_>,
    realm: ParamValue<'_>,
    password: &[u8],
) -> HexDigest {
    let mut h = Hasher::new(hash);
    username.feed(&mut h);
    h.update(b":");
    realm.feed(&mut h);
    h.update(b":");
    h.update(password);
    h.finish()
}

/// A stored HA1, lowercased, if it is hex of the right length for `want`.
fn stored_ha1(want: HashFn, have: HashFn, hex: &[u8]) -> Option<HexDigest> {
    if want != have || hex.len() != want.hex_len() || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut d = HexDigest::default();
    for (slot, b) in d.buf.iter_mut().zip(hex) {
        *slot = b.to_ascii_lowercase();
    }
    d.len = hex.len();
    Some(d)
}

struct DigestInputs<'v> {
    algorithm: Algorithm,
    base_ha1: &'v HexDigest,
    nonce: ParamValue<'v>,
    cnonce: Option<ParamValue<'v>>,
    nc: &'v [u8],
    qop: Option<Qop>,
    method: &'v [u8],
    uri: ParamValue<'v>,
    body: &'v [u8],
}

/// RFC 7616 §3.4.1–3.4.3 (and RFC 2069 when `qop` is `None`).
fn response_digest(d: &DigestInputs<'_>) -> HexDigest {
    let hash = d.algorithm.hash();
    let empty = ParamValue::plain(&[]);
    let cnonce = d.cnonce.unwrap_or(empty);
    let ha1 = if d.algorithm.is_sess() {
        let mut h = Hasher::new(hash);
        h.update(d.base_ha1.as_bytes());
        h.update(b":");
        d.nonce.feed(&mut h);
        h.update(b":");
        cnonce.feed(&mut h);
        h.finish()
    } else {
        *d.base_ha1
    };
    let mut h2 = Hasher::new(hash);
    h2.update(d.method);
    h2.update(b":");
    d.uri.feed(&mut h2);
    if d.qop == Some(Qop::AuthInt) {
        let mut hb = Hasher::new(hash);
        hb.update(d.body);
        h2.update(b":");
        h2.update(hb.finish().as_bytes());
    }
    let ha2 = h2.finish();
    let mut h = Hasher::new(hash);
    h.update(ha1.as_bytes());
    h.update(b":");
    d.nonce.feed(&mut h);
    h.update(b":");
    if let Some(q) = d.qop {
        h.update(d.nc);
        h.update(b":");
        cnonce.feed(&mut h);
        h.update(b":");
        h.update(q.as_str().as_bytes());
        h.update(b":");
    }
    h.update(ha2.as_bytes());
    h.finish()
}

/// HMAC-SHA-256 (RFC 2104) over the concatenation of `parts`, via the `hmac` crate.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        let mut d = HexDigest::default();
        d.set(bytes);
        String::from_utf8_lossy(d.as_bytes()).into_owned()
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_long_key_is_hashed_first() {
        // RFC 4231 test case 6: 131-byte key of 0xaa.
        let key = [0xaau8; 131];
        let tag = hmac_sha256(
            &key,
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        assert_eq!(
            hex(&tag),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn ct_eq_hex_ignores_case_and_rejects_length() {
        let v = ParamValue::plain(b"ABcd");
        assert!(ct_eq_hex(b"abcd", v));
        assert!(!ct_eq_hex(b"abc", v));
        let long = [b'a'; 100];
        assert!(!ct_eq_hex(&[b'a'; 64], ParamValue::plain(&long)));
    }

    #[test]
    fn nc_parsing() {
        assert_eq!(parse_nc(b"00000001"), Some(1));
        assert_eq!(parse_nc(b"FFFFFFFF"), Some(u32::MAX));
        assert_eq!(parse_nc(b"0000001"), None);
        assert_eq!(parse_nc(b"0000000g"), None);
    }

    #[test]
    fn feed_removes_escapes() {
        let v = ParamValue {
            raw: br#"a\"b\\c"#,
            quoted: true,
        };
        let mut h = Hasher::new(HashFn::Md5);
        v.feed(&mut h);
        let mut h2 = Hasher::new(HashFn::Md5);
        h2.update(br#"a"b\c"#);
        assert_eq!(h.finish().as_bytes(), h2.finish().as_bytes());
        assert_eq!(&*v.unescaped(), br#"a"b\c"#);
    }

    #[test]
    fn config_validation() {
        let now = Duration::from_secs(1_000);
        let ok = ChallengerConfig::new("r", vec![7u8; 32]);
        assert!(Challenger::new(ok.clone(), now).is_ok());
        let mut c = ok.clone();
        c.secret = vec![1; 4];
        assert_eq!(
            Challenger::new(c, now).err(),
            Some(ConfigError::SecretTooShort)
        );
        let mut c = ok.clone();
        c.algorithms = vec![Algorithm::Md5, Algorithm::Md5];
        assert_eq!(
            Challenger::new(c, now).err(),
            Some(ConfigError::BadAlgorithms)
        );
        let mut c = ok.clone();
        c.realm = "a\r\nb".into();
        assert_eq!(Challenger::new(c, now).err(), Some(ConfigError::BadRealm));
        let mut c = ok;
        c.replay_capacity = 0;
        assert_eq!(
            Challenger::new(c, now).err(),
            Some(ConfigError::ZeroCapacity)
        );
    }

    #[test]
    fn debug_redacts_secret() {
        let c = ChallengerConfig::new("r", b"super-secret-key-material".to_vec());
        assert!(!format!("{c:?}").contains("super"));
    }
}
