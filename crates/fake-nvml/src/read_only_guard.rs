//! Traps for NVML's state-changing functions.
//!
//! mig-exporter promises to only read: it never changes MIG mode, instances
//! or any other GPU state. A double that simply left these functions out
//! would not catch a caller that resolves one and ignores the missing-symbol
//! error, so each is exported here and ends the process with a message on
//! its first call: every test that runs the exporter on this library then
//! fails (its exporter dies) if some code path calls one.
//!
//! The list is every function of `nvml.h` that sets, resets, clears,
//! creates, destroys or removes device, MIG, unit or system state, as
//! bound by `nvml-wrapper-sys` 0.10 (`src/bindings.rs`, the `NvmlLib`
//! fields whose names contain `Set`, `Reset`, `Clear`, `Create`, `Destroy`,
//! `Modify`, `Remove` or `Discover`, less the event-set calls
//! `nvmlEventSetCreate`/`nvmlEventSetFree`, which only allocate a
//! client-side wait object and which the exporter uses for XIDs).
//! `nvmlDeviceSetCpuAffinity`/`ClearCpuAffinity` change the calling
//! thread's CPU affinity, not the GPU, but an exporter has no business
//! calling them either.

use std::io::Write;

macro_rules! traps {
    ($($name:ident),* $(,)?) => {
        $(
            /// Trap: see the module documentation.
            #[no_mangle]
            pub extern "C" fn $name() -> ! {
                trap(stringify!($name))
            }
        )*

        /// The names of the trapped functions.
        pub const TRAPPED: &[&str] = &[$(stringify!($name)),*];
    };
}

fn trap(name: &str) -> ! {
    // A write to stderr that fails has nowhere else to go; abort regardless.
    let _ = writeln!(
        std::io::stderr(),
        "fake-nvml: {name} was called; it changes GPU state, and mig-exporter must only read"
    );
    std::process::abort()
}

traps!(
    nvmlComputeInstanceDestroy,
    nvmlDeviceClearAccountingPids,
    nvmlDeviceClearCpuAffinity,
    nvmlDeviceClearEccErrorCounts,
    nvmlDeviceClearFieldValues,
    nvmlDeviceCreateGpuInstance,
    nvmlDeviceCreateGpuInstanceWithPlacement,
    nvmlDeviceDiscoverGpus,
    nvmlDeviceModifyDrainState,
    nvmlDevicePowerSmoothingSetState,
    nvmlDeviceRemoveGpu,
    nvmlDeviceRemoveGpu_v2,
    nvmlDeviceResetApplicationsClocks,
    nvmlDeviceResetGpuLockedClocks,
    nvmlDeviceResetMemoryLockedClocks,
    nvmlDeviceResetNvLinkErrorCounters,
    nvmlDeviceResetNvLinkUtilizationCounter,
    nvmlDeviceSetAPIRestriction,
    nvmlDeviceSetAccountingMode,
    nvmlDeviceSetApplicationsClocks,
    nvmlDeviceSetAutoBoostedClocksEnabled,
    nvmlDeviceSetClockOffsets,
    nvmlDeviceSetComputeMode,
    nvmlDeviceSetConfComputeUnprotectedMemSize,
    nvmlDeviceSetCpuAffinity,
    nvmlDeviceSetDefaultAutoBoostedClocksEnabled,
    nvmlDeviceSetDefaultFanSpeed_v2,
    nvmlDeviceSetDramEncryptionMode,
    nvmlDeviceSetDriverModel,
    nvmlDeviceSetEccMode,
    nvmlDeviceSetFanControlPolicy,
    nvmlDeviceSetFanSpeed_v2,
    nvmlDeviceSetGpcClkVfOffset,
    nvmlDeviceSetGpuLockedClocks,
    nvmlDeviceSetGpuOperationMode,
    nvmlDeviceSetMemClkVfOffset,
    nvmlDeviceSetMemoryLockedClocks,
    nvmlDeviceSetMigMode,
    nvmlDeviceSetNvLinkDeviceLowPowerThreshold,
    nvmlDeviceSetNvLinkUtilizationControl,
    nvmlDeviceSetNvlinkBwMode,
    nvmlDeviceSetPersistenceMode,
    nvmlDeviceSetPowerManagementLimit,
    nvmlDeviceSetPowerManagementLimit_v2,
    nvmlDeviceSetPowerMizerMode_v1,
    nvmlDeviceSetTemperatureThreshold,
    nvmlDeviceSetVgpuCapabilities,
    nvmlDeviceSetVgpuHeterogeneousMode,
    nvmlDeviceSetVgpuSchedulerState,
    nvmlDeviceSetVirtualizationMode,
    nvmlDeviceWorkloadPowerProfileClearRequestedProfiles,
    nvmlDeviceWorkloadPowerProfileSetRequestedProfiles,
    nvmlGpmSetStreamingEnabled,
    nvmlGpuInstanceCreateComputeInstance,
    nvmlGpuInstanceCreateComputeInstanceWithPlacement,
    nvmlGpuInstanceDestroy,
    nvmlGpuInstanceSetVgpuHeterogeneousMode,
    nvmlGpuInstanceSetVgpuSchedulerState,
    nvmlSetVgpuVersion,
    nvmlSystemSetConfComputeGpusReadyState,
    nvmlSystemSetConfComputeKeyRotationThresholdInfo,
    nvmlSystemSetNvlinkBwMode,
    nvmlUnitSetLedState,
    nvmlVgpuInstanceClearAccountingPids,
    nvmlVgpuInstanceSetEncoderCapacity,
);
