//! Product tables a World file carries inline, for GPUs the project has no
//! compiled-in table for (or a recorded node whose driver is the truth).
//!
//! In a World file, a GPU's `"product"` is either the slug of a compiled-in
//! product or a [`ProductTable`] object. The model works on `&'static`
//! tables, so an inline table is validated and interned: leaked once per
//! distinct content and shared by every GPU and every later load that carries
//! the same table. A process that loads the same World file again and again
//! (the test doubles do) therefore holds each table once.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::product::{Architecture, Product, ProductSpec};
use crate::profile::{Engines, GiProfile, ProfileName};

/// A product's facts and GPU-instance profile table, as a World file writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductTable {
    /// A name for the table; must not be a compiled-in product's slug.
    pub slug: String,
    /// The name NVML reports (`NVIDIA H100 NVL`).
    pub name: String,
    pub architecture: Architecture,
    /// `pciDeviceId` as NVML reports it (0x232110DE).
    pub pci_device_id: u32,
    pub memory_mib: u64,
    pub sm_count: u32,
    pub compute_slices: u32,
    pub memory_slots: u32,
    pub profiles: Vec<ProfileRow>,
}

/// One GPU-instance profile: what `nvmlDeviceGetGpuInstanceProfileInfoV` and
/// `nvmlDeviceGetGpuInstancePossiblePlacements_v2` give for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRow {
    pub id: u32,
    pub nvml_index: u32,
    pub name: ProfileName,
    pub compute_slices: u32,
    pub memory_slices: u32,
    pub sm_count: u32,
    pub memory_mib: u64,
    pub max_instances: u32,
    pub engines: Engines,
    pub placement_starts: Vec<u32>,
    /// The first driver branch that offers the profile; absent: every branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_driver: Option<u32>,
}

/// Every inline table interned so far, with the spec leaked for it.
static INTERNED: Mutex<Vec<(ProductTable, &'static ProductSpec)>> = Mutex::new(Vec::new());

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl ProductTable {
    /// The table of `spec`, as a World file writes it.
    pub fn from_spec(spec: &ProductSpec) -> ProductTable {
        ProductTable {
            slug: spec.slug.to_string(),
            name: spec.name.to_string(),
            architecture: spec.architecture,
            pci_device_id: spec.pci_device_id,
            memory_mib: spec.memory_mib,
            sm_count: spec.sm_count,
            compute_slices: spec.compute_slices,
            memory_slots: spec.memory_slots,
            profiles: spec
                .profiles
                .iter()
                .map(|p| ProfileRow {
                    id: p.id,
                    nvml_index: p.nvml_index,
                    name: p.name,
                    compute_slices: p.compute_slices,
                    memory_slices: p.memory_slices,
                    sm_count: p.sm_count,
                    memory_mib: p.memory_mib,
                    max_instances: p.max_instances,
                    engines: p.engines,
                    placement_starts: p.placement_starts.to_vec(),
                    since_driver: Some(spec.first_driver_branch(p.id)).filter(|b| *b > 0),
                })
                .collect(),
        }
    }

    /// Validates the table and returns the product it describes, leaking it
    /// only the first time this content is seen.
    pub fn intern(self) -> Result<Product, String> {
        if let Ok(known) = self.slug.parse::<Product>() {
            return Err(format!(
                "inline product '{}' takes the name of a built-in product; write \"product\": \"{known}\" \
                 for the built-in table, or give the inline one another slug",
                self.slug
            ));
        }
        self.check()?;
        let mut interned = INTERNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, spec)) = interned.iter().find(|(table, _)| *table == self) {
            return Ok(Product::Inline(spec));
        }
        let profiles: Vec<GiProfile> = self
            .profiles
            .iter()
            .map(|r| GiProfile {
                id: r.id,
                nvml_index: r.nvml_index,
                name: r.name,
                compute_slices: r.compute_slices,
                memory_slices: r.memory_slices,
                sm_count: r.sm_count,
                memory_mib: r.memory_mib,
                max_instances: r.max_instances,
                engines: r.engines,
                placement_starts: Box::leak(r.placement_starts.clone().into_boxed_slice()),
            })
            .collect();
        let since: Vec<(u32, u32)> = self
            .profiles
            .iter()
            .filter_map(|r| r.since_driver.map(|branch| (r.id, branch)))
            .collect();
        let spec: &'static ProductSpec = Box::leak(Box::new(ProductSpec {
            slug: leak_str(&self.slug),
            name: leak_str(&self.name),
            architecture: self.architecture,
            pci_device_id: self.pci_device_id,
            memory_mib: self.memory_mib,
            sm_count: self.sm_count,
            compute_slices: self.compute_slices,
            memory_slots: self.memory_slots,
            profiles: Box::leak(profiles.into_boxed_slice()),
            profiles_since_driver: Box::leak(since.into_boxed_slice()),
        }));
        interned.push((self, spec));
        Ok(Product::Inline(spec))
    }

    /// Invariants every table must hold, whatever its source: checked on load
    /// for inline tables and by a test for the compiled-in ones.
    pub fn check(&self) -> Result<(), String> {
        let slug = &self.slug;
        if self.profiles.is_empty() {
            return Err(format!("{slug} has no profiles"));
        }
        if self.memory_slots == 0 || self.memory_slots > 31 || self.compute_slices == 0 {
            return Err(format!(
                "{slug}: {} memory slots and {} SM slices is not a MIG GPU (1 to 31 slots, 1 or more SM slices)",
                self.memory_slots, self.compute_slices
            ));
        }
        for p in &self.profiles {
            let at = |what: String| Err(format!("{slug} profile {} ({}): {what}", p.id, p.name));
            if p.name.compute_slices != p.compute_slices {
                return at(format!(
                    "the name says {} SM slices, the row {}",
                    p.name.compute_slices, p.compute_slices
                ));
            }
            if p.compute_slices == 0 || p.compute_slices > self.compute_slices {
                return at(format!(
                    "{} SM slices, the GPU has {}",
                    p.compute_slices, self.compute_slices
                ));
            }
            if p.memory_slices == 0 || p.placement_starts.is_empty() {
                return at("no memory slices or no placements".into());
            }
            if let Some(s) = p
                .placement_starts
                .iter()
                .find(|s| **s + p.memory_slices > self.memory_slots)
            {
                return at(format!(
                    "placement {s}:{} ends past the GPU's {} memory slots",
                    p.memory_slices, self.memory_slots
                ));
            }
            if p.max_instances as usize > p.placement_starts.len() {
                return at(format!(
                    "{} instances but {} placements",
                    p.max_instances,
                    p.placement_starts.len()
                ));
            }
            if p.memory_mib > self.memory_mib || p.sm_count > self.sm_count {
                return at("more memory or SMs than the whole GPU".into());
            }
            if self.profiles.iter().filter(|other| other.id == p.id).count() > 1 {
                return at("two profiles share this id".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::world::World;

    /// A product the compiled-in tables lack, with one profile a driver
    /// offers only from R550 (the numbers are made up; only the shape matters).
    fn unknown_gpu_table() -> ProductTable {
        let row = |id, nvml_index, name: &str, slices, memory_slices, starts: &[u32], max| ProfileRow {
            id,
            nvml_index,
            name: name.parse().unwrap(),
            compute_slices: slices,
            memory_slices,
            sm_count: 16 * slices,
            memory_mib: 12_000 * u64::from(memory_slices),
            max_instances: max,
            engines: Engines::new(slices, slices, 0, slices, 0),
            placement_starts: starts.to_vec(),
            since_driver: None,
        };
        ProductTable {
            slug: "test-gpu-96gb".into(),
            name: "NVIDIA Test GPU 96GB".into(),
            architecture: Architecture::Hopper,
            pci_device_id: 0x2399_10DE,
            memory_mib: 98_000,
            sm_count: 132,
            compute_slices: 7,
            memory_slots: 8,
            profiles: vec![
                row(19, 0, "1g.12gb", 1, 1, &[0, 1, 2, 3, 4, 5, 6], 7),
                ProfileRow {
                    since_driver: Some(550),
                    ..row(15, 9, "1g.24gb", 1, 2, &[0, 2, 4, 6], 4)
                },
                row(9, 2, "3g.48gb", 3, 4, &[0, 4], 2),
                row(0, 4, "7g.96gb", 7, 8, &[0], 1),
            ],
        }
    }

    #[test]
    fn an_inline_table_round_trips_through_a_world_file_and_is_interned_once() {
        let product = unknown_gpu_table().intern().unwrap();
        assert!(matches!(product, Product::Inline(_)));
        assert_eq!(product.spec().first_driver_branch(15), 550);
        let mut world = World::new("node", product, 2);
        world.gpus[0].set_mig_mode(true);
        let gi = world.gpus[0].create_gpu_instance(9, None).unwrap();
        world.gpus[0].create_compute_instance(gi, None).unwrap();
        let text = world.to_json();
        assert!(text.contains("\"slug\": \"test-gpu-96gb\"") && text.contains("\"since_driver\": 550"));
        let back = World::from_json(&text, Path::new("w.json")).unwrap();
        assert_eq!(back, world);
        // Every GPU, and every later load, shares the one interned table.
        assert!(std::ptr::eq(back.gpus[1].spec(), world.gpus[0].spec()));
        assert_eq!(back.gpus[0].product, product);
        assert_ne!(product, Product::H100_80GB);
    }

    #[test]
    fn a_bad_inline_table_is_refused_with_what_and_where() {
        let mut overrun = unknown_gpu_table();
        overrun.profiles[2].placement_starts = vec![0, 6];
        let mut named_like_builtin = unknown_gpu_table();
        named_like_builtin.slug = "h100-80gb".into();
        let mut wrong_slices = unknown_gpu_table();
        wrong_slices.profiles[0].compute_slices = 2;
        for (table, expected) in [
            (
                overrun,
                "test-gpu-96gb profile 9 (3g.48gb): placement 6:4 ends past the GPU's 8 memory slots",
            ),
            (named_like_builtin, "takes the name of a built-in product"),
            (
                wrong_slices,
                "profile 19 (1g.12gb): the name says 1 SM slices, the row 2",
            ),
        ] {
            let e = table.intern().unwrap_err();
            assert!(e.contains(expected), "{e}");
        }
        // In a World file the error names the file and the field's line.
        let world = World::new("node", unknown_gpu_table().intern().unwrap(), 1);
        let text = world
            .to_json()
            .replacen("\"memory_slots\": 8", "\"memory_slots\": 0", 1);
        let e = World::from_json(&text, Path::new("w.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("w.json") && e.contains("gpus[0].product") && e.contains("not a MIG GPU"),
            "{e}"
        );
    }

    #[test]
    fn a_world_whose_driver_withholds_a_profile_cannot_hold_an_instance_of_it() {
        let product = unknown_gpu_table().intern().unwrap();
        let mut world = World::new("node", product, 1);
        world.gpus[0].set_mig_mode(true);
        world.gpus[0].create_gpu_instance(15, Some(0)).unwrap();
        world.driver_version = "550.54.15".into();
        assert_eq!(world.validate(), Ok(()));
        world.driver_version = "535.104.05".into();
        let e = world.validate().unwrap_err();
        assert!(
            e.contains("driver 535.104.05 does not offer 1g.24gb (profile 15); drivers offer it from R550"),
            "{e}"
        );
        let offered: Vec<u32> = product
            .spec()
            .profiles_offered("535.104.05")
            .map(|p| p.id)
            .collect();
        assert_eq!(offered, [19, 9, 0]);
    }
}
