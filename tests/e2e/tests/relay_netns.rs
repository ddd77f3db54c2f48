//! The media relay end to end, through the real processes, across network namespaces:
//!
//! ```text
//!  caller ns            appliance ns                         callee ns
//!  10.N.1.2  <-veth->  10.N.1.1 | trunkline-dataplane | 10.N.2.1  <-veth->  10.N.2.2
//!                         (media bound to 0.0.0.0, sessions from trunkline-controlplane
//!                          over shared memory; the control plane runs outside)
//! ```
//!
//! 50 calls, each a G.711 stream both ways paced at 20 ms for 5 s (25,000 packets). Checked:
//! every packet arrives exactly once with the source rewritten to the relay's port of that
//! call; the relay re-latches when a caller's source port changes mid-call; the loss and
//! jitter it reports match what the senders injected (loss, 10 ms jitter, reordered pairs); SIGKILL of the control plane in the
//! middle loses no packet and the restarted control plane lists the same sessions; bad
//! packets are dropped and counted in the right counters; deleting returns final stats.
//! Run once per I/O backend (io_uring, epoll).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use e2e::{binaries, can_run_netns, veth, Api, Netns, Proc};
use serde_json::{json, Value};

const CALLS: usize = 50;
const PACKETS: u32 = 250; // 5 s at 20 ms
const PTIME: Duration = Duration::from_millis(20);
/// Call 0, caller → callee: every 10th packet (k % 10 == 5) is not sent.
const LOSSY_CALL: usize = 0;
/// Call 1, caller → callee: from packet 150 on, sent from a second socket (new source port).
const MOVING_CALL: usize = 1;
const MOVE_AT: u32 = 150;
/// Call 2, caller → callee: odd packets leave 10 ms late (RFC 3550 jitter converges to 10 ms).
const JITTERY_CALL: usize = 2;
/// Call 3, caller → callee: every 25th packet (k % 25 == 10) is held back and leaves after
/// the next one — 10 reordered pairs, nothing lost.
const REORDERED_CALL: usize = 3;
const PORT_MIN: u16 = 41000;
const PORT_MAX: u16 = 41799;

/// One direction's stream as a receiver saw it.
#[derive(Debug, Default, Clone)]
struct Seen {
    count: u32,
    /// Packets that arrived after a higher sequence number.
    inversions: u32,
    max_seq: Option<u16>,
    dups: u32,
    seqs: Vec<bool>,
    sources: HashMap<SocketAddr, u32>,
    jitter: f64, // RTP units (8 kHz)
    last_transit: Option<f64>,
}

type SeenMap = Arc<Mutex<HashMap<u32, Seen>>>;

fn ssrc(call: usize, dir: u32) -> u32 {
    0x1000_0000 * (dir + 1) + call as u32
}

fn rtp_packet(ssrc: u32, seq: u16, ts: u32) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[1] = 0; // PCMU
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[12..].fill(0xff); // µ-law silence
    p
}

fn receiver(sock: UdpSocket, seen: SeenMap, t0: Instant, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 2048];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let arrival = t0.elapsed().as_secs_f64() * 8000.0;
                if n < 12 {
                    continue;
                }
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                let ss = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                let mut m = seen.lock().unwrap();
                let s = m.entry(ss).or_default();
                if s.seqs.is_empty() {
                    s.seqs = vec![false; PACKETS as usize];
                }
                if let Some(slot) = s.seqs.get_mut(usize::from(seq)) {
                    if *slot {
                        s.dups += 1;
                        continue;
                    }
                    *slot = true;
                }
                s.count += 1;
                match s.max_seq {
                    Some(m) if seq < m => s.inversions += 1,
                    _ => s.max_seq = Some(seq),
                }
                *s.sources.entry(from).or_default() += 1;
                let transit = arrival - f64::from(ts);
                if let Some(prev) = s.last_transit {
                    let d = (transit - prev).abs();
                    s.jitter += (d - s.jitter) / 16.0;
                }
                s.last_transit = Some(transit);
            }
            Err(_) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
        }
    }
}

/// Sends every call's stream in one direction, paced; `dir` 0 = caller → callee.
#[allow(clippy::too_many_arguments)]
fn sender(
    ns: Arc<Netns>,
    sock: UdpSocket,
    moved: Option<UdpSocket>,
    dests: Vec<SocketAddr>,
    dir: u32,
    t0: Instant,
) {
    ns.enter().unwrap();
    let wait_until = |t: Instant| {
        let now = Instant::now();
        if t > now {
            thread::sleep(t - now);
        }
    };
    let mut held = None;
    for k in 0..PACKETS {
        let tick = t0 + PTIME * k;
        wait_until(tick);
        let mut late = Vec::new();
        for (call, dest) in dests.iter().enumerate() {
            let pkt = rtp_packet(ssrc(call, dir), k as u16, 160 * k);
            if dir == 0 && call == LOSSY_CALL && k % 10 == 5 {
                continue;
            }
            if dir == 0 && call == REORDERED_CALL && k % 25 == 10 {
                held = Some(pkt);
                continue;
            }
            if dir == 0 && call == REORDERED_CALL && k % 25 == 11 {
                sock.send_to(&pkt, dest).unwrap();
                if let Some(h) = held.take() {
                    sock.send_to(&h, dest).unwrap();
                }
                continue;
            }
            if dir == 0 && call == JITTERY_CALL && k % 2 == 1 {
                late.push((pkt, *dest));
                continue;
            }
            let s = match (&moved, dir == 0 && call == MOVING_CALL && k >= MOVE_AT) {
                (Some(m), true) => m,
                _ => &sock,
            };
            s.send_to(&pkt, dest).unwrap();
        }
        if !late.is_empty() {
            wait_until(tick + Duration::from_millis(10));
            for (pkt, dest) in late {
                sock.send_to(&pkt, dest).unwrap();
            }
        }
    }
}

fn bind_in(ns: &Netns, addr: SocketAddr) -> UdpSocket {
    // Bind on a short-lived thread that entered the namespace: the socket stays there.
    thread::scope(|s| {
        s.spawn(|| {
            ns.enter().unwrap();
            UdpSocket::bind(addr).unwrap()
        })
        .join()
        .unwrap()
    })
}

fn sum_cores(api: &mut Api, path: &[&str]) -> u64 {
    let v = api.call(&json!({"op": "cores"})).unwrap();
    v["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut x = c;
            for p in path {
                x = &x[*p];
            }
            x.as_u64().unwrap()
        })
        .sum()
}

fn relay_end_to_end(backend: &str, tag: u8) {
    let test = format!("relay_end_to_end_{backend}");
    if !can_run_netns(&test) {
        return;
    }
    let bins = binaries(&["trunkline-dataplane", "trunkline-controlplane"]);
    let id = format!("{}{tag}", std::process::id() % 10000);
    let net = 100 + (std::process::id() % 50) as u8 * 2 + tag;

    let caller = Arc::new(Netns::new(&format!("tl{id}c")).unwrap());
    let callee = Arc::new(Netns::new(&format!("tl{id}e")).unwrap());
    let app = Netns::new(&format!("tl{id}a")).unwrap();
    veth(
        &caller,
        &format!("tl{id}c0"),
        &format!("10.{net}.1.2/24"),
        &app,
        &format!("tl{id}a0"),
        &format!("10.{net}.1.1/24"),
    )
    .unwrap();
    veth(
        &callee,
        &format!("tl{id}e0"),
        &format!("10.{net}.2.2/24"),
        &app,
        &format!("tl{id}b0"),
        &format!("10.{net}.2.1/24"),
    )
    .unwrap();
    let ip = |sub: u8, host: u8| Ipv4Addr::new(10, net, sub, host);

    let dir = std::env::temp_dir().join(format!("trunkline-e2e-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let dp_sock = dir.join("dataplane.sock");
    let api_sock = dir.join("controlplane.sock");
    let region = format!("trunkline-e2e-{id}");
    let _region_guard = shmq_unlink_on_drop(&region);

    let dp_args: Vec<String> = [
        "--region",
        &region,
        "--control-socket",
        dp_sock.to_str().unwrap(),
        "--media-address",
        "0.0.0.0",
        "--port-min",
        &PORT_MIN.to_string(),
        "--port-max",
        &PORT_MAX.to_string(),
        "--cores",
        "2",
        "--backend",
        backend,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut dp, ready) = Proc::start(
        "trunkline-dataplane",
        Some(&app),
        &bins[0],
        &dp_args,
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        ready.contains(&format!(
            "backend {}",
            if backend == "mio" { "mio" } else { "uring" }
        )),
        "{ready}"
    );
    let cp_args: Vec<String> = [
        "--region",
        &region,
        "--dataplane-socket",
        dp_sock.to_str().unwrap(),
        "--api",
        api_sock.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut cp, _) = Proc::start(
        "trunkline-controlplane",
        None,
        &bins[1],
        &cp_args,
        Duration::from_secs(10),
    )
    .unwrap();
    let mut api = Api::connect(&api_sock).unwrap();
    assert_eq!(api.call(&json!({"op": "ping"})).unwrap()["cores"], 2);

    // Endpoints: one socket per side carries every call (as an SBC or a trunk would),
    // plus the caller's second socket for the moving call.
    let caller_addr = SocketAddr::V4(SocketAddrV4::new(ip(1, 2), 16000));
    let caller_moved = SocketAddr::V4(SocketAddrV4::new(ip(1, 2), 16002));
    let callee_addr = SocketAddr::V4(SocketAddrV4::new(ip(2, 2), 18000));
    let c_sock = bind_in(&caller, caller_addr);
    let c_moved = bind_in(&caller, caller_moved);
    let e_sock = bind_in(&callee, callee_addr);

    // Sessions: leg A faces the caller, leg B the callee; the remotes are what SDP said.
    let mut sessions = Vec::new(); // (id, a_port, b_port)
    for _ in 0..CALLS {
        let v = api
            .call(&json!({"op": "create",
                "a": {"remote": caller_addr.to_string(), "timeout_ms": 30000},
                "b": {"remote": callee_addr.to_string(), "timeout_ms": 30000}}))
            .unwrap();
        let s = &v["session"];
        sessions.push((
            s["id"].as_u64().unwrap(),
            s["ports"][0].as_u64().unwrap() as u16,
            s["ports"][1].as_u64().unwrap() as u16,
        ));
    }
    let per_core: Vec<u64> = api.call(&json!({"op": "cores"})).unwrap()["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sessions"].as_u64().unwrap())
        .collect();
    assert_eq!(per_core, vec![25, 25], "sessions spread over both cores");

    let relay_a = |i: usize| SocketAddr::V4(SocketAddrV4::new(ip(1, 1), sessions[i].1));
    let relay_b = |i: usize| SocketAddr::V4(SocketAddrV4::new(ip(2, 1), sessions[i].2));

    let seen_at_callee: SeenMap = Arc::default();
    let seen_at_caller: SeenMap = Arc::default();
    let seen_at_caller_moved: SeenMap = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now() + Duration::from_millis(200);
    let mut threads = Vec::new();
    for (sock, seen) in [
        (e_sock.try_clone().unwrap(), &seen_at_callee),
        (c_sock.try_clone().unwrap(), &seen_at_caller),
        (c_moved.try_clone().unwrap(), &seen_at_caller_moved),
    ] {
        let (seen, stop) = (Arc::clone(seen), Arc::clone(&stop));
        threads.push(thread::spawn(move || receiver(sock, seen, t0, stop)));
    }
    let senders = [
        {
            let (ns, s, m) = (
                Arc::clone(&caller),
                c_sock.try_clone().unwrap(),
                c_moved.try_clone().unwrap(),
            );
            let dests: Vec<_> = (0..CALLS).map(relay_a).collect();
            thread::spawn(move || sender(ns, s, Some(m), dests, 0, t0))
        },
        {
            let (ns, s) = (Arc::clone(&callee), e_sock.try_clone().unwrap());
            let dests: Vec<_> = (0..CALLS).map(relay_b).collect();
            thread::spawn(move || sender(ns, s, None, dests, 1, t0))
        },
    ];

    // At 2 s: the control plane dies hard. At 2.5 s: a new one attaches and must list
    // exactly the sessions the dead one created; media never stops.
    thread::sleep((t0 + Duration::from_secs(2)).saturating_duration_since(Instant::now()));
    drop(api);
    cp.signal(libc::SIGKILL);
    assert!(
        cp.wait(Duration::from_secs(5)).is_some(),
        "control plane did not die"
    );
    thread::sleep(Duration::from_millis(500));
    let (cp2, ready2) = Proc::start(
        "trunkline-controlplane (restarted)",
        None,
        &bins[1],
        &cp_args,
        Duration::from_secs(10),
    )
    .unwrap();
    cp = cp2;
    assert!(
        ready2.contains(&format!("{CALLS} live session(s) recovered")),
        "{ready2}"
    );
    let mut api = Api::connect(&api_sock).unwrap();
    let listed = api.call(&json!({"op": "list"})).unwrap();
    let mut live: Vec<(u64, u16, u16)> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["ports"][0].as_u64().unwrap() as u16,
                s["ports"][1].as_u64().unwrap() as u16,
            )
        })
        .collect();
    live.sort_unstable();
    let mut created = sessions.clone();
    created.sort_unstable();
    assert_eq!(
        live, created,
        "the restarted control plane sees the same sessions"
    );

    for s in senders {
        s.join().unwrap();
    }
    thread::sleep(Duration::from_millis(300));

    // Bad packets, after the streams: garbage and truncated RTP to a live session's port
    // from its latched source, valid RTP from strangers (a new SSRC each, so no re-latch),
    // and RTP to a port of the range no session owns.
    let before = |api: &mut Api| {
        (
            sum_cores(api, &["drops", "not_media"]) + sum_cores(api, &["drops", "malformed"]),
            sum_cores(api, &["drops", "stranger"]),
            sum_cores(api, &["drops", "no_session"]),
        )
    };
    let b0 = before(&mut api);
    let victim = relay_a(3);
    for _ in 0..20 {
        c_sock
            .send_to(b"INVITE sip:nobody SIP/2.0\r\n\r\n", victim)
            .unwrap();
    }
    for _ in 0..10 {
        c_sock.send_to(&[0x80, 0, 0, 1, 0, 0], victim).unwrap();
    }
    let stranger = bind_in(&caller, SocketAddr::V4(SocketAddrV4::new(ip(1, 2), 16004)));
    for i in 0..5u32 {
        stranger
            .send_to(&rtp_packet(0x7700_0000 + i, 1, 0), victim)
            .unwrap();
    }
    let unused = SocketAddr::V4(SocketAddrV4::new(ip(1, 1), PORT_MAX - 3));
    for i in 0..20u16 {
        c_sock
            .send_to(&rtp_packet(0x6600_0000, i, 0), unused)
            .unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    let b1 = before(&mut api);
    assert_eq!(
        b1.0 - b0.0,
        30,
        "garbage and truncated packets counted as not-media/malformed"
    );
    assert_eq!(b1.1 - b0.1, 5, "stranger packets counted");
    assert_eq!(
        b1.2 - b0.2,
        20,
        "packets to a port without a session counted"
    );

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    // What the endpoints saw.
    let at_callee = seen_at_callee.lock().unwrap().clone();
    let at_caller = seen_at_caller.lock().unwrap().clone();
    let at_caller_moved = seen_at_caller_moved.lock().unwrap().clone();
    for call in 0..CALLS {
        // caller → callee
        let s = at_callee
            .get(&ssrc(call, 0))
            .unwrap_or_else(|| panic!("call {call}: nothing reached the callee"));
        let expect = match call {
            LOSSY_CALL => PACKETS - PACKETS / 10,
            // The relay drops the first K-1 = 2 packets from the new port while it verifies
            // the source change, then re-latches.
            MOVING_CALL => PACKETS - 2,
            _ => PACKETS,
        };
        assert_eq!(s.count, expect, "call {call} caller→callee packets");
        assert_eq!(s.dups, 0, "call {call} caller→callee duplicates");
        let inversions = if call == REORDERED_CALL {
            PACKETS / 25
        } else {
            0
        };
        assert_eq!(
            s.inversions, inversions,
            "call {call}: the relay forwards in arrival order, reordering passes through"
        );
        assert_eq!(
            s.sources.keys().copied().collect::<Vec<_>>(),
            vec![relay_b(call)],
            "call {call}: callee sees the relay's B port as source"
        );
        if call == MOVING_CALL {
            assert!(
                !s.seqs[MOVE_AT as usize]
                    && !s.seqs[MOVE_AT as usize + 1]
                    && s.seqs[MOVE_AT as usize + 2]
            );
        }
        // callee → caller (to the moved socket after the re-latch)
        let back = at_caller.get(&ssrc(call, 1)).map_or(0, |s| s.count)
            + at_caller_moved.get(&ssrc(call, 1)).map_or(0, |s| s.count);
        assert_eq!(back, PACKETS, "call {call} callee→caller packets");
        let src = at_caller.get(&ssrc(call, 1)).unwrap();
        assert_eq!(
            src.sources.keys().copied().collect::<Vec<_>>(),
            vec![relay_a(call)],
            "call {call}: caller sees the relay's A port as source"
        );
        if call == MOVING_CALL {
            let moved = at_caller_moved.get(&ssrc(call, 1)).map_or(0, |s| s.count);
            assert!(moved > 50, "after the re-latch the relay sends to the caller's new port ({moved} packets there)");
        } else {
            assert!(!at_caller_moved.contains_key(&ssrc(call, 1)));
        }
    }

    // What the relay measured, then final stats on delete.
    let mut jitters = Vec::new();
    for (call, &(id, _, _)) in sessions.iter().enumerate() {
        let v = api.call(&json!({"op": "delete", "id": id})).unwrap();
        let a = &v["stats"]["a"];
        let b = &v["stats"]["b"];
        let lost = a["lost"].as_u64().unwrap();
        let jitter = a["jitter_ms"].as_f64().unwrap();
        match call {
            LOSSY_CALL => assert_eq!(
                lost,
                u64::from(PACKETS / 10),
                "relay-measured loss of the lossy call"
            ),
            // The two packets dropped while verifying the new source are gaps in the stream.
            MOVING_CALL => assert_eq!(lost, 2, "relay-measured loss of the moving call"),
            _ => assert_eq!(lost, 0, "call {call}: relay-measured loss"),
        }
        let reordered = a["out_of_order"].as_u64().unwrap();
        let expect_reordered = if call == REORDERED_CALL {
            u64::from(PACKETS / 25)
        } else {
            0
        };
        assert_eq!(
            reordered, expect_reordered,
            "call {call}: relay-counted reordered packets"
        );
        assert_eq!(
            a["duplicates"].as_u64().unwrap(),
            0,
            "call {call}: duplicates"
        );
        if call == JITTERY_CALL {
            assert!(
                (7.0..=13.0).contains(&jitter),
                "relay-measured jitter {jitter} ms, injected 10 ms"
            );
            let ours = at_callee[&ssrc(call, 0)].jitter / 8.0;
            assert!(
                (7.0..=13.0).contains(&ours),
                "callee-measured jitter {ours} ms"
            );
        } else {
            jitters.push(jitter);
        }
        assert_eq!(
            b["packets"].as_u64().unwrap(),
            u64::from(PACKETS),
            "call {call}: leg B packets"
        );
        assert_eq!(b["lost"].as_u64().unwrap(), 0);
        let latched = a["latched"].as_str().unwrap();
        let want = if call == MOVING_CALL {
            caller_moved
        } else {
            caller_addr
        };
        assert_eq!(
            latched,
            want.to_string(),
            "call {call}: leg A latched address"
        );
    }
    jitters.sort_by(f64::total_cmp);
    assert!(
        jitters[jitters.len() / 2] < 3.0,
        "median jitter of clean calls {:?} ms",
        jitters[jitters.len() / 2]
    );
    assert_eq!(
        api.call(&json!({"op": "list"})).unwrap()["sessions"],
        Value::Array(vec![])
    );

    drop(api);
    cp.signal(libc::SIGTERM);
    assert!(cp.wait(Duration::from_secs(5)).is_some_and(|s| s.success()));
    dp.signal(libc::SIGTERM);
    let st = dp.wait(Duration::from_secs(5));
    assert!(
        st.is_some_and(|s| s.success()),
        "dataplane exit: {st:?}\n{}",
        dp.stderr()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Removes the region file if the dataplane died before removing it.
struct Unlink(String);
impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
    }
}
fn shmq_unlink_on_drop(name: &str) -> Unlink {
    Unlink(name.into())
}

/// The two tests share CPUs; one at a time keeps pacing honest.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn relay_end_to_end_io_uring() {
    let _g = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    relay_end_to_end("uring", 0);
}

#[test]
fn relay_end_to_end_epoll() {
    let _g = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    relay_end_to_end("mio", 1);
}
