//! The plane↔plane message schema: fixed-size records of [`RECORD_SIZE`] bytes.
//!
//! Every record starts with a [`RecordHeader`] (24 bytes) followed by a payload of up to
//! [`PAYLOAD_SIZE`] bytes. Integers are little-endian. Each message has a fixed wire layout,
//! written and read field by field in declaration order (the offsets below are const-checked
//! against [`PAYLOAD_SIZE`]). Decoding copies out of the record and checks every field: an
//! unknown type, a wrong length or an out-of-range value is a [`DecodeError`], never a panic.
//!
//! | field | wire | bytes |
//! |---|---|---|
//! | address | [`WireAddr`]: family u8 (0 none, 4, 6), pad u8, port u16, addr [u8; 16] | 20 |
//! | payload types | count u8, 8 × (pt u8, clock_hz u32) | 41 |
//! | optional PT | u8, 0xFF = none | 1 |
//! | bool | u8, 0 or 1 | 1 |
//!
//! IPv6 flow info and scope id are not carried.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::ring::{Record, EMPTY_RECORD, RECORD_SIZE};

/// The header at the start of every record.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Message type ([`msg_type`]).
    pub msg_type: u16,
    /// Reserved flags, 0 today.
    pub flags: u16,
    /// Payload bytes used.
    pub len: u32,
    /// Request id: a command's, echoed by the events that answer it.
    pub seq: u64,
    /// Dataplane core the record concerns.
    pub core: u16,
    /// Fragment index (0 for unfragmented messages).
    pub frag_index: u16,
    /// Fragment count (1 for unfragmented messages).
    pub frag_count: u16,
    /// Zero.
    pub reserved: u16,
}

/// Bytes of [`RecordHeader`].
pub const HEADER_SIZE: usize = 24;
/// Payload bytes available in one record.
pub const PAYLOAD_SIZE: usize = RECORD_SIZE - HEADER_SIZE;

const _: () = assert!(std::mem::size_of::<RecordHeader>() == HEADER_SIZE);
const _: () = assert!(std::mem::offset_of!(RecordHeader, msg_type) == 0);
const _: () = assert!(std::mem::offset_of!(RecordHeader, flags) == 2);
const _: () = assert!(std::mem::offset_of!(RecordHeader, len) == 4);
const _: () = assert!(std::mem::offset_of!(RecordHeader, seq) == 8);
const _: () = assert!(std::mem::offset_of!(RecordHeader, core) == 16);
const _: () = assert!(std::mem::offset_of!(RecordHeader, frag_index) == 18);
const _: () = assert!(std::mem::offset_of!(RecordHeader, frag_count) == 20);
const _: () = assert!(std::mem::offset_of!(RecordHeader, reserved) == 22);

/// The wire form of an optional socket address.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WireAddr {
    /// 0: none, 4: IPv4 (first 4 bytes of `addr`), 6: IPv6.
    pub family: u8,
    /// Zero.
    pub pad: u8,
    /// Port, little-endian.
    pub port: u16,
    /// Address bytes in network order.
    pub addr: [u8; 16],
}
const ADDR_SIZE: usize = 20;
const _: () = assert!(std::mem::size_of::<WireAddr>() == ADDR_SIZE);
const _: () = assert!(std::mem::offset_of!(WireAddr, port) == 2);
const _: () = assert!(std::mem::offset_of!(WireAddr, addr) == 4);

/// Message type codes. Commands have the high bit clear, events set.
pub mod msg_type {
    /// Command: liveness probe.
    pub const PING: u16 = 0x0001;
    /// Command: install a media session.
    pub const CREATE_SESSION: u16 = 0x0002;
    /// Command: change a session's remotes, payload types or hold state.
    pub const UPDATE_SESSION: u16 = 0x0003;
    /// Command: remove a session.
    pub const DELETE_SESSION: u16 = 0x0004;
    /// Command: ask for a session's counters.
    pub const QUERY_STATS: u16 = 0x0005;
    /// Command: list sessions from a cursor.
    pub const LIST_SESSIONS: u16 = 0x0006;
    /// Command: send SIP bytes (fragmented).
    pub const RAW_SIP_DOWN: u16 = 0x0007;
    /// Command: ask for the core's counters and relay latency.
    pub const QUERY_CORE_STATS: u16 = 0x0008;
    /// Event: answer to a ping.
    pub const PONG: u16 = 0x8001;
    /// Event: a session was installed.
    pub const SESSION_CREATED: u16 = 0x8002;
    /// Event: a command failed.
    pub const COMMAND_FAILED: u16 = 0x8003;
    /// Event: a session's counters.
    pub const SESSION_STATS: u16 = 0x8004;
    /// Event: one entry of a session list.
    pub const SESSION_INFO: u16 = 0x8005;
    /// Event: a leg saw no media for its timeout.
    pub const SESSION_TIMEOUT: u16 = 0x8006;
    /// Event: an RFC 4733 telephone event.
    pub const DTMF: u16 = 0x8007;
    /// Event: SIP bytes received (fragmented).
    pub const RAW_SIP_UP: u16 = 0x8008;
    /// Event: a core's counters and relay latency.
    pub const CORE_STATS: u16 = 0x8009;
}

/// Most payload types per leg.
pub const MAX_PAYLOAD_TYPES: usize = 8;
/// Largest SIP message carried (fragmented) in RawSip records.
pub const MAX_SIP_BYTES: usize = 65_535;
/// Fixed part of a RawSip payload: listener, total_len, address, data_len, pad.
const RAW_SIP_FIXED: usize = 4 + 4 + ADDR_SIZE + 2 + 2;
/// SIP bytes per RawSip record.
pub const RAW_SIP_CHUNK: usize = PAYLOAD_SIZE - RAW_SIP_FIXED;
/// Most records one SIP message can take.
pub const MAX_SIP_FRAGMENTS: usize = MAX_SIP_BYTES.div_ceil(RAW_SIP_CHUNK);

const PT_LIST_SIZE: usize = 1 + MAX_PAYLOAD_TYPES * 5;
const LEG_SPEC_SIZE: usize = 2 + ADDR_SIZE + PT_LIST_SIZE + 1 + 1 + 4;
const CREATE_SESSION_SIZE: usize = 8 + 2 * LEG_SPEC_SIZE;
const LEG_UPDATE_SIZE: usize = ADDR_SIZE + 1 + PT_LIST_SIZE + 1 + 1;
const UPDATE_SESSION_SIZE: usize = 8 + 2 * LEG_UPDATE_SIZE;
const LEG_STATS_SIZE: usize = 8 + 8 + 8 + 4 + 8 + 8 + 8 + ADDR_SIZE;
const SESSION_STATS_SIZE: usize = 8 + 2 * LEG_STATS_SIZE;
const SESSION_INFO_SIZE: usize = 8 + 1 + 1 + 8 + 4 + 2 * ADDR_SIZE;
const _: () = assert!(CREATE_SESSION_SIZE <= PAYLOAD_SIZE);
const _: () = assert!(UPDATE_SESSION_SIZE <= PAYLOAD_SIZE);
const _: () = assert!(SESSION_STATS_SIZE <= PAYLOAD_SIZE);
const _: () = assert!(SESSION_INFO_SIZE <= PAYLOAD_SIZE);
const CORE_STATS_SIZE: usize = 4 + 4 + 1 + CORE_STATS_COUNTERS * 8;
const _: () = assert!(CORE_STATS_SIZE <= PAYLOAD_SIZE);
const _: () = assert!(RAW_SIP_CHUNK >= 192);
const _: () = assert!(MAX_SIP_FRAGMENTS <= u16::MAX as usize);

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A type code this side does not know (or one for the other direction).
    UnknownType(u16),
    /// The header's `len` is not what the type requires.
    BadLength { msg_type: u16, len: u32 },
    /// A field holds a value outside its range.
    BadField { msg_type: u16, field: &'static str },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t:#06x}"),
            DecodeError::BadLength { msg_type, len } => {
                write!(f, "message type {msg_type:#06x}: bad length {len}")
            }
            DecodeError::BadField { msg_type, field } => {
                write!(f, "message type {msg_type:#06x}: bad field {field}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Per-record metadata carried in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Request id.
    pub seq: u64,
    /// Core.
    pub core: u16,
}

/// One of a session's two legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The caller side.
    A = 0,
    /// The callee side.
    B = 1,
}

/// An RTP payload type and its clock rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PayloadType {
    /// 0..=127.
    pub pt: u8,
    /// Clock rate in Hz.
    pub clock_hz: u32,
}

/// Up to [`MAX_PAYLOAD_TYPES`] payload types, inline.
#[derive(Clone, Copy, Default)]
pub struct PayloadTypes {
    len: u8,
    entries: [PayloadType; MAX_PAYLOAD_TYPES],
}

impl PayloadTypes {
    /// `None` if more than [`MAX_PAYLOAD_TYPES`] or a PT above 127.
    pub fn new(list: &[PayloadType]) -> Option<PayloadTypes> {
        if list.len() > MAX_PAYLOAD_TYPES || list.iter().any(|p| p.pt > 127) {
            return None;
        }
        let mut out = PayloadTypes {
            len: list.len() as u8,
            ..Default::default()
        };
        out.entries[..list.len()].copy_from_slice(list);
        Some(out)
    }

    /// The payload types.
    pub fn as_slice(&self) -> &[PayloadType] {
        &self.entries[..usize::from(self.len)]
    }
}

impl PartialEq for PayloadTypes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for PayloadTypes {}

impl std::fmt::Debug for PayloadTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// One leg of a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegSpec {
    /// Local media port; 0 lets the dataplane choose.
    pub local_port: u16,
    /// Where to send media; `None` until latched from the first packet.
    pub remote: Option<SocketAddr>,
    /// Payload types with clock rates.
    pub payload_types: PayloadTypes,
    /// RFC 4733 telephone-event payload type.
    pub telephone_event_pt: Option<u8>,
    /// RTCP multiplexed on the RTP port.
    pub rtcp_mux: bool,
    /// Media inactivity timeout in milliseconds (0: none).
    pub inactivity_timeout_ms: u32,
}

/// Install a media session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateSession {
    /// Control-plane id.
    pub session_id: u64,
    /// Legs A and B.
    pub legs: [LegSpec; 2],
}

/// Changes to one leg; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegUpdate {
    /// New remote address.
    pub remote: Option<SocketAddr>,
    /// New payload types.
    pub payload_types: Option<PayloadTypes>,
    /// New telephone-event PT.
    pub telephone_event_pt: Option<u8>,
    /// Media on hold (not forwarded toward this leg).
    pub hold: bool,
}

/// Change a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateSession {
    /// Control-plane id.
    pub session_id: u64,
    /// Legs A and B.
    pub legs: [LegUpdate; 2],
}

/// One record of a SIP message (see [`RawSipReassembler`] and [`encode_raw_sip`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawSipFragment {
    /// Listener (socket) id.
    pub listener: u32,
    /// Destination (down) or source (up).
    pub addr: SocketAddr,
    /// Bytes of the whole message.
    pub total_len: u32,
    /// This fragment's index.
    pub frag_index: u16,
    /// Fragments in the message.
    pub frag_count: u16,
    len: u16,
    data: [u8; RAW_SIP_CHUNK],
}

impl RawSipFragment {
    /// This fragment's bytes.
    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for RawSipFragment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSipFragment")
            .field("listener", &self.listener)
            .field("addr", &self.addr)
            .field("total_len", &self.total_len)
            .field("frag", &(self.frag_index, self.frag_count))
            .field("len", &self.len)
            .finish()
    }
}

/// Commands: control plane → dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Liveness probe; answered by [`Event::Pong`] with the same `echo`.
    Ping { echo: u64 },
    /// Install a media session; answered by `SessionCreated` or `CommandFailed`.
    CreateSession(CreateSession),
    /// Change a session.
    UpdateSession(UpdateSession),
    /// Remove a session.
    DeleteSession { session_id: u64 },
    /// Ask for counters; answered by `SessionStats`.
    QueryStats { session_id: u64 },
    /// List sessions from `cursor` (0: start); answered by `SessionInfo` records.
    ListSessions { cursor: u64 },
    /// One fragment of a SIP message to send.
    RawSipDown(RawSipFragment),
    /// Ask for the core's counters; answered by `CoreStats` carrying `echo` in its seq.
    QueryCoreStats { echo: u64 },
}

/// Why a command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// No such session.
    UnknownSession,
    /// A session with that id exists.
    SessionExists,
    /// No free media port.
    NoPortAvailable,
    /// The session table is full.
    TableFull,
    /// The command was malformed or inconsistent.
    InvalidCommand,
    /// The listener id is unknown.
    UnknownListener,
    /// A code this build does not name.
    Other(u16),
}

impl FailReason {
    fn code(self) -> u16 {
        match self {
            FailReason::UnknownSession => 1,
            FailReason::SessionExists => 2,
            FailReason::NoPortAvailable => 3,
            FailReason::TableFull => 4,
            FailReason::InvalidCommand => 5,
            FailReason::UnknownListener => 6,
            FailReason::Other(c) => c,
        }
    }

    fn from_code(c: u16) -> FailReason {
        match c {
            1 => FailReason::UnknownSession,
            2 => FailReason::SessionExists,
            3 => FailReason::NoPortAvailable,
            4 => FailReason::TableFull,
            5 => FailReason::InvalidCommand,
            6 => FailReason::UnknownListener,
            c => FailReason::Other(c),
        }
    }
}

/// Counters of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegStats {
    /// Packets received on this leg.
    pub packets: u64,
    /// Bytes received on this leg.
    pub bytes: u64,
    /// Packets lost (RFC 3550 cumulative).
    pub lost: u64,
    /// Interarrival jitter in microseconds.
    pub jitter_us: u32,
    /// Packets from addresses other than the latched one, dropped.
    pub strangers: u64,
    /// Packets that arrived after a later sequence number (late or reordered; relayed).
    pub out_of_order: u64,
    /// Packets whose sequence number was already seen (relayed: a relay does not dedupe).
    pub duplicates: u64,
    /// The latched remote address.
    pub latched: Option<SocketAddr>,
}

/// A session's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    /// Control-plane id.
    pub session_id: u64,
    /// Legs A and B.
    pub legs: [LegStats; 2],
}

/// One installed session, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSummary {
    /// Control-plane id.
    pub session_id: u64,
    /// Local ports of legs A and B.
    pub local_ports: [u16; 2],
    /// Remote addresses of legs A and B, if known.
    pub remotes: [Option<SocketAddr>; 2],
}

/// One reply record to `ListSessions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// Cursor to continue from after this record.
    pub next_cursor: u64,
    /// This is the last record of the reply.
    pub end_of_list: bool,
    /// The session (`None` in an empty terminating record).
    pub session: Option<SessionSummary>,
}

/// Number of u64 fields of [`CoreStats`] after its header fields.
const CORE_STATS_COUNTERS: usize = 27;

/// One dataplane core's counters and its relay latency (receive → send submitted), for
/// `trunkctl show cores` and the benchmark. Counters are totals since the core started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoreStats {
    /// Sessions installed now.
    pub sessions: u32,
    /// Sessions the core's table holds.
    pub session_capacity: u32,
    /// 0: io_uring, 1: mio/epoll, 2: AF_XDP.
    pub backend: u8,
    /// Loop turns.
    pub loop_turns: u64,
    /// Datagrams received.
    pub rx_packets: u64,
    /// Datagrams handed to the kernel to send.
    pub tx_packets: u64,
    /// RTP packets relayed.
    pub relayed_rtp: u64,
    /// RTCP packets relayed.
    pub relayed_rtcp: u64,
    /// Dropped: not RTP/RTCP, or did not parse.
    pub drop_malformed: u64,
    /// Dropped: from a source other than the latched one.
    pub drop_stranger: u64,
    /// Dropped: arrived on a port with no session.
    pub drop_no_session: u64,
    /// Dropped: RTCP before RTP latched, or no expected source.
    pub drop_not_latched: u64,
    /// Dropped: the other leg has no address yet.
    pub drop_no_destination: u64,
    /// Dropped: the other leg is on hold.
    pub drop_held: u64,
    /// Dropped: STUN/DTLS on a plain RTP relay.
    pub drop_not_media: u64,
    /// Sends refused (queue full) or failed in the kernel.
    pub tx_errors: u64,
    /// System calls on the packet path.
    pub syscalls: u64,
    /// Receives that found no free buffer.
    pub rx_nobufs: u64,
    /// Events lost because the event ring was full.
    pub events_dropped: u64,
    /// Inactivity timeouts reported.
    pub timeouts: u64,
    /// DTMF events reported.
    pub dtmf_events: u64,
    /// Relay latency percentiles and maximum, nanoseconds.
    pub latency_p50_ns: u64,
    /// p99.
    pub latency_p99_ns: u64,
    /// p99.9.
    pub latency_p999_ns: u64,
    /// Maximum.
    pub latency_max_ns: u64,
    /// Packets whose latency was recorded.
    pub latency_count: u64,
    /// SIP datagrams received on the core's SIP listeners.
    pub sip_received: u64,
    /// SIP messages handed to the control plane.
    pub sip_up: u64,
    /// SIP request retransmissions answered or dropped on the core.
    pub sip_absorbed: u64,
    /// SIP keepalives and OPTIONS answered on the core.
    pub sip_local: u64,
}

impl CoreStats {
    fn counters(&self) -> [u64; CORE_STATS_COUNTERS] {
        [
            self.loop_turns,
            self.rx_packets,
            self.tx_packets,
            self.relayed_rtp,
            self.relayed_rtcp,
            self.drop_malformed,
            self.drop_stranger,
            self.drop_no_session,
            self.drop_not_latched,
            self.drop_no_destination,
            self.drop_held,
            self.drop_not_media,
            self.tx_errors,
            self.syscalls,
            self.rx_nobufs,
            self.events_dropped,
            self.timeouts,
            self.dtmf_events,
            self.latency_p50_ns,
            self.latency_p99_ns,
            self.latency_p999_ns,
            self.latency_max_ns,
            self.latency_count,
            self.sip_received,
            self.sip_up,
            self.sip_absorbed,
            self.sip_local,
        ]
    }

    fn from_counters(
        sessions: u32,
        session_capacity: u32,
        backend: u8,
        c: [u64; CORE_STATS_COUNTERS],
    ) -> CoreStats {
        CoreStats {
            sessions,
            session_capacity,
            backend,
            loop_turns: c[0],
            rx_packets: c[1],
            tx_packets: c[2],
            relayed_rtp: c[3],
            relayed_rtcp: c[4],
            drop_malformed: c[5],
            drop_stranger: c[6],
            drop_no_session: c[7],
            drop_not_latched: c[8],
            drop_no_destination: c[9],
            drop_held: c[10],
            drop_not_media: c[11],
            tx_errors: c[12],
            syscalls: c[13],
            rx_nobufs: c[14],
            events_dropped: c[15],
            timeouts: c[16],
            dtmf_events: c[17],
            latency_p50_ns: c[18],
            latency_p99_ns: c[19],
            latency_p999_ns: c[20],
            latency_max_ns: c[21],
            latency_count: c[22],
            sip_received: c[23],
            sip_up: c[24],
            sip_absorbed: c[25],
            sip_local: c[26],
        }
    }
}

/// An RFC 4733 telephone event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// Control-plane id.
    pub session_id: u64,
    /// Leg it came from.
    pub leg: Leg,
    /// Event code (0–9, 10 = *, 11 = #, 12–15 = A–D).
    pub event: u8,
    /// Duration in milliseconds.
    pub duration_ms: u32,
    /// The end bit was seen.
    pub end: bool,
    /// Volume (dBm0 below zero, 0..=63).
    pub volume: u8,
}

/// Events: dataplane → control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Answer to a ping.
    Pong { echo: u64 },
    /// A session was installed with these local ports.
    SessionCreated {
        session_id: u64,
        local_ports: [u16; 2],
    },
    /// The command with the record's `seq` failed.
    CommandFailed {
        command_type: u16,
        session_id: u64,
        reason: FailReason,
    },
    /// Counters.
    SessionStats(SessionStats),
    /// List entry.
    SessionInfo(SessionInfo),
    /// A leg timed out.
    SessionTimeout { session_id: u64, leg: Leg },
    /// Telephone event.
    Dtmf(DtmfEvent),
    /// One fragment of a received SIP message.
    RawSipUp(RawSipFragment),
    /// A core's counters.
    CoreStats(CoreStats),
}

// ---------------------------------------------------------------------------------------
// Wire primitives

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn opt_pt(&mut self, v: Option<u8>) {
        self.u8(v.unwrap_or(0xFF));
    }
    fn addr(&mut self, a: Option<SocketAddr>) {
        let mut raw = [0u8; 16];
        let (family, port) = match a {
            None => (0, 0),
            Some(SocketAddr::V4(v4)) => {
                raw[..4].copy_from_slice(&v4.ip().octets());
                (4, v4.port())
            }
            Some(SocketAddr::V6(v6)) => {
                raw.copy_from_slice(&v6.ip().octets());
                (6, v6.port())
            }
        };
        self.u8(family);
        self.u8(0);
        self.u16(port);
        self.bytes(&raw);
    }
    fn pts(&mut self, p: &PayloadTypes) {
        self.u8(p.len);
        for e in &p.entries {
            self.u8(e.pt);
            self.u32(e.clock_hz);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    msg_type: u16,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos + N;
        let src = self.buf.get(self.pos..end).ok_or(DecodeError::BadLength {
            msg_type: self.msg_type,
            len: self.buf.len() as u32,
        })?;
        let mut out = [0u8; N];
        out.copy_from_slice(src);
        self.pos = end;
        Ok(out)
    }
    fn bad(&self, field: &'static str) -> DecodeError {
        DecodeError::BadField {
            msg_type: self.msg_type,
            field,
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad(field)),
        }
    }
    fn opt_pt(&mut self, field: &'static str) -> Result<Option<u8>, DecodeError> {
        match self.u8()? {
            0xFF => Ok(None),
            v @ 0..=127 => Ok(Some(v)),
            _ => Err(self.bad(field)),
        }
    }
    fn leg(&mut self) -> Result<Leg, DecodeError> {
        match self.u8()? {
            0 => Ok(Leg::A),
            1 => Ok(Leg::B),
            _ => Err(self.bad("leg")),
        }
    }
    fn addr(&mut self, field: &'static str) -> Result<Option<SocketAddr>, DecodeError> {
        let family = self.u8()?;
        let pad = self.u8()?;
        let port = self.u16()?;
        let raw: [u8; 16] = self.take()?;
        if pad != 0 {
            return Err(self.bad(field));
        }
        match family {
            0 if port == 0 && raw == [0; 16] => Ok(None),
            4 if raw[4..] == [0; 12] => {
                let ip = Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]);
                Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
            }
            6 => Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(raw)), port))),
            _ => Err(self.bad(field)),
        }
    }
    fn pts(&mut self) -> Result<PayloadTypes, DecodeError> {
        let len = self.u8()?;
        if usize::from(len) > MAX_PAYLOAD_TYPES {
            return Err(self.bad("payload_types.len"));
        }
        let mut out = PayloadTypes {
            len,
            ..Default::default()
        };
        for (i, e) in out.entries.iter_mut().enumerate() {
            let pt = self.u8()?;
            let clock_hz = self.u32()?;
            if i < usize::from(len) {
                if pt > 127 {
                    return Err(self.bad("payload_types.pt"));
                }
                *e = PayloadType { pt, clock_hz };
            }
        }
        Ok(out)
    }
}

fn write_header(out: &mut Record, msg_type: u16, len: usize, meta: Meta, frag: (u16, u16)) {
    assert!(len <= PAYLOAD_SIZE);
    let mut w = Writer {
        buf: &mut out[..HEADER_SIZE],
        pos: 0,
    };
    w.u16(msg_type);
    w.u16(0);
    w.u32(len as u32);
    w.u64(meta.seq);
    w.u16(meta.core);
    w.u16(frag.0);
    w.u16(frag.1);
    w.u16(0);
}

/// Reads a record's header (copying; any bytes are accepted).
pub fn read_header(rec: &Record) -> RecordHeader {
    let at16 = |o: usize| u16::from_le_bytes([rec[o], rec[o + 1]]);
    let at32 = |o: usize| u32::from_le_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
    RecordHeader {
        msg_type: at16(0),
        flags: at16(2),
        len: at32(4),
        seq: u64::from(at32(8)) | (u64::from(at32(12)) << 32),
        core: at16(16),
        frag_index: at16(18),
        frag_count: at16(20),
        reserved: at16(22),
    }
}

fn payload_mut(out: &mut Record) -> Writer<'_> {
    Writer {
        buf: &mut out[HEADER_SIZE..],
        pos: 0,
    }
}

/// Checks the header for an unfragmented message of exactly `len` payload bytes.
fn check_fixed(h: &RecordHeader, len: usize) -> Result<(), DecodeError> {
    if h.len as usize != len {
        return Err(DecodeError::BadLength {
            msg_type: h.msg_type,
            len: h.len,
        });
    }
    if h.frag_index != 0 || h.frag_count != 1 {
        return Err(DecodeError::BadField {
            msg_type: h.msg_type,
            field: "fragment",
        });
    }
    if h.flags != 0 || h.reserved != 0 {
        return Err(DecodeError::BadField {
            msg_type: h.msg_type,
            field: "flags",
        });
    }
    Ok(())
}

fn reader<'a>(rec: &'a Record, h: &RecordHeader) -> Reader<'a> {
    let end = HEADER_SIZE + (h.len as usize).min(PAYLOAD_SIZE);
    Reader {
        buf: &rec[HEADER_SIZE..end],
        pos: 0,
        msg_type: h.msg_type,
    }
}

// ---------------------------------------------------------------------------------------
// Commands

fn write_leg_spec(w: &mut Writer<'_>, l: &LegSpec) {
    w.u16(l.local_port);
    w.addr(l.remote);
    w.pts(&l.payload_types);
    w.opt_pt(l.telephone_event_pt);
    w.bool(l.rtcp_mux);
    w.u32(l.inactivity_timeout_ms);
}

fn read_leg_spec(r: &mut Reader<'_>) -> Result<LegSpec, DecodeError> {
    Ok(LegSpec {
        local_port: r.u16()?,
        remote: r.addr("remote")?,
        payload_types: r.pts()?,
        telephone_event_pt: r.opt_pt("telephone_event_pt")?,
        rtcp_mux: r.bool("rtcp_mux")?,
        inactivity_timeout_ms: r.u32()?,
    })
}

fn write_leg_update(w: &mut Writer<'_>, l: &LegUpdate) {
    w.addr(l.remote);
    w.bool(l.payload_types.is_some());
    w.pts(&l.payload_types.unwrap_or_default());
    w.opt_pt(l.telephone_event_pt);
    w.bool(l.hold);
}

fn read_leg_update(r: &mut Reader<'_>) -> Result<LegUpdate, DecodeError> {
    let remote = r.addr("remote")?;
    let has_pts = r.bool("payload_types.present")?;
    let pts = r.pts()?;
    Ok(LegUpdate {
        remote,
        payload_types: has_pts.then_some(pts),
        telephone_event_pt: r.opt_pt("telephone_event_pt")?,
        hold: r.bool("hold")?,
    })
}

fn write_raw_sip(out: &mut Record, msg_type: u16, meta: Meta, f: &RawSipFragment) {
    assert!(usize::from(f.len) <= RAW_SIP_CHUNK);
    let len = RAW_SIP_FIXED + usize::from(f.len);
    write_header(out, msg_type, len, meta, (f.frag_index, f.frag_count));
    let mut w = payload_mut(out);
    w.u32(f.listener);
    w.u32(f.total_len);
    w.addr(Some(f.addr));
    w.u16(f.len);
    w.u16(0);
    w.bytes(f.data());
}

fn read_raw_sip(rec: &Record, h: &RecordHeader) -> Result<RawSipFragment, DecodeError> {
    let bad = |field| DecodeError::BadField {
        msg_type: h.msg_type,
        field,
    };
    if (h.len as usize) < RAW_SIP_FIXED || h.len as usize > PAYLOAD_SIZE {
        return Err(DecodeError::BadLength {
            msg_type: h.msg_type,
            len: h.len,
        });
    }
    if h.frag_count == 0 || h.frag_index >= h.frag_count {
        return Err(bad("fragment"));
    }
    if h.flags != 0 || h.reserved != 0 {
        return Err(bad("flags"));
    }
    let mut r = reader(rec, h);
    let listener = r.u32()?;
    let total_len = r.u32()?;
    let addr = r.addr("addr")?.ok_or(bad("addr"))?;
    let len = r.u16()?;
    let _pad = r.u16()?;
    if usize::from(len) != h.len as usize - RAW_SIP_FIXED {
        return Err(bad("data_len"));
    }
    if total_len as usize > MAX_SIP_BYTES
        || usize::from(h.frag_count) != (total_len as usize).div_ceil(RAW_SIP_CHUNK).max(1)
    {
        return Err(bad("total_len"));
    }
    let mut data = [0u8; RAW_SIP_CHUNK];
    let start = HEADER_SIZE + RAW_SIP_FIXED;
    data[..usize::from(len)].copy_from_slice(&rec[start..start + usize::from(len)]);
    Ok(RawSipFragment {
        listener,
        addr,
        total_len,
        frag_index: h.frag_index,
        frag_count: h.frag_count,
        len,
        data,
    })
}

impl Command {
    /// The type code.
    pub fn msg_type(&self) -> u16 {
        match self {
            Command::Ping { .. } => msg_type::PING,
            Command::CreateSession(_) => msg_type::CREATE_SESSION,
            Command::UpdateSession(_) => msg_type::UPDATE_SESSION,
            Command::DeleteSession { .. } => msg_type::DELETE_SESSION,
            Command::QueryStats { .. } => msg_type::QUERY_STATS,
            Command::ListSessions { .. } => msg_type::LIST_SESSIONS,
            Command::RawSipDown(_) => msg_type::RAW_SIP_DOWN,
            Command::QueryCoreStats { .. } => msg_type::QUERY_CORE_STATS,
        }
    }

    /// Writes this command into `out` (the whole record is overwritten).
    pub fn encode(&self, meta: Meta, out: &mut Record) {
        *out = EMPTY_RECORD;
        let t = self.msg_type();
        match self {
            Command::Ping { echo }
            | Command::DeleteSession { session_id: echo }
            | Command::QueryStats { session_id: echo }
            | Command::ListSessions { cursor: echo }
            | Command::QueryCoreStats { echo } => {
                write_header(out, t, 8, meta, (0, 1));
                payload_mut(out).u64(*echo);
            }
            Command::CreateSession(c) => {
                write_header(out, t, CREATE_SESSION_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u64(c.session_id);
                write_leg_spec(&mut w, &c.legs[0]);
                write_leg_spec(&mut w, &c.legs[1]);
                debug_assert_eq!(w.pos, CREATE_SESSION_SIZE);
            }
            Command::UpdateSession(u) => {
                write_header(out, t, UPDATE_SESSION_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u64(u.session_id);
                write_leg_update(&mut w, &u.legs[0]);
                write_leg_update(&mut w, &u.legs[1]);
                debug_assert_eq!(w.pos, UPDATE_SESSION_SIZE);
            }
            Command::RawSipDown(f) => write_raw_sip(out, t, meta, f),
        }
    }

    /// Decodes a record; never panics, whatever its bytes.
    pub fn decode(rec: &Record) -> Result<(Meta, Command), DecodeError> {
        let h = read_header(rec);
        let meta = Meta {
            seq: h.seq,
            core: h.core,
        };
        let cmd = match h.msg_type {
            msg_type::PING
            | msg_type::DELETE_SESSION
            | msg_type::QUERY_STATS
            | msg_type::LIST_SESSIONS
            | msg_type::QUERY_CORE_STATS => {
                check_fixed(&h, 8)?;
                let v = reader(rec, &h).u64()?;
                match h.msg_type {
                    msg_type::PING => Command::Ping { echo: v },
                    msg_type::DELETE_SESSION => Command::DeleteSession { session_id: v },
                    msg_type::QUERY_STATS => Command::QueryStats { session_id: v },
                    msg_type::QUERY_CORE_STATS => Command::QueryCoreStats { echo: v },
                    _ => Command::ListSessions { cursor: v },
                }
            }
            msg_type::CREATE_SESSION => {
                check_fixed(&h, CREATE_SESSION_SIZE)?;
                let mut r = reader(rec, &h);
                Command::CreateSession(CreateSession {
                    session_id: r.u64()?,
                    legs: [read_leg_spec(&mut r)?, read_leg_spec(&mut r)?],
                })
            }
            msg_type::UPDATE_SESSION => {
                check_fixed(&h, UPDATE_SESSION_SIZE)?;
                let mut r = reader(rec, &h);
                Command::UpdateSession(UpdateSession {
                    session_id: r.u64()?,
                    legs: [read_leg_update(&mut r)?, read_leg_update(&mut r)?],
                })
            }
            msg_type::RAW_SIP_DOWN => Command::RawSipDown(read_raw_sip(rec, &h)?),
            other => return Err(DecodeError::UnknownType(other)),
        };
        Ok((meta, cmd))
    }
}

// ---------------------------------------------------------------------------------------
// Events

fn write_leg_stats(w: &mut Writer<'_>, s: &LegStats) {
    w.u64(s.packets);
    w.u64(s.bytes);
    w.u64(s.lost);
    w.u32(s.jitter_us);
    w.u64(s.strangers);
    w.u64(s.out_of_order);
    w.u64(s.duplicates);
    w.addr(s.latched);
}

fn read_leg_stats(r: &mut Reader<'_>) -> Result<LegStats, DecodeError> {
    Ok(LegStats {
        packets: r.u64()?,
        bytes: r.u64()?,
        lost: r.u64()?,
        jitter_us: r.u32()?,
        strangers: r.u64()?,
        out_of_order: r.u64()?,
        duplicates: r.u64()?,
        latched: r.addr("latched")?,
    })
}

const SESSION_CREATED_SIZE: usize = 8 + 4;
const COMMAND_FAILED_SIZE: usize = 2 + 2 + 8;
const SESSION_TIMEOUT_SIZE: usize = 8 + 1;
const DTMF_SIZE: usize = 8 + 1 + 1 + 4 + 1 + 1;

impl Event {
    /// The type code.
    pub fn msg_type(&self) -> u16 {
        match self {
            Event::Pong { .. } => msg_type::PONG,
            Event::SessionCreated { .. } => msg_type::SESSION_CREATED,
            Event::CommandFailed { .. } => msg_type::COMMAND_FAILED,
            Event::SessionStats(_) => msg_type::SESSION_STATS,
            Event::SessionInfo(_) => msg_type::SESSION_INFO,
            Event::SessionTimeout { .. } => msg_type::SESSION_TIMEOUT,
            Event::Dtmf(_) => msg_type::DTMF,
            Event::RawSipUp(_) => msg_type::RAW_SIP_UP,
            Event::CoreStats(_) => msg_type::CORE_STATS,
        }
    }

    /// Writes this event into `out` (the whole record is overwritten).
    pub fn encode(&self, meta: Meta, out: &mut Record) {
        *out = EMPTY_RECORD;
        let t = self.msg_type();
        match self {
            Event::Pong { echo } => {
                write_header(out, t, 8, meta, (0, 1));
                payload_mut(out).u64(*echo);
            }
            Event::SessionCreated {
                session_id,
                local_ports,
            } => {
                write_header(out, t, SESSION_CREATED_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u64(*session_id);
                w.u16(local_ports[0]);
                w.u16(local_ports[1]);
            }
            Event::CommandFailed {
                command_type,
                session_id,
                reason,
            } => {
                write_header(out, t, COMMAND_FAILED_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u16(*command_type);
                w.u16(reason.code());
                w.u64(*session_id);
            }
            Event::SessionStats(s) => {
                write_header(out, t, SESSION_STATS_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u64(s.session_id);
                write_leg_stats(&mut w, &s.legs[0]);
                write_leg_stats(&mut w, &s.legs[1]);
            }
            Event::SessionInfo(i) => {
                write_header(out, t, SESSION_INFO_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u64(i.next_cursor);
                w.bool(i.end_of_list);
                w.bool(i.session.is_some());
                let s = i.session.unwrap_or(SessionSummary {
                    session_id: 0,
                    local_ports: [0; 2],
                    remotes: [None; 2],
                });
                w.u64(s.session_id);
                w.u16(s.local_ports[0]);
                w.u16(s.local_ports[1]);
                w.addr(s.remotes[0]);
                w.addr(s.remotes[1]);
            }
            Event::SessionTimeout { session_id, leg } => {
                write_header(out, t, SESSION_TIMEOUT_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u64(*session_id);
                w.u8(*leg as u8);
            }
            Event::Dtmf(d) => {
                write_header(out, t, DTMF_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u64(d.session_id);
                w.u8(d.leg as u8);
                w.u8(d.event);
                w.u32(d.duration_ms);
                w.bool(d.end);
                w.u8(d.volume);
            }
            Event::RawSipUp(f) => write_raw_sip(out, t, meta, f),
            Event::CoreStats(c) => {
                write_header(out, t, CORE_STATS_SIZE, meta, (0, 1));
                let mut w = payload_mut(out);
                w.u32(c.sessions);
                w.u32(c.session_capacity);
                w.u8(c.backend);
                for v in c.counters() {
                    w.u64(v);
                }
            }
        }
    }

    /// Decodes a record; never panics, whatever its bytes.
    pub fn decode(rec: &Record) -> Result<(Meta, Event), DecodeError> {
        let h = read_header(rec);
        let meta = Meta {
            seq: h.seq,
            core: h.core,
        };
        let ev = match h.msg_type {
            msg_type::PONG => {
                check_fixed(&h, 8)?;
                Event::Pong {
                    echo: reader(rec, &h).u64()?,
                }
            }
            msg_type::SESSION_CREATED => {
                check_fixed(&h, SESSION_CREATED_SIZE)?;
                let mut r = reader(rec, &h);
                Event::SessionCreated {
                    session_id: r.u64()?,
                    local_ports: [r.u16()?, r.u16()?],
                }
            }
            msg_type::COMMAND_FAILED => {
                check_fixed(&h, COMMAND_FAILED_SIZE)?;
                let mut r = reader(rec, &h);
                let command_type = r.u16()?;
                let reason = FailReason::from_code(r.u16()?);
                Event::CommandFailed {
                    command_type,
                    session_id: r.u64()?,
                    reason,
                }
            }
            msg_type::SESSION_STATS => {
                check_fixed(&h, SESSION_STATS_SIZE)?;
                let mut r = reader(rec, &h);
                Event::SessionStats(SessionStats {
                    session_id: r.u64()?,
                    legs: [read_leg_stats(&mut r)?, read_leg_stats(&mut r)?],
                })
            }
            msg_type::SESSION_INFO => {
                check_fixed(&h, SESSION_INFO_SIZE)?;
                let mut r = reader(rec, &h);
                let next_cursor = r.u64()?;
                let end_of_list = r.bool("end_of_list")?;
                let present = r.bool("session.present")?;
                let s = SessionSummary {
                    session_id: r.u64()?,
                    local_ports: [r.u16()?, r.u16()?],
                    remotes: [r.addr("remotes")?, r.addr("remotes")?],
                };
                let empty = s.session_id == 0 && s.local_ports == [0; 2] && s.remotes == [None; 2];
                if !present && !empty {
                    return Err(r.bad("session"));
                }
                Event::SessionInfo(SessionInfo {
                    next_cursor,
                    end_of_list,
                    session: present.then_some(s),
                })
            }
            msg_type::SESSION_TIMEOUT => {
                check_fixed(&h, SESSION_TIMEOUT_SIZE)?;
                let mut r = reader(rec, &h);
                Event::SessionTimeout {
                    session_id: r.u64()?,
                    leg: r.leg()?,
                }
            }
            msg_type::DTMF => {
                check_fixed(&h, DTMF_SIZE)?;
                let mut r = reader(rec, &h);
                Event::Dtmf(DtmfEvent {
                    session_id: r.u64()?,
                    leg: r.leg()?,
                    event: r.u8()?,
                    duration_ms: r.u32()?,
                    end: r.bool("end")?,
                    volume: r.u8()?,
                })
            }
            msg_type::RAW_SIP_UP => Event::RawSipUp(read_raw_sip(rec, &h)?),
            msg_type::CORE_STATS => {
                check_fixed(&h, CORE_STATS_SIZE)?;
                let mut r = reader(rec, &h);
                let sessions = r.u32()?;
                let capacity = r.u32()?;
                let backend = r.u8()?;
                let mut c = [0u64; CORE_STATS_COUNTERS];
                for v in &mut c {
                    *v = r.u64()?;
                }
                Event::CoreStats(CoreStats::from_counters(sessions, capacity, backend, c))
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        Ok((meta, ev))
    }
}

// ---------------------------------------------------------------------------------------
// SIP fragmentation

/// A SIP message does not fit: longer than [`MAX_SIP_BYTES`] or than the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// Bytes of the message.
    pub len: usize,
    /// Records it needs.
    pub records_needed: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SIP message of {} bytes needs {} records",
            self.len, self.records_needed
        )
    }
}

impl std::error::Error for TooLarge {}

/// Which direction a RawSip message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipDirection {
    /// Control plane → dataplane ([`Command::RawSipDown`]).
    Down,
    /// Dataplane → control plane ([`Event::RawSipUp`]).
    Up,
}

/// Records needed to carry `len` SIP bytes (an empty message still takes one).
pub fn sip_fragments(len: usize) -> usize {
    len.div_ceil(RAW_SIP_CHUNK).max(1)
}

/// Encodes `bytes` as RawSip records into `out`; returns how many were written.
pub fn encode_raw_sip(
    direction: SipDirection,
    meta: Meta,
    listener: u32,
    addr: SocketAddr,
    bytes: &[u8],
    out: &mut [Record],
) -> Result<usize, TooLarge> {
    let count = sip_fragments(bytes.len());
    if bytes.len() > MAX_SIP_BYTES || count > out.len() {
        return Err(TooLarge {
            len: bytes.len(),
            records_needed: count,
        });
    }
    let msg_type = match direction {
        SipDirection::Down => msg_type::RAW_SIP_DOWN,
        SipDirection::Up => msg_type::RAW_SIP_UP,
    };
    for (i, rec) in out.iter_mut().take(count).enumerate() {
        let start = (i * RAW_SIP_CHUNK).min(bytes.len());
        let chunk = &bytes[start..(start + RAW_SIP_CHUNK).min(bytes.len())];
        let mut frag = RawSipFragment {
            listener,
            addr,
            total_len: bytes.len() as u32,
            frag_index: i as u16,
            frag_count: count as u16,
            len: chunk.len() as u16,
            data: [0u8; RAW_SIP_CHUNK],
        };
        frag.data[..chunk.len()].copy_from_slice(chunk);
        *rec = EMPTY_RECORD;
        write_raw_sip(rec, msg_type, meta, &frag);
    }
    Ok(count)
}

/// Why reassembly dropped a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassemblyError {
    /// A fragment index was skipped (or a message began again) before the message ended.
    MissingFragment {
        seq: u64,
        expected_index: u16,
        got_index: u16,
    },
    /// A fragment of another message arrived while one was in progress.
    Interleaved { in_progress_seq: u64, got_seq: u64 },
    /// Fragments of one message disagree on count, length, listener or address, or the
    /// bytes do not add up to the announced length.
    Inconsistent { seq: u64 },
}

impl std::fmt::Display for ReassemblyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SIP reassembly: {self:?}")
    }
}

impl std::error::Error for ReassemblyError {}

/// A whole SIP message, borrowed from the reassembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipMessage<'a> {
    /// Request id of its records.
    pub seq: u64,
    /// Listener id.
    pub listener: u32,
    /// Destination or source.
    pub addr: SocketAddr,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// Joins RawSip fragments, which must arrive in order (one ring is FIFO). Holds one
/// [`MAX_SIP_BYTES`] buffer allocated at construction.
#[derive(Debug)]
pub struct RawSipReassembler {
    buf: Box<[u8]>,
    filled: usize,
    /// (seq, next index, first fragment) of the message in progress.
    current: Option<(u64, u16, RawSipFragment)>,
}

impl Default for RawSipReassembler {
    fn default() -> Self {
        Self::new()
    }
}

impl RawSipReassembler {
    /// Allocates the buffer.
    pub fn new() -> RawSipReassembler {
        RawSipReassembler {
            buf: vec![0u8; MAX_SIP_BYTES].into_boxed_slice(),
            filled: 0,
            current: None,
        }
    }

    /// Whether a message is partly assembled.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// Feeds one fragment. Returns the message when its last fragment arrives.
    ///
    /// On `Err` the partial message is dropped and `frag` is *not* consumed: feed it once
    /// more, so that a fragment 0 that interrupted a broken message starts its own.
    pub fn push(
        &mut self,
        meta: Meta,
        frag: &RawSipFragment,
    ) -> Result<Option<SipMessage<'_>>, ReassemblyError> {
        let (seq, next, first) = match self.current {
            Some((seq, next, first)) => {
                let error = if meta.seq != seq {
                    Some(ReassemblyError::Interleaved {
                        in_progress_seq: seq,
                        got_seq: meta.seq,
                    })
                } else if frag.frag_index != next {
                    Some(ReassemblyError::MissingFragment {
                        seq,
                        expected_index: next,
                        got_index: frag.frag_index,
                    })
                } else if frag.frag_count != first.frag_count
                    || frag.total_len != first.total_len
                    || frag.listener != first.listener
                    || frag.addr != first.addr
                {
                    Some(ReassemblyError::Inconsistent { seq })
                } else {
                    None
                };
                if let Some(e) = error {
                    self.reset();
                    return Err(e);
                }
                (seq, next, first)
            }
            None if frag.frag_index != 0 => {
                return Err(ReassemblyError::MissingFragment {
                    seq: meta.seq,
                    expected_index: 0,
                    got_index: frag.frag_index,
                });
            }
            None => (meta.seq, 0, *frag),
        };
        let data = frag.data();
        let end = self.filled + data.len();
        if end > first.total_len as usize || end > self.buf.len() {
            self.reset();
            return Err(ReassemblyError::Inconsistent { seq });
        }
        self.buf[self.filled..end].copy_from_slice(data);
        self.filled = end;
        if next + 1 < first.frag_count {
            self.current = Some((seq, next + 1, first));
            return Ok(None);
        }
        let len = self.filled;
        self.reset();
        if len != first.total_len as usize {
            return Err(ReassemblyError::Inconsistent { seq });
        }
        Ok(Some(SipMessage {
            seq,
            listener: first.listener,
            addr: first.addr,
            bytes: &self.buf[..len],
        }))
    }

    fn reset(&mut self) {
        self.current = None;
        self.filled = 0;
    }
}
