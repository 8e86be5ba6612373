#![no_main]
//! Fuzz target `document_json`: a thin wrapper; the body is `chartvault_fuzz::targets::document_json`
//! (shared with the corpus tests in `fuzzcheck/`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chartvault_fuzz::targets::document_json(data));
