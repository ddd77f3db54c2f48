//! `trunkbench` — see `trunkbench --help` and perf/README.md.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use trunkbench::bench::{self, Limit, Outcome, StepConfig};
use trunkbench::targets::{Backend, Relay, Rtpengine, Trunkline};

#[derive(Debug, Parser)]
#[command(
    name = "trunkbench",
    version,
    about = "Trunkline load benchmark (anchors run in the same run)"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Paced G.711 RTP through each relay, stepping up the number of calls until the loss
    /// limit is crossed; prints streams/core, packets/s/core, latency and the ratio to
    /// rtpengine.
    Relay(RelayArgs),
}

#[derive(Debug, clap::Args)]
struct RelayArgs {
    /// Relays to measure, in order: trunkline-uring, trunkline-mio, rtpengine.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "trunkline-uring,trunkline-mio,rtpengine"
    )]
    targets: Vec<String>,
    /// Explicit call counts to step through (instead of the ladder below).
    #[arg(long, value_delimiter = ',')]
    calls: Vec<usize>,
    /// Ladder: first step's calls.
    #[arg(long, default_value_t = 500)]
    start: usize,
    /// Ladder: growth per step.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Ladder: most calls (each call takes four relay ports: RTP and RTCP per leg).
    #[arg(long, default_value_t = 4000)]
    max_calls: usize,
    /// First relay media port (both relays use the same range, one after the other).
    #[arg(long, default_value_t = 14_000)]
    port_min: u16,
    /// Last relay media port. Trunkline opens every port of its range at start-up: the range
    /// must fit RLIMIT_NOFILE.
    #[arg(long, default_value_t = 29_999)]
    port_max: u16,
    /// Sending time per step, seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Loss limit of a passing step, percent.
    #[arg(long, default_value_t = 0.01)]
    loss_limit: f64,
    /// CPU the relay runs on (the dataplane's one core; rtpengine via taskset).
    #[arg(long, default_value_t = 1)]
    relay_cpu: usize,
    /// CPUs for the generator and the control plane (default: every CPU but the relay's).
    #[arg(long, value_delimiter = ',')]
    gen_cpus: Vec<usize>,
    /// Generator threads (default: one per generator CPU).
    #[arg(long)]
    gen_threads: Option<usize>,
    /// Address for endpoints and relays.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Where trunkline-dataplane and trunkline-controlplane are (default: next to trunkbench).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Directory for the relays' logs and sockets (default: a new one under /tmp).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Print one JSON object per step and a summary object, instead of text.
    #[arg(long)]
    json: bool,
}

fn main() {
    let args = Args::parse();
    let r = match args.cmd {
        Cmd::Relay(a) => relay(a),
    };
    if let Err(e) = r {
        eprintln!("trunkbench: {e}");
        std::process::exit(1);
    }
}

fn cpus_online() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn relay(a: RelayArgs) -> Result<(), String> {
    raise_nofile(65_536);
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))
        .map_err(|e| format!("SIGINT handler: {e}"))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let n = cpus_online();
    let gen_cpus = if a.gen_cpus.is_empty() {
        (0..n).filter(|&c| c != a.relay_cpu).collect::<Vec<_>>()
    } else {
        a.gen_cpus.clone()
    };
    let cfg = StepConfig {
        ip: a.ip,
        seconds: a.seconds,
        gen_threads: a.gen_threads.unwrap_or(gen_cpus.len().max(1)),
        gen_cpus: gen_cpus.clone(),
    };
    let ladder = if a.calls.is_empty() {
        bench::ladder(a.start, a.factor, a.max_calls)
    } else {
        let mut c = a.calls.clone();
        c.sort_unstable();
        c
    };
    let bin_dir = match &a.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .ok_or("cannot tell where trunkbench lives; pass --bin-dir")?,
    };
    let run_dir = match &a.run_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("trunkbench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let ports = (a.port_min, a.port_max);
    if !a.json {
        println!(
            "trunkbench relay: {} CPU(s); relay on CPU {}, generator ({} thread(s)) and control \
             plane on CPUs {:?}; {} s per step, 20 ms G.711 (50 pps per stream), loss limit {}%; \
             logs in {}",
            n,
            a.relay_cpu,
            cfg.gen_threads,
            gen_cpus,
            a.seconds,
            a.loss_limit,
            run_dir.display()
        );
    }
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    for t in &a.targets {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut relay: Box<dyn Relay> = match t.as_str() {
            "trunkline-uring" | "trunkline-mio" => {
                let backend = if t.ends_with("uring") {
                    Backend::Uring
                } else {
                    Backend::Mio
                };
                Box::new(
                    Trunkline::start(
                        &bin_dir,
                        backend,
                        a.ip,
                        ports,
                        a.relay_cpu,
                        &gen_cpus,
                        &run_dir,
                    )
                    .map_err(|e| format!("{t}: {e}"))?,
                )
            }
            "rtpengine" => Box::new(
                Rtpengine::start(a.ip, 22_222, ports, a.relay_cpu, &run_dir)
                    .map_err(|e| format!("{t}: {e}"))?,
            ),
            other => return Err(format!("unknown target {other:?}")),
        };
        let json_mode = a.json;
        let stop_now = || stop.load(Ordering::Relaxed);
        let out = bench::search(
            relay.as_mut(),
            &ladder,
            &cfg,
            a.loss_limit,
            &stop_now,
            &mut |s| {
                if json_mode {
                    println!("{}", s.json());
                } else {
                    println!("  {s}");
                }
            },
        )
        .map_err(|e| format!("{t}: {e}"))?;
        drop(relay);
        outcomes.push((t.clone(), out));
    }
    summary(&outcomes, a.json);
    Ok(())
}

fn summary(outcomes: &[(String, Outcome)], json_mode: bool) {
    let anchor = outcomes
        .iter()
        .find(|(n, _)| n == "rtpengine")
        .and_then(|(_, o)| o.best().cloned());
    if !json_mode {
        println!();
        println!(
            "{:<16} {:>13} {:>12} {:>22} {:>10} {:>14}  vs rtpengine",
            "relay (1 core)",
            "streams/core",
            "pkts/s/core",
            "e2e p50/p99/p99.9 µs",
            "µs/pkt",
            "proj. streams",
        );
    }
    for (name, o) in outcomes {
        let Some(b) = o.best() else {
            if json_mode {
                println!(
                    "{}",
                    json!({"bench": "relay", "target": name, "best": null, "limit": format!("{:?}", o.limit)})
                );
            } else {
                println!("{name:<16} no step passed ({:?})", o.limit);
            }
            continue;
        };
        let bound = match o.limit {
            Limit::Generator | Limit::MaxCalls | Limit::Stopped => "≥",
            Limit::Loss => "",
        };
        // Measured streams ratio; and CPU per packet at equal load: the anchor's best step
        // against this relay's step with the same calls (CPU per packet falls with load as
        // batches grow, so comparing different loads would flatter the busier relay).
        let ratio = anchor.as_ref().map(|r| {
            let same = o
                .steps
                .iter()
                .find(|s| s.calls == r.calls && s.passed(f64::INFINITY))
                .map_or(f64::NAN, |s| {
                    r.cpu_us_per_packet / s.cpu_us_per_packet.max(1e-9)
                });
            (b.streams() as f64 / r.streams() as f64, same)
        });
        let pps_core = b.relayed_pps;
        if json_mode {
            println!(
                "{}",
                json!({
                    "bench": "relay",
                    "target": name,
                    "streams_per_core": b.streams(),
                    "lower_bound": !bound.is_empty(),
                    "limit": format!("{:?}", o.limit),
                    "pps_per_core": pps_core.round(),
                    "latency_ns": {"p50": b.latency_ns[0], "p99": b.latency_ns[1], "p999": b.latency_ns[2]},
                    "internal_latency_ns": b.internal_ns.map(|l| json!({"p50": l[0], "p99": l[1], "p999": l[2]})),
                    "cpu_us_per_packet": b.cpu_us_per_packet,
                    "projected_streams_per_core": b.projected_streams_per_core().round(),
                    "ratio_streams": ratio.map(|r| r.0),
                    "ratio_cpu_per_packet_equal_load": ratio.map(|r| r.1),
                })
            );
        } else {
            println!(
                "{:<16} {:>13} {:>12.0} {:>22} {:>10.2} {:>14.0}  {}",
                name,
                format!("{bound}{}", b.streams()),
                pps_core,
                format!(
                    "{:.0}/{:.0}/{:.0}",
                    b.latency_ns[0] as f64 / 1e3,
                    b.latency_ns[1] as f64 / 1e3,
                    b.latency_ns[2] as f64 / 1e3
                ),
                b.cpu_us_per_packet,
                b.projected_streams_per_core(),
                ratio.map_or("-".into(), |r| format!(
                    "{:.2}× streams, {:.2}× less CPU/pkt at {} calls",
                    r.0,
                    r.1,
                    anchor.as_ref().map_or(0, |a| a.calls)
                )),
            );
        }
    }
    if !json_mode {
        println!(
            "\nstreams/core: most streams at which loss stayed under the limit (≥: the relay \
             passed every step the generator could drive — a lower bound). proj. streams: one \
             fully busy core at the measured CPU per packet (relay process CPU ÷ packets \
             relayed). vs rtpengine: ratio of measured streams, and rtpengine's CPU per packet \
             over this relay's at the same load (rtpengine's best step)."
        );
    }
}

fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur >= want {
        return;
    }
    let new = libc::rlimit {
        rlim_cur: want.max(lim.rlim_cur),
        rlim_max: want.max(lim.rlim_max),
    };
    // SAFETY: `new` is a valid rlimit; failure (no privilege) leaves the old limit.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) };
    if rc != 0 {
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft)
        };
    }
}
