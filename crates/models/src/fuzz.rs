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
    let g = Gguf::parse(sample_gguf(false)).ok()?;
    Tokenizer::from_gguf(&g).ok()
}

/// A small GGUF: the byte-level tokenizer's metadata and, with `model`, a two-block Llama's
/// metadata and three tensors (F32, F16, Q8_0). Seeds for the `gguf` target.
pub fn sample_gguf(model: bool) -> Vec<u8> {
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
        // Code points below 0x200 are all valid chars.
        chars.push(c.unwrap_or('?'));
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
    let llama: Vec<(&str, MetaValue)> = if model {
        vec![
            ("general.architecture", MetaValue::Str("llama".into())),
            ("llama.embedding_length", MetaValue::U(8)),
            ("llama.attention.head_count", MetaValue::U(2)),
            ("llama.attention.head_count_kv", MetaValue::U(1)),
            ("llama.block_count", MetaValue::U(2)),
            ("llama.feed_forward_length", MetaValue::U(16)),
            ("llama.context_length", MetaValue::U(32)),
            ("llama.rope.freq_base", MetaValue::F(10000.0)),
            ("llama.vocab_size", MetaValue::U(270)),
        ]
    } else {
        Vec::new()
    };
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend((if model { 3u64 } else { 0 }).to_le_bytes());
    b.extend((5 + llama.len() as u64).to_le_bytes());
    let kv = |b: &mut Vec<u8>, k: &str, v: &MetaValue| {
        put(b, k);
        encode_meta(b, v);
    };
    for (k, v) in &llama {
        kv(&mut b, k, v);
    }
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
    if model {
        // Tensor table: name, dims (fastest first), type, offset; then the aligned data.
        let mut data = Vec::new();
        let mut table = |b: &mut Vec<u8>, name: &str, dims: &[u64], ty: u32, bytes: Vec<u8>| {
            put(b, name);
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(ty.to_le_bytes());
            b.extend((data.len() as u64).to_le_bytes());
            data.extend(bytes);
            while data.len() % 32 != 0 {
                data.push(0);
            }
        };
        let f32s: Vec<u8> = (0..8)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        table(&mut b, "output_norm.weight", &[8], 0, f32s);
        let f16s: Vec<u8> = (0..16u16)
            .flat_map(|i| (0x3c00 + i).to_le_bytes())
            .collect();
        table(&mut b, "blk.0.attn_norm.weight", &[8, 2], 1, f16s);
        let mut q8 = vec![0x00, 0x3c];
        q8.extend((0..32u8).map(|i| i.wrapping_sub(16)));
        table(&mut b, "blk.0.ffn_gate.weight", &[32], 8, q8);
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend(data);
    }
    b
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
            MetaValue::U(x) => b.extend((*x as u32).to_le_bytes()),
            MetaValue::F(x) => b.extend((*x as f32).to_le_bytes()),
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
        MetaValue::U(_) => 4,
        MetaValue::F(_) => 6,
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

/// Seed inputs per target (`gguf`, `safetensors`, `model_config`, `tokenizer`), for the
/// fuzz corpus.
pub fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let header = br#"{"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend(1.5f32.to_le_bytes());
    st.extend((-2.0f32).to_le_bytes());
    st.extend([0x80, 0x3f, 0x00, 0x40]);
    let configs: [&[u8]; 4] = [
        br#"{"model_type":"bert","hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,"intermediate_size":16,"vocab_size":10,"max_position_embeddings":8,"type_vocab_size":2,"layer_norm_eps":1e-12,"hidden_act":"gelu"}"#,
        br#"{"model_type":"mpnet","hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,"intermediate_size":16,"vocab_size":10,"max_position_embeddings":16,"relative_attention_num_buckets":32,"pad_token_id":1}"#,
        br#"{"model_type":"gpt2","n_embd":8,"n_head":2,"n_layer":1,"vocab_size":10,"n_positions":8,"activation_function":"gelu_new"}"#,
        br#"{"model_type":"llama","hidden_size":8,"num_attention_heads":2,"num_key_value_heads":1,"num_hidden_layers":1,"intermediate_size":16,"vocab_size":10,"max_position_embeddings":8,"rope_theta":10000.0,"tie_word_embeddings":true}"#,
    ];
    let mut v = vec![
        ("gguf", sample_gguf(true)),
        ("gguf", sample_gguf(false)),
        ("safetensors", st),
        (
            "tokenizer",
            "The theabc 12345 <|im_start|>hi\n\t\u{e9}"
                .as_bytes()
                .to_vec(),
        ),
        ("tokenizer", "Ġ spaces   and emoji 🙂".as_bytes().to_vec()),
    ];
    v.extend(configs.iter().map(|c| ("model_config", c.to_vec())));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_run_on_valid_inputs() {
        let (bytes, _, _) = crate::gguf::tests::tiny_gguf();
        gguf(&bytes);
        for (target, s) in samples() {
            match target {
                "gguf" => gguf(&s),
                "safetensors" => safetensors(&s),
                "model_config" => config(&s),
                _ => tokenizer(&s),
            }
        }
        // The samples are accepted, so they lead the fuzzer past the parsers' front doors.
        let g = Gguf::parse(sample_gguf(true)).unwrap();
        assert_eq!(g.tensors.len(), 3);
        for t in &g.tensors {
            assert_eq!(g.dequantize(t).unwrap().len(), t.numel());
        }
        let cfg = ModelConfig::from_gguf("m", &g).unwrap();
        assert_eq!((cfg.layers, cfg.kv_heads), (2, 1));
        let st = &samples()[2].1;
        let w = Weights::from_safetensors_bytes(st.clone()).unwrap();
        assert_eq!(w.get("a.weight", &[2]).unwrap(), vec![1.5, -2.0]);
        for (t, c) in samples() {
            if t == "model_config" {
                ModelConfig::from_hf_json("m", std::str::from_utf8(&c).unwrap()).unwrap();
            }
        }
        tokenizer("the abc <|endoftext|> 123 é\u{0}".as_bytes());
        tokenizer(&[0xff, 0xfe, b'a']);
        config(br#"{"model_type":"bert","hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,"intermediate_size":16,"vocab_size":10,"max_position_embeddings":8}"#);
        safetensors(b"not safetensors");
        let tk = byte_level_tokenizer().unwrap();
        assert_eq!(tk.ids("the", false).unwrap().len(), 1);
        assert_eq!(tk.ids("<|im_start|>", false).unwrap(), vec![1]);
    }
}
