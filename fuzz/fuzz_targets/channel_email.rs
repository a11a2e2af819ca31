//! The `email` channel's parser over any bytes (see `omnilog_fuzz::channel`).
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| omnilog_fuzz::channel("email", body));
