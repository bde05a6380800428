//! The exporter's view of a node: an immutable snapshot built by the pollers.

mod snapshot;

pub use snapshot::*;
