//! Every recording of a real node under `tests/fixtures/real/` (written by
//! `scripts/probe-gpu.sh`, or by hand before it existed) is replayed: a World
//! built from what was recorded, served by fake-nvml, read by
//! `mig-exporter geometry --output json --nvml`, must show what the node's
//! `nvidia-smi` printed: MIG mode, each profile's free and total instances
//! (`-lgip`), placements (`-lgipp`), GPU and compute instances (`-lgi`,
//! `-lci`) and MIG device UUIDs (`-L`). The World names a product table
//! built from the recording, not mig-model's compiled-in one, so the
//! recording is the only truth; a separate test holds the compiled-in tables
//! to the recordings of their GPUs.

mod common;
#[path = "real_fixtures/recording.rs"]
mod recording;

use std::path::{Path, PathBuf};

use common::{built, EXPORTER};
use mig_model::ProductTable;
use recording::{replay, Recording};

fn recordings() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("read {}: {e}", root.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_real_recording_replays_through_fake_nvml_and_the_exporter() {
    let dirs = recordings();
    assert!(!dirs.is_empty(), "no recordings under tests/fixtures/real");
    let fake_nvml = built("libfake_nvml.so");
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| replay(dir, Path::new(EXPORTER), &fake_nvml).err())
        .map(|e| format!("{e:#}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Each recording says what it is in a README.md (where, when, which driver).
#[test]
fn every_real_recording_has_a_readme() {
    for dir in recordings() {
        let readme = dir.join("README.md");
        let text = std::fs::read_to_string(&readme).unwrap_or_else(|e| panic!("{}: {e}", readme.display()));
        let recording = Recording::load(&dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        assert!(
            text.contains(&recording.driver_version),
            "{} does not name the driver it was recorded with ({})",
            readme.display(),
            recording.driver_version
        );
    }
}

/// The parse of the real H100's text, by hand: the replay's expectations come
/// from these files, so their reading must be right.
#[test]
fn the_h100_recording_reads_as_printed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real/h100-80gb-hbm3");
    let r = Recording::load(&dir).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(r.driver_version, "580.159.04");
    assert_eq!(r.gpus.len(), 1);
    let gpu = &r.gpus[0];
    assert_eq!(gpu.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(gpu.uuid, "GPU-c315b2a9-5557-bee9-9623-6da53ac6536b");
    assert_eq!(gpu.pci_bus_id, "00000000:00:06.0");
    assert_eq!(gpu.pci_device_id, Some(0x2330_10DE));
    assert_eq!(gpu.memory_mib, Some(81559));
    assert!(!gpu.mig_current && !gpu.mig_pending);
    let table: Vec<_> = r
        .profiles
        .iter()
        .map(|p| {
            (
                p.id,
                p.name.as_str(),
                p.free,
                p.total,
                p.memory_gib.as_str(),
                p.placement_starts.clone(),
                p.placement_size,
                p.nvml_index,
                p.memory_mib,
            )
        })
        .collect();
    assert_eq!(
        table,
        [
            (
                19,
                "1g.10gb",
                7,
                7,
                "9.75",
                vec![0, 1, 2, 3, 4, 5, 6],
                1,
                Some(0),
                Some(9984)
            ),
            (
                20,
                "1g.10gb+me",
                1,
                1,
                "9.75",
                vec![0, 1, 2, 3, 4, 5, 6],
                1,
                Some(7),
                Some(9984)
            ),
            (
                15,
                "1g.20gb",
                4,
                4,
                "19.62",
                vec![0, 2, 4, 6],
                2,
                Some(9),
                Some(20096)
            ),
            (
                14,
                "2g.20gb",
                3,
                3,
                "19.62",
                vec![0, 2, 4],
                2,
                Some(1),
                Some(20096)
            ),
            (9, "3g.40gb", 2, 2, "39.50", vec![0, 4], 4, Some(2), Some(40448)),
            (5, "4g.40gb", 1, 1, "39.50", vec![0], 4, Some(3), Some(40448)),
            (0, "7g.80gb", 1, 1, "79.25", vec![0], 8, Some(4), Some(81152)),
        ]
    );
    let seven = r.profiles.last().expect("7g.80gb");
    assert_eq!(
        (
            seven.sm_count,
            seven.copy_engines,
            seven.decoders,
            seven.encoders,
            seven.jpegs,
            seven.ofas
        ),
        (132, 8, 7, 0, 7, 1)
    );
    assert!(r.gpu_instances.is_empty() && r.compute_instances.is_empty());

    // The inline product table a World names for it, from these files alone.
    let product = r.inline_product(gpu).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(product["slug"], "recorded-nvidia-h100-80gb-hbm3");
    assert_eq!(product["architecture"], "hopper");
    assert_eq!(product["pci_device_id"], 0x2330_10DE_u32);
    assert_eq!(
        (
            &product["memory_mib"],
            &product["sm_count"],
            &product["compute_slices"],
            &product["memory_slots"]
        ),
        (&81559.into(), &132.into(), &7.into(), &8.into())
    );
    assert_eq!(
        product["profiles"][1],
        serde_json::json!({"id": 20, "nvml_index": 7, "name": "1g.10gb+me", "compute_slices": 1,
            "memory_slices": 1, "sm_count": 16, "memory_mib": 9984, "max_instances": 1,
            "engines": {"copy": 1, "decoder": 1, "encoder": 0, "jpeg": 1, "ofa": 1},
            "placement_starts": [0, 1, 2, 3, 4, 5, 6]})
    );
}

/// A recording the exporter does not reproduce fails the replay, naming the
/// profile and field: here the H100's recording with two `-lgip` free counts
/// changed, as if the GPU had printed them. What the World is built from
/// (the profile rows, placements, instances) flows through to the exporter;
/// what the driver works out (remaining capacity, slices in use, the order
/// of `-lgip`) is what a replay can find wrong.
#[test]
fn a_recording_the_exporter_disagrees_with_fails_naming_the_difference() {
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real/h100-80gb-hbm3");
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&real).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    let probe = copy.path().join("probe.txt");
    let text = std::fs::read_to_string(&probe).unwrap();
    let changed = text
        .replace(
            "MIG 1g.20gb         15     4/4 ",
            "MIG 1g.20gb         15     3/4 ",
        )
        .replace(
            "MIG 7g.80gb          0     1/1 ",
            "MIG 7g.80gb          0     0/1 ",
        );
    assert_ne!(changed, text, "the lines to change are in probe.txt");
    std::fs::write(&probe, changed).unwrap();

    let error = replay(copy.path(), Path::new(EXPORTER), &built("libfake_nvml.so"))
        .expect_err("a changed recording must not replay");
    let message = format!("{error:#}");
    for line in [
        "GPU 0 profile (-lgip, -lgipp) 15 remaining_instances: exporter 4, recorded 3",
        "GPU 0 profile (-lgip, -lgipp) 0 remaining_instances: exporter 1, recorded 0",
    ] {
        assert!(message.contains(line), "{message}");
    }
}

/// Where mig-model has a compiled-in table for a recorded GPU, the table is
/// the one the GPU printed: every profile row (id, NVML index, name, slices,
/// SMs, memory, instance count, engines, placements) and the GPU's slices,
/// slots, memory, PCI id and architecture. The whole-GPU SM count is left
/// out: no recording holds it (see `Recording::inline_product`).
#[test]
fn compiled_in_tables_match_the_gpus_recorded() {
    let mut compared = 0;
    for dir in recordings() {
        let r = Recording::load(&dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        for gpu in &r.gpus {
            let Some(known) = r.known_product(gpu) else {
                continue;
            };
            let normalize = |mut table: ProductTable| {
                table.slug.clear();
                table.sm_count = 0;
                // Recorded on one driver, which offered every profile it listed.
                for p in &mut table.profiles {
                    p.since_driver = None;
                }
                table.profiles.sort_by_key(|p| p.id);
                table
            };
            let recorded: ProductTable =
                serde_json::from_value(r.inline_product(gpu).unwrap_or_else(|e| panic!("{e:#}")))
                    .unwrap_or_else(|e| panic!("{}: the inline table does not read: {e}", dir.display()));
            assert_eq!(
                normalize(ProductTable::from_spec(known.spec())),
                normalize(recorded),
                "{} GPU {}: mig-model's {known} table differs from what the GPU printed",
                dir.display(),
                gpu.index
            );
            compared += 1;
        }
    }
    assert!(compared > 0, "no recording of a GPU with a compiled-in table");
}
