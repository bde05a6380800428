//! The README's "Troubleshooting" quotes what the exporter prints. Each
//! numbered item's backticked quotes are checked here against the real thing:
//! the situation is made with the built binaries and the test doubles
//! (fake-nvml over a World, its fault switches, the fake kubelet, a missing
//! socket, `check` against a config the driver cannot fit), and what the
//! exporter printed (its log, `/metrics`, `/readyz`, check's output) must
//! hold the quote. In a quote `…` stands for any text and `<N>` for a number;
//! whitespace is compared as single spaces, since the README wraps lines.
//!
//! [`QUOTES`] says how each quote is checked, naming it by its opening
//! words: what is matched is the README's own text. A quote the README gains
//! without an entry fails [`every_troubleshooting_quote_is_what_the_exporter_says`],
//! and so does an entry whose quote left the README.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::device_plugin::{self, MigStrategy, Plugin};
use common::kubelet::{devices, pod, FakeKubelet};
use common::{
    built, edit_world, h100_world, mig_sim, wait_for, Exporter, EXPORTER, NO_DRIVER, NVML_LIBRARY_ENV,
};
use mig_model::{Product, World};

/// A situation the troubleshooting section describes, made for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    /// A start without --nvml where no driver answers.
    Demo,
    /// --nvml where the system's libnvidia-ml.so.1 is not installed.
    NvmlNoDriver,
    /// NVML refuses to list MIG instances (no MIG monitor capability).
    NoMonitorPermission,
    /// Asked for the monitor device (NVIDIA_MIG_MONITOR_DEVICES=all) and not given it.
    MonitorDeviceNotInjected,
    /// No DCGM library installed.
    NoDcgm,
    /// fake-dcgm loaded, its host engine down.
    DcgmHostEngineDown,
    /// --nvml on an A100.
    Ampere,
    /// A GPU with persistence mode off.
    PersistenceOff,
    /// The kubelet advertises MIG devices of two profiles as nvidia.com/gpu.
    SingleStrategyMismatch,
    /// No kubelet pod-resources socket where the exporter looks.
    NoKubeletSocket,
    /// --mig.config-from-kubernetes without a node name.
    NoNodeName,
    /// `check` with a config whose profile an R515 A100 does not offer.
    OldDriverCheck,
}
use Scenario::*;

/// How one quote is checked.
enum Check {
    /// What the exporter printed in the scenario (its log and /readyz, or
    /// what the command printed) holds the quote.
    Printed(Scenario),
    /// A series of /metrics in the scenario: the quote's name (with any
    /// labels it gives) has this value; a value in the quote must be it.
    Series(Scenario, &'static str),
    /// /readyz answers 503 in the scenario (the quote is the path).
    Unready(Scenario),
    /// `mig-exporter --help` has it (a program or label it reads).
    Help,
    /// `mig-exporter --help` lists this flag.
    Flag,
    /// `mig-exporter --help` lists this subcommand.
    Subcommand,
    /// The manifests, chart and units in deploy/ set it: `K=V` as an env
    /// var, a label or a YAML key and value, anything else as written.
    Deploy,
    /// A key of the chart's values.yaml (`a.b`, or `a.b=true|false` for a
    /// boolean one).
    ChartKey,
    /// The value the chart's values.yaml gives this key.
    ChartSets(&'static str),
    /// A profile the README says needs R525: `check` on its GPU (see
    /// [`DRIVER_GATES`]) refuses it with an R520 driver and takes it with R525.
    DriverGate,
    /// Another program's setting that nothing here prints or reads; why.
    NotOurs(&'static str),
}
use Check::*;

/// Every backticked quote of the troubleshooting items, by item and opening
/// (whitespace as single spaces; the whole quote when short), and how it is
/// checked.
const QUOTES: &[(u32, &str, Check)] = &[
    (1, "--nvml", Flag),
    (1, "no NVIDIA driver answered (…): serving the", Printed(Demo)),
    (1, "mig_exporter_simulated", Series(Demo, "1")),
    (
        2,
        "mig_exporter_source_up{source=\"nvml\"}",
        Series(NvmlNoDriver, "0"),
    ),
    (
        2,
        "error=\"cannot load libnvidia-ml.so.1: …",
        Printed(NvmlNoDriver),
    ),
    (2, "nvidia", ChartSets("runtimeClassName")),
    (2, "NVIDIA_VISIBLE_DEVICES=all", Deploy),
    (
        3,
        "the current user does not have permission",
        Printed(NoMonitorPermission),
    ),
    (3, "NVIDIA_MIG_MONITOR_DEVICES=all", Deploy),
    (3, "SYS_ADMIN", Deploy),
    (4, "/readyz", Unready(MonitorDeviceNotInjected)),
    (
        4,
        "listing MIG instances is not permitted: this",
        Printed(MonitorDeviceNotInjected),
    ),
    (4, "toolkit.version", Printed(MonitorDeviceNotInjected)),
    (4, "legacy", Printed(MonitorDeviceNotInjected)),
    (
        5,
        "msg=\"source does not apply here\" source=dcgm",
        Printed(NoDcgm),
    ),
    (
        5,
        "cannot connect to the host engine at localhost:5555",
        Printed(DcgmHostEngineDown),
    ),
    (5, "nv-hostengine", Help),
    (5, "--dcgm.embedded", Flag),
    (5, "dcgm.enabled", ChartKey),
    (6, "source=gpm state=unsupported reason=\"GPM:", Printed(Ampere)),
    (7, "nvidia_gpu_persistence_mode", Series(PersistenceOff, "0")),
    // The units start after the daemon that keeps persistence mode on.
    (7, "nvidia-persistenced", Deploy),
    (8, "advertised_mismatch", Printed(SingleStrategyMismatch)),
    (
        8,
        "the kubelet's advertised devices (strategy",
        Printed(SingleStrategyMismatch),
    ),
    (
        8,
        "migStrategy",
        NotOurs("k8s-device-plugin's own setting; tests/common/device_plugin.rs models its two values"),
    ),
    (9, "nvidia.com/gpu.present=true", Deploy),
    (9, "nvidia.com/gpu.deploy.client=true", Deploy),
    (9, "migManager.pauseForMigChange=false", ChartKey),
    (9, "privileged", Deploy),
    (
        9,
        "nvidia_mig_instance_pod_info",
        Series(SingleStrategyMismatch, "1"),
    ),
    (
        9,
        "mig_exporter_source_up{source=\"kubelet\"}",
        Series(NoKubeletSocket, "0"),
    ),
    (
        9,
        "cannot connect to the kubelet pod-resources socket …",
        Printed(NoKubeletSocket),
    ),
    (9, "hostPaths.podResources", ChartKey),
    (9, "pod-resources", Deploy),
    (9, "nvidia.com/mig.config", Help),
    (
        9,
        "--mig.config-from-kubernetes needs this node's",
        Printed(NoNodeName),
    ),
    (
        10,
        "UNKNOWN: cannot tell: mig config mig.yaml,",
        Printed(OldDriverCheck),
    ),
    (10, "check", Subcommand),
    (10, "1g.10gb", DriverGate),
    (10, "2g.12gb+me", DriverGate),
];

/// The profiles item 10 says need R525, each on its GPU.
const DRIVER_GATES: &[(&str, Product)] = &[
    ("1g.10gb", Product::A100Sxm4_40GB),
    ("2g.12gb+me", Product::A30_24GB),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The numbered items of the README's troubleshooting section: number → text.
fn items(readme: &str) -> BTreeMap<u32, String> {
    let section = readme
        .split("\n## Troubleshooting\n")
        .nth(1)
        .expect("README has a Troubleshooting section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut items = BTreeMap::new();
    let mut current = None;
    for line in section.lines() {
        let number = line.split_once(". ").and_then(|(n, _)| n.parse::<u32>().ok());
        if let Some(n) = number {
            current = Some(n);
        } else if !line.starts_with(' ') {
            current = None;
        }
        if let Some(n) = current {
            let text: &mut String = items.entry(n).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    items
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The backticked quotes of an item, whitespace normalized.
fn quotes(item: &str) -> BTreeSet<String> {
    item.split('`').skip(1).step_by(2).map(normalize).collect()
}

enum Piece {
    Text(String),
    Any,
    Number,
}

fn pieces(quote: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, part) in quote.split('…').enumerate() {
        if i > 0 {
            out.push(Piece::Any);
        }
        for (j, text) in part.split("<N>").enumerate() {
            if j > 0 {
                out.push(Piece::Number);
            }
            if !text.is_empty() {
                out.push(Piece::Text(text.to_string()));
            }
        }
    }
    out
}

/// Whether `pieces` match a prefix of `text`.
fn matches_at(pieces: &[Piece], text: &str) -> bool {
    match pieces.split_first() {
        None => true,
        Some((Piece::Text(t), rest)) => text.strip_prefix(t.as_str()).is_some_and(|r| matches_at(rest, r)),
        Some((Piece::Number, rest)) => {
            let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            digits > 0 && matches_at(rest, &text[digits..])
        }
        Some((Piece::Any, rest)) => text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .any(|i| matches_at(rest, &text[i..])),
    }
}

/// Whether `quote` (`…` any text, `<N>` a number) occurs in `text`, both
/// with whitespace normalized.
fn says(text: &str, quote: &str) -> bool {
    let text = normalize(text);
    let pieces = pieces(&normalize(quote));
    text.char_indices()
        .map(|(i, _)| i)
        .any(|i| matches_at(&pieces, &text[i..]))
}

#[test]
fn the_matcher_elides_and_numbers() {
    assert!(says("a b (x y):\n  c d", "b (…): c"));
    assert!(says("dev/cap12 is missing", "cap<N> is missing"));
    assert!(!says("dev/cap is missing", "cap<N> is missing"));
    assert!(!says("a b c", "a … d"));
    assert!(!says("no profile '1g.10gb'", "no profile '1g.20gb'"));
}

/// What the exporter printed in a scenario.
#[derive(Default)]
struct Seen {
    /// Log lines, check's stdout and stderr, /readyz's body.
    printed: String,
    metrics: String,
    readyz: Option<u16>,
}

fn fake_nvml_args() -> Vec<String> {
    let library = built("libfake_nvml.so");
    vec![
        "--nvml".into(),
        "--nvml.library".into(),
        library.display().to_string(),
    ]
}

/// The exporter on fake-nvml over `world` with `extra` flags, once its log
/// has a line with `until`; what it printed by then and its /metrics.
fn on_fake_nvml(world: &Path, extra: &[&str], env: &[(&str, &Path)], until: &str) -> Seen {
    let mut args = fake_nvml_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env = env.to_vec();
    env.push(("MIG_WORLD", world));
    let exporter = Exporter::start_unready(&args, &env);
    seen_once(&exporter, until)
}

/// What `exporter` printed once its log has a line with `until`: the log
/// and /readyz, and /metrics.
fn seen_once(exporter: &Exporter, until: &str) -> Seen {
    wait_for(
        || exporter.log().iter().any(|l| l.contains(until)),
        &format!("a log line with {until:?}"),
    );
    let (status, body) = exporter.get("/readyz", None);
    Seen {
        printed: exporter.log().join("\n") + "\n" + &body,
        metrics: exporter.metrics(),
        readyz: Some(status),
    }
}

fn scenario(which: Scenario, dir: &Path) -> Seen {
    match which {
        Demo => {
            let exporter = Exporter::start_with_env(&[], &[(NVML_LIBRARY_ENV, Path::new(NO_DRIVER))]);
            seen_once(&exporter, "SIMULATED")
        }
        NvmlNoDriver => {
            // The system's libnvidia-ml.so.1, as --nvml loads it: none on a
            // machine without NVIDIA's driver, as the tests run (with one,
            // the wait for "poll failed" times out).
            let exporter = Exporter::start_unready(&["--nvml", "--no-dcgm", "--no-gpm"], &[]);
            seen_once(&exporter, "poll failed")
        }
        NoMonitorPermission | MonitorDeviceNotInjected => {
            let world = h100_world(dir, 1, "9,19");
            // nvml.h: NVML_ERROR_NO_PERMISSION (4), what the driver answers
            // when the MIG monitor capability is not readable.
            edit_world(&world, |w| {
                w.faults
                    .failing_calls
                    .insert("nvmlDeviceGetGpuInstances".into(), 4);
            });
            if which == NoMonitorPermission {
                return on_fake_nvml(&world, &["--no-dcgm"], &[], "poll failed");
            }
            // The container's view, as tests/nvml.rs makes it: the real H100's
            // monitor entry (/work/shared/fixtures/h100-80gb-hbm3-real/probe.txt)
            // and no /dev/nvidia-caps/nvidia-cap2.
            let caps = dir.join("root");
            let proc = caps.join("proc/driver/nvidia/capabilities/mig");
            std::fs::create_dir_all(&proc).unwrap();
            std::fs::write(
                proc.join("monitor"),
                "DeviceFileMinor: 2\nDeviceFileMode: 292\nDeviceFileModify: 1\n",
            )
            .unwrap();
            std::fs::create_dir_all(caps.join("dev/nvidia-caps")).unwrap();
            on_fake_nvml(
                &world,
                &["--no-dcgm", "--nvml.capabilities-root", caps.to_str().unwrap()],
                &[("NVIDIA_MIG_MONITOR_DEVICES", Path::new("all"))],
                "is not permitted",
            )
        }
        NoDcgm => {
            // The system's libdcgm.so.4: none where DCGM is not installed, as
            // the tests run.
            let world = h100_world(dir, 1, "9,19");
            on_fake_nvml(&world, &[], &[], "source=dcgm")
        }
        DcgmHostEngineDown => {
            let world = h100_world(dir, 1, "9,19");
            edit_world(&world, |w| w.faults.dcgm_hostengine_down = true);
            let dcgm = built("libfake_dcgm.so");
            on_fake_nvml(
                &world,
                &["--dcgm.library", dcgm.to_str().unwrap()],
                &[],
                "host engine",
            )
        }
        Ampere => {
            let world = dir.join("world.json");
            World::new("node", Product::A100_80GB, 1).save(&world).unwrap();
            mig_sim(&world, &["-mig", "1"]);
            mig_sim(&world, &["mig", "-cgi", "9", "-C"]);
            on_fake_nvml(&world, &["--no-dcgm"], &[], "source=gpm")
        }
        PersistenceOff => {
            let world = h100_world(dir, 1, "9,19");
            edit_world(&world, |w| w.gpus[0].persistence_mode = false);
            on_fake_nvml(&world, &["--no-dcgm"], &[], "msg=\"source is up\" source=nvml")
        }
        SingleStrategyMismatch => single_strategy_mismatch(dir),
        NoKubeletSocket => {
            let world = h100_world(dir, 1, "9,19");
            let socket = dir.join("pod-resources/kubelet.sock");
            let exporter = Exporter::start_unready(
                &[
                    "--world",
                    world.to_str().unwrap(),
                    "--kubelet.pod-resources-socket",
                    socket.to_str().unwrap(),
                ],
                &[],
            );
            seen_once(&exporter, "pod-resources socket")
        }
        NoNodeName => {
            let world = h100_world(dir, 1, "9,19");
            let out = Command::new(EXPORTER)
                .args(["--world", world.to_str().unwrap(), "--mig.config-from-kubernetes"])
                .args(["--web.listen-address", "127.0.0.1:0"])
                .env_remove("NODE_NAME")
                .env_remove("MIG_EXPORTER_KUBERNETES_NODE_NAME")
                .output()
                .expect("run the exporter");
            assert!(!out.status.success(), "started without a node name");
            Seen {
                printed: String::from_utf8_lossy(&out.stderr).into_owned(),
                ..Seen::default()
            }
        }
        OldDriverCheck => {
            let out = check_on(dir, Product::A100Sxm4_40GB, "515.105.01", "1g.10gb", 7);
            assert_eq!(out.status.code(), Some(2), "check's UNKNOWN");
            Seen {
                printed: String::from_utf8_lossy(&out.stdout).into_owned(),
                ..Seen::default()
            }
        }
    }
}

/// `mig-exporter check --nvml --mig.config mig.yaml --mig.config-name
/// all-<profile>` on one GPU `product` with driver `driver`, in MIG mode
/// with one 3g instance; the config asks for `count` of `profile`.
fn check_on(dir: &Path, product: Product, driver: &str, profile: &str, count: u32) -> std::process::Output {
    let world = dir.join("world.json");
    let mut node = World::new("node", product, 1);
    node.driver_version = driver.into();
    node.save(&world).unwrap();
    mig_sim(&world, &["-mig", "1"]);
    // nvidia-mig-parted's config format (its README's example configs).
    let config = format!(
        "version: v1\nmig-configs:\n  all-{profile}:\n    - devices: all\n      mig-enabled: true\n      mig-devices:\n        \"{profile}\": {count}\n"
    );
    std::fs::write(dir.join("mig.yaml"), config).unwrap();
    Command::new(EXPORTER)
        .arg("check")
        .args(fake_nvml_args())
        .args(["--no-dcgm", "--mig.config", "mig.yaml", "--mig.config-name"])
        .arg(format!("all-{profile}"))
        .current_dir(dir)
        .env("MIG_WORLD", &world)
        .output()
        .expect("run check")
}

/// The device plugin with strategy single started on a node with one
/// profile (two 1g.10gb) and advertised both as nvidia.com/gpu
/// (tests/common/device_plugin.rs); then a 3g.40gb was added beside them.
/// The plugin cannot advertise that ("more than one MIG device type present
/// on node"). unverified: the kubelet still lists what the plugin last
/// registered, as this fake kubelet is told to. A pod holds one device.
fn single_strategy_mismatch(dir: &Path) -> Seen {
    let world = h100_world(dir, 1, "19,19");
    let kubelet = FakeKubelet::start(dir);
    let plugin = Plugin::new(MigStrategy::Single);
    let node = World::load(&world).unwrap();
    let advertised = device_plugin::advertised(&node, &plugin).expect("single starts on one profile");
    let held = advertised["nvidia.com/gpu"][0].clone();
    kubelet.set(|a| {
        a.allocatable = device_plugin::allocatable(&node, &plugin);
        a.pods.pod_resources = vec![pod("ml", "p", "c", vec![devices("nvidia.com/gpu", &[&held])])];
    });
    mig_sim(&world, &["-i", "0", "mig", "-cgi", "9", "-C"]);
    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--kubelet.pod-resources-socket",
        kubelet.socket.to_str().unwrap(),
    ]);
    let seen = seen_once(&exporter, "advertised_mismatch");
    drop(kubelet);
    seen
}

/// The value of the series `quote` names (`name` or `name{label="v",…}`).
fn series_value(metrics: &str, quote: &str) -> Option<String> {
    let name = quote.split(['{', ' ']).next().unwrap_or(quote);
    let labels: Vec<&str> = quote
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(l, _)| l.split(',').collect())
        .unwrap_or_default();
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit_once(' ').map(|(_, v)| v.to_string()))
}

/// Every file under deploy/, read.
fn deploy_text() -> String {
    let mut text = String::new();
    for path in common::files_under(&root().join("deploy")) {
        text += &std::fs::read_to_string(&path).unwrap_or_default();
        text.push('\n');
    }
    text
}

/// Whether deploy/ sets `key` to `value`: an env entry (`name: K` then
/// `value: V`), a YAML key (`K: V`, `K: "V"`) or `K=V` as written.
fn deploy_sets(deploy: &str, key: &str, value: &str) -> bool {
    let lines: Vec<&str> = deploy.lines().map(str::trim).collect();
    let env = lines.windows(2).any(|w| {
        w[0].trim_start_matches("- ") == format!("name: {key}")
            && w[1].trim_matches('"') == format!("value: {value}")
    });
    env || [format!("{key}: {value}"), format!("{key}: \"{value}\"")]
        .iter()
        .any(|l| lines.contains(&l.as_str()))
}

/// The chart's values.yaml at dotted `path`.
fn chart_value(path: &str) -> Option<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(root().join("deploy/helm/mig-exporter/values.yaml")).unwrap();
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    path.split('.').try_fold(values, |v, key| v.get(key).cloned())
}

/// The scenarios QUOTES needs, each in its own thread and directory.
fn run_scenarios() -> BTreeMap<Scenario, Seen> {
    let needed: BTreeSet<Scenario> = QUOTES
        .iter()
        .filter_map(|(_, _, check)| match check {
            Printed(s) | Series(s, _) | Unready(s) => Some(*s),
            _ => None,
        })
        .collect();
    std::thread::scope(|scope| {
        let running: Vec<_> = needed
            .into_iter()
            .map(|s| {
                scope.spawn(move || {
                    let dir = tempfile::tempdir().unwrap();
                    (s, scenario(s, dir.path()))
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("a scenario"))
            .collect()
    })
}

/// Whether `check`'s driver gate holds for the profile `quote`: on its GPU
/// it is refused on R520 and offered on R525.
fn driver_gate(quote: &str) -> Result<(), String> {
    let gates: Vec<&(&str, Product)> = DRIVER_GATES
        .iter()
        .filter(|(profile, _)| *profile == quote)
        .collect();
    if gates.is_empty() {
        return Err("not in DRIVER_GATES".into());
    }
    for (profile, product) in gates {
        for (driver, offered) in [("520.61.05", false), ("525.60.13", true)] {
            let dir = tempfile::tempdir().unwrap();
            let out = check_on(dir.path(), *product, driver, profile, 1);
            let text = String::from_utf8_lossy(&out.stdout);
            let refused = text.contains(&format!("no profile '{profile}' on this GPU"));
            if refused == offered {
                return Err(format!("{profile} on {driver}: {text}"));
            }
        }
    }
    Ok(())
}

/// Whether `opening` is `quote` or its first words.
fn opens(opening: &str, quote: &str) -> bool {
    quote == opening || quote.starts_with(&format!("{opening} "))
}

#[test]
fn every_troubleshooting_quote_is_what_the_exporter_says() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let items = items(&readme);
    assert_eq!(
        items.keys().copied().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>(),
        "the troubleshooting items"
    );
    let in_readme: BTreeSet<(u32, String)> = items
        .iter()
        .flat_map(|(n, text)| quotes(text).into_iter().map(move |q| (*n, q)))
        .collect();
    // Each README quote is claimed by exactly one entry, each entry by one quote.
    let claims = |item: u32, quote: &str| -> Vec<usize> {
        (0..QUOTES.len())
            .filter(|&i| QUOTES[i].0 == item && opens(QUOTES[i].1, quote))
            .collect()
    };
    let mut checks: Vec<(u32, String, &Check)> = Vec::new();
    let mut unclaimed = Vec::new();
    for (item, quote) in &in_readme {
        match claims(*item, quote)[..] {
            [i] => checks.push((*item, quote.clone(), &QUOTES[i].2)),
            ref entries => unclaimed.push(format!("item {item}: `{quote}` ({} entries)", entries.len())),
        }
    }
    assert!(
        unclaimed.is_empty(),
        "troubleshooting quotes not claimed by exactly one entry of QUOTES in tests/troubleshooting.rs: {unclaimed:#?}"
    );
    let gone: Vec<_> = QUOTES
        .iter()
        .filter(|(n, opening, _)| {
            in_readme
                .iter()
                .filter(|(m, q)| m == n && q.starts_with(opening))
                .count()
                != 1
        })
        .map(|(n, opening, _)| format!("item {n}: {opening}"))
        .collect();
    assert!(
        gone.is_empty(),
        "QUOTES entries that open no quote of their item in the README: {gone:#?}"
    );

    let seen = run_scenarios();
    let help =
        String::from_utf8_lossy(&Command::new(EXPORTER).arg("--help").output().unwrap().stdout).into_owned();
    let deploy = deploy_text();
    let mut wrong = Vec::new();
    for (item, quote, check) in &checks {
        let quote = quote.as_str();
        let verdict = match check {
            Printed(s) => says(&seen[s].printed, quote)
                .then_some(())
                .ok_or_else(|| format!("{s:?} printed:\n{}", seen[s].printed)),
            Series(s, want) => {
                let stated = quote.split_once(' ').map(|(_, v)| v);
                let got = series_value(&seen[s].metrics, quote);
                if stated.is_some_and(|v| v != *want) {
                    Err(format!("the README says {stated:?}, QUOTES says {want}"))
                } else if got.as_deref() != Some(*want) {
                    Err(format!("{s:?}: got {got:?}, want {want}:\n{}", seen[s].metrics))
                } else {
                    Ok(())
                }
            }
            Unready(s) => (seen[s].readyz == Some(503) && quote == "/readyz")
                .then_some(())
                .ok_or_else(|| format!("{s:?}: /readyz answered {:?}", seen[s].readyz)),
            Help => says(&help, quote).then_some(()).ok_or_else(|| help.clone()),
            Flag => help
                .lines()
                .map(str::trim)
                .any(|l| l == quote || l.starts_with(&format!("{quote} ")))
                .then_some(())
                .ok_or_else(|| help.clone()),
            Subcommand => help
                .lines()
                .any(|l| l.starts_with(&format!("  {quote} ")))
                .then_some(())
                .ok_or_else(|| help.clone()),
            Deploy => {
                let found = match quote.split_once('=') {
                    Some((k, v)) => deploy_sets(&deploy, k, v),
                    None => deploy.contains(quote),
                };
                found.then_some(()).ok_or_else(|| "not in deploy/".to_string())
            }
            ChartKey => {
                let (path, setting) = quote.split_once('=').map_or((quote, None), |(p, v)| (p, Some(v)));
                let found = chart_value(path)
                    .is_some_and(|v| setting.is_none_or(|s| v.is_bool() && ["true", "false"].contains(&s)));
                found
                    .then_some(())
                    .ok_or_else(|| "not a key of the chart's values".to_string())
            }
            ChartSets(key) => {
                let got = chart_value(key);
                (got.as_ref().and_then(|v| v.as_str()) == Some(quote))
                    .then_some(())
                    .ok_or_else(|| format!("the chart's {key} is {got:?}"))
            }
            DriverGate => driver_gate(quote),
            // Nothing of ours to read it from: the entry must say why.
            NotOurs(why) => (!why.trim().is_empty())
                .then_some(())
                .ok_or_else(|| "NotOurs without a reason".to_string()),
        };
        if let Err(why) = verdict {
            wrong.push(format!("item {item}: `{quote}`: {why}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn the_items_and_their_quotes_are_read_from_the_section() {
    let text = "\n## Troubleshooting\n\n1. **A.** `x\n   y` and `z`.\n2. **B.** none\n\nMore: `w`.\n\n## Next\n`v`\n";
    let items = items(text);
    assert_eq!(items.len(), 2);
    assert_eq!(
        quotes(&items[&1]),
        BTreeSet::from(["x y".to_string(), "z".to_string()])
    );
    assert!(quotes(&items[&2]).is_empty());
}
