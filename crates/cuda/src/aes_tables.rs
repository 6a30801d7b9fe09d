//! The fixed-key AES-128 tables that the kernels use, built on the host, and a CPU mirror of
//! the kernels' T-table round function (so the table layout and byte order are tested in CI,
//! where no GPU exists).
//!
//! # Byte order (must match `suf_core::prg`)
//!
//! A block is a `u128` whose AES byte string is `u128::to_le_bytes`. The kernels hold it as
//! four little-endian `u32` column words `w[c]` (bytes 4c..4c+4, byte 4c in the low 8 bits),
//! which is exactly how a `uint4` load reads the `u128` from memory on a little-endian GPU.
//! Byte r of column c (AES state row r) is `(w[c] >> 8r) & 0xff`.
//!
//! # Tables
//!
//! With s = S(x) (the AES S-box), `TE0[x] = 2s | s<<8 | s<<16 | 3s<<24` (one MixColumns column
//! in little-endian word form) and `TE_k = rotl(TE0, 8k)`. One full round, column c:
//! `out[c] = TE0[b0(w[c])] ^ TE1[b1(w[c+1])] ^ TE2[b2(w[c+2])] ^ TE3[b3(w[c+3])] ^ rk[c]`
//! (ShiftRows folded into the column indices mod 4). The last round takes the S-box byte out of
//! `TE0`: `S[x]` is byte 1 of `TE0[x]`, moved to byte r of the output column for row r (the
//! kernels pick bytes in and out with byte permutes).
//!
//! The round keys of [`suf_core::prg::FIXED_KEY`] are expanded once here (FIPS-197 §5.2) and
//! compiled into the kernel source as a `__constant__` array; after unrolling every round-key
//! access has a constant offset, so the compiler reads it straight from the constant bank.

use suf_core::prg::FIXED_KEY;

/// The AES S-box, computed (multiplicative inverse in GF(2^8) followed by the affine map).
pub fn sbox() -> [u8; 256] {
    let mut s = [0u8; 256];
    for (x, out) in s.iter_mut().enumerate() {
        let inv = if x == 0 { 0 } else { gf_inv(x as u8) };
        let mut b = inv;
        let mut r = inv;
        for _ in 0..4 {
            b = b.rotate_left(1);
            r ^= b;
        }
        *out = r ^ 0x63;
    }
    s
}

fn xtime(a: u8) -> u8 {
    (a << 1) ^ if a & 0x80 != 0 { 0x1b } else { 0 }
}

fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        a = xtime(a);
        b >>= 1;
    }
    p
}

fn gf_inv(a: u8) -> u8 {
    // a^254 = a^{-1} in GF(2^8).
    let mut r = 1u8;
    let mut base = a;
    let mut e = 254u32;
    while e > 0 {
        if e & 1 == 1 {
            r = gf_mul(r, base);
        }
        base = gf_mul(base, base);
        e >>= 1;
    }
    r
}

/// `TE0` in little-endian column-word form (see the module documentation).
pub fn te0() -> [u32; 256] {
    let s = sbox();
    let mut t = [0u32; 256];
    for (x, out) in t.iter_mut().enumerate() {
        let v = s[x];
        let v2 = xtime(v);
        let v3 = v2 ^ v;
        *out = v2 as u32 | (v as u32) << 8 | (v as u32) << 16 | (v3 as u32) << 24;
    }
    t
}

/// The 44 round-key words of AES-128 under `key`, little-endian column words
/// (`rk[4r + c]` = bytes 4c..4c+4 of round key r).
pub fn round_keys(key: [u8; 16]) -> [u32; 44] {
    let s = sbox();
    let mut w = [[0u8; 4]; 44];
    for i in 0..4 {
        w[i].copy_from_slice(&key[4 * i..4 * i + 4]);
    }
    let mut rcon = 1u8;
    for i in 4..44 {
        let mut t = w[i - 1];
        if i % 4 == 0 {
            t = [
                s[t[1] as usize],
                s[t[2] as usize],
                s[t[3] as usize],
                s[t[0] as usize],
            ];
            t[0] ^= rcon;
            rcon = xtime(rcon);
        }
        for j in 0..4 {
            w[i][j] = w[i - 4][j] ^ t[j];
        }
    }
    let mut out = [0u32; 44];
    for i in 0..44 {
        out[i] = u32::from_le_bytes(w[i]);
    }
    out
}

/// The round keys of the tree PRG's fixed key.
pub fn fixed_round_keys() -> [u32; 44] {
    round_keys(FIXED_KEY)
}

/// A CPU transcription of the kernels' T-table AES (`suf_aes` in `kernels/common.cuh`), used
/// to test the tables and byte order against `suf_core::prg::FixedKeyAes` without a GPU.
pub fn ttable_encrypt(rk: &[u32; 44], t0: &[u32; 256], block: u128) -> u128 {
    let t = |k: u32, x: u32| t0[(x & 0xff) as usize].rotate_left(8 * k);
    let b = block.to_le_bytes();
    let mut w = [0u32; 4];
    for c in 0..4 {
        w[c] = u32::from_le_bytes([b[4 * c], b[4 * c + 1], b[4 * c + 2], b[4 * c + 3]]) ^ rk[c];
    }
    for r in 1..10 {
        let mut o = [0u32; 4];
        for c in 0..4 {
            o[c] = t(0, w[c])
                ^ t(1, w[(c + 1) % 4] >> 8)
                ^ t(2, w[(c + 2) % 4] >> 16)
                ^ t(3, w[(c + 3) % 4] >> 24)
                ^ rk[4 * r + c];
        }
        w = o;
    }
    // Last round: S[x] = byte 1 of TE0[x], placed at byte r (row r).
    let sb = |r: u32, x: u32| ((t0[((x >> (8 * r)) & 0xff) as usize] >> 8) & 0xff) << (8 * r);
    let mut o = [0u32; 4];
    for c in 0..4 {
        o[c] = sb(0, w[c]) | sb(1, w[(c + 1) % 4]) | sb(2, w[(c + 2) % 4]) | sb(3, w[(c + 3) % 4]);
        o[c] ^= rk[40 + c];
    }
    let mut out = [0u8; 16];
    for c in 0..4 {
        out[4 * c..4 * c + 4].copy_from_slice(&o[c].to_le_bytes());
    }
    u128::from_le_bytes(out)
}

/// The four little-endian u32 words of a `u128` (word 0 = bits 0..32).
pub fn words(x: u128) -> [u32; 4] {
    [
        x as u32,
        (x >> 32) as u32,
        (x >> 64) as u32,
        (x >> 96) as u32,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use suf_core::prg::{Csprng, FixedKeyAes};

    #[test]
    fn sbox_known_values() {
        let s = sbox();
        assert_eq!(s[0x00], 0x63);
        assert_eq!(s[0x01], 0x7c);
        assert_eq!(s[0x53], 0xed);
        assert_eq!(s[0xff], 0x16);
    }

    #[test]
    fn ttable_matches_aes_crate_fips197_and_fixed_key() {
        let t0 = te0();
        // FIPS-197 C.1.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let pt: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let ct = ttable_encrypt(&round_keys(key), &t0, u128::from_le_bytes(pt)).to_le_bytes();
        assert_eq!(
            ct,
            [
                0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
                0xc5, 0x5a
            ]
        );
        let rk = fixed_round_keys();
        let aes = FixedKeyAes::global();
        let mut rng = Csprng::for_tests(77);
        for i in 0..2000u32 {
            let x = match i {
                0 => 0,
                1 => u128::MAX,
                _ => rng.next_u128(),
            };
            assert_eq!(ttable_encrypt(&rk, &t0, x), aes.permute(x));
        }
    }
}
