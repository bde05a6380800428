//! Which container holds each GPU and MIG device, from the kubelet's `List`:
//! device-plugin devices (`ContainerResources.devices`) and DRA claims
//! (`ContainerResources.dynamic_resources`), with stale allocations of
//! finished pods told apart from live ones.
//!
//! Kubelets before 1.34 list pods in a terminal phase too
//! (kubernetes/kubernetes pkg/kubelet/apis/podresources/server_v1.go,
//! `(*v1PodResourcesServer).List`: `GetPods` unless `useActivePods`, which
//! the feature gate `KubeletPodResourcesListUseActivePods` turns on from 1.34,
//! pkg/features/kube_features.go). Such a pod keeps its device-plugin devices
//! in the listing while the device manager still has them: `List` first calls
//! `UpdateAllocatedDevices` (pkg/kubelet/cm/devicemanager/manager.go), which
//! drops the devices of pods that are no longer active
//! (pkg/kubelet/kubelet_pods.go, `filterOutInactivePods`: terminal pods are
//! inactive) but does nothing until the kubelet's config sources are ready,
//! as after a kubelet restart. Nothing in a listed pod says its phase, so
//! from the pod-resources data alone:
//!
//! * One allocation unit held by two holders is never live twice. A unit is
//!   a device-plugin device id with its sharing suffix (`MIG-…::2`: each
//!   replica goes to one container) held by a pod, or a DRA device (driver,
//!   pool, device, share id) held by a claim (several pods may share one
//!   claim, which is not a conflict). The device manager and the DRA
//!   scheduler hand a unit to a new holder only once the old one is gone
//!   from their books, so the holder that appeared last is the live one:
//!   its owner series is published and the older holder's are not.
//! * A device reached both through the device plugin and through DRA is
//!   resolved the same way, the newer of the two winning.
//! * When no holder is newer (both were there at the exporter's first read)
//!   the exporter cannot tell: it publishes no owner for that unit and logs a
//!   warning naming the holders, once per conflict, until one of them goes.
//!
//! A terminal pod that is the only one listing a device still owns it: no
//! pod-resources data tells it from a running one. Kubelets from 1.34 do not
//! list it at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::dra::{DraDevice, NVIDIA_GPU_DRIVER};
use super::proto::ListPodResourcesResponse;
use crate::model::{device_id, is_nvidia_resource};
use crate::model::{GpuSnapshot, PodDevice};

/// How the kubelet handed a device out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Via {
    DevicePlugin,
    Dra,
}

/// One container holding one device through one allocation unit.
#[derive(Debug, Clone)]
struct Allocation {
    via: Via,
    /// What one holder holds exclusively (see the module docs).
    unit: String,
    /// The pod (device plugin) or the claim (DRA) that holds the unit.
    holder: String,
    owner: PodDevice,
}

/// Owners over successive reads: remembers when each (unit, holder) was
/// first listed, to tell a stale allocation from the live one.
#[derive(Debug, Default)]
pub struct OwnerTracker {
    read: u64,
    /// (unit, holder) → the read that first listed it.
    first_seen: HashMap<(String, String), u64>,
    /// Conflicts already logged, by their description.
    reported: BTreeSet<String>,
}

impl OwnerTracker {
    /// The owners of the devices of `gpus` in this `List` answer: one entry
    /// per (device, container), sorted, with stale allocations left out.
    pub fn owners(&mut self, pods: &ListPodResourcesResponse, gpus: &[GpuSnapshot]) -> Vec<PodDevice> {
        self.read += 1;
        let allocations = allocations(pods, gpus);
        let read = self.read;
        let mut first_seen = HashMap::new();
        for a in &allocations {
            let key = (a.unit.clone(), a.holder.clone());
            let at = self.first_seen.get(&key).copied().unwrap_or(read);
            first_seen.insert(key, at);
        }
        self.first_seen = first_seen;
        let mut conflicts = Vec::new();
        let mut kept = self.resolve_units(allocations, &mut conflicts);
        kept = self.resolve_paths(kept, &mut conflicts);
        self.report(conflicts);
        let found: BTreeSet<PodDevice> = kept.into_iter().map(|a| a.owner).collect();
        found.into_iter().collect()
    }

    fn seen(&self, a: &Allocation) -> u64 {
        self.first_seen
            .get(&(a.unit.clone(), a.holder.clone()))
            .copied()
            .unwrap_or(self.read)
    }

    /// Per unit, only its newest holder's allocations.
    fn resolve_units(&self, allocations: Vec<Allocation>, conflicts: &mut Vec<Conflict>) -> Vec<Allocation> {
        let mut by_unit: BTreeMap<(Via, String), Vec<Allocation>> = BTreeMap::new();
        for a in allocations {
            by_unit.entry((a.via, a.unit.clone())).or_default().push(a);
        }
        let mut kept = Vec::new();
        for ((_, unit), group) in by_unit {
            let holders: BTreeMap<&str, u64> =
                group.iter().map(|a| (a.holder.as_str(), self.seen(a))).collect();
            if holders.len() == 1 {
                kept.extend(group);
                continue;
            }
            match newest(&holders) {
                Some(live) => {
                    let live = live.to_string();
                    conflicts.push(Conflict::resolved(&unit, &holders, &live));
                    kept.extend(group.into_iter().filter(|a| a.holder == live));
                }
                None => conflicts.push(Conflict::unresolved(&unit, &holders)),
            }
        }
        kept
    }

    /// Per device, only the newest of the device plugin and DRA.
    fn resolve_paths(&self, allocations: Vec<Allocation>, conflicts: &mut Vec<Conflict>) -> Vec<Allocation> {
        let mut by_device: BTreeMap<String, Vec<Allocation>> = BTreeMap::new();
        for a in allocations {
            by_device.entry(a.owner.mig_uuid.clone()).or_default().push(a);
        }
        let mut kept = Vec::new();
        for (device, group) in by_device {
            let mut newest_by_via: BTreeMap<Via, u64> = BTreeMap::new();
            for a in &group {
                let at = newest_by_via.entry(a.via).or_insert(0);
                *at = (*at).max(self.seen(a));
            }
            if newest_by_via.len() == 1 {
                kept.extend(group);
                continue;
            }
            let holders: BTreeMap<String, u64> = group
                .iter()
                .map(|a| (format!("{} ({})", a.holder, a.unit), self.seen(a)))
                .collect();
            let holders: BTreeMap<&str, u64> = holders.iter().map(|(h, at)| (h.as_str(), *at)).collect();
            let latest = newest_by_via.values().copied().max().unwrap_or(0);
            let winners: Vec<Via> = newest_by_via
                .iter()
                .filter(|(_, at)| **at == latest)
                .map(|(via, _)| *via)
                .collect();
            match winners.as_slice() {
                [via] => {
                    let live: Vec<String> = group
                        .iter()
                        .filter(|a| a.via == *via)
                        .map(|a| format!("{} ({})", a.holder, a.unit))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    conflicts.push(Conflict::resolved(&device, &holders, &live.join(", ")));
                    kept.extend(group.into_iter().filter(|a| a.via == *via));
                }
                _ => conflicts.push(Conflict::unresolved(&device, &holders)),
            }
        }
        kept
    }

    /// Logs each conflict once while it lasts.
    fn report(&mut self, conflicts: Vec<Conflict>) {
        let now: BTreeSet<String> = conflicts.iter().map(|c| c.key.clone()).collect();
        for c in conflicts {
            if self.reported.contains(&c.key) {
                continue;
            }
            match &c.live {
                Some(live) => tracing::info!(
                    device = %c.device,
                    holders = %c.holders,
                    live = %live,
                    "the kubelet lists a device for more than one holder; the newest is taken as the live \
                     one (the others are allocations of finished pods)"
                ),
                None => tracing::warn!(
                    device = %c.device,
                    holders = %c.holders,
                    "the kubelet lists a device for more than one holder and none of them is newer: no owner \
                     is published for it until one of them goes"
                ),
            }
        }
        self.reported = now;
    }
}

/// The one holder first listed later than all the others.
fn newest<'a>(holders: &BTreeMap<&'a str, u64>) -> Option<&'a str> {
    let latest = holders.values().copied().max()?;
    let mut at_latest = holders.iter().filter(|(_, at)| **at == latest);
    match (at_latest.next(), at_latest.next()) {
        (Some((holder, _)), None) => Some(holder),
        _ => None,
    }
}

#[derive(Debug)]
struct Conflict {
    key: String,
    device: String,
    holders: String,
    live: Option<String>,
}

impl Conflict {
    fn resolved(device: &str, holders: &BTreeMap<&str, u64>, live: &str) -> Conflict {
        Conflict::new(device, holders, Some(live.to_string()))
    }

    fn unresolved(device: &str, holders: &BTreeMap<&str, u64>) -> Conflict {
        Conflict::new(device, holders, None)
    }

    fn new(device: &str, holders: &BTreeMap<&str, u64>, live: Option<String>) -> Conflict {
        let holders = holders.keys().copied().collect::<Vec<_>>().join(", ");
        Conflict {
            key: format!("{device}: {holders}"),
            device: device.to_string(),
            holders,
            live,
        }
    }
}

/// Every (device of `gpus`, container) the answer lists, with its unit and holder.
fn allocations(pods: &ListPodResourcesResponse, gpus: &[GpuSnapshot]) -> Vec<Allocation> {
    let mut devices: BTreeMap<&str, (u32, Option<u32>, Option<u32>)> = BTreeMap::new();
    for gpu in gpus {
        devices.insert(gpu.uuid.as_str(), (gpu.index, None, None));
        for gi in &gpu.gpu_instances {
            for ci in &gi.compute_instances {
                devices.insert(ci.mig_uuid.as_str(), (gpu.index, Some(gi.id), Some(ci.id)));
            }
        }
    }
    let mut found = Vec::new();
    for pod in &pods.pod_resources {
        let pod_key = format!("pod {}/{}", pod.namespace, pod.name);
        for container in &pod.containers {
            let owner = |mig_uuid: &str, (gpu, gi, ci): (u32, Option<u32>, Option<u32>)| PodDevice {
                mig_uuid: mig_uuid.to_string(),
                gpu,
                gi,
                ci,
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: container.name.clone(),
            };
            for d in container
                .devices
                .iter()
                .filter(|d| is_nvidia_resource(&d.resource_name))
            {
                for id in &d.device_ids {
                    let device = device_id(id);
                    if let Some(&place) = devices.get(device) {
                        found.push(Allocation {
                            via: Via::DevicePlugin,
                            unit: format!("{} {}", d.resource_name, id.trim()),
                            holder: pod_key.clone(),
                            owner: owner(device, place),
                        });
                    }
                }
            }
            for claim in &container.dynamic_resources {
                let holder = format!("claim {}/{}", claim.claim_namespace, claim.claim_name);
                for resource in claim
                    .claim_resources
                    .iter()
                    .filter(|r| r.driver_name == NVIDIA_GPU_DRIVER)
                {
                    let Some((uuid, gpu, gi, ci)) =
                        DraDevice::parse(&resource.device_name).and_then(|d| d.resolve(gpus))
                    else {
                        continue;
                    };
                    found.push(Allocation {
                        via: Via::Dra,
                        unit: format!(
                            "{}/{}/{}{}",
                            resource.driver_name,
                            resource.pool_name,
                            resource.device_name,
                            resource
                                .share_id
                                .as_deref()
                                .map(|s| format!(" share {s}"))
                                .unwrap_or_default()
                        ),
                        holder: holder.clone(),
                        owner: owner(&uuid, (gpu, gi, ci)),
                    });
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use mig_model::{Product, World};

    use super::*;
    use crate::source::kubelet::proto::{
        ClaimResource, ContainerDevices, ContainerResources, DynamicResource, PodResources,
    };
    use crate::source::sim::reading_from_world;

    /// Two H100s (minors 0 and 1), GPU 1 with two 1g.10gb (GI profile 19) at placements 0 and 1.
    fn gpus() -> Vec<GpuSnapshot> {
        let mut world = World::new("node", Product::H100_80GB, 2);
        let gpu = &mut world.gpus[1];
        gpu.set_mig_mode(true);
        for start in [0, 1] {
            let gi = gpu.create_gpu_instance(19, Some(start)).unwrap();
            gpu.create_compute_instance(gi, None).unwrap();
        }
        reading_from_world(&world).gpus
    }

    fn mig(gpus: &[GpuSnapshot], n: usize) -> String {
        gpus[1].gpu_instances[n].compute_instances[0].mig_uuid.clone()
    }

    fn pod(name: &str, resources: ContainerResources) -> PodResources {
        PodResources {
            name: name.to_string(),
            namespace: "ml".to_string(),
            containers: vec![resources],
            ..Default::default()
        }
    }

    fn plugin(ids: &[&str]) -> ContainerResources {
        ContainerResources {
            name: "main".to_string(),
            devices: vec![ContainerDevices {
                resource_name: "nvidia.com/mig-1g.10gb".to_string(),
                device_ids: ids.iter().map(|s| s.to_string()).collect(),
                topology: None,
            }],
            ..Default::default()
        }
    }

    fn claim(name: &str, devices: &[&str]) -> ContainerResources {
        ContainerResources {
            name: "main".to_string(),
            dynamic_resources: vec![DynamicResource {
                claim_name: name.to_string(),
                claim_namespace: "ml".to_string(),
                claim_resources: devices
                    .iter()
                    .map(|d| ClaimResource {
                        driver_name: NVIDIA_GPU_DRIVER.to_string(),
                        pool_name: "node".to_string(),
                        device_name: d.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            }],
            ..Default::default()
        }
    }

    fn list(pods: Vec<PodResources>) -> ListPodResourcesResponse {
        ListPodResourcesResponse { pod_resources: pods }
    }

    fn holders(owners: &[PodDevice]) -> Vec<(String, String)> {
        owners
            .iter()
            .map(|o| (o.mig_uuid.clone(), o.pod.clone()))
            .collect()
    }

    #[test]
    fn a_device_listed_for_a_finished_pod_and_a_new_one_is_the_new_ones() {
        let gpus = gpus();
        let x = mig(&gpus, 0);
        let mut tracker = OwnerTracker::default();
        let job = pod("job-1", plugin(&[&x]));
        assert_eq!(
            holders(&tracker.owners(&list(vec![job.clone()]), &gpus)),
            [(x.clone(), "job-1".to_string())]
        );
        // The Job completed; a kubelet before 1.34 still lists it with the
        // device, which the device manager gave to a new pod.
        let both = list(vec![job.clone(), pod("trainer", plugin(&[&x]))]);
        for _ in 0..3 {
            assert_eq!(
                holders(&tracker.owners(&both, &gpus)),
                [(x.clone(), "trainer".to_string())]
            );
        }
        // The Job's pod is deleted: the trainer keeps it.
        let alone = list(vec![pod("trainer", plugin(&[&x]))]);
        assert_eq!(
            holders(&tracker.owners(&alone, &gpus)),
            [(x.clone(), "trainer".to_string())]
        );
    }

    #[test]
    fn two_pods_holding_a_device_since_the_first_read_publish_no_owner_of_it() {
        let gpus = gpus();
        let (x, y) = (mig(&gpus, 0), mig(&gpus, 1));
        let mut tracker = OwnerTracker::default();
        let pods = list(vec![
            pod("job-1", plugin(&[&x])),
            pod("trainer", plugin(&[&x])),
            pod("other", plugin(&[&y])),
        ]);
        for _ in 0..2 {
            assert_eq!(
                holders(&tracker.owners(&pods, &gpus)),
                [(y.clone(), "other".to_string())],
                "neither holder of the conflicting device is published"
            );
        }
        // One goes: the other owns it.
        let pods = list(vec![pod("trainer", plugin(&[&x])), pod("other", plugin(&[&y]))]);
        let mut owners = holders(&tracker.owners(&pods, &gpus));
        owners.sort();
        let mut want = vec![
            (x.clone(), "trainer".to_string()),
            (y.clone(), "other".to_string()),
        ];
        want.sort();
        assert_eq!(owners, want);
    }

    #[test]
    fn replicas_of_a_shared_device_and_a_claim_shared_by_pods_are_no_conflict() {
        let gpus = gpus();
        let x = mig(&gpus, 0);
        let mut tracker = OwnerTracker::default();
        tracker.owners(&list(vec![pod("a", plugin(&[&format!("{x}::0")]))]), &gpus);
        let pods = list(vec![
            pod("a", plugin(&[&format!("{x}::0")])),
            pod("b", plugin(&[&format!("{x}::1")])),
            pod("c", claim("shared", &["gpu-1-mig-1g10gb-19-1"])),
            pod("d", claim("shared", &["gpu-1-mig-1g10gb-19-1"])),
        ]);
        let owners = tracker.owners(&pods, &gpus);
        assert_eq!(
            owners.iter().map(|o| o.pod.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"],
            "{owners:?}"
        );
    }

    #[test]
    fn devices_of_nvidia_dra_claims_get_owners() {
        let gpus = gpus();
        let y = mig(&gpus, 1);
        let mut tracker = OwnerTracker::default();
        let pods = list(vec![
            // v25.12 naming of a MIG device, and a whole GPU (`gpu-<minor>`).
            pod("infer", claim("mig", &["gpu-1-mig-1g10gb-19-1"])),
            pod("whole", claim("gpu", &["gpu-0"])),
            // A GPU instance this node does not have (destroyed since).
            pod("gone", claim("old", &["gpu-1-mig-1g10gb-19-5"])),
        ]);
        let owners = tracker.owners(&pods, &gpus);
        assert_eq!(owners.len(), 2, "{owners:?}");
        let infer = owners
            .iter()
            .find(|o| o.pod == "infer")
            .expect("the MIG claim's owner");
        assert_eq!(
            (infer.mig_uuid.as_str(), infer.gpu, infer.gi, infer.ci),
            (
                y.as_str(),
                1,
                Some(gpus[1].gpu_instances[1].id),
                Some(gpus[1].gpu_instances[1].compute_instances[0].id)
            )
        );
        let whole = owners
            .iter()
            .find(|o| o.pod == "whole")
            .expect("the GPU claim's owner");
        assert_eq!((whole.mig_uuid.as_str(), whole.gi), (gpus[0].uuid.as_str(), None));
        // The older naming (profile id, start, size) names the same device.
        let mut tracker = OwnerTracker::default();
        let owners = tracker.owners(
            &list(vec![pod("infer", claim("mig", &["gpu-1-mig-19-1-1"]))]),
            &gpus,
        );
        assert_eq!(holders(&owners), [(y.clone(), "infer".to_string())]);
    }

    #[test]
    fn a_claim_listed_twice_for_one_dra_device_goes_to_the_newer_claim() {
        let gpus = gpus();
        let x = mig(&gpus, 0);
        let mut tracker = OwnerTracker::default();
        let old = pod("job-1", claim("job-1-gpu", &["gpu-1-mig-1g10gb-19-0"]));
        tracker.owners(&list(vec![old.clone()]), &gpus);
        let pods = list(vec![
            old,
            pod("next", claim("next-gpu", &["gpu-1-mig-1g10gb-19-0"])),
        ]);
        assert_eq!(holders(&tracker.owners(&pods, &gpus)), [(x, "next".to_string())]);
    }

    #[test]
    fn a_device_reached_by_the_device_plugin_and_by_dra_goes_to_the_newer() {
        let gpus = gpus();
        let x = mig(&gpus, 0);
        let mut tracker = OwnerTracker::default();
        let old = pod("job-1", plugin(&[&x]));
        tracker.owners(&list(vec![old.clone()]), &gpus);
        let pods = list(vec![
            old.clone(),
            pod("next", claim("next-gpu", &["gpu-1-mig-1g10gb-19-0"])),
        ]);
        assert_eq!(
            holders(&tracker.owners(&pods, &gpus)),
            [(x.clone(), "next".to_string())]
        );
        // Both from the first read: neither.
        let mut fresh = OwnerTracker::default();
        assert!(fresh.owners(&pods, &gpus).is_empty());
    }
}
