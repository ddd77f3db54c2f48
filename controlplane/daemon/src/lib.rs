//! The Trunkline control plane (the part built so far): it attaches to the dataplane's
//! shared-memory rings, places media sessions on cores, recovers the live sessions after a
//! restart, and serves the media-session API over a local Unix socket.
//!
//! Registrar, routing, dialogs, billing and the REST API land here with later issues.

pub mod api;
pub mod billing;
pub mod daemon;
pub mod media;
pub mod proxy;
pub mod registrar;
pub mod routing;
pub mod store;
