//! A simulated node: GPUs, their MIG mode, GPU and compute instances and load.
//!
//! Every operation follows what the NVIDIA driver does, and an operation that
//! is refused leaves the World exactly as it was.

use serde::{Deserialize, Serialize};

use crate::placement::{gpu_instance_id, Placement, Placer, Refusal};
use crate::product::{Product, ProductSpec, UnknownProfile};
use crate::profile::{compute_instance_profile_slices, CiProfile, GiProfile};

/// Version of the World file format.
pub const WORLD_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    pub format: u32,
    pub hostname: String,
    /// `/proc/sys/kernel/random/boot_id` of the simulated node.
    pub boot_id: String,
    pub driver_version: String,
    pub gpus: Vec<Gpu>,
    /// Failures the test doubles inject; empty on a healthy node.
    #[serde(default, skip_serializing_if = "Faults::is_empty")]
    pub faults: Faults,
}

/// Fault switches for the test doubles (`fake-nvml`, `fake-dcgm`). The model
/// itself ignores them; they say how the driver should misbehave.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// NVML init fails with NVML_ERROR_DRIVER_NOT_LOADED.
    #[serde(default)]
    pub driver_not_loaded: bool,
    /// GPU indexes whose every call fails with NVML_ERROR_GPU_IS_LOST.
    #[serde(default)]
    pub lost_gpus: Vec<u32>,
    /// NVML function name → the `nvmlReturn_t` it returns instead of working.
    #[serde(default)]
    pub failing_calls: std::collections::BTreeMap<String, u32>,
    /// NVML function name → microseconds it takes (e.g. the real H100's
    /// 163 µs for `nvmlDeviceGetMigMode`); `"*"` applies to every call.
    #[serde(default)]
    pub call_latency_us: std::collections::BTreeMap<String, u64>,
    /// fake-dcgm: the host engine is down. Connecting fails and every call on
    /// an existing connection returns DCGM_ST_CONNECTION_NOT_VALID; those
    /// connections stay dead after it comes back, as after a real restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dcgm_hostengine_down: bool,
    /// fake-dcgm: DCGM field ids answered as not supported on every entity
    /// (blank DCGM_*_NOT_SUPPORTED value, status DCGM_ST_NOT_SUPPORTED).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dcgm_unsupported_fields: Vec<u16>,
    /// fake-dcgm: the host engine stopped sampling. The latest values stay
    /// those of the moment the fault was first seen, with that timestamp.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dcgm_stale_data: bool,
    /// fake-nvml: nanoseconds added to the GPM sample clock, as a GPU timer
    /// that jumps (negative: backwards). Counters keep advancing in real
    /// time, so the pair of samples that spans a change of it gives a
    /// garbage rate, as the hardware would.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpm_clock_offset_ns: i64,
    /// fake-nvml: the caller lacks the privileges NVML asks for the aggregate
    /// memory of a GPU in MIG mode, so `nvmlDeviceGetMemoryInfo` (and `_v2`)
    /// on a MIG-enabled GPU answers NVML_ERROR_NO_PERMISSION (nvml.h, the
    /// note on `nvmlDeviceGetMemoryInfo`). MIG device handles and GPUs with
    /// MIG disabled still answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unprivileged: bool,
    /// fake-nvml, a test hook: a change of the World between two given NVML
    /// calls of one client thread. See [`WorldSwap`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_swap: Option<Box<WorldSwap>>,
}

/// A test hook of fake-nvml, not a behaviour of NVIDIA's driver: it makes a
/// reconfiguration land at an exact point of a client's sequence of calls
/// (e.g. between two `nvmlGpuInstanceGetComputeInstances` of one poll),
/// which racing a writer against the client only makes likely. Once the
/// NVML function `call` has answered `after` times while this hook was in
/// the World (counted from the first call that saw it), fake-nvml replaces
/// the World file with the World file `then`, before it answers any other
/// call; the call that reached the count answers from the World before.
/// `then` normally carries no hook, so it fires once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSwap {
    pub call: String,
    pub after: u32,
    pub then: std::path::PathBuf,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Faults {
    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }
}

/// MIG mode as NVML reports it: the mode in force and the one after the next reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigMode {
    pub current: bool,
    pub pending: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub index: u32,
    pub product: Product,
    pub uuid: String,
    pub pci_bus_id: String,
    pub mig: MigMode,
    #[serde(default = "yes")]
    pub persistence_mode: bool,
    #[serde(default = "yes")]
    pub ecc_enabled: bool,
    /// Processes holding the GPU open; they block an Ampere MIG-mode reset.
    #[serde(default)]
    pub clients: u32,
    /// Counter that makes every new MIG device UUID unique under
    /// [`MigUuids::NewEachCreation`].
    #[serde(default)]
    pub uuid_serial: u64,
    /// Whether a compute instance created again gets a new MIG UUID.
    #[serde(default, skip_serializing_if = "MigUuids::is_default")]
    pub mig_uuids: MigUuids,
    #[serde(default)]
    pub gpu_instances: Vec<GpuInstance>,
    #[serde(default)]
    pub telemetry: Telemetry,
}

fn yes() -> bool {
    true
}

/// How the driver names a new compute instance's MIG device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigUuids {
    /// A new UUID for every creation, as R470 and newer drivers mostly do.
    #[default]
    NewEachCreation,
    /// A compute instance created again in the same place gets the UUID the
    /// one before it had: users' published `nvidia-smi -L` output (RTX PRO
    /// 6000; A100 80GB PCIe, R515) shows a destroyed and recreated instance
    /// with its old MIG UUID. unverified: what the driver keys the UUID on;
    /// assumed here the GPU instance's placement (start and size) and the
    /// compute instance's id, not the GPU instance's id nor either profile.
    ReusedPerPlacement,
}

impl MigUuids {
    pub fn is_default(&self) -> bool {
        *self == MigUuids::default()
    }
}

/// Whole-GPU readings NVML gives besides geometry. Defaults are what the
/// real H100 80GB HBM3 in `shared/fixtures` read at idle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    pub power_watts: f64,
    pub power_limit_watts: f64,
    pub temperature_celsius: u32,
    pub sm_clock_mhz: u32,
    /// Total energy since the driver loaded (NVML reports millijoules).
    pub energy_millijoules: u64,
    /// Whole-GPU utilization; NVML reports it only while MIG is disabled.
    pub utilization_percent: u32,
    /// Framebuffer used by processes on the whole GPU while MIG is disabled.
    pub memory_used_mib: u64,
    pub pcie_tx_kibps: u32,
    pub pcie_rx_kibps: u32,
    pub ecc_errors: EccErrors,
    pub remapped_rows: RemappedRows,
    /// XID error codes the GPU raised, oldest first; NVML delivers each once
    /// to every event set registered for critical XID errors.
    pub xid_events: Vec<u64>,
    /// Profiling load of the whole GPU while MIG is disabled; with MIG
    /// enabled the load is its instances'.
    pub compute_load: CiLoad,
    /// Fraction of cycles the GPU's DRAM interface was busy while MIG is disabled.
    pub dram_active: f64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            power_watts: 137.0,
            power_limit_watts: 700.0,
            temperature_celsius: 54,
            sm_clock_mhz: 1980,
            energy_millijoules: 0,
            utilization_percent: 0,
            memory_used_mib: 0,
            pcie_tx_kibps: 0,
            pcie_rx_kibps: 0,
            ecc_errors: EccErrors::default(),
            remapped_rows: RemappedRows::default(),
            xid_events: Vec::new(),
            compute_load: CiLoad::default(),
            dram_active: 0.0,
        }
    }
}

/// ECC error counts: volatile since the driver loaded, aggregate for the GPU's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EccErrors {
    pub volatile_corrected: u64,
    pub volatile_uncorrected: u64,
    pub aggregate_corrected: u64,
    pub aggregate_uncorrected: u64,
}

/// Row remapping state (`nvmlDeviceGetRemappedRows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemappedRows {
    pub correctable: u32,
    pub uncorrectable: u32,
    pub pending: bool,
    pub failure: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuInstance {
    pub id: u32,
    pub profile_id: u32,
    pub placement: Placement,
    #[serde(default)]
    pub load: GiLoad,
    #[serde(default)]
    pub compute_instances: Vec<ComputeInstance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeInstance {
    pub id: u32,
    pub profile_id: u32,
    /// SM slices inside the GPU instance.
    pub placement: Placement,
    /// The MIG device UUID (`MIG-<uuid>`), new for every created instance.
    pub uuid: String,
    #[serde(default)]
    pub load: CiLoad,
}

/// Load on a GPU instance: memory is a GI-level resource.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiLoad {
    /// Fraction of cycles the GI's DRAM interface was busy (DCGM DRAM active).
    #[serde(default)]
    pub dram_active: f64,
    #[serde(default)]
    pub memory_used_mib: u64,
}

/// Load on a compute instance: SMs belong to the CI. Each is a ratio 0–1 as
/// DCGM reads it for the CI; the same fields describe a whole GPU's load
/// while MIG is disabled ([`Telemetry::compute_load`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiLoad {
    #[serde(default)]
    pub sm_active: f64,
    #[serde(default)]
    pub sm_occupancy: f64,
    #[serde(default)]
    pub tensor_active: f64,
    /// Fraction of time the graphics/compute engine was busy (DCGM graphics engine active).
    #[serde(default)]
    pub gr_engine_active: f64,
    #[serde(default)]
    pub fp64_active: f64,
    #[serde(default)]
    pub fp32_active: f64,
    #[serde(default)]
    pub fp16_active: f64,
}

/// What a MIG-mode change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChange {
    /// The mode is in force now.
    Applied,
    /// Already in that mode.
    Unchanged,
    /// Ampere only: the reset was refused because clients hold the GPU, so the
    /// new mode is pending until the next reset or reboot.
    PendingReset,
}

/// Why the driver refused an operation. Each maps to the NVML return code the
/// real driver gives, so the fakes can report it faithfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigError {
    #[error("no GPU with index {0}")]
    NoSuchGpu(u32),
    #[error("MIG mode is not enabled on GPU {0}")]
    MigDisabled(u32),
    #[error(transparent)]
    UnknownProfile(#[from] UnknownProfile),
    #[error("GPU instance {gi} ({profile}) has no compute instance profile {id}")]
    UnknownCiProfile { gi: u32, profile: String, id: u32 },
    #[error("Insufficient Resources")]
    InsufficientResources,
    #[error("placement {placement} is not valid for profile {profile}")]
    InvalidPlacement { profile: String, placement: Placement },
    #[error("GPU instance {0} not found")]
    NoSuchGpuInstance(u32),
    #[error("compute instance {ci} not found in GPU instance {gi}")]
    NoSuchComputeInstance { gi: u32, ci: u32 },
    /// `-dgi` while compute instances exist.
    #[error("In use by another client")]
    InUse,
}

impl MigError {
    /// The `nvmlReturn_t` the real driver gives for this refusal.
    pub fn nvml_return(&self) -> u32 {
        match self {
            MigError::NoSuchGpu(_) | MigError::InvalidPlacement { .. } | MigError::UnknownProfile(_) => 2,
            MigError::UnknownCiProfile { .. } => 2,
            MigError::MigDisabled(_) => 3,
            MigError::NoSuchGpuInstance(_) | MigError::NoSuchComputeInstance { .. } => 6,
            MigError::InsufficientResources => 23,
            MigError::InUse => 19,
        }
    }
}

impl World {
    /// A node of `count` identical GPUs with MIG disabled, as after a fresh install.
    pub fn new(hostname: &str, product: Product, count: u32) -> World {
        World {
            format: WORLD_FORMAT,
            hostname: hostname.to_string(),
            boot_id: uuid_from(&["boot", hostname], 4),
            driver_version: "580.159.04".to_string(),
            gpus: (0..count)
                .map(|index| Gpu::new(hostname, product, index))
                .collect(),
            faults: Faults::default(),
        }
    }

    pub fn gpu(&self, index: u32) -> Result<&Gpu, MigError> {
        self.gpus
            .iter()
            .find(|g| g.index == index)
            .ok_or(MigError::NoSuchGpu(index))
    }

    pub fn gpu_mut(&mut self, index: u32) -> Result<&mut Gpu, MigError> {
        self.gpus
            .iter_mut()
            .find(|g| g.index == index)
            .ok_or(MigError::NoSuchGpu(index))
    }

    /// A reboot: a new boot id, clients gone, every GPU instance gone. Ampere
    /// keeps MIG mode (and applies a pending change, as any reset does); Hopper
    /// and newer come back with MIG disabled.
    pub fn reboot(&mut self) {
        self.boot_id = uuid_from(&["boot", &self.boot_id], 4);
        for gpu in &mut self.gpus {
            gpu.clients = 0;
            gpu.gpu_instances.clear();
            let mode = if gpu.product.spec().architecture.mig_mode_survives_reboot() {
                gpu.mig.pending
            } else {
                false
            };
            gpu.mig = MigMode {
                current: mode,
                pending: mode,
            };
        }
    }
}

impl Gpu {
    pub fn new(hostname: &str, product: Product, index: u32) -> Gpu {
        // Bus numbers of an 8-GPU HGX board, so simulated ids look like real ones.
        const BUSES: [u32; 8] = [0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb];
        let bus = BUSES.get(index as usize).copied().unwrap_or(0xe0 + index);
        Gpu {
            index,
            product,
            uuid: format!("GPU-{}", uuid_from(&["gpu", hostname, &index.to_string()], 4)),
            pci_bus_id: format!("00000000:{bus:02X}:00.0"),
            mig: MigMode {
                current: false,
                pending: false,
            },
            persistence_mode: true,
            ecc_enabled: true,
            clients: 0,
            uuid_serial: 0,
            mig_uuids: MigUuids::default(),
            gpu_instances: Vec::new(),
            telemetry: Telemetry::default(),
        }
    }

    pub fn spec(&self) -> &'static ProductSpec {
        self.product.spec()
    }

    /// The profile of an existing instance. World files are validated on load,
    /// so this only fails for a World built by hand with a bad profile id.
    pub fn gi_profile(&self, gi: &GpuInstance) -> Result<&'static GiProfile, MigError> {
        self.product
            .resolve_profile(&gi.profile_id.to_string())
            .map_err(MigError::from)
    }

    pub fn gpu_instance(&self, id: u32) -> Result<&GpuInstance, MigError> {
        self.gpu_instances
            .iter()
            .find(|g| g.id == id)
            .ok_or(MigError::NoSuchGpuInstance(id))
    }

    pub fn gpu_instance_mut(&mut self, id: u32) -> Result<&mut GpuInstance, MigError> {
        self.gpu_instances
            .iter_mut()
            .find(|g| g.id == id)
            .ok_or(MigError::NoSuchGpuInstance(id))
    }

    /// The placement engine over this GPU's current instances.
    pub fn placer(&self) -> Placer<'static> {
        let existing: Vec<(&'static GiProfile, Placement)> = self
            .gpu_instances
            .iter()
            .filter_map(|gi| self.gi_profile(gi).ok().map(|p| (p, gi.placement)))
            .collect();
        Placer::new(self.spec(), existing)
    }

    /// `nvidia-smi -i N -mig 0|1`.
    pub fn set_mig_mode(&mut self, enabled: bool) -> ModeChange {
        if self.mig.current == enabled && self.mig.pending == enabled {
            return ModeChange::Unchanged;
        }
        self.mig.pending = enabled;
        if self.spec().architecture.mig_toggle_needs_reset() && self.clients > 0 {
            return ModeChange::PendingReset;
        }
        self.mig.current = enabled;
        if !enabled {
            self.gpu_instances.clear();
        }
        ModeChange::Applied
    }

    fn require_mig(&self) -> Result<(), MigError> {
        if self.mig.current {
            Ok(())
        } else {
            Err(MigError::MigDisabled(self.index))
        }
    }

    /// `nvidia-smi mig -cgi PROFILE` (placement chosen by the driver) or
    /// `nvmlDeviceCreateGpuInstanceWithPlacement` (placement given).
    /// Returns the new GPU instance id.
    pub fn create_gpu_instance(&mut self, profile_id: u32, placement: Option<u32>) -> Result<u32, MigError> {
        self.require_mig()?;
        let profile = self
            .product
            .profile_by_id(profile_id)
            .ok_or_else(|| UnknownProfile {
                product: self.product,
                input: profile_id.to_string(),
            })?;
        let placer = self.placer();
        let placement = match placement {
            Some(start) => {
                let p = Placement::new(start, profile.memory_slices);
                match placer.check(profile, p) {
                    Ok(()) => p,
                    Err(Refusal::NotAPlacement) => {
                        return Err(MigError::InvalidPlacement {
                            profile: profile.name.to_string(),
                            placement: p,
                        })
                    }
                    Err(_) => return Err(MigError::InsufficientResources),
                }
            }
            None => placer
                .next_placement(profile)
                .ok_or(MigError::InsufficientResources)?,
        };
        let id = self.free_gpu_instance_id(placement);
        self.gpu_instances.push(GpuInstance {
            id,
            profile_id,
            placement,
            load: GiLoad::default(),
            compute_instances: Vec::new(),
        });
        self.gpu_instances.sort_by_key(|g| g.id);
        Ok(id)
    }

    /// The id the driver numbers a GI at `placement` with, or, when a GI of the
    /// same size already holds that id (real nodes show such layouts), the
    /// lowest free id of the size class.
    fn free_gpu_instance_id(&self, placement: Placement) -> u32 {
        let slots = self.spec().memory_slots;
        let taken = |id: u32| self.gpu_instances.iter().any(|g| g.id == id);
        let preferred = gpu_instance_id(placement, slots);
        let first = gpu_instance_id(Placement::new(0, placement.size), slots);
        std::iter::once(preferred)
            .chain(first..=2 * first)
            .find(|id| !taken(*id))
            .unwrap_or(preferred)
    }

    /// `nvidia-smi mig -dgi -gi ID`: refused while compute instances exist.
    pub fn destroy_gpu_instance(&mut self, gi: u32) -> Result<(), MigError> {
        self.require_mig()?;
        let instance = self.gpu_instance(gi)?;
        if !instance.compute_instances.is_empty() {
            return Err(MigError::InUse);
        }
        self.gpu_instances.retain(|g| g.id != gi);
        Ok(())
    }

    /// The compute-instance profiles GPU instance `gi` offers.
    pub fn ci_profiles(&self, gi: u32) -> Result<Vec<CiProfile>, MigError> {
        let instance = self.gpu_instance(gi)?;
        Ok(self.product.ci_profiles(self.gi_profile(instance)?))
    }

    /// `nvidia-smi mig -cci PROFILE -gi GI`; `None` creates the default CI
    /// spanning the whole GI, as `-cgi ... -C` does. Returns the new CI id.
    pub fn create_compute_instance(&mut self, gi: u32, ci_profile_id: Option<u32>) -> Result<u32, MigError> {
        self.require_mig()?;
        let instance = self.gpu_instance(gi)?;
        let gi_profile = self.gi_profile(instance)?;
        let profiles = self.product.ci_profiles(gi_profile);
        let profile = match ci_profile_id {
            Some(id) => profiles.iter().find(|p| p.id == id),
            None => profiles
                .iter()
                .find(|p| p.compute_slices == gi_profile.compute_slices),
        }
        .ok_or_else(|| MigError::UnknownCiProfile {
            gi,
            profile: gi_profile.name.to_string(),
            id: ci_profile_id.unwrap_or(u32::MAX),
        })?;
        if ci_remaining_capacity(instance, gi_profile, profile) == 0 {
            return Err(MigError::InsufficientResources);
        }
        let used = ci_slot_mask(instance);
        let placement = profile
            .placement_starts
            .iter()
            .map(|&s| Placement::new(s, profile.compute_slices))
            .find(|p| used & p.slot_mask() == 0)
            .ok_or(MigError::InsufficientResources)?;
        let id = (0..)
            .find(|id| !instance.compute_instances.iter().any(|c| c.id == *id))
            .unwrap_or(0);
        let gi_placement = instance.placement;
        let uuid = self.new_mig_uuid(gi_placement, id);
        let profile_id = profile.id;
        let instance = self.gpu_instance_mut(gi)?;
        instance.compute_instances.push(ComputeInstance {
            id,
            profile_id,
            placement,
            uuid,
            load: CiLoad::default(),
        });
        instance.compute_instances.sort_by_key(|c| c.id);
        Ok(id)
    }

    /// The MIG UUID of a compute instance created now with id `ci` in the GPU
    /// instance at `gi_placement`, by this GPU's [`MigUuids`].
    fn new_mig_uuid(&mut self, gi_placement: Placement, ci: u32) -> String {
        let name = match self.mig_uuids {
            MigUuids::NewEachCreation => {
                self.uuid_serial += 1;
                uuid_from(&["mig", &self.uuid, &self.uuid_serial.to_string()], 5)
            }
            MigUuids::ReusedPerPlacement => uuid_from(
                &[
                    "mig-at",
                    &self.uuid,
                    &gi_placement.start.to_string(),
                    &gi_placement.size.to_string(),
                    &ci.to_string(),
                ],
                5,
            ),
        };
        format!("MIG-{name}")
    }

    /// `nvidia-smi mig -dci -ci CI -gi GI`.
    pub fn destroy_compute_instance(&mut self, gi: u32, ci: u32) -> Result<(), MigError> {
        self.require_mig()?;
        let instance = self.gpu_instance_mut(gi)?;
        let before = instance.compute_instances.len();
        instance.compute_instances.retain(|c| c.id != ci);
        if instance.compute_instances.len() == before {
            return Err(MigError::NoSuchComputeInstance { gi, ci });
        }
        Ok(())
    }

    /// SM slices in use by GPU instances and memory slots they occupy.
    pub fn slices_used(&self) -> (u32, u32) {
        let o = self.placer().occupancy();
        (o.compute_slices, o.memory_slots_used())
    }
}

/// SM slices of a GPU instance held by its compute instances, one bit each.
fn ci_slot_mask(gi: &GpuInstance) -> u32 {
    gi.compute_instances
        .iter()
        .fold(0, |mask, c| mask | c.placement.slot_mask())
}

/// How many more compute instances of `profile` GPU instance `gi` can hold,
/// the meaning of `nvmlGpuInstanceGetComputeInstanceRemainingCapacity`.
pub fn ci_remaining_capacity(gi: &GpuInstance, gi_profile: &GiProfile, profile: &CiProfile) -> u32 {
    let used = ci_slot_mask(gi);
    let used_slices: u32 = gi.compute_instances.iter().map(|c| c.placement.size).sum();
    let same = gi
        .compute_instances
        .iter()
        .filter(|c| c.profile_id == profile.id)
        .count() as u32;
    let free_placements = profile
        .placement_starts
        .iter()
        .filter(|&&s| used & Placement::new(s, profile.compute_slices).slot_mask() == 0)
        .count() as u32;
    let by_slices = gi_profile.compute_slices.saturating_sub(used_slices) / profile.compute_slices;
    free_placements
        .min(by_slices)
        .min(profile.max_instances.saturating_sub(same))
}

impl ComputeInstance {
    /// SM slices of this CI, from its profile id.
    pub fn compute_slices(&self) -> u32 {
        compute_instance_profile_slices(self.profile_id).unwrap_or(self.placement.size)
    }
}

/// A deterministic RFC 4122-shaped UUID derived from `parts`, with the given
/// version nibble. Deterministic so that built-in scenarios and golden outputs
/// are stable; a counter among the parts makes each new instance unique.
pub fn uuid_from(parts: &[&str], version: u8) -> String {
    let mut hi: u64 = 0xcbf2_9ce4_8422_2325;
    let mut lo: u64 = 0x8422_2325_cbf2_9ce4;
    for part in parts {
        for &b in part.as_bytes().iter().chain([0u8].iter()) {
            hi = (hi ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            lo = (lo ^ u64::from(b))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(29);
        }
    }
    // FNV alone leaves similar inputs with similar prefixes; a splitmix64
    // finalizer spreads every input bit over the whole id.
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&mix(hi ^ lo.rotate_left(17)).to_be_bytes());
    bytes[8..].copy_from_slice(&mix(lo ^ hi).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | (version << 4);
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100_node() -> World {
        let mut w = World::new("node", Product::H100_80GB, 1);
        assert_eq!(w.gpus[0].set_mig_mode(true), ModeChange::Applied);
        w
    }

    #[test]
    fn cgi_without_c_leaves_a_gi_with_no_ci() {
        let mut w = h100_node();
        let gpu = w.gpu_mut(0).unwrap();
        let gi = gpu.create_gpu_instance(9, None).unwrap();
        assert_eq!(gi, 2, "first 3g.40gb lands at 4:4, GI 2, keeping 0:4 for a 4g");
        assert!(gpu.gpu_instance(gi).unwrap().compute_instances.is_empty());
        let ci = gpu.create_compute_instance(gi, None).unwrap();
        let c = &gpu.gpu_instance(gi).unwrap().compute_instances[0];
        assert_eq!((ci, c.profile_id, c.placement), (0, 2, Placement::new(0, 3)));
        assert!(c.uuid.starts_with("MIG-") && c.uuid.len() == 40, "{}", c.uuid);
    }

    #[test]
    fn dgi_fails_while_cis_exist() {
        let mut w = h100_node();
        let gpu = w.gpu_mut(0).unwrap();
        let gi = gpu.create_gpu_instance(19, None).unwrap();
        gpu.create_compute_instance(gi, None).unwrap();
        let before = gpu.clone();
        assert_eq!(gpu.destroy_gpu_instance(gi), Err(MigError::InUse));
        assert_eq!(*gpu, before);
        gpu.destroy_compute_instance(gi, 0).unwrap();
        gpu.destroy_gpu_instance(gi).unwrap();
        assert!(gpu.gpu_instances.is_empty());
    }

    #[test]
    fn creation_order_follows_the_driver() {
        // NVIDIA's example `-cgi 19,14,5` on an empty GPU: 6:1 (GI 13), 4:2 (GI 5), 0:4 (GI 1).
        let mut w = h100_node();
        let gpu = w.gpu_mut(0).unwrap();
        assert_eq!(gpu.create_gpu_instance(19, None), Ok(13));
        assert_eq!(gpu.create_gpu_instance(14, None), Ok(5));
        assert_eq!(gpu.create_gpu_instance(5, None), Ok(1));
        assert_eq!(
            gpu.create_gpu_instance(19, None),
            Err(MigError::InsufficientResources)
        );
        assert_eq!(gpu.slices_used(), (7, 7));
    }

    #[test]
    fn a_taken_gi_id_falls_back_to_a_free_id_of_its_class() {
        let mut w = h100_node();
        let gpu = w.gpu_mut(0).unwrap();
        gpu.create_gpu_instance(19, Some(2)).unwrap();
        gpu.gpu_instances[0].id = 13; // as seen on a real H100
        assert_eq!(gpu.create_gpu_instance(19, Some(6)), Ok(7));
        assert_eq!(gpu.create_gpu_instance(19, Some(5)), Ok(12));
    }

    #[test]
    fn recreated_instances_get_new_uuids() {
        let mut w = h100_node();
        let gpu = w.gpu_mut(0).unwrap();
        let gi = gpu.create_gpu_instance(0, None).unwrap();
        gpu.create_compute_instance(gi, None).unwrap();
        let first = gpu.gpu_instance(gi).unwrap().compute_instances[0].uuid.clone();
        gpu.destroy_compute_instance(gi, 0).unwrap();
        gpu.create_compute_instance(gi, None).unwrap();
        assert_ne!(gpu.gpu_instance(gi).unwrap().compute_instances[0].uuid, first);
        assert_eq!(gpu.mig_uuids, MigUuids::NewEachCreation, "the default");
    }

    #[test]
    fn reused_uuids_come_back_for_the_same_place_and_ci_id_only() {
        let mut w = h100_node();
        let gpu = w.gpu_mut(0).unwrap();
        gpu.mig_uuids = MigUuids::ReusedPerPlacement;
        let gi = gpu.create_gpu_instance(9, Some(4)).unwrap();
        gpu.create_compute_instance(gi, None).unwrap();
        let first = gpu.gpu_instance(gi).unwrap().compute_instances[0].clone();
        // Recreated in place with another profile: the same UUID.
        gpu.destroy_compute_instance(gi, 0).unwrap();
        gpu.create_compute_instance(gi, Some(0)).unwrap();
        let again = gpu.gpu_instance(gi).unwrap().compute_instances[0].clone();
        assert_eq!((again.id, again.uuid.as_str()), (0, first.uuid.as_str()));
        assert_ne!(again.profile_id, first.profile_id);
        // Another compute instance beside it, and a GI elsewhere: other UUIDs.
        gpu.create_compute_instance(gi, Some(0)).unwrap();
        let second = gpu.gpu_instance(gi).unwrap().compute_instances[1].uuid.clone();
        let other = gpu.create_gpu_instance(9, Some(0)).unwrap();
        gpu.create_compute_instance(other, None).unwrap();
        let elsewhere = gpu.gpu_instance(other).unwrap().compute_instances[0].uuid.clone();
        assert!(second != first.uuid && elsewhere != first.uuid && elsewhere != second);
        assert_eq!(gpu.uuid_serial, 0, "no serial is spent");
        // The switch is kept in the file; the default stays out of it.
        let text = serde_json::to_string(&w).unwrap();
        assert!(text.contains("\"mig_uuids\":\"reused_per_placement\""), "{text}");
        let back: World = serde_json::from_str(&text).unwrap();
        assert_eq!(back, w);
        assert!(!serde_json::to_string(&h100_node()).unwrap().contains("mig_uuids"));
    }

    #[test]
    fn dcgm_fault_switches_are_faults_and_stay_out_of_healthy_files() {
        let mut w = h100_node();
        assert!(w.faults.is_empty());
        let healthy = serde_json::to_string(&w).unwrap();
        assert!(!healthy.contains("dcgm"), "{healthy}");
        for set in [
            (|f: &mut Faults| f.dcgm_hostengine_down = true) as fn(&mut Faults),
            |f| f.dcgm_unsupported_fields = vec![1002],
            |f| f.dcgm_stale_data = true,
        ] {
            let mut faults = Faults::default();
            set(&mut faults);
            assert!(!faults.is_empty(), "{faults:?}");
        }
        w.faults.dcgm_unsupported_fields = vec![1002, 1005];
        let text = serde_json::to_string(&w).unwrap();
        assert!(
            text.contains("\"dcgm_unsupported_fields\":[1002,1005]") && !text.contains("dcgm_stale_data")
        );
        let back: World = serde_json::from_str(&text).unwrap();
        assert_eq!(back.faults, w.faults);
    }

    #[test]
    fn operations_need_mig_mode() {
        let mut w = World::new("node", Product::H100_80GB, 1);
        let gpu = w.gpu_mut(0).unwrap();
        assert_eq!(gpu.create_gpu_instance(19, None), Err(MigError::MigDisabled(0)));
    }

    #[test]
    fn ampere_refuses_the_reset_while_clients_are_attached() {
        let mut w = World::new("node", Product::A100Sxm4_40GB, 1);
        let gpu = w.gpu_mut(0).unwrap();
        gpu.clients = 2;
        assert_eq!(gpu.set_mig_mode(true), ModeChange::PendingReset);
        assert_eq!(
            gpu.mig,
            MigMode {
                current: false,
                pending: true
            }
        );
        w.reboot();
        assert_eq!(
            w.gpus[0].mig,
            MigMode {
                current: true,
                pending: true
            }
        );
    }

    #[test]
    fn reboot_keeps_ampere_mode_and_drops_hopper_mode() {
        let mut w = World::new("node", Product::A100_80GB, 1);
        w.gpus.push(Gpu::new("node", Product::H100_80GB, 1));
        for gpu in &mut w.gpus {
            gpu.set_mig_mode(true);
            let gi = gpu.create_gpu_instance(gpu.spec().profiles[0].id, None).unwrap();
            gpu.create_compute_instance(gi, None).unwrap();
        }
        let boot = w.boot_id.clone();
        w.reboot();
        assert_ne!(w.boot_id, boot);
        assert_eq!(
            w.gpus[0].mig,
            MigMode {
                current: true,
                pending: true
            }
        );
        assert_eq!(
            w.gpus[1].mig,
            MigMode {
                current: false,
                pending: false
            }
        );
        assert!(w.gpus.iter().all(|g| g.gpu_instances.is_empty()));
    }
}
