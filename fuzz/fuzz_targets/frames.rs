//! Wire frames and bit-packed openings (suf-net).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_net::fuzz::frames(data));
