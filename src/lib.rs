//! mig-exporter: Prometheus and OpenTelemetry exporter for NVIDIA MIG nodes.
//!
//! Data flow: sources ([`source`]) are polled by [`poll`] into an immutable
//! [`model::NodeSnapshot`], published atomically; [`expose`] encodes the latest
//! snapshot for `/metrics`, the landing page and the CLI. Scrapes never touch
//! the hardware.

pub mod cli;
pub mod drift;
pub mod expose;
pub mod geometry;
pub mod kube;
pub mod logging;
pub mod model;
pub mod poll;
pub mod relay;
pub mod source;

/// Source revision baked in at build time (`MIG_EXPORTER_REVISION`), for `build_info`.
pub const REVISION: &str = match option_env!("MIG_EXPORTER_REVISION") {
    Some(r) => r,
    None => "unknown",
};
