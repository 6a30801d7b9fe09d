//! The TCP transport on loopback: exchange, stats, handshake refusals, failures mid-round.

mod common;

use common::{bytes, cfgs, listener, pair};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use suf_net::handshake::{Hello, HELLO_LEN, PROTOCOL_VERSION};
use suf_net::{exchange_elems, LinkConfig, NetError, TcpTransport, Transport};

const SLACK: Duration = Duration::from_millis(800);

#[test]
fn many_rounds_both_directions_with_exact_stats() {
    let (c0, c1) = cfgs(Duration::from_secs(10));
    let (l, a) = listener();
    let sizes: Vec<usize> = (0..200).map(|i| (i * 7919) % 5000).collect();
    let sizes1 = sizes.clone();
    let h = thread::spawn(move || {
        let mut t = TcpTransport::connect(a, &c1).unwrap();
        assert!(!t.is_tls());
        for (i, &n) in sizes1.iter().enumerate() {
            let got = t.exchange(bytes(1000 + i as u64, n + 1)).unwrap();
            assert_eq!(got, bytes(i as u64, n), "round {i}");
        }
        let v = exchange_elems(&mut t, &[3, 4, 5, 6], 50).unwrap();
        assert_eq!(v, [(1 << 50) - 1, 0, 1, 2]);
        *t.stats()
    });
    let mut t = TcpTransport::accept(&l, &c0).unwrap();
    assert_eq!(t.party(), 0);
    for (i, &n) in sizes.iter().enumerate() {
        let got = t.exchange(bytes(i as u64, n)).unwrap();
        assert_eq!(got, bytes(1000 + i as u64, n + 1), "round {i}");
    }
    let v = exchange_elems(&mut t, &[u64::MAX, 0, 1, 2], 50).unwrap();
    assert_eq!(v, [3, 4, 5, 6]);
    let s1 = h.join().unwrap();
    let s0 = *t.stats();
    let total: u64 = sizes.iter().map(|&n| n as u64).sum();
    assert_eq!(s0.rounds, 201);
    assert_eq!(s0.messages_sent, 201);
    assert_eq!(s0.messages_received, 201);
    assert_eq!(s0.bytes_sent, total + 25);
    assert_eq!(s0.bytes_received, total + 200 + 25);
    assert_eq!(s1.bytes_sent, s0.bytes_received);
    assert_eq!(s1.bytes_received, s0.bytes_sent);
    assert_eq!(s1.rounds, 201);
    assert_eq!(s0.wire_bytes_sent(), s0.bytes_sent + 8 * 201);
}

#[test]
fn large_messages_both_ways_at_once_do_not_deadlock() {
    let (c0, c1) = cfgs(Duration::from_secs(10));
    let n = 8 << 20;
    let (r0, r1) = pair(&c0, &c1);
    let (mut t0, mut t1) = (r0.unwrap(), r1.unwrap());
    let h = thread::spawn(move || {
        for r in 0..3u64 {
            let got = t1.exchange(bytes(100 + r, n)).unwrap();
            assert!(got == bytes(200 + r, n), "round {r}");
        }
        // Several messages queued back to back, then received.
        for r in 0..4u64 {
            t1.send(bytes(300 + r, n / 4)).unwrap();
        }
        for r in 0..4u64 {
            assert!(t1.recv().unwrap() == bytes(400 + r, n / 4));
        }
        t1.note_round();
        *t1.stats()
    });
    for r in 0..3u64 {
        let got = t0.exchange(bytes(200 + r, n)).unwrap();
        assert!(got == bytes(100 + r, n), "round {r}");
    }
    for r in 0..4u64 {
        t0.send(bytes(400 + r, n / 4)).unwrap();
    }
    for r in 0..4u64 {
        assert!(t0.recv().unwrap() == bytes(300 + r, n / 4));
    }
    t0.note_round();
    let s1 = h.join().unwrap();
    assert_eq!(t0.stats().rounds, 4);
    assert_eq!(t0.stats().bytes_sent, 4 * n as u64);
    assert_eq!(t0.stats().bytes_received, 4 * n as u64);
    assert_eq!(s1.messages_sent, 7);
}

fn both_refuse(c0: &LinkConfig, c1: &LinkConfig, field: &str) -> (String, String) {
    let t = Instant::now();
    let (r0, r1) = pair(c0, c1);
    assert!(t.elapsed() < Duration::from_secs(2));
    let msg = |r: Result<TcpTransport, NetError>| match r {
        Err(e @ NetError::Handshake { field: f, .. }) => {
            assert_eq!(f, field, "{e}");
            e.to_string()
        }
        Err(e) => panic!("expected a {field} refusal, got {e}"),
        Ok(_) => panic!("expected a {field} refusal, got a link"),
    };
    (msg(r0), msg(r1))
}

#[test]
fn handshake_refuses_each_mismatch_on_both_sides() {
    let (c0, c1) = cfgs(Duration::from_secs(5));

    let mut d = c1.clone();
    d.party = 0;
    let (m0, m1) = both_refuse(&c0, &d, "party id");
    assert!(
        m0.contains("party id") && m1.contains("party id"),
        "{m0} / {m1}"
    );

    let mut d = c1.clone();
    d.session_id[3] ^= 0xff;
    let (m0, m1) = both_refuse(&c0, &d, "session id");
    let (ours, theirs) = (suf_net::hex(&c0.session_id), suf_net::hex(&d.session_id));
    assert!(m0.contains(&ours) && m0.contains(&theirs), "{m0}");
    assert!(m1.find(&theirs) < m1.find(&ours), "{m1}");

    let mut d = c1.clone();
    d.model_fp = suf_net::fingerprint(b"another model");
    let (m0, _) = both_refuse(&c0, &d, "model fingerprint");
    assert!(m0.contains(&suf_net::hex(&d.model_fp)), "{m0}");

    let mut d = c1.clone();
    d.keys_fp = suf_net::fingerprint(b"another dealer run");
    let (m0, m1) = both_refuse(&c0, &d, "keys fingerprint");
    assert!(m0.contains(&suf_net::hex(&c0.keys_fp)), "{m0}");
    assert!(m1.contains(&suf_net::hex(&d.keys_fp)), "{m1}");
}

/// A hand-written peer: connects, sends `hello` bytes, reads ours.
fn raw_peer(a: SocketAddr, hello: &[u8]) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(hello).unwrap();
    let mut theirs = vec![0u8; HELLO_LEN];
    s.read_exact(&mut theirs).unwrap();
    (s, theirs)
}

fn hello_of(c: &LinkConfig) -> Hello {
    c.hello()
}

#[test]
fn version_mismatch_is_refused_on_both_sides() {
    let (c0, c1) = cfgs(Duration::from_secs(5));
    let (l, a) = listener();
    let mut future = hello_of(&c1);
    future.version = PROTOCOL_VERSION + 1;
    let h = thread::spawn(move || {
        let (_s, theirs) = raw_peer(a, &future.encode());
        // The peer, speaking version 2, makes the same check from its side.
        let mut buf = [0u8; HELLO_LEN];
        buf.copy_from_slice(&theirs);
        future.check_peer(&buf).unwrap_err()
    });
    match TcpTransport::accept(&l, &c0) {
        Err(NetError::Handshake {
            field,
            ours,
            theirs,
        }) => {
            assert_eq!(field, "protocol version");
            assert_eq!(ours, PROTOCOL_VERSION.to_string());
            assert_eq!(theirs, (PROTOCOL_VERSION + 1).to_string());
        }
        other => panic!("expected a version refusal, got {other:?}"),
    }
    match h.join().unwrap() {
        NetError::Handshake { field, .. } => assert_eq!(field, "protocol version"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stranger_is_refused_by_magic() {
    let (c0, _) = cfgs(Duration::from_secs(2));
    let (l, a) = listener();
    let h = thread::spawn(move || {
        let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        junk.resize(HELLO_LEN, b' ');
        raw_peer(a, &junk)
    });
    match TcpTransport::accept(&l, &c0) {
        Err(NetError::Handshake { field, .. }) => assert_eq!(field, "magic"),
        other => panic!("{other:?}"),
    }
    drop(h.join().unwrap());
}

#[test]
fn frame_too_large_is_refused_without_allocating() {
    let (mut c0, c1) = cfgs(Duration::from_secs(5));
    c0.max_frame = 1 << 20;
    let (l, a) = listener();
    let hello = hello_of(&c1).encode();
    let h = thread::spawn(move || {
        let (mut s, _) = raw_peer(a, &hello);
        // One acceptable frame, then one that announces an absurd length.
        s.write_all(&3u64.to_le_bytes()).unwrap();
        s.write_all(b"abc").unwrap();
        s.write_all(&(u64::MAX / 3).to_le_bytes()).unwrap();
        s.write_all(&[0u8; 64]).unwrap();
        thread::sleep(Duration::from_millis(500));
        s
    });
    let mut t = TcpTransport::accept(&l, &c0).unwrap();
    assert_eq!(t.recv().unwrap(), b"abc");
    match t.recv() {
        Err(NetError::FrameTooLarge { len, max }) => {
            assert_eq!(len, u64::MAX / 3);
            assert_eq!(max, 1 << 20);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(t.recv(), Err(NetError::Broken { .. })));
    drop(h.join().unwrap());
}

#[test]
fn peer_dropping_mid_protocol_is_reported_promptly() {
    let timeout = Duration::from_secs(2);
    let (c0, c1) = cfgs(timeout);
    let (r0, r1) = pair(&c0, &c1);
    let (mut t0, mut t1) = (r0.unwrap(), r1.unwrap());
    let h = thread::spawn(move || {
        for _ in 0..3 {
            t1.exchange(vec![1; 100]).unwrap();
        }
        // Party 1 "dies" here: its link goes away without another word.
        drop(t1);
    });
    for _ in 0..3 {
        t0.exchange(vec![0; 100]).unwrap();
    }
    let start = Instant::now();
    let r = t0.exchange(vec![0; 100]);
    let took = start.elapsed();
    assert!(matches!(r, Err(NetError::PeerClosed { .. })), "{r:?}");
    assert!(took < timeout, "{took:?}");
    h.join().unwrap();
    assert!(matches!(t0.send(vec![1]), Err(NetError::Broken { .. })));
}

#[test]
fn peer_dying_mid_frame_is_peer_closed() {
    let (c0, c1) = cfgs(Duration::from_secs(2));
    let (l, a) = listener();
    let hello = hello_of(&c1).encode();
    let h = thread::spawn(move || {
        let (mut s, _) = raw_peer(a, &hello);
        s.write_all(&1000u64.to_le_bytes()).unwrap();
        s.write_all(&[7u8; 400]).unwrap();
        thread::sleep(Duration::from_millis(100));
        // Gone, 400 bytes into a 1000-byte frame.
    });
    let mut t = TcpTransport::accept(&l, &c0).unwrap();
    let start = Instant::now();
    match t.exchange(vec![1, 2, 3]) {
        Err(NetError::PeerClosed { detail }) => assert!(detail.contains("mid-frame"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    h.join().unwrap();
}

#[test]
fn silent_peer_times_out_within_the_timeout() {
    let timeout = Duration::from_secs(1);
    let (c0, c1) = cfgs(timeout);
    let (l, a) = listener();
    let hello = hello_of(&c1).encode();
    let release = Arc::new(AtomicBool::new(false));
    let rel = release.clone();
    let h = thread::spawn(move || {
        let (mut s, _) = raw_peer(a, &hello);
        // Alive, reading nothing, sending half a frame and then nothing.
        s.write_all(&50u64.to_le_bytes()).unwrap();
        s.write_all(&[1u8; 10]).unwrap();
        let t = Instant::now();
        while !rel.load(Ordering::Acquire) && t.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(10));
        }
    });
    let mut t = TcpTransport::accept(&l, &c0).unwrap();
    let start = Instant::now();
    let r = t.exchange(vec![0; 10]);
    let took = start.elapsed();
    match r {
        Err(NetError::Timeout { after, .. }) => assert_eq!(after, timeout),
        other => panic!("{other:?}"),
    }
    assert!(took >= timeout && took < timeout + SLACK, "{took:?}");
    // Dropping a broken link does not wait for the silent peer.
    let start = Instant::now();
    drop(t);
    assert!(start.elapsed() < SLACK, "{:?}", start.elapsed());
    release.store(true, Ordering::Release);
    h.join().unwrap();
}

/// A loopback TCP forwarder that cuts both connections (dropping them with data unread, as a
/// crash would) once `cut_after` bytes have gone from the accepting side to the connecting
/// side.
fn cutting_proxy(target: SocketAddr, cut_after: usize) -> (SocketAddr, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let (client, _) = l.accept().unwrap();
        let server = TcpStream::connect(target).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (c2, s2, cut2) = (
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            cut.clone(),
        );
        // client -> server, until cut.
        let up = thread::spawn(move || {
            let (mut c, mut s) = (c2, s2);
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 || cut2.load(Ordering::Acquire) || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (mut s, mut c) = (server, client);
        let mut buf = vec![0u8; 16 * 1024];
        let mut moved = 0usize;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            let take = n.min(cut_after - moved);
            if c.write_all(&buf[..take]).is_err() {
                break;
            }
            moved += take;
            if moved >= cut_after {
                break;
            }
        }
        cut.store(true, Ordering::Release);
        let _ = s.shutdown(Shutdown::Both);
        let _ = c.shutdown(Shutdown::Both);
        let _ = up.join();
    });
    (a, h)
}

#[test]
fn connection_breaking_mid_round_fails_both_sides_within_the_timeout() {
    let timeout = Duration::from_secs(2);
    let (c0, c1) = cfgs(timeout);
    let (l, target) = listener();
    // Handshake (93 bytes) + 2 small rounds (8 + 10 bytes each), then 1 MB into a big frame.
    let (pa, ph) = cutting_proxy(target, HELLO_LEN + 2 * 18 + (1 << 20));
    let h = thread::spawn(move || {
        let mut t = TcpTransport::connect(pa, &c1).unwrap();
        for _ in 0..2 {
            t.exchange(vec![1; 10]).unwrap();
        }
        let start = Instant::now();
        let r = t.exchange(vec![1; 8 << 20]);
        (r.map(|v| v.len()), start.elapsed())
    });
    let mut t = TcpTransport::accept(&l, &c0).unwrap();
    for _ in 0..2 {
        t.exchange(vec![0; 10]).unwrap();
    }
    let start = Instant::now();
    let r0 = t.exchange(vec![0; 8 << 20]);
    let took0 = start.elapsed();
    let (r1, took1) = h.join().unwrap();
    ph.join().unwrap();
    assert!(
        matches!(
            r0,
            Err(NetError::PeerClosed { .. }) | Err(NetError::Timeout { .. })
        ),
        "{r0:?}"
    );
    assert!(
        matches!(
            r1,
            Err(NetError::PeerClosed { .. }) | Err(NetError::Timeout { .. })
        ),
        "{r1:?}"
    );
    assert!(took0 < timeout + SLACK, "{took0:?}");
    assert!(took1 < timeout + SLACK, "{took1:?}");
}

#[test]
fn accept_and_connect_time_out() {
    let (mut c0, mut c1) = cfgs(Duration::from_secs(1));
    c0.connect_timeout = Duration::from_millis(300);
    c1.connect_timeout = Duration::from_millis(300);
    let (l, a) = listener();
    let start = Instant::now();
    assert!(matches!(
        TcpTransport::accept(&l, &c0),
        Err(NetError::Timeout { .. })
    ));
    assert!(start.elapsed() < Duration::from_secs(1));
    drop(l);
    // Nobody listens on `a` any more: connect retries, then gives up.
    let start = Instant::now();
    assert!(matches!(
        TcpTransport::connect(a, &c1),
        Err(NetError::Timeout { .. })
    ));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn plaintext_policy_and_config_checks() {
    let any = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(suf_net::tls_required(&any("10.1.2.3:7000")));
    assert!(!suf_net::tls_required(&any("127.0.0.1:7000")));
    let (mut c0, _) = cfgs(Duration::from_secs(1));
    c0.party = 7;
    let (l, _a) = listener();
    assert!(matches!(
        TcpTransport::accept(&l, &c0),
        Err(NetError::Config(_))
    ));
}

#[test]
fn mixed_small_and_large_messages_keep_their_order() {
    let (c0, c1) = cfgs(Duration::from_secs(10));
    let (r0, r1) = pair(&c0, &c1);
    let (mut t0, mut t1) = (r0.unwrap(), r1.unwrap());
    // Large messages go through the writer thread, small ones may be written directly.
    let sizes = [
        3 << 20,
        5,
        0,
        70_000,
        1 << 20,
        17,
        64 * 1024,
        64 * 1024 + 1,
        9,
    ];
    let h = thread::spawn(move || {
        for (i, &n) in sizes.iter().enumerate() {
            assert!(t1.recv().unwrap() == bytes(i as u64, n), "message {i}");
        }
        for (i, &n) in sizes.iter().enumerate().rev() {
            t1.send(bytes(50 + i as u64, n)).unwrap();
        }
    });
    for (i, &n) in sizes.iter().enumerate() {
        t0.send(bytes(i as u64, n)).unwrap();
    }
    for (i, &n) in sizes.iter().enumerate().rev() {
        assert!(t0.recv().unwrap() == bytes(50 + i as u64, n), "message {i}");
    }
    h.join().unwrap();
    let total: u64 = sizes.iter().map(|&n| n as u64).sum();
    assert_eq!(t0.stats().bytes_sent, total);
    assert_eq!(t0.stats().bytes_received, total);
    assert_eq!(t0.stats().rounds, 0);
}
