//! Bounded receives on real loopback sockets: a peer that announces more than the round
//! expects is refused from the frame header, before the payload is read or allocated, and a
//! peer that floods small frames is held back by TCP flow control instead of filling memory.

mod common;

use common::{bytes, cfgs, listener, pair};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use suf_net::handshake::HELLO_LEN;
use suf_net::{exchange_elems, mem_pair, LinkConfig, NetError, TcpTransport, Transport};

/// A hand-written peer: connects, sends `c`'s hello, reads ours.
fn raw_peer(a: SocketAddr, c: &LinkConfig) -> TcpStream {
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&c.hello().encode()).unwrap();
    let mut theirs = vec![0u8; HELLO_LEN];
    s.read_exact(&mut theirs).unwrap();
    s
}

#[test]
fn an_oversized_announcement_is_refused_from_its_header() {
    // 900 MiB announced, 64 bytes sent, connection held open: under the link's 1 GiB ceiling,
    // but far above the 1 KiB this round expects. The refusal must come at once (from the
    // header alone), not after waiting for (and allocating) the payload.
    let timeout = Duration::from_secs(5);
    let (c0, c1) = cfgs(timeout);
    assert_eq!(c0.max_frame, LinkConfig::DEFAULT_MAX_FRAME);
    let (l, a) = listener();
    let h = thread::spawn(move || {
        let mut s = raw_peer(a, &c1);
        s.write_all(&(900u64 << 20).to_le_bytes()).unwrap();
        s.write_all(&[0xAB; 64]).unwrap();
        thread::sleep(Duration::from_secs(2));
        s
    });
    let mut t = TcpTransport::accept(&l, &c0).unwrap();
    let start = Instant::now();
    match t.recv_max(1024) {
        Err(NetError::FrameTooLarge { len, max }) => {
            assert_eq!(len, 900 << 20);
            assert_eq!(max, 1024);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(t.stats().bytes_received, 0);
    assert!(matches!(t.recv(), Err(NetError::Broken { .. })));
    drop(h.join().unwrap());
}

#[test]
fn a_small_frame_over_the_bound_is_refused_too() {
    let (c0, c1) = cfgs(Duration::from_secs(5));
    let (l, a) = listener();
    let h = thread::spawn(move || {
        let mut s = raw_peer(a, &c1);
        s.write_all(&26u64.to_le_bytes()).unwrap();
        s.write_all(&[1u8; 26]).unwrap();
        thread::sleep(Duration::from_millis(500));
        s
    });
    let mut t = TcpTransport::accept(&l, &c0).unwrap();
    match t.recv_max(25) {
        Err(NetError::FrameTooLarge { len: 26, max: 25 }) => {}
        other => panic!("{other:?}"),
    }
    drop(h.join().unwrap());
}

#[test]
fn exact_bounds_pass_and_exchange_elems_uses_them() {
    let (c0, c1) = cfgs(Duration::from_secs(10));
    let (r0, r1) = pair(&c0, &c1);
    let (mut t0, mut t1) = (r0.unwrap(), r1.unwrap());
    let sizes = [0usize, 1, 64 * 1024, 64 * 1024 + 1, 3 << 20];
    let h = thread::spawn(move || {
        for (i, &n) in sizes.iter().enumerate() {
            assert!(t1.exchange_max(bytes(i as u64, n), n).unwrap() == bytes(100 + i as u64, n));
        }
        // 4 values of 50 bits: exactly 25 bytes expected.
        exchange_elems(&mut t1, &[9, 8, 7, 6], 50).unwrap()
    });
    for (i, &n) in sizes.iter().enumerate() {
        assert!(t0.exchange_max(bytes(100 + i as u64, n), n).unwrap() == bytes(i as u64, n));
    }
    assert_eq!(
        exchange_elems(&mut t0, &[1, 2, 3, 4], 50).unwrap(),
        [9, 8, 7, 6]
    );
    assert_eq!(h.join().unwrap(), [1, 2, 3, 4]);
}

#[test]
fn exchange_elems_refuses_a_peer_sending_more_than_the_packing() {
    let (c0, c1) = cfgs(Duration::from_secs(5));
    let (r0, r1) = pair(&c0, &c1);
    let (mut t0, mut t1) = (r0.unwrap(), r1.unwrap());
    // The peer opens 5 values where we open 4.
    let h = thread::spawn(move || exchange_elems(&mut t1, &[1, 2, 3, 4, 5], 50));
    match exchange_elems(&mut t0, &[1, 2, 3, 4], 50) {
        Err(NetError::FrameTooLarge { len: 32, max: 25 }) => {}
        other => panic!("{other:?}"),
    }
    drop(t0);
    // The peer sees its own refusal: our 25 bytes are fewer than its 32.
    assert!(matches!(
        h.join().unwrap(),
        Err(NetError::BadPayload { .. }) | Err(NetError::PeerClosed { .. })
    ));
}

#[test]
fn a_flood_of_small_frames_is_held_back_and_delivered_in_order() {
    let (c0, c1) = cfgs(Duration::from_secs(20));
    let (r0, r1) = pair(&c0, &c1);
    let (mut t0, mut t1) = (r0.unwrap(), r1.unwrap());
    let n = 3000usize;
    let h = thread::spawn(move || {
        for i in 0..n {
            t1.send(bytes(i as u64, 1000 + i % 7)).unwrap();
        }
        t1
    });
    // Read nothing for a while: the reader thread stops at its queue bound.
    thread::sleep(Duration::from_millis(300));
    for i in 0..n {
        let want = bytes(i as u64, 1000 + i % 7);
        assert!(t0.recv_max(want.len()).unwrap() == want, "message {i}");
    }
    drop(h.join().unwrap());
}

#[test]
fn in_memory_transport_bounds_too() {
    let (mut a, mut b) = mem_pair(Duration::from_secs(1));
    b.send(vec![0; 10]).unwrap();
    match a.recv_max(9) {
        Err(NetError::FrameTooLarge { len: 10, max: 9 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(a.recv(), Err(NetError::Broken { .. })));
}
