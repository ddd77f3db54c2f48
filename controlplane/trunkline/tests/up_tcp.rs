//! SIP over TCP against the `trunkline up` binary: sipp over TCP, torn and coalesced frames,
//! RFC 5626 keepalives, hostile input, connection limits, 10,000 idle connections, and calls
//! that cross from UDP to TCP and back. Loopback only; every port is fixed in 24000–24999
//! (below the ephemeral range, away from the other suites' ranges).
#![allow(clippy::unwrap_used)] // reason: test helpers panic with context, like the tests.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sip::edit::ResponseBuilder;
use sip::framing::{next_frame, Frame, FrameLimits};
use sip::{HeaderName, Message};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const TENANT: &str = "[[tenant]]\ndomain = \"tcp.example\"\naliases = [\"127.0.0.1\"]\n\
[[tenant.subscriber]]\nuser = \"alice\"\npassword = \"alice-pw-1\"\n\
[[tenant.subscriber]]\nuser = \"bob\"\npassword = \"bob-pw-2\"\n";

struct Appliance {
    child: Child,
    udp: u16,
    tcp: u16,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Appliance {
    /// `trunkline up` with a UDP listener on `udp` and a TCP listener on `tcp`, media off,
    /// `sip_keys` in [sip], the test tenant.
    fn start(name: &str, udp: u16, tcp: u16, sip_keys: &str) -> Appliance {
        let dir = std::env::temp_dir().join(format!("trunkline-tcp-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("trunkline.toml");
        std::fs::write(
            &cfg,
            format!(
                "[sip]\n{sip_keys}\n\
                 [[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = {udp}\n\
                 [[sip.listener]]\ntransport = \"tcp\"\naddress = \"127.0.0.1\"\nport = {tcp}\n\
                 [media]\nenabled = false\n[store]\npath = \"{}\"\n{TENANT}",
                dir.join("trunkline.db").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_trunkline"))
            .args(["up", "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn trunkline");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut tcp_line = false;
        loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "trunkline exited before ready"
            );
            if line.trim() == format!("SIP listening on tcp:127.0.0.1:{tcp}") {
                tcp_line = true;
            }
            if line.trim() == "ready" {
                break;
            }
        }
        assert!(tcp_line, "no `SIP listening on tcp:` line");
        Appliance {
            child,
            udp,
            tcp,
            stdout,
        }
    }

    /// SIGTERM, then the final counters line.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "trunkline exit status {status}");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        rest.lines()
            .find(|l| l.starts_with("stopped:"))
            .expect("stopped line")
            .to_string()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(summary: &str, k: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
        .unwrap_or_else(|| panic!("{k} in {summary}"))
        .parse()
        .unwrap()
}

/// Runs sipp against `target` with `args`; panics with its output when it fails.
fn sipp(target: String, args: &[&str]) {
    let out = Command::new("sipp")
        .arg(target)
        .args(args)
        .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run sipp (install sip-tester; tests/run.sh does)");
    assert!(
        out.status.success(),
        "sipp {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scenario(name: &str) -> String {
    repo().join("tests/sipp").join(name).display().to_string()
}

/// A SIP connection with its receive buffer, framed like the server frames.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        Conn::wrap(s)
    }

    fn wrap(s: TcpStream) -> Conn {
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn { s, buf: Vec::new() }
    }

    fn local(&self) -> SocketAddr {
        self.s.local_addr().unwrap()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.s.read(&mut chunk).expect("read from trunkline");
        assert!(n > 0, "trunkline closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next SIP message (keepalive pongs before it are skipped).
    fn recv(&mut self) -> Vec<u8> {
        loop {
            match next_frame(&self.buf, &FrameLimits::default()).unwrap() {
                Frame::Message { len } => return self.buf.drain(..len).collect(),
                Frame::Incomplete => self.fill(),
                f => {
                    self.buf.drain(..f.len());
                }
            }
        }
    }

    /// The next message, which must be a response with `status`; returned.
    fn expect(&mut self, status: u16) -> Vec<u8> {
        let m = self.recv();
        let parsed = Message::parse(&m).unwrap();
        assert_eq!(
            parsed.status(),
            Some(status),
            "{}",
            String::from_utf8_lossy(&m)
        );
        m
    }

    /// The next two bytes are a CRLF pong.
    fn expect_pong(&mut self) {
        while self.buf.len() < 2 {
            self.fill();
        }
        assert_eq!(&self.buf[..2], b"\r\n", "pong");
        self.buf.drain(..2);
    }

    /// True when the server closes the connection within `within` (EOF or reset); what it
    /// sent before is appended to `buf`.
    fn closed_within(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        let mut chunk = [0u8; 8192];
        while Instant::now() < end {
            self.s
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

fn options(local: SocketAddr, call_id: &str, body: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=t-{call_id}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn call_id_of(msg: &[u8]) -> String {
    String::from_utf8_lossy(Message::parse(msg).unwrap().call_id()).into_owned()
}

/// sipp over TCP (`-t t1`): OPTIONS get 200, REGISTER with digest gets 200 (and the
/// unregister too).
#[test]
fn sipp_options_and_register_over_tcp() {
    let app = Appliance::start("sipp", 24_010, 24_011, "");
    let target = format!("127.0.0.1:{}", app.tcp);
    let options_uac = scenario("options_uac.xml");
    sipp(
        target.clone(),
        &[
            "-t",
            "t1",
            "-sf",
            &options_uac,
            "-i",
            "127.0.0.1",
            "-p",
            "24012",
            "-m",
            "50",
            "-r",
            "100",
        ],
    );
    let register_uac = scenario("register_auth_uac.xml");
    sipp(
        target,
        &[
            "-t",
            "t1",
            "-sf",
            &register_uac,
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "alice-pw-1",
            "-i",
            "127.0.0.1",
            "-p",
            "24013",
            "-m",
            "10",
            "-r",
            "50",
        ],
    );
    let summary = app.stop();
    assert!(count(&summary, "options_ok") >= 50, "{summary}");
    assert_eq!(count(&summary, "registered"), 20, "{summary}");
    assert_eq!(count(&summary, "register_auth_failures"), 0, "{summary}");
    assert!(count(&summary, "tcp_accepted") >= 2, "{summary}");
    assert!(count(&summary, "tcp_messages") >= 90, "{summary}");
    assert_eq!(count(&summary, "tcp_framing_errors"), 0, "{summary}");
}

/// A message one byte at a time, two in one write, messages split mid-header and mid-body,
/// and an RFC 5626 ping: each is answered, on the same connection.
#[test]
fn torn_and_coalesced_frames_and_keepalives() {
    let app = Appliance::start("torn", 24_020, 24_021, "");
    let mut c = Conn::open(app.tcp);
    let local = c.local();

    // One byte per segment.
    for b in options(local, "bytewise", "") {
        c.send(&[b]);
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(call_id_of(&c.expect(200)), "bytewise");

    // Two requests in one write, answered in order.
    let mut two = options(local, "first", "");
    two.extend_from_slice(&options(local, "second", "with a body"));
    c.send(&two);
    assert_eq!(call_id_of(&c.expect(200)), "first");
    assert_eq!(call_id_of(&c.expect(200)), "second");

    // An OPTIONS with a body, cut in the header and in the body.
    let m = options(local, "split", "0123456789abcdefghij");
    let cuts = [0, 40, m.len() - 12, m.len()];
    for w in cuts.windows(2) {
        c.send(&m[w[0]..w[1]]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(call_id_of(&c.expect(200)), "split");

    // An INVITE with an SDP body, cut mid-header and mid-body: 404 (nobody by that name),
    // then its ACK is absorbed.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 24999 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:nobody@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-inv1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=inv\r\nTo: <sip:nobody@127.0.0.1>\r\n\
         Call-ID: invite-torn\r\nCSeq: 1 INVITE\r\nContact: <sip:probe@{local};transport=tcp>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes();
    let half = invite.len() - sdp.len() / 2;
    c.send(&invite[..100]);
    std::thread::sleep(Duration::from_millis(30));
    c.send(&invite[100..half]);
    std::thread::sleep(Duration::from_millis(30));
    c.send(&invite[half..]);
    let r = c.expect(404);
    assert_eq!(call_id_of(&r), "invite-torn");
    let to = Message::parse(&r).unwrap().to_tag().unwrap().to_vec();
    c.send(
        format!(
            "ACK sip:nobody@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-inv1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=inv\r\n\
             To: <sip:nobody@127.0.0.1>;tag={}\r\nCall-ID: invite-torn\r\nCSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            String::from_utf8_lossy(&to)
        )
        .as_bytes(),
    );

    // RFC 5626 §4.4.1: CRLF CRLF → CRLF; the connection goes on.
    c.send(b"\r\n\r\n");
    c.expect_pong();
    c.send(b"\r\n\r\n");
    c.send(&options(local, "after-ping", ""));
    c.expect_pong();
    assert_eq!(call_id_of(&c.expect(200)), "after-ping");

    let summary = app.stop();
    assert_eq!(count(&summary, "options_ok"), 5, "{summary}");
    assert_eq!(count(&summary, "tcp_messages"), 7, "{summary}");
    assert_eq!(count(&summary, "keepalives"), 2, "{summary}");
    assert_eq!(count(&summary, "calls_refused"), 1, "{summary}");
    assert_eq!(count(&summary, "acks_absorbed"), 1, "{summary}");
    assert_eq!(count(&summary, "tcp_framing_errors"), 0, "{summary}");
}

/// Random bytes, an oversized Content-Length, a header section without end beyond the
/// limit, no Content-Length: each connection is closed (with 400 where the bytes say where
/// to) and counted; a connection open all along is unaffected.
#[test]
fn garbage_closes_only_its_own_connection() {
    let app = Appliance::start("garbage", 24_040, 24_041, "tcp_max_message_bytes = 8192");
    let mut good = Conn::open(app.tcp);
    let good_local = good.local();
    good.send(&options(good_local, "good-1", ""));
    good.expect(200);

    // Random bytes (xorshift), more than the limit.
    let mut random = Conn::open(app.tcp);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let _ = random.s.write_all(&noise); // the server may close before it has all of it
    assert!(
        random.closed_within(Duration::from_secs(5)),
        "random bytes: still open"
    );

    // Content-Length far beyond the limit: 400, closed.
    let mut big = Conn::open(app.tcp);
    let local = big.local();
    big.send(
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-big\r\n\
             From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: big\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 99999999\r\n\r\nabc"
        )
        .as_bytes(),
    );
    assert!(big.closed_within(Duration::from_secs(5)), "big: still open");
    assert!(
        big.buf.starts_with(b"SIP/2.0 400 "),
        "{}",
        String::from_utf8_lossy(&big.buf)
    );

    // A header section that never ends, beyond the limit.
    let mut endless = Conn::open(app.tcp);
    let local = endless.local();
    let _ = endless.s.write_all(
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-endless\r\n\
             CSeq: 1 OPTIONS\r\nX-Pad: {}",
            "a".repeat(10_000)
        )
        .as_bytes(),
    );
    assert!(
        endless.closed_within(Duration::from_secs(5)),
        "endless header: still open"
    );

    // No Content-Length on a stream: 400, closed.
    let mut nocl = Conn::open(app.tcp);
    let local = nocl.local();
    nocl.send(
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-nocl\r\n\
             From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: nocl\r\n\
             CSeq: 1 OPTIONS\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(
        nocl.closed_within(Duration::from_secs(5)),
        "no CL: still open"
    );
    assert!(
        nocl.buf.starts_with(b"SIP/2.0 400 "),
        "{}",
        String::from_utf8_lossy(&nocl.buf)
    );

    // The first connection and a new one still work.
    good.send(&options(good_local, "good-2", ""));
    assert_eq!(call_id_of(&good.expect(200)), "good-2");
    let mut fresh = Conn::open(app.tcp);
    let l = fresh.local();
    fresh.send(&options(l, "fresh", ""));
    fresh.expect(200);

    let summary = app.stop();
    assert_eq!(count(&summary, "tcp_framing_errors"), 4, "{summary}");
    assert!(count(&summary, "tcp_closed") >= 4, "{summary}");
    assert_eq!(count(&summary, "options_ok"), 3, "{summary}");
}

/// A peer that pipelines thousands of requests without reading the answers: the appliance
/// stops reading it while its answers queue up (backpressure), resumes when the peer reads,
/// and every request is answered, in order. A whole message just over the limit, whose
/// header section and body are each under it, is refused like any other framing error.
#[test]
fn pipelined_requests_with_a_slow_reader_and_the_whole_message_limit() {
    const N: usize = 5_000;
    let app = Appliance::start("pipeline", 24_070, 24_071, "tcp_max_message_bytes = 4096");
    let mut c = Conn::open(app.tcp);
    let local = c.local();
    let mut all = Vec::new();
    for i in 0..N {
        all.extend_from_slice(&options(local, &format!("p{i}"), ""));
    }
    let mut writer = c.s.try_clone().unwrap();
    let sent = std::thread::spawn(move || writer.write_all(&all).is_ok());
    // Read nothing for a while: the writer fills both directions' buffers.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..N {
        assert_eq!(call_id_of(&c.expect(200)), format!("p{i}"));
    }
    assert!(sent.join().unwrap(), "the writer was cut off");

    // Header 3 KiB + body 3 KiB: each under 4096, the whole over it.
    let mut big = Conn::open(app.tcp);
    let l = big.local();
    let mut m = options(l, "whole", &"b".repeat(3000));
    let pad = format!("X-Pad: {}\r\n", "p".repeat(2800));
    let at = m.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    m.splice(at..at, pad.bytes());
    let _ = big.s.write_all(&m);
    assert!(big.closed_within(Duration::from_secs(5)), "still open");
    assert!(
        big.buf.starts_with(b"SIP/2.0 400 "),
        "{}",
        String::from_utf8_lossy(&big.buf)
    );

    let summary = app.stop();
    assert_eq!(count(&summary, "options_ok"), N as u64, "{summary}");
    assert_eq!(count(&summary, "tcp_framing_errors"), 1, "{summary}");
    assert_eq!(count(&summary, "tcp_write_overflows"), 0, "{summary}");
    assert!(count(&summary, "tcp_read_pauses") >= 1, "{summary}");
}

/// Beyond tcp_max_connections a connection is accepted and closed at once; idle ones are
/// closed after tcp_idle_timeout_s, one kept alive by RFC 5626 pings is not.
#[test]
fn connection_cap_and_idle_timeout() {
    let app = Appliance::start(
        "limits",
        24_050,
        24_051,
        "tcp_max_connections = 3\ntcp_idle_timeout_s = 2",
    );
    let mut conns: Vec<Conn> = (0..3).map(|_| Conn::open(app.tcp)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let l = c.local();
        c.send(&options(l, &format!("cap-{i}"), ""));
        c.expect(200);
    }
    let mut fourth = Conn::open(app.tcp);
    assert!(
        fourth.closed_within(Duration::from_secs(3)),
        "the connection over the cap stays open"
    );
    // conns[0] pings every 500 ms; the other two say nothing and are closed.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        conns[0].send(b"\r\n\r\n");
        conns[0].expect_pong();
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(conns[1].closed_within(Duration::from_secs(2)), "idle 1");
    assert!(conns[2].closed_within(Duration::from_secs(2)), "idle 2");
    let l = conns[0].local();
    conns[0].send(&options(l, "alive", ""));
    assert_eq!(call_id_of(&conns[0].expect(200)), "alive");

    let summary = app.stop();
    assert_eq!(count(&summary, "tcp_refused"), 1, "{summary}");
    assert_eq!(count(&summary, "tcp_idle_closed"), 2, "{summary}");
    assert_eq!(count(&summary, "tcp_accepted"), 3, "{summary}");
}

/// Raises this process's open-file limit (the appliance inherits it) to at least `want`.
#[allow(unsafe_code)] // reason: setrlimit has no safe wrapper.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let new = libc::rlimit {
        rlim_cur: lim.rlim_max.max(want),
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: `new` is a valid rlimit; raising the hard limit needs root (the suite runs
    // as root), raising the soft one to the hard one does not.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) }, 0);
        assert!(
            lim.rlim_max >= want,
            "open-file hard limit {} < {want} and not root: run as root or raise ulimit -Hn",
            lim.rlim_max
        );
    }
}

/// A TCP connection from a chosen source address: the 10,000 connections come from 100
/// loopback addresses × ports 24900–24999, never from the ephemeral range other suites'
/// fixed ports lie in.
#[allow(unsafe_code)] // reason: std cannot bind a socket before connecting it.
fn connect_from(src: SocketAddrV4, dst: SocketAddrV4) -> TcpStream {
    use std::os::fd::FromRawFd;
    fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr_in values
    // outlive the calls and `len` is their size. On success the descriptor moves into the
    // TcpStream, which closes it; on failure it is closed here.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let s = sockaddr(src);
        let d = sockaddr(dst);
        if libc::bind(fd, (&s as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&d as *const libc::sockaddr_in).cast(), len) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect {src} → {dst}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// 10,000 idle connections open at once; meanwhile sipp over UDP and TCP gets OPTIONS
/// answered and REGISTER works, and the first and last idle connections still answer.
#[test]
fn ten_thousand_idle_connections() {
    const N: usize = 10_000;
    raise_nofile(N as u64 + 2_000);
    let app = Appliance::start("10k", 24_030, 24_031, "tcp_max_connections = 12000");
    let started = Instant::now();
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, app.tcp);
    // A block of 100 source addresses per run: the appliance closes first, so its side of
    // each connection lingers in TIME_WAIT for a minute, and a rerun from the same
    // addresses would wait on them.
    let pid = std::process::id();
    let (a, b) = (3 + (pid % 200) as u8, ((pid / 200) % 250) as u8);
    let mut idle = Vec::with_capacity(N);
    for i in 0..N {
        let src = SocketAddrV4::new(
            Ipv4Addr::new(127, a, b, 1 + (i / 100) as u8),
            24_900 + (i % 100) as u16,
        );
        idle.push(connect_from(src, dst));
    }
    let connected = started.elapsed();
    let udp_target = format!("127.0.0.1:{}", app.udp);
    let tcp_target = format!("127.0.0.1:{}", app.tcp);
    let options_uac = scenario("options_uac.xml");
    let register_uac = scenario("register_auth_uac.xml");
    sipp(
        udp_target,
        &[
            "-sf",
            &options_uac,
            "-i",
            "127.0.0.1",
            "-p",
            "24032",
            "-m",
            "20",
            "-r",
            "100",
        ],
    );
    sipp(
        tcp_target.clone(),
        &[
            "-t",
            "t1",
            "-sf",
            &options_uac,
            "-i",
            "127.0.0.1",
            "-p",
            "24033",
            "-m",
            "20",
            "-r",
            "100",
        ],
    );
    sipp(
        tcp_target,
        &[
            "-t",
            "t1",
            "-sf",
            &register_uac,
            "-s",
            "bob",
            "-au",
            "bob",
            "-ap",
            "bob-pw-2",
            "-i",
            "127.0.0.1",
            "-p",
            "24034",
            "-m",
            "2",
        ],
    );
    for i in [0, N / 2, N - 1] {
        let mut c = Conn::wrap(idle[i].try_clone().unwrap());
        let l = c.local();
        c.send(&options(l, &format!("idle-{i}"), ""));
        assert_eq!(call_id_of(&c.expect(200)), format!("idle-{i}"));
    }
    // The appliance closes first: its side takes the TIME_WAITs, ours are free to reuse.
    let summary = app.stop();
    drop(idle);
    eprintln!(
        "10k: connected in {connected:?}, whole test {:?}",
        started.elapsed()
    );
    assert!(count(&summary, "tcp_accepted") >= N as u64, "{summary}");
    assert_eq!(count(&summary, "tcp_refused"), 0, "{summary}");
    assert_eq!(count(&summary, "tcp_accept_errors"), 0, "{summary}");
    assert!(count(&summary, "options_ok") >= 43, "{summary}");
    assert_eq!(count(&summary, "registered"), 4, "{summary}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// Digest REGISTER over `c` (401, then the answer): the final status.
fn register_tcp(c: &mut Conn, user: &str, password: &str, contact: &str) -> u16 {
    let local = c.local();
    let req = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-reg{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r{cseq}\r\n\
             To: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}-tcp\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    c.send(req(1, "").as_bytes());
    let r = c.expect(401);
    let resp = Message::parse(&r).unwrap();
    let ch = resp.header(HeaderName::WwwAuthenticate).unwrap();
    let sip::digest::Challenge::Digest(view) = sip::digest::parse_challenge(ch).unwrap() else {
        panic!("digest challenge");
    };
    let auth = sip::digest::respond(
        &view,
        &sip::digest::Request {
            method: b"REGISTER",
            uri: b"sip:127.0.0.1",
            body: b"",
        },
        user.as_bytes(),
        sip::digest::Credential::Password(password.as_bytes()),
        b"tcpcnonce",
        1,
    )
    .unwrap();
    c.send(req(2, &format!("Authorization: {auth}\r\n")).as_bytes());
    let m = c.recv();
    Message::parse(&m).unwrap().status().unwrap()
}

/// Digest REGISTER over UDP: the final status.
fn register_udp(port: u16, user: &str, password: &str, contact: &str) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = sock.local_addr().unwrap();
    let req = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ur{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=u{cseq}\r\n\
             To: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}-udp\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let mut buf = [0u8; 4096];
    sock.send_to(req(1, "").as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let resp = Message::parse(&buf[..n]).unwrap();
    assert_eq!(resp.status(), Some(401));
    let ch = resp.header(HeaderName::WwwAuthenticate).unwrap();
    let sip::digest::Challenge::Digest(view) = sip::digest::parse_challenge(ch).unwrap() else {
        panic!("digest challenge");
    };
    let auth = sip::digest::respond(
        &view,
        &sip::digest::Request {
            method: b"REGISTER",
            uri: b"sip:127.0.0.1",
            body: b"",
        },
        user.as_bytes(),
        sip::digest::Credential::Password(password.as_bytes()),
        b"udpcnonce",
        1,
    )
    .unwrap();
    sock.send_to(
        req(2, &format!("Authorization: {auth}\r\n")).as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    Message::parse(&buf[..n]).unwrap().status().unwrap()
}

fn method_of(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg.split(|&b| b == b' ').next().unwrap()).into_owned()
}

/// Calls across transports. bob registers over TCP with a contact naming a port nothing
/// listens on: the registrar keeps the connection's address, and the INVITE for bob comes
/// down that very connection. alice registers over UDP (a sipp UAS).
/// 1. sipp (UDP) calls bob: INVITE, ACK and BYE reach bob over his TCP connection; his
///    180/200/200 go back to sipp over UDP.
/// 2. bob calls alice over his TCP connection: 100/180/200 come back on it; ACK and BYE
///    from bob reach the UDP sipp UAS, whose 200 comes back over TCP.
#[test]
fn calls_between_tcp_and_udp_subscribers() {
    let app = Appliance::start("calls", 24_060, 24_061, "");
    let mut bob = Conn::open(app.tcp);
    let bob_local = bob.local();
    let bob_contact = "sip:bob@127.0.0.1:24064;transport=tcp";
    assert_eq!(register_tcp(&mut bob, "bob", "bob-pw-2", bob_contact), 200);
    assert_eq!(
        register_udp(app.udp, "alice", "alice-pw-1", "sip:alice@127.0.0.1:24063"),
        200
    );

    // 1. sipp UAC over UDP → bob over TCP.
    let uac_target = format!("127.0.0.1:{}", app.udp);
    let uac = std::thread::spawn(move || {
        sipp(
            uac_target,
            &[
                "-sn",
                "uac",
                "-s",
                "bob",
                "-i",
                "127.0.0.1",
                "-p",
                "24062",
                "-m",
                "1",
            ],
        );
    });
    let invite = bob.recv();
    assert!(
        invite.starts_with(format!("INVITE {bob_contact} SIP/2.0").as_bytes()),
        "{}",
        String::from_utf8_lossy(&invite)
    );
    let inv = Message::parse(&invite).unwrap();
    assert_eq!(
        inv.top_via().transport,
        b"TCP",
        "the proxy's Via names the transport it used"
    );
    let mut out = Vec::new();
    ResponseBuilder::new(&inv, 180, b"Ringing")
        .to_tag(b"bob-1")
        .copy_record_route()
        .write(&mut out);
    bob.send(&out);
    let contact = format!("<{bob_contact}>");
    ResponseBuilder::new(&inv, 200, b"OK")
        .to_tag(b"bob-1")
        .copy_record_route()
        .header(HeaderName::Contact, contact.as_bytes())
        .write(&mut out);
    bob.send(&out);
    let ack = bob.recv();
    assert_eq!(method_of(&ack), "ACK", "{}", String::from_utf8_lossy(&ack));
    let bye = bob.recv();
    assert_eq!(method_of(&bye), "BYE", "{}", String::from_utf8_lossy(&bye));
    let bye_msg = Message::parse(&bye).unwrap();
    ResponseBuilder::new(&bye_msg, 200, b"OK").write(&mut out);
    bob.send(&out);
    uac.join().unwrap();

    // 2. bob over TCP → sipp UAS (alice) over UDP.
    let mut uas = Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", "24063", "-m", "1"])
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    std::thread::sleep(Duration::from_millis(500));
    let sdp = "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 24998 RTP/AVP 0\r\n";
    let head = |method: &str, cseq: u32, branch: &str, to_tag: &str| {
        format!(
            "{method} sip:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {bob_local};branch=z9hG4bK-{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@127.0.0.1>;tag=bob-2\r\nTo: <sip:alice@127.0.0.1>{to_tag}\r\n\
             Call-ID: tcp-to-udp\r\nCSeq: {cseq} {method}\r\nContact: <{bob_contact}>\r\n"
        )
    };
    bob.send(
        format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            head("INVITE", 1, "b2inv", ""),
            sdp.len()
        )
        .as_bytes(),
    );
    bob.expect(100);
    let mut answer = bob.recv();
    if Message::parse(&answer).unwrap().status() == Some(180) {
        answer = bob.recv();
    }
    let ok = Message::parse(&answer).unwrap();
    assert_eq!(
        ok.status(),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let tag = format!(
        ";tag={}",
        String::from_utf8_lossy(ok.to_tag().expect("To tag in 200"))
    );
    bob.send(format!("{}Content-Length: 0\r\n\r\n", head("ACK", 1, "b2ack", &tag)).as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    bob.send(format!("{}Content-Length: 0\r\n\r\n", head("BYE", 2, "b2bye", &tag)).as_bytes());
    let bye_ok = bob.expect(200);
    assert!(
        String::from_utf8_lossy(&bye_ok).contains("CSeq: 2 BYE"),
        "{}",
        String::from_utf8_lossy(&bye_ok)
    );
    assert!(uas.wait().unwrap().success(), "sipp uas did not complete");

    let summary = app.stop();
    assert_eq!(count(&summary, "calls"), 2, "{summary}");
    assert_eq!(count(&summary, "calls_answered"), 2, "{summary}");
    assert_eq!(count(&summary, "calls_ended"), 2, "{summary}");
    assert_eq!(count(&summary, "tcp_framing_errors"), 0, "{summary}");
}
