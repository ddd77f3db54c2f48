//! The record schema: every command and event survives encode → decode unchanged, SIP
//! messages of any size survive fragmentation and reassembly, and no byte pattern makes
//! decoding panic.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use shmq::schema::{
    encode_raw_sip, CoreStats, CreateSession, DtmfEvent, FailReason, Leg, LegSpec, LegStats,
    LegUpdate, PayloadType, PayloadTypes, RawSipReassembler, SessionInfo, SessionStats,
    SessionSummary, SipDirection, UpdateSession, MAX_SIP_BYTES, MAX_SIP_FRAGMENTS,
};
use shmq::{Command, Event, Meta, Record, RECORD_SIZE};

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42)),
        port,
    )
}

fn pcmu_and_events() -> PayloadTypes {
    PayloadTypes::new(&[
        PayloadType {
            pt: 0,
            clock_hz: 8000,
        },
        PayloadType {
            pt: 8,
            clock_hz: 8000,
        },
        PayloadType {
            pt: 101,
            clock_hz: 8000,
        },
    ])
    .unwrap()
}

fn leg_spec(remote: Option<SocketAddr>) -> LegSpec {
    LegSpec {
        local_port: 0,
        remote,
        payload_types: pcmu_and_events(),
        telephone_event_pt: Some(101),
        rtcp_mux: false,
        inactivity_timeout_ms: 30_000,
    }
}

fn commands() -> Vec<Command> {
    vec![
        Command::Ping { echo: 7 },
        Command::CreateSession(CreateSession {
            session_id: 0xdead_beef,
            legs: [
                leg_spec(Some(v4([192, 0, 2, 1], 4000))),
                leg_spec(Some(v6(5004))),
            ],
        }),
        Command::CreateSession(CreateSession {
            session_id: 1,
            legs: [leg_spec(None), leg_spec(None)],
        }),
        Command::UpdateSession(UpdateSession {
            session_id: 9,
            legs: [
                LegUpdate {
                    remote: Some(v4([198, 51, 100, 7], 30_000)),
                    payload_types: Some(pcmu_and_events()),
                    telephone_event_pt: None,
                    hold: true,
                },
                LegUpdate::default(),
            ],
        }),
        Command::DeleteSession { session_id: 3 },
        Command::QueryStats { session_id: 4 },
        Command::ListSessions { cursor: 17 },
        Command::QueryCoreStats { echo: 99 },
    ]
}

fn events() -> Vec<Event> {
    let stats = LegStats {
        packets: 1_000,
        bytes: 172_000,
        lost: 3,
        jitter_us: 1_250,
        strangers: 2,
        out_of_order: 4,
        duplicates: 1,
        latched: Some(v4([127, 0, 0, 1], 40_000)),
    };
    vec![
        Event::Pong { echo: 7 },
        Event::SessionCreated {
            session_id: 5,
            local_ports: [20_000, 20_002],
        },
        Event::CommandFailed {
            command_type: 2,
            session_id: 5,
            reason: FailReason::TableFull,
        },
        Event::SessionStats(SessionStats {
            session_id: 5,
            legs: [stats, LegStats::default()],
        }),
        Event::SessionInfo(SessionInfo {
            next_cursor: 6,
            end_of_list: false,
            session: Some(SessionSummary {
                session_id: 5,
                local_ports: [20_000, 20_002],
                remotes: [Some(v6(9)), None],
            }),
        }),
        Event::SessionInfo(SessionInfo {
            next_cursor: 0,
            end_of_list: true,
            session: None,
        }),
        Event::SessionTimeout {
            session_id: 5,
            leg: Leg::B,
        },
        Event::Dtmf(DtmfEvent {
            session_id: 5,
            leg: Leg::A,
            event: 11,
            duration_ms: 160,
            end: true,
            volume: 10,
        }),
        Event::CoreStats(CoreStats {
            sessions: 12,
            session_capacity: 2_500,
            backend: 1,
            loop_turns: 1,
            rx_packets: 2,
            tx_packets: 3,
            relayed_rtp: 4,
            relayed_rtcp: 5,
            drop_malformed: 6,
            drop_stranger: 7,
            drop_no_session: 8,
            drop_not_latched: 9,
            drop_no_destination: 10,
            drop_held: 11,
            drop_not_media: 12,
            tx_errors: 13,
            syscalls: 14,
            rx_nobufs: 15,
            events_dropped: 16,
            timeouts: 17,
            dtmf_events: 18,
            latency_p50_ns: 19,
            latency_p99_ns: 20,
            latency_p999_ns: 21,
            latency_max_ns: 22,
            latency_count: 23,
            sip_received: 24,
            sip_up: 25,
            sip_absorbed: 26,
            sip_local: 27,
        }),
    ]
}

#[test]
fn every_command_round_trips() {
    for (i, c) in commands().into_iter().enumerate() {
        let meta = Meta {
            seq: 1000 + i as u64,
            core: 3,
        };
        let mut rec: Record = [0xAA; RECORD_SIZE];
        c.encode(meta, &mut rec);
        assert_eq!(Command::decode(&rec).unwrap(), (meta, c), "{c:?}");
        // A command is never mistaken for an event.
        assert!(Event::decode(&rec).is_err(), "{c:?} decoded as an event");
    }
}

#[test]
fn every_event_round_trips() {
    for (i, e) in events().into_iter().enumerate() {
        let meta = Meta {
            seq: i as u64,
            core: 0,
        };
        let mut rec: Record = [0x55; RECORD_SIZE];
        e.encode(meta, &mut rec);
        assert_eq!(Event::decode(&rec).unwrap(), (meta, e), "{e:?}");
        assert!(Command::decode(&rec).is_err(), "{e:?} decoded as a command");
    }
}

#[test]
fn too_many_payload_types_are_refused() {
    let nine: Vec<PayloadType> = (0..9)
        .map(|pt| PayloadType { pt, clock_hz: 8000 })
        .collect();
    assert!(PayloadTypes::new(&nine).is_none());
    assert!(PayloadTypes::new(&[PayloadType {
        pt: 128,
        clock_hz: 8000
    }])
    .is_none());
}

fn round_trip_sip(len: usize) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let mut out = vec![[0u8; RECORD_SIZE]; MAX_SIP_FRAGMENTS];
    let meta = Meta { seq: 77, core: 1 };
    let dest = v4([127, 0, 0, 1], 5060);
    let n = encode_raw_sip(SipDirection::Down, meta, 2, dest, &bytes, &mut out).unwrap();
    let mut re = RawSipReassembler::new();
    let mut got = None;
    for rec in &out[..n] {
        let (m, c) = Command::decode(rec).unwrap();
        let Command::RawSipDown(frag) = c else {
            panic!("not a RawSipDown: {c:?}")
        };
        if let Some(msg) = re.push(m, &frag).unwrap() {
            assert!(got.is_none(), "message completed twice");
            assert_eq!(msg.listener, 2);
            assert_eq!(msg.addr, dest);
            got = Some(msg.bytes.to_vec());
        }
    }
    assert_eq!(got.as_deref(), Some(&bytes[..]), "len {len}");
}

#[test]
fn sip_messages_of_every_size_class_reassemble() {
    for len in [0, 1, 199, 200, 201, 1_500, 4_000, MAX_SIP_BYTES] {
        round_trip_sip(len);
    }
    let mut out = vec![[0u8; RECORD_SIZE]; MAX_SIP_FRAGMENTS];
    let too_big = vec![b'x'; MAX_SIP_BYTES + 1];
    assert!(encode_raw_sip(
        SipDirection::Up,
        Meta::default(),
        0,
        v6(5060),
        &too_big,
        &mut out
    )
    .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Whatever a confused or hostile peer writes into a record, decoding answers.
    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), RECORD_SIZE)) {
        let mut rec: Record = [0; RECORD_SIZE];
        rec.copy_from_slice(&bytes);
        let _ = Command::decode(&rec);
        let _ = Event::decode(&rec);
    }

    /// Valid records with one byte changed still decode or fail cleanly.
    #[test]
    fn corrupted_records_never_panic(which in 0usize..16, at in 0usize..RECORD_SIZE, val in any::<u8>()) {
        let all_c = commands();
        let all_e = events();
        let mut rec: Record = [0; RECORD_SIZE];
        if which < all_c.len() {
            all_c[which].encode(Meta::default(), &mut rec);
        } else {
            all_e[(which - all_c.len()) % all_e.len()].encode(Meta::default(), &mut rec);
        }
        rec[at] = val;
        let _ = Command::decode(&rec);
        let _ = Event::decode(&rec);
    }

    #[test]
    fn sip_of_any_length_reassembles(len in 0usize..20_000) {
        round_trip_sip(len);
    }
}
