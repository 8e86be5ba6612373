#![no_main]
//! Fuzz target `ops_model`: a thin wrapper; the body is `chartvault_fuzz::targets::ops_model`
//! (shared with the corpus tests in `fuzzcheck/`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chartvault_fuzz::targets::ops_model(data));
