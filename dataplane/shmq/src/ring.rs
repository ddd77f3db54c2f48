//! Single-producer single-consumer rings of fixed-size records in shared memory.
//!
//! Layout of one ring (all offsets from the ring's start, which is 64-byte aligned):
//!
//! | offset | line | written by | fields |
//! |---|---|---|---|
//! | 0 | producer | producer | `tail`, `rejected_pushes`, `rejected_records`, `wakeups_sent` |
//! | 64 | consumer | consumer | `head`, `decode_errors` |
//! | 128 | sleep | consumer sets, producer clears | `consumer_sleeping` |
//! | 192 | slots | producer | `capacity` records of [`RECORD_SIZE`] bytes |
//!
//! `head` and `tail` are free-running u64 positions (never wrap in practice: 2^64 records);
//! a slot index is `position & (capacity - 1)`. The producer writes slots then publishes with
//! a release store of `tail`; the consumer reads `tail` with acquire, copies slots out, then
//! releases them with a release store of `head`. Records are always copied in and out: no
//! reference into shared memory escapes this module.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::region::ClaimGuard;
use crate::sys::Mapping;

/// Bytes in one record (one ring slot).
pub const RECORD_SIZE: usize = 256;

/// One record: the unit pushed and popped.
pub type Record = [u8; RECORD_SIZE];

/// An all-zero record, handy for buffers.
pub const EMPTY_RECORD: Record = [0u8; RECORD_SIZE];

/// Bytes of a ring's control lines before its slots.
pub(crate) const RING_HEADER_SIZE: usize = 192;

#[repr(C, align(64))]
pub(crate) struct ProducerLine {
    pub(crate) tail: AtomicU64,
    pub(crate) rejected_pushes: AtomicU64,
    pub(crate) rejected_records: AtomicU64,
    pub(crate) wakeups_sent: AtomicU64,
}

#[repr(C, align(64))]
pub(crate) struct ConsumerLine {
    pub(crate) head: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
}

#[repr(C, align(64))]
pub(crate) struct SleepLine {
    pub(crate) consumer_sleeping: AtomicU32,
}

/// The control lines at the start of every ring, as they lie in shared memory.
#[repr(C)]
pub(crate) struct RingHeader {
    pub(crate) producer: ProducerLine,
    pub(crate) consumer: ConsumerLine,
    pub(crate) sleep: SleepLine,
}

const _: () = assert!(std::mem::size_of::<RingHeader>() == RING_HEADER_SIZE);
const _: () = assert!(std::mem::offset_of!(RingHeader, producer) == 0);
const _: () = assert!(std::mem::offset_of!(RingHeader, consumer) == 64);
const _: () = assert!(std::mem::offset_of!(RingHeader, sleep) == 128);
const _: () = assert!(RECORD_SIZE % 64 == 0);

/// Bytes one ring of `capacity` records occupies (a multiple of 64).
pub(crate) const fn ring_bytes(capacity: u32) -> usize {
    RING_HEADER_SIZE + capacity as usize * RECORD_SIZE
}

/// Counters of one ring, read from shared memory (both sides see the same values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingCounters {
    /// Records published so far (the tail position).
    pub pushed: u64,
    /// Records consumed so far (the head position).
    pub popped: u64,
    /// Push attempts refused because the ring was full.
    pub rejected_pushes: u64,
    /// Records in those refused attempts.
    pub rejected_records: u64,
    /// Eventfd writes done to wake a sleeping consumer.
    pub wakeups_sent: u64,
    /// Records the consumer could not decode (see [`crate::schema::DecodeError`]).
    pub decode_errors: u64,
}

impl RingCounters {
    /// Records waiting to be consumed.
    pub fn depth(&self) -> u64 {
        self.pushed.wrapping_sub(self.popped)
    }
}

/// The ring was full: nothing of this push was written. Counted in shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFull {
    /// Records the push needed.
    pub wanted: usize,
    /// Free slots at the time.
    pub free: usize,
}

impl std::fmt::Display for RingFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ring full: {} records wanted, {} free",
            self.wanted, self.free
        )
    }
}

impl std::error::Error for RingFull {}

/// A pointer to one ring inside a mapping, kept alive by the `Arc`.
#[derive(Clone)]
pub(crate) struct RingRef {
    map: Arc<Mapping>,
    offset: usize,
    capacity: u32,
}

impl std::fmt::Debug for RingRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingRef")
            .field("offset", &self.offset)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl RingRef {
    /// `offset` must be 64-byte aligned and `offset + ring_bytes(capacity)` within the
    /// mapping; capacity a power of two. Checked here with asserts: the region code computes
    /// these from a validated header, so a failure is our bug.
    pub(crate) fn new(map: Arc<Mapping>, offset: usize, capacity: u32) -> RingRef {
        assert!(capacity.is_power_of_two());
        assert_eq!(offset % 64, 0);
        assert!(offset + ring_bytes(capacity) <= map.len());
        assert_eq!(map.base() as usize % 64, 0);
        RingRef {
            map,
            offset,
            capacity,
        }
    }

    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: `new` checked that the header lies inside the live mapping (kept alive by
        // self.map) at a 64-byte aligned address; RingHeader is made only of atomics, for
        // which every bit pattern (including the zeroes of a fresh file) is valid, and all
        // concurrent access from other threads/processes goes through those atomics.
        unsafe { &*(self.map.base().add(self.offset) as *const RingHeader) }
    }

    fn slot_ptr(&self, position: u64) -> *mut u8 {
        let index = (position & u64::from(self.capacity - 1)) as usize;
        // SAFETY: index < capacity, so the slot lies inside the ring, which `new` checked
        // lies inside the mapping.
        unsafe {
            self.map
                .base()
                .add(self.offset + RING_HEADER_SIZE + index * RECORD_SIZE)
        }
    }

    pub(crate) fn counters(&self) -> RingCounters {
        let h = self.header();
        RingCounters {
            pushed: h.producer.tail.load(Ordering::Acquire),
            popped: h.consumer.head.load(Ordering::Acquire),
            rejected_pushes: h.producer.rejected_pushes.load(Ordering::Relaxed),
            rejected_records: h.producer.rejected_records.load(Ordering::Relaxed),
            wakeups_sent: h.producer.wakeups_sent.load(Ordering::Relaxed),
            decode_errors: h.consumer.decode_errors.load(Ordering::Relaxed),
        }
    }
}

/// What the producer must do after a push: wake the consumer (write its eventfd) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Wake {
    /// The consumer is busy polling; no syscall needed.
    No,
    /// The consumer announced it sleeps; the producer cleared the flag and must signal.
    Needed,
}

/// The producing side of one ring. One per ring per process at a time (SPSC).
#[derive(Debug)]
pub struct Producer {
    ring: RingRef,
    /// Our own tail (we are its only writer).
    tail: u64,
    /// Last head we observed; refreshed only when the ring looks full.
    cached_head: u64,
    _claim: ClaimGuard,
}

impl Producer {
    pub(crate) fn new(ring: RingRef, claim: ClaimGuard) -> Producer {
        let h = ring.header();
        let tail = h.producer.tail.load(Ordering::Acquire);
        let cached_head = h.consumer.head.load(Ordering::Acquire);
        Producer {
            ring,
            tail,
            cached_head,
            _claim: claim,
        }
    }

    /// Ring capacity in records.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    fn free(&mut self, wanted: usize) -> usize {
        let cap = u64::from(self.ring.capacity);
        let mut free = cap - (self.tail - self.cached_head);
        if (free as usize) < wanted {
            self.cached_head = self.ring.header().consumer.head.load(Ordering::Acquire);
            assert!(self.tail >= self.cached_head && self.tail - self.cached_head <= cap);
            free = cap - (self.tail - self.cached_head);
        }
        free as usize
    }

    /// Pushes one record; see [`Producer::push_batch`].
    pub fn push(&mut self, record: &Record) -> Result<Wake, RingFull> {
        self.push_batch(std::slice::from_ref(record))
    }

    /// Pushes all of `records` or none of them (so a fragmented message is never half
    /// queued). Never blocks: a full ring is a [`RingFull`] error, counted in shared memory.
    pub fn push_batch(&mut self, records: &[Record]) -> Result<Wake, RingFull> {
        let n = records.len();
        let free = self.free(n);
        if free < n {
            let h = self.ring.header();
            h.producer.rejected_pushes.fetch_add(1, Ordering::Relaxed);
            h.producer
                .rejected_records
                .fetch_add(n as u64, Ordering::Relaxed);
            return Err(RingFull { wanted: n, free });
        }
        if n == 0 {
            return Ok(Wake::No);
        }
        for (i, record) in records.iter().enumerate() {
            let dst = self.ring.slot_ptr(self.tail + i as u64);
            // SAFETY: slots in [tail, head + capacity) belong to the producer until it
            // publishes them (free() proved they are free); dst has RECORD_SIZE bytes and
            // `record` is a distinct local/heap buffer, so the ranges do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(record.as_ptr(), dst, RECORD_SIZE) };
        }
        self.tail += n as u64;
        self.publish()
    }

    /// Publishes the tail and decides whether the consumer must be woken.
    fn publish(&mut self) -> Result<Wake, RingFull> {
        let h = self.ring.header();
        h.producer.tail.store(self.tail, Ordering::Release);
        // Dekker with the consumer's "set sleeping, fence, re-check tail": either it sees our
        // tail, or we see its flag. Costs one fence per batch, no syscall.
        fence(Ordering::SeqCst);
        if h.sleep.consumer_sleeping.load(Ordering::Relaxed) != 0
            && h.sleep
                .consumer_sleeping
                .compare_exchange(1, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            h.producer.wakeups_sent.fetch_add(1, Ordering::Relaxed);
            return Ok(Wake::Needed);
        }
        Ok(Wake::No)
    }

    /// The last record this ring published (its slot still holds it), or `None` if nothing
    /// was ever pushed. A restarted producer uses it to learn where it left off.
    pub fn last_published(&self) -> Option<Record> {
        if self.tail == 0 {
            return None;
        }
        let mut out = EMPTY_RECORD;
        let src = self.ring.slot_ptr(self.tail - 1);
        // SAFETY: the slot is inside the mapping; the producer is its only writer, and the
        // consumer only reads it, so copying it out races with no write.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), RECORD_SIZE) };
        Some(out)
    }

    /// Counters of this ring.
    pub fn counters(&self) -> RingCounters {
        self.ring.counters()
    }
}

/// The consuming side of one ring. One per ring per process at a time (SPSC).
#[derive(Debug)]
pub struct Consumer {
    ring: RingRef,
    /// Our own head (we are its only writer).
    head: u64,
    /// Last tail we observed; refreshed when we run out.
    cached_tail: u64,
    _claim: ClaimGuard,
}

impl Consumer {
    pub(crate) fn new(ring: RingRef, claim: ClaimGuard) -> Consumer {
        let h = ring.header();
        let head = h.consumer.head.load(Ordering::Acquire);
        let cached_tail = h.producer.tail.load(Ordering::Acquire);
        Consumer {
            ring,
            head,
            cached_tail,
            _claim: claim,
        }
    }

    /// Ring capacity in records.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// Records available now (refreshes the view of the producer's tail).
    pub fn available(&mut self) -> usize {
        self.cached_tail = self.ring.header().producer.tail.load(Ordering::Acquire);
        let avail = self.cached_tail.wrapping_sub(self.head);
        // A tail behind our head or more than a ring ahead can only come from a corrupted
        // region; attach validated it, so this is our bug.
        assert!(
            avail <= u64::from(self.ring.capacity),
            "ring tail/head inconsistent"
        );
        avail as usize
    }

    /// Copies up to `out.len()` waiting records into `out` without consuming them; returns
    /// how many. Follow with [`Consumer::commit`] once they are handled, so a consumer that
    /// dies in between leaves them queued for its successor.
    pub fn peek_batch(&mut self, out: &mut [Record]) -> usize {
        let mut avail = self.cached_tail - self.head;
        if avail < out.len() as u64 {
            avail = self.available() as u64;
        }
        let n = (avail as usize).min(out.len());
        for (i, slot) in out.iter_mut().take(n).enumerate() {
            let src = self.ring.slot_ptr(self.head + i as u64);
            // SAFETY: slots in [head, tail) were published by the producer (acquire load of
            // tail) and it will not rewrite them until we release them through head; the
            // destination is our own buffer.
            unsafe { std::ptr::copy_nonoverlapping(src, slot.as_mut_ptr(), RECORD_SIZE) };
        }
        n
    }

    /// Releases `n` records seen by [`Consumer::peek_batch`] back to the producer.
    pub fn commit(&mut self, n: usize) {
        assert!(
            self.head + n as u64 <= self.cached_tail,
            "commit past what was peeked"
        );
        self.head += n as u64;
        self.ring
            .header()
            .consumer
            .head
            .store(self.head, Ordering::Release);
    }

    /// Peeks and commits in one step; returns how many records were copied into `out`.
    pub fn pop_batch(&mut self, out: &mut [Record]) -> usize {
        let n = self.peek_batch(out);
        if n > 0 {
            self.commit(n);
        }
        n
    }

    /// Pops one record.
    pub fn pop(&mut self) -> Option<Record> {
        let mut out = [EMPTY_RECORD];
        (self.pop_batch(&mut out) == 1).then_some(out[0])
    }

    /// Announces that the consumer is about to sleep. Returns `true` if it may (the flag is
    /// set and the ring is still empty); `false` if records arrived, in which case the flag
    /// is already cleared and the caller should poll again instead of sleeping.
    pub fn prepare_sleep(&mut self) -> bool {
        self.ring
            .header()
            .sleep
            .consumer_sleeping
            .store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.available() > 0 {
            self.ring
                .header()
                .sleep
                .consumer_sleeping
                .store(0, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Ends a sleep begun by [`Consumer::prepare_sleep`] (whether or not it was woken).
    pub fn finish_sleep(&mut self) {
        self.ring
            .header()
            .sleep
            .consumer_sleeping
            .store(0, Ordering::Relaxed);
    }

    /// Counts one undecodable record in shared memory.
    pub fn count_decode_error(&self) {
        self.ring
            .header()
            .consumer
            .decode_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counters of this ring.
    pub fn counters(&self) -> RingCounters {
        self.ring.counters()
    }
}
