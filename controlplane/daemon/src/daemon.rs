//! The `trunkline-controlplane` process (also `trunkline controlplane`, which `trunkline up`
//! starts): attaches to a running `trunkline-dataplane` and serves the
//! media-session API (JSON lines on a Unix socket). Killing it loses no media: the dataplane
//! keeps relaying, and a restarted control plane recovers every live session.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::{api, media::MediaPlane};
use clap::Parser;

/// Trunkline control plane.
#[derive(Debug, Parser)]
#[command(name = "trunkline-controlplane", version)]
struct Args {
    /// Shared-memory region of the dataplane (/dev/shm/NAME).
    #[arg(long, default_value = "trunkline")]
    region: String,
    /// The dataplane's control socket.
    #[arg(long, default_value = "/run/trunkline/dataplane.sock")]
    dataplane_socket: PathBuf,
    /// Where to serve the media-session API (Unix socket, mode 0660).
    #[arg(long, default_value = "/run/trunkline/controlplane.sock")]
    api: PathBuf,
    /// Seconds to wait for the dataplane to come up.
    #[arg(long, default_value_t = 10)]
    attach_timeout: u64,
}

/// Runs the control-plane process with command-line arguments `args` (the first is the
/// program name), until SIGINT/SIGTERM.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::parse_from(args);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trunkline-controlplane: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let media = MediaPlane::attach(
        &args.region,
        &args.dataplane_socket,
        Duration::from_secs(args.attach_timeout),
    )?;
    let media = Arc::new(media);
    let recovered = media.known().len();
    let listener = bind(&args.api)?;
    println!(
        "trunkline-controlplane ready: attached to /dev/shm/{} (generation {}, {} core(s)), \
         {recovered} live session(s) recovered, API unix:{}",
        args.region,
        media.generation(),
        media.cores(),
        args.api.display()
    );
    api::serve(&listener, &media, &stop);
    let _ = std::fs::remove_file(&args.api);
    media.shutdown();
    eprintln!("trunkline-controlplane: stopped; the dataplane keeps its sessions");
    Ok(())
}

fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("API socket directory {}: {e}", dir.display()))?;
        }
    }
    if path.exists() {
        // Only one control plane holds the dataplane seat (attach refused otherwise), so a
        // socket file here was left by a dead one.
        std::fs::remove_file(path)
            .map_err(|e| format!("remove stale API socket {}: {e}", path.display()))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("API socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("API socket {}: {e}", path.display()))?;
    Ok(l)
}
