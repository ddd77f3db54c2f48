//! dpio: the per-core packet I/O backends of the dataplane.
//!
//! This is the only crate that touches io_uring and epoll. The per-core loop owns one
//! [`AnyBackend`] (created on the pinned core thread itself, see [`pin_current_thread`]), binds
//! its UDP sockets at start-up with [`Backend::add_udp`] and then turns the loop:
//!
//! ```text
//! loop {
//!     io.poll(timeout)?;                       // one submit+wait (io_uring) or epoll_wait+recvmmsg+sendmmsg
//!     while let Some(rx) = io.next_rx() {      // packets received this turn
//!         let bytes = io.payload_mut(rx.buf, rx.len);
//!         // ... classify, rewrite in place ...
//!         io.send(out_socket, dest, rx.buf, rx.len)?;   // zero-copy forward, or
//!         // io.release(rx.buf);                         // drop it
//!     }
//! }
//! ```
//!
//! # Buffers
//! Every receive buffer is owned by the backend and named by a [`BufId`]. A buffer is in one of
//! three states: *free* (in the kernel's provided-buffer ring for io_uring, on the free list for
//! epoll), *held* by the caller (returned by [`Backend::next_rx`]), or *sending* (handed back with
//! [`Backend::send`]). A held buffer leaves the caller through exactly one of `send` or
//! `release`; `send` takes the buffer even when it fails (the failure is counted and the buffer
//! goes back to the pool), so the caller never has to clean up. When a send completes, the
//! buffer returns to the pool. Misuse (double release, sending a buffer not held) is our bug
//! and panics through an `assert!`.
//!
//! Buffers are [`Config::buffer_size`] bytes (2048 is enough for RTP). On io_uring the first
//! [`URING_PAYLOAD_OFFSET`] bytes of each buffer hold the kernel's `io_uring_recvmsg_out` header
//! and the peer address, so the largest datagram is `buffer_size - 44` bytes
//! ([`Backend::max_payload`]). A datagram larger than that is dropped and counted in
//! [`IoStats::rx_truncated`]. SIP over UDP (up to 64 KiB) therefore belongs on a backend configured
//! with a larger `buffer_size` (one per core for signalling, if it matters), or it is truncated
//! and counted; replies go out through [`Backend::send_copy`], which copies into a separate
//! pool of [`Config::copy_buffers`] buffers of [`Config::copy_buffer_size`] bytes.
//!
//! # What it does not do
//! No AF_XDP (a later backend), no TCP/TLS, no GSO/GRO, no timestamps or ancillary data, and no
//! memory allocation after [`AnyBackend::new`] and `add_udp`: every queue is a fixed pool and a
//! full pool is a counted event ([`IoStats::tx_queue_full`], [`IoStats::rx_nobufs`]).
#![allow(unsafe_code)] // reason: dpio is the room where io_uring rings, raw socket calls and buffers lent to the kernel live (STYLE.md §5); every block carries a SAFETY comment.

mod addr;
mod epoll;
mod pool;
mod uring;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub use epoll::MioBackend;
pub use uring::{UringBackend, URING_PAYLOAD_OFFSET};

/// A bound UDP socket owned by this backend (index in bind order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub(crate) u32);

impl SocketId {
    /// The socket's index, in the order [`Backend::add_udp`] bound them.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// A buffer owned by the backend (index into its pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub(crate) u32);

impl BufId {
    /// The buffer's index in the pool.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// One received datagram; the caller holds `buf` until it sends or releases it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPacket {
    /// The socket it arrived on.
    pub socket: SocketId,
    /// Who sent it.
    pub peer: SocketAddr,
    /// Where its payload is; read it with [`Backend::payload`].
    pub buf: BufId,
    /// Payload length in bytes.
    pub len: u32,
}

/// Which backend is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// io_uring with multishot recvmsg and a provided-buffer ring.
    Uring,
    /// mio (epoll) readiness with recvmmsg/sendmmsg batches.
    Mio,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Uring => "io_uring",
            BackendKind::Mio => "mio/epoll",
        })
    }
}

/// Start-up configuration; every capacity of the backend lives here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Receive buffers in the pool: a power of two, 2..=32768 (the io_uring buffer ring limit).
    pub buffers: u32,
    /// Bytes per receive buffer (io_uring reserves 44 of them for the recvmsg header).
    pub buffer_size: u32,
    /// Sends in flight or queued at once; a full queue is [`SendError::QueueFull`].
    pub send_slots: u32,
    /// Buffers for [`Backend::send_copy`] (SIP and control replies).
    pub copy_buffers: u32,
    /// Bytes per copy buffer: the largest `send_copy` payload.
    pub copy_buffer_size: u32,
    /// Most UDP sockets this backend will bind.
    pub max_sockets: u32,
    /// epoll backend: datagrams per recvmmsg call.
    pub recv_batch: u32,
    /// SO_RCVBUF/SO_SNDBUF asked for each socket, in bytes (the kernel caps it at rmem_max).
    pub socket_buffer_bytes: u32,
    /// io_uring: use a kernel submission-polling thread (IORING_SETUP_SQPOLL) that idles
    /// after this many milliseconds; `None` uses DEFER_TASKRUN and one enter per poll instead.
    pub sqpoll_idle_ms: Option<u32>,
    /// Force a backend (tests, benchmarks); `None` tries io_uring and falls back to epoll.
    pub force: Option<BackendKind>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            buffers: 4096,
            buffer_size: 2048,
            send_slots: 4096,
            copy_buffers: 64,
            copy_buffer_size: 65536,
            max_sockets: 64,
            recv_batch: 64,
            socket_buffer_bytes: 4 << 20,
            sqpoll_idle_ms: None,
            force: None,
        }
    }
}

impl Config {
    /// Checks the limits both backends rely on.
    pub fn validate(&self) -> io::Result<()> {
        let bad = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()));
        if !self.buffers.is_power_of_two() || self.buffers < 2 || self.buffers > 32768 {
            return bad("dpio: buffers must be a power of two in 2..=32768");
        }
        if self.buffer_size as usize <= URING_PAYLOAD_OFFSET || self.buffer_size > (1 << 20) {
            return bad("dpio: buffer_size must be in 45..=1 MiB");
        }
        if self.send_slots == 0 || self.send_slots > (1 << 20) {
            return bad("dpio: send_slots must be in 1..=1Mi");
        }
        if self.copy_buffer_size == 0 || self.copy_buffer_size > (1 << 20) {
            return bad("dpio: copy_buffer_size must be in 1..=1 MiB");
        }
        if self.max_sockets == 0 || self.max_sockets > 65536 {
            return bad("dpio: max_sockets must be in 1..=65536");
        }
        if self.recv_batch == 0 || self.recv_batch > 1024 {
            return bad("dpio: recv_batch must be in 1..=1024");
        }
        Ok(())
    }
}

/// Why a send was not queued. The buffer given to [`Backend::send`] is back in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Every send slot is in flight (counted in [`IoStats::tx_queue_full`]).
    QueueFull,
    /// Every copy buffer is in flight (counted in [`IoStats::tx_queue_full`]).
    NoCopyBuffer,
    /// `send_copy` data longer than [`Config::copy_buffer_size`], or `send` longer than the buffer.
    TooLong,
    /// No socket with that id.
    UnknownSocket,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::QueueFull => "send queue full",
            SendError::NoCopyBuffer => "no copy buffer free",
            SendError::TooLong => "datagram longer than the buffer",
            SendError::UnknownSocket => "unknown socket id",
        })
    }
}

impl std::error::Error for SendError {}

/// Why io_uring is not used; the engine logs it and shows it in stats.
#[derive(Debug)]
pub enum UringUnavailable {
    /// `/proc/sys/kernel/io_uring_disabled` is 2: io_uring is off for everyone.
    DisabledBySysctl,
    /// `io_uring_setup` failed; `sysctl` is the value of `kernel.io_uring_disabled` (1 means
    /// only root or `kernel.io_uring_group` may create rings).
    Setup { err: io::Error, sysctl: Option<u8> },
    /// The kernel lacks an opcode we need.
    MissingOpcode(&'static str),
    /// Registering the provided-buffer ring failed (kernel older than 5.19?).
    BufRing(io::Error),
}

impl fmt::Display for UringUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UringUnavailable::DisabledBySysctl => {
                f.write_str("io_uring disabled by sysctl kernel.io_uring_disabled=2")
            }
            UringUnavailable::Setup { err, sysctl } => {
                write!(f, "io_uring_setup failed: {err}")?;
                if let Some(v) = sysctl {
                    write!(f, " (kernel.io_uring_disabled={v})")?;
                }
                Ok(())
            }
            UringUnavailable::MissingOpcode(op) => write!(f, "io_uring lacks opcode {op}"),
            UringUnavailable::BufRing(err) => {
                write!(
                    f,
                    "io_uring provided-buffer ring registration failed: {err}"
                )
            }
        }
    }
}

impl std::error::Error for UringUnavailable {}

/// Plain per-core counters; read them with [`Backend::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Calls to [`Backend::poll`].
    pub polls: u64,
    /// All system calls on the packet path (the sum of the four below).
    pub syscalls: u64,
    /// `io_uring_enter` calls (submit and/or wait).
    pub uring_enters: u64,
    /// `epoll_wait` calls.
    pub epoll_waits: u64,
    /// `recvmmsg` calls.
    pub recvmmsg_calls: u64,
    /// `sendmmsg` calls.
    pub sendmmsg_calls: u64,
    /// Datagrams received and handed to the caller.
    pub rx_packets: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Datagrams the kernel reported sent.
    pub tx_packets: u64,
    /// Payload bytes sent.
    pub tx_bytes: u64,
    /// Receives that found no free buffer (io_uring ENOBUFS, or epoll readiness with an empty
    /// pool); the socket is re-armed once buffers return.
    pub rx_nobufs: u64,
    /// Multishot receives re-armed after the kernel ended them.
    pub rx_rearms: u64,
    /// Datagrams dropped because they did not fit a buffer.
    pub rx_truncated: u64,
    /// Receive errors other than ENOBUFS (dropped, counted).
    pub rx_errors: u64,
    /// Sends refused because the send slots or copy buffers were all in flight.
    pub tx_queue_full: u64,
    /// Sends the kernel failed (dropped, counted).
    pub tx_errors: u64,
    /// Polls that harvested at least one datagram.
    pub rx_batches: u64,
    /// Most datagrams harvested in one poll.
    pub rx_batch_max: u32,
    /// Polls that submitted at least one send.
    pub tx_batches: u64,
    /// Most sends submitted in one poll.
    pub tx_batch_max: u32,
}

impl IoStats {
    pub(crate) fn note_rx_batch(&mut self, n: u32) {
        if n > 0 {
            self.rx_batches += 1;
            self.rx_batch_max = self.rx_batch_max.max(n);
        }
    }

    pub(crate) fn note_tx_batch(&mut self, n: u32) {
        if n > 0 {
            self.tx_batches += 1;
            self.tx_batch_max = self.tx_batch_max.max(n);
        }
    }
}

/// What the per-core loop drives. Both backends implement it with the same semantics;
/// [`AnyBackend`] dispatches by enum (no vtable on the packet path).
pub trait Backend {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Binds a UDP socket and starts receiving on it (start-up only: it may allocate).
    fn add_udp(&mut self, bind: SocketAddr) -> io::Result<SocketId>;
    /// The address a socket is bound to (to learn ports bound as `:0`).
    fn local_addr(&self, socket: SocketId) -> io::Result<SocketAddr>;
    /// Watches `fd` (an eventfd; start-up only): when it becomes readable, a waiting
    /// [`Backend::poll`] returns. The caller drains it; the fd must outlive the backend.
    fn add_wake_fd(&mut self, fd: std::os::fd::RawFd) -> io::Result<()>;
    /// Submits queued sends, waits for at least one event or `timeout` (`None` waits for
    /// ever, `Some(ZERO)` does not wait, and no wait happens while received packets are
    /// still queued), then harvests completions into the receive queue.
    fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// The next received datagram; the caller holds its buffer until `send` or `release`.
    fn next_rx(&mut self) -> Option<RxPacket>;
    /// The first `len` payload bytes of a held buffer.
    fn payload(&self, buf: BufId, len: u32) -> &[u8];
    /// The first `len` payload bytes of a held buffer, writable (rewrite before forwarding;
    /// `len` may exceed the received length up to [`Backend::max_payload`]).
    fn payload_mut(&mut self, buf: BufId, len: u32) -> &mut [u8];
    /// Queues a zero-copy send of `len` payload bytes of held buffer `buf`; the buffer returns
    /// to the pool when the kernel is done with it, or at once if this fails.
    fn send(
        &mut self,
        from: SocketId,
        to: SocketAddr,
        buf: BufId,
        len: u32,
    ) -> Result<(), SendError>;
    /// Queues a send of `data`, copied into a copy buffer (SIP and control replies).
    fn send_copy(&mut self, from: SocketId, to: SocketAddr, data: &[u8]) -> Result<(), SendError>;
    /// Returns a held buffer to the pool (drop the packet).
    fn release(&mut self, buf: BufId);
    /// Counters.
    fn stats(&self) -> &IoStats;
    /// Receive buffers in the pool.
    fn buffer_count(&self) -> u32;
    /// Receive buffers free for the kernel to fill (neither held by the caller nor sending).
    fn free_buffers(&self) -> u32;
    /// Sends queued or in flight.
    fn sends_in_flight(&self) -> u32;
    /// Largest payload a receive buffer holds.
    fn max_payload(&self) -> u32;
}

/// The backend the per-core loop owns: io_uring by default, epoll when io_uring is unavailable.
#[derive(Debug)]
pub enum AnyBackend {
    /// io_uring.
    Uring(Box<UringBackend>),
    /// mio (epoll).
    Mio(Box<MioBackend>),
}

/// Dispatch one call to whichever backend is inside.
macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            AnyBackend::Uring($b) => $e,
            AnyBackend::Mio($b) => $e,
        }
    };
}

impl AnyBackend {
    /// Builds the backend: io_uring unless `config.force` says otherwise, falling back to epoll
    /// when io_uring is unavailable. The second value is why io_uring is not used, when it was
    /// wanted and is not (log it, show it in stats). Forcing io_uring turns that reason into an
    /// error instead.
    ///
    /// Create it on the thread that will drive it: the io_uring ring is single-issuer.
    pub fn new(config: &Config) -> io::Result<(AnyBackend, Option<UringUnavailable>)> {
        config.validate()?;
        match config.force {
            Some(BackendKind::Mio) => {
                Ok((AnyBackend::Mio(Box::new(MioBackend::new(config)?)), None))
            }
            Some(BackendKind::Uring) => match UringBackend::new(config) {
                Ok(b) => Ok((AnyBackend::Uring(Box::new(b)), None)),
                Err(why) => Err(io::Error::new(io::ErrorKind::Unsupported, why)),
            },
            None => match UringBackend::new(config) {
                Ok(b) => Ok((AnyBackend::Uring(Box::new(b)), None)),
                Err(why) => Ok((
                    AnyBackend::Mio(Box::new(MioBackend::new(config)?)),
                    Some(why),
                )),
            },
        }
    }
}

impl Backend for AnyBackend {
    fn kind(&self) -> BackendKind {
        dispatch!(self, b => b.kind())
    }
    fn add_udp(&mut self, bind: SocketAddr) -> io::Result<SocketId> {
        dispatch!(self, b => b.add_udp(bind))
    }
    fn local_addr(&self, socket: SocketId) -> io::Result<SocketAddr> {
        dispatch!(self, b => b.local_addr(socket))
    }
    fn add_wake_fd(&mut self, fd: std::os::fd::RawFd) -> io::Result<()> {
        dispatch!(self, b => b.add_wake_fd(fd))
    }
    #[inline]
    fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        dispatch!(self, b => b.poll(timeout))
    }
    #[inline]
    fn next_rx(&mut self) -> Option<RxPacket> {
        dispatch!(self, b => b.next_rx())
    }
    #[inline]
    fn payload(&self, buf: BufId, len: u32) -> &[u8] {
        dispatch!(self, b => b.payload(buf, len))
    }
    #[inline]
    fn payload_mut(&mut self, buf: BufId, len: u32) -> &mut [u8] {
        dispatch!(self, b => b.payload_mut(buf, len))
    }
    #[inline]
    fn send(
        &mut self,
        from: SocketId,
        to: SocketAddr,
        buf: BufId,
        len: u32,
    ) -> Result<(), SendError> {
        dispatch!(self, b => b.send(from, to, buf, len))
    }
    #[inline]
    fn send_copy(&mut self, from: SocketId, to: SocketAddr, data: &[u8]) -> Result<(), SendError> {
        dispatch!(self, b => b.send_copy(from, to, data))
    }
    #[inline]
    fn release(&mut self, buf: BufId) {
        dispatch!(self, b => b.release(buf))
    }
    fn stats(&self) -> &IoStats {
        dispatch!(self, b => b.stats())
    }
    fn buffer_count(&self) -> u32 {
        dispatch!(self, b => b.buffer_count())
    }
    fn free_buffers(&self) -> u32 {
        dispatch!(self, b => b.free_buffers())
    }
    fn sends_in_flight(&self) -> u32 {
        dispatch!(self, b => b.sends_in_flight())
    }
    fn max_payload(&self) -> u32 {
        dispatch!(self, b => b.max_payload())
    }
}

/// Pins the calling thread to one CPU (sched_setaffinity).
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    // CPU_SETSIZE bits; CPU_SET would index out of bounds beyond it.
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "dpio: core index beyond CPU_SETSIZE",
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` < CPU_SETSIZE was checked above, so CPU_SET stays inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`, which outlives
    // the call.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `kernel.io_uring_disabled` (absent on kernels before 6.6).
pub fn io_uring_disabled_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}
