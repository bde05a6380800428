#!/usr/bin/env python3
"""An oracle for the exporter's geometry and memory series, written against
NVIDIA's own Python binding (PyPI nvidia-ml-py, module pynvml) and nothing of
this project: it reads the node through pynvml, computes the value every
covered series must have, and compares that with an exposition the exporter
served (`/metrics`, Prometheus text format).

    MIG_WORLD=world.json LD_LIBRARY_PATH=<dir with libnvidia-ml.so.1> \\
        python3 nvml_oracle.py METRICS_FILE

tests/oracle.rs runs it with fake-nvml as libnvidia-ml.so.1 over a scripted
sequence of geometries, after the exporter (`--nvml` on the same library and
World) has polled each one. It prints a JSON report on stdout and exits 0 when
every covered series matches, 1 when some do not (the report's `mismatches`
name each), 2 when it cannot read the node or the exposition.

Covered families: for each, the set of series (every label) and every value
must be exactly the expected one, so a missing, extra or stale series fails
as a wrong value does. Where a value comes from (nvml.h is the NVML API
reference header NVIDIA ships with the driver; the fixture is
shared/fixtures/h100-80gb-hbm3-real, a real H100 80GB HBM3 on driver 580):

  nvidia_gpu_info                 1 per GPU; labels nvmlDeviceGetIndex, _GetUUID,
                                  _GetName, nvmlDeviceGetPciInfo busId,
                                  nvmlSystemGetDriverVersion
  nvidia_gpu_memory_total_bytes   nvmlDeviceGetMemoryInfo_v2 total
  nvidia_gpu_memory_used_bytes    nvmlDeviceGetMemoryInfo_v2 used: version 2
                                  reports the driver's reservation apart
                                  (nvml.h, nvmlMemory_v2_t), as nvidia-smi does
                                  (the fixture: 0 MiB used, 480 MiB reserved);
                                  both absent where NVML answers
                                  NVML_ERROR_NO_PERMISSION (nvml.h: a GPU in MIG
                                  mode tells its memory only to a privileged
                                  caller)
  nvidia_gpu_memory_free_bytes    expected absent: the exporter reads free
                                  memory from DCGM only (docs/metrics.md), and
                                  the test runs it with --no-dcgm
  nvidia_mig_mode_current/_pending  nvmlDeviceGetMigMode == NVML_DEVICE_MIG_ENABLE
  nvidia_mig_compute_slices_capacity  the largest sliceCount of a GPU-instance
                                  profile (the whole-GPU profile's: 7g on H100)
  nvidia_mig_compute_slices_used  sum of sliceCount over the GPU's instances
  nvidia_mig_memory_slices_capacity  the memory slots the placements span:
                                  max(start + size) over every profile's
                                  nvmlDeviceGetGpuInstancePossiblePlacements
  nvidia_mig_memory_slices_used   slots covered by the GPU instances'
                                  placements (nvmlGpuInstanceGetInfo)
  nvidia_mig_profile_max_instances  nvmlGpuInstanceProfileInfo_v2 instanceCount
  nvidia_mig_profile_remaining_instances  this oracle's own count (below),
                                  which must also equal
                                  nvmlDeviceGetGpuInstanceRemainingCapacity
  nvidia_mig_memory_slices_unplaceable  only in MIG mode: the free slots (of
                                  the memory_slices_capacity) that no
                                  placement of a profile with remaining
                                  instances above 0 covers without touching
                                  an occupied slot (nvml.h,
                                  nvmlDeviceGetGpuInstancePossiblePlacements_v2:
                                  "Creation of new GPU instance will fail if
                                  there is overlap with the already occupied
                                  memory slices")
  nvidia_mig_largest_creatable_profile_memory_slices / _compute_slices  only
                                  in MIG mode: the largest placement size and
                                  sliceCount among the profiles with remaining
                                  instances above 0; 0 if none
  nvidia_mig_gpu_instance_info    1 per GPU instance: id, profileId, placement
                                  from nvmlGpuInstanceGetInfo; profile name from
                                  its profile info, without NVML's "MIG " prefix
  nvidia_mig_gpu_instance_compute_slices  its profile's sliceCount
  nvidia_mig_gpu_instance_compute_instances  compute instances listed by
                                  nvmlGpuInstanceGetComputeInstances over every
                                  compute-instance profile
  nvidia_mig_gpu_instance_memory_total_bytes  its profile's memorySizeMB MiB
  nvidia_mig_gpu_instance_memory_used_bytes  nvmlDeviceGetMemoryInfo_v2 used of
                                  its MIG devices (one per compute instance,
                                  all of one GPU instance's memory, so they
                                  must agree); absent for a GPU instance without
                                  compute instances, which has no MIG device
  nvidia_mig_gpu_instance_memory_free_bytes  expected absent (DCGM only)
  nvidia_mig_compute_instance_info  1 per compute instance: id, profileId,
                                  placement from nvmlComputeInstanceGetInfo;
                                  ci_profile the name of its compute-instance
                                  profile without "MIG "; mig_uuid the UUID of
                                  the MIG device (nvmlDeviceGetMigDeviceHandleByIndex
                                  over nvmlDeviceGetMaxMigDeviceCount) whose
                                  nvmlDeviceGetGpuInstanceId and
                                  _GetComputeInstanceId name it

Remaining capacity: nvml.h defines nvmlDeviceGetGpuInstanceRemainingCapacity
as how many more instances of the profile can be created. This oracle counts
it from the layout: the profile's possible placements whose memory slots are
all free (a largest set of pairwise disjoint ones), capped by the compute
slices left (capacity minus used, over the profile's sliceCount) and by
instanceCount minus the instances of that profile that exist. With MIG
disabled there are no instances, so every profile has its empty-GPU count,
as the fixture's MIG-disabled H100 answers (nvml_mig_probe.txt:
remaining_capacity id=19 -> 7, id=14 -> 3, ...). unverified: that rule on a
GPU holding instances; the fixture has none. A difference between this count
and NVML's answer is reported as a fault of the NVML being read (fake-nvml),
not of the exporter.

Not covered (other tests hold them): health (persistence, ECC modes and
counts, remapped rows, power, temperature, clock, utilization, energy, PCIe,
XIDs: tests/nvml.rs, tests/faults.rs), activity ratios (tests/gpm.rs,
tests/dcgm.rs), drift and expected instances (tests/drift.rs), the geometry
change timestamp (a poll time, not a value of NVML), pod ownership
(tests/kubelet.rs) and the exporter's own mig_exporter_* families.
"""

import ctypes
import json
import sys

import pynvml as n

MIB = 1024 * 1024

# Profile indexes are asked from 0 until NVML refuses the index
# (NVML_ERROR_INVALID_ARGUMENT, nvml.h: "profile is invalid"); an index the
# GPU lacks answers NVML_ERROR_NOT_SUPPORTED (the fixture's H100: indexes 5,
# 6, 8, 10-15). The cap only guards against a library that never refuses.
INDEX_CAP = 64

# Families whose series the exporter must serve with exactly these values.
COVERED = (
    "nvidia_gpu_info",
    "nvidia_gpu_memory_total_bytes",
    "nvidia_gpu_memory_used_bytes",
    "nvidia_gpu_memory_free_bytes",
    "nvidia_mig_mode_current",
    "nvidia_mig_mode_pending",
    "nvidia_mig_compute_slices_capacity",
    "nvidia_mig_compute_slices_used",
    "nvidia_mig_memory_slices_capacity",
    "nvidia_mig_memory_slices_used",
    "nvidia_mig_profile_max_instances",
    "nvidia_mig_profile_remaining_instances",
    "nvidia_mig_memory_slices_unplaceable",
    "nvidia_mig_largest_creatable_profile_memory_slices",
    "nvidia_mig_largest_creatable_profile_compute_slices",
    "nvidia_mig_gpu_instance_info",
    "nvidia_mig_gpu_instance_compute_slices",
    "nvidia_mig_gpu_instance_compute_instances",
    "nvidia_mig_gpu_instance_memory_total_bytes",
    "nvidia_mig_gpu_instance_memory_used_bytes",
    "nvidia_mig_gpu_instance_memory_free_bytes",
    "nvidia_mig_compute_instance_info",
)


class Unreadable(Exception):
    """The node or the exposition could not be read: exit 2."""


def text(value):
    """pynvml returns str or bytes depending on its version."""
    return value.decode() if isinstance(value, bytes) else value


def short(name):
    """A profile name as the exporter labels it: NVML's without "MIG "."""
    name = text(name)
    return name[len("MIG "):] if name.startswith("MIG ") else name


def every_index(read):
    """read(index) for every profile index until NVML refuses the index."""
    found = []
    for index in range(INDEX_CAP):
        try:
            found.append(read(index))
        except n.NVMLError_NotSupported:
            continue
        except n.NVMLError_InvalidArgument:
            break
    return found


def placements(h, profile_id):
    count = ctypes.c_uint(0)
    n.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, None, ctypes.byref(count))
    array = (n.c_nvmlGpuInstancePlacement_t * count.value)()
    n.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, array, ctypes.byref(count))
    return [(p.start, p.size) for p in array[:count.value]]


def gpu_instances(h, profile):
    array = (n.c_nvmlGpuInstance_t * profile["instance_count"])()
    count = ctypes.c_uint(0)
    n.nvmlDeviceGetGpuInstances(h, profile["id"], array, ctypes.byref(count))
    return list(array[:count.value])


def compute_instances(gi):
    """(CI info, its profile's name) of every compute instance of `gi`."""
    profiles = every_index(lambda i: n.nvmlGpuInstanceGetComputeInstanceProfileInfo(
        gi, i, n.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED))
    out = []
    for p in profiles:
        array = (n.c_nvmlComputeInstance_t * p.instanceCount)()
        count = ctypes.c_uint(0)
        n.nvmlGpuInstanceGetComputeInstances(gi, p.id, array, ctypes.byref(count))
        for ci in array[:count.value]:
            out.append((n.nvmlComputeInstanceGetInfo(ci), text(p.name)))
    return out


def mig_devices(h):
    """(GI id, CI id) -> (UUID, memory used) of every MIG device of `h`."""
    found = {}
    problems = []
    for index in range(n.nvmlDeviceGetMaxMigDeviceCount(h)):
        try:
            m = n.nvmlDeviceGetMigDeviceHandleByIndex(h, index)
        except n.NVMLError_NotFound:
            continue  # nvml.h: NOT_FOUND "if no valid MIG device was found at index"
        key = (n.nvmlDeviceGetGpuInstanceId(m), n.nvmlDeviceGetComputeInstanceId(m))
        memory = n.nvmlDeviceGetMemoryInfo(m, version=n.nvmlMemory_v2)
        if key in found:
            problems.append("two MIG devices of GI %d CI %d" % key)
        found[key] = (text(n.nvmlDeviceGetUUID(m)), memory.used)
    return found, problems


def disjoint_free(candidates, occupied):
    """The most pairwise-disjoint placements of `candidates` on free slots."""
    free = [set(range(s, s + size)) for s, size in candidates
            if not occupied & set(range(s, s + size))]
    best = 0

    def grow(start, taken, used):
        nonlocal best
        best = max(best, taken)
        for i in range(start, len(free)):
            if not used & free[i]:
                grow(i + 1, taken + 1, used | free[i])

    grow(0, 0, set())
    return best


def read_gpu(h, driver, problems):
    """One GPU as pynvml sees it, and the expected series it yields."""
    index = n.nvmlDeviceGetIndex(h)
    uuid = text(n.nvmlDeviceGetUUID(h))
    at = "GPU %d" % index
    gpu = {"gpu": str(index), "gpu_uuid": uuid}
    series = []

    def put(family, labels, value):
        series.append((family, labels, value))

    put("nvidia_gpu_info", dict(gpu, name=text(n.nvmlDeviceGetName(h)),
                                pci_bus_id=text(n.nvmlDeviceGetPciInfo(h).busId),
                                driver_version=driver), 1)
    memory_told = True
    try:
        memory = n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2)
        put("nvidia_gpu_memory_total_bytes", gpu, memory.total)
        put("nvidia_gpu_memory_used_bytes", gpu, memory.used)
    except n.NVMLError_NoPermission:
        # nvml.h (nvmlDeviceGetMemoryInfo): in MIG mode the GPU's aggregate
        # memory is told only to a caller with the privileges for it; to
        # another, there is no value to serve.
        memory_told = False

    current, pending = n.nvmlDeviceGetMigMode(h)
    mig_on = current == n.NVML_DEVICE_MIG_ENABLE
    put("nvidia_mig_mode_current", gpu, int(mig_on))
    put("nvidia_mig_mode_pending", gpu, int(pending == n.NVML_DEVICE_MIG_ENABLE))

    profiles = []
    for info in every_index(lambda i: n.nvmlDeviceGetGpuInstanceProfileInfo(h, i)):
        profiles.append({
            "id": info.id,
            "name": short(info.name),
            "slices": info.sliceCount,
            "instance_count": info.instanceCount,
            "memory_bytes": info.memorySizeMB * MIB,
            "placements": placements(h, info.id),
        })
    by_id = {p["id"]: p for p in profiles}
    slice_capacity = max((p["slices"] for p in profiles), default=0)
    slot_capacity = max((s + size for p in profiles for s, size in p["placements"]), default=0)

    instances = []  # (GI info, profile, [(CI info, CI profile name)])
    if mig_on:
        for p in profiles:
            for gi in gpu_instances(h, p):
                info = n.nvmlGpuInstanceGetInfo(gi)
                instances.append((info, by_id[info.profileId], compute_instances(gi)))
    instances.sort(key=lambda x: x[0].id)
    devices, device_problems = mig_devices(h) if mig_on else ({}, [])
    problems.extend("%s: %s" % (at, p) for p in device_problems)

    occupied = set()
    slices_used = 0
    for info, profile, _ in instances:
        slices_used += profile["slices"]
        occupied |= set(range(info.placement.start, info.placement.start + info.placement.size))
    put("nvidia_mig_compute_slices_capacity", gpu, slice_capacity)
    put("nvidia_mig_compute_slices_used", gpu, slices_used)
    put("nvidia_mig_memory_slices_capacity", gpu, slot_capacity)
    put("nvidia_mig_memory_slices_used", gpu, len(occupied))

    remaining = {}
    for p in profiles:
        labels = dict(gpu, profile=p["name"], profile_id=str(p["id"]))
        put("nvidia_mig_profile_max_instances", labels, p["instance_count"])
        existing = sum(1 for info, _, _ in instances if info.profileId == p["id"])
        ours = min(disjoint_free(p["placements"], occupied),
                   (slice_capacity - slices_used) // p["slices"] if p["slices"] else 0,
                   max(p["instance_count"] - existing, 0))
        nvml = n.nvmlDeviceGetGpuInstanceRemainingCapacity(h, p["id"])
        if nvml != ours:
            problems.append("%s profile %s: NVML's remaining capacity is %d, the layout leaves %d"
                            % (at, p["name"], nvml, ours))
        put("nvidia_mig_profile_remaining_instances", labels, ours)
        remaining[p["id"]] = ours

    if mig_on:
        creatable = [p for p in profiles if remaining[p["id"]] > 0]
        coverable = set()
        for p in creatable:
            for s, size in p["placements"]:
                slots = set(range(s, s + size))
                if not slots & occupied:
                    coverable |= slots
        free = set(range(slot_capacity)) - occupied
        put("nvidia_mig_memory_slices_unplaceable", gpu, len(free - coverable))
        put("nvidia_mig_largest_creatable_profile_memory_slices", gpu,
            max((size for p in creatable for _, size in p["placements"]), default=0))
        put("nvidia_mig_largest_creatable_profile_compute_slices", gpu,
            max((p["slices"] for p in creatable), default=0))

    placed = 0
    for info, profile, cis in instances:
        gi = dict(gpu, gi=str(info.id), profile=profile["name"])
        put("nvidia_mig_gpu_instance_info",
            dict(gpu, gi=str(info.id), profile=profile["name"], profile_id=str(info.profileId),
                 placement_start=str(info.placement.start),
                 placement_size=str(info.placement.size)), 1)
        put("nvidia_mig_gpu_instance_compute_slices", gi, profile["slices"])
        put("nvidia_mig_gpu_instance_compute_instances", gi, len(cis))
        put("nvidia_mig_gpu_instance_memory_total_bytes", gi, profile["memory_bytes"])
        used = set()
        for ci, ci_profile in sorted(cis, key=lambda c: c[0].id):
            device = devices.get((info.id, ci.id))
            if device is None:
                problems.append("%s GI %d CI %d: no MIG device" % (at, info.id, ci.id))
                continue
            placed += 1
            used.add(device[1])
            put("nvidia_mig_compute_instance_info",
                dict(gpu, gi=str(info.id), ci=str(ci.id), profile=profile["name"],
                     ci_profile=short(ci_profile), ci_profile_id=str(ci.profileId),
                     placement_start=str(ci.placement.start),
                     placement_size=str(ci.placement.size), mig_uuid=device[0]), 1)
        if len(used) > 1:
            problems.append("%s GI %d: its MIG devices report different memory used: %s"
                            % (at, info.id, sorted(used)))
        elif used:
            put("nvidia_mig_gpu_instance_memory_used_bytes", gi, used.pop())
    if placed != len(devices):
        problems.append("%s: %d MIG devices for %d compute instances" % (at, len(devices), placed))

    shape = {
        "mig_current": mig_on,
        "memory_told": memory_told,
        "mig_pending_differs": current != pending,
        "gpu_instances": len(instances),
        "gpu_instances_without_ci": sum(1 for _, _, cis in instances if not cis),
        "split_gpu_instances": sum(1 for _, _, cis in instances if len(cis) > 1),
    }
    return series, shape


def expected_node():
    """Every expected series as {family: {label tuple: value}}, the checks on
    NVML itself that failed, and what the node looked like."""
    n.nvmlInit()
    try:
        driver = text(n.nvmlSystemGetDriverVersion())
        problems, shapes, expected = [], [], {f: {} for f in COVERED}
        for i in range(n.nvmlDeviceGetCount()):
            series, shape = read_gpu(n.nvmlDeviceGetHandleByIndex(i), driver, problems)
            shapes.append(shape)
            for family, labels, value in series:
                key = tuple(sorted(labels.items()))
                if key in expected[family]:
                    problems.append("%s: two expected series %s" % (family, key))
                expected[family][key] = float(value)
        return expected, problems, shapes
    finally:
        n.nvmlShutdown()


def parse_labels(body, where):
    """`a="x",b="y"` (Prometheus text escapes: \\\\, \\", \\n) as a tuple."""
    labels, i = {}, 0
    while i < len(body):
        eq = body.index("=", i)
        name = body[i:eq].strip().lstrip(",").strip()
        if body[eq + 1] != '"':
            raise Unreadable("%s: label %s has no quoted value" % (where, name))
        j, value = eq + 2, []
        while body[j] != '"':
            if body[j] == "\\":
                j += 1
                value.append({"n": "\n"}.get(body[j], body[j]))
            else:
                value.append(body[j])
            j += 1
        labels[name] = "".join(value)
        i = j + 1
        while i < len(body) and body[i] in ", ":
            i += 1
    return tuple(sorted(labels.items()))


def parse_exposition(exposition):
    """{family: {label tuple: value}} of the covered families."""
    got = {f: {} for f in COVERED}
    for number, line in enumerate(exposition.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        where = "exposition line %d" % number
        brace = line.find("{")
        space = line.find(" ")
        if 0 <= brace < space:
            name = line[:brace]
            close = line.rindex("}")
            labels = parse_labels(line[brace + 1:close], where)
            rest = line[close + 1:].split()
        else:
            name, labels, rest = line[:space], (), line[space:].split()
        if name not in got:
            continue
        if len(rest) != 1:
            raise Unreadable("%s: not `series value`: %s" % (where, line))
        if labels in got[name]:
            raise Unreadable("%s: %s served twice" % (where, name))
        got[name][labels] = float(rest[0])
    return got


def show(family, labels):
    return "%s{%s}" % (family, ",".join('%s="%s"' % kv for kv in labels))


def compare(expected, got):
    mismatches = []
    for family in COVERED:
        want, have = expected[family], got[family]
        for labels in sorted(want.keys() | have.keys()):
            w, h = want.get(labels), have.get(labels)
            if w == h:
                continue
            what = ("missing, expected %r" % w if h is None
                    else "not expected, served %r" % h if w is None
                    else "served %r, expected %r" % (h, w))
            mismatches.append("%s: %s" % (show(family, labels), what))
    return mismatches


def main():
    if len(sys.argv) != 2:
        print("usage: nvml_oracle.py METRICS_FILE", file=sys.stderr)
        return 2
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            got = parse_exposition(f.read())
        expected, nvml_problems, shapes = expected_node()
    except (Unreadable, OSError, ValueError, n.NVMLError) as e:
        print("nvml_oracle: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 2
    mismatches = compare(expected, got)
    report = {
        "series": {f: len(expected[f]) for f in COVERED},
        "gpus": shapes,
        "nvml_problems": nvml_problems,
        "mismatches": mismatches,
    }
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()
    return 1 if mismatches or nvml_problems else 0


if __name__ == "__main__":
    sys.exit(main())
