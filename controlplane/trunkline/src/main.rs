//! `trunkline`: the appliance entry point.
//!
//! `trunkline up [--config FILE]` starts the appliance in the foreground on the embedded
//! default configuration (loopback) or on FILE, and stops cleanly on Ctrl-C / SIGTERM.
//!
//! This build runs the SIP endpoint that the foundation supports (see [`responder`], over
//! UDP, over TCP ([`tcp`]) and over TLS ([`tls`], in the TCP event loop)) and the
//! media plane — dataplane and control-plane processes ([`planes`]) with the media-session
//! API; the registrar and proxy join as their issues land.
//!
//! `trunkline dataplane ARGS` and `trunkline controlplane ARGS` run one plane in the
//! foreground (what `up` starts; the same as the `trunkline-dataplane` and
//! `trunkline-controlplane` binaries).

mod config;
mod media_client;
mod planes;
mod registry;
mod responder;
mod rest;
mod tcp;
mod tls;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const USAGE: &str = "usage: trunkline up [--config FILE]\n       trunkline check-config FILE\n       trunkline dataplane --help | controlplane --help\n       trunkline --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => {
            let config = match args.get(1).map(String::as_str) {
                None => config::parse(config::DEFAULT_CONFIG, "embedded default"),
                Some("--config") => match args.get(2) {
                    Some(p) => config::load(&PathBuf::from(p)),
                    None => Err("--config needs a FILE".to_string()),
                },
                Some(other) => Err(format!("unknown argument {other:?}\n{USAGE}")),
            };
            match config {
                Ok(c) => up(&c),
                Err(e) => {
                    eprintln!("trunkline: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some("check-config") => match args
            .get(1)
            .map(|p| config::load(&PathBuf::from(p)).and_then(|c| load_tls(&c).map(|_| c)))
        {
            Some(Ok(_)) => {
                println!("config ok");
                ExitCode::SUCCESS
            }
            Some(Err(e)) => {
                eprintln!("trunkline: {e}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("dataplane") => engine::daemon::main_from(
            std::iter::once("trunkline dataplane".to_string()).chain(args[1..].iter().cloned()),
        ),
        Some("controlplane") => controlplane::daemon::main_from(
            std::iter::once("trunkline controlplane".to_string()).chain(args[1..].iter().cloned()),
        ),
        Some("--version" | "-V") => {
            println!("trunkline {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Sets a UDP socket's receive and send buffers to `bytes` — with SO_RCVBUFFORCE /
/// SO_SNDBUFFORCE when privileged, else as far as net.core.{r,w}mem_max allow; returns the
/// receive buffer the kernel granted (it reports double the payload it allows; halved).
#[allow(unsafe_code)] // reason: std has no setsockopt for buffer sizes.
fn widen_udp_buffers(s: &UdpSocket, bytes: usize) -> usize {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt: libc::c_int| {
        // SAFETY: fd is a live socket owned by `s`; the option value is a c_int on the
        // stack whose size is passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                std::ptr::addr_of!(v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(libc::SO_RCVBUFFORCE) {
        set(libc::SO_RCVBUF);
    }
    if !set(libc::SO_SNDBUFFORCE) {
        set(libc::SO_SNDBUF);
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as above; `got` and `len` are valid for writes of their sizes.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::addr_of_mut!(got).cast(),
            &mut len,
        ) == 0
    };
    if ok {
        usize::try_from(got).unwrap_or(0) / 2
    } else {
        0
    }
}

/// Raises the soft limit on open files to the hard limit (TCP connections are file
/// descriptors); warns when even that is below `need`.
#[allow(unsafe_code)] // reason: getrlimit/setrlimit have no safe wrapper in std or libc.
fn raise_nofile(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        eprintln!(
            "trunkline: warning: getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            eprintln!(
                "trunkline: warning: cannot raise the open-file limit to {}: {}",
                lim.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
    if lim.rlim_cur < need {
        eprintln!(
            "trunkline: warning: open-file limit {} is below the {need} that \
             sip.tcp_max_connections needs; connections beyond it are refused (raise the hard \
             limit: ulimit -Hn, LimitNOFILE=)",
            lim.rlim_cur
        );
    }
}

/// The TLS configuration of each listener (None for UDP and TCP), from its PEM files.
fn load_tls(cfg: &config::Config) -> Result<Vec<Option<Arc<rustls::ServerConfig>>>, String> {
    cfg.sip
        .listeners
        .iter()
        .map(|l| match l.tls_files() {
            Some((cert, key)) => tls::server_config(cert, key)
                .map(Some)
                .map_err(|e| format!("tls:{}: {e}", l.socket_addr())),
            None => Ok(None),
        })
        .collect()
}

fn up(cfg: &config::Config) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("trunkline: cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Certificates first, then bind everything before announcing anything: nothing
    // half-starts.
    let tls_configs = match load_tls(cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("trunkline: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sockets = Vec::new();
    // TCP and TLS listeners, each with its TLS configuration (None: plain TCP).
    let mut tcp_listeners = Vec::new();
    for (l, tls) in cfg.sip.listeners.iter().zip(tls_configs) {
        let name = match l.transport() {
            config::Transport::Tls => "tls",
            _ => "tcp",
        };
        match l.transport() {
            config::Transport::Udp => match UdpSocket::bind(l.socket_addr()) {
                Ok(s) => {
                    let want = cfg.sip.udp_buffer_bytes;
                    let got = widen_udp_buffers(&s, want);
                    if got < want {
                        eprintln!(
                            "trunkline: warning: udp:{} receive buffer is {} KiB, not {} KiB \
                             (run as root, or raise net.core.rmem_max)",
                            l.socket_addr(),
                            got / 1024,
                            want / 1024
                        );
                    }
                    sockets.push(s);
                }
                Err(e) => {
                    eprintln!("trunkline: cannot listen on udp:{}: {e}", l.socket_addr());
                    return ExitCode::FAILURE;
                }
            },
            config::Transport::Tcp | config::Transport::Tls => {
                match mio::net::TcpListener::bind(l.socket_addr()) {
                    Ok(s) => {
                        if let Err(e) = tcp::widen_backlog(&s) {
                            eprintln!(
                                "trunkline: warning: {name}:{}: listen backlog: {e}",
                                l.socket_addr()
                            );
                        }
                        tcp_listeners.push((s, tls));
                    }
                    Err(e) => {
                        eprintln!(
                            "trunkline: cannot listen on {name}:{}: {e}",
                            l.socket_addr()
                        );
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    if !tcp_listeners.is_empty() {
        let per = cfg.sip.tcp_max_connections as u64;
        raise_nofile(per * tcp_listeners.len() as u64 + 256);
    }
    // One poll per TCP listener, with the waker other threads use to hand it output.
    let mut tcp_polls = Vec::new();
    let mut lanes = Vec::new();
    for (l, tls) in &tcp_listeners {
        let local = match l.local_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("trunkline: TCP listener address: {e}");
                return ExitCode::FAILURE;
            }
        };
        let made = mio::Poll::new().and_then(|p| {
            let w = mio::Waker::new(p.registry(), tcp::WAKE)?;
            Ok((p, w))
        });
        match made {
            Ok((poll, waker)) => {
                let (tx, rx) = std::sync::mpsc::channel();
                tcp_polls.push((poll, rx));
                lanes.push(responder::Lane {
                    tx,
                    waker: Arc::new(waker),
                    local,
                    tls: tls.is_some(),
                });
            }
            Err(e) => {
                eprintln!("trunkline: cannot create a TCP event loop: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let registry = match registry::Registry::start(cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trunkline: registrar: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut media = if cfg.media.enabled {
        match planes::MediaPlanes::start(&cfg.media) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("trunkline: media plane: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mut routing = match cfg.routing() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trunkline: routing: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = routing.validate() {
        eprintln!("trunkline: routing: {e}");
        return ExitCode::FAILURE;
    }
    // A routing table saved through the management API replaces the file's.
    let mut routing_saved_at = None;
    match controlplane::store::load_runtime(registry.store.path(), "routing") {
        Ok(Some(st)) => {
            let parsed: Result<rest::RoutingJson, String> =
                serde_json::from_str(&st.json).map_err(|e| e.to_string());
            let built = parsed.and_then(|t| match registry.registrar.lock() {
                Ok(reg) => t.to_config(&routing, &reg),
                Err(_) => Err("registrar unavailable".into()),
            });
            match built {
                Ok(r) => {
                    routing = r;
                    routing_saved_at = Some(st.updated_at);
                }
                Err(e) => eprintln!(
                    "trunkline: warning: the routing table saved through the API no longer \
                     holds ({e}); using the configuration file's"
                ),
            }
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("trunkline: {e}");
            return ExitCode::FAILURE;
        }
    }
    let router = controlplane::routing::Router::new(routing.clone()).shared();
    // The API socket: as configured, else api.sock in the runtime directory — or, when a
    // live appliance already answers there (several on one host), api-<SIP port>.sock.
    let (api_socket, api_fallback) = match &cfg.api.socket {
        Some(p) => (p.clone(), None),
        None => match planes::runtime_dir(&cfg.media) {
            Ok(d) => {
                let port = sockets
                    .first()
                    .and_then(|s| s.local_addr().ok())
                    .map_or(0, |a| a.port());
                (d.join("api.sock"), Some(d.join(format!("api-{port}.sock"))))
            }
            Err(e) => {
                eprintln!("trunkline: management API: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let api_tcp = cfg
        .api
        .listen
        .map(|a| (a, cfg.api.token.clone().unwrap_or_default()));
    // A fresh state per attempt: nothing here may keep the registrar alive past `up`, or
    // the store's writer would wait for it forever at the end.
    let start_api = |path: &std::path::Path| {
        rest::Api::start(
            rest::ApiState {
                registrar: Arc::clone(&registry.registrar),
                router: Arc::clone(&router),
                started: std::time::Instant::now(),
                store: registry.store.path().to_path_buf(),
            },
            path,
            api_tcp.clone(),
            Arc::clone(&stop),
        )
    };
    let mut api = start_api(&api_socket);
    if let (Err(e), Some(fallback)) = (&api, &api_fallback) {
        if e.contains("in use") {
            api = start_api(fallback);
        }
    }
    let api = match api {
        Ok(a) => a,
        Err(e) => {
            eprintln!("trunkline: management API: {e}");
            return ExitCode::FAILURE;
        }
    };
    let counters = Arc::new(responder::Counters::default());
    // One proxy for every listener: a call may arrive over TCP and leave over UDP. It names
    // the first UDP listener (else the first TCP one) in its Via and Record-Route.
    let me = sockets
        .first()
        .and_then(|s| s.local_addr().ok())
        .or_else(|| tcp_listeners.first().and_then(|(s, _)| s.local_addr().ok()))
        .unwrap_or_else(|| ([127, 0, 0, 1], 5060).into());
    let media_ip = if cfg.media.address.is_unspecified() {
        me.ip()
    } else {
        cfg.media.address
    };
    let mut proxy =
        controlplane::proxy::Proxy::with_routing(me, Arc::clone(&router), cfg.auth_policy());
    proxy.set_max_calls(cfg.proxy.max_calls);
    let calls = Arc::new(std::sync::Mutex::new(responder::Calls {
        proxy,
        media: media.as_ref().map(|m| {
            media_client::MediaClient::new(m.api.clone(), media_ip).with_timeout(
                std::time::Duration::from_secs(u64::from(cfg.proxy.media_timeout_s)),
            )
        }),
    }));
    let transports = responder::Router {
        udp: sockets.first().and_then(|s| s.try_clone().ok()),
        conns: std::sync::Mutex::new(std::collections::HashMap::new()),
        lanes,
    };
    let shared = Arc::new(responder::Shared::new(
        Arc::clone(&counters),
        Some(Arc::clone(&registry.registrar)),
        Some(Arc::clone(&calls)),
        transports,
    ));
    let limits = tcp::TcpLimits {
        max_connections: cfg.sip.tcp_max_connections,
        idle: std::time::Duration::from_secs(u64::from(cfg.sip.tcp_idle_timeout_s)),
        max_message: cfg.sip.tcp_max_message_bytes,
    };
    let tcp_addrs: Vec<_> = tcp_listeners
        .iter()
        .map(|(l, tls)| (l.local_addr(), if tls.is_some() { "tls" } else { "tcp" }))
        .collect();
    let mut tcp_servers = Vec::new();
    for (lane, ((l, tls), (poll, rx))) in tcp_listeners.into_iter().zip(tcp_polls).enumerate() {
        match tcp::TcpServer::new(poll, l, lane, rx, Arc::clone(&shared), limits, tls) {
            Ok(s) => tcp_servers.push(s),
            Err(e) => {
                eprintln!("trunkline: TCP listener: {e}");
                if let Some(m) = media.take() {
                    m.stop();
                }
                return ExitCode::FAILURE;
            }
        }
    }
    println!("trunkline {}", env!("CARGO_PKG_VERSION"));
    for s in &sockets {
        match s.local_addr() {
            Ok(a) => println!("SIP listening on udp:{a}"),
            Err(e) => eprintln!("trunkline: local_addr: {e}"),
        }
    }
    for (a, name) in tcp_addrs {
        match a {
            Ok(a) => println!("SIP listening on {name}:{a}"),
            Err(e) => eprintln!("trunkline: local_addr: {e}"),
        }
    }
    println!(
        "store {} ({} registration(s) restored)",
        registry.store.path().display(),
        registry.restored
    );
    if let Some(at) = registry.tenants_saved_at {
        println!(
            "tenants and subscribers as changed through the management API (saved at {at}, Unix \
             time); the file's [[tenant]] sections are not used (DELETE /v1/overrides returns to them)"
        );
        if let Ok(reg) = registry.registrar.lock() {
            for t in reg.tenants() {
                let mut users: Vec<&String> = t.subscribers.keys().collect();
                users.sort();
                println!(
                    "tenant {}: subscribers {}",
                    t.domain,
                    users
                        .iter()
                        .map(|u| u.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    if let Some(at) = routing_saved_at {
        println!(
            "routing table as changed through the management API (saved at {at}, Unix time); \
             the file's gateways, dispatchers, routes and DIDs are not used"
        );
    }
    for t in cfg
        .tenants
        .iter()
        .filter(|_| registry.tenants_saved_at.is_none())
    {
        let users: Vec<String> = t
            .subscribers
            .iter()
            .map(|s| {
                if t.domain == "demo.trunkline" {
                    format!("{} (password {})", s.user, s.password)
                } else {
                    s.user.clone()
                }
            })
            .collect();
        println!(
            "tenant {} (also {}): subscribers {}",
            t.domain,
            if t.aliases.is_empty() {
                "-".to_string()
            } else {
                t.aliases.join(", ")
            },
            if users.is_empty() {
                "-".to_string()
            } else {
                users.join(", ")
            }
        );
    }
    println!(
        "routing: {} gateway(s) ({} probed), {} dispatcher(s), {} route(s), {} DID(s); caller auth {}",
        routing.gateways.len(),
        routing.gateways.iter().filter(|g| g.probe).count(),
        routing.dispatchers.len(),
        routing.routes.len(),
        routing.dids.len(),
        cfg.proxy.auth
    );
    println!(
        "management API on unix:{} (REST, JSON: GET /v1/status){}",
        api.socket.display(),
        api.tcp
            .map(|a| format!(" and http://{a} (bearer token)"))
            .unwrap_or_default()
    );
    match &media {
        Some(m) => {
            for l in &m.ready_lines {
                println!("{l}");
            }
            println!(
                "media API on unix:{} (JSON lines: create/update/delete/stats/list/cores/events)",
                m.api.display()
            );
        }
        None => println!("media plane off (media.enabled = false)"),
    }
    println!(
        "This build registers phones (REGISTER with digest auth), proxies calls (forking to \
         every contact of a subscriber, DIDs, outbound routes with gateway failover and \
         OPTIONS health probing) with their media relayed by the dataplane, and answers SIP \
         OPTIONS (200), malformed requests (400/505 naming the defect), unsupported URI schemes \
         (416) and extensions (420), over UDP, TCP and TLS.\nready"
    );
    let mut threads = Vec::new();
    for s in sockets {
        let stop = Arc::clone(&stop);
        let shared = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || {
            responder::serve_udp(s, stop, shared)
        }));
    }
    for server in tcp_servers {
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || server.run(&stop)));
    }
    let mut code = ExitCode::SUCCESS;
    let mut ticks = 0u32;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Proxy timers every 50 ms; housekeeping once a second.
        shared.tick();
        ticks = ticks.wrapping_add(1);
        if ticks % 20 == 0 {
            registry.expire();
            if let Ok(mut c) = calls.lock() {
                c.sweep();
            }
        }
        if let Some(m) = media.as_mut() {
            if let Err(e) = m.supervise() {
                eprintln!("trunkline: {e}; stopping");
                stop.store(true, Ordering::Relaxed);
                code = ExitCode::FAILURE;
            }
        }
        if threads.iter().any(std::thread::JoinHandle::is_finished) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("trunkline: listener failed: {e}");
                stop.store(true, Ordering::Relaxed);
                code = ExitCode::FAILURE;
            }
            Err(_) => code = ExitCode::FAILURE,
        }
    }
    api.join();
    let proxy = calls.lock().map(|c| c.proxy.stats()).unwrap_or_default();
    drop(shared);
    drop(calls);
    let restarts = media.as_ref().map_or(0, |m| m.restarts);
    if let Some(m) = media.take() {
        m.stop();
    }
    let registrations = registry.summary();
    // Dropping the registry commits the last location changes.
    drop(registry);
    println!(
        "stopped: {} {registrations} {} control_plane_restarts={restarts}",
        counters.summary(),
        proxy.summary()
    );
    code
}
