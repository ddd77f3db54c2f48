//! Call routing beyond the location service: DIDs, gateways (trunks, feature and media
//! servers), dispatcher groups with OPTIONS health probing, and outbound routes by
//! longest-prefix match with per-route number translation — sans-IO, like the proxy that
//! uses it.
//!
//! Numbers are compared normalised: visual separators (`-`, `.`, `(`, `)`) and a leading `+`
//! are removed, so `+44 20`-style DIDs, dialled `0044…` strings and route prefixes meet on
//! digits. A route's translation applies to the normalised number: strip N leading digits,
//! prepend a string, then an optional regular-expression replacement.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use regex::Regex;

/// A next-hop SIP server: a carrier trunk, a feature server, a media server.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Unique name (routes and dispatchers refer to it).
    pub name: String,
    /// Where requests go.
    pub address: SocketAddr,
    /// Probed with OPTIONS; disabled while it does not answer.
    pub probe: bool,
}

/// How a dispatcher group orders its members for a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Members in the configured order; later ones are backups.
    Priority,
    /// Each call starts at the next member, the rest follow as backups.
    RoundRobin,
}

/// A group of gateways that share load (Kamailio's dispatcher).
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// Unique name.
    pub name: String,
    /// Member gateway names.
    pub gateways: Vec<String>,
    /// Ordering per call.
    pub algorithm: Algorithm,
}

/// Where a route sends calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// These gateways in order: primary first, then backups.
    Gateways(Vec<String>),
    /// A dispatcher group.
    Dispatcher(String),
}

/// A number rewrite: strip, prepend, then a regular-expression replacement.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// Leading digits removed.
    pub strip: usize,
    /// Prepended after stripping.
    pub prepend: String,
    /// `(pattern, replacement)` applied last (`$1` style groups).
    pub replace: Option<(Regex, String)>,
}

impl Translation {
    /// The number after the rewrite.
    pub fn apply(&self, number: &str) -> String {
        let stripped = number.get(self.strip..).unwrap_or("");
        let s = format!("{}{}", self.prepend, stripped);
        match &self.replace {
            Some((re, with)) => re.replace(&s, with.as_str()).into_owned(),
            None => s,
        }
    }
}

/// An outbound route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Tenant domain it applies to; `None` for every tenant.
    pub tenant: Option<String>,
    /// Normalised number prefix (empty matches everything).
    pub prefix: String,
    /// Destination.
    pub target: RouteTarget,
    /// Rewrite of the dialled number.
    pub translation: Translation,
}

/// A number owned by a tenant's subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Did {
    /// Normalised number.
    pub number: String,
    /// Tenant domain.
    pub tenant: String,
    /// Subscriber user name.
    pub user: String,
}

/// Health probing and failover timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between OPTIONS probes of a gateway.
    pub probe_interval: Duration,
    /// Consecutive unanswered probes that disable a gateway.
    pub probe_threshold: u32,
    /// How long an INVITE to a destination may go without any response before the next
    /// destination is tried (the destination counts as 408).
    pub failover_timeout: Duration,
    /// How long a destination may ring (provisional, no final) before it is cancelled.
    pub ring_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            probe_interval: Duration::from_secs(10),
            probe_threshold: 2,
            failover_timeout: Duration::from_secs(4),
            ring_timeout: Duration::from_secs(120),
        }
    }
}

/// Everything routing needs, as configured.
#[derive(Debug, Clone, Default)]
pub struct RoutingConfig {
    /// Gateways.
    pub gateways: Vec<Gateway>,
    /// Dispatcher groups.
    pub dispatchers: Vec<Dispatcher>,
    /// Outbound routes.
    pub routes: Vec<Route>,
    /// DIDs.
    pub dids: Vec<Did>,
    /// Header that carries the tenant domain to gateways (e.g. `X-Tenant`); removed from
    /// whatever arrives, so a caller cannot forge it.
    pub tenant_header: Option<String>,
    /// Timers.
    pub timing: Timing,
}

impl RoutingConfig {
    /// Checks references: every route and dispatcher names known gateways or dispatchers,
    /// names are unique.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = HashMap::new();
        for g in &self.gateways {
            if names.insert(g.name.as_str(), ()).is_some() {
                return Err(format!("gateway {:?} is defined twice", g.name));
            }
        }
        let gw = |n: &str| names.contains_key(n);
        let mut ds = HashMap::new();
        for d in &self.dispatchers {
            if ds.insert(d.name.as_str(), ()).is_some() {
                return Err(format!("dispatcher {:?} is defined twice", d.name));
            }
            if d.gateways.is_empty() {
                return Err(format!("dispatcher {:?} has no gateways", d.name));
            }
            if let Some(m) = d.gateways.iter().find(|m| !gw(m)) {
                return Err(format!(
                    "dispatcher {:?} names unknown gateway {m:?}",
                    d.name
                ));
            }
        }
        for r in &self.routes {
            match &r.target {
                RouteTarget::Gateways(list) => {
                    if list.is_empty() {
                        return Err(format!("route {:?} has no gateways", r.prefix));
                    }
                    if let Some(m) = list.iter().find(|m| !gw(m)) {
                        return Err(format!("route {:?} names unknown gateway {m:?}", r.prefix));
                    }
                }
                RouteTarget::Dispatcher(d) if !ds.contains_key(d.as_str()) => {
                    return Err(format!(
                        "route {:?} names unknown dispatcher {d:?}",
                        r.prefix
                    ));
                }
                RouteTarget::Dispatcher(_) => {}
            }
        }
        let mut seen = HashMap::new();
        for d in &self.dids {
            if seen.insert(d.number.as_str(), ()).is_some() {
                return Err(format!("DID {} is defined twice", d.number));
            }
        }
        Ok(())
    }
}

/// Digits of a dialled number: separators and a leading `+` removed. `None` when what is
/// left is not a number (a user name, not a phone number).
pub fn normalise(user: &str) -> Option<String> {
    let s = user.strip_prefix('+').unwrap_or(user);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '0'..='9' | '*' | '#' => out.push(c),
            '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// One destination for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Gateway name.
    pub gateway: String,
    /// Its address.
    pub address: SocketAddr,
}

/// A gateway's health as probing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Usable for new calls.
    pub up: bool,
    /// Probes unanswered in a row.
    pub misses: u32,
    /// Probes answered.
    pub answered: u64,
    /// Times it went down.
    pub downs: u64,
}

#[derive(Debug)]
struct ProbeState {
    health: Health,
    next_probe: Option<Instant>,
    /// Branch of the outstanding probe and when it times out.
    outstanding: Option<(Vec<u8>, Instant)>,
}

/// A probe to send: gateway name, its address, the branch of the OPTIONS.
pub type Probe = (String, SocketAddr, Vec<u8>);

/// A health change, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    /// The gateway stopped answering probes and is disabled.
    Down(String),
    /// The gateway answers again and is enabled.
    Up(String),
}

/// The router shared by the SIP listeners and the management API.
pub type SharedRouter = Arc<Mutex<Router>>;

/// Locks a shared router; a panic elsewhere while it was held leaves its data consistent
/// (every change is one assignment), so a poisoned lock is taken over.
pub fn lock(r: &SharedRouter) -> MutexGuard<'_, Router> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Routing state: the configuration plus gateway health and round-robin positions.
#[derive(Debug)]
pub struct Router {
    config: RoutingConfig,
    probes: HashMap<String, ProbeState>,
    rr: HashMap<String, usize>,
}

impl Router {
    /// A router for a validated configuration. Every gateway starts up; probed ones are
    /// probed at once.
    pub fn new(config: RoutingConfig) -> Router {
        let probes = config
            .gateways
            .iter()
            .map(|g| {
                (
                    g.name.clone(),
                    ProbeState {
                        health: Health {
                            up: true,
                            misses: 0,
                            answered: 0,
                            downs: 0,
                        },
                        next_probe: None,
                        outstanding: None,
                    },
                )
            })
            .collect();
        Router {
            config,
            probes,
            rr: HashMap::new(),
        }
    }

    /// This router behind a lock, to share.
    pub fn shared(self) -> SharedRouter {
        Arc::new(Mutex::new(self))
    }

    /// Replaces the configuration (validated first); gateways that stay keep their health,
    /// new ones start up.
    pub fn replace(&mut self, config: RoutingConfig) -> Result<(), String> {
        config.validate()?;
        let mut probes = HashMap::new();
        for g in &config.gateways {
            let p = self.probes.remove(&g.name).unwrap_or(ProbeState {
                health: Health {
                    up: true,
                    misses: 0,
                    answered: 0,
                    downs: 0,
                },
                next_probe: None,
                outstanding: None,
            });
            probes.insert(g.name.clone(), p);
        }
        self.probes = probes;
        self.rr
            .retain(|d, _| config.dispatchers.iter().any(|x| &x.name == d));
        self.config = config;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// Timers.
    pub fn timing(&self) -> Timing {
        self.config.timing
    }

    /// Health of every gateway, in configuration order.
    pub fn health(&self) -> Vec<(String, Health)> {
        self.config
            .gateways
            .iter()
            .filter_map(|g| self.probes.get(&g.name).map(|p| (g.name.clone(), p.health)))
            .collect()
    }

    /// The DID for a dialled number.
    pub fn did(&self, user: &str) -> Option<&Did> {
        let n = normalise(user)?;
        self.config.dids.iter().find(|d| d.number == n)
    }

    /// The longest-prefix route for a dialled number from `tenant`, and the translated
    /// number. Routes of the tenant win over global ones of the same length.
    pub fn route(&self, tenant: &str, user: &str) -> Option<(&Route, String)> {
        let n = normalise(user)?;
        let best = self
            .config
            .routes
            .iter()
            .filter(|r| r.tenant.as_deref().is_none_or(|t| t == tenant) && n.starts_with(&r.prefix))
            .max_by_key(|r| (r.prefix.len(), r.tenant.is_some()))?;
        let translated = best.translation.apply(&n);
        Some((best, translated))
    }

    /// Where a route's calls go, in the order to try them; gateways that probing disabled
    /// are left out.
    pub fn destinations(&mut self, target: &RouteTarget) -> Vec<Destination> {
        let names: Vec<String> = match target {
            RouteTarget::Gateways(list) => list.clone(),
            RouteTarget::Dispatcher(name) => {
                let Some(d) = self.config.dispatchers.iter().find(|d| &d.name == name) else {
                    return Vec::new();
                };
                let mut list = d.gateways.clone();
                if d.algorithm == Algorithm::RoundRobin && !list.is_empty() {
                    let pos = self.rr.entry(name.clone()).or_insert(0);
                    let start = *pos % list.len();
                    *pos = pos.wrapping_add(1);
                    list.rotate_left(start);
                }
                list
            }
        };
        names
            .iter()
            .filter(|n| self.probes.get(*n).is_none_or(|p| p.health.up))
            .filter_map(|n| {
                self.config
                    .gateways
                    .iter()
                    .find(|g| &g.name == n)
                    .map(|g| Destination {
                        gateway: g.name.clone(),
                        address: g.address,
                    })
            })
            .collect()
    }

    /// The gateway whose address `source` is (a call from a trunk).
    pub fn gateway_at(&self, source: SocketAddr) -> Option<&Gateway> {
        self.config.gateways.iter().find(|g| g.address == source)
    }

    /// Probes to send now: `(gateway, address)` for each probed gateway whose interval has
    /// passed; `branch` names each probe (called once per probe, in order). Probes that went
    /// unanswered for an interval count as misses; returns the health changes too.
    pub fn due_probes(
        &mut self,
        now: Instant,
        mut branch: impl FnMut() -> Vec<u8>,
    ) -> (Vec<Probe>, Vec<HealthChange>) {
        let timing = self.config.timing;
        let mut send = Vec::new();
        let mut changes = Vec::new();
        for g in &self.config.gateways {
            if !g.probe {
                continue;
            }
            let Some(p) = self.probes.get_mut(&g.name) else {
                continue;
            };
            if let Some((_, deadline)) = &p.outstanding {
                if now >= *deadline {
                    p.outstanding = None;
                    p.health.misses += 1;
                    if p.health.up && p.health.misses >= timing.probe_threshold.max(1) {
                        p.health.up = false;
                        p.health.downs += 1;
                        changes.push(HealthChange::Down(g.name.clone()));
                    }
                }
            }
            if p.outstanding.is_none() && p.next_probe.is_none_or(|t| now >= t) {
                let b = branch();
                p.outstanding = Some((b.clone(), now + timing.probe_interval));
                p.next_probe = Some(now + timing.probe_interval);
                send.push((g.name.clone(), g.address, b));
            }
        }
        (send, changes)
    }

    /// A response to a probe: the gateway answers. Returns the gateway's name (and whether
    /// it came back up) when `branch` was one of ours.
    pub fn probe_answered(&mut self, branch: &[u8], status: u16) -> Option<(String, bool)> {
        let (name, p) = self
            .probes
            .iter_mut()
            .find(|(_, p)| p.outstanding.as_ref().is_some_and(|(b, _)| b == branch))?;
        if status < 200 {
            return Some((name.clone(), false));
        }
        p.outstanding = None;
        // Any final answer but 503 means the server is there and willing (a feature server
        // may well answer OPTIONS with 404 or 405); 503 means it refuses work.
        if status == 503 {
            p.health.misses += 1;
            return Some((name.clone(), false));
        }
        p.health.misses = 0;
        p.health.answered += 1;
        let came_up = !p.health.up;
        p.health.up = true;
        Some((name.clone(), came_up))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn gw(name: &str, port: u16, probe: bool) -> Gateway {
        Gateway {
            name: name.into(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            probe,
        }
    }

    fn config() -> RoutingConfig {
        RoutingConfig {
            gateways: vec![
                gw("a", 5001, true),
                gw("b", 5002, true),
                gw("c", 5003, false),
            ],
            dispatchers: vec![Dispatcher {
                name: "fs".into(),
                gateways: vec!["a".into(), "b".into(), "c".into()],
                algorithm: Algorithm::RoundRobin,
            }],
            routes: vec![
                Route {
                    tenant: None,
                    prefix: "".into(),
                    target: RouteTarget::Gateways(vec!["c".into()]),
                    translation: Translation::default(),
                },
                Route {
                    tenant: None,
                    prefix: "44".into(),
                    target: RouteTarget::Gateways(vec!["a".into(), "b".into()]),
                    translation: Translation {
                        strip: 2,
                        prepend: "0".into(),
                        replace: None,
                    },
                },
                Route {
                    tenant: Some("acme".into()),
                    prefix: "4420".into(),
                    target: RouteTarget::Dispatcher("fs".into()),
                    translation: Translation {
                        strip: 0,
                        prepend: String::new(),
                        replace: Some((Regex::new("^44(.*)$").unwrap(), "+44-$1".into())),
                    },
                },
            ],
            dids: vec![Did {
                number: "442071234567".into(),
                tenant: "acme".into(),
                user: "alice".into(),
            }],
            tenant_header: Some("X-Tenant".into()),
            timing: Timing::default(),
        }
    }

    #[test]
    fn normalises_numbers() {
        assert_eq!(normalise("+44-20-7123").as_deref(), Some("44207123"));
        assert_eq!(
            normalise("(020) 7").as_deref(),
            None,
            "space is not a SIP user char"
        );
        assert_eq!(normalise("(020)7").as_deref(), Some("0207"));
        assert_eq!(normalise("alice"), None);
        assert_eq!(normalise("+"), None);
    }

    #[test]
    fn longest_prefix_with_tenant_preference_and_translation() {
        let r = Router::new(config());
        let (route, n) = r.route("other", "+442071234").unwrap();
        assert_eq!(route.prefix, "44");
        assert_eq!(n, "02071234");
        let (route, n) = r.route("acme", "+442071234").unwrap();
        assert_eq!(route.prefix, "4420");
        assert_eq!(n, "+44-2071234");
        let (route, n) = r.route("acme", "1555").unwrap();
        assert_eq!(route.prefix, "");
        assert_eq!(n, "1555");
        assert!(r.route("acme", "bob").is_none());
        assert_eq!(r.did("+44 (20)").map(|d| d.user.as_str()), None);
        assert_eq!(
            r.did("+44-20-7123-4567").map(|d| d.user.as_str()),
            Some("alice")
        );
    }

    #[test]
    fn dispatcher_round_robin_and_health() {
        let mut r = Router::new(config());
        let t = RouteTarget::Dispatcher("fs".into());
        let names = |d: Vec<Destination>| d.into_iter().map(|d| d.gateway).collect::<Vec<_>>();
        assert_eq!(names(r.destinations(&t)), ["a", "b", "c"]);
        assert_eq!(names(r.destinations(&t)), ["b", "c", "a"]);
        // Probe: a and b are probed; b never answers.
        let now = Instant::now();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("z9hG4bK-p{n}").into_bytes()
        };
        let (sent, ch) = r.due_probes(now, &mut next);
        assert_eq!(sent.len(), 2);
        assert!(ch.is_empty());
        assert_eq!(r.probe_answered(&sent[0].2, 200), Some(("a".into(), false)));
        let later = now + Duration::from_secs(10);
        let (sent2, ch) = r.due_probes(later, &mut next);
        assert!(ch.is_empty(), "one miss is below the threshold of 2");
        assert_eq!(sent2.len(), 2);
        assert_eq!(
            r.probe_answered(&sent2[0].2, 404),
            Some(("a".into(), false))
        );
        let (_, ch) = r.due_probes(later + Duration::from_secs(10), &mut next);
        assert_eq!(ch, [HealthChange::Down("b".into())]);
        assert_eq!(names(r.destinations(&t)), ["c", "a"]);
        assert_eq!(
            names(r.destinations(&RouteTarget::Gateways(vec!["b".into(), "c".into()]))),
            ["c"]
        );
        // b answers again.
        let (sent3, _) = r.due_probes(later + Duration::from_secs(20), &mut next);
        let b_probe = sent3.iter().find(|s| s.0 == "b").unwrap();
        assert_eq!(r.probe_answered(&b_probe.2, 200), Some(("b".into(), true)));
        assert!(r.health().iter().all(|(_, h)| h.up));
        assert_eq!(r.probe_answered(b"z9hG4bK-unknown", 200), None);
    }

    #[test]
    fn validation_names_the_broken_reference() {
        let mut c = config();
        c.routes[0].target = RouteTarget::Gateways(vec!["zz".into()]);
        assert!(c.validate().unwrap_err().contains("unknown gateway \"zz\""));
        let mut c = config();
        c.dispatchers[0].gateways.push("nope".into());
        assert!(c.validate().unwrap_err().contains("nope"));
        assert!(config().validate().is_ok());
    }
}
