//! The Grafana dashboards and the alert rules against the real programs: the
//! real `mig-exporter` on a World file changed by the real `mig-sim`,
//! Prometheus scraping it every second with the rules of `alerts/` loaded,
//! and Alertmanager sending to a webhook this test serves, all on loopback.
//!
//! * Every panel query of every dashboard, its template variables filled in
//!   with values the variables' own queries return, returns data.
//! * A Hopper reboot pages MigGeometryLost with the node and GPU labels, and
//!   restoring the geometry resolves it.
//! * A failed and a pending row remapping and an XID 79 page the GPU health
//!   alerts per node (no exporter address on them), with absolute runbook
//!   links; a GPU reset resolves the pending one at once.
//! * On an Ampere node (the real exporter on fake-nvml) without DCGM, GPM
//!   (unsupported) and DCGM (disabled) raise nothing; a DCGM host engine that
//!   worked and then dies (fake-dcgm) pages MigExporterSourceDown.
//! * `docs/migrating-from-dcgm-exporter.md` uses only series an H100 node
//!   exports (fake-nvml, fake-dcgm, a kubelet), and each of its "after"
//!   queries returns data.
//!
//! The test command (`scripts/test.sh`) installs Prometheus and Alertmanager
//! (Debian packages `prometheus` and `prometheus-alertmanager`); without them
//! these tests fail, they never skip.

mod common;
mod contract;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use common::daemon::{free_address, url_encode, Daemon};
use common::grafana::{label_values_query, substitute, Dashboard};
use common::kubelet::{devices, pod, FakeKubelet};
use common::{built, edit_world, mig_sim, which, Exporter};
use contract::root;

/// The relabelling the README recommends for static scrape configs: the
/// `node` label the dashboards and alerts use is the target's host. The
/// end-to-end Prometheus uses exactly this text, and a test checks that the
/// README still shows it.
const NODE_RELABEL: &str = r#"    relabel_configs:
      # node: the target's host, without the port
      - source_labels: [__address__]
        regex: '(.+?)(?::\d+)?'
        target_label: node
"#;

/// What `node` becomes for a target on 127.0.0.1 with [`NODE_RELABEL`].
const NODE: &str = "127.0.0.1";

/// Panels whose queries cannot return data here yet, with the reason. Only
/// these may come back empty; the test checks that each one exists and that
/// every panel using a series in [`contract::NOT_YET_EXPORTED`] is listed.
/// (None since the kubelet source: the stack's fake kubelet gives a pod a
/// 1g.10gb MIG device of GPU 1, so "Owner pods" has data.)
const NOT_YET_EXPORTED_PANELS: [(&str, &str, &str); 0] = [];

// ---------------------------------------------------------------- dashboards

/// Load on GPU 0's GI 2 (its 3g.40gb), for panels and queries that need data.
fn load_gpu0_gi2(world: &Path) {
    let load = [
        ("--sm-active", "0.8"),
        ("--sm-occupancy", "0.5"),
        ("--tensor-active", "0.3"),
        ("--dram-active", "0.4"),
        ("--fb-used-mib", "20000"),
    ];
    let mut args = vec!["load", "--gpu", "0", "--gi", "2"];
    args.extend(load.iter().flat_map(|(flag, value)| [*flag, *value]));
    mig_sim(world, &args);
}

fn dashboards() -> Vec<Dashboard> {
    let dir = root().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dashboards/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "fleet, node and drift dashboards: {files:?}");
    files.iter().map(|path| Dashboard::load(path)).collect()
}

fn datasource_ref() -> Json {
    serde_json::json!({"type": "prometheus", "uid": "${datasource}"})
}

#[test]
fn dashboards_are_current_grafana_json_with_a_datasource_variable_template_variables_and_units() {
    let mut uids = BTreeSet::new();
    for d in dashboards() {
        let file = &d.file;
        let schema = d.json["schemaVersion"].as_u64().unwrap_or_default();
        assert!(
            schema >= 41,
            "{file}: schemaVersion {schema} is older than Grafana 12's"
        );
        let uid = d.json["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty() && uid.len() <= 40, "{file}: uid {uid:?}");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        assert!(d.json.get("__inputs").is_none(), "{file}: no import-time inputs");
        assert!(d.json["id"].is_null(), "{file}: no database id");
        let tags = d.json["tags"].as_array().expect("tags");
        assert!(
            tags.iter().any(|t| t == "mig-exporter"),
            "{file}: tag mig-exporter (the links use it)"
        );

        // The data source is chosen with a variable, never hard-coded.
        let ds = d.variable("datasource");
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
        let mut uids_seen = Vec::new();
        collect_uids(&d.json, &mut uids_seen);
        for seen in uids_seen {
            assert!(
                seen == "${datasource}" || seen == "-- Grafana --",
                "{file}: hard-coded datasource uid {seen}"
            );
        }
        // The fleet dashboard reads the fleet recording rules, which keep
        // nodes and profiles, not GPUs: it has no GPU variable.
        let fleet = file == "mig-fleet.json";
        if fleet {
            assert!(
                d.variables().iter().all(|v| v["name"] != "gpu"),
                "{file}: a gpu variable the recorded series cannot honour"
            );
        }
        let names: &[&str] = if fleet {
            &["node", "profile"]
        } else {
            &["node", "gpu", "profile"]
        };
        for &name in names {
            let v = d.variable(name);
            assert_eq!(v["type"], "query", "{file}: {name}");
            assert_eq!(v["datasource"], datasource_ref(), "{file}: {name}");
            let definition = v["definition"].as_str().unwrap_or_default();
            assert!(
                definition.starts_with("label_values("),
                "{file}: {name}: {definition}"
            );
            assert_eq!(v["query"]["query"], definition, "{file}: {name}");
            if v["includeAll"] == true {
                assert_eq!(v["allValue"], ".*", "{file}: {name}: All must match every value");
            }
        }

        let mut ids = BTreeSet::new();
        let mut cells: BTreeSet<(u64, u64)> = BTreeSet::new();
        for p in d.panels() {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel without title");
            assert!(
                ids.insert(p["id"].as_u64().expect("id")),
                "{file}: {title}: id used twice"
            );
            assert_eq!(p["datasource"], datasource_ref(), "{file}: {title}");
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or_default();
            assert!(!unit.is_empty(), "{file}: {title}: no unit");
            assert!(
                !p["description"].as_str().unwrap_or_default().is_empty(),
                "{file}: {title}: no description"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert_eq!(t["datasource"], datasource_ref(), "{file}: {title}");
                assert!(
                    refs.insert(t["refId"].as_str().expect("refId")),
                    "{file}: {title}: refId twice"
                );
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(
                    expr.contains(r#"node=~"$node""#),
                    "{file}: {title}: the query ignores the node variable: {expr}"
                );
            }
            // Overrides name columns that exist after the organize transformation.
            let renamed: BTreeSet<&str> = p["transformations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["id"] == "organize")
                .flat_map(|t| t["options"]["renameByName"].as_object().into_iter().flatten())
                .filter_map(|(_, v)| v.as_str())
                .collect();
            for o in p["fieldConfig"]["overrides"].as_array().into_iter().flatten() {
                if o["matcher"]["id"] == "byName" {
                    let name = o["matcher"]["options"].as_str().unwrap_or_default();
                    assert!(
                        renamed.contains(name),
                        "{file}: {title}: override of unknown column {name}"
                    );
                }
            }
            // Inside the 24-column grid, overlapping nothing.
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(x + w <= 24 && w > 0 && h > 0, "{file}: {title}: gridPos {g}");
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(cells.insert((cx, cy)), "{file}: {title} overlaps another panel");
                }
            }
        }
    }
}

fn collect_uids<'a>(json: &'a Json, out: &mut Vec<&'a str>) {
    match json {
        Json::Object(map) => {
            for (k, v) in map {
                if k == "uid" && json.get("type").is_some() {
                    // A datasource reference {type, uid}; the dashboard's own uid has no type.
                    out.push(v.as_str().unwrap_or_default());
                }
                collect_uids(v, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| collect_uids(v, out)),
        _ => {}
    }
}

#[test]
fn dashboards_use_only_metric_names_of_the_contract() {
    let known = contract::contract_names();
    for d in dashboards() {
        for (title, expr) in d.variable_and_panel_queries() {
            for metric in contract::metric_names(&expr) {
                assert!(
                    known.contains(&metric),
                    "{}: {title} uses {metric}, which the exporter does not define",
                    d.file
                );
            }
        }
    }
}

/// The recording rules of `alerts/*.yml`, by name.
fn recorded_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("alerts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let doc: Yaml = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for group in doc["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                if let Some(name) = rule["record"].as_str() {
                    names.insert(name.to_string());
                }
            }
        }
    }
    names
}

/// The `level:metric:operation` names in a query.
fn recorded_names_in(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.split(':').count() == 3 && w.split(':').all(|p| !p.is_empty()))
        .map(str::to_string)
        .collect()
}

/// Issue 19: over thousands of nodes the fleet dashboard must read a few
/// series per node, so it reads the fleet recording rules only; every
/// recorded series a dashboard names is recorded by a shipped rule.
#[test]
fn the_fleet_dashboard_reads_only_recorded_series_and_every_one_is_recorded() {
    let recorded = recorded_names();
    assert!(recorded.len() >= 20, "{recorded:?}");
    for d in dashboards() {
        for (title, expr) in d.variable_and_panel_queries() {
            let names = recorded_names_in(&expr);
            for name in &names {
                assert!(
                    recorded.contains(name),
                    "{}: {title} reads {name}, which no rule in alerts/ records",
                    d.file
                );
            }
            if d.file == "mig-fleet.json" && !expr.is_empty() {
                assert!(
                    contract::metric_names(&expr).is_empty() && !names.is_empty(),
                    "{}: {title} reads raw series: {expr}",
                    d.file
                );
            }
        }
    }
    assert_eq!(
        recorded_names_in("sum(node:a_b:sum{x=\"1\"}) / up"),
        BTreeSet::from(["node:a_b:sum".to_string()])
    );
}

#[test]
fn provisioning_files_point_grafana_at_the_dashboards_and_a_prometheus() {
    let dir = root().join("dashboards/provisioning");
    let load = |name: &str| -> Yaml {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let providers = load("dashboards.yml");
    assert_eq!(providers["apiVersion"].as_u64(), Some(1));
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert!(provider["options"]["path"]
        .as_str()
        .is_some_and(|p| p.starts_with('/')));
    let datasources = load("datasource.example.yml");
    assert_eq!(datasources["apiVersion"].as_u64(), Some(1));
    assert_eq!(datasources["datasources"][0]["type"].as_str(), Some("prometheus"));
}

#[test]
fn the_readme_recommends_the_node_relabelling_the_end_to_end_prometheus_uses() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(NODE_RELABEL),
        "README.md must show the scrape config's relabelling exactly as tests/monitoring.rs uses it:\n{NODE_RELABEL}"
    );
    assert!(readme.contains("docs/runbooks.md"), "README links the runbooks");
    assert!(
        readme.contains("__meta_kubernetes_pod_node_name"),
        "README says how to set node on Kubernetes"
    );
}

// ---------------------------------------------------------------- the stack

fn program(names: &[&str], package: &str) -> PathBuf {
    names.iter().find_map(|n| which(n)).unwrap_or_else(|| {
        panic!(
            "{} is not installed: it comes with the Debian package `{package}`, which scripts/test.sh installs",
            names[0]
        )
    })
}

/// The webhook receiver Alertmanager notifies: an HTTP server on loopback in
/// a thread, keeping every POSTed notification.
struct Webhook {
    address: String,
    notifications: Arc<Mutex<Vec<Json>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let notifications = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (notifications.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    if let Some(body) = Webhook::receive(stream) {
                        kept.lock().unwrap().push(body);
                    }
                }
            }
        });
        Webhook {
            address,
            notifications,
            stop,
            thread: Some(thread),
        }
    }

    /// Reads one request, answers 200 and returns its JSON body.
    fn receive(mut stream: TcpStream) -> Option<Json> {
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = value.trim().parse().ok()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .ok()?;
        serde_json::from_slice(&body).ok()
    }

    fn notifications(&self) -> Vec<Json> {
        self.notifications.lock().unwrap().clone()
    }

    /// Every alert of every notification so far, with the notification.
    fn alerts(&self) -> Vec<(Json, Json)> {
        self.notifications()
            .into_iter()
            .flat_map(|n| {
                n["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| (n.clone(), a))
            })
            .collect()
    }

    fn find(&self, status: &str, alertname: &str, gpu: &str) -> Option<(Json, Json)> {
        self.alerts().into_iter().find(|(_, a)| {
            a["status"] == status && a["labels"]["alertname"] == alertname && a["labels"]["gpu"] == gpu
        })
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.address); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The e2e Prometheus loads a copy of `alerts/*.yml` in which every `for:`
/// is cut to 3 s: the real 15 minutes (time for a MIG manager to finish a
/// reconfiguration) would make this test take half an hour. Expressions,
/// labels and annotations are the shipped ones.
fn write_fast_rules(dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(root().join("alerts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let mut doc: Yaml = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut shortened = 0;
        for group in doc["groups"].as_sequence_mut().expect("groups") {
            for rule in group["rules"].as_sequence_mut().expect("rules") {
                let rule = rule.as_mapping_mut().expect("rule");
                if rule.contains_key("for") {
                    rule.insert(Yaml::from("for"), Yaml::from("3s"));
                    shortened += 1;
                }
            }
        }
        assert!(shortened > 0, "{}: no `for:` to shorten", path.display());
        std::fs::write(
            dest.join(path.file_name().unwrap()),
            serde_yaml_ng::to_string(&doc).unwrap(),
        )
        .unwrap();
    }
}

/// A 2-GPU H100 node: GPU 0 healthy with no desired config (so a reboot is
/// judged against its last known good geometry, kept in memory), GPU 1
/// under a desired config it does not meet (a 1g.10gb without compute
/// instance, an extra 2g.20gb), so that every drift panel has something to show.
fn make_layout(world: &Path) {
    mig_sim(world, &["-mig", "1"]);
    mig_sim(world, &["-i", "0", "mig", "-cgi", "9,19,19", "-C"]);
    mig_sim(world, &["-i", "1", "mig", "-cgi", "19,19", "-C"]);
    mig_sim(world, &["-i", "1", "mig", "-cgi", "19"]);
    mig_sim(world, &["-i", "1", "mig", "-cgi", "14", "-C"]);
}

const MIG_CONFIG: &str = r#"version: v1
mig-configs:
  e2e:
    - devices: [1]
      mig-enabled: true
      mig-devices:
        "1g.10gb": 3
"#;

/// Alertmanager notifying a [`Webhook`], and Prometheus scraping `targets`
/// (job `mig-exporter`, with [`NODE_RELABEL`]) every second with the shipped
/// rules, their `for:` cut ([`write_fast_rules`]).
struct Monitoring {
    prometheus: Daemon,
    alertmanager: Daemon,
    webhook: Webhook,
}

impl Monitoring {
    fn start(dir: &Path, targets: &[&str]) -> Monitoring {
        let prometheus_bin = program(&["prometheus"], "prometheus");
        let alertmanager_bin = program(
            &["prometheus-alertmanager", "alertmanager"],
            "prometheus-alertmanager",
        );
        let webhook = Webhook::start();
        let am_address = free_address();
        let am_config = dir.join("alertmanager.yml");
        std::fs::write(
            &am_config,
            format!(
                "global:\n  resolve_timeout: 5s\n\
                 route:\n  receiver: test\n  group_by: [alertname, node, gpu]\n  \
                 group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: test\n    webhook_configs:\n      \
                 - url: http://{}/alerts\n        send_resolved: true\n",
                webhook.address
            ),
        )
        .unwrap();
        let alertmanager = Daemon::start(
            "alertmanager",
            &alertmanager_bin,
            &[
                format!("--config.file={}", am_config.display()),
                format!("--storage.path={}", dir.join("am-data").display()),
                format!("--web.listen-address={am_address}"),
                "--cluster.listen-address=".to_string(),
            ],
            am_address,
            Some("/-/ready"),
            dir.join("alertmanager.log"),
        );

        let rules = dir.join("rules");
        write_fast_rules(&rules);
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let prom_address = free_address();
        let prom_config = dir.join("prometheus.yml");
        std::fs::write(
            &prom_config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}/*.yml\n\
                 alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
                 scrape_configs:\n  - job_name: mig-exporter\n    static_configs:\n      \
                 - targets: [{}]\n{NODE_RELABEL}",
                rules.display(),
                alertmanager.address,
                targets.join(", ")
            ),
        )
        .unwrap();
        let prometheus = Daemon::start(
            "prometheus",
            &prometheus_bin,
            &[
                format!("--config.file={}", prom_config.display()),
                format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
                format!("--web.listen-address={prom_address}"),
                "--rules.alert.resend-delay=1s".to_string(),
            ],
            prom_address,
            Some("/-/ready"),
            dir.join("prometheus.log"),
        );
        Monitoring {
            prometheus,
            alertmanager,
            webhook,
        }
    }

    /// What Prometheus, Alertmanager and the webhook said, for a failure message.
    fn diagnostics(&self) -> String {
        format!(
            "{}\n{}\n--- webhook notifications ({}):\n{}",
            self.prometheus.log_tail(),
            self.alertmanager.log_tail(),
            self.webhook.address,
            serde_json::to_string_pretty(&self.webhook.notifications()).unwrap(),
        )
    }
}

/// Polls until `f` gives a value; fails with `diagnostics()`.
fn wait_until<T>(
    timeout: Duration,
    what: &str,
    diagnostics: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            diagnostics()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Stack {
    // Dropped in this order: the programs first, the directory last.
    prometheus: Daemon,
    alertmanager: Daemon,
    webhook: Webhook,
    exporter: Exporter,
    _kubelet: FakeKubelet,
    world: PathBuf,
    dir: tempfile::TempDir,
}

impl Stack {
    fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let world = dir.path().join("world.json");
        let w = world.to_str().unwrap();
        mig_sim(&world, &["init", "--gpus", "2", "--product", "h100-80gb", w]);
        make_layout(&world);
        load_gpu0_gi2(&world);
        let config = dir.path().join("mig.yaml");
        std::fs::write(&config, MIG_CONFIG).unwrap();
        let kubelet = FakeKubelet::start(dir.path());
        let exporter = Exporter::start(&[
            "--world",
            w,
            "--mig.config",
            config.to_str().unwrap(),
            "--kubelet.pod-resources-socket",
            kubelet.socket.to_str().unwrap(),
        ]);
        // A pod holds GPU 1's first 1g.10gb MIG device (the dashboards' selection).
        // Only GPU 0's GI 2 has load (load_gpu0_gi2), so the held device is idle
        // and the fleet dashboard's "Reclaimable slices" has a row.
        // Nothing is advertised: without a device plugin, nothing is judged.
        let text = exporter.metrics();
        let held = text
            .lines()
            .filter(|l| l.starts_with("nvidia_mig_compute_instance_info{"))
            .find(|l| l.contains("gpu=\"1\"") && l.contains("profile=\"1g.10gb\""))
            .and_then(|l| l.split("mig_uuid=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .expect("GPU 1 has a 1g.10gb MIG device")
            .to_string();
        kubelet.set(|a| {
            a.pods.pod_resources = vec![pod(
                "ml",
                "trainer-0",
                "main",
                vec![devices("nvidia.com/mig-1g.10gb", &[&format!("{held}::0")])],
            )]
        });

        let Monitoring {
            prometheus,
            alertmanager,
            webhook,
        } = Monitoring::start(dir.path(), &[&exporter.address]);
        let stack = Stack {
            prometheus,
            alertmanager,
            webhook,
            exporter,
            _kubelet: kubelet,
            world,
            dir,
        };
        stack.wait(
            Duration::from_secs(30),
            "Prometheus scraping the exporter",
            || (!stack.query(r#"up{job="mig-exporter"} == 1"#).is_empty()).then_some(()),
        );
        stack
    }

    /// An instant query through `/api/v1/query`: the result vector. A query
    /// Prometheus rejects fails the test.
    fn query(&self, expr: &str) -> Vec<Json> {
        self.prometheus.query(expr)
    }

    /// Polls until `f` gives a value; fails with what the programs said.
    fn wait<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_until(timeout, what, || self.diagnostics(), f)
    }

    fn diagnostics(&self) -> String {
        let exporter_log = self.exporter.log();
        format!(
            "{}\n{}\n--- webhook notifications ({}):\n{}\n--- exporter log (tail):\n{}\n--- files in {}",
            self.prometheus.log_tail(),
            self.alertmanager.log_tail(),
            self.webhook.address,
            serde_json::to_string_pretty(&self.webhook.notifications()).unwrap(),
            exporter_log[exporter_log.len().saturating_sub(10)..].join("\n"),
            self.dir.path().display()
        )
    }
}

/// The values a `label_values(selector, label)` variable offers, asked
/// through `/api/v1/query` as `count by (label) (selector)`.
fn variable_values(stack: &Stack, definition: &str, values: &BTreeMap<String, String>) -> BTreeSet<String> {
    let (expr, label) = label_values_query(definition, values);
    stack
        .query(&expr)
        .iter()
        .filter_map(|s| s["metric"][label.as_str()].as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_dashboard_panel_query_returns_data_from_prometheus() {
    let stack = Stack::start();
    let dashboards = dashboards();

    // The panels that may stay empty are exactly those on series no source
    // exports yet.
    for (file, title, reason) in NOT_YET_EXPORTED_PANELS {
        let d = dashboards.iter().find(|d| d.file == file).expect(file);
        let queries: Vec<_> = d.queries().into_iter().filter(|(t, _, _)| t == title).collect();
        assert!(!queries.is_empty(), "{file}: no panel {title}");
        assert!(
            queries
                .iter()
                .any(|(_, _, e)| contract::NOT_YET_EXPORTED.iter().any(|m| e.contains(m))),
            "{file}: {title} is excluded ({reason}) but queries none of {:?}",
            contract::NOT_YET_EXPORTED
        );
    }
    let excluded = |file: &str, title: &str| {
        NOT_YET_EXPORTED_PANELS
            .iter()
            .any(|(f, t, _)| *f == file && *t == title)
    };
    for d in &dashboards {
        for (title, _, expr) in d.queries() {
            if contract::NOT_YET_EXPORTED.iter().any(|m| expr.contains(m)) {
                assert!(
                    excluded(&d.file, &title),
                    "{}: {title} queries a series not exported yet",
                    d.file
                );
            }
        }
    }

    // The selection: GPU 1's 1g.10gb instances have every kind of series
    // (compute instances with activity, one without, a desired count, drift).
    let chosen: BTreeMap<&str, &str> = [("node", NODE), ("gpu", "1"), ("profile", "1g.10gb")].into();
    let mut checked = 0;
    for d in &dashboards {
        // Each variable's own query offers the chosen value, given the ones before it.
        let mut specific = BTreeMap::new();
        let mut all = BTreeMap::new();
        for v in d.variables().iter().filter(|v| v["type"] == "query") {
            let name = v["name"].as_str().unwrap().to_string();
            let definition = v["definition"].as_str().unwrap();
            let value = chosen
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{}: variable {name} has no test value", d.file))
                .to_string();
            let offered = stack.wait(
                Duration::from_secs(20),
                &format!("{}: values of ${name}", d.file),
                || {
                    let offered = variable_values(&stack, definition, &specific);
                    offered.contains(&value).then_some(offered)
                },
            );
            assert!(offered.contains(&value), "{}: ${name} offers {offered:?}", d.file);
            let all_value = if v["includeAll"] == true {
                v["allValue"].as_str().unwrap().to_string()
            } else {
                value.clone()
            };
            specific.insert(name.clone(), value);
            all.insert(name, all_value);
        }
        // `$datasource` picks the data source, not part of any query.
        for (pass, values) in [("chosen values", &specific), ("All", &all)] {
            for (title, ref_id, expr) in d.queries() {
                let query = substitute(&expr, values);
                if excluded(&d.file, &title) {
                    stack.query(&query); // still valid PromQL
                    continue;
                }
                // Rates need two scrapes in their window: wait for them.
                let result = stack.wait(
                    Duration::from_secs(30),
                    &format!(
                        "{}: panel {title:?} query {ref_id} ({pass}) to return data: {query}",
                        d.file
                    ),
                    || Some(stack.query(&query)).filter(|r| !r.is_empty()),
                );
                assert!(!result.is_empty());
                checked += 1;
            }
        }
    }
    assert!(checked >= 2 * 50, "only {checked} panel queries checked");
}

#[test]
fn a_hopper_reboot_pages_geometry_lost_through_alertmanager_and_restoring_resolves_it() {
    let stack = Stack::start();
    let metrics = stack.exporter.metrics();
    let uuid0 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nvidia_gpu_info{gpu=\"0\",gpu_uuid=\""))
        .and_then(|rest| rest.split('"').next())
        .expect("GPU 0's UUID")
        .to_string();

    // The pipeline works before the reboot: GPU 1's GPU instance without
    // compute instance reaches the webhook, and nothing says geometry lost.
    let (_, bare) = stack.wait(
        Duration::from_secs(45),
        "MigGpuInstanceWithoutComputeInstance for GPU 1 at the webhook",
        || {
            stack
                .webhook
                .find("firing", "MigGpuInstanceWithoutComputeInstance", "1")
        },
    );
    assert_eq!(bare["labels"]["node"], NODE);
    assert!(
        stack
            .webhook
            .alerts()
            .iter()
            .all(|(_, a)| a["labels"]["alertname"] != "MigGeometryLost"),
        "no geometry is lost before the reboot"
    );

    // Hopper loses MIG mode and every instance on reboot; the exporter keeps
    // GPU 0's last known good geometry in memory and compares.
    mig_sim(&stack.world, &["reboot"]);
    let (notification, alert) = stack.wait(
        Duration::from_secs(45),
        "MigGeometryLost firing for GPU 0 at the webhook",
        || stack.webhook.find("firing", "MigGeometryLost", "0"),
    );
    let labels = &alert["labels"];
    assert_eq!(labels["node"], NODE, "{alert}");
    assert_eq!(labels["gpu"], "0", "{alert}");
    assert_eq!(labels["gpu_uuid"], uuid0.as_str(), "{alert}");
    assert_eq!(labels["severity"], "critical", "{alert}");
    assert!(
        labels.get("instance").is_none() && labels.get("job").is_none(),
        "per node, not per exporter pod: {alert}"
    );
    assert_eq!(notification["status"], "firing");
    assert_eq!(notification["groupLabels"]["gpu"], "0");
    assert_eq!(notification["groupLabels"]["node"], NODE);
    let annotations = &alert["annotations"];
    assert_eq!(
        annotations["summary"],
        format!("MIG geometry lost on GPU 0 of {NODE}").as_str()
    );
    assert!(
        annotations["description"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("GPU 0 ({uuid0}) of {NODE} has lost")),
        "{alert}"
    );
    assert_eq!(
        annotations["runbook_url"],
        "https://runbooks.example.com/mig-exporter/runbooks.md#miggeometrylost"
    );

    // Restore the geometry as it was: MIG mode, then the same instances.
    make_layout(&stack.world);
    let (notification, resolved) = stack.wait(
        Duration::from_secs(45),
        "MigGeometryLost resolved for GPU 0 at the webhook",
        || stack.webhook.find("resolved", "MigGeometryLost", "0"),
    );
    assert_eq!(resolved["labels"], alert["labels"], "the same alert resolves");
    assert_eq!(notification["status"], "resolved");
    assert!(
        resolved["endsAt"].as_str().unwrap_or_default() > resolved["startsAt"].as_str().unwrap_or_default(),
        "{resolved}"
    );
    assert!(
        stack
            .exporter
            .metrics()
            .lines()
            .all(|l| !(l.starts_with("nvidia_mig_drift{gpu=\"0\""))),
        "GPU 0 has no finding left"
    );
}

/// Issue 18: the GPU health alerts, from what the exporter reads of the
/// GPU, through Prometheus to Alertmanager, one per node and GPU (no
/// exporter address on them), with absolute runbook links. The simulated
/// GPU's row-remapping flags and XIDs are those of `nvmlDeviceGetRemappedRows`
/// and the critical-XID events (mig-model's World, src/source/sim.rs).
#[test]
fn gpu_health_alerts_page_per_node_and_a_reset_resolves_the_pending_remap() {
    let stack = Stack::start();
    edit_world(&stack.world, |w| {
        w.gpus[1].telemetry.remapped_rows.pending = true;
        w.gpus[1].telemetry.remapped_rows.failure = true;
    });
    for (alertname, severity) in [
        ("MigGpuRowRemappingPending", "warning"),
        ("MigGpuRowRemappingFailed", "critical"),
    ] {
        let (_, alert) = stack.wait(
            Duration::from_secs(45),
            &format!("{alertname} firing for GPU 1 at the webhook"),
            || stack.webhook.find("firing", alertname, "1"),
        );
        let labels = &alert["labels"];
        assert_eq!(labels["severity"], severity, "{alert}");
        assert_eq!(labels["node"], NODE, "{alert}");
        assert!(
            labels.get("instance").is_none() && labels.get("job").is_none(),
            "per node, not per exporter pod: {alert}"
        );
        assert_eq!(
            alert["annotations"]["runbook_url"],
            format!(
                "https://runbooks.example.com/mig-exporter/runbooks.md#{}",
                alertname.to_lowercase()
            )
            .as_str()
        );
    }

    // XID 79 on GPU 0: the counter rises, the reset alert pages at once.
    // (The first event is pushed and scraped before the one the alert sees,
    // so this holds whether or not the counter is served at 0 beforehand.)
    edit_world(&stack.world, |w| w.gpus[0].telemetry.xid_events.push(79));
    stack.wait(Duration::from_secs(30), "XID 79 counted once", || {
        (!stack
            .query(r#"nvidia_gpu_xid_errors_total{gpu="0",xid="79"} == 1"#)
            .is_empty())
        .then_some(())
    });
    edit_world(&stack.world, |w| w.gpus[0].telemetry.xid_events.push(79));
    let (_, alert) = stack.wait(
        Duration::from_secs(45),
        "MigGpuXidResetRequired firing for GPU 0 at the webhook",
        || stack.webhook.find("firing", "MigGpuXidResetRequired", "0"),
    );
    assert_eq!(alert["labels"]["xid"], "79", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("GPU 0 of {NODE} raised XID 79 (GPU has fallen off the bus): it needs a reset").as_str()
    );

    // A GPU reset applies the pending remap: that alert resolves while the
    // exporter keeps answering; the failure flag stays, and so does its alert.
    edit_world(&stack.world, |w| {
        w.gpus[1].telemetry.remapped_rows.pending = false;
    });
    stack.wait(
        Duration::from_secs(45),
        "MigGpuRowRemappingPending resolved for GPU 1 at the webhook",
        || stack.webhook.find("resolved", "MigGpuRowRemappingPending", "1"),
    );
    assert!(
        !stack
            .query(r#"ALERTS{alertname="MigGpuRowRemappingFailed",alertstate="firing",gpu="1"}"#)
            .is_empty(),
        "{}",
        stack.diagnostics()
    );
}

/// An Ampere node as a default install sees it, through the real NVML and
/// DCGM paths (fake-nvml, fake-dcgm): two exporters on one A100 World, one
/// with no DCGM library on the node, one with DCGM's library but no host
/// engine answering (the GPU operator's default), both scraped by the
/// Prometheus of the shipped rules.
struct AmpereNode {
    // Dropped in this order: the programs first, the directory last.
    monitoring: Monitoring,
    no_dcgm: Exporter,
    no_host_engine: Exporter,
    world: PathBuf,
    _dir: tempfile::TempDir,
}

impl AmpereNode {
    fn start() -> AmpereNode {
        let dir = tempfile::tempdir().unwrap();
        let world = dir.path().join("world.json");
        let w = world.to_str().unwrap();
        mig_sim(&world, &["init", "--gpus", "1", "--product", "a100-sxm4-40gb", w]);
        mig_sim(&world, &["-mig", "1"]);
        mig_sim(&world, &["mig", "-cgi", "9,9", "-C"]);
        edit_world(&world, |w| w.faults.dcgm_hostengine_down = true);
        let nvml = built("libfake_nvml.so");
        let exporter = |dcgm: &Path| {
            Exporter::start_with_env(
                &[
                    "--nvml",
                    "--nvml.library",
                    nvml.to_str().unwrap(),
                    "--dcgm.library",
                    dcgm.to_str().unwrap(),
                ],
                &[("MIG_WORLD", world.as_path())],
            )
        };
        let no_dcgm = exporter(&dir.path().join("not-installed/libdcgm.so.4"));
        let no_host_engine = exporter(&built("libfake_dcgm.so"));
        let monitoring = Monitoring::start(dir.path(), &[&no_dcgm.address, &no_host_engine.address]);
        AmpereNode {
            monitoring,
            no_dcgm,
            no_host_engine,
            world,
            _dir: dir,
        }
    }

    fn query(&self, expr: &str) -> Vec<Json> {
        self.monitoring.prometheus.query(expr)
    }

    /// The `instance` label of each result of `expr`.
    fn instances(&self, expr: &str) -> BTreeSet<String> {
        self.query(expr)
            .iter()
            .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_string))
            .collect()
    }

    fn wait<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_until(timeout, what, || self.diagnostics(), f)
    }

    fn diagnostics(&self) -> String {
        let tail = |e: &Exporter| {
            let log = e.log();
            log[log.len().saturating_sub(10)..].join("\n")
        };
        format!(
            "{}\n--- exporter without DCGM (tail):\n{}\n--- exporter without host engine (tail):\n{}",
            self.monitoring.diagnostics(),
            tail(&self.no_dcgm),
            tail(&self.no_host_engine)
        )
    }
}

#[test]
fn an_ampere_node_without_dcgm_stays_silent_and_a_host_engine_that_dies_after_working_pages() {
    let node = AmpereNode::start();
    let both: BTreeSet<String> = [&node.no_dcgm.address, &node.no_host_engine.address]
        .into_iter()
        .cloned()
        .collect();
    // Neither GPM on Ampere nor the missing DCGM is a source that is down.
    node.wait(
        Duration::from_secs(30),
        "both exporters' sources in Prometheus",
        || {
            let dcgm = node.instances(r#"mig_exporter_source_info{source="dcgm",state="disabled"}"#);
            let gpm = node.instances(r#"mig_exporter_source_info{source="gpm",state="unsupported"}"#);
            (dcgm == both && gpm == both).then_some(())
        },
    );
    assert_eq!(
        node.instances(r#"mig_exporter_source_up{source="nvml"} == 1"#),
        both
    );
    assert!(
        node.query(r#"mig_exporter_source_up{source=~"dcgm|gpm"}"#)
            .is_empty(),
        "no source_up for sources that do not apply"
    );

    // Prometheus evaluated its rules before its first scrape, when no target
    // of the job existed yet: MigExporterAbsent (with its 3 s `for:`) may
    // have fired then; it resolves with the first scrapes.
    node.wait(Duration::from_secs(30), "no alert once both are scraped", || {
        node.query("ALERTS").is_empty().then_some(())
    });
    // Silent: no alert at all, pending or firing, for many times the rules'
    // (shortened) `for:`, and nothing but that start-up absence reaches
    // Alertmanager.
    let quiet_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < quiet_until {
        let alerts = node.query("ALERTS");
        assert!(alerts.is_empty(), "{alerts:#?}\n{}", node.diagnostics());
        std::thread::sleep(Duration::from_millis(500));
    }
    for (_, alert) in node.monitoring.webhook.alerts() {
        assert!(
            alert["labels"]["alertname"] == "MigExporterAbsent"
                && alert["labels"].get("instance").is_none()
                && alert["labels"].get("node").is_none(),
            "only the absence before the first scrape: {alert}"
        );
    }

    // The host engine starts and DCGM is read: enabled and up.
    edit_world(&node.world, |w| w.faults.dcgm_hostengine_down = false);
    let engine = [node.no_host_engine.address.clone()]
        .into_iter()
        .collect::<BTreeSet<_>>();
    node.wait(
        Duration::from_secs(60),
        "DCGM up once the host engine answers",
        || {
            (node.instances(r#"mig_exporter_source_up{source="dcgm"} == 1"#) == engine
                && node.instances(r#"mig_exporter_source_info{source="dcgm",state="enabled"}"#) == engine)
                .then_some(())
        },
    );

    // It dies after having worked: that is DCGM down, and it pages.
    edit_world(&node.world, |w| w.faults.dcgm_hostengine_down = true);
    let (_, alert) =
        node.wait(
            Duration::from_secs(45),
            "MigExporterSourceDown for DCGM at the webhook",
            || {
                node.monitoring.webhook.alerts().into_iter().find(|(_, a)| {
                    a["status"] == "firing" && a["labels"]["alertname"] == "MigExporterSourceDown"
                })
            },
        );
    let labels = &alert["labels"];
    assert_eq!(labels["source"], "dcgm", "{alert}");
    // Per node, not per exporter pod: no instance (nor job) on the alert,
    // so a replaced exporter pod does not start the alert over.
    assert!(
        labels.get("instance").is_none() && labels.get("job").is_none(),
        "{alert}"
    );
    assert_eq!(labels["node"], NODE, "{alert}");
    // Both exporters run on the same node here: the down DCGM is the one
    // whose host engine died.
    assert_eq!(
        node.instances(r#"mig_exporter_source_up{source="dcgm"} == 0"#),
        [node.no_host_engine.address.clone()].into_iter().collect(),
        "{}",
        node.diagnostics()
    );
    assert_eq!(labels["severity"], "warning", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("mig-exporter source dcgm on {NODE} is down").as_str()
    );
    // Only that one: the node without DCGM and GPM on Ampere never fire.
    let fired: BTreeSet<(String, String)> = node
        .query(r#"ALERTS{alertname="MigExporterSourceDown"}"#)
        .iter()
        .chain(
            node.monitoring
                .webhook
                .alerts()
                .iter()
                .map(|(_, a)| &a["labels"])
                .filter(|l| l["alertname"] == "MigExporterSourceDown"),
        )
        .map(|s| {
            let labels = if s.get("metric").is_some() {
                &s["metric"]
            } else {
                s
            };
            (
                labels["node"].as_str().unwrap_or_default().to_string(),
                labels["source"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        [(NODE.to_string(), "dcgm".to_string())].into_iter().collect(),
        "{}",
        node.diagnostics()
    );
}

#[test]
fn url_encoding_and_substitution_are_what_prometheus_and_grafana_expect() {
    assert_eq!(url_encode(r#"up{job="a b"}"#), "up%7Bjob%3D%22a%20b%22%7D");
    let values: BTreeMap<String, String> = [("node".to_string(), "n1".to_string())].into();
    assert_eq!(
        substitute(
            r#"rate(x{node=~"$node"}[$__rate_interval]) or y{node="${node}"}"#,
            &values
        ),
        r#"rate(x{node=~"n1"}[15s]) or y{node="n1"}"#
    );
}

// ------------------------------------------- migrating from dcgm-exporter

const MIGRATION_GUIDE: &str = "docs/migrating-from-dcgm-exporter.md";

/// The guide's queries, `(before, after)`, each in the order it appears: the
/// body of every ```` ```promql ```` block, told apart by the last line above it,
/// which starts `**Before**` (dcgm-exporter's) or `**After**` (ours).
fn migration_queries(guide: &str) -> (Vec<String>, Vec<String>) {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut label = "";
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```promql" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            let query = body.join("\n").trim().to_string();
            if label.starts_with("**Before**") {
                before.push(query);
            } else if label.starts_with("**After**") {
                after.push(query);
            } else {
                panic!("{MIGRATION_GUIDE}: a promql block under neither **Before** nor **After**: {query}");
            }
        } else if !line.trim().is_empty() {
            label = line.trim();
        }
    }
    (before, after)
}

/// The metric names of an exposition's samples.
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// An H100 node as the guide's reader runs it, through the real NVML and DCGM
/// paths (fake-nvml, fake-dcgm) and a kubelet: GPU 0 in MIG mode with a
/// 3g.40gb (GI 2) and a 1g.10gb (GI 7) under load, the 1g.10gb held by a
/// pod, and an XID raised after the exporter started; GPU 1 without MIG.
/// Prometheus scrapes it with the README's relabelling, so `node` is set.
struct MigrationNode {
    // Dropped in this order: the programs first, the directory last.
    monitoring: Monitoring,
    exporter: Exporter,
    _kubelet: FakeKubelet,
    _dir: tempfile::TempDir,
}

impl MigrationNode {
    /// The node, the exporter started with `extra` flags besides the guide's.
    fn start(extra: &[&str]) -> MigrationNode {
        let dir = tempfile::tempdir().unwrap();
        let world = dir.path().join("world.json");
        let w = world.to_str().unwrap();
        mig_sim(&world, &["init", "--gpus", "2", "--product", "h100-80gb", w]);
        mig_sim(&world, &["-i", "0", "-mig", "1"]);
        mig_sim(&world, &["-i", "0", "mig", "-cgi", "9,19", "-C"]);
        load_gpu0_gi2(&world);
        // `mig-sim load` has no flag for the graphics engine; GPU 1's whole-GPU load likewise.
        edit_world(&world, |w| {
            for gi in &mut w.gpus[0].gpu_instances {
                for ci in &mut gi.compute_instances {
                    ci.load.gr_engine_active = 0.9;
                    ci.load.tensor_active = ci.load.tensor_active.max(0.1);
                }
            }
            let whole = &mut w.gpus[1].telemetry;
            whole.utilization_percent = 60;
            whole.dram_active = 0.2;
            whole.compute_load.gr_engine_active = 0.6;
            whole.compute_load.sm_active = 0.5;
            whole.compute_load.sm_occupancy = 0.3;
            whole.compute_load.tensor_active = 0.2;
        });
        let kubelet = FakeKubelet::start(dir.path());
        let nvml = built("libfake_nvml.so");
        let dcgm = built("libfake_dcgm.so");
        let mut args = vec![
            "--nvml",
            "--nvml.library",
            nvml.to_str().unwrap(),
            "--dcgm.library",
            dcgm.to_str().unwrap(),
            "--nvml.pcie-throughput",
            "--kubelet.pod-resources-socket",
            kubelet.socket.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let exporter = Exporter::start_with_env(&args, &[("MIG_WORLD", world.as_path())]);
        let text = exporter.metrics();
        let held = text
            .lines()
            .filter(|l| l.starts_with("nvidia_mig_compute_instance_info{"))
            .find(|l| l.contains("gpu=\"0\"") && l.contains("profile=\"1g.10gb\""))
            .and_then(|l| l.split("mig_uuid=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("GPU 0 has a 1g.10gb MIG device:\n{text}"))
            .to_string();
        kubelet.set(|a| {
            a.pods.pod_resources = vec![pod(
                "ml",
                "trainer-0",
                "main",
                vec![devices("nvidia.com/mig-1g.10gb", &[&held])],
            )]
        });
        // XID 79 (fallen off the bus), after the exporter registered for events.
        edit_world(&world, |w| w.gpus[0].telemetry.xid_events.push(79));
        let monitoring = Monitoring::start(dir.path(), &[&exporter.address]);
        MigrationNode {
            monitoring,
            exporter,
            _kubelet: kubelet,
            _dir: dir,
        }
    }

    fn wait<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_until(timeout, what, || self.diagnostics(), f)
    }

    fn diagnostics(&self) -> String {
        let log = self.exporter.log();
        format!(
            "{}\n--- exporter log (tail):\n{}",
            self.monitoring.diagnostics(),
            log[log.len().saturating_sub(10)..].join("\n")
        )
    }
}

#[test]
fn the_dcgm_exporter_migration_guide_matches_the_exporter() {
    let guide = std::fs::read_to_string(root().join(MIGRATION_GUIDE)).expect(MIGRATION_GUIDE);
    let ours = contract::metric_names(&guide);
    assert!(ours.len() >= 30, "{MIGRATION_GUIDE} names only {ours:?}");
    let (before, after) = migration_queries(&guide);
    assert!(
        after.len() >= 5 && before.len() == after.len(),
        "{MIGRATION_GUIDE}: {} before and {} after queries",
        before.len(),
        after.len()
    );

    let node = MigrationNode::start(&[]);
    // Every name of ours the guide uses is in the exposition (DCGM's values
    // and the pod come within a few polls).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (missing, exported) = loop {
        let exported = sample_names(&node.exporter.metrics());
        let missing: Vec<String> = ours.iter().filter(|n| !exported.contains(*n)).cloned().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (missing, exported);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        missing.is_empty(),
        "{MIGRATION_GUIDE} names series the exporter does not export: {missing:?}\n{}",
        node.diagnostics()
    );
    // Without --compat.dcgm-exporter, none of dcgm-exporter's series.
    let theirs: Vec<&String> = exported.iter().filter(|n| n.starts_with("DCGM_")).collect();
    assert!(theirs.is_empty(), "served without the flag: {theirs:?}");

    node.wait(
        Duration::from_secs(30),
        "Prometheus scraping the exporter",
        || (!node.monitoring.prometheus.query("up == 1").is_empty()).then_some(()),
    );
    // dcgm-exporter's queries are valid PromQL (nothing here exports their series).
    for query in &before {
        node.monitoring.prometheus.query(query);
    }
    for query in &after {
        let result = node.wait(
            Duration::from_secs(30),
            &format!("{MIGRATION_GUIDE}: {query} to return data"),
            || Some(node.monitoring.prometheus.query(query)).filter(|r| !r.is_empty()),
        );
        assert!(!result.is_empty());
    }
}

/// A query's series keyed by the value of `label` (one series per value).
fn by_label(result: &[Json], label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for series in result {
        let key = series["metric"][label].as_str().unwrap_or_default().to_string();
        let value: f64 = series["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a sample value: {series}"));
        assert!(
            out.insert(key.clone(), value).is_none(),
            "two series with {label}={key:?}: {result:?}"
        );
    }
    out
}

/// Asserts that two keyed results hold the same keys and values within `tolerance`.
fn assert_agree(what: &str, theirs: &BTreeMap<String, f64>, ours: &BTreeMap<String, f64>, tolerance: f64) {
    assert!(!ours.is_empty(), "{what}: nothing of ours");
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "{what}: dcgm-exporter's {theirs:?}, ours {ours:?}"
    );
    for (key, want) in ours {
        let got = theirs[key];
        assert!(
            (got - want).abs() <= tolerance,
            "{what} {key}: dcgm-exporter's {got}, ours {want}"
        );
    }
}

/// The node of the guide with `--compat.dcgm-exporter`: queries written as
/// for dcgm-exporter, run by a real Prometheus, say what our own series say,
/// in dcgm-exporter's units; and every "before" query of the guide returns
/// data. GPU 0 is in MIG mode with GI 2 (3g.40gb) and GI 7 (1g.10gb, held by
/// trainer-0), GPU 1 is not; XID 79 was raised on GPU 0.
#[test]
fn the_dcgm_exporter_compatible_series_answer_its_queries_as_our_series_do() {
    let node = MigrationNode::start(&["--compat.dcgm-exporter", "--kubernetes.node-name", "gpu-node-1"]);
    let prometheus = &node.monitoring.prometheus;
    // Waits until both queries return data (DCGM's values come within a few polls).
    let both = |theirs: &str, ours: &str| {
        node.wait(
            Duration::from_secs(30),
            &format!("{theirs} and {ours} to return data"),
            || {
                let (t, o) = (prometheus.query(theirs), prometheus.query(ours));
                (!t.is_empty() && !o.is_empty()).then_some((t, o))
            },
        )
    };

    // Activity per profile, averaged as a fleet panel does; Hostname is the node name.
    let (theirs, ours) = both(
        r#"avg by (Hostname, GPU_I_PROFILE) (DCGM_FI_PROF_SM_ACTIVE{GPU_I_ID!=""})"#,
        "avg by (profile) (nvidia_mig_gpu_instance_sm_active_ratio)",
    );
    assert!(
        theirs.iter().all(|s| s["metric"]["Hostname"] == "gpu-node-1"),
        "{theirs:?}"
    );
    assert_agree(
        "SM active per profile",
        &by_label(&theirs, "GPU_I_PROFILE"),
        &by_label(&ours, "profile"),
        1e-9,
    );
    assert_eq!(by_label(&ours, "profile").len(), 2, "3g.40gb and 1g.10gb");

    // Framebuffer used per GPU, MiB against bytes: each GPU instance rounds down once.
    let (theirs, ours) = both(
        r#"sum by (UUID) (DCGM_FI_DEV_FB_USED{GPU_I_ID!=""}) * 1048576"#,
        "sum by (gpu_uuid) (nvidia_mig_gpu_instance_memory_used_bytes)",
    );
    assert_agree(
        "framebuffer used per MIG GPU",
        &by_label(&theirs, "UUID"),
        &by_label(&ours, "gpu_uuid"),
        2.0 * 1048576.0,
    );
    let (theirs, ours) = both(
        r#"DCGM_FI_DEV_FB_USED{GPU_I_ID=""} * 1048576"#,
        r#"nvidia_gpu_memory_used_bytes unless on (gpu_uuid) nvidia_mig_mode_current == 1"#,
    );
    assert_agree(
        "framebuffer used on the GPU without MIG",
        &by_label(&theirs, "UUID"),
        &by_label(&ours, "gpu_uuid"),
        1048576.0,
    );

    // One series per GPU instance, as dcgm-exporter watches them.
    let (theirs, ours) = both(
        r#"count(DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_ID!=""})"#,
        "count(nvidia_mig_gpu_instance_info)",
    );
    assert_agree("GPU instances", &by_label(&theirs, ""), &by_label(&ours, ""), 0.0);

    // A GPU's temperature on each of its entities: 2 GPU instances and GPU 1.
    let (theirs, ours) = both("DCGM_FI_DEV_GPU_TEMP > 0", "nvidia_gpu_temperature_celsius");
    assert_eq!(theirs.len(), 3, "{theirs:?}");
    let temperature = by_label(&ours, "gpu_uuid");
    for series in &theirs {
        let uuid = series["metric"]["UUID"].as_str().unwrap();
        let got: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
        assert_eq!(got, temperature[uuid].round(), "{series}");
    }
    for (theirs, ours, scale, what) in [
        (
            "max by (UUID) (DCGM_FI_DEV_SM_CLOCK)",
            "nvidia_gpu_sm_clock_hz",
            1e6,
            "SM clock, MHz against Hz",
        ),
        (
            "max by (UUID) (DCGM_FI_DEV_POWER_USAGE)",
            "nvidia_gpu_power_watts",
            1.0,
            "power",
        ),
        (
            "DCGM_FI_DEV_GPU_UTIL",
            "nvidia_gpu_utilization_ratio",
            0.01,
            "utilization, percent against a ratio (GPU 1 only: none under MIG)",
        ),
    ] {
        let (t, o) = both(theirs, ours);
        let scaled = by_label(&t, "UUID")
            .into_iter()
            .map(|(k, v)| (k, v * scale))
            .collect();
        assert_agree(what, &scaled, &by_label(&o, "gpu_uuid"), scale / 2.0);
    }

    // dcgm-exporter's XID alert: the GPU's last XID, by code.
    let (theirs, ours) = both(
        "DCGM_FI_DEV_XID_ERRORS != 0",
        r#"nvidia_gpu_xid_errors_total{xid="79"}"#,
    );
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["metric"]["err_code"], "79");
    assert_eq!(theirs[0]["value"][1], "79");
    assert_eq!(theirs[0]["metric"]["UUID"], ours[0]["metric"]["gpu_uuid"]);

    // The pod's labels are on its GPU instance's series.
    let (theirs, ours) = both(
        r#"DCGM_FI_PROF_GR_ENGINE_ACTIVE{namespace="ml", pod="trainer-0", container="main"}"#,
        r#"nvidia_mig_gpu_instance_gr_engine_active_ratio{profile="1g.10gb"}"#,
    );
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["metric"]["GPU_I_PROFILE"], "1g.10gb");
    assert_eq!(theirs[0]["metric"]["GPU_I_ID"], ours[0]["metric"]["gi"]);
    assert_eq!(theirs[0]["value"][1], ours[0]["value"][1]);

    // Every dcgm-exporter query of the guide now returns data.
    let guide = std::fs::read_to_string(root().join(MIGRATION_GUIDE)).expect(MIGRATION_GUIDE);
    let (before, _) = migration_queries(&guide);
    for query in &before {
        node.wait(
            Duration::from_secs(30),
            &format!("{MIGRATION_GUIDE}: {query} to return data with --compat.dcgm-exporter"),
            || (!prometheus.query(query).is_empty()).then_some(()),
        );
    }
}
