//! GGUF header, metadata, tensor table, dequantisation, config and tokenizer from metadata (suf-models).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_models::fuzz::gguf(data));
