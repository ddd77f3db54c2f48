//! `trunkbench` — see `trunkbench --help` and perf/README.md.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use trunkbench::bench::{self, Limit, Outcome, StepConfig};
use trunkbench::sipbench::{self, Callee, Mode, ProxyTarget, SipConfig, SipLimit, SipOutcome};
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
    /// SIP calls (INVITE/180/200/ACK/BYE) and digest-authenticated REGISTERs driven by sipp
    /// at rising rates through Trunkline and Kamailio (stateful, record-routing) on the same
    /// CPU; prints the highest rate each sustains under the failure limit, latency, proxy CPU
    /// per call and the ratio.
    Sip(SipArgs),
}

#[derive(Debug, clap::Args)]
struct SipArgs {
    /// Proxies to measure, in order: trunkline, kamailio.
    #[arg(long, value_delimiter = ',', default_value = "trunkline,kamailio")]
    targets: Vec<String>,
    /// calls, register or both.
    #[arg(long, default_value = "both")]
    mode: String,
    /// Explicit rates (per second) to step through, for every mode (instead of the ladder).
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Ladder: first rate (calls or registrations per second).
    #[arg(long, default_value_t = 200.0)]
    start: f64,
    /// Ladder: growth per step.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Ladder: highest rate.
    #[arg(long, default_value_t = 30_000.0)]
    max_rate: f64,
    /// Seconds of offered load per step (the step sends rate × seconds calls).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// How long each call stays up between ACK and BYE, ms.
    #[arg(long, default_value_t = 500)]
    hold_ms: u64,
    /// Failure limit of a passing step, percent of the calls started.
    #[arg(long, default_value_t = 0.1)]
    fail_limit: f64,
    /// Registering subscribers (user0000…, password "<user>-secret").
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Upper bound of the whole run, seconds (steps that would not fit are not started).
    #[arg(long, default_value_t = 1800.0)]
    max_duration: f64,
    /// CPU the proxy runs on (Trunkline's whole process; Kamailio and its timer processes).
    #[arg(long, default_value_t = 1)]
    proxy_cpu: usize,
    /// CPUs for sipp: the caller on the first, the callee on the second (or the first too).
    /// Default: every CPU but the proxy's.
    #[arg(long, value_delimiter = ',')]
    load_cpus: Vec<usize>,
    /// sipp CPU share of one load core above which sipp counts as saturated.
    #[arg(long, default_value_t = 0.9)]
    sipp_saturated: f64,
    /// Loopback address for proxies and sipp.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Ports: proxy base+60 (Trunkline) / +61 (Kamailio), sipp base+100…103 (below 32768).
    #[arg(long, default_value_t = 26_000)]
    port_base: u16,
    /// The trunkline binary (default: next to trunkbench).
    #[arg(long)]
    trunkline: Option<PathBuf>,
    /// The kamailio binary (default: /usr/sbin/kamailio).
    #[arg(long)]
    kamailio: Option<PathBuf>,
    /// Kamailio's memory allocator, shared and private (-x/-X): fm (fast), tlsf, qm, or
    /// "default" for the build's default (Debian's qm with memory debugging costs Kamailio
    /// ≈ 2.4× the CPU per call of fm: fm gives the anchor its best showing).
    #[arg(long, default_value = "fm")]
    kamailio_allocator: String,
    /// Directory for configs, logs and sipp traces (default: a new one under /tmp).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Print one JSON object per step and per summary line, instead of text.
    #[arg(long)]
    json: bool,
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
        Cmd::Sip(a) => sip(a),
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

fn sip(a: SipArgs) -> Result<(), String> {
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs_f64(a.max_duration.max(1.0));
    if !a.ip.is_loopback() {
        return Err(format!(
            "--ip {}: the SIP benchmark runs on loopback only",
            a.ip
        ));
    }
    if a.port_base == 0 || u32::from(a.port_base) + 103 >= 32_768 {
        return Err("--port-base: the ports base..base+103 must lie below 32768".into());
    }
    let modes = match a.mode.as_str() {
        "calls" => vec![Mode::Calls],
        "register" => vec![Mode::Register],
        "both" => vec![Mode::Calls, Mode::Register],
        m => return Err(format!("--mode {m:?}: calls, register or both")),
    };
    for t in &a.targets {
        if t != "trunkline" && t != "kamailio" {
            return Err(format!("unknown target {t:?} (trunkline, kamailio)"));
        }
    }
    raise_nofile(65_536);
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))
        .map_err(|e| format!("SIGINT handler: {e}"))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let n = cpus_online();
    if a.proxy_cpu >= n {
        return Err(format!(
            "--proxy-cpu {}: this machine has CPUs 0..{}",
            a.proxy_cpu,
            n - 1
        ));
    }
    let load_cpus = if a.load_cpus.is_empty() {
        (0..n).filter(|&c| c != a.proxy_cpu).collect::<Vec<_>>()
    } else {
        a.load_cpus.clone()
    };
    let rates = if a.rates.is_empty() {
        sipbench::rate_ladder(a.start, a.factor, a.max_rate)
    } else {
        let mut r: Vec<f64> = a.rates.iter().copied().filter(|r| *r > 0.0).collect();
        r.sort_by(f64::total_cmp);
        r
    };
    let run_dir = match &a.run_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("trunkbench-sip-{}", std::process::id())),
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let cfg = SipConfig {
        ip: a.ip,
        port_base: a.port_base,
        proxy_cpu: a.proxy_cpu,
        load_cpus: load_cpus.clone(),
        seconds: a.seconds,
        hold_ms: a.hold_ms,
        users: a.users.max(1),
        fail_limit_pct: a.fail_limit,
        run_dir: run_dir.clone(),
        sipp_saturated: a.sipp_saturated,
        kamailio_allocator: (a.kamailio_allocator != "default")
            .then(|| a.kamailio_allocator.clone()),
    };
    sipbench::write_scenarios(&cfg).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let trunkline_bin = match &a.trunkline {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("trunkline")))
            .ok_or("cannot tell where trunkbench lives; pass --trunkline")?,
    };
    if !a.json {
        println!(
            "trunkbench sip: {} CPU(s); proxy on CPU {}, sipp on CPUs {:?} (caller on {}, \
             callee on {}); rates {:?}/s, {} s per step, calls held {} ms, {} subscribers, \
             failure limit {}%, kamailio allocator {}; logs in {}",
            n,
            a.proxy_cpu,
            load_cpus,
            load_cpus.first().map_or("any".into(), ToString::to_string),
            load_cpus
                .get(1)
                .or(load_cpus.first())
                .map_or("any".into(), ToString::to_string),
            rates,
            a.seconds,
            a.hold_ms,
            cfg.users,
            a.fail_limit,
            a.kamailio_allocator,
            run_dir.display()
        );
    }
    let mut outcomes: Vec<SipOutcome> = Vec::new();
    for t in &a.targets {
        for &m in &modes {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            // A fresh proxy per ladder: the transactions and retransmissions left by the
            // last, overloaded step of one ladder must not load the next one.
            let proxy = match t.as_str() {
                "trunkline" => ProxyTarget::trunkline(&trunkline_bin, &cfg),
                _ => {
                    let bin = a
                        .kamailio
                        .clone()
                        .or_else(sipbench::kamailio_bin)
                        .ok_or("kamailio not installed (apt-get install kamailio)")?;
                    let modules =
                        sipbench::kamailio_modules().ok_or("kamailio modules (tm.so) not found")?;
                    ProxyTarget::kamailio(&bin, &modules, &cfg)
                }
            }
            .map_err(|e| format!("{t}: {e}"))?;
            let callee = if m == Mode::Calls {
                Some(Callee::start(&cfg, &proxy).map_err(|e| format!("{t}: {e}"))?)
            } else {
                None
            };
            let json_mode = a.json;
            let stop_now = || stop.load(Ordering::Relaxed);
            let out = sipbench::ladder(
                &cfg,
                &proxy,
                callee.as_ref(),
                m,
                &rates,
                deadline,
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
            outcomes.push(out);
            // Every process killed by pid: the callee, then the proxy.
            drop(callee);
            drop(proxy);
        }
    }
    sip_summary(&outcomes, a.json);
    if !a.json {
        println!("total {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

fn sip_summary(outcomes: &[SipOutcome], json_mode: bool) {
    for mode in [Mode::Calls, Mode::Register] {
        let rows: Vec<&SipOutcome> = outcomes.iter().filter(|o| o.mode == mode).collect();
        if rows.is_empty() {
            continue;
        }
        let anchor = rows
            .iter()
            .find(|o| o.target == "kamailio")
            .and_then(|o| o.best().cloned());
        let [la, lb] = mode.latency_names();
        if !json_mode {
            println!();
            println!("{} — one proxy core:", mode.name());
            println!(
                "{:<9} {:>10} {:>24} {:>24} {:>11} {:>12}  vs kamailio",
                "target",
                "rate/s",
                format!("{la} p50/p99/p99.9 ms"),
                format!("{lb} ms"),
                "µs CPU/call",
                "proj. /s/core",
            );
        }
        for o in &rows {
            let Some(b) = o.best() else {
                if json_mode {
                    println!(
                        "{}",
                        json!({"bench": "sip", "mode": mode.name(), "target": o.target,
                               "best_rate": null, "limit": o.limit.words(), "stopped_by": o.note})
                    );
                } else {
                    println!(
                        "{:<9} no step passed ({}: {})",
                        o.target,
                        o.limit.words(),
                        o.note
                    );
                }
                continue;
            };
            let bound = if matches!(o.limit, SipLimit::Sipp | SipLimit::MaxRate) {
                "≥"
            } else {
                ""
            };
            // Rate ratio, CPU-projected ratio, and CPU per call at equal rate (the anchor's
            // best rate, if this target ran it).
            let ratio = anchor.as_ref().map(|k| {
                let equal = o
                    .steps
                    .iter()
                    .find(|s| (s.rate - k.rate).abs() < 0.5 && s.completed > 0)
                    .filter(|s| s.cpu_us_per_call > 0.0 && k.cpu_us_per_call > 0.0)
                    .map(|s| k.cpu_us_per_call / s.cpu_us_per_call);
                // CPU figures below the clock tick (10 ms per step) give no ratio.
                let projected = (b.cpu_us_per_call > 0.0 && k.cpu_us_per_call > 0.0)
                    .then(|| b.projected_per_core() / k.projected_per_core());
                (b.rate / k.rate, projected, equal, k.rate)
            });
            let l = |v: &[u64; 4]| {
                format!(
                    "{:.2}/{:.2}/{:.2}",
                    v[0] as f64 / 1e3,
                    v[1] as f64 / 1e3,
                    v[2] as f64 / 1e3
                )
            };
            if json_mode {
                println!(
                    "{}",
                    json!({
                        "bench": "sip",
                        "mode": mode.name(),
                        "target": o.target,
                        "best_rate": b.rate,
                        "lower_bound": !bound.is_empty(),
                        "limit": o.limit.words(),
                        "stopped_by": o.note,
                        "achieved_rate": b.achieved,
                        "latency_us": {
                            la: {"p50": b.lat_a_us[0], "p99": b.lat_a_us[1], "p999": b.lat_a_us[2]},
                            lb: {"p50": b.lat_b_us[0], "p99": b.lat_b_us[1], "p999": b.lat_b_us[2]},
                        },
                        "proxy_cpu": b.proxy_cpu,
                        "cpu_us_per_call": b.cpu_us_per_call,
                        "projected_per_core": b.projected_per_core().round(),
                        "ratio_rate": ratio.map(|r| r.0),
                        "ratio_projected_per_core": ratio.map(|r| r.1),
                        "ratio_cpu_per_call_equal_rate": ratio.and_then(|r| r.2),
                    })
                );
            } else {
                println!(
                    "{:<9} {:>10} {:>24} {:>24} {:>11.1} {:>12.0}  {}",
                    o.target,
                    format!("{bound}{:.0}", b.rate),
                    l(&b.lat_a_us),
                    l(&b.lat_b_us),
                    b.cpu_us_per_call,
                    b.projected_per_core(),
                    ratio.map_or("-".into(), |r| format!(
                        "ratio {:.2}× rate, {} projected/core{}",
                        r.0,
                        r.1.map_or("-".into(), |p| format!("{p:.2}×")),
                        r.2.map_or(String::new(), |e| format!(
                            ", {e:.2}× less CPU/call at {:.0}/s",
                            r.3
                        )),
                    )),
                );
                println!(
                    "          ladder ended: {}{}{}",
                    o.limit.words(),
                    if o.note.is_empty() { "" } else { " — " },
                    o.note
                );
            }
        }
    }
    if !json_mode {
        println!(
            "\nrate/s: highest offered rate with every call started on time and < the failure \
             limit failed (≥: the ladder ended on sipp or on the highest rate asked, not on the \
             proxy — a lower bound). µs CPU/call: proxy CPU (user + system, all threads and \
             processes) ÷ completed calls at that step. proj. /s/core: one fully busy core at that \
             cost. Ratios are this target over kamailio."
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
