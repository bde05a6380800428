//! Drift detection: knowing when a node's MIG geometry is not what it should be.
//!
//! * [`desired`]: what the node was asked to be, from an `nvidia-mig-parted`
//!   config selected by name or by the node's `nvidia.com/mig.config` label;
//!   [`from_kubernetes`]: both read from the Kubernetes API, as the GPU
//!   operator's MIG manager reads them.
//! * [`state`]: the last-known-good geometry per GPU UUID, with the boot id it
//!   was seen under, kept in a file written atomically.
//! * [`detect`]: the detectors, pure functions from a GPU's snapshot and what
//!   it should be to findings with human messages.
//! * [`tracker`]: runs them on every poll, keeps each finding's `since`, the
//!   time each GPU's geometry last changed, and the last-known-good state.
//! * [`advertised`]: what the kubelet advertises against the devices that exist.
//! * [`report`]: `mig-exporter check` output and exit status.
//!
//! The exporter only observes: drift detection changes nothing on the GPUs.

pub mod advertised;
pub mod desired;
pub mod detect;
pub mod from_kubernetes;
pub mod report;
pub mod state;
pub mod tracker;

pub use desired::{ConfigName, DesiredError, DesiredSource};
pub use detect::{Geometry, Reference};
pub use state::{StateDoc, StateError, StateStore, DEFAULT_STATE_DIR, DEFAULT_STATE_FILE};
pub use tracker::DriftTracker;
