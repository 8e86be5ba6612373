#![no_main]
//! Fuzz target `frame_codec`: a thin wrapper; the body is `chartvault_fuzz::targets::frame_codec`
//! (shared with the corpus tests in `fuzzcheck/`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chartvault_fuzz::targets::frame_codec(data));
