//! The rating engine: the issue's worked examples, every increment notation, free seconds,
//! connect fee, minimum charge, each rounding mode, time bands (peak/off-peak, weekends,
//! midnight), longest-prefix match, destination errors, CSV validation naming line and column,
//! the CSV round trip, and `max_duration` agreeing with `rate` (proptest).
#![allow(clippy::unwrap_used)]

use controlplane::billing::{
    export_csv, import_csv, max_duration, parse_band, rate, CallStart, Deck, DeckSettings, Money,
    Rate, RateError, RoundingMode,
};
use proptest::prelude::*;

/// Monday 2026-11-30 00:00:00 UTC.
const MONDAY_UTC: i64 = 1_795_996_800;

/// A call start `day` days after Monday (0 = Monday) at `hh:mm` UTC.
fn at(day: i64, hh: i64, mm: i64) -> CallStart {
    CallStart {
        unix_s: MONDAY_UTC + day * 86_400 + hh * 3600 + mm * 60,
        utc_offset_s: 0,
    }
}

fn money(text: &str) -> Money {
    Money::parse(text).unwrap()
}

/// A row with no fees, no free seconds, no minimum and no band.
fn row(prefix: &str, per_min: &str, first: u32, inc: u32) -> Rate {
    Rate {
        prefix: prefix.to_owned(),
        description: format!("dest {prefix}"),
        rate_per_min: money(per_min),
        connect_fee: Money::ZERO,
        first_interval_s: first,
        increment_s: inc,
        free_s: 0,
        minimum: Money::ZERO,
        band: None,
    }
}

fn deck(rows: Vec<Rate>) -> Deck {
    deck_with(DeckSettings::default(), rows)
}

fn deck_with(settings: DeckSettings, rows: Vec<Rate>) -> Deck {
    Deck::new(settings, rows).unwrap()
}

fn settings(decimals: u8, rounding: RoundingMode) -> DeckSettings {
    DeckSettings { decimals, rounding }
}

/// (billed seconds, cost) of `billsec` to `dest` on Monday noon.
fn bill(d: &Deck, dest: &str, billsec: u32) -> (u64, Money) {
    let c = rate(d, dest, at(0, 12, 0), billsec).unwrap();
    (c.billed_s, c.cost)
}

#[test]
fn monday_constant_is_a_monday() {
    assert_eq!(at(0, 0, 0).local_day_and_second(), (0, 0));
    assert_eq!(at(5, 13, 30).local_day_and_second(), (5, 13 * 3600 + 1800));
    // Before the epoch too.
    let before = CallStart {
        unix_s: -1,
        utc_offset_s: 0,
    };
    assert_eq!(before.local_day_and_second(), (2, 86_399)); // Wed 1969-12-31 23:59:59
}

// ---------------------------------------------------------------------------------------
// Increment notation: the issue's worked examples, then each notation

#[test]
fn worked_examples_from_the_issue() {
    // 1 m 2 s at 60/60 bills 2 minutes.
    let d = deck(vec![row("1", "1.00", 60, 60)]);
    assert_eq!(bill(&d, "1555", 62), (120, money("2.00")));
    // 12 s at 30/6 bills 30 s; 39 s at 30/6 bills 42 s.
    let d = deck(vec![row("1", "1.00", 30, 6)]);
    assert_eq!(bill(&d, "1555", 12), (30, money("0.50")));
    assert_eq!(bill(&d, "1555", 39), (42, money("0.70")));
}

#[test]
fn one_one_bills_every_second() {
    let d = deck(vec![row("1", "0.60", 1, 1)]);
    for (billsec, billed, cost) in [
        (1, 1, "0.01"),
        (59, 59, "0.59"),
        (61, 61, "0.61"),
        (3600, 3600, "36"),
    ] {
        assert_eq!(bill(&d, "1", billsec), (billed, money(cost)), "{billsec} s");
    }
}

#[test]
fn sixty_sixty_bills_whole_minutes() {
    let d = deck(vec![row("1", "0.60", 60, 60)]);
    for (billsec, billed) in [
        (1, 60),
        (59, 60),
        (60, 60),
        (61, 120),
        (120, 120),
        (121, 180),
    ] {
        assert_eq!(bill(&d, "1", billsec).0, billed, "{billsec} s");
    }
    assert_eq!(bill(&d, "1", 121).1, money("1.80"));
}

#[test]
fn thirty_six_bills_thirty_then_six_second_steps() {
    let d = deck(vec![row("1", "0.60", 30, 6)]);
    for (billsec, billed) in [
        (1, 30),
        (30, 30),
        (31, 36),
        (36, 36),
        (37, 42),
        (60, 60),
        (61, 66),
    ] {
        assert_eq!(bill(&d, "1", billsec).0, billed, "{billsec} s");
    }
    assert_eq!(bill(&d, "1", 37).1, money("0.42"));
}

#[test]
fn unanswered_call_costs_nothing() {
    let mut r = row("1", "0.60", 60, 60);
    r.connect_fee = money("0.05");
    r.minimum = money("0.10");
    let d = deck(vec![r]);
    let c = rate(&d, "1", at(0, 12, 0), 0).unwrap();
    assert_eq!((c.billed_s, c.cost), (0, Money::ZERO));
}

// ---------------------------------------------------------------------------------------
// Free seconds, connect fee, minimum

#[test]
fn free_seconds_come_off_first() {
    let mut r = row("1", "0.60", 60, 60);
    r.free_s = 10;
    let d = deck(vec![r]);
    let c = rate(&d, "1", at(0, 12, 0), 5).unwrap();
    assert_eq!((c.free_s, c.billed_s, c.cost), (5, 0, Money::ZERO));
    let c = rate(&d, "1", at(0, 12, 0), 70).unwrap();
    assert_eq!((c.free_s, c.billed_s, c.cost), (10, 60, money("0.60")));
    assert_eq!(bill(&d, "1", 71), (120, money("1.20")));
}

#[test]
fn connect_fee_is_added_once_per_answered_call() {
    let mut r = row("1", "0.60", 1, 1);
    r.connect_fee = money("0.05");
    let d = deck(vec![r]);
    let c = rate(&d, "1", at(0, 12, 0), 30).unwrap();
    assert_eq!(c.cost, money("0.35"));
    assert_eq!(c.breakdown.connect_fee, money("0.05"));
    assert_eq!(c.breakdown.duration, money("0.30"));
    assert_eq!(c.breakdown.minimum_topup, Money::ZERO);
}

#[test]
fn minimum_charge_tops_up_short_calls() {
    let mut r = row("1", "0.60", 1, 1);
    r.minimum = money("0.10");
    r.free_s = 3;
    let d = deck(vec![r]);
    // 8 s - 3 free = 5 s = 0.05, topped up to 0.10.
    let c = rate(&d, "1", at(0, 12, 0), 8).unwrap();
    assert_eq!(c.cost, money("0.10"));
    assert_eq!(c.breakdown.duration, money("0.05"));
    assert_eq!(c.breakdown.minimum_topup, money("0.05"));
    // Inside the free seconds: still the minimum (free seconds waive duration only).
    assert_eq!(bill(&d, "1", 2), (0, money("0.10")));
    // Above the minimum: untouched.
    let c = rate(&d, "1", at(0, 12, 0), 63).unwrap();
    assert_eq!(
        (c.cost, c.breakdown.minimum_topup),
        (money("0.60"), Money::ZERO)
    );
}

// ---------------------------------------------------------------------------------------
// Money and rounding

#[test]
fn sub_cent_rates_are_exact() {
    // 0.0123/min, 1/1, charged in micro-units: 1 s = 0.000205 exactly.
    let d = deck_with(
        settings(6, RoundingMode::Up),
        vec![row("1", "0.0123", 1, 1)],
    );
    assert_eq!(bill(&d, "1", 1).1, money("0.000205"));
    assert_eq!(bill(&d, "1", 60).1, money("0.0123"));
    assert_eq!(bill(&d, "1", 7).1, money("0.001435"));
}

#[test]
fn each_rounding_mode() {
    // 0.30/min at 1/1: n seconds cost n × 0.005 exactly; charged in cents.
    let cases = [
        // seconds, exact, up, down, half-up, half-even
        (1, ["0.01", "0", "0.01", "0"]),       // 0.005
        (3, ["0.02", "0.01", "0.02", "0.02"]), // 0.015
        (5, ["0.03", "0.02", "0.03", "0.02"]), // 0.025
        (4, ["0.02", "0.02", "0.02", "0.02"]), // 0.020
    ];
    let modes = [
        RoundingMode::Up,
        RoundingMode::Down,
        RoundingMode::HalfUp,
        RoundingMode::HalfEven,
    ];
    for (billsec, want) in cases {
        for (mode, w) in modes.into_iter().zip(want) {
            let d = deck_with(settings(2, mode), vec![row("1", "0.30", 1, 1)]);
            assert_eq!(bill(&d, "1", billsec).1, money(w), "{billsec} s {mode:?}");
        }
    }
    // Not a tie: 0.0123/min for 1 s = 0.000205 → cents.
    for (mode, w) in modes.into_iter().zip(["0.01", "0", "0", "0"]) {
        let d = deck_with(settings(2, mode), vec![row("1", "0.0123", 1, 1)]);
        assert_eq!(bill(&d, "1", 1).1, money(w), "{mode:?}");
    }
    // Whole units (0 decimals): 90 s at 1.00/min = 1.5.
    for (mode, w) in modes.into_iter().zip(["2", "1", "2", "2"]) {
        let d = deck_with(settings(0, mode), vec![row("1", "1", 1, 1)]);
        assert_eq!(bill(&d, "1", 90).1, money(w), "{mode:?}");
    }
}

#[test]
fn rounding_is_booked_on_the_duration_and_parts_add_up() {
    let mut r = row("1", "0.0123", 1, 1);
    r.connect_fee = money("0.05");
    let d = deck_with(settings(2, RoundingMode::Up), vec![r]);
    let c = rate(&d, "1", at(0, 12, 0), 7).unwrap(); // 0.05 + 0.001435 → 0.06
    assert_eq!(c.cost, money("0.06"));
    assert_eq!(c.breakdown.connect_fee, money("0.05"));
    assert_eq!(c.breakdown.duration, money("0.01"));
}

// ---------------------------------------------------------------------------------------
// Time bands

fn banded(prefix: &str, per_min: &str, band: &str) -> Rate {
    let mut r = row(prefix, per_min, 1, 1);
    r.band = Some(parse_band(band).unwrap());
    r
}

/// Cost of one minute to `dest` at `start` (per-minute rate as cost at 1/1).
fn per_min(d: &Deck, dest: &str, start: CallStart) -> Money {
    rate(d, dest, start, 60).unwrap().cost
}

#[test]
fn peak_and_off_peak() {
    let d = deck(vec![
        banded("44", "0.10", "mon-fri 08:00-18:00"),
        row("44", "0.02", 1, 1),
    ]);
    assert_eq!(per_min(&d, "44", at(0, 9, 0)), money("0.10")); // Monday 09:00
    assert_eq!(per_min(&d, "44", at(0, 8, 0)), money("0.10")); // start is inclusive
    assert_eq!(per_min(&d, "44", at(0, 17, 59)), money("0.10"));
    assert_eq!(per_min(&d, "44", at(0, 18, 0)), money("0.02")); // end is exclusive
    assert_eq!(per_min(&d, "44", at(0, 7, 59)), money("0.02"));
    assert_eq!(per_min(&d, "44", at(4, 12, 0)), money("0.10")); // Friday
    assert_eq!(per_min(&d, "44", at(5, 12, 0)), money("0.02")); // Saturday
    assert_eq!(per_min(&d, "44", at(6, 12, 0)), money("0.02")); // Sunday
}

#[test]
fn the_band_at_call_start_rates_the_whole_call() {
    let d = deck(vec![
        banded("44", "0.10", "mon-fri 08:00-18:00"),
        row("44", "0.02", 1, 1),
    ]);
    // Starts 17:59, runs an hour: all at peak.
    let c = rate(&d, "44", at(0, 17, 59), 3600).unwrap();
    assert_eq!(c.cost, money("6"));
    assert!(c.rate.band.is_some());
}

#[test]
fn weekday_and_weekend_bands() {
    let d = deck(vec![
        banded("33", "0.05", "mon-fri"),
        banded("33", "0.01", "sat,sun"),
    ]);
    assert_eq!(per_min(&d, "33", at(2, 0, 0)), money("0.05"));
    assert_eq!(per_min(&d, "33", at(4, 23, 59)), money("0.05"));
    assert_eq!(per_min(&d, "33", at(5, 0, 0)), money("0.01"));
    assert_eq!(per_min(&d, "33", at(6, 23, 59)), money("0.01"));
    assert_eq!(per_min(&d, "33", at(7, 0, 0)), money("0.05")); // next Monday
}

#[test]
fn band_spanning_midnight_belongs_to_the_day_it_opens() {
    let d = deck(vec![
        banded("49", "0.01", "mon-fri 22:00-06:00"),
        row("49", "0.05", 1, 1),
    ]);
    assert_eq!(per_min(&d, "49", at(0, 22, 0)), money("0.01")); // Mon 22:00
    assert_eq!(per_min(&d, "49", at(1, 3, 0)), money("0.01")); // Tue 03:00 (Monday's night)
    assert_eq!(per_min(&d, "49", at(4, 23, 0)), money("0.01")); // Fri 23:00
    assert_eq!(per_min(&d, "49", at(5, 5, 59)), money("0.01")); // Sat 05:59 (Friday's night)
    assert_eq!(per_min(&d, "49", at(5, 6, 0)), money("0.05")); // Sat 06:00
    assert_eq!(per_min(&d, "49", at(5, 23, 0)), money("0.05")); // Sat night: not in the set
    assert_eq!(per_min(&d, "49", at(0, 3, 0)), money("0.05")); // Mon 03:00: Sunday's night
    assert_eq!(per_min(&d, "49", at(2, 12, 0)), money("0.05")); // Wed noon
}

#[test]
fn bands_use_the_given_utc_offset() {
    let d = deck(vec![
        banded("44", "0.10", "mon-fri 08:00-18:00"),
        row("44", "0.02", 1, 1),
    ]);
    // 07:30 UTC is 08:30 at UTC+1: peak.
    let cet = CallStart {
        unix_s: at(0, 7, 30).unix_s,
        utc_offset_s: 3600,
    };
    assert_eq!(per_min(&d, "44", cet), money("0.10"));
    assert_eq!(per_min(&d, "44", at(0, 7, 30)), money("0.02"));
    // Saturday 02:00 UTC is Friday 21:00 at UTC-5: a weekday, but off-peak.
    let est = CallStart {
        unix_s: at(5, 2, 0).unix_s,
        utc_offset_s: -5 * 3600,
    };
    assert_eq!(est.local_day_and_second(), (4, 21 * 3600));
    // Monday 02:00 UTC is Sunday 21:00 at UTC-5; Monday 15:00 UTC is 10:00 there: peak.
    let est_peak = CallStart {
        unix_s: at(0, 15, 0).unix_s,
        utc_offset_s: -5 * 3600,
    };
    assert_eq!(per_min(&d, "44", est_peak), money("0.10"));
}

// ---------------------------------------------------------------------------------------
// Longest prefix and destinations

#[test]
fn longest_prefix_wins() {
    let d = deck(vec![
        row("44", "0.02", 1, 1),
        row("4420", "0.01", 1, 1),
        row("442071", "0.005", 1, 1),
        row("4", "0.50", 1, 1),
    ]);
    let prefix = |dest: &str| {
        rate(&d, dest, at(0, 12, 0), 60)
            .unwrap()
            .rate
            .prefix
            .clone()
    };
    assert_eq!(prefix("+44 20 7123 4567"), "442071");
    assert_eq!(prefix("442081234567"), "4420");
    assert_eq!(prefix("(+44) 161-123.4567"), "44");
    assert_eq!(prefix("4420"), "4420"); // exactly the prefix
    assert_eq!(prefix("44207"), "4420"); // shorter than the longer prefix
    assert_eq!(prefix("491234"), "4");
}

#[test]
fn longer_prefix_without_a_rate_in_force_falls_back() {
    let d = deck(vec![
        row("44", "0.02", 1, 1),
        banded("4420", "0.10", "mon-fri 08:00-18:00"),
    ]);
    let c = rate(&d, "442071234567", at(0, 9, 0), 60).unwrap();
    assert_eq!(c.rate.prefix, "4420");
    let c = rate(&d, "442071234567", at(0, 20, 0), 60).unwrap();
    assert_eq!(c.rate.prefix, "44");
}

#[test]
fn destination_errors() {
    let d = deck(vec![
        row("44", "0.02", 1, 1),
        banded("33", "0.10", "mon-fri 08:00-18:00"),
    ]);
    let err = |dest: &str, start| rate(&d, dest, start, 60).unwrap_err();
    assert_eq!(
        err("15551234567", at(0, 12, 0)),
        RateError::UnknownDestination
    );
    assert_eq!(err("4", at(0, 12, 0)), RateError::UnknownDestination);
    assert_eq!(err("44abc", at(0, 12, 0)), RateError::InvalidDestination);
    assert_eq!(err("", at(0, 12, 0)), RateError::InvalidDestination);
    assert_eq!(err("+", at(0, 12, 0)), RateError::InvalidDestination);
    assert_eq!(err("44+1", at(0, 12, 0)), RateError::InvalidDestination);
    assert_eq!(err("33123", at(5, 12, 0)), RateError::NoRateInForce);
    assert_eq!(
        max_duration(&d, "1555", at(0, 12, 0), money("1")).unwrap_err(),
        RateError::UnknownDestination
    );
}

#[test]
fn deck_validation() {
    let bad = |r: Rate| Deck::new(DeckSettings::default(), vec![row("1", "1", 1, 1), r]);
    let e = bad(row("12a", "1", 1, 1)).unwrap_err();
    assert_eq!((e.row, e.column), (Some(1), "prefix"));
    let e = bad(row("2", "1", 1, 0)).unwrap_err();
    assert_eq!((e.row, e.column), (Some(1), "increment"));
    let mut r = row("2", "1", 1, 1);
    r.connect_fee = money("0.001");
    assert_eq!(bad(r).unwrap_err().column, "connect_fee");
    let mut r = row("2", "1", 1, 1);
    r.rate_per_min = money("-1");
    assert_eq!(bad(r).unwrap_err().column, "rate_per_min");
    let e = bad(row("1", "2", 1, 1)).unwrap_err();
    assert_eq!(
        (e.row, e.column, e.conflicts_with),
        (Some(1), "bands", Some(0))
    );
}

// ---------------------------------------------------------------------------------------
// CSV

const HEADER: &str =
    "prefix,description,rate_per_min,connect_fee,first_interval,increment,free_seconds,minimum,bands";

fn import(body: &str) -> Result<Deck, String> {
    let text = format!("{HEADER}\n{body}");
    import_csv(DeckSettings::default(), text.as_bytes()).map_err(|e| e.to_string())
}

#[test]
fn csv_import_reads_every_field_exactly() {
    let d = import(
        "+44 20,London,0.0123,0.05,30,6,5,0.10,mon-fri 08:00-18:00\n\
         4420,London off-peak,0.008,,60,60,,,\n",
    )
    .unwrap();
    assert_eq!(d.rates().len(), 2);
    let peak = &d.rates()[0];
    assert_eq!(peak.prefix, "4420");
    assert_eq!(peak.description, "London");
    assert_eq!(peak.rate_per_min.micros(), 12_300);
    assert_eq!(peak.connect_fee.micros(), 50_000);
    assert_eq!(
        (peak.first_interval_s, peak.increment_s, peak.free_s),
        (30, 6, 5)
    );
    assert_eq!(peak.minimum.micros(), 100_000);
    assert_eq!(peak.band, Some(parse_band("mon-fri 08:00-18:00").unwrap()));
    let off = &d.rates()[1];
    assert_eq!(
        (off.connect_fee, off.free_s, off.minimum, off.band),
        (Money::ZERO, 0, Money::ZERO, None)
    );
}

#[test]
fn csv_errors_name_line_and_column() {
    let cases = [
        ("1,a,0.0x,0,60,60,0,0,\n", "line 2, column rate_per_min: \"0.0x\": not a plain decimal number (digits and one '.')"),
        ("1,a,1,0,60,60,0,0,\n1,b,0.0000001,0,60,60,0,0,\n", "line 3, column rate_per_min: \"0.0000001\": more than 6 decimals"),
        ("1,a,-1,0,60,60,0,0,\n", "line 2, column rate_per_min: \"-1\" is negative"),
        ("1,a,,0,60,60,0,0,\n", "line 2, column rate_per_min: \"\": empty amount"),
        ("1,a,1,0.001,60,60,0,0,\n", "line 2, column connect_fee: 0.001 has more decimals than the deck charges in (2)"),
        ("1,a,1,0,sixty,60,0,0,\n", "line 2, column first_interval: \"sixty\" is not a whole number of seconds"),
        ("1,a,1,0,60,0,0,0,\n", "line 2, column increment: must be at least 1 second"),
        ("1,a,1,0,60,60,-3,0,\n", "line 2, column free_seconds: \"-3\" is not a whole number of seconds"),
        ("1,a,1,0,60,60,0,x,\n", "line 2, column minimum: \"x\": not a plain decimal number (digits and one '.')"),
        ("1x,a,1,0,60,60,0,0,\n", "line 2, column prefix: \"1x\": 'x' is not a digit"),
        ("1,a,1,0,60,60,0,0,mon-fry\n", "line 2, column bands: \"fry\" is not a day (mon, tue, … sun)"),
        ("1,a,1,0,60,60,0,0,mon 25:00-26:00\n", "line 2, column bands: \"25:00\" is not a time of day (00:00 to 24:00)"),
        ("1,a,1,0,60,60,0,0,mon 08:00-08:00\n", "line 2, column bands: empty time window (start equals end)"),
        ("1,a,1,0,60,60,0,0\n", "line 2: 8 fields; expected 9"),
        (
            "1,a,1,0,60,60,0,0,mon-fri\n2,b,1,0,60,60,0,0,\n1,c,2,0,60,60,0,0,mon-fri\n",
            "line 4, column bands: prefix 1: duplicate prefix and band (line 2)",
        ),
        (
            "1,a,1,0,60,60,0,0,mon-fri 08:00-18:00\n1,c,2,0,60,60,0,0,fri 17:00-19:00\n",
            "line 3, column bands: prefix 1: band overlaps another of the same prefix (line 2)",
        ),
        (
            "+1,a,1,0,60,60,0,0,\n1,c,2,0,60,60,0,0,\n",
            "line 3, column bands: prefix 1: duplicate prefix and band (line 2)",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(import(body).unwrap_err(), want, "for {body:?}");
    }
}

#[test]
fn csv_header_must_match() {
    let e = import_csv(DeckSettings::default(), &b"prefix,desc,rate\n1,a,1\n"[..]).unwrap_err();
    assert_eq!((e.line, e.column), (1, Some("description")));
    let e = import_csv(DeckSettings::default(), &b""[..]).unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.to_string().starts_with("line 1: missing header"), "{e}");
}

#[test]
fn csv_header_only_is_an_empty_deck() {
    let d = import("").unwrap();
    assert!(d.rates().is_empty());
    assert_eq!(
        rate(&d, "1", at(0, 0, 0), 1).unwrap_err(),
        RateError::UnknownDestination
    );
}

#[test]
fn csv_round_trip_is_exact() {
    let input = "\
442071,\"London, central\",0.005,0,1,1,0,0,
44,UK,0.02,0.05,60,60,10,0.10,
4420,London peak,0.0123,0,30,6,0,0,mon-fri 08:00-18:00
4420,London night,0.000001,0,30,6,0,0,fri-mon 22:00-06:00
4420,London early,0.004,0,30,6,0,0,wed 06:00-08:00
4420,London,0.008,0,30,6,0,0,
33,\"France \"\"mobile\"\"\",1.234567,1.5,0,1,0,2,sat-sun
";
    let d1 = import(input).unwrap();
    let mut out1 = Vec::new();
    export_csv(&d1, &mut out1).unwrap();
    let text1 = String::from_utf8(out1).unwrap();
    let d2 = import_csv(DeckSettings::default(), text1.as_bytes()).unwrap();
    assert_eq!(d1.rates(), d2.rates());
    let mut out2 = Vec::new();
    export_csv(&d2, &mut out2).unwrap();
    assert_eq!(text1, String::from_utf8(out2).unwrap());
    // Canonical: sorted, normalised, shortest decimals, banded rows before the all-times row.
    let lines: Vec<&str> = text1.lines().collect();
    assert_eq!(lines[0], HEADER);
    assert_eq!(
        lines[1],
        "33,\"France \"\"mobile\"\"\",1.234567,1.5,0,1,0,2,sat-sun"
    );
    assert_eq!(
        lines[5],
        "4420,London night,0.000001,0,30,6,0,0,\"mon,fri-sun 22:00-06:00\""
    );
    assert_eq!(lines[6], "4420,London,0.008,0,30,6,0,0,");
    assert_eq!(lines.len(), 8);
}

// ---------------------------------------------------------------------------------------
// max_duration against rate

#[test]
fn max_duration_worked_example() {
    let mut r = row("1", "0.60", 60, 60);
    r.connect_fee = money("0.05");
    let d = deck(vec![r]);
    let start = at(0, 12, 0);
    // 0.05 + 0.60 per started minute: 1.00 pays for one minute (0.65), not two (1.25).
    assert_eq!(max_duration(&d, "1", start, money("1.00")).unwrap(), 60);
    assert_eq!(max_duration(&d, "1", start, money("1.25")).unwrap(), 120);
    assert_eq!(max_duration(&d, "1", start, money("0.64")).unwrap(), 0);
    assert_eq!(max_duration(&d, "1", start, money("-1")).unwrap(), 0);
    // A free rate: any duration.
    let d = deck(vec![row("1", "0", 60, 60)]);
    assert_eq!(max_duration(&d, "1", start, Money::ZERO).unwrap(), u32::MAX);
}

fn arb_rate() -> impl Strategy<Value = (Rate, DeckSettings)> {
    (
        0i64..5_000_000, // rate per minute, micro-units: up to 5.00
        0i64..200,       // connect fee in the deck's units
        0u32..120,       // first interval
        1u32..=60,       // increment
        0u32..30,        // free seconds
        0i64..300,       // minimum in the deck's units
        0u8..=6,         // decimals
        0usize..4,       // rounding mode
    )
        .prop_map(
            |(per_min, connect, first, inc, free, minimum, decimals, mode)| {
                let unit = 10i64.pow(6 - u32::from(decimals));
                let rounding = [
                    RoundingMode::Up,
                    RoundingMode::Down,
                    RoundingMode::HalfUp,
                    RoundingMode::HalfEven,
                ][mode];
                let r = Rate {
                    prefix: "1".to_owned(),
                    description: String::new(),
                    rate_per_min: Money::from_micros(per_min),
                    connect_fee: Money::from_micros(connect * unit),
                    first_interval_s: first,
                    increment_s: inc,
                    free_s: free,
                    minimum: Money::from_micros(minimum * unit),
                    band: None,
                };
                (r, DeckSettings { decimals, rounding })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn max_duration_agrees_with_rate((r, s) in arb_rate(), balance_micros in 0i64..200_000_000) {
        let inc = r.increment_s;
        let d = Deck::new(s, vec![r]).unwrap();
        let start = at(2, 10, 0);
        let balance = Money::from_micros(balance_micros);
        let max = max_duration(&d, "1555", start, balance).unwrap();
        let cost = |secs: u32| rate(&d, "1555", start, secs).map(|c| c.cost);
        prop_assert!(cost(max).unwrap() <= balance);
        if max < u32::MAX {
            // One second more, and one increment more, cost more than the balance.
            prop_assert!(cost(max + 1).map_or(true, |c| c > balance));
            if let Some(next) = max.checked_add(inc) {
                prop_assert!(cost(next).map_or(true, |c| c > balance));
            }
        }
    }

    #[test]
    fn charges_are_monotone_and_add_up((r, s) in arb_rate(), secs in 0u32..100_000) {
        let d = Deck::new(s, vec![r.clone()]).unwrap();
        let start = at(2, 10, 0);
        let a = rate(&d, "1", start, secs).unwrap();
        let b = rate(&d, "1", start, secs + 1).unwrap();
        prop_assert!(a.cost <= b.cost);
        let parts = a.breakdown.connect_fee.micros()
            + a.breakdown.duration.micros()
            + a.breakdown.minimum_topup.micros();
        prop_assert_eq!(parts, a.cost.micros());
        prop_assert!(a.cost.fits_decimals(s.decimals));
        // Billed time covers the chargeable time, and at most one increment past the first.
        let chargeable = u64::from(secs.saturating_sub(r.free_s));
        prop_assert!(a.billed_s >= chargeable);
        if chargeable > u64::from(r.first_interval_s) {
            prop_assert!(a.billed_s < chargeable + u64::from(r.increment_s));
        }
    }
}
