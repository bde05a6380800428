//! Under `--nvml` the driver is the source of truth: a GPU the project has no
//! table for, and a driver that offers fewer profiles than another, are
//! listed and judged by what the driver reports (profile info by index until
//! the index is refused, possible placements), through the same FFI code as
//! on real hardware, against `fake-nvml` serving a World.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{built, mig_sim, value, Exporter, EXPORTER};
use mig_model::table::{ProductTable, ProfileRow};
use mig_model::{Architecture, Engines, Product, World};

/// A GPU no compiled-in table describes, with a shape none of them has (6 SM
/// slices over 6 memory slots) and a profile at `NVML_GPU_INSTANCE_PROFILE_*`
/// index 0x11, past the 17 profiles our bindings know. The numbers are made
/// up: what matters is that nothing in the exporter can know them but the
/// driver.
fn uncharted_gpu() -> Product {
    let row = |id, nvml_index, name: &str, slices: u32, starts: &[u32]| ProfileRow {
        id,
        nvml_index,
        name: name.parse().unwrap(),
        compute_slices: slices,
        memory_slices: slices,
        sm_count: 20 * slices,
        memory_mib: 10_000 * u64::from(slices),
        max_instances: starts.len() as u32,
        engines: Engines::new(slices, slices, 0, slices, 0),
        placement_starts: starts.to_vec(),
        since_driver: None,
    };
    ProductTable {
        slug: "uncharted-gpu-60gb".into(),
        name: "NVIDIA Uncharted GPU 60GB".into(),
        architecture: Architecture::Blackwell,
        pci_device_id: 0x2BAD_10DE,
        memory_mib: 61_000,
        sm_count: 120,
        compute_slices: 6,
        memory_slots: 6,
        profiles: vec![
            row(19, 0, "1g.10gb", 1, &[0, 1, 2, 3, 4, 5]),
            row(14, 1, "2g.20gb", 2, &[0, 2, 4]),
            row(9, 2, "3g.30gb", 3, &[0, 3]),
            row(0, 6, "6g.60gb", 6, &[0]),
            // Index 0x11: read only by a loop that asks until the driver refuses.
            ProfileRow {
                max_instances: 1,
                ..row(33, 0x11, "1g.10gb-me", 1, &[0, 1, 2, 3, 4, 5])
            },
        ],
    }
    .intern()
    .unwrap()
}

fn nvml_args(library: &Path) -> Vec<String> {
    vec![
        "--nvml".into(),
        "--nvml.library".into(),
        library.display().to_string(),
        "--no-dcgm".into(),
    ]
}

fn check(world: &Path, config: &Path, name: &str) -> Output {
    Command::new(EXPORTER)
        .arg("check")
        .args(nvml_args(&built("libfake_nvml.so")))
        .args([
            "--mig.config",
            config.to_str().unwrap(),
            "--mig.config-name",
            name,
        ])
        .env("MIG_WORLD", world)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn save(dir: &Path, world: &World) -> PathBuf {
    let path = dir.join("world.json");
    world.save(&path).unwrap();
    path
}

const UNCHARTED_CONFIG: &str = r#"version: v1
mig-configs:
  held:
    - device-filter: "0x2BAD10DE"
      devices: all
      mig-enabled: true
      mig-devices:
        "3g.30gb": 1
        "1g.10gb-me": 1
  all-1g:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 6
  too-many-2g:
    - devices: all
      mig-enabled: true
      mig-devices:
        "3g.30gb": 1
        "2g.20gb": 2
  seven-1g:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
"#;

#[test]
fn a_gpu_without_a_table_is_listed_and_judged_by_what_its_driver_reports() {
    let dir = tempfile::tempdir().unwrap();
    let world = save(dir.path(), &World::new("node", uncharted_gpu(), 1));
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", "9,33", "-C"]);
    let config = dir.path().join("mig-parted.yaml");
    std::fs::write(&config, UNCHARTED_CONFIG).unwrap();

    let library = built("libfake_nvml.so");
    let args = nvml_args(&library);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start_with_env(&args, &[("MIG_WORLD", &world)]);
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
        Some("1"),
        "{text}"
    );
    let info = |profile: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("nvidia_mig_gpu_instance_info{")
                    && l.contains(&format!("profile=\"{profile}\""))
            })
            .map(str::to_string)
    };
    for profile in ["3g.30gb", "1g.10gb-me"] {
        assert!(info(profile).is_some(), "no GI of {profile} listed:\n{text}");
    }
    // Capacity as the driver computes it: four of six slots taken, the -me
    // profile's one instance exists, a 3g or the 6g no longer fits.
    let remaining = |profile: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("nvidia_mig_profile_remaining_instances{")
                    && l.contains(&format!("profile=\"{profile}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(remaining("1g.10gb").as_deref(), Some("2"), "{text}");
    assert_eq!(remaining("2g.20gb").as_deref(), Some("1"), "{text}");
    assert_eq!(remaining("1g.10gb-me").as_deref(), Some("0"), "{text}");
    assert_eq!(remaining("3g.30gb").as_deref(), Some("0"), "{text}");
    drop(exporter);

    // Fits, and is what the GPU holds: no drift.
    let out = check(&world, &config, "held");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Fits the GPU, but the GPU holds something else: drift.
    let out = check(&world, &config, "all-1g");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("profile_mismatch"), "{}", stdout(&out));
    // Cannot be held: judged with the driver's SM slices and instance counts
    // (the placements' part is in src/drift/desired/resolve.rs's unit tests).
    let out = check(&world, &config, "too-many-2g");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("need 7 SM slices, the GPU has 6"),
        "{}",
        stdout(&out)
    );
    let out = check(&world, &config, "seven-1g");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("7x 1g.10gb do not fit: at most 6 fit one GPU"),
        "{}",
        stdout(&out)
    );
}

const A100_CONFIG: &str = r#"version: v1
mig-configs:
  with-1g.10gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 1
        "3g.20gb": 1
"#;

#[test]
fn a_profile_the_driver_does_not_offer_is_neither_listed_nor_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = World::new("node", Product::A100Sxm4_40GB, 1);
    // NVIDIA's MIG user guide: the A100's 1g.10gb exists from R525 drivers.
    node.driver_version = "515.105.01".into();
    let world = save(dir.path(), &node);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", "9", "-C"]);
    let config = dir.path().join("mig-parted.yaml");
    std::fs::write(&config, A100_CONFIG).unwrap();

    let library = built("libfake_nvml.so");
    let args = nvml_args(&library);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start_with_env(&args, &[("MIG_WORLD", &world)]);
    let text = exporter.metrics();
    let offered = |text: &str, profile: &str| {
        text.lines().any(|l| {
            l.starts_with("nvidia_mig_profile_max_instances{")
                && l.contains(&format!("profile=\"{profile}\""))
        })
    };
    assert!(offered(&text, "1g.5gb") && offered(&text, "3g.20gb"), "{text}");
    assert!(!offered(&text, "1g.10gb"), "R515 lists no 1g.10gb:\n{text}");
    drop(exporter);

    let out = check(&world, &config, "with-1g.10gb");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("no profile '1g.10gb' on this GPU (known: 1g.5gb, 1g.5gb+me, 2g.10gb"),
        "{}",
        stdout(&out)
    );
    let e = String::from_utf8_lossy(&mig_sim_fails(&world, &["mig", "-cgi", "15"])).into_owned();
    assert!(e.contains("Unable to create a GPU instance"), "{e}");

    // The same GPU on R525 offers it; the layout then only lacks the 1g.10gb.
    common::edit_world(&world, |w| w.driver_version = "525.147.05".into());
    let out = check(&world, &config, "with-1g.10gb");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    mig_sim(&world, &["mig", "-cgi", "15", "-C"]);
    let out = check(&world, &config, "with-1g.10gb");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// Runs mig-sim expecting it to refuse; returns what it printed.
fn mig_sim_fails(world: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(built("mig-sim"))
        .args(args)
        .env("MIG_WORLD", world)
        .output()
        .unwrap();
    assert!(!out.status.success(), "mig-sim {args:?} succeeded");
    [out.stdout, out.stderr].concat()
}
