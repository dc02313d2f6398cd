//! The PROXY protocol header of a `proxy_protocol` listener, framed and
//! parsed (`gw_runtime::fuzz_proxy_header`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gw_fuzz::proxy_header(data));
