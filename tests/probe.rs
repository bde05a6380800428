//! `scripts/probe-gpu.sh` and `scripts/probe_nvml.py`, proved before a real
//! GPU is at hand: the NVML probe reads a World with MIG on and instances
//! through fake-nvml and must record exactly that World; the whole capture,
//! with `mig-sim` standing in for `nvidia-smi`, must replay as
//! tests/real_fixtures.rs replays a real node; and neither script may name a
//! command or NVML call that changes anything.
//!
//! The interpreter comes from `MIG_TEST_PYTHON` (NVIDIA's pynvml, PyPI
//! `nvidia-ml-py`), which `scripts/test.sh` exports; without it the tests
//! that run Python fail, naming it.

mod common;
#[path = "real_fixtures/recording.rs"]
mod recording;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{built, python, EXPORTER};
use mig_model::{Placement, Product, World};
use serde_json::Value;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// A directory whose `libnvidia-ml.so.1` is fake-nvml, for `LD_LIBRARY_PATH`.
fn fake_nvml_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(built("libfake_nvml.so"), dir.path().join("libnvidia-ml.so.1"))
        .expect("symlink libnvidia-ml.so.1");
    dir
}

/// GPU 0: H100 in MIG mode with a 3g.40gb GI split into two 1c.3g.40gb CIs,
/// a 2g.20gb GI without a CI and a 1g.10gb GI with its full CI; GPU 1: H100
/// with MIG disabled.
fn node() -> World {
    let mut w = World::new("probe-node", Product::H100_80GB, 2);
    let gpu = &mut w.gpus[0];
    gpu.set_mig_mode(true);
    let split = gpu.create_gpu_instance(9, Some(4)).expect("3g.40gb at 4");
    gpu.create_gpu_instance(14, Some(0)).expect("2g.20gb at 0");
    let small = gpu.create_gpu_instance(19, Some(2)).expect("1g.10gb at 2");
    gpu.create_compute_instance(split, Some(0)).expect("1c.3g.40gb");
    gpu.create_compute_instance(split, Some(0))
        .expect("second 1c.3g.40gb");
    gpu.create_compute_instance(small, None).expect("1g.10gb CI");
    w.validate().expect("a valid World");
    w
}

fn run_probe_nvml(world: &Path) -> Value {
    let libdir = fake_nvml_dir();
    let out = Command::new(python())
        .arg(scripts().join("probe_nvml.py"))
        .env("LD_LIBRARY_PATH", libdir.path())
        .env(mig_model::WORLD_ENV, world)
        .output()
        .expect("run probe_nvml.py");
    assert!(
        out.status.success(),
        "probe_nvml.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe_nvml.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A recorded call's value, failing the test when NVML refused it.
fn ok<'a>(call: &'a Value, what: &str) -> &'a Value {
    assert_eq!(call["rc"], 0, "{what}: {call}");
    &call["value"]
}

fn placement(v: &Value) -> Placement {
    let n = |i: usize| {
        v[i].as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .expect("a placement number")
    };
    Placement::new(n(0), n(1))
}

#[test]
fn probe_nvml_records_the_world_fake_nvml_serves() {
    let world = node();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("world.json");
    world.save(&path).expect("write World");
    let rec = run_probe_nvml(&path);

    assert_eq!(rec["format"], 1);
    assert_eq!(rec["init"]["rc"], 0);
    assert_eq!(
        ok(&rec["driver_version"], "driver"),
        world.driver_version.as_str()
    );
    assert_eq!(ok(&rec["device_count"], "count"), world.gpus.len());
    let gpus = rec["gpus"].as_array().expect("gpus");
    assert_eq!(gpus.len(), world.gpus.len());
    for (gpu, g) in world.gpus.iter().zip(gpus) {
        let spec = gpu.spec();
        let at = |what: &str| format!("GPU {} {what}", gpu.index);
        assert_eq!(ok(&g["name"], &at("name")), spec.name);
        assert_eq!(ok(&g["uuid"], &at("uuid")), gpu.uuid.as_str());
        let pci = ok(&g["pci"], &at("pci"));
        assert_eq!(pci["bus_id"], gpu.pci_bus_id.as_str());
        assert_eq!(pci["pci_device_id"], spec.pci_device_id);
        let mode = ok(&g["mig_mode"], &at("MIG mode"));
        assert_eq!(
            (mode["current"].clone(), mode["pending"].clone()),
            (u8::from(gpu.mig.current).into(), u8::from(gpu.mig.pending).into())
        );

        // Every profile index until the driver refuses one: each profile of
        // the table at its NVML index, NOT_SUPPORTED between, INVALID_ARGUMENT last.
        let entries = g["gpu_instance_profiles"].as_array().expect("profiles");
        let last = entries.last().expect("at least one profile index");
        assert_eq!(
            last["rc"],
            2,
            "{}: the last index is the refused one",
            at("profiles")
        );
        let placer = gpu.placer();
        let mut seen = BTreeSet::new();
        for e in entries {
            let index = e["index"].as_u64().expect("index") as u32;
            let Some(p) = spec.profiles.iter().find(|p| p.nvml_index == index) else {
                assert_ne!(e["rc"], 0, "{}: index {index} answered", at("profiles"));
                continue;
            };
            seen.insert(p.id);
            assert_eq!(e["rc"], 0, "{}: index {index}", at("profiles"));
            let info = &e["info"];
            assert_eq!(info["id"], p.id);
            assert_eq!(info["name"], p.nvml_name());
            assert_eq!(info["slice_count"], p.compute_slices);
            assert_eq!(info["instance_count"], p.max_instances);
            assert_eq!(info["sm_count"], p.sm_count);
            assert_eq!(info["memory_mib"], p.memory_mib);
            assert_eq!(
                info["engines"],
                serde_json::json!({"copy": p.engines.copy, "decoder": p.engines.decoder,
                    "encoder": p.engines.encoder, "jpeg": p.engines.jpeg, "ofa": p.engines.ofa})
            );
            let placements: Vec<Placement> = ok(&e["possible_placements"], &at("placements"))
                .as_array()
                .expect("placements")
                .iter()
                .map(placement)
                .collect();
            let expected: Vec<Placement> = p
                .placement_starts
                .iter()
                .map(|&s| Placement::new(s, p.memory_slices))
                .collect();
            assert_eq!(placements, expected, "{} profile {}", at("placements"), p.id);
            assert_eq!(
                ok(&e["remaining_capacity"], &at("remaining")),
                placer.remaining_capacity(p),
                "{} profile {}",
                at("remaining capacity"),
                p.id
            );
        }
        let all: BTreeSet<u32> = spec.profiles.iter().map(|p| p.id).collect();
        assert_eq!(seen, all, "{}: every profile recorded", at("profiles"));

        // GPU instances with their CI profiles and compute instances.
        let recorded: Vec<&Value> = g["gpu_instances"].as_array().expect("GIs").iter().collect();
        let ids = |v: &[&Value]| -> BTreeSet<(u64, u64, Placement)> {
            v.iter()
                .map(|gi| {
                    let info = ok(&gi["info"], "GI info");
                    (
                        info["id"].as_u64().unwrap(),
                        info["profile_id"].as_u64().unwrap(),
                        placement(&info["placement"]),
                    )
                })
                .collect()
        };
        let expected: BTreeSet<(u64, u64, Placement)> = gpu
            .gpu_instances
            .iter()
            .map(|gi| (u64::from(gi.id), u64::from(gi.profile_id), gi.placement))
            .collect();
        assert_eq!(ids(&recorded), expected, "{}", at("GPU instances"));
        for r in &recorded {
            let gi_id = ok(&r["info"], "GI info")["id"].as_u64().unwrap() as u32;
            let gi = gpu.gpu_instance(gi_id).expect("a GI of the World");
            let ci_entries = r["compute_instance_profiles"].as_array().expect("CI profiles");
            assert_eq!(
                ci_entries.last().expect("CI profile indexes")["rc"],
                2,
                "GI {gi_id}"
            );
            let offered: BTreeSet<u64> = ci_entries
                .iter()
                .filter(|e| e["rc"] == 0)
                .map(|e| e["info"]["id"].as_u64().unwrap())
                .collect();
            let ci_profiles = gpu.ci_profiles(gi_id).expect("CI profiles");
            assert_eq!(
                offered,
                ci_profiles
                    .iter()
                    .map(|p| u64::from(p.id))
                    .collect::<BTreeSet<_>>(),
                "GI {gi_id} CI profiles"
            );
            let cis: BTreeSet<(u64, u64, Placement)> = ci_entries
                .iter()
                .filter(|e| e["rc"] == 0)
                .flat_map(|e| ok(&e["compute_instances"], "CIs").as_array().unwrap().clone())
                .map(|c| {
                    let c = ok(&c, "CI info");
                    (
                        c["id"].as_u64().unwrap(),
                        c["profile_id"].as_u64().unwrap(),
                        placement(&c["placement"]),
                    )
                })
                .collect();
            let expected: BTreeSet<(u64, u64, Placement)> = gi
                .compute_instances
                .iter()
                .map(|c| (u64::from(c.id), u64::from(c.profile_id), c.placement))
                .collect();
            assert_eq!(cis, expected, "GI {gi_id} compute instances");
        }

        // MIG device handles: one per compute instance, then NOT_FOUND.
        let devices = g["mig_devices"].as_array().expect("MIG devices");
        let found: BTreeSet<(u64, u64, String)> = devices
            .iter()
            .filter(|d| d["rc"] == 0)
            .map(|d| {
                (
                    ok(&d["gpu_instance_id"], "GI id").as_u64().unwrap(),
                    ok(&d["compute_instance_id"], "CI id").as_u64().unwrap(),
                    ok(&d["uuid"], "MIG UUID").as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: BTreeSet<(u64, u64, String)> = gpu
            .gpu_instances
            .iter()
            .flat_map(|gi| {
                gi.compute_instances
                    .iter()
                    .map(move |c| (u64::from(gi.id), u64::from(c.id), c.uuid.clone()))
            })
            .collect();
        assert_eq!(found, expected, "{}", at("MIG devices"));
        assert_ne!(devices.last().expect("a MIG device index")["rc"], 0);
    }
}

/// `scripts/probe-gpu.sh` end to end, `mig-sim` as `nvidia-smi` and
/// fake-nvml as NVML: the recording replays through the exporter as a real
/// one does, and covers GPU and compute instances the real H100 recording
/// (MIG disabled) does not have.
#[test]
fn a_probe_gpu_recording_of_a_simulated_node_replays() {
    let world = node();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("world.json");
    world.save(&path).expect("write World");
    let out = dir.path().join("recording");
    let libdir = fake_nvml_dir();
    let run = Command::new("bash")
        .arg(scripts().join("probe-gpu.sh"))
        .arg(&out)
        .env("NVIDIA_SMI", built("mig-sim"))
        .env("PYTHON", python())
        .env("LD_LIBRARY_PATH", libdir.path())
        .env(mig_model::WORLD_ENV, &path)
        .output()
        .expect("run probe-gpu.sh");
    assert!(
        run.status.success(),
        "probe-gpu.sh failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let codes = std::fs::read_to_string(out.join("exit-codes.tsv")).expect("exit-codes.tsv");
    for file in [
        "nvml.json",
        "mig-lgip.txt",
        "mig-lgipp.txt",
        "mig-lgi.txt",
        "mig-lci.txt",
        "nvidia-smi-L.txt",
    ] {
        assert!(
            codes.lines().any(|l| l.starts_with(&format!("{file}\t0\t"))),
            "{file} did not record exit code 0:\n{codes}"
        );
    }
    // mig-sim has no `-q`: recorded as failed, and the replay takes the
    // GPUs' identity from NVML instead.
    assert!(
        codes
            .lines()
            .any(|l| l.starts_with("nvidia-smi-q.txt\t") && !l.starts_with("nvidia-smi-q.txt\t0\t")),
        "{codes}"
    );

    let recording = recording::replay(&out, Path::new(EXPORTER), &built("libfake_nvml.so"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let gis: usize = world.gpus.iter().map(|g| g.gpu_instances.len()).sum();
    let cis: usize = world
        .gpus
        .iter()
        .flat_map(|g| &g.gpu_instances)
        .map(|gi| gi.compute_instances.len())
        .sum();
    assert_eq!(recording.gpu_instances.len(), gis);
    assert_eq!(recording.compute_instances.len(), cis);
    assert_eq!(recording.mig_device_uuids.len(), cis);
    assert_eq!(
        recording.gpus.iter().map(|g| g.mig_uuids.len()).sum::<usize>(),
        cis,
        "-L lists every MIG device"
    );
    // Without `-q`, NVML gives what an inline product table needs.
    for gpu in &recording.gpus {
        let product = recording.inline_product(gpu).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(product["architecture"], "hopper", "NVML_DEVICE_ARCH_HOPPER");
        assert_eq!(product["memory_mib"], world.gpus[0].spec().memory_mib);
    }
}

/// Both scripts only query: every NVML function `probe_nvml.py` names is a
/// Get/Is query (or init and shutdown), and every `nvidia-smi` call of
/// `probe-gpu.sh` uses only listing options.
#[test]
fn the_probes_only_query() {
    let py = std::fs::read_to_string(scripts().join("probe_nvml.py")).expect("probe_nvml.py");
    let mut named = BTreeSet::new();
    for (at, _) in py.match_indices("nvml") {
        let name: String = py[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // Function names: `nvml` then an upper-case letter (not `nvml.json`),
        // and not a C type (`c_nvmlGpuInstance_t`).
        if name.chars().nth(4).is_some_and(|c| c.is_ascii_uppercase()) && !name.ends_with("_t") {
            named.insert(name);
        }
    }
    assert!(named.contains("nvmlDeviceGetGpuInstanceProfileInfo"), "{named:?}");
    let mutating: Vec<&String> = named
        .iter()
        .filter(|name| {
            let query = ["Get", "Is"].iter().any(|verb| name.contains(verb))
                || ["nvmlInit", "nvmlShutdown"].contains(&name.as_str());
            let changes = [
                "Set", "Create", "Destroy", "Reset", "Clear", "Register", "Enable", "Disable",
            ]
            .iter()
            .any(|verb| name.contains(verb));
            !query || changes
        })
        .collect();
    assert!(
        mutating.is_empty(),
        "probe_nvml.py names non-query NVML calls: {mutating:?}"
    );

    let sh = std::fs::read_to_string(scripts().join("probe-gpu.sh")).expect("probe-gpu.sh");
    let joined = sh.replace("\\\n", " ");
    let calls: Vec<&str> = joined
        .lines()
        .filter(|l| l.trim_start().starts_with("record ") && l.contains("\"$nvidia_smi\""))
        .collect();
    assert!(calls.len() >= 9, "{calls:?}");
    let listing = [
        "-q",
        "-x",
        "-L",
        "mig",
        "-lgip",
        "-lgipp",
        "-lgi",
        "-lci",
        "-lcip",
        "--format=csv",
    ];
    for call in calls {
        let after = call.split("\"$nvidia_smi\"").nth(1).unwrap_or_default();
        for arg in after.split_whitespace() {
            assert!(
                listing.contains(&arg) || arg.starts_with("--query-gpu="),
                "probe-gpu.sh passes '{arg}' to nvidia-smi, not a listing option: {call}"
            );
        }
    }
}
