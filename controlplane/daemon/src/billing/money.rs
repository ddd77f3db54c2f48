//! Money as an integer count of a fixed minor unit, and exact decimal parsing and rounding.
//!
//! The unit is the micro-unit: one millionth of the currency ([`MICROS_PER_UNIT`]). Every rate,
//! fee and charge is a whole number of micro-units, so a rate such as 0.0123 per minute is
//! exact and nothing in rating ever touches a float. Charges are then rounded to the deck's
//! decimals (0..=[`MAX_DECIMALS`]) with one of the [`RoundingMode`]s, in a single rounding
//! step on an exact rational (see `rate.rs`).

use std::fmt;

/// Decimal digits of the minor unit: one micro-unit is 10^-6 of the currency.
pub const MAX_DECIMALS: u8 = 6;
/// Micro-units in one currency unit.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// An amount in micro-units (10^-6 of the currency). Negative amounts exist (a balance may be
/// overdrawn), but every rate, fee and charge in a deck is non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);

    /// An amount of `micros` micro-units.
    pub const fn from_micros(micros: i64) -> Money {
        Money(micros)
    }

    /// The amount in micro-units.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// Parses a plain decimal (`12`, `0.0123`, `-1.5`) exactly into micro-units: digits with at
    /// most one `.` and at most [`MAX_DECIMALS`] digits after it, an optional leading `-`. No
    /// exponent, no thousands separator, no spaces.
    pub fn parse(text: &str) -> Result<Money, MoneyParseError> {
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            return Err(MoneyParseError::Empty);
        }
        let (int_part, frac_part) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(MoneyParseError::NotADecimal);
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(MoneyParseError::NotADecimal);
        }
        if frac_part.len() > usize::from(MAX_DECIMALS) {
            return Err(MoneyParseError::TooManyDecimals);
        }
        let mut micros: i64 = 0;
        for b in int_part.bytes() {
            micros = micros
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or(MoneyParseError::TooLarge)?;
        }
        micros = micros
            .checked_mul(MICROS_PER_UNIT)
            .ok_or(MoneyParseError::TooLarge)?;
        let mut frac: i64 = 0;
        for b in frac_part.bytes() {
            frac = frac * 10 + i64::from(b - b'0');
        }
        frac *= pow10(MAX_DECIMALS - frac_part.len() as u8);
        micros = micros.checked_add(frac).ok_or(MoneyParseError::TooLarge)?;
        Ok(Money(if negative { -micros } else { micros }))
    }

    /// Whether the amount is a whole number of units of 10^-`decimals`.
    pub fn fits_decimals(self, decimals: u8) -> bool {
        decimals >= MAX_DECIMALS || self.0 % pow10(MAX_DECIMALS - decimals) == 0
    }
}

/// Shortest exact decimal: `0.0123`, `1`, `-2.5`. [`Money::parse`] reads it back unchanged.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per_unit = MICROS_PER_UNIT.unsigned_abs();
        let (int_part, frac) = (abs / per_unit, abs % per_unit);
        if frac == 0 {
            return write!(f, "{sign}{int_part}");
        }
        let mut digits = format!("{frac:06}");
        while digits.ends_with('0') {
            digits.pop();
        }
        write!(f, "{sign}{int_part}.{digits}")
    }
}

/// Why a decimal amount did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyParseError {
    /// Nothing there.
    Empty,
    /// Not digits with an optional single `.` and leading `-`.
    NotADecimal,
    /// More digits after the point than the micro-unit holds.
    TooManyDecimals,
    /// Beyond ±9.2 × 10^12 units.
    TooLarge,
}

impl fmt::Display for MoneyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyParseError::Empty => write!(f, "empty amount"),
            MoneyParseError::NotADecimal => {
                write!(f, "not a plain decimal number (digits and one '.')")
            }
            MoneyParseError::TooManyDecimals => {
                write!(f, "more than {MAX_DECIMALS} decimals")
            }
            MoneyParseError::TooLarge => write!(f, "amount too large"),
        }
    }
}

impl std::error::Error for MoneyParseError {}

/// How a charge is rounded to the deck's decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RoundingMode {
    /// Toward +∞ (ceiling): any fraction of the last digit costs a whole one. The usual
    /// carrier choice, and the default.
    #[default]
    Up,
    /// Toward −∞ (floor, truncation for charges): fractions are dropped.
    Down,
    /// To nearest; a tie (exactly half) goes up.
    HalfUp,
    /// To nearest; a tie goes to the even neighbour (banker's rounding).
    HalfEven,
}

impl RoundingMode {
    /// The mode's name as decks and configuration write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundingMode::Up => "up",
            RoundingMode::Down => "down",
            RoundingMode::HalfUp => "half-up",
            RoundingMode::HalfEven => "half-even",
        }
    }

    /// Parses [`RoundingMode::as_str`]'s names.
    pub fn from_name(name: &str) -> Option<RoundingMode> {
        match name {
            "up" => Some(RoundingMode::Up),
            "down" => Some(RoundingMode::Down),
            "half-up" => Some(RoundingMode::HalfUp),
            "half-even" => Some(RoundingMode::HalfEven),
            _ => None,
        }
    }
}

/// 10^`exp` for `exp` ≤ [`MAX_DECIMALS`].
pub(crate) const fn pow10(exp: u8) -> i64 {
    assert!(exp <= MAX_DECIMALS, "pow10 beyond the micro-unit");
    let mut v = 1;
    let mut i = 0;
    while i < exp {
        v *= 10;
        i += 1;
    }
    v
}

/// `num / den` rounded to an integer by `mode`, for non-negative `num` and positive `den`.
#[inline]
pub(crate) fn round_div(num: u128, den: u128, mode: RoundingMode) -> u128 {
    assert!(den > 0, "round_div by zero");
    let q = num / den;
    let r = num % den;
    if r == 0 {
        return q;
    }
    match mode {
        RoundingMode::Up => q + 1,
        RoundingMode::Down => q,
        RoundingMode::HalfUp => {
            if 2 * r >= den {
                q + 1
            } else {
                q
            }
        }
        RoundingMode::HalfEven => {
            if 2 * r > den || (2 * r == den && q % 2 == 1) {
                q + 1
            } else {
                q
            }
        }
    }
}

/// [`round_div`] in 64 bits: the hot path's case (a u128 division is a library call).
#[inline]
pub(crate) fn round_div_u64(num: u64, den: u64, mode: RoundingMode) -> u64 {
    assert!(den > 0, "round_div by zero");
    let q = num / den;
    let r = num % den;
    if r == 0 {
        return q;
    }
    // `r < den ≤ u64::MAX`, so compare `r` with `den - r` instead of doubling it.
    let more_than_half = r > den - r;
    let exactly_half = r == den - r;
    let up = match mode {
        RoundingMode::Up => true,
        RoundingMode::Down => false,
        RoundingMode::HalfUp => more_than_half || exactly_half,
        RoundingMode::HalfEven => more_than_half || (exactly_half && q % 2 == 1),
    };
    q + u64::from(up)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parse_is_exact() {
        assert_eq!(Money::parse("0.0123").unwrap().micros(), 12_300);
        assert_eq!(Money::parse("1").unwrap().micros(), 1_000_000);
        assert_eq!(Money::parse("1.").unwrap().micros(), 1_000_000);
        assert_eq!(Money::parse(".5").unwrap().micros(), 500_000);
        assert_eq!(Money::parse("0.000001").unwrap().micros(), 1);
        assert_eq!(Money::parse("-2.25").unwrap().micros(), -2_250_000);
        assert_eq!(Money::parse(""), Err(MoneyParseError::Empty));
        assert_eq!(Money::parse("."), Err(MoneyParseError::NotADecimal));
        assert_eq!(Money::parse("1e3"), Err(MoneyParseError::NotADecimal));
        assert_eq!(Money::parse("1.2.3"), Err(MoneyParseError::NotADecimal));
        assert_eq!(Money::parse(" 1"), Err(MoneyParseError::NotADecimal));
        assert_eq!(
            Money::parse("0.0000001"),
            Err(MoneyParseError::TooManyDecimals)
        );
        assert_eq!(
            Money::parse("99999999999999"),
            Err(MoneyParseError::TooLarge)
        );
    }

    #[test]
    fn display_is_shortest_and_round_trips() {
        for (micros, text) in [
            (12_300, "0.0123"),
            (1_000_000, "1"),
            (0, "0"),
            (-2_500_000, "-2.5"),
            (1, "0.000001"),
            (-1, "-0.000001"),
        ] {
            let m = Money::from_micros(micros);
            assert_eq!(m.to_string(), text);
            assert_eq!(Money::parse(text).unwrap(), m);
        }
    }

    #[test]
    fn rounding_modes() {
        use RoundingMode::*;
        // 2.5, 3.5, 2.4, 2.6, 3.0 (as num/10)
        let cases: [(u128, [u128; 4]); 5] = [
            (25, [3, 2, 3, 2]),
            (35, [4, 3, 4, 4]),
            (24, [3, 2, 2, 2]),
            (26, [3, 2, 3, 3]),
            (30, [3, 3, 3, 3]),
        ];
        for (num, want) in cases {
            for (mode, w) in [Up, Down, HalfUp, HalfEven].into_iter().zip(want) {
                assert_eq!(round_div(num, 10, mode), w, "{num}/10 {mode:?}");
                assert_eq!(
                    u128::from(round_div_u64(num as u64, 10, mode)),
                    w,
                    "{num}/10 {mode:?} u64"
                );
            }
        }
        assert_eq!(round_div_u64(u64::MAX, u64::MAX - 1, HalfUp), 1);
    }

    #[test]
    fn fits_decimals() {
        assert!(Money::parse("0.05").unwrap().fits_decimals(2));
        assert!(!Money::parse("0.005").unwrap().fits_decimals(2));
        assert!(Money::parse("0.005").unwrap().fits_decimals(6));
    }
}
