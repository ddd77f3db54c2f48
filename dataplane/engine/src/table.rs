//! A core's preallocated session table: slots indexed by port arithmetic, a free list, and
//! an id index for commands. Nothing here allocates after [`SessionTable::new`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rtp::leg::{ClockRates, LatchPolicy};
use rtp::{Leg, LegConfig};
use shmq::schema::{LegSpec, LegStats, PayloadTypes};

/// An "off" inactivity timeout: far enough never to fire, near enough not to overflow.
const NO_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// One relayed media session: two legs.
#[derive(Debug, Clone)]
pub struct Session {
    /// Control-plane id.
    pub id: u64,
    /// Legs A (caller side) and B (callee side).
    pub legs: [Leg; 2],
    /// Not forwarded toward this leg (hold).
    pub hold: [bool; 2],
    /// RTCP rides on the RTP port of this leg (toward its peer).
    pub rtcp_mux: [bool; 2],
    /// Clock rate used to report jitter in microseconds.
    pub clock_hz: [u32; 2],
    /// When an inactivity timeout was reported for the leg (re-armed by new traffic).
    pub timed_out_at: [Option<Instant>; 2],
    /// Inactivity timeout enabled.
    pub timeout_enabled: [bool; 2],
}

impl Session {
    /// A session installed at `now` from the control plane's leg specs.
    pub fn new(now: Instant, id: u64, specs: &[LegSpec; 2]) -> Session {
        let leg = |s: &LegSpec| Leg::new(now, leg_config(s));
        Session {
            id,
            legs: [leg(&specs[0]), leg(&specs[1])],
            hold: [false; 2],
            rtcp_mux: [specs[0].rtcp_mux, specs[1].rtcp_mux],
            clock_hz: [
                clock_of(&specs[0].payload_types),
                clock_of(&specs[1].payload_types),
            ],
            timed_out_at: [None; 2],
            timeout_enabled: [
                specs[0].inactivity_timeout_ms > 0,
                specs[1].inactivity_timeout_ms > 0,
            ],
        }
    }

    /// The wire statistics of leg `i` (what arrived on it).
    pub fn leg_stats(&self, i: usize) -> LegStats {
        let leg = &self.legs[i];
        let c = leg.counters();
        let s = leg.stats();
        let jitter_us = u64::from(s.jitter()) * 1_000_000 / u64::from(self.clock_hz[i].max(1));
        LegStats {
            packets: c.rtp_packets,
            bytes: c.rtp_bytes,
            lost: s.cumulative_lost().max(0) as u64,
            jitter_us: jitter_us.min(u64::from(u32::MAX)) as u32,
            strangers: c.strangers,
            out_of_order: c.out_of_order,
            duplicates: c.duplicates,
            latched: leg.latched(),
        }
    }
}

fn clock_of(p: &PayloadTypes) -> u32 {
    p.as_slice()
        .iter()
        .map(|t| t.clock_hz)
        .find(|&hz| hz > 0)
        .unwrap_or(8000)
}

/// The leg configuration a spec asks for.
pub fn leg_config(s: &LegSpec) -> LegConfig {
    let mut clock_rates = ClockRates::rfc3551();
    for t in s.payload_types.as_slice() {
        clock_rates.set(t.pt, t.clock_hz);
    }
    LegConfig {
        expected_peer: s.remote,
        policy: LatchPolicy::Symmetric,
        clock_rates,
        dtmf_payload_type: s.telephone_event_pt,
        inactivity_timeout: if s.inactivity_timeout_ms == 0 {
            NO_TIMEOUT
        } else {
            Duration::from_millis(u64::from(s.inactivity_timeout_ms))
        },
        ..LegConfig::default()
    }
}

/// Why a session could not be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// Same id already installed.
    Exists,
    /// No free slot.
    Full,
    /// The requested slot is taken or outside this core.
    SlotUnavailable,
}

/// Fixed-capacity table of sessions.
#[derive(Debug)]
pub struct SessionTable {
    slots: Box<[Option<Session>]>,
    free: Vec<u32>,
    by_id: HashMap<u64, u32>,
}

impl SessionTable {
    /// A table of `capacity` slots, all free.
    pub fn new(capacity: u32) -> SessionTable {
        SessionTable {
            slots: (0..capacity).map(|_| None).collect(),
            // Lowest slots first, so ports are handed out from the bottom of the range.
            free: (0..capacity).rev().collect(),
            by_id: HashMap::with_capacity(capacity as usize),
        }
    }

    /// Slots.
    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Installed sessions.
    pub fn len(&self) -> u32 {
        self.by_id.len() as u32
    }

    /// No session installed.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Installs `s` in the lowest free slot, or in `want` when given; returns the slot.
    pub fn insert(&mut self, s: Session, want: Option<u32>) -> Result<u32, InsertError> {
        if self.by_id.contains_key(&s.id) {
            return Err(InsertError::Exists);
        }
        let slot = match want {
            None => self.free.pop().ok_or(InsertError::Full)?,
            Some(w) => {
                let at = self
                    .free
                    .iter()
                    .position(|&f| f == w)
                    .ok_or(InsertError::SlotUnavailable)?;
                self.free.remove(at)
            }
        };
        self.by_id.insert(s.id, slot);
        self.slots[slot as usize] = Some(s);
        Ok(slot)
    }

    /// Removes the session with `id`; returns it and its slot.
    pub fn remove(&mut self, id: u64) -> Option<(u32, Session)> {
        let slot = self.by_id.remove(&id)?;
        let s = self.slots[slot as usize].take()?;
        self.free.push(slot);
        Some((slot, s))
    }

    /// The slot of `id`.
    pub fn slot_of(&self, id: u64) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    /// The session in `slot` (packet path).
    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Session> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// The session in `slot`.
    pub fn get(&self, slot: u32) -> Option<&Session> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Every occupied slot from `from` on, in slot order.
    pub fn iter_from(&self, from: u32) -> impl Iterator<Item = (u32, &Session)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .skip(from as usize)
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, s)))
    }

    /// Mutable access to every occupied slot (timer scans).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut Session)> + '_ {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|s| (i as u32, s)))
    }
}
