//! The committed DCGM bindings are exactly what bindgen makes of the header.
//! Runs only with `--features dcgm-bindgen` (needs libclang; scripts/test.sh
//! installs it). `DCGM_BINDINGS_UPDATE=1` rewrites the committed file instead.
#![cfg(feature = "dcgm-bindgen")]

use std::path::Path;

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/dcgm_bindings.rs"));

#[test]
fn committed_bindings_match_the_header() {
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/source/dcgm/bindings.rs");
    if std::env::var_os("DCGM_BINDINGS_UPDATE").is_some_and(|v| v == "1") {
        std::fs::write(&committed_path, GENERATED).expect("write the committed bindings");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).expect("read the committed bindings");
    if committed != GENERATED {
        let first = committed
            .lines()
            .zip(GENERATED.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(GENERATED.lines().count()));
        panic!(
            "{} differs from what bindgen generates from dcgm_api.h (first at line {}):\n  committed: {:?}\n  generated: {:?}\n\
             Regenerate with: DCGM_BINDINGS_UPDATE=1 cargo test -p mig-exporter --features dcgm-bindgen --test dcgm_bindings",
            committed_path.display(),
            first + 1,
            committed.lines().nth(first),
            GENERATED.lines().nth(first),
        );
    }
}
