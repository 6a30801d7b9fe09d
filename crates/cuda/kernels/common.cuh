// SUF CUDA kernels: common types and the fixed-key T-table AES.
//
// Compiled at run time by NVRTC (no CUDA headers, no <cstdint>). The Rust side prepends a
// generated prelude that defines:
//   SUF_RK[44]      __constant__ round keys of the fixed key (little-endian column words)
//   SUF_TE0[256]    __device__ T-table TE0 (see crates/cuda/src/aes_tables.rs)
//   SUF_C_LEFT_W0..W3, SUF_C_RIGHT_W*, SUF_C_LEAF_W*, SUF_C_VALUE_W*  the PRG domain constants
//                   of suf_core::prg as four little-endian u32 words each (c_value(j) = base | j).
//
// A 128-bit block is a uint4 {x, y, z, w} = words 0..3 of the u128 (word 0 = bits 0..32),
// i.e. exactly the little-endian bytes that suf_core::prg feeds to AES.

typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned char u8;

// Table modes: 0 = four 1 KB tables TE0..TE3 in shared memory (4 KB per block);
//              1 = TE0 replicated 32 times, one copy per bank (32 KB per block), TE1..TE3 by
//                  rotation; conflict-free lookups at the cost of an address shift and a
//                  funnel shift per lookup.
// Both modes take the S-box of the last round from byte 1 of TE0.
#define SUF_SMEM_T4 4096
#define SUF_SMEM_R32 32768

template <int MODE>
__device__ __forceinline__ void suf_load_tables(u32* sm) {
    if (MODE == 0) {
        for (u32 i = threadIdx.x; i < 1024; i += blockDim.x) {
            u32 k = i >> 8;
            u32 v = SUF_TE0[i & 255];
            sm[i] = k == 0 ? v : __funnelshift_l(v, v, 8 * k);
        }
    } else {
        for (u32 i = threadIdx.x; i < 8192; i += blockDim.x) {
            sm[i] = SUF_TE0[i >> 5];
        }
    }
    __syncthreads();
}

// One lookup of a full round: TE_K[byte K of s]. The byte comes out of s with one byte
// permute (PRMT), which needs neither a shift nor a mask; in mode 1 `base` is sm + lane and
// entry x of TE0 sits at 32x + lane. (Measured on the H200: the permute instead of shift-and-mask
// took the replicated-table AES from 16-20 to 26-29 G blocks/s; bench/results/h200-2026-12-04-s12.)
template <int MODE, int K>
__device__ __forceinline__ u32 suf_te(const u32* base, u32 s) {
    const u32 x = __byte_perm(s, 0u, 0x4440u | K);
    if (MODE == 0) {
        return base[K * 256 + x];
    } else {
        const u32 v = base[x << 5];
        return K == 0 ? v : __funnelshift_l(v, v, 8 * K);
    }
}

// One lookup of the last round: S[byte K of s] (byte 1 of TE0) placed at byte K, zeros
// elsewhere.
template <int MODE, int K>
__device__ __forceinline__ u32 suf_sb(const u32* base, u32 s) {
    const u32 x = __byte_perm(s, 0u, 0x4440u | K);
    const u32 v = MODE == 0 ? base[x] : base[x << 5];
    return __byte_perm(v, 0u, (0x4444u & ~(0xfu << (4 * K))) | (1u << (4 * K)));
}

// AES-128 in place: round keys SUF_RK (the fixed key, constant bank) when CRK, else `rk`
// (44 words, e.g. a seed's keys in shared memory). `sm` holds the tables of MODE.
template <int MODE, bool CRK>
__device__ __forceinline__ void suf_aes_keys(uint4& b, const u32* sm, u32 lane, const u32* rk) {
    const u32* base = MODE == 0 ? sm : sm + lane;
#define SUF_RKW(i) (CRK ? SUF_RK[(i)] : rk[(i)])
    u32 s0 = b.x ^ SUF_RKW(0);
    u32 s1 = b.y ^ SUF_RKW(1);
    u32 s2 = b.z ^ SUF_RKW(2);
    u32 s3 = b.w ^ SUF_RKW(3);
#pragma unroll
    for (int r = 1; r < 10; r++) {
        const u32 t0 = suf_te<MODE, 0>(base, s0) ^ suf_te<MODE, 1>(base, s1) ^
                       suf_te<MODE, 2>(base, s2) ^ suf_te<MODE, 3>(base, s3) ^ SUF_RKW(4 * r + 0);
        const u32 t1 = suf_te<MODE, 0>(base, s1) ^ suf_te<MODE, 1>(base, s2) ^
                       suf_te<MODE, 2>(base, s3) ^ suf_te<MODE, 3>(base, s0) ^ SUF_RKW(4 * r + 1);
        const u32 t2 = suf_te<MODE, 0>(base, s2) ^ suf_te<MODE, 1>(base, s3) ^
                       suf_te<MODE, 2>(base, s0) ^ suf_te<MODE, 3>(base, s1) ^ SUF_RKW(4 * r + 2);
        const u32 t3 = suf_te<MODE, 0>(base, s3) ^ suf_te<MODE, 1>(base, s0) ^
                       suf_te<MODE, 2>(base, s1) ^ suf_te<MODE, 3>(base, s2) ^ SUF_RKW(4 * r + 3);
        s0 = t0;
        s1 = t1;
        s2 = t2;
        s3 = t3;
    }
    b.x = (suf_sb<MODE, 0>(base, s0) | suf_sb<MODE, 1>(base, s1) | suf_sb<MODE, 2>(base, s2) |
           suf_sb<MODE, 3>(base, s3)) ^ SUF_RKW(40);
    b.y = (suf_sb<MODE, 0>(base, s1) | suf_sb<MODE, 1>(base, s2) | suf_sb<MODE, 2>(base, s3) |
           suf_sb<MODE, 3>(base, s0)) ^ SUF_RKW(41);
    b.z = (suf_sb<MODE, 0>(base, s2) | suf_sb<MODE, 1>(base, s3) | suf_sb<MODE, 2>(base, s0) |
           suf_sb<MODE, 3>(base, s1)) ^ SUF_RKW(42);
    b.w = (suf_sb<MODE, 0>(base, s3) | suf_sb<MODE, 1>(base, s0) | suf_sb<MODE, 2>(base, s1) |
           suf_sb<MODE, 3>(base, s2)) ^ SUF_RKW(43);
#undef SUF_RKW
}

// pi(b): AES-128 under the fixed key, in place.
template <int MODE>
__device__ __forceinline__ void suf_aes(uint4& b, const u32* sm, u32 lane) {
    suf_aes_keys<MODE, true>(b, sm, lane, nullptr);
}

__device__ __forceinline__ uint4 suf_xor(uint4 a, uint4 b) {
    return make_uint4(a.x ^ b.x, a.y ^ b.y, a.z ^ b.z, a.w ^ b.w);
}

__device__ __forceinline__ uint4 suf_and(uint4 a, u32 m) {
    return make_uint4(a.x & m, a.y & m, a.z & m, a.w & m);
}

// G_c(s) = pi(s ^ c) ^ s ^ c (MMO), c given as a block.
template <int MODE>
__device__ __forceinline__ uint4 suf_mmo(uint4 s, uint4 c, const u32* sm, u32 lane) {
    uint4 y = suf_xor(s, c);
    uint4 p = y;
    suf_aes<MODE>(p, sm, lane);
    return suf_xor(p, y);
}

__device__ __forceinline__ uint4 suf_c_child(u32 bit) {
    // C_LEFT for bit 0, C_RIGHT for bit 1 (a select, no branch).
    return bit ? make_uint4(SUF_C_RIGHT_W0, SUF_C_RIGHT_W1, SUF_C_RIGHT_W2, SUF_C_RIGHT_W3)
               : make_uint4(SUF_C_LEFT_W0, SUF_C_LEFT_W1, SUF_C_LEFT_W2, SUF_C_LEFT_W3);
}

__device__ __forceinline__ uint4 suf_c_leaf() {
    return make_uint4(SUF_C_LEAF_W0, SUF_C_LEAF_W1, SUF_C_LEAF_W2, SUF_C_LEAF_W3);
}

__device__ __forceinline__ uint4 suf_c_value(u32 j) {
    return make_uint4(SUF_C_VALUE_W0 | j, SUF_C_VALUE_W1, SUF_C_VALUE_W2, SUF_C_VALUE_W3);
}

__device__ __forceinline__ u64 suf_grid_threads() {
    return (u64)gridDim.x * blockDim.x;
}

__device__ __forceinline__ u64 suf_thread_id() {
    return (u64)blockIdx.x * blockDim.x + threadIdx.x;
}
