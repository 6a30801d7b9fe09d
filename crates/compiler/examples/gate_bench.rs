//! CPU throughput of every gate: one two-party run (dealer, both parties on two threads over
//! the in-memory link, in this process) on a batch of 2^14 elements at n = 50, f = 12.
//! Prints a Markdown table: online time of party 0 (first input share to output shares, keys
//! loaded), elements per second, dealer time, plus the report's error/bytes/rounds/AES.
//!
//! `cargo run -p suf-compiler --release --example gate_bench [log2 batch]`

use suf_compiler::report::{cases, costs, errors, inputs_for, run_case, Reference};
use suf_core::prg::Csprng;
use suf_runtime::harness::Link;

fn main() {
    let lg: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(14);
    let (n, f) = (50, 12);
    let len = 1usize << lg;
    let mut rng = Csprng::for_tests(42);
    println!("| gate | max err (ULP) | rel err | key B/elem (P0) | comm B/elem | rounds | AES/elem | online ms ({len}) | elems/s | keygen ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in cases(n, f).expect("cases") {
        let xs = inputs_for(&case, n, 1 << 17, 1 << 15, &mut rng);
        let st = errors(&case, n, f, &xs).expect("errors");
        let c = costs(&case, n, f, &mut rng).expect("costs");
        let batch: Vec<u64> = inputs_for(&case, n, 0, len, &mut rng)
            .into_iter()
            .take(len)
            .collect();
        // warm-up, then the median of three runs
        let _ = run_case(&case, n, f, &batch, Link::Mem, &mut rng);
        let mut t: Vec<(f64, f64)> = (0..3)
            .map(|_| {
                let r = run_case(&case, n, f, &batch, Link::Mem, &mut rng).expect("run");
                assert!(r.matches_plain());
                (r.reports[0].online_ms, r.deal.keygen_ms)
            })
            .collect();
        t.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (on, kg) = t[1];
        let per = if matches!(case.reference, Reference::MaxPairs) {
            2.0
        } else {
            1.0
        };
        let elems = batch.len() as f64 / per;
        let rel = if st.max_rel > 0.0 {
            format!("{:.3}%", st.max_rel * 100.0)
        } else {
            "–".into()
        };
        println!(
            "| {} | {:.2} | {} | {:.0} | {:.1} | {} | {:.0} | {:.1} | {:.3e} | {:.1} |",
            case.name,
            st.max_ulp,
            rel,
            c["key_bytes_per_elem"].as_f64().unwrap_or(0.0),
            c["comm_bytes_per_elem"].as_f64().unwrap_or(0.0),
            c["rounds"],
            c["aes_per_elem"].as_f64().unwrap_or(0.0),
            on,
            elems / (on / 1e3),
            kg
        );
    }
}
