//! The online phase's host steps, fused against unfused:
//! `cargo run -p suf-backend --release --example fused_bench [N]`.
//!
//! Prints one JSON line: per step the median milliseconds (5 timed runs after a warm-up) of
//! the chain of separate backend calls the party interpreter used to make and of the fused
//! pass of `suf_backend::fused`, at N elements (default 2^20) of a 37-bit ring, on a CPU
//! backend with `RAYON_NUM_THREADS` threads (default: all). Also the dealer-share expansion
//! (`Csprng::fill_masked`) against the serial `next_u64() & mask` loop, and fixed-key AES
//! blocks per second on one thread. The results are asserted equal.

use std::time::Instant;

use suf_backend::{Backend, BitWidth, CpuBackend};
use suf_core::pack::{pack_into, unpack};
use suf_core::prg::Csprng;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 20);
    let be = CpuBackend::new();
    let w = BitWidth::new(37).expect("ring");
    let mut g = Csprng::for_tests(3);
    let [a, b, ra, rb, c] = std::array::from_fn(|_| g.ring_vec(w, n));
    let j = 1u64;
    let mut out = serde_like::Obj::default();
    out.num("n", n as f64);
    out.num("threads", rayon::current_num_threads() as f64);

    // Beaver product.
    let unfused = || {
        let ab = be.mul(w, &a, &b).expect("mul");
        let t1 = be.mul(w, &a, &rb).expect("mul");
        let t2 = be.mul(w, &b, &ra).expect("mul");
        let s = be.scale(w, &ab, j).expect("scale");
        let s = be.sub(w, &s, &t1).expect("sub");
        let s = be.sub(w, &s, &t2).expect("sub");
        be.add(w, &s, &c).expect("add")
    };
    let fused = || be.beaver_mul(w, 1, &a, &b, &ra, &rb, &c).expect("fused");
    assert_eq!(unfused(), fused());
    out.num("beaver_mul_unfused_ms", median_ms(|| drop(unfused())));
    out.num("beaver_mul_fused_ms", median_ms(|| drop(fused())));

    // Mask + pack.
    let unfused = || {
        let m = be.add(w, &a, &ra).expect("add");
        let mut msg = Vec::new();
        pack_into(&m, 37, &mut msg);
        (m, msg)
    };
    let fused = || {
        let mut msg = Vec::new();
        let m = be
            .mask_pack_many(&[(w, &a, &ra)], &mut msg)
            .expect("mask_pack")
            .remove(0);
        (m, msg)
    };
    assert_eq!(unfused(), fused());
    out.num("mask_pack_unfused_ms", median_ms(|| drop(unfused())));
    out.num("mask_pack_fused_ms", median_ms(|| drop(fused())));

    // Unpack + add.
    let msg = suf_core::pack::pack(&b, 37);
    let unfused = || {
        let peer = unpack(&msg, 37, n).expect("unpack");
        be.add(w, &a, &peer).expect("add")
    };
    let fused = || {
        be.unpack_add_many(&[(w, &msg, &a)])
            .expect("unpack_add")
            .remove(0)
    };
    assert_eq!(unfused(), fused());
    out.num("unpack_add_unfused_ms", median_ms(|| drop(unfused())));
    out.num("unpack_add_fused_ms", median_ms(|| drop(fused())));

    // Party 1's share expansion.
    let serial = || {
        let mut g = Csprng::for_tests(9);
        (0..n)
            .map(|_| g.next_u64() & w.mask())
            .collect::<Vec<u64>>()
    };
    let bulk = || {
        let mut g = Csprng::for_tests(9);
        let mut v = vec![0u64; n];
        g.fill_masked(w.mask(), &mut v);
        v
    };
    assert_eq!(serial(), bulk());
    out.num("share_expand_serial_ms", median_ms(|| drop(serial())));
    out.num("share_expand_bulk_ms", median_ms(|| drop(bulk())));

    // The AES floor: fixed-key AES blocks per second on one thread (`permute_many`, the call
    // the DCF evaluators make), for the "AES floor" of a model (its AES calls / this rate).
    let aes = suf_core::prg::FixedKeyAes::global();
    let mut blocks: Vec<u128> = (0..1u128 << 16).collect();
    let ms = median_ms(|| aes.permute_many(&mut blocks));
    out.num(
        "aes_blocks_per_s_one_thread",
        blocks.len() as f64 / ms * 1e3,
    );
    println!("{}", out.finish());
}

/// A flat JSON object of numbers (no serde dependency for an example).
mod serde_like {
    #[derive(Default)]
    pub struct Obj(Vec<String>);
    impl Obj {
        pub fn num(&mut self, k: &str, v: f64) {
            self.0
                .push(format!("\"{k}\":{}", (v * 1000.0).round() / 1000.0));
        }
        pub fn finish(self) -> String {
            format!("{{{}}}", self.0.join(","))
        }
    }
}
