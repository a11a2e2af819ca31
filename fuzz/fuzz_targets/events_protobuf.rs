//! The protobuf decoders over any bytes (see `omnilog_fuzz::protobuf`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| omnilog_fuzz::protobuf(bytes));
