//! A client of rtpengine's ng control protocol (UDP, `COOKIE <bencoded dict>`), enough to set
//! a call up the way a SIP proxy does — `offer` with the caller's SDP, `answer` with the
//! callee's — and tear it down with `delete`.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use serde_bencode::value::Value;

/// An ng client bound to an ephemeral loopback port.
#[derive(Debug)]
pub struct NgClient {
    sock: UdpSocket,
    server: SocketAddr,
    cookie: u64,
}

fn s(v: &str) -> Value {
    Value::Bytes(v.as_bytes().to_vec())
}

impl NgClient {
    /// A client of the ng listener at `server`.
    pub fn new(server: SocketAddr) -> io::Result<NgClient> {
        let sock = UdpSocket::bind((server.ip(), 0))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(NgClient {
            sock,
            server,
            cookie: u64::from(std::process::id()) << 32,
        })
    }

    /// Sends `dict` as one request and returns the answer's dict; an answer whose `result`
    /// is not `ok` (or `pong`) is an error naming rtpengine's reason.
    pub fn call(&mut self, dict: Vec<(&str, Value)>) -> io::Result<HashMap<Vec<u8>, Value>> {
        self.cookie += 1;
        let cookie = format!("{:x}", self.cookie);
        let map: HashMap<Vec<u8>, Value> = dict
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect();
        let body = serde_bencode::to_bytes(&Value::Dict(map))
            .map_err(|e| io::Error::other(format!("bencode: {e}")))?;
        let mut msg = Vec::with_capacity(cookie.len() + 1 + body.len());
        msg.extend_from_slice(cookie.as_bytes());
        msg.push(b' ');
        msg.extend_from_slice(&body);
        let mut buf = vec![0u8; 65_536];
        for _attempt in 0..3 {
            self.sock.send_to(&msg, self.server)?;
            loop {
                let n = match self.sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break; // retransmit
                    }
                    Err(e) => return Err(e),
                };
                let reply = &buf[..n];
                let Some(sp) = reply.iter().position(|&b| b == b' ') else {
                    continue;
                };
                if &reply[..sp] != cookie.as_bytes() {
                    continue; // an answer to an earlier, retransmitted request
                }
                let v: Value = serde_bencode::from_bytes(&reply[sp + 1..])
                    .map_err(|e| io::Error::other(format!("ng answer: {e}")))?;
                let Value::Dict(d) = v else {
                    return Err(io::Error::other("ng answer is not a dictionary"));
                };
                let result = text(&d, "result").unwrap_or_default();
                if result == "ok" || result == "pong" {
                    return Ok(d);
                }
                let reason = text(&d, "error-reason").unwrap_or_else(|| result.clone());
                return Err(io::Error::other(format!("rtpengine: {reason}")));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "rtpengine did not answer the ng request",
        ))
    }

    /// `ping` → `pong`.
    pub fn ping(&mut self) -> io::Result<()> {
        self.call(vec![("command", s("ping"))]).map(|_| ())
    }

    /// Offers `sdp` for `call_id` from `from_tag`; returns the rewritten SDP (the relay's
    /// address facing the callee).
    pub fn offer(&mut self, call_id: &str, from_tag: &str, sdp: &str) -> io::Result<String> {
        let d = self.call(vec![
            ("command", s("offer")),
            ("call-id", s(call_id)),
            ("from-tag", s(from_tag)),
            ("sdp", s(sdp)),
            ("ICE", s("remove")),
            (
                "replace",
                Value::List(vec![s("origin"), s("session-connection")]),
            ),
        ])?;
        text(&d, "sdp").ok_or_else(|| io::Error::other("offer answer without sdp"))
    }

    /// Answers with `sdp` from `to_tag`; returns the rewritten SDP (the relay's address facing
    /// the caller).
    pub fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
    ) -> io::Result<String> {
        let d = self.call(vec![
            ("command", s("answer")),
            ("call-id", s(call_id)),
            ("from-tag", s(from_tag)),
            ("to-tag", s(to_tag)),
            ("sdp", s(sdp)),
            ("ICE", s("remove")),
            (
                "replace",
                Value::List(vec![s("origin"), s("session-connection")]),
            ),
        ])?;
        text(&d, "sdp").ok_or_else(|| io::Error::other("answer answer without sdp"))
    }

    /// Deletes the call.
    pub fn delete(&mut self, call_id: &str) -> io::Result<()> {
        self.call(vec![("command", s("delete")), ("call-id", s(call_id))])
            .map(|_| ())
    }
}

fn text(d: &HashMap<Vec<u8>, Value>, key: &str) -> Option<String> {
    match d.get(key.as_bytes()) {
        Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// An audio-only SDP for an endpoint at `addr` offering PCMU and telephone-event.
pub fn sdp_for(addr: SocketAddr, session: u64) -> String {
    let ip = addr.ip();
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- {session} 1 IN {fam} {ip}\r\ns=trunkbench\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        port = addr.port()
    )
}

/// The media address an SDP names: the audio `m=` port at the session (or media) `c=` address.
pub fn media_addr(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(c) = line.strip_prefix("c=IN ") {
            ip = c.split_whitespace().nth(1).and_then(|a| a.parse().ok());
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            if port.is_none() {
                port = m.split_whitespace().next().and_then(|p| p.parse().ok());
            }
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_addr_reads_c_and_m() {
        let sdp = sdp_for("127.0.0.1:4000".parse().unwrap(), 1);
        assert_eq!(media_addr(&sdp), Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(media_addr("v=0\r\n"), None);
    }
}
