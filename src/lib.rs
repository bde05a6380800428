//! mig-exporter: Prometheus and OpenTelemetry exporter for NVIDIA MIG nodes.
//!
//! Data flow: sources ([`source`]) are polled by [`poll`] into an immutable
//! [`model::NodeSnapshot`], published atomically; [`expose`] encodes the latest
//! snapshot for `/metrics`, the landing page and the CLI. Scrapes never touch
//! the hardware.

pub mod cli;
pub mod client_runtime;
pub mod drift;
pub mod expose;
pub mod geometry;
pub mod kube;
pub mod logging;
pub mod model;
pub mod poll;
pub mod relay;
pub mod source;

/// Source revision (git HEAD, or `MIG_EXPORTER_REVISION` at build time, else
/// `unknown`), set by build.rs; for `build_info` and `--version`.
pub const REVISION: &str = env!("MIG_EXPORTER_REVISION");

/// What `--version` prints after the name, as Prometheus exporters do: version,
/// revision, build date (UTC), the compiler, and the target.
pub const LONG_VERSION: &str = concat!(
    "version ",
    env!("CARGO_PKG_VERSION"),
    " (revision: ",
    env!("MIG_EXPORTER_REVISION"),
    ")\n  build date:   ",
    env!("MIG_EXPORTER_BUILD_DATE"),
    "\n  rust version: ",
    env!("MIG_EXPORTER_RUST_VERSION"),
    "\n  platform:     ",
    env!("MIG_EXPORTER_TARGET"),
);
