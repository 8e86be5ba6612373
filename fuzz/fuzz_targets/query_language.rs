#![no_main]
//! Fuzz target `query_language`: a thin wrapper; the body is `chartvault_fuzz::targets::query_language`
//! (shared with the corpus tests in `fuzzcheck/`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chartvault_fuzz::targets::query_language(data));
