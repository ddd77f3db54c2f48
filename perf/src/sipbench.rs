//! `trunkbench sip`: SIP call and registration capacity of one proxy core, with sipp as the
//! load, for Trunkline (`trunkline up`, media plane off) and — in the same run, on the same
//! CPU — Kamailio as a stateful, record-routing proxy and digest-authenticating registrar.
//!
//! Per target: the proxy is started pinned to one CPU; the callee (a sipp UAS answering 180
//! then 200) is registered through it with digest auth; then a ladder of call rates (each
//! step a bounded number of calls: INVITE → 100 → 180 → 200 → ACK → hold → BYE → 200 through
//! the proxy), and a ladder of REGISTER rates (401 challenge, then digest over 1,000 distinct
//! subscribers). Each step reports the achieved rate, failed calls, INVITE→180/200 (or
//! REGISTER→401 / authenticated REGISTER→200) latency percentiles, the proxy's CPU per call
//! (user + system of all its threads and processes, from `/proc`) and sipp's own CPU. A
//! ladder stops at the first step with ≥ the failure limit, or where sipp could not keep up.
//!
//! Every process started here is a guard that kills it by pid on drop (panic included).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::targets::cpu_time;

/// The callee's scenario (180 then 200, echoing the Record-Route).
pub const UAS_SCENARIO: &str = include_str!("../sipp/uas_call.xml");
/// The caller's scenario (timed INVITE → 180 / 200, ACK, hold, BYE).
pub const UAC_SCENARIO: &str = include_str!("../sipp/uac_call.xml");
/// Registers the callee's address (one call, digest).
pub const REGISTER_CONTACT_SCENARIO: &str = include_str!("../sipp/register_contact.xml");
/// One digest-authenticated registration per call, users from the injection file.
pub const REGISTER_SCENARIO: &str = include_str!("../sipp/register_uac.xml");
/// Kamailio's configuration (tm, rr, sl, registrar + usrloc in memory, auth).
pub const KAMAILIO_CFG: &str = include_str!("../kamailio/kamailio.cfg");

/// The AoR the callee registers as.
pub const CALLEE: &str = "bench-callee";

/// The password both proxies expect of `user` (Kamailio computes it in its script).
pub fn password(user: &str) -> String {
    format!("{user}-secret")
}

/// The registering subscribers' names.
pub fn user(i: usize) -> String {
    format!("user{i:04}")
}

/// What the load does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Calls through the proxy.
    Calls,
    /// Digest-authenticated registrations.
    Register,
}

impl Mode {
    /// The name in options and output.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Calls => "calls",
            Mode::Register => "register",
        }
    }
    /// The two latencies measured, as column names.
    pub fn latency_names(self) -> [&'static str; 2] {
        match self {
            Mode::Calls => ["INVITE→180", "INVITE→200"],
            Mode::Register => ["REGISTER→401", "auth REGISTER→200"],
        }
    }
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// Loopback address everything binds.
    pub ip: IpAddr,
    /// Ports: proxy (Trunkline base+60, Kamailio base+61), callee base+100, the callee's
    /// registration base+101, caller base+102, registering UAC base+103.
    pub port_base: u16,
    /// CPU of the proxy.
    pub proxy_cpu: usize,
    /// CPUs of the sipp processes (caller on the first, callee on the second, or the first).
    pub load_cpus: Vec<usize>,
    /// Seconds of offered load per step.
    pub seconds: f64,
    /// How long a call stays up between ACK and BYE, ms.
    pub hold_ms: u64,
    /// Registering subscribers.
    pub users: usize,
    /// Failure limit of a passing step, percent.
    pub fail_limit_pct: f64,
    /// Run directory (configs, logs, traces).
    pub run_dir: PathBuf,
    /// sipp's CPU share (of one core, per load CPU) above which sipp counts as saturated.
    pub sipp_saturated: f64,
    /// Kamailio's memory allocator for shared and private memory (`-x`/`-X`: qm, fm, tlsf);
    /// `None`: its default.
    pub kamailio_allocator: Option<String>,
}

impl SipConfig {
    fn proxy_port(&self, target: &str) -> u16 {
        self.port_base + if target == "kamailio" { 61 } else { 60 }
    }
    fn callee_port(&self) -> u16 {
        self.port_base + 100
    }
    fn callee_reg_port(&self) -> u16 {
        self.port_base + 101
    }
    fn uac_port(&self) -> u16 {
        self.port_base + 102
    }
    fn reg_port(&self) -> u16 {
        self.port_base + 103
    }
    fn uac_cpu(&self) -> Option<usize> {
        self.load_cpus.first().copied()
    }
    fn uas_cpu(&self) -> Option<usize> {
        self.load_cpus
            .get(1)
            .or_else(|| self.load_cpus.first())
            .copied()
    }
}

// ---------------------------------------------------------------------------------------
// Processes

/// A child process (in its own process group) killed by pid on drop: SIGTERM, then SIGKILL
/// after `grace`; processes it had forked into its group (Kamailio's workers), listed while
/// it still ran, are SIGKILLed by pid if they outlive it.
#[derive(Debug)]
pub struct Guard {
    name: String,
    child: Child,
    grace: Duration,
}

impl Guard {
    fn spawn(name: &str, mut cmd: Command, log: &Path, grace: Duration) -> io::Result<Guard> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("start {name}: {e}")))?;
        Ok(Guard {
            name: name.into(),
            child,
            grace,
        })
    }

    /// Its pid (also its process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for it to exit; kills it past that (and returns `None`).
    fn wait_bounded(&mut self, limit: Duration, stop: &dyn Fn() -> bool) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !stop() {
            match self.child.try_wait() {
                Ok(Some(st)) => return Some(st.code().unwrap_or(-1)),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        self.kill();
        None
    }

    fn kill(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            // Already gone and reaped: its pid (and group id) may be someone else's by now.
            return;
        }
        let members = group_members(self.child.id());
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + self.grace;
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            eprintln!("{}: no exit after SIGTERM, killing", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Whatever the leader forked and left behind.
        for p in members {
            if p != self.child.id() && group_members(self.child.id()).contains(&p) {
                signal(p, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) on a pid this process started (a child, or a member of a child's
    // process group seen in /proc just before); no memory is involved.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig)
    };
}

/// (pid, process group, utime + stime ticks) of every process in /proc.
fn proc_stats() -> Vec<(u32, u32, u64)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): field n is rest[n - 3]; pgrp is field 5.
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
        if let (Some(pgrp), Some(u), Some(s)) = (num(2), num(11), num(12)) {
            v.push((pid, pgrp as u32, u + s));
        }
    }
    v
}

fn group_members(pgid: u32) -> Vec<u32> {
    proc_stats()
        .into_iter()
        .filter(|&(_, g, _)| g == pgid)
        .map(|(p, _, _)| p)
        .collect()
}

/// CPU (user + system, every thread of every process) used so far by process group `pgid`.
pub fn group_cpu(pgid: u32) -> Duration {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks: u64 = proc_stats()
        .into_iter()
        .filter(|&(_, g, _)| g == pgid)
        .map(|(_, _, t)| t)
        .sum();
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Datagrams the kernel dropped at full receive buffers, summed over the UDP sockets bound to
/// `port` (/proc/net/udp and udp6, last column).
pub fn udp_drops(port: u16) -> u64 {
    let needle = format!(":{port:04X}");
    let mut n = 0;
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(1).is_some_and(|a| a.ends_with(&needle)) {
                n += cols.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    n
}

fn process_cpu(pid: u32) -> Duration {
    cpu_time(pid).map_or(Duration::ZERO, |(u, s)| u + s)
}

fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Sends OPTIONS to `addr` until a 200 comes back or `timeout` passes.
pub fn sip_ping(ip: IpAddr, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let me = s.local_addr()?;
    let deadline = Instant::now() + timeout;
    let mut n = 0u32;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        n += 1;
        let msg = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-tbping-{n};rport\r\n\
             From: <sip:trunkbench@{me}>;tag=tb{n}\r\nTo: <sip:{addr}>\r\nCall-ID: tbping-{n}@{me}\r\n\
             CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = s.send_to(msg.as_bytes(), addr);
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            if let Ok((len, _)) = s.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return Ok(());
                }
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no 200 to OPTIONS from {addr} within {timeout:?}"),
    ))
}

// ---------------------------------------------------------------------------------------
// The proxies

/// A proxy under test: its process group, its address.
#[derive(Debug)]
pub struct ProxyTarget {
    /// `trunkline` or `kamailio`.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    guard: Guard,
}

impl ProxyTarget {
    /// Process group whose CPU is the proxy's cost.
    pub fn pgid(&self) -> u32 {
        self.guard.pid()
    }

    /// `trunkline up` with a generated config (media off, one tenant: the callee and
    /// `cfg.users` subscribers), pinned to `cfg.proxy_cpu`.
    pub fn trunkline(bin: &Path, cfg: &SipConfig) -> io::Result<ProxyTarget> {
        let port = cfg.proxy_port("trunkline");
        let db = cfg.run_dir.join("trunkline-sip.db");
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let mut t = format!(
            "# generated by trunkbench sip\n[[sip.listener]]\ntransport = \"udp\"\naddress = \"{ip}\"\n\
             port = {port}\n\n[media]\nenabled = false\n\n[store]\npath = \"{db}\"\n\n\
             [[tenant]]\ndomain = \"bench.trunkline\"\naliases = [\"{ip}\"]\n\n",
            ip = cfg.ip,
            db = db.display()
        );
        for u in std::iter::once(CALLEE.to_string()).chain((0..cfg.users).map(user)) {
            t.push_str(&format!(
                "[[tenant.subscriber]]\nuser = \"{u}\"\npassword = \"{}\"\n",
                password(&u)
            ));
        }
        let path = cfg.run_dir.join("trunkline-sip.toml");
        std::fs::write(&path, t)?;
        let mut cmd = pinned(Some(cfg.proxy_cpu), bin);
        cmd.arg("up").arg("--config").arg(&path);
        let guard = Guard::spawn(
            "trunkline",
            cmd,
            &cfg.run_dir.join("trunkline-sip.log"),
            Duration::from_secs(20),
        )?;
        let addr = SocketAddr::new(cfg.ip, port);
        let p = ProxyTarget {
            name: "trunkline".into(),
            addr,
            guard,
        };
        sip_ping(cfg.ip, addr, Duration::from_secs(20)).map_err(|e| {
            io::Error::other(format!(
                "trunkline: {e}; see {}",
                cfg.run_dir.join("trunkline-sip.log").display()
            ))
        })?;
        Ok(p)
    }

    /// Kamailio in the foreground (`-DD -E`), one UDP worker (`-n 1`), 1 GiB shared memory,
    /// pinned to `cfg.proxy_cpu` (its timer processes too).
    pub fn kamailio(bin: &Path, modules: &Path, cfg: &SipConfig) -> io::Result<ProxyTarget> {
        let port = cfg.proxy_port("kamailio");
        let path = cfg.run_dir.join("kamailio.cfg");
        std::fs::write(&path, KAMAILIO_CFG)?;
        let rundir = cfg.run_dir.join("kamailio-run");
        std::fs::create_dir_all(&rundir)?;
        let mut cmd = pinned(Some(cfg.proxy_cpu), bin);
        cmd.args(["-DD", "-E", "-f"])
            .arg(&path)
            .arg("-L")
            .arg(modules)
            .arg("-l")
            .arg(format!("udp:{}:{port}", cfg.ip))
            .args(["-n", "1", "-m", "1024", "-M", "64", "-Y"])
            .arg(&rundir)
            .arg("-P")
            .arg(cfg.run_dir.join("kamailio.pid"));
        if let Some(a) = &cfg.kamailio_allocator {
            cmd.arg("-x").arg(a).arg("-X").arg(a);
        }
        let guard = Guard::spawn(
            "kamailio",
            cmd,
            &cfg.run_dir.join("kamailio.log"),
            Duration::from_secs(10),
        )?;
        let addr = SocketAddr::new(cfg.ip, port);
        let p = ProxyTarget {
            name: "kamailio".into(),
            addr,
            guard,
        };
        sip_ping(cfg.ip, addr, Duration::from_secs(20)).map_err(|e| {
            io::Error::other(format!(
                "kamailio: {e}; see {}",
                cfg.run_dir.join("kamailio.log").display()
            ))
        })?;
        Ok(p)
    }
}

/// Where Kamailio's modules are (Debian: /usr/lib/x86_64-linux-gnu/kamailio/modules).
pub fn kamailio_modules() -> Option<PathBuf> {
    let mut cands = vec![
        PathBuf::from("/usr/lib/kamailio/modules"),
        PathBuf::from("/usr/lib64/kamailio/modules"),
    ];
    if let Ok(d) = std::fs::read_dir("/usr/lib") {
        for e in d.flatten() {
            cands.push(e.path().join("kamailio/modules"));
        }
    }
    cands.into_iter().find(|p| p.join("tm.so").exists())
}

/// The Kamailio binary, if installed.
pub fn kamailio_bin() -> Option<PathBuf> {
    [
        "/usr/sbin/kamailio",
        "/usr/bin/kamailio",
        "/usr/local/sbin/kamailio",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

// ---------------------------------------------------------------------------------------
// sipp

fn sipp_bin() -> PathBuf {
    ["/usr/bin/sipp", "/usr/local/bin/sipp"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("sipp"))
}

/// Writes the scenarios and the users' injection file into the run directory.
pub fn write_scenarios(cfg: &SipConfig) -> io::Result<()> {
    for (name, text) in [
        ("uas_call.xml", UAS_SCENARIO),
        ("uac_call.xml", UAC_SCENARIO),
        ("register_contact.xml", REGISTER_CONTACT_SCENARIO),
        ("register_uac.xml", REGISTER_SCENARIO),
    ] {
        std::fs::write(cfg.run_dir.join(name), text)?;
    }
    let mut f = io::BufWriter::new(File::create(cfg.run_dir.join("users.csv"))?);
    writeln!(f, "SEQUENTIAL")?;
    for i in 0..cfg.users.max(1) {
        let u = user(i);
        let pw = password(&u);
        writeln!(f, "{u};{pw};[authentication username={u} password={pw}]")?;
    }
    f.flush()
}

/// sipp's socket buffers (its default is 64 KiB, which overflows in its own bursts at a few
/// thousand calls per second; the kernel caps it at net.core.rmem_max / wmem_max).
const SIPP_BUFFER: &str = "4194304";

/// The callee: a sipp UAS on the callee port, registered at the proxy.
#[derive(Debug)]
pub struct Callee {
    guard: Guard,
}

impl Callee {
    /// Starts the UAS, then registers its address as [`CALLEE`] at `proxy` (digest).
    pub fn start(cfg: &SipConfig, proxy: &ProxyTarget) -> io::Result<Callee> {
        let tag = &proxy.name;
        let mut uas = pinned(cfg.uas_cpu(), &sipp_bin());
        uas.arg("-sf")
            .arg(cfg.run_dir.join("uas_call.xml"))
            .arg("-i")
            .arg(cfg.ip.to_string())
            .arg("-p")
            .arg(cfg.callee_port().to_string())
            .args([
                "-nostdin",
                "-recv_timeout",
                "20000",
                "-buff_size",
                SIPP_BUFFER,
            ])
            .args(["-trace_err", "-error_file"])
            .arg(cfg.run_dir.join(format!("{tag}-uas-errors.log")));
        let guard = Guard::spawn(
            "sipp-uas",
            uas,
            &cfg.run_dir.join(format!("{tag}-uas.out")),
            Duration::from_secs(3),
        )?;
        thread::sleep(Duration::from_millis(200));
        let mut reg = Command::new(sipp_bin());
        reg.arg(proxy.addr.to_string())
            .arg("-sf")
            .arg(cfg.run_dir.join("register_contact.xml"))
            .args(["-s", CALLEE, "-au", CALLEE, "-ap"])
            .arg(password(CALLEE))
            .arg("-key")
            .arg("contact")
            .arg(format!("{}:{}", cfg.ip, cfg.callee_port()))
            .arg("-i")
            .arg(cfg.ip.to_string())
            .arg("-p")
            .arg(cfg.callee_reg_port().to_string())
            .args(["-m", "1", "-nostdin", "-timeout", "10", "-timeout_error"]);
        let mut g = Guard::spawn(
            "sipp-register-callee",
            reg,
            &cfg.run_dir.join(format!("{tag}-register-callee.out")),
            Duration::from_secs(2),
        )?;
        match g.wait_bounded(Duration::from_secs(15), &|| false) {
            Some(0) => Ok(Callee { guard }),
            other => Err(io::Error::other(format!(
                "{tag}: registering the callee failed (sipp exit {other:?}); see {}",
                cfg.run_dir
                    .join(format!("{tag}-register-callee.out"))
                    .display()
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Steps

/// One step's figures.
#[derive(Debug, Clone)]
pub struct SipStep {
    /// `trunkline` or `kamailio`.
    pub target: String,
    /// Calls or registrations.
    pub mode: Mode,
    /// Offered rate (per second).
    pub rate: f64,
    /// Calls asked of sipp.
    pub planned: u64,
    /// Calls sipp started.
    pub created: u64,
    /// Calls that completed.
    pub completed: u64,
    /// Calls that failed or never completed (of those started).
    pub failed: u64,
    /// `failed / created`, percent (100 when none started).
    pub failed_pct: f64,
    /// Rate at which completed calls were started (first to last start), per second.
    pub achieved: f64,
    /// sipp's retransmissions (a sign of loss or slowness).
    pub retransmissions: u64,
    /// Latency of the first answer (180 / 401), µs: p50, p99, p99.9, max.
    pub lat_a_us: [u64; 4],
    /// Latency of the final answer (200 of the INVITE / of the authenticated REGISTER), µs.
    pub lat_b_us: [u64; 4],
    /// Proxy CPU while the load was offered (start to last call's end), fraction of one
    /// core.
    pub proxy_cpu: f64,
    /// Proxy CPU per completed call, µs.
    pub cpu_us_per_call: f64,
    /// sipp CPU while the load was offered, fraction of one core: caller, callee (calls mode;
    /// 0 for registrations).
    pub sipp_cpu: [f64; 2],
    /// sipp could not drive the offered rate (achieved < 95 % of offered, or a load CPU
    /// busy above the saturation share).
    pub sipp_limited: bool,
    /// sipp was killed: the step ran into its time bound, or the run was interrupted.
    pub killed: bool,
    /// Datagrams dropped at full receive buffers during the step: the proxy's socket, the
    /// caller's, the callee's.
    pub drops: [u64; 3],
    /// Busy share of the busiest load CPU while the load was offered (sipp processes only).
    pub sipp_busy: f64,
    /// Wall time of the step, s.
    pub wall_s: f64,
}

impl SipStep {
    /// Whether this step passed: every call started, achieved rate within 5 % of offered,
    /// failures under `limit_pct`.
    pub fn passed(&self, limit_pct: f64) -> bool {
        self.completed > 0
            && !self.killed
            && self.created >= self.planned
            && self.achieved >= 0.95 * self.rate
            && self.failed_pct < limit_pct
    }

    /// Calls per second one fully busy core would carry at this step's CPU cost.
    pub fn projected_per_core(&self) -> f64 {
        if self.cpu_us_per_call <= 0.0 {
            0.0
        } else {
            1e6 / self.cpu_us_per_call
        }
    }

    /// The step as one JSON object.
    pub fn json(&self) -> Value {
        let [a, b] = self.mode.latency_names();
        json!({
            "bench": "sip_step",
            "target": self.target,
            "mode": self.mode.name(),
            "rate": self.rate,
            "planned": self.planned,
            "created": self.created,
            "completed": self.completed,
            "failed": self.failed,
            "failed_pct": self.failed_pct,
            "achieved_rate": self.achieved,
            "retransmissions": self.retransmissions,
            "latency_us": {
                a: {"p50": self.lat_a_us[0], "p99": self.lat_a_us[1], "p999": self.lat_a_us[2], "max": self.lat_a_us[3]},
                b: {"p50": self.lat_b_us[0], "p99": self.lat_b_us[1], "p999": self.lat_b_us[2], "max": self.lat_b_us[3]},
            },
            "proxy_cpu": self.proxy_cpu,
            "proxy_cpu_us_per_call": self.cpu_us_per_call,
            "projected_per_core": self.projected_per_core().round(),
            "sipp_cpu": {"caller": self.sipp_cpu[0], "callee": self.sipp_cpu[1]},
            "sipp_limited": self.sipp_limited,
            "sipp_busy": self.sipp_busy,
            "udp_drops": {"proxy": self.drops[0], "caller": self.drops[1], "callee": self.drops[2]},
            "killed": self.killed,
            "wall_s": self.wall_s,
        })
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e3)
}

impl std::fmt::Display for SipStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b] = match self.mode {
            Mode::Calls => ["180", "200"],
            Mode::Register => ["401", "200"],
        };
        write!(
            f,
            "{:<9} {:<8} offered {:>7.0}/s achieved {:>7.1}/s  done {:>6}/{:<6} failed {:>6.3}%  \
             {a} p50/p99/p99.9 {}/{}/{} ms  {b} {}/{}/{} ms  proxy {:>5.1}% {:>6.1} µs/call  \
             sipp {:.0}%/{:.0}%  retrans {}  drops {}/{}/{}",
            self.target,
            self.mode.name(),
            self.rate,
            self.achieved,
            self.completed,
            self.planned,
            self.failed_pct,
            ms(self.lat_a_us[0]),
            ms(self.lat_a_us[1]),
            ms(self.lat_a_us[2]),
            ms(self.lat_b_us[0]),
            ms(self.lat_b_us[1]),
            ms(self.lat_b_us[2]),
            self.proxy_cpu * 100.0,
            self.cpu_us_per_call,
            self.sipp_cpu[0] * 100.0,
            self.sipp_cpu[1] * 100.0,
            self.retransmissions,
            self.drops[0],
            self.drops[1],
            self.drops[2],
        )?;
        if self.killed {
            write!(f, "  KILLED (time bound or interrupted)")?;
        }
        if self.sipp_limited {
            write!(
                f,
                "  SIPP AT ITS LIMIT (busy {:.0}%)",
                self.sipp_busy * 100.0
            )?;
        }
        Ok(())
    }
}

/// The last row of a sipp `-trace_stat` CSV, by column name.
fn last_stats(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(head) = lines.next() else {
        return BTreeMap::new();
    };
    let Some(last) = lines.next_back() else {
        return BTreeMap::new();
    };
    head.split(';')
        .map(str::to_string)
        .zip(last.split(';').map(str::to_string))
        .collect()
}

fn stat_u64(m: &BTreeMap<String, String>, k: &str) -> u64 {
    m.get(k).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Per completed call: start time (s) and the two latencies, µs (the first absent for a call
/// whose 180 was lost).
fn parse_timing_log(path: &Path, mode: Mode) -> Vec<(f64, Option<u64>, u64)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let word = match mode {
        Mode::Calls => "call",
        Mode::Register => "reg",
    };
    let mut v = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some(word) {
            continue;
        }
        let n: Vec<f64> = it.filter_map(|x| x.parse::<f64>().ok()).collect();
        let t = |i: usize| n[2 * i] * 1e6 + n[2 * i + 1];
        let (t0, a, b) = match mode {
            Mode::Calls if n.len() == 6 => (t(0), t(1) - t(0), t(2) - t(0)),
            Mode::Register if n.len() == 8 => (t(0), t(1) - t(0), t(3) - t(2)),
            _ => continue,
        };
        // A call whose 180 never came logs 0 0 for it: no INVITE→180 sample.
        let a = if mode == Mode::Calls && n[2] == 0.0 {
            None
        } else {
            Some(a.max(0.0) as u64)
        };
        v.push((t0 / 1e6, a, b.max(0.0) as u64));
    }
    v
}

fn percentiles(vals: impl Iterator<Item = u64>) -> [u64; 4] {
    let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3) else {
        return [0; 4];
    };
    for v in vals {
        let _ = h.record(v.max(1));
    }
    if h.is_empty() {
        return [0; 4];
    }
    [
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ]
}

/// Runs one step: `rate` calls (or registrations) per second for `cfg.seconds` through
/// `proxy`; `callee` is the UAS (calls mode).
pub fn step(
    cfg: &SipConfig,
    proxy: &ProxyTarget,
    callee: Option<&Callee>,
    mode: Mode,
    rate: f64,
    index: usize,
    stop: &dyn Fn() -> bool,
) -> io::Result<SipStep> {
    let planned = (rate * cfg.seconds).ceil().max(1.0) as u64;
    let tag = format!("{}-{}-{index}-{}", proxy.name, mode.name(), rate.round());
    let log = cfg.run_dir.join(format!("{tag}-timing.log"));
    let stf = cfg.run_dir.join(format!("{tag}-stats.csv"));
    let errf = cfg.run_dir.join(format!("{tag}-errors.log"));
    for p in [&log, &stf, &errf] {
        let _ = std::fs::remove_file(p);
    }
    let hold_s = cfg.hold_ms as f64 / 1e3;
    // Calls open at once: generous, so the limit never throttles the offered rate.
    let limit = (rate * (hold_s + 8.0)).ceil() as u64 + 100;
    // sipp's own bound, and ours above it.
    let sipp_timeout = (cfg.seconds * 2.0 + hold_s + 15.0).ceil() as u64;
    let mut cmd = pinned(cfg.uac_cpu(), &sipp_bin());
    cmd.arg(proxy.addr.to_string());
    match mode {
        Mode::Calls => {
            cmd.arg("-sf")
                .arg(cfg.run_dir.join("uac_call.xml"))
                .args(["-s", CALLEE, "-p"])
                .arg(cfg.uac_port().to_string())
                .arg("-d")
                .arg(cfg.hold_ms.to_string());
        }
        Mode::Register => {
            cmd.arg("-sf")
                .arg(cfg.run_dir.join("register_uac.xml"))
                .arg("-inf")
                .arg(cfg.run_dir.join("users.csv"))
                .arg("-p")
                .arg(cfg.reg_port().to_string());
        }
    }
    cmd.arg("-i")
        .arg(cfg.ip.to_string())
        .arg("-r")
        .arg(format!("{}", rate.round().max(1.0)))
        .args(["-rp", "1000", "-m"])
        .arg(planned.to_string())
        .arg("-l")
        .arg(limit.to_string())
        .args([
            "-nostdin",
            "-buff_size",
            SIPP_BUFFER,
            "-recv_timeout",
            "5000",
            "-timeout",
        ])
        .arg(sipp_timeout.to_string())
        .args(["-timeout_error", "-trace_logs", "-log_file"])
        .arg(&log)
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stf)
        .args(["-trace_err", "-error_file"])
        .arg(&errf);
    let callee_pid = callee.map(|c| c.guard.pid());
    let uas_cpu_now = || callee_pid.map_or(Duration::ZERO, process_cpu);
    let drops_now = || {
        [
            udp_drops(proxy.addr.port()),
            udp_drops(match mode {
                Mode::Calls => cfg.uac_port(),
                Mode::Register => cfg.reg_port(),
            }),
            udp_drops(cfg.callee_port()),
        ]
    };
    // The caller's socket is new: its drops count from zero.
    let drops0 = {
        let d = drops_now();
        [d[0], 0, d[2]]
    };
    let uas0 = uas_cpu_now();
    let cpu0 = group_cpu(proxy.pgid());
    let t0 = Instant::now();
    let mut g = Guard::spawn(
        "sipp-uac",
        cmd,
        &cfg.run_dir.join(format!("{tag}.out")),
        Duration::from_secs(2),
    )?;
    let uac_pid = g.pid();
    // The load window: from the start to the last call's end (offered time + hold + 0.2 s).
    // CPU shares are sampled at its end; drops and the caller's CPU while sipp runs.
    let window = Duration::from_secs_f64(planned as f64 / rate + hold_s + 0.2);
    let mut window_sample: Option<(Duration, Duration, Duration, Duration)> = None;
    let bound = Duration::from_secs(sipp_timeout + 10);
    let mut uac_cpu = Duration::ZERO;
    let mut drops = [0u64; 3];
    let mut last_drops = Instant::now();
    let deadline = t0 + bound;
    let mut killed = true;
    while Instant::now() < deadline && !stop() {
        match g.child.try_wait() {
            Ok(Some(_)) => {
                killed = false;
                break;
            }
            Ok(None) => {
                uac_cpu = uac_cpu.max(process_cpu(uac_pid));
                if window_sample.is_none() && t0.elapsed() >= window {
                    window_sample = Some((
                        t0.elapsed(),
                        group_cpu(proxy.pgid()),
                        uac_cpu,
                        uas_cpu_now(),
                    ));
                }
                if last_drops.elapsed() >= Duration::from_millis(250) {
                    let d = drops_now();
                    for k in 0..3 {
                        drops[k] = drops[k].max(d[k].saturating_sub(drops0[k]));
                    }
                    last_drops = Instant::now();
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(_) => break,
        }
    }
    if killed {
        g.kill();
    }
    let wall = t0.elapsed();
    let cpu_end = group_cpu(proxy.pgid());
    let cpu = cpu_end.saturating_sub(cpu0);
    let uas_end = uas_cpu_now();
    let d = drops_now();
    for k in [0, 2] {
        drops[k] = drops[k].max(d[k].saturating_sub(drops0[k]));
    }
    drop(g);
    // A step shorter than its window (sipp done early): the whole step is the window.
    let (win, win_proxy, win_uac, win_uas) =
        window_sample.unwrap_or((wall, cpu_end, uac_cpu, uas_end));
    let w = win.as_secs_f64().max(1e-3);

    let stats = last_stats(&stf);
    let created = stat_u64(&stats, "TotalCallCreated");
    let timing = parse_timing_log(&log, mode);
    let completed = stat_u64(&stats, "SuccessfulCall(C)").max(timing.len() as u64);
    let failed = created.saturating_sub(completed);
    let failed_pct = if created == 0 {
        100.0
    } else {
        failed as f64 * 100.0 / created as f64
    };
    let achieved = {
        let first = timing.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
        let last = timing.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max);
        if timing.len() >= 2 && last > first {
            (timing.len() - 1) as f64 / (last - first)
        } else {
            0.0
        }
    };
    let sipp_cpu = [
        win_uac.as_secs_f64() / w,
        if mode == Mode::Calls {
            win_uas.saturating_sub(uas0).as_secs_f64() / w
        } else {
            0.0
        },
    ];
    // Busy share of the busiest load CPU (caller and callee share one on two CPUs).
    let sipp_busy = if cfg.uac_cpu() == cfg.uas_cpu() {
        sipp_cpu[0] + sipp_cpu[1]
    } else {
        sipp_cpu[0].max(sipp_cpu[1])
    };
    // sipp could not keep up: it started calls late, its CPU is saturated, or its own
    // sockets overflowed (it did not read fast enough).
    let sipp_limited = (completed > 0 && achieved < 0.95 * rate)
        || sipp_busy >= cfg.sipp_saturated
        || drops[1] + drops[2] > 0;
    Ok(SipStep {
        target: proxy.name.clone(),
        mode,
        rate,
        planned,
        created,
        completed,
        failed,
        failed_pct,
        achieved,
        retransmissions: stat_u64(&stats, "Retransmissions(C)"),
        lat_a_us: percentiles(timing.iter().filter_map(|t| t.1)),
        lat_b_us: percentiles(timing.iter().map(|t| t.2)),
        proxy_cpu: win_proxy.saturating_sub(cpu0).as_secs_f64() / w,
        cpu_us_per_call: if completed == 0 {
            0.0
        } else {
            cpu.as_secs_f64() * 1e6 / completed as f64
        },
        sipp_cpu,
        sipp_limited,
        killed,
        drops,
        sipp_busy,
        wall_s: wall.as_secs_f64(),
    })
}

/// Why a ladder stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipLimit {
    /// A step failed ≥ the limit: the proxy's capacity lies below it.
    Failures,
    /// sipp could not drive the next step (behind the offered rate, or its CPU saturated):
    /// the proxy's capacity is at least the best step — sipp is the ceiling.
    Sipp,
    /// The highest rate asked for passed.
    MaxRate,
    /// Interrupted, or out of time (`--max-duration`).
    Stopped,
}

impl SipLimit {
    /// Words for the report.
    pub fn words(self) -> &'static str {
        match self {
            SipLimit::Failures => "failures",
            SipLimit::Sipp => "sipp is the ceiling",
            SipLimit::MaxRate => "highest rate asked passed",
            SipLimit::Stopped => "stopped (time or signal)",
        }
    }
}

/// One ladder's result.
#[derive(Debug, Clone)]
pub struct SipOutcome {
    /// Target.
    pub target: String,
    /// Mode.
    pub mode: Mode,
    /// Every step run.
    pub steps: Vec<SipStep>,
    /// Index of the highest passing step.
    pub best: Option<usize>,
    /// Why it stopped.
    pub limit: SipLimit,
    /// The step that stopped the ladder, in words (empty when none did).
    pub note: String,
}

impl SipOutcome {
    /// The highest passing step.
    pub fn best(&self) -> Option<&SipStep> {
        self.best.map(|i| &self.steps[i])
    }
}

/// Steps through `rates` (ascending) until a step fails or sipp is the limit.
#[allow(clippy::too_many_arguments)]
pub fn ladder(
    cfg: &SipConfig,
    proxy: &ProxyTarget,
    callee: Option<&Callee>,
    mode: Mode,
    rates: &[f64],
    deadline: Instant,
    stop: &dyn Fn() -> bool,
    print: &mut dyn FnMut(&SipStep),
) -> io::Result<SipOutcome> {
    let mut out = SipOutcome {
        target: proxy.name.clone(),
        mode,
        steps: Vec::new(),
        best: None,
        limit: SipLimit::MaxRate,
        note: String::new(),
    };
    for (i, &r) in rates.iter().enumerate() {
        let need = Duration::from_secs_f64(cfg.seconds + cfg.hold_ms as f64 / 1e3 + 2.0);
        if stop() || Instant::now() + need > deadline {
            out.limit = SipLimit::Stopped;
            break;
        }
        let s = step(cfg, proxy, callee, mode, r, i, stop)?;
        print(&s);
        let passed = s.passed(cfg.fail_limit_pct);
        // Who limited a step: the proxy when its CPU is saturated or its socket dropped more
        // than sipp's did; sipp when it fell behind, saturated its CPU or overflowed its own
        // sockets.
        let proxy_limited = s.proxy_cpu >= 0.85 || s.drops[0] > s.drops[1] + s.drops[2];
        let note = format!(
            "at {:.0}/s: {:.3}% failed, achieved {:.0}/s, proxy CPU {:.0}%, sipp busy {:.0}%, \
             drops proxy/caller/callee {}/{}/{}",
            s.rate,
            s.failed_pct,
            s.achieved,
            s.proxy_cpu * 100.0,
            s.sipp_busy * 100.0,
            s.drops[0],
            s.drops[1],
            s.drops[2]
        );
        let limited = s.sipp_limited;
        out.steps.push(s);
        if passed {
            out.best = Some(out.steps.len() - 1);
        }
        if stop() {
            out.limit = SipLimit::Stopped;
            break;
        }
        if !passed || limited {
            // A passing step with sipp at its limit: the next step would measure sipp.
            out.limit = if passed || (limited && !proxy_limited) {
                SipLimit::Sipp
            } else {
                SipLimit::Failures
            };
            out.note = note;
            break;
        }
        // Let retransmission timers and the proxies' transaction state drain.
        thread::sleep(Duration::from_millis(500));
    }
    Ok(out)
}

/// The geometric ladder `start, start·factor, …` up to `max`.
pub fn rate_ladder(start: f64, factor: f64, max: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut x = start.max(1.0);
    while x <= max * (1.0 + 1e-9) {
        let r = x.round();
        if v.last() != Some(&r) {
            v.push(r);
        }
        x *= factor.max(1.01);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_ladder_grows_and_stops() {
        assert_eq!(
            rate_ladder(100.0, 2.0, 800.0),
            vec![100.0, 200.0, 400.0, 800.0]
        );
        assert_eq!(rate_ladder(10.0, 1.5, 40.0), vec![10.0, 15.0, 23.0, 34.0]);
    }

    #[test]
    fn timing_lines_parse() {
        let d = std::env::temp_dir().join(format!("tb-sip-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap_or_default();
        let p = d.join("t.log");
        std::fs::write(
            &p,
            "call 10.000000 100.000000 10.000000 1100.000000 10.000000 2100.000000\n\
             call 10.0 0.0 0.0 0.0 10.0 900.0\ngarbage\nreg 1 0 1 500 1 600 1 900\n",
        )
        .unwrap_or_default();
        let c = parse_timing_log(&p, Mode::Calls);
        assert_eq!(c.len(), 2);
        assert_eq!((c[1].1, c[1].2), (None, 900));
        assert_eq!((c[0].1, c[0].2), (Some(1000), 2000));
        let r = parse_timing_log(&p, Mode::Register);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].1, r[0].2), (Some(500), 300));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn passwords_follow_kamailios_pattern() {
        assert_eq!(password(&user(7)), "user0007-secret");
        assert!(KAMAILIO_CFG.contains("$au + \"-secret\""));
    }
}
