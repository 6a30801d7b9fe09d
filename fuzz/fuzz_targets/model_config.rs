//! Hugging Face config.json (suf-models).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_models::fuzz::config(data));
