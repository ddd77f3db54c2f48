//! RTCP (RFC 3550 §6): compound packets as checked zero-copy views.
//!
//! [`RtcpCompound::new`] walks the datagram once and checks every packet's common header
//! (version 2, length in 32-bit words fits, padding only in the last packet, lengths add up
//! to the datagram). Iterating it afterwards cannot fail. [`RtcpPacket::body`] checks and
//! returns the type-specific view (SR, RR, SDES, BYE, APP, or anything else as generic).
//!
//! Not checked: that the first packet is SR or RR (RFC 3550 §6.1 asks for it, RFC 5506
//! reduced-size RTCP drops it; see [`RtcpCompound::starts_with_report`]). SRTCP is not
//! handled here.

use crate::packet::{read_u16, read_u32};

/// Common header length.
pub const HEADER_LEN: usize = 4;
/// Sender report.
pub const PT_SR: u8 = 200;
/// Receiver report.
pub const PT_RR: u8 = 201;
/// Source description.
pub const PT_SDES: u8 = 202;
/// Goodbye.
pub const PT_BYE: u8 = 203;
/// Application-defined.
pub const PT_APP: u8 = 204;

const OFF_FLAGS: usize = 0;
const OFF_PT: usize = 1;
const OFF_LENGTH: usize = 2;
const VERSION_SHIFT: u8 = 6;
const PADDING_BIT: u8 = 0x20;
const COUNT_MASK: u8 = 0x1f;

/// Report block length (RFC 3550 §6.4.1).
pub const REPORT_BLOCK_LEN: usize = 24;
/// Sender info length in an SR (after the sender SSRC).
const SENDER_INFO_LEN: usize = 20;

/// Why bytes are not valid RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    /// Empty datagram, or fewer than 4 bytes left for a header.
    TooShort {
        /// Offset of the packet in the compound.
        at: usize,
    },
    /// Version is not 2.
    BadVersion {
        /// Offset of the packet in the compound.
        at: usize,
        /// Version found.
        version: u8,
    },
    /// The length field runs past the end of the datagram.
    LengthOverflow {
        /// Offset of the packet in the compound.
        at: usize,
        /// Claimed length in bytes.
        len: usize,
    },
    /// Padding in a packet that is not the last, or a padding count that is 0 or larger
    /// than the packet body.
    BadPadding {
        /// Offset of the packet in the compound.
        at: usize,
    },
    /// The packet type's body does not fit its length (e.g. an SR with 3 report blocks in
    /// room for 2, an SDES chunk without its terminator).
    BadBody {
        /// Packet type.
        packet_type: u8,
    },
}

impl std::fmt::Display for RtcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RtcpError::TooShort { at } => write!(f, "RTCP truncated at {at}"),
            RtcpError::BadVersion { at, version } => {
                write!(f, "RTCP version {version} at {at}, expected 2")
            }
            RtcpError::LengthOverflow { at, len } => {
                write!(f, "RTCP packet at {at} claims {len} bytes, past the end")
            }
            RtcpError::BadPadding { at } => write!(f, "bad RTCP padding at {at}"),
            RtcpError::BadBody { packet_type } => {
                write!(f, "RTCP packet type {packet_type} body does not fit")
            }
        }
    }
}

impl std::error::Error for RtcpError {}

/// A checked RTCP compound datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpCompound<'a> {
    bytes: &'a [u8],
}

impl<'a> RtcpCompound<'a> {
    /// Checks every packet's common header. Never panics, never allocates.
    pub fn new(bytes: &'a [u8]) -> Result<RtcpCompound<'a>, RtcpError> {
        if bytes.is_empty() {
            return Err(RtcpError::TooShort { at: 0 });
        }
        let mut at = 0;
        while at < bytes.len() {
            let len = check_header(bytes, at)?;
            let flags = bytes[at + OFF_FLAGS];
            if flags & PADDING_BIT != 0 {
                // RFC 3550 §6.4.1/A.2: only the last packet of a compound may be padded.
                let end = at + len;
                let pad = usize::from(bytes[end - 1]);
                if end != bytes.len() || pad == 0 || pad > len - HEADER_LEN {
                    return Err(RtcpError::BadPadding { at });
                }
            }
            at += len;
        }
        Ok(RtcpCompound { bytes })
    }

    /// The packets, in order.
    pub fn iter(&self) -> RtcpIter<'a> {
        RtcpIter {
            bytes: self.bytes,
            at: 0,
        }
    }

    /// True when the first packet is SR or RR (RFC 3550 §6.1 compound rule).
    pub fn starts_with_report(&self) -> bool {
        matches!(self.bytes[OFF_PT], PT_SR | PT_RR)
    }

    /// SSRC of the first packet's sender (SR/RR reporter, first SDES chunk, first BYE
    /// source, APP source) when it has one.
    pub fn sender_ssrc(&self) -> Option<u32> {
        let first = self.iter().next()?;
        let body = first.payload_without_padding();
        // SR/RR/APP always start with a sender SSRC; SDES and BYE only when count > 0.
        let has =
            matches!(first.packet_type(), PT_SR | PT_RR | PT_APP) || first.count_or_subtype() > 0;
        (has && body.len() >= 4).then(|| read_u32(body, 0))
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl<'a> IntoIterator for RtcpCompound<'a> {
    type Item = RtcpPacket<'a>;
    type IntoIter = RtcpIter<'a>;
    fn into_iter(self) -> RtcpIter<'a> {
        self.iter()
    }
}

/// Returns the packet length in bytes after checking the header at `at`.
fn check_header(bytes: &[u8], at: usize) -> Result<usize, RtcpError> {
    if bytes.len() - at < HEADER_LEN {
        return Err(RtcpError::TooShort { at });
    }
    let version = bytes[at + OFF_FLAGS] >> VERSION_SHIFT;
    if version != 2 {
        return Err(RtcpError::BadVersion { at, version });
    }
    let len = 4 * (usize::from(read_u16(bytes, at + OFF_LENGTH)) + 1);
    if len > bytes.len() - at {
        return Err(RtcpError::LengthOverflow { at, len });
    }
    Ok(len)
}

/// Iterator over a checked compound.
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = RtcpPacket<'a>;
    fn next(&mut self) -> Option<RtcpPacket<'a>> {
        if self.at >= self.bytes.len() {
            return None;
        }
        // Checked by RtcpCompound::new; a failure here would be our bug, so stop quietly.
        let len = check_header(self.bytes, self.at).ok()?;
        let packet = RtcpPacket {
            bytes: &self.bytes[self.at..self.at + len],
        };
        self.at += len;
        Some(packet)
    }
}

/// One packet of a compound: header checked, body not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket<'a> {
    bytes: &'a [u8],
}

impl<'a> RtcpPacket<'a> {
    /// Packet type (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP, ...).
    pub fn packet_type(&self) -> u8 {
        self.bytes[OFF_PT]
    }

    /// The 5-bit count field (report count, source count, or APP subtype).
    pub fn count_or_subtype(&self) -> u8 {
        self.bytes[OFF_FLAGS] & COUNT_MASK
    }

    /// The P bit.
    pub fn has_padding(&self) -> bool {
        self.bytes[OFF_FLAGS] & PADDING_BIT != 0
    }

    /// Whole packet, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bytes after the common header, padding removed.
    pub fn payload_without_padding(&self) -> &'a [u8] {
        let end = if self.has_padding() {
            // Checked by RtcpCompound::new.
            self.bytes.len() - usize::from(self.bytes[self.bytes.len() - 1])
        } else {
            self.bytes.len()
        };
        &self.bytes[HEADER_LEN..end.max(HEADER_LEN)]
    }

    /// Checks and returns the type-specific view.
    pub fn body(&self) -> Result<RtcpBody<'a>, RtcpError> {
        let pt = self.packet_type();
        let count = usize::from(self.count_or_subtype());
        let body = self.payload_without_padding();
        let bad = RtcpError::BadBody { packet_type: pt };
        match pt {
            PT_SR => {
                let need = 4 + SENDER_INFO_LEN + count * REPORT_BLOCK_LEN;
                if body.len() < need {
                    return Err(bad);
                }
                Ok(RtcpBody::SenderReport(SenderReport {
                    body,
                    count: count as u8,
                }))
            }
            PT_RR => {
                if body.len() < 4 + count * REPORT_BLOCK_LEN {
                    return Err(bad);
                }
                Ok(RtcpBody::ReceiverReport(ReceiverReport {
                    body,
                    count: count as u8,
                }))
            }
            PT_SDES => {
                let sdes = Sdes {
                    body,
                    count: count as u8,
                };
                if sdes.walk(|_, _, _| {}).is_none() {
                    return Err(bad);
                }
                Ok(RtcpBody::Sdes(sdes))
            }
            PT_BYE => {
                let ssrcs_len = 4 * count;
                if body.len() < ssrcs_len {
                    return Err(bad);
                }
                let reason = match body.get(ssrcs_len) {
                    None => None,
                    Some(&n) => {
                        let end = ssrcs_len + 1 + usize::from(n);
                        Some(body.get(ssrcs_len + 1..end).ok_or(bad)?)
                    }
                };
                Ok(RtcpBody::Bye(Bye {
                    ssrcs: &body[..ssrcs_len],
                    reason,
                }))
            }
            PT_APP => {
                if body.len() < 8 {
                    return Err(bad);
                }
                Ok(RtcpBody::App(App {
                    subtype: count as u8,
                    ssrc: read_u32(body, 0),
                    name: [body[4], body[5], body[6], body[7]],
                    data: &body[8..],
                }))
            }
            _ => Ok(RtcpBody::Other {
                packet_type: pt,
                count: count as u8,
                body,
            }),
        }
    }
}

/// The type-specific view of one RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpBody<'a> {
    /// SR (200).
    SenderReport(SenderReport<'a>),
    /// RR (201).
    ReceiverReport(ReceiverReport<'a>),
    /// SDES (202).
    Sdes(Sdes<'a>),
    /// BYE (203).
    Bye(Bye<'a>),
    /// APP (204).
    App(App<'a>),
    /// Any other type (RTPFB/PSFB 205/206, XR 207, ...), body uninterpreted.
    Other {
        /// Packet type.
        packet_type: u8,
        /// Count/format field.
        count: u8,
        /// Bytes after the common header, padding removed.
        body: &'a [u8],
    },
}

/// Sender report view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    body: &'a [u8],
    count: u8,
}

impl<'a> SenderReport<'a> {
    /// Sender SSRC.
    pub fn ssrc(&self) -> u32 {
        read_u32(self.body, 0)
    }
    /// 64-bit NTP timestamp.
    pub fn ntp_timestamp(&self) -> u64 {
        (u64::from(read_u32(self.body, 4)) << 32) | u64::from(read_u32(self.body, 8))
    }
    /// RTP timestamp matching the NTP timestamp.
    pub fn rtp_timestamp(&self) -> u32 {
        read_u32(self.body, 12)
    }
    /// Sender's packet count.
    pub fn packet_count(&self) -> u32 {
        read_u32(self.body, 16)
    }
    /// Sender's payload octet count.
    pub fn octet_count(&self) -> u32 {
        read_u32(self.body, 20)
    }
    /// Report blocks.
    pub fn report_blocks(&self) -> impl ExactSizeIterator<Item = ReportBlock> + 'a {
        blocks(&self.body[4 + SENDER_INFO_LEN..], self.count)
    }
}

/// Receiver report view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    body: &'a [u8],
    count: u8,
}

impl<'a> ReceiverReport<'a> {
    /// Reporter SSRC.
    pub fn ssrc(&self) -> u32 {
        read_u32(self.body, 0)
    }
    /// Report blocks.
    pub fn report_blocks(&self) -> impl ExactSizeIterator<Item = ReportBlock> + 'a {
        blocks(&self.body[4..], self.count)
    }
}

fn blocks(bytes: &[u8], count: u8) -> impl ExactSizeIterator<Item = ReportBlock> + '_ {
    bytes[..usize::from(count) * REPORT_BLOCK_LEN]
        .chunks_exact(REPORT_BLOCK_LEN)
        .map(ReportBlock::read)
}

/// One reception report block (RFC 3550 §6.4.1), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24-bit signed (duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub extended_highest_sequence: u32,
    /// Interarrival jitter, timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp.
    pub last_sr: u32,
    /// Delay since the last SR, 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn read(b: &[u8]) -> ReportBlock {
        let lost24 = (u32::from(b[5]) << 16) | (u32::from(b[6]) << 8) | u32::from(b[7]);
        // Sign-extend 24 bits.
        let cumulative_lost = ((lost24 << 8) as i32) >> 8;
        ReportBlock {
            ssrc: read_u32(b, 0),
            fraction_lost: b[4],
            cumulative_lost,
            extended_highest_sequence: read_u32(b, 8),
            jitter: read_u32(b, 12),
            last_sr: read_u32(b, 16),
            delay_since_last_sr: read_u32(b, 20),
        }
    }

    /// Writes the 24-byte wire form into `out`.
    pub fn write(&self, out: &mut [u8; REPORT_BLOCK_LEN]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0xff_ffff;
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4] = self.fraction_lost;
        out[5..8].copy_from_slice(&lost.to_be_bytes()[1..]);
        out[8..12].copy_from_slice(&self.extended_highest_sequence.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        out[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// SDES view: chunks of (SSRC, items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes<'a> {
    body: &'a [u8],
    count: u8,
}

impl<'a> Sdes<'a> {
    /// Calls `f(ssrc, item_type, value)` for every item; `None` when the chunks do not fit.
    fn walk(&self, mut f: impl FnMut(u32, u8, &'a [u8])) -> Option<()> {
        let b = self.body;
        let mut at = 0;
        for _ in 0..self.count {
            let word = b.get(at..at + 4)?;
            let ssrc = read_u32(word, 0);
            at += 4;
            loop {
                let item_type = *b.get(at)?;
                if item_type == 0 {
                    // END, then pad to the next 32-bit boundary.
                    at = (at + 4) & !3;
                    if at > b.len() {
                        return None;
                    }
                    break;
                }
                let len = usize::from(*b.get(at + 1)?);
                let value = b.get(at + 2..at + 2 + len)?;
                f(ssrc, item_type, value);
                at += 2 + len;
            }
        }
        Some(())
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        usize::from(self.count)
    }

    /// Every item as `(ssrc, item_type, value)`, in order (1 = CNAME, 2 = NAME, ...).
    pub fn for_each_item(&self, f: impl FnMut(u32, u8, &'a [u8])) {
        // Checked when the view was made.
        let _ = self.walk(f);
    }

    /// CNAME of the first chunk carrying one.
    pub fn cname(&self) -> Option<(u32, &'a [u8])> {
        let mut found = None;
        self.for_each_item(|ssrc, t, v| {
            if t == 1 && found.is_none() {
                found = Some((ssrc, v));
            }
        });
        found
    }
}

/// BYE view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    /// Optional reason text.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// Sources leaving.
    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| read_u32(c, 0))
    }
}

/// APP view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct App<'a> {
    /// 5-bit subtype.
    pub subtype: u8,
    /// Source.
    pub ssrc: u32,
    /// Four ASCII characters.
    pub name: [u8; 4],
    /// Application data.
    pub data: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pt: u8, count: u8, words_after: u16) -> [u8; 4] {
        let l = words_after.to_be_bytes();
        [0x80 | count, pt, l[0], l[1]]
    }

    fn rr_with_sdes() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&header(PT_RR, 1, 7));
        v.extend_from_slice(&0x1111_1111u32.to_be_bytes());
        let mut block = [0u8; 24];
        ReportBlock {
            ssrc: 0x2222_2222,
            fraction_lost: 64,
            cumulative_lost: -3,
            extended_highest_sequence: 0x1_0005,
            jitter: 42,
            last_sr: 7,
            delay_since_last_sr: 9,
        }
        .write(&mut block);
        v.extend_from_slice(&block);
        // SDES: one chunk, CNAME "ab", END, pad to word: 4 + 2+2 + 1 -> 12 bytes (3 words)
        v.extend_from_slice(&header(PT_SDES, 1, 3));
        v.extend_from_slice(&0x1111_1111u32.to_be_bytes());
        v.extend_from_slice(&[1, 2, b'a', b'b', 0, 0, 0, 0]);
        v
    }

    #[test]
    fn compound_rr_sdes() {
        let bytes = rr_with_sdes();
        let c = RtcpCompound::new(&bytes).expect("valid");
        assert!(c.starts_with_report());
        assert_eq!(c.sender_ssrc(), Some(0x1111_1111));
        let mut it = c.iter();
        let rr = it.next().expect("rr");
        match rr.body() {
            Ok(RtcpBody::ReceiverReport(r)) => {
                assert_eq!(r.ssrc(), 0x1111_1111);
                let b: Vec<_> = r.report_blocks().collect();
                assert_eq!(b.len(), 1);
                assert_eq!(b[0].cumulative_lost, -3);
                assert_eq!(b[0].fraction_lost, 64);
                assert_eq!(b[0].extended_highest_sequence, 0x1_0005);
            }
            other => panic!("{other:?}"),
        }
        match it.next().expect("sdes").body() {
            Ok(RtcpBody::Sdes(s)) => assert_eq!(s.cname(), Some((0x1111_1111, &b"ab"[..]))),
            other => panic!("{other:?}"),
        }
        assert!(it.next().is_none());
    }

    #[test]
    fn header_errors() {
        let bytes = rr_with_sdes();
        assert_eq!(
            RtcpCompound::new(&bytes[..bytes.len() - 4]),
            Err(RtcpError::LengthOverflow { at: 32, len: 16 })
        );
        assert_eq!(
            RtcpCompound::new(&bytes[..34]),
            Err(RtcpError::TooShort { at: 32 })
        );
        let mut v1 = bytes.clone();
        v1[32] = 0x41;
        assert_eq!(
            RtcpCompound::new(&v1),
            Err(RtcpError::BadVersion { at: 32, version: 1 })
        );
        let mut pad_first = bytes.clone();
        pad_first[0] |= PADDING_BIT;
        assert_eq!(
            RtcpCompound::new(&pad_first),
            Err(RtcpError::BadPadding { at: 0 })
        );
        assert_eq!(RtcpCompound::new(&[]), Err(RtcpError::TooShort { at: 0 }));
    }

    #[test]
    fn body_errors_and_bye_app() {
        // RR claiming 2 blocks in room for 1.
        let mut bytes = rr_with_sdes();
        bytes[0] = 0x82;
        let c = RtcpCompound::new(&bytes).expect("headers fine");
        assert_eq!(
            c.iter().next().map(|p| p.body()),
            Some(Err(RtcpError::BadBody { packet_type: PT_RR }))
        );
        let mut bye = header(PT_BYE, 1, 3).to_vec();
        bye.extend_from_slice(&5u32.to_be_bytes());
        bye.extend_from_slice(&[3, b'b', b'y', b'e', 0, 0, 0, 0]);
        let c = RtcpCompound::new(&bye).expect("bye");
        match c.iter().next().map(|p| p.body()) {
            Some(Ok(RtcpBody::Bye(b))) => {
                assert!(b.ssrcs().eq([5]));
                assert_eq!(b.reason, Some(&b"bye"[..]));
            }
            other => panic!("{other:?}"),
        }
        let mut app = header(PT_APP, 3, 3).to_vec();
        app.extend_from_slice(&9u32.to_be_bytes());
        app.extend_from_slice(b"TEST");
        app.extend_from_slice(&[1, 2, 3, 4]);
        let c = RtcpCompound::new(&app).expect("app");
        match c.iter().next().map(|p| p.body()) {
            Some(Ok(RtcpBody::App(a))) => {
                assert_eq!(
                    (a.subtype, a.ssrc, &a.name, a.data),
                    (3, 9, b"TEST", &[1, 2, 3, 4][..])
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
