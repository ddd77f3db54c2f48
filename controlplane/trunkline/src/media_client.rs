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

impl MediaClient {
    /// A client of the API at `path`; the relay's media address is `media_ip`.
    pub fn new(path: PathBuf, media_ip: IpAddr) -> MediaClient {
        MediaClient {
            path,
            media_ip,
            conn: None,
        }
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
        let v =
            self.call(&json!({"op": "create", "a": leg_json(a, true), "b": leg_json(&b, true)}))?;
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
        let Some(r) = b.remote else { return Ok(()) };
        self.call(&json!({"op": "update", "id": id, "b": {"remote": r.to_string()}}))
            .map(|_| ())
    }

    fn set_caller(&mut self, id: u64, a: &LegMedia) -> Result<(), String> {
        let Some(r) = a.remote else { return Ok(()) };
        self.call(&json!({"op": "update", "id": id, "a": {"remote": r.to_string()}}))
            .map(|_| ())
    }

    fn delete(&mut self, id: u64) {
        let _ = self.call(&json!({"op": "delete", "id": id}));
    }
}
