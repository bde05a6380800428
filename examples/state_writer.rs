//! Test helper for `tests/drift.rs`: writes the last-known-good state file of
//! a large node over and over, until killed, so the test can kill it in the
//! middle of a write and check that no partial file is ever left.
//!
//! Usage: `state_writer PATH GPUS`

use std::path::PathBuf;

use mig_exporter::drift::state::{self, GpuState, StateDoc};
use mig_exporter::drift::Geometry;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), Some(gpus)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: state_writer PATH GPUS");
    };
    let path = PathBuf::from(path);
    let gpus: usize = gpus.to_string_lossy().parse()?;
    for round in 0u64.. {
        state::save(&path, &doc(gpus, round))?;
    }
    Ok(())
}

/// Every entry carries `round`, so a file mixing two writes would show.
fn doc(gpus: usize, round: u64) -> StateDoc {
    let mut doc = StateDoc::default();
    for i in 0..gpus {
        doc.gpus.insert(
            format!("GPU-{i:08}-0000-0000-0000-000000000000"),
            GpuState {
                index: i as u32,
                name: "NVIDIA H100 80GB HBM3".into(),
                boot_id: "5f1a7c2e-0d3b-4b8e-9a61-3c2f0e9d8b71".into(),
                geometry: Geometry {
                    mig_enabled: true,
                    instances: [("1g.10gb".to_string(), 7)].into(),
                },
                since_seconds: round as f64,
            },
        );
    }
    doc
}
