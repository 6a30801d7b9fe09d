//! Share and vector files (suf-cli).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_cli::fuzz::vector_file(data));
