//! The kubelet's pod-resources answers as bytes on the wire: a `List` answer
//! and a `GetAllocatableResources` answer, decoded with the prost messages
//! generated from proto/podresources/v1/api.proto, then through what the
//! kubelet source does with them against a fixed node: the owners of each
//! device (device plugin and DRA claims, stale allocations told from live
//! ones), the advertised devices and their judgement (`advertised_mismatch`).
//!
//! Nothing panics; every owner is a device of the node, at its own GPU, GPU
//! instance and compute instance, held by a container the answer lists with
//! that device; the same answer read again gives the same owners; advertised
//! resources are NVIDIA's, their ids without replica suffixes and taken from
//! the answer; findings are only on the node's GPUs.
//!
//! Input: two bytes (little-endian) give the length of the `List` answer,
//! which follows; the rest is the `GetAllocatableResources` answer.
#![no_main]

#[path = "fuzz_node.rs"]
mod fuzz_node;

use fuzz_node::node;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use mig_exporter::drift::advertised::judge_advertised;
use mig_exporter::model::{device_id, is_nvidia_resource, GpuSnapshot, PodDevice};
use mig_exporter::source::kubelet::advertised_from;
use mig_exporter::source::kubelet::dra::{DraDevice, NVIDIA_GPU_DRIVER};
use mig_exporter::source::kubelet::owners::OwnerTracker;
use mig_exporter::source::kubelet::proto::{AllocatableResourcesResponse, ListPodResourcesResponse};
use prost::Message;

/// Device UUID → (GPU index, GI id, CI id).
fn places(gpus: &[GpuSnapshot]) -> BTreeMap<&str, (u32, Option<u32>, Option<u32>)> {
    let mut places = BTreeMap::new();
    for gpu in gpus {
        places.insert(gpu.uuid.as_str(), (gpu.index, None, None));
        for gi in &gpu.gpu_instances {
            for ci in &gi.compute_instances {
                places.insert(ci.mig_uuid.as_str(), (gpu.index, Some(gi.id), Some(ci.id)));
            }
        }
    }
    places
}

/// Whether a container `pods` lists holds `owner`'s device, through the
/// device plugin or through an NVIDIA DRA claim.
fn listed(pods: &ListPodResourcesResponse, owner: &PodDevice, gpus: &[GpuSnapshot]) -> bool {
    pods.pod_resources
        .iter()
        .filter(|p| p.name == owner.pod && p.namespace == owner.namespace)
        .flat_map(|p| &p.containers)
        .filter(|c| c.name == owner.container)
        .any(|c| {
            let by_plugin = c
                .devices
                .iter()
                .filter(|d| is_nvidia_resource(&d.resource_name))
                .flat_map(|d| &d.device_ids)
                .any(|id| device_id(id) == owner.mig_uuid);
            let by_claim = c
                .dynamic_resources
                .iter()
                .flat_map(|r| &r.claim_resources)
                .filter(|r| r.driver_name == NVIDIA_GPU_DRIVER)
                .filter_map(|r| DraDevice::parse(&r.device_name)?.resolve(gpus))
                .any(|(uuid, ..)| uuid == owner.mig_uuid);
            by_plugin || by_claim
        })
}

fn check_owners(owners: &[PodDevice], pods: &ListPodResourcesResponse, gpus: &[GpuSnapshot]) {
    let places = places(gpus);
    assert!(
        owners.windows(2).all(|w| w[0] < w[1]),
        "owners are not sorted and distinct: {owners:?}"
    );
    for owner in owners {
        let place = places.get(owner.mig_uuid.as_str());
        assert_eq!(
            place,
            Some(&(owner.gpu, owner.gi, owner.ci)),
            "an owner of a device that is not there, or at the wrong place: {owner:?}"
        );
        assert!(
            listed(pods, owner, gpus),
            "an owner the answer does not list: {owner:?}"
        );
    }
}

fn check_advertised(allocatable: &AllocatableResourcesResponse, gpus: &[GpuSnapshot]) {
    let advertised = advertised_from(allocatable);
    assert!(!advertised.held);
    for (resource, ids) in &advertised.resources {
        assert!(is_nvidia_resource(resource), "not NVIDIA's: {resource:?}");
        for id in ids {
            assert!(!id.contains("::"), "a replica suffix is left: {id:?}");
            let from_answer = allocatable
                .devices
                .iter()
                .filter(|d| &d.resource_name == resource)
                .flat_map(|d| &d.device_ids)
                .any(|listed| device_id(listed) == id);
            assert!(from_answer, "{id:?} ({resource}) is not in the answer");
        }
    }
    let _ = advertised.strategy();
    let not_judged = advertised.not_judged();
    let findings = judge_advertised(gpus, &advertised);
    if advertised.resources.is_empty() || not_judged.is_some() {
        assert!(findings.is_empty(), "judged although not judged: {findings:?}");
    }
    for gpu in findings.keys() {
        assert!(
            gpus.iter().any(|g| &g.uuid == gpu),
            "a finding on a GPU that is not there: {gpu}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let gpus = node();
    let (list, allocatable) = match data {
        [lo, hi, rest @ ..] => rest.split_at(usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len())),
        _ => return,
    };
    if let Ok(pods) = ListPodResourcesResponse::decode(list) {
        let mut tracker = OwnerTracker::default();
        let first = tracker.owners(&pods, gpus);
        check_owners(&first, &pods, gpus);
        let again = tracker.owners(&pods, gpus);
        assert_eq!(first, again, "the same answer read again gives other owners");

        // Pods that come after others: the later ones are the newer holders.
        let half = ListPodResourcesResponse {
            pod_resources: pods.pod_resources[..pods.pod_resources.len() / 2].to_vec(),
        };
        let mut tracker = OwnerTracker::default();
        check_owners(&tracker.owners(&half, gpus), &half, gpus);
        check_owners(&tracker.owners(&pods, gpus), &pods, gpus);
    }
    if let Ok(allocatable) = AllocatableResourcesResponse::decode(allocatable) {
        check_advertised(&allocatable, gpus);
    }
});
