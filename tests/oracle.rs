//! The exporter's geometry and memory series against an oracle outside the
//! project: tests/oracle/nvml_oracle.py, written against NVIDIA's pynvml
//! (PyPI `nvidia-ml-py`) and nothing of ours, reads the same NVML the exporter
//! reads (fake-nvml, loaded by both as `libnvidia-ml.so.1`) and computes what
//! every covered series must be; its header lists the families it covers,
//! where each value comes from, and what it leaves to other tests.
//!
//! The node goes through a scripted sequence: every built-in scenario, then
//! reconfigurations with `mig-sim` (instances destroyed and created, compute
//! instances removed, added and split, memory in use, MIG disabled, a disable
//! left pending, a caller without the privilege to read a MIG GPU's memory),
//! reboots, and one GPU of every product the simulator knows. After each
//! change the test waits until the exporter has polled twice (the second poll
//! began after the change), and the oracle must find every covered series of
//! that `/metrics` exactly as NVML says. The golden files of tests/golden.rs
//! must pass the same oracle against their scenarios' Worlds. A last test
//! feeds the oracle expositions made wrong on purpose and requires it to fail,
//! naming the series.
//!
//! The interpreter comes from `MIG_TEST_PYTHON` (a Python with pynvml), which
//! `scripts/test.sh` exports; without it the tests fail, naming it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{built, edit_world, mig_sim, python, value, Exporter};
use mig_exporter::source::scenarios;
use mig_model::{Gpu, Product, World};
use serde_json::Value;

const POLLS: &str = "mig_exporter_poll_duration_seconds_count{source=\"nvml\"}";
const UP: &str = "mig_exporter_source_up{source=\"nvml\"}";

/// What the oracle said of one exposition: its exit status and report.
struct Verdict {
    code: Option<i32>,
    report: Value,
    stderr: String,
}

/// A World file, and the oracle reading it through fake-nvml.
struct Oracle {
    dir: tempfile::TempDir,
    world: PathBuf,
    /// Where `libnvidia-ml.so.1` is fake-nvml, for pynvml.
    libdir: tempfile::TempDir,
    python: PathBuf,
}

impl Oracle {
    fn new(name: &str, node: World) -> Oracle {
        let dir = tempfile::tempdir().expect("temp dir");
        let world = dir.path().join("world.json");
        node.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        node.save(&world).expect("write the World");
        let libdir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink(built("libfake_nvml.so"), libdir.path().join("libnvidia-ml.so.1"))
            .expect("symlink libnvidia-ml.so.1");
        Oracle {
            dir,
            world,
            libdir,
            python: python(),
        }
    }

    /// The oracle's verdict on `exposition`, read against the World as it is.
    fn verdict(&self, exposition: &str) -> Verdict {
        let file = self.dir.path().join("metrics.txt");
        std::fs::write(&file, exposition).expect("write the exposition");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/nvml_oracle.py");
        let out = Command::new(&self.python)
            .arg(script)
            .arg(&file)
            .env("LD_LIBRARY_PATH", self.libdir.path())
            .env(mig_model::WORLD_ENV, &self.world)
            .output()
            .expect("run nvml_oracle.py");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "nvml_oracle.py printed no report ({e}, exit {:?}):\n{}{stderr}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout)
            )
        });
        Verdict {
            code: out.status.code(),
            report,
            stderr,
        }
    }

    /// Requires the oracle to find every covered series of `exposition` right.
    fn passes(&self, step: &str, exposition: &str) -> Value {
        let verdict = self.verdict(exposition);
        assert_eq!(
            verdict.code,
            Some(0),
            "{step}: the exposition and pynvml disagree:\n{}\n{}",
            serde_json::to_string_pretty(&verdict.report).unwrap_or_default(),
            verdict.stderr
        );
        verdict.report
    }
}

/// A node on fake-nvml read by the exporter, and the oracle beside it.
struct Node {
    oracle: Oracle,
    exporter: Exporter,
}

impl Node {
    /// The built-in scenario `name` as a World file, and an exporter reading
    /// it through NVML (fake-nvml) alone: no DCGM, no GPM.
    fn scenario(name: &str) -> Node {
        Node::world(name, scenario(name))
    }

    /// `node` as a World file, and an exporter reading it through NVML
    /// (fake-nvml) alone: no DCGM, no GPM.
    fn world(name: &str, node: World) -> Node {
        let oracle = Oracle::new(name, node);
        let library = built("libfake_nvml.so");
        let exporter = Exporter::start_with_env(
            &[
                "--nvml",
                "--nvml.library",
                library.to_str().expect("a UTF-8 path"),
                "--no-dcgm",
                "--no-gpm",
            ],
            &[("MIG_WORLD", oracle.world.as_path())],
        );
        Node { oracle, exporter }
    }

    fn world_file(&self) -> &Path {
        &self.oracle.world
    }

    fn sim(&self, args: &[&str]) {
        mig_sim(self.world_file(), args);
    }

    /// `/metrics` once the exporter has published a successful poll that
    /// began after this call: the poll count has gone up by two since.
    fn settled_metrics(&self, step: &str) -> String {
        let polls = |body: &str| value(body, POLLS).and_then(|v| v.parse::<f64>().ok());
        let start = polls(&self.exporter.metrics()).unwrap_or(0.0);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.exporter.metrics();
            if polls(&body).is_some_and(|n| n >= start + 2.0) && value(&body, UP).as_deref() == Some("1") {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{step}: no successful NVML poll after the change in 20 s\n{}",
                self.exporter.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exporter to poll the World as it is now, and requires
    /// the oracle to find every covered series right.
    fn check(&self, step: &str, seen: &mut Coverage) {
        let exposition = self.settled_metrics(step);
        seen.add(step, &self.oracle.passes(step, &exposition));
    }
}

fn scenario(name: &str) -> World {
    scenarios::build(name).unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

/// What the sequence went through: series per family and node shapes, over all steps.
#[derive(Default)]
struct Coverage {
    steps: Vec<String>,
    series: BTreeMap<String, u64>,
    shapes: BTreeMap<&'static str, u64>,
}

impl Coverage {
    fn add(&mut self, step: &str, report: &Value) {
        self.steps.push(step.to_string());
        for (family, count) in report["series"].as_object().expect("series per family") {
            *self.series.entry(family.clone()).or_default() += count.as_u64().expect("a count");
        }
        for gpu in report["gpus"].as_array().expect("gpus") {
            let flag = |k: &str| gpu[k].as_bool().expect("a flag");
            let count = |k: &str| gpu[k].as_u64().expect("a count");
            for (shape, hit) in [
                ("GPU with MIG on", flag("mig_current")),
                ("GPU with MIG off", !flag("mig_current")),
                ("MIG change pending", flag("mig_pending_differs")),
                (
                    "MIG on, no GPU instance",
                    flag("mig_current") && count("gpu_instances") == 0,
                ),
                (
                    "GPU instance without compute instance",
                    count("gpu_instances_without_ci") > 0,
                ),
                (
                    "GPU instance split in compute instances",
                    count("split_gpu_instances") > 0,
                ),
                ("GPU memory refused", !flag("memory_told")),
            ] {
                *self.shapes.entry(shape).or_default() += u64::from(hit);
            }
        }
    }
}

/// One GPU of every product, MIG on, given one GPU instance of each profile
/// in the product's order while one fits; every third left without a compute
/// instance, the others with one, or split in two where the profile allows.
fn every_product() -> World {
    let mut node = World::new("oracle-node", Product::ALL[0], 0);
    for (index, product) in (0..).zip(Product::ALL) {
        let mut gpu = Gpu::new("oracle-node", product, index);
        gpu.set_mig_mode(true);
        let profiles: Vec<u32> = gpu.spec().profiles.iter().map(|p| p.id).collect();
        for (n, profile) in profiles.into_iter().enumerate() {
            let Ok(gi) = gpu.create_gpu_instance(profile, None) else {
                continue;
            };
            match n % 3 {
                0 => {}
                1 => {
                    gpu.create_compute_instance(gi, None).expect("the default CI");
                }
                _ => {
                    // Two 1c compute instances where the GPU instance has room, else its default.
                    if gpu.create_compute_instance(gi, Some(0)).is_ok() {
                        let _ = gpu.create_compute_instance(gi, Some(0));
                    } else {
                        gpu.create_compute_instance(gi, None).expect("the default CI");
                    }
                }
            }
        }
        for (k, gi) in (1..).zip(gpu.gpu_instances.iter_mut()) {
            gi.load.memory_used_mib = 100 * k + u64::from(index);
        }
        node.gpus.push(gpu);
    }
    node
}

#[test]
fn every_geometry_and_memory_series_is_what_pynvml_reads() {
    let mut seen = Coverage::default();

    // h100-mixed, then reconfigured GPU by GPU, rebooted, and set up again.
    let node = Node::scenario("h100-mixed");
    node.check("h100-mixed", &mut seen);
    node.sim(&["-i", "0", "mig", "-dci"]);
    node.sim(&["-i", "0", "mig", "-dgi"]);
    node.check("h100-mixed: GPU 0 emptied, MIG still on", &mut seen);
    // 4g.40gb at 0 is GI 1, 3g.40gb at 4 is GI 2 (the slot tree).
    node.sim(&["-i", "0", "mig", "-cgi", "4g.40gb,3g.40gb"]);
    node.sim(&["-i", "0", "mig", "-cci", "-gi", "1"]);
    node.sim(&["-i", "0", "mig", "-cci", "1,0", "-gi", "2"]);
    node.check("h100-mixed: GPU 0 4g + 3g split 2c + 1c", &mut seen);
    node.sim(&["-i", "1", "mig", "-dci", "-gi", "2"]);
    node.check("h100-mixed: GPU 1 GI 2 without its compute instance", &mut seen);
    node.sim(&["load", "--gpu", "1", "--gi", "1", "--fb-used-mib", "30000"]);
    node.sim(&["load", "--gpu", "0", "--gi", "2", "--fb-used-mib", "1234"]);
    node.check("h100-mixed: memory in use changed", &mut seen);
    // GPU 2: 4g at 0, 2g at 4, 1g at 6 (GI 13); the 1g makes way for a 1g+me.
    node.sim(&["-i", "2", "mig", "-dci", "-gi", "13"]);
    node.sim(&["-i", "2", "mig", "-dgi", "-gi", "13"]);
    node.sim(&["-i", "2", "mig", "-cgi", "1g.10gb+me", "-C"]);
    node.check("h100-mixed: GPU 2 1g.10gb replaced by 1g.10gb+me", &mut seen);
    node.sim(&["-i", "3", "mig", "-dci"]);
    node.sim(&["-i", "3", "mig", "-dgi"]);
    node.sim(&["-i", "3", "-mig", "0"]);
    node.check("h100-mixed: GPU 3 MIG disabled", &mut seen);
    edit_world(node.world_file(), |w| w.faults.unprivileged = true);
    node.check(
        "h100-mixed: unprivileged, no memory of GPUs in MIG mode",
        &mut seen,
    );
    edit_world(node.world_file(), |w| w.faults.unprivileged = false);
    // Hopper applies a MIG change at once, a client attached or not (mig-model's World::set_mig_mode).
    node.sim(&["clients", "--gpu", "5", "--count", "1"]);
    node.sim(&["-i", "5", "-mig", "0"]);
    node.check(
        "h100-mixed: GPU 5 MIG disabled under a client, its instances gone",
        &mut seen,
    );
    node.sim(&["reboot"]);
    node.check("h100-mixed: rebooted", &mut seen);
    edit_world(node.world_file(), |w| w.gpus[1].telemetry.memory_used_mib = 4321);
    node.sim(&["-i", "0", "-mig", "1"]);
    node.sim(&["-i", "0", "mig", "-cgi", "1g.20gb,1g.10gb,2g.20gb", "-C"]);
    node.check("h100-mixed: after the reboot, GPU 0 set up again", &mut seen);
    drop(node);

    let node = Node::scenario("a100-single");
    node.check("a100-single", &mut seen);
    node.sim(&["-i", "0", "mig", "-dci"]);
    node.sim(&["-i", "0", "mig", "-dgi"]);
    node.sim(&["-i", "0", "mig", "-cgi", "3g.20gb,2g.10gb,1g.5gb", "-C"]);
    node.check("a100-single: GPU 0 3g + 2g + 1g", &mut seen);
    // Ampere needs a reset to leave MIG mode, refused while a client is attached.
    node.sim(&["clients", "--gpu", "1", "--count", "1"]);
    node.sim(&["-i", "1", "-mig", "0"]);
    node.check(
        "a100-single: GPU 1 MIG disable pending (a client attached)",
        &mut seen,
    );
    node.sim(&["reboot"]);
    node.check(
        "a100-single: rebooted (Ampere keeps MIG mode, GPU 1 leaves it)",
        &mut seen,
    );
    drop(node);

    let node = Node::scenario("h100-rebooted");
    node.check("h100-rebooted", &mut seen);
    drop(node);

    let node = Node::scenario("gi-without-ci");
    node.check("gi-without-ci", &mut seen);
    node.sim(&["-i", "4", "mig", "-cci", "-gi", "3"]);
    node.check("gi-without-ci: GPU 4 GI 3 given a compute instance", &mut seen);
    drop(node);

    let node = Node::scenario("a100-pending");
    node.check("a100-pending", &mut seen);
    node.sim(&["reboot"]);
    node.check("a100-pending: rebooted, the pending disable applied", &mut seen);
    drop(node);

    // Every product the simulator knows, one GPU each, filled with what fits.
    let node = Node::world("every product", every_product());
    node.check("every product", &mut seen);
    let last = (Product::ALL.len() - 1).to_string();
    node.sim(&["-i", &last, "mig", "-dci"]);
    node.sim(&["-i", &last, "mig", "-dgi"]);
    node.sim(&["-i", "0", "mig", "-dci"]);
    node.check(
        "every product: the last GPU emptied, GPU 0 without compute instances",
        &mut seen,
    );
    drop(node);

    // Every scenario, and every shape the sequence means to reach, was checked.
    for (name, _) in scenarios::SCENARIOS {
        assert!(
            seen.steps.iter().any(|s| s == name),
            "scenario {name} was not checked"
        );
    }
    for shape in [
        "GPU with MIG on",
        "GPU with MIG off",
        "MIG change pending",
        "MIG on, no GPU instance",
        "GPU instance without compute instance",
        "GPU instance split in compute instances",
        "GPU memory refused",
    ] {
        assert!(
            seen.shapes.get(shape).is_some_and(|&n| n > 0),
            "no step had a {shape}: {:?}",
            seen.shapes
        );
    }
    // Every covered family had series to compare, but the two the exporter
    // serves only from DCGM: those are checked absent.
    for (family, &count) in &seen.series {
        let dcgm_only = family.ends_with("_memory_free_bytes");
        assert_eq!(
            count == 0,
            dcgm_only,
            "{family}: {count} series compared over {} steps",
            seen.steps.len()
        );
    }
    assert_eq!(
        seen.series.len(),
        22,
        "covered families: {:?}",
        seen.series.keys()
    );
}

/// The golden files (tests/golden.rs: the simulator's exposition of each
/// built-in scenario) hold what NVML says of that scenario's World: the
/// checked output of the code, not just its output.
#[test]
fn the_golden_files_hold_what_pynvml_reads() {
    for (name, _) in scenarios::SCENARIOS {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.prom"));
        let exposition =
            std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        let report = Oracle::new(name, scenario(name)).passes(&golden.display().to_string(), &exposition);
        let compared: u64 = report["series"]
            .as_object()
            .expect("series per family")
            .values()
            .map(|n| n.as_u64().expect("a count"))
            .sum();
        assert!(compared > 100, "{name}: only {compared} series compared");
    }
}

/// Replaces the value of the first series of `family` (all labels, in the
/// order served) that contains `label`, returning the new exposition.
fn with_value(exposition: &str, family: &str, label: &str, new: &str) -> (String, String) {
    let mut series = None;
    let text = exposition
        .lines()
        .map(|line| {
            if series.is_none() && line.starts_with(&format!("{family}{{")) && line.contains(label) {
                let (key, _) = line.rsplit_once(' ').expect("series value");
                series = Some(key.to_string());
                format!("{key} {new}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    (
        text,
        series.unwrap_or_else(|| panic!("no {family} series with {label}")),
    )
}

#[test]
fn the_oracle_fails_on_a_wrong_exposition() {
    let node = Node::scenario("gi-without-ci");
    let exposition = node.settled_metrics("gi-without-ci");
    let good = node.oracle.verdict(&exposition);
    assert_eq!(good.code, Some(0), "the served exposition: {}", good.report);

    let mismatches = |v: &Verdict| -> Vec<String> {
        v.report["mismatches"]
            .as_array()
            .expect("mismatches")
            .iter()
            .map(|m| m.as_str().expect("text").to_string())
            .collect()
    };
    let fails_on = |what: &str, text: &str, series: &str| {
        let verdict = node.oracle.verdict(text);
        let found = mismatches(&verdict);
        assert_eq!(
            verdict.code,
            Some(1),
            "{what}: the oracle passed it: {}",
            verdict.report
        );
        assert_eq!(found.len(), 1, "{what}: {found:?}");
        let (family, labels) = series.split_once('{').expect("name{labels}");
        let mut wanted: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
        wanted.sort_unstable();
        let named = found[0].starts_with(&format!("{family}{{{}}}", wanted.join(",")));
        assert!(
            named,
            "{what}: the mismatch names another series: {found:?}, wanted {series}"
        );
    };

    // A wrong value: GPU 0 could hold one more 1g.10gb than it can.
    let (text, series) = with_value(
        &exposition,
        "nvidia_mig_profile_remaining_instances",
        "profile_id=\"19\"",
        "1",
    );
    fails_on("remaining capacity off by one", &text, &series);
    let (text, series) = with_value(
        &exposition,
        "nvidia_mig_gpu_instance_memory_used_bytes",
        "gpu=\"2\"",
        "7",
    );
    fails_on("GI memory in use changed", &text, &series);

    // A missing series: the first compute instance left out.
    let dropped = exposition
        .lines()
        .find(|l| l.starts_with("nvidia_mig_compute_instance_info{"))
        .expect("a compute instance");
    let text: String = exposition
        .lines()
        .filter(|l| *l != dropped)
        .map(|l| format!("{l}\n"))
        .collect();
    fails_on(
        "a compute instance missing",
        &text,
        dropped.rsplit_once(' ').expect("series value").0,
    );

    // A stale series: a GPU instance that does not exist (GPU 3 has a 7g.80gb only).
    let uuid = exposition
        .lines()
        .find(|l| l.starts_with("nvidia_mig_mode_current{gpu=\"3\""))
        .and_then(|l| l.split("gpu_uuid=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("GPU 3's UUID");
    let stale = format!(
        "nvidia_mig_gpu_instance_compute_instances{{gpu=\"3\",gpu_uuid=\"{uuid}\",gi=\"9\",profile=\"1g.10gb\"}}"
    );
    fails_on(
        "a stale GPU instance",
        &format!("{exposition}{stale} 1\n"),
        &stale,
    );

    // A GI without compute instance has no MIG device: memory in use is unknown, not 0.
    let gi_without_ci = exposition
        .lines()
        .find(|l| l.starts_with("nvidia_mig_gpu_instance_compute_instances{") && l.ends_with(" 0"))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(series, _)| series.replacen("_compute_instances{", "_memory_used_bytes{", 1))
        .expect("gi-without-ci has a GI without compute instance");
    fails_on(
        "memory in use of a GI without compute instance",
        &format!("{exposition}{gi_without_ci} 0\n"),
        &gi_without_ci,
    );
}
