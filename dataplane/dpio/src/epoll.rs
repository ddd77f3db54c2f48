//! mio (epoll) fallback: readiness from `epoll_wait`, receives in `recvmmsg` batches into a
//! preallocated buffer pool, sends queued until the next poll and flushed with `sendmmsg`
//! (one call per run of sends from the same socket).
//!
//! Same semantics as the io_uring backend, at the cost of more syscalls per turn: one
//! `epoll_wait`, one `recvmmsg` per readable socket per `recv_batch` datagrams, one `sendmmsg`
//! per run of sends from one socket.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::addr::{parse_sockaddr, RawAddr, SOCKADDR_LEN};
use crate::pool::{Owner, Slab, TxBuf};
use crate::{Backend, BackendKind, BufId, Config, IoStats, RxPacket, SendError, SocketId};

/// Binds a non-blocking UDP socket with `buf_bytes` of kernel socket buffers each way
/// (forced past rmem_max/wmem_max when we have CAP_NET_ADMIN).
pub(crate) fn bind_udp(bind: SocketAddr, buf_bytes: u32) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if bind.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    if buf_bytes > 0 {
        for (force, plain) in [(libc::SO_RCVBUFFORCE, true), (libc::SO_SNDBUFFORCE, false)] {
            let val = buf_bytes as libc::c_int;
            // SAFETY: valid fd, and the option value points at a c_int that outlives the call.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    force,
                    (&val as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                // Not privileged: ask for what rmem_max/wmem_max allow.
                let _ = if plain {
                    sock.set_recv_buffer_size(buf_bytes as usize)
                } else {
                    sock.set_send_buffer_size(buf_bytes as usize)
                };
            }
        }
    }
    sock.bind(&bind.into())?;
    Ok(sock.into())
}

#[derive(Debug)]
struct MSock {
    sock: mio::net::UdpSocket,
    /// Edge-triggered readiness not yet drained (recvmmsg has not returned short).
    readable: bool,
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct; all-zero (null pointers, zero lengths) is valid.
    unsafe { std::mem::zeroed() }
}

/// The epoll backend.
pub struct MioBackend {
    poll: Poll,
    events: Events,
    sockets: Vec<MSock>,
    /// Ids of the sockets whose `readable` is set, so a poll visits only those (a core may
    /// own thousands of media sockets, few of them ready in one turn).
    ready: Vec<u32>,
    max_sockets: u32,
    socket_buffer_bytes: u32,
    pool: Slab,
    buffer_size: usize,
    buffers: u32,
    owner: Box<[Owner]>,
    free_list: Vec<u32>,
    // recvmmsg batch: header i points at rx_iov[i] and rx_addr[i] (boxed, never move).
    rx_hdrs: Box<[libc::mmsghdr]>,
    rx_iov: Box<[libc::iovec]>,
    rx_addr: Box<[RawAddr]>,
    rx_bufs: Box<[u32]>,
    // sendmmsg queue, in submission order: header i points at tx_iov[i] and tx_addr[i].
    tx_hdrs: Box<[libc::mmsghdr]>,
    tx_iov: Box<[libc::iovec]>,
    tx_addr: Box<[RawAddr]>,
    tx_buf: Box<[TxBuf]>,
    tx_sock: Box<[u32]>,
    tx_len: u32,
    copy_pool: Slab,
    copy_buffer_size: usize,
    copy_free: Vec<u32>,
    rx: VecDeque<RxPacket>,
    stats: IoStats,
}

impl std::fmt::Debug for MioBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MioBackend")
            .field("buffers", &self.buffers)
            .field("free", &self.free_list.len())
            .field("sockets", &self.sockets.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl MioBackend {
    /// Allocates every pool and the epoll instance.
    pub fn new(config: &Config) -> io::Result<MioBackend> {
        config.validate()?;
        let batch = config.recv_batch as usize;
        let slots = config.send_slots as usize;
        let null_iov = || libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut me = MioBackend {
            poll: Poll::new()?,
            events: Events::with_capacity(config.max_sockets as usize),
            sockets: Vec::with_capacity(config.max_sockets as usize),
            ready: Vec::with_capacity(config.max_sockets as usize),
            max_sockets: config.max_sockets,
            socket_buffer_bytes: config.socket_buffer_bytes,
            pool: Slab::new(config.buffers as usize * config.buffer_size as usize),
            buffer_size: config.buffer_size as usize,
            buffers: config.buffers,
            owner: vec![Owner::Free; config.buffers as usize].into_boxed_slice(),
            free_list: (0..config.buffers).rev().collect(),
            rx_hdrs: vec![zeroed_mmsghdr(); batch].into_boxed_slice(),
            rx_iov: (0..batch).map(|_| null_iov()).collect(),
            rx_addr: vec![RawAddr::ZERO; batch].into_boxed_slice(),
            rx_bufs: vec![0; batch].into_boxed_slice(),
            tx_hdrs: vec![zeroed_mmsghdr(); slots].into_boxed_slice(),
            tx_iov: (0..slots).map(|_| null_iov()).collect(),
            tx_addr: vec![RawAddr::ZERO; slots].into_boxed_slice(),
            tx_buf: vec![TxBuf::None; slots].into_boxed_slice(),
            tx_sock: vec![0; slots].into_boxed_slice(),
            tx_len: 0,
            copy_pool: Slab::new(config.copy_buffers as usize * config.copy_buffer_size as usize),
            copy_buffer_size: config.copy_buffer_size as usize,
            copy_free: (0..config.copy_buffers).rev().collect(),
            rx: VecDeque::with_capacity(config.buffers as usize),
            stats: IoStats::default(),
        };
        for i in 0..batch {
            let h = &mut me.rx_hdrs[i].msg_hdr;
            h.msg_iov = &mut me.rx_iov[i];
            h.msg_iovlen = 1;
            h.msg_name = me.rx_addr[i].as_mut_ptr();
        }
        for i in 0..slots {
            let h = &mut me.tx_hdrs[i].msg_hdr;
            h.msg_iov = &mut me.tx_iov[i];
            h.msg_iovlen = 1;
            h.msg_name = me.tx_addr[i].as_mut_ptr();
        }
        Ok(me)
    }

    fn free_buf(&mut self, b: u32) {
        assert!(
            self.owner[b as usize] != Owner::Free,
            "dpio: buffer {b} released twice"
        );
        self.owner[b as usize] = Owner::Free;
        self.free_list.push(b);
    }

    fn finish_send(&mut self, i: usize) {
        match std::mem::replace(&mut self.tx_buf[i], TxBuf::None) {
            TxBuf::Pool(b) => self.free_buf(b),
            TxBuf::Copy(c) => self.copy_free.push(c),
            TxBuf::None => panic!("dpio: send queue entry {i} empty"),
        }
    }

    /// Sends the queue with one sendmmsg per run of sends from the same socket.
    fn flush(&mut self) {
        let n = self.tx_len as usize;
        self.stats.note_tx_batch(self.tx_len);
        let mut start = 0;
        while start < n {
            let s = self.tx_sock[start];
            let mut end = start + 1;
            while end < n && self.tx_sock[end] == s {
                end += 1;
            }
            let fd = self.sockets[s as usize].sock.as_raw_fd();
            let mut i = start;
            while i < end {
                // SAFETY: entries i..end are initialised headers pointing at their own iovec
                // and address, and at payload buffers we keep (Sending/copy) until finish_send.
                let r = unsafe {
                    libc::sendmmsg(fd, self.tx_hdrs.as_mut_ptr().add(i), (end - i) as u32, 0)
                };
                self.stats.sendmmsg_calls += 1;
                self.stats.syscalls += 1;
                if r > 0 {
                    for k in i..i + r as usize {
                        self.stats.tx_packets += 1;
                        self.stats.tx_bytes += self.tx_hdrs[k].msg_len as u64;
                        self.finish_send(k);
                    }
                    i += r as usize;
                    continue;
                }
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => {
                        // Socket send buffer full: a relay drops rather than queues.
                        for k in i..end {
                            self.stats.tx_errors += 1;
                            self.finish_send(k);
                        }
                        i = end;
                    }
                    _ => {
                        // This datagram is bad (address family, size): drop it, go on.
                        self.stats.tx_errors += 1;
                        self.finish_send(i);
                        i += 1;
                    }
                }
            }
            start = end;
        }
        self.tx_len = 0;
    }

    /// Drains one readable socket in recvmmsg batches while buffers last.
    fn recv_socket(&mut self, s: u32) {
        let fd = self.sockets[s as usize].sock.as_raw_fd();
        loop {
            let want = self.rx_hdrs.len().min(self.free_list.len());
            if want == 0 {
                self.stats.rx_nobufs += 1;
                return; // stays readable; retried when buffers return
            }
            for i in 0..want {
                let Some(b) = self.free_list.pop() else {
                    unreachable!("checked above")
                };
                self.rx_bufs[i] = b;
                // SAFETY: b < buffers, so the buffer lies inside the pool.
                self.rx_iov[i].iov_base =
                    unsafe { self.pool.as_ptr().add(b as usize * self.buffer_size) }.cast();
                self.rx_iov[i].iov_len = self.buffer_size;
                self.rx_hdrs[i].msg_hdr.msg_namelen = SOCKADDR_LEN as libc::socklen_t;
                self.rx_hdrs[i].msg_hdr.msg_flags = 0;
            }
            // SAFETY: the first `want` headers point at their own iovec/address and at free
            // buffers taken off the free list above.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.rx_hdrs.as_mut_ptr(),
                    want as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            self.stats.recvmmsg_calls += 1;
            self.stats.syscalls += 1;
            let got = if r < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => {}
                    _ => self.stats.rx_errors += 1,
                }
                0
            } else {
                r as usize
            };
            for i in 0..got {
                let b = self.rx_bufs[i];
                let h = &self.rx_hdrs[i];
                let namelen = (h.msg_hdr.msg_namelen as usize).min(SOCKADDR_LEN);
                if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    self.stats.rx_truncated += 1;
                    self.free_list.push(b);
                    continue;
                }
                let Some(peer) = parse_sockaddr(&self.rx_addr[i].0[..namelen]) else {
                    self.stats.rx_errors += 1;
                    self.free_list.push(b);
                    continue;
                };
                let len = h.msg_len;
                self.owner[b as usize] = Owner::Held;
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += len as u64;
                self.rx.push_back(RxPacket {
                    socket: SocketId(s),
                    peer,
                    buf: BufId(b),
                    len,
                });
            }
            for i in (got..want).rev() {
                self.free_list.push(self.rx_bufs[i]);
            }
            if got < want {
                // Short batch: the queue is drained; epoll reports the next arrival.
                self.sockets[s as usize].readable = false;
                return;
            }
        }
    }

    fn buf_offset(&self, buf: BufId, len: u32) -> usize {
        assert!(buf.0 < self.buffers, "dpio: no buffer {}", buf.0);
        assert!(
            len as usize <= self.buffer_size,
            "dpio: len {len} beyond the buffer"
        );
        assert!(
            self.owner[buf.0 as usize] == Owner::Held,
            "dpio: buffer {} not held",
            buf.0
        );
        buf.0 as usize * self.buffer_size
    }

    fn queue(
        &mut self,
        from: SocketId,
        to: SocketAddr,
        buf: TxBuf,
        ptr: *mut u8,
        len: usize,
    ) -> Result<(), SendError> {
        let i = self.tx_len as usize;
        if i >= self.tx_hdrs.len() {
            self.stats.tx_queue_full += 1;
            return Err(SendError::QueueFull);
        }
        let h = &mut self.tx_hdrs[i];
        h.msg_hdr.msg_namelen = self.tx_addr[i].write(&to);
        self.tx_iov[i].iov_base = ptr.cast();
        self.tx_iov[i].iov_len = len;
        self.tx_buf[i] = buf;
        self.tx_sock[i] = from.0;
        self.tx_len += 1;
        Ok(())
    }
}

impl Backend for MioBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Mio
    }

    fn add_wake_fd(&mut self, fd: std::os::fd::RawFd) -> io::Result<()> {
        // A token no socket has: `poll` skips its events, the wait simply ends.
        self.poll.registry().register(
            &mut mio::unix::SourceFd(&fd),
            Token(usize::MAX),
            Interest::READABLE,
        )
    }

    fn add_udp(&mut self, bind: SocketAddr) -> io::Result<SocketId> {
        if self.sockets.len() as u32 >= self.max_sockets {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "dpio: max_sockets reached",
            ));
        }
        let id = self.sockets.len() as u32;
        let mut sock = mio::net::UdpSocket::from_std(bind_udp(bind, self.socket_buffer_bytes)?);
        self.poll
            .registry()
            .register(&mut sock, Token(id as usize), Interest::READABLE)?;
        // Datagrams may already be queued; the first poll tries to read.
        self.sockets.push(MSock {
            sock,
            readable: true,
        });
        self.ready.push(id);
        Ok(SocketId(id))
    }

    fn local_addr(&self, socket: SocketId) -> io::Result<SocketAddr> {
        match self.sockets.get(socket.0 as usize) {
            Some(s) => s.sock.local_addr(),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "dpio: unknown socket",
            )),
        }
    }

    fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stats.polls += 1;
        self.flush();
        let pending = !self.free_list.is_empty() && !self.ready.is_empty();
        let t = if !self.rx.is_empty() || pending {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        self.stats.epoll_waits += 1;
        self.stats.syscalls += 1;
        match self.poll.poll(&mut self.events, t) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            if let Some(s) = self.sockets.get_mut(ev.token().0) {
                if !s.readable {
                    s.readable = true;
                    self.ready.push(ev.token().0 as u32);
                }
            }
        }
        let before = self.stats.rx_packets;
        let mut i = 0;
        while i < self.ready.len() {
            let s = self.ready[i];
            self.recv_socket(s);
            if self.sockets[s as usize].readable {
                i += 1;
            } else {
                self.ready.swap_remove(i);
            }
        }
        self.stats
            .note_rx_batch((self.stats.rx_packets - before) as u32);
        Ok(())
    }

    #[inline]
    fn next_rx(&mut self) -> Option<RxPacket> {
        self.rx.pop_front()
    }

    #[inline]
    fn payload(&self, buf: BufId, len: u32) -> &[u8] {
        let off = self.buf_offset(buf, len);
        self.pool.slice(off, len as usize)
    }

    #[inline]
    fn payload_mut(&mut self, buf: BufId, len: u32) -> &mut [u8] {
        let off = self.buf_offset(buf, len);
        self.pool.slice_mut(off, len as usize)
    }

    fn send(
        &mut self,
        from: SocketId,
        to: SocketAddr,
        buf: BufId,
        len: u32,
    ) -> Result<(), SendError> {
        assert!(
            buf.0 < self.buffers && self.owner[buf.0 as usize] == Owner::Held,
            "dpio: sending buffer {} not held",
            buf.0
        );
        if from.0 as usize >= self.sockets.len() {
            self.free_buf(buf.0);
            return Err(SendError::UnknownSocket);
        }
        if len as usize > self.buffer_size {
            self.free_buf(buf.0);
            return Err(SendError::TooLong);
        }
        let off = self.buf_offset(buf, len);
        // SAFETY: `off + len` lies inside the pool (checked by buf_offset).
        let ptr = unsafe { self.pool.as_ptr().add(off) };
        self.owner[buf.0 as usize] = Owner::Sending;
        let r = self.queue(from, to, TxBuf::Pool(buf.0), ptr, len as usize);
        if r.is_err() {
            self.free_buf(buf.0);
        }
        r
    }

    fn send_copy(&mut self, from: SocketId, to: SocketAddr, data: &[u8]) -> Result<(), SendError> {
        if from.0 as usize >= self.sockets.len() {
            return Err(SendError::UnknownSocket);
        }
        if data.len() > self.copy_buffer_size {
            return Err(SendError::TooLong);
        }
        let Some(c) = self.copy_free.pop() else {
            self.stats.tx_queue_full += 1;
            return Err(SendError::NoCopyBuffer);
        };
        let off = c as usize * self.copy_buffer_size;
        self.copy_pool
            .slice_mut(off, data.len())
            .copy_from_slice(data);
        // SAFETY: `off + data.len()` lies inside the copy pool (checked by slice_mut above).
        let ptr = unsafe { self.copy_pool.as_ptr().add(off) };
        let r = self.queue(from, to, TxBuf::Copy(c), ptr, data.len());
        if r.is_err() {
            self.copy_free.push(c);
        }
        r
    }

    fn release(&mut self, buf: BufId) {
        assert!(
            buf.0 < self.buffers && self.owner[buf.0 as usize] == Owner::Held,
            "dpio: releasing buffer {} not held",
            buf.0
        );
        self.free_buf(buf.0);
    }

    fn stats(&self) -> &IoStats {
        &self.stats
    }

    fn buffer_count(&self) -> u32 {
        self.buffers
    }

    fn free_buffers(&self) -> u32 {
        self.free_list.len() as u32
    }

    fn sends_in_flight(&self) -> u32 {
        self.tx_len
    }

    fn max_payload(&self) -> u32 {
        self.buffer_size as u32
    }
}
