//! The bodies of chartvault's fuzz targets, compiled on stable Rust so that every seed
//! corpus (`fuzz/corpus/<target>/`) and every past crash (`fuzz/regressions/<target>/`)
//! runs as an ordinary test with `cargo test` (see `tests/corpus.rs`).
//!
//! The code lives in `fuzz/src/targets.rs` and is shared with the libFuzzer targets of
//! the `fuzz/` workspace (which the root workspace excludes).

#[path = "../../fuzz/src/targets.rs"]
pub mod targets;
