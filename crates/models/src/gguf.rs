//! A small hand-written GGUF (v2/v3) reader: header, metadata, tensor table, and
//! dequantisation of F32, F16, BF16, Q4_0, Q4_1 and Q8_0 tensors to f32.
//!
//! GGUF lists a tensor's dimensions fastest-varying first (`ne[0]` is the row length), i.e.
//! reversed relative to row-major. [`TensorInfo::shape`] is already row-major: a linear
//! layer with `ne = [in, out]` appears as `[out, in]`, like a Hugging Face `[out, in]` weight.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{ModelError, Result};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// Any unsigned integer type.
    U(u64),
    /// Any signed integer type.
    I(i64),
    /// f32 or f64.
    F(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values.
    Array(Vec<MetaValue>),
}

/// GGML element types this reader knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: f16 scale d, 16 bytes of nibbles; w = d·(q − 8).
    Q4_0,
    /// Blocks of 32: f16 d, f16 m, 16 bytes of nibbles; w = d·q + m.
    Q4_1,
    /// Blocks of 32: f16 d, 32 × i8; w = d·q.
    Q8_0,
    /// Anything else (kept by id, not decodable here).
    Other(u32),
}

impl GgmlType {
    fn from_id(id: u32) -> Self {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::Bf16,
            x => GgmlType::Other(x),
        }
    }
    /// (elements per block, bytes per block), if known.
    fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Other(_) => return None,
        })
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Row-major shape (GGUF's dims reversed).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements (saturating at `usize::MAX`; [`Gguf::parse`] refuses a table entry
    /// whose product overflows).
    pub fn numel(&self) -> usize {
        checked_numel(&self.shape).unwrap_or(usize::MAX)
    }
}

/// The product of `dims`, or `None` if it overflows.
fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Largest `general.alignment` accepted (the format's default is 32).
const MAX_ALIGNMENT: u64 = 1 << 16;

/// Smallest encoding of one tensor-table entry (empty name, no dims, type, offset), used to
/// bound what a declared count may reserve.
const MIN_TENSOR_ENTRY: usize = 8 + 4 + 4 + 8;

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }
}

/// A parsed GGUF file held in memory.
pub struct Gguf {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key → value.
    pub meta: BTreeMap<String, MetaValue>,
    /// Tensor table in file order.
    pub tensors: Vec<TensorInfo>,
    index: BTreeMap<String, usize>,
    data: Vec<u8>,
    data_start: usize,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("meta_keys", &self.meta.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| ModelError::format("GGUF", format!("truncated at byte {}", self.pos)))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        if n > self.b.len() as u64 {
            return Err(ModelError::format(
                "GGUF",
                format!("length {n} exceeds file size"),
            ));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| ModelError::format("GGUF", "non-UTF-8 string"))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U(self.arr::<1>()?[0] as u64),
            1 => MetaValue::I(self.arr::<1>()?[0] as i8 as i64),
            2 => MetaValue::U(u16::from_le_bytes(self.arr()?) as u64),
            3 => MetaValue::I(i16::from_le_bytes(self.arr()?) as i64),
            4 => MetaValue::U(self.u32()? as u64),
            5 => MetaValue::I(i32::from_le_bytes(self.arr()?) as i64),
            6 => MetaValue::F(f32::from_le_bytes(self.arr()?) as f64),
            7 => MetaValue::Bool(self.arr::<1>()?[0] != 0),
            8 => MetaValue::Str(self.string()?),
            9 => {
                if depth > 4 {
                    return Err(ModelError::format("GGUF", "arrays nested too deeply"));
                }
                let ety = self.u32()?;
                let n = self.len()?;
                // Every element takes at least one byte: never reserve more than remains.
                let mut v = Vec::with_capacity(n.min(self.remaining()).min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                MetaValue::Array(v)
            }
            10 => MetaValue::U(self.u64()?),
            11 => MetaValue::I(i64::from_le_bytes(self.arr()?)),
            12 => MetaValue::F(f64::from_le_bytes(self.arr()?)),
            t => {
                return Err(ModelError::format(
                    "GGUF",
                    format!("unknown metadata type {t}"),
                ))
            }
        })
    }
}

impl Gguf {
    /// Read and parse a GGUF file (the whole file is read into memory).
    pub fn open(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(data)
    }

    /// Parse GGUF bytes.
    pub fn parse(data: Vec<u8>) -> Result<Self> {
        let mut r = Reader { b: &data, pos: 0 };
        if r.take(4)? != b"GGUF" {
            return Err(ModelError::format("GGUF", "bad magic (not a GGUF file)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::format(
                "GGUF",
                format!("version {version} not supported (2, 3)"),
            ));
        }
        let n_tensors = r.len()?;
        let n_kv = r.len()?;
        let mut meta = BTreeMap::new();
        for _ in 0..n_kv {
            let k = r.string()?;
            let ty = r.u32()?;
            let v = r.value(ty, 0)?;
            meta.insert(k, v);
        }
        let mut tensors = Vec::with_capacity(n_tensors.min(r.remaining() / MIN_TENSOR_ENTRY));
        let mut index = BTreeMap::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let nd = r.u32()? as usize;
            if nd > 8 {
                return Err(ModelError::format(
                    "GGUF",
                    format!("tensor {name}: {nd} dims"),
                ));
            }
            let mut dims = Vec::with_capacity(nd);
            for _ in 0..nd {
                dims.push(r.len()?);
            }
            dims.reverse();
            if checked_numel(&dims).is_none() {
                return Err(ModelError::format(
                    "GGUF",
                    format!("tensor {name}: dims {dims:?} overflow the element count"),
                ));
            }
            let dtype = GgmlType::from_id(r.u32()?);
            let offset = r.u64()?;
            index.insert(name.clone(), tensors.len());
            tensors.push(TensorInfo {
                name,
                shape: dims,
                dtype,
                offset,
            });
        }
        let align = match meta.get("general.alignment") {
            None => 32,
            Some(MetaValue::U(a)) if (1..=MAX_ALIGNMENT).contains(a) => *a as usize,
            Some(other) => {
                return Err(ModelError::format(
                    "GGUF",
                    format!("general.alignment {other:?} is not an integer in 1..={MAX_ALIGNMENT}"),
                ))
            }
        };
        let data_start = r
            .pos
            .div_ceil(align)
            .checked_mul(align)
            .ok_or_else(|| ModelError::format("GGUF", "data section offset overflows"))?;
        let g = Gguf {
            version,
            meta,
            tensors,
            index,
            data,
            data_start,
        };
        for t in &g.tensors {
            if t.dtype.block().is_some() {
                g.byte_range(t)?;
            }
        }
        Ok(g)
    }

    /// Bytes of a tensor of a known type (`None` for an unknown type, or a size that
    /// overflows).
    fn byte_len(&self, t: &TensorInfo) -> Option<usize> {
        let (be, bb) = t.dtype.block()?;
        checked_numel(&t.shape)?.div_ceil(be).checked_mul(bb)
    }

    /// The tensor's bytes as a range of `data`, checked to lie inside the file.
    fn byte_range(&self, t: &TensorInfo) -> Result<std::ops::Range<usize>> {
        let past = || {
            ModelError::format(
                "GGUF",
                format!("tensor {} runs past the end of the file", t.name),
            )
        };
        let n = self.byte_len(t).ok_or_else(past)?;
        let start = usize::try_from(t.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start))
            .ok_or_else(past)?;
        let end = start.checked_add(n).ok_or_else(past)?;
        if end > self.data.len() {
            return Err(past());
        }
        Ok(start..end)
    }

    /// Metadata value.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.meta.get(key)
    }
    /// Metadata string.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        match self.meta.get(key)? {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
    /// Metadata integer (any width, non-negative).
    pub fn meta_u64(&self, key: &str) -> Option<u64> {
        match self.meta.get(key)? {
            MetaValue::U(x) => Some(*x),
            MetaValue::I(x) if *x >= 0 => Some(*x as u64),
            _ => None,
        }
    }
    /// Metadata float (or integer).
    pub fn meta_f64(&self, key: &str) -> Option<f64> {
        match self.meta.get(key)? {
            MetaValue::F(x) => Some(*x),
            MetaValue::U(x) => Some(*x as f64),
            MetaValue::I(x) => Some(*x as f64),
            _ => None,
        }
    }
    /// Metadata boolean.
    pub fn meta_bool(&self, key: &str) -> Option<bool> {
        match self.meta.get(key)? {
            MetaValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// Metadata array of strings.
    pub fn meta_strings(&self, key: &str) -> Option<Vec<&str>> {
        match self.meta.get(key)? {
            MetaValue::Array(a) => a
                .iter()
                .map(|v| match v {
                    MetaValue::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
    /// Metadata array of integers.
    pub fn meta_ints(&self, key: &str) -> Option<Vec<i64>> {
        match self.meta.get(key)? {
            MetaValue::Array(a) => a
                .iter()
                .map(|v| match v {
                    MetaValue::I(x) => Some(*x),
                    MetaValue::U(x) => Some(*x as i64),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// Tensor table entry by name.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// Dequantise a tensor to f32 (row-major, shape [`TensorInfo::shape`]).
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        if t.dtype.block().is_none() {
            return Err(ModelError::UnsupportedDtype {
                name: t.name.clone(),
                dtype: format!("{:?}", t.dtype),
            });
        }
        let range = self.byte_range(t)?;
        let bytes = self.data.get(range).unwrap_or_default();
        let n = t.numel();
        if t.dtype.block().is_some_and(|(be, _)| !n.is_multiple_of(be)) {
            return Err(ModelError::format(
                "GGUF",
                format!(
                    "tensor {}: {n} elements is not a whole number of blocks",
                    t.name
                ),
            ));
        }
        Ok(dequantize_bytes(t.dtype, bytes, n))
    }
}

fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Decode `n` elements of `dtype` from `bytes` (which must hold exactly enough blocks).
pub(crate) fn dequantize_bytes(dtype: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    match dtype {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16(c);
            }
        }
        GgmlType::Bf16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => {
            for (o, blk) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(18)) {
                let d = f16(&blk[0..2]);
                for j in 0..16 {
                    let q = blk[2 + j];
                    o[j] = d * ((q & 0x0f) as f32 - 8.0);
                    o[j + 16] = d * ((q >> 4) as f32 - 8.0);
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, blk) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(20)) {
                let d = f16(&blk[0..2]);
                let m = f16(&blk[2..4]);
                for j in 0..16 {
                    let q = blk[4 + j];
                    o[j] = d * (q & 0x0f) as f32 + m;
                    o[j + 16] = d * (q >> 4) as f32 + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (o, blk) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(34)) {
                let d = f16(&blk[0..2]);
                for j in 0..32 {
                    o[j] = d * (blk[2 + j] as i8) as f32;
                }
            }
        }
        GgmlType::Other(_) => unreachable!("checked by byte_len"),
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn put_str(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }

    /// Build a tiny GGUF in memory: one Q4_1 tensor [2 rows × 32], one Q8_0 [32], one F32 [3].
    pub(crate) fn tiny_gguf() -> (Vec<u8>, Vec<f32>, Vec<f32>) {
        let mut b = Vec::new();
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend(3u64.to_le_bytes()); // tensors
        b.extend(2u64.to_le_bytes()); // kv
        put_str(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        put_str(&mut b, "llama");
        put_str(&mut b, "tokenizer.ggml.tokens");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        put_str(&mut b, "a");
        put_str(&mut b, "b");
        // tensor table
        let mut data = Vec::new();
        // q4_1: ne = [32, 2] → shape [2, 32]
        put_str(&mut b, "w");
        b.extend(2u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(3u32.to_le_bytes());
        b.extend((data.len() as u64).to_le_bytes());
        let mut want_w = Vec::new();
        for row in 0..2 {
            let d = half::f16::from_f32(0.5 + row as f32);
            let m = half::f16::from_f32(-1.0);
            data.extend(d.to_le_bytes());
            data.extend(m.to_le_bytes());
            let mut vals = [0f32; 32];
            for j in 0..16u8 {
                let lo = j;
                let hi = 15 - j;
                data.push(lo | (hi << 4));
                vals[j as usize] = d.to_f32() * lo as f32 + m.to_f32();
                vals[j as usize + 16] = d.to_f32() * hi as f32 + m.to_f32();
            }
            want_w.extend(vals);
        }
        while data.len() % 32 != 0 {
            data.push(0);
        }
        put_str(&mut b, "e");
        b.extend(1u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend((data.len() as u64).to_le_bytes());
        let d = half::f16::from_f32(0.25);
        data.extend(d.to_le_bytes());
        let mut want_e = Vec::new();
        for j in 0..32i32 {
            let q = (j - 16) as i8;
            data.push(q as u8);
            want_e.push(0.25 * q as f32);
        }
        while data.len() % 32 != 0 {
            data.push(0);
        }
        put_str(&mut b, "n");
        b.extend(1u32.to_le_bytes());
        b.extend(3u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend((data.len() as u64).to_le_bytes());
        for x in [1.0f32, -2.0, 3.5] {
            data.extend(x.to_le_bytes());
        }
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend(data);
        want_w.extend(want_e.iter());
        (b, want_w, vec![1.0, -2.0, 3.5])
    }

    #[test]
    fn parse_and_dequantize() {
        let (bytes, want_we, want_n) = tiny_gguf();
        let g = Gguf::parse(bytes).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.meta_str("general.architecture"), Some("llama"));
        assert_eq!(
            g.meta_strings("tokenizer.ggml.tokens").unwrap(),
            vec!["a", "b"]
        );
        let w = g.tensor_info("w").unwrap().clone();
        assert_eq!(w.shape, vec![2, 32]);
        assert_eq!(w.dtype, GgmlType::Q4_1);
        assert_eq!(g.dequantize(&w).unwrap(), want_we[..64].to_vec());
        let e = g.tensor_info("e").unwrap().clone();
        assert_eq!(g.dequantize(&e).unwrap(), want_we[64..].to_vec());
        let n = g.tensor_info("n").unwrap().clone();
        assert_eq!(g.dequantize(&n).unwrap(), want_n);
    }

    /// A GGUF header with one u64 metadata entry (if any) and one tensor entry.
    fn hostile(align: Option<u64>, dims: &[u64], ty: u32, offset: u64, pad: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend((align.is_some() as u64).to_le_bytes());
        if let Some(a) = align {
            put_str(&mut b, "general.alignment");
            b.extend(10u32.to_le_bytes());
            b.extend(a.to_le_bytes());
        }
        put_str(&mut b, "t");
        b.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
        b.extend(vec![0u8; pad]);
        b
    }

    fn format_err(r: Result<Gguf>) -> String {
        match r {
            Err(ModelError::Format { msg, .. }) => msg,
            Err(e) => panic!("expected a format error, got {e}"),
            Ok(_) => panic!("expected a format error, got a file"),
        }
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        // Eight dims of 300 in a file of a few hundred bytes: their product overflows u64.
        let e = format_err(Gguf::parse(hostile(None, &[300; 8], 0, 0, 300)));
        assert!(e.contains("overflow"), "{e}");
        // An alignment of 2^64 − 1 (the data offset would overflow).
        let e = format_err(Gguf::parse(hostile(Some(u64::MAX), &[4], 0, 0, 64)));
        assert!(e.contains("general.alignment"), "{e}");
        assert!(Gguf::parse(hostile(Some(0), &[4], 0, 0, 64)).is_err());
        // A tensor offset near 2^64 (start + length would overflow).
        let e = format_err(Gguf::parse(hostile(None, &[4], 0, u64::MAX - 3, 64)));
        assert!(e.contains("past the end"), "{e}");
        // A dim larger than the file, and a Q8_0 tensor far larger than the file.
        let e = format_err(Gguf::parse(hostile(None, &[1 << 40, 1 << 23], 8, 0, 64)));
        assert!(e.contains("exceeds file size"), "{e}");
        let e = format_err(Gguf::parse(hostile(None, &[128, 96], 8, 0, 64)));
        assert!(e.contains("past the end"), "{e}");
        // 2^40 tensors declared in 100 bytes: no huge reservation, just "truncated".
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(90u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend([0u8; 80]);
        let e = format_err(Gguf::parse(b));
        assert!(e.contains("truncated") || e.contains("exceeds"), "{e}");
        // An unknown tensor type is kept, and refused only when dequantised.
        let g = Gguf::parse(hostile(None, &[4], 99, 0, 64)).unwrap();
        let t = g.tensors[0].clone();
        assert!(matches!(
            g.dequantize(&t),
            Err(ModelError::UnsupportedDtype { .. })
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Gguf::parse(b"GGML....".to_vec()).is_err());
        let (mut bytes, _, _) = tiny_gguf();
        bytes.truncate(bytes.len() - 8);
        assert!(Gguf::parse(bytes).is_err());
    }
}
