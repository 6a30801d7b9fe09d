// FSS evaluation kernels: AES check/bench, DPF comparison (and point function), DCF (scalar and
// vector payloads, key format version 2 read in place).
// Every kernel mirrors the CPU code of crates/fss (dpf.rs, dcf.rs) bit for bit; see the module
// documentation there for the construction. One thread per (key, point) element, grid-stride.
//
// Key bodies are the serialized bodies of suf_fss::keyfmt (the header stripped), read where
// they lie (a resident key stream, or a standalone upload): per-level fields are level-major,
// so at each level the 32 threads of a warp (32 consecutive keys) read 32 consecutive 16-byte
// correction words (one 512-byte burst).

// ---- AES ---------------------------------------------------------------------------------

// out[i] = pi(in[i]) (the bare permutation, for tests against FixedKeyAes::permute).
template <int MODE>
__device__ void aes_ecb_body(const uint4* __restrict__ in, uint4* __restrict__ out, u64 len) {
    extern __shared__ u32 sm[];
    suf_load_tables<MODE>(sm);
    u32 lane = threadIdx.x & 31;
    for (u64 i = suf_thread_id(); i < len; i += suf_grid_threads()) {
        uint4 b = in[i];
        suf_aes<MODE>(b, sm, lane);
        out[i] = b;
    }
}

extern "C" __global__ void aes_ecb_t4(const uint4* in, uint4* out, u64 len) {
    aes_ecb_body<0>(in, out, len);
}
extern "C" __global__ void aes_ecb_r32(const uint4* in, uint4* out, u64 len) {
    aes_ecb_body<1>(in, out, len);
}

// Throughput probe: every thread runs 4 independent chains of `iters` AES calls (4·iters
// blocks per thread) and XORs the chain ends into out[thread], so nothing is optimized away.
template <int MODE>
__device__ void aes_bench_body(u64 seed, u32 iters, uint4* __restrict__ out) {
    extern __shared__ u32 sm[];
    suf_load_tables<MODE>(sm);
    u32 lane = threadIdx.x & 31;
    u64 id = suf_thread_id();
    uint4 a = make_uint4((u32)id, (u32)(id >> 32), (u32)seed, (u32)(seed >> 32));
    uint4 b = make_uint4(a.x ^ 0x9e3779b9u, a.y, a.z, a.w);
    uint4 c = make_uint4(a.x ^ 0x7f4a7c15u, a.y, a.z, a.w);
    uint4 d = make_uint4(a.x ^ 0x85ebca6bu, a.y, a.z, a.w);
    for (u32 i = 0; i < iters; i++) {
        suf_aes<MODE>(a, sm, lane);
        suf_aes<MODE>(b, sm, lane);
        suf_aes<MODE>(c, sm, lane);
        suf_aes<MODE>(d, sm, lane);
    }
    out[id] = suf_xor(suf_xor(a, b), suf_xor(c, d));
}

extern "C" __global__ void aes_bench_t4(u64 seed, u32 iters, uint4* out) {
    aes_bench_body<0>(seed, iters, out);
}
extern "C" __global__ void aes_bench_r32(u64 seed, u32 iters, uint4* out) {
    aes_bench_body<1>(seed, iters, out);
}

// ---- DPF comparison / point function (suf_fss::dpf) --------------------------------------
//
// body: root[count] | scw[d][count] | leaf_cw[count] | tcw_R bytes[count][nb]  (nb = ceil(d/8))
// Element e uses key e / per_key at point xs[e] mod 2^n; out[e] is the party's XOR share of
// 1[x < alpha] (eq = 0) or 1[x = alpha] (eq = 1).

template <int MODE>
__device__ void dpf_body(const uint4* __restrict__ body, u64 count, u32 n, u32 party,
                         const u64* __restrict__ xs, u64 total, u64 per_key, u32 eq,
                         u8* __restrict__ out) {
    extern __shared__ u32 sm[];
    suf_load_tables<MODE>(sm);
    const u32 lane = threadIdx.x & 31;
    const u32 nu = n < 7 ? n : 7;
    const u32 d = n - nu;
    const u32 nb = (d + 7) / 8;
    const u64 dmask = n >= 64 ? ~0ull : ((1ull << n) - 1);
    const uint4* scw = body + count;
    const uint4* leaf_cw = body + count * (1 + (u64)d);
    const u8* tcw = (const u8*)(body + count * (2 + (u64)d));
    for (u64 e = suf_thread_id(); e < total; e += suf_grid_threads()) {
        const u64 k = per_key == 1 ? e : e / per_key;
        const u64 x = xs[e] & dmask;
        uint4 s = body[k];
        u32 t = party;
        u32 acc = 0;
        u64 tr = 0;
        for (u32 j = 0; j < nb; j++) {
            tr |= (u64)tcw[k * nb + j] << (8 * j);
        }
        for (u32 l = 0; l < d; l++) {
            const u32 b = (u32)(x >> (n - 1 - l)) & 1u;
            const uint4 cw = scw[(u64)l * count + k];
            uint4 g = suf_mmo<MODE>(s, suf_c_child(b), sm, lane);
            const u32 tl = cw.x & 1u;
            const u32 trb = (u32)(tr >> l) & 1u;
            const u32 tcw_b = b ? trb : tl;
            uint4 ew = make_uint4((cw.x & ~1u) | tcw_b, cw.y, cw.z, cw.w);
            g = suf_xor(g, suf_and(ew, 0u - t));
            const u32 nt = g.x & 1u;
            acc ^= (b ^ 1u) & (t ^ nt);
            t = nt;
            s = make_uint4(g.x & ~1u, g.y, g.z, g.w);
        }
        uint4 L = suf_mmo<MODE>(s, suf_c_leaf(), sm, lane);
        L = suf_xor(L, suf_and(leaf_cw[k], 0u - t));
        const u64 lo = (u64)L.x | ((u64)L.y << 32);
        const u64 hi = (u64)L.z | ((u64)L.w << 32);
        const u32 low = (u32)(x & ((1ull << nu) - 1));
        u32 r;
        if (eq) {
            r = low < 64 ? (u32)(lo >> low) & 1u : (u32)(hi >> (low - 64)) & 1u;
        } else {
            // Parity of the leaf bits strictly above x_low.
            const u32 sh = low + 1;
            u32 pc;
            if (sh < 64) {
                pc = __popcll(lo >> sh) + __popcll(hi);
            } else if (sh < 128) {
                pc = __popcll(hi >> (sh - 64));
            } else {
                pc = 0;
            }
            r = (acc ^ pc) & 1u;
        }
        out[e] = (u8)r;
    }
}

extern "C" __global__ void dpf_eval_t4(const uint4* body, u64 count, u32 n, u32 party,
                                       const u64* xs, u64 total, u64 per_key, u32 eq, u8* out) {
    dpf_body<0>(body, count, n, party, xs, total, per_key, eq, out);
}
extern "C" __global__ void dpf_eval_r32(const uint4* body, u64 count, u32 n, u32 party,
                                        const u64* xs, u64 total, u64 per_key, u32 eq, u8* out) {
    dpf_body<1>(body, count, n, party, xs, total, per_key, eq, out);
}

// ---- DCF, key format version 2 (suf_fss::dcf) ---------------------------------------------
//
// The body is read in place. Its layout is described in ONE place, suf_fss::dcf::DcfLayout;
// the host passes that layout's byte offsets as kernel arguments (o_seed, o_scw, o_tcw_l,
// o_tcw_r, o_vcw, vcw_stride, o_fcw) and nothing here re-derives them:
//   seed   key k at o_seed + 16k (u128 LE)
//   scw    (level i, key k) at o_scw + 16(i·count + k); bit 0 is masked here
//   tcw    key k at o_tcw_l + 8k / o_tcw_r + 8k (u64 LE, bit i = level i)
//   vcw    level i at o_vcw + i·vcw_stride: count·p values packed at m bits, (k, j) at bit
//          (k·p + j)·m (LSB first)
//   fcw    at o_fcw, packed the same way
// Requirements the host checks before a launch: `body` 16-byte aligned, every offset a
// multiple of 16, and at least round_up_8(total) readable bytes from `body` (a packed value's
// second 8-byte word may extend up to 7 bytes past the fcw region; those bits are masked off).

// The m-bit value at bit offset `bit` of the 8-byte aligned stream `w` (m <= 64), masked
// to m bits by the caller: one aligned load, two when the value straddles a word.
__device__ __forceinline__ u64 suf_bits(const u64* __restrict__ w, u64 bit, u32 m) {
    const u64 wi = bit >> 6;
    const u32 sh = (u32)(bit & 63);
    u64 v = w[wi] >> sh;
    if (sh + m > 64) {
        v |= w[wi + 1] << (64 - sh);
    }
    return v;
}

// ---- DCF with one payload element (p = 1, any m) ----------------------------------------
//
// Element e uses key e / per_key at xs[e] mod 2^n; out[e] is the party's additive share in
// Z_{2^m}. Two independent AES calls per level (child block and value block), both on the
// parent seed.

template <int MODE>
__device__ void dcf_p1_body(const u8* __restrict__ body, u64 count, u32 n, u32 m, u32 party,
                            u64 o_seed, u64 o_scw, u64 o_tcw_l, u64 o_tcw_r, u64 o_vcw,
                            u64 vcw_stride, u64 o_fcw, const u64* __restrict__ xs, u64 total,
                            u64 per_key, u64* __restrict__ out) {
    extern __shared__ u32 sm[];
    suf_load_tables<MODE>(sm);
    const u32 lane = threadIdx.x & 31;
    const u64 dmask = n >= 64 ? ~0ull : ((1ull << n) - 1);
    const u64 mm = m >= 64 ? ~0ull : ((1ull << m) - 1);
    const uint4* seed = (const uint4*)(body + o_seed);
    const uint4* scw = (const uint4*)(body + o_scw);
    const u64* tcw_l = (const u64*)(body + o_tcw_l);
    const u64* tcw_r = (const u64*)(body + o_tcw_r);
    const u64* fcw = (const u64*)(body + o_fcw);
    const u64 neg = 0ull - (u64)party;
    for (u64 e = suf_thread_id(); e < total; e += suf_grid_threads()) {
        const u64 k = per_key == 1 ? e : e / per_key;
        const u64 x = xs[e] & dmask;
        uint4 s = seed[k];
        u32 t = party;
        u64 acc = 0;
        const u64 tl = tcw_l[k];
        const u64 trr = tcw_r[k];
        for (u32 i = 0; i < n; i++) {
            const u32 dbit = (u32)(x >> (n - 1 - i)) & 1u;
            const uint4 cw = scw[(u64)i * count + k];
            const u64* vl = (const u64*)(body + o_vcw + (u64)i * vcw_stride);
            const u64 vc = suf_bits(vl, k * m, m);
            uint4 y = suf_mmo<MODE>(s, suf_c_child(dbit), sm, lane);
            uint4 w = suf_mmo<MODE>(s, suf_c_value(dbit), sm, lane);
            const u64 v = (u64)w.x | ((u64)w.y << 32);
            const u64 tm = 0ull - (u64)t;
            acc += v + (tm & vc);
            const u32 tsel = (u32)((dbit ? trr : tl) >> i) & 1u;
            const uint4 corr = make_uint4((cw.x & ~1u) | tsel, cw.y, cw.z, cw.w);
            y = suf_xor(y, suf_and(corr, 0u - t));
            t = y.x & 1u;
            s = make_uint4(y.x & ~1u, y.y, y.z, y.w);
        }
        const u64 v = acc + ((0ull - (u64)t) & suf_bits(fcw, k * m, m));
        out[e] = ((v ^ neg) - neg) & mm;
    }
}

#define SUF_DCF_P1_ARGS                                                                        \
    const u8 *body, u64 count, u32 n, u32 m, u32 party, u64 o_seed, u64 o_scw, u64 o_tcw_l,  \
        u64 o_tcw_r, u64 o_vcw, u64 vcw_stride, u64 o_fcw, const u64 *xs, u64 total,          \
        u64 per_key, u64 *out
#define SUF_DCF_P1_CALL                                                                        \
    body, count, n, m, party, o_seed, o_scw, o_tcw_l, o_tcw_r, o_vcw, vcw_stride, o_fcw, xs,  \
        total, per_key, out

extern "C" __global__ void dcf_p1_t4(SUF_DCF_P1_ARGS) { dcf_p1_body<0>(SUF_DCF_P1_CALL); }
extern "C" __global__ void dcf_p1_r32(SUF_DCF_P1_ARGS) { dcf_p1_body<1>(SUF_DCF_P1_CALL); }

// ---- DCF with a vector payload (p <= DCF_VEC_MAX_P elements, ceil(p·m/128) <= DCF_VEC_MAX_B
// value blocks per level) ------------------------------------------------------------------
//
// out[e·p + q] is element q of the party's share for element e ([key][point][payload]).
// Level value element q is bits [q·m, q·m + m) of the little-endian concatenation of the
// level's value blocks w_j = G_{c_value(2j + d)}(s); only its low m bits matter (the sum is
// reduced mod 2^m at the end), so the kernel reads the 64 bits from offset q·m.

#define DCF_VEC_MAX_P 16
#define DCF_VEC_MAX_B 8

template <int MODE>
__device__ void dcf_vec_body(const u8* __restrict__ body, u64 count, u32 n, u32 m, u32 p,
                             u32 party, u64 o_seed, u64 o_scw, u64 o_tcw_l, u64 o_tcw_r,
                             u64 o_vcw, u64 vcw_stride, u64 o_fcw,
                             const u64* __restrict__ xs, u64 total, u64 per_key,
                             u64* __restrict__ out) {
    extern __shared__ u32 sm[];
    suf_load_tables<MODE>(sm);
    const u32 lane = threadIdx.x & 31;
    const u32 nb = (p * m + 127) / 128;
    const u64 dmask = n >= 64 ? ~0ull : ((1ull << n) - 1);
    const u64 mm = m >= 64 ? ~0ull : ((1ull << m) - 1);
    const uint4* seed = (const uint4*)(body + o_seed);
    const uint4* scw = (const uint4*)(body + o_scw);
    const u64* tcw_l = (const u64*)(body + o_tcw_l);
    const u64* tcw_r = (const u64*)(body + o_tcw_r);
    const u64* fcw = (const u64*)(body + o_fcw);
    const u64 neg = 0ull - (u64)party;
    u32 W[4 * DCF_VEC_MAX_B + 2];
    u64 acc[DCF_VEC_MAX_P];
    for (u64 e = suf_thread_id(); e < total; e += suf_grid_threads()) {
        const u64 k = per_key == 1 ? e : e / per_key;
        const u64 x = xs[e] & dmask;
        uint4 s = seed[k];
        u32 t = party;
        for (u32 q = 0; q < p; q++) acc[q] = 0;
        const u64 tl = tcw_l[k];
        const u64 trr = tcw_r[k];
        const u64 kbit = k * (u64)p * m;
        for (u32 i = 0; i < n; i++) {
            const u32 dbit = (u32)(x >> (n - 1 - i)) & 1u;
            const uint4 cw = scw[(u64)i * count + k];
            uint4 y = suf_mmo<MODE>(s, suf_c_child(dbit), sm, lane);
            for (u32 j = 0; j < nb; j++) {
                const uint4 w = suf_mmo<MODE>(s, suf_c_value(2 * j + dbit), sm, lane);
                W[4 * j] = w.x;
                W[4 * j + 1] = w.y;
                W[4 * j + 2] = w.z;
                W[4 * j + 3] = w.w;
            }
            W[4 * nb] = 0;
            W[4 * nb + 1] = 0;
            const u64 tm = 0ull - (u64)t;
            const u64* vl = (const u64*)(body + o_vcw + (u64)i * vcw_stride);
            for (u32 q = 0; q < p; q++) {
                const u32 off = q * m;
                const u32 wi = off >> 5;
                const u32 sh = off & 31;
                const u64 lo = (u64)W[wi] | ((u64)W[wi + 1] << 32);
                const u64 v = sh == 0 ? lo : (lo >> sh) | ((u64)W[wi + 2] << (64 - sh));
                acc[q] += v + (tm & suf_bits(vl, kbit + (u64)q * m, m));
            }
            const u32 tsel = (u32)((dbit ? trr : tl) >> i) & 1u;
            const uint4 corr = make_uint4((cw.x & ~1u) | tsel, cw.y, cw.z, cw.w);
            y = suf_xor(y, suf_and(corr, 0u - t));
            t = y.x & 1u;
            s = make_uint4(y.x & ~1u, y.y, y.z, y.w);
        }
        const u64 tm = 0ull - (u64)t;
        for (u32 q = 0; q < p; q++) {
            const u64 v = acc[q] + (tm & suf_bits(fcw, kbit + (u64)q * m, m));
            out[e * p + q] = ((v ^ neg) - neg) & mm;
        }
    }
}

#define SUF_DCF_VEC_ARGS                                                                       \
    const u8 *body, u64 count, u32 n, u32 m, u32 p, u32 party, u64 o_seed, u64 o_scw,         \
        u64 o_tcw_l, u64 o_tcw_r, u64 o_vcw, u64 vcw_stride, u64 o_fcw, const u64 *xs,         \
        u64 total, u64 per_key, u64 *out
#define SUF_DCF_VEC_CALL                                                                       \
    body, count, n, m, p, party, o_seed, o_scw, o_tcw_l, o_tcw_r, o_vcw, vcw_stride, o_fcw,   \
        xs, total, per_key, out

extern "C" __global__ void dcf_vec_t4(SUF_DCF_VEC_ARGS) { dcf_vec_body<0>(SUF_DCF_VEC_CALL); }
extern "C" __global__ void dcf_vec_r32(SUF_DCF_VEC_ARGS) { dcf_vec_body<1>(SUF_DCF_VEC_CALL); }
