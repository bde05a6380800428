//! Opaque handles: what an `nvmlDevice_t`, `nvmlGpuInstance_t` or
//! `nvmlComputeInstance_t` names, and how it is found again in the World.
//!
//! A handle is `((slot + 1) << 4) | kind`, where `slot` indexes a registry of
//! [`Target`]s. It is never dereferenced. The same target always gets the same
//! handle, as the real driver returns the same handle for the same device.

use mig_model::{ComputeInstance, Gpu, GpuInstance, World};
use nvml_wrapper_sys::bindings::{
    nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST as GPU_IS_LOST,
    nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT as INVALID_ARGUMENT, nvmlReturn_t,
};

/// What a handle names. GPUs are named by UUID so that a handle keeps naming
/// the same board whatever the World says about indexes; MIG devices and
/// compute instances by their ids and UUID, which is new for every created
/// instance unless the World's GPU reuses MIG UUIDs: then a handle to a
/// destroyed instance names the one created again in its place, as nvml.h
/// allows ("Handles may be reused and their properties can change").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Gpu {
        uuid: String,
    },
    Mig {
        gpu: String,
        gi: u32,
        ci: u32,
        uuid: String,
    },
    Gi {
        gpu: String,
        gi: u32,
        profile_id: u32,
        start: u32,
    },
    Ci {
        gpu: String,
        gi: u32,
        ci: u32,
        uuid: String,
    },
}

impl Target {
    /// Whether `world` still has what this target names. A GPU always counts
    /// as there: a lost GPU keeps its handle, which answers GPU_IS_LOST
    /// (nvml.h documents that return for calls on a GPU that fell off the
    /// bus; unverified: that the driver never reuses such a GPU's handle).
    fn exists_in(&self, world: &World) -> bool {
        let gpu_of = |uuid: &str| world.gpus.iter().find(|g| g.uuid == uuid);
        match self {
            Target::Gpu { .. } => true,
            Target::Mig { gpu, gi, ci, uuid } | Target::Ci { gpu, gi, ci, uuid } => {
                gpu_of(gpu).is_some_and(|g| find_ci(g, *gi, *ci, uuid).is_ok())
            }
            Target::Gi {
                gpu,
                gi,
                profile_id,
                start,
            } => gpu_of(gpu).is_some_and(|g| find_gi(g, *gi, *profile_id, *start).is_some()),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Target::Gpu { .. } => Kind::Gpu,
            Target::Mig { .. } => Kind::Mig,
            Target::Gi { .. } => Kind::Gi,
            Target::Ci { .. } => Kind::Ci,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gpu = 1,
    Mig = 2,
    Gi = 3,
    Ci = 4,
}

/// The registry of handed-out targets.
///
/// A slot whose target the World no longer has is given to the next new
/// target, so the registry stays as large as the most targets that lived at
/// once, however often instances are destroyed and created. nvml.h allows
/// it ("Handles may be reused and their properties can change"). Until then
/// the old handle resolves to nothing (INVALID_ARGUMENT); unverified: what
/// the driver answers for a destroyed instance's handle, and whether it
/// gives the freed handle to the next instance created, as this does.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    targets: Vec<Target>,
}

impl Handles {
    /// The handle of `target`, the same one every time while it exists in `world`.
    pub fn handle(&mut self, target: Target, world: &World) -> usize {
        let kind = target.kind() as usize;
        let slot = match self.targets.iter().position(|t| *t == target) {
            Some(slot) => slot,
            None => match self.targets.iter().position(|t| !t.exists_in(world)) {
                Some(gone) => {
                    self.targets[gone] = target;
                    gone
                }
                None => {
                    self.targets.push(target);
                    self.targets.len() - 1
                }
            },
        };
        ((slot + 1) << 4) | kind
    }

    /// How many slots the registry holds.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.targets.len()
    }

    /// The target of `handle` if it is a handle of one of `kinds`.
    pub fn target(&self, handle: usize, kinds: &[Kind]) -> Result<&Target, nvmlReturn_t> {
        let kind = handle & 0xf;
        let slot = (handle >> 4).checked_sub(1).ok_or(INVALID_ARGUMENT)?;
        let target = self.targets.get(slot).ok_or(INVALID_ARGUMENT)?;
        if kinds.iter().any(|k| *k as usize == kind) && target.kind() as usize == kind {
            Ok(target)
        } else {
            Err(INVALID_ARGUMENT)
        }
    }
}

/// A device handle resolved against the World.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dev<'w> {
    Gpu(&'w Gpu),
    Mig {
        gpu: &'w Gpu,
        gi: &'w GpuInstance,
        ci: &'w ComputeInstance,
    },
}

impl<'w> Dev<'w> {
    pub fn gpu(self) -> &'w Gpu {
        match self {
            Dev::Gpu(gpu) | Dev::Mig { gpu, .. } => gpu,
        }
    }
}

/// The GPU with `uuid`, unless the World marks it lost.
pub(crate) fn gpu_by_uuid<'w>(world: &'w World, uuid: &str) -> Result<&'w Gpu, nvmlReturn_t> {
    let gpu = world
        .gpus
        .iter()
        .find(|g| g.uuid == uuid)
        .ok_or(INVALID_ARGUMENT)?;
    check_not_lost(world, gpu)?;
    Ok(gpu)
}

pub(crate) fn check_not_lost(world: &World, gpu: &Gpu) -> Result<(), nvmlReturn_t> {
    if world.faults.lost_gpus.contains(&gpu.index) {
        Err(GPU_IS_LOST)
    } else {
        Ok(())
    }
}

/// The GPU instance `gi` of `gpu` if it still has that profile and placement.
fn find_gi(gpu: &Gpu, gi: u32, profile_id: u32, start: u32) -> Option<&GpuInstance> {
    gpu.gpu_instances
        .iter()
        .find(|g| g.id == gi && g.profile_id == profile_id && g.placement.start == start)
}

/// The GPU instance `gi` and compute instance `ci` of `gpu` if the compute
/// instance still has `uuid`.
pub(crate) fn find_ci<'w>(
    gpu: &'w Gpu,
    gi: u32,
    ci: u32,
    uuid: &str,
) -> Result<(&'w GpuInstance, &'w ComputeInstance), nvmlReturn_t> {
    let g = gpu
        .gpu_instances
        .iter()
        .find(|g| g.id == gi)
        .ok_or(INVALID_ARGUMENT)?;
    let c = g
        .compute_instances
        .iter()
        .find(|c| c.id == ci && c.uuid == uuid)
        .ok_or(INVALID_ARGUMENT)?;
    Ok((g, c))
}

/// Resolves a device handle (a GPU or a MIG device).
pub(crate) fn device<'w>(
    handles: &Handles,
    world: &'w World,
    handle: usize,
) -> Result<Dev<'w>, nvmlReturn_t> {
    match handles.target(handle, &[Kind::Gpu, Kind::Mig])? {
        Target::Gpu { uuid } => Ok(Dev::Gpu(gpu_by_uuid(world, uuid)?)),
        Target::Mig { gpu, gi, ci, uuid } => {
            let gpu = gpu_by_uuid(world, gpu)?;
            let (gi, ci) = find_ci(gpu, *gi, *ci, uuid)?;
            Ok(Dev::Mig { gpu, gi, ci })
        }
        _ => Err(INVALID_ARGUMENT),
    }
}

/// Resolves a GPU-instance handle.
pub(crate) fn gpu_instance<'w>(
    handles: &Handles,
    world: &'w World,
    handle: usize,
) -> Result<(&'w Gpu, &'w GpuInstance), nvmlReturn_t> {
    match handles.target(handle, &[Kind::Gi])? {
        Target::Gi {
            gpu,
            gi,
            profile_id,
            start,
        } => {
            let gpu = gpu_by_uuid(world, gpu)?;
            let g = find_gi(gpu, *gi, *profile_id, *start).ok_or(INVALID_ARGUMENT)?;
            Ok((gpu, g))
        }
        _ => Err(INVALID_ARGUMENT),
    }
}

/// Resolves a compute-instance handle.
pub(crate) fn compute_instance<'w>(
    handles: &Handles,
    world: &'w World,
    handle: usize,
) -> Result<(&'w Gpu, &'w GpuInstance, &'w ComputeInstance), nvmlReturn_t> {
    match handles.target(handle, &[Kind::Ci])? {
        Target::Ci { gpu, gi, ci, uuid } => {
            let gpu = gpu_by_uuid(world, gpu)?;
            let (g, c) = find_ci(gpu, *gi, *ci, uuid)?;
            Ok((gpu, g, c))
        }
        _ => Err(INVALID_ARGUMENT),
    }
}

pub(crate) fn gpu_target(gpu: &Gpu) -> Target {
    Target::Gpu {
        uuid: gpu.uuid.clone(),
    }
}

pub(crate) fn mig_target(gpu: &Gpu, gi: &GpuInstance, ci: &ComputeInstance) -> Target {
    Target::Mig {
        gpu: gpu.uuid.clone(),
        gi: gi.id,
        ci: ci.id,
        uuid: ci.uuid.clone(),
    }
}

pub(crate) fn gi_target(gpu: &Gpu, gi: &GpuInstance) -> Target {
    Target::Gi {
        gpu: gpu.uuid.clone(),
        gi: gi.id,
        profile_id: gi.profile_id,
        start: gi.placement.start,
    }
}

pub(crate) fn ci_target(gpu: &Gpu, gi: &GpuInstance, ci: &ComputeInstance) -> Target {
    Target::Ci {
        gpu: gpu.uuid.clone(),
        gi: gi.id,
        ci: ci.id,
        uuid: ci.uuid.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_stable_nonnull_and_typed() {
        let world = World::new("node", mig_model::Product::H100_80GB, 0);
        let mut h = Handles::default();
        let a = h.handle(Target::Gpu { uuid: "GPU-a".into() }, &world);
        let b = h.handle(Target::Gpu { uuid: "GPU-b".into() }, &world);
        let gi = h.handle(
            Target::Gi {
                gpu: "GPU-a".into(),
                gi: 1,
                profile_id: 9,
                start: 0,
            },
            &world,
        );
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(h.handle(Target::Gpu { uuid: "GPU-a".into() }, &world), a);
        assert!(matches!(h.target(a, &[Kind::Gpu]), Ok(Target::Gpu { uuid }) if uuid == "GPU-a"));
        assert_eq!(h.target(gi, &[Kind::Gpu, Kind::Mig]), Err(INVALID_ARGUMENT));
        assert_eq!(h.target(0, &[Kind::Gpu]), Err(INVALID_ARGUMENT));
        assert_eq!(h.target(0xdead_0001, &[Kind::Gpu]), Err(INVALID_ARGUMENT));
        assert_eq!(
            h.target(a & !0xf | Kind::Mig as usize, &[Kind::Mig]),
            Err(INVALID_ARGUMENT)
        );
    }

    /// Every handle a poll takes: the GPU, each GPU instance, compute
    /// instance and MIG device.
    fn handle_everything(h: &mut Handles, world: &World) -> Vec<usize> {
        let mut taken = Vec::new();
        for gpu in &world.gpus {
            taken.push(h.handle(gpu_target(gpu), world));
            for gi in &gpu.gpu_instances {
                taken.push(h.handle(gi_target(gpu, gi), world));
                for ci in &gi.compute_instances {
                    taken.push(h.handle(ci_target(gpu, gi, ci), world));
                    taken.push(h.handle(mig_target(gpu, gi, ci), world));
                }
            }
        }
        taken
    }

    #[test]
    fn the_registry_stays_as_large_as_what_lived_at_once_through_reconfigurations() {
        let mut world = World::new("node", mig_model::Product::H100_80GB, 1);
        world.gpus[0].set_mig_mode(true);
        let mut h = Handles::default();
        let mut most = 0;
        for round in 0..50 {
            // Destroyed and created again: new MIG UUIDs every time.
            let gpu = &mut world.gpus[0];
            gpu.gpu_instances.clear();
            for profile in [9, 14, 19, 19] {
                let gi = gpu.create_gpu_instance(profile, None).unwrap();
                gpu.create_compute_instance(gi, None).unwrap();
            }
            let taken = handle_everything(&mut h, &world);
            most = most.max(taken.len());
            // Those of the same World are distinct, and the same when asked again.
            let distinct: std::collections::BTreeSet<_> = taken.iter().collect();
            assert_eq!(distinct.len(), taken.len(), "round {round}");
            assert_eq!(handle_everything(&mut h, &world), taken, "round {round}");
        }
        // One GPU, four GPU instances, four compute instances, four MIG
        // devices live at once; the old ones' slots are taken by the new.
        assert_eq!(most, 13);
        assert!(
            h.slots() <= 2 * most,
            "{} slots after 50 layouts of {most}",
            h.slots()
        );
    }

    #[test]
    fn a_handle_to_a_destroyed_instance_resolves_to_nothing() {
        let mut world = World::new("node", mig_model::Product::H100_80GB, 1);
        world.gpus[0].set_mig_mode(true);
        let gi = world.gpus[0].create_gpu_instance(19, None).unwrap();
        world.gpus[0].create_compute_instance(gi, None).unwrap();
        let mut h = Handles::default();
        let old = handle_everything(&mut h, &world);
        world.gpus[0].destroy_compute_instance(gi, 0).unwrap();
        assert_eq!(compute_instance(&h, &world, old[2]).err(), Some(INVALID_ARGUMENT));
        assert_eq!(device(&h, &world, old[3]).err(), Some(INVALID_ARGUMENT));
    }
}
