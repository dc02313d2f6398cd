//! The `.gw` front end on raw bytes: loading, parsing, checking, lowering
//! and the embedded tests, with what `gw_fuzz::gw_config` asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gw_fuzz::gw_config(data));
