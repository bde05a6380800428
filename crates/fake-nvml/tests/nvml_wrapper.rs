//! `libfake_nvml.so` driven through `nvml-wrapper` 0.13, as the exporter uses
//! it, and through its `-sys` loaded library where the wrapper has no call.
//! Expected values come from the real H100 80GB HBM3 in
//! `shared/fixtures/h100-80gb-hbm3-real/` and from the World.

mod common;

use std::ffi::{c_char, c_uint, CStr};
use std::ptr;

use common::{h100_disabled, h100_mixed, Fake};
use mig_model::World;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::*;

const SUCCESS: nvmlReturn_t = nvmlReturn_enum_NVML_SUCCESS;
const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_SUPPORTED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
const NOT_FOUND: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
const INSUFFICIENT_SIZE: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
const VERSION_MISMATCH: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
const MIB: u64 = 1024 * 1024;

const GI_PROFILE_V2: c_uint = std::mem::size_of::<nvmlGpuInstanceProfileInfo_v2_t>() as c_uint | 2 << 24;
const GI_PROFILE_V3: c_uint = std::mem::size_of::<nvmlGpuInstanceProfileInfo_v3_t>() as c_uint | 3 << 24;
const CI_PROFILE_V2: c_uint = std::mem::size_of::<nvmlComputeInstanceProfileInfo_v2_t>() as c_uint | 2 << 24;

fn text(buf: &[c_char]) -> String {
    // SAFETY: NVML strings are NUL-terminated within their buffer.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn raw(device: &Device<'_>) -> nvmlDevice_t {
    // SAFETY: the handle is only passed back to the library that made it.
    unsafe { device.handle() }
}

/// The `nvmlGpuInstanceProfileInfo_t` rows the fixture's H100 returned, by
/// `NVML_GPU_INSTANCE_PROFILE_*` index: (id, slices, instances, SMs, CE, DEC,
/// ENC, JPEG, OFA, memory MiB, name); `None` where it answered "Not Supported".
type Row = (u32, u32, u32, u32, u32, u32, u32, u32, u32, u64, &'static str);
const FIXTURE_PROFILES: [Option<Row>; 17] = [
    Some((19, 1, 7, 16, 1, 1, 0, 1, 0, 9984, "MIG 1g.10gb")),
    Some((14, 2, 3, 32, 2, 2, 0, 2, 0, 20096, "MIG 2g.20gb")),
    Some((9, 3, 2, 60, 3, 3, 0, 3, 0, 40448, "MIG 3g.40gb")),
    Some((5, 4, 1, 64, 4, 4, 0, 4, 0, 40448, "MIG 4g.40gb")),
    Some((0, 7, 1, 132, 8, 7, 0, 7, 1, 81152, "MIG 7g.80gb")),
    None,
    None,
    Some((20, 1, 1, 16, 1, 1, 0, 1, 1, 9984, "MIG 1g.10gb+me")),
    None,
    Some((15, 1, 4, 26, 1, 1, 0, 1, 0, 20096, "MIG 1g.20gb")),
    None,
    None,
    None,
    None,
    None,
    None,
    None,
];

/// `nvml_mig_probe.txt`: placements and remaining capacity per profile id on
/// the empty H100 with MIG disabled.
const FIXTURE_PLACEMENTS: [(u32, &[u32], u32, u32); 7] = [
    (19, &[0, 1, 2, 3, 4, 5, 6], 1, 7),
    (20, &[0, 1, 2, 3, 4, 5, 6], 1, 1),
    (15, &[0, 2, 4, 6], 2, 4),
    (14, &[0, 2, 4], 2, 3),
    (9, &[0, 4], 4, 2),
    (5, &[0], 4, 1),
    (0, &[0], 8, 1),
];

#[test]
fn devices_system_and_pci_match_the_world() {
    let world = h100_mixed();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    assert_eq!(nvml.device_count().unwrap(), 2);
    assert_eq!(nvml.sys_driver_version().unwrap(), "580.159.04");
    assert_eq!(nvml.sys_nvml_version().unwrap(), "13.580.159.04");
    assert_eq!(nvml.sys_cuda_driver_version().unwrap(), 13000);
    for gpu in &world.gpus {
        let dev = nvml.device_by_index(gpu.index).unwrap();
        assert_eq!(dev.index().unwrap(), gpu.index);
        assert_eq!(dev.name().unwrap(), "NVIDIA H100 80GB HBM3");
        assert_eq!(dev.uuid().unwrap(), gpu.uuid);
        let pci = dev.pci_info().unwrap();
        assert_eq!(pci.bus_id, gpu.pci_bus_id);
        assert_eq!(pci.pci_device_id, 0x2330_10DE);
        assert_eq!(pci.pci_sub_system_id, Some(0x16C1_10DE));
        assert_eq!((pci.domain, pci.device), (0, 0));
        assert_eq!(format!("00000000:{:02X}:00.0", pci.bus), gpu.pci_bus_id);
        let mode = dev.mig_mode().unwrap();
        assert_eq!(
            (mode.current, mode.pending),
            (u32::from(gpu.mig.current), u32::from(gpu.mig.pending))
        );
        assert_eq!(
            nvml.device_by_uuid(gpu.uuid.as_str()).unwrap().index().unwrap(),
            gpu.index
        );
        assert_eq!(
            nvml.device_by_pci_bus_id(gpu.pci_bus_id.as_str())
                .unwrap()
                .uuid()
                .unwrap(),
            gpu.uuid
        );
        let legacy = gpu.pci_bus_id.strip_prefix("0000").unwrap();
        assert_eq!(legacy.len(), "0000:18:00.0".len());
        assert_eq!(
            nvml.device_by_pci_bus_id(legacy).unwrap().uuid().unwrap(),
            gpu.uuid
        );
    }
    assert!(matches!(nvml.device_by_index(2), Err(NvmlError::InvalidArg)));
    assert!(matches!(
        nvml.device_by_uuid("GPU-00000000-0000-0000-0000-000000000000"),
        Err(NvmlError::NotFound)
    ));
    assert!(matches!(
        nvml.device_by_pci_bus_id("00000000:77:00.0"),
        Err(NvmlError::NotFound)
    ));
}

/// nvml-wrapper 0.13 has no remapped-rows wrapper: the raw call.
fn remapped_rows(nvml: &Nvml, dev: &Device<'_>) -> (c_uint, c_uint, c_uint, c_uint) {
    let mut r = (9, 9, 9, 9);
    let rc = unsafe {
        nvml.lib()
            .nvmlDeviceGetRemappedRows(raw(dev), &mut r.0, &mut r.1, &mut r.2, &mut r.3)
    };
    assert_eq!(rc, SUCCESS);
    r
}

#[test]
fn whole_gpu_readings_come_from_the_telemetry() {
    let mut world = h100_disabled();
    let t = &mut world.gpus[0].telemetry;
    t.power_watts = 136.76;
    t.energy_millijoules = 123_456_789;
    t.utilization_percent = 42;
    t.memory_used_mib = 2048;
    t.pcie_tx_kibps = 1564;
    t.pcie_rx_kibps = 409;
    t.ecc_errors.volatile_corrected = 1;
    t.ecc_errors.volatile_uncorrected = 2;
    t.ecc_errors.aggregate_corrected = 3;
    t.ecc_errors.aggregate_uncorrected = 4;
    t.remapped_rows.correctable = 5;
    t.remapped_rows.uncorrectable = 6;
    t.remapped_rows.pending = true;
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, PcieUtilCounter};
    assert_eq!(dev.power_usage().unwrap(), 136_760);
    assert_eq!(dev.enforced_power_limit().unwrap(), 700_000);
    assert_eq!(dev.temperature(TemperatureSensor::Gpu).unwrap(), 54);
    assert_eq!(dev.clock_info(Clock::SM).unwrap(), 1980);
    assert_eq!(dev.total_energy_consumption().unwrap(), 123_456_789);
    assert_eq!(dev.utilization_rates().unwrap().gpu, 42);
    assert_eq!(dev.pcie_throughput(PcieUtilCounter::Send).unwrap(), 1564);
    assert_eq!(dev.pcie_throughput(PcieUtilCounter::Receive).unwrap(), 409);
    assert!(dev.is_in_persistent_mode().unwrap());
    let ecc = dev.is_ecc_enabled().unwrap();
    assert!(ecc.currently_enabled && ecc.pending_enabled);
    let ecc = |e, c| dev.total_ecc_errors(e, c).unwrap();
    assert_eq!(ecc(MemoryError::Corrected, EccCounter::Volatile), 1);
    assert_eq!(ecc(MemoryError::Uncorrected, EccCounter::Volatile), 2);
    assert_eq!(ecc(MemoryError::Corrected, EccCounter::Aggregate), 3);
    assert_eq!(ecc(MemoryError::Uncorrected, EccCounter::Aggregate), 4);
    assert_eq!(remapped_rows(&nvml, &dev), (5, 6, 1, 0));
    let mem = dev.memory_info().unwrap();
    assert_eq!((mem.total, mem.used), (81559 * MIB, 2048 * MIB));
    assert_eq!(mem.free, (81559 - 480 - 2048) * MIB);
    assert_eq!(
        dev.architecture().unwrap(),
        nvml_wrapper::enums::device::DeviceArchitecture::Hopper
    );

    // Under MIG, NVML has no whole-GPU utilization (real hardware answers so).
    let mut mig = world.clone();
    mig.gpus[0].set_mig_mode(true);
    fake.save(&mig);
    assert!(matches!(dev.utilization_rates(), Err(NvmlError::NotSupported)));
    assert_eq!(dev.power_usage().unwrap(), 136_760);

    // With ECC off there are no ECC counts.
    mig.gpus[0].ecc_enabled = false;
    fake.save(&mig);
    assert!(matches!(
        dev.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile),
        Err(NvmlError::NotSupported)
    ));
}

#[test]
fn profile_info_for_every_h100_profile_equals_the_fixture() {
    let fake = Fake::new(&h100_disabled());
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let lib = nvml.lib();
    for (index, expected) in FIXTURE_PROFILES.iter().enumerate() {
        let index = index as u32;
        match expected {
            None => {
                assert!(
                    matches!(dev.profile_info(index), Err(NvmlError::NotSupported)),
                    "profile {index}"
                );
            }
            Some((id, slices, instances, sms, ce, dec, enc, jpeg, ofa, mib, name)) => {
                let p = dev.profile_info(index).unwrap();
                let got = (
                    p.id,
                    p.slice_count,
                    p.instance_count,
                    p.multiprocessor_count,
                    p.copy_engine_count,
                    p.decoder_count,
                    p.encoder_count,
                    p.jpeg_count,
                    p.ofa_count,
                    p.memory_size_mb,
                );
                assert_eq!(
                    got,
                    (*id, *slices, *instances, *sms, *ce, *dec, *enc, *jpeg, *ofa, *mib)
                );
                assert!(!p.is_p2p_supported);

                // The versioned call pynvml makes: v2 carries the name.
                let mut v2: nvmlGpuInstanceProfileInfo_v2_t = unsafe { std::mem::zeroed() };
                v2.version = GI_PROFILE_V2;
                let rc = unsafe { lib.nvmlDeviceGetGpuInstanceProfileInfoV(raw(&dev), index, &mut v2) };
                assert_eq!(rc, SUCCESS);
                assert_eq!((v2.version, v2.id, v2.memorySizeMB), (GI_PROFILE_V2, *id, *mib));
                assert_eq!(text(&v2.name), *name);
                let mut v3: nvmlGpuInstanceProfileInfo_v3_t = unsafe { std::mem::zeroed() };
                v3.version = GI_PROFILE_V3;
                let rc = unsafe {
                    lib.nvmlDeviceGetGpuInstanceProfileInfoV(raw(&dev), index, ptr::addr_of_mut!(v3).cast())
                };
                assert_eq!(rc, SUCCESS);
                assert_eq!((v3.id, v3.multiprocessorCount, v3.capabilities), (*id, *sms, 0));
                assert_eq!(text(&v3.name), *name);
            }
        }
    }
    // The bindings' count (17) is a valid index for the current nvml.h
    // (count 0x12): the H100 has no such profile. Past 0x12 the index is invalid.
    assert!(matches!(
        dev.profile_info(NVML_GPU_INSTANCE_PROFILE_COUNT),
        Err(NvmlError::NotSupported)
    ));
    assert!(matches!(dev.profile_info(0x12), Err(NvmlError::InvalidArg)));
    let mut v2: nvmlGpuInstanceProfileInfo_v2_t = unsafe { std::mem::zeroed() };
    v2.version = 2;
    let rc = unsafe { lib.nvmlDeviceGetGpuInstanceProfileInfoV(raw(&dev), 0, &mut v2) };
    assert_eq!(rc, VERSION_MISMATCH);
}

/// Two-call pattern: NULL array for the count, then the array.
fn raw_placements(nvml: &Nvml, dev: &Device<'_>, profile_id: u32) -> Result<Vec<(u32, u32)>, nvmlReturn_t> {
    let lib = nvml.lib();
    let mut count: c_uint = 0;
    let rc = unsafe {
        lib.nvmlDeviceGetGpuInstancePossiblePlacements_v2(raw(dev), profile_id, ptr::null_mut(), &mut count)
    };
    if rc != SUCCESS {
        return Err(rc);
    }
    let mut buf = vec![nvmlGpuInstancePlacement_t { start: 99, size: 99 }; count as usize];
    let rc = unsafe {
        lib.nvmlDeviceGetGpuInstancePossiblePlacements_v2(raw(dev), profile_id, buf.as_mut_ptr(), &mut count)
    };
    if rc != SUCCESS {
        return Err(rc);
    }
    Ok(buf[..count as usize].iter().map(|p| (p.start, p.size)).collect())
}

#[test]
fn placements_and_remaining_capacity_equal_the_fixture() {
    let fake = Fake::new(&h100_disabled());
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    for (id, starts, size, remaining) in FIXTURE_PLACEMENTS {
        let expected: Vec<(u32, u32)> = starts.iter().map(|s| (*s, size)).collect();
        assert_eq!(raw_placements(&nvml, &dev, id).unwrap(), expected, "profile {id}");
        let mut count: c_uint = 0;
        let rc = unsafe {
            nvml.lib()
                .nvmlDeviceGetGpuInstanceRemainingCapacity(raw(&dev), id, &mut count)
        };
        assert_eq!((rc, count), (SUCCESS, remaining), "profile {id}");
    }
    assert_eq!(
        raw_placements(&nvml, &dev, 1),
        Err(NOT_SUPPORTED),
        "no profile id 1 on an H100"
    );
}

/// nvml-wrapper 0.13's `possible_placements` sizes its Vec with
/// `with_capacity(count)` and never sets its length, so it returns an empty
/// list even though NVML filled the buffer. The exporter must use the raw
/// call (as `raw_placements` above does); this test notices a fixed wrapper.
#[test]
fn nvml_wrapper_placements_wrapper_returns_an_empty_list() {
    let fake = Fake::new(&h100_disabled());
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    assert_eq!(raw_placements(&nvml, &dev, 19).unwrap().len(), 7);
    let wrapped = dev.possible_placements(19).unwrap();
    assert!(
        wrapped.is_empty(),
        "nvml-wrapper's placements now work: {wrapped:?}"
    );
}

#[test]
fn remaining_capacity_follows_the_placer_when_configured() {
    let world = h100_mixed();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let gpu = &world.gpus[0];
    let placer = gpu.placer();
    for p in gpu.spec().profiles {
        let mut count: c_uint = 99;
        let rc = unsafe {
            nvml.lib()
                .nvmlDeviceGetGpuInstanceRemainingCapacity(raw(&dev), p.id, &mut count)
        };
        assert_eq!((rc, count), (SUCCESS, placer.remaining_capacity(p)), "{}", p.name);
    }
}

#[test]
fn mig_disabled_return_codes_equal_the_fixture() {
    let fake = Fake::new(&h100_disabled());
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let lib = nvml.lib();
    let h = raw(&dev);
    let mode = dev.mig_mode().unwrap();
    assert_eq!((mode.current, mode.pending), (0, 0));
    assert_eq!(dev.mig_device_count().unwrap(), 0);
    assert!(!dev.mig_is_mig_device_handle().unwrap());
    assert!(matches!(dev.mig_device_by_index(0), Err(NvmlError::NotFound)));
    let mut id: c_uint = 0;
    assert_eq!(
        unsafe { lib.nvmlDeviceGetGpuInstanceId(h, &mut id) },
        INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { lib.nvmlDeviceGetComputeInstanceId(h, &mut id) },
        INVALID_ARGUMENT
    );
    for (profile_id, ..) in FIXTURE_PLACEMENTS {
        let mut gis = [ptr::null_mut::<nvmlGpuInstance_st>(); 8];
        let mut count: c_uint = 99;
        let rc = unsafe { lib.nvmlDeviceGetGpuInstances(h, profile_id, gis.as_mut_ptr(), &mut count) };
        assert_eq!((rc, count), (SUCCESS, 0), "profile {profile_id}");
    }
    let mut gi = ptr::null_mut();
    assert_eq!(
        unsafe { lib.nvmlDeviceGetGpuInstanceById(h, 1, &mut gi) },
        NOT_SUPPORTED
    );
    // memory_info_v2 -> version 33554472, total 85520809984, reserved 503316480, free 85017493504, used 0
    let mem = dev.memory_info().unwrap();
    assert_eq!(
        (mem.version, mem.total, mem.reserved, mem.free, mem.used),
        (33_554_472, 85_520_809_984, 503_316_480, 85_017_493_504, 0)
    );
    assert!(dev.is_in_persistent_mode().unwrap());
    assert_eq!(
        remapped_rows(&nvml, &dev),
        (0, 0, 0, 0),
        "retired/remapped rows -> (0, 0, 0, 0)"
    );
}

#[test]
fn gpu_and_compute_instances_enumerate_through_the_sys_lib() {
    let world = h100_mixed();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let lib = nvml.lib();
    let dev = nvml.device_by_index(0).unwrap();
    let h = raw(&dev);
    let gpu = &world.gpus[0];

    let mut seen = Vec::new();
    for index in 0..NVML_GPU_INSTANCE_PROFILE_COUNT {
        let Ok(profile) = dev.profile_info(index) else {
            continue;
        };
        let mut gis = vec![ptr::null_mut::<nvmlGpuInstance_st>(); profile.instance_count as usize];
        let mut count: c_uint = 0;
        let rc = unsafe { lib.nvmlDeviceGetGpuInstances(h, profile.id, gis.as_mut_ptr(), &mut count) };
        assert_eq!(rc, SUCCESS);
        for &gi in &gis[..count as usize] {
            assert!(!gi.is_null());
            let mut info: nvmlGpuInstanceInfo_t = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { lib.nvmlGpuInstanceGetInfo(gi, &mut info) }, SUCCESS);
            assert_eq!(info.device, h, "the GI's device is the GPU's handle");
            assert_eq!(info.profileId, profile.id);
            let mut by_id = ptr::null_mut();
            assert_eq!(
                unsafe { lib.nvmlDeviceGetGpuInstanceById(h, info.id, &mut by_id) },
                SUCCESS
            );
            assert_eq!(by_id, gi);

            let mut cis_seen = Vec::new();
            for ci_index in 0..NVML_COMPUTE_INSTANCE_PROFILE_COUNT {
                let mut cp: nvmlComputeInstanceProfileInfo_v2_t = unsafe { std::mem::zeroed() };
                cp.version = CI_PROFILE_V2;
                let rc = unsafe {
                    lib.nvmlGpuInstanceGetComputeInstanceProfileInfoV(
                        gi,
                        ci_index,
                        NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
                        &mut cp,
                    )
                };
                if rc == NOT_SUPPORTED {
                    continue;
                }
                assert_eq!(rc, SUCCESS);
                let mut remaining: c_uint = 0;
                let rc = unsafe {
                    lib.nvmlGpuInstanceGetComputeInstanceRemainingCapacity(gi, cp.id, &mut remaining)
                };
                assert_eq!(rc, SUCCESS);
                let world_gi = gpu.gpu_instance(info.id).unwrap();
                let gp = gpu.gi_profile(world_gi).unwrap();
                let wcp = gpu
                    .product
                    .ci_profiles(gp)
                    .into_iter()
                    .find(|p| p.id == cp.id)
                    .unwrap();
                assert_eq!(text(&cp.name), wcp.nvml_name(gp));
                assert_eq!(
                    (cp.sliceCount, cp.multiprocessorCount, cp.instanceCount),
                    (wcp.compute_slices, wcp.sm_count, wcp.max_instances)
                );
                assert_eq!(
                    remaining,
                    mig_model::world::ci_remaining_capacity(world_gi, gp, &wcp)
                );

                let mut cis = vec![ptr::null_mut::<nvmlComputeInstance_st>(); cp.instanceCount as usize];
                let mut n: c_uint = 0;
                let rc =
                    unsafe { lib.nvmlGpuInstanceGetComputeInstances(gi, cp.id, cis.as_mut_ptr(), &mut n) };
                assert_eq!(rc, SUCCESS);
                for &ci in &cis[..n as usize] {
                    let mut ci_info: nvmlComputeInstanceInfo_t = unsafe { std::mem::zeroed() };
                    assert_eq!(
                        unsafe { lib.nvmlComputeInstanceGetInfo_v2(ci, &mut ci_info) },
                        SUCCESS
                    );
                    assert_eq!((ci_info.device, ci_info.gpuInstance), (h, gi));
                    let mut by_id = ptr::null_mut();
                    let rc = unsafe { lib.nvmlGpuInstanceGetComputeInstanceById(gi, ci_info.id, &mut by_id) };
                    assert_eq!((rc, by_id), (SUCCESS, ci));
                    cis_seen.push((
                        ci_info.id,
                        ci_info.profileId,
                        ci_info.placement.start,
                        ci_info.placement.size,
                    ));
                }
            }
            cis_seen.sort();
            seen.push((
                info.id,
                info.profileId,
                info.placement.start,
                info.placement.size,
                cis_seen,
            ));
        }
    }
    seen.sort();
    let mut expected: Vec<_> = gpu
        .gpu_instances
        .iter()
        .map(|gi| {
            let mut cis: Vec<_> = gi
                .compute_instances
                .iter()
                .map(|c| (c.id, c.profile_id, c.placement.start, c.placement.size))
                .collect();
            cis.sort();
            (gi.id, gi.profile_id, gi.placement.start, gi.placement.size, cis)
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(seen.len(), 3);

    let mut gi = ptr::null_mut();
    assert_eq!(
        unsafe { lib.nvmlDeviceGetGpuInstanceById(h, 14, &mut gi) },
        NOT_FOUND
    );
    assert_eq!(
        unsafe { lib.nvmlDeviceGetGpuInstanceById(h, 2, &mut gi) },
        SUCCESS
    );
    let mut ci = ptr::null_mut();
    assert_eq!(
        unsafe { lib.nvmlGpuInstanceGetComputeInstanceById(gi, 7, &mut ci) },
        NOT_FOUND
    );
    let mut cp: nvmlComputeInstanceProfileInfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { lib.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, 3, 0, &mut cp) };
    assert_eq!(rc, NOT_SUPPORTED, "a 3g GI has no 4-slice CI profile");
    let rc = unsafe { lib.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, 0, 1, &mut cp) };
    assert_eq!(rc, INVALID_ARGUMENT, "only the shared engine profile exists");
    let rc = unsafe { lib.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, 0, 0, &mut cp) };
    assert_eq!(
        (rc, cp.id, cp.sliceCount, cp.sharedCopyEngineCount),
        (SUCCESS, 0, 1, 3)
    );
    // A GPU-instance handle is not a device handle, and the other way round.
    let mut mode = (0, 0);
    let rc = unsafe { lib.nvmlDeviceGetMigMode(gi.cast(), &mut mode.0, &mut mode.1) };
    assert_eq!(rc, INVALID_ARGUMENT);
    let mut info: nvmlGpuInstanceInfo_t = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { lib.nvmlGpuInstanceGetInfo(h.cast(), &mut info) },
        INVALID_ARGUMENT
    );
}

#[test]
fn mig_devices_carry_the_worlds_uuids_and_memory() {
    let world = h100_mixed();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let lib = nvml.lib();
    let dev = nvml.device_by_index(0).unwrap();
    let gpu = &world.gpus[0];
    assert_eq!(dev.mig_device_count().unwrap(), 7);

    let mut expected = Vec::new();
    for gi in &gpu.gpu_instances {
        for ci in &gi.compute_instances {
            expected.push((gi.id, ci.id, ci.uuid.clone(), gi));
        }
    }
    expected.sort_by_key(|(g, c, ..)| (*g, *c));
    assert_eq!(expected.len(), 3);
    for (i, (gi_id, ci_id, uuid, gi)) in expected.iter().enumerate() {
        let mig = dev.mig_device_by_index(i as u32).unwrap();
        assert!(mig.mig_is_mig_device_handle().unwrap());
        assert_eq!(mig.uuid().unwrap(), *uuid);
        let (mut g, mut c) = (0, 0);
        assert_eq!(
            unsafe { lib.nvmlDeviceGetGpuInstanceId(raw(&mig), &mut g) },
            SUCCESS
        );
        assert_eq!(
            unsafe { lib.nvmlDeviceGetComputeInstanceId(raw(&mig), &mut c) },
            SUCCESS
        );
        assert_eq!((g, c), (*gi_id, *ci_id));
        assert_eq!(mig.mig_parent_device().unwrap().uuid().unwrap(), gpu.uuid);
        let profile = gpu.gi_profile(gi).unwrap();
        let mem = mig.memory_info().unwrap();
        assert_eq!(mem.total, profile.memory_mib * MIB);
        assert_eq!(mem.used, gi.load.memory_used_mib * MIB);
        assert_eq!(mem.free, mem.total - mem.used);
        assert_eq!(
            mig.pci_info().unwrap().bus_id,
            gpu.pci_bus_id,
            "a MIG device has its parent's PCI id"
        );
        // Whole-GPU readings are not passed off as a MIG device's.
        assert!(matches!(
            mig.temperature(TemperatureSensor::Gpu),
            Err(NvmlError::NotSupported)
        ));
        assert!(matches!(mig.mig_mode(), Err(NvmlError::NotSupported)));
        assert!(matches!(mig.mig_device_by_index(0), Err(NvmlError::InvalidArg)));
        // The MIG UUID finds the MIG device.
        let by_uuid = nvml.device_by_uuid(uuid.as_str()).unwrap();
        assert_eq!(raw(&by_uuid), raw(&mig));
    }
    let names: Vec<String> = (0..3)
        .map(|i| dev.mig_device_by_index(i).unwrap().name().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "NVIDIA H100 80GB HBM3 MIG 1c.3g.40gb",
            "NVIDIA H100 80GB HBM3 MIG 1c.3g.40gb",
            "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
        ]
    );
    assert!(matches!(dev.mig_device_by_index(3), Err(NvmlError::NotFound)));
    assert!(matches!(dev.mig_parent_device(), Err(NvmlError::InvalidArg)));
    // The parent's memory under MIG: what the GPU instances use together.
    let mem = dev.memory_info().unwrap();
    assert_eq!(mem.used, (1002 + 1003 + 1009) * MIB);
}

#[test]
fn a_world_change_between_two_calls_is_seen() {
    let mut world = h100_disabled();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    assert_eq!(dev.mig_mode().unwrap().current, 0);

    let gpu = &mut world.gpus[0];
    gpu.set_mig_mode(true);
    let gi = gpu.create_gpu_instance(0, None).unwrap();
    gpu.create_compute_instance(gi, None).unwrap();
    fake.save(&world);
    assert_eq!(dev.mig_mode().unwrap().current, 1, "seen on the very next call");
    let mig = dev.mig_device_by_index(0).unwrap();
    let first_uuid = world.gpus[0].gpu_instances[0].compute_instances[0].uuid.clone();
    assert_eq!(mig.uuid().unwrap(), first_uuid);
    let mut gi_handle = ptr::null_mut();
    assert_eq!(
        unsafe {
            nvml.lib()
                .nvmlDeviceGetGpuInstanceById(raw(&dev), gi, &mut gi_handle)
        },
        SUCCESS
    );

    // Recreate the compute instance: same GI and CI ids, a new UUID. The old
    // MIG device handle names the destroyed instance and is invalid.
    let gpu = &mut world.gpus[0];
    gpu.destroy_compute_instance(gi, 0).unwrap();
    gpu.create_compute_instance(gi, None).unwrap();
    fake.save(&world);
    assert!(matches!(mig.uuid(), Err(NvmlError::InvalidArg)));
    let again = dev.mig_device_by_index(0).unwrap();
    assert_ne!(again.uuid().unwrap(), first_uuid);

    // Disable MIG: the GPU instance and its handle are gone.
    world.gpus[0].set_mig_mode(false);
    fake.save(&world);
    let mut info: nvmlGpuInstanceInfo_t = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { nvml.lib().nvmlGpuInstanceGetInfo(gi_handle, &mut info) },
        INVALID_ARGUMENT
    );
    assert!(matches!(dev.mig_device_by_index(0), Err(NvmlError::NotFound)));
    assert_eq!(dev.mig_mode().unwrap().current, 0);
}

#[test]
fn driver_not_loaded_fails_init() {
    let mut world = h100_disabled();
    world.faults.driver_not_loaded = true;
    let fake = Fake::new(&world);
    assert!(matches!(fake.init(), Err(NvmlError::DriverNotLoaded)));
    world.faults.driver_not_loaded = false;
    fake.save(&world);
    assert_eq!(
        fake.nvml().device_count().unwrap(),
        1,
        "recovers when the driver is back"
    );
}

#[test]
fn a_missing_world_file_is_a_driver_not_loaded() {
    let fake = Fake::new(&h100_disabled());
    std::env::set_var(mig_model::WORLD_ENV, fake.dir.path().join("absent.json"));
    assert!(matches!(fake.init(), Err(NvmlError::DriverNotLoaded)));
}

#[test]
fn a_lost_gpu_fails_every_call_on_it_and_its_instances() {
    let mut world = h100_mixed();
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev0 = nvml.device_by_index(0).unwrap();
    let dev1 = nvml.device_by_index(1).unwrap();
    let mig = dev0.mig_device_by_index(0).unwrap();
    let mut gi = ptr::null_mut();
    assert_eq!(
        unsafe { nvml.lib().nvmlDeviceGetGpuInstanceById(raw(&dev0), 2, &mut gi) },
        SUCCESS
    );

    world.faults.lost_gpus = vec![0];
    fake.save(&world);
    assert!(matches!(dev0.name(), Err(NvmlError::GpuLost)));
    assert!(matches!(dev0.mig_mode(), Err(NvmlError::GpuLost)));
    assert!(matches!(mig.uuid(), Err(NvmlError::GpuLost)));
    assert!(matches!(nvml.device_by_index(0), Err(NvmlError::GpuLost)));
    let mut info: nvmlGpuInstanceInfo_t = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { nvml.lib().nvmlGpuInstanceGetInfo(gi, &mut info) },
        nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST
    );
    assert_eq!(nvml.device_count().unwrap(), 2, "a lost GPU is still counted");
    assert_eq!(
        dev1.name().unwrap(),
        "NVIDIA H100 80GB HBM3",
        "the other GPU still answers"
    );

    world.faults.lost_gpus.clear();
    fake.save(&world);
    assert_eq!(
        dev0.uuid().unwrap(),
        world.gpus[0].uuid,
        "back when the fault is lifted"
    );
}

#[test]
fn a_failing_call_returns_its_code_and_others_work() {
    let mut world = h100_disabled();
    world
        .faults
        .failing_calls
        .insert("nvmlDeviceGetMigMode".into(), 999);
    world
        .faults
        .failing_calls
        .insert("nvmlDeviceGetTemperature".into(), 15);
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    assert!(matches!(dev.mig_mode(), Err(NvmlError::Unknown)));
    assert!(matches!(
        dev.temperature(TemperatureSensor::Gpu),
        Err(NvmlError::GpuLost)
    ));
    assert_eq!(dev.power_usage().unwrap(), 137_000);
}

type CountFn = unsafe extern "C" fn(*const c_char) -> u64;

fn stat(name: &str, which: &[u8]) -> u64 {
    // SAFETY: the fake's own exported extras, with the signatures it defines.
    unsafe {
        let lib = libloading::Library::new(common::lib_path()).unwrap();
        let f: libloading::Symbol<'_, CountFn> = lib.get(which).unwrap();
        let name = std::ffi::CString::new(name).unwrap();
        f(name.as_ptr())
    }
}

#[test]
fn call_latency_is_applied_and_calls_are_counted() {
    let mut world = h100_disabled();
    world
        .faults
        .call_latency_us
        .insert("nvmlDeviceGetMigMode".into(), 5_000);
    world.faults.call_latency_us.insert("*".into(), 2);
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    let before = stat("nvmlDeviceGetMigMode", b"fakeNvmlCallCount\0");
    let nanos_before = stat("nvmlDeviceGetMigMode", b"fakeNvmlCallNanos\0");
    for _ in 0..3 {
        dev.mig_mode().unwrap();
    }
    assert_eq!(stat("nvmlDeviceGetMigMode", b"fakeNvmlCallCount\0") - before, 3);
    // Sleeping 5 ms three times takes at least 15 ms: a lower bound, never flaky.
    let spent = stat("nvmlDeviceGetMigMode", b"fakeNvmlCallNanos\0") - nanos_before;
    assert!(spent >= 15_000_000, "{spent} ns");
    assert!(stat("nvmlDeviceGetHandleByIndex_v2", b"fakeNvmlCallCount\0") >= 1);
    assert_eq!(stat("nvmlNoSuchFunction", b"fakeNvmlCallCount\0"), 0);
}

#[test]
fn xid_events_are_delivered_once_per_event_set_in_order() {
    let mut world = h100_mixed();
    world.gpus[0].telemetry.xid_events = vec![79, 48];
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let dev = nvml.device_by_index(0).unwrap();
    assert!(dev
        .supported_event_types()
        .unwrap()
        .contains(EventTypes::CRITICAL_XID_ERROR));
    let set = dev
        .register_events(EventTypes::CRITICAL_XID_ERROR, nvml.create_event_set().unwrap())
        .unwrap();
    let gpu0 = world.gpus[0].uuid.clone();
    let xid = |set: &nvml_wrapper::EventSet<'_>| {
        let e = set.wait(0)?;
        assert_eq!(e.event_type, EventTypes::CRITICAL_XID_ERROR);
        assert_eq!(e.device.uuid().unwrap(), gpu0);
        Ok::<_, NvmlError>(e.event_data)
    };
    assert!(matches!(xid(&set), Ok(Some(XidError::Value(79)))));
    assert!(matches!(xid(&set), Ok(Some(XidError::Value(48)))));
    assert!(matches!(xid(&set), Err(NvmlError::Timeout)));
    assert!(
        matches!(set.wait(30), Err(NvmlError::Timeout)),
        "waits, then times out"
    );

    world.gpus[0].telemetry.xid_events.push(94);
    fake.save(&world);
    assert!(matches!(xid(&set), Ok(Some(XidError::Value(94)))));

    // Each event set gets every event once.
    let other = dev
        .register_events(EventTypes::CRITICAL_XID_ERROR, nvml.create_event_set().unwrap())
        .unwrap();
    assert!(matches!(xid(&other), Ok(Some(XidError::Value(79)))));

    // A GPU registered for other events only gets no XIDs.
    let dev1 = nvml.device_by_index(1).unwrap();
    world.gpus[1].telemetry.xid_events = vec![13];
    fake.save(&world);
    let pstate = dev1
        .register_events(EventTypes::PSTATE_CHANGE, nvml.create_event_set().unwrap())
        .unwrap();
    assert!(matches!(pstate.wait(0), Err(NvmlError::Timeout)));
    // MIG devices take no registrations; the set is released on error.
    let mig = dev.mig_device_by_index(0).unwrap();
    let err = mig
        .register_events(EventTypes::CRITICAL_XID_ERROR, nvml.create_event_set().unwrap())
        .err()
        .unwrap();
    assert!(matches!(err.error, NvmlError::NotSupported));
}

#[test]
fn pointers_buffers_and_versions_are_checked() {
    let fake = Fake::new(&h100_mixed());
    let nvml = fake.nvml();
    let lib = nvml.lib();
    let dev = nvml.device_by_index(0).unwrap();
    let h = raw(&dev);
    let mut name = [0 as c_char; 96];
    assert_eq!(
        unsafe { lib.nvmlDeviceGetName(h, name.as_mut_ptr(), 96) },
        SUCCESS
    );
    assert_eq!(text(&name), "NVIDIA H100 80GB HBM3");
    assert_eq!(
        unsafe { lib.nvmlDeviceGetName(h, name.as_mut_ptr(), 21) },
        INSUFFICIENT_SIZE
    );
    assert_eq!(
        unsafe { lib.nvmlDeviceGetName(h, name.as_mut_ptr(), 22) },
        SUCCESS
    );
    assert_eq!(
        unsafe { lib.nvmlDeviceGetName(h, ptr::null_mut(), 96) },
        INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { lib.nvmlDeviceGetName(ptr::null_mut(), name.as_mut_ptr(), 96) },
        INVALID_ARGUMENT
    );
    let mut uuid = [0 as c_char; 96];
    assert_eq!(
        unsafe { lib.nvmlDeviceGetUUID(h, uuid.as_mut_ptr(), 40) },
        INSUFFICIENT_SIZE
    );
    let mut version = [0 as c_char; 80];
    assert_eq!(
        unsafe { lib.nvmlSystemGetDriverVersion(version.as_mut_ptr(), 5) },
        INSUFFICIENT_SIZE
    );
    let mut mode: c_uint = 0;
    assert_eq!(
        unsafe { lib.nvmlDeviceGetMigMode(h, &mut mode, ptr::null_mut()) },
        INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { lib.nvmlDeviceGetCount_v2(ptr::null_mut()) },
        INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { lib.nvmlDeviceGetHandleByUUID(ptr::null(), &mut ptr::null_mut()) },
        INVALID_ARGUMENT
    );
    let mut mem: nvmlMemory_v2_t = unsafe { std::mem::zeroed() };
    mem.version = 1;
    assert_eq!(
        unsafe { lib.nvmlDeviceGetMemoryInfo_v2(h, &mut mem) },
        VERSION_MISMATCH
    );
    let mut count: c_uint = 0;
    assert_eq!(
        unsafe { lib.nvmlDeviceGetGpuInstances(h, 9, ptr::null_mut(), &mut count) },
        INVALID_ARGUMENT
    );
    let mut gi = ptr::null_mut();
    assert_eq!(
        unsafe { lib.nvmlDeviceGetGpuInstanceById(h, 2, &mut gi) },
        SUCCESS
    );
    let mut cp: nvmlComputeInstanceProfileInfo_v2_t = unsafe { std::mem::zeroed() };
    cp.version = GI_PROFILE_V2;
    assert_eq!(
        unsafe { lib.nvmlGpuInstanceGetComputeInstanceProfileInfoV(gi, 0, 0, &mut cp) },
        VERSION_MISMATCH
    );
    let s = unsafe { CStr::from_ptr(lib.nvmlErrorString(nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST)) };
    assert_eq!(s.to_str().unwrap(), "GPU is lost");
    let s = unsafe { CStr::from_ptr(lib.nvmlErrorString(nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES)) };
    assert_eq!(s.to_str().unwrap(), "Insufficient Resources");
}

#[test]
fn calls_before_init_and_after_shutdown_are_uninitialized() {
    let fake = Fake::new(&h100_disabled());
    // SAFETY: loading the fake, whose initializers have no preconditions.
    let lib = unsafe { NvmlLib::new(common::lib_path()) }.unwrap();
    let mut count: c_uint = 0;
    let uninitialized = nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
    assert_eq!(unsafe { lib.nvmlDeviceGetCount_v2(&mut count) }, uninitialized);
    assert_eq!(unsafe { lib.nvmlShutdown() }, uninitialized);
    assert_eq!(unsafe { lib.nvmlInit_v2() }, SUCCESS);
    assert_eq!(unsafe { lib.nvmlInitWithFlags(0) }, SUCCESS);
    assert_eq!(unsafe { lib.nvmlShutdown() }, SUCCESS);
    assert_eq!(
        unsafe { lib.nvmlDeviceGetCount_v2(&mut count) },
        SUCCESS,
        "one init is still open"
    );
    assert_eq!(count, 1);
    assert_eq!(unsafe { lib.nvmlShutdown() }, SUCCESS);
    assert_eq!(unsafe { lib.nvmlDeviceGetCount_v2(&mut count) }, uninitialized);
    drop(fake);
}

#[test]
fn every_world_product_answers_its_own_profiles() {
    for product in mig_model::Product::ALL {
        let world = World::new("node", product, 1);
        let fake = Fake::new(&world);
        let nvml = fake.nvml();
        let dev = nvml.device_by_index(0).unwrap();
        let spec = product.spec();
        assert_eq!(dev.name().unwrap(), spec.name);
        for p in spec.profiles {
            let info = dev.profile_info(p.nvml_index).unwrap();
            assert_eq!(
                (
                    info.id,
                    info.memory_size_mb,
                    info.multiprocessor_count,
                    info.instance_count
                ),
                (p.id, p.memory_mib, p.sm_count, p.max_instances),
                "{product} {}",
                p.name
            );
            let expected: Vec<(u32, u32)> =
                p.placement_starts.iter().map(|s| (*s, p.memory_slices)).collect();
            assert_eq!(
                raw_placements(&nvml, &dev, p.id).unwrap(),
                expected,
                "{product} {}",
                p.name
            );
        }
    }
}

/// The MIG UUID at each `nvmlDeviceGetMigDeviceHandleByIndex` index up to the
/// maximum, `None` where the index has no device.
fn mig_uuids_by_index(dev: &Device<'_>) -> Vec<Option<String>> {
    (0..dev.mig_device_count().unwrap())
        .map(|i| match dev.mig_device_by_index(i) {
            Ok(mig) => Some(mig.uuid().unwrap()),
            Err(NvmlError::NotFound) => None,
            Err(e) => panic!("index {i}: {e}"),
        })
        .collect()
}

#[test]
fn mig_device_indexes_keep_their_place_and_leave_holes() {
    let mut world = h100_mixed();
    let fake = Fake::new(&world);
    let uuid = |w: &World, gi: u32, ci: u32| {
        let gi = w.gpus[0].gpu_instance(gi).unwrap();
        Some(
            gi.compute_instances
                .iter()
                .find(|c| c.id == ci)
                .unwrap()
                .uuid
                .clone(),
        )
    };
    {
        let nvml = fake.nvml();
        let dev = nvml.device_by_index(0).unwrap();
        let first = mig_uuids_by_index(&dev);
        assert_eq!(
            &first[..3],
            &[uuid(&world, 2, 0), uuid(&world, 2, 1), uuid(&world, 9, 0)]
        );
        assert!(first[3..].iter().all(Option::is_none));

        // The first device goes: its index is a hole, the others keep theirs.
        world.gpus[0].destroy_compute_instance(2, 0).unwrap();
        fake.save(&world);
        let holed = mig_uuids_by_index(&dev);
        assert_eq!(&holed[..3], &[None, uuid(&world, 2, 1), uuid(&world, 9, 0)]);

        // A new one fills the lowest free index.
        world.gpus[0].create_compute_instance(3, None).unwrap();
        fake.save(&world);
        let filled = mig_uuids_by_index(&dev);
        assert_eq!(
            &filled[..3],
            &[uuid(&world, 3, 0), uuid(&world, 2, 1), uuid(&world, 9, 0)]
        );
    }
    // After the last nvmlShutdown, a new session numbers them from 0 in id order.
    world.gpus[0].destroy_compute_instance(3, 0).unwrap();
    fake.save(&world);
    let nvml = fake.nvml();
    let dense = mig_uuids_by_index(&nvml.device_by_index(0).unwrap());
    assert_eq!(&dense[..2], &[uuid(&world, 2, 1), uuid(&world, 9, 0)]);
    assert!(dense[2..].iter().all(Option::is_none));
}

#[test]
fn an_unprivileged_caller_gets_no_aggregate_memory_of_a_mig_gpu() {
    let mut world = h100_mixed();
    world.faults.unprivileged = true;
    let fake = Fake::new(&world);
    let nvml = fake.nvml();
    let mig_gpu = nvml.device_by_index(0).unwrap();
    assert!(matches!(mig_gpu.memory_info(), Err(NvmlError::NoPermission)));
    let mut v2: nvmlMemory_v2_t = unsafe { std::mem::zeroed() };
    v2.version = (std::mem::size_of::<nvmlMemory_v2_t>() as c_uint) | (2 << 24);
    let lib = nvml.lib();
    assert_eq!(
        unsafe { lib.nvmlDeviceGetMemoryInfo_v2(raw(&mig_gpu), &mut v2) },
        nvmlReturn_enum_NVML_ERROR_NO_PERMISSION
    );
    // Per-instance memory and a GPU without MIG still answer.
    let mig = mig_gpu.mig_device_by_index(0).unwrap();
    assert_eq!(mig.memory_info().unwrap().used, 1002 * MIB);
    assert!(nvml.device_by_index(1).unwrap().memory_info().is_ok());
    // Everything else about the MIG GPU answers too.
    assert!(mig_gpu.temperature(TemperatureSensor::Gpu).is_ok());
}
