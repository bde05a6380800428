use std::mem::{offset_of, size_of};

use super::bindings::*;
use super::raw::{self, FieldValue, HierarchyEntry, Value};
use super::*;
use crate::model::{ComputeInstanceSnapshot, DeviceHealth, GpuInstanceSnapshot, SourceState};

/// Every versioned struct's size and version word, as DCGM 4's
/// `MAKE_DCGM_VERSION(type, ver) = sizeof(type) | ver << 24` gives them for
/// the layouts in NVIDIA's dcgm_structs.h: DCGM refuses a call whose version
/// word differs from its own, so a wrong layout would fail on a real node.
#[test]
fn versioned_structs_have_dcgm_4_sizes_and_version_words() {
    // 4 unsigned ints.
    assert_eq!(size_of::<dcgmConnectV2Params_v2>(), 16);
    assert_eq!(raw::CONNECT_V2_PARAMS_VERSION2, 0x0200_0010);
    // 8 + 448 entries (32 GPUs x 14 instances) of 164 bytes: two entity pairs
    // and a 128-byte UUID with 5 unsigned ints.
    assert_eq!(size_of::<dcgmGroupEntityPair_t>(), 8);
    assert_eq!(size_of::<dcgmMigEntityInfo_t>(), 148);
    assert_eq!(size_of::<dcgmMigHierarchyInfo_v2>(), 164);
    assert_eq!(size_of::<dcgmMigHierarchy_v2>(), 73_480);
    assert_eq!(raw::MIG_HIERARCHY_VERSION2, 0x0201_1F08);
    // A 32-byte header (ts 8-byte aligned after `unused`) and a 4096-byte union.
    assert_eq!(size_of::<dcgmFieldValue_v2>(), 4128);
    assert_eq!(offset_of!(dcgmFieldValue_v2, fieldId), 12);
    assert_eq!(offset_of!(dcgmFieldValue_v2, status), 16);
    assert_eq!(offset_of!(dcgmFieldValue_v2, ts), 24);
    assert_eq!(offset_of!(dcgmFieldValue_v2, value), 32);
    assert_eq!(raw::FIELD_VALUE_VERSION2, 0x0200_1020);
    assert_eq!(offset_of!(dcgmMigHierarchyInfo_v2, info), 16);
    assert_eq!(offset_of!(dcgmMigEntityInfo_t, nvmlGpuIndex), 128);
}

/// Every constant the exporter and the fake use, against NVIDIA's headers
/// (dcgm_structs.h, dcgm_fields.h; unchanged from DCGM 4.0 to 4.6).
#[test]
fn constants_have_their_documented_values() {
    let codes = [
        (DCGM_ST_OK, 0),
        (DCGM_ST_BADPARAM, -1),
        (DCGM_ST_GENERIC_ERROR, -3),
        (DCGM_ST_NOT_CONFIGURED, -5),
        (DCGM_ST_NOT_SUPPORTED, -6),
        (DCGM_ST_INIT_ERROR, -7),
        (DCGM_ST_UNINITIALIZED, -10),
        (DCGM_ST_VER_MISMATCH, -12),
        (DCGM_ST_UNKNOWN_FIELD, -13),
        (DCGM_ST_NO_DATA, -14),
        (DCGM_ST_STALE_DATA, -15),
        (DCGM_ST_NOT_WATCHED, -16),
        (DCGM_ST_CONNECTION_NOT_VALID, -21),
        (DCGM_ST_MAX_LIMIT, -24),
        (DCGM_ST_DUPLICATE_KEY, -26),
        (DCGM_ST_INSUFFICIENT_SIZE, -31),
        (DCGM_ST_GROUP_IS_EMPTY, -35),
        (DCGM_ST_PROFILING_NOT_SUPPORTED, -36),
        (DCGM_ST_INSTANCE_NOT_FOUND, -45),
        (DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND, -46),
        (DCGM_ST_NVML_NOT_LOADED, -56),
    ];
    for (got, want) in codes {
        assert_eq!(got, want);
    }
    assert_eq!(
        (DCGM_FE_NONE, DCGM_FE_GPU, DCGM_FE_GPU_I, DCGM_FE_GPU_CI),
        (0, 1, 4, 5)
    );
    let fields = [
        (DCGM_FI_DEV_UUID, 54),
        (DCGM_FI_DEV_GPU_TEMP, 150),
        (DCGM_FI_DEV_POWER_USAGE, 155),
        (DCGM_FI_DEV_FB_TOTAL, 250),
        (DCGM_FI_DEV_FB_FREE, 251),
        (DCGM_FI_DEV_FB_USED, 252),
        (DCGM_FI_PROF_GR_ENGINE_ACTIVE, 1001),
        (DCGM_FI_PROF_SM_ACTIVE, 1002),
        (DCGM_FI_PROF_SM_OCCUPANCY, 1003),
        (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE, 1004),
        (DCGM_FI_PROF_DRAM_ACTIVE, 1005),
        (DCGM_FI_PROF_PIPE_FP64_ACTIVE, 1006),
        (DCGM_FI_PROF_PIPE_FP32_ACTIVE, 1007),
        (DCGM_FI_PROF_PIPE_FP16_ACTIVE, 1008),
    ];
    for (got, want) in fields {
        assert_eq!(got, want);
    }
    assert_eq!(
        (
            DCGM_FT_DOUBLE,
            DCGM_FT_INT64,
            DCGM_FT_STRING,
            DCGM_FT_BINARY,
            DCGM_FT_TIMESTAMP
        ),
        (b'd', b'i', b's', b'b', b't')
    );
    assert_eq!(DCGM_INT64_BLANK, 0x7fff_ffff_ffff_fff0);
    assert_eq!(DCGM_INT64_NOT_SUPPORTED, DCGM_INT64_BLANK + 2);
    assert_eq!(DCGM_INT32_BLANK, 0x7fff_fff0);
    assert_eq!(DCGM_FP64_BLANK, 2f64.powi(47));
    assert_eq!(DCGM_FP64_NOT_FOUND, DCGM_FP64_BLANK + 1.0);
    assert_eq!(DCGM_FP64_NOT_SUPPORTED, DCGM_FP64_BLANK + 2.0);
    assert_eq!(DCGM_FP64_NOT_PERMISSIONED, DCGM_FP64_BLANK + 3.0);
    assert_eq!(DCGM_STR_BLANK, b"<<<NULL>>>\0");
    assert_eq!(
        (
            DCGM_OPERATION_MODE_AUTO,
            DCGM_OPERATION_MODE_MANUAL,
            DCGM_GROUP_EMPTY
        ),
        (1, 2, 1)
    );
    assert_eq!(
        (
            DCGM_MAX_NUM_DEVICES,
            DCGM_MAX_HIERARCHY_INFO,
            DCGM_MAX_NUM_DEVICES * DCGM_MAX_TOTAL_INSTANCES_PER_GPU,
            DCGM_MAX_INSTANCES_PER_GPU,
            DCGM_MAX_STR_LENGTH,
            DCGM_MAX_BLOB_LENGTH,
            DCGM_HE_PORT_NUMBER,
        ),
        (32, 448, 448, 8, 256, 4096, 5555)
    );
    // Every field id fits DCGM's unsigned short.
    for level in Level::ALL {
        assert!(level.fields().iter().all(|&f| f > 0));
    }
}

#[test]
fn addresses_parse_as_tcp_or_unix_socket() {
    assert_eq!(
        DcgmAddress::parse("localhost:5555"),
        Ok(DcgmAddress::Tcp("localhost:5555".into()))
    );
    assert_eq!(
        DcgmAddress::parse("tcp://10.0.0.1"),
        Ok(DcgmAddress::Tcp("10.0.0.1".into()))
    );
    assert_eq!(
        DcgmAddress::parse("unix:///run/dcgm.sock"),
        Ok(DcgmAddress::Unix("/run/dcgm.sock".into()))
    );
    assert_eq!(
        DcgmAddress::parse("/tmp/nv-hostengine"),
        Ok(DcgmAddress::Unix("/tmp/nv-hostengine".into()))
    );
    assert!(DcgmAddress::parse("unix://").is_err());
    assert!(DcgmAddress::parse(" ").is_err());
    assert_eq!(DcgmOptions::default().address.to_string(), "localhost:5555");
    assert_eq!(DcgmAddress::Unix("/s".into()).to_string(), "unix:///s");
}

#[test]
fn backoff_doubles_from_min_to_max() {
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
    let waits: Vec<u64> = (1..=9).map(|n| backoff(min, max, n).as_secs()).collect();
    assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(min, max, u32::MAX), max);
}

fn entry(group: u32, id: u32, parent: (u32, u32), gi: u32, ci: u32) -> HierarchyEntry {
    HierarchyEntry {
        entity_group: group,
        entity_id: id,
        parent_group: parent.0,
        parent_id: parent.1,
        gpu_uuid: "GPU-a".into(),
        gpu_index: 0,
        gi,
        ci,
        profile_id: 0,
        slices: 1,
    }
}

fn fv(group: u32, id: u32, field: u32, value: Value, ts_us: i64) -> FieldValue {
    FieldValue {
        entity_group: group,
        entity_id: id,
        field_id: field as u16,
        status: DCGM_ST_OK,
        ts_us,
        value,
    }
}

/// GPU 0 with GI 3 (entity 0) holding CI 1 (entity 0) and GI 5 (entity 1).
fn key() -> WatchKey {
    WatchKey {
        gpus: vec![0],
        hierarchy: vec![
            entry(DCGM_FE_GPU_I, 0, (DCGM_FE_GPU, 0), 3, u32::MAX),
            entry(DCGM_FE_GPU_CI, 0, (DCGM_FE_GPU_I, 0), 3, 1),
            entry(DCGM_FE_GPU_I, 1, (DCGM_FE_GPU, 0), 5, u32::MAX),
        ],
        geometry: Vec::new(),
    }
}

#[test]
fn values_map_through_the_hierarchy_and_blanks_and_stale_values_are_absent() {
    let now = 1_000_000_000;
    let max_age = Duration::from_secs(5);
    let mut not_supported = fv(
        DCGM_FE_GPU_I,
        1,
        DCGM_FI_PROF_DRAM_ACTIVE,
        Value::Double(DCGM_FP64_NOT_SUPPORTED),
        now,
    );
    not_supported.status = DCGM_ST_NOT_SUPPORTED;
    let values = vec![
        fv(DCGM_FE_GPU, 0, DCGM_FI_DEV_UUID, Value::Str("GPU-a".into()), now),
        fv(DCGM_FE_GPU, 0, DCGM_FI_DEV_POWER_USAGE, Value::Double(250.5), now),
        fv(DCGM_FE_GPU, 0, DCGM_FI_DEV_GPU_TEMP, Value::Int(61), now),
        fv(
            DCGM_FE_GPU,
            0,
            DCGM_FI_DEV_FB_USED,
            Value::Int(DCGM_INT64_BLANK as i64),
            now,
        ),
        fv(
            DCGM_FE_GPU_CI,
            0,
            DCGM_FI_PROF_SM_ACTIVE,
            Value::Double(0.75),
            now,
        ),
        // A GPU-only field on an instance is dropped even if DCGM answers it.
        fv(
            DCGM_FE_GPU_CI,
            0,
            DCGM_FI_DEV_POWER_USAGE,
            Value::Double(250.5),
            now,
        ),
        fv(
            DCGM_FE_GPU_CI,
            0,
            DCGM_FI_PROF_PIPE_TENSOR_ACTIVE,
            Value::Double(DCGM_FP64_BLANK),
            now,
        ),
        fv(
            DCGM_FE_GPU_I,
            0,
            DCGM_FI_PROF_DRAM_ACTIVE,
            Value::Double(0.25),
            now,
        ),
        fv(DCGM_FE_GPU_I, 0, DCGM_FI_DEV_FB_USED, Value::Int(1024), now),
        // Sampled 6 s ago: stale.
        fv(
            DCGM_FE_GPU_I,
            0,
            DCGM_FI_PROF_SM_ACTIVE,
            Value::Double(0.5),
            now - 6_000_000,
        ),
        not_supported,
        // Not in the hierarchy: nowhere to put it.
        fv(DCGM_FE_GPU_CI, 7, DCGM_FI_PROF_SM_ACTIVE, Value::Double(0.9), now),
    ];
    let u = utilization(&key(), &values, now, max_age);
    let gpu = u.gpu("GPU-a").expect("GPU by its UUID field");
    assert_eq!(gpu.power_watts, Some(250.5));
    assert_eq!(gpu.temperature_celsius, Some(61.0));
    assert_eq!(gpu.memory_used_bytes, None, "blank int64");
    let ci = u.compute_instance("GPU-a", 3, 1).expect("CI 1 of GI 3");
    assert_eq!(ci.activity.sm_active_ratio, Some(0.75));
    assert_eq!(ci.activity.tensor_active_ratio, None, "blank double");
    assert_eq!(ci.power_watts, None, "never the parent's value");
    let gi = u.gpu_instance("GPU-a", 3).expect("GI 3");
    assert_eq!(gi.activity.dram_active_ratio, Some(0.25));
    assert_eq!(gi.memory_used_bytes, Some(1024 * MIB));
    assert_eq!(gi.activity.sm_active_ratio, None, "stale");
    assert_eq!(
        u.gpu_instance("GPU-a", 5),
        Some(&Readings::default()),
        "GI 5 is known with nothing live"
    );
    assert_eq!(u.entities.len(), 4);
}

#[test]
fn a_value_from_further_ahead_than_max_age_is_not_live() {
    let (now, max_age) = (1_000_000_000, 5_000_000);
    let at = |ts| fv(DCGM_FE_GPU, 0, DCGM_FI_PROF_SM_ACTIVE, Value::Double(0.5), ts);
    assert!(fresh(&at(now - max_age), now, max_age));
    assert!(
        fresh(&at(now + 1_000_000), now, max_age),
        "another clock's jitter"
    );
    assert!(!fresh(&at(now - max_age - 1), now, max_age), "stale");
    assert!(
        !fresh(&at(now + 3_600_000_000), now, max_age),
        "the clock stepped back an hour"
    );
}

fn snapshot() -> GpuSnapshot {
    GpuSnapshot {
        index: 0,
        uuid: "GPU-a".into(),
        name: "H100".into(),
        pci_bus_id: String::new(),
        minor_number: None,
        pci_device_id: 0x2330_10DE,
        memory_total_bytes: Some(0),
        mig_current: true,
        mig_pending: true,
        compute_slices_capacity: 7,
        compute_slices_used: 3,
        memory_slices_capacity: 8,
        memory_slices_used: 4,
        profiles: Vec::new(),
        gpu_instances: vec![GpuInstanceSnapshot {
            id: 3,
            profile_id: 9,
            profile: "3g.40gb".into(),
            placement_start: 4,
            placement_size: 4,
            compute_slices: 3,
            memory_total_bytes: 0,
            memory_used_bytes: Some(7),
            compute_instances: vec![ComputeInstanceSnapshot {
                id: 1,
                profile_id: 2,
                profile: "3g.40gb".into(),
                placement_start: 0,
                placement_size: 3,
                mig_uuid: "MIG-x".into(),
                activity: Activity::default(),
            }],
            memory_free_bytes: None,
            activity: Activity::default(),
        }],
        health: DeviceHealth {
            power_watts: Some(100.0),
            ..DeviceHealth::default()
        },
    }
}

#[test]
fn apply_sets_ratios_and_fills_only_what_nvml_left_empty() {
    let mut u = Utilization::default();
    u.entities.insert(
        EntityKey::Gpu { uuid: "GPU-a".into() },
        Readings {
            power_watts: Some(250.0),
            temperature_celsius: Some(60.0),
            activity: Activity {
                sm_active_ratio: Some(0.1),
                ..Activity::default()
            },
            ..Readings::default()
        },
    );
    u.entities.insert(
        EntityKey::GpuInstance {
            gpu_uuid: "GPU-a".into(),
            gi: 3,
        },
        Readings {
            activity: Activity {
                dram_active_ratio: Some(0.4),
                ..Activity::default()
            },
            memory_used_bytes: Some(99),
            memory_free_bytes: Some(1000),
            ..Readings::default()
        },
    );
    u.entities.insert(
        EntityKey::ComputeInstance {
            gpu_uuid: "GPU-a".into(),
            gi: 3,
            ci: 1,
        },
        Readings {
            activity: Activity {
                sm_active_ratio: Some(0.8),
                fp32_active_ratio: Some(0.2),
                // Never read at this level; were it there, it would not land.
                dram_active_ratio: Some(0.5),
                ..Activity::default()
            },
            ..Readings::default()
        },
    );
    // Another GPU's instance with the same ids must not land here.
    u.entities.insert(
        EntityKey::ComputeInstance {
            gpu_uuid: "GPU-b".into(),
            gi: 3,
            ci: 1,
        },
        Readings {
            activity: Activity {
                sm_active_ratio: Some(0.99),
                ..Activity::default()
            },
            ..Readings::default()
        },
    );
    let mut gpus = vec![snapshot()];
    apply(&u, &mut gpus);
    let gpu = &gpus[0];
    assert_eq!(gpu.health.power_watts, Some(100.0), "NVML's reading stays");
    assert_eq!(gpu.health.temperature_celsius, Some(60.0), "DCGM fills the gap");
    assert_eq!(gpu.health.activity.sm_active_ratio, Some(0.1));
    let gi = &gpu.gpu_instances[0];
    assert_eq!(gi.activity.dram_active_ratio, Some(0.4));
    assert_eq!(gi.memory_used_bytes, Some(7), "NVML's reading stays");
    assert_eq!(gi.memory_free_bytes, Some(1000));
    let ci = &gi.compute_instances[0];
    assert_eq!(
        (ci.activity.sm_active_ratio, ci.activity.fp32_active_ratio),
        (Some(0.8), Some(0.2))
    );
    assert_eq!(ci.activity.tensor_active_ratio, None);
    assert_eq!(ci.activity.dram_active_ratio, None, "DRAM activity is the GI's");
}

#[test]
fn a_missing_library_is_a_clear_error_repeated_unchanged_during_the_backoff() {
    let mut source = DcgmSource::new(DcgmOptions {
        library: Some("/nonexistent/libdcgm.so.4".into()),
        backoff_min: Duration::from_secs(3600),
        ..DcgmOptions::default()
    });
    let e = format!("{:#}", source.read(&[]).unwrap_err());
    assert!(
        e.contains("cannot load /nonexistent/libdcgm.so.4") && e.contains("--dcgm.library"),
        "{e}"
    );
    let again = source.read(&[]).unwrap_err();
    // Unchanged, so the poller logs it once and not on every poll.
    assert_eq!(format!("{again:#}"), e);
    // No library file: no DCGM on this node, not DCGM down, during the backoff too.
    assert_eq!(crate::source::failure_state(&again), SourceState::Disabled);
}

#[test]
fn no_library_file_means_no_dcgm_but_a_file_that_is_no_library_is_dcgm_down() {
    let dir = tempfile::tempdir().unwrap();
    let state = |library: &std::path::Path| {
        let mut source = DcgmSource::new(DcgmOptions {
            library: Some(library.to_path_buf()),
            ..DcgmOptions::default()
        });
        let e = source.read(&[]).unwrap_err();
        (crate::source::failure_state(&e), format!("{e:#}"))
    };
    let (absent, e) = state(&dir.path().join("libdcgm.so.4"));
    assert_eq!(absent, SourceState::Disabled, "{e}");
    assert!(e.contains("no DCGM on this node"), "{e}");

    let broken = dir.path().join("libdcgm-broken.so.4");
    std::fs::write(&broken, b"not an ELF file, long enough to be read as one").unwrap();
    let (state_of_broken, e) = state(&broken);
    assert_eq!(
        state_of_broken,
        SourceState::Enabled,
        "installed but unloadable is down: {e}"
    );
    let (state_of_dir, e) = state(dir.path());
    assert_eq!(state_of_dir, SourceState::Enabled, "{e}");
}

#[test]
fn the_source_can_move_to_the_pollers_thread() {
    fn send<T: Send + 'static>() {}
    send::<DcgmSource>();
    send::<Utilization>();
}
