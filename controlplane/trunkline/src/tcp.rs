//! SIP over TCP (RFC 3261 §18): one `mio` event loop per TCP listener, never a thread per
//! connection.
//!
//! Each connection has a read buffer cut into messages by [`sip::framing::next_frame`]
//! (Content-Length framing; a message torn across any number of segments reassembles,
//! several in one segment are all handled; an RFC 5626 §4.4.1 CRLF CRLF ping gets a CRLF
//! pong) and a write queue drained with nonblocking writes as the socket becomes writable.
//! Every message goes to [`Shared::handle`] like a UDP datagram; the answer goes back on the
//! connection (§18.2.2), what the proxy sends elsewhere through the [`crate::responder::Router`]
//! (another connection, this listener's or another's, or UDP).
//!
//! Hostile input is bounded: a framing error (no or bad Content-Length, a header section or
//! body over `tcp_max_message_bytes`) gets `400` when the bytes name where it goes, and the
//! connection is closed, since message boundaries are lost; a connection idle past
//! `tcp_idle_timeout_s` is closed; beyond `tcp_max_connections` a new connection is accepted
//! and closed at once; a peer that does not read what we send is no longer read from and,
//! when its queue passes [`MAX_QUEUED`], closed. Each is counted in [`crate::responder::Counters`].
//!
//! A REGISTER answered 200 over a connection makes that connection the way to the contacts
//! it registered: the registrar stores the connection's peer address as the binding's
//! source, and the contact's own address (where the proxy would send) becomes an alias of
//! the connection, so a call to that subscriber reaches it over the connection it keeps
//! open (the idea of RFC 5626 flows, without its Contact parameters).
//!
//! A TLS listener (RFC 3261 §26.2) runs this same loop: each of its connections carries a
//! [`rustls::ServerConnection`]. Readable: `read_tls`, `process_new_packets`, and the
//! plaintext goes into the same read buffer and framing; output: plaintext goes into the
//! `rustls` writer and the records it makes into the same write queue, drained the same
//! way, so every limit above holds for TLS too (the queue counts the records). A failed
//! handshake (not TLS, a bad ClientHello, a peer that leaves mid-handshake) closes that
//! connection and counts `tls_handshake_failures`; a TLS error after the handshake
//! (a bad record, an alert) counts `tls_errors`.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::{ServerConfig, ServerConnection};
use sip::edit::error_response_for_unparsed;
use sip::framing::{next_frame, Frame, FrameError, FrameLimits};
use sip::{Message, Method};

use controlplane::proxy::{contact_destination, Out};

use crate::responder::{Counters, Route, Shared};

const LISTENER: Token = Token(0);
/// The token of the [`mio::Waker`] other threads use to hand us output.
pub const WAKE: Token = Token(1);
const FIRST_CONN: usize = 2;

/// A connection whose unsent output passes this is no longer read from (the peer is not
/// reading our answers); reading resumes when the queue is empty.
const PAUSE_READING: usize = 256 * 1024;
/// A connection whose unsent output passes this is closed.
pub const MAX_QUEUED: usize = 4 * 1024 * 1024;
/// After we close our side (framing error), how long the peer has to read our 400 and close.
const LINGER: Duration = Duration::from_secs(2);
/// Reads from one connection per turn of the loop before the others get theirs.
const READS_PER_TURN: usize = 64;

/// Listen backlog asked for (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Widens the accept backlog of a bound listener from the 128 `mio` (like std) asks for: a
/// burst of phones reconnecting at once (after a network blip or a restart) must not have
/// its SYNs dropped, each a one-second retransmission for that phone.
#[allow(unsafe_code)] // reason: neither std nor mio can change a listener's backlog.
pub fn widen_backlog(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: listen() on a descriptor the listener owns and keeps open for the call; on
    // Linux a second listen() on a listening socket only changes its backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Limits of one TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Close a connection silent for this long.
    pub idle: Duration,
    /// Largest message (header section, body, and the whole).
    pub max_message: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading and writing.
    Open,
    /// A framing error: flush the queue (our 400), then shut our side down.
    Closing,
    /// Our side is shut down; discard what comes until the peer closes or the linger ends.
    Draining(Instant),
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Bytes of `wbuf` already written.
    wpos: usize,
    last_read: Instant,
    state: State,
    /// Registered for WRITABLE too.
    writable: bool,
    /// Stopped reading because the write queue is long.
    paused: bool,
    /// Contact addresses routed over this connection.
    aliases: Vec<SocketAddr>,
    /// The TLS session of a connection to a TLS listener (`wbuf` then holds its records).
    tls: Option<Box<ServerConnection>>,
    /// Output could not be queued (TLS plaintext beyond what `rustls` buffers before the
    /// handshake ends): close as an overflow.
    overflow: bool,
}

/// What one read from a connection brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Bytes were read (plaintext, if any, is appended to `rbuf` while open).
    Some,
    /// Nothing more for now.
    Blocked,
    /// The peer closed (after what this read brought).
    Eof,
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr, tls: Option<Box<ServerConnection>>) -> Conn {
        Conn {
            stream,
            peer,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            last_read: Instant::now(),
            state: State::Open,
            writable: false,
            paused: false,
            aliases: Vec::new(),
            tls,
            overflow: false,
        }
    }

    fn queued(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Queues `bytes` for the peer (encrypted first on a TLS connection).
    fn queue(&mut self, bytes: &[u8]) {
        if self.wpos > 0 && self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        match self.tls.as_deref_mut() {
            None => self.wbuf.extend_from_slice(bytes),
            Some(tls) => {
                if tls.writer().write_all(bytes).is_err() {
                    self.overflow = true;
                }
                take_records(tls, &mut self.wbuf);
            }
        }
    }

    /// On a TLS connection, queues a close_notify alert (before our side is shut down).
    fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            take_records(tls, &mut self.wbuf);
        }
    }

    /// One read from the socket. Plain: the bytes go to `rbuf`. TLS: they go to `rustls`,
    /// its plaintext to `rbuf` and its answers (handshake, alerts) to the write queue.
    /// When not open, what comes is read raw and discarded. Err: why to close.
    fn read_input(&mut self, chunk: &mut [u8], counters: &Counters) -> Result<Input, End> {
        let open = self.state == State::Open;
        let tls = match self.tls.as_deref_mut() {
            Some(tls) if open => tls,
            _ => {
                return match self.stream.read(chunk) {
                    Ok(0) => Ok(Input::Eof),
                    Ok(n) => {
                        if open {
                            self.rbuf.extend_from_slice(&chunk[..n]);
                        }
                        Ok(Input::Some)
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Input::Blocked),
                    Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Input::Some),
                    Err(_) => Err(End::Gone),
                };
            }
        };
        let handshaking = tls.is_handshaking();
        match tls.read_tls(&mut self.stream) {
            Ok(0) if handshaking => return Err(End::Handshake),
            Ok(0) => return Ok(Input::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Input::Blocked),
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(Input::Some),
            Err(_) => {
                return Err(if handshaking {
                    End::Handshake
                } else {
                    End::Gone
                })
            }
        }
        let processed = tls.process_new_packets();
        // The handshake may end in this batch of records, and an error follow it.
        let still_handshaking = tls.is_handshaking();
        if handshaking && !still_handshaking {
            counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
        }
        let state = match processed {
            Ok(s) => s,
            Err(_) => {
                // The alert rustls queued for the peer: sent on a best-effort basis.
                take_records(tls, &mut self.wbuf);
                let _ = self.flush();
                return Err(if still_handshaking {
                    End::Handshake
                } else {
                    End::Tls
                });
            }
        };
        let n = state.plaintext_bytes_to_read();
        let peer_closed = state.peer_has_closed();
        if n > 0 {
            let old = self.rbuf.len();
            self.rbuf.resize(old + n, 0);
            if tls.reader().read_exact(&mut self.rbuf[old..]).is_err() {
                return Err(End::Tls);
            }
        }
        take_records(tls, &mut self.wbuf);
        Ok(if peer_closed { Input::Eof } else { Input::Some })
    }

    /// Writes what the socket takes now. Err: the connection is broken.
    fn flush(&mut self) -> std::io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
            if self.wbuf.capacity() > 64 * 1024 {
                self.wbuf = Vec::new();
            }
        } else if self.wpos >= 64 * 1024 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }
}

/// Moves the TLS records `tls` has ready into the write queue `wbuf`.
fn take_records(tls: &mut ServerConnection, wbuf: &mut Vec<u8>) {
    while tls.wants_write() {
        // Writing into a Vec does not fail.
        if tls.write_tls(wbuf).is_err() {
            break;
        }
    }
}

/// Why a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The peer closed, or the socket failed.
    Gone,
    /// Our output queue overflowed.
    Overflow,
    /// Idle past the limit.
    Idle,
    /// The TLS handshake failed (not TLS, refused, or the peer left during it).
    Handshake,
    /// A TLS error after the handshake (a bad record, an alert from the peer).
    Tls,
}

/// One TCP listener's event loop.
#[derive(Debug)]
pub struct TcpServer {
    poll: Poll,
    listener: TcpListener,
    lane: usize,
    rx: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    shared: Arc<Shared>,
    limits: TcpLimits,
    frame: FrameLimits,
    conns: HashMap<Token, Conn>,
    by_peer: HashMap<SocketAddr, Token>,
    next: usize,
    /// accept() failed for lack of resources: retry on the next turn.
    accept_blocked: bool,
    /// Scratch: output of the proxy while one connection is read.
    sends: Out,
    reply: Vec<u8>,
    /// Connections with input left unread (read budget spent, or reading resumed after a
    /// pause): read again on the next turn.
    resume: Vec<Token>,
    /// A TLS listener: the configuration each connection's session starts from.
    tls: Option<Arc<ServerConfig>>,
}

impl TcpServer {
    /// An event loop for `listener` (registered here) on `poll`, whose waker (token
    /// [`WAKE`]) and the sender of `rx` are lane `lane` of `shared`'s router. With `tls`,
    /// every connection runs TLS with that configuration.
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        lane: usize,
        rx: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
        shared: Arc<Shared>,
        limits: TcpLimits,
        tls: Option<Arc<ServerConfig>>,
    ) -> std::io::Result<TcpServer> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(TcpServer {
            poll,
            listener,
            lane,
            rx,
            shared,
            limits,
            frame: FrameLimits {
                max_header_bytes: limits.max_message,
                max_body_bytes: limits.max_message,
            },
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            next: FIRST_CONN,
            accept_blocked: false,
            sends: Out::new(),
            reply: Vec::with_capacity(4096),
            resume: Vec::new(),
            tls,
        })
    }

    /// Runs until `stop` is set, then closes every connection.
    pub fn run(mut self, stop: &AtomicBool) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let timeout = if !self.resume.is_empty() {
                Duration::ZERO
            } else if self.accept_blocked {
                Duration::from_millis(50)
            } else {
                Duration::from_millis(200)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKE => self.drain_other_threads(),
                    t => {
                        if ev.is_writable() {
                            self.on_writable(t);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(t);
                        }
                    }
                }
            }
            if self.accept_blocked {
                self.accept();
            }
            for t in std::mem::take(&mut self.resume) {
                self.on_readable(t);
            }
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
        let all: Vec<Token> = self.conns.keys().copied().collect();
        for t in all {
            self.close(t, End::Gone);
        }
        Ok(())
    }

    fn accept(&mut self) {
        self.accept_blocked = false;
        let c = &self.shared.counters;
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.limits.max_connections {
                        c.tcp_refused.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    }
                    let session = match &self.tls {
                        None => None,
                        Some(cfg) => match ServerConnection::new(Arc::clone(cfg)) {
                            Ok(s) => Some(Box::new(s)),
                            Err(_) => {
                                c.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                    };
                    let token = Token(self.next);
                    self.next += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        c.tcp_accept_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    c.tcp_accepted.fetch_add(1, Ordering::Relaxed);
                    self.shared.router.add(
                        peer,
                        Route {
                            lane: self.lane,
                            peer,
                        },
                    );
                    self.by_peer.insert(peer, token);
                    self.conns.insert(token, Conn::new(stream, peer, session));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::ConnectionReset
                    ) => {}
                Err(_) => {
                    // EMFILE, ENFILE, ENOBUFS: the connection waits in the backlog; retry
                    // shortly rather than spin.
                    c.tcp_accept_errors.fetch_add(1, Ordering::Relaxed);
                    self.accept_blocked = true;
                    return;
                }
            }
        }
    }

    /// Output other threads routed to our connections.
    fn drain_other_threads(&mut self) {
        while let Ok((peer, bytes)) = self.rx.try_recv() {
            self.deliver_local(peer, &bytes);
        }
    }

    /// Queues `bytes` on our connection to `peer` and writes what the socket takes.
    fn deliver_local(&mut self, peer: SocketAddr, bytes: &[u8]) {
        let Some(&token) = self.by_peer.get(&peer) else {
            // Closed in the meantime.
            self.shared
                .counters
                .send_errors
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(conn) = self.conns.get_mut(&token) {
            if conn.state != State::Open {
                return;
            }
            conn.queue(bytes);
        }
        self.after_io(token);
    }

    /// Sends the proxy's output gathered while one connection was read.
    fn dispatch_sends(&mut self) {
        let sends = std::mem::take(&mut self.sends);
        for (to, bytes) in &sends {
            match self.shared.router.route(*to) {
                Some(r) if r.lane == self.lane => self.deliver_local(r.peer, bytes),
                Some(r) => self
                    .shared
                    .router
                    .send_lane(r, bytes.clone(), &self.shared.counters),
                None => self
                    .shared
                    .router
                    .send(*to, bytes.clone(), None, &self.shared.counters),
            }
        }
        self.sends = sends;
        self.sends.clear();
    }

    fn on_writable(&mut self, token: Token) {
        self.after_io(token);
    }

    /// Flushes, then settles the connection: interest, overflow, the end of a close, and
    /// reading resumed when a paused connection's queue has drained.
    fn after_io(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.flush().is_err() {
            return self.close(token, End::Gone);
        }
        if conn.queued() > MAX_QUEUED || conn.overflow {
            return self.close(token, End::Overflow);
        }
        let want_write = conn.queued() > 0;
        if want_write != conn.writable {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, interest)
                .is_err()
            {
                return self.close(token, End::Gone);
            }
            conn.writable = want_write;
        }
        if conn.state == State::Closing && !want_write {
            let _ = conn.stream.shutdown(Shutdown::Write);
            conn.state = State::Draining(Instant::now() + LINGER);
        }
        if conn.paused && !want_write {
            // Edge-triggered: the unread input raises no new event; read it next turn.
            conn.paused = false;
            self.resume.push(token);
        }
    }

    fn on_readable(&mut self, token: Token) {
        let mut chunk = [0u8; 16 * 1024];
        let limits = self.limits;
        let frame = self.frame;
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let mut end = None;
        let mut framing_error = false;
        let mut reads = 0;
        loop {
            if conn.state == State::Open && conn.queued() > PAUSE_READING {
                if !conn.paused {
                    conn.paused = true;
                    self.shared
                        .counters
                        .tcp_read_pauses
                        .fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            if reads == READS_PER_TURN {
                self.resume.push(token);
                break;
            }
            reads += 1;
            let input = match conn.read_input(&mut chunk, &self.shared.counters) {
                Ok(i) => i,
                Err(why) => {
                    end = Some(why);
                    break;
                }
            };
            if input == Input::Blocked {
                break;
            }
            conn.last_read = Instant::now();
            if conn.state == State::Open
                && !conn.rbuf.is_empty()
                && !cut_messages(
                    conn,
                    &self.shared,
                    &frame,
                    limits.max_message,
                    self.lane,
                    &mut self.reply,
                    &mut self.sends,
                )
            {
                framing_error = true;
                break;
            }
            if input == Input::Eof {
                end = Some(End::Gone);
                break;
            }
        }
        if framing_error {
            conn.state = State::Closing;
            conn.rbuf = Vec::new();
            conn.close_notify();
            self.shared
                .counters
                .tcp_framing_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(end) = end {
            // Still send what the proxy produced for others.
            self.close(token, end);
            self.dispatch_sends();
            return;
        }
        self.after_io(token);
        self.dispatch_sends();
    }

    /// Closes idle connections and ends lingering closes.
    fn sweep(&mut self) {
        let now = Instant::now();
        let idle = self.limits.idle;
        let expired: Vec<(Token, End)> = self
            .conns
            .iter()
            .filter_map(|(&t, c)| match c.state {
                State::Draining(until) if now >= until => Some((t, End::Gone)),
                _ if now.duration_since(c.last_read) >= idle => Some((t, End::Idle)),
                _ => None,
            })
            .collect();
        for (t, why) in expired {
            self.close(t, why);
        }
    }

    fn close(&mut self, token: Token, why: End) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.by_peer.remove(&conn.peer);
        self.shared.router.remove(conn.peer, conn.peer);
        for a in &conn.aliases {
            self.shared.router.remove(*a, conn.peer);
        }
        let c = &self.shared.counters;
        c.tcp_closed.fetch_add(1, Ordering::Relaxed);
        match why {
            End::Gone => {}
            End::Idle => {
                c.tcp_idle_closed.fetch_add(1, Ordering::Relaxed);
            }
            End::Overflow => {
                c.tcp_write_overflows.fetch_add(1, Ordering::Relaxed);
            }
            End::Handshake => {
                c.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
            }
            End::Tls => {
                c.tls_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Cuts the complete messages and keepalives off the front of `conn.rbuf` and handles
/// them. Returns false on a framing error (a 400 is queued when it can be routed).
fn cut_messages(
    conn: &mut Conn,
    shared: &Shared,
    limits: &FrameLimits,
    max_message: usize,
    lane: usize,
    reply: &mut Vec<u8>,
    sends: &mut Out,
) -> bool {
    let rbuf = std::mem::take(&mut conn.rbuf);
    let mut pos = 0;
    let mut ok = true;
    while conn.state == State::Open {
        let rest = &rbuf[pos..];
        let frame = match next_frame(rest, limits) {
            // The header section and the body are each within the limit; so must the whole
            // be, and nothing incomplete may be buffered beyond it.
            Ok(Frame::Message { len }) if len > max_message => Err(FrameError::BodyTooLarge),
            Ok(Frame::Incomplete) if rest.len() > max_message => Err(FrameError::BodyTooLarge),
            f => f,
        };
        match frame {
            Ok(Frame::Incomplete) => break,
            Ok(Frame::Ping) => {
                // RFC 5626 §4.4.1: CRLF CRLF ping, CRLF pong.
                shared.counters.keepalives.fetch_add(1, Ordering::Relaxed);
                conn.queue(b"\r\n");
                pos += 4;
            }
            Ok(Frame::Message { len }) => {
                let msg = &rest[..len];
                shared.counters.tcp_messages.fetch_add(1, Ordering::Relaxed);
                reply.clear();
                if shared.handle(msg, conn.peer, reply, sends) {
                    conn.queue(reply);
                    if reply.starts_with(b"SIP/2.0 200 ") {
                        note_registration(conn, shared, msg, lane);
                    }
                }
                pos += len;
            }
            Ok(f) => pos += f.len(), // pong or stray CR/LF
            Err(e) => {
                let text = e.to_string();
                reply.clear();
                let head = &rest[..rest.len().min(max_message)];
                if error_response_for_unparsed(head, 400, text.as_bytes(), reply) {
                    shared
                        .counters
                        .malformed_answered
                        .fetch_add(1, Ordering::Relaxed);
                    conn.queue(reply);
                }
                ok = false;
                break;
            }
        }
    }
    if ok {
        conn.rbuf = rbuf;
        conn.rbuf.drain(..pos);
        if conn.rbuf.is_empty() && conn.rbuf.capacity() > 16 * 1024 {
            // An idle connection keeps no large buffer from its last big message.
            conn.rbuf = Vec::new();
        }
    }
    ok
}

/// After a REGISTER over this connection was answered 200: the bindings it holds whose
/// source is this connection are reached over it, also at the contact's own address.
fn note_registration(conn: &mut Conn, shared: &Shared, msg: &[u8], lane: usize) {
    let Ok(m) = Message::parse(msg) else {
        return;
    };
    if m.method() != Some(Method::Register) {
        return;
    }
    let Some(reg) = shared.registrar.as_deref() else {
        return;
    };
    let Ok(r) = reg.lock() else {
        return;
    };
    let to = &m.to().uri;
    let (Some(user), Some(host)) = (to.user, to.host) else {
        return;
    };
    let Some(aor) = r.aor_for(user, host.text) else {
        return;
    };
    let now = crate::registry::unix_now().as_secs();
    for b in r.lookup(&aor, now) {
        if b.received != conn.peer {
            continue;
        }
        let dest = contact_destination(&b.contact, b.received);
        if dest != conn.peer && !conn.aliases.contains(&dest) {
            conn.aliases.push(dest);
            shared.router.add(
                dest,
                Route {
                    lane,
                    peer: conn.peer,
                },
            );
        }
    }
}
