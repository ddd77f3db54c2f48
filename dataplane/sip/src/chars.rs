//! Character classes of RFC 3261 §25 and the small scanners every header parser shares.
//!
//! Header values are handed out with their line folding intact (CRLF followed by SP/HT), so
//! every scanner here treats CR and LF inside a value as linear white space. The message
//! parser has already checked that each CR/LF inside a value is part of a valid fold.

const fn table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
pub(crate) static TOKEN: [bool; 256] = table(b"-.!%*_+`'~");
/// user = 1*( unreserved / escaped / user-unreserved ), user-unreserved = & = + $ , ; ? /
pub(crate) static USER: [bool; 256] = table(b"-_.!~*'()&=+$,;?/");
/// password = *( unreserved / escaped / & = + $ , )
pub(crate) static PASSWORD: [bool; 256] = table(b"-_.!~*'()&=+$,");
/// paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
pub(crate) static PARAMCHAR: [bool; 256] = table(b"-_.!~*'()[]/:&+$");
/// hnv-unreserved / unreserved (URI headers)
static HCHAR: [bool; 256] = table(b"-_.!~*'()[]/?:+$");
/// uric (absoluteURI) = reserved / unreserved / escaped
static URIC: [bool; 256] = table(b";/?:@&=+$,-_.!~*'()#[]");
/// hostname characters (underscore tolerated: it is common in real deployments)
static HOSTCHAR: [bool; 256] = table(b"-._");

/// Host scanning classes, one byte per input byte: [`HOST_CHAR`], [`HOST_DIGIT_OR_DOT`],
/// [`HOST_DOT`].
static HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        if HOSTCHAR[c] {
            t[c] |= HOST_CHAR;
        }
        if (c as u8).is_ascii_digit() || c == b'.' as usize {
            t[c] |= HOST_DIGIT_OR_DOT;
        }
        if c == b'.' as usize {
            t[c] |= HOST_DOT;
        }
        c += 1;
    }
    t
};
const HOST_CHAR: u8 = 1;
const HOST_DIGIT_OR_DOT: u8 = 2;
const HOST_DOT: u8 = 4;

/// What one pass over a run of hostname characters learnt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostScan {
    /// End (exclusive) of the run.
    pub end: usize,
    /// Every byte is a digit or a dot: the host must be an IPv4 address.
    pub digits_and_dots: bool,
    /// Two dots touch somewhere (never a valid hostname).
    pub double_dot: bool,
}

/// Scans the hostname characters of `s` from `i`, in one branch-light pass.
#[inline]
pub(crate) fn scan_host(s: &[u8], mut i: usize) -> HostScan {
    let mut all = HOST_DIGIT_OR_DOT;
    let mut prev = 0;
    let mut pairs = 0;
    // Four bytes per step while all four are hostname characters.
    while let Some(&[a, b, c, d]) = s.get(i..i + 4).and_then(|w| w.first_chunk::<4>()) {
        let (a, b, c, d) = (
            HOST_CLASS[a as usize],
            HOST_CLASS[b as usize],
            HOST_CLASS[c as usize],
            HOST_CLASS[d as usize],
        );
        if a & b & c & d & HOST_CHAR == 0 {
            break;
        }
        all &= a & b & c & d;
        pairs |= (prev & a) | (a & b) | (b & c) | (c & d);
        prev = d;
        i += 4;
    }
    while i < s.len() {
        let c = HOST_CLASS[s[i] as usize];
        if c & HOST_CHAR == 0 {
            break;
        }
        all &= c;
        pairs |= c & prev;
        prev = c;
        i += 1;
    }
    HostScan {
        end: i,
        digits_and_dots: all & HOST_DIGIT_OR_DOT != 0,
        double_dot: pairs & HOST_DOT != 0,
    }
}

#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}
#[inline]
pub(crate) fn is_user(b: u8) -> bool {
    USER[b as usize]
}
#[inline]
pub(crate) fn is_password(b: u8) -> bool {
    PASSWORD[b as usize]
}
#[inline]
pub(crate) fn is_paramchar(b: u8) -> bool {
    PARAMCHAR[b as usize]
}
#[inline]
pub(crate) fn is_hchar(b: u8) -> bool {
    HCHAR[b as usize]
}
#[inline]
pub(crate) fn is_uric(b: u8) -> bool {
    URIC[b as usize]
}

/// Linear white space inside an already-unfolded value: SP, HT, and the CR/LF of a fold.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Index of the first non-LWS byte at or after `i`.
#[inline]
pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// `s` without leading and trailing LWS.
#[inline]
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = skip_lws(s, 0);
    let mut end = s.len();
    while end > start && is_lws(s[end - 1]) {
        end -= 1;
    }
    &s[start..end]
}

/// True when every byte of `s` is in `class`. No early exit: for the short, valid runs
/// this sees, an unrolled run of table loads beats a branch per byte.
#[inline]
pub(crate) fn all_in(class: &[bool; 256], s: &[u8]) -> bool {
    s.iter().fold(true, |ok, &b| ok & class[b as usize])
}

/// True when `s` is a non-empty token.
#[inline]
pub(crate) fn all_token(s: &[u8]) -> bool {
    !s.is_empty() && all_in(&TOKEN, s)
}

/// word (Call-ID) = 1*(alphanum / token marks / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE /
/// "/" / "[" / "]" / "?" / "{" / "}"), plus "@": the bytes a Call-ID may hold.
pub(crate) static CALL_ID: [bool; 256] = table(b"-.!%*_+`'~()<>:\\\"/[]?{}@");
/// token plus ":": a header parameter's value when it is neither quoted nor an IPv6
/// reference.
pub(crate) static TOKEN_OR_COLON: [bool; 256] = table(b"-.!%*_+`'~:");

/// End (exclusive) of the run of `class` bytes in `s` starting at `i`.
#[inline]
pub(crate) fn span(class: &[bool; 256], s: &[u8], i: usize) -> usize {
    span_to(class, s, i, s.len())
}

/// End (exclusive) of the run of `class` bytes in `s[i..end]`. Four bytes per step while
/// they all match (one branch instead of four), then byte by byte.
#[inline]
pub(crate) fn span_to(class: &[bool; 256], s: &[u8], mut i: usize, end: usize) -> usize {
    let s = &s[..end];
    while let Some(&[a, b, c, d]) = s.get(i..).and_then(|w| w.first_chunk::<4>()) {
        let (a, b, c, d) = (
            class[a as usize],
            class[b as usize],
            class[c as usize],
            class[d as usize],
        );
        if !(a & b & c & d) {
            // The run ends inside these four: count their leading matches rather than
            // loading them again one by one.
            return i + usize::from(a) + usize::from(a & b) + usize::from(a & b & c);
        }
        i += 4;
    }
    while i < s.len() && class[s[i] as usize] {
        i += 1;
    }
    i
}

/// Scans a quoted-string starting at the opening DQUOTE at `s[i]`. Returns the index one past
/// the closing DQUOTE, or `None` when it is unterminated or holds a forbidden quoted-pair.
pub(crate) fn scan_quoted(s: &[u8], i: usize) -> Option<usize> {
    debug_assert_eq!(s.get(i), Some(&b'"'));
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Some(j + 1),
            b'\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                let next = *s.get(j + 1)?;
                if next == b'\n' || next == b'\r' || next > 0x7f {
                    return None;
                }
                j += 2;
            }
            _ => j += 1,
        }
    }
    None
}

/// Checks that `%` escapes in `s` are followed by two hex digits and every other byte is in
/// the class `ok`.
pub(crate) fn escaped_class(s: &[u8], ok: fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            if i + 2 >= s.len() {
                return false;
            }
            if !(s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if ok(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Parses an unsigned decimal of at most `max` without overflow; `None` on empty, non-digit
/// or out of range.
#[inline]
pub(crate) fn parse_u64_max(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        // Each step starts from `v <= max`; below this bound `v * 10 + 9` cannot overflow,
        // so the checked arithmetic is only needed for larger maxima (a constant per caller).
        v = if max <= (u64::MAX - 9) / 10 {
            v * 10 + u64::from(d)
        } else {
            v.checked_mul(10)?.checked_add(u64::from(d))?
        };
        if v > max {
            return None;
        }
    }
    Some(v)
}

/// Like [`parse_u64_max`] but values past `u32::MAX` saturate (RFC 3261 tolerates huge
/// Expires values: treat them as the largest value the element supports).
pub(crate) fn parse_u32_saturating(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        v = v * 10 + u64::from(b - b'0');
        if v > u64::from(u32::MAX) {
            return Some(u32::MAX);
        }
    }
    Some(v as u32)
}

/// ASCII case-insensitive equality.
#[inline]
pub(crate) fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

const LO_BITS: u64 = 0x0101_0101_0101_0101;
const HI_BITS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that equals `needle`. Bits above the lowest may be
/// false positives (borrow), so only the lowest set bit is meaningful.
#[inline(always)]
fn eq_bytes(w: u64, needle: u8) -> u64 {
    let x = w ^ (LO_BITS * u64::from(needle));
    x.wrapping_sub(LO_BITS) & !x & HI_BITS
}

/// Index of the first byte of `s` equal to `a`, `b` or `c`, found eight bytes at a time.
/// For the short runs inside header values this beats a call into `memchr`, whose set-up
/// costs more than the search.
#[inline]
pub(crate) fn find3(s: &[u8], a: u8, b: u8, c: u8) -> Option<usize> {
    let mut i = 0;
    while let Some(chunk) = s[i..].first_chunk::<8>() {
        let w = u64::from_le_bytes(*chunk);
        let hits = eq_bytes(w, a) | eq_bytes(w, b) | eq_bytes(w, c);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&x| x == a || x == b || x == c)
        .map(|k| i + k)
}

/// Index of the first byte of `s` equal to `a` or `b`; see [`find3`].
#[inline]
pub(crate) fn find2(s: &[u8], a: u8, b: u8) -> Option<usize> {
    find3(s, a, b, b)
}

/// Index of the first byte of `s` equal to `a`; see [`find3`].
#[inline]
pub(crate) fn find1(s: &[u8], a: u8) -> Option<usize> {
    find3(s, a, a, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_matches_position(s in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b';'), Just(0x8d_u8), Just(0x0c_u8), any::<u8>()], 0..40)) {
            prop_assert_eq!(find3(&s, b'\r', b'\n', b';'), s.iter().position(|&b| b == b'\r' || b == b'\n' || b == b';'));
            prop_assert_eq!(find2(&s, b'\r', b'\n'), s.iter().position(|&b| b == b'\r' || b == b'\n'));
            prop_assert_eq!(find1(&s, b';'), s.iter().position(|&b| b == b';'));
        }

        #[test]
        fn parse_u64_max_matches_std(s in proptest::collection::vec(
            prop_oneof![Just(b'0'), Just(b'9'), Just(b'5'), Just(b'+'), Just(b'/'), Just(b':')], 0..24),
            max in prop_oneof![Just(255u64), Just(65_535), Just((1 << 31) - 1), Just(u64::MAX / 10), Just(u64::MAX), any::<u64>()]) {
            let reference = if s.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(&s).ok().and_then(|t| t.parse::<u64>().ok()).filter(|v| *v <= max)
            } else {
                None
            };
            prop_assert_eq!(parse_u64_max(&s, max), reference);
        }

        #[test]
        fn span_and_host_scan_match_byte_loops(s in proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'-'), Just(b'1'), Just(b'a'), Just(b':'), Just(b';')], 0..24),
            from in 0usize..24) {
            let from = from.min(s.len());
            let naive = from + s[from..].iter().take_while(|&&b| TOKEN[b as usize]).count();
            prop_assert_eq!(span(&TOKEN, &s, from), naive);
            let scan = scan_host(&s, from);
            let host = &s[from..from + s[from..].iter().take_while(|&&b| HOSTCHAR[b as usize]).count()];
            prop_assert_eq!(scan.end, from + host.len());
            prop_assert_eq!(scan.digits_and_dots, host.iter().all(|&b| b.is_ascii_digit() || b == b'.'));
            prop_assert_eq!(scan.double_dot, host.windows(2).any(|w| w == b".."));
        }
    }
}
