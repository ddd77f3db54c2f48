//! RFC 4733 telephone-events (DTMF) as RTP payload: parse, write, and detect events.
//!
//! A sender repeats an event's packets as the tone goes on (same RTP timestamp, growing
//! duration) and sends the final packet, with the E bit, three times (§2.5.1.4).
//! [`DtmfDetector`] turns that into exactly one [`DtmfEvent::Start`] and one
//! [`DtmfEvent::End`] per event: an event is identified by its RTP timestamp, a new
//! timestamp starts a new event, packets of older timestamps are ignored, and an event whose
//! end packets were all lost is ended when the next one starts (`end_seen: false`).
//!
//! Not handled: long events split into segments of 65535 timestamp units (§2.5.1.3) are
//! reported as one event per segment; RFC 2198 redundancy is not unpacked.

use crate::packet::RtpPacket;

/// Payload length of one event (§2.3).
pub const EVENT_LEN: usize = 4;
const END_BIT: u8 = 0x80;
const VOLUME_MASK: u8 = 0x3f;

/// Telephone-event codes 0–16 (RFC 4733 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    /// 0–9.
    Digit(u8),
    /// `*` (10).
    Star,
    /// `#` (11).
    Pound,
    /// A–D (12–15), as `b'A'..=b'D'`.
    Letter(u8),
    /// Hook flash (16).
    Flash,
    /// Any other event code (fax tones, line events...).
    Other(u8),
}

impl Tone {
    /// Maps an event code.
    pub fn from_code(code: u8) -> Tone {
        match code {
            0..=9 => Tone::Digit(code),
            10 => Tone::Star,
            11 => Tone::Pound,
            12..=15 => Tone::Letter(b'A' + code - 12),
            16 => Tone::Flash,
            _ => Tone::Other(code),
        }
    }

    /// The RFC 4733 event code (inverse of [`Tone::from_code`]).
    pub fn code(&self) -> u8 {
        match *self {
            Tone::Digit(d) => d,
            Tone::Star => 10,
            Tone::Pound => 11,
            Tone::Letter(l) => 12 + l.saturating_sub(b'A'),
            Tone::Flash => 16,
            Tone::Other(c) => c,
        }
    }

    /// The keypad character, for 0–9, *, #, A–D.
    pub fn as_char(&self) -> Option<char> {
        match *self {
            Tone::Digit(d) => Some(char::from(b'0' + d)),
            Tone::Star => Some('*'),
            Tone::Pound => Some('#'),
            Tone::Letter(l) => Some(char::from(l)),
            Tone::Flash | Tone::Other(_) => None,
        }
    }
}

/// One telephone-event payload (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code.
    pub code: u8,
    /// E bit.
    pub end: bool,
    /// Power level, 0 to −63 dBm0 written as 0–63.
    pub volume: u8,
    /// Duration so far, timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of a payload; `None` when shorter than 4 bytes.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let b = payload.get(..EVENT_LEN)?;
        Some(TelephoneEvent {
            code: b[0],
            end: b[1] & END_BIT != 0,
            volume: b[1] & VOLUME_MASK,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// Wire form (the R bit is zero; volume is masked to 6 bits).
    pub fn to_bytes(&self) -> [u8; EVENT_LEN] {
        let d = self.duration.to_be_bytes();
        let flags = (self.volume & VOLUME_MASK) | if self.end { END_BIT } else { 0 };
        [self.code, flags, d[0], d[1]]
    }
}

/// One event reported by [`DtmfDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfEvent {
    /// An event began.
    Start {
        /// Which tone.
        tone: Tone,
        /// Volume of the first packet seen.
        volume: u8,
        /// RTP timestamp identifying the event.
        timestamp: u32,
    },
    /// An event ended.
    End {
        /// Which tone.
        tone: Tone,
        /// Volume of the last packet seen.
        volume: u8,
        /// RTP timestamp identifying the event.
        timestamp: u32,
        /// Longest duration seen, timestamp units.
        duration: u16,
        /// False when no end packet arrived (ended by the next event or [`DtmfDetector::flush`]).
        end_seen: bool,
    },
}

/// Up to three events from one packet: end of the previous event, start and end of a new
/// one (when its only surviving packet already carries the E bit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtmfEvents {
    events: [Option<DtmfEvent>; 3],
}

impl DtmfEvents {
    fn push(&mut self, e: DtmfEvent) {
        if let Some(slot) = self.events.iter_mut().find(|s| s.is_none()) {
            *slot = Some(e);
        }
    }

    /// True when nothing happened.
    pub fn is_empty(&self) -> bool {
        self.events[0].is_none()
    }
}

impl IntoIterator for DtmfEvents {
    type Item = DtmfEvent;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<DtmfEvent>, 3>>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.into_iter().flatten()
    }
}

#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    tone: Tone,
    volume: u8,
    duration: u16,
    ended: bool,
}

/// Detects events on one stream. Fixed size.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    payload_type: u8,
    current: Option<Current>,
}

impl DtmfDetector {
    /// Detector for the telephone-event payload type negotiated in SDP.
    pub fn new(payload_type: u8) -> DtmfDetector {
        DtmfDetector {
            payload_type,
            current: None,
        }
    }

    /// The telephone-event payload type.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Takes one RTP packet of the stream; packets of other payload types and short
    /// payloads are ignored.
    pub fn on_packet(&mut self, packet: &RtpPacket<'_>) -> DtmfEvents {
        let mut out = DtmfEvents::default();
        if packet.payload_type() != self.payload_type {
            return out;
        }
        let Some(ev) = TelephoneEvent::parse(packet.payload()) else {
            return out;
        };
        let ts = packet.timestamp();
        if let Some(cur) = self.current.as_mut() {
            if cur.timestamp == ts {
                cur.duration = cur.duration.max(ev.duration);
                cur.volume = ev.volume;
                if ev.end && !cur.ended {
                    cur.ended = true;
                    out.push(end_of(cur, true));
                }
                return out;
            }
            if (ts.wrapping_sub(cur.timestamp) as i32) < 0 {
                // A late packet of an earlier event.
                return out;
            }
            if !cur.ended {
                out.push(end_of(cur, false));
            }
        }
        let tone = Tone::from_code(ev.code);
        out.push(DtmfEvent::Start {
            tone,
            volume: ev.volume,
            timestamp: ts,
        });
        let cur = Current {
            timestamp: ts,
            tone,
            volume: ev.volume,
            duration: ev.duration,
            ended: ev.end,
        };
        if ev.end {
            out.push(end_of(&cur, true));
        }
        self.current = Some(cur);
        out
    }

    /// Ends an event still in progress (stream stopped, leg torn down).
    pub fn flush(&mut self) -> Option<DtmfEvent> {
        let cur = self.current.as_mut()?;
        if cur.ended {
            return None;
        }
        cur.ended = true;
        Some(end_of(cur, false))
    }
}

fn end_of(cur: &Current, end_seen: bool) -> DtmfEvent {
    DtmfEvent::End {
        tone: cur.tone,
        volume: cur.volume,
        timestamp: cur.timestamp,
        duration: cur.duration,
        end_seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::RtpBuilder;

    fn pkt(buf: &mut [u8], pt: u8, ts: u32, ev: TelephoneEvent) -> usize {
        let payload = ev.to_bytes();
        RtpBuilder::new(pt, 1)
            .timestamp(ts)
            .payload(&payload)
            .write(buf)
            .expect("fits")
    }

    #[test]
    fn tones() {
        assert_eq!(Tone::from_code(5).as_char(), Some('5'));
        assert_eq!(Tone::from_code(10).as_char(), Some('*'));
        assert_eq!(Tone::from_code(11).as_char(), Some('#'));
        assert_eq!(Tone::from_code(15).as_char(), Some('D'));
        assert_eq!(Tone::from_code(16), Tone::Flash);
        assert_eq!(Tone::from_code(40), Tone::Other(40));
    }

    #[test]
    fn lone_end_packet_gives_start_and_end() {
        let mut d = DtmfDetector::new(101);
        let mut buf = [0u8; 32];
        let ev = TelephoneEvent {
            code: 1,
            end: true,
            volume: 10,
            duration: 800,
        };
        let n = pkt(&mut buf, 101, 1000, ev);
        let p = RtpPacket::new(&buf[..n]).expect("valid");
        let got: Vec<_> = d.on_packet(&p).into_iter().collect();
        assert_eq!(got.len(), 2);
        assert!(d.on_packet(&p).is_empty());
        assert_eq!(d.flush(), None);
    }
}
