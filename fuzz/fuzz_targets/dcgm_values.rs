//! What DCGM hands back, as bytes: rows of `dcgmGetGpuInstanceHierarchy` and
//! field values of `dcgmEntitiesGetLatestValues`, each built field by field
//! into the bindgen structs (`dcgmMigHierarchyInfo_v2`, `dcgmFieldValue_v2`)
//! and decoded as the DCGM source decodes them, then mapped to GPUs and
//! instances and put on a fixed node.
//!
//! Nothing panics; a value keeps its entity, field, status and timestamp and
//! is read by its field type (a string ends at its NUL, inside the array);
//! readings land only on entities the hierarchy or a GPU's UUID field names;
//! a reading is never a blank, never from a value with an error status or
//! without a timestamp, and is a finite number; putting the readings on the
//! node changes nothing NVML had already filled.
//!
//! Input, little-endian: a byte n and n (mod 9) DCGM GPU ids (u32); a byte m
//! and m (mod 9) hierarchy rows (entity group and id, parent group and id,
//! then a byte k and k bytes of the GPU UUID, then NVML GPU index, GI id, CI
//! id, profile id and slices, all u32); then field values to the end, each
//! the 32 bytes of the struct's fixed part in its C order (version, entity
//! group, entity id, field id u16, field type u16, status i32, unused, ts
//! i64), the first 8 bytes of the value union, then a byte k and k bytes
//! that continue it (a string's tail). Every other byte is zero.
#![no_main]

#[path = "fuzz_node.rs"]
mod fuzz_node;

use fuzz_node::node;

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mig_exporter::model::Activity;
use mig_exporter::source::dcgm::bindings::{
    dcgmFieldValueUnion_t, dcgmFieldValue_v2, dcgmGroupEntityPair_t, dcgmMigEntityInfo_t,
    dcgmMigHierarchyInfo_v2, DCGM_FE_GPU, DCGM_FE_GPU_CI, DCGM_FE_GPU_I, DCGM_FP64_BLANK, DCGM_FT_DOUBLE,
    DCGM_FT_INT64, DCGM_FT_STRING, DCGM_INT64_BLANK, DCGM_ST_NO_DATA, DCGM_ST_OK,
};
use mig_exporter::source::dcgm::raw::{
    decode_field_value, hierarchy_entry, FieldValue, HierarchyEntry, Value,
};
use mig_exporter::source::dcgm::{utilization_of, EntityKey, Readings, Utilization};

/// Microseconds since 1970 the values are judged at: fixed, so that a run replays.
const NOW_US: i64 = 1_750_000_000_000_000;
const MAX_AGE: Duration = Duration::from_secs(5);
const MIB: u64 = 1024 * 1024;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>().map_or(0, |[b]| b)
    }
    fn u32(&mut self) -> u32 {
        self.take().map_or(0, u32::from_le_bytes)
    }
    /// A byte k, then k bytes (fewer where the input ends) into `into` from
    /// `at`; how far `into` is filled.
    fn tail(&mut self, into: &mut [u8], at: usize) -> usize {
        let k = usize::from(self.u8()).min(into.len() - at).min(self.0.len());
        into[at..at + k].copy_from_slice(&self.0[..k]);
        self.0 = &self.0[k..];
        at + k
    }
}

/// `bytes` as C chars, only its first `used` bytes copied (the rest are
/// zero): a loop over all 4 KiB of a value would dominate an unoptimized run.
fn c_chars<const N: usize>(bytes: &[u8; N], used: usize) -> [std::os::raw::c_char; N] {
    let mut out = [0; N];
    for (c, b) in out.iter_mut().zip(&bytes[..used]) {
        *c = *b as std::os::raw::c_char;
    }
    out
}

fn hierarchy_row(b: &mut Bytes) -> dcgmMigHierarchyInfo_v2 {
    let mut pair = || dcgmGroupEntityPair_t {
        entityGroupId: b.u32(),
        entityId: b.u32(),
    };
    let (entity, parent) = (pair(), pair());
    let mut uuid = [0u8; 128];
    let used = b.tail(&mut uuid, 0);
    dcgmMigHierarchyInfo_v2 {
        entity,
        parent,
        info: dcgmMigEntityInfo_t {
            gpuUuid: c_chars(&uuid, used),
            nvmlGpuIndex: b.u32(),
            nvmlInstanceId: b.u32(),
            nvmlComputeInstanceId: b.u32(),
            nvmlMigProfileId: b.u32(),
            nvmlProfileSlices: b.u32(),
        },
    }
}

/// One field value, or `None` when the input has no whole fixed part left.
fn field(b: &mut Bytes) -> Option<(dcgmFieldValue_v2, [u8; 4096])> {
    let fixed: [u8; 32] = b.take()?;
    let u32_at = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().unwrap());
    let u16_at = |i: usize| u16::from_le_bytes(fixed[i..i + 2].try_into().unwrap());
    let mut blob = [0u8; 4096];
    blob[..8].copy_from_slice(&b.take::<8>().unwrap_or_default());
    let used = b.tail(&mut blob, 8);
    let value = dcgmFieldValue_v2 {
        version: u32_at(0),
        entityGroupId: u32_at(4),
        entityId: u32_at(8),
        fieldId: u16_at(12),
        fieldType: u16_at(14),
        status: u32_at(16) as i32,
        unused: u32_at(20),
        ts: i64::from_le_bytes(fixed[24..32].try_into().unwrap()),
        // The largest member, so that every byte of the union is set.
        value: dcgmFieldValueUnion_t {
            blob: c_chars(&blob, used),
        },
    };
    Some((value, blob))
}

fn check_value(raw: &dcgmFieldValue_v2, blob: &[u8; 4096], fv: &FieldValue) {
    assert_eq!(
        (fv.entity_group, fv.entity_id, fv.field_id, fv.status, fv.ts_us),
        (raw.entityGroupId, raw.entityId, raw.fieldId, raw.status, raw.ts)
    );
    let first8: [u8; 8] = blob[..8].try_into().unwrap();
    let expected = match u8::try_from(raw.fieldType) {
        Ok(DCGM_FT_DOUBLE) => Value::Double(f64::from_le_bytes(first8)),
        Ok(DCGM_FT_INT64) => Value::Int(i64::from_le_bytes(first8)),
        Ok(DCGM_FT_STRING) => Value::Str(match blob[..256].iter().position(|&b| b == 0) {
            Some(end) => String::from_utf8_lossy(&blob[..end]).into_owned(),
            None => String::new(),
        }),
        _ => Value::Other(raw.fieldType),
    };
    match (&fv.value, &expected) {
        // NaN is not equal to itself: compare the bits.
        (Value::Double(a), Value::Double(b)) => assert_eq!(a.to_bits(), b.to_bits()),
        (a, b) => assert_eq!(a, b),
    }
}

fn ratios(a: &Activity) -> [Option<f64>; 8] {
    [
        a.gr_engine_active_ratio,
        a.sm_active_ratio,
        a.sm_occupancy_ratio,
        a.tensor_active_ratio,
        a.dram_active_ratio,
        a.fp64_active_ratio,
        a.fp32_active_ratio,
        a.fp16_active_ratio,
    ]
}

fn check_readings(key: &EntityKey, r: &Readings) {
    // Doubles from DCGM's double fields.
    let doubles = ratios(&r.activity).into_iter().chain([r.power_watts]);
    for v in doubles.flatten() {
        assert!(v.is_finite() && v < DCGM_FP64_BLANK, "{key:?}: {r:?}");
    }
    // The temperature is an int64 field: below the int64 blanks (as a
    // double, the largest of them rounds to 2^63).
    if let Some(t) = r.temperature_celsius {
        assert!(
            t <= (DCGM_INT64_BLANK - 1) as f64,
            "{key:?}: a blank temperature {t}"
        );
    }
    for bytes in [r.memory_used_bytes, r.memory_free_bytes].into_iter().flatten() {
        assert!(
            bytes % MIB == 0 || bytes == u64::MAX,
            "{key:?}: {bytes} is no MiB count"
        );
    }
}

/// Readings only for entities that the hierarchy or a GPU's live UUID field names.
fn check_entities(u: &Utilization, hierarchy: &[HierarchyEntry], values: &[FieldValue]) {
    for key in u.entities.keys() {
        let named = match key {
            EntityKey::Gpu { uuid } => {
                hierarchy
                    .iter()
                    .any(|e| e.parent_group == DCGM_FE_GPU && &e.gpu_uuid == uuid)
                    || values.iter().any(|v| {
                        v.entity_group == DCGM_FE_GPU
                            && v.status == DCGM_ST_OK
                            && v.value == Value::Str(uuid.clone())
                    })
            }
            EntityKey::GpuInstance { gpu_uuid, gi } => hierarchy
                .iter()
                .any(|e| e.entity_group == DCGM_FE_GPU_I && &e.gpu_uuid == gpu_uuid && e.gi == *gi),
            EntityKey::ComputeInstance { gpu_uuid, gi, ci } => hierarchy.iter().any(|e| {
                e.entity_group == DCGM_FE_GPU_CI && &e.gpu_uuid == gpu_uuid && e.gi == *gi && e.ci == *ci
            }),
        };
        assert!(named, "an entity nothing names: {key:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let gpus: Vec<u32> = (0..b.u8() % 9).map(|_| b.u32()).collect();
    let rows: Vec<dcgmMigHierarchyInfo_v2> = (0..b.u8() % 9).map(|_| hierarchy_row(&mut b)).collect();
    let hierarchy: Vec<HierarchyEntry> = rows.iter().map(hierarchy_entry).collect();
    for (row, entry) in rows.iter().zip(&hierarchy) {
        assert_eq!(
            (
                entry.entity_group,
                entry.entity_id,
                entry.parent_group,
                entry.parent_id
            ),
            (
                row.entity.entityGroupId,
                row.entity.entityId,
                row.parent.entityGroupId,
                row.parent.entityId
            )
        );
        assert!(!entry.gpu_uuid.contains('\0'), "{entry:?}");
    }
    let mut values = Vec::new();
    while let Some((raw, blob)) = field(&mut b) {
        // SAFETY: `field` builds the union with its largest member, so every
        // byte of it is set.
        let fv = unsafe { decode_field_value(&raw) };
        check_value(&raw, &blob, &fv);
        values.push(fv);
    }

    let u = utilization_of(gpus.clone(), hierarchy.clone(), &values, NOW_US, MAX_AGE);
    check_entities(&u, &hierarchy, &values);
    for (key, r) in &u.entities {
        check_readings(key, r);
    }

    // Values with an error status, or never sampled, are no readings.
    for spoil in [
        (|v: &mut FieldValue| v.status = DCGM_ST_NO_DATA) as fn(&mut FieldValue),
        |v| v.ts_us = 0,
    ] {
        let mut spoilt = values.clone();
        spoilt.iter_mut().for_each(spoil);
        let u = utilization_of(gpus.clone(), hierarchy.clone(), &spoilt, NOW_US, MAX_AGE);
        for (key, r) in &u.entities {
            assert_eq!(r, &Readings::default(), "{key:?}: a reading without a live value");
        }
    }

    let mut applied = node().to_vec();
    u.apply(&mut applied);
    for (before, after) in node().iter().zip(&applied) {
        let (b, a) = (&before.health, &after.health);
        for (was, now) in [
            (b.power_watts, a.power_watts),
            (b.temperature_celsius, a.temperature_celsius),
        ] {
            assert!(
                was.is_none() || was == now,
                "{}: NVML's value replaced",
                before.uuid
            );
        }
        assert!(b.memory_used_bytes.is_none() || b.memory_used_bytes == a.memory_used_bytes);
        assert_eq!(before.gpu_instances.len(), after.gpu_instances.len());
    }
});
