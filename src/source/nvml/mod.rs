//! The NVML source: MIG geometry and device health from `libnvidia-ml.so.1`,
//! loaded at run time through nvml-wrapper (raw calls in [`raw`]).
//!
//! The library is opened lazily and again after any failure, so a node whose
//! driver loads after the exporter, or whose library is missing at start,
//! recovers without a restart. The open library is shared ([`SharedNvml`])
//! with the sources that read through it too (GPM).

pub(crate) mod raw;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor,
};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{NVML_COMPUTE_INSTANCE_PROFILE_COUNT, NVML_GPU_INSTANCE_PROFILE_COUNT};

use super::{GeometrySource, NodeReading};
use crate::model::{
    Activity, ComputeInstanceSnapshot, DeviceHealth, EccErrorCounts, GpuInstanceSnapshot, GpuSnapshot,
    ProfileCapacity, RemappedRowCounts,
};

const MIB: u64 = 1024 * 1024;

/// How many times a GPU's geometry is re-read when it changes while being read.
const GEOMETRY_ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct NvmlOptions {
    /// Where to load the library from; the system's `libnvidia-ml.so.1` when `None`.
    pub library: Option<PathBuf>,
    /// Cadence of the expensive reads (total energy ≈ 4 ms, PCIe ≈ 21 ms per call).
    pub slow_interval: Duration,
    /// Read PCIe throughput (on the slow cadence).
    pub pcie_throughput: bool,
}

pub struct NvmlSource {
    options: NvmlOptions,
    session: Option<Session>,
    shared: SharedNvml,
}

/// The library the NVML source has open now, for other sources that read
/// through the same session (GPM) instead of initialising NVML again. Empty
/// while the NVML source has none open; a new `Arc` after it reopened (a
/// reader holding the old one keeps it alive until it lets go, so whatever it
/// allocated from that library is freed before the library shuts down).
#[derive(Debug, Clone, Default)]
pub struct SharedNvml(Arc<Mutex<Option<Arc<Nvml>>>>);

impl SharedNvml {
    /// The library open now, if any.
    pub fn get(&self) -> Option<Arc<Nvml>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, nvml: Option<Arc<Nvml>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = nvml;
    }
}

/// An initialised library and what is kept between polls.
struct Session {
    // Declared before `nvml` so the event set is freed before the library shuts down.
    xid: Option<raw::XidEvents>,
    nvml: Arc<Nvml>,
    /// XID counts per GPU UUID since the exporter started.
    xid_counts: BTreeMap<String, BTreeMap<u64, u64>>,
    slow: SlowReadings,
    /// Each GPU's profile table (profile info and placements, about 90 calls
    /// per GPU), by UUID: fixed while the driver is loaded, so read once per session.
    profile_tables: BTreeMap<String, Arc<Vec<ProfileRow>>>,
}

/// Expensive readings per GPU UUID, refreshed on the slow cadence.
#[derive(Default)]
struct SlowReadings {
    read_at: Option<Instant>,
    per_gpu: BTreeMap<String, SlowValues>,
}

#[derive(Default, Clone, Copy)]
struct SlowValues {
    energy_joules: Option<f64>,
    pcie_tx_bytes_per_second: Option<f64>,
    pcie_rx_bytes_per_second: Option<f64>,
}

impl NvmlSource {
    pub fn new(options: NvmlOptions) -> Self {
        NvmlSource {
            options,
            session: None,
            shared: SharedNvml::default(),
        }
    }

    /// The library this source has open, shared with other readers.
    pub fn shared(&self) -> SharedNvml {
        self.shared.clone()
    }

    fn open(&self) -> anyhow::Result<Session> {
        let mut builder = Nvml::builder();
        if let Some(path) = &self.options.library {
            builder.lib_path(path.as_os_str());
        }
        let nvml = builder.init().map_err(|e| match &e {
            NvmlError::LibloadingError(_) => anyhow!(
                "cannot load {}: {e} (is the NVIDIA driver installed? --nvml.library loads another file)",
                self.options
                    .library
                    .as_ref()
                    .map_or("libnvidia-ml.so.1".into(), |p| p.display().to_string())
            ),
            _ => anyhow!("nvmlInit: {e}"),
        })?;
        let xid = match raw::XidEvents::create(&nvml) {
            Ok(set) => {
                for index in 0..nvml.device_count().unwrap_or(0) {
                    if let Ok(device) = nvml.device_by_index(index) {
                        // SAFETY: the handle is used only while `nvml` lives.
                        let handle = unsafe { device.handle() };
                        if let Err(e) = set.register(&nvml, handle) {
                            tracing::debug!(gpu = index, error = %e, "XID events not available");
                        }
                    }
                }
                Some(set)
            }
            Err(e) => {
                tracing::info!(error = %e, "NVML events not available; XID errors are not counted");
                None
            }
        };
        Ok(Session {
            xid,
            nvml: Arc::new(nvml),
            xid_counts: BTreeMap::new(),
            slow: SlowReadings::default(),
            profile_tables: BTreeMap::new(),
        })
    }
}

impl GeometrySource for NvmlSource {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn poll(&mut self) -> anyhow::Result<NodeReading> {
        if self.session.is_none() {
            let session = self.open()?;
            self.shared.set(Some(session.nvml.clone()));
            self.session = Some(session);
        }
        let Some(session) = self.session.as_mut() else {
            unreachable!("opened above")
        };
        let result = session.read(&self.options);
        if result.is_err() {
            // Start afresh next time: the driver may have been reloaded or the GPU reset.
            self.session = None;
            self.shared.set(None);
        }
        result
    }
}

impl Session {
    fn read(&mut self, options: &NvmlOptions) -> anyhow::Result<NodeReading> {
        self.drain_xid_events();
        let tables = &mut self.profile_tables;
        let nvml = &self.nvml;
        let slow_due = self
            .slow
            .read_at
            .is_none_or(|at| at.elapsed() >= options.slow_interval);
        let count = nvml.device_count().context("nvmlDeviceGetCount")?;
        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            let device = nvml
                .device_by_index(index)
                .with_context(|| format!("GPU {index}: nvmlDeviceGetHandleByIndex"))?;
            let mut gpu = read_gpu(nvml, &device, index, tables).with_context(|| format!("GPU {index}"))?;
            if slow_due {
                let values = read_slow(&device, options.pcie_throughput);
                self.slow.per_gpu.insert(gpu.uuid.clone(), values);
            }
            let slow = self.slow.per_gpu.get(&gpu.uuid).copied().unwrap_or_default();
            gpu.health.energy_joules = slow.energy_joules;
            gpu.health.pcie_tx_bytes_per_second = slow.pcie_tx_bytes_per_second;
            gpu.health.pcie_rx_bytes_per_second = slow.pcie_rx_bytes_per_second;
            gpu.health.xid_errors = self
                .xid_counts
                .get(&gpu.uuid)
                .map(|m| m.iter().map(|(&k, &v)| (k, v)).collect())
                .unwrap_or_default();
            gpus.push(gpu);
        }
        if slow_due {
            self.slow.read_at = Some(Instant::now());
        }
        Ok(NodeReading {
            hostname: hostname(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string()),
            driver_version: nvml.sys_driver_version().ok(),
            nvml_version: nvml.sys_nvml_version().ok(),
            gpus,
        })
    }

    /// Counts the XID events waiting now. A failure here (a lost GPU makes the
    /// wait fail too) is left to the per-GPU reads, which say which GPU it is.
    fn drain_xid_events(&mut self) {
        let Some(set) = &self.xid else { return };
        let events = match set.drain(&self.nvml) {
            Ok(events) => events,
            Err(e) => {
                tracing::debug!(error = %e, "nvmlEventSetWait failed");
                return;
            }
        };
        for (handle, xid) in events {
            // SAFETY: the handle came from NVML for this library instance.
            let device = unsafe { Device::new(handle, &self.nvml) };
            let uuid = device.uuid().unwrap_or_else(|_| "unknown".to_string());
            tracing::warn!(gpu_uuid = %uuid, xid, "XID error");
            *self.xid_counts.entry(uuid).or_default().entry(xid).or_default() += 1;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `Ok(None)` for what the GPU does not support; other errors propagate.
fn optional<T>(result: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(NvmlError::NotSupported | NvmlError::FunctionNotFound | NvmlError::FailedToLoadSymbol(_)) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn read_gpu(
    nvml: &Nvml,
    device: &Device,
    index: u32,
    tables: &mut BTreeMap<String, Arc<Vec<ProfileRow>>>,
) -> anyhow::Result<GpuSnapshot> {
    // SAFETY: the handle is used only while `nvml` lives, within this poll.
    let handle = unsafe { device.handle() };
    let uuid = device.uuid().context("nvmlDeviceGetUUID")?;
    let name = device.name().context("nvmlDeviceGetName")?;
    let pci = device.pci_info().context("nvmlDeviceGetPciInfo")?;
    let memory = device.memory_info().context("nvmlDeviceGetMemoryInfo")?;
    let (mig_current, mig_pending) = match optional(device.mig_mode()).context("nvmlDeviceGetMigMode")? {
        Some(mode) => (mode.current != 0, mode.pending != 0),
        None => (false, false),
    };

    let table = match tables.get(&uuid) {
        Some(table) => table.clone(),
        None => {
            let table = Arc::new(profile_table(nvml, handle).context("GPU instance profiles")?);
            tables.insert(uuid.clone(), table.clone());
            table
        }
    };
    let memory_slots = table.iter().map(|p| p.memory_slots).max().unwrap_or(0);
    let geometry = if mig_current {
        consistent_geometry(nvml, device, &table)?
    } else {
        Vec::new()
    };
    let mut compute_slices_used = 0;
    let mut slot_mask = 0u64;
    for gi in &geometry {
        compute_slices_used += gi.compute_slices;
        slot_mask |= ((1u64 << gi.placement_size) - 1) << gi.placement_start;
    }
    let profiles = table
        .iter()
        .map(|p| {
            let remaining = raw::remaining_capacity(nvml, handle, p.id)
                .with_context(|| format!("nvmlDeviceGetGpuInstanceRemainingCapacity({})", p.id))?;
            Ok(ProfileCapacity {
                id: p.id,
                name: p.name.clone(),
                compute_slices: p.compute_slices,
                memory_slices: p.memory_slots,
                memory_bytes: p.memory_mib * MIB,
                sm_count: p.sm_count,
                max_instances: p.max_instances,
                remaining_instances: remaining,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    Ok(GpuSnapshot {
        index,
        uuid,
        name,
        pci_bus_id: pci.bus_id,
        memory_total_bytes: memory.total,
        mig_current,
        mig_pending,
        compute_slices_capacity: table.iter().map(|p| p.compute_slices).max().unwrap_or(0),
        compute_slices_used,
        memory_slices_capacity: memory_slots,
        memory_slices_used: slot_mask.count_ones(),
        profiles,
        gpu_instances: geometry,
        health: read_health(nvml, device, mig_current, memory.used)?,
    })
}

/// One GPU-instance profile as NVML describes it.
struct ProfileRow {
    id: u32,
    name: String,
    compute_slices: u32,
    memory_slots: u32,
    memory_mib: u64,
    sm_count: u32,
    max_instances: u32,
    /// The compute-instance profiles a GI of this profile offers, as
    /// `(id, name, instance count)`: fixed like the rest of the row, but
    /// readable only through an existing GI, so filled at the first one seen.
    ci_profiles: OnceLock<Vec<(u32, String, u32)>>,
}

fn profile_table(
    nvml: &Nvml,
    handle: nvml_wrapper_sys::bindings::nvmlDevice_t,
) -> anyhow::Result<Vec<ProfileRow>> {
    let mut rows = Vec::new();
    for index in 0..NVML_GPU_INSTANCE_PROFILE_COUNT {
        let Some(info) = optional(raw::gi_profile_info(nvml, handle, index))
            .with_context(|| format!("nvmlDeviceGetGpuInstanceProfileInfoV({index})"))?
        else {
            continue;
        };
        let placements = raw::possible_placements(nvml, handle, info.id)
            .with_context(|| format!("nvmlDeviceGetGpuInstancePossiblePlacements({})", info.id))?;
        // A placement's size is the profile's memory slots; the whole-GPU
        // profile's placement spans all of them.
        let memory_slots = placements.first().map_or(0, |&(_, size)| size);
        rows.push(ProfileRow {
            id: info.id,
            name: info.name.strip_prefix("MIG ").unwrap_or(&info.name).to_string(),
            compute_slices: info.slice_count,
            memory_slots,
            memory_mib: info.memory_size_mb,
            sm_count: info.multiprocessor_count,
            max_instances: info.instance_count,
            ci_profiles: OnceLock::new(),
        });
    }
    // `nvidia-smi mig -lgip` order: smallest first, `+me` after its plain profile.
    rows.sort_by_key(|r| (r.compute_slices, r.memory_slots, r.id == 0));
    Ok(rows)
}

/// The GPU's instances, read until two reads agree, so a reconfiguration
/// while reading yields the old or the new layout, never a mix.
fn consistent_geometry(
    nvml: &Nvml,
    device: &Device,
    table: &[ProfileRow],
) -> anyhow::Result<Vec<GpuInstanceSnapshot>> {
    let mut last_error = None;
    for _ in 0..GEOMETRY_ATTEMPTS {
        let before = match gi_list(nvml, device, table) {
            Ok(list) => list,
            Err(e) if is_gpu_gone(&e) => return Err(explain(e)).context("GPU instances"),
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        match read_instances(nvml, device, table, &before) {
            Ok(geometry) => {
                let after = gi_list(nvml, device, table).context("GPU instances")?;
                if after == before && geometry_is_complete(&geometry) {
                    return Ok(geometry);
                }
                tracing::debug!("MIG geometry changed while being read; reading again");
            }
            Err(e) if is_gpu_gone(&e) => return Err(explain(e)).context("compute instances"),
            // An instance vanished between listing and reading it: read again.
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => Err(e).context("MIG geometry kept changing while being read"),
        None => Err(anyhow!("MIG geometry kept changing while being read")),
    }
}

/// Says what to do about the one failure an operator can fix on the spot.
fn explain(e: NvmlError) -> anyhow::Error {
    match e {
        NvmlError::NoPermission => anyhow!(
            "{e}: listing MIG instances needs read access to the MIG monitor capability \
             (/proc/driver/nvidia/capabilities/mig/monitor names its /dev/nvidia-caps device)"
        ),
        e => e.into(),
    }
}

fn is_gpu_gone(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::GpuLost | NvmlError::DriverNotLoaded | NvmlError::Uninitialized | NvmlError::NoPermission
    )
}

/// Every CI must have its MIG device; a missing one means the layout moved.
fn geometry_is_complete(geometry: &[GpuInstanceSnapshot]) -> bool {
    geometry
        .iter()
        .flat_map(|gi| &gi.compute_instances)
        .all(|ci| !ci.mig_uuid.is_empty())
}

fn gi_list(nvml: &Nvml, device: &Device, table: &[ProfileRow]) -> Result<Vec<raw::GiInfo>, NvmlError> {
    // SAFETY: the handle is used only while `nvml` lives, within this poll.
    let handle = unsafe { device.handle() };
    let mut list = Vec::new();
    for profile in table {
        for (_, info) in raw::gpu_instances(nvml, handle, profile.id, profile.max_instances)? {
            list.push(info);
        }
    }
    list.sort_by_key(|gi| gi.id);
    Ok(list)
}

fn read_instances(
    nvml: &Nvml,
    device: &Device,
    table: &[ProfileRow],
    listed: &[raw::GiInfo],
) -> Result<Vec<GpuInstanceSnapshot>, NvmlError> {
    // SAFETY: the handle is used only while `nvml` lives, within this poll.
    let handle = unsafe { device.handle() };
    // MIG devices (one per compute instance): UUID and memory by (GI, CI).
    let mut mig_devices = BTreeMap::new();
    let max = device.mig_device_count()?;
    for index in 0..max {
        let mig = match device.mig_device_by_index(index) {
            Ok(mig) => mig,
            Err(NvmlError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: as above.
        let ids = raw::mig_device_ids(nvml, unsafe { mig.handle() })?;
        mig_devices.insert(ids, (mig.uuid()?, mig.memory_info()?));
    }

    let mut out = Vec::with_capacity(listed.len());
    for profile in table {
        for (gi_handle, info) in raw::gpu_instances(nvml, handle, profile.id, profile.max_instances)? {
            let ci_profiles = match profile.ci_profiles.get() {
                Some(known) => known,
                None => {
                    let mut read = Vec::new();
                    for index in 0..NVML_COMPUTE_INSTANCE_PROFILE_COUNT {
                        if let Some(p) = optional(raw::ci_profile_info(nvml, gi_handle, index))? {
                            read.push((p.id, p.name, p.instance_count));
                        }
                    }
                    profile.ci_profiles.get_or_init(|| read)
                }
            };
            let mut cis = Vec::new();
            for &(id, _, count) in ci_profiles {
                cis.extend(raw::compute_instances(nvml, gi_handle, id, count)?);
            }
            let ci_profiles: BTreeMap<u32, &String> =
                ci_profiles.iter().map(|(id, name, _)| (*id, name)).collect();
            cis.sort_by_key(|c| c.id);
            let memory_used = cis
                .iter()
                .find_map(|ci| mig_devices.get(&(info.id, ci.id)))
                .map(|(_, memory)| memory.used);
            out.push(GpuInstanceSnapshot {
                id: info.id,
                profile_id: info.profile_id,
                profile: profile.name.clone(),
                placement_start: info.placement.0,
                placement_size: info.placement.1,
                compute_slices: profile.compute_slices,
                memory_total_bytes: profile.memory_mib * MIB,
                memory_used_bytes: memory_used,
                compute_instances: cis
                    .iter()
                    .map(|ci| {
                        let name = ci_profiles.get(&ci.profile_id).map_or("", |n| n.as_str());
                        ComputeInstanceSnapshot {
                            id: ci.id,
                            profile_id: ci.profile_id,
                            profile: name.strip_prefix("MIG ").unwrap_or(name).to_string(),
                            placement_start: ci.placement.0,
                            placement_size: ci.placement.1,
                            mig_uuid: mig_devices
                                .get(&(info.id, ci.id))
                                .map(|(uuid, _)| uuid.clone())
                                .unwrap_or_default(),
                            activity: Activity::default(),
                        }
                    })
                    .collect(),
                memory_free_bytes: None,
                activity: Activity::default(),
            });
        }
    }
    out.sort_by_key(|gi| gi.id);
    if out
        .iter()
        .map(|gi| (gi.id, gi.profile_id))
        .ne(listed.iter().map(|gi| (gi.id, gi.profile_id)))
    {
        return Err(NvmlError::NotFound);
    }
    Ok(out)
}

fn read_health(
    nvml: &Nvml,
    device: &Device,
    mig_enabled: bool,
    memory_used: u64,
) -> anyhow::Result<DeviceHealth> {
    // SAFETY: the handle is used only while `nvml` lives, within this poll.
    let handle = unsafe { device.handle() };
    let ecc = optional(device.is_ecc_enabled()).context("nvmlDeviceGetEccMode")?;
    let ecc_errors = if ecc.as_ref().is_some_and(|e| e.currently_enabled) {
        let count = |kind, counter| optional(device.total_ecc_errors(kind, counter));
        match (
            count(MemoryError::Corrected, EccCounter::Volatile).context("nvmlDeviceGetTotalEccErrors")?,
            count(MemoryError::Uncorrected, EccCounter::Volatile).context("nvmlDeviceGetTotalEccErrors")?,
            count(MemoryError::Corrected, EccCounter::Aggregate).context("nvmlDeviceGetTotalEccErrors")?,
            count(MemoryError::Uncorrected, EccCounter::Aggregate).context("nvmlDeviceGetTotalEccErrors")?,
        ) {
            (Some(vc), Some(vu), Some(ac), Some(au)) => Some(EccErrorCounts {
                volatile_corrected: vc,
                volatile_uncorrected: vu,
                aggregate_corrected: ac,
                aggregate_uncorrected: au,
            }),
            _ => None,
        }
    } else {
        None
    };
    let remapped = optional(raw::remapped_rows(nvml, handle)).context("nvmlDeviceGetRemappedRows")?;
    Ok(DeviceHealth {
        persistence_mode: optional(device.is_in_persistent_mode()).context("nvmlDeviceGetPersistenceMode")?,
        ecc_mode_current: ecc.as_ref().map(|e| e.currently_enabled),
        ecc_mode_pending: ecc.as_ref().map(|e| e.pending_enabled),
        ecc_errors,
        remapped_rows: remapped.map(
            |(correctable, uncorrectable, pending, failure)| RemappedRowCounts {
                correctable,
                uncorrectable,
                pending,
                failure,
            },
        ),
        power_watts: optional(device.power_usage())
            .context("nvmlDeviceGetPowerUsage")?
            .map(|mw| f64::from(mw) / 1000.0),
        power_limit_watts: optional(device.enforced_power_limit())
            .context("nvmlDeviceGetEnforcedPowerLimit")?
            .map(|mw| f64::from(mw) / 1000.0),
        temperature_celsius: optional(device.temperature(TemperatureSensor::Gpu))
            .context("nvmlDeviceGetTemperature")?
            .map(f64::from),
        sm_clock_hz: optional(device.clock_info(Clock::SM))
            .context("nvmlDeviceGetClockInfo")?
            .map(|mhz| f64::from(mhz) * 1e6),
        // NVML has no whole-GPU utilization under MIG: report none, not zero.
        utilization_ratio: if mig_enabled {
            None
        } else {
            optional(device.utilization_rates())
                .context("nvmlDeviceGetUtilizationRates")?
                .map(|u| f64::from(u.gpu) / 100.0)
        },
        memory_used_bytes: Some(memory_used),
        energy_joules: None,
        pcie_tx_bytes_per_second: None,
        pcie_rx_bytes_per_second: None,
        xid_errors: Vec::new(),
        ..DeviceHealth::default()
    })
}

/// The expensive readings; a failure leaves that value out until the next slow poll.
fn read_slow(device: &Device, pcie: bool) -> SlowValues {
    let pcie_rate = |counter| {
        pcie.then(|| device.pcie_throughput(counter).ok())
            .flatten()
            .map(|kib| f64::from(kib) * 1024.0)
    };
    SlowValues {
        energy_joules: device
            .total_energy_consumption()
            .ok()
            .map(|mj| mj as f64 / 1000.0),
        pcie_tx_bytes_per_second: pcie_rate(PcieUtilCounter::Send),
        pcie_rx_bytes_per_second: pcie_rate(PcieUtilCounter::Receive),
    }
}
