//! SIP over TLS (RFC 3261 §26.2) against the `trunkline up` binary: a `rustls` client
//! trusting a self-signed certificate made here with `rcgen` (OPTIONS, torn records,
//! keepalives, a framing error), digest REGISTER over TLS and a call from a UDP sipp UAC
//! delivered down the TLS connection, failed handshakes and TLS errors closing only their
//! own connection, `openssl s_client` as an outside peer, and keys as openssl writes them. Loopback only; every port is
//! fixed in 27000–27099 (below the ephemeral range, away from the other suites' ranges).
#![allow(clippy::unwrap_used)] // reason: test helpers panic with context, like the tests.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use sip::edit::ResponseBuilder;
use sip::framing::{next_frame, Frame, FrameLimits};
use sip::{HeaderName, Message};

const TENANT: &str = "[[tenant]]\ndomain = \"tls.example\"\naliases = [\"127.0.0.1\"]\n\
[[tenant.subscriber]]\nuser = \"alice\"\npassword = \"alice-pw-1\"\n\
[[tenant.subscriber]]\nuser = \"bob\"\npassword = \"bob-pw-2\"\n";

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
struct Pki {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn pki(name: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("trunkline-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = dir.join("sip.crt");
    let key = dir.join("sip.key");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    Pki {
        dir,
        cert,
        key,
        der: made.cert.der().clone(),
    }
}

/// A client configuration trusting only `pki`'s certificate.
fn client_config(pki: &Pki) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.der.clone()).unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

struct Appliance {
    child: Child,
    udp: u16,
    tls: u16,
    tcp: u16,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Appliance {
    /// `trunkline up` with UDP on `base`, TLS on `base + 1` (with `pki`'s certificate) and
    /// TCP on `base + 2`, media off, `sip_keys` in [sip], the test tenant.
    fn start(pki: &Pki, base: u16, sip_keys: &str) -> Appliance {
        let (udp, tls, tcp) = (base, base + 1, base + 2);
        let cfg = pki.dir.join("trunkline.toml");
        std::fs::write(
            &cfg,
            format!(
                "[sip]\n{sip_keys}\n\
                 [[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = {udp}\n\
                 [[sip.listener]]\ntransport = \"tls\"\naddress = \"127.0.0.1\"\nport = {tls}\n\
                 cert = \"{}\"\nkey = \"{}\"\n\
                 [[sip.listener]]\ntransport = \"tcp\"\naddress = \"127.0.0.1\"\nport = {tcp}\n\
                 [media]\nenabled = false\n[store]\npath = \"{}\"\n{TENANT}",
                pki.cert.display(),
                pki.key.display(),
                pki.dir.join("trunkline.db").display()
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
        let mut tls_line = false;
        loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "trunkline exited before ready"
            );
            if line.trim() == format!("SIP listening on tls:127.0.0.1:{tls}") {
                tls_line = true;
            }
            if line.trim() == "ready" {
                break;
            }
        }
        assert!(tls_line, "no `SIP listening on tls:` line");
        Appliance {
            child,
            udp,
            tls,
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

/// A TLS connection with its receive buffer, framed like the server frames.
struct TlsConn {
    s: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    /// Connects and completes the handshake.
    fn open(port: u16, cfg: &Arc<ClientConfig>) -> TlsConn {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = ClientConnection::new(Arc::clone(cfg), name).unwrap();
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        TlsConn { s, buf: Vec::new() }
    }

    fn local(&self) -> SocketAddr {
        self.s.sock.local_addr().unwrap()
    }

    /// Sends `bytes` as one TLS record (or more if large).
    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
        self.s.flush().unwrap();
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

    /// True when the server closes the connection within `within` (close_notify, EOF or
    /// reset); what it sent before is appended to `buf`.
    fn closed_within(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        let mut chunk = [0u8; 8192];
        self.s
            .sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while Instant::now() < end {
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

/// True when the server closes the raw connection `s` within `within`.
fn raw_closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut chunk = [0u8; 8192];
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < end {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {} // a TLS alert
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn options(via: &str, local: SocketAddr, call_id: &str, body: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{via} {local};branch=z9hG4bK-{call_id}\r\n\
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

fn method_of(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg.split(|&b| b == b' ').next().unwrap()).into_owned()
}

/// OPTIONS over TLS → 200; a message torn across TLS records, a record torn across TCP
/// segments, two messages in one record; CRLF CRLF → CRLF; a framing error → 400, closed;
/// plain TCP on the same appliance still answers.
#[test]
fn options_torn_records_and_keepalives_over_tls() {
    let pki = pki("options");
    let app = Appliance::start(&pki, 27_010, "");
    let cfg = client_config(&pki);
    let mut c = TlsConn::open(app.tls, &cfg);
    let local = c.local();

    c.send(&options("TLS", local, "tls-1", ""));
    let ok = c.expect(200);
    assert_eq!(call_id_of(&ok), "tls-1");

    // One message in three records (mid-header, mid-body).
    let msg = options("TLS", local, "tls-torn", "hello, torn body");
    let cut1 = 40;
    let cut2 = msg.len() - 5;
    c.send(&msg[..cut1]);
    std::thread::sleep(Duration::from_millis(50));
    c.send(&msg[cut1..cut2]);
    std::thread::sleep(Duration::from_millis(50));
    c.send(&msg[cut2..]);
    assert_eq!(call_id_of(&c.expect(200)), "tls-torn");

    // One record torn across TCP segments.
    let msg = options("TLS", local, "tls-seg", "");
    c.s.conn.writer().write_all(&msg).unwrap();
    let mut records = Vec::new();
    while c.s.conn.wants_write() {
        c.s.conn.write_tls(&mut records).unwrap();
    }
    c.s.sock.write_all(&records[..7]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.s.sock.write_all(&records[7..]).unwrap();
    assert_eq!(call_id_of(&c.expect(200)), "tls-seg");

    // Two messages in one record.
    let mut two = options("TLS", local, "tls-a", "");
    two.extend_from_slice(&options("TLS", local, "tls-b", "x"));
    c.send(&two);
    assert_eq!(call_id_of(&c.expect(200)), "tls-a");
    assert_eq!(call_id_of(&c.expect(200)), "tls-b");

    // RFC 5626 keepalive.
    c.send(b"\r\n\r\n");
    c.expect_pong();
    c.send(&options("TLS", local, "tls-after-ping", ""));
    assert_eq!(call_id_of(&c.expect(200)), "tls-after-ping");

    // Plain TCP alongside.
    let mut plain = TcpStream::connect(("127.0.0.1", app.tcp)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let plain_local = plain.local_addr().unwrap();
    plain
        .write_all(&options("TCP", plain_local, "tcp-1", ""))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !matches!(
        next_frame(&got, &FrameLimits::default()),
        Ok(Frame::Message { .. })
    ) {
        let n = plain.read(&mut chunk).unwrap();
        assert!(n > 0, "TCP closed");
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // A framing error over TLS: no Content-Length → 400, then the connection closes.
    let mut bad = TlsConn::open(app.tls, &cfg);
    let bad_local = bad.local();
    bad.send(
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS {bad_local};branch=z9hG4bK-ncl\r\n\
             From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ncl\r\n\
             CSeq: 1 OPTIONS\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(bad.closed_within(Duration::from_secs(5)), "still open");
    assert!(
        bad.buf.starts_with(b"SIP/2.0 400 "),
        "{}",
        String::from_utf8_lossy(&bad.buf)
    );
    // The first connection is unaffected.
    c.send(&options("TLS", local, "tls-last", ""));
    assert_eq!(call_id_of(&c.expect(200)), "tls-last");

    let summary = app.stop();
    assert_eq!(count(&summary, "tls_handshakes"), 2, "{summary}");
    assert_eq!(count(&summary, "tls_handshake_failures"), 0, "{summary}");
    assert_eq!(count(&summary, "tls_errors"), 0, "{summary}");
    assert_eq!(count(&summary, "tcp_framing_errors"), 1, "{summary}");
    assert_eq!(count(&summary, "options_ok"), 8, "{summary}");
    assert_eq!(count(&summary, "keepalives"), 1, "{summary}");
}

/// Digest REGISTER over `c` (401, then the answer): the final status.
fn register_tls(c: &mut TlsConn, user: &str, password: &str, contact: &str) -> u16 {
    let local = c.local();
    let req = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK-reg{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r{cseq}\r\n\
             To: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}-tls\r\nCSeq: {cseq} REGISTER\r\n\
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
        b"tlscnonce",
        1,
    )
    .unwrap();
    c.send(req(2, &format!("Authorization: {auth}\r\n")).as_bytes());
    let m = c.recv();
    Message::parse(&m).unwrap().status().unwrap()
}

/// bob registers over TLS (digest) with a contact naming a port nothing listens on; a sipp
/// UAC over UDP calls bob: INVITE (its Via naming TLS and the TLS listener), ACK and BYE
/// reach bob down his TLS connection; his answers go back to sipp over UDP.
#[test]
fn register_and_call_over_tls() {
    let pki = pki("call");
    let app = Appliance::start(&pki, 27_020, "");
    let cfg = client_config(&pki);
    let mut bob = TlsConn::open(app.tls, &cfg);
    let bob_contact = "sip:bob@127.0.0.1:27024;transport=tls";
    assert_eq!(register_tls(&mut bob, "bob", "bob-pw-2", bob_contact), 200);

    let uac_target = format!("127.0.0.1:{}", app.udp);
    let uac = std::thread::spawn(move || {
        Command::new("sipp")
            .arg(uac_target)
            .args(["-sn", "uac", "-s", "bob", "-i", "127.0.0.1", "-p", "27023"])
            .args(["-m", "1", "-timeout", "30s", "-timeout_error", "-nostdin"])
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run sipp (install sip-tester; tests/run.sh does)")
    });
    let invite = bob.recv();
    assert!(
        invite.starts_with(format!("INVITE {bob_contact} SIP/2.0").as_bytes()),
        "{}",
        String::from_utf8_lossy(&invite)
    );
    let inv = Message::parse(&invite).unwrap();
    let via = inv.top_via();
    assert_eq!(via.transport, b"TLS", "the proxy's Via names TLS");
    assert_eq!(via.port, Some(app.tls), "and the TLS listener");
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
    assert_eq!(Message::parse(&bye).unwrap().top_via().transport, b"TLS");
    let bye_msg = Message::parse(&bye).unwrap();
    ResponseBuilder::new(&bye_msg, 200, b"OK").write(&mut out);
    bob.send(&out);
    let sipp = uac.join().unwrap();
    assert!(
        sipp.status.success(),
        "sipp uac failed ({}):\n{}\n{}",
        sipp.status,
        String::from_utf8_lossy(&sipp.stdout)
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&sipp.stderr)
    );

    let summary = app.stop();
    assert_eq!(count(&summary, "registered"), 1, "{summary}");
    assert_eq!(count(&summary, "calls"), 1, "{summary}");
    assert_eq!(count(&summary, "calls_answered"), 1, "{summary}");
    assert_eq!(count(&summary, "calls_ended"), 1, "{summary}");
    assert_eq!(count(&summary, "tls_handshakes"), 1, "{summary}");
    assert_eq!(count(&summary, "tls_handshake_failures"), 0, "{summary}");
}

/// Plaintext SIP instead of a ClientHello, a handshake abandoned halfway and garbage on an
/// established session each close only their own connection and are counted; a
/// connection open all along and a new one still work.
#[test]
fn failed_handshakes_close_only_their_connection() {
    let pki = pki("garbage");
    let app = Appliance::start(&pki, 27_030, "");
    let cfg = client_config(&pki);
    let mut good = TlsConn::open(app.tls, &cfg);
    let good_local = good.local();
    good.send(&options("TLS", good_local, "good-1", ""));
    good.expect(200);

    // Plain SIP on the TLS port.
    let mut plain = TcpStream::connect(("127.0.0.1", app.tls)).unwrap();
    let plain_local = plain.local_addr().unwrap();
    plain
        .write_all(&options("TCP", plain_local, "plain", ""))
        .unwrap();
    assert!(
        raw_closed_within(&mut plain, Duration::from_secs(5)),
        "plaintext on the TLS port: still open"
    );

    // Half a ClientHello, then the client goes away.
    let mut hello =
        ClientConnection::new(Arc::clone(&cfg), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let mut records = Vec::new();
    while hello.wants_write() {
        hello.write_tls(&mut records).unwrap();
    }
    let mut aborted = TcpStream::connect(("127.0.0.1", app.tls)).unwrap();
    aborted.write_all(&records[..records.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(aborted);

    // A finished handshake, then bytes that are no TLS record.
    let mut spoiled = TlsConn::open(app.tls, &cfg);
    let spoiled_local = spoiled.local();
    spoiled.send(&options("TLS", spoiled_local, "spoiled", ""));
    spoiled.expect(200);
    spoiled
        .s
        .sock
        .write_all(b"\x17\x03\x03\x00\x20this is not an encrypted record!")
        .unwrap();
    assert!(
        spoiled.closed_within(Duration::from_secs(5)),
        "bad record: still open"
    );

    good.send(&options("TLS", good_local, "good-2", ""));
    assert_eq!(call_id_of(&good.expect(200)), "good-2");
    let mut fresh = TlsConn::open(app.tls, &cfg);
    let fresh_local = fresh.local();
    fresh.send(&options("TLS", fresh_local, "fresh", ""));
    assert_eq!(call_id_of(&fresh.expect(200)), "fresh");
    std::thread::sleep(Duration::from_millis(300));

    let summary = app.stop();
    assert_eq!(count(&summary, "tls_handshake_failures"), 2, "{summary}");
    assert_eq!(count(&summary, "tls_errors"), 1, "{summary}");
    assert_eq!(count(&summary, "tls_handshakes"), 3, "{summary}");
    assert_eq!(count(&summary, "tcp_accepted"), 5, "{summary}");
    assert_eq!(count(&summary, "tcp_framing_errors"), 0, "{summary}");
    assert_eq!(count(&summary, "options_ok"), 4, "{summary}");
}

/// `openssl s_client` completes a handshake, verifies the certificate for 127.0.0.1 and
/// gets 200 to an OPTIONS: an outside TLS implementation agrees with ours.
#[test]
fn openssl_s_client_handshake() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("openssl not found: skipping the s_client check");
        return;
    }
    let pki = pki("openssl");
    let app = Appliance::start(&pki, 27_040, "");
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", app.tls)])
        .arg("-CAfile")
        .arg(&pki.cert)
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&options("TLS", local, "openssl-1", ""))
        .unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(stdin); // EOF: s_client closes the session and exits
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("Verify return code: 0 (ok)"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("SIP/2.0 200 OK"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary = app.stop();
    assert_eq!(count(&summary, "tls_handshakes"), 1, "{summary}");
    assert_eq!(count(&summary, "options_ok"), 1, "{summary}");
}

/// A TLS listener whose certificate or key cannot be used stops `up` before anything
/// listens, naming the file.
#[test]
fn unusable_certificate_files_stop_up() {
    let pki = pki("badfiles");
    let cfg = pki.dir.join("bad.toml");
    let missing = pki.dir.join("missing.crt");
    for (cert, key, expect) in [
        (&missing, &pki.key, "missing.crt"),
        (&pki.cert, &pki.cert, "no private key"),
        (&pki.key, &pki.key, "no certificate"),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "[[sip.listener]]\ntransport = \"tls\"\naddress = \"127.0.0.1\"\nport = 27050\n\
                 cert = \"{}\"\nkey = \"{}\"\n[media]\nenabled = false\n[store]\npath = \"{}\"\n",
                cert.display(),
                key.display(),
                pki.dir.join("bad.db").display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_trunkline"))
            .args(["up", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ready"),
            "started anyway"
        );
        let check = Command::new(env!("CARGO_BIN_EXE_trunkline"))
            .arg("check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!check.status.success());
        assert!(String::from_utf8_lossy(&check.stderr).contains(expect));
    }
}

/// Runs openssl with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Keys as openssl writes them load too: a PKCS#1 `RSA PRIVATE KEY` (with a 2048-bit RSA
/// certificate, handshake and OPTIONS with a rustls client) and a SEC1 `EC PRIVATE KEY`
/// (`check-config` accepts it).
#[test]
fn openssl_made_rsa_and_ec_keys() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("openssl not found: skipping the RSA and EC key check");
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("trunkline-tls-{}-openssl-keys", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An end-entity certificate (CA:FALSE) for 127.0.0.1, self-signed.
    std::fs::write(
        dir.join("req.cnf"),
        "[req]\ndistinguished_name = dn\nx509_extensions = ee\nprompt = no\n[dn]\nCN = localhost\n\
         [ee]\nbasicConstraints = critical,CA:FALSE\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&dir, &["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    let rsa_key = std::fs::read_to_string(dir.join("rsa.key")).unwrap();
    assert!(
        rsa_key.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{rsa_key}"
    );
    openssl(
        &dir,
        &[
            "req", "-x509", "-new", "-key", "rsa.key", "-out", "rsa.crt", "-days", "2", "-config",
            "req.cnf",
        ],
    );
    openssl(
        &dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    let ec_key = std::fs::read_to_string(dir.join("ec.key")).unwrap();
    assert!(
        ec_key.starts_with("-----BEGIN EC PRIVATE KEY-----"),
        "{ec_key}"
    );
    openssl(
        &dir,
        &[
            "req", "-x509", "-new", "-key", "ec.key", "-out", "ec.crt", "-days", "2", "-config",
            "req.cnf",
        ],
    );

    let ec_cfg = dir.join("ec.toml");
    std::fs::write(
        &ec_cfg,
        format!(
            "[[sip.listener]]\ntransport = \"tls\"\naddress = \"127.0.0.1\"\nport = 27061\n\
             cert = \"{}\"\nkey = \"{}\"\n",
            dir.join("ec.crt").display(),
            dir.join("ec.key").display()
        ),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_trunkline"))
        .arg("check-config")
        .arg(&ec_cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    use rustls::pki_types::pem::PemObject;
    let rsa = Pki {
        der: CertificateDer::from_pem_file(dir.join("rsa.crt")).unwrap(),
        cert: dir.join("rsa.crt"),
        key: dir.join("rsa.key"),
        dir,
    };
    let app = Appliance::start(&rsa, 27_060, "");
    let mut c = TlsConn::open(app.tls, &client_config(&rsa));
    let local = c.local();
    c.send(&options("TLS", local, "rsa-1", ""));
    assert_eq!(call_id_of(&c.expect(200)), "rsa-1");
    let summary = app.stop();
    assert_eq!(count(&summary, "tls_handshakes"), 1, "{summary}");
}
