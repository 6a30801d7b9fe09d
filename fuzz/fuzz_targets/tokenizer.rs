//! Tokenizer input: arbitrary text through the byte-level BPE (suf-models).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_models::fuzz::tokenizer(data));
