//! Routing end to end through `trunkline up` with sipp as phones and gateways: parallel
//! forking (one phone answers, the other is cancelled), serial failover past a silent and a
//! 503 gateway, and OPTIONS health probing that takes a dead gateway out of service and
//! brings it back when it answers. Loopback only; media ports 25000–25299.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{free_udp_port, register_by_hand, repo, summary_count};

const TENANT: &str = "[[tenant]]\ndomain = \"route.example\"\naliases = [\"127.0.0.1\"]\n\
[[tenant.subscriber]]\nuser = \"alice\"\npassword = \"alice-pw-1\"\n\
[[tenant.subscriber]]\nuser = \"bob\"\npassword = \"bob-pw-2\"\n";

/// `trunkline up` on a free UDP port with `extra` configuration.
struct Appliance {
    child: Child,
    port: u16,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Appliance {
    fn dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("trunkline-route-{}-{name}", std::process::id()))
    }

    fn start(name: &str, media: Option<(u16, u16)>, extra: &str) -> Appliance {
        let dir =
            std::env::temp_dir().join(format!("trunkline-route-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let media = match media {
            Some((lo, hi)) => format!(
                "[media]\naddress = \"127.0.0.1\"\nport_min = {lo}\nport_max = {hi}\ncores = 1\n\
                 region = \"trunkline-route-{}-{name}\"\nruntime_dir = \"{}\"\n",
                std::process::id(),
                dir.display()
            ),
            None => "[media]\nenabled = false\n".to_string(),
        };
        let cfg = dir.join("trunkline.toml");
        std::fs::write(
            &cfg,
            format!(
                "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 0\n{media}\
                 [store]\npath = \"{}\"\n{TENANT}{extra}",
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
            if line.trim() == "ready" {
                break;
            }
        }
        Appliance {
            child,
            port: port.expect("listening line"),
            stdout,
        }
    }

    /// SIGTERM; the final counters line.
    fn stop(mut self) -> String {
        assert!(Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        assert!(self.child.wait().unwrap().success());
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

/// A sipp UAS on `port` running `scenario` (a file in tests/sipp, or `None` for sipp's own
/// answering UAS) for one call.
fn sipp_uas(port: u16, scenario: Option<&str>) -> Child {
    let mut c = Command::new("sipp");
    match scenario {
        Some(s) => c.arg("-sf").arg(repo().join("tests/sipp").join(s)),
        None => c.args(["-sn", "uas"]),
    };
    c.args(["-i", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-m", "1", "-nostdin", "-timeout", "30", "-timeout_error"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas (install sip-tester)")
}

/// One call from sipp's UAC to `user` through the appliance; panics unless it completes.
fn sipp_call(app_port: u16, user: &str) {
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{app_port}"))
        .args(["-sn", "uac", "-s", user, "-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args(["-m", "1", "-timeout", "30", "-timeout_error", "-nostdin"])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sipp uac");
    assert!(
        out.status.success(),
        "sipp uac to {user}: {}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn wait_ok(mut c: Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            assert!(s.success(), "{what}: sipp exited {s}");
            return;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("{what}: sipp did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn forking_rings_both_phones_and_cancels_the_one_that_did_not_answer() {
    let app = Appliance::start("fork", Some((25_000, 25_099)), "");
    let ringing = free_udp_port();
    let answering = free_udp_port();
    for (i, p) in [ringing, answering].into_iter().enumerate() {
        assert_eq!(
            register_by_hand(
                app.port,
                "bob",
                "bob-pw-2",
                &format!("fork-reg-{i}"),
                &format!("sip:bob@127.0.0.1:{p}")
            ),
            200
        );
    }
    let a = sipp_uas(ringing, Some("uas_ring_cancel.xml"));
    let b = sipp_uas(answering, None);
    std::thread::sleep(Duration::from_millis(300));
    sipp_call(app.port, "bob");
    wait_ok(b, "answering phone");
    wait_ok(
        a,
        "ringing phone (must receive CANCEL, answer 487, get the ACK)",
    );
    let s = app.stop();
    assert_eq!(summary_count(&s, "calls"), 1, "{s}");
    assert_eq!(summary_count(&s, "calls_answered"), 1, "{s}");
    assert_eq!(summary_count(&s, "branches"), 2, "{s}");
    assert_eq!(summary_count(&s, "cancels_sent"), 1, "{s}");
    assert_eq!(summary_count(&s, "calls_ended"), 1, "{s}");
    assert_eq!(summary_count(&s, "media_errors"), 0, "{s}");
}

#[test]
fn serial_failover_passes_a_silent_and_a_503_gateway() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap(); // bound: no ICMP, no answer
    let busy = free_udp_port();
    let live = free_udp_port();
    let extra = format!(
        "[proxy]\nauth = \"none\"\nfailover_timeout_ms = 700\n\
         [[gateway]]\nname = \"silent\"\naddress = \"{}\"\n\
         [[gateway]]\nname = \"busy\"\naddress = \"127.0.0.1:{busy}\"\n\
         [[gateway]]\nname = \"live\"\naddress = \"127.0.0.1:{live}\"\n\
         [[route]]\nprefix = \"9\"\ngateways = [\"silent\", \"busy\", \"live\"]\nstrip = 1\n",
        silent.local_addr().unwrap()
    );
    let app = Appliance::start("failover", None, &extra);
    let b = sipp_uas(busy, Some("uas_503.xml"));
    let l = sipp_uas(live, None);
    std::thread::sleep(Duration::from_millis(300));
    sipp_call(app.port, "90015550123");
    wait_ok(b, "503 gateway (must get the ACK)");
    wait_ok(l, "live gateway");
    // The silent gateway heard the INVITE and its retransmission, with the translated number.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut invites = 0;
    while let Ok(n) = silent.recv(&mut buf) {
        let m = sip::Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.request_uri().unwrap().user, Some(&b"0015550123"[..]));
        invites += 1;
    }
    assert!(
        invites >= 2,
        "INVITE and at least one retransmission, got {invites}"
    );
    let s = app.stop();
    assert_eq!(summary_count(&s, "calls_answered"), 1, "{s}");
    assert_eq!(summary_count(&s, "failovers"), 2, "{s}");
    assert_eq!(summary_count(&s, "branch_timeouts"), 1, "{s}");
    assert_eq!(summary_count(&s, "branches"), 3, "{s}");
}

/// An INVITE by hand to `user`; the first final status.
fn invite_status(app_port: u16, sock: &UdpSocket, user: &str, call_id: &str) -> u16 {
    let local = sock.local_addr().unwrap();
    let req = format!(
        "INVITE sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=h1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), ("127.0.0.1", app_port))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("a final response");
        let m = sip::Message::parse(&buf[..n]).unwrap();
        match m.status() {
            Some(s) if s >= 200 => {
                let ack = format!(
                    "ACK sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}\r\n\
                     Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=h1\r\nTo: <sip:{user}@127.0.0.1>;tag={}\r\n\
                     Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    String::from_utf8_lossy(m.to_tag().unwrap_or_default())
                );
                sock.send_to(ack.as_bytes(), ("127.0.0.1", app_port))
                    .unwrap();
                return s;
            }
            _ => {}
        }
    }
}

/// A feature server on `sock`: while `alive`, answers OPTIONS 200 and INVITE 486; counts the
/// INVITEs it saw.
fn feature_server(
    sock: UdpSocket,
    alive: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut invites = 0;
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if !alive.load(Ordering::Relaxed) {
                continue;
            }
            let m = sip::Message::parse(&buf[..n]).unwrap();
            let code = match m.method() {
                Some(sip::Method::Options) => 200,
                Some(sip::Method::Invite) => {
                    invites += 1;
                    486
                }
                _ => continue,
            };
            let mut out = Vec::new();
            sip::edit::ResponseBuilder::new(&m, code, b"X")
                .to_tag(b"fs1")
                .write(&mut out);
            sock.send_to(&out, from).unwrap();
        }
        invites
    })
}

#[test]
fn probing_disables_a_dead_gateway_and_enables_it_when_it_answers() {
    let fs = UdpSocket::bind("127.0.0.1:0").unwrap();
    let extra = format!(
        "[proxy]\nauth = \"none\"\nprobe_interval_ms = 200\nprobe_threshold = 2\n\
         [[gateway]]\nname = \"fs1\"\naddress = \"{}\"\nprobe = true\n\
         [[dispatcher]]\nname = \"features\"\ngateways = [\"fs1\"]\n\
         [[route]]\nprefix = \"*\"\ndispatcher = \"features\"\n",
        fs.local_addr().unwrap()
    );
    let alive = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let server = feature_server(fs, Arc::clone(&alive), Arc::clone(&stop));
    let app = Appliance::start("probe", None, &extra);
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Silent for > 2 probe intervals: disabled, calls get 503 here.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let s = invite_status(app.port, &caller, "*97", &format!("probe-down-{n}"));
        if s == 503 {
            break;
        }
        assert_eq!(s, 408, "before it is disabled the call times out");
        assert!(Instant::now() < deadline, "never disabled");
    }
    // It answers again: enabled within a probe interval or two, calls reach it.
    alive.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        n += 1;
        let s = invite_status(app.port, &caller, "*97", &format!("probe-up-{n}"));
        if s == 486 {
            break;
        }
        assert_eq!(s, 503);
        assert!(Instant::now() < deadline, "never re-enabled");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(server.join().unwrap() >= 1);
    let s = app.stop();
    assert_eq!(summary_count(&s, "gateways_down"), 1, "{s}");
    assert_eq!(summary_count(&s, "gateways_up"), 1, "{s}");
    assert!(summary_count(&s, "probes_sent") >= 3, "{s}");
}

/// sipp's UAC through the 407 challenge (`uac_auth.xml`) to `number`; whether it completed.
fn sipp_auth_call(app_port: u16, number: &str, user: &str, password: &str) -> bool {
    Command::new("sipp")
        .arg(format!("127.0.0.1:{app_port}"))
        .arg("-sf")
        .arg(repo().join("tests/sipp/uac_auth.xml"))
        .args([
            "-s", number, "-au", user, "-ap", password, "-key", "user", user,
        ])
        // The digest uri is the Request-URI (sipp's default omits the user part).
        .arg("-auth_uri")
        .arg(format!("{number}@127.0.0.1:{app_port}"))
        .args(["-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args(["-m", "1", "-timeout", "15", "-timeout_error", "-nostdin"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp uac")
        .success()
}

#[test]
fn outbound_calls_authenticate_with_407_and_carry_the_tenant_header() {
    let fs = free_udp_port();
    let extra = format!(
        "[[gateway]]\nname = \"fs\"\naddress = \"127.0.0.1:{fs}\"\n\
         [[route]]\nprefix = \"7\"\ngateways = [\"fs\"]\n"
    );
    let app = Appliance::start("auth", Some((25_100, 25_199)), &extra);
    let uas = Command::new("sipp")
        .arg("-sf")
        .arg(repo().join("tests/sipp/uas_tenant.xml"))
        .args(["-i", "127.0.0.1", "-p"])
        .arg(fs.to_string())
        .args(["-m", "1", "-nostdin", "-timeout", "30", "-timeout_error"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    // A wrong password never reaches the gateway.
    assert!(!sipp_auth_call(app.port, "7001", "alice", "guess"));
    assert!(sipp_auth_call(app.port, "7001", "alice", "alice-pw-1"));
    wait_ok(
        uas,
        "gateway (checks X-Tenant and that credentials were consumed)",
    );
    let s = app.stop();
    assert_eq!(summary_count(&s, "call_challenges"), 2, "{s}");
    assert_eq!(summary_count(&s, "calls_answered"), 1, "{s}");
    assert_eq!(summary_count(&s, "calls_refused"), 1, "{s}");
    assert_eq!(summary_count(&s, "calls_ended"), 1, "{s}");
}

/// One HTTP/1.1 request over the API's Unix socket or TCP; status and JSON body.
fn http(
    target: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: trunkline\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut resp = Vec::new();
    match target {
        Endpoint::Unix(p) => {
            let mut s = std::os::unix::net::UnixStream::connect(p).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            s.read_to_end(&mut resp).unwrap();
        }
        Endpoint::Tcp(a) => {
            let mut s = std::net::TcpStream::connect(a).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            s.read_to_end(&mut resp).unwrap();
        }
    }
    let text = String::from_utf8(resp).unwrap();
    let status = text[9..12].parse().unwrap();
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .unwrap();
    (status, json)
}

enum Endpoint {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

#[test]
fn rest_api_changes_subscribers_registrations_and_routing_at_runtime() {
    let dir = Appliance::dir("rest");
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("api.sock");
    let tcp_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let token = "e2e-token-0123456789";
    let extra = format!(
        "[proxy]\nauth = \"none\"\n[api]\nsocket = \"{}\"\nlisten = \"127.0.0.1:{tcp_port}\"\ntoken = \"{token}\"\n",
        sock.display()
    );
    let app = Appliance::start("rest", None, &extra);
    let api = Endpoint::Unix(sock.clone());
    let (code, st) = http(&api, "GET", "/v1/status", None, None);
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["subscribers"], 2);
    // TCP needs the token.
    let tcp = Endpoint::Tcp(([127, 0, 0, 1], tcp_port).into());
    assert_eq!(http(&tcp, "GET", "/v1/status", None, None).0, 401);
    assert_eq!(
        http(
            &tcp,
            "GET",
            "/v1/status",
            None,
            Some("wrong-token-xxxxxxxx")
        )
        .0,
        401
    );
    assert_eq!(http(&tcp, "GET", "/v1/status", None, Some(token)).0, 200);

    // A new subscriber registers at once.
    let (code, r) = http(
        &api,
        "PUT",
        "/v1/tenants/route.example/subscribers/carol",
        Some(r#"{"password":"carol-pw-3"}"#),
        None,
    );
    assert_eq!(code, 201, "{r}");
    let contact_port = free_udp_port();
    assert_eq!(
        register_by_hand(
            app.port,
            "carol",
            "carol-pw-3",
            "rest-reg",
            &format!("sip:carol@127.0.0.1:{contact_port}")
        ),
        200
    );
    let (_, regs) = http(&api, "GET", "/v1/registrations", None, None);
    let carol: Vec<&serde_json::Value> = regs
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["aor"] == "carol@route.example")
        .collect();
    assert_eq!(carol.len(), 1, "{regs}");
    assert_eq!(
        carol[0]["contact"],
        format!("sip:carol@127.0.0.1:{contact_port}")
    );
    let (code, k) = http(
        &api,
        "DELETE",
        "/v1/registrations/carol%40route.example",
        None,
        None,
    );
    assert_eq!((code, k["removed"].as_u64()), (200, Some(1)), "{k}");
    assert_eq!(
        http(
            &api,
            "DELETE",
            "/v1/registrations/carol@route.example",
            None,
            None
        )
        .0,
        404
    );

    // The routing table: a bad one is refused whole, a good one routes the next call.
    let gw = UdpSocket::bind("127.0.0.1:0").unwrap();
    gw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let bad = r#"{"gateways":[],"routes":[{"prefix":"5","gateways":["nowhere"]}]}"#;
    let (code, e) = http(&api, "PUT", "/v1/routing", Some(bad), None);
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().contains("nowhere"), "{e}");
    let good = format!(
        r#"{{"gateways":[{{"name":"carrier","address":"{}"}}],
            "routes":[{{"prefix":"5","gateways":["carrier"],"strip":1,"prepend":"00"}}],
            "dids":[{{"number":"+1 555","tenant":"route.example","user":"carol"}}]}}"#,
        gw.local_addr().unwrap()
    )
    .replace("+1 555", "+1555");
    let (code, r) = http(&api, "PUT", "/v1/routing", Some(&good), None);
    assert_eq!(code, 200, "{r}");
    let (_, table) = http(&api, "GET", "/v1/routing", None, None);
    assert_eq!(table["routes"][0]["prefix"], "5");
    assert_eq!(table["dids"][0]["number"], "1555");
    let (_, gws) = http(&api, "GET", "/v1/gateways", None, None);
    assert_eq!(gws[0]["name"], "carrier");
    assert_eq!(gws[0]["up"], true);
    // A subscriber that owns a DID cannot be deleted; a tenant in use neither.
    assert_eq!(
        http(
            &api,
            "DELETE",
            "/v1/tenants/route.example/subscribers/carol",
            None,
            None
        )
        .0,
        409
    );
    assert_eq!(
        http(&api, "DELETE", "/v1/tenants/route.example", None, None).0,
        409
    );

    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = caller.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:5123@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-rest1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=r1\r\nTo: <sip:5123@127.0.0.1>\r\n\
         Call-ID: rest-call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    caller
        .send_to(invite.as_bytes(), ("127.0.0.1", app.port))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = gw.recv(&mut buf).unwrap();
    let m = sip::Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.request_uri().unwrap().user, Some(&b"00123"[..]));
    let (code, _) = http(&api, "GET", "/v1/nothing", None, None);
    assert_eq!(code, 404);
    let s = app.stop();
    assert!(!sock.exists(), "the socket is removed at stop");
    assert_eq!(summary_count(&s, "branches"), 1, "{s}");

    // The changes were saved: a restart keeps carol and the routing table...
    let app = Appliance::start("rest", None, &extra);
    let (_, t) = http(&api, "GET", "/v1/tenants", None, None);
    assert_eq!(
        t[0]["subscribers"],
        serde_json::json!(["alice", "bob", "carol"]),
        "{t}"
    );
    let (_, table) = http(&api, "GET", "/v1/routing", None, None);
    assert_eq!(table["routes"][0]["prefix"], "5", "{table}");
    assert_eq!(
        register_by_hand(
            app.port,
            "carol",
            "carol-pw-3",
            "rest-reg2",
            "sip:carol@127.0.0.1:5099"
        ),
        200
    );
    // ...until the saved changes are forgotten: the next start reads the file alone.
    let (code, c) = http(&api, "DELETE", "/v1/overrides", None, None);
    assert_eq!((code, c["cleared"].as_u64()), (200, Some(2)), "{c}");
    app.stop();
    let app = Appliance::start("rest", None, &extra);
    let (_, t) = http(&api, "GET", "/v1/tenants", None, None);
    assert_eq!(
        t[0]["subscribers"],
        serde_json::json!(["alice", "bob"]),
        "{t}"
    );
    let (_, table) = http(&api, "GET", "/v1/routing", None, None);
    assert_eq!(table["routes"], serde_json::json!([]), "{table}");
    app.stop();
}

#[test]
fn a_call_whose_media_stops_is_ended_with_bye_to_both_parties() {
    let app = Appliance::start(
        "mediadies",
        Some((25_200, 25_299)),
        "[proxy]\nmedia_timeout_s = 1\n",
    );
    let callee = free_udp_port();
    assert_eq!(
        register_by_hand(
            app.port,
            "bob",
            "bob-pw-2",
            "md-reg",
            &format!("sip:bob@127.0.0.1:{callee}")
        ),
        200
    );
    // sipp's own UAS answers and then waits for a BYE (which only the proxy will send).
    let uas = Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p"])
        .arg(callee.to_string())
        .args(["-m", "1", "-nostdin", "-timeout", "30", "-timeout_error"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let uac = Command::new("sipp")
        .arg(format!("127.0.0.1:{}", app.port))
        .arg("-sf")
        .arg(repo().join("tests/sipp/uac_media_dies.xml"))
        .args(["-s", "bob", "-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args(["-m", "1", "-timeout", "30", "-timeout_error", "-nostdin"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp uac");
    assert!(uac.success(), "the caller got no BYE");
    wait_ok(uas, "callee (must get a BYE)");
    assert!(started.elapsed() < Duration::from_secs(15));
    let s = app.stop();
    assert_eq!(summary_count(&s, "media_timeouts"), 1, "{s}");
    assert_eq!(summary_count(&s, "calls_ended"), 1, "{s}");
    assert_eq!(
        summary_count(&s, "stray"),
        0,
        "the BYEs' 200s are ours: {s}"
    );
}
