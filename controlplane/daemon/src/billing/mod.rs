//! Billing, first slice: the rating engine, sans-IO. A [`Deck`] of rates keyed by destination
//! prefix (longest-prefix match over a digit trie, time bands, connect fee, free seconds,
//! minimum charge, first interval / increment), [`rate`] for what one call costs, and
//! [`max_duration`] for how long a balance lets a call last. Money is an integer number of
//! micro-units ([`Money`]); rounding happens once per charge, to the deck's decimals by its
//! [`RoundingMode`]. Decks import from and export to CSV ([`import_csv`], [`export_csv`]).
//!
//! What it does not do yet: accounts, balances and tenants' rate plans, CDR storage, prepaid
//! cut-off in the proxy, effective-from dates, splitting a call across bands (the band in
//! force at the call's start rates the whole call).
//!
//! Rating allocates nothing and takes no lock: a deck is immutable once built, so any number
//! of threads can rate against one `&Deck`.

mod csv;
mod deck;
mod money;
mod rate;

pub use self::csv::{export_csv, import_csv, normalise_prefix, CsvImportError, HEADER};
pub use deck::{
    parse_band, Band, CallStart, Deck, DeckError, DeckSettings, Rate, Weekdays, DAY_NAMES,
    MAX_PREFIX_DIGITS, MAX_RATES, MAX_RATES_PER_PREFIX,
};
pub use money::{Money, MoneyParseError, RoundingMode, MAX_DECIMALS, MICROS_PER_UNIT};
pub use rate::{billed_seconds, max_duration, rate, Breakdown, Charge, RateError};
