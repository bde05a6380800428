//! Checking a selected config against the node's GPUs, by each GPU's own
//! profiles and placements.

use std::collections::BTreeMap;
use std::path::Path;

use mig_model::ProfileName;

use super::{DesiredError, Entry};
use crate::drift::detect::{describe_counts, Geometry};
use crate::model::{GpuSnapshot, ProfileCapacity};

/// A config resolved against the node: what each selected GPU should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// `config 'NAME' in FILE`.
    pub origin: String,
    /// GPU UUID → desired geometry, for the GPUs some entry selects.
    pub gpus: BTreeMap<String, Geometry>,
}

/// Resolves the entries of config `name` (from `path`) for `gpus`, checking
/// each selected GPU can hold what the entry asks.
pub fn resolve(
    path: &Path,
    name: &str,
    entries: &[Entry],
    gpus: &[GpuSnapshot],
) -> Result<Resolved, DesiredError> {
    let mut wanted = BTreeMap::new();
    // (entry, GPU name, problem) → GPU indexes, so `devices: all` on eight
    // identical GPUs reports a problem once.
    let mut problems: BTreeMap<(usize, String, String), Vec<u32>> = BTreeMap::new();
    for gpu in gpus {
        for (i, entry) in entries.iter().enumerate() {
            if !entry.selects(gpu.index, Some(gpu.pci_device_id)) {
                continue;
            }
            match expected_for(entry, gpu) {
                Ok(geometry) => {
                    wanted.insert(gpu.uuid.clone(), geometry);
                }
                Err(problem) => problems
                    .entry((i, gpu.name.clone(), problem))
                    .or_default()
                    .push(gpu.index),
            }
        }
    }
    if !problems.is_empty() {
        return Err(DesiredError::Invalid {
            path: path.to_path_buf(),
            config: name.to_string(),
            problems: problems
                .into_iter()
                .map(|((i, gpu_name, problem), indexes)| {
                    let list: Vec<String> = indexes.iter().map(u32::to_string).collect();
                    let gpus = if indexes.len() == 1 { "GPU" } else { "GPUs" };
                    format!(
                        "{} on {gpus} {} ({gpu_name}): {problem}",
                        entries[i].describe(i),
                        list.join(", ")
                    )
                })
                .collect(),
        });
    }
    Ok(Resolved {
        origin: format!("config '{name}' in {}", path.display()),
        gpus: wanted,
    })
}

/// What `entry` wants of `gpu`, or why the GPU cannot have it.
fn expected_for(entry: &Entry, gpu: &GpuSnapshot) -> Result<Geometry, String> {
    if !entry.mig_enabled {
        return Ok(Geometry::disabled());
    }
    let wanted: Vec<(ProfileName, u32)> = entry
        .mig_devices
        .iter()
        .copied()
        .filter(|(_, n)| *n > 0)
        .collect();
    check_fits(gpu, &wanted)?;
    Ok(Geometry {
        mig_enabled: true,
        instances: wanted.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
    })
}

/// Every profile is one the GPU's driver offers, and the instances can be
/// placed together: each at one of its profile's placements, none sharing a
/// memory slot, within the GPU's SM slices and each profile's instance count.
///
/// The rules are the GPU's own, as the source read them (on a real node, the
/// driver's profile and placement calls), not a compiled-in table: a GPU the
/// project has never seen, or a driver that offers fewer profiles than
/// another, is judged by what it offers.
fn check_fits(gpu: &GpuSnapshot, wanted: &[(ProfileName, u32)]) -> Result<(), String> {
    if wanted.is_empty() {
        return Ok(());
    }
    if gpu.profiles.is_empty() {
        return Err("the GPU reports no MIG profiles (not MIG-capable?)".into());
    }
    let known = || {
        let names: Vec<&str> = gpu.profiles.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    };
    let mut list: Vec<&ProfileCapacity> = Vec::new();
    for (name, count) in wanted {
        // Driver names that do not parse as a profile name cannot be asked for.
        let profile = gpu
            .profiles
            .iter()
            .find(|p| p.name.parse::<ProfileName>().ok() == Some(*name))
            .ok_or_else(|| format!("no profile '{name}' on this GPU (known: {})", known()))?;
        if *count > profile.max_instances {
            return Err(format!(
                "{count}x {name} do not fit: at most {} fit one GPU",
                profile.max_instances
            ));
        }
        list.extend(std::iter::repeat_n(profile, *count as usize));
    }
    let compute: u32 = list.iter().map(|p| p.compute_slices).sum();
    let counts: BTreeMap<String, u32> = wanted.iter().map(|(p, n)| (p.to_string(), *n)).collect();
    if compute > gpu.compute_slices_capacity {
        return Err(format!(
            "{} need {compute} SM slices, the GPU has {}",
            describe_counts(&counts),
            gpu.compute_slices_capacity
        ));
    }
    // Largest first, then equal profiles in increasing placement order only.
    list.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.memory_slices),
            std::cmp::Reverse(p.compute_slices),
            p.id,
        )
    });
    if !place(&list, 0, None) {
        return Err(format!(
            "{} cannot be placed together: their memory slices overlap in every placement",
            describe_counts(&counts)
        ));
    }
    Ok(())
}

/// Whether `rest` can be placed in the memory slots not in `used`; `after` is
/// the start of the last instance placed when it has the profile of
/// `rest[0]`, since instances of one profile are interchangeable and are
/// placed left to right.
fn place(rest: &[&ProfileCapacity], used: u64, after: Option<u32>) -> bool {
    let Some((profile, tail)) = rest.split_first() else {
        return true;
    };
    for &start in &profile.placement_starts {
        if after.is_some_and(|s| start <= s) || start + profile.memory_slices > 64 {
            continue;
        }
        let slots = ((1u64 << profile.memory_slices) - 1) << start;
        if used & slots != 0 {
            continue;
        }
        let next_after = tail.first().filter(|next| next.id == profile.id).map(|_| start);
        if place(tail, used | slots, next_after) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::desired::fixtures::{gpus, CONFIG, PATH};
    use crate::drift::desired::parse;
    use mig_model::Product;

    #[test]
    fn resolves_each_gpu_to_the_last_entry_that_selects_it() {
        let spec = parse(CONFIG, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(Some("mixed"), Path::new(PATH)).unwrap();
        let node = gpus(Product::H100_80GB, 3);
        let r = resolve(Path::new(PATH), name, entries, &node).unwrap();
        assert_eq!(r.origin, "config 'mixed' in /etc/mig/config.yaml");
        assert_eq!(
            r.gpus[&node[0].uuid].instances,
            BTreeMap::from([("3g.40gb".to_string(), 2)])
        );
        assert_eq!(
            r.gpus[&node[1].uuid],
            Geometry {
                mig_enabled: true,
                instances: BTreeMap::new()
            }
        );
        assert!(!r.gpus.contains_key(&node[2].uuid), "no entry selects GPU 2");
        // On A100s the H100 entry selects nothing, and the A100 filter's
        // "devices: all" entry comes last and wins over entry 1 on GPU 1.
        let a100 = gpus(Product::A100Sxm4_40GB, 2);
        assert_eq!(Product::A100Sxm4_40GB.spec().pci_device_id, 0x20B0_10DE);
        let r = resolve(Path::new(PATH), name, entries, &a100).unwrap();
        assert_eq!(r.gpus[&a100[0].uuid], Geometry::disabled());
        assert_eq!(r.gpus[&a100[1].uuid], Geometry::disabled());
    }

    fn resolve_err(product: Product, mig_devices: &str) -> String {
        let text = format!(
            "version: v1\nmig-configs:\n  ok:\n    - devices: all\n      mig-enabled: false\n  bad:\n    - devices: [1]\n      mig-enabled: false\n    - devices: all\n      mig-enabled: true\n      mig-devices: {mig_devices}\n"
        );
        let spec = parse(&text, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(Some("bad"), Path::new(PATH)).unwrap();
        resolve(Path::new(PATH), name, entries, &gpus(product, 8))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_profile_the_gpu_does_not_have_is_named_with_file_config_entry_and_gpus() {
        let e = resolve_err(Product::H100_80GB, "{\"1g.5gb\": 7}");
        assert!(
            e.starts_with("mig config /etc/mig/config.yaml, config 'bad' does not fit this node: ")
                && e.contains("entry 1 (devices: all) on GPUs 0, 1, 2, 3, 4, 5, 6, 7 (NVIDIA H100 80GB HBM3): no profile '1g.5gb' on this GPU (known: 1g.10gb,"),
            "{e}"
        );
    }

    #[test]
    fn counts_that_cannot_fit_are_refused_by_the_placer() {
        let e = resolve_err(Product::H100_80GB, "{\"1g.10gb\": 8}");
        assert!(e.contains("8x 1g.10gb do not fit: at most 7 fit one GPU"), "{e}");
        let e = resolve_err(
            Product::H100_80GB,
            "{\"4g.40gb\": 1, \"3g.40gb\": 1, \"1g.10gb\": 1}",
        );
        assert!(e.contains("need 8 SM slices, the GPU has 7"), "{e}");
        // 4 + 3 SM slices fit the budget, but the 4g.40gb takes slots 0-3 and
        // three 1g.20gb need 2 slots each: 6 slots in the 4 left.
        let e = resolve_err(Product::H100_80GB, "{\"4g.40gb\": 1, \"1g.20gb\": 3}");
        assert!(e.contains("cannot be placed together"), "{e}");
    }

    #[test]
    fn layouts_that_fit_are_accepted_on_every_product() {
        let spec_text = "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.10gb\": 3, \"2g.20gb\": 2}\n";
        let spec = parse(spec_text, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
        let node = gpus(Product::H100_80GB, 1);
        let r = resolve(Path::new(PATH), name, entries, &node).unwrap();
        assert_eq!(r.gpus[&node[0].uuid].instances.values().sum::<u32>(), 5);
        // Every product's full "all 1g" layout fits.
        for product in Product::ALL {
            let p1 = &product.spec().profiles[0];
            let text = format!(
                "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {{\"{}\": {}}}\n",
                p1.name, p1.max_instances
            );
            let spec = parse(&text, Path::new(PATH)).unwrap();
            let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
            resolve(Path::new(PATH), name, entries, &gpus(product, 1))
                .unwrap_or_else(|e| panic!("{product}: {e}"));
        }
    }

    #[test]
    fn a_gpu_is_judged_by_the_profiles_and_placements_read_off_it_not_by_a_table() {
        let mut node = gpus(Product::H100_80GB, 1);
        // H800 NVL (mig-parted's device filter 0x233A10DE): a GPU no compiled-in table describes.
        node[0].name = "NVIDIA H800 NVL (not in the tables)".into();
        node[0].pci_device_id = 0x233A_10DE;
        let check = |node: &[GpuSnapshot], devices: &str| {
            let text = format!(
                "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {devices}\n"
            );
            let spec = parse(&text, Path::new(PATH)).unwrap();
            let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
            resolve(Path::new(PATH), name, entries, node).map_err(|e| e.to_string())
        };
        assert!(check(&node, "{\"3g.40gb\": 1, \"4g.40gb\": 1}").is_ok());
        let e = check(&node, "{\"1g.5gb\": 1}").unwrap_err();
        assert!(
            e.contains("no profile '1g.5gb' on this GPU (known: 1g.10gb"),
            "{e}"
        );
        let e = check(&node, "{\"1g.10gb\": 8}").unwrap_err();
        assert!(e.contains("8x 1g.10gb do not fit: at most 7"), "{e}");
        let e = check(&node, "{\"4g.40gb\": 1, \"3g.40gb\": 1, \"2g.20gb\": 1}").unwrap_err();
        assert!(e.contains("need 9 SM slices, the GPU has 7"), "{e}");

        // The placements read off the GPU decide: a 3g.40gb that may only
        // start where the 4g.40gb must sit no longer fits beside it.
        let mut narrow = node.clone();
        for p in &mut narrow[0].profiles {
            if p.name == "3g.40gb" {
                p.placement_starts = vec![0];
            }
        }
        let e = check(&narrow, "{\"3g.40gb\": 1, \"4g.40gb\": 1}").unwrap_err();
        assert!(e.contains("cannot be placed together"), "{e}");
        // A profile the driver does not offer cannot be asked for.
        let mut fewer = node.clone();
        fewer[0].profiles.retain(|p| p.name != "1g.20gb");
        let e = check(&fewer, "{\"1g.20gb\": 1}").unwrap_err();
        assert!(e.contains("no profile '1g.20gb' on this GPU"), "{e}");

        // The device filter matches the id read off the GPU.
        let text = "version: v1\nmig-configs:\n  c:\n    - device-filter: \"0x233010DE\"\n      devices: all\n      mig-enabled: false\n";
        let spec = parse(text, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
        assert!(resolve(Path::new(PATH), name, entries, &node)
            .unwrap()
            .gpus
            .is_empty());
        let text = text.replace("0x233010DE", "0x233A10DE");
        let spec = parse(&text, Path::new(PATH)).unwrap();
        let (name, entries) = spec.select(None, Path::new(PATH)).unwrap();
        assert_eq!(
            resolve(Path::new(PATH), name, entries, &node).unwrap().gpus.len(),
            1
        );
    }
}
