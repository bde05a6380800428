//! Multi-Instance GPU: mode, profiles, placements, GPU and compute instances,
//! MIG device handles.

use std::ffi::c_uint;
use std::mem::size_of;

use mig_model::world::ci_remaining_capacity;
use mig_model::{CiProfile, ComputeInstance, GiProfile, Gpu, GpuInstance, World};
use nvml_wrapper_sys::bindings::*;

use crate::device::{with_device, with_gpu};
use crate::handles::{self, ci_target, gi_target, gpu_target, mig_target, Dev};
use crate::state::{call, Res, State};
use crate::write::{chars, nonnull, out};

const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_SUPPORTED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
const NOT_FOUND: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
const UNKNOWN: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_UNKNOWN;
const VERSION_MISMATCH: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;

const fn struct_version(size: usize, version: c_uint) -> c_uint {
    size as c_uint | (version << 24)
}

/// `nvmlGpuInstanceProfileInfo_v2` = 0x02000098, as pynvml defines it.
pub const GPU_INSTANCE_PROFILE_INFO_V2: c_uint =
    struct_version(size_of::<nvmlGpuInstanceProfileInfo_v2_t>(), 2);
pub const GPU_INSTANCE_PROFILE_INFO_V3: c_uint =
    struct_version(size_of::<nvmlGpuInstanceProfileInfo_v3_t>(), 3);
/// `nvmlComputeInstanceProfileInfo_v2` = 0x02000088, as pynvml defines it.
pub const COMPUTE_INSTANCE_PROFILE_INFO_V2: c_uint =
    struct_version(size_of::<nvmlComputeInstanceProfileInfo_v2_t>(), 2);
pub const COMPUTE_INSTANCE_PROFILE_INFO_V3: c_uint =
    struct_version(size_of::<nvmlComputeInstanceProfileInfo_v3_t>(), 3);

/// The MIG devices of a GPU, one per compute instance, in the order
/// `nvmlDeviceGetMigDeviceHandleByIndex` numbers them: by GPU instance id,
/// then compute instance id. None while MIG is disabled.
pub(crate) fn mig_devices(gpu: &Gpu) -> Vec<(&GpuInstance, &ComputeInstance)> {
    if !gpu.mig.current {
        return Vec::new();
    }
    let mut gis: Vec<&GpuInstance> = gpu.gpu_instances.iter().collect();
    gis.sort_by_key(|g| g.id);
    let mut out = Vec::new();
    for gi in gis {
        let mut cis: Vec<&ComputeInstance> = gi.compute_instances.iter().collect();
        cis.sort_by_key(|c| c.id);
        out.extend(cis.into_iter().map(|ci| (gi, ci)));
    }
    out
}

/// A MIG device as an index slot remembers it: GPU instance id, compute
/// instance id and MIG UUID.
type MigSlot = (u32, u32, String);

/// The indexes `nvmlDeviceGetMigDeviceHandleByIndex` numbers MIG devices by,
/// per GPU UUID, while the library is initialised. nvml.h answers
/// NVML_ERROR_NOT_FOUND "if no valid MIG device was found at index", NVIDIA's
/// go-nvlib (`pkg/nvlib/device/device.go`, `VisitMigDevices`) walks every
/// index up to the maximum and skips such ones, and an NVIDIA maintainer
/// (NVIDIA/go-nvml issue 60) says the indexes that succeed are the MIG
/// devices: so the indexes in use may have holes. unverified: where they
/// come from; assumed a device keeps its index for its life, a destroyed one
/// leaves a hole, and a new one takes the lowest free index (in GPU- then
/// compute-instance id order). A fresh session numbers them from 0 without holes.
#[derive(Debug, Default)]
pub(crate) struct MigIndexes {
    by_gpu: std::collections::BTreeMap<String, Vec<Option<MigSlot>>>,
}

impl MigIndexes {
    /// `gpu`'s index slots brought up to date with its MIG devices now.
    fn slots(&mut self, gpu: &Gpu) -> &[Option<MigSlot>] {
        let live: Vec<MigSlot> = mig_devices(gpu)
            .into_iter()
            .map(|(gi, ci)| (gi.id, ci.id, ci.uuid.clone()))
            .collect();
        let slots = self.by_gpu.entry(gpu.uuid.clone()).or_default();
        for slot in slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| !live.contains(s)) {
                *slot = None;
            }
        }
        for device in live {
            if slots.iter().flatten().any(|s| *s == device) {
                continue;
            }
            match slots.iter().position(Option::is_none) {
                Some(free) => slots[free] = Some(device),
                None => slots.push(Some(device)),
            }
        }
        while slots.last().is_some_and(Option::is_none) {
            slots.pop();
        }
        slots
    }
}

/// # Safety
/// `current` and `pending` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetMigMode", device, |_, gpu| {
        nonnull(current)?;
        nonnull(pending)?;
        let mode = |on: bool| {
            if on {
                NVML_DEVICE_MIG_ENABLE
            } else {
                NVML_DEVICE_MIG_DISABLE
            }
        };
        unsafe {
            out(current, mode(gpu.mig.current))?;
            out(pending, mode(gpu.mig.pending))
        }
    })
}

/// The product's SM slice count while MIG is enabled (7; 4 on A30), 0 while
/// disabled, as the fixture's H100 answered.
///
/// # Safety
/// `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: nvmlDevice_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetMaxMigDeviceCount", device, |_, gpu| unsafe {
        out(
            count,
            if gpu.mig.current {
                gpu.spec().compute_slices
            } else {
                0
            },
        )
    })
}

/// # Safety
/// `is_mig` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: nvmlDevice_t,
    is_mig: *mut c_uint,
) -> nvmlReturn_t {
    with_device("nvmlDeviceIsMigDeviceHandle", device, |_, _, dev| unsafe {
        out(is_mig, c_uint::from(matches!(dev, Dev::Mig { .. })))
    })
}

/// `NVML_ERROR_NOT_FOUND` when no MIG device has that index (always, while MIG
/// is disabled, as on the fixture's H100; and at the holes [`MigIndexes`]
/// describes); `NVML_ERROR_INVALID_ARGUMENT` when `device` is itself a MIG device.
///
/// # Safety
/// `mig_device` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: nvmlDevice_t,
    index: c_uint,
    mig_device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetMigDeviceHandleByIndex", device, |st, w, dev| {
        let Dev::Gpu(gpu) = dev else {
            return Err(INVALID_ARGUMENT);
        };
        nonnull(mig_device)?;
        let (gi_id, ci_id, _) = st
            .mig_indexes
            .slots(gpu)
            .get(index as usize)
            .cloned()
            .flatten()
            .ok_or(NOT_FOUND)?;
        let (gi, ci) = mig_devices(gpu)
            .into_iter()
            .find(|(gi, ci)| gi.id == gi_id && ci.id == ci_id)
            .ok_or(NOT_FOUND)?;
        let h = st.handles.handle(mig_target(gpu, gi, ci), w);
        unsafe { out(mig_device, h as nvmlDevice_t) }
    })
}

/// # Safety
/// `device` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: nvmlDevice_t,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    with_device(
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        mig_device,
        |st, w, dev| {
            let Dev::Mig { gpu, .. } = dev else {
                return Err(INVALID_ARGUMENT);
            };
            nonnull(device)?;
            let h = st.handles.handle(gpu_target(gpu), w);
            unsafe { out(device, h as nvmlDevice_t) }
        },
    )
}

/// A MIG device's GPU instance id; `NVML_ERROR_INVALID_ARGUMENT` on a full GPU,
/// as the fixture's H100 answered.
///
/// # Safety
/// `id` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: nvmlDevice_t, id: *mut c_uint) -> nvmlReturn_t {
    with_device("nvmlDeviceGetGpuInstanceId", device, |_, _, dev| match dev {
        Dev::Mig { gi, .. } => unsafe { out(id, gi.id) },
        Dev::Gpu(_) => Err(INVALID_ARGUMENT),
    })
}

/// A MIG device's compute instance id; `NVML_ERROR_INVALID_ARGUMENT` on a full GPU.
///
/// # Safety
/// `id` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetComputeInstanceId", device, |_, _, dev| match dev {
        Dev::Mig { ci, .. } => unsafe { out(id, ci.id) },
        Dev::Gpu(_) => Err(INVALID_ARGUMENT),
    })
}

/// `NVML_GPU_INSTANCE_PROFILE_COUNT` of NVIDIA's current `nvml.h` (NVIDIA/go-nvml
/// `gen/nvml/nvml.h`: 0x12), one more than the bindings' 17: a driver that
/// knows more profiles than our bindings answers for the index past theirs.
pub(crate) const GPU_INSTANCE_PROFILE_COUNT: c_uint = 0x12;
/// `NVML_COMPUTE_INSTANCE_PROFILE_COUNT` of the same header (0x9; the bindings have 8).
pub(crate) const COMPUTE_INSTANCE_PROFILE_COUNT: c_uint = 0x9;

/// The profile selected by an `NVML_GPU_INSTANCE_PROFILE_*` index:
/// `NVML_ERROR_NOT_SUPPORTED` for an index the product lacks (the fixture's
/// H100 answered so for 5, 6, 8 and 10–15) or the World's driver does not
/// offer yet (NVIDIA's MIG user guide lists profiles that exist only from a
/// driver branch on; nvml.h: NOT_SUPPORTED "if ... profile isn't supported"),
/// `NVML_ERROR_INVALID_ARGUMENT` past `NVML_GPU_INSTANCE_PROFILE_COUNT`
/// (nvml.h: INVALID_ARGUMENT "if device, profile or info are invalid").
fn profile_by_index<'w>(world: &World, gpu: &'w Gpu, index: c_uint) -> Res<&'w GiProfile> {
    if index >= GPU_INSTANCE_PROFILE_COUNT {
        return Err(INVALID_ARGUMENT);
    }
    gpu.spec()
        .profiles_offered(&world.driver_version)
        .find(|p| p.nvml_index == index)
        .ok_or(NOT_SUPPORTED)
}

/// MIG profiles report no peer-to-peer (`isP2pSupported` 0 on every fixture row).
const IS_P2P_SUPPORTED: c_uint = 0;

fn gi_profile_info(p: &GiProfile) -> nvmlGpuInstanceProfileInfo_t {
    nvmlGpuInstanceProfileInfo_t {
        id: p.id,
        isP2pSupported: IS_P2P_SUPPORTED,
        sliceCount: p.compute_slices,
        instanceCount: p.max_instances,
        multiprocessorCount: p.sm_count,
        copyEngineCount: p.engines.copy,
        decoderCount: p.engines.decoder,
        encoderCount: p.engines.encoder,
        jpegCount: p.engines.jpeg,
        ofaCount: p.engines.ofa,
        memorySizeMB: p.memory_mib,
    }
}

/// Profile info by `NVML_GPU_INSTANCE_PROFILE_*` index; answers with MIG
/// disabled too, as the fixture's H100 did.
///
/// # Safety
/// `info` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfo(
    device: nvmlDevice_t,
    profile: c_uint,
    info: *mut nvmlGpuInstanceProfileInfo_t,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetGpuInstanceProfileInfo", device, |w, gpu| {
        nonnull(info)?;
        let p = profile_by_index(w, gpu, profile)?;
        unsafe { out(info, gi_profile_info(p)) }
    })
}

/// Versioned profile info: `info->version` selects v2 (with `isP2pSupported`
/// and the name, `MIG 1g.10gb`) or v3 (capabilities instead of
/// `isP2pSupported`); any other version is `NVML_ERROR_ARGUMENT_VERSION_MISMATCH`.
///
/// # Safety
/// `info` is NULL or points to a writable struct of the version it names.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfoV(
    device: nvmlDevice_t,
    profile: c_uint,
    info: *mut nvmlGpuInstanceProfileInfo_v2_t,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetGpuInstanceProfileInfoV", device, |w, gpu| {
        nonnull(info)?;
        // SAFETY: non-null; every version starts with the version word.
        let version = unsafe { (*info).version };
        if version != GPU_INSTANCE_PROFILE_INFO_V2 && version != GPU_INSTANCE_PROFILE_INFO_V3 {
            return Err(VERSION_MISMATCH);
        }
        let p = profile_by_index(w, gpu, profile)?;
        let v1 = gi_profile_info(p);
        let name = chars(&p.nvml_name());
        if version == GPU_INSTANCE_PROFILE_INFO_V2 {
            let v2 = nvmlGpuInstanceProfileInfo_v2_t {
                version,
                id: v1.id,
                isP2pSupported: v1.isP2pSupported,
                sliceCount: v1.sliceCount,
                instanceCount: v1.instanceCount,
                multiprocessorCount: v1.multiprocessorCount,
                copyEngineCount: v1.copyEngineCount,
                decoderCount: v1.decoderCount,
                encoderCount: v1.encoderCount,
                jpegCount: v1.jpegCount,
                ofaCount: v1.ofaCount,
                memorySizeMB: v1.memorySizeMB,
                name,
            };
            unsafe { out(info, v2) }
        } else {
            let v3 = nvmlGpuInstanceProfileInfo_v3_t {
                version,
                id: v1.id,
                sliceCount: v1.sliceCount,
                instanceCount: v1.instanceCount,
                multiprocessorCount: v1.multiprocessorCount,
                copyEngineCount: v1.copyEngineCount,
                decoderCount: v1.decoderCount,
                encoderCount: v1.encoderCount,
                jpegCount: v1.jpegCount,
                ofaCount: v1.ofaCount,
                memorySizeMB: v1.memorySizeMB,
                name,
                capabilities: if p.name.graphics {
                    NVML_GPU_INSTANCE_PROFILE_CAPS_GFX
                } else {
                    0
                },
            };
            unsafe { out(info.cast::<nvmlGpuInstanceProfileInfo_v3_t>(), v3) }
        }
    })
}

/// A profile by id, answered as unknown when the World's driver does not offer it.
fn gi_profile_by_id<'w>(
    world: &World,
    gpu: &'w Gpu,
    profile_id: c_uint,
    unknown: nvmlReturn_t,
) -> Res<&'w GiProfile> {
    gpu.spec()
        .profiles_offered(&world.driver_version)
        .find(|p| p.id == profile_id)
        .ok_or(unknown)
}

/// Every placement of the profile, free or not, MIG enabled or not (as
/// `nvml.h` says and the fixture shows). `placements` NULL asks for the count
/// only; otherwise it must hold the profile's placements, as NVML requires
/// (the count is an output only).
///
/// # Safety
/// `count` is NULL or writable; `placements` is NULL or holds the profile's placements.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstancePossiblePlacements_v2(
    device: nvmlDevice_t,
    profile_id: c_uint,
    placements: *mut nvmlGpuInstancePlacement_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(
        "nvmlDeviceGetGpuInstancePossiblePlacements_v2",
        device,
        |w, gpu| {
            nonnull(count)?;
            let p = gi_profile_by_id(w, gpu, profile_id, NOT_SUPPORTED)?;
            if !placements.is_null() {
                for (i, &start) in p.placement_starts.iter().enumerate() {
                    let placement = nvmlGpuInstancePlacement_t {
                        start,
                        size: p.memory_slices,
                    };
                    // SAFETY: the caller's array holds the profile's placements.
                    unsafe { placements.add(i).write(placement) };
                }
            }
            unsafe { out(count, p.placement_starts.len() as c_uint) }
        },
    )
}

/// How many more instances of the profile fit now; answers with MIG disabled
/// too, as the fixture's H100 did (7 for 1g.10gb on an empty GPU).
///
/// # Safety
/// `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceRemainingCapacity(
    device: nvmlDevice_t,
    profile_id: c_uint,
    count: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetGpuInstanceRemainingCapacity", device, |w, gpu| {
        nonnull(count)?;
        let p = gi_profile_by_id(w, gpu, profile_id, NOT_SUPPORTED)?;
        unsafe { out(count, gpu.placer().remaining_capacity(p)) }
    })
}

/// The GPU instances of a profile, by id. With MIG disabled: success and a
/// count of 0, as the fixture's H100 answered. `gpu_instances` must hold the
/// profile's instance count, as NVML requires.
///
/// # Safety
/// `count` is NULL or writable; `gpu_instances` is NULL or holds `instanceCount` handles.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstances(
    device: nvmlDevice_t,
    profile_id: c_uint,
    gpu_instances: *mut nvmlGpuInstance_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetGpuInstances", device, |st, w, dev| {
        let Dev::Gpu(gpu) = dev else {
            return Err(NOT_SUPPORTED);
        };
        let p = gi_profile_by_id(w, gpu, profile_id, INVALID_ARGUMENT)?;
        nonnull(gpu_instances)?;
        nonnull(count)?;
        let mut gis: Vec<&GpuInstance> = if gpu.mig.current {
            gpu.gpu_instances
                .iter()
                .filter(|g| g.profile_id == p.id)
                .collect()
        } else {
            Vec::new()
        };
        gis.sort_by_key(|g| g.id);
        gis.truncate(p.max_instances as usize);
        for (i, gi) in gis.iter().enumerate() {
            let h = st.handles.handle(gi_target(gpu, gi), w);
            // SAFETY: the caller's array holds the profile's instance count.
            unsafe { gpu_instances.add(i).write(h as nvmlGpuInstance_t) };
        }
        unsafe { out(count, gis.len() as c_uint) }
    })
}

/// `NVML_ERROR_NOT_SUPPORTED` while MIG is disabled, `NVML_ERROR_NOT_FOUND`
/// for an id no GPU instance has.
///
/// # Safety
/// `gpu_instance` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceById(
    device: nvmlDevice_t,
    id: c_uint,
    gpu_instance: *mut nvmlGpuInstance_t,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetGpuInstanceById", device, |st, w, dev| {
        let Dev::Gpu(gpu) = dev else {
            return Err(NOT_SUPPORTED);
        };
        nonnull(gpu_instance)?;
        if !gpu.mig.current {
            return Err(NOT_SUPPORTED);
        }
        let gi = gpu.gpu_instances.iter().find(|g| g.id == id).ok_or(NOT_FOUND)?;
        let h = st.handles.handle(gi_target(gpu, gi), w);
        unsafe { out(gpu_instance, h as nvmlGpuInstance_t) }
    })
}

/// Runs `f` on the GPU instance `gpu_instance` names.
fn with_gi(
    name: &'static str,
    gpu_instance: nvmlGpuInstance_t,
    f: impl FnOnce(&mut State, &World, &Gpu, &GpuInstance) -> Res,
) -> nvmlReturn_t {
    call(name, |st, w| {
        let (gpu, gi) = handles::gpu_instance(&st.handles, w, gpu_instance as usize)?;
        f(st, w, gpu, gi)
    })
}

/// # Safety
/// `info` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetInfo(
    gpu_instance: nvmlGpuInstance_t,
    info: *mut nvmlGpuInstanceInfo_t,
) -> nvmlReturn_t {
    with_gi("nvmlGpuInstanceGetInfo", gpu_instance, |st, w, gpu, gi| {
        nonnull(info)?;
        let device = st.handles.handle(gpu_target(gpu), w) as nvmlDevice_t;
        unsafe {
            out(
                info,
                nvmlGpuInstanceInfo_t {
                    device,
                    id: gi.id,
                    profileId: gi.profile_id,
                    placement: nvmlGpuInstancePlacement_t {
                        start: gi.placement.start,
                        size: gi.placement.size,
                    },
                },
            )
        }
    })
}

/// The GPU instance's profile and its compute-instance profiles.
fn ci_profiles_of(gpu: &Gpu, gi: &GpuInstance) -> Res<(&'static GiProfile, Vec<CiProfile>)> {
    // World files are validated on load: a GPU instance's profile is known.
    let gp = gpu.gi_profile(gi).map_err(|_| UNKNOWN)?;
    Ok((gp, gpu.product.ci_profiles(gp)))
}

/// The compute-instance profile `profile` (an `NVML_COMPUTE_INSTANCE_PROFILE_*`
/// index, which is also its id): `NVML_ERROR_NOT_SUPPORTED` when the GPU
/// instance offers none such, `NVML_ERROR_INVALID_ARGUMENT` past the count.
fn ci_profile(profiles: &[CiProfile], profile: c_uint) -> Res<&CiProfile> {
    if profile >= COMPUTE_INSTANCE_PROFILE_COUNT {
        return Err(INVALID_ARGUMENT);
    }
    profiles.iter().find(|p| p.id == profile).ok_or(NOT_SUPPORTED)
}

fn ci_profile_info(gp: &GiProfile, cp: &CiProfile) -> nvmlComputeInstanceProfileInfo_t {
    // Engines other than SMs are shared by every CI of the GI
    // (NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED).
    nvmlComputeInstanceProfileInfo_t {
        id: cp.id,
        sliceCount: cp.compute_slices,
        instanceCount: cp.max_instances,
        multiprocessorCount: cp.sm_count,
        sharedCopyEngineCount: gp.engines.copy,
        sharedDecoderCount: gp.engines.decoder,
        sharedEncoderCount: gp.engines.encoder,
        sharedJpegCount: gp.engines.jpeg,
        sharedOfaCount: gp.engines.ofa,
    }
}

fn check_eng_profile(eng_profile: c_uint) -> Res {
    if eng_profile == NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED {
        Ok(())
    } else {
        Err(INVALID_ARGUMENT)
    }
}

/// # Safety
/// `info` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceProfileInfo(
    gpu_instance: nvmlGpuInstance_t,
    profile: c_uint,
    eng_profile: c_uint,
    info: *mut nvmlComputeInstanceProfileInfo_t,
) -> nvmlReturn_t {
    with_gi(
        "nvmlGpuInstanceGetComputeInstanceProfileInfo",
        gpu_instance,
        |_, _, gpu, gi| {
            nonnull(info)?;
            check_eng_profile(eng_profile)?;
            let (gp, profiles) = ci_profiles_of(gpu, gi)?;
            let cp = ci_profile(&profiles, profile)?;
            unsafe { out(info, ci_profile_info(gp, cp)) }
        },
    )
}

/// Versioned: v2 adds the name (`MIG 1c.3g.40gb`, or the GI's own name for a
/// CI spanning it), v3 the capabilities; other versions are
/// `NVML_ERROR_ARGUMENT_VERSION_MISMATCH`.
///
/// # Safety
/// `info` is NULL or points to a writable struct of the version it names.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceProfileInfoV(
    gpu_instance: nvmlGpuInstance_t,
    profile: c_uint,
    eng_profile: c_uint,
    info: *mut nvmlComputeInstanceProfileInfo_v2_t,
) -> nvmlReturn_t {
    with_gi(
        "nvmlGpuInstanceGetComputeInstanceProfileInfoV",
        gpu_instance,
        |_, _, gpu, gi| {
            nonnull(info)?;
            // SAFETY: non-null; every version starts with the version word.
            let version = unsafe { (*info).version };
            if version != COMPUTE_INSTANCE_PROFILE_INFO_V2 && version != COMPUTE_INSTANCE_PROFILE_INFO_V3 {
                return Err(VERSION_MISMATCH);
            }
            check_eng_profile(eng_profile)?;
            let (gp, profiles) = ci_profiles_of(gpu, gi)?;
            let cp = ci_profile(&profiles, profile)?;
            let v1 = ci_profile_info(gp, cp);
            let name = chars(&cp.nvml_name(gp));
            if version == COMPUTE_INSTANCE_PROFILE_INFO_V2 {
                let v2 = nvmlComputeInstanceProfileInfo_v2_t {
                    version,
                    id: v1.id,
                    sliceCount: v1.sliceCount,
                    instanceCount: v1.instanceCount,
                    multiprocessorCount: v1.multiprocessorCount,
                    sharedCopyEngineCount: v1.sharedCopyEngineCount,
                    sharedDecoderCount: v1.sharedDecoderCount,
                    sharedEncoderCount: v1.sharedEncoderCount,
                    sharedJpegCount: v1.sharedJpegCount,
                    sharedOfaCount: v1.sharedOfaCount,
                    name,
                };
                unsafe { out(info, v2) }
            } else {
                let v3 = nvmlComputeInstanceProfileInfo_v3_t {
                    version,
                    id: v1.id,
                    sliceCount: v1.sliceCount,
                    instanceCount: v1.instanceCount,
                    multiprocessorCount: v1.multiprocessorCount,
                    sharedCopyEngineCount: v1.sharedCopyEngineCount,
                    sharedDecoderCount: v1.sharedDecoderCount,
                    sharedEncoderCount: v1.sharedEncoderCount,
                    sharedJpegCount: v1.sharedJpegCount,
                    sharedOfaCount: v1.sharedOfaCount,
                    name,
                    capabilities: if gp.name.graphics {
                        NVML_COMPUTE_INSTANCE_PROFILE_CAPS_GFX
                    } else {
                        0
                    },
                };
                unsafe { out(info.cast::<nvmlComputeInstanceProfileInfo_v3_t>(), v3) }
            }
        },
    )
}

/// How many more compute instances of the profile the GPU instance holds now.
///
/// # Safety
/// `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceRemainingCapacity(
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
    count: *mut c_uint,
) -> nvmlReturn_t {
    with_gi(
        "nvmlGpuInstanceGetComputeInstanceRemainingCapacity",
        gpu_instance,
        |_, _, gpu, gi| {
            nonnull(count)?;
            let (gp, profiles) = ci_profiles_of(gpu, gi)?;
            let cp = ci_profile(&profiles, profile_id)?;
            unsafe { out(count, ci_remaining_capacity(gi, gp, cp)) }
        },
    )
}

/// The compute instances of a profile in the GPU instance, by id.
/// `compute_instances` must hold the profile's instance count, as NVML requires.
///
/// # Safety
/// `count` is NULL or writable; `compute_instances` is NULL or holds `instanceCount` handles.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstances(
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
    compute_instances: *mut nvmlComputeInstance_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    with_gi(
        "nvmlGpuInstanceGetComputeInstances",
        gpu_instance,
        |st, w, gpu, gi| {
            let (_, profiles) = ci_profiles_of(gpu, gi)?;
            let cp = ci_profile(&profiles, profile_id)?;
            nonnull(compute_instances)?;
            nonnull(count)?;
            let mut cis: Vec<&ComputeInstance> = gi
                .compute_instances
                .iter()
                .filter(|c| c.profile_id == cp.id)
                .collect();
            cis.sort_by_key(|c| c.id);
            cis.truncate(cp.max_instances as usize);
            for (i, ci) in cis.iter().enumerate() {
                let h = st.handles.handle(ci_target(gpu, gi, ci), w);
                // SAFETY: the caller's array holds the profile's instance count.
                unsafe { compute_instances.add(i).write(h as nvmlComputeInstance_t) };
            }
            unsafe { out(count, cis.len() as c_uint) }
        },
    )
}

/// `NVML_ERROR_NOT_FOUND` for an id no compute instance of the GPU instance has.
///
/// # Safety
/// `compute_instance` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceById(
    gpu_instance: nvmlGpuInstance_t,
    id: c_uint,
    compute_instance: *mut nvmlComputeInstance_t,
) -> nvmlReturn_t {
    with_gi(
        "nvmlGpuInstanceGetComputeInstanceById",
        gpu_instance,
        |st, w, gpu, gi| {
            nonnull(compute_instance)?;
            let ci = gi
                .compute_instances
                .iter()
                .find(|c| c.id == id)
                .ok_or(NOT_FOUND)?;
            let h = st.handles.handle(ci_target(gpu, gi, ci), w);
            unsafe { out(compute_instance, h as nvmlComputeInstance_t) }
        },
    )
}

fn ci_info(
    st: &mut State,
    w: &World,
    compute_instance: nvmlComputeInstance_t,
) -> Res<nvmlComputeInstanceInfo_t> {
    let (gpu, gi, ci) = handles::compute_instance(&st.handles, w, compute_instance as usize)?;
    Ok(nvmlComputeInstanceInfo_t {
        device: st.handles.handle(gpu_target(gpu), w) as nvmlDevice_t,
        gpuInstance: st.handles.handle(gi_target(gpu, gi), w) as nvmlGpuInstance_t,
        id: ci.id,
        profileId: ci.profile_id,
        placement: nvmlComputeInstancePlacement_t {
            start: ci.placement.start,
            size: ci.placement.size,
        },
    })
}

/// The parent GPU's handle, the GPU instance's, the id, profile and placement.
///
/// # Safety
/// `info` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlComputeInstanceGetInfo_v2(
    compute_instance: nvmlComputeInstance_t,
    info: *mut nvmlComputeInstanceInfo_t,
) -> nvmlReturn_t {
    call("nvmlComputeInstanceGetInfo_v2", |st, w| {
        nonnull(info)?;
        let i = ci_info(st, w, compute_instance)?;
        unsafe { out(info, i) }
    })
}

/// The original entry point, whose struct ended before `placement`: only the
/// fields it had are written, so old and new callers are both safe.
///
/// # Safety
/// `info` is NULL or writable up to `profileId`.
#[no_mangle]
pub unsafe extern "C" fn nvmlComputeInstanceGetInfo(
    compute_instance: nvmlComputeInstance_t,
    info: *mut nvmlComputeInstanceInfo_t,
) -> nvmlReturn_t {
    call("nvmlComputeInstanceGetInfo", |st, w| {
        nonnull(info)?;
        let i = ci_info(st, w, compute_instance)?;
        // SAFETY: non-null; the caller's struct holds at least these four fields.
        unsafe {
            std::ptr::addr_of_mut!((*info).device).write(i.device);
            std::ptr::addr_of_mut!((*info).gpuInstance).write(i.gpuInstance);
            std::ptr::addr_of_mut!((*info).id).write(i.id);
            std::ptr::addr_of_mut!((*info).profileId).write(i.profileId);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_versions_match_nvml_h_and_pynvml() {
        assert_eq!(GPU_INSTANCE_PROFILE_INFO_V2, 0x0200_0098);
        assert_eq!(GPU_INSTANCE_PROFILE_INFO_V3, 0x0300_0098);
        assert_eq!(COMPUTE_INSTANCE_PROFILE_INFO_V2, 0x0200_0088);
        assert_eq!(COMPUTE_INSTANCE_PROFILE_INFO_V3, 0x0300_008C);
        assert_eq!(crate::device::MEMORY_V2, 33_554_472);
    }

    #[test]
    fn mig_devices_are_ordered_by_gi_then_ci() {
        let mut w = World::new("n", mig_model::Product::H100_80GB, 1);
        let gpu = &mut w.gpus[0];
        assert!(mig_devices(gpu).is_empty());
        gpu.set_mig_mode(true);
        let a = gpu.create_gpu_instance(9, None).unwrap();
        let b = gpu.create_gpu_instance(19, None).unwrap();
        gpu.create_compute_instance(a, Some(0)).unwrap();
        gpu.create_compute_instance(a, Some(0)).unwrap();
        gpu.create_compute_instance(b, None).unwrap();
        let order: Vec<(u32, u32)> = mig_devices(gpu).iter().map(|(g, c)| (g.id, c.id)).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
        assert_eq!(order.len(), 3);
    }
}
