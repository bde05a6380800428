//! Compile-time proof that every exported function has the signature of
//! NVIDIA's `nvml.h`, as bindgen rendered it for `nvml-wrapper-sys`: each line
//! only type-checks if the function coerces to the loader's pointer type.

use nvml_wrapper_sys::bindings::NvmlLib;

fn same<T, E>(_: &Result<T, E>, _: T) {}

#[allow(dead_code)]
fn signatures_match_nvml_h(lib: &NvmlLib) {
    use crate::*;
    same(&lib.nvmlInit_v2, nvmlInit_v2);
    same(&lib.nvmlInitWithFlags, nvmlInitWithFlags);
    same(&lib.nvmlShutdown, nvmlShutdown);
    same(&lib.nvmlErrorString, nvmlErrorString);
    same(&lib.nvmlSystemGetDriverVersion, nvmlSystemGetDriverVersion);
    same(&lib.nvmlSystemGetNVMLVersion, nvmlSystemGetNVMLVersion);
    same(
        &lib.nvmlSystemGetCudaDriverVersion,
        nvmlSystemGetCudaDriverVersion,
    );
    same(
        &lib.nvmlSystemGetCudaDriverVersion_v2,
        nvmlSystemGetCudaDriverVersion_v2,
    );
    same(&lib.nvmlDeviceGetCount_v2, nvmlDeviceGetCount_v2);
    same(&lib.nvmlDeviceGetHandleByIndex_v2, nvmlDeviceGetHandleByIndex_v2);
    same(&lib.nvmlDeviceGetHandleByUUID, nvmlDeviceGetHandleByUUID);
    same(
        &lib.nvmlDeviceGetHandleByPciBusId_v2,
        nvmlDeviceGetHandleByPciBusId_v2,
    );
    same(&lib.nvmlDeviceGetIndex, nvmlDeviceGetIndex);
    same(&lib.nvmlDeviceGetMinorNumber, nvmlDeviceGetMinorNumber);
    same(&lib.nvmlDeviceGetName, nvmlDeviceGetName);
    same(&lib.nvmlDeviceGetUUID, nvmlDeviceGetUUID);
    same(&lib.nvmlDeviceGetPciInfo_v3, nvmlDeviceGetPciInfo_v3);
    same(&lib.nvmlDeviceGetMemoryInfo, nvmlDeviceGetMemoryInfo);
    same(&lib.nvmlDeviceGetMemoryInfo_v2, nvmlDeviceGetMemoryInfo_v2);
    same(&lib.nvmlDeviceGetPersistenceMode, nvmlDeviceGetPersistenceMode);
    same(&lib.nvmlDeviceGetEccMode, nvmlDeviceGetEccMode);
    same(&lib.nvmlDeviceGetTotalEccErrors, nvmlDeviceGetTotalEccErrors);
    same(&lib.nvmlDeviceGetRemappedRows, nvmlDeviceGetRemappedRows);
    same(&lib.nvmlDeviceGetPowerUsage, nvmlDeviceGetPowerUsage);
    same(
        &lib.nvmlDeviceGetEnforcedPowerLimit,
        nvmlDeviceGetEnforcedPowerLimit,
    );
    same(&lib.nvmlDeviceGetTemperature, nvmlDeviceGetTemperature);
    same(&lib.nvmlDeviceGetClockInfo, nvmlDeviceGetClockInfo);
    same(&lib.nvmlDeviceGetUtilizationRates, nvmlDeviceGetUtilizationRates);
    same(
        &lib.nvmlDeviceGetTotalEnergyConsumption,
        nvmlDeviceGetTotalEnergyConsumption,
    );
    same(&lib.nvmlDeviceGetPcieThroughput, nvmlDeviceGetPcieThroughput);
    same(&lib.nvmlDeviceGetArchitecture, nvmlDeviceGetArchitecture);
    same(&lib.nvmlDeviceGetMigMode, nvmlDeviceGetMigMode);
    same(
        &lib.nvmlDeviceGetMaxMigDeviceCount,
        nvmlDeviceGetMaxMigDeviceCount,
    );
    same(&lib.nvmlDeviceIsMigDeviceHandle, nvmlDeviceIsMigDeviceHandle);
    same(
        &lib.nvmlDeviceGetMigDeviceHandleByIndex,
        nvmlDeviceGetMigDeviceHandleByIndex,
    );
    same(
        &lib.nvmlDeviceGetDeviceHandleFromMigDeviceHandle,
        nvmlDeviceGetDeviceHandleFromMigDeviceHandle,
    );
    same(&lib.nvmlDeviceGetGpuInstanceId, nvmlDeviceGetGpuInstanceId);
    same(
        &lib.nvmlDeviceGetComputeInstanceId,
        nvmlDeviceGetComputeInstanceId,
    );
    same(
        &lib.nvmlDeviceGetGpuInstanceProfileInfo,
        nvmlDeviceGetGpuInstanceProfileInfo,
    );
    same(
        &lib.nvmlDeviceGetGpuInstanceProfileInfoV,
        nvmlDeviceGetGpuInstanceProfileInfoV,
    );
    same(
        &lib.nvmlDeviceGetGpuInstancePossiblePlacements_v2,
        nvmlDeviceGetGpuInstancePossiblePlacements_v2,
    );
    same(
        &lib.nvmlDeviceGetGpuInstanceRemainingCapacity,
        nvmlDeviceGetGpuInstanceRemainingCapacity,
    );
    same(&lib.nvmlDeviceGetGpuInstances, nvmlDeviceGetGpuInstances);
    same(&lib.nvmlDeviceGetGpuInstanceById, nvmlDeviceGetGpuInstanceById);
    same(&lib.nvmlGpuInstanceGetInfo, nvmlGpuInstanceGetInfo);
    same(
        &lib.nvmlGpuInstanceGetComputeInstanceProfileInfo,
        nvmlGpuInstanceGetComputeInstanceProfileInfo,
    );
    same(
        &lib.nvmlGpuInstanceGetComputeInstanceProfileInfoV,
        nvmlGpuInstanceGetComputeInstanceProfileInfoV,
    );
    same(
        &lib.nvmlGpuInstanceGetComputeInstanceRemainingCapacity,
        nvmlGpuInstanceGetComputeInstanceRemainingCapacity,
    );
    same(
        &lib.nvmlGpuInstanceGetComputeInstances,
        nvmlGpuInstanceGetComputeInstances,
    );
    same(
        &lib.nvmlGpuInstanceGetComputeInstanceById,
        nvmlGpuInstanceGetComputeInstanceById,
    );
    same(&lib.nvmlComputeInstanceGetInfo_v2, nvmlComputeInstanceGetInfo_v2);
    // nvmlComputeInstanceGetInfo: only in the bindings' `legacy-functions`
    // feature; it takes the same pointer type as _v2.
    same(&lib.nvmlComputeInstanceGetInfo_v2, nvmlComputeInstanceGetInfo);
    same(
        &lib.nvmlDeviceGetSupportedEventTypes,
        nvmlDeviceGetSupportedEventTypes,
    );
    same(&lib.nvmlEventSetCreate, nvmlEventSetCreate);
    same(&lib.nvmlDeviceRegisterEvents, nvmlDeviceRegisterEvents);
    same(&lib.nvmlEventSetWait_v2, nvmlEventSetWait_v2);
    same(&lib.nvmlEventSetFree, nvmlEventSetFree);
    same(&lib.nvmlGpmQueryDeviceSupport, nvmlGpmQueryDeviceSupport);
    same(&lib.nvmlGpmSampleAlloc, nvmlGpmSampleAlloc);
    same(&lib.nvmlGpmSampleFree, nvmlGpmSampleFree);
    same(&lib.nvmlGpmSampleGet, nvmlGpmSampleGet);
    same(&lib.nvmlGpmMigSampleGet, nvmlGpmMigSampleGet);
    same(&lib.nvmlGpmMetricsGet, nvmlGpmMetricsGet);
}
