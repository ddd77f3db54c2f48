//! The `trunkline-dataplane` process (also `trunkline dataplane`, which `trunkline up` starts). Starts one pinned core loop per configured
//! core, creates the shared-memory region the control plane attaches to, and hands the
//! region's eventfds to every control plane that connects to its Unix socket. It keeps
//! relaying, sessions intact, when the control plane dies; a restarted one connects again.

use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use crate::{CoreLoop, CoreSetup, PortLayout};
use clap::{Parser, ValueEnum};
use shmq::schema::CoreStats;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    /// io_uring where the kernel allows it, else epoll (and say why).
    Auto,
    /// io_uring only; refuse to start without it.
    Uring,
    /// epoll (mio) with recvmmsg/sendmmsg.
    Mio,
}

/// Trunkline dataplane: pinned per-core RTP relay loops driven over shared memory.
#[derive(Debug, Parser)]
#[command(name = "trunkline-dataplane", version)]
struct Args {
    /// Shared-memory region name (/dev/shm/NAME).
    #[arg(long, default_value = "trunkline")]
    region: String,
    /// Unix socket where control planes attach (receive the region's eventfds).
    #[arg(long, default_value = "/run/trunkline/dataplane.sock")]
    control_socket: PathBuf,
    /// Address media sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    media_address: IpAddr,
    /// First port of the media range.
    #[arg(long, default_value_t = 20000)]
    port_min: u16,
    /// Last port of the media range.
    #[arg(long, default_value_t = 29999)]
    port_max: u16,
    /// Dataplane cores (default: all CPUs but one, at least one).
    #[arg(long)]
    cores: Option<u16>,
    /// First CPU to pin to: core i runs on CPU first_cpu + i (modulo the CPU count).
    /// Default 1 when there is more than one CPU (CPU 0 is left to the control plane).
    #[arg(long)]
    first_cpu: Option<usize>,
    /// Do not pin core threads.
    #[arg(long)]
    no_pin: bool,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// Records per shared-memory ring (power of two).
    #[arg(long, default_value_t = 4096)]
    ring_capacity: u32,
    /// io_uring: submit through a kernel polling thread per core (IORING_SETUP_SQPOLL) that
    /// sleeps after this many idle milliseconds. Costs a CPU per core while busy; saves the
    /// io_uring_enter per loop turn.
    #[arg(long)]
    sqpoll_idle_ms: Option<u32>,
    /// SIP UDP listener (repeatable; listener id = position): core 0 owns the socket and
    /// runs the SIP fast path, handing what it cannot answer to the control plane.
    #[arg(long = "sip-udp", value_name = "ADDR")]
    sip_udp: Vec<std::net::SocketAddr>,
}

/// Runs the dataplane process with command-line arguments `args` (the first is the program
/// name), until SIGINT/SIGTERM.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::parse_from(args);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trunkline-dataplane: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes a file when dropped.
#[derive(Debug)]
struct RemoveOnReturn(PathBuf);

impl Drop for RemoveOnReturn {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let cores = args
        .cores
        .unwrap_or_else(|| (cpus.saturating_sub(1)).max(1) as u16);
    let layout = PortLayout::new(args.port_min, args.port_max, cores)
        .map_err(|e| format!("media port range: {e}"))?;
    let first_cpu = args.first_cpu.unwrap_or(usize::from(cpus > 1));

    // Every port is a socket: raise the descriptor limit to fit them all.
    let need = u64::from(layout.ports_per_core()) * u64::from(cores) + 256;
    raise_nofile(need)?;

    let force = match args.backend {
        BackendArg::Auto => None,
        BackendArg::Uring => Some(dpio::BackendKind::Uring),
        BackendArg::Mio => Some(dpio::BackendKind::Mio),
    };
    let dataplane = shmq::Dataplane::create(
        &args.region,
        shmq::RegionConfig {
            cores,
            ring_capacity: args.ring_capacity,
        },
    )
    .map_err(|e| format!("shared memory /dev/shm/{}: {e}", args.region))?;
    // Whatever way `run` returns — a failed start or a clean stop — the region goes with it
    // (only a crash leaves it, and the next start replaces it with a new generation).
    let _region = RemoveOnReturn(Path::new("/dev/shm").join(&args.region));

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }

    // Start the cores; each reports its start-up result before entering its loop.
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(u16, String), String>>();
    let mut handles = Vec::with_capacity(usize::from(cores));
    for core in 0..cores {
        let end = dataplane
            .data_end(core)
            .ok_or_else(|| format!("no ring pair for core {core}"))?;
        let setup = CoreSetup {
            core,
            cpu: (!args.no_pin).then(|| (first_cpu + usize::from(core)) % cpus),
            media_ip: args.media_address,
            layout,
            io: dpio::Config {
                force,
                sqpoll_idle_ms: args.sqpoll_idle_ms,
                ..dpio::Config::default()
            },
            sip: if core == 0 {
                args.sip_udp.clone()
            } else {
                Vec::new()
            },
        };
        let stop = Arc::clone(&stop);
        let ready = ready_tx.clone();
        let h = thread::Builder::new()
            .name(format!("dp-core-{core}"))
            .spawn(move || -> Option<CoreStats> {
                let mut lp = match CoreLoop::new(&setup, end) {
                    Ok(lp) => lp,
                    Err(e) => {
                        let _ = ready.send(Err(format!("core {core}: {e}")));
                        return None;
                    }
                };
                let mut what = format!("{:?}", lp.backend()).to_lowercase();
                if let Some(why) = lp.uring_unavailable() {
                    what.push_str(&format!(" (io_uring unavailable: {why})"));
                }
                let _ = ready.send(Ok((core, what)));
                drop(ready);
                if let Err(e) = lp.run(&stop) {
                    eprintln!("trunkline-dataplane: core {core} stopped: {e}");
                    stop.store(true, Ordering::Relaxed);
                }
                Some(lp.core_stats())
            })
            .map_err(|e| format!("spawn core {core}: {e}"))?;
        handles.push(h);
    }
    drop(ready_tx);

    let mut backends = vec![String::new(); usize::from(cores)];
    let mut failure = None;
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok((core, what))) => backends[usize::from(core)] = what,
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert_with(|| "a core thread died during start-up".into());
            }
        }
    }
    if let Some(e) = failure {
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = h.join();
        }
        return Err(e);
    }

    let listener = bind_control_socket(&args.control_socket)?;
    println!(
        "trunkline-dataplane ready: {cores} core(s), backend {}, media {} ports {}-{} \
         ({} sessions/core), region /dev/shm/{}, control socket {}{}",
        backends.first().map_or("", String::as_str),
        args.media_address,
        args.port_min,
        args.port_max,
        layout.sessions_per_core,
        args.region,
        args.control_socket.display(),
        if args.sip_udp.is_empty() {
            String::new()
        } else {
            let l: Vec<String> = args.sip_udp.iter().map(|a| format!("udp:{a}")).collect();
            format!(", SIP {} (core 0)", l.join(" "))
        },
    );
    let _ = io::stdout().flush();

    // The main thread serves attaches until told to stop.
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = stream.set_nonblocking(false) {
                    eprintln!("trunkline-dataplane: control attach: {e}");
                    continue;
                }
                match dataplane.handoff(&stream) {
                    Ok(()) => eprintln!("trunkline-dataplane: control plane attached"),
                    Err(e) => eprintln!("trunkline-dataplane: control attach failed: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                eprintln!("trunkline-dataplane: accept: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }

    let _ = std::fs::remove_file(&args.control_socket);
    eprintln!("trunkline-dataplane: stopping");
    // A clean stop ends every session: the region goes too (a crash leaves it, and the next
    // start replaces it with a new generation).
    let _ = std::fs::remove_file(Path::new("/dev/shm").join(&args.region));
    for (core, h) in handles.into_iter().enumerate() {
        if let Ok(Some(s)) = h.join() {
            eprintln!(
                "core {core}: sessions {} rx {} tx {} relayed rtp {} rtcp {} drops: malformed {} \
                 stranger {} no-session {} not-latched {} no-destination {} held {} not-media {} \
                 tx-errors {} timeouts {} dtmf {} latency p50 {} ns p99 {} ns p99.9 {} ns",
                s.sessions,
                s.rx_packets,
                s.tx_packets,
                s.relayed_rtp,
                s.relayed_rtcp,
                s.drop_malformed,
                s.drop_stranger,
                s.drop_no_session,
                s.drop_not_latched,
                s.drop_no_destination,
                s.drop_held,
                s.drop_not_media,
                s.tx_errors,
                s.timeouts,
                s.dtmf_events,
                s.latency_p50_ns,
                s.latency_p99_ns,
                s.latency_p999_ns,
            );
        }
    }
    Ok(())
}

fn bind_control_socket(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("control socket directory {}: {e}", dir.display()))?;
        }
    }
    // A socket file left by a dead dataplane: replace it (we own the region name too).
    if path.exists() {
        std::fs::remove_file(path)
            .map_err(|e| format!("remove stale control socket {}: {e}", path.display()))?;
    }
    let l =
        UnixListener::bind(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("control socket {}: {e}", path.display()))?;
    Ok(l)
}

#[allow(unsafe_code)] // getrlimit/setrlimit: plain syscalls on a local struct.
fn raise_nofile(need: u64) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    if lim.rlim_cur >= need {
        return Ok(());
    }
    let want = libc::rlimit {
        rlim_cur: need.max(lim.rlim_cur),
        rlim_max: need.max(lim.rlim_max),
    };
    // SAFETY: `want` is a valid rlimit; raising the hard limit needs CAP_SYS_RESOURCE.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return Ok(());
    }
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above, within the current hard limit.
    if lim.rlim_max >= need && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
        return Ok(());
    }
    Err(format!(
        "the media range needs {need} file descriptors but RLIMIT_NOFILE is {} (hard {}): \
         narrow --port-min/--port-max or raise the limit",
        lim.rlim_cur, lim.rlim_max
    ))
}
