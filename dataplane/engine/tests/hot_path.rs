//! The core loop's hot path allocates nothing after start-up: a counting global allocator
//! watches every loop turn while RTP is relayed both ways, the control plane queries stats
//! over the real shared-memory rings, and a phone talks SIP to the core's SIP listener
//! (keepalives and OPTIONS answered on the core, REGISTERs handed up and answered down,
//! their retransmissions answered from the fast path's table). Once per backend.
#![allow(unsafe_code)] // reason: a counting #[global_allocator] must implement the unsafe GlobalAlloc trait.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use engine::{CoreLoop, CoreSetup, PortLayout};
use shmq::schema::{CreateSession, LegSpec, PayloadType, PayloadTypes};
use shmq::{Command, Control, Dataplane, Event, RegionConfig};

struct Counting;

thread_local! {
    // Per thread: the two tests run in parallel and must not see each other's counts.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rtp(ssrc: u32, seq: u16) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn leg(remote: SocketAddr) -> LegSpec {
    LegSpec {
        local_port: 0,
        remote: Some(remote),
        payload_types: PayloadTypes::new(&[PayloadType {
            pt: 0,
            clock_hz: 8000,
        }])
        .unwrap(),
        telephone_event_pt: Some(101),
        rtcp_mux: false,
        inactivity_timeout_ms: 30_000,
    }
}

fn drain(sock: &UdpSocket) -> u64 {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// The counter sees allocations on this thread while switched on (so a zero below means
/// something), and only then.
fn counter_works() {
    let before = allocs();
    COUNTING.with(|c| c.set(true));
    let v = std::hint::black_box(vec![1u8; 64]);
    COUNTING.with(|c| c.set(false));
    drop(v);
    assert!(allocs() > before, "counting allocator not installed");
    ALLOCS.with(|a| a.set(0));
}

fn hot_path_allocates_nothing(kind: dpio::BackendKind, port_min: u16) {
    counter_works();
    let dataplane = Dataplane::create_memfd(RegionConfig {
        cores: 1,
        ring_capacity: 1024,
    })
    .unwrap();
    let end = dataplane.data_end(0).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    dataplane.handoff(&a).unwrap();
    let control = Control::attach_handoff(&b).unwrap();
    let mut ctl = control.control_end(0).unwrap();

    let setup = CoreSetup {
        core: 0,
        cpu: None,
        media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        layout: PortLayout::new(port_min, port_min + 39, 1).unwrap(),
        io: dpio::Config {
            force: Some(kind),
            ..dpio::Config::default()
        },
        sip: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
    };
    let mut core = CoreLoop::new(&setup, end).unwrap();
    assert_eq!(core.backend(), kind);

    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller.set_nonblocking(true).unwrap();
    callee.set_nonblocking(true).unwrap();
    let cmd = Command::CreateSession(CreateSession {
        session_id: 42,
        legs: [
            leg(caller.local_addr().unwrap()),
            leg(callee.local_addr().unwrap()),
        ],
    });
    ctl.send(1, &cmd).unwrap();
    let mut next_scan = Instant::now();
    let mut ports = None;
    for _ in 0..100 {
        core.turn(Duration::from_millis(1), &mut next_scan).unwrap();
        ctl.poll_events(16, |_, e| {
            if let Ok(Event::SessionCreated { local_ports, .. }) = e {
                ports = Some(local_ports);
            }
        });
        if ports.is_some() {
            break;
        }
    }
    let ports = ports.expect("session created");
    let relay_a = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));
    let relay_b = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[1]));
    let sip_at = core.sip_addr(0).unwrap();
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone.set_nonblocking(true).unwrap();
    let phone_at = phone.local_addr().unwrap();
    let mut up = shmq::schema::RawSipReassembler::new();
    let mut sip_seen = SipSeen::default();
    // The REGISTER answered last round: this round retransmits it.
    let mut last_register: Option<Vec<u8>> = None;

    let mut relayed = [0u64; 2];
    let mut seq = 0u16;
    let mut round = |core: &mut CoreLoop,
                     ctl: &mut shmq::ControlEnd,
                     counting: bool,
                     relayed: &mut [u64; 2]| {
        for _ in 0..8 {
            caller.send_to(&rtp(1, seq), relay_a).unwrap();
            callee.send_to(&rtp(2, seq), relay_b).unwrap();
            seq = seq.wrapping_add(1);
        }
        // A stats query and a core-stats query ride along every round.
        ctl.send(u64::from(seq), &Command::QueryStats { session_id: 42 })
            .unwrap();
        ctl.send(u64::from(seq), &Command::QueryCoreStats { echo: 0 })
            .unwrap();
        // SIP: a keepalive, an OPTIONS, a new REGISTER, and last round's REGISTER again.
        phone.send_to(b"\r\n\r\n", sip_at).unwrap();
        phone
            .send_to(&sip_request("OPTIONS", seq, phone_at), sip_at)
            .unwrap();
        let register = sip_request("REGISTER", seq, phone_at);
        phone.send_to(&register, sip_at).unwrap();
        if let Some(r) = last_register.take() {
            phone.send_to(&r, sip_at).unwrap();
        }
        COUNTING.with(|c| c.set(counting));
        for _ in 0..4 {
            core.turn(Duration::from_millis(1), &mut next_scan).unwrap();
        }
        COUNTING.with(|c| c.set(false));
        relayed[0] += drain(&callee);
        relayed[1] += drain(&caller);
        sip_seen.read(&phone);
        // The control plane's side: each REGISTER that came up is answered 200 down.
        let mut answers = Vec::new();
        ctl.poll_events(64, |m, e| {
            if let Ok(Event::RawSipUp(f)) = e {
                if let Ok(Some(msg)) = up.push(m, &f) {
                    sip_seen.up += 1;
                    assert_eq!(msg.addr, phone_at);
                    answers.push(ok_for(msg.bytes));
                }
            }
        });
        for a in &answers {
            ctl.send_raw_sip(0, 0, phone_at, a).unwrap();
        }
        last_register = Some(register);
    };
    for _ in 0..20 {
        round(&mut core, &mut ctl, false, &mut relayed);
    }
    let warm = relayed;
    for _ in 0..250 {
        round(&mut core, &mut ctl, true, &mut relayed);
    }
    // Let the last sends complete.
    for _ in 0..10 {
        core.turn(Duration::from_millis(2), &mut next_scan).unwrap();
    }
    relayed[0] += drain(&callee);
    relayed[1] += drain(&caller);

    assert_eq!(allocs(), 0, "allocations in loop turns ({kind:?})");
    let measured = [relayed[0] - warm[0], relayed[1] - warm[1]];
    assert!(
        measured[0] >= 1990 && measured[1] >= 1990,
        "relayed {measured:?} of 2000 each way"
    );
    sip_seen.read(&phone);
    let st = core.core_stats();
    assert_eq!(st.relayed_rtp, relayed[0] + relayed[1]);
    assert!(st.latency_count > 0);
    // 270 rounds: each one keepalive, one OPTIONS (200 here), one REGISTER (up, then 200
    // from the control plane) and, from the second round on, one retransmission (the 200
    // again, from the table).
    assert_eq!(st.sip_received, 270 * 3 + 269, "{st:?}");
    assert_eq!(st.sip_local, 270 * 2, "{st:?}");
    assert_eq!(st.sip_up, 270, "{st:?}");
    assert_eq!(sip_seen.up, 270);
    assert_eq!(st.sip_absorbed, 269, "{st:?}");
    assert_eq!(sip_seen.options_ok, 270);
    // Every REGISTER's 200 once from the control plane, once again for its retransmission
    // (the last one is not retransmitted).
    assert_eq!(sip_seen.register_ok, 270 + 269);
}

/// What the phone got back, and what reached the control plane.
#[derive(Default)]
struct SipSeen {
    options_ok: u64,
    register_ok: u64,
    up: u64,
}

impl SipSeen {
    fn read(&mut self, phone: &UdpSocket) {
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = phone.recv_from(&mut buf) {
            let m = sip::Message::parse(&buf[..n]).unwrap();
            assert_eq!(m.status(), Some(200));
            match m.cseq().method {
                b"OPTIONS" => self.options_ok += 1,
                b"REGISTER" => self.register_ok += 1,
                other => panic!("{other:?}"),
            }
        }
    }
}

fn sip_request(method: &str, seq: u16, from: SocketAddr) -> Vec<u8> {
    format!(
        "{method} sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{method}{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=t{seq}\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: {method}-{seq}@test\r\nCSeq: {seq} {method}\r\nContact: <sip:alice@{from}>\r\n\
         Expires: 60\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn ok_for(request: &[u8]) -> Vec<u8> {
    let req = sip::Message::parse(request).unwrap();
    let mut out = Vec::new();
    sip::edit::ResponseBuilder::new(&req, 200, b"OK")
        .to_tag(b"cp")
        .write(&mut out);
    out
}

#[test]
fn hot_path_io_uring() {
    let probe = dpio::AnyBackend::new(&dpio::Config {
        force: Some(dpio::BackendKind::Uring),
        ..dpio::Config::default()
    });
    if let Err(why) = probe {
        // CI runs on a kernel with io_uring: there, its absence is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "io_uring unavailable in CI: {why}"
        );
        eprintln!("SKIP: io_uring unavailable here: {why}");
        return;
    }
    drop(probe);
    hot_path_allocates_nothing(dpio::BackendKind::Uring, 31_600); // below the ephemeral range (32768+): no collision with a test's port-0 sockets
}

#[test]
fn hot_path_epoll() {
    hot_path_allocates_nothing(dpio::BackendKind::Mio, 31_700);
}
