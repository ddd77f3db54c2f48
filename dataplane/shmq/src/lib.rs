//! shmq: the only channel between the dataplane and the control plane.
//!
//! What it does: a shared-memory [`Region`] (a file under `/dev/shm` or a memfd) holding a
//! versioned header and, per dataplane core, two single-producer single-consumer rings of
//! fixed 256-byte records — commands (control → data) and events (data → control) — with
//! eventfd wake-ups that cost no syscall while the consumer is busy ([`ring`]); the message
//! schema those records carry ([`schema`]); and a typed API per side ([`Dataplane`] /
//! [`DataEnd`], [`Control`] / [`ControlEnd`]).
//!
//! What it does not do: decide anything, own sessions, run threads or event loops. The
//! dataplane owns the region: a control-plane crash leaves rings and sessions intact and a
//! new control plane re-attaches by name; a restarted dataplane bumps the generation and
//! marks the old region superseded, so a stale control plane notices.
// reason: shared memory needs mmap, raw pointers into the mapping, eventfd and SCM_RIGHTS;
// all of it is confined to `sys`, `ring` and `region`, each block with a SAFETY comment.
#![allow(unsafe_code)]

mod ends;
pub mod region;
pub mod ring;
pub mod schema;
mod sys;

pub use ends::{Control, ControlEnd, DataEnd, Dataplane, SendError, POLL_BATCH};
pub use region::{unlink, Direction, Region, RegionConfig, RegionError, RegionInfo, UnlinkGuard};
pub use ring::{Consumer, Producer, Record, RingCounters, RingFull, Wake, RECORD_SIZE};
pub use schema::{Command, DecodeError, Event, Meta};
