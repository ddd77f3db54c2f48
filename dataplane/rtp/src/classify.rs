//! Demultiplexing one UDP port that carries RTP, RTCP, STUN and DTLS.
//!
//! RFC 7983 §7 splits on the first byte: 0–3 STUN, 16–19 ZRTP, 20–63 DTLS, 64–79 TURN
//! channel data, 128–191 RTP or RTCP. RFC 5761 §4 then splits RTP from RTCP with the second
//! byte: RTCP packet types 192–223 land there, and RTP payload types that would collide
//! (64–95 with the marker bit set) must not be used when RTCP is multiplexed.
//!
//! This looks at two bytes at most and checks nothing else: the caller still parses.

/// What a datagram looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// RTP data.
    Rtp,
    /// RTCP (compound or not).
    Rtcp,
    /// STUN (ICE connectivity checks, keepalives).
    Stun,
    /// DTLS (DTLS-SRTP key exchange).
    Dtls,
    /// Anything else: ZRTP, TURN channel data, garbage.
    Unknown,
}

/// Second-byte range that marks RTCP on a multiplexed port (RFC 5761 §4).
const RTCP_PT_RANGE: std::ops::RangeInclusive<u8> = 192..=223;

/// Classifies a datagram by its first two bytes.
pub fn classify(bytes: &[u8]) -> Kind {
    match bytes {
        [0..=3, ..] => Kind::Stun,
        [20..=63, ..] => Kind::Dtls,
        [128..=191, second, ..] if RTCP_PT_RANGE.contains(second) => Kind::Rtcp,
        [128..=191, _, ..] => Kind::Rtp,
        _ => Kind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(classify(&[]), Kind::Unknown);
        assert_eq!(classify(&[0x00, 0x01]), Kind::Stun);
        assert_eq!(classify(&[3]), Kind::Stun);
        assert_eq!(classify(&[16, 0]), Kind::Unknown); // ZRTP
        assert_eq!(classify(&[22, 0xfe, 0xfd]), Kind::Dtls);
        assert_eq!(classify(&[64, 0]), Kind::Unknown); // TURN channel
        assert_eq!(classify(&[0x80, 0x00]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 8]), Kind::Rtp); // PCMA with marker: 136
        assert_eq!(classify(&[0x81, 200]), Kind::Rtcp); // SR
        assert_eq!(classify(&[0x80, 223]), Kind::Rtcp);
        assert_eq!(classify(&[0x80, 224]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 191]), Kind::Rtp);
        assert_eq!(classify(&[0x80]), Kind::Unknown);
        assert_eq!(classify(&[0xc0, 0]), Kind::Unknown);
    }
}
