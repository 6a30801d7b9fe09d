// Ring kernels over Z_{2^n} with u64 elements: GEMM and elementwise work.
//
// Everything is computed with wrapping arithmetic mod 2^64 (or mod 2^32 when n <= 32, since
// reduction mod 2^n is a ring homomorphism from either) and masked once at the end, so the
// results equal the CPU backend's bit for bit.

// ---- GEMM --------------------------------------------------------------------------------
//
// C_t = A_t · B_t mod 2^n for t = blockIdx.z / ksplit (+ z0). A is m×k row-major; B is k×n
// row-major (bt = 0) or n×k row-major (bt = 1, B given transposed); C is m×n row-major.
//
// Split-K (ksplit > 1, for grids too small to fill the GPU): block z handles the k range
// [s·kchunk, (s+1)·kchunk) with s = z mod ksplit and adds its unmasked partial product into C
// (zeroed by the host) with a 64-bit atomicAdd. Addition mod 2^64 is associative and
// commutative, so the sum is exact and independent of the order; the host masks C after.
//
// Tiles: 64×64 outputs per block of 256 threads, 4×4 per thread, k in steps of 16 through
// shared memory. The operands are split into 32-bit halves in shared memory; a 64-bit product
// modulo 2^64 is
//     a·b = lo(a)·lo(b) + 2^32·(lo(a)·hi(b) + hi(a)·lo(b))   (mod 2^64),
// so each multiply-add is one 32×32→64 wide multiply-add plus two 32-bit multiply-adds into a
// separate cross accumulator, which is shifted in once at the end. With n <= 32 (WIDE = false)
// only the low halves matter and each multiply-add is a single 32-bit IMAD.

#define GM_BM 64
#define GM_BN 64
#define GM_BK 16
#define GM_PAD 4

template <bool WIDE>
__device__ void gemm_body(const u64* __restrict__ A, const u64* __restrict__ B,
                          u64* __restrict__ C, u32 M, u32 N, u32 K, u32 bt, u64 mask, u32 z0,
                          u32 ksplit, u32 kchunk) {
    __shared__ __align__(16) u32 Alo[GM_BK][GM_BM + GM_PAD];
    __shared__ __align__(16) u32 Blo[GM_BK][GM_BN + GM_PAD];
    __shared__ __align__(16) u32 Ahi[WIDE ? GM_BK : 1][GM_BM + GM_PAD];
    __shared__ __align__(16) u32 Bhi[WIDE ? GM_BK : 1][GM_BN + GM_PAD];

    const u64 z = (u64)(blockIdx.z / ksplit) + z0;
    const u32 kbeg = (blockIdx.z % ksplit) * kchunk;
    const u32 kend = min(K, kbeg + kchunk);
    A += z * (u64)M * K;
    B += z * (u64)K * N;
    C += z * (u64)M * N;
    const u32 tid = threadIdx.x;
    const u32 tx = tid & 15;
    const u32 ty = tid >> 4;
    const u32 row0 = blockIdx.y * GM_BM;
    const u32 col0 = blockIdx.x * GM_BN;

    u64 accw[4][4];
    u32 accx[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            accw[i][j] = 0;
            accx[i][j] = 0;
        }
    }

    for (u32 k0 = kbeg; k0 < kend; k0 += GM_BK) {
        // A tile: 64 rows × 16 k; consecutive threads read consecutive k of one row.
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const u32 idx = tid + q * 256;
            const u32 r = idx >> 4;
            const u32 kk = idx & 15;
            const u32 gr = row0 + r;
            const u32 gk = k0 + kk;
            const u64 v = (gr < M && gk < kend) ? A[(u64)gr * K + gk] : 0ull;
            Alo[kk][r] = (u32)v;
            if (WIDE) Ahi[kk][r] = (u32)(v >> 32);
        }
        // B tile: 16 k × 64 columns.
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const u32 idx = tid + q * 256;
            u32 c, kk;
            u64 v;
            if (bt) {
                c = idx >> 4;
                kk = idx & 15;
                const u32 gc = col0 + c;
                const u32 gk = k0 + kk;
                v = (gc < N && gk < kend) ? B[(u64)gc * K + gk] : 0ull;
            } else {
                kk = idx >> 6;
                c = idx & 63;
                const u32 gc = col0 + c;
                const u32 gk = k0 + kk;
                v = (gc < N && gk < kend) ? B[(u64)gk * N + gc] : 0ull;
            }
            Blo[kk][c] = (u32)v;
            if (WIDE) Bhi[kk][c] = (u32)(v >> 32);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GM_BK; kk++) {
            const uint4 al = *(const uint4*)&Alo[kk][ty * 4];
            const uint4 bl = *(const uint4*)&Blo[kk][tx * 4];
            const u32 a_lo[4] = {al.x, al.y, al.z, al.w};
            const u32 b_lo[4] = {bl.x, bl.y, bl.z, bl.w};
            if (WIDE) {
                const uint4 ah = *(const uint4*)&Ahi[kk][ty * 4];
                const uint4 bh = *(const uint4*)&Bhi[kk][tx * 4];
                const u32 a_hi[4] = {ah.x, ah.y, ah.z, ah.w};
                const u32 b_hi[4] = {bh.x, bh.y, bh.z, bh.w};
#pragma unroll
                for (int i = 0; i < 4; i++) {
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        accw[i][j] += (u64)a_lo[i] * (u64)b_lo[j];
                        accx[i][j] += a_lo[i] * b_hi[j] + a_hi[i] * b_lo[j];
                    }
                }
            } else {
#pragma unroll
                for (int i = 0; i < 4; i++) {
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        accx[i][j] += a_lo[i] * b_lo[j];
                    }
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        const u32 r = row0 + ty * 4 + i;
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const u32 c = col0 + tx * 4 + j;
            if (c >= N) continue;
            const u64 v = WIDE ? accw[i][j] + ((u64)accx[i][j] << 32) : (u64)accx[i][j];
            if (ksplit == 1) {
                C[(u64)r * N + c] = v & mask;
            } else {
                atomicAdd(&C[(u64)r * N + c], v);
            }
        }
    }
}

// Two register budgets per width: `gemm_*` lets ptxas use up to 255 registers (one block of
// 256 threads per SM for u64), `gemm_*_b2` caps it at 128 so that two blocks share an SM.
#define GEMM_PARAMS                                                                            \
    const u64 *A, const u64 *B, u64 *C, u32 M, u32 N, u32 K, u32 bt, u64 mask, u32 z0,         \
        u32 ksplit, u32 kchunk
#define GEMM_ARGS A, B, C, M, N, K, bt, mask, z0, ksplit, kchunk

extern "C" __global__ void __launch_bounds__(256, 1) gemm_u64(GEMM_PARAMS) {
    gemm_body<true>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(256, 2) gemm_u64_b2(GEMM_PARAMS) {
    gemm_body<true>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(256, 1) gemm_u32(GEMM_PARAMS) {
    gemm_body<false>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(256, 2) gemm_u32_b2(GEMM_PARAMS) {
    gemm_body<false>(GEMM_ARGS);
}

// ---- elementwise -------------------------------------------------------------------------
//
// out[i] = op(a[i], b[...], c) & mask, grid-stride. `blen` is the broadcast row length
// (ADD_BCAST / MUL_BCAST: b[i % blen]) or the column count (MUL_ROWS: b[i / blen]).

#define EW_ADD 0
#define EW_SUB 1
#define EW_MUL 2
#define EW_NEG 3
#define EW_SCALE 4
#define EW_ADD_CONST 5
#define EW_REDUCE 6
#define EW_ADD_BCAST 7
#define EW_MUL_BCAST 8
#define EW_MUL_ROWS 9

extern "C" __global__ void ew_u64(u32 op, const u64* __restrict__ a, const u64* __restrict__ b,
                                  u64* out, u64 len, u64 blen, u64 c, u64 mask) {
    for (u64 i = suf_thread_id(); i < len; i += suf_grid_threads()) {
        const u64 x = a[i];
        u64 r;
        switch (op) {
            case EW_ADD: r = x + b[i]; break;
            case EW_SUB: r = x - b[i]; break;
            case EW_MUL: r = x * b[i]; break;
            case EW_NEG: r = 0ull - x; break;
            case EW_SCALE: r = x * c; break;
            case EW_ADD_CONST: r = x + c; break;
            case EW_ADD_BCAST: r = x + b[i % blen]; break;
            case EW_MUL_BCAST: r = x * b[i % blen]; break;
            case EW_MUL_ROWS: r = x * b[i / blen]; break;
            default: r = x; break;
        }
        out[i] = r & mask;
    }
}

// c[i] &= mask (after a split-K GEMM).
extern "C" __global__ void mask_u64(u64* c, u64 len, u64 mask) {
    for (u64 i = suf_thread_id(); i < len; i += suf_grid_threads()) c[i] &= mask;
}

// out[row] = sum_j a[row·cols + j] mod 2^n; one warp per row (wrapping sums are associative,
// so the tree order gives the CPU's result exactly).
extern "C" __global__ void row_sum_u64(const u64* __restrict__ a, u64* __restrict__ out,
                                       u64 rows, u64 cols, u64 mask) {
    const u64 warp = suf_thread_id() >> 5;
    const u64 warps = suf_grid_threads() >> 5;
    const u32 lane = threadIdx.x & 31;
    for (u64 r = warp; r < rows; r += warps) {
        u64 s = 0;
        const u64* row = a + r * cols;
        for (u64 j = lane; j < cols; j += 32) s += row[j];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) out[r] = s & mask;
    }
}
