#!/usr/bin/env python3
"""Records what NVML says about a node's MIG state, as JSON on stdout.

READ-ONLY: this probe only queries. It never enables or disables MIG, never
creates or destroys GPU or compute instances, never resets a GPU and never
changes any setting. Every NVML function it calls is a Get/Is query (see
QUERIES below; tests/probe.rs checks that no other NVML function is named).

It uses NVIDIA's Python binding (PyPI nvidia-ml-py, module pynvml), called
the way its users call it. scripts/probe-gpu.sh runs it on a real node; the
tests run it against fake-nvml (libfake_nvml.so as libnvidia-ml.so.1 on
LD_LIBRARY_PATH) to prove it before a real GPU is at hand.

Every call is recorded as {"rc": <nvmlReturn_t>, "value": ...} on success
(rc 0) or {"rc": <code>, "error": "<NVML's text>"} on failure, so a replay
sees exactly which queries the driver refused.
"""

import ctypes
import json
import sys

import pynvml as n

# The NVML functions this probe may call, all read-only queries.
QUERIES = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetArchitecture",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetGpuInstanceProfileInfo",
    "nvmlDeviceGetGpuInstancePossiblePlacements",
    "nvmlDeviceGetGpuInstanceRemainingCapacity",
    "nvmlDeviceGetGpuInstances",
    "nvmlGpuInstanceGetInfo",
    "nvmlGpuInstanceGetComputeInstanceProfileInfo",
    "nvmlGpuInstanceGetComputeInstanceRemainingCapacity",
    "nvmlGpuInstanceGetComputeInstancePossiblePlacements",
    "nvmlGpuInstanceGetComputeInstances",
    "nvmlComputeInstanceGetInfo",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
)

FORMAT = 1

# Profile indexes are probed from 0 until the driver refuses the index
# (NVML_ERROR_INVALID_ARGUMENT, nvml.h: "profile is invalid"); this cap only
# guards against a driver that never refuses.
INDEX_CAP = 64


def text(value):
    """pynvml returns str or bytes depending on its version."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def call(function, *args, convert=lambda v: v):
    """One NVML query as {"rc", "value"} or {"rc", "error"}."""
    try:
        return {"rc": n.NVML_SUCCESS, "value": convert(function(*args))}
    except n.NVMLError as e:
        return {"rc": e.value, "error": str(e)}


def ok(result):
    return result["rc"] == n.NVML_SUCCESS


def placement(p):
    return [p.start, p.size]


def gi_profile_info(info):
    return {
        "id": info.id,
        "name": text(info.name),
        "slice_count": info.sliceCount,
        "instance_count": info.instanceCount,
        "sm_count": info.multiprocessorCount,
        "memory_mib": info.memorySizeMB,
        "is_p2p_supported": info.isP2pSupported,
        "engines": {
            "copy": info.copyEngineCount,
            "decoder": info.decoderCount,
            "encoder": info.encoderCount,
            "jpeg": info.jpegCount,
            "ofa": info.ofaCount,
        },
    }


def ci_profile_info(info):
    return {
        "id": info.id,
        "name": text(info.name),
        "slice_count": info.sliceCount,
        "instance_count": info.instanceCount,
        "sm_count": info.multiprocessorCount,
        "shared_engines": {
            "copy": info.sharedCopyEngineCount,
            "decoder": info.sharedDecoderCount,
            "encoder": info.sharedEncoderCount,
            "jpeg": info.sharedJpegCount,
            "ofa": info.sharedOfaCount,
        },
    }


def placements(function, owner, profile_id, struct):
    """The two-call pattern nvml.h documents: a NULL array gives the count."""

    def query():
        count = ctypes.c_uint(0)
        function(owner, profile_id, None, ctypes.byref(count))
        array = (struct * count.value)()
        function(owner, profile_id, array, ctypes.byref(count))
        return [placement(p) for p in array[: count.value]]

    return call(query)


def handles(function, owner, profile_id, capacity, handle_type):
    """Instance handles of one profile; nvml.h sizes the array by the
    profile's instanceCount."""

    def query():
        count = ctypes.c_uint(max(capacity, 1))
        array = (handle_type * count.value)()
        function(owner, profile_id, array, ctypes.byref(count))
        return list(array[: count.value])

    return call(query)


def by_index(query, what):
    """Entries for index 0, 1, ... until the driver refuses the index."""
    entries = []
    for index in range(INDEX_CAP):
        result = call(query, index)
        entry = {"index": index, "rc": result["rc"]}
        if ok(result):
            entry["info"] = what(result["value"])
        else:
            entry["error"] = result["error"]
        entries.append(entry)
        if result["rc"] == n.NVML_ERROR_INVALID_ARGUMENT:
            break
    return entries


def compute_instances(gi, ci_profile_id, capacity):
    listed = handles(
        n.nvmlGpuInstanceGetComputeInstances, gi, ci_profile_id, capacity, n.c_nvmlComputeInstance_t
    )
    out = {"rc": listed["rc"]}
    if not ok(listed):
        out["error"] = listed["error"]
        return out
    out["value"] = [
        call(
            n.nvmlComputeInstanceGetInfo,
            ci,
            convert=lambda i: {"id": i.id, "profile_id": i.profileId, "placement": placement(i.placement)},
        )
        for ci in listed["value"]
    ]
    return out


def gpu_instance(gi, listed_under):
    entry = {
        "listed_under_profile": listed_under,
        "info": call(
            n.nvmlGpuInstanceGetInfo,
            gi,
            convert=lambda i: {"id": i.id, "profile_id": i.profileId, "placement": placement(i.placement)},
        ),
    }
    profiles = by_index(
        lambda index: n.nvmlGpuInstanceGetComputeInstanceProfileInfo(
            gi, index, n.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
        ),
        ci_profile_info,
    )
    for p in profiles:
        if "info" not in p:
            continue
        ci_id, capacity = p["info"]["id"], p["info"]["instance_count"]
        p["remaining_capacity"] = call(n.nvmlGpuInstanceGetComputeInstanceRemainingCapacity, gi, ci_id)
        p["possible_placements"] = placements(
            n.nvmlGpuInstanceGetComputeInstancePossiblePlacements, gi, ci_id, n.c_nvmlComputeInstancePlacement_t
        )
        p["compute_instances"] = compute_instances(gi, ci_id, capacity)
    entry["compute_instance_profiles"] = profiles
    return entry


def mig_devices(handle, max_count):
    """MIG device handles by index, one past the last so the refusal is recorded too."""
    devices = []
    for index in range(max_count + 1):
        result = call(n.nvmlDeviceGetMigDeviceHandleByIndex, handle, index)
        entry = {"index": index, "rc": result["rc"]}
        if ok(result):
            mig = result["value"]
            entry["uuid"] = call(n.nvmlDeviceGetUUID, mig, convert=text)
            entry["gpu_instance_id"] = call(n.nvmlDeviceGetGpuInstanceId, mig)
            entry["compute_instance_id"] = call(n.nvmlDeviceGetComputeInstanceId, mig)
        else:
            entry["error"] = result["error"]
        devices.append(entry)
    return devices


def gpu(index):
    entry = {"index": index}
    got = call(n.nvmlDeviceGetHandleByIndex, index)
    entry["handle"] = {k: v for k, v in got.items() if k != "value"}
    if not ok(got):
        return entry
    h = got["value"]
    entry["name"] = call(n.nvmlDeviceGetName, h, convert=text)
    entry["uuid"] = call(n.nvmlDeviceGetUUID, h, convert=text)
    entry["pci"] = call(
        n.nvmlDeviceGetPciInfo,
        h,
        convert=lambda p: {"bus_id": text(p.busId), "pci_device_id": p.pciDeviceId},
    )
    entry["architecture"] = call(n.nvmlDeviceGetArchitecture, h)
    entry["memory_total_bytes"] = call(n.nvmlDeviceGetMemoryInfo, h, convert=lambda m: m.total)
    entry["mig_mode"] = call(n.nvmlDeviceGetMigMode, h, convert=lambda m: {"current": m[0], "pending": m[1]})
    entry["max_mig_device_count"] = call(n.nvmlDeviceGetMaxMigDeviceCount, h)

    profiles = by_index(lambda i: n.nvmlDeviceGetGpuInstanceProfileInfo(h, i), gi_profile_info)
    instances = []
    for p in profiles:
        if "info" not in p:
            continue
        profile_id, capacity = p["info"]["id"], p["info"]["instance_count"]
        p["possible_placements"] = placements(
            n.nvmlDeviceGetGpuInstancePossiblePlacements, h, profile_id, n.c_nvmlGpuInstancePlacement_t
        )
        p["remaining_capacity"] = call(n.nvmlDeviceGetGpuInstanceRemainingCapacity, h, profile_id)
        listed = handles(n.nvmlDeviceGetGpuInstances, h, profile_id, capacity, n.c_nvmlGpuInstance_t)
        p["gpu_instances"] = {"rc": listed["rc"]}
        if ok(listed):
            p["gpu_instances"]["count"] = len(listed["value"])
            instances.extend(gpu_instance(gi, profile_id) for gi in listed["value"])
        else:
            p["gpu_instances"]["error"] = listed["error"]
    entry["gpu_instance_profiles"] = profiles
    entry["gpu_instances"] = instances
    max_count = entry["max_mig_device_count"].get("value", 0)
    entry["mig_devices"] = mig_devices(h, max_count)
    return entry


def main():
    record = {"format": FORMAT, "probe": "scripts/probe_nvml.py"}
    try:
        from importlib.metadata import version

        record["pynvml_version"] = version("nvidia-ml-py")
    except Exception:  # an unpackaged pynvml has no metadata; the probe still runs
        record["pynvml_version"] = None
    init = call(n.nvmlInit)
    record["init"] = {k: v for k, v in init.items() if k != "value"}
    if not ok(init):
        json.dump(record, sys.stdout, indent=1)
        print()
        return 1
    try:
        record["driver_version"] = call(n.nvmlSystemGetDriverVersion, convert=text)
        record["nvml_version"] = call(n.nvmlSystemGetNVMLVersion, convert=text)
        record["cuda_driver_version"] = call(n.nvmlSystemGetCudaDriverVersion)
        record["device_count"] = call(n.nvmlDeviceGetCount)
        record["gpus"] = [gpu(i) for i in range(record["device_count"].get("value", 0))]
    finally:
        n.nvmlShutdown()
    json.dump(record, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
