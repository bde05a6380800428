//! The exporter's view of a node: an immutable snapshot built by the pollers,
//! and what the kubelet advertises for it.

mod advertised;
mod fragmentation;
mod snapshot;

pub use advertised::*;
pub use snapshot::*;
