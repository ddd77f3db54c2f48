//! Rate decks as CSV: import (validated, all or nothing) and export (canonical).
//!
//! ```text
//! prefix,description,rate_per_min,connect_fee,first_interval,increment,free_seconds,minimum,bands
//! 44,United Kingdom,0.02,0,60,60,0,0,
//! 4420,United Kingdom - London,0.0123,0.05,30,6,0,0.10,mon-fri 08:00-18:00
//! 4420,United Kingdom - London (off-peak),0.008,0.05,30,6,0,0.10,
//! ```
//!
//! - `prefix`: digits; a leading `+` and separators (` -.()`) are dropped (`+44 20` is `4420`).
//! - money columns: plain decimals (`0.0123`), parsed exactly into micro-units, never through a
//!   float; at most 6 decimals, and `connect_fee`/`minimum` no more than the deck charges in.
//! - `first_interval`, `increment`, `free_seconds`: whole seconds (`increment` ≥ 1).
//! - `connect_fee`, `free_seconds`, `minimum`, `bands` may be empty (0 / all times).
//! - `bands`: `DAYS [HH:MM-HH:MM]` in the deck's local time, e.g. `mon-fri 08:00-18:00`,
//!   `sat,sun`, `mon-fri 22:00-06:00` (spans midnight; the days are those the window opens
//!   on). Empty: the prefix's rate whenever none of its banded rows is in force.
//!
//! A bad row fails the whole import with `line N, column NAME: what is wrong`; nothing is
//! half-imported. Export writes the deck sorted (prefix, then band) in the same format, and
//! importing it gives the same deck back.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

use super::deck::{parse_band, Deck, DeckError, DeckSettings, Rate, MAX_PREFIX_DIGITS, MAX_RATES};
use super::money::Money;

/// The header line, in order.
pub const HEADER: [&str; 9] = [
    "prefix",
    "description",
    "rate_per_min",
    "connect_fee",
    "first_interval",
    "increment",
    "free_seconds",
    "minimum",
    "bands",
];

/// One CSV row as text; every field is parsed by hand so numbers stay exact.
#[derive(Debug, Serialize, Deserialize)]
struct CsvRow {
    prefix: String,
    description: String,
    rate_per_min: String,
    connect_fee: String,
    first_interval: String,
    increment: String,
    free_seconds: String,
    minimum: String,
    bands: String,
}

/// Why a CSV deck was refused: the line (1 = the header) and, where one is at fault, the
/// column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvImportError {
    /// Line of the input, counting from 1 (the header).
    pub line: u64,
    /// Column name, when one field is at fault.
    pub column: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CsvImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "line {}, column {c}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for CsvImportError {}

/// Reads a whole deck from CSV (module docs) and validates it; any error refuses all of it.
pub fn import_csv<R: io::Read>(settings: DeckSettings, input: R) -> Result<Deck, CsvImportError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(::csv::Trim::All)
        .from_reader(input);
    let headers = reader.headers().map_err(|e| csv_error(&e, 1))?.clone();
    if headers.is_empty() || (headers.len() == 1 && headers.get(0) == Some("")) {
        return Err(CsvImportError {
            line: 1,
            column: None,
            message: format!("missing header (expected `{}`)", HEADER.join(",")),
        });
    }
    for (i, want) in HEADER.iter().enumerate() {
        let got = headers.get(i).unwrap_or("");
        if got != *want {
            return Err(CsvImportError {
                line: 1,
                column: Some(want),
                message: format!("header names `{got}` here; expected `{}`", HEADER.join(",")),
            });
        }
    }
    if headers.len() > HEADER.len() {
        return Err(CsvImportError {
            line: 1,
            column: None,
            message: format!("{} columns; expected `{}`", headers.len(), HEADER.join(",")),
        });
    }
    let mut rates = Vec::new();
    let mut lines = Vec::new();
    let mut last_line = 1;
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&e, last_line + 1))?;
        let line = record
            .position()
            .map_or(last_line + 1, ::csv::Position::line);
        last_line = line;
        if rates.len() == MAX_RATES {
            return Err(CsvImportError {
                line,
                column: None,
                message: format!("more than {MAX_RATES} rows"),
            });
        }
        let row: CsvRow = record
            .deserialize(Some(&headers))
            .map_err(|e| csv_error(&e, line))?;
        let rate = parse_row(settings, &row).map_err(|(column, message)| CsvImportError {
            line,
            column: Some(column),
            message,
        })?;
        rates.push(rate);
        lines.push(line);
    }
    Deck::new(settings, rates).map_err(|e| deck_error(&e, &lines))
}

/// Writes `deck` as CSV (module docs): header, then every row in the deck's order.
pub fn export_csv<W: io::Write>(deck: &Deck, output: W) -> Result<(), ::csv::Error> {
    let mut writer = ::csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(output);
    writer.write_record(HEADER)?;
    for r in deck.rates() {
        writer.serialize(CsvRow {
            prefix: r.prefix.clone(),
            description: r.description.clone(),
            rate_per_min: r.rate_per_min.to_string(),
            connect_fee: r.connect_fee.to_string(),
            first_interval: r.first_interval_s.to_string(),
            increment: r.increment_s.to_string(),
            free_seconds: r.free_s.to_string(),
            minimum: r.minimum.to_string(),
            bands: r.band.map(|b| b.to_string()).unwrap_or_default(),
        })?;
    }
    writer.flush()?;
    Ok(())
}

/// Digits of a prefix as written in a deck: a leading `+` and separators dropped.
pub fn normalise_prefix(text: &str) -> Result<String, String> {
    let mut digits = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if digits.is_empty() => {}
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(format!("{text:?}: {c:?} is not a digit")),
        }
    }
    if digits.is_empty() {
        return Err("no digits".to_owned());
    }
    if digits.len() > MAX_PREFIX_DIGITS {
        return Err(format!(
            "{} digits; at most {MAX_PREFIX_DIGITS}",
            digits.len()
        ));
    }
    Ok(digits)
}

fn parse_row(settings: DeckSettings, row: &CsvRow) -> Result<Rate, (&'static str, String)> {
    let prefix = normalise_prefix(&row.prefix).map_err(|e| ("prefix", e))?;
    let money = |column: &'static str, text: &str, required: bool| {
        if text.is_empty() && !required {
            return Ok(Money::ZERO);
        }
        let m = Money::parse(text).map_err(|e| (column, format!("{text:?}: {e}")))?;
        if m < Money::ZERO {
            return Err((column, format!("{text:?} is negative")));
        }
        Ok(m)
    };
    let seconds = |column: &'static str, text: &str, required: bool| {
        if text.is_empty() && !required {
            return Ok(0);
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err((column, format!("{text:?} is not a whole number of seconds")));
        }
        text.parse::<u32>()
            .map_err(|_| (column, format!("{text:?} is too large")))
    };
    let rate_per_min = money("rate_per_min", &row.rate_per_min, true)?;
    let connect_fee = money("connect_fee", &row.connect_fee, false)?;
    let first_interval_s = seconds("first_interval", &row.first_interval, true)?;
    let increment_s = seconds("increment", &row.increment, true)?;
    if increment_s == 0 {
        return Err(("increment", "must be at least 1 second".to_owned()));
    }
    let free_s = seconds("free_seconds", &row.free_seconds, false)?;
    let minimum = money("minimum", &row.minimum, false)?;
    for (column, m) in [("connect_fee", connect_fee), ("minimum", minimum)] {
        if !m.fits_decimals(settings.decimals) {
            return Err((
                column,
                format!(
                    "{m} has more decimals than the deck charges in ({})",
                    settings.decimals
                ),
            ));
        }
    }
    let band = if row.bands.is_empty() {
        None
    } else {
        Some(parse_band(&row.bands).map_err(|e| ("bands", e))?)
    };
    Ok(Rate {
        prefix,
        description: row.description.clone(),
        rate_per_min,
        connect_fee,
        first_interval_s,
        increment_s,
        free_s,
        minimum,
        band,
    })
}

fn csv_error(e: &::csv::Error, fallback_line: u64) -> CsvImportError {
    let line = e.position().map_or(fallback_line, ::csv::Position::line);
    let message = match e.kind() {
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields; expected {expected_len}")
        }
        ::csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => e.to_string(),
    };
    CsvImportError {
        line,
        column: None,
        message,
    }
}

fn deck_error(e: &DeckError, lines: &[u64]) -> CsvImportError {
    let line_of = |row: usize| lines.get(row).copied().unwrap_or(1);
    let mut message = e.message.clone();
    if let Some(other) = e.conflicts_with {
        message.push_str(&format!(" (line {})", line_of(other)));
    }
    CsvImportError {
        line: e.row.map_or(1, line_of),
        column: Some(e.column),
        message,
    }
}
