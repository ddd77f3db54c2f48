//! Seeded simulation of two transaction tables (a UAC and a UAS) exchanging real SIP bytes
//! over a lossy, duplicating, reordering network in virtual time.
//!
//! Replay one seed with `SIP_SIM_SEED=<seed> cargo test -p sip --test transaction_sim`.

use sip::transaction::{
    Kind, Route, Timer, TimerConfig, TransactionTable, Transmit, TransmitKind, TxEvent, TxId,
};
use sip::{HeaderName, Message, Method};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// splitmix64: tiny, seedable, good enough for fault injection.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

#[derive(Debug, Clone, Copy)]
struct NetConfig {
    name: &'static str,
    reliable: bool,
    loss: f64,
    dup: f64,
    delay_min_ms: u64,
    delay_max_ms: u64,
}

const CONFIGS: &[NetConfig] = &[
    NetConfig {
        name: "udp-clean",
        reliable: false,
        loss: 0.0,
        dup: 0.0,
        delay_min_ms: 5,
        delay_max_ms: 150,
    },
    NetConfig {
        name: "udp-dup",
        reliable: false,
        loss: 0.0,
        dup: 0.3,
        delay_min_ms: 5,
        delay_max_ms: 400,
    },
    NetConfig {
        name: "udp-loss5",
        reliable: false,
        loss: 0.05,
        dup: 0.05,
        delay_min_ms: 5,
        delay_max_ms: 150,
    },
    NetConfig {
        name: "udp-loss20",
        reliable: false,
        loss: 0.2,
        dup: 0.1,
        delay_min_ms: 5,
        delay_max_ms: 300,
    },
    NetConfig {
        name: "udp-loss40",
        reliable: false,
        loss: 0.4,
        dup: 0.1,
        delay_min_ms: 5,
        delay_max_ms: 300,
    },
    NetConfig {
        name: "tcp",
        reliable: true,
        loss: 0.0,
        dup: 0.0,
        delay_min_ms: 1,
        delay_max_ms: 50,
    },
];

const SEEDS_PER_CONFIG: u64 = 2000;
/// The sim's UAC gives up on an INVITE still without a final this long after starting
/// (a proxy's Timer C is 3 minutes or more).
const ABANDON_AFTER: Duration = Duration::from_secs(200);
const SIM_LIMIT: Duration = Duration::from_secs(20 * 60);

struct Packet {
    at: Instant,
    order: u64,
    to_server: bool,
    bytes: Arc<[u8]>,
}

struct Network {
    cfg: NetConfig,
    in_flight: Vec<Packet>,
    order: u64,
}

impl Network {
    fn send(&mut self, rng: &mut Rng, now: Instant, to_server: bool, bytes: Arc<[u8]>) {
        if rng.chance(self.cfg.loss) {
            return;
        }
        let copies = if rng.chance(self.cfg.dup) { 2 } else { 1 };
        for _ in 0..copies {
            // Reliable transports deliver in order: no jitter past the previous packet.
            let delay = rng.ms(self.cfg.delay_min_ms, self.cfg.delay_max_ms);
            self.order += 1;
            self.in_flight.push(Packet {
                at: now + delay,
                order: self.order,
                to_server,
                bytes: bytes.clone(),
            });
        }
    }
    fn next_at(&self) -> Option<Instant> {
        self.in_flight.iter().map(|p| p.at).min()
    }
    fn pop_due(&mut self, now: Instant) -> Option<Packet> {
        let i = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, p)| p.at <= now)
            .min_by_key(|(_, p)| (p.at, p.order))
            .map(|(i, _)| i)?;
        Some(self.in_flight.swap_remove(i))
    }
}

#[derive(Debug, Default)]
struct ClientTx {
    invite: bool,
    call_id: String,
    created: Option<Instant>,
    final_status: Option<u16>,
    timeout: Option<Timer>,
    terminated: Option<Instant>,
    acks_sent: u32,
}

#[derive(Debug, Default)]
struct ServerTx {
    invite: bool,
    created: Option<Instant>,
    final_status: Option<u16>,
    confirmed: bool,
    timed_out: bool,
    terminated: Option<Instant>,
}

/// UAS core retransmitting a 2xx until the (end-to-end) ACK arrives (§13.3.1.4).
struct Uas2xx {
    bytes: Arc<[u8]>,
    next: Instant,
    interval: Duration,
    give_up: Instant,
    acked: bool,
}

enum Action {
    Respond {
        id: TxId,
        bytes: Vec<u8>,
        ok_invite: Option<String>,
    },
    Start {
        idx: usize,
    },
}

struct Sim {
    seed: u64,
    cfg: NetConfig,
    timers: TimerConfig,
    rng: Rng,
    start: Instant,
    now: Instant,
    net: Network,
    client: TransactionTable,
    server: TransactionTable,
    requests: Vec<String>,
    clients: HashMap<TxId, ClientTx>,
    servers: HashMap<TxId, ServerTx>,
    actions: Vec<(Instant, Action)>,
    uas_2xx: HashMap<String, Uas2xx>,
    stray_2xx_acked: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    runs: u64,
    transactions: u64,
    timeouts: u64,
    abandoned: u64,
    requests_absorbed: u64,
    timer_retransmissions: u64,
    acks_absorbed: u64,
    server_confirmed: u64,
}

impl Sim {
    fn new(seed: u64, cfg: NetConfig) -> Sim {
        let mut rng = Rng(seed ^ 0x5157_7e57);
        let start = Instant::now();
        let n = 1 + rng.below(4) as usize;
        let transport = if cfg.reliable { "TCP" } else { "UDP" };
        let mut requests = Vec::new();
        let mut actions = Vec::new();
        for i in 0..n {
            let method = match rng.below(4) {
                0 | 1 => "INVITE",
                2 => "OPTIONS",
                _ => "BYE",
            };
            requests.push(format!(
                "{method} sip:bob@biloxi.example.com SIP/2.0\r\n\
                 Via: SIP/2.0/{transport} pc33.atlanta.example.com:5060;branch=z9hG4bK{seed}x{i}\r\n\
                 Max-Forwards: 70\r\n\
                 Route: <sip:p1.example.com;lr>\r\n\
                 From: Alice <sip:alice@atlanta.example.com>;tag=a{i}\r\n\
                 To: Bob <sip:bob@biloxi.example.com>\r\n\
                 Call-ID: {seed}-{i}@pc33.atlanta.example.com\r\n\
                 CSeq: {cseq} {method}\r\n\
                 Content-Length: 0\r\n\r\n",
                cseq = 1 + i
            ));
            actions.push((start + rng.ms(0, 2000), Action::Start { idx: i }));
        }
        Sim {
            seed,
            cfg,
            timers: TimerConfig::default(),
            rng,
            start,
            now: start,
            net: Network {
                cfg,
                in_flight: Vec::new(),
                order: 0,
            },
            client: TransactionTable::new(16, TimerConfig::default()),
            server: TransactionTable::new(16, TimerConfig::default()),
            requests,
            clients: HashMap::new(),
            servers: HashMap::new(),
            actions,
            uas_2xx: HashMap::new(),
            stray_2xx_acked: 0,
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "seed {} config {}: {what} (t={:?}); replay with SIP_SIM_SEED={}",
            self.seed,
            self.cfg.name,
            self.now - self.start,
            self.seed
        )
    }

    fn run(mut self) -> Totals {
        loop {
            self.pump();
            let abandon_at = self
                .clients
                .values()
                .filter(|c| c.invite && c.terminated.is_none())
                .filter_map(|c| c.created.map(|t| t + ABANDON_AFTER))
                .min();
            let next = [
                self.client.poll_timeout(),
                self.server.poll_timeout(),
                self.net.next_at(),
                self.actions.iter().map(|a| a.0).min(),
                self.uas_2xx
                    .values()
                    .filter(|u| !u.acked && u.give_up > self.now)
                    .map(|u| u.next)
                    .min(),
                abandon_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { break };
            if next - self.start > SIM_LIMIT {
                self.fail("still running at the simulation limit");
            }
            self.now = self.now.max(next);
            self.step();
        }
        self.check_end()
    }

    fn step(&mut self) {
        let now = self.now;
        self.client.handle_timeout(now);
        self.server.handle_timeout(now);
        self.pump();
        while let Some(p) = self.net.pop_due(now) {
            self.deliver(p);
            self.pump();
        }
        // Due TU actions in time order, ties in the order scheduled (180 before the final).
        while let Some(i) = self
            .actions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.0 <= now)
            .min_by_key(|(_, a)| a.0)
            .map(|(i, _)| i)
        {
            let (_, a) = self.actions.remove(i);
            self.act(a);
            self.pump();
        }
        let mut resend = Vec::new();
        for u in self.uas_2xx.values_mut() {
            if !u.acked && u.give_up > now && u.next <= now {
                resend.push(u.bytes.clone());
                u.interval = (u.interval * 2).min(self.timers.t2);
                u.next = now + u.interval;
            }
        }
        for b in resend {
            self.net.send(&mut self.rng, now, false, b);
        }
        let stuck: Vec<TxId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.invite && c.terminated.is_none())
            .filter(|(_, c)| c.created.is_some_and(|t| t + ABANDON_AFTER <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            if self.cfg.loss == 0.0 {
                self.fail("INVITE without a final response on a lossless network");
            }
            if self.client.abandon(now, id).is_err() {
                self.fail("abandon refused for a live transaction");
            }
            self.pump();
        }
    }

    fn act(&mut self, a: Action) {
        let now = self.now;
        match a {
            Action::Start { idx } => {
                let text = self.requests[idx].clone();
                let msg = Message::parse(text.as_bytes())
                    .unwrap_or_else(|e| self.fail(&format!("parse {e:?}")));
                let id = self
                    .client
                    .start_client(now, &msg)
                    .unwrap_or_else(|e| self.fail(&format!("start_client: {e}")));
                self.clients.insert(
                    id,
                    ClientTx {
                        invite: msg.method() == Some(Method::Invite),
                        call_id: String::from_utf8_lossy(msg.call_id()).into_owned(),
                        created: Some(now),
                        ..ClientTx::default()
                    },
                );
            }
            Action::Respond {
                id,
                bytes,
                ok_invite,
            } => {
                if self.server.get(id).is_none() {
                    // The transaction timed out or ended before the TU answered.
                    return;
                }
                if let Err(e) = self.server.send_response(now, id, &bytes) {
                    self.fail(&format!("send_response: {e}"));
                }
                let status = Message::parse(&bytes)
                    .ok()
                    .and_then(|m| m.status())
                    .unwrap_or(0);
                if status >= 200 {
                    if let Some(s) = self.servers.get_mut(&id) {
                        s.final_status = Some(status);
                    }
                }
                if let Some(call_id) = ok_invite {
                    self.uas_2xx.insert(
                        call_id,
                        Uas2xx {
                            bytes: Arc::from(bytes),
                            next: now + self.timers.t1,
                            interval: self.timers.t1,
                            give_up: now + self.timers.timeout_64t1(),
                            acked: false,
                        },
                    );
                }
            }
        }
    }

    fn deliver(&mut self, p: Packet) {
        let now = self.now;
        let msg = Message::parse(&p.bytes).unwrap_or_else(|e| self.fail(&format!("parse {e:?}")));
        if p.to_server {
            if self.server.handle(now, &msg) != Route::NoMatch {
                return;
            }
            if msg.method() == Some(Method::Ack) {
                // ACK for a 2xx: end to end, to the UAS core.
                let call_id = String::from_utf8_lossy(msg.call_id()).into_owned();
                if let Some(u) = self.uas_2xx.get_mut(&call_id) {
                    u.acked = true;
                }
                return;
            }
            let id = self
                .server
                .start_server(now, &msg)
                .unwrap_or_else(|e| self.fail(&format!("start_server: {e}")));
            let invite = msg.method() == Some(Method::Invite);
            self.servers.insert(
                id,
                ServerTx {
                    invite,
                    created: Some(now),
                    ..ServerTx::default()
                },
            );
            let d1 = self.rng.ms(0, 300);
            if invite {
                self.actions.push((
                    now + d1,
                    Action::Respond {
                        id,
                        bytes: response(&msg, 180, "Ringing"),
                        ok_invite: None,
                    },
                ));
                let d2 = d1 + self.rng.ms(0, 3000);
                if self.rng.chance(0.5) {
                    let call_id = String::from_utf8_lossy(msg.call_id()).into_owned();
                    self.actions.push((
                        now + d2,
                        Action::Respond {
                            id,
                            bytes: response(&msg, 200, "OK"),
                            ok_invite: Some(call_id),
                        },
                    ));
                } else {
                    self.actions.push((
                        now + d2,
                        Action::Respond {
                            id,
                            bytes: response(&msg, 486, "Busy Here"),
                            ok_invite: None,
                        },
                    ));
                }
            } else {
                self.actions.push((
                    now + d1,
                    Action::Respond {
                        id,
                        bytes: response(&msg, 200, "OK"),
                        ok_invite: None,
                    },
                ));
            }
        } else if self.client.handle(now, &msg) == Route::NoMatch {
            // A stray: a 2xx retransmitted after Timer M, or for a transaction that timed out.
            if msg.cseq_method() == Method::Invite
                && msg.status().is_some_and(|s| (200..300).contains(&s))
            {
                self.stray_2xx_acked += 1;
                self.send_2xx_ack(&msg);
            }
        }
    }

    fn send_2xx_ack(&mut self, resp: &Message<'_>) {
        let call_id = String::from_utf8_lossy(resp.call_id()).into_owned();
        let ack = format!(
            "ACK sip:bob@biloxi.example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKack{}\r\n\
             Max-Forwards: 70\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            self.rng.next_u64(),
            String::from_utf8_lossy(resp.header(HeaderName::From).unwrap_or(b"")),
            String::from_utf8_lossy(resp.header(HeaderName::To).unwrap_or(b"")),
            resp.cseq().seq,
        );
        self.net
            .send(&mut self.rng, self.now, true, Arc::from(ack.into_bytes()));
    }

    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut progress = false;
            while let Some((id, t)) = self.client.poll_transmit() {
                progress = true;
                self.on_client_transmit(id, &t);
                self.net.send(&mut self.rng, now, true, t.bytes);
            }
            while let Some((id, t)) = self.server.poll_transmit() {
                progress = true;
                if self.servers.get(&id).is_some_and(|s| s.confirmed) {
                    self.fail("server transmitted after the ACK confirmed it");
                }
                if self.cfg.reliable && t.kind == TransmitKind::ResponseRetransmit {
                    self.fail("response retransmitted on a reliable transport");
                }
                self.net.send(&mut self.rng, now, false, t.bytes);
            }
            while let Some((id, ev)) = self.client.poll_event() {
                progress = true;
                self.on_client_event(id, ev);
            }
            while let Some((id, ev)) = self.server.poll_event() {
                progress = true;
                self.on_server_event(id, ev);
            }
            if !progress {
                break;
            }
        }
    }

    fn on_client_transmit(&mut self, id: TxId, t: &Transmit) {
        if self.cfg.reliable && t.kind == TransmitKind::RequestRetransmit {
            self.fail("request retransmitted on a reliable transport");
        }
        if t.kind == TransmitKind::Ack {
            let Some(c) = self.clients.get_mut(&id) else {
                self.fail("ACK from an unknown transaction")
            };
            c.acks_sent += 1;
            let ack = Message::parse(&t.bytes)
                .unwrap_or_else(|e| self.fail(&format!("generated ACK does not parse: {e:?}")));
            if ack.method() != Some(Method::Ack)
                || ack.routes().count() != 1
                || ack.to_tag() != Some(&b"uas"[..])
            {
                self.fail("generated ACK lacks Route or To tag");
            }
        }
    }

    fn on_client_event(&mut self, id: TxId, ev: TxEvent) {
        let now = self.now;
        let loss = self.cfg.loss;
        let Some(c) = self.clients.get_mut(&id) else {
            self.fail("event for an unknown client transaction")
        };
        let mut ack_2xx = None;
        match ev {
            TxEvent::Final { status, response } => {
                if c.final_status.is_some() || c.timeout.is_some() {
                    let msg = format!(
                        "second outcome {status} after {:?}/{:?}",
                        c.final_status, c.timeout
                    );
                    self.fail(&msg);
                }
                c.final_status = Some(status);
                if c.invite && status < 300 {
                    ack_2xx = Some(response);
                }
            }
            TxEvent::Additional2xx { response, .. } => ack_2xx = Some(response),
            TxEvent::Timeout { timer } => {
                if c.final_status.is_some() || c.timeout.is_some() {
                    self.fail("timeout after an outcome");
                }
                c.timeout = Some(timer);
                if loss == 0.0 {
                    self.fail(&format!("Timer {timer:?} fired on a lossless network"));
                }
            }
            TxEvent::Terminated => {
                if c.final_status.is_none() && c.timeout.is_none() {
                    self.fail("terminated without an outcome");
                }
                c.terminated = Some(now);
            }
            TxEvent::Provisional { .. } => {}
            other => self.fail(&format!("unexpected client event {other:?}")),
        }
        if let Some(resp) = ack_2xx {
            let msg = Message::parse(&resp).unwrap_or_else(|e| self.fail(&format!("{e:?}")));
            self.send_2xx_ack(&msg);
        }
    }

    fn on_server_event(&mut self, id: TxId, ev: TxEvent) {
        let now = self.now;
        let Some(s) = self.servers.get_mut(&id) else {
            self.fail("event for an unknown server transaction")
        };
        match ev {
            TxEvent::Confirmed => s.confirmed = true,
            TxEvent::Timeout { timer: Timer::H } => s.timed_out = true,
            TxEvent::Terminated => s.terminated = Some(now),
            other => self.fail(&format!("unexpected server event {other:?}")),
        }
    }

    fn check_end(self) -> Totals {
        if !self.client.is_empty() || !self.server.is_empty() {
            self.fail(&format!(
                "tables not empty: client {} server {}",
                self.client.len(),
                self.server.len()
            ));
        }
        if self.clients.len() != self.requests.len() {
            self.fail("not every client transaction started");
        }
        let t = self.timers;
        let mut totals = Totals {
            runs: 1,
            transactions: self.clients.len() as u64,
            ..Totals::default()
        };
        for c in self.clients.values() {
            let (Some(created), Some(ended)) = (c.created, c.terminated) else {
                self.fail("client never terminated")
            };
            let life = ended - created;
            let bound = if c.invite {
                ABANDON_AFTER + sip::transaction::TIMER_D_UNRELIABLE
            } else {
                t.timeout_64t1() + t.t4
            };
            if life > bound {
                self.fail(&format!("client transaction lived {life:?} > {bound:?}"));
            }
            match (c.final_status, c.timeout) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => self.fail("client transaction without exactly one outcome"),
            }
            if c.timeout == Some(Timer::Abandoned) {
                totals.abandoned += 1;
            } else if c.timeout.is_some() {
                totals.timeouts += 1;
            }
            if c.invite && c.final_status.is_some_and(|s| s >= 300) && c.acks_sent == 0 {
                self.fail(&format!("non-2xx final for {} never ACKed", c.call_id));
            }
            if c.invite
                && c.final_status.is_some_and(|s| s < 300)
                && self.cfg.loss == 0.0
                && !self.uas_2xx.get(&c.call_id).is_some_and(|u| u.acked)
            {
                self.fail("2xx never ACKed end to end on a lossless network");
            }
        }
        for s in self.servers.values() {
            let (Some(created), Some(ended)) = (s.created, s.terminated) else {
                self.fail("server never terminated")
            };
            let bound = Duration::from_secs(4) + t.timeout_64t1() + t.t4;
            if ended - created > bound {
                self.fail("server transaction outlived its timers");
            }
            if s.invite && s.final_status.is_some_and(|st| st >= 300) {
                if !(s.confirmed ^ s.timed_out) {
                    self.fail("non-2xx INVITE server neither confirmed nor timed out (or both)");
                }
                if self.cfg.loss == 0.0 && !s.confirmed {
                    self.fail("non-2xx final not confirmed on a lossless network");
                }
                totals.server_confirmed += u64::from(s.confirmed);
            }
        }
        if self.servers.len() > self.requests.len() {
            self.fail("a late retransmission created a second server transaction");
        }
        let (cs, ss) = (self.client.stats(), self.server.stats());
        if self.cfg.reliable && (cs.timer_retransmissions > 0 || ss.timer_retransmissions > 0) {
            self.fail("timer retransmissions on a reliable transport");
        }
        totals.requests_absorbed = ss.requests_absorbed;
        totals.acks_absorbed = ss.acks_absorbed;
        totals.timer_retransmissions = cs.timer_retransmissions + ss.timer_retransmissions;
        totals
    }
}

/// A response to `req` as the UAS TU writes it (To tag `uas` on everything but 100).
fn response(req: &Message<'_>, status: u16, reason: &str) -> Vec<u8> {
    let h = |n| String::from_utf8_lossy(req.header(n).unwrap_or(b"")).into_owned();
    format!(
        "SIP/2.0 {status} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=uas\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        h(HeaderName::Via),
        h(HeaderName::From),
        h(HeaderName::To),
        h(HeaderName::CallId),
        h(HeaderName::CSeq),
    )
    .into_bytes()
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIP_SIM_SEED") {
        Ok(s) => vec![s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("SIP_SIM_SEED={s}: {e}"))],
        Err(_) => (1..=SEEDS_PER_CONFIG).collect(),
    }
}

#[test]
fn lossy_network_simulation() {
    let started = std::time::Instant::now();
    let replay = std::env::var("SIP_SIM_SEED").is_ok();
    for cfg in CONFIGS {
        let mut sum = Totals::default();
        for seed in seeds() {
            let t = Sim::new(seed, *cfg).run();
            sum.runs += t.runs;
            sum.transactions += t.transactions;
            sum.timeouts += t.timeouts;
            sum.abandoned += t.abandoned;
            sum.requests_absorbed += t.requests_absorbed;
            sum.timer_retransmissions += t.timer_retransmissions;
            sum.acks_absorbed += t.acks_absorbed;
            sum.server_confirmed += t.server_confirmed;
        }
        println!("{}: {sum:?}", cfg.name);
        if replay {
            continue;
        }
        if cfg.loss > 0.0 || cfg.dup > 0.0 {
            assert!(
                sum.requests_absorbed > 0,
                "{}: no retransmission absorbed",
                cfg.name
            );
            assert!(sum.acks_absorbed > 0, "{}: no ACK absorbed", cfg.name);
        }
        if cfg.loss > 0.0 {
            assert!(
                sum.timer_retransmissions > 0,
                "{}: no timer retransmission",
                cfg.name
            );
        }
        if cfg.loss == 0.0 {
            assert_eq!(sum.timeouts + sum.abandoned, 0, "{}", cfg.name);
        }
    }
    println!("simulation took {:?}", started.elapsed());
}

#[test]
fn kinds_are_named() {
    // Keeps the imported API surface honest for readers of this file.
    assert!(Kind::InviteClient.is_client() && !Kind::InviteServer.is_client());
}
