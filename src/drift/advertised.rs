//! `advertised_mismatch` and `advertised_unhealthy`: the devices the kubelet
//! advertises (from NVIDIA's k8s-device-plugin) against the GPU and MIG
//! devices that exist.
//!
//! Each device that exists has the resource it should be advertised under,
//! named as the plugin names it ([`crate::model::mig_resource`]): a GPU
//! without MIG, `nvidia.com/gpu`; a MIG device, `nvidia.com/gpu` with
//! strategy `single` and `nvidia.com/mig-<profile>` with `mixed` (the
//! strategy is told from the resource names). Sharing with `renameByDefault`
//! advertises a resource as `<resource>.shared` instead. With `mixed`, a
//! compute instance smaller than its GPU instance has no resource at all and
//! is expected nowhere.
//!
//! Per GPU, the advertised devices of that GPU counted per resource must
//! equal that expectation; an existing device not advertised, or advertised
//! under another resource, breaks it. An advertised MIG id that names no
//! existing device cannot be placed on a GPU: it is reported on every GPU
//! with MIG enabled. With `single`, MIG devices of different profiles on one
//! node are a mismatch on every GPU with MIG enabled (the plugin cannot
//! advertise them as one resource).
//!
//! An existing device left out on a GPU that raised an XID the plugin's
//! health check acts on is `advertised_unhealthy`, not a mismatch: the plugin
//! marked it unhealthy and the kubelet leaves unhealthy devices out of what it
//! advertises as allocatable.
//!
//! A kubelet that advertises no NVIDIA resource at all (no device plugin) is
//! not judged, nor one whose ids are not device UUIDs
//! ([`Advertised::not_judged`]). An advertisement held from before the
//! kubelet stopped answering is judged the same way, and the finding says so.

use std::collections::{BTreeMap, BTreeSet};

use super::detect::canonical_profile;
use crate::model::{
    mig_resource, unshared, Advertised, ComputeInstanceSnapshot, DriftReason, GpuInstanceSnapshot,
    GpuSnapshot, Strategy, GPU_RESOURCE, SHARED_SUFFIX,
};

use super::detect::Detected;

/// XIDs NVIDIA's device plugin does not mark a device unhealthy for (errors
/// an application causes): NVIDIA/k8s-device-plugin internal/rm/health.go,
/// `getDisabledHealthCheckXids`. Any other critical XID on a GPU makes its
/// `checkHealth` send a device of that GPU to `ListAndWatch`, which marks it
/// `Unhealthy` for good (internal/plugin/server.go, `ListAndWatch`: "there
/// is no way to recover from the Unhealthy state"). The plugin's
/// `DP_DISABLE_HEALTHCHECKS`/`DP_ENABLE_HEALTHCHECKS` change this set; the
/// exporter assumes their defaults.
const XIDS_THE_PLUGIN_IGNORES: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// Findings per GPU UUID, at most one per reason.
pub fn judge_advertised(gpus: &[GpuSnapshot], advertised: &Advertised) -> BTreeMap<String, Vec<Detected>> {
    let mut found: BTreeMap<String, Vec<Detected>> = BTreeMap::new();
    if advertised.resources.is_empty() || advertised.not_judged().is_some() {
        return found;
    }
    let strategy = advertised.strategy();
    // Device id → (GPU UUID, the resource it should be advertised under;
    // `None` where the plugin advertises it under none).
    let mut devices: BTreeMap<&str, (&str, Option<String>)> = BTreeMap::new();
    let mut mig_profiles = BTreeSet::new();
    for gpu in gpus {
        if !gpu.mig_current {
            devices.insert(&gpu.uuid, (&gpu.uuid, Some(GPU_RESOURCE.to_string())));
            continue;
        }
        for gi in &gpu.gpu_instances {
            for ci in &gi.compute_instances {
                let profile = device_profile(gi, ci);
                let resource = match strategy {
                    Strategy::Single => Some(GPU_RESOURCE.to_string()),
                    // NVIDIA/k8s-device-plugin internal/rm/rm.go,
                    // `AddDefaultResourcesToConfig`, makes mixed resources only
                    // for profiles whose CI spans the GI (`info.C == info.G`).
                    Strategy::Mixed if spans_its_gpu_instance(gi, ci) => Some(mig_resource(&profile)),
                    Strategy::Mixed => None,
                };
                mig_profiles.insert(profile);
                devices.insert(&ci.mig_uuid, (&gpu.uuid, resource));
            }
        }
    }
    // What sharing renamed: a resource is shared whole (NVIDIA/k8s-device-plugin
    // api/config/v1/config.go, `DisableResourceNamingInConfig`, forces
    // `devices: all`), so it is advertised either plain or `.shared`.
    let shared: BTreeSet<&str> = advertised
        .resources
        .keys()
        .filter(|r| r.ends_with(SHARED_SUFFIX))
        .map(|r| unshared(r))
        .collect();
    let as_advertised = |resource: &str| -> String {
        if shared.contains(resource) {
            format!("{resource}{SHARED_SUFFIX}")
        } else {
            resource.to_string()
        }
    };
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
    let is_advertised = |id: &str| advertised.resources.values().any(|ids| ids.contains(id));
    let mixed_profiles_on_single = strategy == Strategy::Single && mig_profiles.len() > 1;
    for gpu in gpus {
        let unhealthy_xids = critical_xids(gpu);
        let mut expected: BTreeMap<String, u32> = BTreeMap::new();
        let mut missing = Vec::new();
        let mut unadvertisable = Vec::new();
        for (id, (owner, resource)) in &devices {
            if *owner != gpu.uuid {
                continue;
            }
            match resource {
                Some(resource) if is_advertised(id) => {
                    *expected.entry(as_advertised(resource)).or_insert(0) += 1;
                }
                Some(resource) => missing.push((id.to_string(), as_advertised(resource))),
                None if is_advertised(id) => unadvertisable.push(id.to_string()),
                None => {}
            }
        }
        let observed = advertised_per_gpu.remove(gpu.uuid.as_str()).unwrap_or_default();
        // Left out as unhealthy, the devices leave both sides of the count.
        let unhealthy = if unhealthy_xids.is_empty() {
            for (_, resource) in &missing {
                *expected.entry(resource.clone()).or_insert(0) += 1;
            }
            Vec::new()
        } else {
            std::mem::take(&mut missing)
        };
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("not advertised: {}", ids_of(&missing)));
        }
        if observed != expected {
            parts.push(format!(
                "advertised per resource {}, expected {}",
                describe(&observed),
                describe(&expected)
            ));
        }
        if !unadvertisable.is_empty() {
            parts.push(format!(
                "advertised although strategy mixed has no resource for a compute instance smaller than \
                 its GPU instance: {}",
                unadvertisable.join(", ")
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
        let held = if advertised.held {
            " (the kubelet is not answering: judged on what it advertised when it last did)"
        } else {
            ""
        };
        let mut detected = Vec::new();
        if !unhealthy.is_empty() {
            detected.push(Detected {
                reason: DriftReason::AdvertisedUnhealthy,
                message: format!(
                    "GPU {} ({}): the kubelet does not offer {} although they exist: the device plugin \
                     marks a GPU's devices unhealthy after a critical XID (this GPU raised {}), and the \
                     kubelet leaves unhealthy devices out of what it advertises. The plugin never marks \
                     them healthy again: restart it once the GPU is fixed{held}",
                    gpu.index,
                    gpu.uuid,
                    ids_of(&unhealthy),
                    unhealthy_xids
                        .iter()
                        .map(|(xid, n)| format!("XID {xid} ×{n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            });
        }
        if !parts.is_empty() {
            detected.push(Detected {
                reason: DriftReason::AdvertisedMismatch,
                message: format!(
                    "GPU {} ({}): the kubelet's advertised devices (strategy {}) do not match the MIG geometry: {}{held}",
                    gpu.index,
                    gpu.uuid,
                    strategy.as_str(),
                    parts.join("; "),
                ),
            });
        }
        if !detected.is_empty() {
            found.insert(gpu.uuid.clone(), detected);
        }
    }
    found
}

/// The XIDs `gpu` raised that NVIDIA's device plugin marks devices unhealthy for.
fn critical_xids(gpu: &GpuSnapshot) -> Vec<(u64, u64)> {
    gpu.health
        .xid_errors
        .iter()
        .filter(|(xid, n)| *n > 0 && !XIDS_THE_PLUGIN_IGNORES.contains(xid))
        .copied()
        .collect()
}

/// `MIG-a, MIG-b (nvidia.com/mig-1g.10gb)`, grouped by resource.
fn ids_of(devices: &[(String, String)]) -> String {
    let mut by_resource: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, resource) in devices {
        by_resource.entry(resource).or_default().push(id);
    }
    by_resource
        .iter()
        .map(|(resource, ids)| format!("{} ({resource})", ids.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
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

/// Whether a compute instance has all of its GPU instance's slices: go-nvlib
/// (vendored in NVIDIA/k8s-device-plugin) `MigProfileInfo`'s `C == G`.
fn spans_its_gpu_instance(gi: &GpuInstanceSnapshot, ci: &ComputeInstanceSnapshot) -> bool {
    ci.placement_size == gi.compute_slices
}

/// The profile a MIG device is advertised as: its GPU instance's when its
/// compute instance spans the GPU instance (the driver names the CI of a
/// `1g.10gb+me` GI `1g.10gb`, but the device is a `1g.10gb+me` device), its
/// compute instance's (`1c.3g.40gb`) otherwise.
fn device_profile(gi: &GpuInstanceSnapshot, ci: &ComputeInstanceSnapshot) -> String {
    if spans_its_gpu_instance(gi, ci) {
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
            .filter(|(gi, ci)| spans_its_gpu_instance(gi, ci))
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
                mig_resource(&profile)
            } else {
                GPU_RESOURCE.to_string()
            };
            out.push((resource, id));
        }
        out
    }

    /// The `advertised_mismatch` finding per GPU UUID (and no other reason).
    fn run(gpus: &[GpuSnapshot], entries: &[(String, String)]) -> BTreeMap<String, Detected> {
        let refs: Vec<(&str, &str)> = entries.iter().map(|(r, i)| (r.as_str(), i.as_str())).collect();
        only(
            judge_advertised(gpus, &advertise(&refs)),
            DriftReason::AdvertisedMismatch,
        )
    }

    fn only(found: BTreeMap<String, Vec<Detected>>, reason: DriftReason) -> BTreeMap<String, Detected> {
        found
            .into_iter()
            .map(|(gpu, mut detected)| {
                assert!(detected.iter().all(|d| d.reason == reason), "{detected:?}");
                assert_eq!(detected.len(), 1);
                (gpu, detected.remove(0))
            })
            .collect()
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
        let judge = |a: &Advertised| only(judge_advertised(&g, a), DriftReason::AdvertisedMismatch);
        assert!(!judge(&held)[&g[0].uuid].message.contains("not answering"));
        held.held = true;
        let m = &judge(&held)[&g[0].uuid].message;
        assert!(m.contains("not advertised: "), "{m}");
        assert!(
            m.ends_with("(the kubelet is not answering: judged on what it advertised when it last did)"),
            "{m}"
        );
    }

    #[test]
    fn a_plus_profile_is_advertised_with_a_dot() {
        let g = gpus(&[20, 19]);
        let entries = correct(&g, true);
        assert!(
            entries.iter().any(|(r, _)| r == "nvidia.com/mig-1g.10gb.me"),
            "{entries:?}"
        );
        assert!(run(&g, &entries).is_empty());
        let with_plus: Vec<_> = entries
            .into_iter()
            .map(|(r, id)| (r.replace("1g.10gb.me", "1g.10gb+me"), id))
            .collect();
        let m = &run(&g, &with_plus)[&g[0].uuid].message;
        assert!(
            m.contains(
                "advertised per resource nvidia.com/mig-1g.10gb: 1, nvidia.com/mig-1g.10gb+me: 1, \
                 expected nvidia.com/mig-1g.10gb: 1, nvidia.com/mig-1g.10gb.me: 1"
            ),
            "{m}"
        );
    }

    #[test]
    fn mixed_expects_no_resource_for_a_compute_instance_smaller_than_its_gpu_instance() {
        let mut world = World::new("node", Product::H100_80GB, 2);
        let gpu = &mut world.gpus[0];
        gpu.set_mig_mode(true);
        let big = gpu.create_gpu_instance(9, None).unwrap();
        gpu.create_compute_instance(big, Some(0)).unwrap();
        let small = gpu.create_gpu_instance(19, None).unwrap();
        gpu.create_compute_instance(small, None).unwrap();
        let g = reading_from_world(&world).gpus;
        let partial = g[0].gpu_instances[0].compute_instances[0].mig_uuid.clone();
        let entries = correct(&g, true);
        assert!(!entries.iter().any(|(_, id)| *id == partial), "{entries:?}");
        assert!(run(&g, &entries).is_empty(), "{:?}", run(&g, &entries));
        // Advertised anyway (not by this plugin): that is a mismatch.
        let mut odd = entries.clone();
        odd.push(("nvidia.com/mig-1c.3g.40gb".into(), partial.clone()));
        let m = &run(&g, &odd)[&g[0].uuid].message;
        assert!(
            m.contains(&format!(
                "no resource for a compute instance smaller than its GPU instance: {partial}"
            )),
            "{m}"
        );
    }

    #[test]
    fn shared_resources_are_judged_as_their_base_resource() {
        let g = gpus(&[9, 19, 19]);
        let shared: Vec<_> = correct(&g, true)
            .into_iter()
            .map(|(r, id)| (format!("{r}{SHARED_SUFFIX}"), id))
            .collect();
        assert!(run(&g, &shared).is_empty());
        // A shared resource short a device: named as advertised.
        let mut short = shared.clone();
        let at = short
            .iter()
            .position(|(r, _)| r == "nvidia.com/mig-1g.10gb.shared")
            .unwrap();
        let (_, dropped) = short.remove(at);
        let m = &run(&g, &short)[&g[0].uuid].message;
        assert!(
            m.contains(&format!(
                "not advertised: {dropped} (nvidia.com/mig-1g.10gb.shared)"
            )),
            "{m}"
        );
    }

    #[test]
    fn a_device_left_out_after_a_critical_xid_is_unhealthy_not_a_mismatch() {
        let mut g = gpus(&[9, 19]);
        let mut entries = correct(&g, true);
        let (_, left_out) = entries.pop().unwrap();
        // No XID, or only XIDs the plugin ignores: a mismatch.
        g[0].health.xid_errors = vec![(13, 2), (43, 1)];
        assert!(run(&g, &entries)[&g[0].uuid].message.contains("not advertised"));
        g[0].health.xid_errors = vec![(13, 2), (79, 1)];
        let refs: Vec<(&str, &str)> = entries.iter().map(|(r, i)| (r.as_str(), i.as_str())).collect();
        let found = only(
            judge_advertised(&g, &advertise(&refs)),
            DriftReason::AdvertisedUnhealthy,
        );
        assert_eq!(found.keys().collect::<Vec<_>>(), [&g[0].uuid]);
        let m = &found[&g[0].uuid].message;
        assert!(
            m.contains(&format!("does not offer {left_out} (nvidia.com/mig-")),
            "{m}"
        );
        assert!(m.contains("this GPU raised XID 79 ×1)"), "{m}");
        // Beside another problem, both are found.
        let mut stale = entries.clone();
        stale.push(("nvidia.com/mig-1g.10gb".into(), "MIG-gone".into()));
        let refs: Vec<(&str, &str)> = stale.iter().map(|(r, i)| (r.as_str(), i.as_str())).collect();
        let reasons: Vec<DriftReason> = judge_advertised(&g, &advertise(&refs))[&g[0].uuid]
            .iter()
            .map(|d| d.reason)
            .collect();
        assert_eq!(
            reasons,
            [DriftReason::AdvertisedUnhealthy, DriftReason::AdvertisedMismatch]
        );
    }

    #[test]
    fn ids_that_are_not_uuids_are_not_judged() {
        let g = gpus(&[19]);
        let found = run(&g, &[("nvidia.com/gpu".into(), "0".into())]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn no_device_plugin_is_not_judged() {
        let g = gpus(&[19]);
        assert!(judge_advertised(&g, &Advertised::default()).is_empty());
    }
}
