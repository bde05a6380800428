//! `advertised_mismatch`: the devices the kubelet advertises (from the NVIDIA
//! device plugin) against the GPU and MIG devices that exist.
//!
//! Each device that exists has one resource it should be advertised under:
//! a GPU without MIG, `nvidia.com/gpu`; a MIG device, `nvidia.com/gpu` with
//! strategy `single` and `nvidia.com/mig-<profile>` with `mixed` (the
//! strategy is told from the resource names). Per GPU, the advertised
//! devices of that GPU counted per resource must equal that expectation; an
//! existing device not advertised, or advertised under another resource,
//! breaks it. An advertised MIG id that names no existing device cannot be
//! placed on a GPU: it is reported on every GPU with MIG enabled. With
//! `single`, MIG devices of different profiles on one node are a mismatch on
//! every GPU with MIG enabled (the plugin cannot advertise them as one
//! resource). A kubelet that advertises no NVIDIA resource at all (no device
//! plugin) is not judged. An advertisement held from before the kubelet
//! stopped answering is judged the same way, and the finding says so.

use std::collections::{BTreeMap, BTreeSet};

use super::detect::canonical_profile;
use crate::model::{ComputeInstanceSnapshot, DriftReason, GpuInstanceSnapshot, GpuSnapshot};
use crate::source::kubelet::{Advertised, Strategy, GPU_RESOURCE, MIG_RESOURCE_PREFIX};

use super::detect::Detected;

/// Findings per GPU UUID.
pub fn advertised_mismatch(gpus: &[GpuSnapshot], advertised: &Advertised) -> BTreeMap<String, Detected> {
    let mut found = BTreeMap::new();
    if advertised.resources.is_empty() {
        return found;
    }
    let strategy = advertised.strategy();
    // Device id → (GPU UUID, the resource it should be advertised under).
    let mut devices: BTreeMap<&str, (&str, String)> = BTreeMap::new();
    let mut mig_profiles = BTreeSet::new();
    for gpu in gpus {
        if !gpu.mig_current {
            devices.insert(&gpu.uuid, (&gpu.uuid, GPU_RESOURCE.to_string()));
            continue;
        }
        for gi in &gpu.gpu_instances {
            for ci in &gi.compute_instances {
                let profile = device_profile(gi, ci);
                let resource = match strategy {
                    Strategy::Single => GPU_RESOURCE.to_string(),
                    Strategy::Mixed => format!("{MIG_RESOURCE_PREFIX}{profile}"),
                };
                mig_profiles.insert(profile);
                devices.insert(&ci.mig_uuid, (&gpu.uuid, resource));
            }
        }
    }
    // Advertised: GPU UUID → resource → count, and MIG ids that exist nowhere.
    let mut advertised_per_gpu: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (resource, ids) in &advertised.resources {
        for id in ids {
            match devices.get(id.as_str()) {
                Some((gpu, _)) => {
                    *advertised_per_gpu
                        .entry(gpu)
                        .or_default()
                        .entry(resource.clone())
                        .or_insert(0) += 1;
                }
                None if id.starts_with("MIG-") => unknown.push(format!("{id} ({resource})")),
                None => {}
            }
        }
    }
    let mixed_profiles_on_single = strategy == Strategy::Single && mig_profiles.len() > 1;
    for gpu in gpus {
        let mut expected: BTreeMap<String, u32> = BTreeMap::new();
        let mut missing = Vec::new();
        for (id, (owner, resource)) in &devices {
            if *owner != gpu.uuid {
                continue;
            }
            *expected.entry(resource.clone()).or_insert(0) += 1;
            if !advertised.resources.values().any(|ids| ids.contains(*id)) {
                missing.push(id.to_string());
            }
        }
        let observed = advertised_per_gpu.remove(gpu.uuid.as_str()).unwrap_or_default();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("not advertised: {}", missing.join(", ")));
        }
        if observed != expected {
            parts.push(format!(
                "advertised per resource {}, expected {}",
                describe(&observed),
                describe(&expected)
            ));
        }
        if gpu.mig_current {
            if !unknown.is_empty() {
                parts.push(format!(
                    "advertised MIG devices that do not exist on this node: {}",
                    unknown.join(", ")
                ));
            }
            if mixed_profiles_on_single {
                parts.push(format!(
                    "strategy single advertises MIG devices of different profiles ({}) as one resource {GPU_RESOURCE}; \
                     use strategy mixed or one profile on every GPU",
                    mig_profiles.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if !parts.is_empty() {
            found.insert(
                gpu.uuid.clone(),
                Detected {
                    reason: DriftReason::AdvertisedMismatch,
                    message: format!(
                        "GPU {} ({}): the kubelet's advertised devices (strategy {}) do not match the MIG geometry: {}{}",
                        gpu.index,
                        gpu.uuid,
                        strategy.as_str(),
                        parts.join("; "),
                        if advertised.held {
                            " (the kubelet is not answering: judged on what it advertised when it last did)"
                        } else {
                            ""
                        }
                    ),
                },
            );
        }
    }
    found
}

/// `nvidia.com/mig-1g.10gb: 3, nvidia.com/gpu: 1`, or `none`.
fn describe(counts: &BTreeMap<String, u32>) -> String {
    if counts.is_empty() {
        return "none".to_string();
    }
    counts
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The profile a MIG device is advertised as: its GPU instance's when its
/// compute instance spans the GPU instance (the driver names the CI of a
/// `1g.10gb+me` GI `1g.10gb`, but the device is a `1g.10gb+me` device), its
/// compute instance's (`1c.3g.40gb`) otherwise.
fn device_profile(gi: &GpuInstanceSnapshot, ci: &ComputeInstanceSnapshot) -> String {
    if ci.placement_size == gi.compute_slices {
        canonical_profile(&gi.profile)
    } else {
        canonical_profile(&ci.profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::sim::reading_from_world;
    use mig_model::{Product, World};

    /// Two H100s: GPU 0 with MIG and `profiles`' GIs (one CI each), GPU 1 without MIG.
    fn gpus(profiles: &[u32]) -> Vec<GpuSnapshot> {
        let mut world = World::new("node", Product::H100_80GB, 2);
        let gpu = &mut world.gpus[0];
        gpu.set_mig_mode(true);
        for &p in profiles {
            let gi = gpu.create_gpu_instance(p, None).unwrap();
            gpu.create_compute_instance(gi, None).unwrap();
        }
        reading_from_world(&world).gpus
    }

    fn mig_ids(gpu: &GpuSnapshot) -> Vec<(String, String)> {
        gpu.gpu_instances
            .iter()
            .flat_map(|gi| gi.compute_instances.iter().map(move |ci| (gi, ci)))
            .map(|(gi, ci)| (ci.mig_uuid.clone(), device_profile(gi, ci)))
            .collect()
    }

    fn advertise(entries: &[(&str, &str)]) -> Advertised {
        let mut a = Advertised::default();
        for (resource, id) in entries {
            a.resources
                .entry(resource.to_string())
                .or_default()
                .insert(id.to_string());
        }
        a
    }

    /// What a correct device plugin advertises for `gpus`.
    fn correct(gpus: &[GpuSnapshot], mixed: bool) -> Vec<(String, String)> {
        let mut out = vec![(GPU_RESOURCE.to_string(), gpus[1].uuid.clone())];
        for (id, profile) in mig_ids(&gpus[0]) {
            let resource = if mixed {
                format!("{MIG_RESOURCE_PREFIX}{profile}")
            } else {
                GPU_RESOURCE.to_string()
            };
            out.push((resource, id));
        }
        out
    }

    fn run(gpus: &[GpuSnapshot], entries: &[(String, String)]) -> BTreeMap<String, Detected> {
        let refs: Vec<(&str, &str)> = entries.iter().map(|(r, i)| (r.as_str(), i.as_str())).collect();
        advertised_mismatch(gpus, &advertise(&refs))
    }

    #[test]
    fn correct_advertisements_match_in_both_strategies() {
        let g = gpus(&[9, 19, 19]);
        assert!(run(&g, &correct(&g, true)).is_empty());
        let g = gpus(&[19, 19]);
        assert!(run(&g, &correct(&g, false)).is_empty());
    }

    #[test]
    fn a_stale_mig_id_is_a_mismatch_on_the_mig_gpus() {
        let g = gpus(&[19, 19]);
        let mut entries = correct(&g, true);
        entries.push(("nvidia.com/mig-1g.10gb".into(), "MIG-gone".into()));
        let found = run(&g, &entries);
        assert_eq!(found.keys().collect::<Vec<_>>(), [&g[0].uuid]);
        let m = &found[&g[0].uuid].message;
        assert!(
            m.contains("do not exist on this node: MIG-gone (nvidia.com/mig-1g.10gb)"),
            "{m}"
        );
    }

    #[test]
    fn an_unadvertised_device_is_a_mismatch_on_its_gpu() {
        let g = gpus(&[19, 19]);
        let mut entries = correct(&g, true);
        let dropped = entries.pop().unwrap();
        let found = run(&g, &entries);
        let m = &found[&g[0].uuid].message;
        assert!(m.contains(&format!("not advertised: {}", dropped.1)), "{m}");
        assert!(m.contains("strategy mixed"), "{m}");
        assert_eq!(found.len(), 1);
        // A whole GPU not advertised.
        let entries: Vec<_> = correct(&g, true).into_iter().skip(1).collect();
        let found = run(&g, &entries);
        assert!(
            found[&g[1].uuid].message.contains("not advertised"),
            "{:?}",
            found
        );
    }

    #[test]
    fn mixed_counts_under_the_wrong_profile_are_a_mismatch() {
        let g = gpus(&[9, 19]);
        let entries: Vec<_> = correct(&g, true)
            .into_iter()
            .map(|(r, id)| (r.replace("mig-3g.40gb", "mig-1g.10gb"), id))
            .collect();
        let found = run(&g, &entries);
        let m = &found[&g[0].uuid].message;
        assert!(
            m.contains("advertised per resource nvidia.com/mig-1g.10gb: 2, expected nvidia.com/mig-1g.10gb: 1, nvidia.com/mig-3g.40gb: 1"),
            "{m}"
        );
    }

    #[test]
    fn single_strategy_with_different_profiles_is_a_mismatch() {
        let g = gpus(&[9, 19]);
        let found = run(&g, &correct(&g, false));
        let m = &found[&g[0].uuid].message;
        assert!(
            m.contains("strategy single advertises MIG devices of different profiles (1g.10gb, 3g.40gb)"),
            "{m}"
        );
        assert!(!found.contains_key(&g[1].uuid), "GPU 1 has no MIG");
    }

    #[test]
    fn a_held_advertisement_is_judged_and_says_so() {
        let g = gpus(&[19, 19]);
        let mut entries = correct(&g, true);
        entries.pop();
        let refs: Vec<(&str, &str)> = entries.iter().map(|(r, i)| (r.as_str(), i.as_str())).collect();
        let mut held = advertise(&refs);
        assert!(!advertised_mismatch(&g, &held)[&g[0].uuid]
            .message
            .contains("not answering"));
        held.held = true;
        let m = &advertised_mismatch(&g, &held)[&g[0].uuid].message;
        assert!(m.contains("not advertised: "), "{m}");
        assert!(
            m.ends_with("(the kubelet is not answering: judged on what it advertised when it last did)"),
            "{m}"
        );
    }

    #[test]
    fn no_device_plugin_is_not_judged() {
        let g = gpus(&[19]);
        assert!(advertised_mismatch(&g, &Advertised::default()).is_empty());
    }
}
