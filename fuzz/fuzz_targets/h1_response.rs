//! The upstream response reader of the gateway's own HTTP/1.1 client, head
//! and body (`gw_runtime::fuzz_response_reader`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gw_fuzz::h1_response(data));
