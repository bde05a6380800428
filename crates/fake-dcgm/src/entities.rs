//! DCGM's entities of a World: GPUs, GPU instances and compute instances,
//! numbered as DCGM numbers them (see the crate documentation).

use mig_model::{ComputeInstance, Gpu, GpuInstance, World};

use crate::bindings::{DCGM_FE_GPU, DCGM_FE_GPU_CI, DCGM_FE_GPU_I};

/// What a DCGM entity is in the World.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entity {
    Gpu { gpu: u32 },
    GpuInstance { gpu: u32, gi: u32 },
    ComputeInstance { gpu: u32, gi: u32, ci: u32 },
}

/// One row of the MIG hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct MigEntity {
    pub group: u32,
    pub id: u32,
    pub parent_group: u32,
    pub parent_id: u32,
    pub gpu_uuid: String,
    pub gpu_index: u32,
    pub gi: u32,
    /// `u32::MAX` for a GPU instance, as DCGM writes -1 into the unsigned field.
    pub ci: u32,
    pub profile_id: u32,
    pub slices: u32,
}

/// The most MIG devices a MIG-enabled GPU can hold: what
/// `nvmlDeviceGetMaxMigDeviceCount` answers, which fake-nvml gives as the
/// product's SM slice count (7; 4 on A30 and RTX PRO 6000). DCGM numbers a
/// GPU's MIG entities from `gpuId` times this (NVIDIA/DCGM
/// dcgmlib/src/DcgmCacheManager.cpp, `InitializeGpuInstances`), not from
/// dcgm_structs.h's `DCGM_MAX_INSTANCES_PER_GPU` (8), which is only its
/// fallback when NVML cannot answer.
pub(crate) fn max_mig_devices(gpu: &Gpu) -> u32 {
    gpu.spec().compute_slices
}

/// The MIG hierarchy as DCGM builds it (NVIDIA/DCGM
/// dcgmlib/src/DcgmCacheManager.cpp, `InitializeGpuInstances` and
/// `PopulateMigHierarchy`): per MIG-enabled GPU, in GPU id order, each GPU
/// instance followed by its compute instances.
///
/// * GPU instances are visited by GPU-instance profile index
///   (`NVML_GPU_INSTANCE_PROFILE_*`: 1 slice, 2, 3, 4, 7, then the `+me` and
///   other revisions), then in the order `nvmlDeviceGetGpuInstances` lists a
///   profile's instances (unverified: by GI id, as fake-nvml lists them). The
///   `n`-th one visited is entity `gpuId * max + n`, `max` being
///   [`max_mig_devices`]: GI ids play no part, so a 1g.10gb created after a
///   3g.40gb still comes first.
/// * Compute instances are visited per GPU instance in that order, by
///   compute-instance profile index, then as `nvmlGpuInstanceGetComputeInstances`
///   lists them (unverified: by CI id, as fake-nvml lists them). The `m`-th one
///   on the GPU (counted over all its GIs) is entity `gpuId * max + m`.
/// * A GPU instance's slices are its profile's `sliceCount`, a compute
///   instance's its CI profile's.
///
/// DCGM renumbers a GPU's instances from scratch whenever NVML reports a MIG
/// configuration change (`nvmlEventMigConfigChange` in the cache manager's
/// event loop: `ClearGpuMigInfo`, then `InitializeGpuInstances`), so an id can
/// name another instance after a reconfiguration. The fake computes the
/// numbering from the current World on every call (unverified: DCGM may lag
/// the change by its event delay).
pub(crate) fn hierarchy(world: &World) -> Vec<MigEntity> {
    let mut out = Vec::new();
    let mut gpus: Vec<&Gpu> = world.gpus.iter().filter(|g| g.mig.current).collect();
    gpus.sort_by_key(|g| g.index);
    for gpu in gpus {
        let base = gpu.index.saturating_mul(max_mig_devices(gpu));
        let mut ci_count = 0u32;
        for (position, gi) in sorted_gis(gpu).into_iter().enumerate() {
            let gi_eid = base + position as u32;
            let slices = gpu.gi_profile(gi).map_or(gi.placement.size, |p| p.compute_slices);
            out.push(MigEntity {
                group: DCGM_FE_GPU_I,
                id: gi_eid,
                parent_group: DCGM_FE_GPU,
                parent_id: gpu.index,
                gpu_uuid: gpu.uuid.clone(),
                gpu_index: gpu.index,
                gi: gi.id,
                ci: u32::MAX,
                profile_id: gi.profile_id,
                slices,
            });
            for ci in sorted_cis(gi) {
                out.push(MigEntity {
                    group: DCGM_FE_GPU_CI,
                    id: base + ci_count,
                    parent_group: DCGM_FE_GPU_I,
                    parent_id: gi_eid,
                    gpu_uuid: gpu.uuid.clone(),
                    gpu_index: gpu.index,
                    gi: gi.id,
                    ci: ci.id,
                    profile_id: ci.profile_id,
                    slices: ci.compute_slices(),
                });
                ci_count += 1;
            }
        }
    }
    out
}

/// A GPU's instances in DCGM's visiting order: by profile index, then id.
fn sorted_gis(gpu: &Gpu) -> Vec<&GpuInstance> {
    let mut gis: Vec<&GpuInstance> = gpu.gpu_instances.iter().collect();
    gis.sort_by_key(|g| (gpu.gi_profile(g).map_or(u32::MAX, |p| p.nvml_index), g.id));
    gis
}

/// A GI's compute instances by CI profile index (the CI profile id is that
/// index, see `mig_model::compute_instance_profile_id`), then id.
fn sorted_cis(gi: &GpuInstance) -> Vec<&ComputeInstance> {
    let mut cis: Vec<&ComputeInstance> = gi.compute_instances.iter().collect();
    cis.sort_by_key(|c| (c.profile_id, c.id));
    cis
}

/// What `(entity group, entity id)` names in `world`, if anything.
pub(crate) fn resolve(world: &World, group: u32, id: u32) -> Option<Entity> {
    match group {
        DCGM_FE_GPU => world
            .gpus
            .iter()
            .any(|g| g.index == id)
            .then_some(Entity::Gpu { gpu: id }),
        DCGM_FE_GPU_I | DCGM_FE_GPU_CI => hierarchy(world)
            .into_iter()
            .find(|e| e.group == group && e.id == id)
            .map(|e| {
                if group == DCGM_FE_GPU_I {
                    Entity::GpuInstance {
                        gpu: e.gpu_index,
                        gi: e.gi,
                    }
                } else {
                    Entity::ComputeInstance {
                        gpu: e.gpu_index,
                        gi: e.gi,
                        ci: e.ci,
                    }
                }
            }),
        _ => None,
    }
}

/// DCGM GPU ids of the World's GPUs (DCGM supports every simulated GPU).
pub(crate) fn gpu_ids(world: &World) -> Vec<u32> {
    let mut ids: Vec<u32> = world.gpus.iter().map(|g| g.index).collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_model::Product;

    #[test]
    fn ids_follow_profile_order_from_gpu_id_times_max_mig_devices_and_shift_after_a_reconfiguration() {
        let mut w = World::new("n", Product::H100_80GB, 2);
        w.gpus[1].set_mig_mode(true);
        let gpu = &mut w.gpus[1];
        // Created 3g.40gb first, with its 2-slice CI before its 1-slice CI.
        let big = gpu.create_gpu_instance(9, Some(0)).unwrap();
        gpu.create_compute_instance(big, Some(1)).unwrap(); // CI 0: 2c.3g.40gb
        gpu.create_compute_instance(big, Some(0)).unwrap(); // CI 1: 1c.3g.40gb
        let small = gpu.create_gpu_instance(19, Some(4)).unwrap();
        gpu.create_compute_instance(small, None).unwrap();
        assert_eq!(max_mig_devices(&w.gpus[1]), 7);
        let h = hierarchy(&w);
        let rows: Vec<(u32, u32, u32, u32)> = h.iter().map(|e| (e.group, e.id, e.gi, e.ci)).collect();
        assert_eq!(
            rows,
            vec![
                (DCGM_FE_GPU_I, 7, small, u32::MAX),
                (DCGM_FE_GPU_CI, 7, small, 0),
                (DCGM_FE_GPU_I, 8, big, u32::MAX),
                (DCGM_FE_GPU_CI, 8, big, 1),
                (DCGM_FE_GPU_CI, 9, big, 0),
            ],
            "GPU 1's instances start at 1 * 7, the 1-slice profile first, CIs by profile; \
             MIG-disabled GPU 0 has none"
        );
        assert_eq!(h[3].parent_id, 8, "a CI's parent is its GI entity");
        assert_eq!((h[2].slices, h[3].slices, h[4].slices), (3, 1, 2));
        assert_eq!(h[0].gpu_uuid, w.gpus[1].uuid);

        let gpu = &mut w.gpus[1];
        gpu.destroy_compute_instance(small, 0).unwrap();
        gpu.destroy_gpu_instance(small).unwrap();
        assert_eq!(
            resolve(&w, DCGM_FE_GPU_I, 7),
            Some(Entity::GpuInstance { gpu: 1, gi: big }),
            "entity 7 now names the GI that was 8"
        );
        assert_eq!(
            resolve(&w, DCGM_FE_GPU_CI, 8),
            Some(Entity::ComputeInstance {
                gpu: 1,
                gi: big,
                ci: 0
            }),
            "CI entities renumber too"
        );
        assert_eq!(resolve(&w, DCGM_FE_GPU_I, 8), None);
        assert_eq!(resolve(&w, DCGM_FE_GPU, 1), Some(Entity::Gpu { gpu: 1 }));
        assert_eq!(resolve(&w, DCGM_FE_GPU, 2), None);
    }
}
