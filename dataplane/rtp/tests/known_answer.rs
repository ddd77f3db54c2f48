//! Known answers: packets built with [`RtpBuilder`] parse back field for field; hand-made
//! malformed packets are refused with the specific error; classification of real first bytes.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use rtp::{classify, Kind, RtcpBody, RtcpCompound, RtpBuilder, RtpError, RtpPacket};

fn build(b: RtpBuilder<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; b.len()];
    assert_eq!(b.write(&mut buf).unwrap(), buf.len());
    buf
}

#[test]
fn pcmu_packet_bytes_are_exact() {
    let bytes = build(
        RtpBuilder::new(0, 0x1234_5678)
            .marker(true)
            .sequence(0x0102)
            .timestamp(0x0a0b_0c0d)
            .payload(&[0xff, 0x7f]),
    );
    assert_eq!(
        bytes,
        [0x80, 0x80, 0x01, 0x02, 0x0a, 0x0b, 0x0c, 0x0d, 0x12, 0x34, 0x56, 0x78, 0xff, 0x7f]
    );
    assert_eq!(classify(&bytes), Kind::Rtp);
}

#[test]
fn every_field_round_trips() {
    for csrc_n in [0usize, 1, 15] {
        for ext_words in [None, Some(0usize), Some(3)] {
            for pad in [0u8, 1, 4, 255] {
                let csrcs: Vec<u32> = (0..csrc_n as u32).map(|i| 0x1000 + i).collect();
                let ext = vec![0xab; ext_words.unwrap_or(0) * 4];
                let mut b = RtpBuilder::new(111, 0xfeed_beef)
                    .sequence(65535)
                    .timestamp(u32::MAX)
                    .csrcs(&csrcs)
                    .padding(pad)
                    .payload(b"payload");
                if ext_words.is_some() {
                    b = b.extension(0xbede, &ext);
                }
                let bytes = build(b);
                let p = RtpPacket::new(&bytes).unwrap();
                assert_eq!(p.payload_type(), 111);
                assert_eq!(p.sequence(), 65535);
                assert_eq!(p.timestamp(), u32::MAX);
                assert_eq!(p.ssrc(), 0xfeed_beef);
                assert!(p.csrcs().eq(csrcs.iter().copied()));
                assert_eq!(
                    p.extension().map(|e| e.body.len()),
                    ext_words.map(|w| w * 4)
                );
                assert_eq!(p.payload(), b"payload");
                assert_eq!(p.padding_len(), usize::from(pad));
                assert_eq!(p.has_padding(), pad > 0);
            }
        }
    }
}

#[test]
fn malformed_rtp_specific_errors() {
    let good = build(RtpBuilder::new(0, 1).sequence(1).payload(&[1, 2, 3, 4]));
    assert_eq!(RtpPacket::new(&[]), Err(RtpError::TooShort { len: 0 }));
    assert_eq!(
        RtpPacket::new(&good[..11]),
        Err(RtpError::TooShort { len: 11 })
    );

    let mut v1 = good.clone();
    v1[0] = 0x40;
    assert_eq!(
        RtpPacket::new(&v1),
        Err(RtpError::BadVersion { version: 1 })
    );
    v1[0] = 0xc0;
    assert_eq!(
        RtpPacket::new(&v1),
        Err(RtpError::BadVersion { version: 3 })
    );

    // 15 CSRCs claimed, 4 bytes follow.
    let mut cc = good.clone();
    cc[0] = 0x8f;
    assert_eq!(
        RtpPacket::new(&cc),
        Err(RtpError::CsrcOverflow { count: 15 })
    );

    // X bit with no room for the preamble.
    let mut x = build(RtpBuilder::new(0, 1));
    x[0] |= 0x10;
    assert_eq!(
        RtpPacket::new(&x),
        Err(RtpError::ExtensionOverflow { body_len: 0 })
    );
    // Preamble claims 0xffff words.
    let mut x = good.clone();
    x[0] |= 0x10;
    x[14] = 0xff;
    x[15] = 0xff;
    assert_eq!(
        RtpPacket::new(&x),
        Err(RtpError::ExtensionOverflow {
            body_len: 4 * 0xffff
        })
    );

    // Padding larger than what follows the header.
    let mut p = good.clone();
    p[0] |= 0x20;
    *p.last_mut().unwrap() = 200;
    assert_eq!(
        RtpPacket::new(&p),
        Err(RtpError::BadPadding {
            count: 200,
            available: 4
        })
    );
    // P bit on a header-only packet: the count byte would be inside the header.
    let mut h = build(RtpBuilder::new(0, 1));
    h[0] |= 0x20;
    assert!(matches!(
        RtpPacket::new(&h),
        Err(RtpError::BadPadding { available: 0, .. })
    ));
}

#[test]
fn sender_report_known_answer() {
    // SR from SSRC 0x01020304, NTP 0x11223344_55667788, RTP ts 160, 10 packets, 1600 octets,
    // one report block about SSRC 0xaabbccdd, then BYE.
    let mut v = vec![0x81, 200, 0, 12];
    v.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    v.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
    v.extend_from_slice(&160u32.to_be_bytes());
    v.extend_from_slice(&10u32.to_be_bytes());
    v.extend_from_slice(&1600u32.to_be_bytes());
    v.extend_from_slice(&0xaabb_ccddu32.to_be_bytes());
    v.extend_from_slice(&[0x10, 0x00, 0x00, 0x05]);
    v.extend_from_slice(&0x0001_0010u32.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&[0x81, 203, 0, 1]);
    v.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    assert_eq!(classify(&v), Kind::Rtcp);
    let c = RtcpCompound::new(&v).unwrap();
    let kinds: Vec<u8> = c.iter().map(|p| p.packet_type()).collect();
    assert_eq!(kinds, [200, 203]);
    match c.iter().next().unwrap().body().unwrap() {
        RtcpBody::SenderReport(sr) => {
            assert_eq!(sr.ssrc(), 0x0102_0304);
            assert_eq!(sr.ntp_timestamp(), 0x1122_3344_5566_7788);
            assert_eq!(
                (sr.rtp_timestamp(), sr.packet_count(), sr.octet_count()),
                (160, 10, 1600)
            );
            let b: Vec<_> = sr.report_blocks().collect();
            assert_eq!(b[0].ssrc, 0xaabb_ccdd);
            assert_eq!(b[0].fraction_lost, 0x10);
            assert_eq!(b[0].cumulative_lost, 5);
            assert_eq!(b[0].extended_highest_sequence, 0x0001_0010);
            assert_eq!(b[0].jitter, 20);
        }
        other => panic!("{other:?}"),
    }
    match c.iter().nth(1).unwrap().body().unwrap() {
        RtcpBody::Bye(b) => {
            assert!(b.ssrcs().eq([0x0102_0304]));
            assert_eq!(b.reason, None);
        }
        other => panic!("{other:?}"),
    }
}
