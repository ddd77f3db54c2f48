//! The relays under test, each a real process started here: Trunkline (dataplane + control
//! plane, sessions created over the control plane's media API) and rtpengine in userspace
//! mode (sessions created over its ng protocol, as a SIP proxy would).
//!
//! Every process is started in its own process group with its CPU affinity set, its output
//! kept in the run directory, and is killed (by pid) and reaped when the target is dropped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::load::CallRoute;
use crate::ng::{media_addr, sdp_for, NgClient};

/// A relay the benchmark drives.
pub trait Relay {
    /// Short name for the report (`trunkline-uring`, `rtpengine`).
    fn name(&self) -> &str;
    /// The process whose CPU time is the relay's cost.
    fn pid(&self) -> u32;
    /// Creates one session per call, relaying between the call's endpoints `[a, b]`;
    /// returns where each endpoint sends.
    fn setup(&mut self, calls: &[[SocketAddr; 2]]) -> io::Result<Vec<CallRoute>>;
    /// Deletes every session [`Relay::setup`] created.
    fn teardown(&mut self) -> io::Result<()>;
    /// Latency the relay measured itself (receive → send, ns: p50, p99, p99.9), if it does.
    fn internal_latency(&mut self) -> Option<[u64; 3]>;
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with stdout/stderr into `dir/NAME.log`; when `ready` is given, waits up to
    /// `timeout` for an output line containing it.
    fn start(
        name: &str,
        mut cmd: Command,
        dir: &Path,
        ready: Option<&str>,
        timeout: Duration,
    ) -> io::Result<Daemon> {
        let log = dir.join(format!("{name}.log"));
        let mut file = File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("start {name}: {e}")))?;
        let (tx, rx) = mpsc::channel::<String>();
        let out = child.stdout.take();
        let err = child.stderr.take();
        let (ltx, lrx) = mpsc::channel::<String>();
        if let Some(out) = out {
            let tx = tx.clone();
            let ltx = ltx.clone();
            thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    let _ = ltx.send(line);
                }
            });
        }
        if let Some(err) = err {
            thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    let _ = ltx.send(line);
                }
            });
        }
        thread::spawn(move || {
            for line in lrx {
                let _ = writeln!(file, "{line}");
            }
        });
        let d = Daemon {
            name: name.into(),
            child,
            log,
        };
        if let Some(ready) = ready {
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) if line.contains(ready) => break,
                    Ok(_) => {}
                    Err(_) => {
                        return Err(io::Error::other(format!(
                            "{name} not ready within {timeout:?}; see {}",
                            d.log.display()
                        )))
                    }
                }
            }
        }
        Ok(d)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first (the dataplane removes its socket and region on a clean stop).
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the pid of a child we have not reaped yet: it is ours.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM)
        };
        // A clean stop takes well under a second; allow for a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{}: no exit after SIGTERM, killing", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned(cpus: &[usize], program: &Path) -> Command {
    if cpus.is_empty() {
        return Command::new(program);
    }
    let list = cpus
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut c = Command::new("taskset");
    c.arg("-c").arg(list).arg(program);
    c
}

// ---------------------------------------------------------------------------------------
// Trunkline

/// Which backend the Trunkline dataplane runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring.
    Uring,
    /// epoll (mio).
    Mio,
}

/// Trunkline's dataplane (one core, pinned) and control plane (on the generator's CPUs).
#[derive(Debug)]
pub struct Trunkline {
    name: String,
    // Field order: the control plane stops before the dataplane.
    api: Api,
    _control: Daemon,
    dataplane: Daemon,
    media_ip: IpAddr,
    sessions: Vec<u64>,
}

impl Trunkline {
    /// Starts `bin_dir/trunkline-dataplane` on `relay_cpu` with ports `ports` and
    /// `bin_dir/trunkline-controlplane` on `other_cpus`, in run directory `dir`.
    pub fn start(
        bin_dir: &Path,
        backend: Backend,
        media_ip: IpAddr,
        ports: (u16, u16),
        relay_cpu: usize,
        other_cpus: &[usize],
        dir: &Path,
    ) -> io::Result<Trunkline> {
        let tag = match backend {
            Backend::Uring => "uring",
            Backend::Mio => "mio",
        };
        let region = format!("trunkbench-{}-{tag}", std::process::id());
        let dp_sock = dir.join(format!("dataplane-{tag}.sock"));
        let api_sock = dir.join(format!("controlplane-{tag}.sock"));
        let mut dp = Command::new(bin_dir.join("trunkline-dataplane"));
        dp.arg("--region")
            .arg(&region)
            .arg("--control-socket")
            .arg(&dp_sock)
            .arg("--media-address")
            .arg(media_ip.to_string())
            .arg("--port-min")
            .arg(ports.0.to_string())
            .arg("--port-max")
            .arg(ports.1.to_string())
            .arg("--cores")
            .arg("1")
            .arg("--first-cpu")
            .arg(relay_cpu.to_string())
            .arg("--backend")
            .arg(tag);
        let dataplane = Daemon::start(
            &format!("trunkline-dataplane-{tag}"),
            dp,
            dir,
            Some("trunkline-dataplane ready"),
            Duration::from_secs(10),
        )?;
        let mut cp = pinned(other_cpus, &bin_dir.join("trunkline-controlplane"));
        cp.arg("--region")
            .arg(&region)
            .arg("--dataplane-socket")
            .arg(&dp_sock)
            .arg("--api")
            .arg(&api_sock);
        let control = Daemon::start(
            &format!("trunkline-controlplane-{tag}"),
            cp,
            dir,
            Some("trunkline-controlplane ready"),
            Duration::from_secs(10),
        )?;
        let api = Api::connect(&api_sock)?;
        Ok(Trunkline {
            name: format!("trunkline-{tag}"),
            api,
            _control: control,
            dataplane,
            media_ip,
            sessions: Vec::new(),
        })
    }
}

impl Relay for Trunkline {
    fn name(&self) -> &str {
        &self.name
    }
    fn pid(&self) -> u32 {
        self.dataplane.pid()
    }
    fn setup(&mut self, calls: &[[SocketAddr; 2]]) -> io::Result<Vec<CallRoute>> {
        let mut routes = Vec::with_capacity(calls.len());
        for [a, b] in calls {
            let v = self.api.call(&json!({
                "op": "create",
                "a": {"remote": a.to_string(), "payload_types": [[0, 8000]], "telephone_event_pt": 101},
                "b": {"remote": b.to_string(), "payload_types": [[0, 8000]], "telephone_event_pt": 101},
            }))?;
            let s = &v["session"];
            let id = s["id"]
                .as_u64()
                .ok_or_else(|| io::Error::other(format!("create answered {v}")))?;
            self.sessions.push(id);
            let port = |i: usize| {
                s["ports"][i]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| io::Error::other(format!("create answered {v}")))
            };
            routes.push(CallRoute {
                relay_a: SocketAddr::new(self.media_ip, port(0)?),
                relay_b: SocketAddr::new(self.media_ip, port(1)?),
            });
        }
        Ok(routes)
    }
    fn teardown(&mut self) -> io::Result<()> {
        for id in std::mem::take(&mut self.sessions) {
            self.api.call(&json!({"op": "delete", "id": id}))?;
        }
        Ok(())
    }
    fn internal_latency(&mut self) -> Option<[u64; 3]> {
        let v = self.api.call(&json!({"op": "cores"})).ok()?;
        let l = &v["cores"][0]["latency_ns"];
        Some([l["p50"].as_u64()?, l["p99"].as_u64()?, l["p999"].as_u64()?])
    }
}

/// The control plane's JSON-lines media API.
#[derive(Debug)]
struct Api {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Api {
    fn connect(path: &Path) -> io::Result<Api> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Api {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    fn call(&mut self, req: &Value) -> io::Result<Value> {
        writeln!(self.w, "{req}")?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| io::Error::other(format!("API answer {line:?}: {e}")))?;
        if v["ok"] == Value::Bool(true) {
            Ok(v)
        } else {
            Err(io::Error::other(format!("API: {}", v["error"])))
        }
    }
}

// ---------------------------------------------------------------------------------------
// rtpengine

/// rtpengine in userspace mode (`--table=-1`), pinned to the relay CPU, one worker thread.
#[derive(Debug)]
pub struct Rtpengine {
    daemon: Daemon,
    ng: NgClient,
    calls: Vec<String>,
    next_call: u64,
}

impl Rtpengine {
    /// Starts `rtpengine` (from PATH or /usr/bin) listening for ng on `ng_port`, relaying on
    /// `media_ip` ports `ports`, pinned to `relay_cpu`.
    pub fn start(
        media_ip: IpAddr,
        ng_port: u16,
        ports: (u16, u16),
        relay_cpu: usize,
        dir: &Path,
    ) -> io::Result<Rtpengine> {
        let bin = ["/usr/bin/rtpengine", "/usr/sbin/rtpengine"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "rtpengine not installed (apt-get install rtpengine-daemon)",
                )
            })?;
        let ng_addr = SocketAddr::new(media_ip, ng_port);
        let mut cmd = pinned(&[relay_cpu], &bin);
        cmd.arg("--config-file=none")
            .arg("--table=-1")
            .arg("--foreground")
            .arg("--log-stderr")
            .arg("--log-level=4")
            .arg(format!("--interface={media_ip}"))
            .arg(format!("--listen-ng={ng_addr}"))
            .arg(format!("--port-min={}", ports.0))
            .arg(format!("--port-max={}", ports.1))
            .arg("--num-threads=1")
            .arg("--delete-delay=0")
            .arg("--timeout=60");
        let daemon = Daemon::start("rtpengine", cmd, dir, None, Duration::ZERO)?;
        let mut ng = NgClient::new(ng_addr)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ng.ping() {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(io::Error::other(format!(
                        "rtpengine did not answer ng ping: {e}; see {}",
                        daemon.log.display()
                    )))
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
        Ok(Rtpengine {
            daemon,
            ng,
            calls: Vec::new(),
            next_call: 0,
        })
    }
}

impl Relay for Rtpengine {
    fn name(&self) -> &str {
        "rtpengine"
    }
    fn pid(&self) -> u32 {
        self.daemon.pid()
    }
    fn setup(&mut self, calls: &[[SocketAddr; 2]]) -> io::Result<Vec<CallRoute>> {
        let mut routes = Vec::with_capacity(calls.len());
        for [a, b] in calls {
            self.next_call += 1;
            let call_id = format!("trunkbench-{}-{}", std::process::id(), self.next_call);
            let offered = self.ng.offer(&call_id, "a", &sdp_for(*a, self.next_call))?;
            let answered = self
                .ng
                .answer(&call_id, "a", "b", &sdp_for(*b, self.next_call))?;
            self.calls.push(call_id);
            // The offer as rewritten goes to B: its address is where B sends. The answer as
            // rewritten goes to A.
            let relay_b = media_addr(&offered)
                .ok_or_else(|| io::Error::other("rewritten offer names no media address"))?;
            let relay_a = media_addr(&answered)
                .ok_or_else(|| io::Error::other("rewritten answer names no media address"))?;
            routes.push(CallRoute { relay_a, relay_b });
        }
        Ok(routes)
    }
    fn teardown(&mut self) -> io::Result<()> {
        for c in std::mem::take(&mut self.calls) {
            self.ng.delete(&c)?;
        }
        Ok(())
    }
    fn internal_latency(&mut self) -> Option<[u64; 3]> {
        None
    }
}

/// CPU time (user, system; all threads) a process has used so far.
pub fn cpu_time(pid: u32) -> io::Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("unreadable /proc stat field"))
    };
    // rest[0] is field 3 (state): field n is rest[n - 3].
    let (user, sys) = (ticks(11)?, ticks(12)?);
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let d = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    Ok((d(user), d(sys)))
}
