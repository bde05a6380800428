//! Device queries: identity, PCI, memory and the whole-GPU readings of the
//! World's telemetry.

use std::ffi::{c_char, c_uint, c_ulonglong};

use mig_model::{Architecture, Gpu, Product, World};
use nvml_wrapper_sys::bindings::*;

use crate::handles::{self, Dev};
use crate::state::{call, Res, State};
use crate::write::{chars, nonnull, out, string};

const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_SUPPORTED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
const VERSION_MISMATCH: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
const NO_PERMISSION: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NO_PERMISSION;

const MIB: u64 = 1024 * 1024;

/// Framebuffer the driver reserves for itself, as `nvmlDeviceGetMemoryInfo_v2`
/// reported it on the fixture's H100 80GB HBM3 (503316480 bytes); the World
/// has no per-product figure, so every product gets this one.
pub const RESERVED_MIB: u64 = 480;

/// `NVML_STRUCT_VERSION(Memory, 2)`: 40 | 2 << 24 = 33554472, as the fixture shows.
pub const MEMORY_V2: c_uint = (std::mem::size_of::<nvmlMemory_v2_t>() as c_uint) | (2 << 24);

/// Runs `f` on the device `device` names.
pub(crate) fn with_device(
    name: &'static str,
    device: nvmlDevice_t,
    f: impl FnOnce(&mut State, &World, Dev<'_>) -> Res,
) -> nvmlReturn_t {
    call(name, |st, w| {
        let dev = handles::device(&st.handles, w, device as usize)?;
        f(st, w, dev)
    })
}

/// Runs `f` on a physical GPU; a MIG device handle gets
/// `NVML_ERROR_NOT_SUPPORTED`: whole-GPU readings are never passed off as a
/// MIG device's.
pub(crate) fn with_gpu(
    name: &'static str,
    device: nvmlDevice_t,
    f: impl FnOnce(&World, &Gpu) -> Res,
) -> nvmlReturn_t {
    with_device(name, device, |_, w, dev| match dev {
        Dev::Gpu(gpu) => f(w, gpu),
        Dev::Mig { .. } => Err(NOT_SUPPORTED),
    })
}

/// A MIG device's name as NVML gives it: the board's name and the compute
/// instance's profile (`NVIDIA H100 80GB HBM3 MIG 3g.40gb`, `... MIG 1c.3g.40gb`).
fn mig_name(gpu: &Gpu, gi: &mig_model::GpuInstance, ci: &mig_model::ComputeInstance) -> String {
    let profile = match gpu.gi_profile(gi) {
        Ok(p) => gpu
            .product
            .ci_profiles(p)
            .iter()
            .find(|c| c.id == ci.profile_id)
            .map_or_else(|| p.name.to_string(), |c| c.name(p)),
        Err(_) => format!("profile {}", gi.profile_id),
    };
    format!("{} MIG {profile}", gpu.spec().name)
}

/// # Safety
/// `name` is NULL or points to `length` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetName", device, |_, _, dev| {
        let text = match dev {
            Dev::Gpu(gpu) => gpu.spec().name.to_string(),
            Dev::Mig { gpu, gi, ci } => mig_name(gpu, gi, ci),
        };
        unsafe { string(name, length, &text) }
    })
}

/// A GPU's UUID, or a MIG device's `MIG-...` UUID.
///
/// # Safety
/// `uuid` is NULL or points to `length` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetUUID", device, |_, _, dev| {
        let text = match dev {
            Dev::Gpu(gpu) => &gpu.uuid,
            Dev::Mig { ci, .. } => &ci.uuid,
        };
        unsafe { string(uuid, length, text) }
    })
}

/// The World's GPU index; `NVML_ERROR_NOT_SUPPORTED` for a MIG device.
///
/// # Safety
/// `index` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetIndex", device, |_, gpu| unsafe {
        out(index, gpu.index)
    })
}

/// The minor number of the GPU's `/dev/nvidiaN`: its index.
/// shared/fixtures/h100-80gb-hbm3-real/nvidia-smi-q.txt shows GPU 0 with
/// "Minor Number : 0"; unverified: that the driver numbers the minors of a
/// node with several GPUs in their index (PCI) order too.
///
/// # Safety
/// `minor` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(device: nvmlDevice_t, minor: *mut c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetMinorNumber", device, |_, gpu| unsafe {
        out(minor, gpu.index)
    })
}

/// PCI subsystem ids read off real boards; 0 where none was read.
fn pci_subsystem_id(product: Product) -> c_uint {
    match product {
        // shared/fixtures/h100-80gb-hbm3-real/nvidia-smi-q.txt: Sub System Id 0x16C110DE.
        Product::H100_80GB => 0x16C1_10DE,
        _ => 0,
    }
}

/// The PCI info of a GPU, or of a MIG device's parent (MIG devices share it).
///
/// # Safety
/// `pci` is NULL or points to a writable `nvmlPciInfo_t`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetPciInfo_v3", device, |_, _, dev| {
        nonnull(pci)?;
        let gpu = dev.gpu();
        let (domain, bus, dev_no, function) =
            crate::system::parse_bus_id(&gpu.pci_bus_id).ok_or(nvmlReturn_enum_NVML_ERROR_UNKNOWN)?;
        let info = nvmlPciInfo_t {
            busIdLegacy: chars(&format!("{domain:04X}:{bus:02X}:{dev_no:02X}.{function:X}")),
            domain,
            bus,
            device: dev_no,
            pciDeviceId: gpu.spec().pci_device_id,
            pciSubSystemId: pci_subsystem_id(gpu.product),
            busId: chars(&format!("{domain:08X}:{bus:02X}:{dev_no:02X}.{function:X}")),
        };
        unsafe { out(pci, info) }
    })
}

/// Memory of a device in bytes: (total, reserved, allocated).
///
/// The whole GPU: the product's framebuffer, the driver's reservation, and
/// what processes use (with MIG enabled, the sum over GPU instances). A MIG
/// device: its GPU instance's profile memory and that instance's use.
fn memory(dev: Dev<'_>) -> (u64, u64, u64) {
    match dev {
        Dev::Gpu(gpu) => {
            let used_mib = if gpu.mig.current {
                gpu.gpu_instances
                    .iter()
                    .map(|gi| gi.load.memory_used_mib)
                    .fold(0u64, u64::saturating_add)
            } else {
                gpu.telemetry.memory_used_mib
            };
            (
                gpu.spec().memory_mib.saturating_mul(MIB),
                RESERVED_MIB * MIB,
                used_mib.saturating_mul(MIB),
            )
        }
        Dev::Mig { gpu, gi, .. } => {
            let total_mib = gpu.gi_profile(gi).map_or(0, |p| p.memory_mib);
            (
                total_mib.saturating_mul(MIB),
                0,
                gi.load.memory_used_mib.saturating_mul(MIB),
            )
        }
    }
}

/// nvml.h (`nvmlDeviceGetMemoryInfo`): "In MIG mode, if device handle is
/// provided, the API returns aggregate information, only if the caller has
/// appropriate privileges", else NVML_ERROR_NO_PERMISSION. The World's
/// `unprivileged` fault makes the caller such a one; MIG device handles
/// ("per-instance information") still answer.
fn memory_permitted(w: &World, dev: &Dev<'_>) -> Res {
    match dev {
        Dev::Gpu(gpu) if w.faults.unprivileged && gpu.mig.current => Err(NO_PERMISSION),
        _ => Ok(()),
    }
}

/// Version 1 counts the reserved memory as used, so `free + used = total`.
///
/// # Safety
/// `memory` is NULL or points to a writable `nvmlMemory_t`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    memory_out: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetMemoryInfo", device, |_, w, dev| {
        memory_permitted(w, &dev)?;
        let (total, reserved, used) = memory(dev);
        let used = used.saturating_add(reserved).min(total);
        unsafe {
            out(
                memory_out,
                nvmlMemory_t {
                    total,
                    free: total - used,
                    used,
                },
            )
        }
    })
}

/// Version 2 reports the reserved memory apart: `free = total - reserved - used`
/// (the fixture: total 85520809984, reserved 503316480, free 85017493504, used 0).
/// The caller sets `version` to `nvmlMemory_v2`; anything else is
/// `NVML_ERROR_ARGUMENT_VERSION_MISMATCH`.
///
/// # Safety
/// `memory` is NULL or points to a writable `nvmlMemory_v2_t`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory_out: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetMemoryInfo_v2", device, |_, w, dev| {
        memory_permitted(w, &dev)?;
        nonnull(memory_out)?;
        // SAFETY: non-null; the caller passes an nvmlMemory_v2_t.
        if unsafe { (*memory_out).version } != MEMORY_V2 {
            return Err(VERSION_MISMATCH);
        }
        let (total, reserved, used) = memory(dev);
        unsafe {
            out(
                memory_out,
                nvmlMemory_v2_t {
                    version: MEMORY_V2,
                    total,
                    reserved,
                    free: total.saturating_sub(reserved).saturating_sub(used),
                    used,
                },
            )
        }
    })
}

/// # Safety
/// `mode` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPersistenceMode(
    device: nvmlDevice_t,
    mode: *mut nvmlEnableState_t,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetPersistenceMode", device, |_, gpu| unsafe {
        out(mode, enable_state(gpu.persistence_mode))
    })
}

fn enable_state(on: bool) -> nvmlEnableState_t {
    if on {
        nvmlEnableState_enum_NVML_FEATURE_ENABLED
    } else {
        nvmlEnableState_enum_NVML_FEATURE_DISABLED
    }
}

/// Current and pending ECC mode (the World keeps one setting for both).
///
/// # Safety
/// `current` and `pending` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEccMode(
    device: nvmlDevice_t,
    current: *mut nvmlEnableState_t,
    pending: *mut nvmlEnableState_t,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetEccMode", device, |_, gpu| {
        nonnull(current)?;
        nonnull(pending)?;
        unsafe {
            out(current, enable_state(gpu.ecc_enabled))?;
            out(pending, enable_state(gpu.ecc_enabled))
        }
    })
}

/// Corrected or uncorrected, volatile or aggregate ECC error totals;
/// `NVML_ERROR_NOT_SUPPORTED` while ECC is disabled.
///
/// # Safety
/// `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: nvmlDevice_t,
    error_type: nvmlMemoryErrorType_t,
    counter_type: nvmlEccCounterType_t,
    count: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetTotalEccErrors", device, |_, gpu| {
        nonnull(count)?;
        let e = &gpu.telemetry.ecc_errors;
        let value = match (error_type, counter_type) {
            (
                nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_CORRECTED,
                nvmlEccCounterType_enum_NVML_VOLATILE_ECC,
            ) => e.volatile_corrected,
            (
                nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                nvmlEccCounterType_enum_NVML_VOLATILE_ECC,
            ) => e.volatile_uncorrected,
            (
                nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_CORRECTED,
                nvmlEccCounterType_enum_NVML_AGGREGATE_ECC,
            ) => e.aggregate_corrected,
            (
                nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                nvmlEccCounterType_enum_NVML_AGGREGATE_ECC,
            ) => e.aggregate_uncorrected,
            _ => return Err(INVALID_ARGUMENT),
        };
        if !gpu.ecc_enabled {
            return Err(NOT_SUPPORTED);
        }
        unsafe { out(count, value) }
    })
}

/// # Safety
/// Every pointer is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetRemappedRows(
    device: nvmlDevice_t,
    corr_rows: *mut c_uint,
    unc_rows: *mut c_uint,
    is_pending: *mut c_uint,
    failure_occurred: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetRemappedRows", device, |_, gpu| {
        for p in [corr_rows, unc_rows, is_pending, failure_occurred] {
            nonnull(p)?;
        }
        let r = &gpu.telemetry.remapped_rows;
        unsafe {
            out(corr_rows, r.correctable)?;
            out(unc_rows, r.uncorrectable)?;
            out(is_pending, c_uint::from(r.pending))?;
            out(failure_occurred, c_uint::from(r.failure))
        }
    })
}

/// Milliwatts.
///
/// # Safety
/// `power` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: nvmlDevice_t, power: *mut c_uint) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetPowerUsage", device, |_, gpu| unsafe {
        out(power, milliwatts(gpu.telemetry.power_watts))
    })
}

/// Milliwatts.
///
/// # Safety
/// `limit` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(
    device: nvmlDevice_t,
    limit: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetEnforcedPowerLimit", device, |_, gpu| unsafe {
        out(limit, milliwatts(gpu.telemetry.power_limit_watts))
    })
}

/// Watts to NVML's milliwatts; negative or NaN readings become 0.
fn milliwatts(watts: f64) -> c_uint {
    (watts * 1000.0).round() as c_uint
}

/// The GPU core sensor (`NVML_TEMPERATURE_GPU`), the only one NVML defines.
///
/// # Safety
/// `temp` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor: nvmlTemperatureSensors_t,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetTemperature", device, |_, gpu| {
        if sensor != nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU {
            return Err(INVALID_ARGUMENT);
        }
        unsafe { out(temp, gpu.telemetry.temperature_celsius) }
    })
}

/// Graphics and SM clocks (equal on the H100, 1980 MHz); the World has no
/// memory or video clock, so those are `NVML_ERROR_NOT_SUPPORTED`.
///
/// # Safety
/// `clock` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: nvmlDevice_t,
    clock_type: nvmlClockType_t,
    clock: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetClockInfo", device, |_, gpu| match clock_type {
        nvmlClockType_enum_NVML_CLOCK_GRAPHICS | nvmlClockType_enum_NVML_CLOCK_SM => unsafe {
            out(clock, gpu.telemetry.sm_clock_mhz)
        },
        nvmlClockType_enum_NVML_CLOCK_MEM | nvmlClockType_enum_NVML_CLOCK_VIDEO => Err(NOT_SUPPORTED),
        _ => Err(INVALID_ARGUMENT),
    })
}

/// Whole-GPU utilization; `NVML_ERROR_NOT_SUPPORTED` while MIG is enabled, as
/// on real hardware. The World has no memory-controller reading: `memory` is 0.
///
/// # Safety
/// `utilization` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetUtilizationRates", device, |_, gpu| {
        if gpu.mig.current {
            return Err(NOT_SUPPORTED);
        }
        unsafe {
            out(
                utilization,
                nvmlUtilization_t {
                    gpu: gpu.telemetry.utilization_percent.min(100),
                    memory: 0,
                },
            )
        }
    })
}

/// Millijoules since the driver loaded.
///
/// # Safety
/// `energy` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: nvmlDevice_t,
    energy: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetTotalEnergyConsumption", device, |_, gpu| unsafe {
        out(energy, gpu.telemetry.energy_millijoules)
    })
}

/// KB/s over the last 20 ms, TX or RX.
///
/// # Safety
/// `value` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPcieThroughput(
    device: nvmlDevice_t,
    counter: nvmlPcieUtilCounter_t,
    value: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetPcieThroughput", device, |_, gpu| {
        let v = match counter {
            nvmlPcieUtilCounter_enum_NVML_PCIE_UTIL_TX_BYTES => gpu.telemetry.pcie_tx_kibps,
            nvmlPcieUtilCounter_enum_NVML_PCIE_UTIL_RX_BYTES => gpu.telemetry.pcie_rx_kibps,
            _ => return Err(INVALID_ARGUMENT),
        };
        unsafe { out(value, v) }
    })
}

/// `NVML_DEVICE_ARCH_*` of the product (a MIG device answers for its parent).
///
/// # Safety
/// `arch` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetArchitecture(
    device: nvmlDevice_t,
    arch: *mut nvmlDeviceArchitecture_t,
) -> nvmlReturn_t {
    with_device("nvmlDeviceGetArchitecture", device, |_, _, dev| {
        let a = match dev.gpu().spec().architecture {
            Architecture::Ampere => NVML_DEVICE_ARCH_AMPERE,
            Architecture::Hopper => NVML_DEVICE_ARCH_HOPPER,
            Architecture::Blackwell => NVML_DEVICE_ARCH_BLACKWELL,
        };
        unsafe { out(arch, a) }
    })
}
