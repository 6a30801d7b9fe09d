//! safetensors headers and tensors (suf-models).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_models::fuzz::safetensors(data));
