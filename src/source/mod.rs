//! Backends the pollers read. Each sits behind [`GeometrySource`] so that the
//! poller, the snapshot and the exposition never know which one is in use.

pub mod dcgm;
pub mod gpm;
pub mod kubelet;
pub mod nvml;
pub mod scenarios;
pub mod sim;

use crate::model::{GpuSnapshot, SourceState};

/// What a source fails with when it reads nothing because it does not apply
/// here, which is no failure: the hardware cannot have it
/// ([`SourceState::Unsupported`]) or the node does not run it
/// ([`SourceState::Disabled`]). It may be wrapped in context; the poller
/// finds it in the error's chain ([`failure_state`]) and reports the source
/// in that state instead of down.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct NotApplicable {
    pub state: SourceState,
    pub reason: String,
}

impl NotApplicable {
    pub fn new(state: SourceState, reason: impl Into<String>) -> Self {
        NotApplicable {
            state,
            reason: reason.into(),
        }
    }
}

/// The state `error` puts its source in: [`SourceState::Enabled`] (a real
/// failure: the source is down) unless a [`NotApplicable`] is in its chain.
pub fn failure_state(error: &anyhow::Error) -> SourceState {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<NotApplicable>())
        .map_or(SourceState::Enabled, |n| n.state)
}

/// What one poll of a geometry source read off the node.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeReading {
    pub hostname: String,
    pub boot_id: Option<String>,
    pub driver_version: Option<String>,
    pub nvml_version: Option<String>,
    pub gpus: Vec<GpuSnapshot>,
}

/// A source of MIG geometry (and, for the simulator, load).
pub trait GeometrySource: Send {
    /// The `source` label value (`sim`, `nvml`).
    fn name(&self) -> &'static str;
    /// Reads the node once. Runs on a blocking thread; may take milliseconds.
    fn poll(&mut self) -> anyhow::Result<NodeReading>;
    /// Whether what it reads is made up (the simulator), not hardware:
    /// `mig_exporter_simulated` and the landing page's banner say so.
    fn simulated(&self) -> bool {
        false
    }
}

/// A source of per-instance activity for the geometry a [`GeometrySource`]
/// just read (DCGM, NVML GPM). The poller runs them in order, DCGM first;
/// each fills only the `None`s it can, never a value an earlier one set, so
/// a series carries one source's value and is never duplicated. On failure
/// it fills nothing.
pub trait UtilizationSource: Send {
    /// The `source` label value (`dcgm`, `gpm`).
    fn name(&self) -> &'static str;
    /// Reads activity for `gpus` and puts it on them. Runs on a blocking thread.
    fn fill(&mut self, gpus: &mut [GpuSnapshot]) -> anyhow::Result<()>;
}

impl UtilizationSource for dcgm::DcgmSource {
    fn name(&self) -> &'static str {
        "dcgm"
    }

    fn fill(&mut self, gpus: &mut [GpuSnapshot]) -> anyhow::Result<()> {
        let utilization = self.read(gpus)?;
        dcgm::apply(&utilization, gpus);
        Ok(())
    }
}
