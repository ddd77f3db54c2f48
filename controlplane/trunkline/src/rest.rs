//! The management REST API (JSON over HTTP/1.1): tenants, subscribers, registrations,
//! gateways with their health, and the routing table (gateways, dispatchers, routes, DIDs),
//! read and changed while calls run.
//!
//! It listens on a Unix socket (mode 0660: root and the socket's group) and, when
//! `[api] listen` is set, on TCP where every request must carry `Authorization: Bearer
//! TOKEN`. Changes apply at once to new calls and registrations; the routing table is
//! replaced whole (`PUT /v1/routing`), validated first, so it is never half-changed.
//! Every change is saved in the store before the API answers (a snapshot of the tenants or
//! of the routing table); at the next start the saved snapshots replace the file's
//! `[[tenant]]` and routing sections (`up` says so), until `DELETE /v1/overrides` forgets
//! them.
//!
//! | Method and path                                  | Does                                    |
//! |--------------------------------------------------|-----------------------------------------|
//! | `GET /v1/status`                                 | version, uptime, counts                 |
//! | `GET /v1/tenants`                                | tenants with aliases and subscriber names |
//! | `PUT /v1/tenants/{domain}` `{"aliases":[…]}`     | add a tenant or change its aliases      |
//! | `DELETE /v1/tenants/{domain}`                    | remove it (and its registrations)       |
//! | `PUT /v1/tenants/{domain}/subscribers/{user}` `{"password":…}` | add or change a subscriber |
//! | `DELETE /v1/tenants/{domain}/subscribers/{user}` | remove it (and its registrations)       |
//! | `GET /v1/registrations`                          | every live binding                      |
//! | `DELETE /v1/registrations/{aor}`                 | kick an AoR's bindings                  |
//! | `GET /v1/gateways`                               | gateways with health                    |
//! | `GET /v1/routing`                                | gateways, dispatchers, routes, DIDs     |
//! | `PUT /v1/routing`                                | replace them (same shape as GET)        |
//! | `DELETE /v1/overrides`                           | forget saved changes (next start: the file) |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controlplane::registrar::Registrar;
use controlplane::routing::{self as r, SharedRouter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What the API reads and changes.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The registrar (tenants, subscribers, location).
    pub registrar: Arc<Mutex<Registrar>>,
    /// The router shared with the proxies.
    pub router: SharedRouter,
    /// When `up` started.
    pub started: Instant,
    /// The store, where changes are saved.
    pub store: PathBuf,
}

/// A tenant as saved in the store (with passwords, like the configuration file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantJson {
    /// Domain.
    pub domain: String,
    /// Aliases.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// User → password.
    #[serde(default)]
    pub subscribers: std::collections::BTreeMap<String, String>,
}

/// A gateway as the API shows and takes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayJson {
    /// Unique name.
    pub name: String,
    /// `ip:port`.
    pub address: SocketAddr,
    /// Probed with OPTIONS.
    #[serde(default)]
    pub probe: bool,
}

/// A dispatcher group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DispatcherJson {
    /// Unique name.
    pub name: String,
    /// Member gateways.
    pub gateways: Vec<String>,
    /// "round-robin" or "priority".
    #[serde(default = "rr")]
    pub algorithm: String,
}

fn rr() -> String {
    "round-robin".into()
}

/// A route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteJson {
    /// Tenant domain (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Number prefix.
    pub prefix: String,
    /// Gateways, primary first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Or a dispatcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatcher: Option<String>,
    /// Digits stripped.
    #[serde(default)]
    pub strip: usize,
    /// Prepended.
    #[serde(default)]
    pub prepend: String,
    /// Regular expression applied last.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Its replacement.
    #[serde(default)]
    pub replace: String,
}

/// A DID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DidJson {
    /// Number.
    pub number: String,
    /// Tenant domain.
    pub tenant: String,
    /// Subscriber.
    pub user: String,
}

/// The routing table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoutingJson {
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<GatewayJson>,
    /// Dispatchers.
    #[serde(default)]
    pub dispatchers: Vec<DispatcherJson>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<RouteJson>,
    /// DIDs.
    #[serde(default)]
    pub dids: Vec<DidJson>,
}

impl RoutingJson {
    /// The table of a routing configuration.
    pub fn from_config(c: &r::RoutingConfig) -> RoutingJson {
        RoutingJson {
            gateways: c
                .gateways
                .iter()
                .map(|g| GatewayJson {
                    name: g.name.clone(),
                    address: g.address,
                    probe: g.probe,
                })
                .collect(),
            dispatchers: c
                .dispatchers
                .iter()
                .map(|d| DispatcherJson {
                    name: d.name.clone(),
                    gateways: d.gateways.clone(),
                    algorithm: match d.algorithm {
                        r::Algorithm::Priority => "priority".into(),
                        r::Algorithm::RoundRobin => "round-robin".into(),
                    },
                })
                .collect(),
            routes: c
                .routes
                .iter()
                .map(|x| {
                    let (gateways, dispatcher) = match &x.target {
                        r::RouteTarget::Gateways(g) => (g.clone(), None),
                        r::RouteTarget::Dispatcher(d) => (Vec::new(), Some(d.clone())),
                    };
                    RouteJson {
                        tenant: x.tenant.clone(),
                        prefix: x.prefix.clone(),
                        gateways,
                        dispatcher,
                        strip: x.translation.strip,
                        prepend: x.translation.prepend.clone(),
                        pattern: x.translation.replace.as_ref().map(|(re, _)| re.to_string()),
                        replace: x
                            .translation
                            .replace
                            .as_ref()
                            .map(|(_, w)| w.clone())
                            .unwrap_or_default(),
                    }
                })
                .collect(),
            dids: c
                .dids
                .iter()
                .map(|d| DidJson {
                    number: d.number.clone(),
                    tenant: d.tenant.clone(),
                    user: d.user.clone(),
                })
                .collect(),
        }
    }

    /// This table over `base` (whose tenant header and timers stay); checked against the
    /// registrar's tenants and subscribers.
    pub fn to_config(
        &self,
        base: &r::RoutingConfig,
        registrar: &Registrar,
    ) -> Result<r::RoutingConfig, String> {
        let mut routes = Vec::new();
        for (i, x) in self.routes.iter().enumerate() {
            let prefix = if x.prefix.is_empty() {
                String::new()
            } else {
                r::normalise(&x.prefix)
                    .ok_or_else(|| format!("routes[{i}]: prefix {:?} is not a number", x.prefix))?
            };
            let target = match (&x.dispatcher, x.gateways.is_empty()) {
                (Some(d), true) => r::RouteTarget::Dispatcher(d.clone()),
                (None, false) => r::RouteTarget::Gateways(x.gateways.clone()),
                _ => {
                    return Err(format!(
                        "routes[{i}]: name either gateways or a dispatcher (one of them)"
                    ))
                }
            };
            let replace = match &x.pattern {
                Some(p) => Some((
                    regex::Regex::new(p).map_err(|e| format!("routes[{i}]: match: {e}"))?,
                    x.replace.clone(),
                )),
                None => None,
            };
            if let Some(t) = &x.tenant {
                if registrar.tenant_domain(t.as_bytes()).is_none() {
                    return Err(format!("routes[{i}]: unknown tenant {t:?}"));
                }
            }
            routes.push(r::Route {
                tenant: x.tenant.as_ref().map(|t| t.to_ascii_lowercase()),
                prefix,
                target,
                translation: r::Translation {
                    strip: x.strip,
                    prepend: x.prepend.clone(),
                    replace,
                },
            });
        }
        let mut dids = Vec::new();
        for (i, d) in self.dids.iter().enumerate() {
            let number = r::normalise(&d.number)
                .ok_or_else(|| format!("dids[{i}]: {:?} is not a number", d.number))?;
            let tenant = d.tenant.to_ascii_lowercase();
            if !registrar.is_subscriber(&tenant, &d.user) {
                return Err(format!(
                    "dids[{i}]: {:?} is not a subscriber of {tenant:?}",
                    d.user
                ));
            }
            dids.push(r::Did {
                number,
                tenant,
                user: d.user.clone(),
            });
        }
        let mut dispatchers = Vec::new();
        for d in &self.dispatchers {
            let algorithm = match d.algorithm.as_str() {
                "round-robin" => r::Algorithm::RoundRobin,
                "priority" => r::Algorithm::Priority,
                other => {
                    return Err(format!(
                        "dispatcher {:?}: algorithm {other:?}: use round-robin or priority",
                        d.name
                    ))
                }
            };
            dispatchers.push(r::Dispatcher {
                name: d.name.clone(),
                gateways: d.gateways.clone(),
                algorithm,
            });
        }
        let c = r::RoutingConfig {
            gateways: self
                .gateways
                .iter()
                .map(|g| r::Gateway {
                    name: g.name.clone(),
                    address: g.address,
                    probe: g.probe,
                })
                .collect(),
            dispatchers,
            routes,
            dids,
            tenant_header: base.tenant_header.clone(),
            timing: base.timing,
        };
        c.validate()?;
        Ok(c)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantBody {
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberBody {
    password: String,
}

/// A response: status and JSON body.
type Reply = (u16, Value);

fn error(code: u16, msg: impl Into<String>) -> Reply {
    (code, json!({ "error": msg.into() }))
}

fn unix_now() -> u64 {
    crate::registry::unix_now().as_secs()
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| error(400, format!("bad JSON body: {e}")))
}

/// Percent-decodes one path segment.
fn decode(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&seg[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ApiState {
    fn registrar(&self) -> std::sync::MutexGuard<'_, Registrar> {
        self.registrar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers one request; a change is saved in the store before the answer.
    pub fn handle(&self, method: &str, url: &str, body: &[u8]) -> Reply {
        let (code, v) = self.route(method, url, body);
        if !(200..300).contains(&code) || method == "GET" {
            return (code, v);
        }
        let path = url.split('?').next().unwrap_or("");
        let saved = if path.starts_with("/v1/tenants") {
            self.save_tenants()
        } else if path.starts_with("/v1/routing") {
            self.save_routing()
        } else {
            Ok(())
        };
        match saved {
            Ok(()) => (code, v),
            Err(e) => error(500, format!("applied, but not saved in the store: {e}")),
        }
    }

    fn save_tenants(&self) -> Result<(), String> {
        let list: Vec<TenantJson> = self
            .registrar()
            .tenants()
            .iter()
            .map(|t| TenantJson {
                domain: t.domain.clone(),
                aliases: t.aliases.clone(),
                subscribers: t
                    .subscribers
                    .iter()
                    .map(|(u, p)| (u.clone(), p.clone()))
                    .collect(),
            })
            .collect();
        let json = serde_json::to_string(&list).map_err(|e| e.to_string())?;
        controlplane::store::save_runtime(&self.store, "tenants", &json, unix_now())
    }

    fn save_routing(&self) -> Result<(), String> {
        let t = RoutingJson::from_config(r::lock(&self.router).config());
        let json = serde_json::to_string(&t).map_err(|e| e.to_string())?;
        controlplane::store::save_runtime(&self.store, "routing", &json, unix_now())
    }

    fn route(&self, method: &str, url: &str, body: &[u8]) -> Reply {
        let path = url.split('?').next().unwrap_or("");
        let segs: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        match (method, segs.as_slice()) {
            ("GET", ["v1", "status"]) => self.status(),
            ("GET", ["v1", "tenants"]) => self.tenants(),
            ("PUT", ["v1", "tenants", domain]) => match parse_body::<TenantBody>(body) {
                Ok(b) => {
                    let now = crate::registry::unix_now();
                    match self.registrar().upsert_tenant(domain, b.aliases, now) {
                        Ok(true) => (201, json!({ "created": domain })),
                        Ok(false) => (200, json!({ "updated": domain })),
                        Err(e) => error(409, e),
                    }
                }
                Err(e) => e,
            },
            ("DELETE", ["v1", "tenants", domain]) => {
                let in_use = crate::rest::tenant_in_use(&self.router, domain);
                if let Some(what) = in_use {
                    return error(409, format!("tenant {domain} is used by {what}"));
                }
                if self.registrar().remove_tenant(domain) {
                    (200, json!({ "deleted": domain }))
                } else {
                    error(404, format!("no tenant {domain}"))
                }
            }
            ("PUT", ["v1", "tenants", domain, "subscribers", user]) => {
                match parse_body::<SubscriberBody>(body) {
                    Ok(b) => match self.registrar().set_subscriber(domain, user, &b.password) {
                        Ok(true) => (201, json!({ "created": format!("{user}@{domain}") })),
                        Ok(false) => (200, json!({ "updated": format!("{user}@{domain}") })),
                        Err(e) if e.starts_with("no tenant") => error(404, e),
                        Err(e) => error(400, e),
                    },
                    Err(e) => e,
                }
            }
            ("DELETE", ["v1", "tenants", domain, "subscribers", user]) => {
                let did = r::lock(&self.router)
                    .config()
                    .dids
                    .iter()
                    .find(|d| d.tenant == domain.to_ascii_lowercase() && d.user == *user)
                    .map(|d| d.number.clone());
                if let Some(n) = did {
                    return error(409, format!("{user}@{domain} owns DID {n}"));
                }
                if self.registrar().remove_subscriber(domain, user) {
                    (200, json!({ "deleted": format!("{user}@{domain}") }))
                } else {
                    error(404, format!("no subscriber {user}@{domain}"))
                }
            }
            ("GET", ["v1", "registrations"]) => {
                let now = unix_now();
                let list: Vec<Value> = self
                    .registrar()
                    .bindings(now)
                    .into_iter()
                    .map(|(aor, b)| {
                        json!({
                            "aor": aor,
                            "contact": b.contact,
                            "expires_in": b.expires_at.saturating_sub(now),
                            "q": f64::from(b.q_millis) / 1000.0,
                            "received": b.received.to_string(),
                            "user_agent": b.user_agent,
                        })
                    })
                    .collect();
                (200, Value::Array(list))
            }
            ("DELETE", ["v1", "registrations", aor]) => {
                let n = self.registrar().kick(aor);
                if n == 0 {
                    error(404, format!("no registration for {aor}"))
                } else {
                    (200, json!({ "aor": aor, "removed": n }))
                }
            }
            ("GET", ["v1", "gateways"]) => {
                let router = r::lock(&self.router);
                let health = router.health();
                let list: Vec<Value> = router
                    .config()
                    .gateways
                    .iter()
                    .map(|g| {
                        let h = health.iter().find(|(n, _)| *n == g.name).map(|(_, h)| *h);
                        json!({
                            "name": g.name,
                            "address": g.address.to_string(),
                            "probe": g.probe,
                            "up": h.is_none_or(|h| h.up),
                            "probe_misses": h.map_or(0, |h| h.misses),
                            "probes_answered": h.map_or(0, |h| h.answered),
                            "times_down": h.map_or(0, |h| h.downs),
                        })
                    })
                    .collect();
                (200, Value::Array(list))
            }
            ("GET", ["v1", "routing"]) => {
                let t = RoutingJson::from_config(r::lock(&self.router).config());
                (200, serde_json::to_value(t).unwrap_or(Value::Null))
            }
            ("PUT", ["v1", "routing"]) => match parse_body::<RoutingJson>(body) {
                Ok(t) => {
                    let base = r::lock(&self.router).config().clone();
                    let cfg = {
                        let reg = self.registrar();
                        t.to_config(&base, &reg)
                    };
                    match cfg.and_then(|c| r::lock(&self.router).replace(c)) {
                        Ok(()) => (
                            200,
                            json!({
                                "gateways": t.gateways.len(),
                                "dispatchers": t.dispatchers.len(),
                                "routes": t.routes.len(),
                                "dids": t.dids.len(),
                            }),
                        ),
                        Err(e) => error(400, e),
                    }
                }
                Err(e) => e,
            },
            ("DELETE", ["v1", "overrides"]) => {
                match controlplane::store::clear_runtime(&self.store) {
                    Ok(n) => (
                        200,
                        json!({ "cleared": n, "note": "running state unchanged; the next start reads the configuration file alone" }),
                    ),
                    Err(e) => error(500, e),
                }
            }
            (_, ["v1", ..]) => error(404, format!("no such endpoint: {method} {path}")),
            _ => error(404, "the API lives under /v1/ (see GET /v1/status)"),
        }
    }

    fn status(&self) -> Reply {
        let now = unix_now();
        let (tenants, subscribers, registrations) = {
            let reg = self.registrar();
            let t = reg.tenants();
            (
                t.len(),
                t.iter().map(|t| t.subscribers.len()).sum::<usize>(),
                reg.bindings(now).len(),
            )
        };
        let router = r::lock(&self.router);
        let health = router.health();
        (
            200,
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": self.started.elapsed().as_secs(),
                "tenants": tenants,
                "subscribers": subscribers,
                "registrations": registrations,
                "gateways": health.len(),
                "gateways_down": health.iter().filter(|(_, h)| !h.up).count(),
                "routes": router.config().routes.len(),
                "dids": router.config().dids.len(),
            }),
        )
    }

    fn tenants(&self) -> Reply {
        let reg = self.registrar();
        let list: Vec<Value> = reg
            .tenants()
            .iter()
            .map(|t| {
                let mut users: Vec<&String> = t.subscribers.keys().collect();
                users.sort();
                json!({ "domain": t.domain, "aliases": t.aliases, "subscribers": users })
            })
            .collect();
        (200, Value::Array(list))
    }
}

/// What in the routing table refers to a tenant.
fn tenant_in_use(router: &SharedRouter, domain: &str) -> Option<String> {
    let d = domain.to_ascii_lowercase();
    let r = r::lock(router);
    if let Some(did) = r.config().dids.iter().find(|x| x.tenant == d) {
        return Some(format!("DID {}", did.number));
    }
    r.config()
        .routes
        .iter()
        .find(|x| x.tenant.as_deref() == Some(d.as_str()))
        .map(|x| format!("route {:?}", x.prefix))
}

/// A running API server.
#[derive(Debug)]
pub struct Api {
    /// The Unix socket.
    pub socket: PathBuf,
    /// The TCP address, when configured.
    pub tcp: Option<SocketAddr>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn serve(server: tiny_http::Server, state: ApiState, token: Option<String>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let mut req = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => continue,
        };
        let authorised = token.as_ref().is_none_or(|t| {
            req.headers().iter().any(|h| {
                h.field.equiv("Authorization")
                    && h.value.as_str().strip_prefix("Bearer ") == Some(t.as_str())
            })
        });
        let (code, body) = if authorised {
            let mut body = Vec::new();
            let limited = std::io::Read::take(req.as_reader(), 1 << 20);
            let mut limited = limited;
            match std::io::Read::read_to_end(&mut limited, &mut body) {
                Ok(_) => state.handle(&req.method().to_string(), req.url(), &body),
                Err(e) => error(400, format!("cannot read the body: {e}")),
            }
        } else {
            error(401, "missing or wrong bearer token")
        };
        let text = serde_json::to_string_pretty(&body).unwrap_or_default() + "\n";
        let mut resp = tiny_http::Response::from_string(text).with_status_code(code);
        if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        {
            resp = resp.with_header(h);
        }
        let _ = req.respond(resp);
    }
}

impl Api {
    /// Starts the API on `socket` (and `tcp` with `token`). A socket file left by a dead
    /// appliance is replaced; one a live appliance answers on is refused.
    pub fn start(
        state: ApiState,
        socket: &Path,
        tcp: Option<(SocketAddr, String)>,
        stop: Arc<AtomicBool>,
    ) -> Result<Api, String> {
        if socket.exists() {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Err(format!(
                    "{} is in use by another running appliance",
                    socket.display()
                ));
            }
            let _ = std::fs::remove_file(socket);
        }
        let unix = tiny_http::Server::http_unix(socket)
            .map_err(|e| format!("API socket {}: {e}", socket.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| format!("API socket {}: {e}", socket.display()))?;
        let mut threads = Vec::new();
        let mut tcp_addr = None;
        if let Some((addr, token)) = tcp {
            let server =
                tiny_http::Server::http(addr).map_err(|e| format!("API on {addr}: {e}"))?;
            tcp_addr = server.server_addr().to_ip();
            let (st, stop2) = (state.clone(), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                serve(server, st, Some(token), stop2)
            }));
        }
        threads.push(std::thread::spawn(move || serve(unix, state, None, stop)));
        Ok(Api {
            socket: socket.to_path_buf(),
            tcp: tcp_addr,
            threads,
        })
    }

    /// Waits for the server threads (after `stop` was set) and removes the socket.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_path_segments() {
        assert_eq!(decode("alice%40demo.trunkline"), "alice@demo.trunkline");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("plain"), "plain");
    }
}
