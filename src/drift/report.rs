//! `mig-exporter check`: one read of the node judged against the desired
//! config and the last-known-good state, printed as a table or JSON, with the
//! node-problem-detector plugin convention for the exit status: 0 no drift,
//! 1 drift, 2 cannot tell.

use std::fmt::Write;

use serde::Serialize;

use crate::geometry::OutputFormat;
use crate::model::{DriftFinding, DriftSnapshot, ExpectedInstances};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Drift,
    Unknown,
}

impl CheckStatus {
    pub fn exit_code(self) -> u8 {
        match self {
            CheckStatus::Ok => 0,
            CheckStatus::Drift => 1,
            CheckStatus::Unknown => 2,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub status: CheckStatus,
    /// Why the check cannot tell (status `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub hostname: String,
    pub gpus: usize,
    /// The desired config compared with (`config 'NAME' in FILE`).
    pub desired: Option<String>,
    /// Where the last-known-good state came from.
    pub last_known_good: Option<String>,
    pub findings: Vec<DriftFinding>,
    pub expected: Vec<ExpectedInstances>,
}

impl CheckReport {
    pub fn judged(
        hostname: String,
        gpus: usize,
        drift: DriftSnapshot,
        last_known_good: Option<String>,
    ) -> Self {
        CheckReport {
            status: if drift.findings.is_empty() {
                CheckStatus::Ok
            } else {
                CheckStatus::Drift
            },
            error: None,
            hostname,
            gpus,
            desired: drift.desired,
            last_known_good,
            findings: drift.findings,
            expected: drift.expected,
        }
    }

    pub fn unknown(error: String) -> Self {
        CheckReport {
            status: CheckStatus::Unknown,
            error: Some(error),
            hostname: String::new(),
            gpus: 0,
            desired: None,
            last_known_good: None,
            findings: Vec::new(),
            expected: Vec::new(),
        }
    }

    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            // Only strings, numbers and plain structs: it always serializes.
            OutputFormat::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            OutputFormat::Table => self.table(),
        }
    }

    /// The first line says it all (node-problem-detector shows it as the
    /// condition's message); the findings follow, one a line.
    fn table(&self) -> String {
        let mut out = String::new();
        match self.status {
            CheckStatus::Unknown => {
                let _ = writeln!(
                    out,
                    "UNKNOWN: cannot tell: {}",
                    self.error.as_deref().unwrap_or("unknown error")
                );
                return out;
            }
            CheckStatus::Ok => {
                let _ = writeln!(out, "OK: no MIG drift on {} GPUs of {}", self.gpus, self.hostname);
            }
            CheckStatus::Drift => {
                let mut affected: Vec<u32> = self.findings.iter().map(|f| f.gpu).collect();
                affected.dedup();
                let _ = writeln!(
                    out,
                    "DRIFT: {} finding{} on {} of {} GPUs of {}",
                    self.findings.len(),
                    if self.findings.len() == 1 { "" } else { "s" },
                    affected.len(),
                    self.gpus,
                    self.hostname
                );
            }
        }
        let _ = writeln!(
            out,
            "  desired: {}",
            self.desired
                .as_deref()
                .unwrap_or("none (no --mig.config, or no config selected)")
        );
        let _ = writeln!(
            out,
            "  last known good: {}",
            self.last_known_good.as_deref().unwrap_or("none")
        );
        if !self.findings.is_empty() {
            let _ = writeln!(out, "\n{:<4} {:<21} MESSAGE", "GPU", "REASON");
            for f in &self.findings {
                let _ = writeln!(out, "{:<4} {:<21} {}", f.gpu, f.reason.as_str(), f.message);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DriftReason;

    fn finding(gpu: u32, reason: DriftReason) -> DriftFinding {
        DriftFinding {
            gpu,
            gpu_uuid: format!("GPU-{gpu}"),
            reason,
            message: format!("GPU {gpu}: {reason}"),
            since_seconds: 1.0,
        }
    }

    #[test]
    fn statuses_map_to_the_node_problem_detector_exit_codes() {
        let ok = CheckReport::judged("n".into(), 2, DriftSnapshot::default(), None);
        assert_eq!((ok.status, ok.status.exit_code()), (CheckStatus::Ok, 0));
        let drift = DriftSnapshot {
            findings: vec![finding(0, DriftReason::MigModeLost)],
            ..Default::default()
        };
        let bad = CheckReport::judged("n".into(), 2, drift, None);
        assert_eq!((bad.status, bad.status.exit_code()), (CheckStatus::Drift, 1));
        let unknown = CheckReport::unknown("no NVML".into());
        assert_eq!(unknown.status.exit_code(), 2);
        assert_eq!(
            unknown.render(OutputFormat::Table),
            "UNKNOWN: cannot tell: no NVML\n"
        );
    }

    #[test]
    fn the_table_summarizes_first_and_lists_every_finding() {
        let drift = DriftSnapshot {
            findings: vec![
                finding(0, DriftReason::MigModeLost),
                finding(0, DriftReason::GeometryLost),
                finding(3, DriftReason::GiWithoutCi),
            ],
            desired: Some("config 'c' in /etc/mig.yaml".into()),
            ..Default::default()
        };
        let text = CheckReport::judged("node-1".into(), 8, drift, Some("/var/lib/x".into()))
            .render(OutputFormat::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "DRIFT: 3 findings on 2 of 8 GPUs of node-1");
        assert_eq!(lines[1], "  desired: config 'c' in /etc/mig.yaml");
        assert!(lines
            .iter()
            .any(|l| l.starts_with("3    gi_without_ci         GPU 3: gi_without_ci")));
        let json: serde_json::Value =
            serde_json::from_str(&CheckReport::unknown("x".into()).render(OutputFormat::Json)).unwrap();
        assert_eq!(json["status"], "unknown");
        assert_eq!(json["error"], "x");
    }
}
