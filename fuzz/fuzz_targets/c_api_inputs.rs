#![no_main]
//! Fuzz target `c_api_inputs`: a thin wrapper; the body is `chartvault_fuzz::targets::c_api_inputs`
//! (shared with the corpus tests in `fuzzcheck/`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chartvault_fuzz::targets::c_api_inputs(data));
