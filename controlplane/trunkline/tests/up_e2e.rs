//! `trunkline up` as a process, driven by a real peer (sipp) and by the RFC 4475 torture
//! messages over real UDP sockets on loopback.
#![allow(clippy::unwrap_used)] // reason: test helpers panic with context, like the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::{free_udp_port, register_by_hand, repo, summary_count};

struct Appliance {
    child: Child,
    port: u16,
    api: Option<PathBuf>,
    /// Registrations restored from the store at start.
    restored: usize,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Appliance {
    /// `trunkline up` with a SIP listener on a free port and the media plane on `media`
    /// (port range; `None`: media off). Each test names its own region, runtime directory
    /// and ports, so tests run side by side; the ports lie below the ephemeral range.
    fn start(name: &str, media: Option<(u16, u16)>) -> Appliance {
        Appliance::start_with(name, media, "")
    }

    /// As [`Appliance::start`], with `extra` appended to the configuration; the store lives
    /// in the test's directory.
    fn start_with(name: &str, media: Option<(u16, u16)>, extra: &str) -> Appliance {
        let dir = std::env::temp_dir().join(format!("trunkline-e2e-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("trunkline.toml");
        let media = match media {
            Some((lo, hi)) => format!(
                "[media]\naddress = \"127.0.0.1\"\nport_min = {lo}\nport_max = {hi}\ncores = 1\n\
                 region = \"trunkline-e2e-{}-{name}\"\nruntime_dir = \"{}\"\n",
                std::process::id(),
                dir.display()
            ),
            None => "[media]\nenabled = false\n".to_string(),
        };
        std::fs::write(
            &cfg,
            format!(
                "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 0\n{media}\
                 [store]\npath = \"{}\"\n{extra}",
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
        let mut port = None;
        let mut api = None;
        let mut restored = None;
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "trunkline exited before ready"
            );
            if let Some(a) = line.trim().strip_prefix("SIP listening on udp:") {
                port = Some(a.rsplit(':').next().unwrap().parse().unwrap());
            }
            if let Some(rest) = line.trim().strip_prefix("store ") {
                let n = rest
                    .rsplit_once(" (")
                    .map(|(_, r)| r.split_whitespace().next().unwrap());
                restored = n.map(|n| n.parse::<usize>().unwrap());
            }
            if let Some(rest) = line.trim().strip_prefix("media API on unix:") {
                api = Some(PathBuf::from(rest.split_whitespace().next().unwrap()));
            }
            if line.trim() == "ready" {
                break;
            }
        }
        Appliance {
            child,
            port: port.expect("listening line"),
            api,
            restored: restored.expect("store line"),
            stdout,
        }
    }

    /// SIGTERM, then the exit status and the final counters line.
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
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
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

fn sipp(scenario: &str, port: u16, calls: u32) {
    let sipp = Command::new("sipp").arg("-v").output();
    assert!(
        sipp.is_ok(),
        "sipp not found: install sip-tester (tests/run.sh does)"
    );
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-sf")
        .arg(repo().join("tests/sipp").join(scenario))
        .args(["-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args(["-m", &calls.to_string(), "-r", "200", "-l", "50"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run sipp");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sipp {scenario} failed ({}):\n{}\n{}",
        out.status,
        stdout.lines().rev().take(40).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sipp_options_and_rejected_invites_against_trunkline_up() {
    let app = Appliance::start("sipp", None);
    sipp("options_uac.xml", app.port, 300);
    sipp("invite_rejected_uac.xml", app.port, 100);
    let summary = app.stop();
    let count = |k: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(count("options_ok") >= 300, "{summary}");
    assert!(count("calls_refused") >= 100, "{summary}");
    assert!(
        count("acks_absorbed") >= 100,
        "ACKs for the 404s: {summary}"
    );
}

#[test]
fn torture_messages_get_the_rfc_answers_over_udp() {
    let app = Appliance::start("torture", None);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let dir = repo().join("tests/fixtures/rfc4475");
    // (fixture, expected status or None for "no answer")
    let cases: &[(&str, Option<u16>)] = &[
        ("badinv01", Some(400)),
        ("clerr", Some(400)),
        ("ncl", Some(400)),
        ("scalar02", Some(400)),
        ("quotbal", Some(400)),
        ("ltgtruri", Some(400)),
        ("lwsruri", Some(400)),
        ("lwsstart", Some(400)),
        ("trws", Some(400)),
        ("escruri", Some(400)),
        ("baddate", Some(400)),
        ("regbadct", Some(400)),
        ("badaspec", Some(400)),
        ("baddn", Some(400)),
        ("badvers", Some(505)),
        ("mismatch01", Some(400)),
        ("mismatch02", Some(400)),
        ("multi01", Some(400)),
        ("mcl01", Some(400)),
        ("insuf", Some(400)),
        ("unkscm", Some(416)),
        ("novelsc", Some(416)),
        ("bext01", Some(420)),
        ("zeromf", Some(200)),
        ("transports", Some(200)),
        ("semiuri", Some(200)),
        ("lwsdisp", Some(200)),
        ("bigcode", None),
        ("scalarlg", None),
        ("unreason", None),
        ("noreason", None),
    ];
    let mut buf = [0u8; 65_535];
    for (name, want) in cases {
        let msg = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        sock.send_to(&msg, ("127.0.0.1", app.port)).unwrap();
        match (sock.recv_from(&mut buf), want) {
            (Ok((n, _)), Some(code)) => {
                let got = std::str::from_utf8(&buf[8..11]).unwrap();
                assert_eq!(
                    got,
                    code.to_string(),
                    "{name}: {}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }
            (Err(_), None) => {}
            (Ok((n, _)), None) => panic!(
                "{name}: unexpected answer {}",
                String::from_utf8_lossy(&buf[..n])
            ),
            (Err(e), Some(code)) => panic!("{name}: no answer ({e}), wanted {code}"),
        }
    }
    let summary = app.stop();
    assert!(summary.contains("malformed_answered=20"), "{summary}");
}

/// One JSON request on the media API socket, one answer.
fn api_call(path: &Path, req: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    writeln!(s, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["ok"], true, "{req} → {line}");
    v
}

fn rtp(ssrc: u32, seq: u16) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Sends 20 packets each way through the session and counts what arrives.
fn relay_both_ways(
    caller: &UdpSocket,
    callee: &UdpSocket,
    ports: [u16; 2],
    seq0: u16,
) -> [usize; 2] {
    let mut buf = [0u8; 2048];
    let mut got = [0usize; 2];
    for k in 0..20u16 {
        caller
            .send_to(&rtp(1, seq0 + k), ("127.0.0.1", ports[0]))
            .unwrap();
        callee
            .send_to(&rtp(2, seq0 + k), ("127.0.0.1", ports[1]))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    for (i, s) in [callee, caller].into_iter().enumerate() {
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            assert_eq!(n, 172);
            assert_eq!(
                from.port(),
                ports[1 - i],
                "the relay's own port is the source"
            );
            got[i] += 1;
        }
    }
    got
}

#[test]
fn up_runs_the_media_plane_and_restarts_a_dead_control_plane() {
    let mut app = Appliance::start("media", Some((31_000, 31_099)));
    let api = app.api.clone().expect("media API line");
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&caller, &callee] {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let v = api_call(
        &api,
        &format!(
            r#"{{"op":"create","a":{{"remote":"{}"}},"b":{{"remote":"{}"}}}}"#,
            caller.local_addr().unwrap(),
            callee.local_addr().unwrap()
        ),
    );
    let id = v["session"]["id"].as_u64().unwrap();
    let ports: Vec<u16> = v["session"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u16)
        .collect();
    assert!(
        ports.iter().all(|p| (31_000..=31_099).contains(p)),
        "{ports:?}"
    );
    let ports = [ports[0], ports[1]];
    assert_eq!(relay_both_ways(&caller, &callee, ports, 0), [20, 20]);

    // Kill the control plane: `up` restarts it, media never stopped, the session is listed.
    let out = Command::new("pgrep")
        .args([
            "-f",
            &format!(
                "trunkline controlplane --region trunkline-e2e-{}-media",
                std::process::id()
            ),
        ])
        .output()
        .unwrap();
    let pid = String::from_utf8(out.stdout).unwrap();
    let pid = pid
        .split_whitespace()
        .next()
        .expect("control plane pid")
        .to_string();
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(
        relay_both_ways(&caller, &callee, ports, 100),
        [20, 20],
        "media while the control plane is down"
    );
    let mut line = String::new();
    loop {
        line.clear();
        assert!(app.stdout.read_line(&mut line).unwrap() > 0, "up exited");
        if line.contains("trunkline-controlplane ready") {
            break;
        }
    }
    assert!(line.contains("1 live session(s) recovered"), "{line}");
    let listed = api_call(&api, r#"{"op":"list"}"#);
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "{listed}");
    let st = api_call(&api, &format!(r#"{{"op":"delete","id":{id}}}"#));
    assert_eq!(st["stats"]["a"]["packets"], 40, "{st}");
    assert_eq!(st["stats"]["b"]["packets"], 40, "{st}");

    let summary = app.stop();
    assert!(summary.contains("control_plane_restarts=1"), "{summary}");
    assert!(!api.exists(), "the control plane removed its socket");
}

const TENANT: &str = "[[tenant]]\ndomain = \"e2e.example\"\naliases = [\"127.0.0.1\"]\n\
[[tenant.subscriber]]\nuser = \"alice\"\npassword = \"alice-pw-1\"\n\
[[tenant.subscriber]]\nuser = \"bob\"\npassword = \"bob-pw-2\"\n";

#[test]
fn sipp_registers_and_unregisters_with_digest_auth() {
    let app = Appliance::start_with("register", None, TENANT);
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{}", app.port))
        .arg("-sf")
        .arg(repo().join("tests/sipp/register_auth_uac.xml"))
        .args(["-s", "alice", "-au", "alice", "-ap", "alice-pw-1"])
        .args(["-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args([
            "-m", "50", "-r", "100", "-l", "20", "-timeout", "30", "-nostdin",
        ])
        .output()
        .expect("run sipp");
    assert!(
        out.status.success(),
        "sipp: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = app.stop();
    // Each call: REGISTER → 401 → REGISTER+auth → 200, then the same to unregister.
    assert_eq!(
        summary_count(&summary, "register_challenges"),
        100,
        "{summary}"
    );
    assert_eq!(summary_count(&summary, "registered"), 100, "{summary}");
    assert_eq!(
        summary_count(&summary, "register_auth_failures"),
        0,
        "{summary}"
    );
    assert_eq!(summary_count(&summary, "registered_aors"), 0, "{summary}");
}

/// One REGISTER by hand: 401, then the digest answer; returns the final status.

#[test]
fn registrations_survive_a_restart_and_bad_passwords_are_refused() {
    let app = Appliance::start_with("restart", None, TENANT);
    assert_eq!(app.restored, 0);
    assert_eq!(
        register_by_hand(app.port, "bob", "bob-pw-2", "r1", "sip:bob@192.0.2.7:5060"),
        200
    );
    assert_eq!(
        register_by_hand(app.port, "alice", "wrong", "r2", "sip:alice@192.0.2.8:5060"),
        403
    );
    let summary = app.stop();
    assert_eq!(
        summary_count(&summary, "register_auth_failures"),
        1,
        "{summary}"
    );
    assert_eq!(summary_count(&summary, "registered_aors"), 1, "{summary}");
    // Same store, new process: bob's binding is back.
    let app = Appliance::start_with("restart", None, TENANT);
    assert_eq!(
        app.restored, 1,
        "bob's registration restored from the store"
    );
    let summary = app.stop();
    assert_eq!(summary_count(&summary, "registered_aors"), 1, "{summary}");
}

/// A real softphone: baresip (libre's SIP stack) registers as alice through the digest
/// challenge, then unregisters when it quits.
#[test]
fn baresip_registers_and_unregisters() {
    if Command::new("baresip").arg("-h").output().is_err() {
        // tests/run.sh installs baresip-core: in CI its absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "baresip not installed in CI"
        );
        eprintln!("SKIP: baresip not installed (apt-get install baresip-core)");
        return;
    }
    let app = Appliance::start_with("baresip", None, TENANT);
    let dir = std::env::temp_dir().join(format!("trunkline-e2e-{}-baresip-ua", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:alice@127.0.0.1:{}>;auth_pass=alice-pw-1;regint=600;audio_codecs=PCMU\n",
            app.port
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("config"),
        format!(
            "sip_listen 127.0.0.1:{}\nmodule_path /usr/lib/baresip/modules\nmodule stdio.so\n\
             module g711.so\nmodule account.so\nmodule_app menu.so\naudio_player none\n\
             audio_source none\n",
            free_udp_port()
        ),
    )
    .unwrap();
    let mut ua = Command::new("baresip")
        .arg("-f")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(ua.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    let registered = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("200 OK") && l.contains("alice@127.0.0.1") => break true,
            Ok(l) => seen.push(l),
            Err(_) => break false,
        }
    };
    // `q` quits; baresip unregisters on the way out.
    let _ = ua.stdin.take().unwrap().write_all(b"q\n");
    let waited = std::time::Instant::now();
    while ua.try_wait().unwrap().is_none() && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = ua.kill();
    let _ = ua.wait();
    assert!(registered, "baresip did not register:\n{}", seen.join("\n"));
    let summary = app.stop();
    assert!(
        summary_count(&summary, "register_challenges") >= 1,
        "{summary}"
    );
    assert!(
        summary_count(&summary, "registered") >= 2,
        "register and unregister: {summary}"
    );
    assert_eq!(
        summary_count(&summary, "register_auth_failures"),
        0,
        "{summary}"
    );
    assert_eq!(summary_count(&summary, "registered_aors"), 0, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flood of REGISTERs with wrong passwords (and of unauthenticated ones) does not keep a
/// legitimate phone from registering; every bad answer is counted.
#[test]
fn register_flood_with_bad_passwords_leaves_real_phones_registering() {
    let app = Appliance::start_with("flood", None, TENANT);
    let port = app.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..2)
        .map(|t| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u32;
                // Bounded: at most 2,000 attempts or until told to stop.
                while n < 2_000 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = register_by_hand(
                        port,
                        "alice",
                        "guess",
                        &format!("flood{t}-{n}"),
                        "sip:alice@198.51.100.1:5060",
                    );
                    assert_eq!(status, 403);
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        assert_eq!(
            register_by_hand(
                port,
                "bob",
                "bob-pw-2",
                &format!("legit{i}"),
                "sip:bob@192.0.2.7:5060"
            ),
            200,
            "bob registers during the flood"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attempts: u32 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    let summary = app.stop();
    assert_eq!(
        summary_count(&summary, "register_auth_failures"),
        u64::from(attempts),
        "{summary}"
    );
    assert_eq!(summary_count(&summary, "registered"), 5, "{summary}");
    assert_eq!(summary_count(&summary, "registered_aors"), 1, "{summary}");
}

/// Receives one SIP message on `s` (skipping nothing); returns it and its source.
fn recv_sip(s: &UdpSocket) -> (Vec<u8>, std::net::SocketAddr) {
    let mut buf = [0u8; 8192];
    let (n, from) = s.recv_from(&mut buf).expect("a SIP message");
    (buf[..n].to_vec(), from)
}

/// Receives until a message whose first line starts with `prefix`.
fn recv_until(s: &UdpSocket, prefix: &str) -> (Vec<u8>, std::net::SocketAddr) {
    for _ in 0..10 {
        let (m, from) = recv_sip(s);
        if m.starts_with(prefix.as_bytes()) {
            return (m, from);
        }
    }
    panic!("no {prefix}");
}

fn sdp(rtp: std::net::SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

fn sdp_media_addr(msg: &[u8]) -> std::net::SocketAddr {
    let m = sip::Message::parse(msg).unwrap();
    let sdp = sip::sdp::Sdp::parse(m.body()).unwrap();
    let ip = sdp.connection_for(0).unwrap().ip().unwrap();
    std::net::SocketAddr::new(ip, sdp.media()[0].port)
}

/// A call from alice to registered bob through `trunkline up`, SIP and RTP by hand: the
/// INVITE reaches bob with the SDP pointing at the dataplane, the answer reaches alice
/// likewise, media flows both ways through the relay, BYE ends the call and its media
/// session; unknown and unregistered callees get 404 and 480.
#[test]
fn call_between_subscribers_with_media_through_the_dataplane() {
    let mut app = Appliance::start_with("call", Some((31_200, 31_299)), TENANT);
    let api = app.api.clone().unwrap();
    let proxy = ("127.0.0.1", app.port);
    let bob_sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bob_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let alice_sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let alice_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&bob_sip, &bob_rtp, &alice_sip, &alice_rtp] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    let bob_contact = format!("sip:bob@{}", bob_sip.local_addr().unwrap());
    assert_eq!(
        register_by_hand(app.port, "bob", "bob-pw-2", "reg-bob", &bob_contact),
        200
    );
    let a = alice_sip.local_addr().unwrap();
    let offer = sdp(alice_rtp.local_addr().unwrap());
    let invite = |to: &str, call_id: &str| {
        format!(
            "INVITE sip:{to}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-{call_id}-1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al1\r\nTo: <sip:{to}@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{a}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len()
        )
    };
    // Unknown user, and a subscriber who is not registered.
    alice_sip
        .send_to(invite("carol", "c404").as_bytes(), proxy)
        .unwrap();
    assert!(recv_sip(&alice_sip).0.starts_with(b"SIP/2.0 404"));
    alice_sip
        .send_to(invite("alice", "c480").as_bytes(), proxy)
        .unwrap();
    let (m, _) = recv_until(&alice_sip, "SIP/2.0 480");
    assert!(m.starts_with(b"SIP/2.0 480"));

    // The call.
    alice_sip
        .send_to(invite("bob", "call1").as_bytes(), proxy)
        .unwrap();
    assert!(recv_sip(&alice_sip).0.starts_with(b"SIP/2.0 100"));
    let (inv, via_proxy) = recv_until(&bob_sip, "INVITE ");
    let inv_msg = sip::Message::parse(&inv).unwrap();
    assert_eq!(
        inv_msg.request_uri().unwrap().as_bytes(),
        bob_contact.as_bytes(),
        "Request-URI is bob's registered contact"
    );
    assert_eq!(inv_msg.vias().count(), 2, "the proxy pushed its Via");
    assert!(
        inv_msg.record_routes().next().is_some(),
        "the proxy record-routes"
    );
    assert_eq!(inv_msg.max_forwards(), Some(69));
    let relay_b = sdp_media_addr(&inv);
    assert!(
        (31_200..=31_299).contains(&relay_b.port()),
        "offer rewritten to the relay: {relay_b}"
    );
    // bob answers: 180 then 200 with his SDP.
    let answer = sdp(bob_rtp.local_addr().unwrap());
    let resp = |code: &str, body: &str| {
        let mut out = Vec::new();
        let r =
            sip::edit::ResponseBuilder::new(&inv_msg, code.parse().unwrap(), b"X").to_tag(b"bob1");
        let r = if body.is_empty() {
            r
        } else {
            r.header(sip::HeaderName::Contact, bob_contact.as_bytes())
                .body(b"application/sdp", body.as_bytes())
        };
        r.write(&mut out);
        out
    };
    bob_sip.send_to(&resp("180", ""), via_proxy).unwrap();
    assert!(recv_until(&alice_sip, "SIP/2.0 180")
        .0
        .starts_with(b"SIP/2.0 180"));
    bob_sip.send_to(&resp("200", &answer), via_proxy).unwrap();
    let (ok, _) = recv_until(&alice_sip, "SIP/2.0 200");
    let relay_a = sdp_media_addr(&ok);
    assert!(
        (31_200..=31_299).contains(&relay_a.port()),
        "answer rewritten to the relay: {relay_a}"
    );
    assert_ne!(relay_a, relay_b);
    let ok_msg = sip::Message::parse(&ok).unwrap();
    assert_eq!(ok_msg.vias().count(), 1, "the proxy popped its Via");
    // ACK (a new transaction, in the dialog) reaches bob.
    let ack = format!(
        "ACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-call1-ack\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=al1\r\nTo: <sip:bob@127.0.0.1>;tag=bob1\r\nCall-ID: call1\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    alice_sip.send_to(ack.as_bytes(), proxy).unwrap();
    assert!(recv_until(&bob_sip, "ACK ").0.starts_with(b"ACK "));

    // Media both ways through the dataplane.
    let mut buf = [0u8; 2048];
    for k in 0..20u16 {
        alice_rtp.send_to(&rtp(1, k), relay_a).unwrap();
        bob_rtp.send_to(&rtp(2, k), relay_b).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut got = [0; 2];
    for (i, s) in [&bob_rtp, &alice_rtp].into_iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            assert_eq!(n, 172);
            assert_eq!(
                from,
                if i == 0 { relay_b } else { relay_a },
                "media comes from the relay"
            );
            got[i] += 1;
        }
    }
    assert_eq!(got, [20, 20], "RTP relayed both ways");
    assert_eq!(
        api_call(&api, r#"{"op":"list"}"#)["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // bob hangs up.
    let bye = format!(
        "BYE sip:alice@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-bye1\r\nMax-Forwards: 70\r\n\
         From: <sip:bob@127.0.0.1>;tag=bob1\r\nTo: <sip:alice@127.0.0.1>;tag=al1\r\nCall-ID: call1\r\n\
         CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        bob_sip.local_addr().unwrap()
    );
    bob_sip.send_to(bye.as_bytes(), via_proxy).unwrap();
    let (bye_in, from) = recv_until(&alice_sip, "BYE ");
    let bye_msg = sip::Message::parse(&bye_in).unwrap();
    let mut ok = Vec::new();
    sip::edit::ResponseBuilder::new(&bye_msg, 200, b"OK").write(&mut ok);
    alice_sip.send_to(&ok, from).unwrap();
    assert!(recv_until(&bob_sip, "SIP/2.0 200")
        .0
        .starts_with(b"SIP/2.0 200"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        api_call(&api, r#"{"op":"list"}"#)["sessions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the media session ended with the call"
    );
    let _ = &mut app;
    let summary = app.stop();
    assert_eq!(summary_count(&summary, "calls"), 1, "{summary}");
    assert_eq!(summary_count(&summary, "calls_answered"), 1, "{summary}");
    assert_eq!(summary_count(&summary, "calls_ended"), 1, "{summary}");
    assert_eq!(summary_count(&summary, "calls_refused"), 2, "{summary}");
    assert_eq!(summary_count(&summary, "media_errors"), 0, "{summary}");
}

/// sipp's own UAC calls sipp's UAS (registered as bob) through the proxy: 20 calls, each
/// INVITE → 180 → 200 → ACK → BYE → 200, every one anchored and torn down.
#[test]
fn sipp_calls_through_the_proxy() {
    let app = Appliance::start_with("sippcalls", Some((31_300, 31_499)), TENANT);
    let uas_port = free_udp_port();
    assert_eq!(
        register_by_hand(
            app.port,
            "bob",
            "bob-pw-2",
            "reg-uas",
            &format!("sip:bob@127.0.0.1:{uas_port}")
        ),
        200
    );
    let mut uas = Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p"])
        .arg(uas_port.to_string())
        .args(["-m", "20", "-nostdin", "-timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{}", app.port))
        .args(["-sn", "uac", "-s", "bob", "-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args([
            "-m", "20", "-r", "10", "-l", "10", "-timeout", "60", "-nostdin",
        ])
        .output()
        .expect("sipp uac");
    let uas_ok = uas.wait().map(|s| s.success()).unwrap_or(false);
    assert!(
        out.status.success(),
        "sipp uac: {}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("call") || l.contains("Call"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(uas_ok, "sipp uas did not complete 20 calls");
    let summary = app.stop();
    assert_eq!(summary_count(&summary, "calls"), 20, "{summary}");
    assert_eq!(summary_count(&summary, "calls_answered"), 20, "{summary}");
    assert_eq!(summary_count(&summary, "calls_ended"), 20, "{summary}");
    assert_eq!(summary_count(&summary, "media_errors"), 0, "{summary}");
}

/// A baresip UA with its stdin and a channel of its output lines.
struct Baresip {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Baresip {
    /// Starts baresip as `user` of the appliance on `sip_port`, auto-answering, sending a
    /// 440 Hz tone from an 8 kHz WAV, RTP ports in `rtp`.
    fn start(
        dir: &Path,
        user: &str,
        password: &str,
        sip_port: u16,
        rtp: (u16, u16),
        wav: &Path,
    ) -> Baresip {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@127.0.0.1:{sip_port}>;auth_pass={password};regint=600;\
                 audio_codecs=PCMU;answermode=auto\n"
            ),
        )
        .unwrap();
        // libre listens on UDP and TCP at the port and TLS one above: keep both free.
        let listen = loop {
            let p = free_udp_port();
            if p < 65_000 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        std::fs::write(
            dir.join("config"),
            format!(
                "sip_listen 127.0.0.1:{listen}\nmodule_path /usr/lib/baresip/modules\n\
                 module stdio.so\nmodule g711.so\nmodule aufile.so\nmodule account.so\n\
                 module_app menu.so\naudio_player none\naudio_source aufile,{}\n\
                 audio_alert none\nrtp_ports {}-{}\n",
                wav.display(),
                rtp.0,
                rtp.1
            ),
        )
        .unwrap();
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Baresip {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to 15 s for an output line containing `what`.
    fn wait_for(&mut self, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return,
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("baresip: no {what:?} in:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn command(&mut self, cmd: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(cmd.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }

    fn quit(mut self) {
        let _ = self.command_quietly("q");
        let t = std::time::Instant::now();
        while self.child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn command_quietly(&mut self, cmd: &str) -> std::io::Result<()> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or(std::io::ErrorKind::BrokenPipe)?;
        stdin.write_all(cmd.as_bytes())?;
        stdin.write_all(b"\n")
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two real softphones: baresip alice calls baresip bob through `trunkline up`; bob
/// answers, audio flows both ways through the dataplane, alice hangs up.
#[test]
fn baresip_calls_baresip_with_media_through_the_dataplane() {
    if Command::new("baresip").arg("-h").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "baresip not installed in CI"
        );
        eprintln!("SKIP: baresip not installed (apt-get install baresip-core)");
        return;
    }
    let app = Appliance::start_with("baresip-call", Some((31_500, 31_599)), TENANT);
    let api = app.api.clone().unwrap();
    let dir = std::env::temp_dir().join(format!("trunkline-e2e-{}-bcall", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 20 s of a 440 Hz tone, 8 kHz mono 16-bit.
    let wav = dir.join("tone.wav");
    let n = 8_000 * 20u32;
    let mut w = Vec::with_capacity(44 + 2 * n as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8_000u32.to_le_bytes());
    w.extend_from_slice(&16_000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let v =
            (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8_000.0).sin()) as i16;
        w.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&wav, w).unwrap();

    let mut bob = Baresip::start(
        &dir.join("bob"),
        "bob",
        "bob-pw-2",
        app.port,
        (30_900, 30_999),
        &wav,
    );
    bob.wait_for("200 OK");
    let mut alice = Baresip::start(
        &dir.join("alice"),
        "alice",
        "alice-pw-1",
        app.port,
        (30_800, 30_899),
        &wav,
    );
    alice.wait_for("200 OK");
    alice.command(&format!("d sip:bob@127.0.0.1:{}", app.port));
    bob.wait_for("Call established");
    alice.wait_for("Call established");
    std::thread::sleep(Duration::from_secs(2));
    let listed = api_call(&api, r#"{"op":"list"}"#);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{listed}");
    let id = sessions[0]["id"].as_u64().unwrap();
    let st = api_call(&api, &format!(r#"{{"op":"stats","id":{id}}}"#));
    let a = st["stats"]["a"]["packets"].as_u64().unwrap();
    let b = st["stats"]["b"]["packets"].as_u64().unwrap();
    assert!(
        a >= 50 && b >= 50,
        "audio both ways through the relay: {st}"
    );
    alice.command("b");
    bob.wait_for("terminated");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        api_call(&api, r#"{"op":"list"}"#)["sessions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "media session ended with the call"
    );
    alice.quit();
    bob.quit();
    let summary = app.stop();
    assert_eq!(summary_count(&summary, "calls"), 1, "{summary}");
    assert_eq!(summary_count(&summary, "calls_answered"), 1, "{summary}");
    assert_eq!(summary_count(&summary, "calls_ended"), 1, "{summary}");
    assert_eq!(summary_count(&summary, "media_errors"), 0, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Busy and cancelled calls: bob answers 486, then alice cancels a ringing call. Each time
/// the proxy sends the hop-by-hop ACK to bob, the caller gets the final response, and the
/// media session is gone.
#[test]
fn busy_and_cancelled_calls_end_their_media() {
    let app = Appliance::start_with("busy", Some((31_600, 31_699)), TENANT);
    let api = app.api.clone().unwrap();
    let proxy = ("127.0.0.1", app.port);
    let bob_sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let alice_sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let alice_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&bob_sip, &alice_sip] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    let bob_contact = format!("sip:bob@{}", bob_sip.local_addr().unwrap());
    assert_eq!(
        register_by_hand(app.port, "bob", "bob-pw-2", "reg-bob2", &bob_contact),
        200
    );
    let a = alice_sip.local_addr().unwrap();
    let offer = sdp(alice_rtp.local_addr().unwrap());
    let invite = |call_id: &str| {
        format!(
            "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-{call_id};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al2\r\nTo: <sip:bob@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{a}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len()
        )
    };
    let sessions = || {
        api_call(&api, r#"{"op":"list"}"#)["sessions"]
            .as_array()
            .unwrap()
            .len()
    };

    // An offer the relay cannot anchor is refused, not forwarded around the relay.
    let bad = format!(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-bad1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al3\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: bad1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\
         Content-Length: 12\r\n\r\nv=0\r\nbogus\r\n"
    );
    alice_sip.send_to(bad.as_bytes(), proxy).unwrap();
    assert!(recv_until(&alice_sip, "SIP/2.0 488")
        .0
        .starts_with(b"SIP/2.0 488"));
    assert_eq!(sessions(), 0);

    // 486 Busy Here.
    alice_sip
        .send_to(invite("busy1").as_bytes(), proxy)
        .unwrap();
    let (inv, via_proxy) = recv_until(&bob_sip, "INVITE ");
    assert_eq!(sessions(), 1, "media anchored before the offer left");
    let inv_msg = sip::Message::parse(&inv).unwrap();
    let mut busy = Vec::new();
    sip::edit::ResponseBuilder::new(&inv_msg, 486, b"Busy Here")
        .to_tag(b"b486")
        .write(&mut busy);
    bob_sip.send_to(&busy, via_proxy).unwrap();
    let (ack, _) = recv_until(&bob_sip, "ACK ");
    let ack = sip::Message::parse(&ack).unwrap();
    assert_eq!(
        ack.top_via().branch(),
        inv_msg.top_via().branch(),
        "ACK in the INVITE's transaction"
    );
    assert_eq!(ack.to_tag(), Some(&b"b486"[..]));
    assert!(recv_until(&alice_sip, "SIP/2.0 486")
        .0
        .starts_with(b"SIP/2.0 486"));
    assert_eq!(sessions(), 0, "media ended with the failed call");

    // CANCEL while ringing.
    alice_sip
        .send_to(invite("cancel1").as_bytes(), proxy)
        .unwrap();
    let (inv, via_proxy) = recv_until(&bob_sip, "INVITE ");
    let inv_msg = sip::Message::parse(&inv).unwrap();
    let mut ringing = Vec::new();
    sip::edit::ResponseBuilder::new(&inv_msg, 180, b"Ringing")
        .to_tag(b"bc")
        .write(&mut ringing);
    bob_sip.send_to(&ringing, via_proxy).unwrap();
    recv_until(&alice_sip, "SIP/2.0 180");
    let cancel = format!(
        "CANCEL sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-cancel1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al2\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: cancel1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    alice_sip.send_to(cancel.as_bytes(), proxy).unwrap();
    let (ok, _) = recv_until(&alice_sip, "SIP/2.0 200");
    assert_eq!(
        sip::Message::parse(&ok).unwrap().cseq_method(),
        sip::Method::Cancel
    );
    let (fwd_cancel, _) = recv_until(&bob_sip, "CANCEL ");
    let fwd_cancel = sip::Message::parse(&fwd_cancel).unwrap();
    assert_eq!(
        fwd_cancel.top_via().branch(),
        inv_msg.top_via().branch(),
        "CANCEL matches our INVITE"
    );
    let mut c200 = Vec::new();
    sip::edit::ResponseBuilder::new(&fwd_cancel, 200, b"OK").write(&mut c200);
    bob_sip.send_to(&c200, via_proxy).unwrap();
    let mut terminated = Vec::new();
    sip::edit::ResponseBuilder::new(&inv_msg, 487, b"Request Terminated")
        .to_tag(b"bc")
        .write(&mut terminated);
    bob_sip.send_to(&terminated, via_proxy).unwrap();
    recv_until(&bob_sip, "ACK ");
    assert!(recv_until(&alice_sip, "SIP/2.0 487")
        .0
        .starts_with(b"SIP/2.0 487"));
    assert_eq!(sessions(), 0, "media ended with the cancelled call");
    let summary = app.stop();
    assert_eq!(summary_count(&summary, "calls"), 2, "{summary}");
    assert_eq!(summary_count(&summary, "calls_answered"), 0, "{summary}");
    assert_eq!(
        summary_count(&summary, "calls_refused"),
        1,
        "the 488: {summary}"
    );
    assert_eq!(summary_count(&summary, "stray"), 0, "{summary}");
}

/// `up` killed outright takes its planes with it: nothing lingers holding the media ports,
/// the region or the sockets.
#[test]
fn planes_do_not_outlive_a_killed_up() {
    let mut app = Appliance::start("orphans", Some((31_700, 31_799)));
    let region = format!("trunkline-e2e-{}-orphans", std::process::id());
    let planes = || {
        let out = Command::new("pgrep")
            .args(["-f", &format!("region {region}")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .count()
    };
    assert_eq!(planes(), 2, "dataplane and control plane running");
    app.child.kill().unwrap();
    app.child.wait().unwrap();
    let t = std::time::Instant::now();
    while planes() > 0 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(planes(), 0, "the planes exited with up");
}
