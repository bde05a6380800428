#!/usr/bin/env python3
"""Reads a node through NVIDIA's own Python binding (PyPI nvidia-ml-py, module
pynvml) and prints what it saw as JSON on stdout.

fake-nvml's tests run it with LD_LIBRARY_PATH pointing at a directory whose
libnvidia-ml.so.1 is libfake_nvml.so, so an independent client checks the
fake's ABI: symbol names, struct layouts, versioned structs and return codes.
Every call goes through pynvml's public functions, the way its users call them.
"""

import ctypes
import json
import sys
import time

import pynvml as n


def s(value):
    """pynvml returns str or bytes depending on its version."""
    return value.decode() if isinstance(value, bytes) else value


def error_code(call):
    """The NVML return code of `call`: 0 on success."""
    try:
        call()
        return 0
    except n.NVMLError as e:
        return e.value


def profiles_and_instances(h):
    profiles, gpu_instances = [], []
    for index in range(n.NVML_GPU_INSTANCE_PROFILE_COUNT):
        try:
            info = n.nvmlDeviceGetGpuInstanceProfileInfo(h, index)  # the versioned (V, v2) call
        except n.NVMLError_NotSupported:
            continue
        # Placements: NULL array for the count, then the array.
        count = ctypes.c_uint(0)
        n.nvmlDeviceGetGpuInstancePossiblePlacements(h, info.id, None, ctypes.byref(count))
        placements = (n.c_nvmlGpuInstancePlacement_t * count.value)()
        n.nvmlDeviceGetGpuInstancePossiblePlacements(h, info.id, placements, ctypes.byref(count))
        profiles.append({
            "nvml_index": index,
            "id": info.id,
            "name": s(info.name),
            "slice_count": info.sliceCount,
            "instance_count": info.instanceCount,
            "sm_count": info.multiprocessorCount,
            "memory_mib": info.memorySizeMB,
            "copy_engines": info.copyEngineCount,
            "decoders": info.decoderCount,
            "jpegs": info.jpegCount,
            "ofas": info.ofaCount,
            "is_p2p_supported": info.isP2pSupported,
            "placements": [[p.start, p.size] for p in placements[:count.value]],
            "remaining": n.nvmlDeviceGetGpuInstanceRemainingCapacity(h, info.id),
        })

        gis = (n.c_nvmlGpuInstance_t * info.instanceCount)()
        gi_count = ctypes.c_uint(0)
        n.nvmlDeviceGetGpuInstances(h, info.id, gis, ctypes.byref(gi_count))
        for gi in gis[:gi_count.value]:
            gi_info = n.nvmlGpuInstanceGetInfo(gi)
            gpu_instances.append({
                "id": gi_info.id,
                "profile_id": gi_info.profileId,
                "placement_start": gi_info.placement.start,
                "placement_size": gi_info.placement.size,
                "compute_instances": compute_instances(gi),
            })
    gpu_instances.sort(key=lambda g: g["id"])
    return profiles, gpu_instances


def compute_instances(gi):
    out = []
    for index in range(n.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
        try:
            info = n.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                gi, index, n.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
        except n.NVMLError_NotSupported:
            continue
        cis = (n.c_nvmlComputeInstance_t * info.instanceCount)()
        count = ctypes.c_uint(0)
        n.nvmlGpuInstanceGetComputeInstances(gi, info.id, cis, ctypes.byref(count))
        for ci in cis[:count.value]:
            ci_info = n.nvmlComputeInstanceGetInfo(ci)
            out.append({
                "id": ci_info.id,
                "profile_id": ci_info.profileId,
                "profile": s(info.name),
                "placement_start": ci_info.placement.start,
                "placement_size": ci_info.placement.size,
            })
    out.sort(key=lambda c: c["id"])
    return out


def mig_devices(h):
    out = []
    for index in range(n.nvmlDeviceGetMaxMigDeviceCount(h)):
        try:
            m = n.nvmlDeviceGetMigDeviceHandleByIndex(h, index)
        except n.NVMLError_NotFound:
            continue
        mem = n.nvmlDeviceGetMemoryInfo(m, version=n.nvmlMemory_v2)
        parent = n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(m)
        out.append({
            "index": index,
            "uuid": s(n.nvmlDeviceGetUUID(m)),
            "name": s(n.nvmlDeviceGetName(m)),
            "is_mig_device": bool(n.nvmlDeviceIsMigDeviceHandle(m)),
            "gpu_instance_id": n.nvmlDeviceGetGpuInstanceId(m),
            "compute_instance_id": n.nvmlDeviceGetComputeInstanceId(m),
            "parent_uuid": s(n.nvmlDeviceGetUUID(parent)),
            "memory_total_bytes": mem.total,
            "memory_used_bytes": mem.used,
        })
    return out


GPM_METRICS = [
    n.NVML_GPM_METRIC_SM_UTIL,
    n.NVML_GPM_METRIC_SM_OCCUPANCY,
    n.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
    n.NVML_GPM_METRIC_DRAM_BW_UTIL,
    n.NVML_GPM_METRIC_FP64_UTIL,
]


def gpm(h, gpu_instances):
    """GPM support and, where supported, the metrics between two samples 150 ms
    apart (nvml.h asks for more than 100) of the GPU ("gpu") and of each GPU
    instance with compute instances ("gi<id>"); for one without, only what
    asking for a sample answers ("gi<id>": {"sample_rc": ...}): NVIDIA's DCGM
    does not ask."""
    out = {"supported": n.nvmlGpmQueryDeviceSupport(h).isSupportedDevice}
    if not out["supported"]:
        s = n.nvmlGpmSampleAlloc()
        out["sample_rc"] = error_code(lambda: n.nvmlGpmSampleGet(h, s))
        n.nvmlGpmSampleFree(s)
        return out
    scopes = [("gpu", lambda s: n.nvmlGpmSampleGet(h, s))]
    for gi in gpu_instances:
        if not gi["compute_instances"]:
            s = n.nvmlGpmSampleAlloc()
            out["gi%d" % gi["id"]] = {
                "sample_rc": error_code(lambda i=gi["id"]: n.nvmlGpmMigSampleGet(h, i, s))
            }
            n.nvmlGpmSampleFree(s)
            continue
        scopes.append(("gi%d" % gi["id"], lambda s, i=gi["id"]: n.nvmlGpmMigSampleGet(h, i, s)))
    pairs = {}
    for name, get in scopes:
        pairs[name] = [get(n.nvmlGpmSampleAlloc())]
    time.sleep(0.15)
    for name, get in scopes:
        pairs[name].append(get(n.nvmlGpmSampleAlloc()))
    for name, (first, second) in pairs.items():
        mg = n.c_nvmlGpmMetricsGet_t()
        mg.version = n.NVML_GPM_METRICS_GET_VERSION
        mg.numMetrics = len(GPM_METRICS)
        mg.sample1 = first
        mg.sample2 = second
        for i, metric in enumerate(GPM_METRICS):
            mg.metrics[i].metricId = metric
        n.nvmlGpmMetricsGet(mg)
        out[name] = {
            "rc": [mg.metrics[i].nvmlReturn for i in range(len(GPM_METRICS))],
            "percent": [round(mg.metrics[i].value, 3) for i in range(len(GPM_METRICS))],
        }
        n.nvmlGpmSampleFree(first)
        n.nvmlGpmSampleFree(second)
    return out


def main():
    n.nvmlInit()
    node = {
        "driver_version": s(n.nvmlSystemGetDriverVersion()),
        "nvml_version": s(n.nvmlSystemGetNVMLVersion()),
        "cuda_driver_version": n.nvmlSystemGetCudaDriverVersion(),
        "error_strings": {str(code): s(n.nvmlErrorString(code)) for code in (0, 3, 6, 15, 23)},
        "gpus": [],
    }
    for i in range(n.nvmlDeviceGetCount()):
        h = n.nvmlDeviceGetHandleByIndex(i)
        current, pending = n.nvmlDeviceGetMigMode(h)
        pci = n.nvmlDeviceGetPciInfo(h)
        mem = n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2)
        profiles, gpu_instances = profiles_and_instances(h)
        node["gpus"].append({
            "index": n.nvmlDeviceGetIndex(h),
            "name": s(n.nvmlDeviceGetName(h)),
            "uuid": s(n.nvmlDeviceGetUUID(h)),
            "pci_bus_id": s(pci.busId),
            "pci_device_id": pci.pciDeviceId,
            "mig_current": current == n.NVML_DEVICE_MIG_ENABLE,
            "mig_pending": pending == n.NVML_DEVICE_MIG_ENABLE,
            "memory_total_bytes": mem.total,
            "memory_reserved_bytes": mem.reserved,
            "memory_v2_version": mem.version,
            "persistence_mode": n.nvmlDeviceGetPersistenceMode(h),
            "ecc_mode": n.nvmlDeviceGetEccMode(h),
            "is_mig_device": bool(n.nvmlDeviceIsMigDeviceHandle(h)),
            "gpu_instance_id_rc": error_code(lambda: n.nvmlDeviceGetGpuInstanceId(h)),
            "compute_instance_id_rc": error_code(lambda: n.nvmlDeviceGetComputeInstanceId(h)),
            "mig_device_handle_0_rc": error_code(lambda: n.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)),
            "utilization_rc": error_code(lambda: n.nvmlDeviceGetUtilizationRates(h)),
            "profiles": profiles,
            "gpu_instances": gpu_instances,
            "mig_devices": mig_devices(h),
            "gpm": gpm(h, gpu_instances),
        })
    n.nvmlShutdown()
    json.dump(node, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
