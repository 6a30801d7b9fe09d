//! Fixed-point codec: a real v is encoded as round(v · 2^f) in the signed view of Z_{2^n}.
//!
//! Rounding is to nearest, ties away from zero. Values outside the representable range
//! [−2^{n−1−f}, (2^{n−1} − 1)/2^f] are either refused ([`FixedPoint::encode`]) or clamped with
//! the saturation reported ([`FixedPoint::encode_saturating`]); never silently wrapped.

use crate::error::{CoreError, Result};
use crate::ring::BitWidth;

/// A fixed-point format: ring width n and f fractional bits (f < n).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FixedPoint {
    /// The ring.
    pub width: BitWidth,
    /// Fractional bits.
    pub frac: u32,
}

impl FixedPoint {
    /// A format with `frac < bits`.
    pub fn new(bits: u32, frac: u32) -> Result<Self> {
        let width = BitWidth::new(bits)?;
        if frac >= bits {
            return Err(CoreError::BadFracBits { frac, bits });
        }
        Ok(FixedPoint { width, frac })
    }

    /// 2^f as f64.
    #[inline]
    pub fn scale(&self) -> f64 {
        (self.frac as f64).exp2()
    }

    fn rounded(&self, v: f64) -> Result<f64> {
        if !v.is_finite() {
            return Err(CoreError::NotFinite(v));
        }
        Ok((v * self.scale()).round())
    }

    /// Encode, refusing values that do not fit.
    pub fn encode(&self, v: f64) -> Result<u64> {
        let r = self.rounded(v)?;
        let (lo, hi) = (
            self.width.min_signed() as f64,
            self.width.max_signed() as f64,
        );
        // `hi` may round up to 2^{n-1} in f64 for n > 53; compare strictly against 2^{n-1}.
        let limit = ((self.width.bits() - 1) as f64).exp2();
        if r < lo || r >= limit || r > hi && self.width.bits() <= 53 {
            return Err(CoreError::Saturated {
                value: v,
                bits: self.width.bits(),
                frac: self.frac,
            });
        }
        Ok(self.width.from_signed(r as i64))
    }

    /// Encode, clamping to the representable range; the flag says whether it clamped.
    /// NaN encodes as 0 with the flag set.
    pub fn encode_saturating(&self, v: f64) -> (u64, bool) {
        match self.encode(v) {
            Ok(x) => (x, false),
            Err(_) if v.is_nan() => (0, true),
            Err(_) => {
                let s = if v < 0.0 {
                    self.width.min_signed()
                } else {
                    self.width.max_signed()
                };
                (self.width.from_signed(s), true)
            }
        }
    }

    /// Decode the signed view of x as a real.
    #[inline]
    pub fn decode(&self, x: u64) -> f64 {
        self.width.to_signed(x) as f64 / self.scale()
    }

    /// One unit in the last place, 2^{−f}.
    #[inline]
    pub fn ulp(&self) -> f64 {
        1.0 / self.scale()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_values() {
        let fp = FixedPoint::new(16, 4).unwrap();
        assert_eq!(fp.encode(1.0).unwrap(), 16);
        assert_eq!(fp.encode(-1.0).unwrap(), 0xfff0);
        assert_eq!(fp.encode(0.03125).unwrap(), 1); // tie rounds away from zero
        assert_eq!(fp.encode(-0.03125).unwrap(), 0xffff);
        assert_eq!(fp.decode(0x8000), -2048.0);
        assert!(fp.encode(2048.0).is_err());
        assert!(fp.encode(-2048.0).is_ok());
        assert!(fp.encode(-2048.04).is_err());
        assert_eq!(fp.encode_saturating(1e9), (0x7fff, true));
        assert_eq!(fp.encode_saturating(-1e9), (0x8000, true));
        assert_eq!(fp.encode_saturating(f64::NAN), (0, true));
        assert!(matches!(
            fp.encode(f64::INFINITY),
            Err(CoreError::NotFinite(_))
        ));
        assert!(FixedPoint::new(12, 12).is_err());
        // f ≥ n names both numbers, not a "bit width outside 1..=64".
        let e = FixedPoint::new(20, 30).unwrap_err();
        assert_eq!(e, CoreError::BadFracBits { frac: 30, bits: 20 });
        assert!(e.to_string().contains("30 fractional bits"), "{e}");
        assert!(matches!(
            FixedPoint::new(65, 12),
            Err(CoreError::BadBitWidth(65))
        ));
    }

    #[test]
    fn n64_extremes() {
        let fp = FixedPoint::new(64, 12).unwrap();
        assert!(fp.encode(2f64.powi(51)).is_err());
        assert_eq!(
            fp.encode(-(2f64.powi(51))).unwrap(),
            fp.width.from_signed(i64::MIN)
        );
        assert_eq!(fp.encode_saturating(1e300).0, i64::MAX as u64);
    }

    proptest! {
        #[test]
        fn roundtrip_half_ulp(n in 8u32..=64, fsel in 0u32..64, v in -1.0e6f64..1.0e6) {
            let f = fsel % (n - 1);
            let fp = FixedPoint::new(n, f).unwrap();
            if let Ok(x) = fp.encode(v) {
                let back = fp.decode(x);
                prop_assert!((back - v).abs() <= fp.ulp() / 2.0 + v.abs() * 1e-15,
                    "v={v} back={back} n={n} f={f}");
            } else {
                let lim = ((n - 1 - f) as f64).exp2();
                prop_assert!(v.abs() >= lim * 0.999_999);
            }
        }
    }
}
