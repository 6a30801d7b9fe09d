//! Mutually authenticated TLS with pinned certificates, on loopback.

mod common;

use common::{bytes, cfgs, pair};
use std::thread;
use std::time::{Duration, Instant};
use suf_net::{generate_test_identity, Identity, LinkConfig, NetError, TlsConfig, Transport};

struct Ids {
    p0: Identity,
    p1: Identity,
    other: Identity,
}

fn ids() -> Ids {
    Ids {
        p0: generate_test_identity("suf-p0"),
        p1: generate_test_identity("suf-p1"),
        other: generate_test_identity("someone else"),
    }
}

fn tls_cfgs(
    timeout: Duration,
    id0: &Identity,
    pin0: &Identity,
    id1: &Identity,
    pin1: &Identity,
) -> (LinkConfig, LinkConfig) {
    let (mut c0, mut c1) = cfgs(timeout);
    c0.tls = Some(TlsConfig {
        identity: id0.clone(),
        peer_cert_der: pin0.cert_der.clone(),
    });
    c1.tls = Some(TlsConfig {
        identity: id1.clone(),
        peer_cert_der: pin1.cert_der.clone(),
    });
    (c0, c1)
}

#[test]
fn tls_exchange_works_with_exact_stats() {
    let i = ids();
    assert_ne!(i.p0.cert_der, i.p1.cert_der);
    assert!(!format!("{:?}", i.p0).contains(&format!("{:?}", &i.p0.key_der[..4])));
    let (c0, c1) = tls_cfgs(Duration::from_secs(10), &i.p0, &i.p1, &i.p1, &i.p0);
    let (r0, r1) = pair(&c0, &c1);
    let (mut t0, mut t1) = (r0.unwrap(), r1.unwrap());
    assert!(t0.is_tls() && t1.is_tls());
    let n = 8 << 20;
    let h = thread::spawn(move || {
        for r in 0..50u64 {
            let got = t1.exchange(bytes(r, r as usize * 31)).unwrap();
            assert_eq!(got, bytes(1000 + r, r as usize * 17));
        }
        let got = t1.exchange(bytes(7, n)).unwrap();
        assert!(got == bytes(8, n));
        for (i, m) in [n / 2, 3, 100_000, 1].into_iter().enumerate() {
            assert!(t1.recv().unwrap() == bytes(i as u64, m));
        }
        *t1.stats()
    });
    for r in 0..50u64 {
        let got = t0.exchange(bytes(1000 + r, r as usize * 17)).unwrap();
        assert_eq!(got, bytes(r, r as usize * 31));
    }
    let got = t0.exchange(bytes(8, n)).unwrap();
    assert!(got == bytes(7, n));
    let s0 = *t0.stats();
    for (i, m) in [n / 2, 3, 100_000, 1].into_iter().enumerate() {
        t0.send(bytes(i as u64, m)).unwrap();
    }
    let s1 = h.join().unwrap();
    let sum = |f: u64| (0..50u64).map(|r| r * f).sum::<u64>();
    assert_eq!(s0.rounds, 51);
    assert_eq!(s0.bytes_sent, sum(17) + n as u64);
    assert_eq!(s0.bytes_received, sum(31) + n as u64);
    assert_eq!(s1.bytes_sent, s0.bytes_received);
    assert_eq!(s1.bytes_received, s0.bytes_sent + (n / 2 + 100_004) as u64);
}

fn assert_refused(r: &Result<suf_net::TcpTransport, NetError>, took: Duration, says: &str) {
    match r {
        Err(NetError::Tls(m)) => assert!(m.contains(says), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a link was made with the wrong certificate"),
    }
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn wrong_server_pin_is_refused_on_both_sides() {
    let i = ids();
    // Party 1 (the TLS client) expects a certificate party 0 does not have.
    let (c0, c1) = tls_cfgs(Duration::from_secs(2), &i.p0, &i.p1, &i.p1, &i.other);
    let start = Instant::now();
    let (r0, r1) = pair(&c0, &c1);
    let took = start.elapsed();
    assert_refused(&r1, took, "is not the pinned one");
    assert_refused(&r0, took, "the peer refused our certificate");
}

#[test]
fn wrong_client_pin_is_refused_on_both_sides() {
    let i = ids();
    // Party 0 (the TLS server) expects a certificate party 1 does not have.
    let (c0, c1) = tls_cfgs(Duration::from_secs(2), &i.p0, &i.other, &i.p1, &i.p0);
    let start = Instant::now();
    let (r0, r1) = pair(&c0, &c1);
    let took = start.elapsed();
    assert_refused(&r0, took, "is not the pinned one");
    assert_refused(&r1, took, "the peer refused our certificate");
}

#[test]
fn tls_against_plaintext_is_refused_on_both_sides() {
    let i = ids();
    let (c0, _) = tls_cfgs(Duration::from_secs(2), &i.p0, &i.p1, &i.p1, &i.p0);
    let (_, c1) = cfgs(Duration::from_secs(2));
    let start = Instant::now();
    let (r0, r1) = pair(&c0, &c1);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(matches!(r0, Err(NetError::Tls(_))), "{r0:?}");
    assert!(r1.is_err());
}

#[test]
fn tls_handshake_mismatch_still_names_the_field() {
    let i = ids();
    let (c0, mut c1) = tls_cfgs(Duration::from_secs(2), &i.p0, &i.p1, &i.p1, &i.p0);
    c1.keys_fp[0] ^= 1;
    let (r0, r1) = pair(&c0, &c1);
    for r in [r0, r1] {
        match r {
            Err(NetError::Handshake { field, .. }) => assert_eq!(field, "keys fingerprint"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn tls_peer_dropping_mid_protocol_is_reported_promptly() {
    let i = ids();
    let timeout = Duration::from_secs(2);
    let (c0, c1) = tls_cfgs(timeout, &i.p0, &i.p1, &i.p1, &i.p0);
    let (r0, r1) = pair(&c0, &c1);
    let (mut t0, mut t1) = (r0.unwrap(), r1.unwrap());
    let h = thread::spawn(move || {
        t1.exchange(vec![1; 1000]).unwrap();
        drop(t1);
    });
    t0.exchange(vec![0; 1000]).unwrap();
    h.join().unwrap();
    let start = Instant::now();
    let r = t0.exchange(vec![0; 1000]);
    assert!(matches!(r, Err(NetError::PeerClosed { .. })), "{r:?}");
    assert!(start.elapsed() < timeout);
}

#[test]
fn generated_identities_are_usable_and_names_are_checked() {
    let id = suf_net::generate_identity("suf-p0.example").unwrap();
    assert!(!id.cert_der.is_empty() && !id.key_der.is_empty());
    assert_eq!(id.cert_fingerprint(), suf_net::fingerprint(&id.cert_der));
    assert!(suf_net::generate_identity("bad name ✗").is_err());
    // The test helper sanitizes instead.
    let _ = generate_test_identity("bad name ✗");
}
