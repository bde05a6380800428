//! The library's global state and the entry path every exported function
//! goes through: catch panics, check init, re-read the World if it changed,
//! apply the host-engine fault, run.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use mig_model::World;

use crate::bindings::{
    dcgmReturn_t, DCGM_ST_BADPARAM, DCGM_ST_CONNECTION_NOT_VALID, DCGM_ST_GENERIC_ERROR, DCGM_ST_INIT_ERROR,
    DCGM_ST_OK, DCGM_ST_UNINITIALIZED,
};

pub(crate) type Res<T = ()> = Result<T, dcgmReturn_t>;

/// What a connection watches: `(entity group, entity id, field id)`.
pub(crate) type WatchKey = (u32, u32, u16);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    /// When the watch was set, in µs since 1970.
    pub since_us: i64,
    pub update_interval_us: i64,
    /// `dcgmUpdateAllFields` ran since the watch was set.
    pub sampled: bool,
}

impl Watch {
    /// Whether the watch has had its first sample by `now_us`.
    pub fn has_sample(&self, now_us: i64) -> bool {
        self.sampled || now_us.saturating_sub(self.since_us) >= self.update_interval_us
    }
}

/// A client's connection to the (fake) host engine, or an embedded engine.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    pub embedded: bool,
    /// The host engine went away under this connection.
    pub dead: bool,
    /// Entity groups: id → `(entity group, entity id)` in insertion order.
    pub groups: BTreeMap<usize, Vec<(u32, u32)>>,
    /// Field groups: id → (name, field ids).
    pub field_groups: BTreeMap<usize, (String, Vec<u16>)>,
    pub watches: BTreeMap<WatchKey, Watch>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// `dcgmInit` calls not yet matched by `dcgmShutdown`.
    pub init_count: u32,
    world_path: Option<PathBuf>,
    cache: mig_model::WorldCache,
    /// Handle → connection. Handles, group ids and field group ids share
    /// one counter, so a stale id never names something new by accident.
    pub connections: BTreeMap<usize, Connection>,
    next_id: usize,
    /// The World and time the `dcgm_stale_data` fault froze values at.
    pub frozen: Option<(i64, Arc<World>)>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Runs `f` on the state, recovering it if an earlier panic poisoned the lock
/// (every mutation leaves the state consistent between statements).
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard: MutexGuard<'_, Option<State>> = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(State::default))
}

/// Microseconds since 1970, DCGM's timestamp unit.
pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl State {
    pub fn new_id(&mut self) -> usize {
        self.next_id += 1;
        // Start well away from 0 so that a zeroed handle is never valid.
        0x100 + self.next_id
    }

    /// The current World, re-read if the file changed since the last call.
    pub fn world(&mut self) -> Res<Arc<World>> {
        let path = self.world_path.clone().ok_or(DCGM_ST_UNINITIALIZED)?;
        self.cache
            .get_or_report(&path, "fake-dcgm")
            .ok_or(DCGM_ST_GENERIC_ERROR)
    }

    /// The World values are read from: the live one, or the one the
    /// `dcgm_stale_data` fault froze (and when).
    pub fn value_world(&mut self, live: &Arc<World>) -> (i64, Arc<World>) {
        if live.faults.dcgm_stale_data {
            self.frozen
                .get_or_insert_with(|| (now_us(), live.clone()))
                .clone()
        } else {
            self.frozen = None;
            (now_us(), live.clone())
        }
    }

    /// The connection behind `handle`, after the host-engine fault.
    pub fn connection(&mut self, handle: usize, world: &World) -> Res<&mut Connection> {
        let conn = self.connections.get_mut(&handle).ok_or(DCGM_ST_BADPARAM)?;
        if !conn.embedded && world.faults.dcgm_hostengine_down && !conn.dead {
            // The engine is gone: so is everything this connection made.
            *conn = Connection {
                dead: true,
                ..Connection::default()
            };
        }
        if conn.dead {
            return Err(DCGM_ST_CONNECTION_NOT_VALID);
        }
        Ok(conn)
    }

    /// Whether a field group name is taken on the engine (by any live connection).
    pub fn field_group_name_taken(&self, name: &str) -> bool {
        self.connections
            .values()
            .flat_map(|c| c.field_groups.values())
            .any(|(n, _)| n == name)
    }

    /// `dcgmInit`: finds the World file named by `MIG_WORLD` and reads it.
    fn init(&mut self) -> Res {
        let Some(path) = std::env::var_os(mig_model::WORLD_ENV).filter(|p| !p.is_empty()) else {
            eprintln!(
                "fake-dcgm: {} is not set: no World file to serve (DCGM_ST_INIT_ERROR)",
                mig_model::WORLD_ENV
            );
            return Err(DCGM_ST_INIT_ERROR);
        };
        let path = PathBuf::from(path);
        if self.world_path.as_ref() != Some(&path) {
            self.cache = mig_model::WorldCache::default();
            self.frozen = None;
            self.world_path = Some(path);
        }
        self.world().map_err(|_| DCGM_ST_INIT_ERROR)?;
        self.init_count += 1;
        Ok(())
    }
}

fn code(r: Res) -> dcgmReturn_t {
    match r {
        Ok(()) => DCGM_ST_OK,
        Err(e) => e,
    }
}

/// Turns a panic into `DCGM_ST_GENERIC_ERROR`.
fn guarded(f: impl FnOnce() -> dcgmReturn_t) -> dcgmReturn_t {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(DCGM_ST_GENERIC_ERROR)
}

/// The entry path of every function that needs `dcgmInit`: `body` runs with
/// the state locked and the current World.
pub(crate) fn call(body: impl FnOnce(&mut State, &Arc<World>) -> Res) -> dcgmReturn_t {
    guarded(|| {
        code(with_state(|st| {
            if st.init_count == 0 {
                return Err(DCGM_ST_UNINITIALIZED);
            }
            let world = st.world()?;
            body(st, &world)
        }))
    })
}

/// `dcgmInit`.
pub(crate) fn init() -> dcgmReturn_t {
    guarded(|| code(with_state(State::init)))
}

/// `dcgmShutdown`: the last one drops every connection and what it made.
pub(crate) fn shutdown() -> dcgmReturn_t {
    guarded(|| {
        with_state(|st| {
            st.init_count = st.init_count.saturating_sub(1);
            if st.init_count == 0 {
                st.connections.clear();
                st.frozen = None;
            }
        });
        DCGM_ST_OK
    })
}
