//! The link handshake, both parties' view (suf-net).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| suf_net::fuzz::hello(data));
