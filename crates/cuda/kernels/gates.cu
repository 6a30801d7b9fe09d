// Compiled-gate components on the device: the DCF points from the public x̂ and the
// recombination of the DCF outputs into the component's outputs (suf_backend::gate holds the
// CPU reference of every formula here; the identities are in suf_compiler's compile.rs).
//
// One gate batch = points kernel -> DCF kernel(s) (fss.cu, into a device buffer) -> one
// recombination kernel, all on the party's stream with no host synchronization between; only
// the q outputs per element come back. One thread per element (grid-stride). Every branch
// and index depends on public values only (x̂, the cuts, the party), as on the CPU.
//
// All arithmetic is mod 2^64 (u64 wraps) and reduced at the end, exactly as the CPU code.
// Shifts: every shift amount the host passes is < 64 (masks are passed precomputed).

// pts[e·(ncuts+1)] = h, pts[e·(ncuts+1) + 1 + c] = (h − cuts[c]) & dmask,
// h = ((x̂ + off) & vmask) >> shift (shift < 64).
extern "C" __global__ void gate_points(const u64* __restrict__ xhat, u64 cnt, u64 off,
                                       u64 vmask, u32 shift, u64 dmask,
                                       const u64* __restrict__ cuts, u32 ncuts,
                                       u64* __restrict__ pts) {
    const u64 m = (u64)ncuts + 1;
    for (u64 e = suf_thread_id(); e < cnt; e += suf_grid_threads()) {
        const u64 h = ((xhat[e] + off) & vmask) >> shift;
        u64* o = pts + e * m;
        o[0] = h & dmask;
        for (u32 c = 0; c < ncuts; c++) {
            o[1 + c] = (h - cuts[c]) & dmask;
        }
    }
}

#define GATE_MAX_P 9

// Technique (c) (suf_backend::gate::techc_host). dv: [e][pt][k], m points of p payload
// elements per element; rpow: [e][k − 1], d per element; bin: C(j, k) at j·p + k;
// coeffs[(i·q + o)·p + j]. view_var: the variable is the view value (Poly), else x̂ + off
// (High); need_u: add the wrap terms (Poly with K < M). out is output-major, q·cnt.
extern "C" __global__ void gate_techc(const u64* __restrict__ xhat, u64 cnt, u64 off,
                                      u64 vmask, u32 shift, u32 view_var, u32 need_u,
                                      u64 two_k, u64 rm, u32 party, u32 d, u32 q, u32 m,
                                      const u64* __restrict__ cuts,
                                      const u64* __restrict__ centers,
                                      const u64* __restrict__ coeffs,
                                      const u64* __restrict__ bin,
                                      const u64* __restrict__ rpow,
                                      const u64* __restrict__ dv, u64* __restrict__ out) {
    const u32 p = d + 1;
    const u64 j = (u64)party;
    u64 zp[GATE_MAX_P];
    u64 dp[GATE_MAX_P];
    for (u64 e = suf_thread_id(); e < cnt; e += suf_grid_threads()) {
        const u64* de = dv + e * (u64)m * p;
        const u64* re = rpow + e * (u64)d;
        const u64 y = xhat[e] + off;
        const u64 h = (y & vmask) >> shift;
        const u64 zb = view_var ? (y & vmask) : y;
        for (u32 o = 0; o < q; o++) {
            u64 acc = 0;
            for (u32 i = 0; i < m; i++) {
                const u64 z = zb - centers[i];
                const u64 z1 = z + two_k;
                u64 a = 1, b = 1;
                for (u32 jj = 0; jj < p; jj++) {
                    zp[jj] = a;
                    dp[jj] = b - a;
                    a *= z;
                    b *= z1;
                }
                // Boundaries i and i + 1 of interval i: c = 0 gives zero, c = m gives
                // (rp(k), D_k(h)), an interior c gives
                // (D_k(h ⊖ a) − D_k(h) + 1{h < a}·rp(k), 1{h < a}·D_k(h ⊖ a)), a = cuts[c − 1].
                const u64* cf = coeffs + ((u64)i * q + o) * p;
                for (u32 kk = 0; kk < p; kk++) {
                    const u64 rp = kk == 0 ? j : re[kk - 1];
                    u64 l_hi, w_hi, l_lo, w_lo;
                    {
                        const u32 c = i + 1;
                        if (c == m) {
                            l_hi = rp;
                            w_hi = de[kk];
                        } else {
                            const u64 lt = 0ull - (u64)(h < cuts[c - 1]);
                            const u64 dc = de[(u64)c * p + kk];
                            l_hi = dc - de[kk] + (lt & rp);
                            w_hi = lt & dc;
                        }
                    }
                    {
                        const u32 c = i;
                        if (c == 0) {
                            l_lo = 0;
                            w_lo = 0;
                        } else {
                            const u64 lt = 0ull - (u64)(h < cuts[c - 1]);
                            const u64 dc = de[(u64)c * p + kk];
                            l_lo = dc - de[kk] + (lt & rp);
                            w_lo = lt & dc;
                        }
                    }
                    const u64 t = l_hi - l_lo;
                    const u64 u = w_hi - w_lo;
                    u64 ca = 0, cb = 0;
                    for (u32 jj = kk; jj < p; jj++) {
                        const u64 cc = bin[jj * p + kk] * cf[jj];
                        ca += cc * zp[jj - kk];
                        if (need_u) cb += cc * dp[jj - kk];
                    }
                    const u64 term = ca * t + cb * u;
                    acc = (kk & 1u) ? acc - term : acc + term;
                }
            }
            out[(u64)o * cnt + e] = acc & rm;
        }
    }
}

// Floor with optional LSB selector (suf_backend::gate::floor_host). cv: c-DCF outputs, p per
// element; wv: wrap DCF outputs (wrap_mode 0) or free-wrap shares (1), p per element, unused
// for 2 (drop); sh: dealer shares, 3 (select) or 1 per element. ntop = n − 1; fk = 2^{K−t}.
extern "C" __global__ void gate_floor(const u64* __restrict__ xhat, u64 cnt, u64 off,
                                      u64 vmask, u32 shift, u32 sel, u32 wrap_mode, u32 ntop,
                                      u64 fk, u64 nm, u32 party, u32 q,
                                      const u64* __restrict__ gamma,
                                      const u64* __restrict__ kappa,
                                      const u64* __restrict__ cv, const u64* __restrict__ wv,
                                      const u64* __restrict__ sh, u64* __restrict__ out) {
    const u64 j = (u64)party;
    const u32 p = 1 + sel;
    for (u64 e = suf_thread_id(); e < cnt; e += suf_grid_threads()) {
        const u64 y = (xhat[e] + off) & vmask;
        const u64 yhi = y >> shift;
        u64 w0 = 0, w1 = 0;
        if (wrap_mode == 0) {
            w0 = wv[e * p];
            if (sel) w1 = wv[e * p + 1];
        } else if (wrap_mode == 1) {
            const u64 nt = 1 - ((y >> ntop) & 1);
            w0 = nt * wv[e * p];
            if (sel) w1 = nt * wv[e * p + 1];
        }
        u64 selv, z;
        if (sel) {
            const u64 g = 1 - (y & 1);
            const u64 hh = 2 * (y & 1) - 1;
            const u64 rh = sh[e * 3], r0 = sh[e * 3 + 1], r0rh = sh[e * 3 + 2];
            selv = g * j + hh * r0;
            const u64 sel_rh = g * rh + hh * r0rh;
            const u64 sel_c = g * cv[e * 2] + hh * cv[e * 2 + 1];
            const u64 sel_w = g * w0 + hh * w1;
            z = yhi * selv - sel_rh - sel_c + fk * sel_w;
        } else {
            selv = j;
            z = yhi * j - sh[e] - cv[e] + fk * w0;
        }
        for (u32 o = 0; o < q; o++) {
            out[(u64)o * cnt + e] = (gamma[o] * z + kappa[o] * selv) & nm;
        }
    }
}

// Affine halves of a K-bit view (suf_backend::gate::sign_host). ev: DCF outputs, p = 1 +
// slope per element; sh: 3 (slope) or 1 shares per element; lo/hi: (slope, intercept)
// pairs per output; h = K − 1 (< 64), kmask = 2^K − 1.
extern "C" __global__ void gate_sign(const u64* __restrict__ xhat, u64 cnt, u64 off, u64 kmask,
                                     u32 h, u32 slope, u64 rm, u32 party, u32 q,
                                     const u64* __restrict__ lo, const u64* __restrict__ hi,
                                     const u64* __restrict__ ev, const u64* __restrict__ sh,
                                     u64* __restrict__ out) {
    const u64 j = (u64)party;
    const u32 p = 1 + slope;
    const u32 ns = slope ? 3 : 1;
    for (u64 e = suf_thread_id(); e < cnt; e += suf_grid_threads()) {
        const u64 yf = xhat[e] + off;
        const u64 yt = ((yf & kmask) >> h) & 1;
        const u64 f = 1 - 2 * yt;
        const u64 u = sh[e * ns + (slope ? 1 : 0)] + ev[e * p];
        const u64 b = (yt & j) + f * u;
        u64 xf = 0, bxf = 0;
        if (slope) {
            const u64 rf = sh[e * ns];
            const u64 urf = sh[e * ns + 2] + ev[e * p + 1];
            const u64 brf = yt * rf + f * urf;
            xf = yf * j - rf;
            bxf = yf * b - brf;
        }
        for (u32 o = 0; o < q; o++) {
            const u64 a0 = lo[2 * o], b0 = lo[2 * o + 1];
            const u64 a1 = hi[2 * o], b1 = hi[2 * o + 1];
            const u64 v = a0 * xf + b0 * j + (a1 - a0) * bxf + (b1 - b0) * b;
            out[(u64)o * cnt + e] = v & rm;
        }
    }
}

// Bit component (suf_backend::gate::bit_host): c holds the m = ncuts + 1 DPF comparison shares
// of each element ([e][0] at ĥ, [e][1 + j] at ĥ ⊖ a_j, from gate_points); tab = cuts[ncuts] |
// flip[ncuts] with flip[j] = values[j] ≠ values[j + 1]; v0 = values[0]. The output is the
// party's XOR share of the bit, one 0/1 word per element.
extern "C" __global__ void gate_bit(const u64* __restrict__ xhat, u64 cnt, u64 off, u64 vmask,
                                    u32 shift, u32 party, u32 v0, const u64* __restrict__ tab,
                                    u32 ncuts, const u8* __restrict__ c, u64* __restrict__ out) {
    const u64 m = (u64)ncuts + 1;
    const u32 p0 = party == 0 ? 1u : 0u;
    for (u64 e = suf_thread_id(); e < cnt; e += suf_grid_threads()) {
        const u64 h = ((xhat[e] + off) & vmask) >> shift;
        const u8* ce = c + e * m;
        u32 o = p0 & v0;
        for (u32 j = 0; j < ncuts; j++) {
            if (tab[ncuts + j]) {
                const u32 pub = p0 & (1u ^ (h < tab[j] ? 1u : 0u));
                o ^= (u32)ce[j + 1] ^ (u32)ce[0] ^ pub;
            }
        }
        out[e] = (u64)(o & 1u);
    }
}

// Dealer shares packed LSB first at k bits each (suf_core::pack; party 0's key parts), read
// in place: out[e] = bits [e·k, e·k + k) of the word stream w (8-aligned; every word holding a
// needed bit is readable, the host checks round_up_8 of the packed length).
extern "C" __global__ void share_unpack(const u64* __restrict__ w, u64 cnt, u32 k, u64 mask,
                                        u64* __restrict__ out) {
    for (u64 e = suf_thread_id(); e < cnt; e += suf_grid_threads()) {
        const u64 bit = e * (u64)k;
        const u64 wi = bit >> 6;
        const u32 sh = (u32)(bit & 63);
        u64 v = w[wi] >> sh;
        if (sh + k > 64) {
            v |= w[wi + 1] << (64 - sh);  // sh > 0 here, so the shift is in 1..63
        }
        out[e] = v & mask;
    }
}
