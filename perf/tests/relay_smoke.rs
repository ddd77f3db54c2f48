//! The relay benchmark's machinery against the real relays, at a load any machine carries:
//! Trunkline's dataplane (io_uring and epoll) and rtpengine each relay 20 calls for a second
//! with nothing lost, and every figure the benchmark prints is filled in. The capacity search
//! itself is `trunkbench relay` (perf/README.md), not a test.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use trunkbench::bench::{step, Step, StepConfig};
use trunkbench::targets::{Backend, Relay, Rtpengine, Trunkline};

fn cfg() -> StepConfig {
    StepConfig {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        seconds: 1.0,
        gen_threads: 1,
        gen_cpus: Vec::new(),
    }
}

/// Relay ports lie below the ephemeral range (32768–60999) so that no port-0 socket of a test
/// running alongside takes one.
fn relay_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get) - 1
}

fn run_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trunkbench-smoke-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check(s: &Step, relay_measures_latency: bool) {
    eprintln!("{s}");
    assert_eq!(s.calls, 20);
    assert_eq!(s.sent, 20 * 2 * 50, "50 packets per stream in one second");
    assert_eq!(s.received, s.sent, "nothing lost at 2,000 pps: {s}");
    assert_eq!(s.loss_pct, 0.0);
    assert_eq!(s.duplicates, 0);
    assert_eq!(s.send_failures, 0);
    assert!(s.latency_ns[0] > 0 && s.latency_ns[0] <= s.latency_ns[1]);
    assert!(s.latency_ns[1] <= s.latency_ns[2] && s.latency_ns[2] <= s.latency_ns[3]);
    assert!(s.cpu_us_per_packet >= 0.0);
    assert_eq!(s.internal_ns.is_some(), relay_measures_latency);
    if let Some(l) = s.internal_ns {
        assert!(
            l[0] > 0 && l[0] <= l[1] && l[1] <= l[2],
            "relay latency {l:?}"
        );
    }
}

fn trunkline(backend: Backend, ports: (u16, u16), name: &str) {
    let bins = e2e::binaries(&["trunkline-dataplane", "trunkline-controlplane"]);
    let bin_dir = bins[0].parent().unwrap().to_path_buf();
    let mut t = Trunkline::start(
        &bin_dir,
        backend,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports,
        relay_cpu(),
        &[],
        &run_dir(name),
    )
    .unwrap();
    assert_eq!(t.name(), name);
    let s = step(&mut t, 20, &cfg()).unwrap();
    check(&s, true);
    // Sessions were deleted: a second step starts from an empty table.
    let s = step(&mut t, 20, &cfg()).unwrap();
    check(&s, true);
}

#[test]
fn trunkline_io_uring_relays_a_small_load() {
    trunkline(Backend::Uring, (30_000, 30_199), "trunkline-uring");
}

#[test]
fn trunkline_epoll_relays_a_small_load() {
    trunkline(Backend::Mio, (30_200, 30_399), "trunkline-mio");
}

#[test]
fn rtpengine_relays_a_small_load() {
    let installed = ["/usr/bin/rtpengine", "/usr/sbin/rtpengine"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if !installed {
        // tests/run.sh installs rtpengine-daemon: in CI its absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "rtpengine not installed in CI"
        );
        eprintln!("SKIP: rtpengine not installed (apt-get install rtpengine-daemon)");
        return;
    }
    let mut r = Rtpengine::start(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        22_299,
        (30_400, 30_599),
        relay_cpu(),
        &run_dir("rtpengine"),
    )
    .unwrap();
    let s = step(&mut r, 20, &cfg()).unwrap();
    check(&s, false);
}
