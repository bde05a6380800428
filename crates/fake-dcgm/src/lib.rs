//! `libfake_dcgm.so`: the subset of NVIDIA's DCGM 4 C API that mig-exporter
//! uses, over a [`mig_model::World`] file, so that the exporter's DCGM source
//! runs through its real FFI path without a GPU or a host engine.
//!
//! Load it in place of `libdcgm.so.4` and name the World file in `MIG_WORLD`
//! ([`mig_model::WORLD_ENV`]) before `dcgmInit`.
//!
//! # Behaviour
//!
//! * Struct layouts and constants are the exporter's committed bindings of
//!   its DCGM header (`src/source/dcgm/bindings.rs`), so the fake and the
//!   exporter cannot disagree on a layout without the bindings test noticing.
//!   Versioned arguments are checked: a `dcgmMigHierarchy_v2` or
//!   `dcgmConnectV2Params_v2` with another version word is
//!   `DCGM_ST_VER_MISMATCH`, as DCGM answers.
//! * The World file is re-read whenever it changes (device, inode, size and
//!   timestamps on every call; a file written in the last 100 ms is also
//!   compared byte for byte).
//! * Entities, numbered as DCGM numbers them (`entities::hierarchy` cites
//!   NVIDIA/DCGM's DcgmCacheManager.cpp): a GPU's id is its index; GPU
//!   instances of GPU `g` are `g * max + n` with `max` the GPU's maximum MIG
//!   device count (`nvmlDeviceGetMaxMigDeviceCount`: 7 on an H100, not
//!   dcgm_structs.h's 8), `n` counting its GIs by GI profile index then id;
//!   its compute instances are `g * max + m`, `m` counting over the GPU's GIs
//!   in that order, CIs by CI profile then id. Ids are positions, so a
//!   reconfiguration can give an id to another instance: only the hierarchy
//!   (`dcgmGetGpuInstanceHierarchy`: GPU UUID and index, NVML GI id, CI id,
//!   profile, slices, per entity) says which instance an id is now.
//! * Latest values come from the World's loads. Per compute instance: the
//!   engine and pipe fields (graphics engine, SM active, SM occupancy,
//!   tensor, FP64/FP32/FP16) from its load; framebuffer total/used/free of its
//!   GPU instance (a MIG device's memory is its GI's). Per GPU instance: DRAM
//!   active and framebuffer from its load; the engine and pipe fields as its
//!   compute instances' sum weighted by SM slices over the GI's own slices,
//!   as DCGM normalises them (NVIDIA/DCGM issue 138: a 2g GI with one busy
//!   GPC reads 50 %). A GI without compute instances reads blanks (status OK,
//!   `DCGM_FP64_BLANK` / `DCGM_INT64_BLANK`) for all of them. Per GPU: UUID,
//!   temperature, power, framebuffer, and profiling: with MIG disabled the
//!   World's whole-GPU load (`telemetry.compute_load`, `telemetry.dram_active`),
//!   with MIG enabled the instances' over the GPU's slices. GPU-only fields
//!   (power, temperature, UUID) asked of a MIG entity are blank with
//!   `DCGM_ST_NOT_SUPPORTED`: the fake never passes a parent's value off as
//!   an instance's. DRAM active asked of a compute instance is blank.
//! * A value exists only once its field is watched on that entity
//!   (`DCGM_ST_NOT_WATCHED` before) and sampled: a watch's first sample comes
//!   one update interval after `dcgmWatchFields`, or at once after
//!   `dcgmUpdateAllFields`. `dcgmEntitiesGetLatestValues` writes its records
//!   in reverse request order, since DCGM does not promise any order.
//! * Fault switches ([`mig_model::Faults`]): `dcgm_hostengine_down` fails
//!   `dcgmConnect_v2` and every call on a connection with
//!   `DCGM_ST_CONNECTION_NOT_VALID`; such a connection stays dead once the
//!   engine is back, as after a real restart, and its groups and watches are
//!   gone. `dcgm_unsupported_fields` answers those field ids as not supported
//!   everywhere. `dcgm_stale_data` freezes the latest values, timestamps
//!   included, at the moment the fault is first seen. An embedded engine
//!   (`dcgmStartEmbedded`) lives in the caller's process and is not affected
//!   by `dcgm_hostengine_down`.
//! * A unix-socket address must name an existing file (the host engine's
//!   socket), else `DCGM_ST_CONNECTION_NOT_VALID`.
//! * Every pointer argument is checked for NULL and no panic crosses the FFI
//!   boundary (`DCGM_ST_GENERIC_ERROR` instead). [`fakeDcgmWatchedEntities`]
//!   lists what the live connections watch, for tests.

#![allow(non_snake_case)]

/// The exporter's bindgen output of its DCGM header.
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
    include!("../../../src/source/dcgm/bindings.rs");
}

mod api;
mod entities;
mod state;
mod values;

pub use api::*;
