//! The simulator source: reads a `mig-model` World, either a built-in
//! scenario or a file that `mig-sim` mutates while the exporter runs.

use std::path::PathBuf;

use mig_model::{Gpu, World};

use super::{GeometrySource, NodeReading};
use crate::model::{
    Activity, ComputeInstanceSnapshot, DeviceHealth, EccErrorCounts, GpuInstanceSnapshot, GpuSnapshot,
    ProfileCapacity, RemappedRowCounts,
};

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

    fn simulated(&self) -> bool {
        true
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
        nvml_version: Some(mig_model::driver::nvml_version(&world.driver_version)),
        gpus: world
            .gpus
            .iter()
            .map(|gpu| gpu_snapshot(gpu, &world.driver_version))
            .collect(),
    }
}

/// What NVML reports of the whole GPU, from the World's telemetry.
fn device_health(gpu: &Gpu) -> DeviceHealth {
    let t = &gpu.telemetry;
    let mut xid_errors: Vec<(u64, u64)> = Vec::new();
    for &xid in &t.xid_events {
        match xid_errors.iter_mut().find(|(code, _)| *code == xid) {
            Some((_, n)) => *n += 1,
            None => xid_errors.push((xid, 1)),
        }
    }
    xid_errors.sort();
    let kib = |v: u32| f64::from(v) * 1024.0;
    DeviceHealth {
        persistence_mode: Some(gpu.persistence_mode),
        ecc_mode_current: Some(gpu.ecc_enabled),
        ecc_mode_pending: Some(gpu.ecc_enabled),
        ecc_errors: Some(EccErrorCounts {
            volatile_corrected: t.ecc_errors.volatile_corrected,
            volatile_uncorrected: t.ecc_errors.volatile_uncorrected,
            aggregate_corrected: t.ecc_errors.aggregate_corrected,
            aggregate_uncorrected: t.ecc_errors.aggregate_uncorrected,
        }),
        remapped_rows: Some(RemappedRowCounts {
            correctable: t.remapped_rows.correctable,
            uncorrectable: t.remapped_rows.uncorrectable,
            pending: t.remapped_rows.pending,
            failure: t.remapped_rows.failure,
        }),
        power_watts: Some(t.power_watts),
        power_limit_watts: Some(t.power_limit_watts),
        temperature_celsius: Some(f64::from(t.temperature_celsius)),
        sm_clock_hz: Some(f64::from(t.sm_clock_mhz) * 1e6),
        utilization_ratio: (!gpu.mig.current).then(|| f64::from(t.utilization_percent) / 100.0),
        memory_used_bytes: Some(if gpu.mig.current {
            gpu.gpu_instances
                .iter()
                .map(|gi| gi.load.memory_used_mib)
                .sum::<u64>()
                * MIB
        } else {
            t.memory_used_mib * MIB
        }),
        energy_joules: Some(t.energy_millijoules as f64 / 1000.0),
        pcie_tx_bytes_per_second: Some(kib(t.pcie_tx_kibps)),
        pcie_rx_bytes_per_second: Some(kib(t.pcie_rx_kibps)),
        xid_errors,
        // The World's `telemetry.xid_events` is the simulated GPU's XID
        // stream, always read (fake-nvml delivers the same through events).
        xid_counted: true,
        // The World lists XIDs in the order raised; the NVML source keeps the
        // last one nvmlEventSetWait_v2 delivers. unverified: that NVML
        // delivers a GPU's events in the order raised (nvml.h does not say).
        last_xid: t.xid_events.last().copied(),
        ..DeviceHealth::default()
    }
}

fn gpu_snapshot(gpu: &Gpu, driver_version: &str) -> GpuSnapshot {
    let spec = gpu.spec();
    let placer = gpu.placer();
    let occupancy = placer.occupancy();
    let profiles = spec
        .profiles_offered(driver_version)
        .map(|p| ProfileCapacity {
            id: p.id,
            name: p.name.to_string(),
            compute_slices: p.compute_slices,
            memory_slices: p.memory_slices,
            memory_bytes: p.memory_mib * MIB,
            sm_count: p.sm_count,
            max_instances: p.max_instances,
            remaining_instances: placer.remaining_capacity(p),
            placement_starts: p.placement_starts.to_vec(),
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
                // Memory use is read through a MIG device, and a GI without a compute
                // instance has none: NVML cannot tell, so neither does the simulator.
                memory_used_bytes: (!gi.compute_instances.is_empty())
                    .then_some(gi.load.memory_used_mib * MIB),
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
                        activity: Activity {
                            sm_active_ratio: Some(ci.load.sm_active),
                            sm_occupancy_ratio: Some(ci.load.sm_occupancy),
                            tensor_active_ratio: Some(ci.load.tensor_active),
                            ..Activity::default()
                        },
                    })
                    .collect(),
                memory_free_bytes: None,
                activity: Activity {
                    dram_active_ratio: Some(gi.load.dram_active),
                    ..Activity::default()
                },
            })
        })
        .collect();
    GpuSnapshot {
        index: gpu.index,
        uuid: gpu.uuid.clone(),
        name: spec.name.to_string(),
        pci_bus_id: gpu.pci_bus_id.clone(),
        // unverified: the World keeps no minor number; a node's driver
        // usually numbers /dev/nvidiaN in the same PCI order as the index.
        minor_number: Some(gpu.index),
        pci_device_id: spec.pci_device_id,
        memory_total_bytes: Some(spec.memory_mib * MIB),
        mig_current: gpu.mig.current,
        mig_pending: gpu.mig.pending,
        compute_slices_capacity: spec.compute_slices,
        compute_slices_used: occupancy.compute_slices,
        memory_slices_capacity: spec.memory_slots,
        memory_slices_used: occupancy.memory_slots_used(),
        profiles,
        gpu_instances,
        health: device_health(gpu),
    }
}
