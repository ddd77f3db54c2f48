//! See `sip_fuzz::framing`: the framing parser on arbitrary bytes, then everything built on it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(sip_fuzz::framing(data));
});
