//! The router on what a client controls: method, host and path looked up
//! in the food-court example's plan (`gw_fuzz::route`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gw_fuzz::route(data));
