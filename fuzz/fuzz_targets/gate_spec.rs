//! The compiler's spec format, JSON, checked against the two-party protocol (suf-compiler,
//! through `suf_cli::fuzz::gate_spec`, which documents the input layout).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_cli::fuzz::gate_spec(data));
