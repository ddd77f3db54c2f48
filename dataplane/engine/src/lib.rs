//! The Trunkline dataplane engine: one pinned thread per core, each owning its io backend
//! ([`dpio`]), its slice of the media port range, a preallocated session table, its counters
//! and a relay-latency histogram, and its own [`shmq`] ring pair to the control plane.
//!
//! What it does: RTP/RTCP relay between the two legs of a media session with symmetric-RTP
//! latching ([`rtp::Leg`]), RFC 3550 statistics, RFC 4733 DTMF events, inactivity timeouts,
//! hold; answers the control plane's commands (create/update/delete/list sessions, session
//! and core statistics). A session's ports name its core and slot: no hash and no lock on
//! the packet path, and no allocation after start-up.
//!
//! What it does not do (yet): SIP transports and the SIP fast path (raw SIP records are
//! refused with `UnknownListener`), AF_XDP/XDP, mixing, SRTP.

pub mod core;
pub mod daemon;
pub mod layout;
pub mod table;

pub use crate::core::{CoreLoop, CoreSetup};
pub use layout::PortLayout;
