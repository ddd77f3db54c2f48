//! The registrar of `trunkline up`: tenants and subscribers from the configuration, the
//! location service restored from the embedded store, a fresh nonce secret per start.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use controlplane::registrar::{Registrar, RegistrarConfig, Tenant};
use controlplane::store::Store;

use crate::config::Config;

/// The running registrar and its store.
#[derive(Debug)]
pub struct Registry {
    /// Shared with the SIP listener threads.
    pub registrar: Arc<Mutex<Registrar>>,
    /// The store (its writer thread commits location changes).
    pub store: Store,
    /// Bindings restored from the store at start.
    pub restored: usize,
    /// When the tenants came from the store (saved by the API), its save time.
    pub tenants_saved_at: Option<u64>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Where the store lives: the configured file, else /var/lib/trunkline, else a per-user
/// state directory (a non-root user cannot create /var/lib/trunkline).
fn store_path(cfg: &Config) -> Result<PathBuf, String> {
    if let Some(p) = &cfg.store.path {
        return Ok(p.clone());
    }
    let mut dirs = vec![PathBuf::from("/var/lib/trunkline")];
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        dirs.push(PathBuf::from(x).join("trunkline"));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let uid = unsafe { libc::getuid() };
    dirs.push(std::env::temp_dir().join(format!("trunkline-state-{uid}")));
    let mut tried = Vec::new();
    for d in dirs {
        match std::fs::create_dir_all(&d) {
            Ok(()) => return Ok(d.join("trunkline.db")),
            Err(e) => tried.push(format!("{}: {e}", d.display())),
        }
    }
    Err(format!("no directory for the store ({})", tried.join("; ")))
}

fn random_secret() -> Result<Vec<u8>, String> {
    let mut s = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut s))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(s)
}

impl Registry {
    /// Opens the store, builds the registrar and restores the live bindings.
    pub fn start(cfg: &Config) -> Result<Registry, String> {
        let path = store_path(cfg)?;
        let store = Store::open(&path)?;
        let saved = controlplane::store::load_runtime(&path, "tenants")?;
        let from_store: Option<(Vec<crate::rest::TenantJson>, u64)> = match saved {
            Some(st) => match serde_json::from_str(&st.json) {
                Ok(v) => Some((v, st.updated_at)),
                Err(e) => {
                    eprintln!(
                        "trunkline: warning: the tenants saved through the API in {} do not parse ({e}); using the configuration file's",
                        path.display()
                    );
                    None
                }
            },
            None => None,
        };
        let tenants_saved_at = from_store.as_ref().map(|(_, at)| *at);
        let tenants = if let Some((list, _)) = from_store {
            list.into_iter()
                .map(|t| Tenant {
                    domain: t.domain.to_ascii_lowercase(),
                    aliases: t.aliases,
                    subscribers: t.subscribers.into_iter().collect::<HashMap<_, _>>(),
                })
                .collect()
        } else {
            cfg.tenants
                .iter()
                .map(|t| Tenant {
                    domain: t.domain.to_ascii_lowercase(),
                    aliases: t.aliases.iter().map(|a| a.to_ascii_lowercase()).collect(),
                    subscribers: t
                        .subscribers
                        .iter()
                        .map(|s| (s.user.clone(), s.password.clone()))
                        .collect::<HashMap<_, _>>(),
                })
                .collect()
        };
        let r = &cfg.registrar;
        let rc = RegistrarConfig {
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            default_expires: r.default_expires,
            max_contacts: r.max_contacts,
            secret: random_secret()?,
            algorithms: r
                .digest_algorithms
                .iter()
                .filter_map(|a| sip::digest::Algorithm::from_token(a.as_bytes()))
                .collect(),
        };
        let now = unix_now();
        let mut registrar = Registrar::new(rc, tenants, Some(store.writer()), now)?;
        let restored = registrar.restore(store.load_bindings(now.as_secs())?, now.as_secs());
        Ok(Registry {
            registrar: Arc::new(Mutex::new(registrar)),
            store,
            restored,
            tenants_saved_at,
        })
    }

    /// Drops expired bindings (call about once a second).
    pub fn expire(&self) {
        if let Ok(mut r) = self.registrar.lock() {
            r.expire(unix_now().as_secs());
        }
    }

    /// One line of registrar counters.
    pub fn summary(&self) -> String {
        match self.registrar.lock() {
            Ok(r) => {
                let s = r.stats();
                let now = unix_now().as_secs();
                format!(
                    "register_requests={} register_challenges={} register_auth_failures={} \
                     registered={} register_refused={} registered_aors={}",
                    s.requests,
                    s.challenges,
                    s.auth_failures,
                    s.accepted,
                    s.refused,
                    r.registered(now).len()
                )
            }
            Err(_) => "registrar=poisoned".into(),
        }
    }
}
