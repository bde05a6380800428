//! Initialization, error strings, system queries and device enumeration.

use std::ffi::{c_char, c_int, c_uint};

use mig_model::World;
use nvml_wrapper_sys::bindings::*;

use crate::handles::{check_not_lost, gpu_target, mig_target};
use crate::state::{self, call, counted, Res};
use crate::write::{input, nonnull, out, string};
use mig_model::driver::{cuda_version, nvml_version};

const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_FOUND: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_FOUND;

/// `nvmlInit_v2`: reads the World file named by `MIG_WORLD`.
/// `NVML_ERROR_DRIVER_NOT_LOADED` when it is unset or unreadable, or when the
/// World's `driver_not_loaded` fault is on.
#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    state::init("nvmlInit_v2")
}

/// `nvmlInitWithFlags` (what pynvml's `nvmlInit` calls); the flags change nothing here.
#[no_mangle]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    state::init("nvmlInitWithFlags")
}

#[no_mangle]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    state::shutdown("nvmlShutdown")
}

/// NVIDIA's description of a return code (the strings `nvidia-smi` and
/// pynvml show), or "Unknown Error" for a code NVML does not define.
pub fn error_string(result: nvmlReturn_t) -> &'static std::ffi::CStr {
    match result {
        nvmlReturn_enum_NVML_SUCCESS => c"Success",
        nvmlReturn_enum_NVML_ERROR_UNINITIALIZED => c"Uninitialized",
        nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT => c"Invalid Argument",
        nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED => c"Not Supported",
        nvmlReturn_enum_NVML_ERROR_NO_PERMISSION => c"Insufficient Permissions",
        nvmlReturn_enum_NVML_ERROR_ALREADY_INITIALIZED => c"Already Initialized",
        nvmlReturn_enum_NVML_ERROR_NOT_FOUND => c"Not Found",
        nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE => c"Insufficient Size",
        nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_POWER => c"Insufficient External Power",
        nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED => c"Driver Not Loaded",
        nvmlReturn_enum_NVML_ERROR_TIMEOUT => c"Timeout",
        nvmlReturn_enum_NVML_ERROR_IRQ_ISSUE => c"Interrupt Request Issue",
        nvmlReturn_enum_NVML_ERROR_LIBRARY_NOT_FOUND => c"NVML Shared Library Not Found",
        nvmlReturn_enum_NVML_ERROR_FUNCTION_NOT_FOUND => c"Function Not Found",
        nvmlReturn_enum_NVML_ERROR_CORRUPTED_INFOROM => c"Corrupted infoROM",
        nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST => c"GPU is lost",
        nvmlReturn_enum_NVML_ERROR_RESET_REQUIRED => c"GPU requires reset",
        nvmlReturn_enum_NVML_ERROR_OPERATING_SYSTEM => c"GPU access blocked by the operating system",
        nvmlReturn_enum_NVML_ERROR_LIB_RM_VERSION_MISMATCH => c"Driver/library version mismatch",
        nvmlReturn_enum_NVML_ERROR_IN_USE => c"In use by another client",
        nvmlReturn_enum_NVML_ERROR_MEMORY => c"Insufficient Memory",
        nvmlReturn_enum_NVML_ERROR_NO_DATA => c"No data",
        nvmlReturn_enum_NVML_ERROR_VGPU_ECC_NOT_SUPPORTED => {
            c"The requested vgpu operation is not available on target device, because ECC is enabled"
        }
        nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES => c"Insufficient Resources",
        nvmlReturn_enum_NVML_ERROR_FREQ_NOT_SUPPORTED => c"Frequency not supported",
        nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH => c"Argument version mismatch",
        nvmlReturn_enum_NVML_ERROR_DEPRECATED => c"Deprecated",
        nvmlReturn_enum_NVML_ERROR_NOT_READY => c"Not Ready",
        nvmlReturn_enum_NVML_ERROR_GPU_NOT_FOUND => c"GPU not found",
        nvmlReturn_enum_NVML_ERROR_INVALID_STATE => c"Invalid state",
        _ => c"Unknown Error",
    }
}

/// Works before `nvmlInit`, as NVIDIA's does; never NULL.
#[no_mangle]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    counted("nvmlErrorString", || {
        std::panic::catch_unwind(|| error_string(result))
            .unwrap_or(c"Unknown Error")
            .as_ptr()
    })
}

/// # Safety
/// `version` is NULL or points to `length` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    call("nvmlSystemGetDriverVersion", |_, w| unsafe {
        string(version, length, &w.driver_version)
    })
}

/// # Safety
/// `version` is NULL or points to `length` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    call("nvmlSystemGetNVMLVersion", |_, w| unsafe {
        string(version, length, &nvml_version(&w.driver_version))
    })
}

/// # Safety
/// `v` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(v: *mut c_int) -> nvmlReturn_t {
    call("nvmlSystemGetCudaDriverVersion", |_, w| unsafe {
        out(v, cuda_version(&w.driver_version))
    })
}

/// # Safety
/// `v` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(v: *mut c_int) -> nvmlReturn_t {
    call("nvmlSystemGetCudaDriverVersion_v2", |_, w| unsafe {
        out(v, cuda_version(&w.driver_version))
    })
}

/// Every GPU of the World, lost ones included (they are still on the bus list).
///
/// # Safety
/// `count` is NULL or points to a writable `unsigned int`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    call("nvmlDeviceGetCount_v2", |_, w| unsafe {
        out(count, w.gpus.len() as c_uint)
    })
}

/// The GPU whose World `index` is `index`: NVML indexes are the World's, so the
/// exporter's `gpu` label is the same from NVML and from the simulator.
/// `NVML_ERROR_INVALID_ARGUMENT` for an index no GPU has.
///
/// # Safety
/// `device` is NULL or points to a writable `nvmlDevice_t`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetHandleByIndex_v2", |st, w| {
        nonnull(device)?;
        let gpu = w.gpus.iter().find(|g| g.index == index).ok_or(INVALID_ARGUMENT)?;
        check_not_lost(w, gpu)?;
        let h = st.handles.handle(gpu_target(gpu), w);
        unsafe { out(device, h as nvmlDevice_t) }
    })
}

/// A GPU UUID gives the GPU's handle, a MIG device UUID the MIG device's
/// (as NVML does since R470); `NVML_ERROR_NOT_FOUND` otherwise.
///
/// # Safety
/// `uuid` is NULL or NUL-terminated; `device` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetHandleByUUID", |st, w| {
        nonnull(device)?;
        let uuid = unsafe { input(uuid)? };
        let h = handle_by_uuid(st, w, uuid)?;
        unsafe { out(device, h as nvmlDevice_t) }
    })
}

fn handle_by_uuid(st: &mut state::State, w: &World, uuid: &str) -> Res<usize> {
    for gpu in &w.gpus {
        if gpu.uuid == uuid {
            check_not_lost(w, gpu)?;
            return Ok(st.handles.handle(gpu_target(gpu), w));
        }
        for gi in &gpu.gpu_instances {
            for ci in &gi.compute_instances {
                if ci.uuid == uuid {
                    check_not_lost(w, gpu)?;
                    return Ok(st.handles.handle(mig_target(gpu, gi, ci), w));
                }
            }
        }
    }
    Err(NOT_FOUND)
}

/// Accepts `domain:bus:device.function` in NVML's forms (`00000000:18:00.0`,
/// `0000:18:00.0`, `18:00.0`), hexadecimal, any case.
///
/// # Safety
/// `bus_id` is NULL or NUL-terminated; `device` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId_v2(
    bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetHandleByPciBusId_v2", |st, w| {
        nonnull(device)?;
        let wanted = parse_bus_id(unsafe { input(bus_id)? }).ok_or(INVALID_ARGUMENT)?;
        let gpu = w
            .gpus
            .iter()
            .find(|g| parse_bus_id(&g.pci_bus_id) == Some(wanted))
            .ok_or(NOT_FOUND)?;
        check_not_lost(w, gpu)?;
        let h = st.handles.handle(gpu_target(gpu), w);
        unsafe { out(device, h as nvmlDevice_t) }
    })
}

/// A PCI address: domain, bus, device, function.
pub fn parse_bus_id(s: &str) -> Option<(u32, u32, u32, u32)> {
    let s = s.trim();
    let (rest, function) = match s.rsplit_once('.') {
        Some((rest, f)) => (rest, u32::from_str_radix(f, 16).ok()?),
        None => (s, 0),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let hex = |p: &str| u32::from_str_radix(p, 16).ok();
    let (domain, bus, device) = match parts.as_slice() {
        [d, b, dev] => (hex(d)?, hex(b)?, hex(dev)?),
        [b, dev] => (0, hex(b)?, hex(dev)?),
        _ => return None,
    };
    (bus <= 0xff && device <= 0x1f && function <= 7).then_some((domain, bus, device, function))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_parse_in_every_nvml_form() {
        let want = Some((0, 0x18, 0, 0));
        assert_eq!(parse_bus_id("00000000:18:00.0"), want);
        assert_eq!(parse_bus_id("0000:18:00.0"), want);
        assert_eq!(parse_bus_id("18:00.0"), want);
        assert_eq!(parse_bus_id("00000000:AB:00.0"), Some((0, 0xab, 0, 0)));
        assert_eq!(parse_bus_id("00000000:ab:1f.7"), Some((0, 0xab, 0x1f, 7)));
        assert_eq!(parse_bus_id("nonsense"), None);
        assert_eq!(parse_bus_id("0:0:0:0.0"), None);
    }

    #[test]
    fn error_strings_are_nvidias() {
        assert_eq!(error_string(0).to_str().unwrap(), "Success");
        assert_eq!(error_string(3).to_str().unwrap(), "Not Supported");
        assert_eq!(error_string(6).to_str().unwrap(), "Not Found");
        assert_eq!(error_string(9).to_str().unwrap(), "Driver Not Loaded");
        assert_eq!(error_string(15).to_str().unwrap(), "GPU is lost");
        assert_eq!(error_string(19).to_str().unwrap(), "In use by another client");
        assert_eq!(error_string(23).to_str().unwrap(), "Insufficient Resources");
        assert_eq!(error_string(999).to_str().unwrap(), "Unknown Error");
        assert_eq!(error_string(12345).to_str().unwrap(), "Unknown Error");
    }
}
