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
    /// SIP over TLS (not in this build).
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
        if l.transport() == Transport::Tls {
            let line = text[..l.transport.span().start.min(text.len())]
                .bytes()
                .filter(|&b| b == b'\n')
                .count()
                + 1;
            return Err(format!(
                "{origin}: line {line}: sip.listener[{i}]: transport \"tls\" is not available in \
                 this build (UDP and TCP are; TLS needs certificates and arrives later)"
            ));
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
        let e = parse(
            "[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 5060\n\
             [[sip.listener]]\ntransport = \"tls\"\naddress = \"127.0.0.1\"\nport = 5061\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.contains("line 6") && e.contains("tls") && e.contains("not available"),
            "{e}"
        );
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
}
