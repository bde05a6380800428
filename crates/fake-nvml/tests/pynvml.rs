//! NVIDIA's own Python binding (PyPI `nvidia-ml-py`, module `pynvml`) reads
//! a World through `libfake_nvml.so`, loaded as `libnvidia-ml.so.1` from
//! `LD_LIBRARY_PATH`; what it prints must be the World, and must agree with
//! `mig-exporter geometry --output json --world` on the same file.
//!
//! The interpreter comes from `MIG_TEST_PYTHON`, which `scripts/test.sh`
//! exports after installing `nvidia-ml-py` into a virtualenv. Without it the
//! test fails (it never skips): set it to a Python that can `import pynvml`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mig_model::{Gpu, Product, World};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

fn python() -> PathBuf {
    let Some(py) = std::env::var_os("MIG_TEST_PYTHON").filter(|p| !p.is_empty()) else {
        panic!(
            "MIG_TEST_PYTHON is not set. It names a Python with NVIDIA's pynvml \
             (`pip install nvidia-ml-py`); scripts/test.sh creates one under the target \
             directory and exports it."
        );
    };
    let py = PathBuf::from(py);
    let probe = Command::new(&py)
        .args([
            "-c",
            "import importlib.metadata as m, pynvml; print(m.version('nvidia-ml-py'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("MIG_TEST_PYTHON={} cannot run: {e}", py.display()));
    assert!(
        probe.status.success(),
        "MIG_TEST_PYTHON={} has no pynvml (pip install nvidia-ml-py): {}",
        py.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    py
}

/// Runs `pynvml_read.py` against the World at `world`.
fn pynvml_read(world: &Path) -> Value {
    let py = python();
    let libdir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(common::lib_path(), libdir.path().join("libnvidia-ml.so.1"))
        .expect("symlink libnvidia-ml.so.1");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pynvml_read.py");
    let out = Command::new(&py)
        .arg(&script)
        .env("LD_LIBRARY_PATH", libdir.path())
        .env(mig_model::WORLD_ENV, world)
        .output()
        .expect("run pynvml_read.py");
    assert!(
        out.status.success(),
        "pynvml_read.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pynvml_read.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `mig-exporter geometry --output json --world FILE`, the exporter built
/// beside this crate's library.
fn geometry(world: &Path) -> Value {
    let exe = common::artifact_dir().join("mig-exporter");
    assert!(
        exe.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        exe.display()
    );
    let out = Command::new(&exe)
        .args(["geometry", "--output", "json", "--world"])
        .arg(world)
        .output()
        .expect("run mig-exporter geometry");
    assert!(
        out.status.success(),
        "mig-exporter geometry failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("geometry JSON")
}

/// GPU 0: H100 with three GIs (one without a CI, one split in two 1c CIs,
/// loaded: SM 0.6 and 0.3, DRAM 0.25); GPU 1: H100 with MIG disabled, as the
/// fixture's; GPU 2: A30 (4 memory slots) with a 2g GI and its CI and a 1g GI.
fn node() -> World {
    let mut w = common::h100_mixed();
    let split = w.gpus[0]
        .gpu_instances
        .iter_mut()
        .find(|g| g.id == 2)
        .expect("GI 2");
    split.load.dram_active = 0.25;
    split.compute_instances[0].load.sm_active = 0.6;
    split.compute_instances[1].load.sm_active = 0.3;
    let mut a30 = Gpu::new("node", Product::A30_24GB, 2);
    a30.set_mig_mode(true);
    let two = a30
        .spec()
        .profiles
        .iter()
        .find(|p| p.compute_slices == 2 && p.name.to_string() == "2g.12gb")
        .expect("A30 2g.12gb");
    let gi = a30.create_gpu_instance(two.id, None).expect("2g.12gb");
    a30.create_compute_instance(gi, None).expect("its CI");
    let one = a30.spec().profiles[0].id;
    a30.create_gpu_instance(one, None).expect("1g.6gb");
    a30.gpu_instances[0].load.memory_used_mib = 321;
    w.gpus.push(a30);
    w.validate().expect("a valid World");
    w
}

fn write_world(world: &World) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("world.json");
    world.save(&path).expect("write World");
    (dir, path)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn st(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn pynvml_reads_exactly_the_world() {
    let world = node();
    let (_dir, path) = write_world(&world);
    let got = pynvml_read(&path);

    assert_eq!(got["driver_version"], "580.159.04");
    assert_eq!(got["nvml_version"], "13.580.159.04");
    assert_eq!(got["cuda_driver_version"], 13000);
    assert_eq!(
        got["error_strings"],
        serde_json::json!({"0": "Success", "3": "Not Supported", "6": "Not Found",
                           "15": "GPU is lost", "23": "Insufficient Resources"})
    );
    let gpus = got["gpus"].as_array().expect("gpus");
    assert_eq!(gpus.len(), world.gpus.len());
    for (g, gpu) in gpus.iter().zip(&world.gpus) {
        let spec = gpu.spec();
        let at = format!("GPU {}", gpu.index);
        assert_eq!(u(&g["index"]), u64::from(gpu.index), "{at}");
        assert_eq!(st(&g["name"]), spec.name, "{at}");
        assert_eq!(st(&g["uuid"]), gpu.uuid, "{at}");
        assert_eq!(st(&g["pci_bus_id"]), gpu.pci_bus_id, "{at}");
        assert_eq!(u(&g["pci_device_id"]), u64::from(spec.pci_device_id), "{at}");
        assert_eq!(g["mig_current"], gpu.mig.current, "{at}");
        assert_eq!(g["mig_pending"], gpu.mig.pending, "{at}");
        assert_eq!(u(&g["memory_total_bytes"]), spec.memory_mib * MIB, "{at}");
        assert_eq!(u(&g["memory_reserved_bytes"]), 480 * MIB, "{at}");
        assert_eq!(u(&g["memory_v2_version"]), 33_554_472, "{at}: 40 | 2 << 24");
        assert_eq!(g["persistence_mode"], 1, "{at}");
        assert_eq!(g["ecc_mode"], serde_json::json!([1, 1]), "{at}");
        assert_eq!(g["is_mig_device"], false, "{at}");
        // nvml_mig_probe.txt: both ids of a full GPU are Invalid Argument (2).
        assert_eq!(g["gpu_instance_id_rc"], 2, "{at}");
        assert_eq!(g["compute_instance_id_rc"], 2, "{at}");
        let has_mig_devices = gpu
            .gpu_instances
            .iter()
            .any(|gi| !gi.compute_instances.is_empty());
        assert_eq!(
            g["mig_device_handle_0_rc"],
            if has_mig_devices { 0 } else { 6 },
            "{at}"
        );
        assert_eq!(g["utilization_rc"], if gpu.mig.current { 3 } else { 0 }, "{at}");

        let placer = gpu.placer();
        let profiles = g["profiles"].as_array().expect("profiles");
        assert_eq!(profiles.len(), spec.profiles.len(), "{at}");
        for p in spec.profiles {
            let gp = profiles
                .iter()
                .find(|x| u(&x["id"]) == u64::from(p.id))
                .unwrap_or_else(|| panic!("{at}: pynvml saw no profile {}", p.id));
            let placements: Vec<[u32; 2]> =
                p.placement_starts.iter().map(|s| [*s, p.memory_slices]).collect();
            let expected = serde_json::json!({
                "nvml_index": p.nvml_index,
                "id": p.id,
                "name": p.nvml_name(),
                "slice_count": p.compute_slices,
                "instance_count": p.max_instances,
                "sm_count": p.sm_count,
                "memory_mib": p.memory_mib,
                "copy_engines": p.engines.copy,
                "decoders": p.engines.decoder,
                "jpegs": p.engines.jpeg,
                "ofas": p.engines.ofa,
                "is_p2p_supported": 0,
                "placements": placements,
                "remaining": placer.remaining_capacity(p),
            });
            assert_eq!(*gp, expected, "{at} {}", p.name);
        }

        let mut expected_gis = Vec::new();
        let mut expected_migs = Vec::new();
        let mut gis: Vec<_> = gpu.gpu_instances.iter().collect();
        gis.sort_by_key(|gi| gi.id);
        for gi in gis {
            let gp = gpu.gi_profile(gi).unwrap();
            let ci_profiles = gpu.product.ci_profiles(gp);
            let mut cis: Vec<_> = gi.compute_instances.iter().collect();
            cis.sort_by_key(|c| c.id);
            let cis_json: Vec<Value> = cis
                .iter()
                .map(|c| {
                    let cp = ci_profiles.iter().find(|p| p.id == c.profile_id).unwrap();
                    serde_json::json!({"id": c.id, "profile_id": c.profile_id, "profile": cp.nvml_name(gp),
                        "placement_start": c.placement.start, "placement_size": c.placement.size})
                })
                .collect();
            expected_gis.push(serde_json::json!({"id": gi.id, "profile_id": gi.profile_id,
                "placement_start": gi.placement.start, "placement_size": gi.placement.size,
                "compute_instances": cis_json}));
            for c in cis {
                let cp = ci_profiles.iter().find(|p| p.id == c.profile_id).unwrap();
                expected_migs.push(serde_json::json!({
                    "index": expected_migs.len(),
                    "uuid": c.uuid,
                    "name": format!("{} MIG {}", spec.name, cp.name(gp)),
                    "is_mig_device": true,
                    "gpu_instance_id": gi.id,
                    "compute_instance_id": c.id,
                    "parent_uuid": gpu.uuid,
                    "memory_total_bytes": gp.memory_mib * MIB,
                    "memory_used_bytes": gi.load.memory_used_mib * MIB,
                }));
            }
        }
        assert_eq!(g["gpu_instances"], Value::Array(expected_gis), "{at}");
        assert_eq!(g["mig_devices"], Value::Array(expected_migs), "{at}");
    }
    // GPM: Hopper samples, Ampere (the A30) does not; between two samples the
    // metrics are the World's load, in percent; FP64 is a load it does not model.
    let gpm = |g: usize| &gpus[g]["gpm"];
    assert_eq!(gpm(0)["supported"], 1);
    assert_eq!(gpm(1)["supported"], 1);
    assert_eq!(gpm(2)["supported"], 0);
    assert_eq!(gpm(2)["sample_rc"], 3, "Not Supported on Ampere");
    let metric = |g: usize, scope: &str, i: usize| -> f64 {
        assert_eq!(gpm(g)[scope]["rc"][i], 0, "GPU {g} {scope} metric {i}");
        gpm(g)[scope]["percent"][i].as_f64().expect("a value")
    };
    let near = |a: f64, b: f64| (a - b).abs() < 0.01;
    assert!(near(metric(0, "gi2", 0), 30.0), "GI 2 SM: (0.6 + 0.3) / 3 slices");
    assert!(near(metric(0, "gi2", 3), 25.0), "GI 2 DRAM");
    assert!(near(metric(0, "gi9", 0), 0.0));
    assert!(near(metric(0, "gpu", 0), 90.0 / 7.0), "GPU SM over 7 slices");
    assert!(near(metric(0, "gpu", 3), 12.5), "GPU DRAM: 4 of 8 slots at 0.25");
    assert!(near(metric(1, "gpu", 0), 0.0), "no load without MIG");
    assert_eq!(gpm(0)["gi2"]["rc"][4], 3, "FP64: Not Supported");
    assert_eq!(
        gpm(0).as_object().unwrap().len(),
        1 + 1 + 3,
        "supported, gpu, 3 GIs"
    );
    assert_eq!(
        gpm(0)["gi3"]["sample_rc"],
        3,
        "GI 3 has no compute instance: Not Supported (unverified, see fake-nvml's gpm.rs)"
    );

    // The World is not trivial: GIs with and without CIs, partial CIs, two products.
    assert_eq!(gpus[0]["gpu_instances"].as_array().unwrap().len(), 3);
    assert_eq!(gpus[0]["mig_devices"].as_array().unwrap().len(), 3);
    assert_eq!(gpus[2]["mig_devices"].as_array().unwrap().len(), 1);
}

#[test]
fn pynvml_agrees_with_mig_exporter_geometry() {
    let world = node();
    let (_dir, path) = write_world(&world);
    let py = pynvml_read(&path);
    let geo = geometry(&path);

    assert_eq!(py["driver_version"], geo["driver_version"]);
    if let Some(v) = geo.get("nvml_version").filter(|v| !v.is_null()) {
        assert_eq!(&py["nvml_version"], v);
    }
    let (pg, gg) = (py["gpus"].as_array().unwrap(), geo["gpus"].as_array().unwrap());
    assert_eq!(pg.len(), gg.len());
    for (p, g) in pg.iter().zip(gg) {
        let at = format!("GPU {}", g["index"]);
        for key in [
            "index",
            "uuid",
            "name",
            "pci_bus_id",
            "memory_total_bytes",
            "mig_current",
            "mig_pending",
        ] {
            assert_eq!(p[key], g[key], "{at}: {key}");
        }
        // Profiles and what can still be created.
        let geo_profiles = g["profiles"].as_array().unwrap();
        let py_profiles = p["profiles"].as_array().unwrap();
        assert_eq!(py_profiles.len(), geo_profiles.len(), "{at}");
        for gp in geo_profiles {
            let pp = py_profiles
                .iter()
                .find(|x| x["id"] == gp["id"])
                .unwrap_or_else(|| panic!("{at}: pynvml has no profile {}", gp["id"]));
            let name = gp["name"].as_str().unwrap();
            assert_eq!(pp["name"], format!("MIG {name}"), "{at}");
            assert_eq!(u(&pp["memory_mib"]) * MIB, u(&gp["memory_bytes"]), "{at} {name}");
            assert_eq!(pp["sm_count"], gp["sm_count"], "{at} {name}");
            assert_eq!(pp["instance_count"], gp["max_instances"], "{at} {name}");
            assert_eq!(pp["slice_count"], gp["compute_slices"], "{at} {name}");
            assert_eq!(pp["remaining"], gp["remaining_instances"], "{at} {name}");
            let size = pp["placements"][0][1].clone();
            assert_eq!(size, gp["memory_slices"], "{at} {name}");
        }
        // GPU instances, compute instances, MIG UUIDs and memory.
        let migs = p["mig_devices"].as_array().unwrap();
        let geo_gis = g["gpu_instances"].as_array().unwrap();
        let py_gis = p["gpu_instances"].as_array().unwrap();
        assert_eq!(py_gis.len(), geo_gis.len(), "{at}");
        for (pgi, ggi) in py_gis.iter().zip(geo_gis) {
            for key in ["id", "profile_id", "placement_start", "placement_size"] {
                assert_eq!(pgi[key], ggi[key], "{at} GI {}: {key}", ggi["id"]);
            }
            let (pcis, gcis) = (
                pgi["compute_instances"].as_array().unwrap(),
                ggi["compute_instances"].as_array().unwrap(),
            );
            assert_eq!(pcis.len(), gcis.len(), "{at} GI {}", ggi["id"]);
            for (pci, gci) in pcis.iter().zip(gcis) {
                for key in ["id", "profile_id", "placement_start", "placement_size"] {
                    assert_eq!(pci[key], gci[key], "{at} GI {} CI: {key}", ggi["id"]);
                }
                assert_eq!(pci["profile"], format!("MIG {}", st(&gci["profile"])));
                let mig = migs
                    .iter()
                    .find(|m| m["gpu_instance_id"] == ggi["id"] && m["compute_instance_id"] == gci["id"])
                    .unwrap_or_else(|| panic!("{at}: no MIG device for GI {} CI {}", ggi["id"], gci["id"]));
                assert_eq!(mig["uuid"], gci["mig_uuid"]);
                assert_eq!(mig["memory_total_bytes"], ggi["memory_total_bytes"]);
                if !ggi["memory_used_bytes"].is_null() {
                    assert_eq!(mig["memory_used_bytes"], ggi["memory_used_bytes"]);
                }
            }
        }
        let cis: usize = geo_gis
            .iter()
            .map(|gi| gi["compute_instances"].as_array().unwrap().len())
            .sum();
        assert_eq!(migs.len(), cis, "{at}: one MIG device per compute instance");
    }
}

/// NVML's state-changing functions are exported as traps: NVIDIA's binding
/// finds every one of them, and the first call, here `nvmlDeviceSetMigMode`
/// as `pynvml` makes it, ends the process with a message before it returns.
/// The exporter's NVML-mode tests rely on this to prove it only reads.
#[test]
fn a_state_changing_call_from_pynvml_ends_the_process() {
    let py = python();
    let libdir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(common::lib_path(), libdir.path().join("libnvidia-ml.so.1"))
        .expect("symlink libnvidia-ml.so.1");
    let (_dir, world) = write_world(&node());
    let script = r#"
import ctypes, sys, pynvml
lib = ctypes.CDLL("libnvidia-ml.so.1")
missing = [name for name in sys.argv[1:] if not hasattr(lib, name)]
print("missing:", " ".join(missing), flush=True)
pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
pynvml.nvmlDeviceSetMigMode(handle, pynvml.NVML_DEVICE_MIG_DISABLE)
print("returned", flush=True)
"#;
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(fake_nvml::TRAPPED)
        .env("LD_LIBRARY_PATH", libdir.path())
        .env(mig_model::WORLD_ENV, &world)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.lines().any(|l| l.trim_end() == "missing:"),
        "every trapped function must be exported; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !stdout.contains("returned"),
        "nvmlDeviceSetMigMode returned:\n{stdout}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(6),
        "not ended by SIGABRT: {:?}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("fake-nvml: nvmlDeviceSetMigMode was called; it changes GPU state"),
        "no message naming the call:\n{stderr}"
    );
}
