//! `trunkline up` as a process, driven by a real peer (sipp) and by the RFC 4475 torture
//! messages over real UDP sockets on loopback.
#![allow(clippy::unwrap_used)] // reason: test helpers panic with context, like the tests.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Appliance {
    child: Child,
    port: u16,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Appliance {
    fn start() -> Appliance {
        let dir = std::env::temp_dir().join(format!("trunkline-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("trunkline.toml");
        std::fs::write(
            &cfg,
            "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 0\n",
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
    let app = Appliance::start();
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
    let app = Appliance::start();
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
