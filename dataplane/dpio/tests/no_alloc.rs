//! The steady-state loop (poll, next_rx, payload, send, send_copy, release) does not touch the
//! heap after start-up, on either backend.
#![allow(unsafe_code)] // reason: a counting #[global_allocator] must implement the unsafe GlobalAlloc trait.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dpio::{AnyBackend, Backend, BackendKind, Config};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Only the test thread's allocations inside the measured loop count.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn run(
    io: &mut AnyBackend,
    a_addr: SocketAddr,
    b: dpio::SocketId,
    src: &UdpSocket,
    dst: &UdpSocket,
    bursts: u32,
) {
    let dst_addr = dst.local_addr().unwrap();
    let pkt = [0x80u8; 172];
    let mut got = [0u8; 2048];
    for _ in 0..bursts {
        for _ in 0..32 {
            src.send_to(&pkt, a_addr).unwrap();
        }
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while n < 32 {
            io.poll(Some(Duration::from_millis(10))).unwrap();
            while let Some(rx) = io.next_rx() {
                assert_eq!(io.payload(rx.buf, rx.len)[0], 0x80);
                if n % 8 == 7 {
                    // A dropped packet answered by a copied reply.
                    io.release(rx.buf);
                    io.send_copy(b, dst_addr, &pkt).unwrap();
                } else {
                    io.payload_mut(rx.buf, rx.len)[1] = 0;
                    io.send(b, dst_addr, rx.buf, rx.len).unwrap();
                }
                n += 1;
            }
            assert!(Instant::now() < deadline);
        }
        while io.sends_in_flight() > 0 {
            io.poll(Some(Duration::from_millis(1))).unwrap();
        }
        for _ in 0..32 {
            dst.recv_from(&mut got).unwrap();
        }
    }
}

#[test]
fn steady_state_does_not_allocate() {
    for kind in [BackendKind::Uring, BackendKind::Mio] {
        let cfg = Config {
            buffers: 128,
            send_slots: 128,
            force: Some(kind),
            ..Config::default()
        };
        let (mut io, _) = AnyBackend::new(&cfg).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = io.add_udp(any).unwrap();
        let b = io.add_udp(any).unwrap();
        let a_addr = io.local_addr(a).unwrap();
        let src = UdpSocket::bind(any).unwrap();
        let dst = UdpSocket::bind(any).unwrap();
        dst.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        run(&mut io, a_addr, b, &src, &dst, 2); // warm-up

        ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.with(|c| c.set(true));
        run(&mut io, a_addr, b, &src, &dst, 50);
        COUNTING.with(|c| c.set(false));
        let allocs = ALLOCS.load(Ordering::Relaxed);
        assert_eq!(
            allocs, 0,
            "{kind}: {allocs} allocations in the steady-state loop"
        );
        assert_eq!(io.stats().rx_packets, 52 * 32);
        assert_eq!(io.free_buffers(), 128);
    }
}
