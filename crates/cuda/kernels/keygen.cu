// Dealer kernels: DCF key generation (suf_fss::dcf::gen_batch, seeded as suf_fss::dealer),
// writing both parties' key format v2 bodies in device memory, byte for byte what the CPU
// dealer writes for the same batch seed.
//
// One thread per key (grid-stride). Per level, the thread expands both parties' seeds in
// both directions: 2 parties x 2 directions x (1 child block + B value blocks) MMO calls, all
// under the fixed key; the roots come from AES-128 under the *batch seed* (counter blocks 2k
// and 2k + 1), whose round keys the host expands and passes in `rk_seed` (44 words).
//
// Body offsets are suf_fss::dcf::DcfLayout's, passed as arguments (never re-derived here):
//   seed (both bodies: the party's own root), scw, tcw_l, tcw_r (plain stores), vcw / fcw
//   (m-bit values bit-packed LSB first at bit (k*p + q)*m of their region: neighbouring keys
//   share words, so they are OR-ed in with 64-bit atomics into zeroed bodies).
// Requirements the host checks: both bodies zeroed, 16-aligned, with round_up_8(total)
// writable bytes (a packed value's second word may reach up to 7 bytes past the fcw region;
// only zero bits are OR-ed there); p <= KG_MAX_P and ceil(p*m/128) <= KG_MAX_B.

#define KG_MAX_P 8
#define KG_MAX_B 8

// AES-128 under round keys `rk` (shared memory), four T-tables in shared memory (mode 0).
__device__ __forceinline__ void kg_aes_rk(uint4& b, const u32* rk, const u32* sm) {
    suf_aes_keys<0, false>(b, sm, 0, rk);
}

// OR the m-bit value v (already reduced to m bits) in at bit `bit` of the word array w.
__device__ __forceinline__ void kg_put_bits(u64* w, u64 bit, u32 m, u64 v) {
    const u64 wi = bit >> 6;
    const u32 sh = (u32)(bit & 63);
    atomicOr(&w[wi], v << sh);
    if (sh + m > 64) {
        // sh > 0 here (m <= 64), so the shift is in 1..63.
        atomicOr(&w[wi + 1], v >> (64 - sh));
    }
}

// Element q (64 bits from bit q*m; only the low m bits matter) of a level's values, from
// the value blocks in W (4 words per block, two zero words behind the last).
__device__ __forceinline__ u64 kg_value(const u32* W, u32 q, u32 m) {
    const u32 off = q * m;
    const u32 wi = off >> 5;
    const u32 sh = off & 31;
    const u64 lo = (u64)W[wi] | ((u64)W[wi + 1] << 32);
    return sh == 0 ? lo : (lo >> sh) | ((u64)W[wi + 2] << (64 - sh));
}

extern "C" __global__ void dcf_gen_t4(const u32* rk_seed, const u64* alphas, const u64* betas,
                                      u64 count, u32 n, u32 m, u32 p, u64 o_seed, u64 o_scw,
                                      u64 o_tcw_l, u64 o_tcw_r, u64 o_vcw, u64 vcw_stride,
                                      u64 o_fcw, u8* body0, u8* body1) {
    extern __shared__ u32 sm[];
    suf_load_tables<0>(sm);
    u32* rk = sm + 1024;
    for (u32 i = threadIdx.x; i < 44; i += blockDim.x) {
        rk[i] = rk_seed[i];
    }
    __syncthreads();
    const u32 nb = (p * m + 127) / 128;
    const u64 mm = m >= 64 ? ~0ull : ((1ull << m) - 1);
    u32 W[4][4 * KG_MAX_B + 2];
    u64 va[KG_MAX_P];
    u8* bodies[2] = {body0, body1};
    for (u64 k = suf_thread_id(); k < count; k += suf_grid_threads()) {
        // Roots: counter blocks 2k, 2k + 1 under the batch seed (u128 LE counters).
        uint4 s[2];
        const u64 c0 = 2 * k;
        s[0] = make_uint4((u32)c0, (u32)(c0 >> 32), 0u, 0u);
        s[1] = make_uint4((u32)(c0 + 1), (u32)((c0 + 1) >> 32), 0u, 0u);
        kg_aes_rk(s[0], rk, sm);
        kg_aes_rk(s[1], rk, sm);
        ((uint4*)(body0 + o_seed))[k] = s[0];
        ((uint4*)(body1 + o_seed))[k] = s[1];
        u32 t[2] = {0u, 1u};
        const u64 alpha = alphas[k];
        for (u32 q = 0; q < p; q++) va[q] = 0;
        u64 tcl_all = 0, tcr_all = 0;
        for (u32 i = 0; i < n; i++) {
            const u32 a = (u32)(alpha >> (n - 1 - i)) & 1u;
            const u32 keep = a, lose = 1u - a;
            uint4 child[2][2];
            // W[b*2 + d]: the value blocks of party b in direction d.
            for (u32 b = 0; b < 2; b++) {
                for (u32 d = 0; d < 2; d++) {
                    child[b][d] = suf_mmo<0>(s[b], suf_c_child(d), sm, 0);
                    for (u32 j = 0; j < nb; j++) {
                        const uint4 w = suf_mmo<0>(s[b], suf_c_value(2 * j + d), sm, 0);
                        W[b * 2 + d][4 * j] = w.x;
                        W[b * 2 + d][4 * j + 1] = w.y;
                        W[b * 2 + d][4 * j + 2] = w.z;
                        W[b * 2 + d][4 * j + 3] = w.w;
                    }
                    W[b * 2 + d][4 * nb] = 0;
                    W[b * 2 + d][4 * nb + 1] = 0;
                }
            }
            const uint4 sl = suf_xor(child[0][lose], child[1][lose]);
            const uint4 scw = make_uint4(sl.x & ~1u, sl.y, sl.z, sl.w);
            const u32 tcl = (child[0][0].x ^ child[1][0].x ^ a ^ 1u) & 1u;
            const u32 tcr = (child[0][1].x ^ child[1][1].x ^ a) & 1u;
            const u64 neg = 0ull - (u64)t[1];
            const u64 am = 0ull - (u64)a;
            const u64 vbit = 8 * (o_vcw + (u64)i * vcw_stride) + k * (u64)p * m;
            for (u32 q = 0; q < p; q++) {
                const u64 v0l = kg_value(W[lose], q, m);
                const u64 v1l = kg_value(W[2 + lose], q, m);
                const u64 v0k = kg_value(W[keep], q, m);
                const u64 v1k = kg_value(W[2 + keep], q, m);
                const u64 beta = betas[k * p + q];
                const u64 x = v1l - v0l - va[q];
                const u64 cw = (((x ^ neg) - neg) + (am & ((beta ^ neg) - neg))) & mm;
                va[q] = va[q] - v1k + v0k + ((cw ^ neg) - neg);
                kg_put_bits((u64*)body0, vbit + (u64)q * m, m, cw);
                kg_put_bits((u64*)body1, vbit + (u64)q * m, m, cw);
            }
            ((uint4*)(body0 + o_scw))[(u64)i * count + k] = scw;
            ((uint4*)(body1 + o_scw))[(u64)i * count + k] = scw;
            tcl_all |= (u64)tcl << i;
            tcr_all |= (u64)tcr << i;
            const u32 tck = keep ? tcr : tcl;
            for (u32 b = 0; b < 2; b++) {
                const uint4 y = child[b][keep];
                const u32 tm = 0u - t[b];
                s[b] = make_uint4((y.x & ~1u) ^ (tm & scw.x), y.y ^ (tm & scw.y),
                                  y.z ^ (tm & scw.z), y.w ^ (tm & scw.w));
                t[b] = (y.x & 1u) ^ (t[b] & tck);
            }
        }
        for (u32 b = 0; b < 2; b++) {
            ((u64*)(bodies[b] + o_tcw_l))[k] = tcl_all;
            ((u64*)(bodies[b] + o_tcw_r))[k] = tcr_all;
        }
        const u64 neg = 0ull - (u64)t[1];
        const u64 fbit = 8 * o_fcw + k * (u64)p * m;
        for (u32 q = 0; q < p; q++) {
            const u64 f = 0ull - va[q];
            const u64 fc = ((f ^ neg) - neg) & mm;
            kg_put_bits((u64*)body0, fbit + (u64)q * m, m, fc);
            kg_put_bits((u64*)body1, fbit + (u64)q * m, m, fc);
        }
    }
}

// ---- DPF comparison keys (suf_fss::dpf::gen_cmp_batch, seeded as suf_fss::dealer) ---------
//
// Body (suf_fss::dpf module docs), d = n - min(7, n) levels, nb = ceil(d / 8):
//   root[count] | scw[d][count] (level-major; bit 0 = left control correction) |
//   leaf_cw[count] | tcw_R bytes[count][nb]
// Roots: counter blocks 2k, 2k + 1 under the batch seed with bit 0 cleared. Each thread
// writes only its own key's fields (byte stores for the tcw_R bytes), so no atomics; both
// bodies are written whole (party b's root in body b, everything else in both).

extern "C" __global__ void dpf_gen_t4(const u32* rk_seed, const u64* alphas, u64 count, u32 n,
                                      u8* body0, u8* body1) {
    extern __shared__ u32 sm[];
    suf_load_tables<0>(sm);
    u32* rk = sm + 1024;
    for (u32 i = threadIdx.x; i < 44; i += blockDim.x) {
        rk[i] = rk_seed[i];
    }
    __syncthreads();
    const u32 nu = n < 7 ? n : 7;
    const u32 d = n - nu;
    const u32 nb = (d + 7) / 8;
    const uint4 cl = suf_c_child(0);
    const uint4 cr = suf_c_child(1);
    for (u64 k = suf_thread_id(); k < count; k += suf_grid_threads()) {
        uint4 s0 = make_uint4((u32)(2 * k), (u32)((2 * k) >> 32), 0u, 0u);
        uint4 s1 = make_uint4((u32)(2 * k + 1), (u32)((2 * k + 1) >> 32), 0u, 0u);
        kg_aes_rk(s0, rk, sm);
        kg_aes_rk(s1, rk, sm);
        s0.x &= ~1u;
        s1.x &= ~1u;
        ((uint4*)body0)[k] = s0;
        ((uint4*)body1)[k] = s1;
        u32 t0 = 0u, t1 = 1u;
        const u64 alpha = alphas[k];
        u64 tr = 0;
        for (u32 l = 0; l < d; l++) {
            const u32 a = (u32)(alpha >> (n - 1 - l)) & 1u;
            const uint4 gl0 = suf_mmo<0>(s0, cl, sm, 0);
            const uint4 gr0 = suf_mmo<0>(s0, cr, sm, 0);
            const uint4 gl1 = suf_mmo<0>(s1, cl, sm, 0);
            const uint4 gr1 = suf_mmo<0>(s1, cr, sm, 0);
            const uint4 lose0 = a ? gl0 : gr0;
            const uint4 lose1 = a ? gl1 : gr1;
            const uint4 keep0 = a ? gr0 : gl0;
            const uint4 keep1 = a ? gr1 : gl1;
            const uint4 lx = suf_xor(lose0, lose1);
            const uint4 sc = make_uint4(lx.x & ~1u, lx.y, lx.z, lx.w);
            const u32 tl = ((gl0.x ^ gl1.x) & 1u) ^ a ^ 1u;
            const u32 trb = ((gr0.x ^ gr1.x) & 1u) ^ a;
            const u32 tkeep = a ? trb : tl;
            const uint4 e = make_uint4(sc.x | tkeep, sc.y, sc.z, sc.w);
            const uint4 c0 = suf_xor(keep0, suf_and(e, 0u - t0));
            const uint4 c1 = suf_xor(keep1, suf_and(e, 0u - t1));
            s0 = make_uint4(c0.x & ~1u, c0.y, c0.z, c0.w);
            t0 = c0.x & 1u;
            s1 = make_uint4(c1.x & ~1u, c1.y, c1.z, c1.w);
            t1 = c1.x & 1u;
            const uint4 w = make_uint4(sc.x | tl, sc.y, sc.z, sc.w);
            ((uint4*)body0)[count + (u64)l * count + k] = w;
            ((uint4*)body1)[count + (u64)l * count + k] = w;
            tr |= (u64)trb << l;
        }
        const uint4 L0 = suf_mmo<0>(s0, suf_c_leaf(), sm, 0);
        const uint4 L1 = suf_mmo<0>(s1, suf_c_leaf(), sm, 0);
        const u32 low = (u32)(alpha & ((1ull << nu) - 1));
        uint4 lc = suf_xor(L0, L1);
        const u32 bit = 1u << (low & 31);
        lc.x ^= (low >> 5) == 0 ? bit : 0u;
        lc.y ^= (low >> 5) == 1 ? bit : 0u;
        lc.z ^= (low >> 5) == 2 ? bit : 0u;
        lc.w ^= (low >> 5) == 3 ? bit : 0u;
        ((uint4*)body0)[count * (1 + (u64)d) + k] = lc;
        ((uint4*)body1)[count * (1 + (u64)d) + k] = lc;
        u8* tb0 = body0 + 16 * count * (2 + (u64)d) + k * nb;
        u8* tb1 = body1 + 16 * count * (2 + (u64)d) + k * nb;
        for (u32 j = 0; j < nb; j++) {
            tb0[j] = (u8)(tr >> (8 * j));
            tb1[j] = (u8)(tr >> (8 * j));
        }
    }
}

// Dealer shares from a seed (party 1's key parts): out[e] = low 64 bits of AES-128 under the
// seed (round keys rk_in, expanded on the host) of the counter block e (u128 LE), & mask —
// exactly suf_core::prg::Csprng::from_seed(seed).fill_masked(mask).
extern "C" __global__ void share_ctr(const u32* rk_in, u64 cnt, u64 mask, u64* __restrict__ out) {
    extern __shared__ u32 sm[];
    suf_load_tables<0>(sm);
    u32* rk = sm + 1024;
    for (u32 i = threadIdx.x; i < 44; i += blockDim.x) {
        rk[i] = rk_in[i];
    }
    __syncthreads();
    for (u64 e = suf_thread_id(); e < cnt; e += suf_grid_threads()) {
        uint4 b = make_uint4((u32)e, (u32)(e >> 32), 0u, 0u);
        kg_aes_rk(b, rk, sm);
        out[e] = ((u64)b.x | ((u64)b.y << 32)) & mask;
    }
}
