//! No input, however mangled, makes a parser panic; valid builder output always parses
//! back to what was built.

use proptest::prelude::*;
use rtp::dtmf::{DtmfDetector, TelephoneEvent};
use rtp::leg::LegConfig;
use rtp::{classify, Leg, RtcpCompound, RtpBuilder, RtpPacket};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = classify(&bytes);
        if let Ok(p) = RtpPacket::new(&bytes) {
            // Touch every accessor.
            let _ = (p.marker(), p.payload_type(), p.sequence(), p.timestamp(), p.ssrc());
            let _ = p.csrcs().count();
            let _ = p.extension();
            prop_assert!(p.header_len() + p.payload().len() + p.padding_len() == bytes.len());
            let _ = TelephoneEvent::parse(p.payload());
            let mut d = DtmfDetector::new(p.payload_type());
            let _ = d.on_packet(&p).into_iter().count();
        }
        if let Ok(c) = RtcpCompound::new(&bytes) {
            let _ = c.sender_ssrc();
            for p in c.iter() {
                if let Ok(body) = p.body() {
                    match body {
                        rtp::RtcpBody::SenderReport(sr) => { let _ = sr.report_blocks().count(); }
                        rtp::RtcpBody::ReceiverReport(rr) => { let _ = rr.report_blocks().count(); }
                        rtp::RtcpBody::Sdes(s) => { let _ = s.cname(); }
                        rtp::RtcpBody::Bye(b) => { let _ = b.ssrcs().count(); }
                        _ => {}
                    }
                }
            }
        }
    }

    /// RTP-looking headers (version 2, random flags) exercise the deeper checks.
    #[test]
    fn rtp_like_bytes_never_panic(
        first in 0x80u8..0xc0,
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![first];
        bytes.extend(rest);
        let _ = RtpPacket::new(&bytes);
        let _ = RtcpCompound::new(&bytes);
        let t0 = Instant::now();
        let mut leg = Leg::new(t0, LegConfig { dtmf_payload_type: Some(101), ..LegConfig::default() });
        let src = SocketAddr::from((Ipv4Addr::LOCALHOST, 4000));
        let _ = leg.on_packet(t0, src, &bytes);
        let _ = leg.on_packet(t0 + Duration::from_millis(20), src, &bytes);
        let _ = leg.on_rtcp_port_packet(t0, src, &bytes);
    }

    #[test]
    fn built_packets_parse_back(
        pt in 0u8..128, ssrc: u32, seq: u16, ts: u32, marker: bool,
        csrcs in proptest::collection::vec(any::<u32>(), 0..16),
        ext_words in proptest::option::of(0usize..8),
        pad in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let ext = vec![0x5a; ext_words.unwrap_or(0) * 4];
        let mut b = RtpBuilder::new(pt, ssrc).sequence(seq).timestamp(ts).marker(marker)
            .csrcs(&csrcs).padding(pad).payload(&payload);
        if ext_words.is_some() {
            b = b.extension(0x1000, &ext);
        }
        let mut buf = vec![0u8; b.len()];
        prop_assert_eq!(b.write(&mut buf), Ok(buf.len()));
        let p = RtpPacket::new(&buf);
        prop_assert!(p.is_ok());
        if let Ok(p) = p {
            prop_assert_eq!((p.payload_type(), p.ssrc(), p.sequence(), p.timestamp(), p.marker()),
                (pt, ssrc, seq, ts, marker));
            prop_assert!(p.csrcs().eq(csrcs.iter().copied()));
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(p.extension().map(|e| e.body), ext_words.map(|_| &ext[..]));
        }
    }
}
