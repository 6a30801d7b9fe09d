//! Key streams: `PartyStream::from_bytes` and the consumption a Party run makes (suf-runtime,
//! through `suf_cli::fuzz::keystream`, which documents the input layout).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_cli::fuzz::keystream(data));
