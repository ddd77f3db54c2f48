//! Harness for end-to-end tests: network namespaces joined by veth pairs, the real
//! Trunkline binaries started inside them, and a client of the control plane's API.
//!
//! Everything a test creates is torn down by id when its guard drops: namespaces by name,
//! processes by pid (SIGKILL if still running, then reaped). Traffic stays inside the
//! namespaces the test created.
#![allow(unsafe_code)] // setns(2) and geteuid(2) through libc; each call says why it is sound.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Whether this test can run here. Needs root and `ip`. Under `CI=true` a missing
/// prerequisite is a failure (panic); elsewhere the test prints why and is skipped.
pub fn can_run_netns(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let why = match (root, ip) {
        (true, true) => return true,
        (false, _) => "needs root (network namespaces)",
        (true, false) => "needs `ip` (Debian package iproute2)",
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}");
    }
    eprintln!("SKIP {test}: {why}");
    false
}

/// Runs a command, failing with its output when it fails.
pub fn sh(args: &[&str]) -> io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` (deleting a stale one of that name first) with loopback up.
    pub fn new(name: &str) -> io::Result<Netns> {
        let _ = sh(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name])?;
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file (`/run/netns/NAME`).
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `ip ARGS` inside the namespace. Through `nsenter --net`, which only joins the
    /// network namespace: `ip -n` / `ip netns exec` also remount `/` and `/sys`, which fails
    /// where `/` is not a mount point (a plain chroot, as in the newcomer check).
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let net = format!("--net={}", self.path().display());
        let mut all = vec!["nsenter", net.as_str(), "ip"];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Moves the calling thread into this namespace (sockets it creates afterwards live
    /// there; other threads are unaffected).
    pub fn enter(&self) -> io::Result<()> {
        let f = File::open(self.path())?;
        // SAFETY: `f` is an open namespace file for the duration of the call; CLONE_NEWNET
        // only switches this thread's network namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

/// Joins `a` and `b` with a veth pair: `a_if` in `a` with `a_addr` (CIDR), `b_if` in `b`
/// with `b_addr`; both up.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_addr: &str,
    b: &Netns,
    b_if: &str,
    b_addr: &str,
) -> io::Result<()> {
    sh(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["addr", "add", a_addr, "dev", a_if])?;
    b.ip(&["addr", "add", b_addr, "dev", b_if])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Adds a route in `ns`.
pub fn route(ns: &Netns, to: &str, via: &str) -> io::Result<()> {
    ns.ip(&["route", "add", to, "via", via])
}

/// Builds (if needed) and locates the workspace binaries `names` (each the binary of the
/// package of the same name), in the profile this test was built with.
pub fn binaries(names: &[&str]) -> Vec<PathBuf> {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").arg("--quiet");
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        p => {
            cmd.arg("--profile").arg(p);
        }
    }
    // Each of our binaries is named after its package.
    for n in names {
        cmd.arg("-p").arg(n).arg("--bin").arg(n);
    }
    if let Some(target) = dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    let st = cmd.status().expect("run cargo build");
    assert!(st.success(), "cargo build of {names:?} failed");
    names.iter().map(|n| dir.join(n)).collect()
}

/// A process the test started; SIGKILLed and reaped on drop if still running.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    stdout: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Proc {
    /// Starts `bin args` (inside `ns` when given, through `nsenter --net`, which execs it:
    /// the pid is the program's) and waits up to `timeout` for a stdout line containing
    /// `ready`; returns that line too.
    pub fn start(
        name: &str,
        ns: Option<&Netns>,
        bin: &Path,
        args: &[String],
        timeout: Duration,
    ) -> io::Result<(Proc, String)> {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.path().display())).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let err = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let mut p = Proc {
            name: name.into(),
            child: Some(child),
            stdout: rx,
            stderr,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match p.stdout.recv_timeout(left) {
                Ok(line) if line.contains("ready") => return Ok((p, line)),
                Ok(_) => {}
                Err(_) => {
                    let status = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    thread::sleep(Duration::from_millis(100));
                    return Err(io::Error::other(format!(
                        "{name} not ready within {timeout:?} (exit: {status:?}); stderr:\n{}",
                        p.stderr()
                    )));
                }
            }
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends `sig` (by pid).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own, not yet reaped child's pid.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_some() {
            eprintln!(
                "{}: killed at teardown; stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
        self.kill();
    }
}

/// A JSON-lines client of the control plane's API socket.
#[derive(Debug)]
pub struct Api {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Api {
    /// Connects, retrying for up to two seconds.
    pub fn connect(path: &Path) -> io::Result<Api> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Api {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// Sends one request; returns the answer, or the API's error as `Err`.
    pub fn call(&mut self, req: &Value) -> Result<Value, String> {
        writeln!(self.w, "{req}").map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.r.read_line(&mut line).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        if v["ok"] == Value::Bool(true) {
            Ok(v)
        } else {
            Err(v["error"].as_str().unwrap_or("no error text").to_string())
        }
    }
}
