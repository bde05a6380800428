//! The metric names of the exporter's contract, for the tests that check
//! dashboards and alert rules use only those (tests/alert_rules.rs,
//! tests/monitoring.rs).
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Series of the contract that no source produces yet (none since the
/// kubelet source). Dashboards may query them; the end-to-end test cannot
/// see them.
pub const NOT_YET_EXPORTED: [&str; 0] = [];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Metric names the exporter defines: the quoted names of
/// src/expose/metrics.rs with the suffixes their types add, the generated
/// activity families as the golden expositions show them, and
/// [`NOT_YET_EXPORTED`].
pub fn contract_names() -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    let metrics =
        std::fs::read_to_string(root().join("src/expose/metrics.rs")).expect("src/expose/metrics.rs");
    // Metric names are the quoted identifiers; text between literals is never one.
    for literal in metrics.split('"') {
        let identifier = literal.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if identifier && (literal.starts_with("nvidia_") || literal.starts_with("mig_exporter_")) {
            for suffix in ["", "_total", "_bucket", "_sum", "_count"] {
                known.insert(format!("{literal}{suffix}"));
            }
        }
    }
    for golden in std::fs::read_dir(root().join("tests/golden")).expect("tests/golden") {
        let text = std::fs::read_to_string(golden.unwrap().path()).unwrap();
        known.extend(metric_names(&text));
    }
    known.extend(NOT_YET_EXPORTED.iter().map(|s| s.to_string()));
    known
}

/// The exporter's metric names (`nvidia_*`, `mig_exporter_*`) a text mentions.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("nvidia_") || w.starts_with("mig_exporter_"))
        .map(str::to_string)
        .collect()
}
