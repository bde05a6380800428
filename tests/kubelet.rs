//! The kubelet pod-resources source against a fake kubelet (tonic, on a unix
//! socket): the client on its own, and end to end through the exporter on a
//! simulated node (`--world`), with both device-plugin strategies.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::device_plugin::{self, MigStrategy, Plugin};
use common::kubelet::{devices, dra_pod, pod, FakeKubelet, Listing};
use common::{built, edit_world, h100_world, mig_sim, value, wait_for, Exporter};
use mig_exporter::model::{mig_resource, Strategy};
use mig_exporter::source::kubelet::proto::AllocatableResourcesResponse;
use mig_exporter::source::kubelet::{
    advertised_from, AllocatableOff, KubeletSource, ALLOCATABLE_DISABLED_MESSAGE,
};
use mig_model::Product;

/// Two H100s: GPU 0 with MIG and a 3g.40gb and two 1g.10gb (one CI each), GPU 1 without MIG.
fn world(dir: &Path) -> PathBuf {
    h100_world(dir, 2, "9,19,19")
}

/// (mig_uuid, gi profile, gi, ci) of every compute instance in the exposition, and GPU 1's UUID.
fn devices_of(exposition: &str) -> (Vec<(String, String, String, String)>, String) {
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_string)
            .unwrap_or_default()
    };
    let migs = exposition
        .lines()
        .filter(|l| l.starts_with("nvidia_mig_compute_instance_info{"))
        .map(|l| {
            (
                label(l, "mig_uuid"),
                label(l, "profile"),
                label(l, "gi"),
                label(l, "ci"),
            )
        })
        .collect();
    let gpu1 = exposition
        .lines()
        .find(|l| l.starts_with("nvidia_gpu_info{") && l.contains("gpu=\"1\""))
        .map(|l| label(l, "gpu_uuid"))
        .unwrap_or_default();
    (migs, gpu1)
}

fn allocatable(entries: &[(String, String)]) -> AllocatableResourcesResponse {
    AllocatableResourcesResponse {
        devices: entries
            .iter()
            .map(|(resource, id)| devices(resource, &[id.as_str()]))
            .collect(),
        ..Default::default()
    }
}

#[test]
fn the_client_reads_both_calls_and_strips_sharing_suffixes() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| {
        a.pods.pod_resources = vec![pod(
            "ml",
            "trainer-0",
            "main",
            vec![devices("nvidia.com/mig-1g.10gb", &["MIG-a::0", "MIG-a::1"])],
        )];
        a.allocatable.devices = vec![
            devices("nvidia.com/mig-1g.10gb", &["MIG-a::0", "MIG-a::1", "MIG-b::0"]),
            devices("cpu-ish/other", &["x"]),
        ];
    });
    let mut source = KubeletSource::new(kubelet.socket.clone(), Duration::from_secs(5)).unwrap();
    let reading = source.read().expect("read the fake kubelet");
    assert_eq!(reading.pods.pod_resources[0].name, "trainer-0");
    assert_eq!(
        reading.pods.pod_resources[0].containers[0].devices[0]
            .device_ids
            .len(),
        2
    );
    let advertised = advertised_from(reading.allocatable.as_ref().expect("allocatable"));
    assert_eq!(advertised.strategy(), Strategy::Mixed);
    assert_eq!(
        advertised.resources.keys().collect::<Vec<_>>(),
        ["nvidia.com/mig-1g.10gb"],
        "only NVIDIA resources are kept"
    );
    assert_eq!(
        advertised.resources["nvidia.com/mig-1g.10gb"]
            .iter()
            .collect::<Vec<_>>(),
        ["MIG-a", "MIG-b"]
    );
}

#[test]
fn a_kubelet_without_get_allocatable_still_gives_owners() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| {
        a.pods.pod_resources = vec![pod("ml", "p", "c", vec![devices("nvidia.com/gpu", &["GPU-a"])])];
        a.allocatable_unimplemented = true;
    });
    let mut source = KubeletSource::new(kubelet.socket.clone(), Duration::from_secs(5)).unwrap();
    let reading = source.read().expect("owners without GetAllocatableResources");
    assert_eq!(reading.pods.pod_resources.len(), 1);
    assert!(reading.allocatable.is_none());
}

#[test]
fn a_slow_kubelet_fails_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| a.delay = Duration::from_secs(10));
    let mut source = KubeletSource::new(kubelet.socket.clone(), Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let error = source.read().expect_err("the kubelet is too slow");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        format!("{error:#}").contains("did not answer within"),
        "{error:#}"
    );
}

fn pod_info_lines(exposition: &str) -> Vec<String> {
    exposition
        .lines()
        .filter(|l| l.starts_with("nvidia_mig_instance_pod_info{"))
        .map(str::to_string)
        .collect()
}

fn mismatch(exposition: &str, gpu: u32) -> bool {
    drift(exposition, gpu, "advertised_mismatch")
}

fn drift(exposition: &str, gpu: u32, reason: &str) -> bool {
    exposition.lines().any(|l| {
        l.starts_with("nvidia_mig_drift{")
            && l.contains(&format!("gpu=\"{gpu}\""))
            && l.contains(&format!("reason=\"{reason}\""))
    })
}

/// The exporter on the simulated node `world`, reading `kubelet`.
fn on_world_with_kubelet(world: &Path, kubelet: &FakeKubelet) -> Exporter {
    Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--kubelet.pod-resources-socket",
        kubelet.socket.to_str().unwrap(),
    ])
}

#[test]
fn owners_and_advertised_mismatch_end_to_end_with_both_strategies() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let kubelet = FakeKubelet::start(dir.path());
    let exporter = on_world_with_kubelet(&world, &kubelet);
    let (migs, gpu1) = devices_of(&exporter.metrics());
    assert_eq!(migs.len(), 3, "{migs:?}");
    assert!(gpu1.starts_with("GPU-"), "{gpu1}");
    let mixed: Vec<(String, String)> = migs
        .iter()
        .map(|(id, profile, _, _)| (format!("nvidia.com/mig-{profile}"), id.clone()))
        .chain([("nvidia.com/gpu".to_string(), gpu1.clone())])
        .collect();
    let (held, held_profile, held_gi, held_ci) = migs[0].clone();

    // Mixed, all advertised, one MIG device shared by a pod and GPU 1 held whole.
    kubelet.set(|a| {
        a.allocatable = allocatable(&mixed);
        a.pods.pod_resources = vec![
            pod(
                "ml",
                "trainer-0",
                "main",
                vec![devices(
                    &format!("nvidia.com/mig-{held_profile}"),
                    &[&format!("{held}::0"), &format!("{held}::1")],
                )],
            ),
            pod("ml", "whole", "cuda", vec![devices("nvidia.com/gpu", &[&gpu1])]),
        ];
    });
    let want_mig = format!(
        "nvidia_mig_instance_pod_info{{mig_uuid=\"{held}\",gpu=\"0\",gi=\"{held_gi}\",ci=\"{held_ci}\",namespace=\"ml\",pod=\"trainer-0\",container=\"main\"}} 1"
    );
    let want_gpu = format!(
        "nvidia_mig_instance_pod_info{{mig_uuid=\"{gpu1}\",gpu=\"1\",gi=\"\",ci=\"\",namespace=\"ml\",pod=\"whole\",container=\"cuda\"}} 1"
    );
    wait_for(|| pod_info_lines(&exporter.metrics()).len() == 2, "two owners");
    let text = exporter.metrics();
    let lines = pod_info_lines(&text);
    assert!(lines.contains(&want_gpu), "{lines:?}");
    assert!(lines.contains(&want_mig), "{lines:?}");
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"kubelet\"}").as_deref(),
        Some("1")
    );
    assert!(!mismatch(&text, 0) && !mismatch(&text, 1), "{text}");

    // A stale advertised MIG id: mismatch on GPU 0 (the MIG GPU); fixed, it clears.
    let mut stale = mixed.clone();
    stale.push((
        "nvidia.com/mig-1g.10gb".into(),
        "MIG-00000000-dead-beef-0000-000000000000".into(),
    ));
    kubelet.set(|a| a.allocatable = allocatable(&stale));
    wait_for(
        || mismatch(&exporter.metrics(), 0),
        "advertised_mismatch for a stale id",
    );
    assert!(!mismatch(&exporter.metrics(), 1), "GPU 1 has no MIG");
    kubelet.set(|a| a.allocatable = allocatable(&mixed));
    wait_for(
        || !mismatch(&exporter.metrics(), 0),
        "the stale id's mismatch clears",
    );

    // An existing device not advertised.
    kubelet.set(|a| a.allocatable = allocatable(&mixed[1..]));
    wait_for(
        || mismatch(&exporter.metrics(), 0),
        "advertised_mismatch for an unadvertised device",
    );
    kubelet.set(|a| a.allocatable = allocatable(&mixed));
    wait_for(
        || !mismatch(&exporter.metrics(), 0),
        "the unadvertised device's mismatch clears",
    );

    // Mixed, a device counted under the wrong profile.
    let wrong: Vec<(String, String)> = mixed
        .iter()
        .map(|(r, id)| (r.replace("mig-3g.40gb", "mig-1g.10gb"), id.clone()))
        .collect();
    kubelet.set(|a| a.allocatable = allocatable(&wrong));
    wait_for(
        || mismatch(&exporter.metrics(), 0),
        "advertised_mismatch for per-profile counts",
    );

    // Single strategy on a node whose MIG devices have two profiles.
    let single: Vec<(String, String)> = mixed
        .iter()
        .map(|(_, id)| ("nvidia.com/gpu".to_string(), id.clone()))
        .collect();
    kubelet.set(|a| a.allocatable = allocatable(&mixed));
    wait_for(
        || !mismatch(&exporter.metrics(), 0),
        "the per-profile mismatch clears",
    );
    kubelet.set(|a| a.allocatable = allocatable(&single));
    wait_for(
        || mismatch(&exporter.metrics(), 0),
        "advertised_mismatch for single with two profiles",
    );
    assert!(!mismatch(&exporter.metrics(), 1), "GPU 1 has no MIG");

    // The pods go away: so do their owner series.
    kubelet.set(|a| a.pods.pod_resources.clear());
    wait_for(|| pod_info_lines(&exporter.metrics()).is_empty(), "owners gone");

    // A slow kubelet: the source goes down, scrapes stay fast, geometry stays.
    kubelet.set(|a| a.delay = Duration::from_secs(30));
    wait_for(
        || value(&exporter.metrics(), "mig_exporter_source_up{source=\"kubelet\"}").as_deref() == Some("0"),
        "kubelet down while slow",
    );
    for _ in 0..5 {
        let started = Instant::now();
        let text = exporter.metrics();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "scrape took {:?}",
            started.elapsed()
        );
        assert!(
            text.contains("nvidia_mig_compute_instance_info{"),
            "geometry is still served"
        );
        assert!(
            mismatch(&text, 0),
            "the finding is held while the kubelet does not answer"
        );
    }
}

/// The `nvidia_mig_drift_since_timestamp_seconds` of GPU `gpu`'s `advertised_mismatch`.
fn mismatch_since(exposition: &str, gpu: u32) -> Option<String> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix("nvidia_mig_drift_since_timestamp_seconds{")?;
        (rest.contains(&format!("gpu=\"{gpu}\"")) && rest.contains("reason=\"advertised_mismatch\""))
            .then(|| l.rsplit_once(' ').map(|(_, v)| v.to_string()))
            .flatten()
    })
}

fn kubelet_errors(exposition: &str) -> u64 {
    value(exposition, "mig_exporter_poll_errors_total{source=\"kubelet\"}")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Scrapes until the kubelet source has failed `polls` more times, asserting
/// on every scrape that it is down, the finding on GPU 0 holds with the same
/// since, and no owner is served.
fn assert_held_through_failed_polls(exporter: &Exporter, since: &str, polls: u64) {
    let start = kubelet_errors(&exporter.metrics());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = exporter.metrics();
        assert_eq!(
            value(&text, "mig_exporter_source_up{source=\"kubelet\"}").as_deref(),
            Some("0")
        );
        assert_eq!(
            mismatch_since(&text, 0).as_deref(),
            Some(since),
            "the finding neither flaps nor restarts while the kubelet is down"
        );
        assert!(
            pod_info_lines(&text).is_empty(),
            "no stale owners: {:?}",
            pod_info_lines(&text)
        );
        if kubelet_errors(&text) >= start + polls {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the kubelet source did not fail {polls} more polls"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn advertised_mismatch_holds_through_a_kubelet_outage_and_clears_when_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let mut kubelet = FakeKubelet::start(dir.path());
    let socket = kubelet.socket.clone();
    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--kubelet.pod-resources-socket",
        socket.to_str().unwrap(),
        "--kubelet.timeout",
        "200ms",
    ]);
    let (migs, gpu1) = devices_of(&exporter.metrics());
    let correct: Vec<(String, String)> = migs
        .iter()
        .map(|(id, profile, _, _)| (format!("nvidia.com/mig-{profile}"), id.clone()))
        .chain([("nvidia.com/gpu".to_string(), gpu1.clone())])
        .collect();
    let owner = pod(
        "ml",
        "trainer-0",
        "main",
        vec![devices(&correct[0].0, &[correct[0].1.as_str()])],
    );
    // An existing MIG device not advertised.
    let answers = |a: &mut common::kubelet::Answers, advertised: &[(String, String)]| {
        a.allocatable = allocatable(advertised);
        a.pods.pod_resources = vec![owner.clone()];
    };
    kubelet.set(|a| answers(a, &correct[1..]));
    wait_for(
        || mismatch(&exporter.metrics(), 0) && pod_info_lines(&exporter.metrics()).len() == 1,
        "the mismatch and the owner",
    );
    let since = mismatch_since(&exporter.metrics(), 0).expect("since");

    // A kubelet too slow to answer, then one that is gone.
    kubelet.set(|a| a.delay = Duration::from_secs(30));
    wait_for(
        || value(&exporter.metrics(), "mig_exporter_source_up{source=\"kubelet\"}").as_deref() == Some("0"),
        "kubelet down while slow",
    );
    assert_held_through_failed_polls(&exporter, &since, 5);
    drop(kubelet);
    assert_held_through_failed_polls(&exporter, &since, 10);

    // Back, still advertising the same: the finding goes on from the same since.
    kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| answers(a, &correct[1..]));
    wait_for(
        || value(&exporter.metrics(), "mig_exporter_source_up{source=\"kubelet\"}").as_deref() == Some("1"),
        "kubelet up again",
    );
    let text = exporter.metrics();
    assert_eq!(mismatch_since(&text, 0), Some(since.clone()));
    assert_eq!(pod_info_lines(&text).len(), 1, "owners are back");

    // Down again, then back with the device plugin's advertisement fixed: it clears.
    drop(kubelet);
    wait_for(
        || value(&exporter.metrics(), "mig_exporter_source_up{source=\"kubelet\"}").as_deref() == Some("0"),
        "kubelet down again",
    );
    assert_held_through_failed_polls(&exporter, &since, 3);
    kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| answers(a, &correct));
    wait_for(
        || !mismatch(&exporter.metrics(), 0),
        "the mismatch clears once fixed",
    );
    assert_eq!(pod_info_lines(&exporter.metrics()).len(), 1);
    assert_eq!(kubelet.socket, socket);
}

#[test]
fn an_absent_socket_marks_only_the_kubelet_down() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let missing = dir.path().join("no-such.sock");
    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--kubelet.pod-resources-socket",
        missing.to_str().unwrap(),
    ]);
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"kubelet\"}").as_deref(),
        Some("0")
    );
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"sim\"}").as_deref(),
        Some("1")
    );
    assert!(
        text.contains("nvidia_mig_compute_instance_info{"),
        "geometry is served"
    );
    assert!(
        !text.contains("nvidia_mig_instance_pod_info"),
        "no owners without a kubelet"
    );
}

/// The `gi` label of the owner series of `mig_uuid`, if there is one.
fn owner_gi(exposition: &str, mig_uuid: &str) -> Option<String> {
    pod_info_lines(exposition)
        .into_iter()
        .find(|l| l.contains(&format!("mig_uuid=\"{mig_uuid}\"")))
        .and_then(|l| l.split("gi=\"").nth(1)?.split('"').next().map(str::to_string))
}

#[test]
fn through_nvml_a_pod_owner_follows_its_mig_uuid_to_the_gpu_instance_that_has_it_now() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.json");
    let path = world.to_str().unwrap();
    // A driver that gives a compute instance created again in its place its
    // old MIG UUID: two 1g.10gb at 0:1 (GI 7) and 1:1 (GI 8).
    mig_sim(
        &world,
        &[
            "init",
            "--gpus",
            "1",
            "--product",
            "h100-80gb",
            "--mig-uuids",
            "reused",
            path,
        ],
    );
    mig_sim(&world, &["-mig", "1"]);
    edit_world(&world, |w| {
        let gpu = &mut w.gpus[0];
        assert_eq!(gpu.create_gpu_instance(19, Some(0)).unwrap(), 7);
        assert_eq!(gpu.create_gpu_instance(19, Some(1)).unwrap(), 8);
        gpu.create_compute_instance(7, None).unwrap();
        gpu.create_compute_instance(8, None).unwrap();
    });
    let at = |gi: u32| {
        let w = mig_model::World::load(&world).unwrap();
        w.gpus[0].gpu_instance(gi).unwrap().compute_instances[0]
            .uuid
            .clone()
    };
    let held = at(7);
    let kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| {
        a.pods.pod_resources = vec![pod(
            "ml",
            "trainer-0",
            "main",
            vec![devices("nvidia.com/mig-1g.10gb", &[&held])],
        )]
    });
    let library = built("libfake_nvml.so");
    let exporter = Exporter::start_with_env(
        &[
            "--nvml",
            "--nvml.library",
            library.to_str().unwrap(),
            "--no-dcgm",
            "--kubelet.pod-resources-socket",
            kubelet.socket.to_str().unwrap(),
        ],
        &[("MIG_WORLD", &world)],
    );
    wait_for(
        || owner_gi(&exporter.metrics(), &held).as_deref() == Some("7"),
        "the owner on GI 7",
    );

    // Both destroyed and created again in the same places, but numbered the
    // other way round (GI ids a real H100 also shows): the held UUID is now
    // GI 8's, and the other GI's UUID is the one GI 8 had.
    edit_world(&world, |w| {
        let gpu = &mut w.gpus[0];
        for gi in [7, 8] {
            gpu.destroy_compute_instance(gi, 0).unwrap();
            gpu.destroy_gpu_instance(gi).unwrap();
        }
        assert_eq!(gpu.create_gpu_instance(19, Some(1)).unwrap(), 8);
        gpu.gpu_instances[0].id = 7;
        assert_eq!(gpu.create_gpu_instance(19, Some(0)).unwrap(), 8);
        gpu.create_compute_instance(7, None).unwrap();
        gpu.create_compute_instance(8, None).unwrap();
    });
    assert_eq!(at(8), held, "the UUID came back at its place, now GI 8");
    wait_for(
        || owner_gi(&exporter.metrics(), &held).as_deref() == Some("8"),
        "the owner on GI 8, where its device is now",
    );
    let text = exporter.metrics();
    assert_eq!(pod_info_lines(&text).len(), 1, "{text}");
}

#[test]
fn every_profile_of_every_product_gets_the_resource_name_the_device_plugin_makes() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for product in Product::ALL {
        for gi in product.spec().profiles {
            // What the plugin computes from NVML's numbers, not from NVML's name.
            let plugin = device_plugin::go_nvlib_profile(product, gi, gi.compute_slices)
                .map(|profile| device_plugin::mixed_resource(&profile));
            let exporter = mig_resource(&gi.name.to_string());
            match &plugin {
                Ok(name) if *name == exporter && device_plugin::is_valid_resource_name(name) => {}
                _ => wrong.push(format!(
                    "{product} {} (id {}): plugin {plugin:?}, exporter {exporter}",
                    gi.name, gi.id
                )),
            }
            checked += 1;
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked >= 100, "{checked} profiles");
    let rtx = Product::RtxPro6000Blackwell96GB;
    let names: Vec<String> = rtx
        .spec()
        .profiles
        .iter()
        .map(|p| mig_resource(&p.name.to_string()))
        .collect();
    for name in [
        "nvidia.com/mig-1g.24gb.me.all",
        "nvidia.com/mig-1g.24gb.gfx",
        "nvidia.com/mig-1g.24gb-me",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert_eq!(
        mig_resource(&Product::H100_80GB.profile_by_id(20).unwrap().name.to_string()),
        "nvidia.com/mig-1g.10gb.me"
    );
}

/// How many times the kubelet source has been polled.
fn kubelet_polls(exposition: &str) -> u64 {
    value(
        exposition,
        "mig_exporter_poll_duration_seconds_count{source=\"kubelet\"}",
    )
    .and_then(|v| v.parse().ok())
    .unwrap_or(0)
}

/// Waits until the exporter has polled the kubelet twice more, so what the
/// fake kubelet answers now has been judged.
fn settle(exporter: &Exporter) -> String {
    let start = kubelet_polls(&exporter.metrics());
    wait_for(
        || kubelet_polls(&exporter.metrics()) >= start + 2,
        "two more kubelet polls",
    );
    exporter.metrics()
}

fn advertised_findings(exposition: &str) -> Vec<String> {
    exposition
        .lines()
        .filter(|l| l.starts_with("nvidia_mig_drift{") && l.contains("reason=\"advertised_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn what_the_device_plugin_advertises_is_judged_right_in_each_of_its_configurations() {
    let dir = tempfile::tempdir().unwrap();
    // GPU 0: a 1g.10gb+me, a 3g.40gb and a 1g.10gb; GPU 1 without MIG.
    let world = h100_world(dir.path(), 2, "20,9,19");
    let kubelet = FakeKubelet::start(dir.path());
    let exporter = on_world_with_kubelet(&world, &kubelet);
    let answer = |plugin: &Plugin| {
        let w = mig_model::World::load(&world).unwrap();
        let advertised = device_plugin::advertised(&w, plugin).expect("the plugin starts");
        kubelet.set(|a| a.allocatable = device_plugin::allocatable(&w, plugin));
        advertised
    };

    // Mixed: the +me instance is nvidia.com/mig-1g.10gb.me.
    let mixed = Plugin::new(MigStrategy::Mixed);
    let advertised = answer(&mixed);
    assert!(
        advertised.contains_key("nvidia.com/mig-1g.10gb.me"),
        "{advertised:?}"
    );
    let text = settle(&exporter);
    assert_eq!(advertised_findings(&text), Vec::<String>::new());

    // Time-slicing with renameByDefault: `.shared` resources, `::N` replicas.
    let mut shared = mixed.clone();
    shared.shared = vec![
        ("nvidia.com/gpu".into(), 4),
        ("nvidia.com/mig-1g.10gb.me".into(), 2),
    ];
    shared.rename_by_default = true;
    let advertised = answer(&shared);
    assert_eq!(advertised["nvidia.com/gpu.shared"].len(), 4, "{advertised:?}");
    assert!(advertised["nvidia.com/mig-1g.10gb.me.shared"][1].ends_with("::1"));
    let text = settle(&exporter);
    assert_eq!(advertised_findings(&text), Vec::<String>::new());
    // A pod holding a replica of a shared resource owns its device.
    let replica = advertised["nvidia.com/gpu.shared"][2].clone();
    kubelet.set(|a| {
        a.pods.pod_resources = vec![pod(
            "ml",
            "notebook",
            "main",
            vec![devices("nvidia.com/gpu.shared", &[&replica])],
        )]
    });
    let gpu1 = replica.split("::").next().unwrap().to_string();
    wait_for(
        || {
            pod_info_lines(&exporter.metrics()).iter().any(|l| {
                l.contains(&format!("mig_uuid=\"{gpu1}\",gpu=\"1\"")) && l.contains("pod=\"notebook\"")
            })
        },
        "the owner of a shared GPU",
    );
    kubelet.set(|a| a.pods.pod_resources.clear());

    // A device the plugin marked unhealthy: with no XID the exporter saw, a
    // mismatch; an XID the plugin ignores (13) changes nothing; a critical
    // one (79) makes it advertised_unhealthy, and the mismatch goes.
    let w = mig_model::World::load(&world).unwrap();
    let sick = w.gpus[0].gpu_instances[1].compute_instances[0].uuid.clone();
    let mut unhealthy = mixed.clone();
    unhealthy.unhealthy = vec![sick.clone()];
    answer(&unhealthy);
    wait_for(|| mismatch(&exporter.metrics(), 0), "a mismatch without an XID");
    edit_world(&world, |w| w.gpus[0].telemetry.xid_events = vec![13]);
    let text = settle(&exporter);
    assert!(
        mismatch(&text, 0) && !drift(&text, 0, "advertised_unhealthy"),
        "{text}"
    );
    edit_world(&world, |w| w.gpus[0].telemetry.xid_events = vec![13, 79]);
    wait_for(
        || drift(&exporter.metrics(), 0, "advertised_unhealthy"),
        "advertised_unhealthy after XID 79",
    );
    let text = exporter.metrics();
    assert!(
        !mismatch(&text, 0) && !drift(&text, 1, "advertised_unhealthy"),
        "{text}"
    );
    answer(&mixed);
    wait_for(
        || advertised_findings(&exporter.metrics()).is_empty(),
        "healthy again once the plugin is restarted",
    );

    // Mixed with a compute instance smaller than its GPU instance: the plugin
    // has no resource for it and does not start; nothing is advertised and
    // nothing is judged.
    edit_world(&world, |w| {
        let gi = w.gpus[0]
            .gpu_instances
            .iter()
            .find(|gi| gi.profile_id == 9)
            .unwrap()
            .id;
        w.gpus[0].destroy_compute_instance(gi, 0).unwrap();
        w.gpus[0].create_compute_instance(gi, Some(0)).unwrap();
    });
    let w = mig_model::World::load(&world).unwrap();
    let error = device_plugin::advertised(&w, &mixed).expect_err("the plugin stops");
    assert!(error.contains("'1c.3g.40gb' does not match"), "{error}");
    kubelet.set(|a| a.allocatable = device_plugin::allocatable(&w, &mixed));
    let text = settle(&exporter);
    assert_eq!(advertised_findings(&text), Vec::<String>::new());
}

#[test]
fn ids_that_are_not_uuids_are_not_judged_and_the_exporter_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let kubelet = FakeKubelet::start(dir.path());
    // unverified: NVIDIA's plugin never advertises these (BuildDevice ids
    // every device by UUID); another device plugin serving nvidia.com/gpu
    // with its own ids is assumed.
    kubelet.set(|a| {
        a.allocatable = allocatable(&[
            ("nvidia.com/gpu".into(), "0".into()),
            ("nvidia.com/gpu".into(), "1:0".into()),
        ])
    });
    let exporter = on_world_with_kubelet(&world, &kubelet);
    let page = || exporter.get("/", None).1;
    wait_for(
        || {
            page().contains("advertised devices not judged: the kubelet advertises NVIDIA devices by ids that are not GPU or MIG UUIDs (0 (nvidia.com/gpu), 1:0 (nvidia.com/gpu))")
        },
        "the landing page says why",
    );
    let text = settle(&exporter);
    assert_eq!(advertised_findings(&text), Vec::<String>::new());
    let said = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains("advertised devices are not judged"))
            .count()
    };
    assert_eq!(said(&exporter.log()), 1, "{:?}", exporter.log());

    // UUIDs again: judged (GPU 0's devices are not advertised), and said so.
    kubelet.set(|a| a.allocatable = allocatable(&[("nvidia.com/gpu".into(), "GPU-x".into())]));
    wait_for(|| mismatch(&exporter.metrics(), 0), "judged again");
    assert!(!page().contains("not judged"));
    assert_eq!(said(&exporter.log()), 1);
}

#[test]
fn a_kubelet_with_get_allocatable_gated_off_still_gives_owners_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| {
        a.pods.pod_resources = vec![pod("ml", "p", "c", vec![devices("nvidia.com/gpu", &["GPU-a"])])];
        a.allocatable_gate_off = true;
    });
    let mut source = KubeletSource::new(kubelet.socket.clone(), Duration::from_secs(5)).unwrap();
    let reading = source
        .read()
        .expect("owners with GetAllocatableResources gated off");
    assert_eq!(reading.pods.pod_resources.len(), 1);
    assert!(reading.allocatable.is_none());
    let off = AllocatableOff::FeatureGateOff {
        message: ALLOCATABLE_DISABLED_MESSAGE.to_string(),
    };
    assert_eq!(reading.allocatable_off.as_ref(), Some(&off));
    assert_eq!(source.advertisement_off(), Some(&off));
    assert!(source.advertised().is_none(), "nothing to judge");

    // Turned on: advertisements are judged again.
    kubelet.set(|a| a.allocatable_gate_off = false);
    source.read().expect("read");
    assert_eq!(source.advertisement_off(), None);
    assert!(source.advertised().is_some());
}

fn owners_of(exposition: &str, mig_uuid: &str) -> Vec<String> {
    pod_info_lines(exposition)
        .into_iter()
        .filter(|l| l.contains(&format!("mig_uuid=\"{mig_uuid}\"")))
        .filter_map(|l| l.split("pod=\"").nth(1)?.split('"').next().map(str::to_string))
        .collect()
}

#[test]
fn a_completed_job_does_not_keep_its_mig_device_whatever_the_kubelet_version() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let kubelet = FakeKubelet::start(dir.path());
    let exporter = on_world_with_kubelet(&world, &kubelet);
    let (migs, _) = devices_of(&exporter.metrics());
    let (held, profile, _, _) = migs[1].clone();
    let resource = format!("nvidia.com/mig-{profile}");
    let job = pod("batch", "job-1-abcde", "main", vec![devices(&resource, &[&held])]);
    let trainer = pod("ml", "trainer-0", "main", vec![devices(&resource, &[&held])]);
    for lists in [
        // Before 1.34, after a kubelet restart: the Job's pod is listed with its device.
        Listing::AllPods { sources_ready: false },
        // Before 1.34, config sources ready: listed, its devices freed.
        Listing::AllPods { sources_ready: true },
        // 1.34 on: not listed.
        Listing::ActivePods,
    ] {
        kubelet.set(|a| {
            a.lists = lists;
            a.terminal.clear();
            a.pods.pod_resources = vec![job.clone()];
        });
        wait_for(
            || owners_of(&exporter.metrics(), &held) == ["job-1-abcde"],
            "the running Job owns the device",
        );
        // The Job completes and the device manager hands the device to a new pod.
        kubelet.set(|a| {
            a.terminal = vec![job.clone()];
            a.pods.pod_resources = vec![trainer.clone()];
        });
        wait_for(
            || owners_of(&exporter.metrics(), &held) == ["trainer-0"],
            &format!("only the new pod owns the device ({lists:?})"),
        );
        for _ in 0..3 {
            let text = exporter.metrics();
            assert_eq!(owners_of(&text, &held), ["trainer-0"], "{lists:?}: {text}");
        }
    }
}

#[test]
fn two_holders_of_one_device_at_the_first_read_are_reported_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let (migs, _) = {
        // The devices, from an exporter without a kubelet.
        let probe = Exporter::start(&["--world", world.to_str().unwrap(), "--no-kubelet"]);
        devices_of(&probe.metrics())
    };
    let (held, profile, _, _) = migs[1].clone();
    let (other, other_profile, _, _) = migs[2].clone();
    let resource = format!("nvidia.com/mig-{profile}");
    let kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| {
        a.lists = Listing::AllPods { sources_ready: false };
        a.terminal = vec![pod(
            "batch",
            "job-1-abcde",
            "main",
            vec![devices(&resource, &[&held])],
        )];
        a.pods.pod_resources = vec![
            pod("ml", "trainer-0", "main", vec![devices(&resource, &[&held])]),
            pod(
                "ml",
                "other",
                "main",
                vec![devices(&format!("nvidia.com/mig-{other_profile}"), &[&other])],
            ),
        ];
    });
    let exporter = on_world_with_kubelet(&world, &kubelet);
    wait_for(
        || owners_of(&exporter.metrics(), &other) == ["other"],
        "the other owner",
    );
    let text = exporter.metrics();
    assert!(owners_of(&text, &held).is_empty(), "{text}");
    wait_for(
        || {
            exporter
                .log()
                .iter()
                .any(|l| l.contains("more than one holder") && l.contains(&held) && l.contains("job-1-abcde"))
        },
        "a warning naming the device and its holders",
    );
    // The Job's pod is deleted: the trainer owns the device.
    kubelet.set(|a| a.terminal.clear());
    wait_for(
        || owners_of(&exporter.metrics(), &held) == ["trainer-0"],
        "the remaining holder owns it",
    );
}

#[test]
fn devices_of_dra_claims_get_owners_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let kubelet = FakeKubelet::start(dir.path());
    let exporter = on_world_with_kubelet(&world, &kubelet);
    let (_, gpu1) = devices_of(&exporter.metrics());
    // The NVIDIA DRA driver's names (NVIDIA/k8s-dra-driver-gpu
    // cmd/gpu-kubelet-plugin/mig.go, `ToCanonicalName`): the parent's minor
    // (the simulated node's minors are its indexes), the profile name without
    // dots, the GI profile id and the placement start.
    let w = mig_model::World::load(&world).unwrap();
    let gpu = &w.gpus[0];
    let gi = &gpu.gpu_instances[2];
    let name = gpu.gi_profile(gi).unwrap().name.to_string().replace('.', "");
    let device = format!("gpu-0-mig-{name}-{}-{}", gi.profile_id, gi.placement.start);
    let mig_uuid = gi.compute_instances[0].uuid.clone();
    kubelet.set(|a| {
        a.pods.pod_resources = vec![
            dra_pod("ml", "infer-0", "server", "infer-0-gpu", &[&device]),
            dra_pod("ml", "whole", "cuda", "whole-gpu", &["gpu-1"]),
        ]
    });
    let want_mig = format!(
        "nvidia_mig_instance_pod_info{{mig_uuid=\"{mig_uuid}\",gpu=\"0\",gi=\"{}\",ci=\"{}\",namespace=\"ml\",pod=\"infer-0\",container=\"server\"}} 1",
        gi.id, gi.compute_instances[0].id
    );
    let want_gpu = format!(
        "nvidia_mig_instance_pod_info{{mig_uuid=\"{gpu1}\",gpu=\"1\",gi=\"\",ci=\"\",namespace=\"ml\",pod=\"whole\",container=\"cuda\"}} 1"
    );
    wait_for(
        || pod_info_lines(&exporter.metrics()).len() == 2,
        "two DRA owners",
    );
    let lines = pod_info_lines(&exporter.metrics());
    assert!(lines.contains(&want_mig), "{lines:?}");
    assert!(lines.contains(&want_gpu), "{lines:?}");
}

#[test]
fn with_get_allocatable_gated_off_owners_are_served_and_the_log_says_why_nothing_is_judged() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let kubelet = FakeKubelet::start(dir.path());
    kubelet.set(|a| {
        a.pods.pod_resources = vec![pod("ml", "p", "c", vec![devices("nvidia.com/gpu", &["GPU-a"])])];
        a.allocatable_gate_off = true;
    });
    let exporter = on_world_with_kubelet(&world, &kubelet);
    let (migs, _) = devices_of(&exporter.metrics());
    let (held, profile, _, _) = migs[0].clone();
    kubelet.set(|a| {
        a.pods.pod_resources = vec![pod(
            "ml",
            "trainer-0",
            "main",
            vec![devices(&format!("nvidia.com/mig-{profile}"), &[&held])],
        )]
    });
    wait_for(
        || owners_of(&exporter.metrics(), &held) == ["trainer-0"],
        "owners without GetAllocatableResources",
    );
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"kubelet\"}").as_deref(),
        Some("1")
    );
    assert!(!mismatch(&text, 0), "{text}");
    wait_for(
        || {
            exporter.log().iter().any(|l| {
                l.contains("advertised_mismatch is not judged")
                    && l.contains("KubeletPodResourcesGetAllocatable is off")
            })
        },
        "the log says why advertisements are not judged",
    );
}
