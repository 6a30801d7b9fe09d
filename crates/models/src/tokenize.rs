//! Tokenizers: Hugging Face `tokenizer.json` through the `tokenizers` crate, or a byte-level
//! BPE built from a GGUF's `tokenizer.ggml.{tokens,merges,token_type}` (GPT-2 style, as
//! SmolLM2 ships it).
//!
//! Tokenization happens at the client, in the clear.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

use crate::error::{ModelError, Result};
use crate::gguf::Gguf;

fn tk_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// A tokenizer: text ↔ token ids.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Prepended on `encode(.., true)` when the model asks for it (GGUF `add_bos_token`).
    bos: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.vocab_size())
            .field("bos", &self.bos)
            .finish()
    }
}

/// Ids and attention mask of one encoded text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding (all 1: this wrapper never pads).
    pub mask: Vec<u32>,
}

impl Tokenizer {
    /// Load a `tokenizer.json`. Padding configured in the file is switched off (sequences
    /// keep their own length); truncation is kept.
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        inner.with_padding(None);
        Ok(Tokenizer { inner, bos: None })
    }

    /// Build the byte-level BPE tokenizer stored in a GGUF (`tokenizer.ggml.model = gpt2`).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = g.meta_str("tokenizer.ggml.model").unwrap_or("");
        if model != "gpt2" {
            return Err(ModelError::Tokenizer(format!(
                "GGUF tokenizer model `{model}` not supported (gpt2 byte-level BPE)"
            )));
        }
        let tokens = g
            .meta_strings("tokenizer.ggml.tokens")
            .ok_or_else(|| tk_err("GGUF has no tokenizer.ggml.tokens"))?;
        let merges = g
            .meta_strings("tokenizer.ggml.merges")
            .ok_or_else(|| tk_err("GGUF has no tokenizer.ggml.merges"))?;
        let types = g.meta_ints("tokenizer.ggml.token_type").unwrap_or_default();
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| tk_err(format!("bad merge `{m}`")))
            })
            .collect::<Result<_>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tk_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre: PreTokenizerWrapper = match g.meta_str("tokenizer.ggml.pre") {
            // SmolLM splits digits one by one before the GPT-2 regex.
            Some("smollm") => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            _ => byte_level.into(),
        };
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevel::default()));
        // Control (3) and user-defined (4) tokens are matched whole, before BPE.
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter().chain(std::iter::repeat(&1)))
            .filter(|(_, &ty)| ty == 3 || ty == 4)
            .map(|(t, _)| AddedToken::from(t.to_string(), true))
            .collect();
        inner.add_special_tokens(&specials);
        let bos = if g.meta_bool("tokenizer.ggml.add_bos_token").unwrap_or(false) {
            g.meta_u64("tokenizer.ggml.bos_token_id").map(|x| x as u32)
        } else {
            None
        };
        Ok(Tokenizer { inner, bos })
    }

    /// Encode one text; `special` adds the model's special tokens (`[CLS]`/`[SEP]`, `<s>`/`</s>`,
    /// or BOS where the GGUF asks for it).
    pub fn encode(&self, text: &str, special: bool) -> Result<Encoded> {
        let e = self.inner.encode(text, special).map_err(tk_err)?;
        let mut ids = e.get_ids().to_vec();
        let mut mask = e.get_attention_mask().to_vec();
        if special {
            if let Some(b) = self.bos {
                if ids.first() != Some(&b) {
                    ids.insert(0, b);
                    mask.insert(0, 1);
                }
            }
        }
        Ok(Encoded { ids, mask })
    }

    /// Token ids of one text (see [`Tokenizer::encode`]).
    pub fn ids(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self.encode(text, special)?.ids)
    }

    /// Decode ids back to text.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tk_err)
    }

    /// The string of one token id, as the vocabulary stores it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a vocabulary string.
    pub fn token_to_id(&self, tok: &str) -> Option<u32> {
        self.inner.token_to_id(tok)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Limit encoded length to `max_len` tokens (special tokens included).
    pub fn with_max_len(mut self, max_len: usize) -> Result<Self> {
        self.inner
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(tk_err)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_bpe_from_gguf_metadata() {
        // Build a GGUF with a 6-token byte-level vocabulary and check round trips.
        use crate::gguf::MetaValue;
        let mut b = Vec::new();
        let put = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        put(&mut b, "tokenizer.ggml.model");
        b.extend(8u32.to_le_bytes());
        put(&mut b, "gpt2");
        let toks = ["<|endoftext|>", "a", "b", "Ġ", "ab", "Ġab"];
        put(&mut b, "tokenizer.ggml.tokens");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend((toks.len() as u64).to_le_bytes());
        for t in toks {
            put(&mut b, t);
        }
        put(&mut b, "tokenizer.ggml.merges");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        put(&mut b, "a b");
        put(&mut b, "Ġ ab");
        put(&mut b, "tokenizer.ggml.token_type");
        b.extend(9u32.to_le_bytes());
        b.extend(5u32.to_le_bytes());
        b.extend((toks.len() as u64).to_le_bytes());
        for t in [3i32, 1, 1, 1, 1, 1] {
            b.extend(t.to_le_bytes());
        }
        let g = Gguf::parse(b).unwrap();
        assert!(matches!(
            g.meta("tokenizer.ggml.model"),
            Some(MetaValue::Str(_))
        ));
        let t = Tokenizer::from_gguf(&g).unwrap();
        assert_eq!(t.ids("ab ab", false).unwrap(), vec![4, 5]);
        assert_eq!(t.ids("ab<|endoftext|>", false).unwrap(), vec![4, 0]);
        assert_eq!(t.decode(&[4, 5], false).unwrap(), "ab ab");
    }
}
