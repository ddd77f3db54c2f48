//! `trunkline.toml`: what an installer scripts. This build knows the SIP listeners and the
//! media plane; later issues add tenants, routing and billing keys. Unknown keys are refused so that a
//! typo never silently does nothing, and every error names the file, line and column.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The embedded default: one box, loopback.
pub const DEFAULT_CONFIG: &str = r#"# Trunkline embedded default: one box, loopback only.
[[sip.listener]]
transport = "udp"
address = "127.0.0.1"
port = 5060

# SIP over TCP as well (RFC 3261 §18): uncomment. Limits live in [sip]:
# tcp_max_connections, tcp_idle_timeout_s, tcp_max_message_bytes.
# [[sip.listener]]
# transport = "tcp"
# address = "127.0.0.1"
# port = 5060

# SIP over TLS (RFC 3261 §26.2): uncomment, with a PEM certificate chain and its key.
# [[sip.listener]]
# transport = "tls"
# address = "127.0.0.1"
# port = 5061
# cert = "/etc/trunkline/sip.crt"
# key = "/etc/trunkline/sip.key"

[media]
address = "127.0.0.1"
port_min = 20000
port_max = 23999

# A demo tenant: phones register as alice or bob at 127.0.0.1 (or demo.trunkline).
[[tenant]]
domain = "demo.trunkline"
aliases = ["127.0.0.1", "localhost"]

[[tenant.subscriber]]
user = "alice"
password = "alice-demo-4711"

[[tenant.subscriber]]
user = "bob"
password = "bob-demo-4711"
"#;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// SIP signalling.
    pub sip: SipConfig,
    /// The media plane (dataplane and control-plane processes); on with defaults when the
    /// section is absent.
    #[serde(default)]
    pub media: MediaConfig,
    /// SIP domains and their subscribers.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
    /// Registrar limits.
    #[serde(default)]
    pub registrar: RegistrarSection,
    /// The embedded store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Proxy behaviour: caller authentication, tenant header, timers.
    #[serde(default)]
    pub proxy: ProxySection,
    /// Next hops: carrier trunks, feature and media servers.
    #[serde(default, rename = "gateway")]
    pub gateways: Vec<GatewayConfig>,
    /// Groups of gateways sharing load.
    #[serde(default, rename = "dispatcher")]
    pub dispatchers: Vec<DispatcherConfig>,
    /// Outbound routes (longest prefix wins).
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Numbers owned by subscribers.
    #[serde(default, rename = "did")]
    pub dids: Vec<DidConfig>,
    /// The management REST API.
    #[serde(default)]
    pub api: ApiSection,
}

/// The management REST API.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Unix socket (default: api.sock in the runtime directory, /run/trunkline).
    pub socket: Option<PathBuf>,
    /// Also listen on TCP here (needs `token`).
    pub listen: Option<SocketAddr>,
    /// Bearer token for TCP clients (at least 16 characters).
    pub token: Option<String>,
}

/// Proxy behaviour.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Which calls must authenticate (407): "none", "outbound" (calls through a gateway;
    /// the default) or "all" (every call not from a gateway).
    pub auth: String,
    /// Header carrying the tenant domain to gateways ("" for none).
    pub tenant_header: String,
    /// Milliseconds a destination may stay silent before the next is tried.
    pub failover_timeout_ms: u64,
    /// Seconds a destination may ring before it is cancelled.
    pub ring_timeout_s: u64,
    /// Milliseconds between OPTIONS probes of a probed gateway.
    pub probe_interval_ms: u64,
    /// Unanswered probes in a row that disable a gateway.
    pub probe_threshold: u32,
    /// Seconds without media on a leg of an answered call before the call is ended with a
    /// BYE to both parties (0: never).
    pub media_timeout_s: u32,
    /// Most calls up at once; beyond it new INVITEs get 503 with Retry-After (0: no limit).
    pub max_calls: usize,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            auth: "outbound".into(),
            tenant_header: "X-Tenant".into(),
            failover_timeout_ms: 4000,
            ring_timeout_s: 120,
            probe_interval_ms: 10_000,
            probe_threshold: 2,
            media_timeout_s: 60,
            max_calls: 0,
        }
    }
}

/// A next hop.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Unique name.
    pub name: String,
    /// `ip:port` (no DNS: names are resolved by whoever writes the file).
    pub address: SocketAddr,
    /// Probe with OPTIONS and take out of service while it does not answer.
    #[serde(default)]
    pub probe: bool,
}

/// A dispatcher group.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Unique name.
    pub name: String,
    /// Member gateways.
    pub gateways: Vec<toml::Spanned<String>>,
    /// "round-robin" (default) or "priority".
    #[serde(default = "round_robin")]
    pub algorithm: String,
}

fn round_robin() -> String {
    "round-robin".into()
}

/// An outbound route.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Tenant domain it applies to (absent: every tenant).
    pub tenant: Option<toml::Spanned<String>>,
    /// Number prefix, digits (a leading + and separators are ignored).
    pub prefix: toml::Spanned<String>,
    /// Gateways, primary first.
    #[serde(default)]
    pub gateways: Vec<toml::Spanned<String>>,
    /// Or a dispatcher group.
    pub dispatcher: Option<toml::Spanned<String>>,
    /// Leading digits removed from the dialled number.
    #[serde(default)]
    pub strip: usize,
    /// Prepended after stripping.
    #[serde(default)]
    pub prepend: String,
    /// Regular expression applied last (with `replace`).
    #[serde(default, rename = "match")]
    pub pattern: Option<toml::Spanned<String>>,
    /// Replacement for `match` ($1 … groups).
    #[serde(default)]
    pub replace: String,
}

/// A DID.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DidConfig {
    /// The number (+ and separators allowed).
    pub number: toml::Spanned<String>,
    /// Tenant domain.
    pub tenant: toml::Spanned<String>,
    /// Subscriber of that tenant.
    pub user: toml::Spanned<String>,
}

/// One SIP domain.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The domain (and digest realm).
    pub domain: String,
    /// Other names and addresses meaning this domain (e.g. the box's address).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Subscribers.
    #[serde(default, rename = "subscriber")]
    pub subscribers: Vec<SubscriberConfig>,
}

/// One subscriber of a tenant.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubscriberConfig {
    /// User name (the user part of the AoR and the digest username).
    pub user: String,
    /// Password.
    pub password: String,
}

/// Registrar limits.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarSection {
    /// Shortest registration accepted, seconds (423 below).
    pub min_expires: u32,
    /// Longest registration granted, seconds.
    pub max_expires: u32,
    /// Expiry when a REGISTER names none, seconds.
    pub default_expires: u32,
    /// Most contacts per address of record.
    pub max_contacts: usize,
    /// Digest algorithms challenged with, in order (MD5, SHA-256, SHA-512-256). MD5 alone by
    /// default, as Kamailio does: many phones answer only the first challenge, and some
    /// (baresip 1.0's libre, sipp) give up on a REGISTER whose 401 carries any challenge
    /// they cannot compute, even alongside an MD5 one.
    pub digest_algorithms: Vec<String>,
}

impl Default for RegistrarSection {
    fn default() -> Self {
        RegistrarSection {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            digest_algorithms: vec!["MD5".into()],
        }
    }
}

/// The embedded store.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SQLite file (default /var/lib/trunkline/trunkline.db; when that cannot be created,
    /// $XDG_STATE_HOME/trunkline or the temp dir).
    pub path: Option<PathBuf>,
}

/// Which I/O backend the dataplane cores use.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// io_uring where the kernel allows it, else epoll (the dataplane says why).
    #[default]
    Auto,
    /// io_uring only: refuse to start without it.
    Uring,
    /// epoll (mio).
    Mio,
}

impl MediaBackend {
    /// The dataplane's `--backend` value.
    pub fn arg(self) -> &'static str {
        match self {
            MediaBackend::Auto => "auto",
            MediaBackend::Uring => "uring",
            MediaBackend::Mio => "mio",
        }
    }
}

/// The media plane.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Start the media plane (false: SIP only).
    pub enabled: bool,
    /// Address the media ports bind to (the address put in rewritten SDP).
    pub address: IpAddr,
    /// First media port (each session takes four: RTP and RTCP of two legs).
    pub port_min: u16,
    /// Last media port.
    pub port_max: u16,
    /// Dataplane cores (default: every CPU but one).
    pub cores: Option<u16>,
    /// I/O backend.
    pub backend: MediaBackend,
    /// io_uring: a kernel submission-polling thread per core that sleeps after this many
    /// idle milliseconds (off by default: it costs a CPU per core while busy).
    pub sqpoll_idle_ms: Option<u32>,
    /// Where the planes' Unix sockets live (default /run/trunkline; when that cannot be
    /// created, $XDG_RUNTIME_DIR/trunkline or the temp dir).
    pub runtime_dir: Option<PathBuf>,
    /// Name of the shared-memory region between the planes (/dev/shm/NAME).
    pub region: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            enabled: true,
            address: IpAddr::from([127, 0, 0, 1]),
            port_min: 20_000,
            port_max: 23_999,
            cores: None,
            backend: MediaBackend::Auto,
            sqpoll_idle_ms: None,
            runtime_dir: None,
            region: "trunkline".into(),
        }
    }
}

/// SIP signalling settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Sockets to listen on.
    #[serde(rename = "listener")]
    pub listeners: Vec<Listener>,
    /// Most open TCP connections per TCP listener; one more is accepted and closed at once
    /// (counted as `tcp_refused`).
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: usize,
    /// A TCP connection that sends nothing (not even a CRLF CRLF keepalive) for this many
    /// seconds is closed. RFC 5626 §4.4.1 clients ping every 95–120 s by default.
    #[serde(default = "default_tcp_idle_timeout_s")]
    pub tcp_idle_timeout_s: u32,
    /// Largest SIP message accepted on a stream (header section and body each, and the
    /// whole message): beyond it the connection gets 400 and is closed.
    #[serde(default = "default_tcp_max_message_bytes")]
    pub tcp_max_message_bytes: usize,
    /// Kernel receive and send buffer of each UDP listener, bytes (8 MiB: a burst of
    /// datagrams waits there while the listener is busy; the kernel default of ~208 KiB
    /// drops SIP under bursts long before the CPU is busy).
    #[serde(default = "default_udp_buffer_bytes")]
    pub udp_buffer_bytes: usize,
}

fn default_udp_buffer_bytes() -> usize {
    8 << 20
}

fn default_tcp_max_connections() -> usize {
    20_000
}

fn default_tcp_idle_timeout_s() -> u32 {
    300
}

fn default_tcp_max_message_bytes() -> usize {
    65_536
}

/// Transport of a listener.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP (RFC 3261 §18; one mio event loop per listener).
    Tcp,
    /// SIP over TLS (RFC 3261 §26.2; a TCP listener whose connections run TLS, with the
    /// listener's `cert` and `key`).
    Tls,
}

/// One SIP listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Transport (with its place in the file, so a refusal names the line).
    pub transport: toml::Spanned<Transport>,
    /// Local address.
    pub address: IpAddr,
    /// Local port (0 picks a free one; the chosen port is printed).
    pub port: u16,
    /// TLS only: the certificate chain, PEM (end-entity certificate first).
    #[serde(default)]
    pub cert: Option<toml::Spanned<PathBuf>>,
    /// TLS only: the private key of the certificate, PEM (PKCS#8, RSA or EC).
    #[serde(default)]
    pub key: Option<toml::Spanned<PathBuf>>,
}

impl Listener {
    /// The transport.
    pub fn transport(&self) -> Transport {
        *self.transport.get_ref()
    }

    /// Socket address to bind.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// For a TLS listener: its certificate and key files (both present after [`parse`]).
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        match (self.transport(), &self.cert, &self.key) {
            (Transport::Tls, Some(c), Some(k)) => Some((c.get_ref(), k.get_ref())),
            _ => None,
        }
    }
}

/// `origin:line:column` of a byte offset.
fn at(text: &str, origin: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{origin}:{line}:{col}")
}

impl Config {
    /// The routing configuration for the proxy (the file was validated by [`parse`]).
    pub fn routing(&self) -> Result<controlplane::routing::RoutingConfig, String> {
        use controlplane::routing as r;
        let p = &self.proxy;
        let mut routes = Vec::new();
        for rc in &self.routes {
            let target = match &rc.dispatcher {
                Some(d) => r::RouteTarget::Dispatcher(d.get_ref().clone()),
                None => r::RouteTarget::Gateways(
                    rc.gateways.iter().map(|g| g.get_ref().clone()).collect(),
                ),
            };
            let replace = match &rc.pattern {
                Some(m) => Some((
                    regex::Regex::new(m.get_ref()).map_err(|e| e.to_string())?,
                    rc.replace.clone(),
                )),
                None => None,
            };
            routes.push(r::Route {
                tenant: rc.tenant.as_ref().map(|t| t.get_ref().to_ascii_lowercase()),
                prefix: r::normalise(rc.prefix.get_ref()).unwrap_or_default(),
                target,
                translation: r::Translation {
                    strip: rc.strip,
                    prepend: rc.prepend.clone(),
                    replace,
                },
            });
        }
        Ok(r::RoutingConfig {
            gateways: self
                .gateways
                .iter()
                .map(|g| r::Gateway {
                    name: g.name.clone(),
                    address: g.address,
                    probe: g.probe,
                })
                .collect(),
            dispatchers: self
                .dispatchers
                .iter()
                .map(|d| r::Dispatcher {
                    name: d.name.clone(),
                    gateways: d.gateways.iter().map(|g| g.get_ref().clone()).collect(),
                    algorithm: if d.algorithm == "priority" {
                        r::Algorithm::Priority
                    } else {
                        r::Algorithm::RoundRobin
                    },
                })
                .collect(),
            routes,
            dids: self
                .dids
                .iter()
                .map(|d| r::Did {
                    number: r::normalise(d.number.get_ref()).unwrap_or_default(),
                    tenant: d.tenant.get_ref().to_ascii_lowercase(),
                    user: d.user.get_ref().clone(),
                })
                .collect(),
            tenant_header: (!p.tenant_header.is_empty()).then(|| p.tenant_header.clone()),
            timing: r::Timing {
                probe_interval: std::time::Duration::from_millis(p.probe_interval_ms),
                probe_threshold: p.probe_threshold,
                failover_timeout: std::time::Duration::from_millis(p.failover_timeout_ms),
                ring_timeout: std::time::Duration::from_secs(p.ring_timeout_s),
            },
        })
    }

    /// The proxy's caller-authentication policy.
    pub fn auth_policy(&self) -> controlplane::proxy::AuthPolicy {
        match self.proxy.auth.as_str() {
            "none" => controlplane::proxy::AuthPolicy::None,
            "all" => controlplane::proxy::AuthPolicy::All,
            _ => controlplane::proxy::AuthPolicy::Outbound,
        }
    }
}

/// Checks the routing sections; errors name the line.
fn check_routing(cfg: &Config, text: &str, origin: &str) -> Result<(), String> {
    let p = &cfg.proxy;
    if !matches!(p.auth.as_str(), "none" | "outbound" | "all") {
        return Err(format!(
            "{origin}: proxy: auth {:?}: use \"none\", \"outbound\" or \"all\"",
            p.auth
        ));
    }
    if !p.tenant_header.is_empty()
        && !p
            .tenant_header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "{origin}: proxy: tenant_header {:?} is not a header name",
            p.tenant_header
        ));
    }
    if p.failover_timeout_ms < 100 || p.probe_interval_ms < 100 || p.ring_timeout_s == 0 {
        return Err(format!(
            "{origin}: proxy: failover_timeout_ms and probe_interval_ms must be >= 100, ring_timeout_s >= 1"
        ));
    }
    let gateways: std::collections::HashSet<&str> =
        cfg.gateways.iter().map(|g| g.name.as_str()).collect();
    if gateways.len() != cfg.gateways.len() {
        return Err(format!("{origin}: gateway: a name is used twice"));
    }
    let dispatchers: std::collections::HashSet<&str> =
        cfg.dispatchers.iter().map(|d| d.name.as_str()).collect();
    if dispatchers.len() != cfg.dispatchers.len() {
        return Err(format!("{origin}: dispatcher: a name is used twice"));
    }
    let known_gw = |g: &toml::Spanned<String>| -> Result<(), String> {
        if gateways.contains(g.get_ref().as_str()) {
            Ok(())
        } else {
            Err(format!(
                "{}: unknown gateway {:?}",
                at(text, origin, g.span().start),
                g.get_ref()
            ))
        }
    };
    for d in &cfg.dispatchers {
        if d.gateways.is_empty() {
            return Err(format!("{origin}: dispatcher {:?} has no gateways", d.name));
        }
        if !matches!(d.algorithm.as_str(), "round-robin" | "priority") {
            return Err(format!(
                "{origin}: dispatcher {:?}: algorithm {:?}: use \"round-robin\" or \"priority\"",
                d.name, d.algorithm
            ));
        }
        d.gateways.iter().try_for_each(known_gw)?;
    }
    let tenant_known = |t: &str| cfg.tenants.iter().any(|x| x.domain.eq_ignore_ascii_case(t));
    for r in &cfg.routes {
        let here = at(text, origin, r.prefix.span().start);
        let prefix = r.prefix.get_ref();
        if !prefix.is_empty() && crate_normalise(prefix).is_none() {
            return Err(format!("{here}: prefix {prefix:?} is not a number"));
        }
        match (&r.dispatcher, r.gateways.is_empty()) {
            (Some(_), false) | (None, true) => {
                return Err(format!(
                    "{here}: a route names either gateways or a dispatcher (one of them)"
                ))
            }
            (Some(d), true) if !dispatchers.contains(d.get_ref().as_str()) => {
                return Err(format!(
                    "{}: unknown dispatcher {:?}",
                    at(text, origin, d.span().start),
                    d.get_ref()
                ))
            }
            _ => {}
        }
        r.gateways.iter().try_for_each(known_gw)?;
        if let Some(t) = &r.tenant {
            if !tenant_known(t.get_ref()) {
                return Err(format!(
                    "{}: unknown tenant {:?}",
                    at(text, origin, t.span().start),
                    t.get_ref()
                ));
            }
        }
        if let Some(m) = &r.pattern {
            if let Err(e) = regex::Regex::new(m.get_ref()) {
                return Err(format!(
                    "{}: match {:?}: {e}",
                    at(text, origin, m.span().start),
                    m.get_ref()
                ));
            }
        }
    }
    let mut numbers = std::collections::HashSet::new();
    for d in &cfg.dids {
        let here = at(text, origin, d.number.span().start);
        let Some(n) = crate_normalise(d.number.get_ref()) else {
            return Err(format!(
                "{here}: DID {:?} is not a number",
                d.number.get_ref()
            ));
        };
        if !numbers.insert(n) {
            return Err(format!(
                "{here}: DID {:?} is listed twice",
                d.number.get_ref()
            ));
        }
        let Some(t) = cfg
            .tenants
            .iter()
            .find(|t| t.domain.eq_ignore_ascii_case(d.tenant.get_ref()))
        else {
            return Err(format!(
                "{}: unknown tenant {:?}",
                at(text, origin, d.tenant.span().start),
                d.tenant.get_ref()
            ));
        };
        if !t.subscribers.iter().any(|s| &s.user == d.user.get_ref()) {
            return Err(format!(
                "{}: {:?} is not a subscriber of {}",
                at(text, origin, d.user.span().start),
                d.user.get_ref(),
                t.domain
            ));
        }
    }
    Ok(())
}

fn crate_normalise(n: &str) -> Option<String> {
    controlplane::routing::normalise(n)
}

/// Parses and checks a configuration. `origin` names the source in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, String> {
    let cfg: Config = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    if cfg.sip.listeners.is_empty() {
        return Err(format!(
            "{origin}: [sip] needs at least one [[sip.listener]]"
        ));
    }
    for (i, l) in cfg.sip.listeners.iter().enumerate() {
        let line = |offset: usize| {
            text[..offset.min(text.len())]
                .bytes()
                .filter(|&b| b == b'\n')
                .count()
                + 1
        };
        if l.transport() == Transport::Tls {
            if l.cert.is_none() || l.key.is_none() {
                return Err(format!(
                    "{origin}: line {}: sip.listener[{i}]: transport \"tls\" needs cert = \"PATH\" \
                     (PEM certificate chain) and key = \"PATH\" (PEM private key)",
                    line(l.transport.span().start)
                ));
            }
        } else {
            for (name, v) in [("cert", &l.cert), ("key", &l.key)] {
                if let Some(v) = v {
                    return Err(format!(
                        "{origin}: line {}: sip.listener[{i}]: {name} is only for transport \"tls\"",
                        line(v.span().start)
                    ));
                }
            }
        }
    }
    let s = &cfg.sip;
    if s.tcp_max_connections == 0 || s.tcp_max_connections > 1_000_000 {
        return Err(format!(
            "{origin}: sip: tcp_max_connections {} must be 1..=1000000",
            s.tcp_max_connections
        ));
    }
    if s.tcp_idle_timeout_s == 0 || s.tcp_idle_timeout_s > 86_400 {
        return Err(format!(
            "{origin}: sip: tcp_idle_timeout_s {} must be 1..=86400",
            s.tcp_idle_timeout_s
        ));
    }
    if !(1024..=1 << 20).contains(&s.tcp_max_message_bytes) {
        return Err(format!(
            "{origin}: sip: tcp_max_message_bytes {} must be 1024..=1048576",
            s.tcp_max_message_bytes
        ));
    }
    let r = &cfg.registrar;
    if r.min_expires == 0 || r.min_expires > r.max_expires || r.default_expires < r.min_expires {
        return Err(format!(
            "{origin}: registrar: need 0 < min_expires ({}) <= default_expires ({}) and min_expires <= max_expires ({})",
            r.min_expires, r.default_expires, r.max_expires
        ));
    }
    if r.digest_algorithms.is_empty()
        || r.digest_algorithms
            .iter()
            .any(|a| sip::digest::Algorithm::from_token(a.as_bytes()).is_none())
    {
        return Err(format!(
            "{origin}: registrar: digest_algorithms {:?}: name one or more of MD5, SHA-256, SHA-512-256 (and -sess variants)",
            r.digest_algorithms
        ));
    }
    let mut domains = std::collections::HashSet::new();
    for (i, t) in cfg.tenants.iter().enumerate() {
        let names = std::iter::once(&t.domain).chain(&t.aliases);
        for n in names {
            if n.is_empty()
                || n.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(format!("{origin}: tenant[{i}]: bad domain or alias {n:?}"));
            }
            if !domains.insert(n.to_ascii_lowercase()) {
                return Err(format!(
                    "{origin}: tenant[{i}]: {n:?} is already the domain or an alias of another tenant"
                ));
            }
        }
        let mut users = std::collections::HashSet::new();
        for s in &t.subscribers {
            if s.user.is_empty() || !users.insert(s.user.as_str()) {
                return Err(format!(
                    "{origin}: tenant {}: subscriber {:?} empty or listed twice",
                    t.domain, s.user
                ));
            }
        }
    }
    let m = &cfg.media;
    if m.port_min >= m.port_max || m.port_max - m.port_min < 3 {
        return Err(format!(
            "{origin}: media: port_min {} .. port_max {} holds no session (a session takes four ports)",
            m.port_min, m.port_max
        ));
    }
    if m.cores == Some(0) {
        return Err(format!("{origin}: media: cores must be at least 1"));
    }
    if m.region.is_empty()
        || m.region.len() > 200
        || !m
            .region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || m.region.starts_with('.')
    {
        return Err(format!(
            "{origin}: media: region {:?} must be 1-200 of [A-Za-z0-9._-], not starting with '.'",
            m.region
        ));
    }
    check_routing(&cfg, text, origin)?;
    if cfg.api.listen.is_some() && cfg.api.token.as_ref().is_none_or(|t| t.len() < 16) {
        return Err(format!(
            "{origin}: api: listen needs a token of at least 16 characters (TCP clients send it as a bearer token)"
        ));
    }
    Ok(cfg)
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parses() {
        let c = parse(DEFAULT_CONFIG, "default").unwrap();
        assert_eq!(
            c.sip.listeners[0].socket_addr(),
            "127.0.0.1:5060".parse().unwrap()
        );
    }

    #[test]
    fn media_defaults_and_checks() {
        let c = parse(
            "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 5060\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.media, MediaConfig::default());
        let d = parse(DEFAULT_CONFIG, "default").unwrap();
        assert!(d.media.enabled);
        assert_eq!((d.media.port_min, d.media.port_max), (20_000, 23_999));
        let base = "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 5060\n[media]\n";
        let c = parse(
            &format!("{base}port_min = 30000\nport_max = 30999\ncores = 2\nbackend = \"mio\"\nregion = \"t1\"\nruntime_dir = \"/tmp/x\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.media.backend, MediaBackend::Mio);
        assert_eq!(c.media.cores, Some(2));
        let e = parse(
            &format!("{base}port_min = 30000\nport_max = 20000\n"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("holds no session"), "{e}");
        let e = parse(&format!("{base}backend = \"dpdk\"\n"), "t.toml").unwrap_err();
        assert!(e.contains("line 6"), "{e}");
        let e = parse(&format!("{base}region = \"../etc\"\n"), "t.toml").unwrap_err();
        assert!(e.contains("region"), "{e}");
        let e = parse(&format!("{base}port = 1\n"), "t.toml").unwrap_err();
        assert!(e.contains("line 6") && e.contains("port"), "{e}");
    }

    #[test]
    fn tenants_and_registrar_are_checked() {
        let d = parse(DEFAULT_CONFIG, "default").unwrap();
        assert_eq!(d.tenants.len(), 1);
        assert_eq!(d.tenants[0].subscribers.len(), 2);
        assert_eq!(d.registrar.digest_algorithms, vec!["MD5"]);
        let base = "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 5060\n";
        let e = parse(
            &format!(
                "{base}[[tenant]]\ndomain = \"a\"\n[[tenant]]\ndomain = \"b\"\naliases = [\"A\"]\n"
            ),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("already"), "{e}");
        let e = parse(
            &format!("{base}[[tenant]]\ndomain = \"a\"\n[[tenant.subscriber]]\nuser = \"x\"\npassword = \"1\"\n[[tenant.subscriber]]\nuser = \"x\"\npassword = \"2\"\n"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = parse(
            &format!("{base}[registrar]\ndigest_algorithms = [\"SHA-1\"]\n"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("digest_algorithms"), "{e}");
        let e = parse(&format!("{base}[registrar]\nmin_expires = 0\n"), "t.toml").unwrap_err();
        assert!(e.contains("min_expires"), "{e}");
        let e = parse(&format!("{base}[[tenant]]\ndomian = \"a\"\n"), "t.toml").unwrap_err();
        assert!(e.contains("line 6") && e.contains("domian"), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("[sip]\n[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.300\"\nport = 5060\n", "t.toml")
            .unwrap_err();
        assert!(e.contains("t.toml") && e.contains("line 4"), "{e}");
        let e = parse("[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 5060\nprot = 1\n", "t.toml")
            .unwrap_err();
        assert!(e.contains("line 5") && e.contains("prot"), "{e}");
    }

    #[test]
    fn tls_listeners_need_cert_and_key() {
        let udp = "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 5060\n";
        let e = parse(
            &format!(
                "{udp}[[sip.listener]]\ntransport = \"tls\"\naddress = \"127.0.0.1\"\nport = 5061\n"
            ),
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.contains("t.toml") && e.contains("line 6") && e.contains("cert") && e.contains("key"),
            "{e}"
        );
        let e = parse(
            &format!(
                "{udp}[[sip.listener]]\ntransport = \"tls\"\naddress = \"127.0.0.1\"\nport = 5061\n\
                 cert = \"c.pem\"\n"
            ),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("line 6") && e.contains("key"), "{e}");
        let c = parse(
            &format!(
                "{udp}[[sip.listener]]\ntransport = \"tls\"\naddress = \"127.0.0.1\"\nport = 5061\n\
                 cert = \"/etc/t/c.pem\"\nkey = \"/etc/t/k.pem\"\n"
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.sip.listeners[1].transport(), Transport::Tls);
        assert_eq!(
            c.sip.listeners[1].tls_files(),
            Some((Path::new("/etc/t/c.pem"), Path::new("/etc/t/k.pem")))
        );
        assert_eq!(c.sip.listeners[0].tls_files(), None);
        // cert/key on a plain listener: refused at their line.
        let e = parse(
            "[[sip.listener]]\ntransport = \"tcp\"\naddress = \"127.0.0.1\"\nport = 5060\n\
             key = \"k.pem\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.contains("line 5") && e.contains("key is only for transport \"tls\""),
            "{e}"
        );
        let e = parse(&format!("{udp}cert = \"c.pem\"\n"), "t.toml").unwrap_err();
        assert!(e.contains("line 5") && e.contains("cert is only"), "{e}");
    }

    #[test]
    fn tcp_listeners_and_limits() {
        let c = parse(
            "[[sip.listener]]\ntransport = \"tcp\"\naddress = \"127.0.0.1\"\nport = 5060\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.sip.listeners[0].transport(), Transport::Tcp);
        assert_eq!(c.sip.tcp_max_connections, 20_000);
        assert_eq!(c.sip.tcp_idle_timeout_s, 300);
        assert_eq!(c.sip.tcp_max_message_bytes, 65_536);
        let base = "[sip]\ntcp_max_connections = 10\ntcp_idle_timeout_s = 5\n\
                    tcp_max_message_bytes = 4096\n[[sip.listener]]\ntransport = \"tcp\"\n\
                    address = \"127.0.0.1\"\nport = 5060\n";
        let c = parse(base, "t.toml").unwrap();
        assert_eq!(
            (
                c.sip.tcp_max_connections,
                c.sip.tcp_idle_timeout_s,
                c.sip.tcp_max_message_bytes
            ),
            (10, 5, 4096)
        );
        let e = parse(
            &base.replace("tcp_max_connections = 10", "tcp_max_conections = 10"),
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("tcp_max_conections"),
            "{e}"
        );
        let e = parse(
            &base.replace("tcp_idle_timeout_s = 5", "tcp_idle_timeout_s = \"5\""),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        let e = parse(
            &base.replace("tcp_max_connections = 10", "tcp_max_connections = 0"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("tcp_max_connections"), "{e}");
        let e = parse(
            &base.replace("tcp_idle_timeout_s = 5", "tcp_idle_timeout_s = 0"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("tcp_idle_timeout_s"), "{e}");
        let e = parse(
            &base.replace(
                "tcp_max_message_bytes = 4096",
                "tcp_max_message_bytes = 100",
            ),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("tcp_max_message_bytes"), "{e}");
        let e = parse(
            &base.replace("transport = \"tcp\"", "transport = \"sctp\""),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("line 6"), "{e}");
    }

    #[test]
    fn routing_sections_parse_and_bad_references_name_the_line() {
        let base = "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 5060\n\
[[tenant]]\ndomain = \"t.example\"\n[[tenant.subscriber]]\nuser = \"alice\"\npassword = \"pw\"\n\
[[gateway]]\nname = \"a\"\naddress = \"127.0.0.1:5070\"\nprobe = true\n\
[[gateway]]\nname = \"b\"\naddress = \"127.0.0.1:5071\"\n\
[[dispatcher]]\nname = \"fs\"\ngateways = [\"a\", \"b\"]\nalgorithm = \"priority\"\n";
        // Lines 1-20 are the base.
        let good = format!(
            "{base}[[route]]\nprefix = \"+44\"\ngateways = [\"a\", \"b\"]\nstrip = 2\nprepend = \"0\"\n\
             [[route]]\ntenant = \"t.example\"\nprefix = \"*\"\ndispatcher = \"fs\"\nmatch = \"^(.*)$\"\nreplace = \"x$1\"\n\
             [[did]]\nnumber = \"+1-555-0100\"\ntenant = \"t.example\"\nuser = \"alice\"\n\
             [proxy]\nauth = \"all\"\ntenant_header = \"X-Tenant-Id\"\n"
        );
        let c = parse(&good, "t.toml").unwrap();
        let r = c.routing().unwrap();
        r.validate().unwrap();
        assert_eq!(r.routes[0].prefix, "44");
        assert_eq!(r.routes[0].translation.apply("4420"), "020");
        assert_eq!(r.routes[1].translation.apply("*97"), "x*97");
        assert_eq!(r.dids[0].number, "15550100");
        assert_eq!(r.tenant_header.as_deref(), Some("X-Tenant-Id"));
        assert_eq!(c.auth_policy(), controlplane::proxy::AuthPolicy::All);
        assert_eq!(
            r.dispatchers[0].algorithm,
            controlplane::routing::Algorithm::Priority
        );

        let bad = |extra: &str| parse(&format!("{base}{extra}"), "t.toml").unwrap_err();
        let e = bad("[[route]]\nprefix = \"1\"\ngateways = [\"a\", \"nope\"]\n");
        assert!(
            e.contains("t.toml:23:") && e.contains("unknown gateway \"nope\""),
            "{e}"
        );
        let e = bad("[[route]]\nprefix = \"1\"\ndispatcher = \"zz\"\n");
        assert!(e.contains("t.toml:23:") && e.contains("zz"), "{e}");
        let e = bad("[[route]]\nprefix = \"1\"\n");
        assert!(e.contains("t.toml:22:") && e.contains("either"), "{e}");
        let e = bad("[[route]]\nprefix = \"1x\"\ngateways = [\"a\"]\n");
        assert!(e.contains("not a number"), "{e}");
        let e = bad("[[route]]\nprefix = \"1\"\ngateways = [\"a\"]\nmatch = \"(\"\n");
        assert!(e.contains("t.toml:24:") && e.contains("match"), "{e}");
        let e = bad("[[did]]\nnumber = \"100\"\ntenant = \"t.example\"\nuser = \"carol\"\n");
        assert!(e.contains("t.toml:24:") && e.contains("carol"), "{e}");
        let e = bad("[[did]]\nnumber = \"100\"\ntenant = \"other\"\nuser = \"alice\"\n");
        assert!(
            e.contains("t.toml:23:") && e.contains("unknown tenant"),
            "{e}"
        );
        let e = bad("[proxy]\nauth = \"some\"\n");
        assert!(e.contains("auth"), "{e}");
        let e = bad("[[gateway]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n");
        assert!(e.contains("twice"), "{e}");
    }
}
