//! The HTTP/1.1 request head reader of the gateway's own server loop
//! (`gw_runtime::fuzz_request_reader`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gw_fuzz::h1_request(data));
