//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;
use suf_net::{LinkConfig, NetError, TcpTransport};

/// Configurations for party 0 and party 1 that agree on everything.
pub fn cfgs(timeout: Duration) -> (LinkConfig, LinkConfig) {
    let mut c0 = LinkConfig::new(0);
    c0.session_id = [0x5e; 16];
    c0.model_fp = suf_net::fingerprint(b"model");
    c0.keys_fp = suf_net::fingerprint(b"keys");
    c0.timeout = timeout;
    c0.connect_timeout = Duration::from_secs(5);
    let mut c1 = c0.clone();
    c1.party = 1;
    (c0, c1)
}

/// A loopback listener and its address.
pub fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Party 0 accepts, party 1 connects (in another thread); both results.
pub fn pair(
    c0: &LinkConfig,
    c1: &LinkConfig,
) -> (
    Result<TcpTransport, NetError>,
    Result<TcpTransport, NetError>,
) {
    let (l, a) = listener();
    let c1 = c1.clone();
    let h = thread::spawn(move || TcpTransport::connect(a, &c1));
    let r0 = TcpTransport::accept(&l, c0);
    let r1 = h.join().unwrap();
    (r0, r1)
}

/// Deterministic test bytes.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}
