//! The latest value of a field of an entity, from the World's loads.

use mig_model::{Gpu, GpuInstance, World};

use crate::bindings::{
    DCGM_FI_DEV_FB_FREE, DCGM_FI_DEV_FB_TOTAL, DCGM_FI_DEV_FB_USED, DCGM_FI_DEV_GPU_TEMP,
    DCGM_FI_DEV_POWER_USAGE, DCGM_FI_DEV_UUID, DCGM_FI_PROF_DRAM_ACTIVE, DCGM_FI_PROF_GR_ENGINE_ACTIVE,
    DCGM_FI_PROF_PIPE_FP16_ACTIVE, DCGM_FI_PROF_PIPE_FP32_ACTIVE, DCGM_FI_PROF_PIPE_FP64_ACTIVE,
    DCGM_FI_PROF_PIPE_TENSOR_ACTIVE, DCGM_FI_PROF_SM_ACTIVE, DCGM_FI_PROF_SM_OCCUPANCY, DCGM_FT_DOUBLE,
    DCGM_FT_INT64, DCGM_FT_STRING,
};
use crate::entities::Entity;

/// What a field read gives before it is written into a `dcgmFieldValue_v2`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sample {
    Double(f64),
    Int(i64),
    Str(String),
    /// Not sampled yet, or nothing to sample (`DCGM_ST_NO_DATA`, blank value).
    NoData,
    /// The field does not exist at this entity's level (`DCGM_ST_NOT_SUPPORTED`).
    NotSupported,
}

/// Field ids the fake knows, with their DCGM field type.
pub(crate) fn field_type(field: u16) -> Option<u8> {
    match u32::from(field) {
        DCGM_FI_DEV_UUID => Some(DCGM_FT_STRING),
        DCGM_FI_DEV_GPU_TEMP | DCGM_FI_DEV_FB_TOTAL | DCGM_FI_DEV_FB_FREE | DCGM_FI_DEV_FB_USED => {
            Some(DCGM_FT_INT64)
        }
        DCGM_FI_DEV_POWER_USAGE
        | DCGM_FI_PROF_GR_ENGINE_ACTIVE
        | DCGM_FI_PROF_SM_ACTIVE
        | DCGM_FI_PROF_SM_OCCUPANCY
        | DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
        | DCGM_FI_PROF_DRAM_ACTIVE
        | DCGM_FI_PROF_PIPE_FP64_ACTIVE
        | DCGM_FI_PROF_PIPE_FP32_ACTIVE
        | DCGM_FI_PROF_PIPE_FP16_ACTIVE => Some(DCGM_FT_DOUBLE),
        _ => None,
    }
}

/// The value of `field` for `entity` in `world`; `None` when the entity no
/// longer exists there.
pub(crate) fn sample(world: &World, entity: Entity, field: u16) -> Option<Sample> {
    if world.faults.dcgm_unsupported_fields.contains(&field) {
        return Some(Sample::NotSupported);
    }
    let field = u32::from(field);
    Some(match entity {
        Entity::Gpu { gpu } => gpu_sample(world.gpu(gpu).ok()?, field),
        Entity::GpuInstance { gpu, gi } => {
            let gpu = world.gpu(gpu).ok()?;
            gi_sample(gpu, gpu.gpu_instance(gi).ok()?, field)
        }
        Entity::ComputeInstance { gpu, gi, ci } => {
            let gpu = world.gpu(gpu).ok()?;
            let gi = gpu.gpu_instance(gi).ok()?;
            let ci = gi.compute_instances.iter().find(|c| c.id == ci)?;
            match field {
                DCGM_FI_PROF_SM_ACTIVE => Sample::Double(ci.load.sm_active),
                DCGM_FI_PROF_SM_OCCUPANCY => Sample::Double(ci.load.sm_occupancy),
                DCGM_FI_PROF_PIPE_TENSOR_ACTIVE => Sample::Double(ci.load.tensor_active),
                // Memory is a GPU-instance resource: DRAM activity exists per GI only.
                DCGM_FI_PROF_DRAM_ACTIVE => Sample::NotSupported,
                // A MIG device's framebuffer is its GPU instance's.
                DCGM_FI_DEV_FB_TOTAL | DCGM_FI_DEV_FB_USED | DCGM_FI_DEV_FB_FREE => {
                    gi_framebuffer(gpu, gi, field)
                }
                other => instance_default(other),
            }
        }
    })
}

fn gpu_sample(gpu: &Gpu, field: u32) -> Sample {
    let spec = gpu.spec();
    match field {
        DCGM_FI_DEV_UUID => Sample::Str(gpu.uuid.clone()),
        DCGM_FI_DEV_GPU_TEMP => Sample::Int(i64::from(gpu.telemetry.temperature_celsius)),
        DCGM_FI_DEV_POWER_USAGE => Sample::Double(gpu.telemetry.power_watts),
        DCGM_FI_DEV_FB_TOTAL | DCGM_FI_DEV_FB_USED | DCGM_FI_DEV_FB_FREE => {
            let used = if gpu.mig.current {
                gpu.gpu_instances.iter().map(|gi| gi.load.memory_used_mib).sum()
            } else {
                gpu.telemetry.memory_used_mib
            };
            framebuffer(spec.memory_mib, used, field)
        }
        // With MIG enabled the GPU's activity is its instances' together; the
        // World models no profiling load of a GPU without MIG.
        DCGM_FI_PROF_SM_ACTIVE | DCGM_FI_PROF_SM_OCCUPANCY | DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
            if gpu.mig.current =>
        {
            let total = gpu
                .gpu_instances
                .iter()
                .fold(0.0, |sum, gi| sum + ci_weighted(gi, field));
            Sample::Double(ratio(total, spec.compute_slices))
        }
        DCGM_FI_PROF_DRAM_ACTIVE if gpu.mig.current => {
            let total = gpu.gpu_instances.iter().fold(0.0, |sum, gi| {
                sum + gi.load.dram_active * f64::from(gi.placement.size)
            });
            Sample::Double(ratio(total, spec.memory_slots))
        }
        _ => Sample::NoData,
    }
}

fn gi_sample(gpu: &Gpu, gi: &GpuInstance, field: u32) -> Sample {
    match field {
        DCGM_FI_PROF_SM_ACTIVE | DCGM_FI_PROF_SM_OCCUPANCY | DCGM_FI_PROF_PIPE_TENSOR_ACTIVE => {
            let slices = gpu.gi_profile(gi).map_or(gi.placement.size, |p| p.compute_slices);
            Sample::Double(ratio(ci_weighted(gi, field), slices))
        }
        DCGM_FI_PROF_DRAM_ACTIVE => Sample::Double(gi.load.dram_active),
        DCGM_FI_DEV_FB_TOTAL | DCGM_FI_DEV_FB_USED | DCGM_FI_DEV_FB_FREE => gi_framebuffer(gpu, gi, field),
        other => instance_default(other),
    }
}

/// A MIG entity's answer for a field it has no value of: GPU-only fields are
/// not supported (never the parent GPU's value), profiling fields the World
/// does not model have no data.
fn instance_default(field: u32) -> Sample {
    match field {
        DCGM_FI_DEV_UUID | DCGM_FI_DEV_GPU_TEMP | DCGM_FI_DEV_POWER_USAGE => Sample::NotSupported,
        _ => Sample::NoData,
    }
}

fn gi_framebuffer(gpu: &Gpu, gi: &GpuInstance, field: u32) -> Sample {
    match gpu.gi_profile(gi) {
        Ok(profile) => framebuffer(profile.memory_mib, gi.load.memory_used_mib, field),
        Err(_) => Sample::NoData,
    }
}

fn framebuffer(total_mib: u64, used_mib: u64, field: u32) -> Sample {
    let mib = match field {
        DCGM_FI_DEV_FB_TOTAL => total_mib,
        DCGM_FI_DEV_FB_USED => used_mib,
        _ => total_mib.saturating_sub(used_mib),
    };
    Sample::Int(i64::try_from(mib).unwrap_or(i64::MAX))
}

/// The sum over a GI's compute instances of `field` times the CI's SM slices.
fn ci_weighted(gi: &GpuInstance, field: u32) -> f64 {
    gi.compute_instances
        .iter()
        .map(|ci| {
            let v = match field {
                DCGM_FI_PROF_SM_ACTIVE => ci.load.sm_active,
                DCGM_FI_PROF_SM_OCCUPANCY => ci.load.sm_occupancy,
                _ => ci.load.tensor_active,
            };
            v * f64::from(ci.compute_slices())
        })
        // Summing no f64 gives -0.0, which DCGM never reports.
        .fold(0.0, |sum, v| sum + v)
}

fn ratio(weighted: f64, slices: u32) -> f64 {
    if slices == 0 {
        0.0
    } else {
        (weighted / f64::from(slices)).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_model::Product;

    /// An H100 with a 3g.40gb split into a 1-slice and a 2-slice CI, and a 1g.10gb.
    fn world() -> (World, u32, u32) {
        let mut w = World::new("n", Product::H100_80GB, 1);
        let gpu = &mut w.gpus[0];
        gpu.set_mig_mode(true);
        let big = gpu.create_gpu_instance(9, None).unwrap();
        gpu.create_compute_instance(big, Some(1)).unwrap(); // CI 0: 2c.3g.40gb
        gpu.create_compute_instance(big, Some(0)).unwrap(); // CI 1: 1c.3g.40gb
        let small = gpu.create_gpu_instance(19, None).unwrap();
        gpu.create_compute_instance(small, None).unwrap();
        let g = gpu.gpu_instances.iter_mut().find(|g| g.id == big).unwrap();
        g.load.dram_active = 0.5;
        g.load.memory_used_mib = 1000;
        g.compute_instances[0].load.sm_active = 0.3; // 2 slices
        g.compute_instances[1].load.sm_active = 0.9; // 1 slice
        (w, big, small)
    }

    #[test]
    fn instance_values_come_from_the_load_and_parents_aggregate_by_slices() {
        let (w, big, small) = world();
        let ci = |ci| Entity::ComputeInstance { gpu: 0, gi: big, ci };
        let gi = Entity::GpuInstance { gpu: 0, gi: big };
        let f = |v: u32| v as u16;
        assert_eq!(
            sample(&w, ci(1), f(DCGM_FI_PROF_SM_ACTIVE)),
            Some(Sample::Double(0.9))
        );
        let Some(Sample::Double(gi_sm)) = sample(&w, gi, f(DCGM_FI_PROF_SM_ACTIVE)) else {
            panic!("GI SM active is a double")
        };
        assert!((gi_sm - (0.9 + 0.3 * 2.0) / 3.0).abs() < 1e-12, "{gi_sm}");
        let Some(Sample::Double(gpu_sm)) = sample(&w, Entity::Gpu { gpu: 0 }, f(DCGM_FI_PROF_SM_ACTIVE))
        else {
            panic!("GPU SM active is a double")
        };
        assert!((gpu_sm - 1.5 / 7.0).abs() < 1e-12, "{gpu_sm}");
        assert_eq!(
            sample(&w, gi, f(DCGM_FI_PROF_DRAM_ACTIVE)),
            Some(Sample::Double(0.5))
        );
        assert_eq!(sample(&w, gi, f(DCGM_FI_DEV_FB_USED)), Some(Sample::Int(1000)));
        let total = w.gpus[0]
            .gi_profile(w.gpus[0].gpu_instance(big).unwrap())
            .unwrap()
            .memory_mib as i64;
        assert_eq!(sample(&w, gi, f(DCGM_FI_DEV_FB_TOTAL)), Some(Sample::Int(total)));
        assert_eq!(
            sample(&w, gi, f(DCGM_FI_DEV_FB_FREE)),
            Some(Sample::Int(total - 1000))
        );
        assert_eq!(
            sample(&w, ci(1), f(DCGM_FI_DEV_FB_USED)),
            Some(Sample::Int(1000)),
            "a CI's framebuffer is its GI's"
        );
        let _ = small;
    }

    #[test]
    fn instances_never_answer_with_the_parents_value() {
        let (w, big, _) = world();
        let ci = Entity::ComputeInstance {
            gpu: 0,
            gi: big,
            ci: 0,
        };
        let gi = Entity::GpuInstance { gpu: 0, gi: big };
        for e in [gi, ci] {
            for field in [DCGM_FI_DEV_POWER_USAGE, DCGM_FI_DEV_GPU_TEMP, DCGM_FI_DEV_UUID] {
                assert_eq!(
                    sample(&w, e, field as u16),
                    Some(Sample::NotSupported),
                    "{e:?} {field}"
                );
            }
            assert_eq!(
                sample(&w, e, DCGM_FI_PROF_GR_ENGINE_ACTIVE as u16),
                Some(Sample::NoData)
            );
        }
        assert_eq!(
            sample(&w, ci, DCGM_FI_PROF_DRAM_ACTIVE as u16),
            Some(Sample::NotSupported)
        );
        assert_eq!(
            sample(&w, Entity::Gpu { gpu: 0 }, DCGM_FI_DEV_POWER_USAGE as u16),
            Some(Sample::Double(w.gpus[0].telemetry.power_watts))
        );
    }

    #[test]
    fn unsupported_field_fault_and_vanished_entities() {
        let (mut w, big, _) = world();
        w.faults.dcgm_unsupported_fields = vec![DCGM_FI_PROF_SM_ACTIVE as u16];
        let ci = Entity::ComputeInstance {
            gpu: 0,
            gi: big,
            ci: 0,
        };
        assert_eq!(
            sample(&w, ci, DCGM_FI_PROF_SM_ACTIVE as u16),
            Some(Sample::NotSupported)
        );
        assert_eq!(
            sample(&w, ci, DCGM_FI_PROF_SM_OCCUPANCY as u16),
            Some(Sample::Double(0.0))
        );
        let gone = Entity::ComputeInstance {
            gpu: 0,
            gi: big,
            ci: 5,
        };
        assert_eq!(sample(&w, gone, DCGM_FI_PROF_SM_OCCUPANCY as u16), None);
    }
}
