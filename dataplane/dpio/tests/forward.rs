//! Both backends, real loopback sockets: receive, zero-copy forward, copy send, buffer
//! accounting, ENOBUFS recovery, syscall batching, start-up probe.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dpio::{AnyBackend, Backend, BackendKind, Config, SocketId, UringUnavailable};

const KINDS: [BackendKind; 2] = [BackendKind::Uring, BackendKind::Mio];

fn config(kind: BackendKind, buffers: u32) -> Config {
    Config {
        buffers,
        send_slots: buffers,
        max_sockets: 4,
        force: Some(kind),
        ..Config::default()
    }
}

fn backend(cfg: &Config) -> AnyBackend {
    let (io, why) = AnyBackend::new(cfg).unwrap_or_else(|e| panic!("{:?}: {e}", cfg.force));
    assert!(why.is_none());
    assert_eq!(Some(io.kind()), cfg.force);
    io
}

/// A datagram numbered `seq`: 4-byte sequence then a fixed pattern, RTP-sized.
fn datagram(seq: u32, out: &mut [u8; 172]) {
    out[..4].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in out[4..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
}

/// Polls until every queued send has completed (or panics after 5 s).
fn drain_sends(io: &mut AnyBackend) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while io.sends_in_flight() > 0 {
        io.poll(Some(Duration::from_millis(1))).unwrap();
        assert!(
            Instant::now() < deadline,
            "{}: sends stuck: {:?}",
            io.kind(),
            io.stats()
        );
    }
}

struct Rig {
    io: AnyBackend,
    a: SocketId,
    b: SocketId,
    a_addr: SocketAddr,
    src: UdpSocket,
    dst: UdpSocket,
}

fn rig(cfg: &Config, ip: &str) -> Rig {
    let mut io = backend(cfg);
    let any: SocketAddr = format!("{ip}:0").parse().unwrap();
    let a = io.add_udp(any).unwrap();
    let b = io.add_udp(any).unwrap();
    let a_addr = io.local_addr(a).unwrap();
    let src = UdpSocket::bind(any).unwrap();
    let dst = UdpSocket::bind(any).unwrap();
    dst.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    Rig {
        io,
        a,
        b,
        a_addr,
        src,
        dst,
    }
}

/// Sends `n` numbered datagrams to socket a in bursts, forwards each through socket b to
/// dst, and checks every one arrives, in order, intact.
fn forward_all(r: &mut Rig, n: u32, burst: u32) {
    let src_addr = r.src.local_addr().unwrap();
    let dst_addr = r.dst.local_addr().unwrap();
    let b_addr = r.io.local_addr(r.b).unwrap();
    let mut pkt = [0u8; 172];
    let mut got = [0u8; 2048];
    let mut next_rx = 0u32;
    let mut seq = 0u32;
    while seq < n {
        let end = (seq + burst).min(n);
        for s in seq..end {
            datagram(s, &mut pkt);
            r.src.send_to(&pkt, r.a_addr).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while next_rx < end {
            r.io.poll(Some(Duration::from_millis(10))).unwrap();
            while let Some(rx) = r.io.next_rx() {
                assert_eq!(rx.socket, r.a);
                assert_eq!(rx.peer, src_addr);
                assert_eq!(rx.len, 172);
                datagram(next_rx, &mut pkt);
                assert_eq!(
                    r.io.payload(rx.buf, rx.len),
                    &pkt[..],
                    "payload of {next_rx}"
                );
                r.io.send(r.b, dst_addr, rx.buf, rx.len).unwrap();
                next_rx += 1;
            }
            assert!(
                Instant::now() < deadline,
                "{}: stuck at {next_rx}: {:?}",
                r.io.kind(),
                r.io.stats()
            );
        }
        drain_sends(&mut r.io);
        for s in seq..end {
            let (len, from) = r.dst.recv_from(&mut got).unwrap();
            assert_eq!(from, b_addr);
            datagram(s, &mut pkt);
            assert_eq!(&got[..len], &pkt[..], "forwarded datagram {s}");
        }
        seq = end;
    }
}

fn forward_test(kind: BackendKind, ip: &str, n: u32) {
    let cfg = config(kind, 256);
    let mut r = rig(&cfg, ip);
    forward_all(&mut r, n, 64);
    let st = r.io.stats().clone();
    assert_eq!(st.rx_packets, n as u64);
    assert_eq!(st.tx_packets, n as u64);
    assert_eq!(
        st.tx_errors + st.rx_errors + st.rx_nobufs + st.tx_queue_full,
        0,
        "{st:?}"
    );
    assert_eq!(
        r.io.free_buffers(),
        r.io.buffer_count(),
        "all buffers back in the pool"
    );
    assert!(st.rx_batch_max > 1 && st.tx_batch_max > 1, "{st:?}");
    eprintln!(
        "{kind} {ip}: {n} forwarded, {} syscalls ({:.3}/packet), {} polls, rx batch max {}, tx batch max {}",
        st.syscalls,
        st.syscalls as f64 / n as f64,
        st.polls,
        st.rx_batch_max,
        st.tx_batch_max
    );
    // Bursts of 64: one recv + one send syscall per packet would be 2n.
    assert!(
        st.syscalls < (n / 4) as u64,
        "{kind}: {} syscalls for {n} packets",
        st.syscalls
    );
    if kind == BackendKind::Uring {
        assert_eq!(st.syscalls, st.uring_enters);
        assert!(st.syscalls < (n / 16) as u64, "{st:?}");
    }
}

#[test]
fn forward_10k_ipv4_both_backends() {
    for kind in KINDS {
        forward_test(kind, "127.0.0.1", 10_000);
    }
}

#[test]
fn forward_ipv6_both_backends() {
    for kind in KINDS {
        forward_test(kind, "[::1]", 2_000);
    }
}

#[test]
fn send_copy_both_backends() {
    for kind in KINDS {
        let mut r = rig(&config(kind, 16), "127.0.0.1");
        let dst_addr = r.dst.local_addr().unwrap();
        let sip = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        r.io.send_copy(r.a, dst_addr, sip).unwrap();
        let big = vec![7u8; 9000];
        r.io.send_copy(r.a, dst_addr, &big).unwrap();
        drain_sends(&mut r.io);
        let mut got = [0u8; 65536];
        let (len, from) = r.dst.recv_from(&mut got).unwrap();
        assert_eq!((&got[..len], from), (&sip[..], r.a_addr));
        let (len, _) = r.dst.recv_from(&mut got).unwrap();
        assert_eq!(&got[..len], &big[..]);
        let too_big = vec![0u8; 70_000];
        assert_eq!(
            r.io.send_copy(r.a, dst_addr, &too_big),
            Err(dpio::SendError::TooLong)
        );
        assert_eq!(r.io.stats().tx_packets, 2);
    }
}

#[test]
fn rewrite_in_place_and_release() {
    for kind in KINDS {
        let mut r = rig(&config(kind, 16), "127.0.0.1");
        let dst_addr = r.dst.local_addr().unwrap();
        r.src.send_to(b"drop me", r.a_addr).unwrap();
        r.src.send_to(b"abcd", r.a_addr).unwrap();
        let mut seen = 0;
        while seen < 2 {
            r.io.poll(Some(Duration::from_millis(50))).unwrap();
            while let Some(rx) = r.io.next_rx() {
                if seen == 0 {
                    r.io.release(rx.buf);
                } else {
                    r.io.payload_mut(rx.buf, rx.len).copy_from_slice(b"ABCD");
                    r.io.send(r.b, dst_addr, rx.buf, rx.len).unwrap();
                }
                seen += 1;
            }
        }
        drain_sends(&mut r.io);
        let mut got = [0u8; 64];
        let (len, _) = r.dst.recv_from(&mut got).unwrap();
        assert_eq!(&got[..len], b"ABCD");
        assert_eq!(r.io.free_buffers(), 16);
    }
}

#[test]
fn oversized_datagram_is_counted_not_delivered() {
    for kind in KINDS {
        let mut cfg = config(kind, 16);
        cfg.buffer_size = 512;
        let mut r = rig(&cfg, "127.0.0.1");
        r.src.send_to(&[1u8; 1000], r.a_addr).unwrap();
        r.src.send_to(&[2u8; 100], r.a_addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = None;
        while got.is_none() {
            r.io.poll(Some(Duration::from_millis(50))).unwrap();
            got = r.io.next_rx();
            assert!(Instant::now() < deadline);
        }
        let rx = got.unwrap();
        assert_eq!(rx.len, 100);
        r.io.release(rx.buf);
        assert_eq!(r.io.stats().rx_truncated, 1, "{kind}");
        assert_eq!(r.io.free_buffers(), 16);
    }
}

#[test]
fn enobufs_is_counted_and_receive_recovers() {
    for kind in KINDS {
        let buffers = 16;
        let mut r = rig(&config(kind, buffers), "127.0.0.1");
        let flood = 200u32;
        let mut pkt = [0u8; 172];
        for s in 0..flood {
            datagram(s, &mut pkt);
            r.src.send_to(&pkt, r.a_addr).unwrap();
        }
        // Hold every buffer: the pool runs dry while datagrams wait in the socket.
        let mut held = Vec::with_capacity(buffers as usize);
        let deadline = Instant::now() + Duration::from_secs(5);
        while held.len() < buffers as usize || r.io.stats().rx_nobufs == 0 {
            r.io.poll(Some(Duration::from_millis(10))).unwrap();
            while let Some(rx) = r.io.next_rx() {
                held.push(rx);
            }
            assert!(Instant::now() < deadline, "{kind}: {:?}", r.io.stats());
        }
        assert_eq!(held.len(), buffers as usize);
        assert_eq!(r.io.free_buffers(), 0);
        // Give them back; the receive is re-armed and the rest arrive in order.
        let mut next = 0u32;
        let mut check = |io: &mut AnyBackend, rx: dpio::RxPacket| {
            datagram(next, &mut pkt);
            assert_eq!(
                io.payload(rx.buf, rx.len),
                &pkt[..],
                "{kind}: datagram {next}"
            );
            io.release(rx.buf);
            next += 1;
        };
        for rx in held.drain(..) {
            check(&mut r.io, rx);
        }
        while r.io.stats().rx_packets < flood as u64 {
            r.io.poll(Some(Duration::from_millis(10))).unwrap();
            while let Some(rx) = r.io.next_rx() {
                check(&mut r.io, rx);
            }
            assert!(Instant::now() < deadline, "{kind}: {:?}", r.io.stats());
        }
        let st = r.io.stats();
        assert!(st.rx_nobufs >= 1);
        if kind == BackendKind::Uring {
            assert!(st.rx_rearms >= 1, "{st:?}");
        }
        assert_eq!(r.io.free_buffers(), buffers);
        eprintln!("{kind}: flood of {flood} through {buffers} buffers: {st:?}");
    }
}

#[test]
fn full_send_queue_is_counted_and_returns_the_buffer() {
    for kind in KINDS {
        let mut cfg = config(kind, 16);
        cfg.send_slots = 2;
        let mut r = rig(&cfg, "127.0.0.1");
        let dst_addr = r.dst.local_addr().unwrap();
        for _ in 0..3 {
            r.src.send_to(b"x", r.a_addr).unwrap();
        }
        let mut sent = 0;
        let mut refused = 0;
        while sent + refused < 3 {
            r.io.poll(Some(Duration::from_millis(50))).unwrap();
            while let Some(rx) = r.io.next_rx() {
                match r.io.send(r.b, dst_addr, rx.buf, rx.len) {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        assert_eq!(e, dpio::SendError::QueueFull);
                        refused += 1;
                    }
                }
            }
        }
        assert_eq!((sent, refused), (2, 1), "{kind}");
        drain_sends(&mut r.io);
        assert_eq!(r.io.stats().tx_queue_full, 1);
        assert_eq!(r.io.free_buffers(), 16);
    }
}

#[test]
fn probe_picks_uring_or_reports_why_not() {
    let cfg = Config {
        buffers: 64,
        send_slots: 64,
        ..Config::default()
    };
    let (io, why) = AnyBackend::new(&cfg).unwrap();
    match dpio::io_uring_disabled_sysctl() {
        Some(2) => {
            assert_eq!(io.kind(), BackendKind::Mio);
            assert!(
                matches!(why, Some(UringUnavailable::DisabledBySysctl)),
                "{why:?}"
            );
            let forced = Config {
                force: Some(BackendKind::Uring),
                ..cfg.clone()
            };
            let err = AnyBackend::new(&forced).unwrap_err();
            assert!(err.to_string().contains("io_uring_disabled"), "{err}");
        }
        sysctl => match why {
            // Available here: io_uring is the default.
            None => assert_eq!(io.kind(), BackendKind::Uring),
            // Unavailable for another reason (seccomp, old kernel): fallback with a reason.
            Some(reason) => {
                assert_eq!(io.kind(), BackendKind::Mio);
                eprintln!("io_uring unavailable (sysctl {sysctl:?}): {reason}");
            }
        },
    }
    drop(io);
    let forced = Config {
        force: Some(BackendKind::Mio),
        ..cfg
    };
    let (io, why) = AnyBackend::new(&forced).unwrap();
    assert_eq!(io.kind(), BackendKind::Mio);
    assert!(why.is_none());
}

#[test]
fn bad_config_is_refused() {
    let cfg = Config {
        buffers: 1000,
        ..Config::default()
    };
    assert!(AnyBackend::new(&cfg).is_err());
}

#[test]
fn pin_to_core_zero() {
    dpio::pin_current_thread(0).unwrap();
    assert!(dpio::pin_current_thread(1 << 20).is_err());
}

/// io_uring with a kernel submission-polling thread (the `--sqpoll-idle-ms` option of the
/// dataplane): the same forwarding, nothing lost, every buffer back.
#[test]
fn forward_with_sqpoll() {
    let cfg = Config {
        sqpoll_idle_ms: Some(20),
        ..config(BackendKind::Uring, 256)
    };
    let mut r = rig(&cfg, "127.0.0.1");
    forward_all(&mut r, 5_000, 64);
    let st = r.io.stats().clone();
    assert_eq!((st.rx_packets, st.tx_packets), (5_000, 5_000), "{st:?}");
    assert_eq!(
        st.tx_errors + st.rx_errors + st.rx_nobufs + st.tx_queue_full,
        0,
        "{st:?}"
    );
    assert_eq!(r.io.free_buffers(), r.io.buffer_count());
    eprintln!(
        "sqpoll: 5000 forwarded, {} io_uring_enter calls, {} polls",
        st.uring_enters, st.polls
    );
}

/// A readable wake fd ends a long poll (the core loop sleeps on this while idle, and the
/// control plane's commands wake it through the command ring's eventfd).
#[test]
fn wake_fd_ends_a_waiting_poll_both_backends() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    for kind in KINDS {
        let (mut io, _) = AnyBackend::new(&config(kind, 16)).unwrap();
        io.add_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let (waker, watched) = UnixDatagram::pair().unwrap();
        io.add_wake_fd(watched.as_raw_fd()).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            waker.send(b"x").unwrap();
            waker
        });
        let start = std::time::Instant::now();
        io.poll(Some(Duration::from_secs(30))).unwrap();
        let _waker = t.join().unwrap();
        // Functional, not a timing goal: without the wake the poll would sleep 30 s.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{kind}: the wake fd did not end the poll"
        );
        assert!(io.next_rx().is_none(), "{kind}: a wake is not a datagram");
    }
}
