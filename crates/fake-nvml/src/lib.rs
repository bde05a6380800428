//! `libfake_nvml.so`: the NVIDIA Management Library's C ABI over a
//! [`mig_model::World`] file, so that the exporter (through `nvml-wrapper`) and
//! NVIDIA's own Python binding (`nvidia-ml-py`) can be tested without a GPU.
//!
//! Load it in place of `libnvidia-ml.so.1` (`Nvml::builder().lib_path(..)`, or
//! a directory on `LD_LIBRARY_PATH` holding a `libnvidia-ml.so.1` symlink to it)
//! and name the World file in `MIG_WORLD` ([`mig_model::WORLD_ENV`]) before
//! `nvmlInit`.
//!
//! # Behaviour
//!
//! * The World file is re-read whenever it changes (device, inode, size and
//!   timestamps are compared on every call; a file written in the last
//!   100 ms is also compared byte for byte, because file timestamps are only
//!   as fine as the kernel's clock tick), so a test can reconfigure MIG
//!   between two calls.
//! * Struct layouts and constants are NVIDIA's, from `nvml-wrapper-sys`'s
//!   bindgen output of `nvml.h`; versioned structs check their version word
//!   (`nvmlMemory_v2` = `sizeof | 2 << 24`) and answer
//!   `NVML_ERROR_ARGUMENT_VERSION_MISMATCH` otherwise.
//! * Return codes follow `nvml.h` and, where the driver differs from its
//!   header, what a real H100 80GB HBM3 on driver 580.159.04 returned
//!   (`shared/fixtures/h100-80gb-hbm3-real/nvml_mig_probe.txt`): with MIG
//!   disabled, profile info, placements and remaining capacity still answer,
//!   `nvmlDeviceGetGpuInstances` succeeds with a count of 0,
//!   `nvmlDeviceGetMigDeviceHandleByIndex` is `NOT_FOUND`, and the GPU and
//!   compute instance ids of a full GPU are `INVALID_ARGUMENT`.
//! * Handles are opaque, never-dereferenced pointers naming what they point at
//!   (a GPU by UUID, a GPU instance by GPU, id, profile and placement, a MIG
//!   device or compute instance by its UUID). A handle whose instance is gone
//!   from the World is `NVML_ERROR_INVALID_ARGUMENT`, as a destroyed
//!   instance's handle is on the real driver.
//! * A MIG device handle answers what NVML answers per MIG device (name, UUID,
//!   memory, PCI info, GPU and compute instance ids, parent handle); whole-GPU
//!   readings (power, temperature, clocks, ECC, utilization, ...) asked of a MIG
//!   handle are `NVML_ERROR_NOT_SUPPORTED`, never the parent's value.
//! * Fault switches ([`mig_model::Faults`]): `driver_not_loaded` fails
//!   `nvmlInit*` with `NVML_ERROR_DRIVER_NOT_LOADED`; every call touching a GPU in
//!   `lost_gpus` (or its MIG devices and instances) fails with
//!   `NVML_ERROR_GPU_IS_LOST`; `failing_calls` makes a named function return the
//!   given code; `call_latency_us` makes a named function (or `"*"`, every
//!   function) take that long. Realistic latencies, as measured on the
//!   fixture's H100: `nvmlDeviceGetMigMode` 163 µs, `nvmlDeviceGetTotalEnergyConsumption`
//!   3 892 µs, `nvmlDeviceGetPcieThroughput` 21 109 µs, `nvmlDeviceGetMemoryInfo`
//!   12 µs, `nvmlDeviceGetTemperature` 4 µs, and about 2 µs for the other
//!   simple getters (`"*": 2`). `gpm_clock_offset_ns` moves the clock that
//!   stamps GPM samples (a GPU timer that jumps), not the counters.
//! * `world_swap` ([`mig_model::WorldSwap`]) is a test hook, not a behaviour
//!   of NVIDIA's driver: after the Nth answer of a named function the World
//!   file is replaced with another, before any other call is answered, so a
//!   test can put a reconfiguration between two chosen calls of one poll.
//! * GPM (GPU Performance Monitoring, `nvmlGpm*`): supported on Hopper and
//!   newer products, not on Ampere (`isSupportedDevice` 0, samples
//!   `NVML_ERROR_NOT_SUPPORTED`). Samples copy per-GPU and per-GPU-instance
//!   counters that advance at the World's load, so a metric between two
//!   samples is the load `mig-sim load` set (see the `gpm` module);
//!   [`fakeNvmlGpmLiveSamples`] counts the sample buffers not yet freed.
//! * [`fakeNvmlCallCount`] and [`fakeNvmlCallNanos`] report how often each NVML
//!   function was called and the time spent in it (latency faults included),
//!   so benchmarks can sum the library time.
//! * Every pointer argument is checked for NULL, string buffers shorter than
//!   the answer get `NVML_ERROR_INSUFFICIENT_SIZE`, and no panic crosses the FFI
//!   boundary (`NVML_ERROR_UNKNOWN` instead).
//! * NVML's state-changing functions (`nvmlDeviceSetMigMode`,
//!   `nvmlDeviceCreateGpuInstance`, ..., [`TRAPPED`]) are exported as traps
//!   that end the process with a message: the exporter must only read, and
//!   any test that runs it on this library fails if it calls one.
//!
//! Functions that are not exported make the caller fail to find the symbol,
//! which is what a client of an older driver sees too: honest rather than a
//! stub that answers zero.

// NVML's C names (functions, bindgen constants used in patterns) are kept as NVIDIA spells them.
#![allow(non_snake_case, non_upper_case_globals)]

#[cfg(test)]
mod abi_check;
mod device;
mod events;
mod gpm;
mod handles;
mod latency;
mod mig;
mod read_only_guard;
mod state;
mod stats;
mod stats_file;
mod system;
mod write;

pub use device::*;
pub use events::*;
pub use gpm::*;
pub use mig::*;
pub use read_only_guard::TRAPPED;
pub use stats::*;
pub use system::*;
