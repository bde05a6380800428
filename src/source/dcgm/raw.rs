//! Every DCGM call the exporter makes, in one place. The library is opened at
//! run time ([`Dcgm::load`]); each wrapper checks its symbol, passes only
//! pointers to memory it owns for the sizes DCGM's API documents, sets the
//! version word of versioned structs, and turns a return code into a
//! [`DcgmError`] naming the function.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_uint, c_ushort};
use std::path::{Path, PathBuf};

use super::bindings::{
    dcgmConnectV2Params_v2, dcgmFieldGrp_t, dcgmFieldValue_v2, dcgmGpuGrp_t, dcgmGroupEntityPair_t,
    dcgmHandle_t, dcgmMigHierarchyInfo_v2, dcgmMigHierarchy_v2, dcgmReturn_t, DcgmLib, DCGM_FT_DOUBLE,
    DCGM_FT_INT64, DCGM_FT_STRING, DCGM_GROUP_EMPTY, DCGM_MAX_NUM_DEVICES, DCGM_OPERATION_MODE_AUTO,
    DCGM_ST_OK,
};

/// The library loaded when no path is given: DCGM 4's client library.
pub const DEFAULT_LIBRARY: &str = "libdcgm.so.4";

/// `MAKE_DCGM_VERSION(type, version)`: the struct's size in the low 24 bits,
/// the version number above them.
pub const fn make_version<T>(version: u32) -> u32 {
    std::mem::size_of::<T>() as u32 | (version << 24)
}

pub const CONNECT_V2_PARAMS_VERSION2: u32 = make_version::<dcgmConnectV2Params_v2>(2);
pub const MIG_HIERARCHY_VERSION2: u32 = make_version::<dcgmMigHierarchy_v2>(2);
pub const FIELD_VALUE_VERSION2: u32 = make_version::<dcgmFieldValue_v2>(2);

#[derive(Debug, thiserror::Error)]
pub enum DcgmError {
    #[error("cannot load {library}: {cause} (is DCGM 4 installed? --dcgm.library loads another file)")]
    Load {
        library: String,
        cause: libloading::Error,
    },
    #[error("{library} has no symbol {symbol} (not a DCGM 4 library?)")]
    Symbol { library: String, symbol: &'static str },
    #[error("{function}: {message} ({code})")]
    Call {
        function: &'static str,
        code: dcgmReturn_t,
        message: String,
    },
    #[error("{function}: {problem}")]
    Argument { function: &'static str, problem: String },
}

impl DcgmError {
    /// The DCGM return code, when a call returned one.
    pub fn code(&self) -> Option<dcgmReturn_t> {
        match self {
            DcgmError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The opened library.
pub struct Dcgm {
    lib: DcgmLib,
    library: String,
}

/// One field value as DCGM returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldValue {
    pub entity_group: u32,
    pub entity_id: u32,
    pub field_id: u16,
    /// `DCGM_ST_OK`, or why there is no value.
    pub status: dcgmReturn_t,
    /// Microseconds since 1970 when DCGM sampled it.
    pub ts_us: i64,
    pub value: Value,
}

/// A field value's payload by its DCGM field type, blanks included: telling a
/// blank from a reading is the caller's business (see `super::reading`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Double(f64),
    Int(i64),
    Str(String),
    /// A type the exporter does not read (binary, timestamp).
    Other(u16),
}

/// One row of the MIG hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HierarchyEntry {
    pub entity_group: u32,
    pub entity_id: u32,
    pub parent_group: u32,
    pub parent_id: u32,
    pub gpu_uuid: String,
    pub gpu_index: u32,
    pub gi: u32,
    pub ci: u32,
    pub profile_id: u32,
    pub slices: u32,
}

fn c_chars(raw: &[c_char]) -> String {
    // DCGM NUL-terminates within the array; a missing NUL yields "".
    let bytes: Vec<u8> = raw.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn c_string(function: &'static str, what: &str, s: &str) -> Result<CString, DcgmError> {
    CString::new(s).map_err(|_| DcgmError::Argument {
        function,
        problem: format!("{what} {s:?} contains a NUL byte"),
    })
}

impl Dcgm {
    /// Opens `path`, or [`DEFAULT_LIBRARY`] from the loader's search path.
    pub fn load(path: Option<&Path>) -> Result<Dcgm, DcgmError> {
        let target: PathBuf = path.map_or_else(|| PathBuf::from(DEFAULT_LIBRARY), Path::to_path_buf);
        let library = target.display().to_string();
        // SAFETY: loading runs the library's initialisers; libdcgm's (or the
        // fake's) have no preconditions. Symbols are checked before each use.
        let lib = unsafe { DcgmLib::new(target.as_os_str()) }.map_err(|cause| DcgmError::Load {
            library: library.clone(),
            cause,
        })?;
        let dcgm = Dcgm { lib, library };
        // A library without dcgmInit is no DCGM: say so now, not on first use.
        dcgm.sym(&dcgm.lib.dcgmInit, "dcgmInit")?;
        Ok(dcgm)
    }

    pub fn library(&self) -> &str {
        &self.library
    }

    fn sym<T: Copy>(
        &self,
        symbol: &Result<T, libloading::Error>,
        name: &'static str,
    ) -> Result<T, DcgmError> {
        symbol.as_ref().copied().map_err(|_| DcgmError::Symbol {
            library: self.library.clone(),
            symbol: name,
        })
    }

    /// `errorString`: DCGM's text for a return code.
    pub fn error_string(&self, code: dcgmReturn_t) -> String {
        let Ok(f) = self.sym(&self.lib.errorString, "errorString") else {
            return format!("DCGM error {code}");
        };
        // SAFETY: errorString returns NULL or a pointer to a static string.
        let p = unsafe { f(code) };
        if p.is_null() {
            return format!("unknown DCGM error {code}");
        }
        // SAFETY: non-NULL, NUL-terminated, static.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn check(&self, function: &'static str, code: dcgmReturn_t) -> Result<(), DcgmError> {
        if code == DCGM_ST_OK {
            Ok(())
        } else {
            Err(DcgmError::Call {
                function,
                code,
                message: self.error_string(code),
            })
        }
    }

    /// `dcgmInit`.
    pub fn init(&self) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmInit, "dcgmInit")?;
        // SAFETY: no arguments.
        self.check("dcgmInit", unsafe { f() })
    }

    /// `dcgmShutdown`.
    pub fn shutdown(&self) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmShutdown, "dcgmShutdown")?;
        // SAFETY: no arguments.
        self.check("dcgmShutdown", unsafe { f() })
    }

    /// `dcgmConnect_v2` to `address` (`host[:port]`, or a unix socket path
    /// when `unix_socket`), giving up after `timeout_ms`.
    pub fn connect(
        &self,
        address: &str,
        unix_socket: bool,
        timeout_ms: u32,
    ) -> Result<dcgmHandle_t, DcgmError> {
        let f = self.sym(&self.lib.dcgmConnect_v2, "dcgmConnect_v2")?;
        let address = c_string("dcgmConnect_v2", "address", address)?;
        let mut params = dcgmConnectV2Params_v2 {
            version: CONNECT_V2_PARAMS_VERSION2,
            persistAfterDisconnect: 0,
            timeoutMs: timeout_ms,
            addressIsUnixSocket: c_uint::from(unix_socket),
        };
        let mut handle: dcgmHandle_t = 0;
        // SAFETY: a NUL-terminated string and two locals, all outliving the call.
        self.check("dcgmConnect_v2", unsafe {
            f(address.as_ptr(), &mut params, &mut handle)
        })?;
        Ok(handle)
    }

    /// `dcgmDisconnect`.
    pub fn disconnect(&self, handle: dcgmHandle_t) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmDisconnect, "dcgmDisconnect")?;
        // SAFETY: a handle by value.
        self.check("dcgmDisconnect", unsafe { f(handle) })
    }

    /// `dcgmStartEmbedded` in auto mode: DCGM samples watches on its own threads.
    pub fn start_embedded(&self) -> Result<dcgmHandle_t, DcgmError> {
        let f = self.sym(&self.lib.dcgmStartEmbedded, "dcgmStartEmbedded")?;
        let mut handle: dcgmHandle_t = 0;
        // SAFETY: a pointer to a local.
        self.check("dcgmStartEmbedded", unsafe {
            f(DCGM_OPERATION_MODE_AUTO, &mut handle)
        })?;
        Ok(handle)
    }

    /// `dcgmStopEmbedded`.
    pub fn stop_embedded(&self, handle: dcgmHandle_t) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmStopEmbedded, "dcgmStopEmbedded")?;
        // SAFETY: a handle by value.
        self.check("dcgmStopEmbedded", unsafe { f(handle) })
    }

    /// `dcgmGetAllSupportedDevices`: DCGM GPU ids.
    pub fn supported_devices(&self, handle: dcgmHandle_t) -> Result<Vec<u32>, DcgmError> {
        let f = self.sym(&self.lib.dcgmGetAllSupportedDevices, "dcgmGetAllSupportedDevices")?;
        let mut ids = [0 as c_uint; DCGM_MAX_NUM_DEVICES as usize];
        let mut count: c_int = 0;
        // SAFETY: the array has the DCGM_MAX_NUM_DEVICES entries the API writes at most.
        self.check("dcgmGetAllSupportedDevices", unsafe {
            f(handle, ids.as_mut_ptr(), &mut count)
        })?;
        let n = usize::try_from(count).unwrap_or(0).min(ids.len());
        Ok(ids[..n].to_vec())
    }

    /// `dcgmGetGpuInstanceHierarchy`: every GPU and compute instance.
    pub fn hierarchy(&self, handle: dcgmHandle_t) -> Result<Vec<HierarchyEntry>, DcgmError> {
        let f = self.sym(
            &self.lib.dcgmGetGpuInstanceHierarchy,
            "dcgmGetGpuInstanceHierarchy",
        )?;
        // 73 KB: on the heap. Zeroed is a valid value of this plain C struct.
        let mut h: Box<dcgmMigHierarchy_v2> = Box::default();
        h.version = MIG_HIERARCHY_VERSION2;
        // SAFETY: a pointer to a whole, versioned dcgmMigHierarchy_v2.
        self.check("dcgmGetGpuInstanceHierarchy", unsafe { f(handle, &mut *h) })?;
        let n = (h.count as usize).min(h.entityList.len());
        Ok(h.entityList[..n].iter().map(hierarchy_entry).collect())
    }

    /// `dcgmGroupCreate` of an empty group, then `dcgmGroupAddEntity` for each
    /// entity. The group is destroyed again if adding fails.
    pub fn group_create(
        &self,
        handle: dcgmHandle_t,
        name: &str,
        entities: &[(u32, u32)],
    ) -> Result<dcgmGpuGrp_t, DcgmError> {
        let create = self.sym(&self.lib.dcgmGroupCreate, "dcgmGroupCreate")?;
        let add = self.sym(&self.lib.dcgmGroupAddEntity, "dcgmGroupAddEntity")?;
        let name = c_string("dcgmGroupCreate", "group name", name)?;
        let mut group: dcgmGpuGrp_t = 0;
        // SAFETY: a NUL-terminated string and a local.
        self.check("dcgmGroupCreate", unsafe {
            create(handle, DCGM_GROUP_EMPTY, name.as_ptr(), &mut group)
        })?;
        for &(entity_group, entity_id) in entities {
            // SAFETY: values only.
            let added = self.check("dcgmGroupAddEntity", unsafe {
                add(handle, group, entity_group, entity_id)
            });
            if let Err(e) = added {
                let _ = self.group_destroy(handle, group);
                return Err(e);
            }
        }
        Ok(group)
    }

    /// `dcgmGroupDestroy`.
    pub fn group_destroy(&self, handle: dcgmHandle_t, group: dcgmGpuGrp_t) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmGroupDestroy, "dcgmGroupDestroy")?;
        // SAFETY: values only.
        self.check("dcgmGroupDestroy", unsafe { f(handle, group) })
    }

    /// `dcgmFieldGroupCreate`.
    pub fn field_group_create(
        &self,
        handle: dcgmHandle_t,
        name: &str,
        fields: &[u16],
    ) -> Result<dcgmFieldGrp_t, DcgmError> {
        let f = self.sym(&self.lib.dcgmFieldGroupCreate, "dcgmFieldGroupCreate")?;
        let name = c_string("dcgmFieldGroupCreate", "field group name", name)?;
        let count = c_int::try_from(fields.len()).map_err(|_| DcgmError::Argument {
            function: "dcgmFieldGroupCreate",
            problem: format!("{} field ids", fields.len()),
        })?;
        let mut id: dcgmFieldGrp_t = 0;
        // SAFETY: `count` field ids, a NUL-terminated string and a local.
        self.check("dcgmFieldGroupCreate", unsafe {
            f(handle, count, fields.as_ptr(), name.as_ptr(), &mut id)
        })?;
        Ok(id)
    }

    /// `dcgmFieldGroupDestroy`.
    pub fn field_group_destroy(&self, handle: dcgmHandle_t, id: dcgmFieldGrp_t) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmFieldGroupDestroy, "dcgmFieldGroupDestroy")?;
        // SAFETY: values only.
        self.check("dcgmFieldGroupDestroy", unsafe { f(handle, id) })
    }

    /// `dcgmWatchFields`: sample every `update_interval_us`, keep
    /// `max_keep_age_s` seconds or `max_keep_samples` samples.
    pub fn watch_fields(
        &self,
        handle: dcgmHandle_t,
        group: dcgmGpuGrp_t,
        fields: dcgmFieldGrp_t,
        update_interval_us: i64,
        max_keep_age_s: f64,
        max_keep_samples: i32,
    ) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmWatchFields, "dcgmWatchFields")?;
        // SAFETY: values only.
        self.check("dcgmWatchFields", unsafe {
            f(
                handle,
                group,
                fields,
                update_interval_us,
                max_keep_age_s,
                max_keep_samples,
            )
        })
    }

    /// `dcgmUnwatchFields`.
    pub fn unwatch_fields(
        &self,
        handle: dcgmHandle_t,
        group: dcgmGpuGrp_t,
        fields: dcgmFieldGrp_t,
    ) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmUnwatchFields, "dcgmUnwatchFields")?;
        // SAFETY: values only.
        self.check("dcgmUnwatchFields", unsafe { f(handle, group, fields) })
    }

    /// `dcgmUpdateAllFields`, waiting for the update when `wait`.
    pub fn update_all_fields(&self, handle: dcgmHandle_t, wait: bool) -> Result<(), DcgmError> {
        let f = self.sym(&self.lib.dcgmUpdateAllFields, "dcgmUpdateAllFields")?;
        // SAFETY: values only.
        self.check("dcgmUpdateAllFields", unsafe { f(handle, c_int::from(wait)) })
    }

    /// `dcgmEntitiesGetLatestValues`: the latest sample of each of `fields` on
    /// each of `entities`, in whatever order DCGM returns them.
    pub fn latest_values(
        &self,
        handle: dcgmHandle_t,
        entities: &[(u32, u32)],
        fields: &[u16],
    ) -> Result<Vec<FieldValue>, DcgmError> {
        const FUNCTION: &str = "dcgmEntitiesGetLatestValues";
        if entities.is_empty() || fields.is_empty() {
            return Ok(Vec::new());
        }
        let f = self.sym(&self.lib.dcgmEntitiesGetLatestValues, FUNCTION)?;
        let too_many = |what: &str, n: usize| DcgmError::Argument {
            function: FUNCTION,
            problem: format!("{n} {what}"),
        };
        let entity_count =
            c_uint::try_from(entities.len()).map_err(|_| too_many("entities", entities.len()))?;
        let field_count = c_uint::try_from(fields.len()).map_err(|_| too_many("fields", fields.len()))?;
        let mut pairs: Vec<dcgmGroupEntityPair_t> = entities
            .iter()
            .map(|&(group, id)| dcgmGroupEntityPair_t {
                entityGroupId: group,
                entityId: id,
            })
            .collect();
        let mut field_ids: Vec<c_ushort> = fields.to_vec();
        let mut values: Vec<dcgmFieldValue_v2> =
            vec![dcgmFieldValue_v2::default(); entities.len() * fields.len()];
        for v in &mut values {
            v.version = FIELD_VALUE_VERSION2;
        }
        // SAFETY: `entity_count` pairs, `field_count` ids and room for their
        // product of field values, all owned here and outliving the call.
        self.check(FUNCTION, unsafe {
            f(
                handle,
                pairs.as_mut_ptr(),
                entity_count,
                field_ids.as_mut_ptr(),
                field_count,
                0,
                values.as_mut_ptr(),
            )
        })?;
        Ok(values.iter().map(field_value).collect())
    }
}

/// One row of `dcgmGetGpuInstanceHierarchy`'s answer. Public only for the
/// fuzz targets (fuzz/fuzz_targets/dcgm_values.rs); not an API.
#[doc(hidden)]
pub fn hierarchy_entry(e: &dcgmMigHierarchyInfo_v2) -> HierarchyEntry {
    HierarchyEntry {
        entity_group: e.entity.entityGroupId,
        entity_id: e.entity.entityId,
        parent_group: e.parent.entityGroupId,
        parent_id: e.parent.entityId,
        gpu_uuid: c_chars(&e.info.gpuUuid),
        gpu_index: e.info.nvmlGpuIndex,
        gi: e.info.nvmlInstanceId,
        ci: e.info.nvmlComputeInstanceId,
        profile_id: e.info.nvmlMigProfileId,
        slices: e.info.nvmlProfileSlices,
    }
}

/// [`field_value`], for the fuzz targets (fuzz/fuzz_targets/dcgm_values.rs)
/// only; not an API.
///
/// # Safety
///
/// Every byte of `v.value` is initialised, as in a value made with
/// `dcgmFieldValue_v2::default()` or with the union's largest member
/// (`blob`): the field type chooses which member is read, and a union built
/// from a smaller member leaves the others' bytes undefined.
#[doc(hidden)]
pub unsafe fn decode_field_value(v: &dcgmFieldValue_v2) -> FieldValue {
    field_value(v)
}

/// One value of `dcgmEntitiesGetLatestValues`' answer, by its field type.
/// Only for values made with `dcgmFieldValue_v2::default()` (zeroed) and
/// written by DCGM, as [`Dcgm::latest_values`] makes them.
fn field_value(v: &dcgmFieldValue_v2) -> FieldValue {
    // SAFETY (each union read): the field type says which member DCGM wrote;
    // every member is plain data, valid for any bit pattern.
    let value = match u8::try_from(v.fieldType) {
        Ok(DCGM_FT_DOUBLE) => Value::Double(unsafe { v.value.dbl }),
        Ok(DCGM_FT_INT64) => Value::Int(unsafe { v.value.i64_ }),
        Ok(DCGM_FT_STRING) => Value::Str(c_chars(unsafe { &v.value.str_ })),
        _ => Value::Other(v.fieldType),
    };
    FieldValue {
        entity_group: v.entityGroupId,
        entity_id: v.entityId,
        field_id: v.fieldId,
        status: v.status,
        ts_us: v.ts,
        value,
    }
}
