//! The bodies of chartvault's fuzz targets.
//!
//! The targets in `fuzz_targets/` are one-line wrappers around the functions of
//! [`targets`], which is free of `libfuzzer-sys` so the same code also runs every seed
//! corpus and every past crash as ordinary tests on stable Rust (`fuzzcheck/` includes
//! `src/targets.rs` by path).

pub mod targets;
