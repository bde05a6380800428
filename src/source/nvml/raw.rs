//! Every NVML call that nvml-wrapper does not wrap (or wraps wrongly), in one
//! place. Each function checks its symbol, passes only pointers to locals it
//! owns, and turns the return code into an [`NvmlError`].
//!
//! nvml-wrapper 0.13 has no GPU-instance or compute-instance enumeration, no
//! MIG id getters, no remapped rows, and its `possible_placements` returns an
//! empty list (it never sets the vector's length), so those go through here.
//! Its GPM wrapper ties each sample to a `&Nvml` borrow, which a source that
//! keeps samples between polls cannot hold: [`GpmSample`] owns an `Arc` of
//! the library instead, so a sample can never outlive the library it is freed
//! through.

use std::ffi::CStr;
use std::os::raw::c_uint;
use std::ptr;
use std::sync::Arc;

use nvml_wrapper::error::{nvml_try, NvmlError};
use nvml_wrapper::Nvml;
use nvml_wrapper_sys::bindings::{
    nvmlComputeInstanceInfo_t, nvmlComputeInstanceProfileInfo_v2_t, nvmlComputeInstance_t, nvmlDevice_t,
    nvmlEventData_t, nvmlEventSet_t, nvmlGpmMetricsGet_t, nvmlGpmSample_t, nvmlGpmSupport_t,
    nvmlGpuInstanceInfo_t, nvmlGpuInstancePlacement_t, nvmlGpuInstanceProfileInfo_v2_t, nvmlGpuInstance_t,
    nvmlReturn_enum_NVML_ERROR_TIMEOUT, NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
    NVML_GPM_METRICS_GET_VERSION, NVML_GPM_SUPPORT_VERSION,
};

/// `sizeof(struct) | version << 24`, NVML's versioned-struct convention.
const fn struct_version<T>(version: u32) -> u32 {
    std::mem::size_of::<T>() as u32 | (version << 24)
}

fn sym<T: Copy>(symbol: &Result<T, libloading::Error>, name: &'static str) -> Result<T, NvmlError> {
    symbol
        .as_ref()
        .copied()
        .map_err(|_| NvmlError::FailedToLoadSymbol(name.to_string()))
}

fn name_of(raw: &[std::os::raw::c_char]) -> String {
    // NVML NUL-terminates names within the array; a missing NUL yields "".
    let bytes: Vec<u8> = raw.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub struct GiProfileInfo {
    pub id: u32,
    pub name: String,
    pub slice_count: u32,
    pub instance_count: u32,
    pub multiprocessor_count: u32,
    pub memory_size_mb: u64,
}

/// `nvmlDeviceGetGpuInstanceProfileInfoV` for one `NVML_GPU_INSTANCE_PROFILE_*` index.
pub fn gi_profile_info(nvml: &Nvml, device: nvmlDevice_t, index: u32) -> Result<GiProfileInfo, NvmlError> {
    let f = sym(
        &nvml.lib().nvmlDeviceGetGpuInstanceProfileInfoV,
        "nvmlDeviceGetGpuInstanceProfileInfoV",
    )?;
    // SAFETY: zeroed is a valid bit pattern for this plain C struct; NVML writes into it.
    let mut info: nvmlGpuInstanceProfileInfo_v2_t = unsafe { std::mem::zeroed() };
    info.version = struct_version::<nvmlGpuInstanceProfileInfo_v2_t>(2);
    nvml_try(unsafe { f(device, index, &mut info) })?;
    Ok(GiProfileInfo {
        id: info.id,
        name: name_of(&info.name),
        slice_count: info.sliceCount,
        instance_count: info.instanceCount,
        multiprocessor_count: info.multiprocessorCount,
        memory_size_mb: info.memorySizeMB,
    })
}

/// `nvmlDeviceGetGpuInstancePossiblePlacements_v2`: `(start, size)` pairs.
pub fn possible_placements(
    nvml: &Nvml,
    device: nvmlDevice_t,
    profile_id: u32,
) -> Result<Vec<(u32, u32)>, NvmlError> {
    let f = sym(
        &nvml.lib().nvmlDeviceGetGpuInstancePossiblePlacements_v2,
        "nvmlDeviceGetGpuInstancePossiblePlacements_v2",
    )?;
    let mut count: c_uint = 0;
    nvml_try(unsafe { f(device, profile_id, ptr::null_mut(), &mut count) })?;
    let mut placements = vec![nvmlGpuInstancePlacement_t { start: 0, size: 0 }; count as usize];
    nvml_try(unsafe { f(device, profile_id, placements.as_mut_ptr(), &mut count) })?;
    placements.truncate(count as usize);
    Ok(placements.iter().map(|p| (p.start, p.size)).collect())
}

/// `nvmlDeviceGetGpuInstanceRemainingCapacity`.
pub fn remaining_capacity(nvml: &Nvml, device: nvmlDevice_t, profile_id: u32) -> Result<u32, NvmlError> {
    let f = sym(
        &nvml.lib().nvmlDeviceGetGpuInstanceRemainingCapacity,
        "nvmlDeviceGetGpuInstanceRemainingCapacity",
    )?;
    let mut count: c_uint = 0;
    nvml_try(unsafe { f(device, profile_id, &mut count) })?;
    Ok(count)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GiInfo {
    pub id: u32,
    pub profile_id: u32,
    pub placement: (u32, u32),
}

/// The GPU instances of one profile: their handles and what they are.
pub fn gpu_instances(
    nvml: &Nvml,
    device: nvmlDevice_t,
    profile_id: u32,
    max: u32,
) -> Result<Vec<(nvmlGpuInstance_t, GiInfo)>, NvmlError> {
    let list = sym(&nvml.lib().nvmlDeviceGetGpuInstances, "nvmlDeviceGetGpuInstances")?;
    let mut handles: Vec<nvmlGpuInstance_t> = vec![ptr::null_mut(); max.max(1) as usize];
    let mut count: c_uint = 0;
    nvml_try(unsafe { list(device, profile_id, handles.as_mut_ptr(), &mut count) })?;
    handles.truncate((count as usize).min(handles.len()));
    handles
        .into_iter()
        .map(|gi| Ok((gi, gpu_instance_info(nvml, gi)?)))
        .collect()
}

/// `nvmlGpuInstanceGetInfo`: what the GPU instance behind `gi` is now.
pub fn gpu_instance_info(nvml: &Nvml, gi: nvmlGpuInstance_t) -> Result<GiInfo, NvmlError> {
    let info_of = sym(&nvml.lib().nvmlGpuInstanceGetInfo, "nvmlGpuInstanceGetInfo")?;
    // SAFETY: zeroed is valid for this plain C struct.
    let mut info: nvmlGpuInstanceInfo_t = unsafe { std::mem::zeroed() };
    nvml_try(unsafe { info_of(gi, &mut info) })?;
    Ok(GiInfo {
        id: info.id,
        profile_id: info.profileId,
        placement: (info.placement.start, info.placement.size),
    })
}

pub struct CiProfileInfo {
    pub id: u32,
    pub name: String,
    pub instance_count: u32,
}

/// `nvmlGpuInstanceGetComputeInstanceProfileInfoV` for one
/// `NVML_COMPUTE_INSTANCE_PROFILE_*` index, shared-engine profile.
pub fn ci_profile_info(nvml: &Nvml, gi: nvmlGpuInstance_t, index: u32) -> Result<CiProfileInfo, NvmlError> {
    let f = sym(
        &nvml.lib().nvmlGpuInstanceGetComputeInstanceProfileInfoV,
        "nvmlGpuInstanceGetComputeInstanceProfileInfoV",
    )?;
    // SAFETY: zeroed is valid for this plain C struct.
    let mut info: nvmlComputeInstanceProfileInfo_v2_t = unsafe { std::mem::zeroed() };
    info.version = struct_version::<nvmlComputeInstanceProfileInfo_v2_t>(2);
    nvml_try(unsafe { f(gi, index, NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, &mut info) })?;
    Ok(CiProfileInfo {
        id: info.id,
        name: name_of(&info.name),
        instance_count: info.instanceCount,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiInfo {
    pub id: u32,
    pub profile_id: u32,
    pub placement: (u32, u32),
}

/// The compute instances of one profile inside a GPU instance.
pub fn compute_instances(
    nvml: &Nvml,
    gi: nvmlGpuInstance_t,
    profile_id: u32,
    max: u32,
) -> Result<Vec<CiInfo>, NvmlError> {
    let list = sym(
        &nvml.lib().nvmlGpuInstanceGetComputeInstances,
        "nvmlGpuInstanceGetComputeInstances",
    )?;
    let info_of = sym(
        &nvml.lib().nvmlComputeInstanceGetInfo_v2,
        "nvmlComputeInstanceGetInfo_v2",
    )?;
    let mut handles: Vec<nvmlComputeInstance_t> = vec![ptr::null_mut(); max.max(1) as usize];
    let mut count: c_uint = 0;
    nvml_try(unsafe { list(gi, profile_id, handles.as_mut_ptr(), &mut count) })?;
    handles.truncate((count as usize).min(handles.len()));
    handles
        .into_iter()
        .map(|ci| {
            // SAFETY: zeroed is valid for this plain C struct.
            let mut info: nvmlComputeInstanceInfo_t = unsafe { std::mem::zeroed() };
            nvml_try(unsafe { info_of(ci, &mut info) })?;
            Ok(CiInfo {
                id: info.id,
                profile_id: info.profileId,
                placement: (info.placement.start, info.placement.size),
            })
        })
        .collect()
}

/// `(GPU instance id, compute instance id)` of a MIG device handle.
pub fn mig_device_ids(nvml: &Nvml, mig: nvmlDevice_t) -> Result<(u32, u32), NvmlError> {
    let gi_of = sym(
        &nvml.lib().nvmlDeviceGetGpuInstanceId,
        "nvmlDeviceGetGpuInstanceId",
    )?;
    let ci_of = sym(
        &nvml.lib().nvmlDeviceGetComputeInstanceId,
        "nvmlDeviceGetComputeInstanceId",
    )?;
    let (mut gi, mut ci): (c_uint, c_uint) = (0, 0);
    nvml_try(unsafe { gi_of(mig, &mut gi) })?;
    nvml_try(unsafe { ci_of(mig, &mut ci) })?;
    Ok((gi, ci))
}

/// `nvmlDeviceGetRemappedRows`: (correctable, uncorrectable, pending, failed).
pub fn remapped_rows(nvml: &Nvml, device: nvmlDevice_t) -> Result<(u32, u32, bool, bool), NvmlError> {
    let f = sym(&nvml.lib().nvmlDeviceGetRemappedRows, "nvmlDeviceGetRemappedRows")?;
    let (mut corr, mut unc, mut pending, mut failed): (c_uint, c_uint, c_uint, c_uint) = (0, 0, 0, 0);
    nvml_try(unsafe { f(device, &mut corr, &mut unc, &mut pending, &mut failed) })?;
    Ok((corr, unc, pending != 0, failed != 0))
}

/// An NVML event set registered for critical XID errors on every GPU that
/// supports them. Freed on drop through the library it came from, which it
/// keeps alive (as [`GpmSample`] does): the set can never outlive the library,
/// whatever order its owner's fields are dropped in.
pub struct XidEvents {
    set: nvmlEventSet_t,
    nvml: Arc<Nvml>,
}

// SAFETY: NVML is thread-safe; the set is only used by the poller that owns it.
unsafe impl Send for XidEvents {}

impl XidEvents {
    pub fn create(nvml: &Arc<Nvml>) -> Result<XidEvents, NvmlError> {
        let create = sym(&nvml.lib().nvmlEventSetCreate, "nvmlEventSetCreate")?;
        // The free function must exist before anything is created.
        sym(&nvml.lib().nvmlEventSetFree, "nvmlEventSetFree")?;
        let mut set: nvmlEventSet_t = ptr::null_mut();
        nvml_try(unsafe { create(&mut set) })?;
        Ok(XidEvents {
            set,
            nvml: nvml.clone(),
        })
    }

    /// Registers `device` (a GPU of this set's library) for critical XID errors.
    pub fn register(&self, device: nvmlDevice_t) -> Result<(), NvmlError> {
        let f = sym(
            &self.nvml.lib().nvmlDeviceRegisterEvents,
            "nvmlDeviceRegisterEvents",
        )?;
        nvml_try(unsafe {
            f(
                device,
                u64::from(nvml_wrapper_sys::bindings::nvmlEventTypeXidCriticalError),
                self.set,
            )
        })
    }

    /// Every XID event waiting now, as `(device handle, xid)`, without blocking.
    pub fn drain(&self) -> Result<Vec<(nvmlDevice_t, u64)>, NvmlError> {
        let wait = sym(&self.nvml.lib().nvmlEventSetWait_v2, "nvmlEventSetWait_v2")?;
        let mut events = Vec::new();
        // Bounded so a flood of events cannot hold the poller forever.
        for _ in 0..1024 {
            // SAFETY: zeroed is valid for this plain C struct.
            let mut data: nvmlEventData_t = unsafe { std::mem::zeroed() };
            let rc = unsafe { wait(self.set, &mut data, 0) };
            if rc == nvmlReturn_enum_NVML_ERROR_TIMEOUT {
                break;
            }
            nvml_try(rc)?;
            events.push((data.device, data.eventData));
        }
        Ok(events)
    }
}

impl Drop for XidEvents {
    fn drop(&mut self) {
        // Checked in `create`, so it is there.
        if let Ok(free) = sym(&self.nvml.lib().nvmlEventSetFree, "nvmlEventSetFree") {
            // SAFETY: the set came from nvmlEventSetCreate of this library,
            // which `self.nvml` keeps loaded, and is freed once.
            unsafe {
                free(self.set);
            }
        }
    }
}

/// `nvmlGpmQueryDeviceSupport`: whether the GPU has GPU Performance
/// Monitoring (Hopper and newer, where the driver offers it).
pub fn gpm_supported(nvml: &Nvml, device: nvmlDevice_t) -> Result<bool, NvmlError> {
    let f = sym(&nvml.lib().nvmlGpmQueryDeviceSupport, "nvmlGpmQueryDeviceSupport")?;
    let mut support = nvmlGpmSupport_t {
        version: NVML_GPM_SUPPORT_VERSION,
        isSupportedDevice: 0,
    };
    nvml_try(unsafe { f(device, &mut support) })?;
    Ok(support.isSupportedDevice != 0)
}

/// A GPM sample buffer (`nvmlGpmSampleAlloc`), freed (`nvmlGpmSampleFree`)
/// on drop through the library it came from, which it keeps alive.
pub struct GpmSample {
    sample: nvmlGpmSample_t,
    nvml: Arc<Nvml>,
}

// SAFETY: a sample is plain memory of the library, used by one owner at a
// time (the poller); NVML is thread-safe.
unsafe impl Send for GpmSample {}

impl GpmSample {
    pub fn alloc(nvml: &Arc<Nvml>) -> Result<GpmSample, NvmlError> {
        let f = sym(&nvml.lib().nvmlGpmSampleAlloc, "nvmlGpmSampleAlloc")?;
        // The free function must exist before anything is allocated.
        sym(&nvml.lib().nvmlGpmSampleFree, "nvmlGpmSampleFree")?;
        let mut sample: nvmlGpmSample_t = ptr::null_mut();
        nvml_try(unsafe { f(&mut sample) })?;
        if sample.is_null() {
            return Err(NvmlError::Unknown);
        }
        Ok(GpmSample {
            sample,
            nvml: nvml.clone(),
        })
    }

    /// `nvmlGpmSampleGet`: the whole GPU's counters now.
    pub fn read_gpu(&mut self, device: nvmlDevice_t) -> Result<(), NvmlError> {
        let f = sym(&self.nvml.lib().nvmlGpmSampleGet, "nvmlGpmSampleGet")?;
        nvml_try(unsafe { f(device, self.sample) })
    }

    /// `nvmlGpmMigSampleGet`: GPU instance `gi`'s counters now (`device` is the GPU).
    pub fn read_gpu_instance(&mut self, device: nvmlDevice_t, gi: u32) -> Result<(), NvmlError> {
        let f = sym(&self.nvml.lib().nvmlGpmMigSampleGet, "nvmlGpmMigSampleGet")?;
        nvml_try(unsafe { f(device, gi, self.sample) })
    }

    /// Whether both samples come from the same library instance.
    pub fn same_library(&self, other: &GpmSample) -> bool {
        Arc::ptr_eq(&self.nvml, &other.nvml)
    }
}

impl Drop for GpmSample {
    fn drop(&mut self) {
        // Checked in `alloc`, so it is there.
        if let Ok(free) = sym(&self.nvml.lib().nvmlGpmSampleFree, "nvmlGpmSampleFree") {
            // SAFETY: the sample came from nvmlGpmSampleAlloc of this library
            // and is freed once.
            unsafe {
                free(self.sample);
            }
        }
    }
}

/// `nvmlGpmMetricsGet`: each of `metric_ids` between `first` and `second`
/// (taken later), in NVML's units (percent for utilizations). The outer error
/// is the call's; each metric has its own result (`NotSupported` where the
/// GPU has no such metric).
pub fn gpm_metrics<const N: usize>(
    first: &GpmSample,
    second: &GpmSample,
    metric_ids: &[u32; N],
) -> Result<[Result<f64, NvmlError>; N], NvmlError> {
    if !first.same_library(second) {
        return Err(NvmlError::InvalidArg);
    }
    let nvml = &first.nvml;
    let f = sym(&nvml.lib().nvmlGpmMetricsGet, "nvmlGpmMetricsGet")?;
    // On the stack (4 kB): a heap block this size makes glibc consolidate its
    // free lists on every call.
    // SAFETY: zeroed is valid for this plain C struct (null pointers, zero ids).
    let mut request: nvmlGpmMetricsGet_t = unsafe { std::mem::zeroed() };
    if N > request.metrics.len() {
        return Err(NvmlError::InvalidArg);
    }
    request.version = NVML_GPM_METRICS_GET_VERSION;
    request.numMetrics = N as c_uint;
    request.sample1 = first.sample;
    request.sample2 = second.sample;
    for (metric, &id) in request.metrics.iter_mut().zip(metric_ids) {
        metric.metricId = id;
    }
    nvml_try(unsafe { f(&mut request) })?;
    Ok(std::array::from_fn(|i| {
        let metric = &request.metrics[i];
        nvml_try(metric.nvmlReturn).map(|()| metric.value)
    }))
}
