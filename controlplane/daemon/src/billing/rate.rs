//! Rating: what one call costs on a deck, and how long a balance lets a call last.
//!
//! The billing rule, for a call answered for `billsec` seconds at the rate in force at its
//! start (a call crossing into another band keeps its starting band's rate):
//!
//! 1. `billsec` 0 (not answered): nothing is charged, not even the connect fee.
//! 2. The rate's free seconds come off first.
//! 3. What remains, if anything, bills at least the first interval, then whole increments
//!    rounding up: at 30/6, 12 s bills 30 s and 39 s bills 42 s; at 60/60, 62 s bills 120 s.
//! 4. cost = connect fee + billed seconds × rate per minute / 60, computed exactly (in
//!    1/60 micro-units) and rounded once to the deck's decimals by its rounding mode.
//! 5. The minimum charge then applies: an answered call costs at least `minimum` (even one
//!    inside its free seconds: free seconds waive duration, not the per-call charges).

use std::fmt;

use super::deck::{CallStart, Deck, DeckSettings, LookupMiss, Rate};
use super::money::{pow10, round_div, round_div_u64, Money, MAX_DECIMALS};

/// What a call costs and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge<'d> {
    /// The deck row used (its prefix is the longest that matched with a rate in force).
    pub rate: &'d Rate,
    /// Answered seconds, as given.
    pub billsec: u32,
    /// Of those, seconds waived as free.
    pub free_s: u32,
    /// Seconds charged for after intervals and increments (free seconds excluded).
    pub billed_s: u64,
    /// Total, rounded to the deck's decimals; `breakdown`'s parts add up to it exactly.
    pub cost: Money,
    /// Where the cost comes from.
    pub breakdown: Breakdown,
}

/// The parts of a [`Charge`]'s cost; they sum to it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breakdown {
    /// The rate's connect fee (0 for an unanswered call).
    pub connect_fee: Money,
    /// Duration charge after rounding (the rounding of the total is booked here).
    pub duration: Money,
    /// What the minimum charge added on top (0 when the call cost more anyway).
    pub minimum_topup: Money,
}

/// Why a call could not be rated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateError {
    /// The destination holds something other than digits, a `+` before them and separators
    /// (` -.()`), or no digits at all.
    InvalidDestination,
    /// No prefix of the deck matches the destination.
    UnknownDestination,
    /// Prefixes match, but none has a rate in force at the call's start.
    NoRateInForce,
    /// The cost does not fit in money's range (absurd rate × duration).
    Overflow,
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RateError::InvalidDestination => "destination is not a number",
            RateError::UnknownDestination => "no rate for this destination",
            RateError::NoRateInForce => "no rate for this destination at this time",
            RateError::Overflow => "charge out of range",
        })
    }
}

impl std::error::Error for RateError {}

impl From<LookupMiss> for RateError {
    fn from(miss: LookupMiss) -> RateError {
        match miss {
            LookupMiss::Invalid | LookupMiss::Empty => RateError::InvalidDestination,
            LookupMiss::Unknown => RateError::UnknownDestination,
            LookupMiss::NoneInForce => RateError::NoRateInForce,
        }
    }
}

/// Rates one call: `destination` as dialled (`+44 20 7946 0000` and `442079460000` are the
/// same), answered `billsec` seconds, started at `start`. Allocates nothing.
#[inline]
pub fn rate<'d>(
    deck: &'d Deck,
    destination: &str,
    start: CallStart,
    billsec: u32,
) -> Result<Charge<'d>, RateError> {
    let r = deck.lookup(destination, start)?;
    charge(deck.settings(), r, billsec)
}

/// The longest answered duration, in seconds, whose charge is at most `balance` for a call to
/// `destination` starting at `start` — consistent with [`rate`] by construction: rating the
/// result costs ≤ `balance`, one second more costs more. 0 when not even the first interval is
/// affordable (or the balance is negative); `u32::MAX` when any duration is (a free rate).
pub fn max_duration(
    deck: &Deck,
    destination: &str,
    start: CallStart,
    balance: Money,
) -> Result<u32, RateError> {
    let r = deck.lookup(destination, start)?;
    let settings = deck.settings();
    if balance < Money::ZERO {
        return Ok(0);
    }
    let affordable = |s: u32| -> Result<bool, RateError> {
        match charge(settings, r, s) {
            Ok(c) => Ok(c.cost <= balance),
            // Beyond money's range is beyond any balance.
            Err(RateError::Overflow) => Ok(false),
            Err(e) => Err(e),
        }
    };
    if affordable(u32::MAX)? {
        return Ok(u32::MAX);
    }
    // Cost is monotone in billsec; invariant: lo affordable (cost(0) = 0), hi not.
    let (mut lo, mut hi) = (0u32, u32::MAX);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if affordable(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Seconds billed for `chargeable` seconds (after free seconds) at `first`/`increment`.
#[inline]
pub fn billed_seconds(chargeable: u32, first_interval_s: u32, increment_s: u32) -> u64 {
    assert!(
        increment_s > 0,
        "a validated deck has increments of at least 1 s"
    );
    let (c, first, inc) = (
        u64::from(chargeable),
        u64::from(first_interval_s),
        u64::from(increment_s),
    );
    if c == 0 {
        0
    } else if c <= first {
        first
    } else {
        first + (c - first).div_ceil(inc) * inc
    }
}

/// Applies the billing rule (module docs) with one deck row.
#[inline]
fn charge(settings: DeckSettings, r: &Rate, billsec: u32) -> Result<Charge<'_>, RateError> {
    if billsec == 0 {
        return Ok(Charge {
            rate: r,
            billsec,
            free_s: 0,
            billed_s: 0,
            cost: Money::ZERO,
            breakdown: Breakdown::default(),
        });
    }
    let free_s = r.free_s.min(billsec);
    let billed_s = billed_seconds(billsec - free_s, r.first_interval_s, r.increment_s);
    // Validated non-negative by `Deck::new`.
    let connect = r.connect_fee.micros().unsigned_abs();
    let per_min = r.rate_per_min.micros().unsigned_abs();
    let minimum = r.minimum;
    // Exact cost in 1/60 micro-units, rounded to units of 10^-decimals.
    let step = pow10(MAX_DECIMALS - settings.decimals).unsigned_abs();
    let den = 60 * step;
    let subtotal_micros: u128 = match connect
        .checked_mul(60)
        .and_then(|c| billed_s.checked_mul(per_min).and_then(|d| d.checked_add(c)))
    {
        Some(num) => u128::from(round_div_u64(num, den, settings.rounding)) * u128::from(step),
        None => {
            let num = u128::from(connect) * 60 + u128::from(billed_s) * u128::from(per_min);
            round_div(num, u128::from(den), settings.rounding) * u128::from(step)
        }
    };
    let subtotal = i64::try_from(subtotal_micros)
        .map(Money::from_micros)
        .map_err(|_| RateError::Overflow)?;
    let connect_fee = r.connect_fee;
    // Rounding never takes the total below the connect fee: the fee fits the decimals.
    let duration = Money::from_micros(subtotal.micros() - connect_fee.micros());
    assert!(
        duration >= Money::ZERO,
        "rounding went below the connect fee"
    );
    let minimum_topup = if subtotal < minimum {
        Money::from_micros(minimum.micros() - subtotal.micros())
    } else {
        Money::ZERO
    };
    let cost = subtotal.max(minimum);
    Ok(Charge {
        rate: r,
        billsec,
        free_s,
        billed_s,
        cost,
        breakdown: Breakdown {
            connect_fee,
            duration,
            minimum_topup,
        },
    })
}
