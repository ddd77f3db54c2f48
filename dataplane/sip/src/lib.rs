//! Sans-IO SIP and SDP for Trunkline.
//!
//! What it does: zero-copy parsing of SIP messages over `&[u8]` ([`message`], with typed
//! header views in [`header`] and URIs in [`uri`]), editing without reparse ([`edit`]),
//! stream framing for TCP/TLS ([`framing`]), SDP parsing and rewriting ([`sdp`]), RFC 3261
//! §17 transaction state machines ([`transaction`]) and digest authentication ([`digest`]).
//!
//! What it does not do: sockets, clocks, threads. Callers pass bytes and `now`; the crate
//! returns views, events and bytes to transmit.
#![forbid(unsafe_code)]

mod chars;
pub mod digest;
pub mod edit;
pub mod framing;
pub mod header;
pub mod message;
pub mod sdp;
pub mod transaction;
pub mod uri;

pub use header::{CSeq, Contact, HeaderName, NameAddr, Via};
pub use message::{Header, Message, Method, ParseError, StartLine};
pub use uri::{Host, HostKind, Params, Scheme, Uri, UriError};

/// The methods Trunkline accepts, for `Allow` headers (the dataplane's fast path and the
/// control plane answer with the same list).
pub const ALLOW: &[u8] =
    b"INVITE, ACK, BYE, CANCEL, REGISTER, OPTIONS, PRACK, UPDATE, INFO, MESSAGE";

/// `Server` / `User-Agent` value: product and version.
pub const SERVER: &[u8] = concat!("Trunkline/", env!("CARGO_PKG_VERSION")).as_bytes();
