//! The simulator source: reads a `mig-model` World, either a built-in
//! scenario or a file that `mig-sim` mutates while the exporter runs.

use std::path::PathBuf;

use mig_model::{Gpu, World};

use super::{GeometrySource, NodeReading};
use crate::model::{ComputeInstanceSnapshot, GpuInstanceSnapshot, GpuSnapshot, ProfileCapacity};

const MIB: u64 = 1024 * 1024;

pub enum SimSource {
    /// A fixed World held in memory.
    Scenario(World),
    /// A World file re-read on every poll, so changes show on the next one.
    File(PathBuf),
}

impl GeometrySource for SimSource {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn poll(&mut self) -> anyhow::Result<NodeReading> {
        Ok(match self {
            SimSource::Scenario(world) => reading_from_world(world),
            SimSource::File(path) => reading_from_world(&World::load(path)?),
        })
    }
}

pub fn reading_from_world(world: &World) -> NodeReading {
    NodeReading {
        hostname: world.hostname.clone(),
        boot_id: Some(world.boot_id.clone()),
        driver_version: Some(world.driver_version.clone()),
        gpus: world.gpus.iter().map(gpu_snapshot).collect(),
    }
}

fn gpu_snapshot(gpu: &Gpu) -> GpuSnapshot {
    let spec = gpu.spec();
    let placer = gpu.placer();
    let occupancy = placer.occupancy();
    let profiles = spec
        .profiles
        .iter()
        .map(|p| ProfileCapacity {
            id: p.id,
            name: p.name.to_string(),
            compute_slices: p.compute_slices,
            memory_slices: p.memory_slices,
            memory_bytes: p.memory_mib * MIB,
            sm_count: p.sm_count,
            max_instances: p.max_instances,
            remaining_instances: placer.remaining_capacity(p),
        })
        .collect();
    let gpu_instances = gpu
        .gpu_instances
        .iter()
        .filter_map(|gi| {
            // World files are validated when read, so every profile id is known.
            let profile = gpu.gi_profile(gi).ok()?;
            let ci_profiles = gpu.product.ci_profiles(profile);
            Some(GpuInstanceSnapshot {
                id: gi.id,
                profile_id: gi.profile_id,
                profile: profile.name.to_string(),
                placement_start: gi.placement.start,
                placement_size: gi.placement.size,
                compute_slices: profile.compute_slices,
                memory_total_bytes: profile.memory_mib * MIB,
                memory_used_bytes: Some(gi.load.memory_used_mib * MIB),
                dram_active_ratio: Some(gi.load.dram_active),
                compute_instances: gi
                    .compute_instances
                    .iter()
                    .map(|ci| ComputeInstanceSnapshot {
                        id: ci.id,
                        profile_id: ci.profile_id,
                        profile: ci_profiles
                            .iter()
                            .find(|p| p.id == ci.profile_id)
                            .map_or_else(|| profile.name.to_string(), |p| p.name(profile)),
                        placement_start: ci.placement.start,
                        placement_size: ci.placement.size,
                        mig_uuid: ci.uuid.clone(),
                        sm_active_ratio: Some(ci.load.sm_active),
                        sm_occupancy_ratio: Some(ci.load.sm_occupancy),
                        tensor_active_ratio: Some(ci.load.tensor_active),
                    })
                    .collect(),
            })
        })
        .collect();
    GpuSnapshot {
        index: gpu.index,
        uuid: gpu.uuid.clone(),
        name: spec.name.to_string(),
        pci_bus_id: gpu.pci_bus_id.clone(),
        memory_total_bytes: spec.memory_mib * MIB,
        mig_current: gpu.mig.current,
        mig_pending: gpu.mig.pending,
        compute_slices_capacity: spec.compute_slices,
        compute_slices_used: occupancy.compute_slices,
        memory_slices_capacity: spec.memory_slots,
        memory_slices_used: occupancy.memory_slots_used(),
        profiles,
        gpu_instances,
    }
}
