//! DCGM's entities of a World: GPUs, GPU instances and compute instances,
//! numbered as DCGM numbers them (see the crate documentation).

use mig_model::{ComputeInstance, Gpu, GpuInstance, World};

use crate::bindings::{DCGM_FE_GPU, DCGM_FE_GPU_CI, DCGM_FE_GPU_I, DCGM_MAX_INSTANCES_PER_GPU};

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

/// The MIG hierarchy in DCGM's order: per MIG-enabled GPU, each GPU instance
/// followed by its compute instances.
pub(crate) fn hierarchy(world: &World) -> Vec<MigEntity> {
    let mut out = Vec::new();
    for gpu in world.gpus.iter().filter(|g| g.mig.current) {
        let base = gpu.index.saturating_mul(DCGM_MAX_INSTANCES_PER_GPU);
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

fn sorted_gis(gpu: &Gpu) -> Vec<&GpuInstance> {
    let mut gis: Vec<&GpuInstance> = gpu.gpu_instances.iter().collect();
    gis.sort_by_key(|g| g.id);
    gis
}

fn sorted_cis(gi: &GpuInstance) -> Vec<&ComputeInstance> {
    let mut cis: Vec<&ComputeInstance> = gi.compute_instances.iter().collect();
    cis.sort_by_key(|c| c.id);
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
    fn ids_are_positions_and_shift_after_a_reconfiguration() {
        let mut w = World::new("n", Product::H100_80GB, 2);
        w.gpus[1].set_mig_mode(true);
        let gpu = &mut w.gpus[1];
        let a = gpu.create_gpu_instance(19, Some(0)).unwrap();
        let b = gpu.create_gpu_instance(19, Some(1)).unwrap();
        gpu.create_compute_instance(a, None).unwrap();
        gpu.create_compute_instance(b, None).unwrap();
        let h = hierarchy(&w);
        let rows: Vec<(u32, u32, u32, u32)> = h.iter().map(|e| (e.group, e.id, e.gi, e.ci)).collect();
        assert_eq!(
            rows,
            vec![
                (DCGM_FE_GPU_I, 8, a, u32::MAX),
                (DCGM_FE_GPU_CI, 8, a, 0),
                (DCGM_FE_GPU_I, 9, b, u32::MAX),
                (DCGM_FE_GPU_CI, 9, b, 0),
            ],
            "GPU 1's instances start at 1 * 8; MIG-disabled GPU 0 has none"
        );
        assert_eq!(h[1].parent_id, 8, "a CI's parent is its GI entity");
        assert_eq!(h[0].gpu_uuid, w.gpus[1].uuid);

        let gpu = &mut w.gpus[1];
        gpu.destroy_compute_instance(a, 0).unwrap();
        gpu.destroy_gpu_instance(a).unwrap();
        assert_eq!(
            resolve(&w, DCGM_FE_GPU_I, 8),
            Some(Entity::GpuInstance { gpu: 1, gi: b }),
            "entity 8 now names the GI that was 9"
        );
        assert_eq!(resolve(&w, DCGM_FE_GPU_I, 9), None);
        assert_eq!(resolve(&w, DCGM_FE_GPU, 1), Some(Entity::Gpu { gpu: 1 }));
        assert_eq!(resolve(&w, DCGM_FE_GPU, 2), None);
    }
}
