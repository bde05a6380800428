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

/// Metric names the exporter defines: every sample name of the metric
/// contract (src/expose/contract.rs) and [`NOT_YET_EXPORTED`].
pub fn contract_names() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = mig_exporter::expose::contract::sample_names()
        .into_iter()
        .collect();
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
