//! The node the dcgm_values and kubelet_answers targets judge their inputs
//! against (included with `#[path]`; not a target of its own).

use std::sync::OnceLock;

use mig_exporter::model::GpuSnapshot;
use mig_exporter::source::sim::reading_from_world;
use mig_model::{Product, World};

/// Two H100s with minor numbers 0 and 1 (the DRA driver's `gpu-0`, `gpu-1`):
/// GPU 0 whole, GPU 1 with two 1g.10gb (GI profile 19) at placements 0 and 1,
/// one compute instance each; NVML has filled nothing DCGM fills. UUIDs are
/// replaced by short fixed ones, so that the seeds can name them:
/// `GPU-fuzz-0`, `GPU-fuzz-1`, and `MIG-fuzz-0`, `MIG-fuzz-1` (DRA:
/// `gpu-1-mig-1g10gb-19-0`, `gpu-1-mig-1g10gb-19-1`).
pub fn node() -> &'static [GpuSnapshot] {
    static NODE: OnceLock<Vec<GpuSnapshot>> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut world = World::new("fuzz", Product::H100_80GB, 2);
        let gpu = &mut world.gpus[1];
        gpu.set_mig_mode(true);
        for start in [0, 1] {
            let gi = gpu.create_gpu_instance(19, Some(start)).expect("a 1g.10gb");
            gpu.create_compute_instance(gi, None)
                .expect("its compute instance");
        }
        let mut gpus = reading_from_world(&world).gpus;
        let mut n = 0;
        for gpu in &mut gpus {
            assert_eq!(gpu.minor_number, Some(gpu.index));
            gpu.uuid = format!("GPU-fuzz-{}", gpu.index);
            for gi in &mut gpu.gpu_instances {
                for ci in &mut gi.compute_instances {
                    ci.mig_uuid = format!("MIG-fuzz-{n}");
                    n += 1;
                }
            }
        }
        assert_eq!(n, 2);
        gpus
    })
}
