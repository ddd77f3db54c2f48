//! `Message::parse` on arbitrary bytes; when it parses, every accessor and iterator.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(sip_fuzz::parse_message(data));
});
