//! The canonical JSON decoder over any bytes (see `omnilog_fuzz::canonical_json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| omnilog_fuzz::canonical_json(bytes));
