//! The ring Z_{2^n}, 1 ≤ n ≤ 64, with elements held in `u64` reduced mod 2^n.
//!
//! Unsigned view: the representative in [0, 2^n). Signed view: two's complement in
//! [−2^{n−1}, 2^{n−1}).

use crate::error::{CoreError, Result};

/// Bits of the ring Z_{2^n}. Invariant: 1 ≤ n ≤ 64.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BitWidth(u32);

impl BitWidth {
    /// Z_{2^64}.
    pub const W64: BitWidth = BitWidth(64);

    /// A ring width; errors outside 1..=64.
    pub fn new(n: u32) -> Result<Self> {
        if (1..=64).contains(&n) {
            Ok(BitWidth(n))
        } else {
            Err(CoreError::BadBitWidth(n))
        }
    }

    /// The number of bits n.
    #[inline]
    pub fn bits(self) -> u32 {
        self.0
    }

    /// 2^n − 1 as a mask.
    #[inline]
    pub fn mask(self) -> u64 {
        if self.0 == 64 {
            u64::MAX
        } else {
            (1u64 << self.0) - 1
        }
    }

    /// x mod 2^n.
    #[inline]
    pub fn reduce(self, x: u64) -> u64 {
        x & self.mask()
    }

    /// (a + b) mod 2^n.
    #[inline]
    pub fn add(self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b) & self.mask()
    }

    /// (a − b) mod 2^n.
    #[inline]
    pub fn sub(self, a: u64, b: u64) -> u64 {
        a.wrapping_sub(b) & self.mask()
    }

    /// (a · b) mod 2^n.
    #[inline]
    pub fn mul(self, a: u64, b: u64) -> u64 {
        a.wrapping_mul(b) & self.mask()
    }

    /// −a mod 2^n.
    #[inline]
    pub fn neg(self, a: u64) -> u64 {
        a.wrapping_neg() & self.mask()
    }

    /// The signed (two's complement) view of x mod 2^n.
    #[inline]
    pub fn to_signed(self, x: u64) -> i64 {
        let sh = 64 - self.0;
        ((x << sh) as i64) >> sh
    }

    /// The ring element of a signed integer (reduced mod 2^n).
    #[inline]
    pub fn from_signed(self, v: i64) -> u64 {
        (v as u64) & self.mask()
    }

    /// Most significant bit of x mod 2^n.
    #[inline]
    pub fn msb(self, x: u64) -> u64 {
        (x >> (self.0 - 1)) & 1
    }

    /// 2^{n−1} mod 2^n (the signed-order shift).
    #[inline]
    pub fn half(self) -> u64 {
        1u64 << (self.0 - 1)
    }

    /// Smallest signed value −2^{n−1}.
    #[inline]
    pub fn min_signed(self) -> i64 {
        if self.0 == 64 {
            i64::MIN
        } else {
            -(1i64 << (self.0 - 1))
        }
    }

    /// Largest signed value 2^{n−1} − 1.
    #[inline]
    pub fn max_signed(self) -> i64 {
        if self.0 == 64 {
            i64::MAX
        } else {
            (1i64 << (self.0 - 1)) - 1
        }
    }

    /// Bytes needed to hold one element (⌈n/8⌉).
    #[inline]
    pub fn bytes(self) -> usize {
        self.0.div_ceil(8) as usize
    }
}

impl std::fmt::Display for BitWidth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Z_2^{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        assert!(BitWidth::new(0).is_err());
        assert!(BitWidth::new(65).is_err());
        for n in 1..=64 {
            let w = BitWidth::new(n).unwrap();
            assert_eq!(w.mask().count_ones(), n);
            assert_eq!(w.to_signed(w.half()), w.min_signed());
            assert_eq!(w.to_signed(w.half() - 1), w.max_signed());
            assert_eq!(w.to_signed(w.mask()), -1);
            assert_eq!(w.from_signed(-1), w.mask());
            assert_eq!(w.from_signed(w.min_signed()), w.half());
            assert_eq!(w.add(w.mask(), 1), 0);
            assert_eq!(w.sub(0, 1), w.mask());
            assert_eq!(w.neg(1), w.mask());
            assert_eq!(w.msb(w.half()), 1);
            assert_eq!(w.msb(w.half() - 1), 0);
        }
    }

    #[test]
    fn signed_roundtrip_exhaustive_small() {
        for n in 1..=10 {
            let w = BitWidth::new(n).unwrap();
            for x in 0..(1u64 << n) {
                let s = w.to_signed(x);
                assert!(s >= w.min_signed() && s <= w.max_signed());
                assert_eq!(w.from_signed(s), x);
            }
        }
    }
}
