//! Entry points for the cargo-fuzz targets in the repository's `fuzz/` folder (hidden from
//! the documentation; not an API). Each feeds arbitrary bytes to one parser of model files and
//! then uses what it accepted the way the program would; a panic is a finding.

use crate::arch;
use crate::config::ModelConfig;
use crate::gguf::Gguf;
use crate::tokenize::Tokenizer;
use crate::weights::Weights;

/// Largest tensor (elements) a target decodes, so that one input cannot ask for gigabytes.
const MAX_ELEMS: usize = 1 << 20;

/// safetensors bytes: parse, then read every tensor at its stored shape.
pub fn safetensors(data: &[u8]) {
    let Ok(w) = Weights::from_safetensors_bytes(data.to_vec()) else {
        return;
    };
    for name in w.names() {
        let Some(shape) = w.shape(&name) else {
            panic!("listed tensor {name} has no shape");
        };
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n.is_some_and(|n| n <= MAX_ELEMS) {
            if let Ok(v) = w.get(&name, &shape) {
                assert_eq!(Some(v.len()), n);
            }
        }
    }
}

/// GGUF bytes: parse, dequantise every tensor, and build the config and the tokenizer from
/// the metadata as `suf_models::load` does.
pub fn gguf(data: &[u8]) {
    let Ok(g) = Gguf::parse(data.to_vec()) else {
        return;
    };
    for t in g.tensors.clone() {
        if t.numel() <= MAX_ELEMS {
            if let Ok(v) = g.dequantize(&t) {
                assert_eq!(v.len(), t.numel());
            }
        }
    }
    if let Ok(cfg) = ModelConfig::from_gguf("fuzz", &g) {
        let _ = arch::expected_tensors(&cfg);
    }
    if let Ok(tk) = Tokenizer::from_gguf(&g) {
        if let Ok(ids) = tk.ids("a b ab 12", true) {
            let _ = tk.decode(&ids, false);
        }
    }
}

/// A Hugging Face `config.json`: parse and validate, then list the tensors the model needs
/// and compute the position tables the forward pass would (for a short sequence).
pub fn config(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = ModelConfig::from_hf_json("fuzz", s) else {
        return;
    };
    assert!(cfg.validate().is_ok());
    let _ = arch::expected_tensors(&cfg);
    let len = cfg.max_pos.min(8);
    if cfg.family == crate::Family::MpNet {
        let table = vec![0f32; cfg.rel_buckets * cfg.heads];
        assert_eq!(
            arch::mpnet_position_bias(&cfg, &table, len).len(),
            cfg.heads * len * len
        );
    }
    if cfg.family == crate::Family::Llama && cfg.head_dim <= 1 << 12 {
        let (c, _) = arch::rope_tables(&cfg, len);
        assert_eq!(c.len(), len * (cfg.head_dim / 2));
    }
}

/// A byte-level BPE tokenizer built like SmolLM2's (from GGUF metadata): 256 byte tokens, a
/// few merges, two special tokens.
fn byte_level_tokenizer() -> Option<Tokenizer> {
    use crate::gguf::MetaValue;
    // The GPT-2 byte-to-character table, so every byte has a token.
    let mut chars: Vec<char> = Vec::with_capacity(256);
    let mut extra = 0u32;
    for b in 0u32..256 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            char::from_u32(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra)
        };
        chars.push(c?);
    }
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into()];
    tokens.extend(chars.iter().map(|c| c.to_string()));
    let merges = ["t h", "th e", "Ġ th", "Ġth e", "a b", "ab c"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut types = vec![3i64, 3];
    types.extend(std::iter::repeat_n(1, tokens.len() - 2));
    let strs = |v: Vec<String>| MetaValue::Array(v.into_iter().map(MetaValue::Str).collect());
    let mut b = Vec::new();
    let put = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(5u64.to_le_bytes());
    let kv = |b: &mut Vec<u8>, k: &str, v: &MetaValue| {
        put(b, k);
        encode_meta(b, v);
    };
    kv(
        &mut b,
        "tokenizer.ggml.model",
        &MetaValue::Str("gpt2".into()),
    );
    kv(
        &mut b,
        "tokenizer.ggml.pre",
        &MetaValue::Str("smollm".into()),
    );
    kv(&mut b, "tokenizer.ggml.tokens", &strs(tokens));
    kv(
        &mut b,
        "tokenizer.ggml.merges",
        &strs(merges.iter().map(|m| m.to_string()).collect()),
    );
    kv(
        &mut b,
        "tokenizer.ggml.token_type",
        &MetaValue::Array(types.into_iter().map(MetaValue::I).collect()),
    );
    let g = Gguf::parse(b).ok()?;
    Tokenizer::from_gguf(&g).ok()
}

/// GGUF encoding of a metadata value (type id, then the value), for the strings, integers and
/// arrays the tokenizer needs.
fn encode_meta(b: &mut Vec<u8>, v: &crate::gguf::MetaValue) {
    use crate::gguf::MetaValue;
    fn body(b: &mut Vec<u8>, v: &MetaValue) {
        match v {
            MetaValue::Str(s) => {
                b.extend((s.len() as u64).to_le_bytes());
                b.extend(s.as_bytes());
            }
            MetaValue::I(x) => b.extend((*x as i32).to_le_bytes()),
            MetaValue::Array(a) => {
                let ety: u32 = match a.first() {
                    Some(MetaValue::I(_)) => 5,
                    _ => 8,
                };
                b.extend(ety.to_le_bytes());
                b.extend((a.len() as u64).to_le_bytes());
                for e in a {
                    body(b, e);
                }
            }
            _ => {}
        }
    }
    let ty: u32 = match v {
        MetaValue::Str(_) => 8,
        MetaValue::I(_) => 5,
        _ => 9,
    };
    b.extend(ty.to_le_bytes());
    body(b, v);
}

/// Tokenizer input: any text through a byte-level BPE (with special tokens and SmolLM's digit
/// splitting) decodes back to itself, and truncation holds its bound.
pub fn tokenizer(data: &[u8]) {
    thread_local! {
        static TK: Option<Tokenizer> = byte_level_tokenizer();
    }
    let text = String::from_utf8_lossy(data);
    TK.with(|tk| {
        let Some(tk) = tk else {
            panic!("the fuzz tokenizer could not be built");
        };
        let Ok(ids) = tk.ids(&text, false) else {
            panic!("byte-level BPE refused {text:?}");
        };
        if let Ok(back) = tk.decode(&ids, false) {
            assert_eq!(back, text);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_run_on_valid_inputs() {
        let (bytes, _, _) = crate::gguf::tests::tiny_gguf();
        gguf(&bytes);
        tokenizer("the abc <|endoftext|> 123 é\u{0}".as_bytes());
        tokenizer(&[0xff, 0xfe, b'a']);
        config(br#"{"model_type":"bert","hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,"intermediate_size":16,"vocab_size":10,"max_position_embeddings":8}"#);
        safetensors(b"not safetensors");
        let tk = byte_level_tokenizer().unwrap();
        assert_eq!(tk.ids("the", false).unwrap().len(), 1);
        assert_eq!(tk.ids("<|im_start|>", false).unwrap(), vec![1]);
    }
}
