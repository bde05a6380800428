//! The NVML source: MIG geometry and device health from `libnvidia-ml.so.1`,
//! loaded at run time through nvml-wrapper (raw calls in [`raw`]).
//!
//! The library is opened lazily and again after any failure, so a node whose
//! driver loads after the exporter, or whose library is missing at start,
//! recovers without a restart. With the GPM source on, this source also takes
//! its samples while it reads each GPU (see [`super::gpm`]).

pub mod monitor;
pub(crate) mod raw;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor,
};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::gpm::{GpmSampling, SharedGpmSampling};
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
    /// Where GPM samples go, when the GPM source is on.
    gpm: Option<SharedGpmSampling>,
    /// Where `/proc/driver/nvidia` and `/dev/nvidia-caps` are looked for when
    /// MIG listing is refused: `/`, or a test's stand-in.
    capabilities_root: PathBuf,
}

/// An initialised library and what is kept between polls.
struct Session {
    /// Holds its own `Arc` of the library, so it is freed through a loaded
    /// library whatever the order of these fields.
    xid: Option<raw::XidEvents>,
    nvml: Arc<Nvml>,
    /// XID counts per GPU UUID since the exporter started.
    xid_counts: BTreeMap<String, BTreeMap<u64, u64>>,
    /// Indexes of the GPUs registered in `xid` for XID events: only their
    /// XIDs are counted.
    xid_gpus: BTreeSet<u32>,
    /// The last XID per GPU UUID, in the order NVML delivered the events.
    last_xid: BTreeMap<String, u64>,
    slow: SlowReadings,
    /// Each GPU's profile table (profile info and placements, about 90 calls
    /// per GPU), by UUID: fixed while the driver is loaded, so read once per session.
    profile_tables: BTreeMap<String, Arc<Vec<ProfileRow>>>,
    /// Each GPU's UUID, name and PCI address, by index: fixed while the library is open.
    identities: BTreeMap<u32, GpuIdentity>,
    /// What each GPU's last poll read that its next poll may reuse, by UUID.
    memos: BTreeMap<String, GeometryMemo>,
    /// Driver and NVML version, and the boot id: fixed while the library is open.
    driver_version: Option<String>,
    nvml_version: Option<String>,
    boot_id: Option<String>,
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

/// Whether NVIDIA's driver answers: the library (the system's
/// `libnvidia-ml.so.1` when `None`) loads, initialises and reports at least
/// one GPU. How many it reports, or why not.
pub fn probe(library: Option<&Path>) -> Result<u32, String> {
    let mut builder = Nvml::builder();
    if let Some(path) = library {
        builder.lib_path(path.as_os_str());
    }
    let name = library.map_or("libnvidia-ml.so.1".into(), |p| p.display().to_string());
    let nvml = builder.init().map_err(|e| match e {
        NvmlError::LibloadingError(e) => format!("cannot load {name}: {e}"),
        e => format!("{name}: nvmlInit: {e}"),
    })?;
    match nvml.device_count() {
        Ok(0) => Err(format!("{name} reports no GPU")),
        Ok(gpus) => Ok(gpus),
        Err(e) => Err(format!("{name}: nvmlDeviceGetCount: {e}")),
    }
}

impl NvmlSource {
    pub fn new(options: NvmlOptions) -> Self {
        NvmlSource {
            options,
            session: None,
            gpm: None,
            capabilities_root: PathBuf::from("/"),
        }
    }

    /// Looks for the driver's capability files under `root` instead of `/`.
    pub fn with_capabilities_root(mut self, root: PathBuf) -> Self {
        self.capabilities_root = root;
        self
    }

    /// A refused MIG listing in a container that asked for the MIG monitor
    /// device and lacks it becomes [`monitor::MonitorDeviceNotInjected`],
    /// which names the cause and the fix.
    fn diagnose(&self, e: anyhow::Error) -> anyhow::Error {
        if e.downcast_ref::<NoMonitorPermission>().is_none() {
            return e;
        }
        let requested = std::env::var(monitor::MONITOR_DEVICES_ENV).ok();
        match monitor::diagnose(requested.as_deref(), &self.capabilities_root) {
            Some(problem) => anyhow::Error::new(problem),
            None => e,
        }
    }

    /// Takes GPM samples into `sampling` on every poll, through this source's
    /// library: called by [`super::gpm::GpmSource::new`].
    pub(crate) fn take_gpm_samples(&mut self, sampling: SharedGpmSampling) {
        self.gpm = Some(sampling);
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
        let nvml = Arc::new(nvml);
        let mut xid_gpus = BTreeSet::new();
        let xid = match raw::XidEvents::create(&nvml) {
            Ok(set) => {
                for index in 0..nvml.device_count().unwrap_or(0) {
                    if let Ok(device) = nvml.device_by_index(index) {
                        // SAFETY: the handle is used only while `nvml` lives.
                        let handle = unsafe { device.handle() };
                        match set.register(handle) {
                            Ok(()) => {
                                xid_gpus.insert(index);
                            }
                            Err(e) => {
                                tracing::debug!(gpu = index, error = %e, "XID events not available")
                            }
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
        let driver_version = nvml.sys_driver_version().ok();
        let nvml_version = nvml.sys_nvml_version().ok();
        Ok(Session {
            xid,
            nvml,
            xid_counts: BTreeMap::new(),
            xid_gpus,
            last_xid: BTreeMap::new(),
            slow: SlowReadings::default(),
            profile_tables: BTreeMap::new(),
            identities: BTreeMap::new(),
            memos: BTreeMap::new(),
            driver_version,
            nvml_version,
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string()),
        })
    }
}

impl GeometrySource for NvmlSource {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn poll(&mut self) -> anyhow::Result<NodeReading> {
        if self.session.is_none() {
            self.session = Some(self.open()?);
        }
        let Some(session) = self.session.as_mut() else {
            unreachable!("opened above")
        };
        let mut gpm = self
            .gpm
            .as_ref()
            .map(|sampling| sampling.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(gpm) = gpm.as_deref_mut() {
            gpm.begin_poll(&session.nvml);
        }
        let result = session.read(&self.options, gpm.as_deref_mut());
        if result.is_err() {
            // Start afresh next time: the driver may have been reloaded or the GPU reset.
            if let Some(gpm) = gpm.as_deref_mut() {
                gpm.end_session();
            }
            self.session = None;
        }
        result.map_err(|e| self.diagnose(e))
    }
}

impl Session {
    fn read(
        &mut self,
        options: &NvmlOptions,
        mut gpm: Option<&mut GpmSampling>,
    ) -> anyhow::Result<NodeReading> {
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
            let identity = match self.identities.entry(index) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(slot) => {
                    slot.insert(GpuIdentity::read(&device).with_context(|| format!("GPU {index}"))?)
                }
            };
            let memo = self.memos.entry(identity.uuid.clone()).or_default();
            let mut gpu = read_gpu(nvml, &device, index, identity, tables, memo, gpm.as_deref_mut())
                .with_context(|| format!("GPU {index}"))?;
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
            gpu.health.xid_counted = self.xid.is_some() && self.xid_gpus.contains(&index);
            gpu.health.last_xid = self.last_xid.get(&gpu.uuid).copied();
            gpus.push(gpu);
        }
        if slow_due {
            self.slow.read_at = Some(Instant::now());
        }
        Ok(NodeReading {
            hostname: hostname(),
            boot_id: self.boot_id.clone(),
            driver_version: self.driver_version.clone(),
            nvml_version: self.nvml_version.clone(),
            gpus,
        })
    }

    /// Counts the XID events waiting now. A failure here (a lost GPU makes the
    /// wait fail too) is left to the per-GPU reads, which say which GPU it is.
    fn drain_xid_events(&mut self) {
        let Some(set) = &self.xid else { return };
        let events = match set.drain() {
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
            *self
                .xid_counts
                .entry(uuid.clone())
                .or_default()
                .entry(xid)
                .or_default() += 1;
            self.last_xid.insert(uuid, xid);
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

/// What stays fixed for a GPU index while the library is open.
struct GpuIdentity {
    uuid: String,
    name: String,
    pci_bus_id: String,
    /// Only DRA owners need it: a driver that will not say costs them, not the poll.
    minor_number: Option<u32>,
    pci_device_id: u32,
    /// `nvmlDeviceGetMaxMigDeviceCount`, read at the first poll with MIG on.
    max_mig_devices: Option<u32>,
    /// Whether the lack of permission to read its memory was logged.
    told_no_memory_permission: bool,
}

impl GpuIdentity {
    fn read(device: &Device) -> anyhow::Result<GpuIdentity> {
        let pci = device.pci_info().context("nvmlDeviceGetPciInfo")?;
        Ok(GpuIdentity {
            uuid: device.uuid().context("nvmlDeviceGetUUID")?,
            name: device.name().context("nvmlDeviceGetName")?,
            pci_bus_id: pci.bus_id,
            minor_number: device.minor_number().ok(),
            pci_device_id: pci.pci_device_id,
            max_mig_devices: None,
            told_no_memory_permission: false,
        })
    }
}

/// What the last poll of a GPU read that stays true until its geometry
/// changes, so the next poll need not ask again. Each entry is used only
/// where its key matches a fresh reading.
///
/// Compute instances and the ids of MIG devices are read on every poll: a
/// MIG UUID is no key for them, since a driver may give a compute instance
/// created again in its place the UUID of the one before (users' published
/// `nvidia-smi -L` output, RTX PRO 6000 and A100 80GB PCIe on R515), with
/// another profile or in another GPU instance.
#[derive(Default)]
struct GeometryMemo {
    /// Remaining capacity per profile-table row, for this MIG mode and GI list
    /// (it depends on nothing else).
    remaining: Option<(bool, Vec<raw::GiInfo>, Vec<u32>)>,
}

fn read_gpu(
    nvml: &Nvml,
    device: &Device,
    index: u32,
    identity: &mut GpuIdentity,
    tables: &mut BTreeMap<String, Arc<Vec<ProfileRow>>>,
    memo: &mut GeometryMemo,
    mut gpm: Option<&mut GpmSampling>,
) -> anyhow::Result<GpuSnapshot> {
    // SAFETY: the handle is used only while `nvml` lives, within this poll.
    let handle = unsafe { device.handle() };
    let memory = match device.memory_info() {
        // nvml.h: in MIG mode the whole GPU's memory is told "only if the
        // caller has appropriate privileges"; without them the GPU's other
        // readings are still served.
        Err(NvmlError::NoPermission) => {
            if !identity.told_no_memory_permission {
                identity.told_no_memory_permission = true;
                tracing::warn!(
                    gpu = index,
                    gpu_uuid = %identity.uuid,
                    "nvmlDeviceGetMemoryInfo: no permission (NVML tells the memory of a GPU in MIG mode \
                     only to a privileged caller): no whole-GPU memory series for it"
                );
            }
            None
        }
        other => optional(other).context("nvmlDeviceGetMemoryInfo")?,
    };
    let (mig_current, mig_pending) = match optional(device.mig_mode()).context("nvmlDeviceGetMigMode")? {
        Some(mode) => (mode.current != 0, mode.pending != 0),
        None => (false, false),
    };
    if let Some(gpm) = gpm.as_deref_mut() {
        gpm.sample_gpu(index, &identity.uuid, handle, mig_current);
    }

    let table = match tables.get(&identity.uuid) {
        Some(table) => table.clone(),
        None => {
            let table = Arc::new(profile_table(nvml, handle).context("GPU instance profiles")?);
            tables.insert(identity.uuid.clone(), table.clone());
            table
        }
    };
    let memory_slots = table.iter().map(|p| p.memory_slots).max().unwrap_or(0);
    let (geometry, remaining) = if mig_current {
        let max_mig_devices = match identity.max_mig_devices {
            Some(max) => max,
            None => *identity.max_mig_devices.insert(
                device
                    .mig_device_count()
                    .context("nvmlDeviceGetMaxMigDeviceCount")?,
            ),
        };
        let gpm = gpm.map(|gpm| (gpm, index, identity.uuid.as_str()));
        consistent_geometry(nvml, device, max_mig_devices, &table, memo, gpm)?
    } else {
        let remaining = match &memo.remaining {
            Some((false, _, remaining)) => remaining.clone(),
            _ => {
                let remaining = remaining_capacities(nvml, handle, &table)?;
                memo.remaining = Some((false, Vec::new(), remaining.clone()));
                remaining
            }
        };
        (Vec::new(), remaining)
    };
    let mut compute_slices_used = 0;
    let mut slot_mask = 0u64;
    for gi in &geometry {
        compute_slices_used += gi.compute_slices;
        slot_mask |= ((1u64 << gi.placement_size) - 1) << gi.placement_start;
    }
    let profiles = table
        .iter()
        .zip(remaining)
        .map(|(p, remaining)| ProfileCapacity {
            id: p.id,
            name: p.name.clone(),
            compute_slices: p.compute_slices,
            memory_slices: p.memory_slots,
            memory_bytes: p.memory_mib * MIB,
            sm_count: p.sm_count,
            max_instances: p.max_instances,
            remaining_instances: remaining,
            placement_starts: p.placement_starts.clone(),
        })
        .collect();

    Ok(GpuSnapshot {
        index,
        uuid: identity.uuid.clone(),
        name: identity.name.clone(),
        pci_bus_id: identity.pci_bus_id.clone(),
        minor_number: identity.minor_number,
        pci_device_id: identity.pci_device_id,
        memory_total_bytes: memory.as_ref().map(|m| m.total),
        mig_current,
        mig_pending,
        compute_slices_capacity: table.iter().map(|p| p.compute_slices).max().unwrap_or(0),
        compute_slices_used,
        memory_slices_capacity: memory_slots,
        memory_slices_used: slot_mask.count_ones(),
        profiles,
        gpu_instances: geometry,
        health: read_health(nvml, device, mig_current, memory.map(|m| m.used))?,
    })
}

/// How many more GPU instances of each profile-table row fit now.
fn remaining_capacities(
    nvml: &Nvml,
    handle: nvml_wrapper_sys::bindings::nvmlDevice_t,
    table: &[ProfileRow],
) -> anyhow::Result<Vec<u32>> {
    table
        .iter()
        .map(|p| {
            raw::remaining_capacity(nvml, handle, p.id)
                .with_context(|| format!("nvmlDeviceGetGpuInstanceRemainingCapacity({})", p.id))
        })
        .collect()
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
    /// Memory slots where an instance may start.
    placement_starts: Vec<u32>,
    /// The compute-instance profiles a GI of this profile offers, as
    /// `(id, name, instance count)`: fixed like the rest of the row, but
    /// readable only through an existing GI, so filled at the first one seen.
    ci_profiles: OnceLock<Vec<(u32, String, u32)>>,
}

/// Profile indexes asked at most: far above any `nvml.h` so far (0x12 GPU-
/// instance and 0x9 compute-instance profiles), so only a library that never
/// refuses an index is cut short.
const MAX_PROFILE_INDEXES: u32 = 64;

/// Reads `read(index)` for every profile index from 0 until the driver refuses
/// the index (`NVML_ERROR_INVALID_ARGUMENT`), whatever count our bindings
/// were built with: a newer driver's extra profiles are read too. An index
/// the GPU lacks answers `NOT_SUPPORTED` and is skipped (nvml.h, and the
/// fixture's H100 for indexes 5, 6, 8 and 10–15).
fn every_profile_index<T>(
    mut read: impl FnMut(u32) -> Result<T, NvmlError>,
) -> Result<Vec<(u32, T)>, NvmlError> {
    let mut found = Vec::new();
    for index in 0..MAX_PROFILE_INDEXES {
        match read(index) {
            Ok(info) => found.push((index, info)),
            Err(NvmlError::NotSupported) => {}
            // A library without the call (older than MIG) has no profiles.
            Err(NvmlError::InvalidArg | NvmlError::FunctionNotFound | NvmlError::FailedToLoadSymbol(_)) => {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

fn profile_table(
    nvml: &Nvml,
    handle: nvml_wrapper_sys::bindings::nvmlDevice_t,
) -> anyhow::Result<Vec<ProfileRow>> {
    let mut rows = Vec::new();
    let infos = every_profile_index(|index| raw::gi_profile_info(nvml, handle, index))
        .context("nvmlDeviceGetGpuInstanceProfileInfoV")?;
    for (_, info) in infos {
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
            placement_starts: placements.iter().map(|&(start, _)| start).collect(),
            ci_profiles: OnceLock::new(),
        });
    }
    // `nvidia-smi mig -lgip` order: smallest first, `+me` after its plain profile.
    rows.sort_by_key(|r| (r.compute_slices, r.memory_slots, r.id == 0));
    Ok(rows)
}

/// The GPU's instances (and each profile's remaining capacity), read so that
/// a reconfiguration while reading yields the old or the new layout, never a
/// mix: the GI list is taken, everything else read through it, and the list
/// checked again; a change reads it all again. What `memo` kept from the last
/// poll is used where its key still matches, and `memo` is updated.
fn consistent_geometry(
    nvml: &Nvml,
    device: &Device,
    max_mig_devices: u32,
    table: &[ProfileRow],
    memo: &mut GeometryMemo,
    mut gpm: Option<(&mut GpmSampling, u32, &str)>,
) -> anyhow::Result<(Vec<GpuInstanceSnapshot>, Vec<u32>)> {
    // SAFETY: the handle is used only while `nvml` lives, within this poll.
    let handle = unsafe { device.handle() };
    let mut last_error = None;
    for _ in 0..GEOMETRY_ATTEMPTS {
        let before = match gi_list(nvml, handle, table) {
            Ok(list) => list,
            Err(e) if is_gpu_gone(&e) => return Err(explain(e)).context("GPU instances"),
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let geometry = read_instances(nvml, device, max_mig_devices, &before);
        let geometry = match geometry {
            Ok(Some(geometry)) => geometry,
            Ok(None) => {
                tracing::debug!("MIG devices do not match the compute instances; reading again");
                *memo = GeometryMemo::default();
                continue;
            }
            Err(e) if is_gpu_gone(&e) => return Err(explain(e)).context("compute instances"),
            // An instance vanished between listing and reading it: read again.
            Err(e) => {
                last_error = Some(e);
                *memo = GeometryMemo::default();
                continue;
            }
        };
        // Between the listing and its check below, which proves the samples
        // are of these instances.
        if let Some((gpm, index, uuid)) = gpm.as_mut() {
            gpm.sample_instances(*index, uuid, handle, &geometry);
        }
        let known = match &memo.remaining {
            Some((true, list, remaining)) if list.iter().eq(before.iter().map(|gi| &gi.info)) => {
                Some(remaining.clone())
            }
            _ => None,
        };
        let unchanged = match known {
            // Same list as the last poll: a GI destroyed since it was listed now
            // fails or reads as another instance. One created since has no compute
            // instance here (read_instances rejects MIG devices of unlisted GIs),
            // so leaving it out publishes the layout as it was when listed.
            Some(remaining) => gis_unchanged(nvml, &before)
                .context("nvmlGpuInstanceGetInfo")?
                .then_some(remaining),
            // Capacity read now would count a GI created since, so the whole list is compared.
            None => {
                let remaining = remaining_capacities(nvml, handle, table)?;
                let after = gi_list(nvml, handle, table).context("GPU instances")?;
                after
                    .iter()
                    .map(|gi| gi.info)
                    .eq(before.iter().map(|gi| gi.info))
                    .then(|| {
                        let list = before.iter().map(|gi| gi.info).collect();
                        memo.remaining = Some((true, list, remaining.clone()));
                        remaining
                    })
            }
        };
        if let Some(remaining) = unchanged {
            return Ok((geometry, remaining));
        }
        tracing::debug!("MIG geometry changed while being read; reading again");
        *memo = GeometryMemo::default();
    }
    match last_error {
        Some(e) => Err(e).context("MIG geometry kept changing while being read"),
        None => Err(anyhow!("MIG geometry kept changing while being read")),
    }
}

/// Whether every listed GPU instance is still what the list says.
fn gis_unchanged(nvml: &Nvml, listed: &[ListedGi<'_>]) -> Result<bool, NvmlError> {
    for gi in listed {
        match raw::gpu_instance_info(nvml, gi.handle) {
            Ok(now) if now == gi.info => {}
            Ok(_) | Err(NvmlError::InvalidArg | NvmlError::NotFound) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// NVML refused to list MIG instances: the MIG monitor capability is not readable.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0}: listing MIG instances needs read access to the MIG monitor capability \
     (/proc/driver/nvidia/capabilities/mig/monitor names its /dev/nvidia-caps device)"
)]
struct NoMonitorPermission(NvmlError);

/// Says what to do about the one failure an operator can fix on the spot.
fn explain(e: NvmlError) -> anyhow::Error {
    match e {
        NvmlError::NoPermission => anyhow::Error::new(NoMonitorPermission(e)),
        e => e.into(),
    }
}

fn is_gpu_gone(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::GpuLost | NvmlError::DriverNotLoaded | NvmlError::Uninitialized | NvmlError::NoPermission
    )
}

/// A listed GPU instance: its handle, what it is, and its profile's row.
struct ListedGi<'t> {
    handle: nvml_wrapper_sys::bindings::nvmlGpuInstance_t,
    info: raw::GiInfo,
    profile: &'t ProfileRow,
}

/// The GPU's instances, by id.
fn gi_list<'t>(
    nvml: &Nvml,
    handle: nvml_wrapper_sys::bindings::nvmlDevice_t,
    table: &'t [ProfileRow],
) -> Result<Vec<ListedGi<'t>>, NvmlError> {
    let mut list = Vec::new();
    for profile in table {
        for (gi_handle, info) in raw::gpu_instances(nvml, handle, profile.id, profile.max_instances)? {
            list.push(ListedGi {
                handle: gi_handle,
                info,
                profile,
            });
        }
    }
    list.sort_by_key(|gi| gi.info.id);
    Ok(list)
}

/// The listed GPU instances with their compute instances and MIG devices;
/// `None` when the MIG devices and compute instances do not match (the layout
/// moved while being read).
fn read_instances(
    nvml: &Nvml,
    device: &Device,
    max_mig_devices: u32,
    listed: &[ListedGi<'_>],
) -> Result<Option<Vec<GpuInstanceSnapshot>>, NvmlError> {
    // MIG devices (one per compute instance): UUID and memory by (GI, CI).
    let mut mig_devices = BTreeMap::new();
    for index in 0..max_mig_devices {
        let mig = match device.mig_device_by_index(index) {
            Ok(mig) => mig,
            // The indexes in use may have holes (nvml.h: NOT_FOUND "if no
            // valid MIG device was found at index"): every index is asked.
            Err(NvmlError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let uuid = mig.uuid()?;
        // SAFETY: the handle is used only while `nvml` lives, within this poll.
        let ids = raw::mig_device_ids(nvml, unsafe { mig.handle() })?;
        if mig_devices.insert(ids, (uuid, mig.memory_info()?.used)).is_some() {
            // Two devices of one compute instance: read between two layouts.
            return Ok(None);
        }
    }

    let mut out = Vec::with_capacity(listed.len());
    let mut mig_devices_placed = 0;
    for gi in listed {
        let profile = gi.profile;
        let ci_profiles = match profile.ci_profiles.get() {
            Some(known) => known,
            None => {
                let read = every_profile_index(|index| raw::ci_profile_info(nvml, gi.handle, index))?
                    .into_iter()
                    .map(|(_, p)| (p.id, p.name, p.instance_count))
                    .collect();
                profile.ci_profiles.get_or_init(|| read)
            }
        };
        let mut cis = Vec::new();
        for &(id, _, count) in ci_profiles {
            cis.extend(raw::compute_instances(nvml, gi.handle, id, count)?);
        }
        cis.sort_by_key(|c| c.id);
        let memory_used = cis
            .iter()
            .find_map(|ci| mig_devices.get(&(gi.info.id, ci.id)))
            .map(|&(_, used)| used);
        let mut compute_instances = Vec::with_capacity(cis.len());
        for ci in &cis {
            // Every compute instance has its MIG device; one without means the layout moved.
            let Some((mig_uuid, _)) = mig_devices.get(&(gi.info.id, ci.id)) else {
                return Ok(None);
            };
            mig_devices_placed += 1;
            let name = ci_profiles
                .iter()
                .find(|(id, _, _)| *id == ci.profile_id)
                .map_or("", |(_, name, _)| name.as_str());
            compute_instances.push(ComputeInstanceSnapshot {
                id: ci.id,
                profile_id: ci.profile_id,
                profile: name.strip_prefix("MIG ").unwrap_or(name).to_string(),
                placement_start: ci.placement.0,
                placement_size: ci.placement.1,
                mig_uuid: mig_uuid.clone(),
                activity: Activity::default(),
            });
        }
        out.push(GpuInstanceSnapshot {
            id: gi.info.id,
            profile_id: gi.info.profile_id,
            profile: profile.name.clone(),
            placement_start: gi.info.placement.0,
            placement_size: gi.info.placement.1,
            compute_slices: profile.compute_slices,
            memory_total_bytes: profile.memory_mib * MIB,
            memory_used_bytes: memory_used,
            compute_instances,
            memory_free_bytes: None,
            activity: Activity::default(),
        });
    }
    // A MIG device of no listed compute instance belongs to a layout the list has not seen.
    if mig_devices_placed != mig_devices.len() {
        return Ok(None);
    }
    Ok(Some(out))
}

fn read_health(
    nvml: &Nvml,
    device: &Device,
    mig_enabled: bool,
    memory_used: Option<u64>,
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
        memory_used_bytes: memory_used,
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
