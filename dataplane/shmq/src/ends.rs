//! The typed API: [`Dataplane`]/[`DataEnd`] on the dataplane side, [`Control`]/[`ControlEnd`]
//! on the control-plane side, and the Unix-socket handoff that carries the eventfds.
//!
//! Wake-up protocol: each ring direction has an eventfd, created by the dataplane. A consumer
//! that finds its ring empty and wants to block sets the ring's `consumer_sleeping` flag,
//! fences, and re-checks the tail; only if still empty does it block on the eventfd (poll).
//! A producer publishes its tail, fences, and reads the flag; only if it is set does it clear
//! it (compare-exchange, so one wake per sleep) and write the eventfd. In the busy case no
//! side makes a syscall. The control plane gets the eventfds over a Unix stream socket with
//! SCM_RIGHTS ([`Dataplane::handoff`] / [`Control::attach`]), once per attach, so a restarted
//! control plane simply connects again.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use crate::region::{Direction, Region, RegionConfig, RegionError, RegionInfo, MAGIC, VERSION};
use crate::ring::{Consumer, Producer, Record, RingCounters, RingFull, Wake, EMPTY_RECORD};
use crate::schema::{
    encode_raw_sip, Command, DecodeError, Event, Meta, SipDirection, TooLarge, MAX_SIP_FRAGMENTS,
};
use crate::sys;

/// Records a `poll_*` call handles at most.
pub const POLL_BATCH: usize = 64;

/// Why a send did not happen (or, for `Wake`, happened without a wake-up).
#[derive(Debug)]
pub enum SendError {
    /// The ring had no room: nothing was queued. Counted in shared memory.
    Full(RingFull),
    /// The message cannot fit the ring or the schema.
    TooLarge(TooLarge),
    /// The records were queued but writing the consumer's eventfd failed.
    Wake(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(e) => e.fmt(f),
            SendError::TooLarge(e) => e.fmt(f),
            SendError::Wake(e) => write!(f, "queued, but wake-up failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<RingFull> for SendError {
    fn from(e: RingFull) -> Self {
        SendError::Full(e)
    }
}

impl From<TooLarge> for SendError {
    fn from(e: TooLarge) -> Self {
        SendError::TooLarge(e)
    }
}

/// The two eventfds of one core: signalled when commands (resp. events) arrive for a
/// sleeping consumer.
#[derive(Debug, Clone)]
struct CoreWakers {
    commands: Arc<OwnedFd>,
    events: Arc<OwnedFd>,
}

fn signal(wake: Wake, fd: Option<&OwnedFd>) -> Result<(), SendError> {
    match (wake, fd) {
        (Wake::Needed, Some(fd)) => sys::eventfd_signal(fd.as_fd()).map_err(SendError::Wake),
        _ => Ok(()),
    }
}

/// Blocks until `consumer` has records or `timeout` passes, using the sleep protocol.
/// Without an eventfd it sleeps at most 1 ms and re-checks (degraded mode).
fn wait(consumer: &mut Consumer, fd: Option<&OwnedFd>, timeout: Duration) -> io::Result<bool> {
    if consumer.available() > 0 {
        return Ok(true);
    }
    let Some(fd) = fd else {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        return Ok(consumer.available() > 0);
    };
    if !consumer.prepare_sleep() {
        return Ok(true);
    }
    let polled = sys::poll_readable(fd.as_fd(), timeout);
    consumer.finish_sleep();
    sys::eventfd_drain(fd.as_fd())?;
    polled?;
    Ok(consumer.available() > 0)
}

/// Peeks up to `max` records, decodes each with `decode`, hands them to `f`, commits.
fn poll_with<M>(
    consumer: &mut Consumer,
    buf: &mut [Record],
    max: usize,
    decode: fn(&Record) -> Result<(Meta, M), DecodeError>,
    mut f: impl FnMut(Meta, Result<M, DecodeError>),
) -> usize {
    let max = max.min(buf.len());
    let n = consumer.peek_batch(&mut buf[..max]);
    for rec in &buf[..n] {
        match decode(rec) {
            Ok((meta, m)) => f(meta, Ok(m)),
            Err(e) => {
                consumer.count_decode_error();
                let h = crate::schema::read_header(rec);
                f(
                    Meta {
                        seq: h.seq,
                        core: h.core,
                    },
                    Err(e),
                );
            }
        }
    }
    consumer.commit(n);
    n
}

const HANDOFF_SIZE: usize = 32;

/// The dataplane's side: owns the region and the eventfds; hands out one [`DataEnd`] per core.
#[derive(Debug)]
pub struct Dataplane {
    region: Region,
    wakers: Vec<CoreWakers>,
}

impl Dataplane {
    /// Creates `/dev/shm/<name>` (replacing one left by a dead dataplane, with the next
    /// generation) and one eventfd per ring.
    pub fn create(name: &str, config: RegionConfig) -> Result<Dataplane, RegionError> {
        Self::with_region(Region::create_or_replace(name, config)?)
    }

    /// Creates the region in a memfd; the control plane gets it through [`Dataplane::handoff`].
    pub fn create_memfd(config: RegionConfig) -> Result<Dataplane, RegionError> {
        Self::with_region(Region::create_memfd(config)?)
    }

    fn with_region(region: Region) -> Result<Dataplane, RegionError> {
        let efd = || {
            sys::eventfd()
                .map(Arc::new)
                .map_err(|source| RegionError::Io {
                    op: "eventfd",
                    source,
                })
        };
        let wakers = (0..region.info().config.cores)
            .map(|_| {
                Ok(CoreWakers {
                    commands: efd()?,
                    events: efd()?,
                })
            })
            .collect::<Result<Vec<_>, RegionError>>()?;
        Ok(Dataplane { region, wakers })
    }

    /// The region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The end for `core`; `None` if out of range or already taken (and not yet dropped).
    pub fn data_end(&self, core: u16) -> Option<DataEnd> {
        let wakers = self.wakers.get(usize::from(core))?.clone();
        Some(DataEnd {
            core,
            commands: self.region.consumer(core, Direction::Commands)?,
            events: self.region.producer(core, Direction::Events)?,
            wakers,
            in_buf: vec![EMPTY_RECORD; POLL_BATCH].into_boxed_slice(),
            out_buf: vec![EMPTY_RECORD; MAX_SIP_FRAGMENTS].into_boxed_slice(),
        })
    }

    /// Sends the region descriptor and every eventfd to a control plane that connected to
    /// the dataplane's Unix socket. Called once per (re)attach.
    pub fn handoff(&self, sock: &UnixStream) -> Result<(), RegionError> {
        let info = self.region.info();
        let mut payload = [0u8; HANDOFF_SIZE];
        payload[0..8].copy_from_slice(&MAGIC.to_ne_bytes());
        payload[8..16].copy_from_slice(&info.generation.to_ne_bytes());
        payload[16..20].copy_from_slice(&u32::from(info.config.cores).to_ne_bytes());
        payload[20..24].copy_from_slice(&VERSION.to_ne_bytes());
        let mut fds: Vec<BorrowedFd<'_>> = vec![self.region.fd()];
        for w in &self.wakers {
            fds.push(w.commands.as_fd());
            fds.push(w.events.as_fd());
        }
        sys::send_with_fds(sock, &payload, &fds).map_err(|source| RegionError::Io {
            op: "send handoff",
            source,
        })
    }
}

/// One dataplane core's end: consumes commands, produces events. `Send`, not shared.
#[derive(Debug)]
pub struct DataEnd {
    core: u16,
    commands: Consumer,
    events: Producer,
    wakers: CoreWakers,
    in_buf: Box<[Record]>,
    out_buf: Box<[Record]>,
}

impl DataEnd {
    /// The core.
    pub fn core(&self) -> u16 {
        self.core
    }

    /// Handles up to `max` (≤ [`POLL_BATCH`]) waiting commands with `f`, without syscalls
    /// or allocation. Undecodable records reach `f` as `Err` and are counted in shared
    /// memory. Returns how many records were consumed.
    pub fn poll_commands(
        &mut self,
        max: usize,
        f: impl FnMut(Meta, Result<Command, DecodeError>),
    ) -> usize {
        poll_with(
            &mut self.commands,
            &mut self.in_buf,
            max,
            Command::decode,
            f,
        )
    }

    /// Queues one event (request id `seq`).
    pub fn emit(&mut self, seq: u64, event: &Event) -> Result<(), SendError> {
        event.encode(
            Meta {
                seq,
                core: self.core,
            },
            &mut self.out_buf[0],
        );
        let wake = self.events.push_batch(&self.out_buf[..1])?;
        signal(wake, Some(&self.wakers.events))
    }

    /// Queues received SIP bytes as RawSipUp fragments, all or nothing.
    pub fn emit_raw_sip_up(
        &mut self,
        seq: u64,
        listener: u32,
        source: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        let meta = Meta {
            seq,
            core: self.core,
        };
        let n = encode_raw_sip(
            SipDirection::Up,
            meta,
            listener,
            source,
            bytes,
            &mut self.out_buf,
        )?;
        if n > self.events.capacity() {
            return Err(SendError::TooLarge(TooLarge {
                len: bytes.len(),
                records_needed: n,
            }));
        }
        let wake = self.events.push_batch(&self.out_buf[..n])?;
        signal(wake, Some(&self.wakers.events))
    }

    /// The eventfd that becomes readable when commands arrive while this core sleeps:
    /// register it in the core's epoll/io_uring, bracketed by [`DataEnd::prepare_sleep`]
    /// and [`DataEnd::finish_sleep`].
    pub fn command_wake_fd(&self) -> BorrowedFd<'_> {
        self.wakers.commands.as_fd()
    }

    /// Announces the core is about to block; `false`: commands are waiting, do not block.
    pub fn prepare_sleep(&mut self) -> bool {
        self.commands.prepare_sleep()
    }

    /// Ends a sleep and resets the eventfd.
    pub fn finish_sleep(&mut self) -> io::Result<()> {
        self.commands.finish_sleep();
        sys::eventfd_drain(self.wakers.commands.as_fd()).map(|_| ())
    }

    /// Blocks until commands arrive or `timeout` passes (for a core with nothing else to
    /// wait on; a real core waits in its io backend instead).
    pub fn wait_commands(&mut self, timeout: Duration) -> io::Result<bool> {
        wait(&mut self.commands, Some(&self.wakers.commands), timeout)
    }

    /// Counters of the (commands, events) rings.
    pub fn counters(&self) -> (RingCounters, RingCounters) {
        (self.commands.counters(), self.events.counters())
    }
}

/// The control plane's attachment: holds the control seat, the region and (with a handoff)
/// the eventfds; hands out one [`ControlEnd`] per core.
#[derive(Debug)]
pub struct Control {
    seat: Arc<Seat>,
    wakers: Option<Vec<CoreWakers>>,
}

/// Releases the control seat when the last handle drops.
#[derive(Debug)]
struct Seat {
    region: Region,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.region.release_control();
    }
}

impl Control {
    /// Attaches to `/dev/shm/<name>`. With `handoff` (a stream connected to the dataplane,
    /// which answers with [`Dataplane::handoff`]) the eventfds come along and waits block;
    /// without it, waits poll every millisecond and the dataplane is never woken by us.
    pub fn attach(name: &str, handoff: Option<&UnixStream>) -> Result<Control, RegionError> {
        let region = Region::attach(name)?;
        let wakers = match handoff {
            Some(sock) => {
                let (fds, generation) = receive_handoff(sock, region.info().config.cores)?;
                if generation != region.info().generation {
                    return Err(RegionError::GenerationMismatch {
                        region: region.info().generation,
                        handoff: generation,
                    });
                }
                Some(fds.1)
            }
            None => None,
        };
        Self::seat(region, wakers)
    }

    /// Attaches through a handoff alone: the region descriptor comes over the socket too
    /// (the way to reach a memfd region).
    pub fn attach_handoff(sock: &UnixStream) -> Result<Control, RegionError> {
        let ((region_fd, wakers), generation) = receive_handoff(sock, crate::region::MAX_CORES)?;
        let region = Region::attach_fd(region_fd)?;
        if generation != region.info().generation {
            return Err(RegionError::GenerationMismatch {
                region: region.info().generation,
                handoff: generation,
            });
        }
        if wakers.len() != usize::from(region.info().config.cores) {
            return Err(RegionError::BadHandoff(
                "eventfd count does not match cores",
            ));
        }
        Self::seat(region, Some(wakers))
    }

    fn seat(region: Region, wakers: Option<Vec<CoreWakers>>) -> Result<Control, RegionError> {
        region.claim_control()?;
        Ok(Control {
            seat: Arc::new(Seat { region }),
            wakers,
        })
    }

    /// The region.
    pub fn region(&self) -> &Region {
        &self.seat.region
    }

    /// What the header says (generation included).
    pub fn info(&self) -> RegionInfo {
        self.seat.region.info()
    }

    /// Whether this attachment is still the live one under `name`; see
    /// [`Region::check_current`].
    pub fn check_current(&self, name: &str) -> Result<(), RegionError> {
        self.seat.region.check_current(name)
    }

    /// The end for `core`; `None` if out of range or already taken.
    pub fn control_end(&self, core: u16) -> Option<ControlEnd> {
        let region = &self.seat.region;
        let wakers = match &self.wakers {
            Some(w) => Some(w.get(usize::from(core))?.clone()),
            None => None,
        };
        Some(ControlEnd {
            core,
            commands: region.producer(core, Direction::Commands)?,
            events: region.consumer(core, Direction::Events)?,
            wakers,
            in_buf: vec![EMPTY_RECORD; POLL_BATCH].into_boxed_slice(),
            out_buf: vec![EMPTY_RECORD; MAX_SIP_FRAGMENTS].into_boxed_slice(),
            _seat: self.seat.clone(),
        })
    }
}

type Handoff = ((OwnedFd, Vec<CoreWakers>), u64);

fn receive_handoff(sock: &UnixStream, max_cores: u16) -> Result<Handoff, RegionError> {
    let mut payload = [0u8; HANDOFF_SIZE];
    let (n, mut fds) = sys::recv_with_fds(sock, &mut payload, 1 + 2 * usize::from(max_cores))
        .map_err(|source| RegionError::Io {
            op: "receive handoff",
            source,
        })?;
    if n != HANDOFF_SIZE {
        return Err(RegionError::BadHandoff("short payload"));
    }
    let rd64 = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&payload[o..o + 8]);
        u64::from_ne_bytes(b)
    };
    let rd32 =
        |o: usize| u32::from_ne_bytes([payload[o], payload[o + 1], payload[o + 2], payload[o + 3]]);
    if rd64(0) != MAGIC {
        return Err(RegionError::BadMagic { found: rd64(0) });
    }
    if rd32(20) != VERSION {
        return Err(RegionError::VersionMismatch {
            found: rd32(20),
            expected: VERSION,
        });
    }
    let cores = rd32(16) as usize;
    if cores > usize::from(max_cores) || fds.len() != 1 + 2 * cores {
        return Err(RegionError::BadHandoff(
            "descriptor count does not match cores",
        ));
    }
    let mut rest = fds.split_off(1);
    let region_fd = fds
        .pop()
        .ok_or(RegionError::BadHandoff("no region descriptor"))?;
    let mut wakers = Vec::with_capacity(cores);
    while rest.len() >= 2 {
        let events = Arc::new(rest.pop().ok_or(RegionError::BadHandoff("odd"))?);
        let commands = Arc::new(rest.pop().ok_or(RegionError::BadHandoff("odd"))?);
        wakers.push(CoreWakers { commands, events });
    }
    wakers.reverse();
    Ok(((region_fd, wakers), rd64(8)))
}

/// One core's end on the control-plane side: produces commands, consumes events.
#[derive(Debug)]
pub struct ControlEnd {
    core: u16,
    commands: Producer,
    events: Consumer,
    wakers: Option<CoreWakers>,
    in_buf: Box<[Record]>,
    out_buf: Box<[Record]>,
    _seat: Arc<Seat>,
}

impl ControlEnd {
    /// The core.
    pub fn core(&self) -> u16 {
        self.core
    }

    /// Queues one command with request id `seq`.
    pub fn send(&mut self, seq: u64, command: &Command) -> Result<(), SendError> {
        self.send_batch(std::iter::once((seq, *command)))
    }

    /// Queues several commands in order, all or nothing (at most [`MAX_SIP_FRAGMENTS`]).
    pub fn send_batch(
        &mut self,
        commands: impl IntoIterator<Item = (u64, Command)>,
    ) -> Result<(), SendError> {
        let mut n = 0;
        for (seq, command) in commands {
            let Some(rec) = self.out_buf.get_mut(n) else {
                return Err(SendError::TooLarge(TooLarge {
                    len: n,
                    records_needed: n + 1,
                }));
            };
            command.encode(
                Meta {
                    seq,
                    core: self.core,
                },
                rec,
            );
            n += 1;
        }
        let wake = self.commands.push_batch(&self.out_buf[..n])?;
        signal(wake, self.wakers.as_ref().map(|w| &*w.commands))
    }

    /// Queues SIP bytes to send as RawSipDown fragments, all or nothing.
    pub fn send_raw_sip(
        &mut self,
        seq: u64,
        listener: u32,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        let meta = Meta {
            seq,
            core: self.core,
        };
        let n = encode_raw_sip(
            SipDirection::Down,
            meta,
            listener,
            destination,
            bytes,
            &mut self.out_buf,
        )?;
        if n > self.commands.capacity() {
            return Err(SendError::TooLarge(TooLarge {
                len: bytes.len(),
                records_needed: n,
            }));
        }
        let wake = self.commands.push_batch(&self.out_buf[..n])?;
        signal(wake, self.wakers.as_ref().map(|w| &*w.commands))
    }

    /// Handles up to `max` (≤ [`POLL_BATCH`]) waiting events with `f`.
    pub fn poll_events(
        &mut self,
        max: usize,
        f: impl FnMut(Meta, Result<Event, DecodeError>),
    ) -> usize {
        poll_with(&mut self.events, &mut self.in_buf, max, Event::decode, f)
    }

    /// Blocks until events arrive or `timeout` passes; returns whether any are waiting.
    pub fn wait_events(&mut self, timeout: Duration) -> io::Result<bool> {
        wait(
            &mut self.events,
            self.wakers.as_ref().map(|w| &*w.events),
            timeout,
        )
    }

    /// Counters of the (commands, events) rings.
    pub fn counters(&self) -> (RingCounters, RingCounters) {
        (self.commands.counters(), self.events.counters())
    }
}
