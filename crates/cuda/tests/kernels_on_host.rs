//! The evaluation kernels' logic without a GPU: `kernels/fss.cu` (DCF with scalar and vector
//! payloads, DPF comparison and point function, both AES table layouts) built as host C++
//! (tests/host_build) and run on key batches of the CPU dealer, against the CPU backend bit for
//! bit. CI has no GPU, so this is where a change to the kernel source first meets the CPU's
//! answers; on the GPU host `tests/backends.rs` runs the same comparisons on the device.
//! Reported as ignored where no C++ compiler exists.
//!
//! `harness = false` (libtest-mimic): `cargo test -p suf-cuda --test kernels_on_host`.

mod host_build;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use suf_backend::{Backend, CpuBackend};
use suf_core::prg::Csprng;
use suf_fss::{dcf, dpf};

/// One case (`host_build`'s `one_case`): each table layout's outputs as u64 words (DPF bits
/// widened) written to `o`. Case header (u64 × 16): kind (0 DCF, 1 DPF <, 2 DPF =), n, m, p,
/// party, count, per_key, points, the seven DcfLayout offsets, body bytes (a multiple of 8),
/// then the body and the points.
const DRIVER: &str = r#"
static int one_case(FILE* f, FILE* o) {
    u64 h[16];
    if (fread(h, 8, 16, f) != 16) return 0;
    {
        const u64 kind = h[0], n = h[1], m = h[2], p = h[3], party = h[4], count = h[5];
        const u64 per_key = h[6], total = h[7], blen = h[15];
        std::vector<u64> body(blen / 8 + 4, 0), xs(total + 1, 0);
        if (fread(body.data(), 1, blen, f) != blen) return 3;
        if (fread(xs.data(), 8, total, f) != total) return 3;
        const u8* b = (const u8*)body.data();
        for (int mode = 0; mode < 2; mode++) {
            std::vector<u64> out(total * p + 1, 0);
            std::vector<u8> bits(total + 1, 0);
            if (kind == 0 && p == 1) {
                (mode ? dcf_p1_r32 : dcf_p1_t4)(b, count, n, m, party, h[8], h[9], h[10], h[11],
                    h[12], h[13], h[14], xs.data(), total, per_key, out.data());
            } else if (kind == 0) {
                (mode ? dcf_vec_r32 : dcf_vec_t4)(b, count, n, m, p, party, h[8], h[9], h[10],
                    h[11], h[12], h[13], h[14], xs.data(), total, per_key, out.data());
            } else {
                (mode ? dpf_eval_r32 : dpf_eval_t4)((const uint4*)b, count, n, party, xs.data(),
                    total, per_key, kind == 2, bits.data());
                for (u64 e = 0; e < total; e++) out[e] = bits[e];
            }
            fwrite(out.data(), 8, kind == 0 ? total * p : total, o);
        }
    }
    return 1;
}
"#;

fn mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1 << n) - 1
    }
}

/// `count` thresholds: 0, the largest, then random.
fn alphas(n: u32, count: usize, rng: &mut Csprng) -> Vec<u64> {
    (0..count)
        .map(|i| match i {
            0 => 0,
            1 => mask(n),
            _ => rng.next_u64() & mask(n),
        })
        .collect()
}

/// `t` points per key: around its threshold, random, and bits above n set (ignored).
fn points(n: u32, alphas: &[u64], t: usize, rng: &mut Csprng) -> Vec<u64> {
    let mut xs = Vec::with_capacity(alphas.len() * t);
    for (k, &a) in alphas.iter().enumerate() {
        for j in 0..t {
            xs.push(match (k + j) % 4 {
                0 => a,
                1 => a.wrapping_sub(1) & mask(n),
                2 => a.wrapping_add(1) | !mask(n),
                _ => rng.next_u64(),
            });
        }
    }
    xs
}

struct Case {
    head: [u64; 16],
    body: Vec<u8>,
    xs: Vec<u64>,
    want: Vec<u64>,
    what: String,
}

impl Case {
    fn write(&self, out: &mut Vec<u8>) {
        for v in self.head {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.body);
        for x in &self.xs {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

fn padded(mut b: Vec<u8>) -> Vec<u8> {
    b.resize(b.len().next_multiple_of(8), 0);
    b
}

fn cases() -> Result<Vec<Case>, Failed> {
    let cpu = CpuBackend::new();
    let mut rng = Csprng::for_tests(91);
    let mut out = Vec::new();
    // DCF: scalar payloads, then vectors whose packed values straddle words and blocks (up to
    // the kernel's 16 elements and 8 value blocks per level).
    let shapes: [(u32, u32, usize); 18] = [
        (1, 1, 1),
        (12, 1, 1),
        (13, 37, 1),
        (37, 37, 1),
        (50, 50, 1),
        (64, 64, 1),
        (37, 13, 3),
        (16, 50, 3),
        (37, 43, 3),
        (50, 64, 2),
        (13, 37, 4),
        (20, 33, 4),
        (64, 64, 16),
        (9, 50, 5),
        // Elements starting in the second value block, straddling into its last word, and
        // ending at bit 256.
        (12, 50, 4),
        (25, 61, 4),
        (30, 64, 4),
        (9, 63, 3),
    ];
    for (n, m, p) in shapes {
        for (count, t) in [(0usize, 1usize), (1, 1), (33, 1), (5, 3)] {
            let al = alphas(n, count, &mut rng);
            let betas: Vec<u64> = (0..count * p).map(|_| rng.next_u64()).collect();
            let (k0, k1) = dcf::gen_batch(n, m, p, &al, &betas, &mut rng)?;
            let xs = points(n, &al, t, &mut rng);
            for k in [&k0, &k1] {
                let l = k.layout();
                let mut head = [0u64; 16];
                head[..8].copy_from_slice(&[
                    0,
                    n as u64,
                    m as u64,
                    p as u64,
                    k.party() as u64,
                    count as u64,
                    t as u64,
                    xs.len() as u64,
                ]);
                head[8..15].copy_from_slice(&l.kernel_offsets());
                let body = padded(k.body().to_vec());
                head[15] = body.len() as u64;
                out.push(Case {
                    head,
                    body,
                    xs: xs.clone(),
                    want: cpu.dcf_eval(k, &xs, t)?,
                    what: format!(
                        "dcf n={n} m={m} p={p} count={count} t={t} party {}",
                        k.party()
                    ),
                });
            }
        }
    }
    // DPF comparison (t points per key) and point function (one point per key).
    for n in [1u32, 2, 7, 8, 9, 13, 37, 50, 63, 64] {
        for (count, t) in [(0usize, 1usize), (1, 1), (33, 1), (5, 3)] {
            let al = alphas(n, count, &mut rng);
            let (k0, k1) = dpf::gen_cmp_batch(n, &al, &mut rng)?;
            let xs = points(n, &al, t, &mut rng);
            for k in [&k0, &k1] {
                let h = suf_fss::keyfmt::HEADER_LEN;
                let body = padded(k.to_bytes()[h..].to_vec());
                for eq in [false, true] {
                    if eq && t != 1 {
                        continue;
                    }
                    let want = if eq {
                        cpu.dpf_eq_eval(k, &xs)?
                    } else {
                        cpu.dpf_lt_eval(k, &xs, t)?
                    };
                    let mut head = [0u64; 16];
                    head[..8].copy_from_slice(&[
                        1 + eq as u64,
                        n as u64,
                        1,
                        1,
                        k.party() as u64,
                        count as u64,
                        t as u64,
                        xs.len() as u64,
                    ]);
                    head[15] = body.len() as u64;
                    out.push(Case {
                        head,
                        body: body.clone(),
                        xs: xs.clone(),
                        want: want.into_iter().map(u64::from).collect(),
                        what: format!(
                            "dpf {} n={n} count={count} t={t} party {}",
                            if eq { "=" } else { "<" },
                            k.party()
                        ),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn eval_kernels_on_host() -> Result<Completion, Failed> {
    let Some(cxx) = host_build::cxx() else {
        return Ok(Completion::ignored_with("no C++ compiler (CXX / g++)"));
    };
    let dir = std::env::temp_dir().join(format!("suf-eval-host-{}", std::process::id()));
    let fss = host_build::host_text(include_str!("../kernels/fss.cu"));
    let exe = host_build::build(&cxx, &dir, "eval_host", &[&fss], DRIVER)?;
    let cases = cases()?;
    let mut input = Vec::new();
    for c in &cases {
        c.write(&mut input);
    }
    let (st, got) = host_build::run(&exe, &dir, &input)?;
    if !st.success() {
        return Err(format!("host build of fss.cu exited with {st}").into());
    }
    let got: Vec<u64> = got
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .collect();
    let mut at = 0;
    for c in &cases {
        for table in ["t4", "r32"] {
            let g = got
                .get(at..at + c.want.len())
                .ok_or("the host build wrote too little")?;
            at += c.want.len();
            let diff: Vec<usize> = (0..g.len()).filter(|&i| g[i] != c.want[i]).collect();
            if let Some(&i) = diff.first() {
                return Err(format!(
                    "{} ({table}): {} of {} outputs differ, the first at {i}: kernel {:#x}, CPU {:#x}",
                    c.what,
                    diff.len(),
                    g.len(),
                    g[i],
                    c.want[i]
                )
                .into());
            }
        }
    }
    if at != got.len() {
        return Err(format!("{} output words, expected {at}", got.len()).into());
    }
    Ok(Completion::Completed)
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![Trial::ignorable_test(
        "eval_kernels_on_host",
        eval_kernels_on_host,
    )];
    libtest_mimic::run(&args, trials).exit();
}
