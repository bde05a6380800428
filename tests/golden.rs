//! Golden expositions, as node_exporter keeps them: the whole `/metrics`
//! output for each built-in scenario is diffed against a committed file, so
//! any change to the public metric contract shows in review.
//!
//! After an intended change: `UPDATE_GOLDEN=1 cargo test --test golden`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use mig_exporter::cli::Cli;
use mig_exporter::expose::metrics::{self, Format};
use mig_exporter::model::NodeSnapshot;
use mig_exporter::poll::Published;
use mig_exporter::source::{scenarios, sim};

/// The time every golden poll happens at, so drift timestamps are fixed.
const POLL_TIME: f64 = 1_750_000_000.0;

/// The snapshot of a scenario without the exporter's own timing series, which
/// differ on every run. Drift is judged as `serve --simulate` judges it: no
/// desired config, and the last-known-good state the scenario implies
/// (`h100-rebooted`: `h100-mixed` before the reboot), polled once at `POLL_TIME`.
fn exposition(scenario: &str, format: Format) -> String {
    let reading = sim::reading_from_world(&scenarios::build(scenario).unwrap());
    let cli = Cli::try_parse_from(["mig-exporter", "--simulate", scenario]).unwrap();
    let (mut tracker, _) = cli.serve.drift.tracker(&cli.serve.source, true).unwrap();
    let drift = tracker.observe(reading.boot_id.as_deref(), &reading.gpus, POLL_TIME);
    let published = Arc::new(Published::default());
    published.publish(NodeSnapshot {
        hostname: reading.hostname,
        boot_id: reading.boot_id,
        driver_version: reading.driver_version,
        gpus: reading.gpus,
        drift,
        simulated: true,
        ..Default::default()
    });
    let text = metrics::render(&metrics::registry(published), format).unwrap();
    // build_info carries the crate version; keep goldens stable across releases.
    text.replace(env!("CARGO_PKG_VERSION"), "VERSION")
        .replace(mig_exporter::REVISION, "REVISION")
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(10)
            .map(|(i, (e, a))| format!("line {}:\n  - {e}\n  + {a}", i + 1))
            .collect();
        panic!(
            "{name} differs from the golden file ({} vs {} lines):\n{}",
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn every_scenario_matches_its_golden_exposition() {
    for (scenario, _) in scenarios::SCENARIOS {
        check(
            &format!("{scenario}.prom"),
            &exposition(scenario, Format::PrometheusText),
        );
    }
}

#[test]
fn openmetrics_matches_its_golden_exposition() {
    check(
        "h100-mixed.openmetrics",
        &exposition("h100-mixed", Format::OpenMetrics),
    );
}
