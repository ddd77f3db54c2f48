//! Stable-toolchain stand-in for the cargo-fuzz targets in `tests/fuzz` (CI may lack
//! nightly): every RFC 4475 fixture and every saved fuzz regression, then 200k deterministic
//! mutations of them, go through `Message::parse` and, when it parses, every accessor (and
//! the SDP and digest parsers on its body and auth headers), and through stream framing.
//! Nothing may panic.
//!
//! The walk over a parsed message is the fuzz targets' own code (`tests/fuzz/src/lib.rs`,
//! included below), so both check the same invariants.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../../tests/fuzz/src/lib.rs"]
mod fuzz_walk;

/// Mutated inputs per run.
const MUTATIONS: u32 = 200_000;
/// Fixed seed: a failure names its iteration, and rerunning reproduces it.
const SEED: u64 = 0x5eed_7a11_c0de_4475;
/// Cap on a mutant's size, a little over the parser's own `MAX_MESSAGE_BYTES` so the
/// too-large path is exercised too.
const MAX_MUTANT_BYTES: usize = 66 * 1024;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every regular file in `dir`, sorted by name for determinism; empty when `dir` is absent.
fn read_dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a fixture directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect()
}

fn rfc4475() -> Vec<(String, Vec<u8>)> {
    let files: Vec<_> = read_dir_files(&repo_root().join("tests/fixtures/rfc4475"))
        .into_iter()
        .filter(|(name, _)| name.ends_with(".dat"))
        .collect();
    assert!(
        files.len() >= 40,
        "RFC 4475 fixtures missing: {}",
        files.len()
    );
    files
}

fn regressions() -> Vec<(String, Vec<u8>)> {
    read_dir_files(&repo_root().join("tests/fixtures/fuzz-regressions"))
}

/// Runs one input through the datagram walk (which also reaches the SDP and digest parsers
/// through the body and auth headers) and the digest walk on the raw bytes; a panic becomes
/// a failure naming the input. Returns whether the input parsed as a message.
fn check(what: &dyn std::fmt::Display, input: &[u8]) -> bool {
    let walk = || fuzz_walk::parse_message(input) ^ fuzz_walk::digest(input);
    run_walk("parse_message", what, input, walk);
    sip::Message::parse(input).is_ok()
}

fn run_walk(
    walk_name: &str,
    what: &dyn std::fmt::Display,
    input: &[u8],
    walk: impl FnOnce() -> u64,
) {
    if catch_unwind(AssertUnwindSafe(walk)).is_err() {
        panic!(
            "{walk_name} panicked on {what}; input ({} bytes): \"{}\"",
            input.len(),
            input.escape_ascii()
        );
    }
}

#[test]
fn fixtures_and_regressions_never_panic() {
    let mut parsed = 0;
    for (name, bytes) in rfc4475().iter().chain(regressions().iter()) {
        if check(name, bytes) {
            parsed += 1;
        }
    }
    // The valid torture messages (and the tolerated "invalid" ones) must reach the
    // accessor walk, or this test checks only error paths.
    assert!(parsed >= 20, "only {parsed} fixtures parsed");
}

/// xorshift64*: tiny, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-enough in `0..n`; `n` must be non-zero.
    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        (self.next() % n as u64) as usize
    }

    /// A position in `0..=len` (insertion point).
    fn pos(&mut self, len: usize) -> usize {
        self.below(len + 1)
    }
}

/// Bytes the grammar cares about, so inserts hit delimiters more often than chance would.
const INTERESTING: &[u8] = b"\r\n \t:;,=<>\"\\@%/?.[]*0123456789\x00\x7f\xff";

/// Applies one random mutation to `buf`, using `corpus` for splices.
fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, corpus: &[(String, Vec<u8>)]) {
    match rng.below(9) {
        // Flip one bit.
        0 if !buf.is_empty() => {
            let i = rng.below(buf.len());
            buf[i] ^= 1 << rng.below(8);
        }
        // Insert a byte, usually a delimiter.
        1 => {
            let b = if rng.below(4) == 0 {
                rng.next() as u8
            } else {
                INTERESTING[rng.below(INTERESTING.len())]
            };
            let i = rng.pos(buf.len());
            buf.insert(i, b);
        }
        // Overwrite a byte with a delimiter.
        2 if !buf.is_empty() => {
            let i = rng.below(buf.len());
            buf[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        // Delete a short run.
        3 if !buf.is_empty() => {
            let i = rng.below(buf.len());
            let n = 1 + rng.below(8.min(buf.len() - i));
            buf.drain(i..i + n);
        }
        // Truncate.
        4 => {
            let i = rng.pos(buf.len());
            buf.truncate(i);
        }
        // Splice in a piece of another fixture (often a whole header line or more).
        5 | 6 => {
            let (_, donor) = &corpus[rng.below(corpus.len())];
            if donor.is_empty() {
                return;
            }
            let a = rng.below(donor.len());
            let n = 1 + rng.below((donor.len() - a).min(200));
            let piece = &donor[a..a + n];
            let i = rng.pos(buf.len());
            if rng.below(2) == 0 {
                buf.splice(i..i, piece.iter().copied());
            } else {
                let end = (i + n).min(buf.len());
                buf.splice(i..end, piece.iter().copied());
            }
        }
        // Duplicate one line in place (duplicate headers, repeated Vias).
        7 if !buf.is_empty() => {
            let i = rng.below(buf.len());
            let start = buf[..i]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let end = buf[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |p| i + p + 1);
            let line = buf[start..end].to_vec();
            buf.splice(end..end, line);
        }
        // Grow a number: many digits where one stood (length, CSeq, port overflow).
        _ => {
            if let Some(d) = buf.iter().position(|b| b.is_ascii_digit()) {
                let skip = rng.below(buf.len() - d);
                let at = buf[d + skip..]
                    .iter()
                    .position(|b| b.is_ascii_digit())
                    .map_or(d, |p| d + skip + p);
                let n = 1 + rng.below(24);
                let digit = b'0' + rng.below(10) as u8;
                buf.splice(at..at, std::iter::repeat_n(digit, n));
            }
        }
    }
}

#[test]
fn deterministic_mutations_never_panic() {
    let parsed = mutants(|what, buf| check(what, buf));
    // Enough mutants must parse for the accessor walk to see varied messages.
    assert!(
        parsed >= MUTATIONS / 50,
        "only {parsed} of {MUTATIONS} mutants parsed; the mutator is too destructive"
    );
    println!("{parsed} of {MUTATIONS} mutants parsed");
}

/// The same inputs as stream buffers: framing, then each framed message parsed and walked.
#[test]
fn stream_framing_never_panics() {
    for (name, bytes) in rfc4475().iter().chain(regressions().iter()) {
        run_walk("framing", name, bytes, || fuzz_walk::framing(bytes));
    }
    mutants(|what, buf| {
        run_walk("framing", what, buf, || fuzz_walk::framing(buf));
        true
    });
}

/// Feeds [`MUTATIONS`] deterministic mutants of the fixtures to `f`; returns how many it
/// answered `true` for.
fn mutants(mut f: impl FnMut(&dyn std::fmt::Display, &[u8]) -> bool) -> u32 {
    let corpus: Vec<_> = rfc4475().into_iter().chain(regressions()).collect();
    let mut rng = Rng(SEED);
    let mut buf = Vec::with_capacity(MAX_MUTANT_BYTES);
    let mut parsed: u32 = 0;
    for iteration in 0..MUTATIONS {
        let (name, seed) = &corpus[rng.below(corpus.len())];
        buf.clear();
        buf.extend_from_slice(seed);
        // Mostly small edits, which keep messages near-valid and reach deep code; now and
        // then a pile-up.
        let edits = if rng.below(8) == 0 {
            2 + rng.below(14)
        } else {
            1 + rng.below(3)
        };
        for _ in 0..edits {
            mutate(&mut rng, &mut buf, &corpus);
        }
        buf.truncate(MAX_MUTANT_BYTES);
        let what = format!("iteration {iteration} (seed {SEED:#x}, from {name})");
        if f(&what, &buf) {
            parsed += 1;
        }
    }
    parsed
}
