//! A rate deck: rates keyed by destination prefix, each with its charging rules and an
//! optional time band, compiled into a digit trie for longest-prefix match.
//!
//! Lookup walks the trie one digit per level straight from the dialled string (separators
//! skipped on the fly) and remembers the deepest nodes that carry rates in a fixed array: no
//! allocation per lookup. Of a prefix's rates, the banded ones whose band is in force win;
//! its all-times row (empty band) applies otherwise; when neither applies, the next shorter
//! matching prefix is tried.

use std::fmt;

use super::money::{Money, RoundingMode, MAX_DECIMALS};

/// Longest prefix a deck accepts, in digits (E.164 numbers have at most 15).
pub const MAX_PREFIX_DIGITS: usize = 20;
/// Most rates in one deck (the trie indexes them with `u32`).
pub const MAX_RATES: usize = 4_000_000;
/// Most rates (time bands) on one prefix.
pub const MAX_RATES_PER_PREFIX: usize = 32;

const SECONDS_PER_DAY: i64 = 86_400;
const MINUTES_PER_DAY: u16 = 1_440;

/// A set of weekdays, bit 0 = Monday … bit 6 = Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Weekdays(u8);

/// Day names as bands write them, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Weekdays {
    /// Every day.
    pub const ALL: Weekdays = Weekdays(0x7f);

    /// The set with these bits (bit 0 = Monday); `None` if empty or bit 7 is set.
    pub fn from_bits(bits: u8) -> Option<Weekdays> {
        (bits != 0 && bits & 0x80 == 0).then_some(Weekdays(bits))
    }

    /// The bits (bit 0 = Monday).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether `day` (0 = Monday … 6 = Sunday) is in the set.
    #[inline]
    pub fn contains(self, day: u8) -> bool {
        day < 7 && self.0 & (1 << day) != 0
    }
}

/// When a rate applies: the days its band *starts* on and a local time-of-day window in
/// minutes. `start_min > end_min` spans midnight: `mon-fri 22:00-06:00` covers Monday 22:00
/// to Tuesday 06:00 … Friday 22:00 to Saturday 06:00 (the day named is the day the window
/// opens). `end_min` may be 1440 (24:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Band {
    /// Days the window opens on.
    pub days: Weekdays,
    /// Window start, minutes after local midnight (0..1440).
    pub start_min: u16,
    /// Window end (exclusive), minutes after local midnight (0..=1440); `< start_min` wraps.
    pub end_min: u16,
}

impl Band {
    /// A checked band: `start_min < 1440`, `end_min ≤ 1440`, and not empty (`start ≠ end`).
    pub fn new(days: Weekdays, start_min: u16, end_min: u16) -> Result<Band, &'static str> {
        if start_min >= MINUTES_PER_DAY || end_min > MINUTES_PER_DAY {
            return Err("time of day beyond 24:00");
        }
        if start_min == end_min {
            return Err("empty time window (start equals end)");
        }
        Ok(Band {
            days,
            start_min,
            end_min,
        })
    }

    /// Whether the band is in force at local `day` (0 = Monday) and second of day `sod`.
    #[inline]
    pub fn covers(self, day: u8, sod: u32) -> bool {
        let start = u32::from(self.start_min) * 60;
        let end = u32::from(self.end_min) * 60;
        if start < end {
            self.days.contains(day) && sod >= start && sod < end
        } else {
            let yesterday = if day == 0 { 6 } else { day - 1 };
            (self.days.contains(day) && sod >= start)
                || (self.days.contains(yesterday) && sod < end)
        }
    }

    /// The minutes of the week (0 = Monday 00:00) the band covers, as a bitmap.
    fn week_minutes(self) -> WeekBitmap {
        let mut map = WeekBitmap::default();
        let len = if self.start_min < self.end_min {
            self.end_min - self.start_min
        } else {
            MINUTES_PER_DAY - self.start_min + self.end_min
        };
        for day in 0..7u8 {
            if !self.days.contains(day) {
                continue;
            }
            let first =
                usize::from(day) * usize::from(MINUTES_PER_DAY) + usize::from(self.start_min);
            for m in first..first + usize::from(len) {
                map.set(m % WEEK_MINUTES);
            }
        }
        map
    }
}

/// `mon-fri 08:00-18:00`; the time part is left out for a whole day (`sat-sun`).
impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Days as ascending runs: `mon,wed-fri`.
        let mut first = true;
        let mut day = 0u8;
        while day < 7 {
            if !self.days.contains(day) {
                day += 1;
                continue;
            }
            let mut last = day;
            while last + 1 < 7 && self.days.contains(last + 1) {
                last += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(DAY_NAMES[usize::from(day)])?;
            if last > day {
                write!(f, "-{}", DAY_NAMES[usize::from(last)])?;
            }
            day = last + 1;
        }
        if !(self.start_min == 0 && self.end_min == MINUTES_PER_DAY) {
            write!(
                f,
                " {:02}:{:02}-{:02}:{:02}",
                self.start_min / 60,
                self.start_min % 60,
                self.end_min / 60,
                self.end_min % 60
            )?;
        }
        Ok(())
    }
}

const WEEK_MINUTES: usize = 7 * MINUTES_PER_DAY as usize;

/// One bit per minute of the week, to detect overlapping bands at import.
struct WeekBitmap([u64; WEEK_MINUTES.div_ceil(64)]);

impl Default for WeekBitmap {
    fn default() -> Self {
        WeekBitmap([0; WEEK_MINUTES.div_ceil(64)])
    }
}

impl WeekBitmap {
    fn set(&mut self, minute: usize) {
        self.0[minute / 64] |= 1 << (minute % 64);
    }

    fn intersects(&self, other: &WeekBitmap) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }
}

/// One row of a deck: what calls to `prefix` cost (in the band, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    /// Destination prefix, normalised: ASCII digits only, 1..=[`MAX_PREFIX_DIGITS`].
    pub prefix: String,
    /// Free text for invoices and the NOC (`United Kingdom - London`).
    pub description: String,
    /// Price of one minute of billed time.
    pub rate_per_min: Money,
    /// Charged once per answered call.
    pub connect_fee: Money,
    /// Seconds the first interval bills at least (the `30` of 30/6); may be 0.
    pub first_interval_s: u32,
    /// Seconds each further interval adds, rounding up (the `6` of 30/6); ≥ 1.
    pub increment_s: u32,
    /// Seconds of each answered call not charged, taken off before the intervals.
    pub free_s: u32,
    /// Least an answered call costs (after rounding, connect fee included).
    pub minimum: Money,
    /// When this row applies; `None`: whenever no banded row of the prefix does.
    pub band: Option<Band>,
}

/// How a deck's charges are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeckSettings {
    /// Decimals a charge is rounded to (0..=[`MAX_DECIMALS`]); connect fees and minimums must
    /// already fit them.
    pub decimals: u8,
    /// How the last decimal is rounded.
    pub rounding: RoundingMode,
}

impl Default for DeckSettings {
    /// Cents (2 decimals), rounded up.
    fn default() -> Self {
        DeckSettings {
            decimals: 2,
            rounding: RoundingMode::Up,
        }
    }
}

/// Why a set of rates is not a valid deck. `row` indexes the rows as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeckError {
    /// Index of the offending row in the input (None: the settings).
    pub row: Option<usize>,
    /// Field at fault (the CSV column name).
    pub column: &'static str,
    /// What is wrong.
    pub message: String,
    /// The other row of a clash (duplicate or overlapping band), by input index.
    pub conflicts_with: Option<usize>,
}

impl fmt::Display for DeckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "row {row}, column {}: {}", self.column, self.message)?,
            None => write!(f, "{}: {}", self.column, self.message)?,
        }
        match self.conflicts_with {
            Some(other) => write!(f, " (row {other})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DeckError {}

/// Trie node: children by digit (0 = none; the root is never a child), and this prefix's
/// rates as a range of [`Deck::rates`] (banded rows first, the all-times row last).
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    child: [u32; 10],
    first_rate: u32,
    rate_count: u32,
}

/// A validated, compiled rate deck. Immutable: a changed deck is a new `Deck`.
#[derive(Debug, Clone)]
pub struct Deck {
    settings: DeckSettings,
    /// Sorted by prefix (string order), then banded rows by band, then the all-times row.
    rates: Vec<Rate>,
    nodes: Vec<Node>,
}

/// Local calendar position of a call start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStart {
    /// Seconds since the Unix epoch (UTC).
    pub unix_s: i64,
    /// Offset of the deck's local time from UTC, seconds (`+3600` for CET).
    pub utc_offset_s: i32,
}

impl CallStart {
    /// Local weekday (0 = Monday) and second of the day.
    #[inline]
    pub fn local_day_and_second(self) -> (u8, u32) {
        let local = self.unix_s.saturating_add(i64::from(self.utc_offset_s));
        let days = local.div_euclid(SECONDS_PER_DAY);
        let sod = local.rem_euclid(SECONDS_PER_DAY) as u32;
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        let weekday = (days + 3).rem_euclid(7) as u8;
        (weekday, sod)
    }
}

/// Where a destination string stops being a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupMiss {
    /// A character that is neither a digit, a `+` before the digits nor a separator (` -.()`).
    Invalid,
    /// No digits at all.
    Empty,
    /// No prefix of the deck matches.
    Unknown,
    /// Prefixes match but none has a rate in force at that time.
    NoneInForce,
}

impl Deck {
    /// Validates and compiles `rates`. Errors name the row (index into `rates`) and field:
    /// prefix not 1..=20 digits, increment 0, negative money, a connect fee or minimum with
    /// more decimals than the deck charges in, two rows of a prefix whose bands overlap (or
    /// two all-times rows), too many rows.
    pub fn new(settings: DeckSettings, mut rates: Vec<Rate>) -> Result<Deck, DeckError> {
        if settings.decimals > MAX_DECIMALS {
            return Err(DeckError {
                row: None,
                column: "decimals",
                message: format!("at most {MAX_DECIMALS}"),
                conflicts_with: None,
            });
        }
        if rates.len() > MAX_RATES {
            return Err(DeckError {
                row: None,
                column: "rows",
                message: format!("{} rows; at most {MAX_RATES}", rates.len()),
                conflicts_with: None,
            });
        }
        for (i, r) in rates.iter().enumerate() {
            validate_rate(settings, r).map_err(|(column, message)| DeckError {
                row: Some(i),
                column,
                message,
                conflicts_with: None,
            })?;
        }
        // Sort by prefix, banded rows before the all-times row; keep input indexes for errors.
        let mut order: Vec<usize> = (0..rates.len()).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&rates[a], &rates[b]);
            ra.prefix
                .cmp(&rb.prefix)
                .then_with(|| band_key(ra.band).cmp(&band_key(rb.band)))
        });
        check_overlaps(&rates, &order)?;
        let mut slots: Vec<Option<Rate>> = rates.drain(..).map(Some).collect();
        let sorted: Vec<Rate> = order.iter().filter_map(|&i| slots[i].take()).collect();
        assert_eq!(sorted.len(), order.len(), "every row moved exactly once");
        let nodes = build_trie(&sorted)?;
        Ok(Deck {
            settings,
            rates: sorted,
            nodes,
        })
    }

    /// Rounding settings.
    pub fn settings(&self) -> DeckSettings {
        self.settings
    }

    /// Every row, sorted by prefix then band (all-times row last).
    pub fn rates(&self) -> &[Rate] {
        &self.rates
    }

    /// Trie nodes (for sizing reports).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The rate for a call to `destination` starting at `start`: longest matching prefix with
    /// a rate in force at the call start. No allocation.
    #[inline]
    pub(crate) fn lookup(&self, destination: &str, start: CallStart) -> Result<&Rate, LookupMiss> {
        // Nodes with rates along the path, deepest last.
        let mut hits = [0u32; MAX_PREFIX_DIGITS];
        let mut n_hits = 0usize;
        let mut node = 0u32;
        let mut digits = 0usize;
        let mut walking = true;
        for b in destination.bytes() {
            match b {
                b'0'..=b'9' => {
                    digits += 1;
                    if walking {
                        let next = self.nodes[node as usize].child[usize::from(b - b'0')];
                        if next == 0 {
                            walking = false;
                        } else {
                            node = next;
                            if self.nodes[node as usize].rate_count > 0 {
                                hits[n_hits] = node;
                                n_hits += 1;
                            }
                        }
                    }
                }
                // `+` only before the first digit: `+44`, `(+44)`.
                b'+' if digits == 0 => {}
                b' ' | b'-' | b'.' | b'(' | b')' => {}
                _ => return Err(LookupMiss::Invalid),
            }
        }
        if digits == 0 {
            return Err(LookupMiss::Empty);
        }
        if n_hits == 0 {
            return Err(LookupMiss::Unknown);
        }
        let (day, sod) = start.local_day_and_second();
        for &hit in hits[..n_hits].iter().rev() {
            let n = &self.nodes[hit as usize];
            let first = n.first_rate as usize;
            for rate in &self.rates[first..first + n.rate_count as usize] {
                match rate.band {
                    Some(band) if !band.covers(day, sod) => {}
                    _ => return Ok(rate),
                }
            }
        }
        Err(LookupMiss::NoneInForce)
    }
}

/// Sort key: banded rows (by band) before the all-times row.
fn band_key(band: Option<Band>) -> (u8, Option<Band>) {
    match band {
        Some(b) => (0, Some(b)),
        None => (1, None),
    }
}

fn validate_rate(settings: DeckSettings, r: &Rate) -> Result<(), (&'static str, String)> {
    if r.prefix.is_empty() || r.prefix.len() > MAX_PREFIX_DIGITS {
        return Err((
            "prefix",
            format!(
                "{} digits; 1 to {MAX_PREFIX_DIGITS} expected",
                r.prefix.len()
            ),
        ));
    }
    if !r.prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(("prefix", format!("{:?} is not all digits", r.prefix)));
    }
    for (column, m) in [
        ("rate_per_min", r.rate_per_min),
        ("connect_fee", r.connect_fee),
        ("minimum", r.minimum),
    ] {
        if m < Money::ZERO {
            return Err((column, format!("{m} is negative")));
        }
    }
    for (column, m) in [("connect_fee", r.connect_fee), ("minimum", r.minimum)] {
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
    if r.increment_s == 0 {
        return Err(("increment", "must be at least 1 second".to_owned()));
    }
    if let Some(b) = r.band {
        Band::new(b.days, b.start_min, b.end_min).map_err(|e| ("bands", e.to_owned()))?;
    }
    Ok(())
}

/// Rows of one prefix must not be in force at the same minute (two all-times rows count).
fn check_overlaps(rates: &[Rate], order: &[usize]) -> Result<(), DeckError> {
    let mut start = 0;
    while start < order.len() {
        let prefix = &rates[order[start]].prefix;
        let mut end = start + 1;
        while end < order.len() && rates[order[end]].prefix == *prefix {
            end += 1;
        }
        let group = &order[start..end];
        if group.len() > MAX_RATES_PER_PREFIX {
            return Err(DeckError {
                row: Some(group[MAX_RATES_PER_PREFIX]),
                column: "bands",
                message: format!("more than {MAX_RATES_PER_PREFIX} rows for prefix {prefix}"),
                conflicts_with: None,
            });
        }
        if group.len() > 1 {
            let maps: Vec<Option<WeekBitmap>> = group
                .iter()
                .map(|&i| rates[i].band.map(Band::week_minutes))
                .collect();
            for (a, map_a) in maps.iter().enumerate() {
                for (b, map_b) in maps.iter().enumerate().skip(a + 1) {
                    let clash = match (map_a, map_b) {
                        (None, None) => true,
                        (Some(x), Some(y)) => x.intersects(y),
                        _ => false,
                    };
                    if clash {
                        let (first, second) = (group[a].min(group[b]), group[a].max(group[b]));
                        let what = if rates[first].band == rates[second].band {
                            "duplicate prefix and band"
                        } else {
                            "band overlaps another of the same prefix"
                        };
                        return Err(DeckError {
                            row: Some(second),
                            column: "bands",
                            message: format!("prefix {prefix}: {what}"),
                            conflicts_with: Some(first),
                        });
                    }
                }
            }
        }
        start = end;
    }
    Ok(())
}

fn build_trie(sorted: &[Rate]) -> Result<Vec<Node>, DeckError> {
    let mut nodes = vec![Node::default()];
    let mut i = 0;
    while i < sorted.len() {
        let prefix = &sorted[i].prefix;
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].prefix == *prefix {
            j += 1;
        }
        let mut node = 0usize;
        for b in prefix.bytes() {
            let d = usize::from(b - b'0');
            let next = nodes[node].child[d];
            node = if next == 0 {
                let new = nodes.len();
                let new_u32 = u32::try_from(new).map_err(|_| DeckError {
                    row: None,
                    column: "rows",
                    message: "too many trie nodes".to_owned(),
                    conflicts_with: None,
                })?;
                nodes.push(Node::default());
                nodes[node].child[d] = new_u32;
                new
            } else {
                next as usize
            };
        }
        // Bounded by MAX_RATES (checked in `new`), so these fit u32.
        nodes[node].first_rate = i as u32;
        nodes[node].rate_count = (j - i) as u32;
        i = j;
    }
    nodes.shrink_to_fit();
    Ok(nodes)
}

/// Parses a band as CSV writes it: `DAYS [HH:MM-HH:MM]`. DAYS is a comma list of day names
/// (`mon` … `sun`) or ranges (`mon-fri`, `fri-mon` wraps); without a time the whole day.
pub fn parse_band(text: &str) -> Result<Band, String> {
    let text = text.trim();
    let (days_text, time_text) = match text.split_once(' ') {
        Some((d, t)) => (d, Some(t.trim())),
        None => (text, None),
    };
    let mut bits = 0u8;
    for item in days_text.split(',') {
        let (from, to) = match item.split_once('-') {
            Some((a, b)) => (day_index(a)?, day_index(b)?),
            None => {
                let d = day_index(item)?;
                (d, d)
            }
        };
        let mut d = from;
        loop {
            bits |= 1 << d;
            if d == to {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    let days = Weekdays::from_bits(bits).ok_or_else(|| "no days".to_owned())?;
    let (start_min, end_min) = match time_text {
        None => (0, MINUTES_PER_DAY),
        Some(t) => {
            let (a, b) = t
                .split_once('-')
                .ok_or_else(|| format!("{t:?}: expected HH:MM-HH:MM"))?;
            (parse_hhmm(a)?, parse_hhmm(b)?)
        }
    };
    Band::new(days, start_min, end_min).map_err(str::to_owned)
}

fn day_index(name: &str) -> Result<u8, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name.trim()))
        .map(|i| i as u8)
        .ok_or_else(|| format!("{name:?} is not a day (mon, tue, … sun)"))
}

fn parse_hhmm(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time HH:MM");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if h.is_empty() || h.len() > 2 || m.len() != 2 || !all_digits(h) || !all_digits(m) {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("{text:?} is not a time of day (00:00 to 24:00)"));
    }
    Ok(h * 60 + m)
}
