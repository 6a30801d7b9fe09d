//! Link benchmarks, reported by `suf bench runtime --json` (and by the `net_bench` example).
//! Both parties run in this process, as two threads joined by a plaintext TCP link on
//! loopback, so the numbers include the framing, the reader and writer threads and the
//! kernel's loopback path, but no network latency.

use crate::{decode_elems, encode_elems, exchange_elems, LinkConfig, NetError, TcpTransport};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

/// Ring width used by the benchmarks (BERT-base/GPT-2's n).
pub const BENCH_BITS: u32 = 50;
/// Elements opened by [`open_1m_ms`].
pub const OPEN_ELEMS: usize = 1 << 20;

/// Run `f0` as party 0 (accepting) and `f1` as party 1 (connecting, in another thread) over a
/// fresh loopback TCP link, and return party 0's result.
///
/// # Errors
/// Any link error of either party.
pub fn with_loopback_pair<T, F0, F1>(f0: F0, f1: F1) -> Result<T, NetError>
where
    F0: FnOnce(&mut TcpTransport) -> Result<T, NetError>,
    F1: FnOnce(&mut TcpTransport) -> Result<(), NetError> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| NetError::Io {
        what: "binding a loopback listener".into(),
        source,
    })?;
    let addr: SocketAddr = listener.local_addr().map_err(|source| NetError::Io {
        what: "reading the listener address".into(),
        source,
    })?;
    let mut c0 = LinkConfig::new(0);
    c0.timeout = Duration::from_secs(20);
    c0.connect_timeout = Duration::from_secs(20);
    let mut c1 = c0.clone();
    c1.party = 1;
    let h = thread::spawn(move || -> Result<(), NetError> {
        let mut t = TcpTransport::connect(addr, &c1)?;
        f1(&mut t)
    });
    let t0 = TcpTransport::accept(&listener, &c0);
    drop(listener);
    let r0 = t0.and_then(|mut t| f0(&mut t));
    let r1 = h
        .join()
        .unwrap_or_else(|_| Err(NetError::Config("party 1's bench thread panicked".into())));
    let out = r0?;
    r1?;
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median time in microseconds of one round that opens a single 50-bit element (7 bytes
/// each way, bit-packed and unpacked), over `iters` rounds after a warm-up, timed by party 0.
///
/// # Errors
/// Any link error.
pub fn round_trip_us(iters: usize) -> Result<f64, NetError> {
    let iters = iters.max(1);
    let warm = iters.clamp(10, 200);
    let total = warm + iters;
    with_loopback_pair(
        move |t| {
            let mut samples = Vec::with_capacity(iters);
            for i in 0..total {
                let t0 = Instant::now();
                let v = exchange_elems(t, &[i as u64], BENCH_BITS)?;
                let dt = t0.elapsed();
                std::hint::black_box(v);
                if i >= warm {
                    samples.push(dt.as_secs_f64() * 1e6);
                }
            }
            Ok(median(samples))
        },
        move |t| {
            for i in 0..total {
                std::hint::black_box(exchange_elems(t, &[i as u64 ^ 0x5555], BENCH_BITS)?);
            }
            Ok(())
        },
    )
}

fn bench_values(seed: u64) -> Vec<u64> {
    let mut s = seed;
    (0..OPEN_ELEMS)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 14
        })
        .collect()
}

/// Median time in milliseconds to open 2^20 50-bit elements: pack them (6.5 MB), exchange
/// them with the peer doing the same at the same time, and unpack the peer's, over `runs`
/// rounds after one warm-up, timed by party 0.
///
/// # Errors
/// Any link error.
pub fn open_1m_ms(runs: usize) -> Result<f64, NetError> {
    let runs = runs.max(1);
    let one = |t: &mut TcpTransport, vals: &[u64]| -> Result<Vec<u64>, NetError> {
        let theirs = crate::Transport::exchange(t, encode_elems(vals, BENCH_BITS))?;
        decode_elems(&theirs, BENCH_BITS, vals.len())
    };
    with_loopback_pair(
        move |t| {
            let vals = bench_values(1);
            let mut samples = Vec::with_capacity(runs);
            for i in 0..=runs {
                let t0 = Instant::now();
                let v = one(t, &vals)?;
                let dt = t0.elapsed();
                std::hint::black_box(v);
                if i > 0 {
                    samples.push(dt.as_secs_f64() * 1e3);
                }
            }
            Ok(median(samples))
        },
        move |t| {
            let vals = bench_values(2);
            for _ in 0..=runs {
                std::hint::black_box(one(t, &vals)?);
            }
            Ok(())
        },
    )
}
