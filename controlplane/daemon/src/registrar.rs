//! The registrar (RFC 3261 §10.3) with digest authentication per subscriber, sans-IO: it
//! takes a parsed REGISTER, its source address and the time, writes the response, and keeps
//! the location service (address of record → bindings) in memory. Every change also goes to
//! the store's writer thread ([`crate::store`]), which commits in batches off the SIP path;
//! [`Registrar::restore`] loads the bindings back after a restart.
//!
//! What it does: tenants (SIP domains, with aliases such as the box's own address) and their
//! subscribers; challenges with stateless nonces (SHA-256 and MD5, `qop=auth`, replay
//! protection — `sip::digest`), refuses a wrong password (403 after a bad response, counted)
//! and an identity that does not match the To user (403); several contacts per AoR with q
//! and per-contact expiry; `Expires` / `expires=` with a floor (423 with `Min-Expires`) and a
//! ceiling; unregistering one contact (`expires=0`) or all (`Contact: *` with `Expires: 0`);
//! the Call-ID/CSeq ordering rule (500 for an out-of-order REGISTER); the source address of
//! every binding (NAT: received/rport) for routing to it; 200 OK listing every current
//! binding with its remaining time.
//!
//! What it does not do (yet): GRUU, Path, outbound (RFC 5626) flows, keepalive-driven expiry,
//! subscribers changed at runtime (they come from the configuration).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_channel::Sender;
use sip::digest::{self, Challenger, ChallengerConfig, Credential, Credentials, VerifyError};
use sip::edit::ResponseBuilder;
use sip::{Contact, HeaderName, Message, Method};

use crate::store::{LocationWrite, StoredBinding};

/// One SIP domain and its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The domain (also the digest realm).
    pub domain: String,
    /// Other host names and addresses that mean this domain in a Request-URI or To.
    pub aliases: Vec<String>,
    /// User name → password.
    pub subscribers: HashMap<String, String>,
}

/// Registrar limits.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Shortest registration accepted (423 below it).
    pub min_expires: u32,
    /// Longest registration granted (longer requests are cut to it).
    pub max_expires: u32,
    /// Expiry when the REGISTER names none.
    pub default_expires: u32,
    /// Most bindings per AoR (more: 403).
    pub max_contacts: usize,
    /// Key for the stateless nonces (≥ 16 bytes, random per installation).
    pub secret: Vec<u8>,
    /// Digest algorithms challenged with, one WWW-Authenticate each, in this order. The
    /// default offers MD5 then SHA-256 (RFC 8760); `trunkline up` offers MD5 alone unless
    /// configured otherwise, because some phones refuse a 401 with a challenge they cannot
    /// compute.
    pub algorithms: Vec<digest::Algorithm>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            secret: Vec::new(),
            algorithms: vec![digest::Algorithm::Md5, digest::Algorithm::Sha256],
        }
    }
}

/// One registered contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Contact URI as registered.
    pub contact: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Call-ID of the REGISTER that installed it.
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// q-value in thousandths (1000 when absent).
    pub q_millis: u16,
    /// Where the REGISTER came from: requests for this contact go here (NAT).
    pub received: SocketAddr,
    /// User-Agent.
    pub user_agent: String,
}

/// What one REGISTER came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 401 with a challenge (no or stale credentials).
    Challenged,
    /// 200: bindings after the change.
    Registered(usize),
    /// 403 (wrong password, unknown user, identity, domain), 423, 500, 400: the status sent.
    Refused(u16),
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrarStats {
    /// REGISTERs seen.
    pub requests: u64,
    /// 401 challenges sent.
    pub challenges: u64,
    /// Credentials refused (wrong response, forged nonce, replay, identity mismatch).
    pub auth_failures: u64,
    /// 200 OKs.
    pub accepted: u64,
    /// Other refusals (400, 403 domain, 423, 500, too many contacts).
    pub refused: u64,
    /// Bindings dropped because they expired.
    pub expired: u64,
    /// 407 challenges sent to callers.
    pub call_challenges: u64,
    /// Callers' credentials refused (403).
    pub call_auth_failures: u64,
}

/// What a request's digest credentials prove.
enum Proof {
    /// Valid for the user.
    Valid,
    /// None for our realm (or a stale nonce): challenge.
    Missing {
        /// The nonce had expired.
        stale: bool,
    },
    /// Refused with this status and reason.
    Refused(u16, &'static [u8]),
}

/// What [`Registrar::authenticate_caller`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerAuth {
    /// Valid credentials of this subscriber (`user`, tenant `domain`).
    Authenticated {
        /// Tenant domain.
        domain: String,
        /// Subscriber.
        user: String,
    },
    /// No or stale credentials: `out` holds a 407 with a challenge.
    Challenged,
    /// Wrong credentials, another identity, a domain not served: `out` holds a 403.
    Denied,
}

#[derive(Debug)]
struct TenantState {
    tenant: Tenant,
    challenger: Challenger,
}

/// The registrar and its location service.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    tenants: Vec<TenantState>,
    location: HashMap<String, Vec<Binding>>,
    writes: Option<Sender<LocationWrite>>,
    stats: RegistrarStats,
}

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The digest challenger of one tenant (its realm is the domain).
fn challenger_for(
    config: &RegistrarConfig,
    domain: &str,
    now: Duration,
) -> Result<Challenger, String> {
    let mut c = ChallengerConfig::new(domain.to_string(), config.secret.clone());
    // qop=auth only: auth-int needs the body, which REGISTER rarely has and many phones
    // get wrong; RFC 2069 (no qop) has no replay protection.
    c.qop.auth_int = false;
    c.accept_rfc2069 = false;
    c.algorithms.clone_from(&config.algorithms);
    Challenger::new(c, now).map_err(|e| format!("tenant {domain}: digest: {e}"))
}

impl Registrar {
    /// A registrar for `tenants`; `now` is the time since the Unix epoch; changes go to
    /// `writes` when given.
    pub fn new(
        config: RegistrarConfig,
        tenants: Vec<Tenant>,
        writes: Option<Sender<LocationWrite>>,
        now: Duration,
    ) -> Result<Registrar, String> {
        let mut states = Vec::with_capacity(tenants.len());
        for t in tenants {
            let challenger = challenger_for(&config, &t.domain, now)?;
            states.push(TenantState {
                tenant: t,
                challenger,
            });
        }
        Ok(Registrar {
            config,
            tenants: states,
            location: HashMap::new(),
            writes,
            stats: RegistrarStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> RegistrarStats {
        self.stats
    }

    /// The tenant serving `host`, by domain or alias (case-insensitive).
    fn tenant_index(&self, host: &[u8]) -> Option<usize> {
        let h = lower(host);
        self.tenants
            .iter()
            .position(|t| t.tenant.domain == h || t.tenant.aliases.contains(&h))
    }

    /// The tenant domain that `host` names, if served.
    pub fn tenant_domain(&self, host: &[u8]) -> Option<&str> {
        self.tenant_index(host)
            .map(|i| self.tenants[i].tenant.domain.as_str())
    }

    /// Whether `user` is a subscriber of the tenant `domain`.
    pub fn is_subscriber(&self, domain: &str, user: &str) -> bool {
        self.tenants
            .iter()
            .any(|t| t.tenant.domain == domain && t.tenant.subscribers.contains_key(user))
    }

    /// Authenticates the caller of a request (RFC 3261 §22.3, proxy authentication): the
    /// From user must be a subscriber of a served domain and prove it with
    /// `Proxy-Authorization` for that domain's realm. Writes the 407 or 403 into `out`.
    pub fn authenticate_caller(
        &mut self,
        msg: &Message<'_>,
        now: Duration,
        tag: &[u8],
        out: &mut Vec<u8>,
    ) -> CallerAuth {
        let from = &msg.from().uri;
        let Some(ti) = from.host.and_then(|h| self.tenant_index(h.text)) else {
            self.stats.call_auth_failures += 1;
            Self::respond(msg, 403, b"Forbidden (caller domain not served)", tag, out);
            return CallerAuth::Denied;
        };
        let user = text(from.user.unwrap_or_default());
        let stale =
            match self.check_credentials(ti, msg, HeaderName::ProxyAuthorization, &user, now) {
                Proof::Valid => {
                    let domain = self.tenants[ti].tenant.domain.clone();
                    return CallerAuth::Authenticated { domain, user };
                }
                Proof::Missing { stale } => stale,
                Proof::Refused(code, reason) => {
                    self.stats.call_auth_failures += 1;
                    Self::respond(msg, code, reason, tag, out);
                    return CallerAuth::Denied;
                }
            };
        let challenges = self.tenants[ti].challenger.challenges(now, stale);
        out.clear();
        let mut b = ResponseBuilder::new(msg, 407, b"Proxy Authentication Required").to_tag(tag);
        for c in &challenges {
            b = b.header(HeaderName::ProxyAuthenticate, c.as_bytes());
        }
        b.write(out);
        self.stats.call_challenges += 1;
        CallerAuth::Challenged
    }

    /// What the digest credentials in `header` of `msg` prove for `user` of tenant `ti`.
    fn check_credentials(
        &mut self,
        ti: usize,
        msg: &Message<'_>,
        header: HeaderName,
        user: &str,
        now: Duration,
    ) -> Proof {
        let domain = self.tenants[ti].tenant.domain.clone();
        let request = digest::Request {
            method: msg.method().map_or(&b""[..], |m| m.as_bytes()),
            uri: msg.request_uri().map_or(&[][..], sip::Uri::as_bytes),
            body: msg.body(),
        };
        let mut stale = false;
        for value in msg.header_values(header) {
            let Ok(Credentials::Digest(view)) = digest::parse_credentials(value) else {
                continue;
            };
            if !view.realm().eq_bytes(domain.as_bytes()) {
                continue;
            }
            if text(&view.username().unescaped()) != user {
                return Proof::Refused(403, b"Forbidden (identity)");
            }
            let Some(password) = self.tenants[ti].tenant.subscribers.get(user).cloned() else {
                return Proof::Refused(403, b"Forbidden (bad credentials)");
            };
            match self.tenants[ti].challenger.verify(
                &view,
                &request,
                Credential::Password(password.as_bytes()),
                now,
            ) {
                Ok(()) => return Proof::Valid,
                Err(VerifyError::StaleNonce) => stale = true,
                // RFC 7616 §3.4.6: credentials for another URI are a bad request, not a
                // reason to challenge again (a client would loop).
                Err(VerifyError::UriMismatch) => {
                    return Proof::Refused(
                        400,
                        b"Bad Request (digest uri differs from Request-URI)",
                    )
                }
                Err(VerifyError::WrongResponse | VerifyError::Replay { .. }) => {
                    return Proof::Refused(403, b"Forbidden (bad credentials)");
                }
                // Forged or foreign nonce, unsupported algorithm: challenge afresh.
                Err(_) => {}
            }
        }
        Proof::Missing { stale }
    }

    /// Installs bindings read from the store (after a restart); expired ones are skipped.
    pub fn restore(&mut self, stored: Vec<StoredBinding>, now: u64) -> usize {
        let mut n = 0;
        for b in stored {
            let Ok(received) = b.received.parse() else {
                continue;
            };
            if b.expires_at <= now {
                continue;
            }
            self.location.entry(b.aor).or_default().push(Binding {
                contact: b.contact,
                expires_at: b.expires_at,
                call_id: b.call_id,
                cseq: b.cseq,
                q_millis: b.q_millis,
                received,
                user_agent: b.user_agent,
            });
            n += 1;
        }
        n
    }

    /// The address of record `user@domain` for a Request-URI's user and host, when the host
    /// is a served domain and the user one of its subscribers.
    pub fn aor_for(&self, user: &[u8], host: &[u8]) -> Option<String> {
        let t = &self.tenants[self.tenant_index(host)?].tenant;
        let user = text(user);
        t.subscribers
            .contains_key(&user)
            .then(|| format!("{user}@{}", t.domain))
    }

    /// The live bindings of `aor` (`user@domain`), highest q first, the most recently
    /// refreshed first among equals (the likeliest to be alive).
    pub fn lookup(&self, aor: &str, now: u64) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .location
            .get(aor)
            .map(|b| b.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|b| std::cmp::Reverse((b.q_millis, b.expires_at)));
        v
    }

    /// Every AoR with at least one live binding, and how many.
    pub fn registered(&self, now: u64) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .location
            .iter()
            .map(|(a, b)| (a.clone(), b.iter().filter(|b| b.expires_at > now).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        v.sort();
        v
    }

    /// Drops bindings that expired by `now`; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        for (aor, bindings) in &mut self.location {
            bindings.retain(|b| {
                let live = b.expires_at > now;
                if !live {
                    n += 1;
                    if let Some(w) = &self.writes {
                        let _ = w.send(LocationWrite::Remove {
                            aor: aor.clone(),
                            contact: b.contact.clone(),
                        });
                    }
                }
                live
            });
        }
        self.location.retain(|_, b| !b.is_empty());
        self.stats.expired += n as u64;
        n
    }

    /// Every tenant with its subscribers.
    pub fn tenants(&self) -> Vec<&Tenant> {
        self.tenants.iter().map(|t| &t.tenant).collect()
    }

    /// Adds a tenant, or changes the aliases of one (its subscribers stay). Refuses a name
    /// that another tenant already uses.
    pub fn upsert_tenant(
        &mut self,
        domain: &str,
        aliases: Vec<String>,
        now: Duration,
    ) -> Result<bool, String> {
        let domain = domain.to_ascii_lowercase();
        let aliases: Vec<String> = aliases.iter().map(|a| a.to_ascii_lowercase()).collect();
        for n in std::iter::once(&domain).chain(&aliases) {
            if n.is_empty()
                || n.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(format!("bad domain or alias {n:?}"));
            }
            if let Some(other) = self.tenants.iter().find(|t| {
                t.tenant.domain != domain && (t.tenant.domain == *n || t.tenant.aliases.contains(n))
            }) {
                return Err(format!("{n:?} belongs to tenant {}", other.tenant.domain));
            }
        }
        if let Some(t) = self.tenants.iter_mut().find(|t| t.tenant.domain == domain) {
            t.tenant.aliases = aliases;
            return Ok(false);
        }
        let challenger = challenger_for(&self.config, &domain, now)?;
        self.tenants.push(TenantState {
            tenant: Tenant {
                domain,
                aliases,
                subscribers: HashMap::new(),
            },
            challenger,
        });
        Ok(true)
    }

    /// Removes a tenant and every registration in it.
    pub fn remove_tenant(&mut self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        let Some(i) = self.tenants.iter().position(|t| t.tenant.domain == domain) else {
            return false;
        };
        let t = self.tenants.remove(i);
        for user in t.tenant.subscribers.keys() {
            self.kick(&format!("{user}@{domain}"));
        }
        true
    }

    /// Adds a subscriber or changes its password; `Ok(true)` when it is new.
    pub fn set_subscriber(
        &mut self,
        domain: &str,
        user: &str,
        password: &str,
    ) -> Result<bool, String> {
        if user.is_empty()
            || password.is_empty()
            || !user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b))
        {
            return Err(format!("bad user {user:?} or empty password"));
        }
        let domain = domain.to_ascii_lowercase();
        let t = self
            .tenants
            .iter_mut()
            .find(|t| t.tenant.domain == domain)
            .ok_or_else(|| format!("no tenant {domain}"))?;
        Ok(t.tenant
            .subscribers
            .insert(user.to_string(), password.to_string())
            .is_none())
    }

    /// Removes a subscriber and its registrations.
    pub fn remove_subscriber(&mut self, domain: &str, user: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        let removed = self
            .tenants
            .iter_mut()
            .find(|t| t.tenant.domain == domain)
            .is_some_and(|t| t.tenant.subscribers.remove(user).is_some());
        if removed {
            self.kick(&format!("{user}@{domain}"));
        }
        removed
    }

    /// Every live binding with its AoR, sorted by AoR.
    pub fn bindings(&self, now: u64) -> Vec<(String, Binding)> {
        let mut v: Vec<(String, Binding)> = self
            .location
            .iter()
            .flat_map(|(a, bs)| {
                bs.iter()
                    .filter(|b| b.expires_at > now)
                    .map(move |b| (a.clone(), b.clone()))
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.contact.cmp(&y.1.contact)));
        v
    }

    /// Removes every binding of an AoR (a NOC "kick"); returns how many.
    pub fn kick(&mut self, aor: &str) -> usize {
        let n = self.location.remove(aor).map_or(0, |b| b.len());
        if n > 0 {
            self.write(LocationWrite::RemoveAll {
                aor: aor.to_string(),
            });
        }
        n
    }

    fn write(&self, w: LocationWrite) {
        if let Some(tx) = &self.writes {
            let _ = tx.send(w);
        }
    }

    /// Handles one REGISTER from `source` at `now` (since the Unix epoch); writes the
    /// response into `out` with To tag `tag`.
    pub fn handle(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        now: Duration,
        tag: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.stats.requests += 1;
        let outcome = self.decide(msg, source, now, tag, out);
        match outcome {
            Outcome::Challenged => self.stats.challenges += 1,
            Outcome::Registered(_) => self.stats.accepted += 1,
            Outcome::Refused(_) => {}
        }
        outcome
    }

    /// Sends a final refusal; counted as a refusal.
    fn refuse(
        &mut self,
        msg: &Message<'_>,
        code: u16,
        reason: &[u8],
        tag: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.stats.refused += 1;
        Self::respond(msg, code, reason, tag, out)
    }

    /// Sends `code` (403, or 400 for credentials of another URI) for credentials that do
    /// not hold; counted as an authentication failure.
    fn deny(
        &mut self,
        msg: &Message<'_>,
        code: u16,
        reason: &[u8],
        tag: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.stats.auth_failures += 1;
        Self::respond(msg, code, reason, tag, out)
    }

    fn respond(
        msg: &Message<'_>,
        code: u16,
        reason: &[u8],
        tag: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        ResponseBuilder::new(msg, code, reason)
            .to_tag(tag)
            .write(out);
        Outcome::Refused(code)
    }

    fn decide(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        now: Duration,
        tag: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        debug_assert!(matches!(msg.method(), Some(Method::Register)));
        let now_s = now.as_secs();
        // §10.3 step 1: a domain we serve (Request-URI), and the AoR (To) in it.
        let ruri_host = msg.request_uri().and_then(|u| u.host).map(|h| h.text);
        let Some(ti) = ruri_host.and_then(|h| self.tenant_index(h)) else {
            return self.refuse(msg, 403, b"Domain Not Served", tag, out);
        };
        let to_uri = &msg.to().uri;
        let (Some(user), Some(to_host)) = (to_uri.user, to_uri.host.map(|h| h.text)) else {
            return self.refuse(msg, 400, b"To Names No User", tag, out);
        };
        if self.tenant_index(to_host) != Some(ti) {
            return self.refuse(msg, 403, b"To Domain Differs From Request-URI", tag, out);
        }
        let user = text(user);
        let domain = self.tenants[ti].tenant.domain.clone();
        let aor = format!("{user}@{domain}");

        // Steps 2–4: authenticate, then authorise the identity for this AoR.
        let (authed, stale) =
            match self.check_credentials(ti, msg, HeaderName::Authorization, &user, now) {
                Proof::Valid => (true, false),
                Proof::Missing { stale } => (false, stale),
                Proof::Refused(code, reason) => return self.deny(msg, code, reason, tag, out),
            };
        if !authed {
            // Unknown users are challenged too: refusing them at once would tell a scanner
            // which users exist.
            let challenges = self.tenants[ti].challenger.challenges(now, stale);
            out.clear();
            let mut b = ResponseBuilder::new(msg, 401, b"Unauthorized").to_tag(tag);
            for c in &challenges {
                b = b.header(HeaderName::WwwAuthenticate, c.as_bytes());
            }
            b.write(out);
            return Outcome::Challenged;
        }

        // Steps 5–7: the contacts.
        let call_id = text(msg.call_id());
        let cseq = msg.cseq().seq;
        let header_expires = msg.expires();
        let mut star = false;
        let mut contacts: Vec<(String, u32, u16)> = Vec::new();
        for c in msg.contacts() {
            match c {
                Contact::Star => star = true,
                Contact::Addr(na) => {
                    let expires = na
                        .expires()
                        .or(header_expires)
                        .unwrap_or(self.config.default_expires);
                    contacts.push((
                        text(na.uri.as_bytes()),
                        expires,
                        na.q_millis().unwrap_or(1000),
                    ));
                }
            }
        }
        if star {
            if !contacts.is_empty() || header_expires != Some(0) {
                return self.refuse(msg, 400, b"Contact * Needs Expires 0 Alone", tag, out);
            }
            let existing = self.location.remove(&aor).unwrap_or_default();
            // §10.3 step 6: a binding from a newer REGISTER of the same Call-ID stays.
            let keep: Vec<Binding> = existing
                .into_iter()
                .filter(|b| b.call_id == call_id && b.cseq > cseq)
                .collect();
            self.write(LocationWrite::RemoveAll { aor: aor.clone() });
            for b in &keep {
                self.write(LocationWrite::Upsert(stored(&aor, b)));
            }
            if !keep.is_empty() {
                self.location.insert(aor.clone(), keep);
            }
            return self.ok(msg, &aor, now_s, tag, out);
        }
        for (_, expires, _) in &contacts {
            if *expires != 0 && *expires < self.config.min_expires {
                out.clear();
                let min = self.config.min_expires.to_string();
                ResponseBuilder::new(msg, 423, b"Interval Too Brief")
                    .to_tag(tag)
                    .header(HeaderName::MinExpires, min.as_bytes())
                    .write(out);
                self.stats.refused += 1;
                return Outcome::Refused(423);
            }
        }
        let user_agent = msg
            .header(HeaderName::UserAgent)
            .map(text)
            .unwrap_or_default();
        let bindings = self.location.entry(aor.clone()).or_default();
        for (uri, _, _) in &contacts {
            if let Some(b) = bindings.iter().find(|b| &b.contact == uri) {
                if b.call_id == call_id && b.cseq >= cseq {
                    return self.refuse(msg, 500, b"Out Of Order REGISTER", tag, out);
                }
            }
        }
        let live_after = {
            let mut n = bindings.iter().filter(|b| b.expires_at > now_s).count();
            for (uri, expires, _) in &contacts {
                let exists = bindings
                    .iter()
                    .any(|b| &b.contact == uri && b.expires_at > now_s);
                match (exists, *expires > 0) {
                    (false, true) => n += 1,
                    (true, false) => n = n.saturating_sub(1),
                    _ => {}
                }
            }
            n
        };
        if live_after > self.config.max_contacts {
            return self.refuse(msg, 403, b"Too Many Contacts", tag, out);
        }
        let mut writes = Vec::new();
        let bindings = self.location.entry(aor.clone()).or_default();
        for (uri, expires, q) in contacts {
            bindings.retain(|b| b.contact != uri);
            if expires == 0 {
                writes.push(LocationWrite::Remove {
                    aor: aor.clone(),
                    contact: uri,
                });
                continue;
            }
            let b = Binding {
                contact: uri,
                expires_at: now_s + u64::from(expires.min(self.config.max_expires)),
                call_id: call_id.clone(),
                cseq,
                q_millis: q,
                received: source,
                user_agent: user_agent.clone(),
            };
            writes.push(LocationWrite::Upsert(stored(&aor, &b)));
            bindings.push(b);
        }
        for w in writes {
            self.write(w);
        }
        self.ok(msg, &aor, now_s, tag, out)
    }

    fn ok(
        &mut self,
        msg: &Message<'_>,
        aor: &str,
        now_s: u64,
        tag: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        let live = self.lookup(aor, now_s);
        let contacts: Vec<String> = live
            .iter()
            .map(|b| format!("<{}>;expires={}", b.contact, b.expires_at - now_s))
            .collect();
        let date = http_date(now_s);
        out.clear();
        let mut r = ResponseBuilder::new(msg, 200, b"OK").to_tag(tag);
        for c in &contacts {
            r = r.header(HeaderName::Contact, c.as_bytes());
        }
        r.header(HeaderName::Date, date.as_bytes()).write(out);
        Outcome::Registered(live.len())
    }
}

fn stored(aor: &str, b: &Binding) -> StoredBinding {
    StoredBinding {
        aor: aor.to_string(),
        contact: b.contact.clone(),
        expires_at: b.expires_at,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        q_millis: b.q_millis,
        received: b.received.to_string(),
        user_agent: b.user_agent.clone(),
    }
}

/// RFC 1123 date (the SIP `Date` header), from seconds since the Unix epoch.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(month - 1) as usize],
        year,
        h,
        m,
        s
    )
}

#[cfg(test)]
mod tests {
    use super::http_date;

    #[test]
    fn dates_are_rfc1123() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_800_000_000), "Fri, 15 Jan 2027 08:00:00 GMT");
    }
}
