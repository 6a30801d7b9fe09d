//! Print `gates_report(n, f)` (default n = 50, f = 12).
fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(50);
    let f = args.get(1).copied().unwrap_or(12);
    let t = std::time::Instant::now();
    let r = suf_compiler::gates_report(n, f);
    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    eprintln!("report took {:.2} s", t.elapsed().as_secs_f64());
}
