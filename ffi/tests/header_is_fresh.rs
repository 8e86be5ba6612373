//! The committed C header must be what cbindgen generates from the current source.
//! Run with CHARTVAULT_BLESS_HEADER=1 to rewrite it after changing the API.

use std::path::PathBuf;

#[test]
fn committed_header_matches_cbindgen_output() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = crate_dir.join("include/chartvault.h");
    if std::env::var_os("CHARTVAULT_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/chartvault.h is stale: regenerate it with `CHARTVAULT_BLESS_HEADER=1 cargo test -p chartvault-ffi --test header_is_fresh` and commit it"
    );
}
