//! Message framing on stream transports (TCP, TLS, WebSocket-less SIP over streams).
//!
//! RFC 3261 §18.3: on a stream every message carries Content-Length, and the message ends
//! after that many body bytes. RFC 5626 §4.4.1 keepalives: a client sends a "ping" of
//! CRLF CRLF, the server answers with a "pong" of one CRLF.
//!
//! [`next_frame`] looks at the bytes buffered for a connection and says what the first thing
//! in them is and how long it is; the caller consumes that many bytes and calls again. It
//! never copies and never allocates. Limits bound how much a peer can make us buffer.

use crate::chars::{eq_ic, trim};

/// Bounds on what one connection may make us buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest header section (start line through the empty line).
    pub max_header_bytes: usize,
    /// Largest body.
    pub max_body_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 48 * 1024,
        }
    }
}

/// What starts the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete message of `len` bytes: hand `&buf[..len]` to [`crate::Message::parse`].
    Message {
        /// Bytes in the message, header and body.
        len: usize,
    },
    /// A keepalive ping (CRLF CRLF, 4 bytes): answer with a single CRLF.
    Ping,
    /// A keepalive pong (one CRLF, 2 bytes) followed by more data: consume it.
    Pong,
    /// Not enough bytes yet; read more.
    Incomplete,
}

impl Frame {
    /// Bytes to consume for this frame (0 when incomplete).
    pub fn len(&self) -> usize {
        match self {
            Frame::Message { len } => *len,
            Frame::Ping => 4,
            Frame::Pong => 2,
            Frame::Incomplete => 0,
        }
    }

    /// True when nothing can be consumed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a stream can't be framed. Each is fatal for the connection: after it, message
/// boundaries are lost, so the caller answers 400 if it can and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// No empty line within [`FrameLimits::max_header_bytes`].
    HeaderTooLarge,
    /// Stream messages must carry Content-Length.
    MissingContentLength,
    /// Content-Length is not a decimal, or appears twice with different values.
    BadContentLength,
    /// Content-Length above [`FrameLimits::max_body_bytes`].
    BodyTooLarge,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::HeaderTooLarge => "header section too large",
            FrameError::MissingContentLength => "stream message without Content-Length",
            FrameError::BadContentLength => "bad Content-Length",
            FrameError::BodyTooLarge => "body too large",
        })
    }
}

impl std::error::Error for FrameError {}

/// Frames the first message or keepalive in `buf`.
pub fn next_frame(buf: &[u8], limits: &FrameLimits) -> Result<Frame, FrameError> {
    if buf.is_empty() {
        return Ok(Frame::Incomplete);
    }
    if buf[0] == b'\r' || buf[0] == b'\n' {
        return Ok(keepalive(buf));
    }
    let search = &buf[..buf.len().min(limits.max_header_bytes)];
    let Some(end) = memchr::memmem::find(search, b"\r\n\r\n") else {
        if buf.len() >= limits.max_header_bytes {
            return Err(FrameError::HeaderTooLarge);
        }
        return Ok(Frame::Incomplete);
    };
    let head_len = end + 4;
    let body_len = content_length(&buf[..end])?;
    if body_len > limits.max_body_bytes {
        return Err(FrameError::BodyTooLarge);
    }
    let len = head_len + body_len;
    if buf.len() < len {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Message { len })
}

fn keepalive(buf: &[u8]) -> Frame {
    match buf {
        [b'\r', b'\n', b'\r', b'\n', ..] => Frame::Ping,
        // A lone CRLF may be the first half of a ping: wait for what follows.
        [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => Frame::Incomplete,
        [b'\r', b'\n', ..] => Frame::Pong,
        // Bare LF or CR not followed by LF: consume one byte at a time as noise before a
        // message (RFC 3261 §7.5 lets CRLFs precede a message).
        _ => Frame::Pong,
    }
}

/// Finds the Content-Length in a header section (without its final CRLF CRLF). Folded lines
/// are skipped; the long and compact forms are both accepted; duplicates must agree.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if eq_ic(name, b"Content-Length") || eq_ic(name, b"l") {
            let v = trim(&line[colon + 1..]);
            let n = crate::chars::parse_u64_max(v, u32::MAX as u64)
                .ok_or(FrameError::BadContentLength)? as usize;
            if found.is_some_and(|f| f != n) {
                return Err(FrameError::BadContentLength);
            }
            found = Some(n);
        }
    }
    found.ok_or(FrameError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    #[test]
    fn frames_back_to_back_messages_and_keepalives() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\nOPT");
        let lim = FrameLimits::default();
        let mut pos = 0;
        let mut seen = Vec::new();
        loop {
            let f = next_frame(&stream[pos..], &lim).unwrap();
            if f.is_empty() {
                break;
            }
            seen.push(f);
            pos += f.len();
        }
        assert_eq!(
            seen,
            [
                Frame::Ping,
                Frame::Message { len: MSG.len() },
                Frame::Message { len: MSG.len() },
                Frame::Pong
            ]
        );
        assert_eq!(&stream[pos..], b"OPT");
    }

    #[test]
    fn every_split_point_is_incomplete_until_the_last_byte() {
        let lim = FrameLimits::default();
        for cut in 1..MSG.len() {
            assert_eq!(
                next_frame(&MSG[..cut], &lim),
                Ok(Frame::Incomplete),
                "cut {cut}"
            );
        }
        assert_eq!(next_frame(MSG, &lim), Ok(Frame::Message { len: MSG.len() }));
    }

    #[test]
    fn limits_and_errors() {
        let lim = FrameLimits {
            max_header_bytes: 128,
            max_body_bytes: 4,
        };
        assert_eq!(next_frame(MSG, &lim), Err(FrameError::BodyTooLarge));
        assert_eq!(
            next_frame(&[b'A'; 200], &lim),
            Err(FrameError::HeaderTooLarge)
        );
        let lim = FrameLimits::default();
        assert_eq!(
            next_frame(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", &lim),
            Err(FrameError::MissingContentLength)
        );
        assert_eq!(
            next_frame(
                b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
                &lim
            ),
            Err(FrameError::BadContentLength)
        );
        assert_eq!(
            next_frame(
                b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab",
                &lim
            ),
            Err(FrameError::BadContentLength)
        );
    }
}
