//! Fake kubelets for `bench/fleet.sh`: one pod-resources socket per simulated
//! node, all in this one process (N processes would cost N times the memory).
//! Each answers `GetAllocatableResources` with what NVIDIA's device plugin
//! (mixed strategy) advertises for the node's World as it is at start, and
//! `List` with the pods the manifest puts on its MIG devices. Reuses the test
//! doubles of tests/common (their behaviour and sources are cited there).
//!
//! Usage: `fleet_kubelets MANIFEST`, MANIFEST a JSON list of
//! `{"dir": DIR, "world": FILE, "pods": [{"namespace", "name", "mig_uuid"}]}`;
//! the socket of each is `DIR/kubelet.sock`. Prints `ready N` once every
//! socket listens, then serves until killed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use mig_model::World;
use serde::Deserialize;

#[allow(dead_code)] // the tests' double: not every helper is used here
#[path = "../tests/common/kubelet.rs"]
mod kubelet;

#[allow(dead_code)]
#[path = "../tests/common/device_plugin.rs"]
mod device_plugin;

use device_plugin::{MigStrategy, Plugin};
use kubelet::{devices, pod, FakeKubelet};

#[derive(Deserialize)]
struct Node {
    dir: PathBuf,
    world: PathBuf,
    pods: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    namespace: String,
    name: String,
    mig_uuid: String,
}

fn main() -> anyhow::Result<()> {
    let Some(manifest) = std::env::args_os().nth(1) else {
        bail!("usage: fleet_kubelets MANIFEST");
    };
    let manifest = PathBuf::from(manifest);
    let text =
        std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let nodes: Vec<Node> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let plugin = Plugin::new(MigStrategy::Mixed);
    let mut kubelets = Vec::with_capacity(nodes.len());
    for node in &nodes {
        let world = World::load(&node.world)?;
        let advertised = device_plugin::advertised(&world, &plugin)
            .map_err(|e| anyhow::anyhow!("{}: the device plugin would stop: {e}", node.world.display()))?;
        let resource_of: BTreeMap<&str, &str> = advertised
            .iter()
            .flat_map(|(resource, ids)| ids.iter().map(move |id| (id.as_str(), resource.as_str())))
            .collect();
        let mut pods = Vec::with_capacity(node.pods.len());
        for p in &node.pods {
            let Some(resource) = resource_of.get(p.mig_uuid.as_str()) else {
                bail!(
                    "{}: pod {}/{}: no MIG device {}",
                    node.world.display(),
                    p.namespace,
                    p.name,
                    p.mig_uuid
                );
            };
            pods.push(pod(
                &p.namespace,
                &p.name,
                "main",
                vec![devices(resource, &[&p.mig_uuid])],
            ));
        }
        let allocatable = device_plugin::allocatable(&world, &plugin);
        let fake = FakeKubelet::start(&node.dir);
        fake.set(|a| {
            a.pods.pod_resources = pods;
            a.allocatable = allocatable;
        });
        kubelets.push(fake);
    }
    println!("ready {}", kubelets.len());
    loop {
        std::thread::park();
    }
}
