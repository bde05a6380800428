//! The DCGM source: how hard each GPU, GPU instance and compute instance
//! works, from NVIDIA DCGM 4 (`libdcgm.so.4`, loaded at run time, so the
//! exporter starts on nodes without DCGM and says why DCGM is missing).
//!
//! It talks to a running `nv-hostengine` (TCP `host[:port]` or a unix
//! socket) or starts an embedded host engine. Each [`DcgmSource::read`]:
//!
//! 1. reads DCGM's MIG hierarchy, which maps DCGM's entity ids to the GPU
//!    UUID and NVML GPU-instance / compute-instance ids. DCGM numbers MIG
//!    entities by position (from GPU id times the GPU's maximum MIG device
//!    count, GPU instances by profile before id; NVIDIA/DCGM
//!    DcgmCacheManager.cpp) and renumbers them on every reconfiguration, so an
//!    id can name another instance: ids are never interpreted, and the
//!    hierarchy is read on every call, never cached;
//! 2. when the hierarchy, the GPUs or the NVML geometry changed, drops the old
//!    watches (destroyed instances included) and watches the fields each
//!    entity level has: per GPU everything below plus power and temperature,
//!    per GPU instance the profiling fields, DRAM active and framebuffer, per
//!    compute instance the profiling fields but DRAM active (memory belongs to
//!    the GPU instance). GPU-only fields are never asked of a MIG entity: DCGM
//!    would answer with the parent GPU's value;
//! 3. reads the latest values, then the hierarchy again, and starts over if
//!    it changed in between, so a value never lands on the wrong instance.
//!
//! A blank value (no data yet, not supported, not watched, or anything of a
//! GPU instance without compute instances, which DCGM answers with blanks
//! under status OK) and a value older than [`DcgmOptions::max_age`] (the host
//! engine stopped sampling) become `None`: an absent series, never a zero or
//! a stale number. A failed call
//! drops the connection; later calls reconnect with exponential backoff
//! ([`DcgmOptions::backoff_min`] to [`DcgmOptions::backoff_max`]), so a host
//! engine restart heals without restarting the exporter.
//!
//! **No DCGM is not DCGM down.** Until DCGM has been read once by this
//! process, two failures mean that the node has no DCGM, and the source is
//! `disabled` ([`SourceState::Disabled`]: no `source_up`, no alert) rather
//! than down:
//!
//! * the library file is not there: the loader finds no `libdcgm.so.4`, or
//!   no file at `--dcgm.library` (glibc's `dlerror` names the file itself
//!   and says "cannot open shared object file: No such file or directory").
//!   A library that is there but cannot be loaded (a dependency of its own
//!   missing, unreadable, not a DCGM 4 library) is DCGM installed and
//!   broken: down;
//! * `dcgmConnect_v2` fails, not embedded: no host engine answers at
//!   `--dcgm.address` (the GPU operator's default runs none; its
//!   dcgm-exporter embeds its own).
//!
//! Everything else is down: `dcgmInit` failing, an embedded host engine that
//! cannot start (asked for explicitly, with the library there), a host
//! engine that answers the connection and then fails a call. And once DCGM
//! has been read, every failure is down, the two above included: a host
//! engine that worked and stops answering is the failure the alerts are
//! for. What this process has not seen it cannot know: an exporter started
//! while the host engine is already gone reports DCGM disabled (with the
//! reason on the landing page) until the host engine answers.

/// bindgen's output of `dcgm_api.h` (committed; see build.rs). Public only
/// for the fuzz targets (fuzz/fuzz_targets/dcgm_values.rs), which build
/// DCGM's structs from bytes; not an API.
#[doc(hidden)]
#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic
)]
pub mod bindings {
    include!("bindings.rs");
}

pub mod raw;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};

use self::bindings::{
    dcgmFieldGrp_t, dcgmGpuGrp_t, dcgmHandle_t, DCGM_FE_GPU, DCGM_FE_GPU_CI, DCGM_FE_GPU_I,
    DCGM_FI_DEV_FB_FREE, DCGM_FI_DEV_FB_USED, DCGM_FI_DEV_GPU_TEMP, DCGM_FI_DEV_POWER_USAGE,
    DCGM_FI_DEV_UUID, DCGM_FI_PROF_DRAM_ACTIVE, DCGM_FI_PROF_GR_ENGINE_ACTIVE, DCGM_FI_PROF_PIPE_FP16_ACTIVE,
    DCGM_FI_PROF_PIPE_FP32_ACTIVE, DCGM_FI_PROF_PIPE_FP64_ACTIVE, DCGM_FI_PROF_PIPE_TENSOR_ACTIVE,
    DCGM_FI_PROF_SM_ACTIVE, DCGM_FI_PROF_SM_OCCUPANCY, DCGM_FP64_BLANK, DCGM_HE_PORT_NUMBER,
    DCGM_INT64_BLANK, DCGM_ST_CONNECTION_NOT_VALID, DCGM_ST_OK,
};
use self::raw::{Dcgm, DcgmError, FieldValue, HierarchyEntry, Value};
use super::NotApplicable;
use crate::model::{Activity, GpuSnapshot, SourceState};

const MIB: u64 = 1024 * 1024;

/// Where DCGM runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DcgmAddress {
    /// `host[:port]` of an `nv-hostengine` (port 5555 when omitted).
    Tcp(String),
    /// The unix socket of an `nv-hostengine` (`nv-hostengine --domain-socket`).
    Unix(PathBuf),
}

impl DcgmAddress {
    /// `unix:///path` or `/path` is a unix socket; `tcp://host:port` or
    /// `host[:port]` is TCP.
    pub fn parse(s: &str) -> Result<DcgmAddress, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(format!("DCGM address {s:?} names no socket path"));
            }
            return Ok(DcgmAddress::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(DcgmAddress::Unix(PathBuf::from(s)));
        }
        let host = s.strip_prefix("tcp://").unwrap_or(s);
        if host.is_empty() {
            return Err("DCGM address is empty".to_string());
        }
        Ok(DcgmAddress::Tcp(host.to_string()))
    }
}

impl std::fmt::Display for DcgmAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DcgmAddress::Tcp(a) => f.write_str(a),
            DcgmAddress::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DcgmOptions {
    /// The library to load; `libdcgm.so.4` from the loader's path when `None`.
    pub library: Option<PathBuf>,
    /// The host engine to connect to (ignored when `embedded`).
    pub address: DcgmAddress,
    /// Start a host engine inside this process instead of connecting.
    pub embedded: bool,
    /// How often DCGM samples the watched fields.
    pub update_interval: Duration,
    /// A value sampled longer ago than this is stale and left out.
    pub max_age: Duration,
    /// How long `dcgmConnect_v2` tries.
    pub connect_timeout: Duration,
    /// Wait after the first failure before reconnecting; doubles per failure.
    pub backoff_min: Duration,
    /// The longest wait between reconnection attempts.
    pub backoff_max: Duration,
}

impl Default for DcgmOptions {
    fn default() -> Self {
        DcgmOptions {
            library: None,
            address: DcgmAddress::Tcp(format!("localhost:{DCGM_HE_PORT_NUMBER}")),
            embedded: false,
            update_interval: Duration::from_secs(1),
            max_age: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// An entity DCGM reported on, in NVML's terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityKey {
    Gpu { uuid: String },
    GpuInstance { gpu_uuid: String, gi: u32 },
    ComputeInstance { gpu_uuid: String, gi: u32, ci: u32 },
}

/// What DCGM had for one entity; each `None` when DCGM had no live value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Readings {
    /// DRAM activity only at the GPU and GPU-instance levels.
    pub activity: Activity,
    pub memory_used_bytes: Option<u64>,
    pub memory_free_bytes: Option<u64>,
    pub power_watts: Option<f64>,
    pub temperature_celsius: Option<f64>,
}

/// One read of DCGM: readings per entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Utilization {
    pub entities: BTreeMap<EntityKey, Readings>,
}

impl Utilization {
    pub fn gpu(&self, uuid: &str) -> Option<&Readings> {
        self.entities.get(&EntityKey::Gpu {
            uuid: uuid.to_string(),
        })
    }

    pub fn gpu_instance(&self, gpu_uuid: &str, gi: u32) -> Option<&Readings> {
        self.entities.get(&EntityKey::GpuInstance {
            gpu_uuid: gpu_uuid.to_string(),
            gi,
        })
    }

    pub fn compute_instance(&self, gpu_uuid: &str, gi: u32, ci: u32) -> Option<&Readings> {
        self.entities.get(&EntityKey::ComputeInstance {
            gpu_uuid: gpu_uuid.to_string(),
            gi,
            ci,
        })
    }

    /// See [`apply`].
    pub fn apply(&self, gpus: &mut [GpuSnapshot]) {
        apply(self, gpus);
    }
}

/// Puts DCGM's readings on the geometry's GPUs, GPU instances and compute
/// instances, matched by GPU UUID, GI id and CI id. Like every utilization
/// source, it fills only what is still `None`: activity ratios (DCGM runs
/// first, so they are DCGM's wherever DCGM has a live value), and power,
/// temperature and framebuffer used, which NVML reads as well. Instances
/// DCGM does not know (yet) keep what they had.
pub fn apply(utilization: &Utilization, gpus: &mut [GpuSnapshot]) {
    for gpu in gpus {
        if let Some(r) = utilization.gpu(&gpu.uuid) {
            let h = &mut gpu.health;
            h.activity.fill_from(&r.activity);
            h.memory_free_bytes = h.memory_free_bytes.or(r.memory_free_bytes);
            h.memory_used_bytes = h.memory_used_bytes.or(r.memory_used_bytes);
            h.power_watts = h.power_watts.or(r.power_watts);
            h.temperature_celsius = h.temperature_celsius.or(r.temperature_celsius);
        }
        for gi in &mut gpu.gpu_instances {
            if let Some(r) = utilization.gpu_instance(&gpu.uuid, gi.id) {
                gi.activity.fill_from(&r.activity);
                gi.memory_used_bytes = gi.memory_used_bytes.or(r.memory_used_bytes);
                gi.memory_free_bytes = gi.memory_free_bytes.or(r.memory_free_bytes);
            }
            for ci in &mut gi.compute_instances {
                if let Some(r) = utilization.compute_instance(&gpu.uuid, gi.id, ci.id) {
                    // DRAM activity is not a compute-instance reading.
                    ci.activity.fill_from(&Activity {
                        dram_active_ratio: None,
                        ..r.activity
                    });
                }
            }
        }
    }
}

/// The profiling fields, read at every level that has them.
const PROFILING: [u32; 7] = [
    DCGM_FI_PROF_GR_ENGINE_ACTIVE,
    DCGM_FI_PROF_SM_ACTIVE,
    DCGM_FI_PROF_SM_OCCUPANCY,
    DCGM_FI_PROF_PIPE_TENSOR_ACTIVE,
    DCGM_FI_PROF_PIPE_FP64_ACTIVE,
    DCGM_FI_PROF_PIPE_FP32_ACTIVE,
    DCGM_FI_PROF_PIPE_FP16_ACTIVE,
];

/// An entity level: what it is called, its DCGM entity group, its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Gpu,
    GpuInstance,
    ComputeInstance,
}

impl Level {
    const ALL: [Level; 3] = [Level::Gpu, Level::GpuInstance, Level::ComputeInstance];

    fn entity_group(self) -> u32 {
        match self {
            Level::Gpu => DCGM_FE_GPU,
            Level::GpuInstance => DCGM_FE_GPU_I,
            Level::ComputeInstance => DCGM_FE_GPU_CI,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Gpu => "gpu",
            Level::GpuInstance => "gi",
            Level::ComputeInstance => "ci",
        }
    }

    /// The fields watched and read at this level. GPU-only fields (UUID,
    /// power, temperature) are never asked of a MIG entity, where DCGM would
    /// answer with the parent GPU's value; DRAM activity and framebuffer
    /// belong to the GPU instance, not to its compute instances.
    fn fields(self) -> Vec<u16> {
        let mut fields: Vec<u32> = PROFILING.to_vec();
        match self {
            Level::Gpu => fields.extend([
                DCGM_FI_PROF_DRAM_ACTIVE,
                DCGM_FI_DEV_FB_USED,
                DCGM_FI_DEV_FB_FREE,
                DCGM_FI_DEV_POWER_USAGE,
                DCGM_FI_DEV_GPU_TEMP,
                DCGM_FI_DEV_UUID,
            ]),
            Level::GpuInstance => {
                fields.extend([DCGM_FI_PROF_DRAM_ACTIVE, DCGM_FI_DEV_FB_USED, DCGM_FI_DEV_FB_FREE])
            }
            Level::ComputeInstance => {}
        }
        // Field ids are below 2^16 by DCGM's definition (unsigned short).
        fields.into_iter().map(|f| f as u16).collect()
    }
}

/// The library, initialised; `dcgmShutdown` when the last user goes.
struct Loaded {
    dcgm: Dcgm,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Err(e) = self.dcgm.shutdown() {
            tracing::debug!(error = %e, "dcgmShutdown");
        }
    }
}

pub struct DcgmSource {
    options: DcgmOptions,
    // Declared before `lib`: the connection closes before the library shuts down.
    session: Option<Session>,
    lib: Option<Arc<Loaded>>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// Whether the last failure meant no DCGM on the node rather than DCGM down.
    last_state: SourceState,
    /// Whether DCGM has been read once: from then on every failure is down.
    ever_read: bool,
}

impl DcgmSource {
    /// Nothing is loaded or connected until the first [`read`](Self::read).
    pub fn new(options: DcgmOptions) -> Self {
        DcgmSource {
            options,
            session: None,
            lib: None,
            failures: 0,
            retry_at: None,
            last_error: None,
            last_state: SourceState::Enabled,
            ever_read: false,
        }
    }

    /// The `source` label value.
    pub fn name(&self) -> &'static str {
        "dcgm"
    }

    pub fn options(&self) -> &DcgmOptions {
        &self.options
    }

    /// Reads every GPU's, GPU instance's and compute instance's activity.
    /// `geometry` is the node's current geometry (from NVML): when it changes,
    /// the watches are renewed. Fails while DCGM cannot be reached; after a
    /// failure, calls within the backoff fail at once without touching DCGM.
    /// A failure that means no DCGM on this node (see the module's
    /// documentation) is a [`NotApplicable`] in state `disabled`.
    pub fn read(&mut self, geometry: &[GpuSnapshot]) -> anyhow::Result<Utilization> {
        if let Some(at) = self.retry_at {
            let now = Instant::now();
            if now < at {
                // The same failure as the read's own, so the poller logs it
                // once rather than on every poll of the backoff.
                return Err(self.last_failure());
            }
        }
        let result = self.try_read(geometry);
        match result {
            Ok(utilization) => {
                if self.failures > 0 {
                    tracing::info!(
                        source = "dcgm",
                        after_failures = self.failures,
                        "DCGM readable again"
                    );
                }
                self.failures = 0;
                self.retry_at = None;
                self.last_error = None;
                self.last_state = SourceState::Enabled;
                self.ever_read = true;
                Ok(utilization)
            }
            Err(e) => {
                if let Some(session) = self.session.take() {
                    session.close(is_connection_loss(&e));
                }
                self.failures = self.failures.saturating_add(1);
                let delay = backoff(self.options.backoff_min, self.options.backoff_max, self.failures);
                self.retry_at = Some(Instant::now() + delay);
                if !self.ever_read && means_no_dcgm(&e, self.options.embedded) {
                    self.last_state = SourceState::Disabled;
                    self.last_error = Some(format!(
                        "{e:#} (taken as no DCGM on this node, not as DCGM down, until DCGM has been read once)"
                    ));
                    return Err(self.last_failure());
                }
                self.last_state = SourceState::Enabled;
                self.last_error = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// The last read's failure again, as it was classified.
    fn last_failure(&self) -> anyhow::Error {
        let message = self.last_error.as_deref().unwrap_or("DCGM: not connected");
        match self.last_state {
            SourceState::Enabled => anyhow!("{message}"),
            state => NotApplicable::new(state, message).into(),
        }
    }

    fn try_read(&mut self, geometry: &[GpuSnapshot]) -> anyhow::Result<Utilization> {
        let lib = match &self.lib {
            Some(lib) => lib.clone(),
            None => {
                let dcgm = Dcgm::load(self.options.library.as_deref()).context("DCGM")?;
                dcgm.init().context("DCGM")?;
                let lib = Arc::new(Loaded { dcgm });
                self.lib = Some(lib.clone());
                lib
            }
        };
        if self.session.is_none() {
            self.session = Some(Session::open(lib, &self.options).context("DCGM")?);
        }
        let Some(session) = self.session.as_mut() else {
            unreachable!("opened above")
        };
        session.read(geometry, &self.options).context("DCGM")
    }
}

/// `min * 2^(failures-1)`, at most `max`.
fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max).max(min.min(max))
}

/// Whether a failure, before DCGM was ever read, means the node has no DCGM
/// (the module's documentation says which): the library file is absent, or
/// no host engine answers the connection (not embedded).
fn means_no_dcgm(e: &anyhow::Error, embedded: bool) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<DcgmError>())
        .any(|d| match d {
            DcgmError::Load { library, cause } => library_file_absent(library, cause),
            DcgmError::Call {
                function: "dcgmConnect_v2",
                ..
            } => !embedded,
            _ => false,
        })
}

/// Whether `dlopen` failed because the file `library` names is not there,
/// rather than because it, or a library it needs, cannot be loaded. glibc's
/// `dlerror` text is "<object>: <what failed>: <strerror>", the object being
/// the one that could not be opened (glibc elf/dl-load.c `_dl_map_object`,
/// "cannot open shared object file"; dlfcn/dlerror.c): a dependency of
/// DCGM's that is missing names the dependency, not `library`. The exporter
/// never calls `setlocale`, so strerror's text is the C locale's.
fn library_file_absent(library: &str, cause: &libloading::Error) -> bool {
    let libloading::Error::DlOpen { .. } = cause else {
        return false;
    };
    let text = cause.to_string();
    text.starts_with(&format!("{library}: cannot open shared object file"))
        && text.ends_with("No such file or directory")
}

fn is_connection_loss(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<raw::DcgmError>())
        .any(|d| d.code() == Some(DCGM_ST_CONNECTION_NOT_VALID))
}

/// Unique names for field groups: the host engine refuses a name in use.
fn unique_name(what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("mig-exporter-{}-{started}-{n}-{what}", std::process::id())
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// What the watches were set up for; any change renews them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WatchKey {
    gpus: Vec<u32>,
    hierarchy: Vec<HierarchyEntry>,
    /// Every GPU, GPU instance and compute instance of the NVML geometry.
    geometry: Vec<GeometryEntry>,
}

/// One part of the NVML geometry, with all that makes an instance itself:
/// some drivers give a compute instance recreated in place its old MIG UUID
/// back (users' published `nvidia-smi -L` on RTX PRO 6000 and on an A100
/// 80GB PCIe, R515), so a UUID alone would not tell the new instance from
/// the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GeometryEntry {
    gpu_uuid: String,
    mig_current: bool,
    /// GPU-instance id, profile id and placement start.
    gi: Option<(u32, u32, u32)>,
    /// Compute-instance id, profile id and placement start.
    ci: Option<(u32, u32, u32)>,
    mig_uuid: String,
}

fn geometry_key(gpus: &[GpuSnapshot]) -> Vec<GeometryEntry> {
    let mut key = Vec::new();
    for gpu in gpus {
        let entry = |gi, ci, mig_uuid: &str| GeometryEntry {
            gpu_uuid: gpu.uuid.clone(),
            mig_current: gpu.mig_current,
            gi,
            ci,
            mig_uuid: mig_uuid.to_string(),
        };
        key.push(entry(None, None, ""));
        for gi in &gpu.gpu_instances {
            let gi_key = Some((gi.id, gi.profile_id, gi.placement_start));
            key.push(entry(gi_key, None, ""));
            for ci in &gi.compute_instances {
                let ci_key = Some((ci.id, ci.profile_id, ci.placement_start));
                key.push(entry(gi_key, ci_key, &ci.mig_uuid));
            }
        }
    }
    key
}

struct Watches {
    key: WatchKey,
    /// `(level, entity group)` of each non-empty level.
    groups: Vec<(Level, dcgmGpuGrp_t)>,
}

/// A connection (or embedded engine) with its field groups and watches.
struct Session {
    lib: Arc<Loaded>,
    handle: dcgmHandle_t,
    embedded: bool,
    /// One field group per level, in [`Level::ALL`] order.
    field_groups: Vec<(Level, dcgmFieldGrp_t)>,
    watches: Option<Watches>,
}

impl Session {
    fn open(lib: Arc<Loaded>, options: &DcgmOptions) -> anyhow::Result<Session> {
        let dcgm = &lib.dcgm;
        let handle = if options.embedded {
            dcgm.start_embedded()
                .context("cannot start an embedded host engine")?
        } else {
            let (address, unix) = match &options.address {
                DcgmAddress::Tcp(a) => (a.clone(), false),
                DcgmAddress::Unix(p) => (p.display().to_string(), true),
            };
            let timeout = u32::try_from(options.connect_timeout.as_millis()).unwrap_or(u32::MAX);
            dcgm.connect(&address, unix, timeout)
                .with_context(|| format!("cannot connect to the host engine at {}", options.address))?
        };
        let mut session = Session {
            lib: lib.clone(),
            handle,
            embedded: options.embedded,
            field_groups: Vec::new(),
            watches: None,
        };
        for level in Level::ALL {
            match dcgm.field_group_create(handle, &unique_name(level.name()), &level.fields()) {
                Ok(id) => session.field_groups.push((level, id)),
                Err(e) => {
                    let lost = e.code() == Some(DCGM_ST_CONNECTION_NOT_VALID);
                    session.close(lost);
                    return Err(e.into());
                }
            }
        }
        tracing::info!(
            source = "dcgm",
            library = dcgm.library(),
            address = %if options.embedded { "embedded".to_string() } else { options.address.to_string() },
            "connected to DCGM"
        );
        Ok(session)
    }

    fn field_group(&self, level: Level) -> anyhow::Result<dcgmFieldGrp_t> {
        self.field_groups
            .iter()
            .find(|(l, _)| *l == level)
            .map(|(_, id)| *id)
            .ok_or_else(|| anyhow!("no field group for the {} level", level.name()))
    }

    fn read(&mut self, geometry: &[GpuSnapshot], options: &DcgmOptions) -> anyhow::Result<Utilization> {
        const ATTEMPTS: usize = 3;
        let geometry = geometry_key(geometry);
        for _ in 0..ATTEMPTS {
            let dcgm = &self.lib.dcgm;
            let hierarchy = dcgm.hierarchy(self.handle)?;
            let gpus = dcgm.supported_devices(self.handle)?;
            let key = WatchKey {
                gpus,
                hierarchy,
                geometry: geometry.clone(),
            };
            if self.watches.as_ref().map(|w| &w.key) != Some(&key) {
                self.watch(key, options)?;
            }
            let Some(watches) = &self.watches else {
                unreachable!("watched above")
            };
            let dcgm = &self.lib.dcgm;
            let mut values = Vec::new();
            for level in Level::ALL {
                let entities = entities_of(&watches.key, level);
                values.extend(dcgm.latest_values(self.handle, &entities, &level.fields())?);
            }
            // DCGM may renumber instances between two calls: values read
            // under another hierarchy than the one they are mapped with are
            // thrown away and read again.
            if dcgm.hierarchy(self.handle)? == watches.key.hierarchy {
                return Ok(utilization(&watches.key, &values, now_us(), options.max_age));
            }
            tracing::debug!(
                source = "dcgm",
                "MIG hierarchy changed during a read; reading again"
            );
        }
        bail!("the MIG hierarchy DCGM reports changed during each of {ATTEMPTS} reads")
    }

    /// Drops the old watches and groups, watches `key`'s entities, and has
    /// DCGM sample them once now, so the first read after a change has values.
    fn watch(&mut self, key: WatchKey, options: &DcgmOptions) -> anyhow::Result<()> {
        self.unwatch()?;
        let update_us = i64::try_from(options.update_interval.as_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        // Keep a little more than what counts as live.
        let keep_age_s = (options.max_age.as_secs_f64() * 2.0).max(1.0);
        let mut groups = Vec::new();
        let mut result = Ok(());
        for level in Level::ALL {
            let entities = entities_of(&key, level);
            if entities.is_empty() {
                continue;
            }
            let field_group = self.field_group(level)?;
            let dcgm = &self.lib.dcgm;
            let group = match dcgm.group_create(self.handle, &unique_name(level.name()), &entities) {
                Ok(g) => g,
                Err(e) => {
                    result = Err(anyhow::Error::from(e));
                    break;
                }
            };
            groups.push((level, group));
            if let Err(e) = dcgm.watch_fields(self.handle, group, field_group, update_us, keep_age_s, 0) {
                result = Err(e.into());
                break;
            }
        }
        let (gis, cis) = (
            entities_of(&key, Level::GpuInstance).len(),
            entities_of(&key, Level::ComputeInstance).len(),
        );
        // Record what exists even on failure, so that it is cleaned up.
        self.watches = Some(Watches { key, groups });
        result?;
        self.lib.dcgm.update_all_fields(self.handle, true)?;
        tracing::debug!(
            source = "dcgm",
            gpu_instances = gis,
            compute_instances = cis,
            "DCGM watches renewed"
        );
        Ok(())
    }

    /// Unwatches and destroys the current groups. Only a lost connection is
    /// an error: anything else (an entity DCGM already forgot) is logged.
    fn unwatch(&mut self) -> anyhow::Result<()> {
        let Some(old) = self.watches.take() else {
            return Ok(());
        };
        let dcgm = &self.lib.dcgm;
        for (level, group) in old.groups {
            let field_group = self.field_group(level)?;
            for result in [
                dcgm.unwatch_fields(self.handle, group, field_group),
                dcgm.group_destroy(self.handle, group),
            ] {
                if let Err(e) = result {
                    if e.code() == Some(DCGM_ST_CONNECTION_NOT_VALID) {
                        return Err(e.into());
                    }
                    tracing::debug!(source = "dcgm", error = %e, "dropping old DCGM watches");
                }
            }
        }
        Ok(())
    }

    /// Releases what the session holds on the host engine and disconnects.
    /// After a lost connection there is nothing left to release.
    fn close(mut self, connection_lost: bool) {
        if !connection_lost {
            if let Err(e) = self.unwatch() {
                tracing::debug!(source = "dcgm", error = %e, "closing DCGM session");
            }
            for (_, id) in std::mem::take(&mut self.field_groups) {
                let _ = self.lib.dcgm.field_group_destroy(self.handle, id);
            }
        }
        self.watches = None;
        self.field_groups.clear();
        let dcgm = &self.lib.dcgm;
        let closed = if self.embedded {
            dcgm.stop_embedded(self.handle)
        } else {
            dcgm.disconnect(self.handle)
        };
        if let Err(e) = closed {
            tracing::debug!(source = "dcgm", error = %e, "closing DCGM session");
        }
        self.handle = 0;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.handle != 0 {
            // Not closed explicitly (the source itself is dropped): close now.
            let session = Session {
                lib: self.lib.clone(),
                handle: std::mem::take(&mut self.handle),
                embedded: self.embedded,
                field_groups: std::mem::take(&mut self.field_groups),
                watches: self.watches.take(),
            };
            session.close(false);
        }
    }
}

/// The entities of one level in `key`, as `(entity group, entity id)`.
fn entities_of(key: &WatchKey, level: Level) -> Vec<(u32, u32)> {
    match level {
        Level::Gpu => key.gpus.iter().map(|&id| (DCGM_FE_GPU, id)).collect(),
        _ => key
            .hierarchy
            .iter()
            .filter(|e| e.entity_group == level.entity_group())
            .map(|e| (e.entity_group, e.entity_id))
            .collect(),
    }
}

/// A live double: sampled, not blank, not older than `max_age`.
fn live_double(fv: &FieldValue, now_us: i64, max_age_us: i64) -> Option<f64> {
    match fv.value {
        Value::Double(v) if fresh(fv, now_us, max_age_us) && v.is_finite() && v < DCGM_FP64_BLANK => Some(v),
        _ => None,
    }
}

/// A live int64, as [`live_double`].
fn live_int(fv: &FieldValue, now_us: i64, max_age_us: i64) -> Option<i64> {
    match fv.value {
        Value::Int(v) if fresh(fv, now_us, max_age_us) && v < DCGM_INT64_BLANK as i64 => Some(v),
        _ => None,
    }
}

fn live_str(fv: &FieldValue, now_us: i64, max_age_us: i64) -> Option<String> {
    match &fv.value {
        // DCGM's string blanks are `<<<...>>>`.
        Value::Str(s)
            if fresh(fv, now_us, max_age_us)
                && !s.is_empty()
                && !(s.starts_with("<<<") && s.contains(">>>")) =>
        {
            Some(s.clone())
        }
        _ => None,
    }
}

/// Sampled within `max_age` of now, either way: a timestamp further ahead
/// means the wall clock stepped back since the sample, whose age is then
/// unknown (a host engine that stopped sampling would look live for as long
/// as the step).
fn fresh(fv: &FieldValue, now_us: i64, max_age_us: i64) -> bool {
    let age = now_us.saturating_sub(fv.ts_us);
    fv.status == DCGM_ST_OK && fv.ts_us > 0 && (-max_age_us..=max_age_us).contains(&age)
}

/// [`utilization`] for the DCGM GPU ids `gpus` and the MIG hierarchy
/// `hierarchy` the values were read under. Public only for the fuzz targets
/// (fuzz/fuzz_targets/dcgm_values.rs); not an API.
#[doc(hidden)]
pub fn utilization_of(
    gpus: Vec<u32>,
    hierarchy: Vec<HierarchyEntry>,
    values: &[FieldValue],
    now_us: i64,
    max_age: Duration,
) -> Utilization {
    let key = WatchKey {
        gpus,
        hierarchy,
        geometry: Vec::new(),
    };
    utilization(&key, values, now_us, max_age)
}

/// Maps the values read to NVML's entities through the hierarchy they were
/// read under.
fn utilization(key: &WatchKey, values: &[FieldValue], now_us: i64, max_age: Duration) -> Utilization {
    let max_age_us = i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX);
    // A GPU's UUID: its own field, else the hierarchy's record of a MIG parent.
    let mut gpu_uuid: BTreeMap<u32, String> = key
        .hierarchy
        .iter()
        .filter(|e| e.parent_group == DCGM_FE_GPU && !e.gpu_uuid.is_empty())
        .map(|e| (e.parent_id, e.gpu_uuid.clone()))
        .collect();
    for fv in values {
        if fv.entity_group == DCGM_FE_GPU && u32::from(fv.field_id) == DCGM_FI_DEV_UUID {
            if let Some(uuid) = live_str(fv, now_us, max_age_us) {
                gpu_uuid.insert(fv.entity_id, uuid);
            }
        }
    }
    let mig: BTreeMap<(u32, u32), &HierarchyEntry> = key
        .hierarchy
        .iter()
        .map(|e| ((e.entity_group, e.entity_id), e))
        .collect();
    let entity_key = |group: u32, id: u32| -> Option<EntityKey> {
        match group {
            DCGM_FE_GPU => gpu_uuid
                .get(&id)
                .map(|uuid| EntityKey::Gpu { uuid: uuid.clone() }),
            DCGM_FE_GPU_I => mig.get(&(group, id)).map(|e| EntityKey::GpuInstance {
                gpu_uuid: e.gpu_uuid.clone(),
                gi: e.gi,
            }),
            DCGM_FE_GPU_CI => mig.get(&(group, id)).map(|e| EntityKey::ComputeInstance {
                gpu_uuid: e.gpu_uuid.clone(),
                gi: e.gi,
                ci: e.ci,
            }),
            _ => None,
        }
    };
    let mut out = Utilization::default();
    for level in Level::ALL {
        // Every entity read gets an entry, even with nothing live: DCGM knows it.
        for (group, id) in entities_of(key, level) {
            if let Some(k) = entity_key(group, id) {
                out.entities.entry(k).or_default();
            }
        }
    }
    for fv in values {
        let level = match fv.entity_group {
            DCGM_FE_GPU => Level::Gpu,
            DCGM_FE_GPU_I => Level::GpuInstance,
            DCGM_FE_GPU_CI => Level::ComputeInstance,
            _ => continue,
        };
        if !level.fields().contains(&fv.field_id) {
            continue;
        }
        let Some(k) = entity_key(fv.entity_group, fv.entity_id) else {
            continue;
        };
        let r = out.entities.entry(k).or_default();
        let double = || live_double(fv, now_us, max_age_us);
        let mib = || {
            live_int(fv, now_us, max_age_us)
                .and_then(|v| u64::try_from(v).ok())
                .map(|v| v.saturating_mul(MIB))
        };
        match u32::from(fv.field_id) {
            DCGM_FI_PROF_GR_ENGINE_ACTIVE => r.activity.gr_engine_active_ratio = double(),
            DCGM_FI_PROF_SM_ACTIVE => r.activity.sm_active_ratio = double(),
            DCGM_FI_PROF_SM_OCCUPANCY => r.activity.sm_occupancy_ratio = double(),
            DCGM_FI_PROF_PIPE_TENSOR_ACTIVE => r.activity.tensor_active_ratio = double(),
            DCGM_FI_PROF_DRAM_ACTIVE => r.activity.dram_active_ratio = double(),
            DCGM_FI_PROF_PIPE_FP64_ACTIVE => r.activity.fp64_active_ratio = double(),
            DCGM_FI_PROF_PIPE_FP32_ACTIVE => r.activity.fp32_active_ratio = double(),
            DCGM_FI_PROF_PIPE_FP16_ACTIVE => r.activity.fp16_active_ratio = double(),
            DCGM_FI_DEV_FB_USED => r.memory_used_bytes = mib(),
            DCGM_FI_DEV_FB_FREE => r.memory_free_bytes = mib(),
            DCGM_FI_DEV_POWER_USAGE => r.power_watts = double(),
            DCGM_FI_DEV_GPU_TEMP => {
                r.temperature_celsius = live_int(fv, now_us, max_age_us).map(|c| c as f64)
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
