//! The latest value of a field of an entity, from the World's loads.

use mig_model::{CiLoad, Gpu, GpuInstance, World};

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
    /// DCGM sampled the field and stored its blank: status `DCGM_ST_OK`, a
    /// timestamp, and `DCGM_FP64_BLANK` / `DCGM_INT64_BLANK` / `DCGM_STR_BLANK`
    /// as the value. NVIDIA/DCGM dcgmlib/src/DcgmCacheManager.cpp stores what a
    /// failed read leaves (`AppendEntityDouble` of the untouched blank after
    /// `DcgmGpmManager::GetLatestSample`, `NvmlErrorToInt64Value` after a failed
    /// NVML call) like any sample, and `GetLatestSample` returns every stored
    /// sample with `DCGM_ST_OK` (`DcgmcmWriteTimeSeriesEntryToFvBuffer`).
    Blank,
    /// Not sampled yet (`DCGM_ST_NO_DATA`, blank value, no timestamp).
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
        DCGM_FI_DEV_POWER_USAGE | DCGM_FI_PROF_DRAM_ACTIVE => Some(DCGM_FT_DOUBLE),
        f if compute_field(f) => Some(DCGM_FT_DOUBLE),
        _ => None,
    }
}

/// The profiling fields of SMs and engines: per compute instance in DCGM
/// (entity level `DCGM_FE_GPU_CI` in NVIDIA/DCGM dcgmlib/src/dcgm_fields.cpp),
/// each from the [`CiLoad`] field of the same name.
fn compute_field(field: u32) -> bool {
    matches!(
        field,
        DCGM_FI_PROF_GR_ENGINE_ACTIVE
            | DCGM_FI_PROF_SM_ACTIVE
            | DCGM_FI_PROF_SM_OCCUPANCY
            | DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
            | DCGM_FI_PROF_PIPE_FP64_ACTIVE
            | DCGM_FI_PROF_PIPE_FP32_ACTIVE
            | DCGM_FI_PROF_PIPE_FP16_ACTIVE
    )
}

/// `load`'s value of a [`compute_field`].
fn load_value(load: &CiLoad, field: u32) -> f64 {
    match field {
        DCGM_FI_PROF_GR_ENGINE_ACTIVE => load.gr_engine_active,
        DCGM_FI_PROF_SM_ACTIVE => load.sm_active,
        DCGM_FI_PROF_SM_OCCUPANCY => load.sm_occupancy,
        DCGM_FI_PROF_PIPE_TENSOR_ACTIVE => load.tensor_active,
        DCGM_FI_PROF_PIPE_FP64_ACTIVE => load.fp64_active,
        DCGM_FI_PROF_PIPE_FP32_ACTIVE => load.fp32_active,
        _ => load.fp16_active,
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
                f if compute_field(f) => Sample::Double(load_value(&ci.load, f)),
                // DRAM activity is a GPU-instance field (entity level
                // `DCGM_FE_GPU_I`): asked of a CI, `DcgmGpmManagerEntity::
                // GetLatestSample` leaves the value blank and the cache
                // manager stores that blank.
                DCGM_FI_PROF_DRAM_ACTIVE => Sample::Blank,
                // DCGM reads a CI's framebuffer through its MIG device
                // (`ReadAndCacheFBMemoryInfo`), whose memory is its GI's.
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
    let t = &gpu.telemetry;
    match field {
        DCGM_FI_DEV_UUID => Sample::Str(gpu.uuid.clone()),
        DCGM_FI_DEV_GPU_TEMP => Sample::Int(i64::from(t.temperature_celsius)),
        DCGM_FI_DEV_POWER_USAGE => Sample::Double(t.power_watts),
        DCGM_FI_DEV_FB_TOTAL | DCGM_FI_DEV_FB_USED | DCGM_FI_DEV_FB_FREE => {
            let used = if gpu.mig.current {
                gpu.gpu_instances.iter().map(|gi| gi.load.memory_used_mib).sum()
            } else {
                t.memory_used_mib
            };
            framebuffer(spec.memory_mib, used, field)
        }
        // NVIDIA/DCGM dcgmlib/src/DcgmGpmManager.cpp: "All GPM metrics
        // supported at the GPU level", sampled on the GPU's own NVML device
        // whatever its MIG mode. Without MIG the whole GPU's load is the
        // World's telemetry load.
        f if compute_field(f) && !gpu.mig.current => Sample::Double(load_value(&t.compute_load, f)),
        DCGM_FI_PROF_DRAM_ACTIVE if !gpu.mig.current => Sample::Double(t.dram_active),
        // unverified: with MIG enabled, the GPU's activity is taken as its
        // instances' over all the GPU's SM slices (memory slots for DRAM),
        // the normalisation DCGM applies to a GPU instance (see `gi_sample`).
        f if compute_field(f) => {
            let total = gpu
                .gpu_instances
                .iter()
                .fold(0.0, |sum, gi| sum + ci_weighted(gi, f));
            Sample::Double(ratio(total, spec.compute_slices))
        }
        DCGM_FI_PROF_DRAM_ACTIVE => {
            let total = gpu.gpu_instances.iter().fold(0.0, |sum, gi| {
                sum + gi.load.dram_active * f64::from(gi.placement.size)
            });
            Sample::Double(ratio(total, spec.memory_slots))
        }
        _ => Sample::NoData,
    }
}

fn gi_sample(gpu: &Gpu, gi: &GpuInstance, field: u32) -> Sample {
    let profiling = compute_field(field) || field == DCGM_FI_PROF_DRAM_ACTIVE;
    let framebuffer_field = matches!(
        field,
        DCGM_FI_DEV_FB_TOTAL | DCGM_FI_DEV_FB_USED | DCGM_FI_DEV_FB_FREE
    );
    if gi.compute_instances.is_empty() && (profiling || framebuffer_field) {
        // A GI without CIs has no MIG device to read. NVIDIA/DCGM
        // dcgmlib/src/DcgmGpmManager.cpp `MaybeFetchNewSample` skips the GPM
        // sample of such a GI ("return BLANK values"); `ReadAndCacheFBMemoryInfo`
        // finds no MIG device handle for it, and the NVML error it then stores is
        // `DCGM_INT64_BLANK` (`NvmlErrorToInt64Value`). Blanks, never 0 or the
        // profile's whole framebuffer.
        return Sample::Blank;
    }
    match field {
        // DCGM normalises a GI's activity over all of the GI's SM slices (its
        // GPCs): NVIDIA/DCGM issue 138 shows GR engine active topping out at
        // 50 % on a 2g.20gb and 33 % on a 3g.40gb with one GPC busy, and the
        // maintainers answer that more compute instances filling the GI reach
        // 100 %. So a GI reads the sum of its CIs' values times their slices
        // over its own slices: slices no CI holds, or a CI's idle GPCs, count
        // as idle.
        f if compute_field(f) => {
            let slices = gpu.gi_profile(gi).map_or(gi.placement.size, |p| p.compute_slices);
            Sample::Double(ratio(ci_weighted(gi, f), slices))
        }
        DCGM_FI_PROF_DRAM_ACTIVE => Sample::Double(gi.load.dram_active),
        DCGM_FI_DEV_FB_TOTAL | DCGM_FI_DEV_FB_USED | DCGM_FI_DEV_FB_FREE => gi_framebuffer(gpu, gi, field),
        other => instance_default(other),
    }
}

/// A MIG entity's answer for a field it has no value of: GPU-only fields are
/// not supported (never the parent GPU's value), other fields have no data.
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
        .map(|ci| load_value(&ci.load, field) * f64::from(ci.compute_slices()))
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
        }
        assert_eq!(
            sample(&w, ci, DCGM_FI_PROF_DRAM_ACTIVE as u16),
            Some(Sample::Blank),
            "DRAM activity is a GI field: blank on a CI, never the GI's value"
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

    fn f(field: u32) -> u16 {
        field as u16
    }

    #[test]
    fn engine_and_fp_pipe_fields_come_from_the_load_at_every_level() {
        let (mut w, big, _) = world();
        let g = w.gpus[0].gpu_instances.iter_mut().find(|g| g.id == big).unwrap();
        g.compute_instances[0].load = CiLoad {
            gr_engine_active: 0.6,
            fp64_active: 0.3,
            fp32_active: 0.15,
            fp16_active: 0.9,
            ..CiLoad::default()
        }; // 2 slices of the 3g GI
        let ci = Entity::ComputeInstance {
            gpu: 0,
            gi: big,
            ci: 0,
        };
        let gi = Entity::GpuInstance { gpu: 0, gi: big };
        for (field, want) in [
            (DCGM_FI_PROF_GR_ENGINE_ACTIVE, 0.6),
            (DCGM_FI_PROF_PIPE_FP64_ACTIVE, 0.3),
            (DCGM_FI_PROF_PIPE_FP32_ACTIVE, 0.15),
            (DCGM_FI_PROF_PIPE_FP16_ACTIVE, 0.9),
        ] {
            assert_eq!(sample(&w, ci, f(field)), Some(Sample::Double(want)), "{field}");
            let Some(Sample::Double(v)) = sample(&w, gi, f(field)) else {
                panic!("GI {field} is a double")
            };
            assert!((v - want * 2.0 / 3.0).abs() < 1e-12, "GI {field}: {v}");
            let Some(Sample::Double(v)) = sample(&w, Entity::Gpu { gpu: 0 }, f(field)) else {
                panic!("GPU {field} is a double")
            };
            assert!((v - want * 2.0 / 7.0).abs() < 1e-12, "GPU {field}: {v}");
            assert_eq!(field_type(f(field)), Some(DCGM_FT_DOUBLE));
        }
    }

    #[test]
    fn a_gpu_instance_is_normalised_over_all_its_slices() {
        // NVIDIA/DCGM issue 138: one busy GPC in a 2g GI reads 50 %.
        let mut w = World::new("n", Product::H100_80GB, 1);
        let gpu = &mut w.gpus[0];
        gpu.set_mig_mode(true);
        let two = gpu.create_gpu_instance(14, None).unwrap(); // 2g.20gb
        gpu.create_compute_instance(two, Some(0)).unwrap(); // 1c.2g.20gb
        let full = gpu.create_gpu_instance(9, None).unwrap(); // 3g.40gb
        gpu.create_compute_instance(full, None).unwrap(); // 3g.40gb
        for gi in &mut gpu.gpu_instances {
            gi.compute_instances[0].load.gr_engine_active = 1.0;
        }
        let gr = |gi| {
            sample(
                &w,
                Entity::GpuInstance { gpu: 0, gi },
                f(DCGM_FI_PROF_GR_ENGINE_ACTIVE),
            )
        };
        assert_eq!(
            gr(two),
            Some(Sample::Double(0.5)),
            "half the 2g's slices hold no CI"
        );
        assert_eq!(gr(full), Some(Sample::Double(1.0)), "a CI spanning its GI");
        assert_eq!(
            sample(
                &w,
                Entity::ComputeInstance {
                    gpu: 0,
                    gi: two,
                    ci: 0
                },
                f(DCGM_FI_PROF_GR_ENGINE_ACTIVE)
            ),
            Some(Sample::Double(1.0)),
            "the CI itself is fully busy"
        );
    }

    #[test]
    fn a_gpu_instance_without_compute_instances_reads_blanks() {
        let mut w = World::new("n", Product::H100_80GB, 1);
        let gpu = &mut w.gpus[0];
        gpu.set_mig_mode(true);
        let empty = gpu.create_gpu_instance(19, None).unwrap();
        gpu.gpu_instances[0].load.dram_active = 0.4;
        gpu.gpu_instances[0].load.memory_used_mib = 100;
        let gi = Entity::GpuInstance { gpu: 0, gi: empty };
        for field in [
            DCGM_FI_PROF_GR_ENGINE_ACTIVE,
            DCGM_FI_PROF_SM_ACTIVE,
            DCGM_FI_PROF_SM_OCCUPANCY,
            DCGM_FI_PROF_PIPE_TENSOR_ACTIVE,
            DCGM_FI_PROF_DRAM_ACTIVE,
            DCGM_FI_PROF_PIPE_FP64_ACTIVE,
            DCGM_FI_PROF_PIPE_FP32_ACTIVE,
            DCGM_FI_PROF_PIPE_FP16_ACTIVE,
            DCGM_FI_DEV_FB_TOTAL,
            DCGM_FI_DEV_FB_USED,
            DCGM_FI_DEV_FB_FREE,
        ] {
            assert_eq!(sample(&w, gi, f(field)), Some(Sample::Blank), "{field}");
        }
        assert_eq!(
            sample(&w, gi, f(DCGM_FI_DEV_POWER_USAGE)),
            Some(Sample::NotSupported)
        );
    }

    #[test]
    fn a_gpu_without_mig_reads_its_whole_gpu_load() {
        let mut w = World::new("n", Product::H100_80GB, 1);
        let t = &mut w.gpus[0].telemetry;
        t.compute_load = CiLoad {
            sm_active: 0.7,
            sm_occupancy: 0.35,
            tensor_active: 0.2,
            gr_engine_active: 0.8,
            fp64_active: 0.01,
            fp32_active: 0.4,
            fp16_active: 0.05,
        };
        t.dram_active = 0.45;
        let gpu = Entity::Gpu { gpu: 0 };
        for (field, want) in [
            (DCGM_FI_PROF_SM_ACTIVE, 0.7),
            (DCGM_FI_PROF_SM_OCCUPANCY, 0.35),
            (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE, 0.2),
            (DCGM_FI_PROF_GR_ENGINE_ACTIVE, 0.8),
            (DCGM_FI_PROF_PIPE_FP64_ACTIVE, 0.01),
            (DCGM_FI_PROF_PIPE_FP32_ACTIVE, 0.4),
            (DCGM_FI_PROF_PIPE_FP16_ACTIVE, 0.05),
            (DCGM_FI_PROF_DRAM_ACTIVE, 0.45),
        ] {
            assert_eq!(sample(&w, gpu, f(field)), Some(Sample::Double(want)), "{field}");
        }
        // With MIG on, the telemetry load is not the GPU's: its (no) instances are.
        w.gpus[0].set_mig_mode(true);
        assert_eq!(
            sample(&w, gpu, f(DCGM_FI_PROF_SM_ACTIVE)),
            Some(Sample::Double(0.0))
        );
    }
}
