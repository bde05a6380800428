//! The kubelet's pod-resources messages on the wire, checked against an
//! encoder and a decoder from outside the project: Google's protobuf runtime
//! (Python, with classes protoc generates from proto/podresources/v1/api.proto;
//! tests/kubelet_proto/google_protobuf.py). The exporter's prost messages are
//! generated from the same file by build.rs; the fake kubelet of the other
//! tests encodes with those very messages, so only this test would see them
//! disagree with what a real kubelet (Go, protoc-generated) puts on the wire.

mod common;

use std::path::Path;
use std::process::Command;

use common::{python, run_ok};
use mig_exporter::source::kubelet::proto::{
    AllocatableResourcesResponse, CdiDevice, ClaimResource, ContainerDevices, ContainerMemory,
    ContainerResources, DynamicResource, ListPodResourcesResponse, NumaNode, PodResources, TopologyInfo,
};
use prost::Message;
use serde_json::{json, Value};

const MIG_A: &str = "MIG-0d3a1f52-1a2b-5c3d-8e4f-a1b2c3d4e5f6";
const MIG_B: &str = "MIG-7c2b9e41-3d4e-5f60-8172-93a4b5c6d7e8";
const GPU: &str = "GPU-3e76495a-2bb6-4810-886b-a3f3a5867848";
const CDI: &str = "k8s.gpu.nvidia.com/claim=6f1d-gpu-0-mig-1g10gb-19-4";

/// Runs the Python side: `mode` is `encode` (JSON → bytes) or `decode`
/// (bytes → JSON) of `message`.
fn google(dir: &Path, mode: &str, message: &str, from: &Path, to: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = dir.join(format!("{mode}-{message}"));
    std::fs::create_dir_all(&work).unwrap();
    run_ok(
        Command::new(python())
            .arg(root.join("tests/kubelet_proto/google_protobuf.py"))
            .arg(root.join("proto"))
            .arg(&work)
            .args([mode, message])
            .arg(from)
            .arg(to),
        &format!("Google's protobuf: {mode} {message} (MIG_TEST_PYTHON needs grpcio-tools; scripts/test.sh installs it)"),
    );
}

fn topology(numa: i64) -> Option<TopologyInfo> {
    Some(TopologyInfo {
        nodes: vec![NumaNode { id: numa }],
    })
}

/// A List answer with a device-plugin container (two MIG devices, CPUs,
/// memory) and a DRA claim with a shared device, and a pod holding nothing:
/// the same answer as JSON (protobuf's JSON mapping; 64-bit integers as
/// strings, empty fields left out, as the mapping writes them).
fn list() -> (ListPodResourcesResponse, Value) {
    let message = ListPodResourcesResponse {
        pod_resources: vec![
            PodResources {
                name: "train-0".into(),
                namespace: "ml".into(),
                containers: vec![ContainerResources {
                    name: "main".into(),
                    devices: vec![ContainerDevices {
                        resource_name: "nvidia.com/mig-1g.10gb".into(),
                        device_ids: vec![MIG_A.into(), MIG_B.into()],
                        topology: topology(1),
                    }],
                    cpu_ids: vec![3, 4],
                    memory: vec![ContainerMemory {
                        memory_type: "memory".into(),
                        size: 1 << 30,
                        topology: topology(1),
                    }],
                    dynamic_resources: vec![DynamicResource {
                        claim_name: "infer-gpu".into(),
                        claim_namespace: "ml".into(),
                        claim_resources: vec![ClaimResource {
                            cdi_devices: vec![CdiDevice { name: CDI.into() }],
                            driver_name: "gpu.nvidia.com".into(),
                            pool_name: "node-a".into(),
                            device_name: "gpu-0-mig-1g10gb-19-4".into(),
                            share_id: Some("share-1".into()),
                        }],
                    }],
                }],
                cpu_ids: vec![7],
                ..Default::default()
            },
            PodResources {
                name: "idle".into(),
                namespace: "default".into(),
                ..Default::default()
            },
        ],
    };
    let json = json!({"pod_resources": [
        {"name": "train-0", "namespace": "ml",
         "containers": [{
             "name": "main",
             "devices": [{"resource_name": "nvidia.com/mig-1g.10gb",
                          "device_ids": [MIG_A, MIG_B],
                          "topology": {"nodes": [{"ID": "1"}]}}],
             "cpu_ids": ["3", "4"],
             "memory": [{"memory_type": "memory", "size": "1073741824",
                         "topology": {"nodes": [{"ID": "1"}]}}],
             "dynamic_resources": [{
                 "claim_name": "infer-gpu", "claim_namespace": "ml",
                 "claim_resources": [{"cdi_devices": [{"name": CDI}],
                                      "driver_name": "gpu.nvidia.com", "pool_name": "node-a",
                                      "device_name": "gpu-0-mig-1g10gb-19-4",
                                      "share_id": "share-1"}]}]}],
         "cpu_ids": ["7"]},
        {"name": "idle", "namespace": "default"}
    ]});
    (message, json)
}

/// A GetAllocatableResources answer: MIG devices and a whole GPU.
fn allocatable() -> (AllocatableResourcesResponse, Value) {
    let message = AllocatableResourcesResponse {
        devices: vec![
            ContainerDevices {
                resource_name: "nvidia.com/mig-3g.40gb".into(),
                device_ids: vec![MIG_A.into()],
                topology: topology(1),
            },
            ContainerDevices {
                resource_name: "nvidia.com/gpu".into(),
                device_ids: vec![GPU.into()],
                topology: None,
            },
        ],
        cpu_ids: vec![1, 2],
        memory: Vec::new(),
    };
    let json = json!({
        "devices": [
            {"resource_name": "nvidia.com/mig-3g.40gb", "device_ids": [MIG_A],
             "topology": {"nodes": [{"ID": "1"}]}},
            {"resource_name": "nvidia.com/gpu", "device_ids": [GPU]}
        ],
        "cpu_ids": ["1", "2"]
    });
    (message, json)
}

/// Bytes Google's runtime encodes decode to the exporter's message, and the
/// exporter's encoding decodes, in Google's runtime, to the same JSON.
fn both_ways<M: Message + Default + PartialEq + std::fmt::Debug>(name: &str, message: M, json: Value) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join(format!("{name}.json"));
    std::fs::write(&spec, json.to_string()).unwrap();

    let google_bytes = dir.path().join(format!("{name}.google.bin"));
    google(dir.path(), "encode", name, &spec, &google_bytes);
    let bytes = std::fs::read(&google_bytes).unwrap();
    assert!(!bytes.is_empty(), "{name}: Google's runtime wrote nothing");
    let decoded = M::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{name} from Google's bytes: {e}"));
    assert_eq!(decoded, message, "{name} as the exporter decodes Google's bytes");

    let ours = dir.path().join(format!("{name}.prost.bin"));
    std::fs::write(&ours, message.encode_to_vec()).unwrap();
    let back = dir.path().join(format!("{name}.back.json"));
    google(dir.path(), "decode", name, &ours, &back);
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&back).unwrap()).unwrap();
    assert_eq!(
        back, json,
        "{name} as Google's runtime decodes the exporter's bytes"
    );
}

#[test]
fn list_answers_mean_the_same_to_google_protobuf_and_to_the_exporter() {
    let (message, json) = list();
    both_ways("ListPodResourcesResponse", message, json);
}

#[test]
fn allocatable_answers_mean_the_same_to_google_protobuf_and_to_the_exporter() {
    let (message, json) = allocatable();
    both_ways("AllocatableResourcesResponse", message, json);
}
