//! Kernel sources compiled as plain C++ with the host compiler (`CXX`, default `g++`) over
//! stubs of the CUDA built-ins: one thread (blockDim = gridDim = 1) walks every element through
//! the kernels' grid-stride loops. Lets CI, which has no GPU, run the kernels' logic against
//! the CPU implementation (tests/dealer.rs: the keygen kernels; tests/kernels_on_host.rs: the
//! evaluation kernels).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// The CUDA built-ins the kernels use, for a host build.
const HOST_STUB: &str = r#"
#include <cstdio>
#include <cstring>
#include <vector>
#define __device__
#define __global__
#define __forceinline__ inline
#define __constant__
#define __shared__
struct uint4 { unsigned int x, y, z, w; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
struct dim3 { unsigned x, y, z; };
static dim3 threadIdx{0, 0, 0}, blockIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
inline void __syncthreads() {}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)((((((unsigned long long)hi) << 32) | lo) << (s & 31)) >> 32);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const unsigned long long v = ((unsigned long long)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) {
        r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    }
    return r;
}
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline unsigned long long atomicOr(unsigned long long* a, unsigned long long v) {
    unsigned long long o = *a; *a |= v; return o;
}
"#;

/// The driver's `main`: cases read from argv[1] by the test's `static int one_case(FILE* in,
/// FILE* out)` (1: a case done, 0: no case left, 3: a short read), outputs to argv[2].
const HOST_MAIN: &str = r#"
int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* f = fopen(argv[1], "rb");
    FILE* o = fopen(argv[2], "wb");
    if (!f || !o) return 2;
    int r;
    while ((r = one_case(f, o)) == 1) {
    }
    fclose(o);
    return r;
}
"#;

/// The host C++ compiler, or `None` where there is none.
pub fn cxx() -> Option<String> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    std::process::Command::new(&cxx)
        .arg("--version")
        .output()
        .ok()
        .map(|_| cxx)
}

/// A kernel file made host C++: its dynamic shared memory a static array (large enough for
/// the replicated AES table), `extern "C" __global__` plain functions.
pub fn host_text(src: &str) -> String {
    src.replace("extern __shared__ u32 sm[];", "static u32 sm[9000];")
        .replace("extern \"C\" __global__", "extern \"C\"")
}

/// Compile the generated prelude, `common.cuh`, the given kernel texts (already through
/// [`host_text`]), the test's `one_case` and the shared `main` into `dir/name`; the
/// executable's path.
pub fn build(
    cxx: &str,
    dir: &Path,
    name: &str,
    kernels: &[&str],
    one_case: &str,
) -> Result<PathBuf, String> {
    let src = suf_cuda::compile::kernel_source();
    let prelude = src
        .split("// ---- kernels/common.cuh ----")
        .next()
        .ok_or("no prelude")?;
    let common = host_text(include_str!("../../kernels/common.cuh"));
    let mut text = vec![HOST_STUB, prelude, &common];
    text.extend_from_slice(kernels);
    text.push(one_case);
    text.push(HOST_MAIN);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let cpp = dir.join(format!("{name}.cpp"));
    std::fs::write(&cpp, text.concat()).map_err(|e| e.to_string())?;
    let exe = dir.join(name);
    let out = std::process::Command::new(cxx)
        .args(["-std=c++17", "-O1", "-w", "-o"])
        .arg(&exe)
        .arg(&cpp)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("{cxx}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(exe)
}

/// Run a built driver on `input` (its cases) in `dir`, then remove `dir`: the driver's exit
/// status and everything it wrote.
pub fn run(exe: &Path, dir: &Path, input: &[u8]) -> Result<(ExitStatus, Vec<u8>), String> {
    let (cin, cout) = (dir.join("cases.bin"), dir.join("outputs.bin"));
    let res = (|| -> std::io::Result<(ExitStatus, Vec<u8>)> {
        std::fs::write(&cin, input)?;
        let st = std::process::Command::new(exe)
            .arg(&cin)
            .arg(&cout)
            .status()?;
        Ok((st, std::fs::read(&cout).unwrap_or_default()))
    })();
    let _ = std::fs::remove_dir_all(dir);
    res.map_err(|e| e.to_string())
}
