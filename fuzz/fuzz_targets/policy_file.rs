#![no_main]
//! Fuzz target `policy_file`: a thin wrapper; the body is `chartvault_fuzz::targets::policy_file`
//! (shared with the corpus tests in `fuzzcheck/`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chartvault_fuzz::targets::policy_file(data));
