//! `trunkline.toml`: what an installer scripts. This build knows the SIP listeners; later
//! issues add media, tenants, routing and billing keys. Unknown keys are refused so that a
//! typo never silently does nothing, and every error names the file, line and column.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The embedded default: one box, loopback.
pub const DEFAULT_CONFIG: &str = r#"# Trunkline embedded default: one box, loopback only.
[[sip.listener]]
transport = "udp"
address = "127.0.0.1"
port = 5060
"#;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// SIP signalling.
    pub sip: SipConfig,
}

/// SIP signalling settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Sockets to listen on.
    #[serde(rename = "listener")]
    pub listeners: Vec<Listener>,
}

/// Transport of a listener.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP (not in this build).
    Tcp,
    /// SIP over TLS (not in this build).
    Tls,
}

/// One SIP listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Transport.
    pub transport: Transport,
    /// Local address.
    pub address: IpAddr,
    /// Local port (0 picks a free one; the chosen port is printed).
    pub port: u16,
}

impl Listener {
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
        if l.transport != Transport::Udp {
            return Err(format!(
                "{origin}: sip.listener[{i}]: transport {:?} is not available in this build \
                 (UDP only; TCP and TLS arrive with the SIP transports of the control-plane issue)",
                l.transport
            ));
        }
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
    fn errors_name_the_line() {
        let e = parse("[sip]\n[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.300\"\nport = 5060\n", "t.toml")
            .unwrap_err();
        assert!(e.contains("t.toml") && e.contains("line 4"), "{e}");
        let e = parse("[[sip.listener]]\ntransport = \"udp\"\naddress = \"127.0.0.1\"\nport = 5060\nprot = 1\n", "t.toml")
            .unwrap_err();
        assert!(e.contains("line 5") && e.contains("prot"), "{e}");
        let e = parse(
            "[[sip.listener]]\ntransport = \"tcp\"\naddress = \"127.0.0.1\"\nport = 5060\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("not available"), "{e}");
    }
}
