//! SIP and media end to end across network namespaces: `trunkline up` in an appliance
//! namespace between a caller namespace and a callee namespace (veth pairs, no shared
//! loopback). sipp registers the callee with digest auth, sipp's UAC calls it and plays
//! RTP (sipp's rtp_stream), the callee's sipp echoes it (`-rtp_echo`), and the audio must
//! cross the dataplane both ways.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{binaries, can_run_netns, route, veth, Netns, Proc};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs sipp inside `ns` to completion (bounded); true when it succeeded.
fn sipp_in(ns: &Netns, args: &[String], dir: &Path) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg("sipp")
        .args(args)
        .args(["-nostdin", "-timeout", "30", "-timeout_error"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn sipp_registers_and_calls_across_namespaces_with_rtp_through_the_dataplane() {
    if !can_run_netns("sipp_registers_and_calls_across_namespaces") {
        return;
    }
    let bins = binaries(&["trunkline"]);
    let id = format!("{}s", std::process::id() % 10000);
    let net = 200 + (std::process::id() % 25) as u8;
    let caller = Netns::new(&format!("tl{id}c")).unwrap();
    let callee = Netns::new(&format!("tl{id}e")).unwrap();
    let app = Netns::new(&format!("tl{id}a")).unwrap();
    veth(
        &caller,
        &format!("tl{id}c0"),
        &format!("10.{net}.1.2/24"),
        &app,
        &format!("tl{id}a0"),
        &format!("10.{net}.1.1/24"),
    )
    .unwrap();
    veth(
        &callee,
        &format!("tl{id}e0"),
        &format!("10.{net}.2.2/24"),
        &app,
        &format!("tl{id}b0"),
        &format!("10.{net}.2.1/24"),
    )
    .unwrap();
    // The appliance's SIP and media address is on the caller's side; the callee reaches it
    // through the appliance's other leg.
    let sip_ip = format!("10.{net}.1.1");
    route(
        &callee,
        &format!("10.{net}.1.0/24"),
        &format!("10.{net}.2.1"),
    )
    .unwrap();

    let dir = std::env::temp_dir().join(format!("trunkline-sipnetns-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("trunkline.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sip.listener]]\ntransport = \"udp\"\naddress = \"{sip_ip}\"\nport = 5060\n\
             [media]\naddress = \"{sip_ip}\"\nport_min = 41800\nport_max = 41899\ncores = 1\n\
             region = \"trunkline-sipnetns-{id}\"\nruntime_dir = \"{d}\"\n\
             [store]\npath = \"{d}/trunkline.db\"\n\
             [[tenant]]\ndomain = \"netns.example\"\naliases = [\"{sip_ip}\"]\n\
             [[tenant.subscriber]]\nuser = \"bob\"\npassword = \"bob-netns-pw\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let args = vec![
        "up".to_string(),
        "--config".into(),
        cfg.display().to_string(),
    ];
    let (mut up, _) = Proc::start(
        "trunkline up",
        Some(&app),
        &bins[0],
        &args,
        Duration::from_secs(20),
    )
    .unwrap();

    // The callee registers its sipp UAS's address with digest auth.
    let callee_ip = format!("10.{net}.2.2");
    assert!(
        sipp_in(
            &callee,
            &[
                s(&[&format!("{sip_ip}:5060"), "-sf"]),
                vec![repo()
                    .join("perf/sipp/register_contact.xml")
                    .display()
                    .to_string()],
                s(&[
                    "-s",
                    "bob",
                    "-au",
                    "bob",
                    "-ap",
                    "bob-netns-pw",
                    "-key",
                    "contact",
                    &format!("{callee_ip}:5080"),
                    "-i",
                    &callee_ip,
                    "-p",
                    "5081",
                    "-m",
                    "1",
                ]),
            ]
            .concat(),
            &dir,
        ),
        "REGISTER with digest from the callee namespace"
    );
    // The callee answers and echoes RTP.
    let uas = Command::new("nsenter")
        .arg(format!("--net={}", callee.path().display()))
        .args([
            "sipp",
            "-sn",
            "uas",
            "-rtp_echo",
            "-i",
            &callee_ip,
            "-p",
            "5080",
            "-m",
            "1",
        ])
        .args(["-nostdin", "-timeout", "30", "-timeout_error"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut uas = KillOnDrop(uas);
    std::thread::sleep(Duration::from_millis(300));
    // 2 s of PCMU silence (0xFF), 160 bytes per 20 ms packet.
    let audio = dir.join("silence.pcmu");
    std::fs::write(&audio, vec![0xFFu8; 16_000]).unwrap();
    let scenario = dir.join("uac_rtp.xml");
    std::fs::write(
        &scenario,
        std::fs::read_to_string(repo().join("tests/sipp/uac_rtp.xml"))
            .unwrap()
            .replace("[audio]", &audio.display().to_string()),
    )
    .unwrap();
    let caller_ip = format!("10.{net}.1.2");
    assert!(
        sipp_in(
            &caller,
            &s(&[
                &format!("{sip_ip}:5060"),
                "-sf",
                &scenario.display().to_string(),
                "-s",
                "bob",
                "-i",
                &caller_ip,
                "-p",
                "5070",
                "-m",
                "1",
            ]),
            &dir,
        ),
        "the call from the caller namespace"
    );
    let st = uas.0.wait().unwrap();
    assert!(st.success(), "callee sipp: {st}");

    up.signal(libc::SIGTERM);
    assert!(up
        .wait(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    let err = up.stderr();
    let relayed: u64 = err
        .lines()
        .filter_map(|l| l.split("relayed rtp ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    // 100 packets out, up to 100 echoed back: most of both must have crossed the relay.
    assert!(relayed >= 150, "relayed rtp {relayed}; stderr:\n{err}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
