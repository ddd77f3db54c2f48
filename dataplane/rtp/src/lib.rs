//! Sans-IO RTP and RTCP for Trunkline's dataplane.
//!
//! What it does:
//! - [`packet`]: checked zero-copy RTP views ([`RtpPacket`]) and a writer ([`RtpBuilder`]).
//! - [`rtcp`]: checked RTCP compound views (SR, RR, SDES, BYE, APP, generic).
//! - [`classify()`]: RTP / RTCP / STUN / DTLS demultiplexing of one port (RFC 7983, RFC 5761).
//! - [`stats`]: RFC 3550 A.1/A.3/A.8 receive statistics (sequence, loss, jitter).
//! - [`dtmf`]: RFC 4733 telephone-event detection, each event reported once.
//! - [`leg`]: one relay leg: symmetric-RTP latching, statistics, DTMF, inactivity, counters.
//!
//! What it does not do: sockets, clocks, threads, SRTP, RTCP generation policy (intervals),
//! header rewriting for the relay (SSRC/seq translation), transcoding. Callers pass bytes
//! and `now: Instant` (read once per batch); nothing here allocates after construction.
#![forbid(unsafe_code)]

pub mod classify;
pub mod dtmf;
pub mod leg;
pub mod packet;
pub mod rtcp;
pub mod stats;

pub use classify::{classify, Kind};
pub use dtmf::{DtmfDetector, DtmfEvent, TelephoneEvent, Tone};
pub use leg::{DropReason, Leg, LegConfig, LegCounters, LegEvent, Verdict};
pub use packet::{BuildError, Extension, RtpBuilder, RtpError, RtpPacket};
pub use rtcp::{RtcpBody, RtcpCompound, RtcpError, RtcpPacket};
pub use stats::{Arrival, ReceiveStats, ReceptionReport};
