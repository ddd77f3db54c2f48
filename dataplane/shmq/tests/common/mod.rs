//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use shmq::{Record, UnlinkGuard, RECORD_SIZE};

/// A region name unique to this process and test, removed when the guard drops.
pub fn unique_name(test: &str) -> UnlinkGuard {
    UnlinkGuard::new(format!("trunkline-test-{}-{}", std::process::id(), test))
}

/// A record whose first 8 bytes hold `n` and the rest a pattern derived from it.
pub fn numbered(n: u64) -> Record {
    let mut r = [0u8; RECORD_SIZE];
    r[..8].copy_from_slice(&n.to_le_bytes());
    for (i, b) in r[8..].iter_mut().enumerate() {
        *b = (n as u8).wrapping_add(i as u8);
    }
    r
}

/// Checks a record made by [`numbered`] and returns its number.
pub fn number_of(r: &Record) -> u64 {
    let n = u64::from_le_bytes(r[..8].try_into().unwrap());
    assert_eq!(r, &numbered(n), "record {n} corrupted");
    n
}

/// xorshift64*: seeded, reproducible.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
