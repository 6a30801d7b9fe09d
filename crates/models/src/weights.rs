//! A store of named tensors, read as f32 (or f64) row-major arrays with shape checks.
//!
//! Sources: a safetensors file (F32, F16, BF16), a GGUF file (F32, F16, BF16, Q4_0, Q4_1,
//! Q8_0; shapes reported row-major, i.e. GGUF's dims reversed), deterministic synthetic
//! weights (generated per tensor on request from a seed and the tensor's name, so big
//! benchmark models never sit in memory whole), or an in-memory map.
//!
//! Files are read into memory with `std::fs::read` rather than memory-mapped: the workspace
//! forbids `unsafe`, which `memmap2::Mmap::map` needs. The largest real model (MPNet,
//! 438 MB) fits comfortably.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::gguf::Gguf;

/// Prefixes some checkpoints put in front of the bare Hugging Face names.
const PREFIXES: &[&str] = &["bert.", "mpnet.", "transformer.", "model.", "roberta."];

/// name → (dtype, row-major shape, absolute byte range)
type StIndex = BTreeMap<String, (safetensors::Dtype, Vec<usize>, (usize, usize))>;

enum Source {
    Safetensors {
        data: Vec<u8>,
        index: StIndex,
    },
    Gguf(Box<Gguf>),
    Synthetic {
        seed: u64,
    },
    Map(BTreeMap<String, (Vec<usize>, Vec<f32>)>),
    /// Several stores seen as one (sharded checkpoints), with canonical → stored renames
    /// (architectures whose Hugging Face names differ from the canonical ones).
    Composite {
        parts: Vec<Weights>,
        rename: BTreeMap<String, String>,
    },
}

/// Named tensors from one source. See the module docs.
pub struct Weights {
    src: Source,
    desc: String,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("source", &self.desc)
            .finish()
    }
}

impl Weights {
    /// Read a `.safetensors` file.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let mut w = Self::from_safetensors_bytes(data)?;
        w.desc = format!("safetensors file {}", path.display());
        Ok(w)
    }

    /// Parse safetensors bytes held in memory.
    pub fn from_safetensors_bytes(data: Vec<u8>) -> Result<Self> {
        let (header, meta) = safetensors::SafeTensors::read_metadata(&data)
            .map_err(|e| ModelError::format("safetensors", e.to_string()))?;
        let base = header
            .checked_add(8)
            .ok_or_else(|| ModelError::format("safetensors", "header length overflows"))?;
        let mut index = BTreeMap::new();
        for (name, info) in meta.tensors() {
            let (a, b) = info.data_offsets;
            let (Some(a), Some(b)) = (base.checked_add(a), base.checked_add(b)) else {
                return Err(ModelError::format(
                    "safetensors",
                    format!("tensor {name}: offsets overflow"),
                ));
            };
            index.insert(name, (info.dtype, info.shape.clone(), (a, b)));
        }
        Ok(Weights {
            src: Source::Safetensors { data, index },
            desc: "safetensors bytes".into(),
        })
    }

    /// Read a GGUF file.
    pub fn from_gguf_file(path: &Path) -> Result<Self> {
        let g = Gguf::open(path)?;
        Ok(Weights {
            src: Source::Gguf(Box::new(g)),
            desc: format!("GGUF file {}", path.display()),
        })
    }

    /// Wrap a parsed GGUF.
    pub fn from_gguf(g: Gguf) -> Self {
        Self::from_gguf_described(g, "GGUF".into())
    }

    /// Wrap a parsed GGUF, with the description used in messages.
    pub(crate) fn from_gguf_described(g: Gguf, desc: String) -> Self {
        Weights {
            src: Source::Gguf(Box::new(g)),
            desc,
        }
    }

    /// Deterministic synthetic weights: every name exists, with the shape asked for.
    ///
    /// Values depend only on `(seed, name, shape)`. Norm gains are 1 + N(0, 0.02²), norm
    /// shifts and biases N(0, 0.02²), embeddings and linear weights N(0, 0.02²) (the usual
    /// initialiser range), MPNet's relative bias N(0, 0.1²); all truncated at ±4σ.
    pub fn synthetic(seed: u64) -> Self {
        Weights {
            src: Source::Synthetic { seed },
            desc: format!("synthetic weights (seed {seed})"),
        }
    }

    /// In-memory tensors (tests, or weights built by other code).
    pub fn from_map(map: BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Result<Self> {
        for (k, (s, v)) in &map {
            if s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(v.len()) {
                return Err(ModelError::ShapeMismatch {
                    name: k.clone(),
                    expected: s.clone(),
                    found: vec![v.len()],
                });
            }
        }
        Ok(Weights {
            src: Source::Map(map),
            desc: "in-memory map".into(),
        })
    }

    /// Several stores seen as one (the shards of a checkpoint), where `rename` maps a
    /// canonical name (as [`crate::arch`] asks for it) to the name stored in the parts. A
    /// name is looked up in the parts in order; the first holding it wins.
    pub fn composite(parts: Vec<Weights>, rename: BTreeMap<String, String>, desc: String) -> Self {
        Weights {
            src: Source::Composite { parts, rename },
            desc,
        }
    }

    /// The part of a composite store holding `name` (after renaming), and the name to ask it.
    fn part_for(&self, name: &str) -> Option<(&Weights, String)> {
        let Source::Composite { parts, rename } = &self.src else {
            return None;
        };
        let n = rename
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string());
        parts
            .iter()
            .find(|p| p.resolve(&n).is_some())
            .map(|p| (p, n))
    }

    /// What this store reads from (for messages).
    pub fn description(&self) -> &str {
        &self.desc
    }

    /// Is this the synthetic source?
    pub fn is_synthetic(&self) -> bool {
        matches!(self.src, Source::Synthetic { .. })
    }

    /// The parsed GGUF, if this store reads one (for its metadata and tokenizer).
    pub fn gguf(&self) -> Option<&Gguf> {
        match &self.src {
            Source::Gguf(g) => Some(g),
            _ => None,
        }
    }

    /// Names of all stored tensors (empty for synthetic weights).
    pub fn names(&self) -> Vec<String> {
        match &self.src {
            Source::Safetensors { index, .. } => index.keys().cloned().collect(),
            Source::Gguf(g) => g.tensors.iter().map(|t| t.name.clone()).collect(),
            Source::Synthetic { .. } => Vec::new(),
            Source::Map(m) => m.keys().cloned().collect(),
            Source::Composite { parts, .. } => parts.iter().flat_map(|p| p.names()).collect(),
        }
    }

    fn stored_shape(&self, name: &str) -> Option<Vec<usize>> {
        match &self.src {
            Source::Safetensors { index, .. } => index.get(name).map(|e| e.1.clone()),
            Source::Gguf(g) => g.tensor_info(name).map(|t| t.shape.clone()),
            Source::Synthetic { .. } => None,
            Source::Map(m) => m.get(name).map(|e| e.0.clone()),
            Source::Composite { .. } => self.part_for(name).and_then(|(p, n)| p.shape(&n)),
        }
    }

    /// The stored name for `name`, trying common prefixes (`bert.`, `mpnet.`, ...).
    fn resolve(&self, name: &str) -> Option<String> {
        if self.stored_shape(name).is_some() {
            return Some(name.to_string());
        }
        PREFIXES
            .iter()
            .map(|p| format!("{p}{name}"))
            .find(|n| self.stored_shape(n).is_some())
    }

    /// Does the store hold `name` (synthetic: always)?
    pub fn contains(&self, name: &str) -> bool {
        self.is_synthetic() || self.resolve(name).is_some()
    }

    /// Row-major shape of a stored tensor.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.resolve(name).and_then(|n| self.stored_shape(&n))
    }

    /// The tensor `name` as f32, row-major, checked to have shape `expected`.
    ///
    /// A stored 1-D tensor matches an expected shape with the same element count only if the
    /// shapes are equal; no implicit reshaping happens.
    pub fn get(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        if let Source::Synthetic { seed } = &self.src {
            return Ok(synthetic_tensor(*seed, name, expected));
        }
        if let Source::Composite { .. } = &self.src {
            let (p, n) = self
                .part_for(name)
                .ok_or_else(|| ModelError::MissingTensor {
                    name: name.into(),
                    expected: expected.to_vec(),
                    source_desc: self.desc.clone(),
                })?;
            return p.get(&n, expected).map_err(|e| match e {
                ModelError::ShapeMismatch {
                    expected, found, ..
                } => ModelError::ShapeMismatch {
                    name: n.clone(),
                    expected,
                    found,
                },
                other => other,
            });
        }
        let key = self
            .resolve(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.into(),
                expected: expected.to_vec(),
                source_desc: self.desc.clone(),
            })?;
        let found = self.stored_shape(&key).unwrap_or_default();
        if found != expected {
            return Err(ModelError::ShapeMismatch {
                name: name.into(),
                expected: expected.to_vec(),
                found,
            });
        }
        match &self.src {
            Source::Safetensors { data, index } => {
                let Some((dtype, shape, (a, b))) = index.get(&key) else {
                    return Err(ModelError::MissingTensor {
                        name: key,
                        expected: expected.to_vec(),
                        source_desc: self.desc.clone(),
                    });
                };
                let n = shape
                    .iter()
                    .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                    .ok_or_else(|| {
                        ModelError::format("safetensors", format!("tensor {key}: shape overflows"))
                    })?;
                let bytes = data.get(*a..*b).ok_or_else(|| {
                    ModelError::format("safetensors", format!("tensor {key} out of bounds"))
                })?;
                decode_st(&key, *dtype, bytes, n)
            }
            Source::Gguf(g) => {
                let t = g
                    .tensor_info(&key)
                    .ok_or_else(|| ModelError::MissingTensor {
                        name: key.clone(),
                        expected: expected.to_vec(),
                        source_desc: self.desc.clone(),
                    })?;
                g.dequantize(t)
            }
            Source::Map(m) => {
                m.get(&key)
                    .map(|e| e.1.clone())
                    .ok_or_else(|| ModelError::MissingTensor {
                        name: key.clone(),
                        expected: expected.to_vec(),
                        source_desc: self.desc.clone(),
                    })
            }
            Source::Synthetic { .. } | Source::Composite { .. } => unreachable!(),
        }
    }

    /// Like [`Weights::get`], converted to f64.
    pub fn get_f64(&self, name: &str, expected: &[usize]) -> Result<Vec<f64>> {
        Ok(self
            .get(name, expected)?
            .into_iter()
            .map(f64::from)
            .collect())
    }

    /// Check that every `(name, shape)` is present with that shape (reports the first error).
    pub fn check(&self, expected: &[(String, Vec<usize>)]) -> Result<()> {
        if self.is_synthetic() {
            return Ok(());
        }
        for (n, s) in expected {
            let key = self.resolve(n).ok_or_else(|| ModelError::MissingTensor {
                name: n.clone(),
                expected: s.clone(),
                source_desc: self.desc.clone(),
            })?;
            let found = self.stored_shape(&key).unwrap_or_default();
            if &found != s {
                return Err(ModelError::ShapeMismatch {
                    name: n.clone(),
                    expected: s.clone(),
                    found,
                });
            }
        }
        Ok(())
    }
}

fn decode_st(name: &str, dtype: safetensors::Dtype, b: &[u8], n: usize) -> Result<Vec<f32>> {
    use safetensors::Dtype;
    let width = match dtype {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        other => {
            return Err(ModelError::UnsupportedDtype {
                name: name.into(),
                dtype: format!("{other:?}"),
            })
        }
    };
    if n.checked_mul(width) != Some(b.len()) {
        return Err(ModelError::format(
            "safetensors",
            format!("tensor {name}: {} bytes for {n} elements", b.len()),
        ));
    }
    Ok(match dtype {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    })
}

/// SplitMix64 step: a small, well-mixed deterministic generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv1a(s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How a synthetic tensor is distributed, judged from its name: (mean, std).
fn synthetic_law(name: &str) -> (f32, f32) {
    let lname = name.to_ascii_lowercase();
    let is_norm = lname.contains("norm") || lname.contains("ln_");
    let is_gain = lname.ends_with(".weight") || lname.ends_with(".gamma");
    if lname.contains("relative_attention_bias") {
        (0.0, 0.1)
    } else if is_norm && is_gain {
        (1.0, 0.02)
    } else {
        (0.0, 0.02)
    }
}

/// Deterministic synthetic tensor; generated in parallel chunks, each seeded by its index, so
/// the values do not depend on the thread count.
pub fn synthetic_tensor(seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let n: usize = shape.iter().product();
    let (mean, std) = synthetic_law(name);
    let mut key = seed ^ fnv1a(name).rotate_left(17);
    for &d in shape {
        key = splitmix(&mut (key ^ d as u64));
    }
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, ch)| {
        let mut st = key ^ (ci as u64).wrapping_mul(0xd6e8_feb8_6659_fd93);
        splitmix(&mut st);
        let mut i = 0;
        while i < ch.len() {
            // Box–Muller: two normals per pair of uniforms.
            let u1 = ((splitmix(&mut st) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let u2 = (splitmix(&mut st) >> 11) as f64 / (1u64 << 53) as f64;
            let r = (-2.0 * u1.ln()).sqrt();
            let t = 2.0 * std::f64::consts::PI * u2;
            for z in [r * t.cos(), r * t.sin()] {
                if i < ch.len() {
                    ch[i] = mean + std * z.clamp(-4.0, 4.0) as f32;
                    i += 1;
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st_bytes() -> Vec<u8> {
        use safetensors::tensor::TensorView;
        use safetensors::Dtype;
        let a: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let h: Vec<u8> = [0.5f32, -1.25]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bf: Vec<u8> = [3.0f32, -0.5]
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        let views = vec![
            (
                "bert.a.weight",
                TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap(),
            ),
            ("h", TensorView::new(Dtype::F16, vec![2], &h).unwrap()),
            ("b", TensorView::new(Dtype::BF16, vec![2], &bf).unwrap()),
        ];
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn safetensors_dtypes_prefix_and_errors() {
        let w = Weights::from_safetensors_bytes(st_bytes()).unwrap();
        assert_eq!(
            w.get("a.weight", &[2, 3]).unwrap(),
            vec![1., 2., 3., 4., 5., 6.]
        );
        assert_eq!(w.get("h", &[2]).unwrap(), vec![0.5, -1.25]);
        assert_eq!(w.get("b", &[2]).unwrap(), vec![3.0, -0.5]);
        let e = w.get("a.weight", &[3, 2]).unwrap_err().to_string();
        assert!(e.contains("a.weight") && e.contains("[3, 2]"), "{e}");
        let e = w.get("missing.bias", &[7]).unwrap_err().to_string();
        assert!(e.contains("missing.bias") && e.contains("[7]"), "{e}");
    }

    #[test]
    fn gguf_source() {
        let (bytes, want, _) = crate::gguf::tests::tiny_gguf();
        let w = Weights::from_gguf(Gguf::parse(bytes).unwrap());
        assert_eq!(w.get("w", &[2, 32]).unwrap(), want[..64].to_vec());
        assert!(w.get("w", &[32, 2]).is_err());
    }

    #[test]
    fn synthetic_is_deterministic_and_realistic() {
        let w = Weights::synthetic(7);
        let a = w
            .get("encoder.layer.0.attention.self.query.weight", &[64, 64])
            .unwrap();
        let b = w
            .get("encoder.layer.0.attention.self.query.weight", &[64, 64])
            .unwrap();
        assert_eq!(a, b);
        let c = w
            .get("encoder.layer.1.attention.self.query.weight", &[64, 64])
            .unwrap();
        assert_ne!(a, c);
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 0.002 && (var.sqrt() - 0.02).abs() < 0.002,
            "{mean} {var}"
        );
        let g = w
            .get("encoder.layer.0.output.LayerNorm.weight", &[256])
            .unwrap();
        assert!(g.iter().all(|&x| (x - 1.0).abs() <= 0.08));
        let g = w.get("blk.0.attn_norm.weight", &[256]).unwrap();
        assert!(g.iter().all(|&x| (x - 1.0).abs() <= 0.08));
        let bta = w.get("h.0.ln_1.bias", &[256]).unwrap();
        assert!(bta.iter().all(|&x| x.abs() <= 0.08));
        assert_ne!(
            Weights::synthetic(8).get("x", &[16]).unwrap(),
            w.get("x", &[16]).unwrap()
        );
    }
}
