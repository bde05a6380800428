//! The alert rules in `alerts/`: `promtool check rules` and `promtool test
//! rules` pass, every alert has a unit test where it fires and one where it
//! must not, and every alert carries what an operator needs (severity, a
//! `for:` long enough for a MIG manager to finish, summary and description
//! naming the GPU and the node, a runbook section that exists).
//!
//! The test command (`scripts/test.sh`) installs promtool (Debian package
//! `prometheus`); without it these tests fail, they never skip.

mod common;
mod contract;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use contract::root;

fn promtool() -> PathBuf {
    common::which("promtool").unwrap_or_else(|| {
        panic!(
            "promtool is not installed: it comes with the Debian package `prometheus`, \
             which scripts/test.sh installs (apt-get install prometheus)"
        )
    })
}

/// `alerts/*.yml` (the rule files) or `alerts/tests/*.yml` (their unit tests).
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    files
}

fn rule_files() -> Vec<PathBuf> {
    yaml_files(&root().join("alerts"))
}

fn test_files() -> Vec<PathBuf> {
    yaml_files(&root().join("alerts/tests"))
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn run_promtool(args: &[&str], files: &[PathBuf]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .args(files)
        .current_dir(root())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Every alerting rule of every rule file, by name.
fn alerts() -> BTreeMap<String, Value> {
    let mut alerts = BTreeMap::new();
    for file in rule_files() {
        let doc = load(&file);
        for group in doc["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                if let Some(name) = rule["alert"].as_str() {
                    let previous = alerts.insert(name.to_string(), rule.clone());
                    assert!(previous.is_none(), "alert {name} defined twice");
                }
            }
        }
    }
    alerts
}

fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is missing or not a string"))
}

/// A Prometheus duration such as `15m`, `1h30m` or `90s`, in seconds.
fn seconds(duration: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    let mut chars = duration.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0 // milliseconds: below a second
        } else {
            match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => panic!("bad duration {duration}"),
            }
        };
        total += number.parse::<u64>().unwrap() * unit;
        number.clear();
    }
    assert!(number.is_empty(), "bad duration {duration}");
    total
}

/// The anchors GitHub gives the headings of a Markdown file.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// Where every `runbook_url` points: the placeholder an operator replaces
/// with where they publish docs/runbooks.md (the chart's
/// `prometheusRule.runbookURLPattern`; docs/runbooks.md, "Runbook links").
/// `example.com` is reserved for examples, so the link is absolute and can
/// never reach somebody's real site.
const RUNBOOK_BASE: &str = "https://runbooks.example.com/mig-exporter/runbooks.md";

/// The XID codes the exporter serves at 0 on a freshly started node (so that
/// `increase()` sees the first one), read off the golden exposition of a
/// node that has seen no XID.
fn xids_served_at_zero() -> Vec<u32> {
    let golden = std::fs::read_to_string(contract::root().join("tests/golden/a100-single.prom")).unwrap();
    let mut codes: Vec<u32> = golden
        .lines()
        .filter(|l| l.starts_with("nvidia_gpu_xid_errors_total{gpu=\"0\"") && l.ends_with(" 0"))
        .filter_map(|l| l.split("xid=\"").nth(1)?.split('"').next()?.parse().ok())
        .collect();
    codes.sort_unstable();
    assert!(
        !codes.is_empty(),
        "the golden exposition serves XID counters at 0"
    );
    codes
}

#[test]
fn promtool_check_rules_accepts_every_rule_file() {
    let out = run_promtool(&["check", "rules"], &rule_files());
    assert!(out.contains("SUCCESS"), "{out}");
    let count: usize = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SUCCESS: "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(
        count,
        alerts().len() + recording_rules().len(),
        "promtool saw every alert and recording rule: {out}"
    );
}

#[test]
fn promtool_test_rules_passes_every_unit_test() {
    let out = run_promtool(&["test", "rules"], &test_files());
    assert!(out.contains("SUCCESS") && !out.contains("FAILED"), "{out}");
}

#[test]
fn every_alert_has_a_unit_test_where_it_fires_and_one_where_it_must_not() {
    let alerts = alerts();
    let mut fires: BTreeSet<String> = BTreeSet::new();
    let mut silent: BTreeSet<String> = BTreeSet::new();
    for file in test_files() {
        let doc = load(&file);
        for rule_file in doc["rule_files"].as_sequence().expect("rule_files") {
            let path = file.parent().unwrap().join(text(rule_file, "rule file"));
            assert!(
                path.exists(),
                "{} loads {}, which is missing",
                file.display(),
                path.display()
            );
        }
        for test in doc["tests"].as_sequence().expect("tests") {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = text(&case["alertname"], "alertname").to_string();
                assert!(
                    alerts.contains_key(&name),
                    "{} tests unknown alert {name}",
                    file.display()
                );
                let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
                if expected > 0 {
                    fires.insert(name);
                } else {
                    silent.insert(name);
                }
            }
        }
    }
    let all: BTreeSet<String> = alerts.keys().cloned().collect();
    let never_fired: Vec<_> = all.difference(&fires).collect();
    let never_silent: Vec<_> = all.difference(&silent).collect();
    assert!(
        never_fired.is_empty(),
        "alerts without a case where they fire: {never_fired:?}"
    );
    assert!(
        never_silent.is_empty(),
        "alerts without a case where they must not fire: {never_silent:?}"
    );
}

#[test]
fn every_alert_has_severity_a_reconfiguration_proof_for_annotations_and_a_runbook() {
    let runbooks = std::fs::read_to_string(root().join("docs/runbooks.md")).expect("docs/runbooks.md");
    let sections = anchors(&runbooks);
    let alerts = alerts();
    assert!(alerts.len() >= 8, "{:?}", alerts.keys());
    for (name, rule) in &alerts {
        assert!(
            name.starts_with("Mig") && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}: CamelCase, prefixed Mig"
        );
        let severity = text(&rule["labels"]["severity"], &format!("{name}: labels.severity"));
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity}"
        );
        let expr = text(&rule["expr"], &format!("{name}: expr"));
        if expr.contains("increase(") {
            // An event (an XID, an ECC error) already happened: it fires at
            // the first evaluation that sees the counter rise.
            assert!(
                rule.get("for").is_none(),
                "{name}: an event alert waits for nothing"
            );
        } else {
            // A MIG manager's reconfiguration passes through the states these
            // alerts detect for a few minutes (and a reboot through absence);
            // and the restart bridge (5 minutes) must never fire on its own.
            let hold = seconds(text(&rule["for"], &format!("{name}: for")));
            assert!(
                hold >= 10 * 60,
                "{name}: for {hold}s is shorter than a reconfiguration"
            );
        }

        let summary = text(&rule["annotations"]["summary"], &format!("{name}: summary"));
        let description = text(
            &rule["annotations"]["description"],
            &format!("{name}: description"),
        );
        for (what, annotation) in [("summary", summary), ("description", description)] {
            assert!(
                annotation.contains("$labels.node") && annotation.contains("$labels.instance"),
                "{name}: the {what} names the node (or the instance where no node label is set)"
            );
            assert!(
                annotation.contains("{{ with $labels.cluster }} in cluster {{ . }}{{ end }}"),
                "{name}: the {what} names the cluster where the series carry one"
            );
        }
        let per_gpu = expr.contains("nvidia_");
        if per_gpu {
            assert!(
                summary.contains("$labels.gpu") && description.contains("$labels.gpu"),
                "{name}: summary and description name the GPU"
            );
        }
        let url = text(
            &rule["annotations"]["runbook_url"],
            &format!("{name}: runbook_url"),
        );
        let anchor = url
            .strip_prefix(RUNBOOK_BASE)
            .and_then(|rest| rest.strip_prefix('#'))
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not {RUNBOOK_BASE}#<anchor>"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: anchor of its own section");
        assert!(
            sections.contains(anchor),
            "{name}: docs/runbooks.md has no section #{anchor}"
        );
        let section = runbooks
            .split(&format!("\n## {name}\n"))
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_else(|| panic!("docs/runbooks.md: no `## {name}` section"));
        assert!(
            section.contains("**What happened.**") && section.contains("**What to do.**"),
            "{name}: its runbook says what happened and what to do"
        );
        assert!(
            section.contains(&format!("**Severity:** {severity}.")),
            "{name}: its runbook states severity {severity}"
        );
    }
    // No runbook section for an alert that does not exist.
    for heading in runbooks.lines().filter_map(|l| l.strip_prefix("## ")) {
        assert!(
            alerts.contains_key(heading),
            "docs/runbooks.md: section {heading} has no alert"
        );
    }
}

#[test]
fn every_drift_reason_is_alerted_on() {
    let alerts = alerts();
    let expr_of = |name: &str| {
        text(
            &alerts.get(name).unwrap_or_else(|| panic!("alert {name} missing"))["expr"],
            "expr",
        )
        .to_string()
    };
    // Every reason the exporter reports, and the help of nvidia_mig_drift
    // (the contract, and so docs/metrics.md; docs/drift.md explains them) names each.
    let help = &mig_exporter::expose::contract::find("nvidia_mig_drift")
        .expect("nvidia_mig_drift is in the contract")
        .help;
    let reasons: BTreeSet<String> = mig_exporter::model::DriftReason::ALL
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    assert!(reasons.contains("geometry_lost"), "{reasons:?}");
    for reason in &reasons {
        assert!(
            help.contains(reason.as_str()),
            "nvidia_mig_drift's help lists {reason}: {help}"
        );
    }
    let covered_by = |reason: &str| -> &str {
        match reason {
            "mig_mode_lost" | "geometry_lost" => "MigGeometryLost",
            "profile_mismatch" | "changed_since_reboot" => "MigProfileMismatch",
            "gi_without_ci" => "MigGpuInstanceWithoutComputeInstance",
            "mig_mode_pending" => "MigModePending",
            "unexpected_mig" => "MigModeUnexpected",
            "advertised_mismatch" => "MigKubernetesAdvertisementMismatch",
            "advertised_unhealthy" => "MigKubernetesDeviceUnhealthy",
            other => panic!("drift reason {other} has no alert"),
        }
    };
    for reason in &reasons {
        let alert = covered_by(reason);
        let expr = expr_of(alert);
        if reason == "gi_without_ci" {
            // Alerted per GPU instance, so the alert names it.
            assert!(
                expr.contains("nvidia_mig_gpu_instance_compute_instances == 0"),
                "{expr}"
            );
        } else {
            assert!(
                expr.contains(reason.as_str()),
                "{alert} does not select reason {reason}: {expr}"
            );
        }
    }
    // The brief's alerts are all there.
    for name in [
        "MigGeometryLost",
        "MigModePending",
        "MigGpuInstanceWithoutComputeInstance",
        "MigProfileMismatch",
        "MigKubernetesAdvertisementMismatch",
        "MigExporterSourceDown",
        "MigExporterAbsent",
        "MigInstanceSaturated",
    ] {
        assert!(alerts.contains_key(name), "{name} missing");
    }
}

#[test]
fn rules_use_only_metric_names_of_the_contract() {
    let known = contract::contract_names();
    for (name, rule) in alerts() {
        for metric in contract::metric_names(text(&rule["expr"], "expr")) {
            assert!(
                known.contains(&metric),
                "{name} uses {metric}, which the metric contract (src/expose/contract.rs) does not define"
            );
        }
    }
}

/// Every recording rule of every rule file: its name and expression.
fn recording_rules() -> Vec<(String, String)> {
    let mut rules = Vec::new();
    for file in rule_files() {
        let doc = load(&file);
        for group in doc["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                if let Some(name) = rule["record"].as_str() {
                    rules.push((name.to_string(), text(&rule["expr"], name).to_string()));
                }
            }
        }
    }
    rules
}

#[test]
fn recording_rules_are_named_level_metric_operation_read_the_contract_and_are_unit_tested() {
    let rules = recording_rules();
    assert!(rules.len() >= 20, "{rules:?}");
    let known = contract::contract_names();
    // Every expression a promql_expr_test evaluates.
    let mut tested = String::new();
    for file in test_files() {
        for test in load(&file)["tests"].as_sequence().expect("tests") {
            for case in test["promql_expr_test"].as_sequence().into_iter().flatten() {
                tested.push_str(text(&case["expr"], "promql_expr_test expr"));
                tested.push('\n');
            }
        }
    }
    let mut names = BTreeSet::new();
    for (name, expr) in &rules {
        assert!(names.insert(name.clone()), "{name} recorded twice");
        let parts: Vec<&str> = name.split(':').collect();
        assert!(
            parts.len() == 3
                && parts.iter().all(|p| !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')),
            "{name}: level:metric:operation"
        );
        for metric in contract::metric_names(expr) {
            assert!(
                known.contains(&metric),
                "{name} uses {metric}, which the metric contract (src/expose/contract.rs) does not define"
            );
        }
        assert!(
            tested
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .any(|w| w == name),
            "{name}: no promql_expr_test in alerts/tests/ evaluates it"
        );
    }
}

/// The codes of `xid=~"..."` in an expression.
fn xid_codes(expr: &str) -> Vec<u32> {
    let Some(rest) = expr.split("xid=~\"").nth(1) else {
        return Vec::new();
    };
    let list = rest.split('"').next().unwrap_or_default();
    list.split('|')
        .map(|c| {
            c.parse()
                .unwrap_or_else(|_| panic!("bad XID code {c:?} in {expr}"))
        })
        .collect()
}

#[test]
fn the_xid_alerts_watch_exactly_the_codes_served_at_zero_each_once() {
    let alerts = alerts();
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    for (name, rule) in &alerts {
        for code in xid_codes(text(&rule["expr"], "expr")) {
            if let Some(other) = seen.insert(code, name.clone()) {
                panic!("XID {code} is watched by both {other} and {name}");
            }
        }
    }
    let watched: Vec<u32> = seen.keys().copied().collect();
    assert_eq!(watched, xids_served_at_zero(), "{seen:?}");
    // The reset-or-reboot codes page; the memory events warn.
    assert_eq!(
        text(
            &alerts["MigGpuXidResetRequired"]["labels"]["severity"],
            "severity"
        ),
        "critical"
    );
    assert_eq!(
        text(&alerts["MigGpuXidMemoryError"]["labels"]["severity"], "severity"),
        "warning"
    );
    assert_eq!(xid_codes(r#"x{xid=~"48|79"}"#), [48, 79]);
    assert!(xid_codes("x").is_empty());
}

/// The label lists of every `by (...)` and `on (...)` in an expression.
fn grouping_lists(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut lists = Vec::new();
    for keyword in ["by", "on"] {
        let opener = format!("{keyword} (");
        for (at, _) in expr.match_indices(&opener) {
            let boundary = expr[..at]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if !boundary {
                continue;
            }
            let rest = &expr[at + opener.len()..];
            let inner = rest.split(')').next().unwrap_or_default();
            let labels = inner
                .split(',')
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            lists.push((keyword.to_string(), labels));
        }
    }
    lists
}

#[test]
fn alerts_are_per_node_and_cluster_not_per_exporter_pod() {
    for (name, rule) in alerts() {
        let expr = text(&rule["expr"], "expr");
        let lists = grouping_lists(expr);
        assert!(
            lists.iter().any(|(keyword, _)| keyword == "by"),
            "{name}: aggregates (by node), so no pod label leaks into the alert: {expr}"
        );
        for (keyword, labels) in &lists {
            assert!(
                labels.contains("node") && labels.contains("cluster"),
                "{name}: `{keyword} ({labels:?})` keeps node and cluster"
            );
            assert!(
                !labels.contains("job") || name == "MigExporterAbsent",
                "{name}: `{keyword} ({labels:?})`: only MigExporterAbsent is per job"
            );
            // `pod` is the exporter pod's, dropped at scrape; only the alert
            // about a pod's own MIG device keeps the owner's, from
            // nvidia_mig_instance_pod_info, with its namespace.
            assert!(
                !labels.contains("pod")
                    || (name == "MigSliceAllocatedIdle"
                        && labels.contains("namespace")
                        && expr.contains("mig_device_pod:")),
                "{name}: {labels:?}"
            );
        }
        // `instance` stays only where `node` is missing.
        if lists.iter().any(|(_, labels)| labels.contains("instance")) {
            assert!(
                expr.contains(r#""instance", "", "node", ".+""#),
                "{name}: groups by instance without dropping it where node is set: {expr}"
            );
        }
    }
    let lists = grouping_lists("max by (cluster, node) (x) unless on (node) y or nearby (z)");
    assert_eq!(lists.len(), 2, "{lists:?}");
}

#[test]
fn durations_parse_as_prometheus_writes_them() {
    assert_eq!(seconds("15m"), 900);
    assert_eq!(seconds("1h30m"), 5400);
    assert_eq!(seconds("90s"), 90);
    assert_eq!(seconds("500ms"), 0);
    let a = anchors("# Title\n## MigGeometryLost\n## What to do, now!\n");
    assert!(
        a.contains("miggeometrylost") && a.contains("what-to-do-now"),
        "{a:?}"
    );
}
