//! The in-memory transport.

use std::thread;
use std::time::{Duration, Instant};
use suf_net::{decode_elems, encode_elems, exchange_elems, mem_pair, NetError, Transport};

#[test]
fn exchange_and_exact_stats() {
    let (mut a, mut b) = mem_pair(Duration::from_secs(5));
    assert_eq!((a.party(), b.party()), (0, 1));
    let h = thread::spawn(move || {
        for i in 0..100u64 {
            let got = b.exchange(vec![1u8; i as usize]).unwrap();
            assert_eq!(got, vec![0u8; 2 * i as usize]);
        }
        let v = exchange_elems(&mut b, &[5, 6, 7], 37).unwrap();
        assert_eq!(v, [1, 2, 3]);
        *b.stats()
    });
    for i in 0..100u64 {
        let got = a.exchange(vec![0u8; 2 * i as usize]).unwrap();
        assert_eq!(got, vec![1u8; i as usize]);
    }
    assert_eq!(exchange_elems(&mut a, &[1, 2, 3], 37).unwrap(), [5, 6, 7]);
    let sb = h.join().unwrap();
    let sa = *a.stats();
    let sum = |f: u64| (0..100u64).map(|i| f * i).sum::<u64>();
    assert_eq!(sa.rounds, 101);
    assert_eq!(sa.messages_sent, 101);
    assert_eq!(sa.messages_received, 101);
    assert_eq!(sa.bytes_sent, sum(2) + 14);
    assert_eq!(sa.bytes_received, sum(1) + 14);
    assert_eq!(sb.bytes_sent, sa.bytes_received);
    assert_eq!(sb.bytes_received, sa.bytes_sent);
    assert_eq!(sb.rounds, 101);
    assert_eq!(sa.wire_bytes_sent(), sa.bytes_sent + 8 * 101);
    a.reset_stats();
    assert_eq!(a.stats().rounds, 0);
}

#[test]
fn dropped_peer_is_peer_closed_not_a_hang() {
    let (mut a, b) = mem_pair(Duration::from_secs(10));
    let t = Instant::now();
    drop(b);
    assert!(matches!(a.recv(), Err(NetError::PeerClosed { .. })));
    assert!(t.elapsed() < Duration::from_secs(1));
    // Broken from now on.
    assert!(matches!(a.send(vec![1]), Err(NetError::Broken { .. })));
}

#[test]
fn delivered_before_drop_still_arrives() {
    let (mut a, mut b) = mem_pair(Duration::from_secs(10));
    b.send(vec![9]).unwrap();
    drop(b);
    assert_eq!(a.recv().unwrap(), vec![9]);
    assert!(matches!(a.recv(), Err(NetError::PeerClosed { .. })));
}

#[test]
fn silent_peer_times_out() {
    let (mut a, _b) = mem_pair(Duration::from_millis(200));
    let t = Instant::now();
    match a.exchange(vec![1, 2, 3]) {
        Err(NetError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(200)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(190) && e < Duration::from_secs(2),
        "{e:?}"
    );
    assert!(matches!(a.recv(), Err(NetError::Broken { .. })));
}

#[test]
fn bad_payload_is_typed() {
    let (mut a, mut b) = mem_pair(Duration::from_secs(5));
    b.send(encode_elems(&[1, 2], 50)).unwrap();
    let got = a.recv().unwrap();
    assert_eq!(decode_elems(&got, 50, 2).unwrap(), [1, 2]);
    assert!(matches!(
        decode_elems(&got, 50, 3),
        Err(NetError::BadPayload {
            expected: 19,
            got: 13,
            ..
        })
    ));
    // exchange_elems refuses a peer message of the wrong size.
    b.send(vec![0u8; 3]).unwrap();
    assert!(matches!(
        exchange_elems(&mut a, &[1, 2], 50),
        Err(NetError::BadPayload { .. })
    ));
}

#[test]
fn boxed_dyn_transport() {
    let (a, b) = mem_pair(Duration::from_secs(5));
    let mut a: Box<dyn Transport> = Box::new(a);
    let mut b: Box<dyn Transport> = Box::new(b);
    let h = thread::spawn(move || b.exchange(vec![2]).unwrap());
    assert_eq!(a.exchange(vec![1]).unwrap(), vec![2]);
    assert_eq!(h.join().unwrap(), vec![1]);
    assert_eq!(a.stats().rounds, 1);
}
