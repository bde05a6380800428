//! `mig-exporter geometry`: the node's layout as `nvidia-smi mig -lgi` and
//! `-lci` would show it together, plus what can still be created.

use std::fmt::Write;

use clap::ValueEnum;

use crate::source::NodeReading;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

pub fn render(reading: &NodeReading, format: OutputFormat) -> String {
    match format {
        // NodeReading holds only strings, numbers and plain structs: it always serializes.
        OutputFormat::Json => serde_json::to_string_pretty(reading).unwrap_or_default() + "\n",
        OutputFormat::Table => table(reading),
    }
}

fn table(reading: &NodeReading) -> String {
    let mut out = String::new();
    let on = |b: bool| if b { "Enabled" } else { "Disabled" };
    let _ = writeln!(
        out,
        "Node {} · driver {}",
        reading.hostname,
        reading.driver_version.as_deref().unwrap_or("unknown")
    );
    for gpu in &reading.gpus {
        let _ = writeln!(
            out,
            "\nGPU {}: {} ({}) {}\n  MIG mode: {} (pending: {})  SM slices {}/{}  memory slices {}/{}",
            gpu.index,
            gpu.name,
            gpu.uuid,
            gpu.pci_bus_id,
            on(gpu.mig_current),
            on(gpu.mig_pending),
            gpu.compute_slices_used,
            gpu.compute_slices_capacity,
            gpu.memory_slices_used,
            gpu.memory_slices_capacity,
        );
        if !gpu.mig_current {
            let _ = writeln!(out, "  No MIG-enabled devices found.");
            continue;
        }
        let _ = writeln!(
            out,
            "  {:>3}  {:<14} {:>4}  {:<9}  {:>3}  {:<16} {:<9}  MIG UUID",
            "GI", "Profile", "ID", "Placement", "CI", "CI profile", "Placement"
        );
        for gi in &gpu.gpu_instances {
            let placement = format!("{}:{}", gi.placement_start, gi.placement_size);
            if gi.compute_instances.is_empty() {
                let _ = writeln!(
                    out,
                    "  {:>3}  {:<14} {:>4}  {:<9}  {:>3}  {:<16} {:<9}  (no compute instance)",
                    gi.id, gi.profile, gi.profile_id, placement, "-", "-", "-"
                );
            }
            for ci in &gi.compute_instances {
                let _ = writeln!(
                    out,
                    "  {:>3}  {:<14} {:>4}  {:<9}  {:>3}  {:<16} {:<9}  {}",
                    gi.id,
                    gi.profile,
                    gi.profile_id,
                    placement,
                    ci.id,
                    ci.profile,
                    format!("{}:{}", ci.placement_start, ci.placement_size),
                    ci.mig_uuid
                );
            }
        }
        let remaining: Vec<String> = gpu
            .profiles
            .iter()
            .map(|p| format!("{} {}/{}", p.name, p.remaining_instances, p.max_instances))
            .collect();
        let _ = writeln!(out, "  Remaining capacity: {}", remaining.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{scenarios, sim};

    #[test]
    fn table_lists_every_ci_and_the_gis_without_one() {
        let reading = sim::reading_from_world(&scenarios::build("gi-without-ci").unwrap());
        let out = render(&reading, OutputFormat::Table);
        assert_eq!(out.matches("(no compute instance)").count(), 3, "{out}");
        let mig_uuids = out.matches(" MIG-").count();
        let cis: usize = reading
            .gpus
            .iter()
            .flat_map(|g| &g.gpu_instances)
            .map(|gi| gi.compute_instances.len())
            .sum();
        assert_eq!(mig_uuids, cis);
        assert!(out.contains("Remaining capacity: 1g.10gb 0/7"), "{out}");
    }

    #[test]
    fn json_round_trips_the_layout() {
        let reading = sim::reading_from_world(&scenarios::build("h100-mixed").unwrap());
        let v: serde_json::Value = serde_json::from_str(&render(&reading, OutputFormat::Json)).unwrap();
        assert_eq!(v["gpus"].as_array().unwrap().len(), 8);
        assert_eq!(v["gpus"][3]["gpu_instances"][0]["profile"], "7g.80gb");
        assert_eq!(
            v["gpus"][3]["gpu_instances"][0]["compute_instances"][0]["profile"],
            "7g.80gb"
        );
    }
}
