//! The media plane's two processes under `trunkline up`: the dataplane (`trunkline
//! dataplane`, pinned core loops) and the control plane attached to it (`trunkline
//! controlplane`, the media-session API). Both are this same executable re-run with a role,
//! so `cargo run -p trunkline -- up` needs nothing else built.
//!
//! Supervision: a control plane that dies is restarted at once — the dataplane keeps every
//! session meanwhile and the new control plane recovers them. A dataplane that dies stops the
//! appliance (its sessions are gone; the operator must see it). Stopping sends SIGTERM to the
//! control plane, then to the dataplane, and waits for both.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::MediaConfig;

/// How long a plane may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a plane may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One child process of the media plane.
#[derive(Debug)]
struct Plane {
    role: &'static str,
    child: Child,
}

impl Plane {
    /// Starts `exe ROLE args…` and waits for its ready line, which it returns.
    fn start(exe: &Path, role: &'static str, args: &[String]) -> Result<(Plane, String), String> {
        // Own process group: a Ctrl-C at the terminal reaches `up` alone, which stops the
        // planes in order (control plane first).
        let mut cmd = Command::new(exe);
        // If `up` itself dies (SIGKILL), its planes follow rather than linger holding the
        // media ports and the region; a clean stop is ordered by `stop` instead.
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent; it runs in the child between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .process_group(0)
            .arg(role)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {role}: {e}"))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| format!("{role}: no stdout"))?;
        let (tx, rx) = mpsc::channel();
        forward(out, role, tx);
        let mut p = Plane { role, child };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => Ok((p, line)),
            Err(_) => {
                let status = p.stop();
                Err(format!(
                    "the {role} did not become ready ({}); its errors are above",
                    status.map_or_else(|| "still starting".to_string(), |s| s.to_string())
                ))
            }
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Returns the exit status.
    fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own unreaped child: the pid cannot have been reused.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "trunkline: the {} did not stop within {STOP_TIMEOUT:?}; killing it",
            self.role
        );
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

/// Sends the first line containing "ready" to `ready`; echoes every other line to our stdout
/// prefixed with the role.
fn forward(out: ChildStdout, role: &'static str, ready: mpsc::Sender<String>) {
    thread::spawn(move || {
        let mut ready = Some(ready);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(" ready") {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(line);
                    continue;
                }
            }
            println!("[{role}] {line}");
        }
    });
}

/// The running media plane.
#[derive(Debug)]
pub struct MediaPlanes {
    exe: PathBuf,
    control_args: Vec<String>,
    dataplane: Plane,
    control: Plane,
    /// The media-session API socket.
    pub api: PathBuf,
    /// The dataplane's and the control plane's ready lines.
    pub ready_lines: [String; 2],
    /// Control-plane restarts so far.
    pub restarts: u32,
}

/// Where the planes' sockets go: the configured directory, else /run/trunkline, else a
/// per-user directory (a non-root user cannot create /run/trunkline).
pub(crate) fn runtime_dir(cfg: &MediaConfig) -> Result<PathBuf, String> {
    if let Some(d) = &cfg.runtime_dir {
        std::fs::create_dir_all(d)
            .map_err(|e| format!("media.runtime_dir {}: {e}", d.display()))?;
        return Ok(d.clone());
    }
    let mut tried = Vec::new();
    let mut candidates = vec![PathBuf::from("/run/trunkline")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(x).join("trunkline"));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let uid = unsafe { libc::getuid() };
    candidates.push(std::env::temp_dir().join(format!("trunkline-{uid}")));
    for d in candidates {
        match std::fs::create_dir_all(&d) {
            Ok(()) => return Ok(d),
            Err(e) => tried.push(format!("{}: {e}", d.display())),
        }
    }
    Err(format!(
        "no runtime directory for the planes' sockets ({})",
        tried.join("; ")
    ))
}

impl MediaPlanes {
    /// Starts the dataplane, then the control plane attached to it; both ready, or neither
    /// left running.
    pub fn start(cfg: &MediaConfig) -> Result<MediaPlanes, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        let dir = runtime_dir(cfg)?;
        let dp_sock = dir.join("dataplane.sock");
        let api = dir.join("controlplane.sock");
        let mut dp_args = vec![
            "--region".to_string(),
            cfg.region.clone(),
            "--control-socket".into(),
            dp_sock.display().to_string(),
            "--media-address".into(),
            cfg.address.to_string(),
            "--port-min".into(),
            cfg.port_min.to_string(),
            "--port-max".into(),
            cfg.port_max.to_string(),
            "--backend".into(),
            cfg.backend.arg().into(),
        ];
        if let Some(ms) = cfg.sqpoll_idle_ms {
            dp_args.push("--sqpoll-idle-ms".into());
            dp_args.push(ms.to_string());
        }
        if let Some(c) = cfg.cores {
            dp_args.push("--cores".into());
            dp_args.push(c.to_string());
        }
        let control_args = vec![
            "--region".to_string(),
            cfg.region.clone(),
            "--dataplane-socket".into(),
            dp_sock.display().to_string(),
            "--api".into(),
            api.display().to_string(),
        ];
        let (mut dataplane, dp_ready) = Plane::start(&exe, "dataplane", &dp_args)?;
        let (control, cp_ready) = match Plane::start(&exe, "controlplane", &control_args) {
            Ok(c) => c,
            Err(e) => {
                dataplane.stop();
                return Err(e);
            }
        };
        Ok(MediaPlanes {
            exe,
            control_args,
            dataplane,
            control,
            api,
            ready_lines: [dp_ready, cp_ready],
            restarts: 0,
        })
    }

    /// Checks both processes: restarts a control plane that exited; returns an error when
    /// the dataplane exited (the appliance must stop).
    pub fn supervise(&mut self) -> Result<(), String> {
        if let Some(s) = self.dataplane.exited() {
            return Err(format!(
                "the dataplane exited ({s}): media sessions are lost"
            ));
        }
        if let Some(s) = self.control.exited() {
            eprintln!(
                "trunkline: the control plane exited ({s}); restarting it — the dataplane kept \
                 every session"
            );
            let (c, line) = Plane::start(&self.exe, "controlplane", &self.control_args)?;
            println!("{line}");
            self.control = c;
            self.restarts += 1;
        }
        Ok(())
    }

    /// Stops the control plane, then the dataplane.
    pub fn stop(mut self) {
        self.control.stop();
        self.dataplane.stop();
    }
}
