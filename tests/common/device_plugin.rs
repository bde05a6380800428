//! What NVIDIA's k8s-device-plugin has the kubelet advertise for a World,
//! for the fake kubelet to answer `GetAllocatableResources` with. Each rule
//! follows the plugin's own code (NVIDIA/k8s-device-plugin at v0.20, with the
//! go-nvlib v0.12 it vendors), cited where it is used.

use std::collections::BTreeMap;

use mig_exporter::source::kubelet::proto::{AllocatableResourcesResponse, ContainerDevices};
use mig_model::{GiProfile, Product, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigStrategy {
    Single,
    Mixed,
}

/// The parts of the plugin's config that change what it advertises.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub mig_strategy: MigStrategy,
    /// `sharing.timeSlicing` (or `mps`): `(resource, replicas)` per shared resource.
    pub shared: Vec<(String, u32)>,
    pub rename_by_default: bool,
    /// Device ids the plugin has marked unhealthy.
    pub unhealthy: Vec<String>,
}

impl Plugin {
    pub fn new(mig_strategy: MigStrategy) -> Plugin {
        Plugin {
            mig_strategy,
            shared: Vec::new(),
            rename_by_default: false,
            unhealthy: Vec::new(),
        }
    }
}

/// go-nvlib pkg/nvlib/device/mig_profile.go, `NewMigProfile`: a GPU-instance
/// profile's slice count and name suffix come from its
/// `NVML_GPU_INSTANCE_PROFILE_*` constant (nvml.h values), not from NVML's name.
/// `None` for a constant go-nvlib does not know (it fails with "invalid GPU
/// Instance Profile ID").
fn gi_slices_and_suffix(nvml_index: u32) -> Option<(u32, &'static str)> {
    Some(match nvml_index {
        0 | 9 => (1, ""),
        7 => (1, "+me"),
        10 => (1, "+gfx"),
        13 => (1, "-me"),
        15 => (1, "+me.all"),
        1 => (2, ""),
        8 => (2, "+me"),
        11 => (2, "+gfx"),
        14 => (2, "-me"),
        16 => (2, "+me.all"),
        2 => (3, ""),
        3 => (4, ""),
        12 => (4, "+gfx"),
        6 => (6, ""),
        4 => (7, ""),
        5 => (8, ""),
        _ => return None,
    })
}

/// go-nvlib pkg/nvlib/device/mig_profile.go, `getMigMemorySizeGB`: the
/// instance's share of the memory rounded up to eighths, times the GPU's
/// memory in whole GiB rounded up, rounded to the nearest (`math.Round`).
fn memory_gb(total_bytes: u64, mig_mib: u64) -> u64 {
    const MIB: f64 = 1024.0 * 1024.0;
    const GIB: u64 = 1024 * 1024 * 1024;
    let fraction = (mig_mib as f64 * MIB) / total_bytes as f64;
    let fraction = (fraction * 8.0).ceil() / 8.0;
    let total_gb = total_bytes.div_ceil(GIB) as f64;
    (fraction * total_gb).round() as u64
}

/// The profile name go-nvlib gives a MIG device of `gi` whose compute
/// instance has `ci_slices` slices (`MigProfileInfo.String`): `3g.40gb`,
/// `1c.3g.40gb`, `1g.10gb+me`. The memory is the GI profile's
/// `memorySizeMB` over the GPU's `nvmlDeviceGetMemoryInfo` total, as
/// `device.VisitMigProfiles` passes them.
pub fn go_nvlib_profile(product: Product, gi: &GiProfile, ci_slices: u32) -> Result<String, String> {
    let (g, suffix) = gi_slices_and_suffix(gi.nvml_index)
        .ok_or_else(|| format!("invalid GPU Instance Profile ID: {}", gi.nvml_index))?;
    let gb = memory_gb(product.spec().memory_mib * 1024 * 1024, gi.memory_mib);
    Ok(if ci_slices == g {
        format!("{g}g.{gb}gb{suffix}")
    } else {
        format!("{ci_slices}c.{g}g.{gb}gb{suffix}")
    })
}

/// NVIDIA/k8s-device-plugin internal/rm/rm.go, `AddDefaultResourcesToConfig`
/// (mixed): `mig-<profile>` with `+` replaced by `.`, under the `nvidia.com/`
/// prefix `NewResourceName` (api/config/v1/resources.go) adds.
pub fn mixed_resource(profile: &str) -> String {
    format!("nvidia.com/mig-{}", profile.replace('+', "."))
}

/// What `NewResourceName` accepts: at most 63 characters in all
/// (`MaxResourceNameLength`) and a name after `nvidia.com/` that is a DNS
/// subdomain (kubernetes/apimachinery pkg/util/validation, `IsDNS1123Subdomain`: dot-separated labels
/// of lower-case letters, digits and `-`, each starting and ending with a
/// letter or digit).
pub fn is_valid_resource_name(resource: &str) -> bool {
    let Some(name) = resource.strip_prefix("nvidia.com/") else {
        return false;
    };
    resource.len() <= 63
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The devices the kubelet advertises for `world` with this plugin:
/// resource → device ids, or the error the plugin stops with (it then
/// serves nothing, and the kubelet advertises nothing of it).
pub fn advertised(world: &World, plugin: &Plugin) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut resources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut whole = 0;
    let mut mig_kinds = std::collections::BTreeSet::new();
    for gpu in &world.gpus {
        // internal/rm/device_map.go, `buildGPUDeviceMap`: a GPU in MIG mode is
        // left to the MIG map; `BuildDevice` (internal/rm/devices.go) ids
        // every device by its UUID, whatever the `deviceIDStrategy`.
        if !gpu.mig.current {
            resources
                .entry("nvidia.com/gpu".into())
                .or_default()
                .push(gpu.uuid.clone());
            whole += 1;
            continue;
        }
        for gi in &gpu.gpu_instances {
            let profile = gpu.gi_profile(gi).map_err(|e| e.to_string())?;
            for ci in &gi.compute_instances {
                let name = go_nvlib_profile(gpu.product, profile, ci.placement.size)?;
                let resource = match plugin.mig_strategy {
                    // `AddDefaultResourcesToConfig` (single): every MIG device is `gpu`.
                    MigStrategy::Single => "nvidia.com/gpu".to_string(),
                    // `AddDefaultResourcesToConfig` (mixed) makes resources only
                    // for `C == G` profiles, and `buildMigDeviceMap` fails on a
                    // device no resource matches.
                    MigStrategy::Mixed if ci.placement.size == profile.compute_slices => {
                        mixed_resource(&name)
                    }
                    MigStrategy::Mixed => {
                        return Err(format!(
                            "MIG profile '{name}' does not match any resource patterns"
                        ))
                    }
                };
                mig_kinds.insert(name);
                resources.entry(resource).or_default().push(ci.uuid.clone());
            }
        }
    }
    // internal/rm/device_map.go, `buildDeviceMapFromConfigResources` and
    // `assertAllMigDevicesAreValid`: single wants one kind of MIG device and
    // no GPU without MIG beside them. (It compares device attributes; one
    // profile name stands for one set of attributes here.)
    if plugin.mig_strategy == MigStrategy::Single && !mig_kinds.is_empty() {
        if mig_kinds.len() > 1 {
            return Err("more than one MIG device type present on node".into());
        }
        if whole > 0 {
            return Err("all devices on the node must be configured with the same migEnabled value".into());
        }
    }
    // internal/rm/device_map.go, `updateDeviceMapWithReplicas`: every device
    // of a shared resource (api/config/v1/config.go,
    // `DisableResourceNamingInConfig`, forces `devices: all`) becomes
    // `replicas` devices `<id>::<n>` (internal/rm/devices.go,
    // `NewAnnotatedID`), under `<resource>.shared` with `renameByDefault`
    // (api/config/v1/replicas.go).
    for (shared, replicas) in &plugin.shared {
        if let Some(ids) = resources.remove(shared) {
            let name = if plugin.rename_by_default {
                format!("{shared}.shared")
            } else {
                shared.clone()
            };
            let replicated = ids
                .iter()
                .flat_map(|id| (0..*replicas).map(move |n| format!("{id}::{n}")))
                .collect();
            resources.insert(name, replicated);
        }
    }
    // kubernetes pkg/kubelet/cm/devicemanager/manager.go,
    // `GetAllocatableDevices`: only the devices the plugin last reported
    // `Healthy` (`genericDeviceUpdateCallback` sorts them) are allocatable.
    for ids in resources.values_mut() {
        ids.retain(|id| !plugin.unhealthy.contains(id));
    }
    Ok(resources)
}

/// [`advertised`] as the kubelet's `GetAllocatableResources` answer: one
/// entry per device (kubernetes pkg/kubelet/apis/podresources/server_v1.go,
/// `GetAllocatableResources`, through `containerDevicesFromResourceDeviceInstances`,
/// one entry per device and NUMA node; these have no topology); nothing when
/// the plugin stops.
pub fn allocatable(world: &World, plugin: &Plugin) -> AllocatableResourcesResponse {
    let devices = advertised(world, plugin)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(resource, ids)| {
            ids.into_iter().map(move |id| ContainerDevices {
                resource_name: resource.clone(),
                device_ids: vec![id],
                topology: None,
            })
        })
        .collect();
    AllocatableResourcesResponse {
        devices,
        ..Default::default()
    }
}
