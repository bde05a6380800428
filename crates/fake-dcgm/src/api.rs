//! The exported DCGM functions.
//!
//! # Safety
//!
//! Every function is called from C with DCGM's contract: pointers are NULL or
//! valid for the sizes the DCGM API documents. NULL is checked; a size that
//! lies (an array shorter than its count) is the caller's undefined behaviour,
//! as with the real library.

use std::ffi::{c_char, c_int, c_longlong, c_uint, c_ushort, CStr};
use std::path::Path;

use crate::bindings::{
    dcgmConnectV2Params_v2, dcgmFieldGrp_t, dcgmFieldValue_v2, dcgmGpuGrp_t, dcgmGroupEntityPair_t,
    dcgmGroupType_t, dcgmHandle_t, dcgmMigHierarchy_v2, dcgmOperationMode_t, dcgmReturn_t, dcgm_field_eid_t,
    dcgm_field_entity_group_t, DCGM_FE_GPU, DCGM_FP64_BLANK, DCGM_FP64_NOT_SUPPORTED, DCGM_FT_DOUBLE,
    DCGM_FT_INT64, DCGM_GROUP_DEFAULT, DCGM_GROUP_EMPTY, DCGM_GROUP_MAX_ENTITIES_V2, DCGM_INT64_BLANK,
    DCGM_INT64_NOT_SUPPORTED, DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP, DCGM_MAX_HIERARCHY_INFO,
    DCGM_MAX_NUM_DEVICES, DCGM_MAX_NUM_FIELD_GROUPS, DCGM_MAX_NUM_GROUPS, DCGM_OPERATION_MODE_AUTO,
    DCGM_OPERATION_MODE_MANUAL, DCGM_STR_BLANK, DCGM_STR_NOT_SUPPORTED, DCGM_ST_BADPARAM,
    DCGM_ST_CONNECTION_NOT_VALID, DCGM_ST_DUPLICATE_KEY, DCGM_ST_INSUFFICIENT_SIZE, DCGM_ST_MAX_LIMIT,
    DCGM_ST_NOT_CONFIGURED, DCGM_ST_NOT_SUPPORTED, DCGM_ST_NOT_WATCHED, DCGM_ST_NO_DATA, DCGM_ST_OK,
    DCGM_ST_UNKNOWN_FIELD, DCGM_ST_VER_MISMATCH,
};
use crate::entities;
use crate::state::{self, now_us, Connection, Res, Watch};
use crate::values::{self, Sample};

/// `MAKE_DCGM_VERSION(type, version)`: the size in the low 24 bits, the version above.
const fn version_of<T>(version: u32) -> u32 {
    std::mem::size_of::<T>() as u32 | (version << 24)
}

pub(crate) const CONNECT_V2_PARAMS_VERSION2: u32 = version_of::<dcgmConnectV2Params_v2>(2);
/// `dcgmConnectV2Params_v1` is the first two members of v2.
pub(crate) const CONNECT_V2_PARAMS_VERSION1: u32 = 8 | (1 << 24);
pub(crate) const MIG_HIERARCHY_VERSION2: u32 = version_of::<dcgmMigHierarchy_v2>(2);
pub(crate) const FIELD_VALUE_VERSION2: u32 = version_of::<dcgmFieldValue_v2>(2);

fn nonnull<T>(p: *const T) -> Res<*const T> {
    if p.is_null() {
        Err(DCGM_ST_BADPARAM)
    } else {
        Ok(p)
    }
}

fn nonnull_mut<T>(p: *mut T) -> Res<*mut T> {
    if p.is_null() {
        Err(DCGM_ST_BADPARAM)
    } else {
        Ok(p)
    }
}

/// A C string argument as UTF-8.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn c_str<'a>(p: *const c_char) -> Res<&'a str> {
    let p = nonnull(p)?;
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| DCGM_ST_BADPARAM)
}

/// Copies `s` into a fixed C char array, NUL-terminated, truncating.
fn write_c_chars(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len().saturating_sub(1));
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as c_char;
    }
    if let Some(end) = dst.get_mut(n) {
        *end = 0;
    }
}

#[no_mangle]
pub extern "C" fn dcgmInit() -> dcgmReturn_t {
    state::init()
}

#[no_mangle]
pub extern "C" fn dcgmShutdown() -> dcgmReturn_t {
    state::shutdown()
}

/// # Safety
/// See the module documentation.
#[no_mangle]
pub unsafe extern "C" fn dcgmStartEmbedded(
    opMode: dcgmOperationMode_t,
    pDcgmHandle: *mut dcgmHandle_t,
) -> dcgmReturn_t {
    state::call(|st, _| {
        let out = nonnull_mut(pDcgmHandle)?;
        if opMode != DCGM_OPERATION_MODE_AUTO && opMode != DCGM_OPERATION_MODE_MANUAL {
            return Err(DCGM_ST_BADPARAM);
        }
        let handle = st.new_id();
        st.connections.insert(
            handle,
            Connection {
                embedded: true,
                ..Connection::default()
            },
        );
        unsafe { *out = handle };
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn dcgmStopEmbedded(pDcgmHandle: dcgmHandle_t) -> dcgmReturn_t {
    state::call(|st, _| match st.connections.get(&pDcgmHandle) {
        Some(c) if c.embedded => {
            st.connections.remove(&pDcgmHandle);
            Ok(())
        }
        _ => Err(DCGM_ST_BADPARAM),
    })
}

/// # Safety
/// See the module documentation.
#[no_mangle]
pub unsafe extern "C" fn dcgmConnect_v2(
    ipAddress: *const c_char,
    connectParams: *mut dcgmConnectV2Params_v2,
    pDcgmHandle: *mut dcgmHandle_t,
) -> dcgmReturn_t {
    state::call(|st, world| {
        let address = unsafe { c_str(ipAddress) }?;
        let params = nonnull_mut(connectParams)?;
        let out = nonnull_mut(pDcgmHandle)?;
        // The version word is first in both versions; v1 has no socket flag.
        let version = unsafe { (*params).version };
        let unix_socket = match version {
            CONNECT_V2_PARAMS_VERSION2 => (unsafe { (*params).addressIsUnixSocket }) != 0,
            CONNECT_V2_PARAMS_VERSION1 => false,
            _ => return Err(DCGM_ST_VER_MISMATCH),
        };
        if unix_socket {
            if address.is_empty() {
                return Err(DCGM_ST_BADPARAM);
            }
            if !Path::new(address).exists() {
                return Err(DCGM_ST_CONNECTION_NOT_VALID);
            }
        } else {
            let (host, port) = match address.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (address, None),
            };
            if host.is_empty() || port.is_some_and(|p| p.parse::<u16>().is_err()) {
                return Err(DCGM_ST_BADPARAM);
            }
        }
        if world.faults.dcgm_hostengine_down {
            return Err(DCGM_ST_CONNECTION_NOT_VALID);
        }
        let handle = st.new_id();
        st.connections.insert(handle, Connection::default());
        unsafe { *out = handle };
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn dcgmDisconnect(pDcgmHandle: dcgmHandle_t) -> dcgmReturn_t {
    state::call(|st, _| match st.connections.get(&pDcgmHandle) {
        Some(c) if !c.embedded => {
            st.connections.remove(&pDcgmHandle);
            Ok(())
        }
        _ => Err(DCGM_ST_BADPARAM),
    })
}

/// # Safety
/// See the module documentation; `gpuIdList` holds `DCGM_MAX_NUM_DEVICES` entries.
#[no_mangle]
pub unsafe extern "C" fn dcgmGetAllSupportedDevices(
    pDcgmHandle: dcgmHandle_t,
    gpuIdList: *mut c_uint,
    count: *mut c_int,
) -> dcgmReturn_t {
    state::call(|st, world| {
        st.connection(pDcgmHandle, world)?;
        let list = nonnull_mut(gpuIdList)?;
        let count = nonnull_mut(count)?;
        let ids = entities::gpu_ids(world);
        let n = ids.len().min(DCGM_MAX_NUM_DEVICES as usize);
        for (i, id) in ids.iter().take(n).enumerate() {
            unsafe { *list.add(i) = *id };
        }
        unsafe { *count = n as c_int };
        Ok(())
    })
}

/// # Safety
/// See the module documentation.
#[no_mangle]
pub unsafe extern "C" fn dcgmGetGpuInstanceHierarchy(
    dcgmHandle: dcgmHandle_t,
    hierarchy: *mut dcgmMigHierarchy_v2,
) -> dcgmReturn_t {
    state::call(|st, world| {
        st.connection(dcgmHandle, world)?;
        let h = nonnull_mut(hierarchy)?;
        // SAFETY: non-NULL and, by contract, a whole dcgmMigHierarchy_v2.
        let h = unsafe { &mut *h };
        if h.version != MIG_HIERARCHY_VERSION2 {
            return Err(DCGM_ST_VER_MISMATCH);
        }
        let rows = entities::hierarchy(world);
        if rows.len() > DCGM_MAX_HIERARCHY_INFO as usize {
            return Err(DCGM_ST_INSUFFICIENT_SIZE);
        }
        h.count = 0;
        for (slot, row) in h.entityList.iter_mut().zip(rows.iter()) {
            *slot = Default::default();
            slot.entity.entityGroupId = row.group;
            slot.entity.entityId = row.id;
            slot.parent.entityGroupId = row.parent_group;
            slot.parent.entityId = row.parent_id;
            write_c_chars(&mut slot.info.gpuUuid, &row.gpu_uuid);
            slot.info.nvmlGpuIndex = row.gpu_index;
            slot.info.nvmlInstanceId = row.gi;
            slot.info.nvmlComputeInstanceId = row.ci;
            slot.info.nvmlMigProfileId = row.profile_id;
            slot.info.nvmlProfileSlices = row.slices;
            h.count += 1;
        }
        Ok(())
    })
}

/// # Safety
/// See the module documentation.
#[no_mangle]
pub unsafe extern "C" fn dcgmGroupCreate(
    pDcgmHandle: dcgmHandle_t,
    type_: dcgmGroupType_t,
    groupName: *const c_char,
    pDcgmGrpId: *mut dcgmGpuGrp_t,
) -> dcgmReturn_t {
    state::call(|st, world| {
        unsafe { c_str(groupName) }?;
        let out = nonnull_mut(pDcgmGrpId)?;
        let members: Vec<(u32, u32)> = match type_ {
            DCGM_GROUP_EMPTY => Vec::new(),
            DCGM_GROUP_DEFAULT => entities::gpu_ids(world)
                .into_iter()
                .map(|id| (DCGM_FE_GPU, id))
                .collect(),
            _ => return Err(DCGM_ST_BADPARAM),
        };
        if st.connection(pDcgmHandle, world)?.groups.len() >= DCGM_MAX_NUM_GROUPS as usize {
            return Err(DCGM_ST_MAX_LIMIT);
        }
        let id = st.new_id();
        st.connection(pDcgmHandle, world)?.groups.insert(id, members);
        unsafe { *out = id };
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn dcgmGroupDestroy(pDcgmHandle: dcgmHandle_t, groupId: dcgmGpuGrp_t) -> dcgmReturn_t {
    state::call(|st, world| {
        let conn = st.connection(pDcgmHandle, world)?;
        conn.groups
            .remove(&groupId)
            .map(|_| ())
            .ok_or(DCGM_ST_NOT_CONFIGURED)
    })
}

#[no_mangle]
pub extern "C" fn dcgmGroupAddEntity(
    pDcgmHandle: dcgmHandle_t,
    groupId: dcgmGpuGrp_t,
    entityGroupId: dcgm_field_entity_group_t,
    entityId: dcgm_field_eid_t,
) -> dcgmReturn_t {
    state::call(|st, world| {
        let exists = entities::resolve(world, entityGroupId, entityId).is_some();
        let conn = st.connection(pDcgmHandle, world)?;
        let group = conn.groups.get_mut(&groupId).ok_or(DCGM_ST_NOT_CONFIGURED)?;
        if !exists || group.contains(&(entityGroupId, entityId)) {
            return Err(DCGM_ST_BADPARAM);
        }
        if group.len() >= DCGM_GROUP_MAX_ENTITIES_V2 as usize {
            return Err(DCGM_ST_MAX_LIMIT);
        }
        group.push((entityGroupId, entityId));
        Ok(())
    })
}

/// # Safety
/// See the module documentation.
#[no_mangle]
pub unsafe extern "C" fn dcgmFieldGroupCreate(
    dcgmHandle: dcgmHandle_t,
    numFieldIds: c_int,
    fieldIds: *const c_ushort,
    fieldGroupName: *const c_char,
    dcgmFieldGroupId: *mut dcgmFieldGrp_t,
) -> dcgmReturn_t {
    state::call(|st, world| {
        st.connection(dcgmHandle, world)?;
        let name = unsafe { c_str(fieldGroupName) }?.to_string();
        let ids = nonnull(fieldIds)?;
        let out = nonnull_mut(dcgmFieldGroupId)?;
        let n = usize::try_from(numFieldIds).map_err(|_| DCGM_ST_BADPARAM)?;
        if n == 0 || n > DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP as usize {
            return Err(DCGM_ST_BADPARAM);
        }
        // SAFETY: non-NULL and, by contract, `numFieldIds` entries.
        let fields = unsafe { std::slice::from_raw_parts(ids, n) }.to_vec();
        if fields.iter().any(|f| values::field_type(*f).is_none()) {
            return Err(DCGM_ST_BADPARAM);
        }
        let total: usize = st.connections.values().map(|c| c.field_groups.len()).sum();
        if total >= DCGM_MAX_NUM_FIELD_GROUPS as usize {
            return Err(DCGM_ST_MAX_LIMIT);
        }
        if st.field_group_name_taken(&name) {
            return Err(DCGM_ST_DUPLICATE_KEY);
        }
        let id = st.new_id();
        st.connection(dcgmHandle, world)?
            .field_groups
            .insert(id, (name, fields));
        unsafe { *out = id };
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn dcgmFieldGroupDestroy(
    dcgmHandle: dcgmHandle_t,
    dcgmFieldGroupId: dcgmFieldGrp_t,
) -> dcgmReturn_t {
    state::call(|st, world| {
        let conn = st.connection(dcgmHandle, world)?;
        conn.field_groups
            .remove(&dcgmFieldGroupId)
            .map(|_| ())
            .ok_or(DCGM_ST_BADPARAM)
    })
}

/// The `(entity, field)` pairs a group and a field group span.
fn watch_keys(
    conn: &Connection,
    group: dcgmGpuGrp_t,
    field_group: dcgmFieldGrp_t,
) -> Res<Vec<(u32, u32, u16)>> {
    let entities = conn.groups.get(&group).ok_or(DCGM_ST_NOT_CONFIGURED)?;
    let (_, fields) = conn.field_groups.get(&field_group).ok_or(DCGM_ST_BADPARAM)?;
    Ok(entities
        .iter()
        .flat_map(|&(g, e)| fields.iter().map(move |&f| (g, e, f)))
        .collect())
}

#[no_mangle]
pub extern "C" fn dcgmWatchFields(
    pDcgmHandle: dcgmHandle_t,
    groupId: dcgmGpuGrp_t,
    fieldGroupId: dcgmFieldGrp_t,
    updateFreq: c_longlong,
    maxKeepAge: f64,
    maxKeepSamples: c_int,
) -> dcgmReturn_t {
    state::call(|st, world| {
        if updateFreq <= 0 || maxKeepAge.is_nan() || maxKeepAge < 0.0 || maxKeepSamples < 0 {
            return Err(DCGM_ST_BADPARAM);
        }
        let conn = st.connection(pDcgmHandle, world)?;
        let now = now_us();
        for key in watch_keys(conn, groupId, fieldGroupId)? {
            conn.watches.insert(
                key,
                Watch {
                    since_us: now,
                    update_interval_us: updateFreq,
                    sampled: false,
                },
            );
        }
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn dcgmUnwatchFields(
    pDcgmHandle: dcgmHandle_t,
    groupId: dcgmGpuGrp_t,
    fieldGroupId: dcgmFieldGrp_t,
) -> dcgmReturn_t {
    state::call(|st, world| {
        let conn = st.connection(pDcgmHandle, world)?;
        for key in watch_keys(conn, groupId, fieldGroupId)? {
            conn.watches.remove(&key);
        }
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn dcgmUpdateAllFields(pDcgmHandle: dcgmHandle_t, waitForUpdate: c_int) -> dcgmReturn_t {
    state::call(|st, world| {
        if waitForUpdate != 0 && waitForUpdate != 1 {
            return Err(DCGM_ST_BADPARAM);
        }
        let conn = st.connection(pDcgmHandle, world)?;
        for watch in conn.watches.values_mut() {
            watch.sampled = true;
        }
        Ok(())
    })
}

/// Writes `sample` (or its blank) into `fv`.
fn fill_value(fv: &mut dcgmFieldValue_v2, field_type: u8, status: dcgmReturn_t, sample: &Sample, ts: i64) {
    fv.fieldType = c_ushort::from(field_type);
    fv.status = status;
    fv.ts = if status == DCGM_ST_OK { ts } else { 0 };
    let not_supported = matches!(sample, Sample::NotSupported);
    match (field_type, sample) {
        (_, Sample::Double(v)) => fv.value.dbl = *v,
        (_, Sample::Int(v)) => fv.value.i64_ = *v,
        (_, Sample::Str(s)) => write_c_chars(unsafe { &mut fv.value.str_ }, s),
        (DCGM_FT_DOUBLE, _) => {
            fv.value.dbl = if not_supported {
                DCGM_FP64_NOT_SUPPORTED
            } else {
                DCGM_FP64_BLANK
            }
        }
        (DCGM_FT_INT64, _) => {
            fv.value.i64_ = (if not_supported {
                DCGM_INT64_NOT_SUPPORTED
            } else {
                DCGM_INT64_BLANK
            }) as i64
        }
        _ => {
            let blank = if not_supported {
                DCGM_STR_NOT_SUPPORTED.as_slice()
            } else {
                DCGM_STR_BLANK.as_slice()
            };
            let text = CStr::from_bytes_with_nul(blank).map_or("", |c| c.to_str().unwrap_or(""));
            // SAFETY: writing the `str_` member of a plain C union.
            write_c_chars(unsafe { &mut fv.value.str_ }, text);
        }
    }
}

/// # Safety
/// See the module documentation; `values` holds `entityCount * fieldCount` records.
#[no_mangle]
pub unsafe extern "C" fn dcgmEntitiesGetLatestValues(
    pDcgmHandle: dcgmHandle_t,
    entities: *mut dcgmGroupEntityPair_t,
    entityCount: c_uint,
    fields: *mut c_ushort,
    fieldCount: c_uint,
    flags: c_uint,
    values: *mut dcgmFieldValue_v2,
) -> dcgmReturn_t {
    state::call(|st, world| {
        let _ = flags;
        let entities = nonnull_mut(entities)?;
        let fields = nonnull_mut(fields)?;
        let values = nonnull_mut(values)?;
        if entityCount == 0 || fieldCount == 0 {
            return Err(DCGM_ST_BADPARAM);
        }
        // SAFETY: non-NULL and, by contract, of the given counts.
        let entities = unsafe { std::slice::from_raw_parts(entities, entityCount as usize) };
        let fields = unsafe { std::slice::from_raw_parts(fields, fieldCount as usize) };
        let total = entities.len() * fields.len();
        let values = unsafe { std::slice::from_raw_parts_mut(values, total) };
        let (ts, value_world) = st.value_world(world);
        let now = now_us();
        let conn = st.connection(pDcgmHandle, world)?;
        // DCGM promises no order: answer in reverse, so a caller that assumes
        // one is caught here rather than on a real node.
        let requests = entities
            .iter()
            .flat_map(|e| fields.iter().map(move |f| (*e, *f)))
            .rev();
        for (fv, (entity, field)) in values.iter_mut().zip(requests) {
            *fv = Default::default();
            fv.version = FIELD_VALUE_VERSION2;
            fv.entityGroupId = entity.entityGroupId;
            fv.entityId = entity.entityId;
            fv.fieldId = field;
            let Some(field_type) = values::field_type(field) else {
                fill_value(fv, DCGM_FT_DOUBLE, DCGM_ST_UNKNOWN_FIELD, &Sample::NoData, ts);
                continue;
            };
            let watched = conn
                .watches
                .get(&(entity.entityGroupId, entity.entityId, field))
                .copied();
            let Some(watch) = watched else {
                fill_value(fv, field_type, DCGM_ST_NOT_WATCHED, &Sample::NoData, ts);
                continue;
            };
            if !watch.has_sample(now) {
                fill_value(fv, field_type, DCGM_ST_NO_DATA, &Sample::NoData, ts);
                continue;
            }
            // Identity from the live World; value from the (maybe frozen) one.
            let sample = entities::resolve(world, entity.entityGroupId, entity.entityId)
                .and_then(|e| values::sample(&value_world, e, field))
                .unwrap_or(Sample::NoData);
            let status = match sample {
                Sample::NoData => DCGM_ST_NO_DATA,
                Sample::NotSupported => DCGM_ST_NOT_SUPPORTED,
                Sample::Blank | Sample::Double(_) | Sample::Int(_) | Sample::Str(_) => DCGM_ST_OK,
            };
            fill_value(fv, field_type, status, &sample, ts);
        }
        Ok(())
    })
}

/// DCGM's description of `result`, or NULL for a code DCGM does not know.
#[no_mangle]
pub extern "C" fn errorString(result: dcgmReturn_t) -> *const c_char {
    use crate::bindings::*;
    let text: &'static CStr = match result {
        DCGM_ST_OK => c"Success",
        DCGM_ST_BADPARAM => c"Bad parameter passed to function",
        DCGM_ST_GENERIC_ERROR => c"Generic unspecified error",
        DCGM_ST_MEMORY => c"Out of memory error",
        DCGM_ST_NOT_CONFIGURED => c"Setting not configured",
        DCGM_ST_NOT_SUPPORTED => c"Feature not supported",
        DCGM_ST_INIT_ERROR => c"DCGM initialization error",
        DCGM_ST_NVML_ERROR => c"NVML error",
        DCGM_ST_PENDING => c"Object is in a pending state",
        DCGM_ST_UNINITIALIZED => c"Object is in an undefined state",
        DCGM_ST_TIMEOUT => c"Timeout",
        DCGM_ST_VER_MISMATCH => c"API version mismatch",
        DCGM_ST_UNKNOWN_FIELD => c"Unknown field identifier",
        DCGM_ST_NO_DATA => c"No data is available",
        DCGM_ST_STALE_DATA => c"Only stale data is available",
        DCGM_ST_NOT_WATCHED => c"Field is not being watched",
        DCGM_ST_NO_PERMISSION => c"No permission",
        DCGM_ST_GPU_IS_LOST => c"GPU is lost",
        DCGM_ST_RESET_REQUIRED => c"GPU requires reset",
        DCGM_ST_FUNCTION_NOT_FOUND => c"The requested function was not found",
        DCGM_ST_CONNECTION_NOT_VALID => c"Host engine connection invalid/disconnected",
        DCGM_ST_GPU_NOT_SUPPORTED => c"This GPU is not supported by DCGM",
        DCGM_ST_MAX_LIMIT => c"Max limit reached for the object",
        DCGM_ST_DUPLICATE_KEY => c"Duplicate Key passed to function",
        DCGM_ST_REQUIRES_ROOT => c"Host engine is running as non-root",
        DCGM_ST_INSUFFICIENT_SIZE => c"An input argument is not large enough",
        DCGM_ST_MODULE_NOT_LOADED => {
            c"This request is serviced by a module of DCGM that is not currently loaded"
        }
        DCGM_ST_GROUP_IS_EMPTY => {
            c"The specified group is empty, and this operation is incompatible with an empty group"
        }
        DCGM_ST_PROFILING_NOT_SUPPORTED => c"Profiling is not supported for this group of GPUs or GPU",
        DCGM_ST_PROFILING_LIBRARY_ERROR => {
            c"The third-party Profiling module returned an unrecoverable error"
        }
        DCGM_ST_PROFILING_MULTI_PASS => {
            c"The requested profiling metrics cannot be collected in a single pass"
        }
        DCGM_ST_INSTANCE_NOT_FOUND => c"The specified GPU instance does not exist",
        DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND => c"The specified GPU compute instance does not exist",
        DCGM_ST_NVML_NOT_LOADED => c"Cannot perform operation because NVML isn't loaded",
        _ => return std::ptr::null(),
    };
    text.as_ptr()
}

/// Test hook, not DCGM API: the distinct entities that live connections
/// watch any field of, in `(entity group, entity id)` order. Writes at most
/// `capacity` into `out` and the total into `count`;
/// `DCGM_ST_INSUFFICIENT_SIZE` when `capacity` is too small.
///
/// # Safety
/// See the module documentation; `out` holds `capacity` entries.
#[no_mangle]
pub unsafe extern "C" fn fakeDcgmWatchedEntities(
    out: *mut dcgmGroupEntityPair_t,
    capacity: c_uint,
    count: *mut c_uint,
) -> dcgmReturn_t {
    state::call(|st, _| {
        let count = nonnull_mut(count)?;
        let mut seen: Vec<(u32, u32)> = st
            .connections
            .values()
            .filter(|c| !c.dead)
            .flat_map(|c| c.watches.keys().map(|&(g, e, _)| (g, e)))
            .collect();
        seen.sort();
        seen.dedup();
        unsafe { *count = seen.len() as c_uint };
        if seen.len() > capacity as usize {
            return Err(DCGM_ST_INSUFFICIENT_SIZE);
        }
        if !seen.is_empty() {
            let out = nonnull_mut(out)?;
            for (i, (g, e)) in seen.into_iter().enumerate() {
                unsafe {
                    *out.add(i) = dcgmGroupEntityPair_t {
                        entityGroupId: g,
                        entityId: e,
                    }
                };
            }
        }
        Ok(())
    })
}
