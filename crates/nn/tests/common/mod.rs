//! Shared by the model-family tests: one-block configurations small enough for exhaustive
//! two-party runs.

use suf_models::{config::zoo, ModelConfig};

/// A one-block, 16-wide version of the zoo model `name` (`"mpnet"`: bert-base's shape with
/// MPNet's relative positions).
pub fn tiny(name: &str) -> ModelConfig {
    let mut c = zoo(if name == "mpnet" { "bert-base" } else { name }).unwrap();
    if name == "mpnet" {
        c.family = suf_models::Family::MpNet;
        c.rel_buckets = 32;
        c.rel_max_distance = 128;
        c.pos_offset = 2;
        c.type_vocab = 0;
        c.norm_eps = 1e-5;
    }
    c.layers = 1;
    c.hidden = 16;
    c.heads = 2;
    c.kv_heads = if name.starts_with("llama") { 1 } else { 2 };
    c.head_dim = 8;
    c.ffn = 32;
    c.vocab = 40;
    c.max_pos = 64;
    c
}
