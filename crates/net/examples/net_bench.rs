//! Prints the link benchmarks as JSON: `cargo run --release -p suf-net --example net_bench
//! [round_trip_iters] [open_runs]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let rt = match suf_net::bench::round_trip_us(iters) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("round trip benchmark failed: {e}");
            std::process::exit(1);
        }
    };
    let open = match suf_net::bench::open_1m_ms(runs) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("open benchmark failed: {e}");
            std::process::exit(1);
        }
    };
    println!("{{\"round_trip_us\":{rt:.2},\"open_1m_ms\":{open:.3}}}");
}
