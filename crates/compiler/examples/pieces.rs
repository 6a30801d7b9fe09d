use suf_compiler::fit::{fit, Center, FitRequest};
use suf_compiler::gates::reference;
fn main() {
    let f = 12u32;
    for (name, func, lo, hi) in [
        ("gelu", reference::gelu as fn(f64) -> f64, -(1i64 << 14), 1i64 << 14),
        ("nexp", reference::nexp as fn(f64) -> f64, 0, 37376),
    ] {
        for &b in &[2.5f64, 3.0, 3.4] {
            for t in (6..=22).step_by(2) {
                let bq = b * (t as f64).exp2();
                let ex = 0.45 * (t as f64).exp2();
                let bf = move |x: f64| if x == 0.0 { ex } else { bq };
                for d in [1usize, 2] {
                let r = fit(&FitRequest { f: &func, budget: &bf, lo, hi, f_in: f, out_scale: f + t, degree: d, center: Center::Mid, breaks: vec![], max_pieces: 400 });
                print!("{name} b={b} t={t} d={d}: {} | ", r.map(|x| x.pieces.len() as i64).unwrap_or(-1));
                }
                println!();
            }
        }
    }
}
