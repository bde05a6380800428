//! The library's global state and the one entry path every exported NVML
//! function goes through: count, catch panics, check init, apply faults,
//! re-read the World if it changed, run.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mig_model::{Faults, World, WorldSwap};
use nvml_wrapper_sys::bindings::{
    nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED as DRIVER_NOT_LOADED,
    nvmlReturn_enum_NVML_ERROR_UNINITIALIZED as UNINITIALIZED, nvmlReturn_enum_NVML_ERROR_UNKNOWN as UNKNOWN,
    nvmlReturn_enum_NVML_SUCCESS as SUCCESS, nvmlReturn_t,
};

use crate::handles::Handles;
use crate::stats;

pub(crate) type Res<T = ()> = Result<T, nvmlReturn_t>;

/// An event set: the GPUs registered on it and how many of each GPU's XID
/// events it has delivered.
#[derive(Debug, Default)]
pub(crate) struct EventSet {
    /// GPU UUID → registered event-type mask, in registration order.
    pub registrations: Vec<(String, u64)>,
    /// GPU UUID → XID events already delivered from its `xid_events`.
    pub delivered: BTreeMap<String, usize>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// `nvmlInit*` calls not yet matched by `nvmlShutdown`.
    pub init_count: u32,
    world_path: Option<PathBuf>,
    cache: mig_model::WorldCache,
    pub handles: Handles,
    pub event_sets: BTreeMap<usize, EventSet>,
    pub next_event_set: usize,
    /// GPM sample buffers and the per-instance counters they copy.
    pub gpm: crate::gpm::Gpm,
    /// Which MIG device each `nvmlDeviceGetMigDeviceHandleByIndex` index names.
    pub mig_indexes: crate::mig::MigIndexes,
    /// The World's [`WorldSwap`] test hook being counted, and its calls so far.
    swap: Option<(WorldSwap, u32)>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Runs `f` on the state, recovering it if an earlier panic poisoned the lock
/// (every mutation leaves the state consistent between statements).
pub(crate) fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard: MutexGuard<'_, Option<State>> = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(State::default))
}

impl State {
    /// The current World, re-read if the file changed since the last call.
    pub fn world(&mut self) -> Res<Arc<World>> {
        let path = self.world_path.clone().ok_or(UNINITIALIZED)?;
        self.cache.get_or_report(&path, "fake-nvml").ok_or(UNKNOWN)
    }

    /// Counts a call of `name` for the World's [`WorldSwap`] hook, and when it
    /// is the hook's `after`-th, replaces the World file with the hook's
    /// `then` (a temporary file beside it, then a rename, so no reader sees
    /// half a file). Runs with the state locked, after the call's own work:
    /// no other call is answered in between.
    ///
    /// Test-only machinery, not NVIDIA behaviour: the driver has no such
    /// thing. It stands in for an administrator's `nvidia-smi mig` landing
    /// between two calls of a client, at a point a test chooses.
    fn count_for_swap(&mut self, world: &World, name: &str) {
        let Some(hook) = &world.faults.world_swap else {
            self.swap = None;
            return;
        };
        if hook.call != name {
            return;
        }
        let calls = match &mut self.swap {
            Some((counted, calls)) if *counted == **hook => {
                *calls = calls.saturating_add(1);
                *calls
            }
            _ => {
                self.swap = Some(((**hook).clone(), 1));
                1
            }
        };
        if calls != hook.after {
            return;
        }
        let Some(path) = self.world_path.clone() else {
            return;
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(".swap.tmp");
        let swapped = std::fs::copy(&hook.then, &tmp).and_then(|_| std::fs::rename(&tmp, &path));
        match swapped {
            Ok(()) => eprintln!(
                "fake-nvml: world_swap: after call {calls} of {name}, the World is now {}",
                hook.then.display()
            ),
            Err(e) => eprintln!(
                "fake-nvml: world_swap: cannot replace {} with {}: {e}",
                path.display(),
                hook.then.display()
            ),
        }
    }

    /// `nvmlInit*`: finds the World file named by `MIG_WORLD` and reads it.
    fn init(&mut self) -> Result<Arc<World>, nvmlReturn_t> {
        let Some(path) = std::env::var_os(mig_model::WORLD_ENV).filter(|p| !p.is_empty()) else {
            eprintln!(
                "fake-nvml: {} is not set: no World file to serve (NVML_ERROR_DRIVER_NOT_LOADED)",
                mig_model::WORLD_ENV
            );
            return Err(DRIVER_NOT_LOADED);
        };
        let path = PathBuf::from(path);
        if self.world_path.as_ref() != Some(&path) {
            self.cache = mig_model::WorldCache::default();
            self.world_path = Some(path);
        }
        self.world().map_err(|_| DRIVER_NOT_LOADED)
    }
}

/// How long `name` takes under `faults`: its own entry, else `"*"`.
fn latency(faults: &Faults, name: &str) -> Duration {
    let us = faults
        .call_latency_us
        .get(name)
        .or_else(|| faults.call_latency_us.get("*"))
        .copied()
        .unwrap_or(0);
    Duration::from_micros(us)
}

fn code(r: Res) -> nvmlReturn_t {
    match r {
        Ok(()) => SUCCESS,
        Err(e) => e,
    }
}

/// Counts and times `name`, and turns a panic into `NVML_ERROR_UNKNOWN`.
fn guarded(name: &'static str, f: impl FnOnce() -> nvmlReturn_t) -> nvmlReturn_t {
    let start = Instant::now();
    let ret = catch_unwind(AssertUnwindSafe(f)).unwrap_or(UNKNOWN);
    stats::record(name, start);
    ret
}

/// Sleeps the latency fault of `name`, then returns its failing-call fault if any.
fn apply_faults(world: &World, name: &str) -> Res {
    let delay = latency(&world.faults, name);
    if !delay.is_zero() {
        crate::latency::wait(delay);
    }
    match world.faults.failing_calls.get(name) {
        Some(&code) => Err(code),
        None => Ok(()),
    }
}

fn has_faults(world: &World, name: &str) -> bool {
    !latency(&world.faults, name).is_zero() || world.faults.failing_calls.contains_key(name)
}

/// The entry path of every NVML function but init and `nvmlErrorString`:
/// `body` runs with the state locked and the current World. Without a fault
/// for `name`, that is one lock and one `stat` of the World file.
pub(crate) fn call(name: &'static str, body: impl FnOnce(&mut State, &World) -> Res) -> nvmlReturn_t {
    guarded(name, || {
        code((|| {
            let mut body = Some(body);
            let world = with_state(|st| {
                if st.init_count == 0 {
                    return Err(UNINITIALIZED);
                }
                let world = st.world()?;
                if has_faults(&world, name) {
                    return Ok(Some(world));
                }
                let answer = match body.take() {
                    Some(body) => body(st, &world).map(|()| None),
                    None => Err(UNKNOWN),
                };
                st.count_for_swap(&world, name);
                answer
            })?;
            let Some(world) = world else {
                return Ok(());
            };
            // Faults apply outside the lock, so a slow call does not stall others.
            apply_faults(&world, name)?;
            with_state(|st| {
                // The World may have changed while the latency fault slept.
                let world = st.world()?;
                let answer = match body.take() {
                    Some(body) => body(st, &world),
                    None => Err(UNKNOWN),
                };
                st.count_for_swap(&world, name);
                answer
            })
        })())
    })
}

/// Like [`call`], for functions that must not hold the lock throughout
/// (`nvmlEventSetWait_v2`): `body` locks what it needs itself.
pub(crate) fn call_unlocked(name: &'static str, body: impl FnOnce() -> Res) -> nvmlReturn_t {
    guarded(name, || {
        code((|| {
            let world = with_state(|st| {
                if st.init_count == 0 {
                    return Err(UNINITIALIZED);
                }
                st.world()
            })?;
            apply_faults(&world, name)?;
            body()
        })())
    })
}

/// Like [`call`], for functions that work on the caller's buffers and need
/// no World (`nvmlGpmSampleAlloc`, `nvmlGpmSampleFree`, `nvmlGpmMetricsGet`):
/// a World file that cannot be read does not fail them (its faults apply
/// when it can be read), so a client can always free what it allocated.
pub(crate) fn call_without_world(name: &'static str, body: impl FnOnce(&mut State) -> Res) -> nvmlReturn_t {
    guarded(name, || {
        code((|| {
            let world = with_state(|st| {
                if st.init_count == 0 {
                    return Err(UNINITIALIZED);
                }
                Ok(st.world().ok())
            })?;
            if let Some(world) = world {
                apply_faults(&world, name)?;
            }
            with_state(|st| {
                if st.init_count == 0 {
                    return Err(UNINITIALIZED);
                }
                body(st)
            })
        })())
    })
}

/// `nvmlInit_v2` and `nvmlInitWithFlags`.
pub(crate) fn init(name: &'static str) -> nvmlReturn_t {
    guarded(name, || {
        code((|| {
            let world = with_state(|st| st.init())?;
            apply_faults(&world, name)?;
            if world.faults.driver_not_loaded {
                return Err(DRIVER_NOT_LOADED);
            }
            with_state(|st| st.init_count += 1);
            Ok(())
        })())
    })
}

/// `nvmlShutdown`: the last one frees the event sets, as the driver frees
/// everything a client held. GPM sample buffers are the client's memory
/// (`nvmlGpmSampleAlloc` hands them out): they stay until it frees them.
pub(crate) fn shutdown(name: &'static str) -> nvmlReturn_t {
    call(name, |st, _| {
        st.init_count = st.init_count.saturating_sub(1);
        if st.init_count == 0 {
            st.event_sets.clear();
            st.mig_indexes = Default::default();
        }
        Ok(())
    })
}

/// Counts a call that cannot fail and has no return code (`nvmlErrorString`).
pub(crate) fn counted<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = f();
    stats::record(name, start);
    r
}
