//! Paced RTP load: calls of two endpoints each, every endpoint sending 20 ms G.711 packets
//! to the relay port facing it and receiving the other endpoint's stream back through it.
//!
//! Each generator thread owns a share of the calls and drives their sockets through a `dpio`
//! backend — io_uring where the kernel has it (every send slot's packets go out in one
//! submission, receives are multishot), epoll otherwise — so that one generator core drives
//! more packets than the relay core it measures. The 20 ms packet interval is cut into
//! [`SLOTS`] send slots and stream `i` sends in slot `i % SLOTS`, so load arrives spread over
//! the interval as independent calls' would rather than in one burst. Every packet carries its
//! send time (ns since the run's epoch, bytes 12..20 of the payload); the receiver records
//! `now − sent` into a latency histogram, so the figure is the relay's whole added delay
//! including both kernels' UDP paths.
//!
//! A run is bounded: `packets_per_stream` packets per stream, then at most [`DRAIN`] to
//! collect the last packets; the loop stops by itself either way.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dpio::{AnyBackend, Backend, SendError, SocketId};
use hdrhistogram::Histogram;

/// Packet interval of the streams (G.711, 20 ms).
pub const PTIME: Duration = Duration::from_millis(20);
/// Send slots per packet interval.
pub const SLOTS: u32 = 20;
/// How long receivers wait for stragglers after the last send.
pub const DRAIN: Duration = Duration::from_millis(500);
/// A send slot starting later than this counts as late: a quarter of the packet interval, as
/// much jitter as the generator may add before it measures itself rather than the relay.
pub const LATE: Duration = Duration::from_millis(5);
/// RTP header + 160 bytes of µ-law.
pub const PACKET_LEN: usize = 172;
/// Base of the SSRCs the generator uses; SSRC − base is the global stream index.
const SSRC_BASE: u32 = 0x5452_0000;

/// One call's addresses: the two endpoints (bound by [`Endpoints::bind`]) and the relay ports
/// facing each (from the relay's session setup).
#[derive(Debug, Clone, Copy)]
pub struct CallRoute {
    /// Relay address endpoint A sends to (and receives B's stream from).
    pub relay_a: SocketAddr,
    /// Relay address endpoint B sends to.
    pub relay_b: SocketAddr,
}

/// What one run measured.
#[derive(Debug)]
pub struct LoadReport {
    /// Streams driven (two per call).
    pub streams: usize,
    /// Packets sent.
    pub sent: u64,
    /// Packets received (at most one per packet sent: duplicates are counted apart).
    pub received: u64,
    /// Packets received more often than sent.
    pub duplicates: u64,
    /// Packets that arrived with a payload the generator did not send (counted, ignored).
    pub foreign: u64,
    /// Send slots that started more than [`LATE`] late (the generator fell behind).
    pub late_slots: u64,
    /// Send slots in all.
    pub slots: u64,
    /// Sends the generator could not queue or the kernel refused (part of the loss).
    pub send_failures: u64,
    /// Wall time of the sending phase.
    pub send_time: Duration,
    /// Relay latency, send → receive, ns.
    pub latency_ns: Histogram<u64>,
}

impl LoadReport {
    /// Lost packets as a percentage of those sent.
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        (self.sent - self.received.min(self.sent)) as f64 * 100.0 / self.sent as f64
    }

    /// Packets per second offered to the relay during the sending phase.
    pub fn offered_pps(&self) -> f64 {
        self.sent as f64 / self.send_time.as_secs_f64().max(1e-9)
    }

    /// Whether the generator kept its schedule (< 1 % of slots late). A run where it did not
    /// measured the generator, not the relay.
    pub fn kept_pace(&self) -> bool {
        self.late_slots * 100 <= self.slots
    }
}

/// Generator threads with their endpoints bound, waiting for the relay's routes.
#[derive(Debug)]
pub struct Generator {
    addrs: Vec<[SocketAddr; 2]>,
    /// Per thread: where its routes go, and the thread.
    threads: Vec<(mpsc::Sender<Go>, JoinHandle<io::Result<LoadReport>>)>,
    /// Global call index of each thread's calls.
    shares: Vec<Vec<usize>>,
    /// The backend the generator runs on.
    pub backend: dpio::BackendKind,
}

/// What a prepared thread waits for: the routes of its calls (`None`: abandon the run).
#[derive(Debug)]
struct Go {
    routes: Option<Vec<CallRoute>>,
    packets: u32,
    epoch: Instant,
    start: Instant,
}

impl Generator {
    /// Starts `threads` generator threads (pinned round-robin to `cpus`; empty = unpinned),
    /// which bind two endpoints on `ip` per call for `calls` calls.
    pub fn prepare(
        ip: IpAddr,
        calls: usize,
        threads: usize,
        cpus: &[usize],
    ) -> io::Result<Generator> {
        let threads = threads.max(1).min(calls.max(1));
        let mut shares: Vec<Vec<usize>> = (0..threads).map(|_| Vec::new()).collect();
        for c in 0..calls {
            shares[c % threads].push(c);
        }
        let mut addrs = vec![[SocketAddr::from(([0, 0, 0, 0], 0)); 2]; calls];
        let mut handles = Vec::with_capacity(threads);
        let mut backend = dpio::BackendKind::Uring;
        for (t, share) in shares.iter().enumerate() {
            let cpu = (!cpus.is_empty()).then(|| cpus[t % cpus.len()]);
            let share = share.clone();
            let (bound_tx, bound_rx) = mpsc::channel::<Bound>();
            let (go_tx, go_rx) = mpsc::channel::<Go>();
            let h = thread::Builder::new()
                .name(format!("rtpload-{t}"))
                .spawn(move || thread_main(cpu, &share, ip, &bound_tx, &go_rx))?;
            let (kind, bound) = bound_rx
                .recv()
                .map_err(|_| io::Error::other("generator thread died while binding"))??;
            backend = kind;
            for (i, &c) in shares[t].iter().enumerate() {
                addrs[c] = bound[i];
            }
            handles.push((go_tx, h));
        }
        Ok(Generator {
            addrs,
            threads: handles,
            shares,
            backend,
        })
    }

    /// The endpoints `[a, b]` of every call, for the relay's session setup.
    pub fn addrs(&self) -> &[[SocketAddr; 2]] {
        &self.addrs
    }

    /// Drives every call through `routes` (one per call) for `packets_per_stream` packets
    /// per stream; `None` abandons the run (the threads exit).
    pub fn run(
        self,
        routes: Option<&[CallRoute]>,
        packets_per_stream: u32,
    ) -> io::Result<LoadReport> {
        let epoch = Instant::now();
        // Start a little ahead so every thread is in its loop when the first slot comes.
        let start = epoch + Duration::from_millis(50);
        if let Some(r) = routes {
            assert_eq!(r.len(), self.addrs.len(), "one route per call");
        }
        for ((go, _), share) in self.threads.iter().zip(&self.shares) {
            let mine = routes.map(|r| share.iter().map(|&c| r[c]).collect());
            // A thread that died already reports its error on join.
            let _ = go.send(Go {
                routes: mine,
                packets: packets_per_stream,
                epoch,
                start,
            });
        }
        let mut total: Option<LoadReport> = None;
        for (_, h) in self.threads {
            let r = h
                .join()
                .map_err(|_| io::Error::other("generator thread panicked"))??;
            total = Some(match total {
                None => r,
                Some(mut t) => {
                    t.merge(r)?;
                    t
                }
            });
        }
        total.ok_or_else(|| io::Error::other("no calls to drive"))
    }
}

impl LoadReport {
    fn merge(&mut self, r: LoadReport) -> io::Result<()> {
        self.streams += r.streams;
        self.sent += r.sent;
        self.received += r.received;
        self.duplicates += r.duplicates;
        self.foreign += r.foreign;
        self.late_slots += r.late_slots;
        self.slots += r.slots;
        self.send_failures += r.send_failures;
        self.send_time = self.send_time.max(r.send_time);
        self.latency_ns
            .add(&r.latency_ns)
            .map_err(|e| io::Error::other(format!("histogram merge: {e}")))
    }
}

/// One stream as its sender and receiver keep it.
#[derive(Debug)]
struct Stream {
    from: SocketId,
    to_relay: SocketAddr,
    ssrc: u32,
    seq: u16,
    sent: u64,
    received: u64,
}

fn backend_config(sockets: usize) -> dpio::Config {
    dpio::Config {
        buffers: 8192,
        buffer_size: 512,
        send_slots: 8192,
        copy_buffers: 8192,
        copy_buffer_size: 256,
        max_sockets: sockets.max(1) as u32,
        ..dpio::Config::default()
    }
}

/// What a generator thread reports once its endpoints are bound.
type Bound = io::Result<(dpio::BackendKind, Vec<[SocketAddr; 2]>)>;
/// A thread's backend with its endpoints: socket ids and addresses, `[a, b]` per call.
type Setup = (AnyBackend, Vec<[SocketId; 2]>, Vec<[SocketAddr; 2]>);

fn thread_main(
    cpu: Option<usize>,
    share: &[usize],
    ip: IpAddr,
    bound_tx: &mpsc::Sender<Bound>,
    go_rx: &mpsc::Receiver<Go>,
) -> io::Result<LoadReport> {
    let setup = || -> io::Result<Setup> {
        if let Some(cpu) = cpu {
            dpio::pin_current_thread(cpu)?;
        }
        let (mut io, _why_not_uring) = AnyBackend::new(&backend_config(share.len() * 2))?;
        let mut ids = Vec::with_capacity(share.len());
        let mut addrs = Vec::with_capacity(share.len());
        for _ in share {
            let a = io.add_udp(SocketAddr::new(ip, 0))?;
            let b = io.add_udp(SocketAddr::new(ip, 0))?;
            addrs.push([io.local_addr(a)?, io.local_addr(b)?]);
            ids.push([a, b]);
        }
        Ok((io, ids, addrs))
    };
    let (mut io, ids, addrs) = match setup() {
        Ok(v) => v,
        Err(e) => {
            let msg = e.to_string();
            let _ = bound_tx.send(Err(e));
            return Err(io::Error::other(msg));
        }
    };
    let _ = bound_tx.send(Ok((io.kind(), addrs)));
    let go = go_rx
        .recv()
        .map_err(|_| io::Error::other("generator abandoned"))?;
    let Some(routes) = go.routes else {
        return LoadReport::empty();
    };
    let mut streams = Vec::with_capacity(share.len() * 2);
    for ((&call, pair), route) in share.iter().zip(&ids).zip(&routes) {
        for (leg, &sock) in pair.iter().enumerate() {
            let global = (call * 2 + leg) as u32;
            streams.push(Stream {
                from: sock,
                to_relay: if leg == 0 {
                    route.relay_a
                } else {
                    route.relay_b
                },
                ssrc: SSRC_BASE.wrapping_add(global),
                seq: 0,
                sent: 0,
                received: 0,
            });
        }
    }
    drive(&mut io, streams, go.packets, go.epoch, go.start)
}

impl LoadReport {
    fn empty() -> io::Result<LoadReport> {
        Ok(LoadReport {
            streams: 0,
            sent: 0,
            received: 0,
            duplicates: 0,
            foreign: 0,
            late_slots: 0,
            slots: 0,
            send_failures: 0,
            send_time: Duration::ZERO,
            latency_ns: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .map_err(|e| io::Error::other(format!("histogram: {e}")))?,
        })
    }
}

fn drive(
    io: &mut AnyBackend,
    mut streams: Vec<Stream>,
    packets: u32,
    epoch: Instant,
    start: Instant,
) -> io::Result<LoadReport> {
    let mut report = LoadReport::empty()?;
    report.streams = streams.len();
    // Streams of this thread by global stream index, for the receive side.
    let mut by_global: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (i, s) in streams.iter().enumerate() {
        by_global.insert(s.ssrc.wrapping_sub(SSRC_BASE), i);
    }
    let mut by_slot: Vec<Vec<usize>> = (0..SLOTS).map(|_| Vec::new()).collect();
    for (i, s) in streams.iter().enumerate() {
        by_slot[(s.ssrc.wrapping_sub(SSRC_BASE) % SLOTS) as usize].push(i);
    }

    let slot_len = PTIME / SLOTS;
    let total_slots = u64::from(packets) * u64::from(SLOTS);
    let mut pkt = [0u8; PACKET_LEN];
    pkt[0] = 0x80;
    pkt[20..].fill(0xff);
    let mut slot_no: u64 = 0;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // Queue every slot that is due (catching up if we fell behind); `poll` submits them.
        while slot_no < total_slots {
            let due = start + slot_len * (slot_no as u32);
            if now < due {
                break;
            }
            if now.duration_since(due) > LATE {
                report.late_slots += 1;
            }
            report.slots += 1;
            let k = (slot_no / u64::from(SLOTS)) as u32;
            for &i in &by_slot[(slot_no % u64::from(SLOTS)) as usize] {
                let s = &mut streams[i];
                pkt[1] = 0; // PCMU
                pkt[2..4].copy_from_slice(&s.seq.to_be_bytes());
                pkt[4..8].copy_from_slice(&k.wrapping_mul(160).to_be_bytes());
                pkt[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
                let sent_ns = epoch.elapsed().as_nanos() as u64;
                pkt[12..20].copy_from_slice(&sent_ns.to_ne_bytes());
                // Counted as sent either way, so a send the generator could not queue shows
                // as loss (and as a send failure).
                s.sent += 1;
                s.seq = s.seq.wrapping_add(1);
                match io.send_copy(s.from, s.to_relay, &pkt) {
                    Ok(()) => {}
                    Err(SendError::QueueFull | SendError::NoCopyBuffer) => {
                        report.send_failures += 1;
                    }
                    Err(e) => return Err(io::Error::other(format!("send: {e}"))),
                }
            }
            slot_no += 1;
            if slot_no == total_slots {
                report.send_time = now.duration_since(start);
                drain_until = Some(Instant::now() + DRAIN);
            }
        }
        let wait = match drain_until {
            Some(d) => {
                let all_in = streams.iter().all(|s| s.received >= s.sent);
                if all_in || now >= d {
                    break;
                }
                (d - now).min(Duration::from_millis(5))
            }
            None => (start + slot_len * (slot_no as u32)).saturating_duration_since(now),
        };
        io.poll(Some(wait))?;
        while let Some(rx) = io.next_rx() {
            let at = epoch.elapsed().as_nanos() as u64;
            let p = io.payload(rx.buf, rx.len);
            let local = (p.len() >= 20)
                .then(|| u32::from_be_bytes([p[8], p[9], p[10], p[11]]))
                .and_then(|ssrc| by_global.get(&ssrc.wrapping_sub(SSRC_BASE)).copied());
            let mut t = [0u8; 8];
            if p.len() >= 20 {
                t.copy_from_slice(&p[12..20]);
            }
            io.release(rx.buf);
            let Some(i) = local else {
                report.foreign += 1;
                continue;
            };
            let s = &mut streams[i];
            if s.received >= s.sent {
                report.duplicates += 1;
                continue;
            }
            s.received += 1;
            let sent_ns = u64::from_ne_bytes(t);
            report
                .latency_ns
                .saturating_record(at.saturating_sub(sent_ns).max(1_000));
        }
    }
    report.sent = streams.iter().map(|s| s.sent).sum();
    report.received = streams.iter().map(|s| s.received).sum();
    report.send_failures += io.stats().tx_errors;
    Ok(report)
}
