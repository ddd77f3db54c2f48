//! The media-session API: JSON lines over a local Unix socket.
//!
//! One request per line, one JSON object answered per line, `{"ok":true,...}` or
//! `{"ok":false,"error":"..."}`. Requests (field `op`):
//!
//! | op | fields | answer |
//! |---|---|---|
//! | `ping` | | round trip to every dataplane core |
//! | `create` | `a`, `b`: leg (below) | `session`: id, core, ports |
//! | `update` | `id`, `a`?, `b`?: `{remote?, hold?}` | |
//! | `delete` | `id` | `stats`: final counters of both legs |
//! | `stats` | `id` | `stats` |
//! | `list` | | `sessions`: every session the dataplane holds (asked live) |
//! | `cores` | | `cores`: per-core counters and latency percentiles |
//! | `events` | `since`? | `events` (timeouts, DTMF), `next` |
//!
//! A leg: `{"remote": "IP:PORT" | null, "payload_types": [[0, 8000]], "telephone_event_pt":
//! 101, "rtcp_mux": false, "timeout_ms": 30000}`; every field optional (PCMU+PCMA and no
//! timeout by default). The REST API of the full control plane replaces this socket's role
//! for operators; this is the media-session surface it is built on.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};
use shmq::schema::{CoreStats, LegStats, LegUpdate, SessionStats};
use shmq::Event;

use crate::media::{leg_spec, MediaPlane, SessionRecord};

/// Longest request line accepted.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Ping,
    Create {
        #[serde(default)]
        a: LegReq,
        #[serde(default)]
        b: LegReq,
    },
    Update {
        id: u64,
        #[serde(default)]
        a: LegUpdateReq,
        #[serde(default)]
        b: LegUpdateReq,
    },
    Delete {
        id: u64,
    },
    Stats {
        id: u64,
    },
    List,
    Cores,
    Events {
        #[serde(default)]
        since: u64,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegReq {
    #[serde(default)]
    remote: Option<SocketAddr>,
    #[serde(default = "default_pts")]
    payload_types: Vec<(u8, u32)>,
    #[serde(default)]
    telephone_event_pt: Option<u8>,
    #[serde(default)]
    rtcp_mux: bool,
    #[serde(default)]
    timeout_ms: u32,
}

impl Default for LegReq {
    fn default() -> Self {
        LegReq {
            remote: None,
            payload_types: default_pts(),
            telephone_event_pt: None,
            rtcp_mux: false,
            timeout_ms: 0,
        }
    }
}

fn default_pts() -> Vec<(u8, u32)> {
    vec![(0, 8000), (8, 8000)]
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegUpdateReq {
    #[serde(default)]
    remote: Option<SocketAddr>,
    #[serde(default)]
    hold: bool,
}

/// Answers one request line.
pub fn handle_line(media: &MediaPlane, line: &str) -> Value {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    match answer(media, req) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("ok".into(), Value::Bool(true));
            }
            v
        }
        Err(e) => json!({"ok": false, "error": e}),
    }
}

fn answer(media: &MediaPlane, req: Request) -> Result<Value, String> {
    let err = |e: crate::media::MediaError| e.to_string();
    match req {
        Request::Ping => {
            media.ping().map_err(err)?;
            Ok(json!({"cores": media.cores()}))
        }
        Request::Create { a, b } => {
            let spec = |l: &LegReq, name: &str| {
                leg_spec(
                    l.remote,
                    &l.payload_types,
                    l.telephone_event_pt,
                    l.rtcp_mux,
                    l.timeout_ms,
                )
                .ok_or_else(|| format!("leg {name}: at most 8 payload types, each 0..=127"))
            };
            let legs = [spec(&a, "a")?, spec(&b, "b")?];
            let rec = media.create(legs).map_err(err)?;
            Ok(json!({"session": record_json(&rec)}))
        }
        Request::Update { id, a, b } => {
            let up = |u: &LegUpdateReq| LegUpdate {
                remote: u.remote,
                payload_types: None,
                telephone_event_pt: None,
                hold: u.hold,
            };
            media.update(id, [up(&a), up(&b)]).map_err(err)?;
            Ok(json!({}))
        }
        Request::Delete { id } => {
            let s = media.delete(id).map_err(err)?;
            Ok(json!({"stats": stats_json(&s)}))
        }
        Request::Stats { id } => {
            let s = media.stats(id).map_err(err)?;
            Ok(json!({"stats": stats_json(&s)}))
        }
        Request::List => {
            let live = media.list_live().map_err(err)?;
            let sessions: Vec<Value> = live
                .iter()
                .map(|(core, s)| {
                    json!({
                        "id": s.session_id,
                        "core": core,
                        "ports": s.local_ports,
                        "remotes": s.remotes.map(|r| r.map(|a| a.to_string())),
                    })
                })
                .collect();
            Ok(json!({"sessions": sessions}))
        }
        Request::Cores => {
            let cores: Vec<Value> = media
                .core_stats()
                .map_err(err)?
                .iter()
                .enumerate()
                .map(|(i, c)| core_json(i, c))
                .collect();
            Ok(json!({"cores": cores}))
        }
        Request::Events { since } => {
            let (evs, next) = media.events_since(since);
            let evs: Vec<Value> = evs
                .iter()
                .filter_map(|e| {
                    let at =
                        e.at.duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64());
                    match e.event {
                        Event::SessionTimeout { session_id, leg } => Some(json!({
                            "at": at, "core": e.core, "type": "media_timeout",
                            "session": session_id, "leg": leg_name(leg as u8),
                        })),
                        Event::Dtmf(d) => Some(json!({
                            "at": at, "core": e.core, "type": "dtmf",
                            "session": d.session_id, "leg": leg_name(d.leg as u8),
                            "event": d.event, "end": d.end, "duration_ms": d.duration_ms,
                            "volume": d.volume,
                        })),
                        _ => None,
                    }
                })
                .collect();
            Ok(json!({"events": evs, "next": next}))
        }
    }
}

fn leg_name(l: u8) -> &'static str {
    if l == 0 {
        "a"
    } else {
        "b"
    }
}

fn record_json(r: &SessionRecord) -> Value {
    json!({"id": r.id, "core": r.core, "ports": r.ports, "recovered": r.recovered})
}

fn leg_json(l: &LegStats) -> Value {
    json!({
        "packets": l.packets,
        "bytes": l.bytes,
        "lost": l.lost,
        "jitter_ms": f64::from(l.jitter_us) / 1000.0,
        "strangers": l.strangers,
        "out_of_order": l.out_of_order,
        "duplicates": l.duplicates,
        "latched": l.latched.map(|a| a.to_string()),
    })
}

fn stats_json(s: &SessionStats) -> Value {
    json!({"id": s.session_id, "a": leg_json(&s.legs[0]), "b": leg_json(&s.legs[1])})
}

fn core_json(i: usize, c: &CoreStats) -> Value {
    json!({
        "core": i,
        "backend": match c.backend { 0 => "io_uring", 1 => "epoll", _ => "other" },
        "sessions": c.sessions,
        "session_capacity": c.session_capacity,
        "loop_turns": c.loop_turns,
        "rx_packets": c.rx_packets,
        "tx_packets": c.tx_packets,
        "relayed_rtp": c.relayed_rtp,
        "relayed_rtcp": c.relayed_rtcp,
        "drops": {
            "malformed": c.drop_malformed,
            "stranger": c.drop_stranger,
            "no_session": c.drop_no_session,
            "not_latched": c.drop_not_latched,
            "no_destination": c.drop_no_destination,
            "held": c.drop_held,
            "not_media": c.drop_not_media,
        },
        "tx_errors": c.tx_errors,
        "syscalls": c.syscalls,
        "rx_nobufs": c.rx_nobufs,
        "events_dropped": c.events_dropped,
        "timeouts": c.timeouts,
        "dtmf_events": c.dtmf_events,
        "latency_ns": {
            "p50": c.latency_p50_ns,
            "p99": c.latency_p99_ns,
            "p999": c.latency_p999_ns,
            "max": c.latency_max_ns,
            "count": c.latency_count,
        },
    })
}

/// Serves the API until `stop`; one thread per connection.
pub fn serve(listener: &UnixListener, media: &Arc<MediaPlane>, stop: &AtomicBool) {
    if let Err(e) = listener.set_nonblocking(true) {
        eprintln!("trunkline-controlplane: api: {e}");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let media = Arc::clone(media);
                let spawned = thread::Builder::new()
                    .name("cp-api".into())
                    .spawn(move || connection(stream, &media));
                if let Err(e) = spawned {
                    eprintln!("trunkline-controlplane: api: spawn: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                eprintln!("trunkline-controlplane: api accept: {e}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn connection(stream: UnixStream, media: &MediaPlane) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE as u64 + 1).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) if n > MAX_LINE => {
                let _ = writeln!(
                    out,
                    "{}",
                    json!({"ok": false, "error": "request line too long"})
                );
                return;
            }
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let v = handle_line(media, line.trim());
        if writeln!(out, "{v}").is_err() {
            return;
        }
    }
}

use std::io::Read as _;
