//! The fleet dashboard (`dashboards/mig-fleet.json`) against a small
//! simulated fleet scraped by a real Prometheus that loads the shipped rules
//! (`alerts/mig-exporter.rules.yml`, unchanged): five nodes, each the real
//! `mig-exporter` on its own World file with a fake kubelet whose pods hold
//! most of its MIG devices, scraped every second with the `node` and
//! `cluster` target labels docs/monitoring.md asks for.
//!
//! * Every panel query and every template-variable query of the dashboard,
//!   read from its JSON (so a panel added later is covered), with the
//!   variables as Grafana fills in "All", returns a non-empty result of
//!   finite values.
//! * The panels show this fleet: 5 nodes, their GPUs and MIG devices, the one
//!   drifted GPU, the stranded memory slots, the idle slice a pod holds, the
//!   namespaces' slices.
//!
//! Like tests/monitoring.rs it needs Debian's `prometheus`; without it the
//! test fails, it never skips.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mig_exporter::source::kubelet::proto::PodResources;
use mig_model::World;
use serde_json::Value as Json;

use common::daemon::{free_address, Daemon};
use common::device_plugin::{self, MigStrategy, Plugin};
use common::grafana::{label_values_query, substitute, Dashboard};
use common::kubelet::{devices, pod, FakeKubelet};
use common::{edit_world, mig_sim, which, Exporter};

/// The `cluster` target label of every node.
const CLUSTER: &str = "sim-fleet";

/// The namespaces whose pods hold the fleet's MIG devices, in turn.
const NAMESPACES: [&str; 3] = ["training", "inference", "research"];

/// The pod that holds a slice and leaves it idle, on [`IDLE_NODE`].
const IDLE_NODE: &str = "a100-balanced";
const IDLE_NAMESPACE: &str = "research";
const IDLE_POD: &str = "notebook-idle";

/// How a node's GPU instances come to be.
enum Geometry {
    /// Per GPU, the `mig-sim mig -cgi LIST -C` list, as an operator (or the
    /// GPU operator's MIG manager) creates them.
    Created(&'static [&'static str]),
    /// Per GPU, `(GI profile id, placement start)` of each instance, with its
    /// default compute instance: a layout left by instances created and
    /// destroyed over time, which `-cgi` (the driver's own placement
    /// choice) does not give from an empty GPU.
    Placed(&'static [&'static [(u32, u32)]]),
}

struct NodeSpec {
    name: &'static str,
    product: &'static str,
    gpus: u32,
    geometry: Geometry,
    /// The nvidia-mig-parted config the node should have, if any.
    desired: Option<&'static str>,
}

const ALL_1G_H100: &str = "1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb";

/// The `all-1g.10gb` config of nvidia-mig-parted's default config file (every
/// GPU seven 1g.10gb), as fuzz/corpus/mig_config/several-configs.yaml has it.
const ALL_1G_CONFIG: &str = r#"version: v1
mig-configs:
  all-1g.10gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
"#;

/// The fleet. Expected fragmentation (src/model/fragmentation.rs, its unit
/// tests): seven 1g.10gb on an H100 leave slot 7 free and unplaceable; a
/// 4g.40gb at 0 and a 1g.10gb at 6 strand slot 7 and leave 2 SM slices as
/// the largest creatable; three 1g.10gb at 0, 2, 4 strand nothing but let
/// only 1-slice instances in. `all-balanced` of mig-parted's default config
/// gives an A100-SXM4-40GB one 3g.20gb, one 2g.10gb and two 1g.5gb
/// (fuzz/corpus/mig_config/several-configs.yaml, its 0x20B010DE entry).
const FLEET: [NodeSpec; 5] = [
    NodeSpec {
        name: "h100-all-1g",
        product: "h100-80gb",
        gpus: 2,
        geometry: Geometry::Created(&[ALL_1G_H100, ALL_1G_H100]),
        desired: None,
    },
    NodeSpec {
        name: IDLE_NODE,
        product: "a100-sxm4-40gb",
        gpus: 2,
        geometry: Geometry::Created(&["3g.20gb,2g.10gb,1g.5gb,1g.5gb", "3g.20gb,2g.10gb,1g.5gb,1g.5gb"]),
        desired: None,
    },
    NodeSpec {
        name: "h200-mixed",
        product: "h200-141gb",
        gpus: 2,
        geometry: Geometry::Created(&["3g.71gb,2g.35gb,1g.18gb,1g.18gb", "4g.71gb"]),
        desired: None,
    },
    // Should be all-1g.10gb; GPU 1 was laid out by hand as two 3g.40gb:
    // drift `profile_mismatch` on GPU 1 only.
    NodeSpec {
        name: "h100-drifted",
        product: "h100-80gb",
        gpus: 2,
        geometry: Geometry::Created(&[ALL_1G_H100, "3g.40gb,3g.40gb"]),
        desired: Some(ALL_1G_CONFIG),
    },
    // H100 profile ids (nvidia-smi mig -lgip): 19 1g.10gb, 5 4g.40gb.
    NodeSpec {
        name: "h100-fragmented",
        product: "h100-80gb",
        gpus: 2,
        geometry: Geometry::Placed(&[&[(5, 0), (19, 6)], &[(19, 0), (19, 2), (19, 4)]]),
        desired: None,
    },
];

/// Memory slots no creatable instance can take, per node (see [`FLEET`]).
const UNPLACEABLE: [(&str, f64); 5] = [
    ("h100-all-1g", 2.0),
    (IDLE_NODE, 0.0),
    ("h200-mixed", 0.0),
    ("h100-drifted", 1.0),
    ("h100-fragmented", 1.0),
];

/// One node: its World, its kubelet and its exporter.
struct Node {
    name: &'static str,
    world: World,
    /// The pods the kubelet lists, `(namespace, pod, MIG UUID)`.
    pods: Vec<(String, String, String)>,
    exporter: Exporter,
    _kubelet: FakeKubelet,
}

/// Lays out `spec` in a World file in `dir`.
fn build_world(spec: &NodeSpec, dir: &Path) -> PathBuf {
    let world = dir.join("world.json");
    let path = world.to_str().expect("a UTF-8 temporary path");
    let gpus = spec.gpus.to_string();
    let init = [
        "init",
        "--gpus",
        &gpus,
        "--product",
        spec.product,
        "--hostname",
        spec.name,
        path,
    ];
    mig_sim(&world, &init);
    mig_sim(&world, &["-mig", "1"]);
    match spec.geometry {
        Geometry::Created(lists) => {
            for (gpu, list) in lists.iter().enumerate() {
                mig_sim(&world, &["-i", &gpu.to_string(), "mig", "-cgi", list, "-C"]);
            }
        }
        Geometry::Placed(layouts) => edit_world(&world, |w| {
            for (gpu, layout) in layouts.iter().enumerate() {
                let gpu = w.gpu_mut(gpu as u32).expect("a GPU of the node");
                for &(profile, start) in *layout {
                    let gi = gpu
                        .create_gpu_instance(profile, Some(start))
                        .expect("place a GPU instance");
                    gpu.create_compute_instance(gi, None)
                        .expect("its default compute instance");
                }
            }
        }),
    }
    world
}

/// Activity on every compute instance, different per instance and never
/// near idle (SM active 0.2 to 0.9), and framebuffer in use on every GPU
/// instance, through the World's load fields that `mig-sim load` sets.
fn load_everything(world: &Path, seed: usize) {
    edit_world(world, |w| {
        let mut k = seed;
        for gpu in &mut w.gpus {
            for gi in &mut gpu.gpu_instances {
                gi.load.memory_used_mib = 1024 * (1 + k as u64 % 4);
                for ci in &mut gi.compute_instances {
                    ci.load.sm_active = 0.2 + 0.1 * (k % 8) as f64;
                    ci.load.sm_occupancy = 0.5;
                    ci.load.tensor_active = 0.1 + 0.05 * (k % 5) as f64;
                    k += 1;
                }
            }
        }
    });
}

/// Pods for the node's MIG devices as the NVIDIA device plugin (mixed
/// strategy) advertises them: every device but the last one is held by a
/// one-container pod, namespaces in turn. On [`IDLE_NODE`] the first
/// 1g.5gb goes to [`IDLE_POD`] instead.
fn pods_for(node: &str, world: &World, turn: &mut usize) -> Vec<(String, String, String, String)> {
    let advertised = device_plugin::advertised(world, &Plugin::new(MigStrategy::Mixed))
        .unwrap_or_else(|e| panic!("{node}: the device plugin would stop: {e}"));
    let mut all: Vec<(String, String)> = advertised
        .into_iter()
        .flat_map(|(resource, ids)| ids.into_iter().map(move |id| (resource.clone(), id)))
        .collect();
    all.pop(); // one device left free for the scheduler
    let mut idle_given = node != IDLE_NODE;
    all.into_iter()
        .enumerate()
        .map(|(i, (resource, id))| {
            if !idle_given && resource == "nvidia.com/mig-1g.5gb" {
                idle_given = true;
                return (IDLE_NAMESPACE.into(), IDLE_POD.into(), resource, id);
            }
            let namespace = NAMESPACES[*turn % NAMESPACES.len()];
            *turn += 1;
            (namespace.into(), format!("{node}-worker-{i}"), resource, id)
        })
        .collect()
}

fn start_node(spec: &NodeSpec, dir: &Path, turn: &mut usize, seed: usize) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    let world_file = build_world(spec, dir);
    load_everything(&world_file, seed);
    let world = World::load(&world_file).expect("read the World");
    let pods = pods_for(spec.name, &world, turn);
    if let Some((_, _, _, idle)) = pods.iter().find(|(_, p, _, _)| p == IDLE_POD) {
        edit_world(&world_file, |w| {
            for gpu in &mut w.gpus {
                for gi in &mut gpu.gpu_instances {
                    for ci in gi.compute_instances.iter_mut().filter(|ci| &ci.uuid == idle) {
                        ci.load.sm_active = 0.0;
                        ci.load.sm_occupancy = 0.0;
                        ci.load.tensor_active = 0.0;
                    }
                }
            }
        });
    }
    let world = World::load(&world_file).expect("read the World");

    let kubelet = FakeKubelet::start(dir);
    let listed: Vec<PodResources> = pods
        .iter()
        .map(|(ns, name, resource, id)| pod(ns, name, "main", vec![devices(resource, &[id.as_str()])]))
        .collect();
    let allocatable = device_plugin::allocatable(&world, &Plugin::new(MigStrategy::Mixed));
    kubelet.set(|a| {
        a.pods.pod_resources = listed;
        a.allocatable = allocatable;
    });

    let mut args = vec![
        "--world".to_string(),
        world_file.to_str().unwrap().to_string(),
        "--kubelet.pod-resources-socket".to_string(),
        kubelet.socket.to_str().unwrap().to_string(),
        "--kubernetes.node-name".to_string(),
        spec.name.to_string(),
    ];
    if let Some(desired) = spec.desired {
        let config = dir.join("mig-config.yaml");
        std::fs::write(&config, desired).unwrap();
        args.extend(["--mig.config".to_string(), config.to_str().unwrap().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args);
    Node {
        name: spec.name,
        world,
        pods: pods.into_iter().map(|(ns, p, _, id)| (ns, p, id)).collect(),
        exporter,
        _kubelet: kubelet,
    }
}

/// Prometheus scraping every node every second (job `mig-exporter`, target
/// labels `node` and `cluster`), evaluating the shipped rule file every second.
fn start_prometheus(dir: &Path, nodes: &[Node]) -> Daemon {
    let binary = which("prometheus")
        .expect("prometheus is not installed: it comes with the Debian package `prometheus`, which scripts/test.sh installs");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/mig-exporter.rules.yml");
    let targets: String = nodes
        .iter()
        .map(|n| {
            format!(
                "      - targets: ['{}']\n        labels: {{node: {}, cluster: {CLUSTER}}}\n",
                n.exporter.address, n.name
            )
        })
        .collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: mig-exporter\n    static_configs:\n{targets}",
            rules.display()
        ),
    )
    .unwrap();
    let address = free_address();
    Daemon::start(
        "prometheus",
        &binary,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address={address}"),
        ],
        address,
        Some("/-/ready"),
        dir.join("prometheus.log"),
    )
}

// ------------------------------------------------------------ the dashboard

/// What Grafana puts for each template variable when "All" is selected:
/// its `allValue`. A variable of a kind the test does not know fails it.
fn all_values(dashboard: &Dashboard) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for v in dashboard.variables() {
        let name = v["name"].as_str().expect("a variable's name");
        match v["type"].as_str() {
            Some("datasource") => {} // picks the data source, in no query
            Some("query") => {
                assert_eq!(v["includeAll"], true, "variable ${name} has no All");
                let all = v["allValue"]
                    .as_str()
                    .unwrap_or_else(|| panic!("${name}: no allValue"));
                values.insert(name.to_string(), all.to_string());
            }
            other => {
                panic!("variable ${name} of type {other:?}: the test does not know what Grafana fills in")
            }
        }
    }
    values
}

/// Why `result` is no answer for a panel: empty, or a value that is not a finite number.
fn unusable(result: &[Json]) -> Option<String> {
    if result.is_empty() {
        return Some("no series".into());
    }
    result.iter().find_map(|s| {
        let v = s["value"][1].as_str().unwrap_or("none");
        (!v.parse::<f64>().is_ok_and(f64::is_finite)).then(|| format!("{} = {v}", s["metric"]))
    })
}

fn value(series: &Json) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a number")
}

/// The value of a query that answers one series.
fn scalar(prometheus: &Daemon, expr: &str) -> f64 {
    let result = prometheus.query(expr);
    assert_eq!(result.len(), 1, "{expr}: {result:?}");
    value(&result[0])
}

/// The values of a query by one of its labels.
fn by_label(prometheus: &Daemon, expr: &str, label: &str) -> BTreeMap<String, f64> {
    prometheus
        .query(expr)
        .iter()
        .map(|s| {
            (
                s["metric"][label].as_str().unwrap_or_default().to_string(),
                value(s),
            )
        })
        .collect()
}

#[test]
fn every_fleet_dashboard_query_returns_data_for_a_simulated_fleet_and_shows_it() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut turn = 0;
    let nodes: Vec<Node> = FLEET
        .iter()
        .enumerate()
        .map(|(i, spec)| start_node(spec, &dir.path().join(spec.name), &mut turn, i))
        .collect();
    let prometheus = start_prometheus(dir.path(), &nodes);
    let dashboard = Dashboard::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/mig-fleet.json"));
    let all = all_values(&dashboard);

    // Every template variable and panel query answers, once the rules have
    // been evaluated a few times (the idle average needs two evaluations).
    let mut checks: Vec<(String, String)> = Vec::new();
    for v in dashboard.variables() {
        if let Some(definition) = v["definition"].as_str().filter(|_| v["type"] == "query") {
            let (query, _) = label_values_query(definition, &all);
            checks.push((format!("variable ${}", v["name"].as_str().unwrap()), query));
        }
    }
    let panels: Vec<(String, String)> = dashboard
        .queries()
        .into_iter()
        .map(|(title, _, expr)| (title, expr))
        .collect();
    assert!(
        panels.len() >= 20,
        "only {} panel queries in the fleet dashboard",
        panels.len()
    );
    checks.extend(
        panels
            .iter()
            .map(|(title, expr)| (format!("panel {title:?}"), substitute(expr, &all))),
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let failing: Vec<String> = checks
            .iter()
            .filter_map(|(what, query)| {
                unusable(&prometheus.query(query)).map(|why| format!("{what}: {query}\n    -> {why}"))
            })
            .collect();
        if failing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} fleet dashboard queries return no usable data after 40 s:\n{}\n{}",
            failing.len(),
            checks.len(),
            failing.join("\n"),
            prometheus.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // What the panels show is this fleet's, once every node's series have
    // gone through every rule group (asked again until then: a query above
    // may have answered before the last node's first scrape was recorded).
    let fleet_shown = || -> Vec<String> {
        let mut wrong = Vec::new();
        // The variables offer this fleet.
        let node_variable = dashboard.variable("node");
        let (query, label) = label_values_query(node_variable["definition"].as_str().unwrap(), &all);
        let offered: BTreeSet<String> = by_label(&prometheus, &query, &label).into_keys().collect();
        let names: BTreeSet<String> = FLEET.iter().map(|s| s.name.to_string()).collect();
        expect_eq(&mut wrong, offered, names, "$node offers the fleet's nodes");

        // The stat panels, against what the fleet holds.
        let panel = |title: &str| -> String {
            let (_, expr) = panels
                .iter()
                .find(|(t, _)| t == title)
                .unwrap_or_else(|| panic!("no panel {title:?}"));
            substitute(expr, &all)
        };
        let gpus: usize = nodes.iter().map(|n| n.world.gpus.len()).sum();
        let devices: usize = nodes
            .iter()
            .flat_map(|n| &n.world.gpus)
            .flat_map(|g| &g.gpu_instances)
            .map(|gi| gi.compute_instances.len())
            .sum();
        let (used, capacity) = nodes
            .iter()
            .flat_map(|n| &n.world.gpus)
            .fold((0, 0), |(u, c), g| {
                (u + g.slices_used().0, c + g.spec().compute_slices)
            });
        expect_eq(&mut wrong, scalar(&prometheus, &panel("Nodes")), 5.0, "Nodes");
        expect_eq(
            &mut wrong,
            scalar(&prometheus, &panel("GPUs")),
            gpus as f64,
            "GPUs",
        );
        expect_eq(
            &mut wrong,
            scalar(&prometheus, &panel("GPUs in MIG mode")),
            gpus as f64,
            "GPUs in MIG mode",
        );
        expect_eq(
            &mut wrong,
            scalar(&prometheus, &panel("GPUs with drift")),
            1.0,
            "GPUs with drift",
        );
        expect_eq(
            &mut wrong,
            scalar(&prometheus, &panel("MIG devices")),
            devices as f64,
            "MIG devices",
        );
        let in_use = scalar(&prometheus, &panel("SM slices in use"));
        if (in_use - used as f64 / capacity as f64).abs() >= 1e-9 {
            wrong.push(format!(
                "SM slices in use {in_use}, the fleet uses {used} of {capacity}"
            ));
        }

        // Drift: GPU 1 of h100-drifted, profile_mismatch, and only there.
        let drift = by_label(
            &prometheus,
            r#"sum by (node, reason) (node_reason:nvidia_mig_drift:count)"#,
            "node",
        );
        expect_eq(
            &mut wrong,
            drift,
            BTreeMap::from([("h100-drifted".to_string(), 1.0)]),
            "drift per node",
        );
        let reasons = by_label(&prometheus, "node_reason:nvidia_mig_drift:count", "reason");
        expect_eq(
            &mut wrong,
            reasons,
            BTreeMap::from([("profile_mismatch".to_string(), 1.0)]),
            "drift reasons",
        );

        // Fragmentation: the stranded memory slots of each node.
        let unplaceable = by_label(
            &prometheus,
            "node:nvidia_mig_memory_slices_unplaceable:sum",
            "node",
        );
        let want: BTreeMap<String, f64> = UNPLACEABLE.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        expect_eq(
            &mut wrong,
            unplaceable,
            want,
            "free memory slots no profile can use, per node",
        );

        // Reclaimable slices: exactly the idle pod's.
        let reclaimable = prometheus.query(&panel("Reclaimable slices"));
        let idle: Vec<(&str, &str, &str)> = reclaimable
            .iter()
            .map(|s| {
                let m = &s["metric"];
                (
                    m["node"].as_str().unwrap(),
                    m["namespace"].as_str().unwrap(),
                    m["pod"].as_str().unwrap(),
                )
            })
            .collect();
        expect_eq(
            &mut wrong,
            idle,
            [(IDLE_NODE, IDLE_NAMESPACE, IDLE_POD)],
            format!("reclaimable slices {reclaimable:?}"),
        );

        // SM slices per namespace: each held device's GPU instance counted once
        // for its namespace (one compute instance per GPU instance here).
        let mut want: BTreeMap<String, f64> = BTreeMap::new();
        for n in &nodes {
            for (namespace, _, mig_uuid) in &n.pods {
                let slices = n
                    .world
                    .gpus
                    .iter()
                    .flat_map(|g| g.gpu_instances.iter().map(move |gi| (g, gi)))
                    .find(|(_, gi)| gi.compute_instances.iter().any(|ci| &ci.uuid == mig_uuid))
                    .map(|(g, gi)| g.gi_profile(gi).unwrap().compute_slices)
                    .expect("a held device is in the World");
                *want.entry(namespace.clone()).or_default() += slices as f64;
            }
        }
        let per_namespace = by_label(&prometheus, &panel("SM slices per namespace"), "namespace");
        expect_eq(&mut wrong, per_namespace, want, "SM slices per namespace");

        // Every recorded series keeps the target's cluster.
        let clusters = by_label(
            &prometheus,
            "count by (cluster) (node:mig_exporter_build_info:count)",
            "cluster",
        );
        expect_eq(
            &mut wrong,
            clusters,
            BTreeMap::from([(CLUSTER.to_string(), 5.0)]),
            "nodes per cluster",
        );
        wrong
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let wrong = fleet_shown();
        if wrong.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet dashboard does not show the fleet after 20 s more:\n{}",
            wrong.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    eprintln!(
        "fleet end-to-end test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Notes in `wrong` what is not as wanted.
fn expect_eq<A: PartialEq<B> + std::fmt::Debug, B: std::fmt::Debug>(
    wrong: &mut Vec<String>,
    got: A,
    want: B,
    what: impl std::fmt::Display,
) {
    if got != want {
        wrong.push(format!("{what}: got {got:?}, want {want:?}"));
    }
}
