//! Event sets: each XID error in a GPU's `telemetry.xid_events` is delivered
//! once to every event set registered for `nvmlEventTypeXidCriticalError` on
//! that GPU, oldest first. `xid_events` is append-only: an event set
//! remembers how many of a GPU's events it has delivered.

use std::ffi::{c_uint, c_ulonglong};
use std::time::{Duration, Instant};

use nvml_wrapper_sys::bindings::*;

use crate::device::with_gpu;
use crate::handles::{self, gpu_by_uuid, gpu_target, Dev};
use crate::state::{call, call_unlocked, with_state, EventSet, Res};
use crate::write::{nonnull, out};

const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_SUPPORTED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
const TIMEOUT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_TIMEOUT;

/// Event types a GPU accepts registrations for: ECC, P-state, clock and XID
/// events, the classic set of a data-center board. Only XID events are ever
/// delivered: the World has no other kind.
pub const SUPPORTED_EVENT_TYPES: u64 = (nvmlEventTypeSingleBitEccError
    | nvmlEventTypeDoubleBitEccError
    | nvmlEventTypePState
    | nvmlEventTypeXidCriticalError
    | nvmlEventTypeClock) as u64;

const XID: u64 = nvmlEventTypeXidCriticalError as u64;

/// `gpuInstanceId` / `computeInstanceId` of an event not attributable to an instance.
const NO_INSTANCE: c_uint = 0xFFFF_FFFF;

/// How often a waiting `nvmlEventSetWait_v2` looks at the World again.
const POLL: Duration = Duration::from_millis(10);

/// Event-set handles are tagged apart from device handles.
const SET_TAG: usize = 0x5;

/// # Safety
/// `event_types` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetSupportedEventTypes(
    device: nvmlDevice_t,
    event_types: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_gpu("nvmlDeviceGetSupportedEventTypes", device, |_, _| unsafe {
        out(event_types, SUPPORTED_EVENT_TYPES)
    })
}

/// # Safety
/// `set` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    call("nvmlEventSetCreate", |st, _| {
        nonnull(set)?;
        st.next_event_set += 1;
        let h = (st.next_event_set << 4) | SET_TAG;
        st.event_sets.insert(h, EventSet::default());
        unsafe { out(set, h as nvmlEventSet_t) }
    })
}

/// Registers a physical GPU; `NVML_ERROR_NOT_SUPPORTED` for event types
/// outside [`SUPPORTED_EVENT_TYPES`] or a MIG device handle (NVML has no
/// per-instance event reporting).
#[no_mangle]
pub extern "C" fn nvmlDeviceRegisterEvents(
    device: nvmlDevice_t,
    event_types: c_ulonglong,
    set: nvmlEventSet_t,
) -> nvmlReturn_t {
    call("nvmlDeviceRegisterEvents", |st, w| {
        let gpu = match handles::device(&st.handles, w, device as usize)? {
            Dev::Gpu(gpu) => gpu,
            Dev::Mig { .. } => return Err(NOT_SUPPORTED),
        };
        let es = st.event_sets.get_mut(&(set as usize)).ok_or(INVALID_ARGUMENT)?;
        if event_types & !SUPPORTED_EVENT_TYPES != 0 {
            return Err(NOT_SUPPORTED);
        }
        match es.registrations.iter_mut().find(|(uuid, _)| *uuid == gpu.uuid) {
            Some((_, mask)) => *mask |= event_types,
            None => es.registrations.push((gpu.uuid.clone(), event_types)),
        }
        Ok(())
    })
}

/// The next undelivered XID of a GPU registered on `set`, marked delivered.
fn next_event(set: usize) -> Res<Option<nvmlEventData_t>> {
    with_state(|st| {
        let w = st.world()?;
        let es = st.event_sets.get(&set).ok_or(INVALID_ARGUMENT)?;
        let mut found = None;
        for (uuid, mask) in &es.registrations {
            if mask & XID == 0 {
                continue;
            }
            let gpu = gpu_by_uuid(&w, uuid)?;
            let events = &gpu.telemetry.xid_events;
            let done = es.delivered.get(uuid).copied().unwrap_or(0).min(events.len());
            if let Some(&xid) = events.get(done) {
                found = Some((uuid.clone(), done + 1, gpu_target(gpu), xid));
                break;
            }
        }
        let Some((uuid, done, target, xid)) = found else {
            return Ok(None);
        };
        let device = st.handles.handle(target, &w) as nvmlDevice_t;
        if let Some(es) = st.event_sets.get_mut(&set) {
            es.delivered.insert(uuid, done);
        }
        Ok(Some(nvmlEventData_t {
            device,
            eventType: XID,
            eventData: xid,
            gpuInstanceId: NO_INSTANCE,
            computeInstanceId: NO_INSTANCE,
        }))
    })
}

/// Delivers the next XID, or waits for one up to `timeoutms` (looking at the
/// World every 10 ms, never sleeping past the deadline) and then answers
/// `NVML_ERROR_TIMEOUT`. A registered GPU that is lost answers
/// `NVML_ERROR_GPU_IS_LOST`.
///
/// # Safety
/// `data` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeoutms: c_uint,
) -> nvmlReturn_t {
    call_unlocked("nvmlEventSetWait_v2", || {
        nonnull(data)?;
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeoutms));
        loop {
            if let Some(event) = next_event(set as usize)? {
                return unsafe { out(data, event) };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TIMEOUT);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    })
}

#[no_mangle]
pub extern "C" fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    call("nvmlEventSetFree", |st, _| {
        st.event_sets
            .remove(&(set as usize))
            .map(|_| ())
            .ok_or(INVALID_ARGUMENT)
    })
}
