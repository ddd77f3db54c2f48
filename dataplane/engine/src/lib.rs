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
//! SIP over UDP: a core given SIP listeners ([`CoreSetup::sip`]) owns their sockets and runs
//! the SIP fast path ([`sipfast`]): keepalives, OPTIONS and request retransmissions are
//! answered on the core; everything else goes to the control plane as RawSipUp records, and
//! what the control plane sends (RawSipDown) leaves from the listener's socket.
//!
//! What it does not do (yet): SIP over TCP/TLS, in-dialog forwarding on installed dialog
//! routes, AF_XDP/XDP, mixing, SRTP.

pub mod core;
pub mod daemon;
pub mod layout;
pub mod sipfast;
pub mod table;

pub use crate::core::{CoreLoop, CoreSetup};
pub use layout::PortLayout;
