//! The control plane's handle on the dataplane's media sessions.
//!
//! One thread per dataplane core owns that core's [`ControlEnd`]: it sends queued commands,
//! reads events, hands each reply to the caller waiting on its sequence number, and keeps
//! unsolicited events (media timeouts, DTMF) in a bounded log. Callers block with a timeout;
//! a dataplane that stops answering is an error, never a hang.
//!
//! Session ids are ours. After a restart, [`MediaPlane::attach`] lists every live session
//! on every core, so the control plane knows what the dataplane kept running while it was
//! away, and new ids continue above the highest one found.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use shmq::schema::{
    CoreStats, CreateSession, FailReason, Leg as WireLeg, LegSpec, LegUpdate, SessionStats,
    SessionSummary, UpdateSession,
};
use shmq::{Command, Control, ControlEnd, Event, RegionError};

/// How long a request waits for the dataplane's answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Unsolicited events kept for the API.
pub const EVENT_LOG_LEN: usize = 4096;

/// Why a media request failed.
#[derive(Debug)]
pub enum MediaError {
    /// The dataplane refused it.
    Refused(FailReason),
    /// No answer within [`REPLY_TIMEOUT`].
    Timeout,
    /// The command ring was full (back-pressure) or the command could not be encoded.
    Send(String),
    /// Unknown session id (not created by this control plane nor found at attach).
    UnknownSession(u64),
    /// The dataplane answered with something unexpected.
    Protocol(String),
    /// Every core is full.
    NoCapacity,
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaError::Refused(r) => write!(f, "dataplane refused: {r:?}"),
            MediaError::Timeout => write!(f, "dataplane did not answer within {REPLY_TIMEOUT:?}"),
            MediaError::Send(e) => write!(f, "cannot send to dataplane: {e}"),
            MediaError::UnknownSession(id) => write!(f, "unknown session {id}"),
            MediaError::Protocol(e) => write!(f, "unexpected dataplane answer: {e}"),
            MediaError::NoCapacity => write!(f, "every dataplane core is full"),
        }
    }
}

impl std::error::Error for MediaError {}

/// A session the control plane knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRecord {
    /// Our id.
    pub id: u64,
    /// Owning core.
    pub core: u16,
    /// Local RTP ports of leg A and leg B.
    pub ports: [u16; 2],
    /// When we created it (or found it at attach).
    pub since: SystemTime,
    /// Found alive in the dataplane at attach rather than created by this process.
    pub recovered: bool,
}

/// An unsolicited event from the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncEvent {
    /// When the control plane read it.
    pub at: SystemTime,
    /// Core it came from.
    pub core: u16,
    /// The event.
    pub event: Event,
}

struct Pending {
    tx: Sender<Event>,
}

struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    events: Mutex<VecDeque<AsyncEvent>>,
    events_total: AtomicU64,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder cannot leave these maps half-updated in a way that matters more
    // than losing the control plane's view; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The dataplane's media sessions, as seen from the control plane.
#[derive(Debug)]
pub struct MediaPlane {
    shared: Arc<SharedHandle>,
    outboxes: Vec<Sender<(u64, Command)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    sessions: Mutex<HashMap<u64, SessionRecord>>,
    next_seq: AtomicU64,
    next_id: AtomicU64,
    cores: u16,
    generation: u64,
}

/// Debug-printable wrapper of the shared state.
struct SharedHandle(Shared);

impl std::fmt::Debug for SharedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("pending", &lock(&self.0.pending).len())
            .field("events", &lock(&self.0.events).len())
            .finish()
    }
}

impl MediaPlane {
    /// Connects to the dataplane's control socket (retrying until `wait` passes, so the two
    /// processes may start in any order), attaches to region `name`, starts one thread per
    /// core and recovers the live sessions.
    pub fn attach(name: &str, socket: &Path, wait: Duration) -> Result<MediaPlane, String> {
        let deadline = Instant::now() + wait;
        let control = loop {
            let tried = UnixStream::connect(socket)
                .map_err(|e| format!("connect {}: {e}", socket.display()))
                .and_then(|s| {
                    s.set_read_timeout(Some(Duration::from_secs(2)))
                        .map_err(|e| e.to_string())?;
                    Control::attach(name, Some(&s)).map_err(|e| match e {
                        RegionError::ControlAttached { pid } => format!(
                            "another control plane (pid {pid}) is attached to /dev/shm/{name}"
                        ),
                        e => format!("attach /dev/shm/{name}: {e}"),
                    })
                });
            match tried {
                Ok(c) => break c,
                Err(e) if e.starts_with("another control plane") => return Err(e),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("dataplane not reachable: {e}"))
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        };
        let info = control.info();
        let cores = info.config.cores;
        let shared = Arc::new(SharedHandle(Shared {
            pending: Mutex::new(HashMap::new()),
            events: Mutex::new(VecDeque::with_capacity(EVENT_LOG_LEN)),
            events_total: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }));
        let mut outboxes = Vec::with_capacity(usize::from(cores));
        let mut threads = Vec::with_capacity(usize::from(cores));
        for core in 0..cores {
            let end = control
                .control_end(core)
                .ok_or_else(|| format!("ring pair of core {core} is taken"))?;
            let (tx, rx) = crossbeam_channel::bounded::<(u64, Command)>(1024);
            let sh = Arc::clone(&shared);
            let h = thread::Builder::new()
                .name(format!("cp-core-{core}"))
                .spawn(move || core_thread(end, &rx, &sh.0))
                .map_err(|e| format!("spawn: {e}"))?;
            outboxes.push(tx);
            threads.push(h);
        }
        // The ends keep the control seat; the Control handle itself may go.
        drop(control);
        let plane = MediaPlane {
            shared,
            outboxes,
            threads: Mutex::new(threads),
            sessions: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
            cores,
            generation: info.generation,
        };
        plane
            .recover()
            .map_err(|e| format!("listing live sessions: {e}"))?;
        Ok(plane)
    }

    /// Dataplane cores.
    pub fn cores(&self) -> u16 {
        self.cores
    }

    /// The region generation we attached to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn recover(&self) -> Result<(), MediaError> {
        let now = SystemTime::now();
        let mut max_id = 0;
        let mut found = HashMap::new();
        for core in 0..self.cores {
            for s in self.list_core(core)? {
                max_id = max_id.max(s.session_id);
                found.insert(
                    s.session_id,
                    SessionRecord {
                        id: s.session_id,
                        core,
                        ports: s.local_ports,
                        since: now,
                        recovered: true,
                    },
                );
            }
        }
        // Ids continue above anything alive, and above the clock-derived floor so that ids
        // of sessions deleted before a restart are not handed out again soon.
        let floor = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() << 20);
        self.next_id
            .store(max_id.max(floor).saturating_add(1), Ordering::Relaxed);
        *lock(&self.sessions) = found;
        Ok(())
    }

    /// Sends `cmd` to `core` and collects its answer (several records for a list).
    fn request(&self, core: u16, cmd: Command) -> Result<Vec<Event>, MediaError> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::unbounded();
        lock(&self.shared.0.pending).insert(seq, Pending { tx });
        let outbox = self
            .outboxes
            .get(usize::from(core))
            .ok_or_else(|| MediaError::Protocol(format!("no core {core}")))?;
        if outbox.send((seq, cmd)).is_err() {
            lock(&self.shared.0.pending).remove(&seq);
            return Err(MediaError::Send("core thread gone".into()));
        }
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Event::SessionInfo(i)) if !i.end_of_list => out.push(Event::SessionInfo(i)),
                Ok(e) => {
                    out.push(e);
                    lock(&self.shared.0.pending).remove(&seq);
                    return Ok(out);
                }
                Err(_) => {
                    lock(&self.shared.0.pending).remove(&seq);
                    return Err(MediaError::Timeout);
                }
            }
        }
    }

    fn single(&self, core: u16, cmd: Command) -> Result<Event, MediaError> {
        let ty = cmd.msg_type();
        let mut evs = self.request(core, cmd)?;
        match evs.pop() {
            Some(Event::CommandFailed { reason, .. }) => Err(MediaError::Refused(reason)),
            Some(Event::Pong { echo: u64::MAX }) => Err(MediaError::Send(format!(
                "command ring of core {core} is full (type {ty:#06x})"
            ))),
            Some(e) => Ok(e),
            None => Err(MediaError::Protocol("empty answer".into())),
        }
    }

    /// The core with the fewest sessions we know of, then the next ones.
    fn placement(&self) -> Vec<u16> {
        let mut load = vec![0u32; usize::from(self.cores)];
        for r in lock(&self.sessions).values() {
            if let Some(l) = load.get_mut(usize::from(r.core)) {
                *l += 1;
            }
        }
        let mut order: Vec<u16> = (0..self.cores).collect();
        order.sort_by_key(|&c| (load[usize::from(c)], c));
        order
    }

    /// Creates a session on the least-loaded core (the next one if that core is full).
    pub fn create(&self, legs: [LegSpec; 2]) -> Result<SessionRecord, MediaError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cmd = Command::CreateSession(CreateSession {
            session_id: id,
            legs,
        });
        for core in self.placement() {
            match self.single(core, cmd) {
                Ok(Event::SessionCreated {
                    session_id,
                    local_ports,
                }) if session_id == id => {
                    let rec = SessionRecord {
                        id,
                        core,
                        ports: local_ports,
                        since: SystemTime::now(),
                        recovered: false,
                    };
                    lock(&self.sessions).insert(id, rec);
                    return Ok(rec);
                }
                Ok(e) => return Err(MediaError::Protocol(format!("{e:?}"))),
                Err(MediaError::Refused(FailReason::TableFull | FailReason::NoPortAvailable)) => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        Err(MediaError::NoCapacity)
    }

    fn core_of(&self, id: u64) -> Result<u16, MediaError> {
        lock(&self.sessions)
            .get(&id)
            .map(|r| r.core)
            .ok_or(MediaError::UnknownSession(id))
    }

    /// Changes remotes / hold / payload types of a live session.
    pub fn update(&self, id: u64, legs: [LegUpdate; 2]) -> Result<(), MediaError> {
        let core = self.core_of(id)?;
        let cmd = Command::UpdateSession(UpdateSession {
            session_id: id,
            legs,
        });
        match self.single(core, cmd)? {
            Event::SessionCreated { .. } => Ok(()),
            e => Err(MediaError::Protocol(format!("{e:?}"))),
        }
    }

    /// Deletes a session; returns its final counters.
    pub fn delete(&self, id: u64) -> Result<SessionStats, MediaError> {
        let core = self.core_of(id)?;
        let r = self.single(core, Command::DeleteSession { session_id: id });
        if matches!(
            r,
            Ok(_) | Err(MediaError::Refused(FailReason::UnknownSession))
        ) {
            lock(&self.sessions).remove(&id);
        }
        match r? {
            Event::SessionStats(s) => Ok(s),
            e => Err(MediaError::Protocol(format!("{e:?}"))),
        }
    }

    /// A session's counters now.
    pub fn stats(&self, id: u64) -> Result<SessionStats, MediaError> {
        let core = self.core_of(id)?;
        match self.single(core, Command::QueryStats { session_id: id })? {
            Event::SessionStats(s) => Ok(s),
            e => Err(MediaError::Protocol(format!("{e:?}"))),
        }
    }

    /// The sessions we know, by id.
    pub fn known(&self) -> Vec<SessionRecord> {
        let mut v: Vec<_> = lock(&self.sessions).values().copied().collect();
        v.sort_by_key(|r| r.id);
        v
    }

    fn list_core(&self, core: u16) -> Result<Vec<SessionSummary>, MediaError> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let evs = self.request(core, Command::ListSessions { cursor })?;
            let mut end = evs.is_empty();
            for e in evs {
                match e {
                    Event::SessionInfo(i) => {
                        if let Some(s) = i.session {
                            out.push(s);
                        }
                        cursor = i.next_cursor;
                        end |= i.end_of_list;
                    }
                    Event::CommandFailed { reason, .. } => return Err(MediaError::Refused(reason)),
                    e => return Err(MediaError::Protocol(format!("{e:?}"))),
                }
            }
            if end {
                return Ok(out);
            }
        }
    }

    /// Every session the dataplane holds now, with its core (asks every core).
    pub fn list_live(&self) -> Result<Vec<(u16, SessionSummary)>, MediaError> {
        let mut v = Vec::new();
        for core in 0..self.cores {
            v.extend(self.list_core(core)?.into_iter().map(|s| (core, s)));
        }
        Ok(v)
    }

    /// Every core's counters.
    pub fn core_stats(&self) -> Result<Vec<CoreStats>, MediaError> {
        (0..self.cores)
            .map(
                |core| match self.single(core, Command::QueryCoreStats { echo: 0 })? {
                    Event::CoreStats(s) => Ok(s),
                    e => Err(MediaError::Protocol(format!("{e:?}"))),
                },
            )
            .collect()
    }

    /// Round trip to every core.
    pub fn ping(&self) -> Result<(), MediaError> {
        for core in 0..self.cores {
            match self.single(core, Command::Ping { echo: 7 })? {
                Event::Pong { echo: 7 } => {}
                e => return Err(MediaError::Protocol(format!("{e:?}"))),
            }
        }
        Ok(())
    }

    /// Unsolicited events with index ≥ `since` (indices count from attach); returns them
    /// and the index to ask from next time.
    pub fn events_since(&self, since: u64) -> (Vec<AsyncEvent>, u64) {
        let log = lock(&self.shared.0.events);
        let total = self.shared.0.events_total.load(Ordering::Acquire);
        let first = total - log.len() as u64;
        let skip = since.saturating_sub(first).min(log.len() as u64) as usize;
        (log.iter().skip(skip).copied().collect(), total)
    }

    /// Stops the core threads (the dataplane keeps every session).
    pub fn shutdown(&self) {
        self.shared.0.stop.store(true, Ordering::Relaxed);
        for h in lock(&self.threads).drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for MediaPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn core_thread(mut end: ControlEnd, outbox: &Receiver<(u64, Command)>, sh: &Shared) {
    let core = end.core();
    while !sh.stop.load(Ordering::Relaxed) {
        let mut busy = false;
        while let Ok((seq, cmd)) = outbox.try_recv() {
            busy = true;
            if let Err(e) = end.send(seq, &cmd) {
                eprintln!("trunkline-controlplane: core {core}: send: {e}");
                // Tell the waiter now rather than let it time out.
                if let Some(p) = lock(&sh.pending).get(&seq) {
                    let _ = p.tx.send(Event::Pong { echo: u64::MAX });
                }
            }
        }
        let n = end.poll_events(shmq::POLL_BATCH, |meta, ev| {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    eprintln!("trunkline-controlplane: core {core}: undecodable event: {e:?}");
                    return;
                }
            };
            if meta.seq == 0 {
                log_async(sh, core, ev);
                return;
            }
            if let Some(p) = lock(&sh.pending).get(&meta.seq) {
                let _ = p.tx.send(ev);
            }
        });
        busy |= n > 0;
        if !busy {
            // Commands from API threads arrive on the channel: do not sleep long on the
            // event ring alone.
            let _ = end.wait_events(Duration::from_millis(1));
        }
    }
}

fn log_async(sh: &Shared, core: u16, event: Event) {
    match event {
        Event::SessionTimeout { session_id, leg } => eprintln!(
            "trunkline-controlplane: session {session_id}: no media on leg {} (core {core})",
            if leg == WireLeg::A { "A" } else { "B" }
        ),
        Event::Dtmf(d) if d.end => eprintln!(
            "trunkline-controlplane: session {}: DTMF event {} ({} ms)",
            d.session_id, d.event, d.duration_ms
        ),
        _ => {}
    }
    let mut log = lock(&sh.events);
    if log.len() == EVENT_LOG_LEN {
        log.pop_front();
    }
    log.push_back(AsyncEvent {
        at: SystemTime::now(),
        core,
        event,
    });
    // Under the lock, so readers see the log and its count agree.
    sh.events_total.fetch_add(1, Ordering::Release);
    drop(log);
}

/// A leg spec with the defaults most callers want: PCMU/PCMA at 8 kHz, no mux.
pub fn leg_spec(
    remote: Option<SocketAddr>,
    payload_types: &[(u8, u32)],
    telephone_event_pt: Option<u8>,
    rtcp_mux: bool,
    inactivity_timeout_ms: u32,
) -> Option<LegSpec> {
    let list: Vec<shmq::schema::PayloadType> = payload_types
        .iter()
        .map(|&(pt, clock_hz)| shmq::schema::PayloadType { pt, clock_hz })
        .collect();
    Some(LegSpec {
        local_port: 0,
        remote,
        payload_types: shmq::schema::PayloadTypes::new(&list)?,
        telephone_event_pt,
        rtcp_mux,
        inactivity_timeout_ms,
    })
}
