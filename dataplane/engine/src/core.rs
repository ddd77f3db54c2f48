//! One dataplane core: its loop, its sessions, its counters.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dpio::{AnyBackend, Backend, BackendKind, RxPacket, SocketId};
use hdrhistogram::Histogram;
use rtp::{DropReason, LegEvent, Verdict};
use shmq::schema::{
    msg_type, CoreStats, CreateSession, DtmfEvent, FailReason, Leg as WireLeg, RawSipFragment,
    SessionInfo, SessionStats, SessionSummary, UpdateSession,
};
use shmq::{Command, DataEnd, DecodeError, Event, Meta, POLL_BATCH};

use crate::layout::{PortLayout, PORTS_PER_SESSION};
use crate::sipfast::{Decision, SipPath};
use crate::table::{InsertError, Session, SessionTable};

/// How long a busy core waits in its backend before looking at its command ring again (an
/// idle core sleeps until a packet, a command or the next timer scan).
pub const IDLE_POLL: Duration = Duration::from_millis(2);
/// How often inactivity timeouts are checked.
pub const TIMER_SCAN: Duration = Duration::from_millis(100);
/// Most `SessionInfo` records one `ListSessions` command answers with.
pub const LIST_PAGE: usize = 32;
/// Receive buffer size of a core with SIP listeners.
pub const SIP_BUFFER: u32 = 4096;
/// Copy buffers (replies, SIP sent down) of a core with SIP listeners.
pub const SIP_COPY_BUFFERS: u32 = 1024;

/// What a core needs to start.
#[derive(Debug, Clone)]
pub struct CoreSetup {
    /// Core index (0-based, also the shmq ring pair).
    pub core: u16,
    /// CPU to pin to, if any.
    pub cpu: Option<usize>,
    /// Address media sockets bind to.
    pub media_ip: IpAddr,
    /// The port split.
    pub layout: PortLayout,
    /// Backend options.
    pub io: dpio::Config,
    /// SIP UDP listeners this core serves (listener id = index), with the fast path
    /// ([`crate::sipfast`]); empty on cores that carry media only.
    pub sip: Vec<SocketAddr>,
}

/// Per-core counters kept by the loop (the backend keeps its own [`dpio::IoStats`]).
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    loop_turns: u64,
    relayed_rtp: u64,
    relayed_rtcp: u64,
    drop_malformed: u64,
    drop_stranger: u64,
    drop_no_session: u64,
    drop_not_latched: u64,
    drop_no_destination: u64,
    drop_held: u64,
    drop_not_media: u64,
    tx_refused: u64,
    events_dropped: u64,
    timeouts: u64,
    dtmf_events: u64,
}

/// One pinned core's loop.
#[derive(Debug)]
pub struct CoreLoop {
    core: u16,
    io: AnyBackend,
    end: DataEnd,
    layout: PortLayout,
    /// Socket of port offset `i` within the core is `sockets[i]`.
    sockets: Box<[SocketId]>,
    /// Socket of SIP listener `i` is `sip_sockets[i]` (their ids follow the media ports').
    sip_sockets: Box<[SocketId]>,
    /// The SIP fast path, on a core with SIP listeners.
    sip: Option<Box<SipPath>>,
    table: SessionTable,
    counters: Counters,
    latency: Histogram<u64>,
    commands: Vec<(Meta, Result<Command, DecodeError>)>,
    uring_unavailable: Option<String>,
    /// The last turn had nothing to do: the next one may sleep until a packet, a command or
    /// the next timer scan.
    idle: bool,
}

impl CoreLoop {
    /// Builds the core on the calling thread (io_uring rings are single-issuer): pins it,
    /// creates the backend and binds every port of its slice of the range.
    pub fn new(setup: &CoreSetup, end: DataEnd) -> io::Result<CoreLoop> {
        if let Some(cpu) = setup.cpu {
            dpio::pin_current_thread(cpu)?;
        }
        let ports = setup.layout.ports_per_core();
        let mut io_cfg = setup.io.clone();
        io_cfg.max_sockets = io_cfg.max_sockets.max(ports + setup.sip.len() as u32);
        if !setup.sip.is_empty() {
            // SIP over UDP: datagrams up to SIP_BUFFER - 44 bytes (RFC 3261 §18.1.1 sends
            // anything near the MTU over TCP), and a larger pool for the replies we copy.
            io_cfg.buffer_size = io_cfg.buffer_size.max(SIP_BUFFER);
            io_cfg.copy_buffers = io_cfg.copy_buffers.max(SIP_COPY_BUFFERS);
        }
        let (mut io, why) = AnyBackend::new(&io_cfg)?;
        let base = setup.layout.core_base(setup.core);
        let mut sockets = Vec::with_capacity(ports as usize);
        for off in 0..ports {
            let port = base + off as u16;
            let id = io
                .add_udp(SocketAddr::new(setup.media_ip, port))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("core {}: bind {}:{port}: {e}", setup.core, setup.media_ip),
                    )
                })?;
            sockets.push(id);
        }
        let mut sip_sockets = Vec::with_capacity(setup.sip.len());
        for &addr in &setup.sip {
            let id = io.add_udp(addr).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("core {}: SIP bind {addr}: {e}", setup.core),
                )
            })?;
            sip_sockets.push(id);
        }
        // Commands wake an idle core through the ring's eventfd (the DataEnd, which owns the
        // fd, lives as long as the backend: both are fields of the CoreLoop).
        io.add_wake_fd(end.command_wake_fd().as_raw_fd())?;
        let mut commands = Vec::with_capacity(POLL_BATCH);
        commands.clear();
        Ok(CoreLoop {
            idle: false,
            core: setup.core,
            io,
            end,
            layout: setup.layout,
            sockets: sockets.into_boxed_slice(),
            sip: (!sip_sockets.is_empty()).then(|| Box::new(SipPath::new())),
            sip_sockets: sip_sockets.into_boxed_slice(),
            table: SessionTable::new(u32::from(setup.layout.sessions_per_core)),
            counters: Counters::default(),
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .map_err(|e| io::Error::other(format!("histogram: {e}")))?,
            commands,
            uring_unavailable: why.map(|w| w.to_string()),
        })
    }

    /// Where SIP listener `listener` is bound.
    pub fn sip_addr(&self, listener: usize) -> Option<SocketAddr> {
        let id = *self.sip_sockets.get(listener)?;
        self.io.local_addr(id).ok()
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        self.io.kind()
    }

    /// Why io_uring is not in use, when it was wanted.
    pub fn uring_unavailable(&self) -> Option<&str> {
        self.uring_unavailable.as_deref()
    }

    /// Runs until `stop` is set. Allocates nothing and takes no lock per packet.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut next_scan = Instant::now() + TIMER_SCAN;
        while !stop.load(Ordering::Relaxed) {
            let wait = if self.idle {
                next_scan.saturating_duration_since(Instant::now())
            } else {
                IDLE_POLL
            };
            self.turn(wait, &mut next_scan)?;
        }
        Ok(())
    }

    /// One loop turn: commands, then the backend (waiting at most `wait`; after a turn with
    /// nothing to do a command also ends the wait — the command ring's eventfd wakes it),
    /// then every received datagram, then timers when `next_scan` has passed.
    /// [`CoreLoop::run`] is this in a loop, waiting [`IDLE_POLL`] while busy and until the
    /// next timer scan when idle; tests drive it turn by turn.
    pub fn turn(&mut self, wait: Duration, next_scan: &mut Instant) -> io::Result<()> {
        self.counters.loop_turns += 1;
        let commands = self.poll_commands();
        let mut sleeping = false;
        let mut timeout = wait;
        if self.idle && commands == 0 && !wait.is_zero() {
            // Announce the sleep first: a command pushed after this writes the eventfd.
            if self.end.prepare_sleep() {
                sleeping = true;
            } else {
                timeout = Duration::ZERO;
            }
        }
        let polled = self.io.poll(Some(timeout));
        if sleeping {
            self.end.finish_sleep()?;
        }
        polled?;
        let now = Instant::now();
        let mut forwarded = 0u64;
        let mut received = 0u32;
        while let Some(rx) = self.io.next_rx() {
            received += 1;
            forwarded += u64::from(self.on_packet(now, rx));
        }
        self.idle = received == 0 && commands == 0;
        if forwarded > 0 {
            // Receive (harvest) → send queued; the sends are submitted at the start of
            // the next poll, with nothing in between.
            let ns = now.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
            self.latency.saturating_record_n(ns.max(1), forwarded);
        }
        if now >= *next_scan {
            *next_scan = now + TIMER_SCAN;
            self.scan_timeouts(now);
        }
        Ok(())
    }

    /// Handles one datagram; returns whether it was forwarded.
    #[inline]
    fn on_packet(&mut self, now: Instant, rx: RxPacket) -> bool {
        if rx.socket.index() as usize >= self.sockets.len() {
            self.on_sip(now, rx);
            return false;
        }
        let role = PortLayout::role_of_offset(self.core, rx.socket.index());
        let Some(sess) = self.table.get_mut(role.slot) else {
            self.counters.drop_no_session += 1;
            self.io.release(rx.buf);
            return false;
        };
        let bytes = self.io.payload(rx.buf, rx.len);
        let from_leg = role.leg;
        let to_leg = 1 - from_leg;
        let is_rtcp = role.rtcp || rtp::classify(bytes) == rtp::Kind::Rtcp;
        let leg = &mut sess.legs[from_leg];
        let verdict = if role.rtcp {
            leg.on_rtcp_port_packet(now, rx.peer, bytes)
        } else {
            leg.on_packet(now, rx.peer, bytes)
        };
        let session_id = sess.id;
        while let Some(ev) = sess.legs[from_leg].poll_event() {
            if let LegEvent::Dtmf(d) = ev {
                self.counters.dtmf_events += 1;
                let (event, end, volume, duration) = dtmf_fields(&d, sess.clock_hz[from_leg]);
                let e = Event::Dtmf(DtmfEvent {
                    session_id,
                    leg: if from_leg == 0 {
                        WireLeg::A
                    } else {
                        WireLeg::B
                    },
                    event,
                    duration_ms: duration,
                    end,
                    volume,
                });
                if self.end.emit(0, &e).is_err() {
                    self.counters.events_dropped += 1;
                }
            }
        }
        // Re-borrow: emitting events needed `self.end`.
        let Some(sess) = self.table.get_mut(role.slot) else {
            self.io.release(rx.buf);
            return false;
        };
        match verdict {
            Verdict::Drop(reason) => {
                let c = &mut self.counters;
                match reason {
                    DropReason::Malformed(_) => c.drop_malformed += 1,
                    DropReason::NotMedia(_) => c.drop_not_media += 1,
                    DropReason::Stranger => c.drop_stranger += 1,
                    DropReason::NotYetLatched => c.drop_not_latched += 1,
                }
                self.io.release(rx.buf);
                false
            }
            Verdict::Forward => {
                if sess.hold[to_leg] {
                    self.counters.drop_held += 1;
                    self.io.release(rx.buf);
                    return false;
                }
                let other = &sess.legs[to_leg];
                let rtp_off = role.slot * u32::from(PORTS_PER_SESSION) + 2 * to_leg as u32;
                let (dest, off) = if !is_rtcp || sess.rtcp_mux[to_leg] {
                    (other.send_addr(), rtp_off)
                } else {
                    let d = other.rtcp_latched().or_else(|| {
                        other.send_addr().map(|mut a| {
                            a.set_port(a.port().wrapping_add(1));
                            a
                        })
                    });
                    (d, rtp_off + 1)
                };
                let Some(dest) = dest else {
                    self.counters.drop_no_destination += 1;
                    self.io.release(rx.buf);
                    return false;
                };
                let from = self.sockets[off as usize];
                match self.io.send(from, dest, rx.buf, rx.len) {
                    Ok(()) => {
                        if is_rtcp {
                            self.counters.relayed_rtcp += 1;
                        } else {
                            self.counters.relayed_rtp += 1;
                        }
                        true
                    }
                    Err(_) => {
                        self.counters.tx_refused += 1;
                        false
                    }
                }
            }
        }
    }

    /// A datagram on a SIP listener: answered here, or handed to the control plane.
    fn on_sip(&mut self, now: Instant, rx: RxPacket) {
        let listener = rx.socket.index() - self.sockets.len() as u32;
        let Some(sip) = self.sip.as_deref_mut() else {
            self.io.release(rx.buf);
            return;
        };
        let bytes = self.io.payload(rx.buf, rx.len);
        match sip.on_datagram(now, rx.peer, bytes) {
            Decision::Keepalive | Decision::Absorbed => {}
            Decision::Reply => {
                if self.io.send_copy(rx.socket, rx.peer, sip.reply()).is_err() {
                    self.counters.tx_refused += 1;
                }
            }
            Decision::Resend { slot } => {
                if self
                    .io
                    .send_copy(rx.socket, rx.peer, sip.stored(slot))
                    .is_err()
                {
                    self.counters.tx_refused += 1;
                }
            }
            Decision::Up { key } => {
                match self.end.emit_raw_sip_up(0, listener, rx.peer, bytes) {
                    Ok(()) => sip.sent_up(key, now),
                    // Ring full or too large: counted; the peer retransmits.
                    Err(_) => self.counters.events_dropped += 1,
                }
            }
        }
        self.io.release(rx.buf);
    }

    /// A RawSipDown fragment: when the message is whole, send it from its listener.
    fn on_sip_down(&mut self, meta: Meta, frag: &RawSipFragment) {
        let Some(sip) = self.sip.as_deref_mut() else {
            if frag.frag_index == 0 {
                self.fail(
                    meta.seq,
                    msg_type::RAW_SIP_DOWN,
                    0,
                    FailReason::UnknownListener,
                );
            }
            return;
        };
        let Some((listener, to, bytes)) = sip.on_down(Instant::now(), meta, frag) else {
            return;
        };
        let Some(&socket) = self.sip_sockets.get(listener as usize) else {
            self.counters.tx_refused += 1;
            return;
        };
        if self.io.send_copy(socket, to, bytes).is_err() {
            self.counters.tx_refused += 1;
        }
    }

    fn scan_timeouts(&mut self, now: Instant) {
        let mut fired: [(u64, usize); 16] = [(0, 0); 16];
        let mut n = 0;
        for (_, s) in self.table.iter_mut() {
            for leg in 0..2 {
                if !s.timeout_enabled[leg] {
                    continue;
                }
                if let Some(at) = s.timed_out_at[leg] {
                    // Traffic since the report re-arms the timeout.
                    if s.legs[leg].last_activity().is_some_and(|a| a > at) {
                        s.timed_out_at[leg] = None;
                    }
                    continue;
                }
                if s.legs[leg].is_expired(now) && n < fired.len() {
                    s.timed_out_at[leg] = Some(now);
                    fired[n] = (s.id, leg);
                    n += 1;
                }
            }
        }
        for &(session_id, leg) in &fired[..n] {
            self.counters.timeouts += 1;
            let leg = if leg == 0 { WireLeg::A } else { WireLeg::B };
            if self
                .end
                .emit(0, &Event::SessionTimeout { session_id, leg })
                .is_err()
            {
                self.counters.events_dropped += 1;
            }
        }
    }

    /// Runs the commands waiting on the ring (at most [`POLL_BATCH`]); returns how many.
    fn poll_commands(&mut self) -> usize {
        let mut batch = std::mem::take(&mut self.commands);
        batch.clear();
        self.end
            .poll_commands(POLL_BATCH, |m, c| batch.push((m, c)));
        for (meta, cmd) in batch.iter().copied() {
            // A record we cannot decode is counted by shmq; it names no session to answer.
            if let Ok(c) = cmd {
                self.on_command(meta, c);
            }
        }
        let n = batch.len();
        self.commands = batch;
        n
    }

    fn emit(&mut self, seq: u64, e: &Event) {
        if self.end.emit(seq, e).is_err() {
            self.counters.events_dropped += 1;
        }
    }

    fn fail(&mut self, seq: u64, command_type: u16, session_id: u64, reason: FailReason) {
        self.emit(
            seq,
            &Event::CommandFailed {
                command_type,
                session_id,
                reason,
            },
        );
    }

    fn on_command(&mut self, meta: Meta, cmd: Command) {
        let seq = meta.seq;
        match cmd {
            Command::Ping { echo } => self.emit(seq, &Event::Pong { echo }),
            Command::CreateSession(c) => self.create(seq, &c),
            Command::UpdateSession(u) => self.update(seq, &u),
            Command::DeleteSession { session_id } => match self.table.remove(session_id) {
                Some((_, mut s)) => {
                    for l in &mut s.legs {
                        l.flush_dtmf();
                    }
                    // The final counters go with the acknowledgement, for CDRs.
                    let st = SessionStats {
                        session_id,
                        legs: [s.leg_stats(0), s.leg_stats(1)],
                    };
                    self.emit(seq, &Event::SessionStats(st));
                }
                None => self.fail(
                    seq,
                    msg_type::DELETE_SESSION,
                    session_id,
                    FailReason::UnknownSession,
                ),
            },
            Command::QueryStats { session_id } => match self.table.slot_of(session_id) {
                Some(slot) => {
                    if let Some(s) = self.table.get(slot) {
                        let st = SessionStats {
                            session_id,
                            legs: [s.leg_stats(0), s.leg_stats(1)],
                        };
                        self.emit(seq, &Event::SessionStats(st));
                    }
                }
                None => self.fail(
                    seq,
                    msg_type::QUERY_STATS,
                    session_id,
                    FailReason::UnknownSession,
                ),
            },
            Command::ListSessions { cursor } => self.list(seq, cursor),
            Command::QueryCoreStats { .. } => {
                let st = self.core_stats();
                self.emit(seq, &Event::CoreStats(st));
            }
            Command::RawSipDown(f) => self.on_sip_down(meta, &f),
        }
    }

    fn create(&mut self, seq: u64, c: &CreateSession) {
        let fail = |r| (msg_type::CREATE_SESSION, c.session_id, r);
        // A requested port must be this core's leg-A RTP port of a free slot, and leg B's
        // must then be the one beside it (or 0).
        let want = match c.legs[0].local_port {
            0 => None,
            p => match self.layout.role(p) {
                Some(r) if r.core == self.core && r.leg == 0 && !r.rtcp => Some(r.slot),
                _ => {
                    let (t, id, r) = fail(FailReason::NoPortAvailable);
                    return self.fail(seq, t, id, r);
                }
            },
        };
        if c.legs[1].local_port != 0 {
            let ok = want.is_some_and(|slot| {
                self.layout.rtp_port(self.core, slot, 1) == c.legs[1].local_port
            });
            if !ok {
                let (t, id, r) = fail(FailReason::NoPortAvailable);
                return self.fail(seq, t, id, r);
            }
        }
        let session = Session::new(Instant::now(), c.session_id, &c.legs);
        match self.table.insert(session, want) {
            Ok(slot) => {
                let ports = [
                    self.layout.rtp_port(self.core, slot, 0),
                    self.layout.rtp_port(self.core, slot, 1),
                ];
                self.emit(
                    seq,
                    &Event::SessionCreated {
                        session_id: c.session_id,
                        local_ports: ports,
                    },
                );
            }
            Err(e) => {
                let reason = match e {
                    InsertError::Exists => FailReason::SessionExists,
                    InsertError::Full => FailReason::TableFull,
                    InsertError::SlotUnavailable => FailReason::NoPortAvailable,
                };
                let (t, id, r) = fail(reason);
                self.fail(seq, t, id, r);
            }
        }
    }

    fn update(&mut self, seq: u64, u: &UpdateSession) {
        let Some(slot) = self.table.slot_of(u.session_id) else {
            return self.fail(
                seq,
                msg_type::UPDATE_SESSION,
                u.session_id,
                FailReason::UnknownSession,
            );
        };
        let Some(s) = self.table.get_mut(slot) else {
            return;
        };
        for (i, lu) in u.legs.iter().enumerate() {
            if let Some(r) = lu.remote {
                s.legs[i].set_expected_peer(Some(r));
            }
            s.hold[i] = lu.hold;
            if let Some(p) = &lu.payload_types {
                if let Some(hz) = p.as_slice().iter().map(|t| t.clock_hz).find(|&h| h > 0) {
                    s.clock_hz[i] = hz;
                }
            }
        }
        let ports = [
            self.layout.rtp_port(self.core, slot, 0),
            self.layout.rtp_port(self.core, slot, 1),
        ];
        self.emit(
            seq,
            &Event::SessionCreated {
                session_id: u.session_id,
                local_ports: ports,
            },
        );
    }

    fn list(&mut self, seq: u64, cursor: u64) {
        let from = cursor.min(u64::from(u32::MAX)) as u32;
        let mut page: [Option<SessionSummary>; LIST_PAGE] = [None; LIST_PAGE];
        let mut slots = [0u32; LIST_PAGE];
        let mut n = 0;
        let mut more = false;
        for (slot, s) in self.table.iter_from(from) {
            if n == LIST_PAGE {
                more = true;
                break;
            }
            page[n] = Some(SessionSummary {
                session_id: s.id,
                local_ports: [
                    self.layout.rtp_port(self.core, slot, 0),
                    self.layout.rtp_port(self.core, slot, 1),
                ],
                remotes: [s.legs[0].send_addr(), s.legs[1].send_addr()],
            });
            slots[n] = slot;
            n += 1;
        }
        for i in 0..n {
            let last = i + 1 == n;
            self.emit(
                seq,
                &Event::SessionInfo(SessionInfo {
                    next_cursor: u64::from(slots[i]) + 1,
                    end_of_list: last && !more,
                    session: page[i],
                }),
            );
        }
        if n == 0 {
            self.emit(
                seq,
                &Event::SessionInfo(SessionInfo {
                    next_cursor: cursor,
                    end_of_list: true,
                    session: None,
                }),
            );
        }
    }

    /// The core's counters now.
    pub fn core_stats(&self) -> CoreStats {
        let io = self.io.stats();
        let c = &self.counters;
        let h = &self.latency;
        let sc = self.sip.as_ref().map(|s| s.counters).unwrap_or_default();
        CoreStats {
            sessions: self.table.len(),
            session_capacity: self.table.capacity(),
            backend: match self.io.kind() {
                BackendKind::Uring => 0,
                BackendKind::Mio => 1,
            },
            loop_turns: c.loop_turns,
            rx_packets: io.rx_packets,
            tx_packets: io.tx_packets,
            relayed_rtp: c.relayed_rtp,
            relayed_rtcp: c.relayed_rtcp,
            drop_malformed: c.drop_malformed,
            drop_stranger: c.drop_stranger,
            drop_no_session: c.drop_no_session,
            drop_not_latched: c.drop_not_latched,
            drop_no_destination: c.drop_no_destination,
            drop_held: c.drop_held,
            drop_not_media: c.drop_not_media,
            tx_errors: c.tx_refused + io.tx_errors,
            syscalls: io.syscalls,
            rx_nobufs: io.rx_nobufs,
            events_dropped: c.events_dropped,
            timeouts: c.timeouts,
            dtmf_events: c.dtmf_events,
            latency_p50_ns: h.value_at_quantile(0.5),
            latency_p99_ns: h.value_at_quantile(0.99),
            latency_p999_ns: h.value_at_quantile(0.999),
            latency_max_ns: h.max(),
            latency_count: h.len(),
            sip_received: sc.received,
            sip_up: sc.up,
            sip_absorbed: sc.absorbed,
            sip_local: sc.local,
        }
    }
}

/// (event code, end, volume, duration ms) of a detector event.
fn dtmf_fields(d: &rtp::DtmfEvent, clock_hz: u32) -> (u8, bool, u8, u32) {
    match *d {
        rtp::DtmfEvent::Start { tone, volume, .. } => (tone.code(), false, volume, 0),
        rtp::DtmfEvent::End {
            tone,
            volume,
            duration,
            ..
        } => {
            let ms = u64::from(duration) * 1000 / u64::from(clock_hz.max(1));
            (tone.code(), true, volume, ms as u32)
        }
    }
}
