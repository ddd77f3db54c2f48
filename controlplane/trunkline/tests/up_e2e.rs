//! `trunkline up` as a process, driven by a real peer (sipp) and by the RFC 4475 torture
//! messages over real UDP sockets on loopback.
#![allow(clippy::unwrap_used)] // reason: test helpers panic with context, like the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    assert!(count("rejected") >= 100, "{summary}");
    assert!(count("absorbed") >= 100, "ACKs for the 501s: {summary}");
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

fn summary_count(summary: &str, k: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
        .unwrap_or_else(|| panic!("{k} in {summary}"))
        .parse()
        .unwrap()
}

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
fn register_by_hand(port: u16, user: &str, password: &str, call_id: &str, contact: &str) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = sock.local_addr().unwrap();
    let req = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=a{cseq}\r\n\
             To: <sip:{user}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let mut buf = [0u8; 4096];
    sock.send_to(req(1, "").as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let resp = sip::Message::parse(&buf[..n]).unwrap();
    assert_eq!(resp.status(), Some(401));
    let ch = resp.header(sip::HeaderName::WwwAuthenticate).unwrap();
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
        b"e2ecnonce",
        1,
    )
    .unwrap();
    sock.send_to(
        req(2, &format!("Authorization: {auth}\r\n")).as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    sip::Message::parse(&buf[..n]).unwrap().status().unwrap()
}

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
