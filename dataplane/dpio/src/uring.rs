//! io_uring backend: one ring per core, one provided-buffer ring (IORING_REGISTER_PBUF_RING),
//! one multishot `RecvMsgMulti` per socket, `SendMsg` SQEs straight from the receive buffer.
//!
//! Syscalls: one `io_uring_enter` per [`Backend::poll`] that submits the turn's sends and
//! waits; with DEFER_TASKRUN the kernel copies received datagrams into buffers inside that same
//! enter, so a turn costs one syscall however many packets it moves.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::types::{BufRingEntry, CancelBuilder, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, IoUring, Probe};

use crate::addr::{parse_sockaddr, RawAddr, SOCKADDR_LEN};
use crate::pool::{Owner, Slab, TxBuf};
use crate::{
    io_uring_disabled_sysctl, Backend, BackendKind, BufId, Config, IoStats, RxPacket, SendError,
    SocketId, UringUnavailable,
};

/// Size of the kernel's `struct io_uring_recvmsg_out` that starts every received buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// Where the payload starts in a receive buffer on io_uring: recvmsg_out header, then the
/// peer address field (always `sockaddr_in6`-sized), no control data.
pub const URING_PAYLOAD_OFFSET: usize = RECVMSG_OUT_LEN + SOCKADDR_LEN;
/// The one buffer group per ring.
const BGID: u16 = 0;

/// user_data: high 32 bits say what completed, low 32 bits which socket or send slot.
const UD_RECV: u64 = 1 << 32;
const UD_SEND: u64 = 2 << 32;
const UD_CANCEL: u64 = 3 << 32;
const UD_WAKE: u64 = 4 << 32;
const UD_KIND: u64 = 0xffff_ffff << 32;

/// One send in flight: the msghdr points at its own iovec and address, so slots live in a
/// boxed slice that never moves.
#[derive(Debug)]
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: RawAddr,
    buf: TxBuf,
}

#[derive(Debug)]
struct Sock {
    sock: UdpSocket,
    armed: bool,
}

/// The io_uring backend. Not `Send`: the ring is single-issuer and must be driven by the
/// thread that created it.
pub struct UringBackend {
    // Declared first so that it drops first: the kernel is done with every buffer (see Drop)
    // before the slabs below are freed.
    ring: IoUring,
    pool: Slab,
    buffer_size: usize,
    buffers: u32,
    owner: Box<[Owner]>,
    free: u32,
    /// The provided-buffer ring shared with the kernel; we own its tail.
    buf_ring: Slab,
    buf_ring_tail: u16,
    copy_pool: Slab,
    copy_buffer_size: usize,
    copy_free: Vec<u32>,
    sockets: Vec<Sock>,
    /// Ids of sockets whose multishot receive ended, to re-arm: a poll visits only these.
    unarmed: Vec<u32>,
    max_sockets: u32,
    /// msghdr templates for multishot recvmsg (only namelen/controllen matter), per socket.
    recv_hdr: Box<[libc::msghdr]>,
    slots: Box<[SendSlot]>,
    slot_free: Vec<u32>,
    /// Sends pushed to the SQ since the last submit.
    queued_sends: u32,
    rx: std::collections::VecDeque<RxPacket>,
    sqpoll: bool,
    socket_buffer_bytes: u32,
    stats: IoStats,
    /// The wake eventfd and whether its multishot poll is armed.
    wake: Option<(std::os::fd::RawFd, bool)>,
}

impl std::fmt::Debug for UringBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringBackend")
            .field("buffers", &self.buffers)
            .field("free", &self.free)
            .field("sockets", &self.sockets.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct; all-zero (null pointers, zero lengths) is valid.
    unsafe { std::mem::zeroed() }
}

impl UringBackend {
    /// Sets up the ring, probes what we need and registers the buffer ring; any failure says
    /// why io_uring cannot be used.
    pub fn new(config: &Config) -> Result<UringBackend, UringUnavailable> {
        let sysctl = io_uring_disabled_sysctl();
        if sysctl == Some(2) {
            return Err(UringUnavailable::DisabledBySysctl);
        }
        let sq_entries = (config.send_slots + config.max_sockets)
            .next_power_of_two()
            .max(8);
        // One CQE per buffer, per send slot and per socket (the end of a multishot) can be
        // outstanding at once, so the CQ never overflows.
        let cq_entries = (config.buffers + config.send_slots + config.max_sockets)
            .next_power_of_two()
            .max(2 * sq_entries);
        let ring = match config.sqpoll_idle_ms {
            Some(idle) => IoUring::builder()
                .setup_cqsize(cq_entries)
                .setup_sqpoll(idle)
                .build(sq_entries),
            None => IoUring::builder()
                .setup_cqsize(cq_entries)
                .setup_single_issuer()
                .setup_defer_taskrun()
                .build(sq_entries)
                .or_else(|_| {
                    IoUring::builder()
                        .setup_cqsize(cq_entries)
                        .build(sq_entries)
                }),
        };
        let ring = ring.map_err(|err| UringUnavailable::Setup { err, sysctl })?;

        let mut probe = Probe::new();
        if ring.submitter().register_probe(&mut probe).is_err() {
            return Err(UringUnavailable::MissingOpcode("IORING_REGISTER_PROBE"));
        }
        if !probe.is_supported(opcode::RecvMsgMulti::CODE) {
            return Err(UringUnavailable::MissingOpcode("IORING_OP_RECVMSG"));
        }
        if !probe.is_supported(opcode::SendMsg::CODE) {
            return Err(UringUnavailable::MissingOpcode("IORING_OP_SENDMSG"));
        }

        let buffers = config.buffers;
        let buffer_size = config.buffer_size as usize;
        let pool = Slab::new(buffers as usize * buffer_size);
        let buf_ring = Slab::new(buffers as usize * std::mem::size_of::<BufRingEntry>());
        // SAFETY: `buf_ring` is page-aligned, holds `buffers` entries and lives in `self`
        // until Drop unregisters it (Drop runs before the slab is freed).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(buf_ring.as_ptr() as u64, buffers as u16, BGID, 0)
                .map_err(UringUnavailable::BufRing)?;
        }
        // Registered files spare the kernel a file-table lookup per SQE; the table is sparse
        // so sockets can be added later.
        ring.submitter()
            .register_files_sparse(config.max_sockets)
            .map_err(|err| UringUnavailable::Setup { err, sysctl })?;

        let mut recv_hdr = vec![zeroed_msghdr(); config.max_sockets as usize].into_boxed_slice();
        for h in recv_hdr.iter_mut() {
            h.msg_namelen = SOCKADDR_LEN as libc::socklen_t;
        }
        let mut slots: Box<[SendSlot]> = (0..config.send_slots)
            .map(|_| SendSlot {
                hdr: zeroed_msghdr(),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                addr: RawAddr::ZERO,
                buf: TxBuf::None,
            })
            .collect();
        for s in slots.iter_mut() {
            // The slot never moves (boxed slice), so these self-pointers stay valid.
            s.hdr.msg_iov = &mut s.iov;
            s.hdr.msg_iovlen = 1;
            s.hdr.msg_name = s.addr.as_mut_ptr();
        }

        let mut me = UringBackend {
            ring,
            pool,
            buffer_size,
            buffers,
            owner: vec![Owner::Held; buffers as usize].into_boxed_slice(),
            free: 0,
            buf_ring,
            buf_ring_tail: 0,
            copy_pool: Slab::new(config.copy_buffers as usize * config.copy_buffer_size as usize),
            copy_buffer_size: config.copy_buffer_size as usize,
            copy_free: (0..config.copy_buffers).rev().collect(),
            sockets: Vec::with_capacity(config.max_sockets as usize),
            unarmed: Vec::with_capacity(config.max_sockets as usize),
            max_sockets: config.max_sockets,
            recv_hdr,
            slot_free: (0..config.send_slots).rev().collect(),
            slots,
            queued_sends: 0,
            rx: std::collections::VecDeque::with_capacity(buffers as usize),
            sqpoll: config.sqpoll_idle_ms.is_some(),
            socket_buffer_bytes: config.socket_buffer_bytes,
            stats: IoStats::default(),
            wake: None,
        };
        for b in 0..buffers {
            me.recycle(b);
        }
        Ok(me)
    }

    /// Gives buffer `b` back to the kernel's buffer ring.
    fn recycle(&mut self, b: u32) {
        let i = b as usize;
        assert!(
            self.owner[i] != Owner::Free,
            "dpio: buffer {b} released twice"
        );
        self.owner[i] = Owner::Free;
        let base = self.buf_ring.as_ptr().cast::<BufRingEntry>();
        let slot = (self.buf_ring_tail as u32 & (self.buffers - 1)) as usize;
        // SAFETY: `slot` < `buffers`, the ring's entry count; entries at and after the tail
        // belong to us until the tail is published, and we write only addr/len/bid (the tail
        // shares entry 0's `resv` field, which we leave alone).
        unsafe {
            let e = &mut *base.add(slot);
            e.set_addr(self.pool.as_ptr().add(i * self.buffer_size) as u64);
            e.set_len(self.buffer_size as u32);
            e.set_bid(b as u16);
        }
        self.buf_ring_tail = self.buf_ring_tail.wrapping_add(1);
        // SAFETY: `tail` points into the ring's first entry; the kernel reads it with an
        // acquire load, so a release store publishes the entry written above.
        unsafe {
            let tail = BufRingEntry::tail(base) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.buf_ring_tail, std::sync::atomic::Ordering::Release);
        }
        self.free += 1;
    }

    /// Arms the multishot poll on the wake fd; false when the submission queue is full.
    fn arm_wake(&mut self) -> bool {
        let Some((fd, false)) = self.wake else {
            return true;
        };
        let sqe = opcode::PollAdd::new(io_uring::types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(UD_WAKE);
        // SAFETY: a poll SQE references no memory of ours; the fd outlives the ring (the
        // caller's contract in `add_wake_fd`).
        let ok = unsafe { self.ring.submission().push(&sqe).is_ok() };
        if ok {
            self.wake = Some((fd, true));
        }
        ok
    }

    fn arm(&mut self, s: u32) -> bool {
        let hdr: *const libc::msghdr = &self.recv_hdr[s as usize];
        let sqe = opcode::RecvMsgMulti::new(Fixed(s), hdr, BGID)
            .build()
            .user_data(UD_RECV | s as u64);
        // SAFETY: `hdr` lives in a boxed slice owned by self for the ring's lifetime; the
        // buffers it selects come from the registered buffer ring.
        let ok = unsafe { self.ring.submission().push(&sqe).is_ok() };
        if ok {
            self.sockets[s as usize].armed = true;
        }
        ok
    }

    fn buf_offset(&self, buf: BufId, len: u32) -> usize {
        assert!(buf.0 < self.buffers, "dpio: no buffer {}", buf.0);
        assert!(
            len <= self.max_payload(),
            "dpio: len {len} beyond the buffer"
        );
        buf.0 as usize * self.buffer_size + URING_PAYLOAD_OFFSET
    }

    fn push_send(
        &mut self,
        from: SocketId,
        to: SocketAddr,
        buf: TxBuf,
        ptr: *mut u8,
        len: usize,
    ) -> Result<(), SendError> {
        let Some(slot) = self.slot_free.pop() else {
            self.stats.tx_queue_full += 1;
            return Err(SendError::QueueFull);
        };
        let s = &mut self.slots[slot as usize];
        s.hdr.msg_namelen = s.addr.write(&to);
        s.iov.iov_base = ptr.cast();
        s.iov.iov_len = len;
        s.buf = buf;
        let hdr: *const libc::msghdr = &s.hdr;
        let sqe = opcode::SendMsg::new(Fixed(from.0), hdr)
            .build()
            .user_data(UD_SEND | slot as u64);
        // SAFETY: the msghdr, its iovec and address live in the slot until its CQE arrives;
        // the payload buffer is marked Sending (or is a taken copy buffer) until then.
        let pushed = unsafe { self.ring.submission().push(&sqe).is_ok() };
        if !pushed {
            // The SQ holds send_slots + max_sockets entries and is emptied every poll, so
            // this only happens with SQPOLL lagging; count it like a full queue.
            self.slots[slot as usize].buf = TxBuf::None;
            self.slot_free.push(slot);
            self.stats.tx_queue_full += 1;
            return Err(SendError::QueueFull);
        }
        self.queued_sends += 1;
        Ok(())
    }

    fn complete_recv(&mut self, s: u32, res: i32, flags: u32) {
        if !cqueue::more(flags) && self.sockets[s as usize].armed {
            self.sockets[s as usize].armed = false;
            self.unarmed.push(s);
        }
        if res < 0 {
            match -res {
                libc::ENOBUFS => self.stats.rx_nobufs += 1,
                libc::ECANCELED => {}
                _ => self.stats.rx_errors += 1,
            }
            return;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            self.stats.rx_errors += 1;
            return;
        };
        let b = bid as u32;
        assert!(b < self.buffers && self.owner[b as usize] == Owner::Free);
        self.owner[b as usize] = Owner::Held;
        self.free -= 1;
        let got = (res as usize).min(self.buffer_size);
        let bytes = self.pool.slice(b as usize * self.buffer_size, got);
        let parsed = RecvMsgOut::parse(bytes, &self.recv_hdr[s as usize])
            .ok()
            .and_then(|m| {
                if m.is_payload_truncated() {
                    return Some(Err(()));
                }
                let peer = parse_sockaddr(m.name_data())?;
                Some(Ok((peer, m.payload_data().len() as u32)))
            });
        match parsed {
            Some(Ok((peer, len))) => {
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += len as u64;
                self.rx.push_back(RxPacket {
                    socket: SocketId(s),
                    peer,
                    buf: BufId(b),
                    len,
                });
            }
            Some(Err(())) => {
                self.stats.rx_truncated += 1;
                self.recycle(b);
            }
            None => {
                self.stats.rx_errors += 1;
                self.recycle(b);
            }
        }
    }

    fn complete_send(&mut self, slot: u32, res: i32) {
        let buf = std::mem::replace(&mut self.slots[slot as usize].buf, TxBuf::None);
        match buf {
            TxBuf::Pool(b) => self.recycle(b),
            TxBuf::Copy(c) => self.copy_free.push(c),
            TxBuf::None => panic!("dpio: completion for idle send slot {slot}"),
        }
        self.slot_free.push(slot);
        if res < 0 {
            self.stats.tx_errors += 1;
        } else {
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += res as u64;
        }
    }
}

impl Backend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }

    fn add_wake_fd(&mut self, fd: std::os::fd::RawFd) -> io::Result<()> {
        if self.wake.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "dpio: one wake fd per backend",
            ));
        }
        self.wake = Some((fd, false));
        if !self.arm_wake() {
            self.ring.submit()?;
            self.arm_wake();
        }
        Ok(())
    }

    fn add_udp(&mut self, bind: SocketAddr) -> io::Result<SocketId> {
        if self.sockets.len() as u32 >= self.max_sockets {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "dpio: max_sockets reached",
            ));
        }
        let sock = crate::epoll::bind_udp(bind, self.socket_buffer_bytes)?;
        let id = self.sockets.len() as u32;
        self.ring
            .submitter()
            .register_files_update(id, &[sock.as_raw_fd()])?;
        self.sockets.push(Sock { sock, armed: false });
        if !self.arm(id) {
            return Err(io::Error::other("dpio: submission queue full at start-up"));
        }
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
        self.arm_wake();
        // Re-arm receives the kernel ended (ENOBUFS, errors) once there is a buffer to fill.
        if self.free > 0 {
            let mut i = 0;
            while i < self.unarmed.len() {
                let s = self.unarmed[i];
                if self.sockets[s as usize].armed || self.arm(s) {
                    self.stats.rx_rearms += 1;
                    self.unarmed.swap_remove(i);
                } else {
                    // Submission queue full: keep it for the next poll.
                    i += 1;
                }
            }
        }
        let sends = std::mem::take(&mut self.queued_sends);
        self.stats.note_tx_batch(sends);
        let wait = self.rx.is_empty() && timeout != Some(Duration::ZERO);
        let entered = !self.sqpoll || wait || self.ring.submission().need_wakeup();
        let res = if !wait {
            self.ring.submit()
        } else if let Some(t) = timeout {
            let ts = Timespec::from(t);
            let args = SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submit_and_wait(1)
        };
        if entered {
            self.stats.uring_enters += 1;
            self.stats.syscalls += 1;
        }
        match res {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) => {}
            Err(e) => return Err(e),
        }
        let before = self.stats.rx_packets;
        loop {
            // Copy one CQE out at a time so the handlers can borrow self.
            let Some(cqe) = self.ring.completion().next() else {
                break;
            };
            let ud = cqe.user_data();
            let idx = (ud & 0xffff_ffff) as u32;
            match ud & UD_KIND {
                UD_RECV => self.complete_recv(idx, cqe.result(), cqe.flags()),
                UD_SEND => self.complete_send(idx, cqe.result()),
                // The wake poll ended: re-armed at the next poll.
                UD_WAKE if !cqueue::more(cqe.flags()) => {
                    if let Some((fd, _)) = self.wake {
                        self.wake = Some((fd, false));
                    }
                }
                _ => {} // cancellations at drop
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
        assert!(
            self.owner[buf.0 as usize] == Owner::Held,
            "dpio: buffer {} not held",
            buf.0
        );
        self.pool.slice(off, len as usize)
    }

    #[inline]
    fn payload_mut(&mut self, buf: BufId, len: u32) -> &mut [u8] {
        let off = self.buf_offset(buf, len);
        assert!(
            self.owner[buf.0 as usize] == Owner::Held,
            "dpio: buffer {} not held",
            buf.0
        );
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
            self.recycle(buf.0);
            return Err(SendError::UnknownSocket);
        }
        if len > self.max_payload() {
            self.recycle(buf.0);
            return Err(SendError::TooLong);
        }
        let off = self.buf_offset(buf, len);
        // SAFETY: `off + len` lies inside the pool (checked by buf_offset).
        let ptr = unsafe { self.pool.as_ptr().add(off) };
        self.owner[buf.0 as usize] = Owner::Sending;
        let r = self.push_send(from, to, TxBuf::Pool(buf.0), ptr, len as usize);
        if r.is_err() {
            self.recycle(buf.0);
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
        let r = self.push_send(from, to, TxBuf::Copy(c), ptr, data.len());
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
        self.recycle(buf.0);
    }

    fn stats(&self) -> &IoStats {
        &self.stats
    }

    fn buffer_count(&self) -> u32 {
        self.buffers
    }

    fn free_buffers(&self) -> u32 {
        self.free
    }

    fn sends_in_flight(&self) -> u32 {
        self.slots.len() as u32 - self.slot_free.len() as u32
    }

    fn max_payload(&self) -> u32 {
        (self.buffer_size - URING_PAYLOAD_OFFSET) as u32
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // Cancel every request and wait for the cancellations, so the kernel stops writing
        // into our buffers before the slabs are freed. Sends in flight on UDP finish at once.
        let _ = self.ring.submit();
        // Each armed receive first, by its user_data: the kernel finds that in one hash
        // bucket, where a cancel-any scans every request per cancellation (seconds for the
        // thousands of sockets of a media port range).
        let mut pending = 0usize;
        for s in 0..self.sockets.len() {
            if !self.sockets[s].armed {
                continue;
            }
            pending += 1;
            let sqe = opcode::AsyncCancel::new(UD_RECV | s as u64)
                .build()
                .user_data(UD_CANCEL | s as u64);
            // SAFETY: a cancel SQE references no memory of ours.
            while unsafe { self.ring.submission().push(&sqe).is_err() } {
                if self.ring.submit().is_err() {
                    break;
                }
            }
        }
        // The cancelled receives complete through task work, which (DEFER_TASKRUN) runs only
        // while we wait for completions: wait for each one's final CQE, for at most a second.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while pending > 0 && std::time::Instant::now() < deadline {
            let ts = Timespec::new().nsec(10_000_000);
            let args = SubmitArgs::new().timespec(&ts);
            if let Err(e) = self.ring.submitter().submit_with_args(1, &args) {
                if e.raw_os_error() != Some(libc::ETIME) && e.raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            for cqe in self.ring.completion() {
                if cqe.user_data() & UD_KIND == UD_RECV && !cqueue::more(cqe.flags()) {
                    pending = pending.saturating_sub(1);
                }
            }
        }
        // Then whatever is left (nothing, normally), waiting for all of it.
        let _ = self
            .ring
            .submitter()
            .register_sync_cancel(Some(Timespec::new().sec(1)), CancelBuilder::any());
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}
