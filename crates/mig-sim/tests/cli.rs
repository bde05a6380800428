//! Runs the built `mig-sim` against temporary World files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mig_model::{World, WORLD_ENV};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_mig-sim");

struct Sim {
    _dir: TempDir,
    path: PathBuf,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(out: Output) -> Run {
    Run {
        // Killed by a signal (a panic aborting, say) reads as -1: never success.
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Sim {
    /// A fresh World of `gpus` GPUs of `product`, created by `mig-sim init`.
    fn new(product: &str, gpus: u32) -> Sim {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("world.json");
        let out = Command::new(BIN)
            .env_remove(WORLD_ENV)
            .args(["init", "--gpus", &gpus.to_string(), "--product", product])
            .arg(&path)
            .output()
            .expect("run mig-sim");
        let r = finish(out);
        assert_eq!(r.code, 0, "init failed: {}", r.stderr);
        Sim { _dir: dir, path }
    }

    /// Runs `mig-sim --world FILE ARGS...`.
    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(BIN)
            .env_remove(WORLD_ENV)
            .arg("--world")
            .arg(&self.path)
            .args(args)
            .output()
            .expect("run mig-sim");
        finish(out)
    }

    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "mig-sim {args:?} failed:\n{}{}", r.stdout, r.stderr);
        r.stdout
    }

    fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).expect("read world")
    }

    fn world(&self) -> World {
        World::load(&self.path).expect("load world")
    }

    /// Runs a command that must fail and must leave the file byte-identical.
    fn refused(&self, args: &[&str]) -> Run {
        let before = self.bytes();
        let r = self.run(args);
        assert_ne!(r.code, 0, "mig-sim {args:?} should fail:\n{}", r.stdout);
        assert!(!r.stderr.is_empty(), "mig-sim {args:?} says nothing on stderr");
        assert_eq!(self.bytes(), before, "mig-sim {args:?} changed the World file");
        r
    }
}

/// H100 with MIG enabled on GPU 0 and `-cgi 9,19 -C` applied.
fn h100_with_9_19() -> (Sim, String) {
    let sim = Sim::new("h100-80gb", 1);
    sim.ok(&["-i", "0", "-mig", "1"]);
    let out = sim.ok(&["-i", "0", "mig", "-cgi", "9,19", "-C"]);
    (sim, out)
}

/// The id and `start:size` of GPU 0's only instance of `profile_id`, as
/// mig-model placed it (the placement rule is mig-model's, tested there).
fn placed(sim: &Sim, profile_id: u32) -> (u32, String) {
    let world = sim.world();
    let gis: Vec<_> = world.gpus[0]
        .gpu_instances
        .iter()
        .filter(|g| g.profile_id == profile_id)
        .collect();
    assert_eq!(gis.len(), 1, "one instance of profile {profile_id}");
    (gis[0].id, gis[0].placement.to_string())
}

#[test]
fn cgi_with_default_cis_lands_where_the_driver_puts_them() {
    let (sim, out) = h100_with_9_19();
    // The first 3g.40gb takes 4:4, GI 2, as on the real driver; the 1g.10gb
    // goes where mig-model's placement engine puts it.
    assert_eq!(placed(&sim, 9), (2, "4:4".to_string()));
    let (g1, p1) = placed(&sim, 19);
    assert_eq!(
        out,
        format!(
            "Successfully created GPU instance ID  2 on GPU  0 using profile MIG 3g.40gb (ID  9)\n\
             Successfully created compute instance ID  0 on GPU  0 GPU instance ID  2 using profile MIG 3g.40gb (ID  2)\n\
             Successfully created GPU instance ID {g1:>2} on GPU  0 using profile MIG 1g.10gb (ID 19)\n\
             Successfully created compute instance ID  0 on GPU  0 GPU instance ID {g1:>2} using profile MIG 1g.10gb (ID  0)\n"
        )
    );

    let lgi = sim.ok(&["mig", "-lgi"]);
    let row_3g = "|   0  MIG 3g.40gb            9        2          4:4     |";
    let row_1g = format!("|   0  MIG 1g.10gb           19{g1:>9}{p1:>13}     |");
    // Listed by profile in table order (1g.10gb before 3g.40gb), as NVML enumerates them.
    let (a, b) = (lgi.find(&row_1g), lgi.find(row_3g));
    assert!(
        a.is_some() && b.is_some() && a < b,
        "{row_1g} then {row_3g} in\n{lgi}"
    );

    let lci = sim.ok(&["mig", "-lci"]);
    assert!(
        lci.contains("|   0      2       MIG 3g.40gb          2         0          0:3     |"),
        "{lci}"
    );
    assert!(
        lci.contains(&format!(
            "|   0{g1:>7}       MIG 1g.10gb          0         0          0:1     |"
        )),
        "{lci}"
    );
    let lci2 = sim.ok(&["mig", "-lci", "-gi", "2"]);
    assert!(
        lci2.contains("MIG 3g.40gb") && !lci2.contains("MIG 1g.10gb"),
        "{lci2}"
    );

    // The MIG device UUIDs in the file are the ones `-L` lists.
    let world = sim.world();
    let uuids: Vec<String> = world.gpus[0]
        .gpu_instances
        .iter()
        .flat_map(|gi| gi.compute_instances.iter().map(|ci| ci.uuid.clone()))
        .collect();
    assert_eq!(uuids.len(), 2);
    let list = sim.ok(&["-L"]);
    for uuid in &uuids {
        assert!(uuid.starts_with("MIG-"), "{uuid}");
        assert!(list.contains(&format!("(UUID: {uuid})")), "{list}");
    }
    assert!(
        list.starts_with("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-"),
        "{list}"
    );
    assert!(list.contains("  MIG 3g.40gb     Device  "), "{list}");
}

#[test]
fn cgi_without_c_leaves_a_gi_with_no_ci() {
    let sim = Sim::new("h100-80gb", 1);
    sim.ok(&["-mig", "1"]);
    let out = sim.ok(&["mig", "-cgi", "3g.40gb"]);
    assert_eq!(
        out,
        "Successfully created GPU instance ID  2 on GPU  0 using profile MIG 3g.40gb (ID  9)\n"
    );
    let gi = &sim.world().gpus[0].gpu_instances;
    assert_eq!(gi.len(), 1);
    assert_eq!(gi[0].id, 2);
    assert!(gi[0].compute_instances.is_empty());
    assert_eq!(
        sim.ok(&["mig", "-lci"]),
        "No compute instances found: Not Found\n"
    );

    // -cci then creates the default CI in it.
    let out = sim.ok(&["mig", "-cci", "-gi", "2"]);
    assert_eq!(
        out,
        "Successfully created compute instance ID  0 on GPU  0 GPU instance ID  2 using profile MIG 3g.40gb (ID  2)\n"
    );
}

#[test]
fn dgi_is_refused_while_cis_exist_and_changes_nothing() {
    let (sim, _) = h100_with_9_19();
    let r = sim.refused(&["-i", "0", "mig", "-dgi", "-gi", "2"]);
    assert!(
        r.stderr
            .contains("Unable to destroy GPU instance ID  2 from GPU  0: In use by another client"),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("Failed to destroy GPU instances: In use by another client"));
    // All of them: the first refusal fails the whole command, nothing is destroyed.
    sim.refused(&["mig", "-dgi"]);
    assert_eq!(sim.world().gpus[0].gpu_instances.len(), 2);

    assert_eq!(
        sim.ok(&["mig", "-dci", "-gi", "2"]),
        "Successfully destroyed compute instance ID  0 from GPU  0 GPU instance ID  2\n"
    );
    assert_eq!(
        sim.ok(&["mig", "-dgi", "-gi", "2"]),
        "Successfully destroyed GPU instance ID  2 from GPU  0\n"
    );
    let ids: Vec<u32> = sim.world().gpus[0].gpu_instances.iter().map(|g| g.id).collect();
    assert_eq!(ids, vec![placed(&sim, 19).0], "only the 1g.10gb is left");
}

#[test]
fn unknown_profiles_are_refused_by_name_and_change_nothing() {
    let sim = Sim::new("h100-80gb", 1);
    sim.ok(&["-mig", "1"]);
    for (arg, named) in [
        ("3g.20gb", "3g.20gb"),
        ("42", "42"),
        ("3g.99gb", "3g.99gb"),
        // The first item would fit: the command is still refused as a whole.
        ("9,3g.20gb", "3g.20gb"),
    ] {
        let r = sim.refused(&["mig", "-cgi", arg, "-C"]);
        assert!(
            r.stderr.contains(&format!(
                "Unable to create a GPU instance on GPU  0 using profile {named}: Invalid Argument"
            )),
            "{arg}: {}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains(&format!("h100-80gb has no GPU instance profile '{named}'")),
            "{arg}: {}",
            r.stderr
        );
        assert!(
            r.stdout.is_empty(),
            "{arg}: nothing is reported as created: {}",
            r.stdout
        );
    }
    assert!(sim.world().gpus[0].gpu_instances.is_empty());
}

#[test]
fn refused_operations_change_nothing() {
    let (sim, _) = h100_with_9_19();
    // Insufficient resources: a 7g.80gb does not fit beside a 3g.40gb and a 1g.10gb.
    let r = sim.refused(&["mig", "-cgi", "0"]);
    assert!(r.stderr.contains("Insufficient Resources"), "{}", r.stderr);
    // Unknown GPU index, malformed numbers, unknown flags.
    let r = sim.refused(&["-i", "3", "mig", "-cgi", "19"]);
    assert!(r.stderr.contains("no GPU '3'"), "{}", r.stderr);
    let r = sim.refused(&["mig", "-dci", "-ci", "x"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("'x'"), "{}", r.stderr);
    let r = sim.refused(&["mig", "-cgi", "19", "--frobnicate"]);
    assert!(r.stderr.contains("--frobnicate"), "{}", r.stderr);
    let r = sim.refused(&["-mig", "2"]);
    assert!(r.stderr.contains("'2'"), "{}", r.stderr);
    let r = sim.refused(&["load", "--gpu", "0", "--gi", "2", "--sm-active", "1.5"]);
    assert!(
        r.stderr.contains("'1.5'") && r.stderr.contains("--sm-active"),
        "{}",
        r.stderr
    );
    let r = sim.refused(&["load", "--gpu", "0", "--gi", "2", "--fb-used-mib", "40449"]);
    assert!(r.stderr.contains("40448 MiB"), "{}", r.stderr);
    let r = sim.refused(&["load", "--gpu", "0", "--gi", "5", "--dram-active", "0.1"]);
    assert!(r.stderr.contains("no GPU instance 5"), "{}", r.stderr);
    let r = sim.refused(&["mig", "-dci", "-gi", "2", "-ci", "7", "-i", "0"]);
    assert!(r.stderr.contains("Not Found"), "{}", r.stderr);
}

#[test]
fn a_malformed_world_file_is_named_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    fs::write(&path, "{\"format\": 1,").unwrap();
    for args in [&["show"][..], &["mig", "-lgi"], &["-mig", "1"], &["reboot"]] {
        let out = Command::new(BIN)
            .env_remove(WORLD_ENV)
            .arg("--world")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        let r = finish(out);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(&path.display().to_string()), "{}", r.stderr);
        assert!(r.stderr.contains("not valid JSON"), "{}", r.stderr);
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), "{\"format\": 1,");

    let missing = dir.path().join("missing.json");
    let r = finish(
        Command::new(BIN)
            .env_remove(WORLD_ENV)
            .args(["show", "--world"])
            .arg(&missing)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&missing.display().to_string()), "{}", r.stderr);
    assert!(!missing.exists());
}

#[test]
fn world_comes_from_the_environment_or_the_flag_after_the_command() {
    let sim = Sim::new("h100-80gb", 2);
    let via_env = finish(
        Command::new(BIN)
            .env(WORLD_ENV, &sim.path)
            .args(["-i", "1", "-mig", "1"])
            .output()
            .unwrap(),
    );
    assert_eq!(via_env.code, 0, "{}", via_env.stderr);
    assert_eq!(
        via_env.stdout,
        "Enabled MIG Mode for GPU 00000000:2A:00.0\nAll done.\n"
    );
    let after = finish(
        Command::new(BIN)
            .env_remove(WORLD_ENV)
            .args(["mig", "-cgi", "19", "--world"])
            .arg(&sim.path)
            .output()
            .unwrap(),
    );
    assert_eq!(after.code, 0, "{}", after.stderr);
    // Without -i, only the GPU in MIG mode is addressed.
    assert_eq!(
        after.stdout,
        "Successfully created GPU instance ID 13 on GPU  1 using profile MIG 1g.10gb (ID 19)\n"
    );
    let none = finish(
        Command::new(BIN)
            .env_remove(WORLD_ENV)
            .arg("show")
            .output()
            .unwrap(),
    );
    assert_ne!(none.code, 0);
    assert!(none.stderr.contains(WORLD_ENV), "{}", none.stderr);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let sim = Sim::new("h100-80gb", 1);
    sim.ok(&["-mig", "1"]);
    let before = sim.bytes();
    let r = finish(
        Command::new(BIN)
            .env_remove(WORLD_ENV)
            .args(["init", "--gpus", "8", "--product", "h100-80gb"])
            .arg(&sim.path)
            .output()
            .unwrap(),
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(sim.bytes(), before);
    let r = finish(
        Command::new(BIN)
            .env_remove(WORLD_ENV)
            .args([
                "init",
                "--gpus",
                "8",
                "--product",
                "h100-80gb",
                "--mig",
                "1",
                "--force",
            ])
            .arg(&sim.path)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let w = sim.world();
    assert_eq!(w.gpus.len(), 8);
    assert!(w.gpus.iter().all(|g| g.mig.current));
}

#[test]
fn reboot_on_h100_drops_mode_and_instances() {
    let (sim, _) = h100_with_9_19();
    let boot = sim.world().boot_id;
    let out = sim.ok(&["reboot"]);
    assert!(out.contains("MIG mode Disabled"), "{out}");
    let w = sim.world();
    assert_ne!(w.boot_id, boot);
    assert!(!w.gpus[0].mig.current && !w.gpus[0].mig.pending);
    assert!(w.gpus[0].gpu_instances.is_empty());
    assert_eq!(sim.ok(&["mig", "-lgi"]), "No MIG-enabled devices found.\n");
    assert_eq!(sim.ok(&["mig", "-lci"]), "No MIG-enabled devices found.\n");
}

#[test]
fn ampere_mig_toggle_pends_while_clients_are_attached() {
    // Needs only the product's architecture, not its profile table.
    let sim = Sim::new("a100-80gb", 1);
    let out = sim.ok(&["clients", "--gpu", "0", "--count", "2"]);
    assert!(out.contains("2 client processes"), "{out}");
    let out = sim.ok(&["-mig", "1"]);
    assert!(
        out.starts_with(
            "Warning: MIG mode is in pending enable state for GPU 00000000:18:00.0:In use by another client\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("Please first kill all processes using the device"),
        "{out}"
    );
    assert!(out.ends_with("All done.\n"), "{out}");
    let mig = sim.world().gpus[0].mig;
    assert!(!mig.current && mig.pending);
    sim.ok(&["reboot"]);
    let mig = sim.world().gpus[0].mig;
    assert!(
        mig.current && mig.pending,
        "Ampere applies the pending mode at reboot"
    );
}

#[test]
fn load_sets_values_that_show_prints() {
    let (sim, _) = h100_with_9_19();
    let out = sim.ok(&[
        "load",
        "--gpu",
        "0",
        "--gi",
        "2",
        "--sm-active",
        "0.7",
        "--sm-occupancy",
        "0.4",
        "--tensor-active",
        "0.2",
        "--dram-active",
        "0.5",
        "--fb-used-mib",
        "4000",
    ]);
    assert!(out.contains("sm_active 0.7"), "{out}");
    let g1 = placed(&sim, 19).0.to_string();
    sim.ok(&["load", "--gpu", "0", "--gi", &g1, "--ci", "0", "--sm-active", "1"]);

    let shown = sim.ok(&["show"]);
    let w = World::from_json(&shown, Path::new("show")).expect("show prints a World");
    assert_eq!(w, sim.world());
    let gpu = &w.gpus[0];
    let gi = gpu.gpu_instance(2).unwrap();
    assert_eq!(gi.load.dram_active, 0.5);
    assert_eq!(gi.load.memory_used_mib, 4000);
    let ci = &gi.compute_instances[0].load;
    assert_eq!((ci.sm_active, ci.sm_occupancy, ci.tensor_active), (0.7, 0.4, 0.2));
    let other = &gpu.gpu_instance(placed(&sim, 19).0).unwrap().compute_instances[0].load;
    assert_eq!((other.sm_active, other.sm_occupancy), (1.0, 0.0));
    assert!(shown.contains("\"sm_active\": 0.7"), "{shown}");
}

/// `nvidia-smi mig -lgip` on an empty H100 80GB HBM3 with MIG disabled,
/// driver 580.159.04, copied from shared/fixtures/h100-80gb-hbm3-real/probe.txt.
const H100_LGIP: &str = "\
+-------------------------------------------------------------------------------+
| GPU instance profiles:                                                        |
| GPU   Name               ID    Instances   Memory     P2P    SM    DEC   ENC  |
|                                Free/Total   GiB              CE    JPEG  OFA  |
|===============================================================================|
|   0  MIG 1g.10gb         19     7/7        9.75       No     16     1     0   |
|                                                               1     1     0   |
+-------------------------------------------------------------------------------+
|   0  MIG 1g.10gb+me      20     1/1        9.75       No     16     1     0   |
|                                                               1     1     1   |
+-------------------------------------------------------------------------------+
|   0  MIG 1g.20gb         15     4/4        19.62      No     26     1     0   |
|                                                               1     1     0   |
+-------------------------------------------------------------------------------+
|   0  MIG 2g.20gb         14     3/3        19.62      No     32     2     0   |
|                                                               2     2     0   |
+-------------------------------------------------------------------------------+
|   0  MIG 3g.40gb          9     2/2        39.50      No     60     3     0   |
|                                                               3     3     0   |
+-------------------------------------------------------------------------------+
|   0  MIG 4g.40gb          5     1/1        39.50      No     64     4     0   |
|                                                               4     4     0   |
+-------------------------------------------------------------------------------+
|   0  MIG 7g.80gb          0     1/1        79.25      No     132    7     0   |
|                                                               8     7     1   |
+-------------------------------------------------------------------------------+
";

/// The same GPU's `nvidia-smi mig -lgipp`.
const H100_LGIPP: &str = "\
GPU  0 Profile ID 19 Placements: {0,1,2,3,4,5,6}:1
GPU  0 Profile ID 20 Placements: {0,1,2,3,4,5,6}:1
GPU  0 Profile ID 15 Placements: {0,2,4,6}:2
GPU  0 Profile ID 14 Placements: {0,2,4}:2
GPU  0 Profile ID  9 Placements: {0,4}:4
GPU  0 Profile ID  5 Placement : {0}:4
GPU  0 Profile ID  0 Placement : {0}:8
";

#[test]
fn lgip_and_lgipp_on_an_empty_h100_match_the_real_gpu() {
    let sim = Sim::new("h100-80gb", 1);
    // As on the real GPU, with MIG disabled, and equally once it is enabled.
    assert_eq!(sim.ok(&["mig", "-lgip"]), H100_LGIP);
    assert_eq!(sim.ok(&["mig", "-lgipp"]), H100_LGIPP);
    assert_eq!(sim.ok(&["mig", "-lgi"]), "No MIG-enabled devices found.\n");
    sim.ok(&["-mig", "1"]);
    assert_eq!(sim.ok(&["mig", "-lgip"]), H100_LGIP);
    assert_eq!(sim.ok(&["mig", "-lgi"]), "No GPU instances found: Not Found\n");
}

#[test]
fn lgip_free_counts_follow_the_placer() {
    let (sim, _) = h100_with_9_19();
    let lgip = sim.ok(&["mig", "-lgip"]);
    // A 3g.40gb at 4:4 and a 1g.10gb in slots 0-3 leave 3 SM slices and three
    // of those four slots; the counts are the same wherever in 0-3 the 1g sits.
    let (_, p1) = placed(&sim, 19);
    assert!(["0:1", "1:1", "2:1", "3:1"].contains(&p1.as_str()), "{p1}");
    for row in [
        "|   0  MIG 1g.10gb         19     3/7 ",
        "|   0  MIG 1g.20gb         15     1/4 ",
        "|   0  MIG 2g.20gb         14     1/3 ",
        "|   0  MIG 3g.40gb          9     0/2 ",
        "|   0  MIG 7g.80gb          0     0/1 ",
    ] {
        assert!(lgip.contains(row), "missing {row:?} in\n{lgip}");
    }
    let lcip = sim.ok(&["mig", "-lcip", "-gi", "2"]);
    assert!(
        lcip.contains(
            "|   0      2       MIG 3g.40gb          2*     0/1           60        3     0     0   |"
        ),
        "{lcip}"
    );
    assert!(lcip.contains("MIG 1c.3g.40gb       0      0/3"), "{lcip}");
}

#[test]
fn products_lists_every_compiled_in_product_without_a_world_file() {
    // No --world and no MIG_WORLD: the listing reads no World file.
    let out = Command::new(BIN)
        .env_remove(WORLD_ENV)
        .arg("products")
        .output()
        .expect("run mig-sim");
    let r = finish(out);
    assert_eq!(r.code, 0, "mig-sim products failed: {}", r.stderr);
    let mut lines = r.stdout.lines();
    let header = lines.next().expect("a header line");
    assert!(
        header.starts_with("PRODUCT") && header.contains("NVML NAME") && header.contains("PCI DEVICE ID"),
        "{header}"
    );
    // Columns are two or more spaces apart; NVML names hold single spaces.
    let rows: Vec<Vec<String>> = lines
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect();
    let expected: Vec<Vec<String>> = mig_model::Product::ALL
        .iter()
        .map(|p| {
            let spec = p.spec();
            vec![
                spec.slug.to_string(),
                spec.name.to_string(),
                format!("0x{:08X}", spec.pci_device_id),
                spec.architecture.to_string(),
            ]
        })
        .collect();
    assert_eq!(rows, expected);
    assert!(rows.len() >= 16, "only {} products", rows.len());
    // Spot checks against the sources the product files cite.
    for (slug, name, id) in [
        ("h100-80gb", "NVIDIA H100 80GB HBM3", "0x233010DE"),
        ("h100-nvl-94gb", "NVIDIA H100 NVL", "0x232110DE"),
        ("gb200-186gb", "NVIDIA GB200", "0x294110DE"),
    ] {
        assert!(
            rows.iter().any(|r| r[0] == slug && r[1] == name && r[2] == id),
            "{slug} missing or wrong:\n{}",
            r.stdout
        );
    }
    // Every listed slug is one init accepts.
    let dir = tempfile::tempdir().expect("temp dir");
    for row in &rows {
        let path = dir.path().join(format!("{}.json", row[0]));
        let out = Command::new(BIN)
            .env_remove(WORLD_ENV)
            .args(["init", "--gpus", "1", "--product", &row[0]])
            .arg(&path)
            .output()
            .expect("run mig-sim");
        let init = finish(out);
        assert_eq!(init.code, 0, "init --product {} failed: {}", row[0], init.stderr);
        assert!(init.stdout.contains(&row[1]), "{}", init.stdout);
    }
}

#[test]
fn init_chooses_whether_recreated_instances_keep_their_mig_uuid() {
    let uuids_after_recreating = |mode: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("world.json");
        let mut init = Command::new(BIN);
        init.env_remove(WORLD_ENV)
            .args(["init", "--gpus", "1", "--product", "h100-80gb", "--mig", "1"]);
        if let Some(mode) = mode {
            init.args(["--mig-uuids", mode]);
        }
        let r = finish(init.arg(&path).output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        let sim = Sim { _dir: dir, path };
        sim.ok(&["mig", "-cgi", "9", "-C"]);
        let before = sim.world().gpus[0].gpu_instances[0].compute_instances[0]
            .uuid
            .clone();
        sim.ok(&["mig", "-dci"]);
        sim.ok(&["mig", "-cci", "0", "-gi", "2"]);
        let after = sim.world().gpus[0].gpu_instances[0].compute_instances[0]
            .uuid
            .clone();
        (before, after)
    };
    let (before, after) = uuids_after_recreating(Some("reused"));
    assert_eq!(before, after, "the place's UUID comes back");
    let (before, after) = uuids_after_recreating(None);
    assert_ne!(before, after, "the default: a new UUID");
    let (before, after) = uuids_after_recreating(Some("new"));
    assert_ne!(before, after);

    let dir = tempfile::tempdir().unwrap();
    let r = finish(
        Command::new(BIN)
            .env_remove(WORLD_ENV)
            .args([
                "init",
                "--gpus",
                "1",
                "--product",
                "h100-80gb",
                "--mig-uuids",
                "sometimes",
            ])
            .arg(dir.path().join("w.json"))
            .output()
            .unwrap(),
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--mig-uuids") && r.stderr.contains("new or reused"),
        "{}",
        r.stderr
    );
}
