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
//                  rotation; conflict-free lookups at the cost of an address multiply and a
//                  funnel shift per lookup.
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

template <int MODE, int K>
__device__ __forceinline__ u32 suf_t(const u32* sm, u32 x, u32 lane) {
    x &= 0xffu;
    if (MODE == 0) {
        return sm[K * 256 + x];
    } else {
        u32 v = sm[(x << 5) | lane];
        return K == 0 ? v : __funnelshift_l(v, v, 8 * K);
    }
}

// pi(b): AES-128 under the fixed key, in place.
template <int MODE>
__device__ __forceinline__ void suf_aes(uint4& b, const u32* sm, u32 lane) {
    u32 s0 = b.x ^ SUF_RK[0];
    u32 s1 = b.y ^ SUF_RK[1];
    u32 s2 = b.z ^ SUF_RK[2];
    u32 s3 = b.w ^ SUF_RK[3];
#pragma unroll
    for (int r = 1; r < 10; r++) {
        u32 t0 = suf_t<MODE, 0>(sm, s0, lane) ^ suf_t<MODE, 1>(sm, s1 >> 8, lane) ^
                 suf_t<MODE, 2>(sm, s2 >> 16, lane) ^ suf_t<MODE, 3>(sm, s3 >> 24, lane) ^
                 SUF_RK[4 * r + 0];
        u32 t1 = suf_t<MODE, 0>(sm, s1, lane) ^ suf_t<MODE, 1>(sm, s2 >> 8, lane) ^
                 suf_t<MODE, 2>(sm, s3 >> 16, lane) ^ suf_t<MODE, 3>(sm, s0 >> 24, lane) ^
                 SUF_RK[4 * r + 1];
        u32 t2 = suf_t<MODE, 0>(sm, s2, lane) ^ suf_t<MODE, 1>(sm, s3 >> 8, lane) ^
                 suf_t<MODE, 2>(sm, s0 >> 16, lane) ^ suf_t<MODE, 3>(sm, s1 >> 24, lane) ^
                 SUF_RK[4 * r + 2];
        u32 t3 = suf_t<MODE, 0>(sm, s3, lane) ^ suf_t<MODE, 1>(sm, s0 >> 8, lane) ^
                 suf_t<MODE, 2>(sm, s1 >> 16, lane) ^ suf_t<MODE, 3>(sm, s2 >> 24, lane) ^
                 SUF_RK[4 * r + 3];
        s0 = t0;
        s1 = t1;
        s2 = t2;
        s3 = t3;
    }
    // Last round: S-box bytes taken from the rotated tables (byte 0 of TE2, 1 of TE3,
    // 2 of TE0, 3 of TE1).
    b.x = ((suf_t<MODE, 2>(sm, s0, lane) & 0xffu) | (suf_t<MODE, 3>(sm, s1 >> 8, lane) & 0xff00u) |
           (suf_t<MODE, 0>(sm, s2 >> 16, lane) & 0xff0000u) |
           (suf_t<MODE, 1>(sm, s3 >> 24, lane) & 0xff000000u)) ^
          SUF_RK[40];
    b.y = ((suf_t<MODE, 2>(sm, s1, lane) & 0xffu) | (suf_t<MODE, 3>(sm, s2 >> 8, lane) & 0xff00u) |
           (suf_t<MODE, 0>(sm, s3 >> 16, lane) & 0xff0000u) |
           (suf_t<MODE, 1>(sm, s0 >> 24, lane) & 0xff000000u)) ^
          SUF_RK[41];
    b.z = ((suf_t<MODE, 2>(sm, s2, lane) & 0xffu) | (suf_t<MODE, 3>(sm, s3 >> 8, lane) & 0xff00u) |
           (suf_t<MODE, 0>(sm, s0 >> 16, lane) & 0xff0000u) |
           (suf_t<MODE, 1>(sm, s1 >> 24, lane) & 0xff000000u)) ^
          SUF_RK[42];
    b.w = ((suf_t<MODE, 2>(sm, s3, lane) & 0xffu) | (suf_t<MODE, 3>(sm, s0 >> 8, lane) & 0xff00u) |
           (suf_t<MODE, 0>(sm, s1 >> 16, lane) & 0xff0000u) |
           (suf_t<MODE, 1>(sm, s2 >> 24, lane) & 0xff000000u)) ^
          SUF_RK[43];
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
