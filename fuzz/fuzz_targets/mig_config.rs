//! nvidia-mig-parted config files (`--mig.config`): parsing, choosing a
//! config and resolving it against a node of two H100s and an A100.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mig_exporter::drift::desired;
use mig_exporter::model::GpuSnapshot;
use mig_exporter::source::sim::reading_from_world;
use mig_model::{Product, World};

const PATH: &str = "/fuzz/mig-config.yaml";

fn node() -> &'static [GpuSnapshot] {
    static NODE: OnceLock<Vec<GpuSnapshot>> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut node = reading_from_world(&World::new("fuzz", Product::H100_80GB, 2)).gpus;
        // Another host name, so the A100 does not get the UUID of the first H100
        // (a simulated GPU's UUID follows the host name and index).
        let mut a100 = reading_from_world(&World::new("fuzz-a100", Product::A100Sxm4_40GB, 1)).gpus;
        a100[0].index = 2;
        assert!(node.iter().all(|g| g.uuid != a100[0].uuid));
        node.append(&mut a100);
        node
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    let spec = match desired::parse(text, path) {
        Ok(spec) => spec,
        Err(e) => {
            assert!(e.to_string().contains(PATH), "error without the file name: {e}");
            if let desired::DesiredError::Spec { location, .. } = &e {
                assert!(location.is_some(), "error without a line: {e}");
            }
            return;
        }
    };
    let node = node();
    for name in spec.configs.keys() {
        let (chosen, entries) = spec.select(Some(name), path).expect("a config the file has");
        assert_eq!(chosen, name);
        match desired::resolve(path, chosen, entries, node) {
            Ok(resolved) => {
                // Only GPUs of the node, and only those some entry selects.
                for uuid in resolved.gpus.keys() {
                    let gpu = node.iter().find(|g| &g.uuid == uuid).expect("a GPU of the node");
                    let device_id = Some(gpu.pci_device_id);
                    assert!(entries.iter().any(|e| e.selects(gpu.index, device_id)));
                }
            }
            Err(e) => assert!(e.to_string().contains(PATH), "error without the file name: {e}"),
        }
    }
});
