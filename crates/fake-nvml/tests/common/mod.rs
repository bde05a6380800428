//! Shared by the integration tests: where `libfake_nvml.so` is, World files,
//! and one-test-at-a-time access to the fake (it serves one World per process).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use mig_model::{Product, World};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

/// The directory cargo put this test binary's artifacts in (`target/<profile>`),
/// wherever `CARGO_TARGET_DIR` points: the test runs from `<that>/deps/`.
pub fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let deps = exe
        .parent()
        .expect("the test binary sits in target/<profile>/deps");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// `libfake_nvml.so`, built by cargo with this crate's library before its
/// tests. `cargo test` refreshes the copy in `deps/` (beside the test binary)
/// but not the one `cargo build` put in `target/<profile>/`, which may be stale.
pub fn lib_path() -> PathBuf {
    let dir = artifact_dir();
    for candidate in [
        dir.join("deps").join("libfake_nvml.so"),
        dir.join("libfake_nvml.so"),
    ] {
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "libfake_nvml.so is in neither {}/deps nor beside it: build it with `cargo build -p fake-nvml`",
        dir.display()
    );
}

static SERIAL: Mutex<()> = Mutex::new(());

/// A World file in a temporary directory, named in `MIG_WORLD`, held for one test.
pub struct Fake {
    _serial: MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Fake {
    /// Takes the fake for this test (tests in one binary share it) and writes `world`.
    pub fn new(world: &World) -> Fake {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("world.json");
        world.save(&path).expect("write World");
        // Tests in this binary are serialized by SERIAL, so no other thread
        // reads the environment while it changes.
        std::env::set_var(mig_model::WORLD_ENV, &path);
        Fake {
            _serial: serial,
            dir,
            path,
        }
    }

    /// Rewrites the World, as `mig-sim` would between two NVML calls.
    pub fn save(&self, world: &World) {
        world.save(&self.path).expect("rewrite World");
    }

    pub fn init(&self) -> Result<Nvml, NvmlError> {
        Nvml::builder().lib_path(lib_path().as_os_str()).init()
    }

    pub fn nvml(&self) -> Nvml {
        self.init().expect("nvmlInit on the fake")
    }
}

/// One H100 80GB HBM3 with MIG disabled, as the fixture's node.
pub fn h100_disabled() -> World {
    World::new("node", Product::H100_80GB, 1)
}

/// Two H100s. GPU 0 in MIG mode: GI 2 (3g.40gb at 4:4) with two
/// 1c.3g.40gb CIs (0 at 0:1, 1 at 1:1), GI 3 (2g.20gb at 0:2) without a CI,
/// GI 9 (1g.10gb at 2:1) with its full CI; each GI uses 1000 + id MiB.
/// GPU 1 has MIG disabled.
pub fn h100_mixed() -> World {
    let mut w = World::new("node", Product::H100_80GB, 2);
    let gpu = &mut w.gpus[0];
    gpu.set_mig_mode(true);
    let g3 = gpu.create_gpu_instance(9, Some(4)).expect("3g.40gb at 4");
    gpu.create_gpu_instance(14, Some(0)).expect("2g.20gb at 0");
    let g1 = gpu.create_gpu_instance(19, Some(2)).expect("1g.10gb at 2");
    assert_eq!((g3, g1), (2, 9));
    gpu.create_compute_instance(g3, Some(0)).expect("1c.3g.40gb");
    gpu.create_compute_instance(g3, Some(0))
        .expect("second 1c.3g.40gb");
    gpu.create_compute_instance(g1, None).expect("1g.10gb CI");
    for gi in &mut gpu.gpu_instances {
        gi.load.memory_used_mib = 1000 + u64::from(gi.id);
    }
    w
}
