//! The proxy's [`MediaAnchor`]: the control plane's media API (JSON lines on its Unix
//! socket), one connection kept per SIP listener thread and re-opened when the control plane
//! restarted.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use controlplane::proxy::{Anchor, LegMedia, MediaAnchor};
use serde_json::{json, Value};

/// Most payload types a leg carries (the shmq record's limit).
const MAX_PTS: usize = 8;

/// A media-API client.
#[derive(Debug)]
pub struct MediaClient {
    path: PathBuf,
    media_ip: IpAddr,
    conn: Option<(UnixStream, BufReader<UnixStream>)>,
    /// Inactivity timeout given to both legs of every session (0: none).
    timeout_ms: u32,
    /// The media API's event cursor, and when it was last polled.
    events_next: Option<u64>,
    last_poll: Option<std::time::Instant>,
}

fn leg_json(l: &LegMedia, with_remote: bool) -> Value {
    let mut v = json!({});
    if with_remote {
        v["remote"] = l.remote.map_or(Value::Null, |r| json!(r.to_string()));
    }
    if !l.payload_types.is_empty() {
        let pts: Vec<Value> = l
            .payload_types
            .iter()
            .take(MAX_PTS)
            .map(|(pt, hz)| json!([pt, hz]))
            .collect();
        v["payload_types"] = Value::Array(pts);
    }
    if let Some(te) = l.telephone_event {
        v["telephone_event_pt"] = json!(te);
    }
    v
}

/// An update of one leg from its SDP: where it receives (when named) and whether it is on
/// hold (every update sets the hold flag, so a call taken off hold resumes).
fn leg_update(l: &LegMedia) -> Value {
    let mut v = json!({ "hold": l.hold });
    if let Some(r) = l.remote {
        v["remote"] = json!(r.to_string());
    }
    v
}

impl MediaClient {
    /// A client of the API at `path`; the relay's media address is `media_ip`.
    pub fn new(path: PathBuf, media_ip: IpAddr) -> MediaClient {
        MediaClient {
            path,
            media_ip,
            conn: None,
            timeout_ms: 0,
            events_next: None,
            last_poll: None,
        }
    }

    /// Sessions get this inactivity timeout on both legs; the proxy ends answered calls
    /// whose media stops for that long.
    pub fn with_timeout(mut self, timeout: Duration) -> MediaClient {
        self.timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        self
    }

    fn call(&mut self, req: &Value) -> Result<Value, String> {
        // One retry on a fresh connection: the control plane may have restarted.
        for _ in 0..2 {
            if self.conn.is_none() {
                let s = UnixStream::connect(&self.path)
                    .map_err(|e| format!("media API {}: {e}", self.path.display()))?;
                s.set_read_timeout(Some(Duration::from_secs(2)))
                    .map_err(|e| e.to_string())?;
                let r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
                self.conn = Some((s, r));
            }
            let Some((w, r)) = self.conn.as_mut() else {
                continue;
            };
            let mut line = String::new();
            let ok = writeln!(w, "{req}").is_ok() && r.read_line(&mut line).is_ok_and(|n| n > 0);
            if !ok {
                self.conn = None;
                continue;
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| format!("media API: {e}"))?;
            if v["ok"] == Value::Bool(true) {
                return Ok(v);
            }
            return Err(format!("media API: {}", v["error"]));
        }
        Err("media API: no answer".into())
    }
}

impl MediaAnchor for MediaClient {
    fn create(&mut self, a: &LegMedia) -> Result<Anchor, String> {
        let b = LegMedia {
            remote: None,
            ..a.clone()
        };
        let (mut la, mut lb) = (leg_json(a, true), leg_json(&b, true));
        if self.timeout_ms > 0 {
            la["timeout_ms"] = json!(self.timeout_ms);
            lb["timeout_ms"] = json!(self.timeout_ms);
        }
        let v = self.call(&json!({"op": "create", "a": la, "b": lb}))?;
        let s = &v["session"];
        let port = |i: usize| {
            s["ports"][i]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("media API: create answered {v}"))
        };
        Ok(Anchor {
            id: s["id"]
                .as_u64()
                .ok_or_else(|| format!("media API: create answered {v}"))?,
            addr: self.media_ip,
            port_a: port(0)?,
            port_b: port(1)?,
        })
    }

    fn set_callee(&mut self, id: u64, b: &LegMedia) -> Result<(), String> {
        self.call(&json!({"op": "update", "id": id, "b": leg_update(b)}))
            .map(|_| ())
    }

    fn set_caller(&mut self, id: u64, a: &LegMedia) -> Result<(), String> {
        self.call(&json!({"op": "update", "id": id, "a": leg_update(a)}))
            .map(|_| ())
    }

    fn delete(&mut self, id: u64) {
        let _ = self.call(&json!({"op": "delete", "id": id}));
    }

    fn timed_out(&mut self) -> Vec<u64> {
        // Once a second is plenty next to timeouts of seconds.
        if self.timeout_ms == 0
            || self
                .last_poll
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Vec::new();
        }
        self.last_poll = Some(std::time::Instant::now());
        let req = match self.events_next {
            Some(n) => json!({"op": "events", "since": n}),
            None => json!({"op": "events"}),
        };
        let Ok(v) = self.call(&req) else {
            return Vec::new();
        };
        if let Some(n) = v["next"].as_u64() {
            self.events_next = Some(n);
        }
        v["events"]
            .as_array()
            .map(|evs| {
                evs.iter()
                    .filter(|e| e["type"] == "media_timeout")
                    .filter_map(|e| e["session"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    }
}
