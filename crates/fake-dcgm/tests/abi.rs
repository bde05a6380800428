//! The fake's C ABI, called as a DCGM client calls it, over a World file.
//! The library state and `MIG_WORLD` are per process: the tests take turns.

use std::ffi::{c_char, c_int, CStr};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Mutex, MutexGuard};

use fake_dcgm::bindings::*;
use fake_dcgm::*;
use mig_model::{Product, World};

static TURN: Mutex<()> = Mutex::new(());

const fn version_of<T>(v: u32) -> u32 {
    std::mem::size_of::<T>() as u32 | (v << 24)
}

/// An initialised library over a World: an H100 with a 3g.40gb (one CI) and
/// a 1g.10gb (one CI). `dcgmShutdown` on drop.
struct Lib {
    _turn: MutexGuard<'static, ()>,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Lib {
    fn new() -> Lib {
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("world.json");
        let mut w = World::new("n", Product::H100_80GB, 1);
        let gpu = &mut w.gpus[0];
        gpu.set_mig_mode(true);
        for profile in [9, 19] {
            let gi = gpu.create_gpu_instance(profile, None).unwrap();
            gpu.create_compute_instance(gi, None).unwrap();
        }
        gpu.gpu_instances[0].compute_instances[0].load.sm_active = 0.25;
        w.save(&path).unwrap();
        std::env::set_var(mig_model::WORLD_ENV, &path);
        assert_eq!(dcgmInit(), DCGM_ST_OK);
        Lib {
            _turn: turn,
            _dir: dir,
            path,
        }
    }

    fn edit(&self, change: impl FnOnce(&mut World)) {
        let mut w = World::load(&self.path).unwrap();
        change(&mut w);
        w.save(&self.path).unwrap();
    }

    fn connect(&self) -> dcgmHandle_t {
        let (rc, handle) = connect("localhost:5555", false);
        assert_eq!(rc, DCGM_ST_OK);
        handle
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        dcgmShutdown();
    }
}

fn connect(address: &str, unix: bool) -> (dcgmReturn_t, dcgmHandle_t) {
    let address = std::ffi::CString::new(address).unwrap();
    let mut params = dcgmConnectV2Params_v2 {
        version: version_of::<dcgmConnectV2Params_v2>(2),
        addressIsUnixSocket: u32::from(unix),
        ..Default::default()
    };
    let mut handle = 0;
    let rc = unsafe { dcgmConnect_v2(address.as_ptr(), &mut params, &mut handle) };
    (rc, handle)
}

fn hierarchy(handle: dcgmHandle_t) -> (dcgmReturn_t, Box<dcgmMigHierarchy_v2>) {
    let mut h: Box<dcgmMigHierarchy_v2> = Box::default();
    h.version = version_of::<dcgmMigHierarchy_v2>(2);
    let rc = unsafe { dcgmGetGpuInstanceHierarchy(handle, &mut *h) };
    (rc, h)
}

/// Watches `fields` on `entities` through a new group and field group.
fn watch(handle: dcgmHandle_t, name: &str, entities: &[(u32, u32)], fields: &[u16]) -> dcgmReturn_t {
    let name_c = std::ffi::CString::new(name).unwrap();
    let mut group = 0;
    let rc = unsafe { dcgmGroupCreate(handle, DCGM_GROUP_EMPTY, name_c.as_ptr(), &mut group) };
    if rc != DCGM_ST_OK {
        return rc;
    }
    for &(g, e) in entities {
        let rc = dcgmGroupAddEntity(handle, group, g, e);
        if rc != DCGM_ST_OK {
            return rc;
        }
    }
    let mut fg = 0;
    let rc = unsafe {
        dcgmFieldGroupCreate(
            handle,
            fields.len() as c_int,
            fields.as_ptr(),
            name_c.as_ptr(),
            &mut fg,
        )
    };
    if rc != DCGM_ST_OK {
        return rc;
    }
    dcgmWatchFields(handle, group, fg, 1_000_000_000, 60.0, 0)
}

fn latest(
    handle: dcgmHandle_t,
    entities: &[(u32, u32)],
    fields: &[u16],
) -> (dcgmReturn_t, Vec<dcgmFieldValue_v2>) {
    let mut pairs: Vec<dcgmGroupEntityPair_t> = entities
        .iter()
        .map(|&(g, e)| dcgmGroupEntityPair_t {
            entityGroupId: g,
            entityId: e,
        })
        .collect();
    let mut fields = fields.to_vec();
    let mut values = vec![dcgmFieldValue_v2::default(); pairs.len() * fields.len()];
    let rc = unsafe {
        dcgmEntitiesGetLatestValues(
            handle,
            pairs.as_mut_ptr(),
            pairs.len() as u32,
            fields.as_mut_ptr(),
            fields.len() as u32,
            0,
            values.as_mut_ptr(),
        )
    };
    (rc, values)
}

fn error_string(code: dcgmReturn_t) -> Option<String> {
    let p = errorString(code);
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

const SM: u16 = DCGM_FI_PROF_SM_ACTIVE as u16;
const POWER: u16 = DCGM_FI_DEV_POWER_USAGE as u16;

#[test]
fn the_hierarchy_maps_entities_to_nvml_ids_and_checks_its_version() {
    let lib = Lib::new();
    let handle = lib.connect();
    let (rc, h) = hierarchy(handle);
    assert_eq!(rc, DCGM_ST_OK);
    let world = World::load(&lib.path).unwrap();
    let gpu = &world.gpus[0];
    let rows: Vec<(u32, u32, u32, u32, u32, u32)> = h.entityList[..h.count as usize]
        .iter()
        .map(|e| {
            (
                e.entity.entityGroupId,
                e.entity.entityId,
                e.parent.entityGroupId,
                e.parent.entityId,
                e.info.nvmlInstanceId,
                e.info.nvmlComputeInstanceId,
            )
        })
        .collect();
    let (big, small) = (gpu.gpu_instances[0].id, gpu.gpu_instances[1].id);
    assert_eq!(
        rows,
        vec![
            (DCGM_FE_GPU_I, 0, DCGM_FE_GPU, 0, small, u32::MAX),
            (DCGM_FE_GPU_CI, 0, DCGM_FE_GPU_I, 0, small, 0),
            (DCGM_FE_GPU_I, 1, DCGM_FE_GPU, 0, big, u32::MAX),
            (DCGM_FE_GPU_CI, 1, DCGM_FE_GPU_I, 1, big, 0),
        ],
        "by GI profile index: the 1g.10gb first, though created after the 3g.40gb"
    );
    let uuid = unsafe { CStr::from_ptr(h.entityList[0].info.gpuUuid.as_ptr()) };
    assert_eq!(uuid.to_str().unwrap(), gpu.uuid);
    assert_eq!(
        h.entityList[2].info.nvmlMigProfileId,
        gpu.gpu_instances[0].profile_id
    );
    assert_eq!(h.entityList[2].info.nvmlProfileSlices, 3);

    let mut wrong: Box<dcgmMigHierarchy_v2> = Box::default();
    wrong.version = version_of::<dcgmMigHierarchy_v2>(1);
    assert_eq!(
        unsafe { dcgmGetGpuInstanceHierarchy(handle, &mut *wrong) },
        DCGM_ST_VER_MISMATCH
    );
    assert_eq!(
        unsafe { dcgmGetGpuInstanceHierarchy(handle, ptr::null_mut()) },
        DCGM_ST_BADPARAM
    );
    assert_eq!(hierarchy(0xdead).0, DCGM_ST_BADPARAM, "an unknown handle");
}

#[test]
fn values_need_a_watch_and_a_sample_and_come_in_no_promised_order() {
    let lib = Lib::new();
    let handle = lib.connect();
    // CI entity 0 is the 1g.10gb's, idle (the loaded 3g.40gb's is entity 1).
    let entities = [(DCGM_FE_GPU_CI, 0), (DCGM_FE_GPU, 0)];
    let (rc, v) = latest(handle, &entities, &[SM]);
    assert_eq!(rc, DCGM_ST_OK, "per-value statuses; the call succeeds");
    assert!(v.iter().all(|f| f.status == DCGM_ST_NOT_WATCHED));
    assert!(v.iter().all(|f| unsafe { f.value.dbl } >= DCGM_FP64_BLANK));

    assert_eq!(watch(handle, "w", &entities, &[SM, POWER]), DCGM_ST_OK);
    let (_, v) = latest(handle, &entities, &[SM]);
    assert!(
        v.iter().all(|f| f.status == DCGM_ST_NO_DATA),
        "the first sample comes one update interval (1000 s here) later"
    );
    assert_eq!(dcgmUpdateAllFields(handle, 1), DCGM_ST_OK);
    let (_, v) = latest(handle, &entities, &[SM, POWER]);
    let find = |g: u32, field: u16| {
        v.iter()
            .find(|f| f.entityGroupId == g && f.fieldId == field)
            .copied()
            .unwrap()
    };
    assert_eq!(
        (v[0].entityGroupId, v[0].fieldId),
        (DCGM_FE_GPU, POWER),
        "reverse of the request order"
    );
    let ci_sm = find(DCGM_FE_GPU_CI, SM);
    assert_eq!((ci_sm.status, unsafe { ci_sm.value.dbl }), (DCGM_ST_OK, 0.0));
    assert_eq!(ci_sm.version, version_of::<dcgmFieldValue_v2>(2));
    assert_eq!(ci_sm.fieldType, u16::from(DCGM_FT_DOUBLE));
    assert!(ci_sm.ts > 1_600_000_000_000_000, "µs since 1970: {}", ci_sm.ts);
    let ci_power = find(DCGM_FE_GPU_CI, POWER);
    assert_eq!(
        ci_power.status, DCGM_ST_NOT_SUPPORTED,
        "no parent value on a MIG entity"
    );
    assert_eq!(unsafe { ci_power.value.dbl }, DCGM_FP64_NOT_SUPPORTED);
    let gpu_power = find(DCGM_FE_GPU, POWER);
    assert_eq!(
        (gpu_power.status, unsafe { gpu_power.value.dbl }),
        (DCGM_ST_OK, 137.0)
    );
}

#[test]
fn groups_and_field_groups_are_checked() {
    let lib = Lib::new();
    let handle = lib.connect();
    assert_eq!(watch(handle, "a", &[(DCGM_FE_GPU_I, 0)], &[SM]), DCGM_ST_OK);
    assert_eq!(
        watch(handle, "a", &[(DCGM_FE_GPU_I, 0)], &[SM]),
        DCGM_ST_DUPLICATE_KEY,
        "field group names are unique on the engine"
    );
    assert_eq!(
        watch(handle, "b", &[(DCGM_FE_GPU_I, 7)], &[SM]),
        DCGM_ST_BADPARAM,
        "no such GI entity"
    );
    assert_eq!(
        watch(handle, "c", &[(DCGM_FE_GPU, 0)], &[9999]),
        DCGM_ST_BADPARAM,
        "unknown field"
    );
    assert_eq!(dcgmGroupDestroy(handle, 12345), DCGM_ST_NOT_CONFIGURED);
    assert_eq!(
        dcgmWatchFields(handle, 12345, 1, 1000, 1.0, 0),
        DCGM_ST_NOT_CONFIGURED
    );
    let mut fg = 0;
    assert_eq!(
        unsafe { dcgmFieldGroupCreate(handle, 1, ptr::null(), c"x".as_ptr(), &mut fg) },
        DCGM_ST_BADPARAM
    );
    let (rc, _) = latest(handle, &[], &[SM]);
    assert_eq!(rc, DCGM_ST_BADPARAM);
}

#[test]
fn host_engine_down_kills_connections_for_good_but_not_embedded_engines() {
    let lib = Lib::new();
    let handle = lib.connect();
    let mut embedded = 0;
    assert_eq!(
        unsafe { dcgmStartEmbedded(DCGM_OPERATION_MODE_AUTO, &mut embedded) },
        DCGM_ST_OK
    );
    lib.edit(|w| w.faults.dcgm_hostengine_down = true);
    assert_eq!(hierarchy(handle).0, DCGM_ST_CONNECTION_NOT_VALID);
    assert_eq!(connect("localhost", false).0, DCGM_ST_CONNECTION_NOT_VALID);
    assert_eq!(
        hierarchy(embedded).0,
        DCGM_ST_OK,
        "an embedded engine lives in the process"
    );
    lib.edit(|w| w.faults.dcgm_hostengine_down = false);
    assert_eq!(
        hierarchy(handle).0,
        DCGM_ST_CONNECTION_NOT_VALID,
        "a connection does not survive a restart"
    );
    assert_eq!(dcgmDisconnect(handle), DCGM_ST_OK);
    let fresh = lib.connect();
    assert_eq!(hierarchy(fresh).0, DCGM_ST_OK);
    assert_eq!(
        dcgmStopEmbedded(fresh),
        DCGM_ST_BADPARAM,
        "not an embedded handle"
    );
    assert_eq!(dcgmStopEmbedded(embedded), DCGM_ST_OK);
    assert_eq!(
        error_string(DCGM_ST_CONNECTION_NOT_VALID).as_deref(),
        Some("Host engine connection invalid/disconnected")
    );
    assert_eq!(error_string(-9999), None, "DCGM returns NULL for unknown codes");
}

#[test]
fn connecting_checks_address_and_version() {
    let lib = Lib::new();
    assert_eq!(connect("localhost:notaport", false).0, DCGM_ST_BADPARAM);
    let missing: &Path = Path::new("/nonexistent/nv-hostengine.sock");
    assert_eq!(
        connect(missing.to_str().unwrap(), true).0,
        DCGM_ST_CONNECTION_NOT_VALID
    );
    assert_eq!(
        connect(lib.path.to_str().unwrap(), true).0,
        DCGM_ST_OK,
        "any existing file stands for the socket"
    );
    let mut params = dcgmConnectV2Params_v2 {
        version: 16 | (3 << 24),
        ..Default::default()
    };
    let mut handle = 0;
    let rc = unsafe { dcgmConnect_v2(c"localhost".as_ptr() as *const c_char, &mut params, &mut handle) };
    assert_eq!(rc, DCGM_ST_VER_MISMATCH);
    assert_eq!(
        unsafe { dcgmConnect_v2(ptr::null(), &mut params, &mut handle) },
        DCGM_ST_BADPARAM
    );
}

#[test]
fn calls_before_init_are_refused() {
    let lib = Lib::new();
    let handle = lib.connect();
    assert_eq!(dcgmShutdown(), DCGM_ST_OK);
    assert_eq!(hierarchy(handle).0, DCGM_ST_UNINITIALIZED);
    assert_eq!(dcgmInit(), DCGM_ST_OK, "Lib's drop shuts down once more");
    assert_eq!(
        hierarchy(handle).0,
        DCGM_ST_BADPARAM,
        "shutdown dropped every connection"
    );
}

/// Watches `fields` on `entities`, has them sampled, and reads them back by
/// `(entity group, entity id, field)`.
fn sampled(
    handle: dcgmHandle_t,
    name: &str,
    entities: &[(u32, u32)],
    fields: &[u16],
) -> impl Fn(u32, u32, u16) -> dcgmFieldValue_v2 {
    assert_eq!(watch(handle, name, entities, fields), DCGM_ST_OK);
    assert_eq!(dcgmUpdateAllFields(handle, 1), DCGM_ST_OK);
    let (rc, v) = latest(handle, entities, fields);
    assert_eq!(rc, DCGM_ST_OK);
    move |g, e, field| {
        v.iter()
            .find(|f| f.entityGroupId == g && f.entityId == e && f.fieldId == field)
            .copied()
            .unwrap_or_else(|| panic!("no value of field {field} for entity {g}/{e}"))
    }
}

const GR: u16 = DCGM_FI_PROF_GR_ENGINE_ACTIVE as u16;
const DRAM: u16 = DCGM_FI_PROF_DRAM_ACTIVE as u16;
const FP64: u16 = DCGM_FI_PROF_PIPE_FP64_ACTIVE as u16;
const FP32: u16 = DCGM_FI_PROF_PIPE_FP32_ACTIVE as u16;
const FP16: u16 = DCGM_FI_PROF_PIPE_FP16_ACTIVE as u16;
const FB_USED: u16 = DCGM_FI_DEV_FB_USED as u16;

#[test]
fn mig_entities_start_at_gpu_id_times_the_max_mig_device_count() {
    let lib = Lib::new();
    lib.edit(|w| {
        let mut two = World::new("n", Product::H100_80GB, 2);
        for gpu in &mut two.gpus {
            gpu.set_mig_mode(true);
            for profile in [19, 19] {
                let gi = gpu.create_gpu_instance(profile, None).unwrap();
                gpu.create_compute_instance(gi, None).unwrap();
            }
        }
        *w = two;
    });
    let handle = lib.connect();
    let (rc, h) = hierarchy(handle);
    assert_eq!(rc, DCGM_ST_OK);
    let ids: Vec<(u32, u32, u32)> = h.entityList[..h.count as usize]
        .iter()
        .map(|e| (e.entity.entityGroupId, e.entity.entityId, e.info.nvmlGpuIndex))
        .collect();
    assert_eq!(
        ids,
        vec![
            (DCGM_FE_GPU_I, 0, 0),
            (DCGM_FE_GPU_CI, 0, 0),
            (DCGM_FE_GPU_I, 1, 0),
            (DCGM_FE_GPU_CI, 1, 0),
            (DCGM_FE_GPU_I, 7, 1),
            (DCGM_FE_GPU_CI, 7, 1),
            (DCGM_FE_GPU_I, 8, 1),
            (DCGM_FE_GPU_CI, 8, 1),
        ],
        "an H100 holds at most 7 MIG devices: GPU 1's entities start at 7, not at DCGM_MAX_INSTANCES_PER_GPU"
    );
    assert_eq!(
        watch(handle, "gpu1", &[(DCGM_FE_GPU_I, 7), (DCGM_FE_GPU_CI, 8)], &[SM]),
        DCGM_ST_OK
    );
    assert_eq!(
        watch(handle, "none", &[(DCGM_FE_GPU_I, 9)], &[SM]),
        DCGM_ST_BADPARAM,
        "no entity 9 on GPU 1"
    );
}

#[test]
fn engine_and_fp_pipe_fields_are_served_and_a_gpu_instance_is_normalised_over_its_slices() {
    let lib = Lib::new();
    lib.edit(|w| {
        let ci = &mut w.gpus[0].gpu_instances[0].compute_instances[0];
        ci.load.gr_engine_active = 0.9;
        ci.load.fp64_active = 0.1;
        ci.load.fp32_active = 0.5;
        ci.load.fp16_active = 0.75;
    });
    let handle = lib.connect();
    // Entity 1: the 3g.40gb and its CI spanning it; entity 0: the 1g.10gb.
    let entities = [(DCGM_FE_GPU_CI, 1), (DCGM_FE_GPU_I, 1), (DCGM_FE_GPU_I, 0)];
    let value = sampled(handle, "pipes", &entities, &[GR, FP64, FP32, FP16]);
    for (field, want) in [(GR, 0.9), (FP64, 0.1), (FP32, 0.5), (FP16, 0.75)] {
        for (g, e) in [(DCGM_FE_GPU_CI, 1), (DCGM_FE_GPU_I, 1)] {
            let fv = value(g, e, field);
            let got = unsafe { fv.value.dbl };
            assert_eq!(fv.status, DCGM_ST_OK, "{g}/{e} {field}");
            assert!((got - want).abs() < 1e-12, "{g}/{e} {field}: {got}");
        }
        let idle = value(DCGM_FE_GPU_I, 0, field);
        assert_eq!(
            (idle.status, unsafe { idle.value.dbl }),
            (DCGM_ST_OK, 0.0),
            "idle 1g {field}"
        );
    }

    // A 2g.20gb whose only CI holds one of its two slices, fully busy: 50 %.
    lib.edit(|w| {
        let gpu = &mut w.gpus[0];
        let gi = gpu.create_gpu_instance(14, None).unwrap();
        gpu.create_compute_instance(gi, Some(0)).unwrap();
        let gi = gpu.gpu_instances.iter_mut().find(|g| g.id == gi).unwrap();
        gi.compute_instances[0].load.gr_engine_active = 1.0;
    });
    let fresh = lib.connect();
    // By profile: 1g.10gb (0), 2g.20gb (1), 3g.40gb (2).
    let value = sampled(fresh, "half", &[(DCGM_FE_GPU_I, 1), (DCGM_FE_GPU_CI, 1)], &[GR]);
    assert_eq!(unsafe { value(DCGM_FE_GPU_CI, 1, GR).value.dbl }, 1.0);
    assert_eq!(unsafe { value(DCGM_FE_GPU_I, 1, GR).value.dbl }, 0.5);
}

#[test]
fn a_gpu_instance_without_compute_instances_has_blank_values_not_zero() {
    let lib = Lib::new();
    lib.edit(|w| {
        let gpu = &mut w.gpus[0];
        let gi = gpu.create_gpu_instance(19, None).unwrap();
        let gi = gpu.gpu_instances.iter_mut().find(|g| g.id == gi).unwrap();
        gi.load.memory_used_mib = 500;
        gi.load.dram_active = 0.5;
    });
    let handle = lib.connect();
    // Two 1g.10gb (entities 0 and 1, by id: the new one has the higher id), the 3g.40gb (2).
    let (_, h) = hierarchy(handle);
    let empty = h.entityList[..h.count as usize]
        .iter()
        .filter(|e| e.entity.entityGroupId == DCGM_FE_GPU_I)
        .find(|e| {
            !h.entityList[..h.count as usize]
                .iter()
                .any(|c| c.parent.entityGroupId == DCGM_FE_GPU_I && c.parent.entityId == e.entity.entityId)
        })
        .expect("the GI without CIs")
        .entity
        .entityId;
    let value = sampled(
        handle,
        "empty",
        &[(DCGM_FE_GPU_I, empty)],
        &[SM, GR, DRAM, FP32, FB_USED],
    );
    for field in [SM, GR, DRAM, FP32] {
        let fv = value(DCGM_FE_GPU_I, empty, field);
        assert_eq!(
            fv.status, DCGM_ST_OK,
            "DCGM stores the blank as a sample: {field}"
        );
        assert!(fv.ts > 0, "{field}");
        assert_eq!(unsafe { fv.value.dbl }, DCGM_FP64_BLANK, "{field}");
    }
    let fb = value(DCGM_FE_GPU_I, empty, FB_USED);
    assert_eq!(
        (fb.status, unsafe { fb.value.i64_ }),
        (DCGM_ST_OK, DCGM_INT64_BLANK as i64),
        "no MIG device to read the framebuffer of"
    );
}

#[test]
fn a_gpu_with_mig_disabled_serves_its_profiling_fields() {
    let lib = Lib::new();
    lib.edit(|w| {
        let mut plain = World::new("n", Product::H100_80GB, 1);
        let t = &mut plain.gpus[0].telemetry;
        t.compute_load.sm_active = 0.65;
        t.compute_load.gr_engine_active = 0.8;
        t.compute_load.fp16_active = 0.3;
        t.dram_active = 0.4;
        *w = plain;
    });
    let handle = lib.connect();
    let (_, h) = hierarchy(handle);
    assert_eq!(h.count, 0, "no MIG entities");
    let value = sampled(handle, "gpu", &[(DCGM_FE_GPU, 0)], &[SM, GR, FP16, DRAM, FP64]);
    for (field, want) in [(SM, 0.65), (GR, 0.8), (FP16, 0.3), (DRAM, 0.4), (FP64, 0.0)] {
        let fv = value(DCGM_FE_GPU, 0, field);
        assert_eq!(
            (fv.status, unsafe { fv.value.dbl }),
            (DCGM_ST_OK, want),
            "{field}"
        );
    }
}
