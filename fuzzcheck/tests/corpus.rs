//! Every seed corpus (`fuzz/corpus/<target>/`) and every past crash
//! (`fuzz/regressions/<target>/`) runs through its fuzz target's body, on stable Rust,
//! as part of the README's `cargo test`. A file that makes a body panic fails the test
//! and is named in the failure.

use std::path::{Path, PathBuf};

use chartvault_fuzzcheck::targets;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz")
}

/// The inputs of `target` under `fuzz/<kind>/<target>/` (hidden files skipped), sorted.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

/// Runs every input of `target`; returns how many ran.
fn run_all(target: &str) -> usize {
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        for f in inputs(kind, target) {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let r = std::panic::catch_unwind(|| targets::run(target, &data));
            match r {
                Ok(known) => assert!(known, "no fuzz target named {target}"),
                Err(p) => {
                    eprintln!("fuzz target {target} failed on {}", f.display());
                    std::panic::resume_unwind(p);
                }
            }
            n += 1;
        }
    }
    n
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let n = run_all(stringify!($name));
                assert!(n > 0, "fuzz/corpus/{} has no seed inputs", stringify!($name));
            }
        )*

        /// Every directory under fuzz/corpus and fuzz/regressions names a target
        /// tested here, and every target is tested here.
        #[test]
        fn every_target_and_directory_is_covered() {
            let tested: &[&str] = &[$(stringify!($name)),*];
            assert_eq!(tested, targets::TARGETS);
            for kind in ["corpus", "regressions"] {
                let Ok(rd) = std::fs::read_dir(fuzz_dir().join(kind)) else { continue };
                for e in rd.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    assert!(tested.contains(&name.as_str()), "fuzz/{kind}/{name} is not a fuzz target");
                }
            }
        }
    };
}

corpus_tests!(open_file, frame_codec, body_codec, document_json, query_language, policy_file, c_api_inputs, ops_model);
