//! The soak: the exporter in NVML mode (fake-nvml, fake-dcgm, GPM, a fake
//! kubelet, a desired config) scraped every second by a real Prometheus for
//! `MIG_SOAK_SECONDS` (default 120) while faults come one after another at
//! random (`MIG_SOAK_SEED` replays a run):
//!
//! * **reconfigure**: a GPU instance destroyed and recreated without a
//!   compute instance (`gi_without_ci`), or the 2g.20gb destroyed
//!   (`profile_mismatch`), then restored with `mig-sim`;
//! * **reboot**: `mig-sim reboot`, which takes MIG mode and every instance off
//!   the Hopper GPUs (`mig_mode_lost`), then MIG and the layout recreated;
//! * **host engine restart**: fake-dcgm's host engine down for a few seconds;
//!
//! and pods take and release MIG devices on the kubelet every second. After
//! each fault the device plugin re-advertises the node's MIG devices. The
//! first round injects each kind of fault once, in random order: that is the
//! warm-up, after which every code path has run and memory is judged.
//!
//! Besides Prometheus, the soak scrapes the exporter itself twice a
//! second and judges each of those scrapes as it comes ([`Judge`]), failing
//! at once, with the scrape's time and the series, when: a series names a
//! GPU or compute instance that the World no longer has (as of the poll that
//! produced the scrape: see [`Judge::changed`] for the window a change
//! takes), or one its own scrape does not list; the scrape has more
//! `nvidia_*` series than the bound of the geometry it serves
//! ([`series_bound`]); a drift finding was first seen during a host engine
//! restart, which changes no geometry.
//!
//! At the end it fails, with a message saying what, unless: the log has no
//! panic; every scrape succeeded; no Prometheus scrape had more `nvidia_*`
//! series than the bound of the geometry it served; no series names an
//! instance that no longer exists; resident memory after the warm-up grew
//! less than [`MAX_GROWTH_KIB`] along its fitted line; every drift finding was raised
//! during a geometry fault (not a host engine restart) and cleared after it,
//! and each fault raised the finding it should; every source is up again.
//!
//! Not part of `cargo test` (it takes minutes): run it with `scripts/soak.sh`,
//! which `scripts/test.sh` does. `bench/soak.sh` runs it accelerated, on a
//! release build, through these knobs:
//!
//! * `MIG_SOAK_POLL_MS`: the exporter's poll interval (default 100 ms, the
//!   harness's);
//! * `MIG_SOAK_MAX_GROWTH_KIB`: the most resident memory may grow after the
//!   warm-up (default [`MAX_GROWTH_KIB`]);
//! * `MIG_SOAK_MIN_POLLS`: the fewest NVML polls the run must make (default 0),
//!   so that a run slowed by a busy machine does not pass for a long one;
//! * `MIG_SOAK_FAULTS`: the faults that come after the warm-up round, a comma
//!   list of `gi-without-ci`, `profile-mismatch`, `reboot`,
//!   `host-engine-restart` (default: all), or `none` for pod changes and
//!   scrapes only; with it, memory growth can be laid at one kind's door.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::daemon::{free_address, url_encode, Daemon};
use common::kubelet::{devices, pod, FakeKubelet};
use common::{built, edit_world, mig_sim, which, Exporter};
use mig_exporter::source::kubelet::proto::{AllocatableResourcesResponse, PodResources};
use mig_model::World;
use serde_json::Value as Json;

/// After the warm-up, resident memory may grow by at most this much along
/// its fitted line ([`slope`] of [`floors`]). The first run of a code path
/// (the first host engine restart: about 1.3 MiB in a debug build) is a
/// step, which the warm-up round takes. Over the 90 s a 2-minute soak
/// measures, that allows 170 KiB/min; a 30-minute soak holds the slope under
/// 9 KiB/min.
const MAX_GROWTH_KIB: f64 = 256.0;
/// Beyond 5 minutes the memory line printed at the end has one value a
/// minute instead of one every 10 s.
const LONG_RUN: u64 = 300;
/// Resident memory is sampled this often, and judged by its lowest value in
/// each [`FLOOR_WINDOW`]: what a leak keeps rises, while what a scrape or a
/// poll holds for a moment (a few hundred KiB in a debug build) does not
/// count as growth.
const MEMORY_SAMPLE: Duration = Duration::from_millis(100);
const FLOOR_WINDOW: f64 = 2.0;
/// Memory is judged only when it has at least this many seconds of samples.
const MIN_MEASURED: Duration = Duration::from_secs(30);
/// How long a fault holds, and how long the node is left alone after one.
const HOLD: Duration = Duration::from_secs(3);
const SETTLE: Duration = Duration::from_secs(3);
/// From a change of the node to the scrape that can show it: a poll and a scrape.
const LAG: f64 = 3.0;
/// How often the soak scrapes the exporter itself and judges the scrape.
const OWN_SCRAPE: Duration = Duration::from_millis(500);

const GPUS: u32 = 2;
/// Per GPU: 3g.40gb, 2g.20gb and two 1g.10gb, each with a compute instance.
const LAYOUT: &str = "9,14,19,19";
const CONFIG: &str = r#"version: v1
mig-configs:
  soak:
    - devices: all
      mig-enabled: true
      mig-devices:
        "3g.40gb": 1
        "2g.20gb": 1
        "1g.10gb": 2
"#;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ------------------------------------------------------------------ Prometheus

/// The real Prometheus, scraping the exporter every second.
struct Prometheus(Daemon);

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let program = which("prometheus")
            .expect("prometheus is not installed: scripts/test.sh installs the Debian package `prometheus`");
        let address = free_address();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: mig-exporter\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address={address}"),
        ];
        Prometheus(Daemon::start(
            "prometheus",
            &program,
            &args,
            address,
            Some("/-/ready"),
            dir.join("prometheus.log"),
        ))
    }

    fn query(&self, expr: &str) -> Vec<Json> {
        self.0.query(expr)
    }

    /// One scalar of an instant query; `None` when it has no result.
    fn scalar(&self, expr: &str) -> Option<f64> {
        self.query(expr)
            .first()
            .and_then(|r| r["value"][1].as_str()?.parse().ok())
    }

    /// (labels, [(time, value)]) of every series of a range query, step 1 s.
    fn range(&self, expr: &str, start: f64, end: f64) -> Vec<(Json, Vec<(f64, f64)>)> {
        self.0
            .api(&format!(
                "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1",
                url_encode(expr)
            ))
            .into_iter()
            .map(|r| {
                let points = r["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse().ok()?)))
                    .collect();
                (r["metric"].clone(), points)
            })
            .collect()
    }
}

// ------------------------------------------------------------------ the node

/// (GPU index, MIG UUID, GI profile name) of every MIG device in the World.
fn mig_devices(world: &Path) -> Vec<(u32, String, String)> {
    let w = World::load(world).expect("read the World");
    let mut out = Vec::new();
    for gpu in &w.gpus {
        for gi in &gpu.gpu_instances {
            let profile = gpu.gi_profile(gi).map(|p| p.name.to_string()).unwrap_or_default();
            for ci in &gi.compute_instances {
                out.push((gpu.index, ci.uuid.clone(), profile.clone()));
            }
        }
    }
    out
}

/// What the device plugin advertises (mixed strategy) for the World as it is now.
fn advertise(kubelet: &FakeKubelet, world: &Path) {
    let allocatable = AllocatableResourcesResponse {
        devices: mig_devices(world)
            .iter()
            .map(|(_, uuid, profile)| devices(&format!("nvidia.com/mig-{profile}"), &[uuid]))
            .collect(),
        ..Default::default()
    };
    kubelet.set(|a| a.allocatable = allocatable);
}

/// Pods come and go: each MIG device is held by a fresh pod with probability 1/2.
fn churn_pods(kubelet: &FakeKubelet, world: &Path, rng: &mut Rng, round: u64) {
    let pods: Vec<PodResources> = mig_devices(world)
        .iter()
        .filter(|_| rng.below(2) == 0)
        .enumerate()
        .map(|(n, (_, uuid, profile))| {
            pod(
                "soak",
                &format!("job-{round}-{n}"),
                "main",
                vec![devices(&format!("nvidia.com/mig-{profile}"), &[uuid])],
            )
        })
        .collect();
    kubelet.set(|a| a.pods.pod_resources = pods);
}

/// Recreates the desired layout on every GPU from whatever is there.
fn restore(world: &Path) {
    let w = World::load(world).unwrap();
    for gpu in &w.gpus {
        let i = gpu.index.to_string();
        if !gpu.mig.current {
            mig_sim(world, &["-i", &i, "-mig", "1"]);
        }
        if !gpu.gpu_instances.is_empty() {
            mig_sim(world, &["-i", &i, "mig", "-dci"]);
            mig_sim(world, &["-i", &i, "mig", "-dgi"]);
        }
        mig_sim(world, &["-i", &i, "mig", "-cgi", LAYOUT, "-C"]);
    }
}

/// The id of a GPU instance of `profile` on `gpu`.
fn gi_of(world: &Path, gpu: u32, profile: u32) -> String {
    let w = World::load(world).unwrap();
    let gpu = w.gpu(gpu).unwrap();
    let gi = gpu
        .gpu_instances
        .iter()
        .find(|g| g.profile_id == profile)
        .unwrap();
    gi.id.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    GiWithoutCi,
    ProfileMismatch,
    Reboot,
    HostEngineRestart,
}

const EVERY_KIND: [Kind; 4] = [
    Kind::GiWithoutCi,
    Kind::ProfileMismatch,
    Kind::Reboot,
    Kind::HostEngineRestart,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::GiWithoutCi => "gi-without-ci",
            Kind::ProfileMismatch => "profile-mismatch",
            Kind::Reboot => "reboot",
            Kind::HostEngineRestart => "host-engine-restart",
        }
    }
}

/// The kinds `MIG_SOAK_FAULTS` names (see the module documentation).
fn kinds_named(list: &str) -> Result<Vec<Kind>, String> {
    if list.trim() == "none" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|name| {
            EVERY_KIND
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    let known: Vec<&str> = EVERY_KIND.iter().map(|k| k.name()).collect();
                    format!(
                        "MIG_SOAK_FAULTS: no fault {name:?}; known: {}, or none",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

/// One fault: when it started and when the node was whole again (and
/// re-advertised), and the finding it must raise on which GPU.
#[derive(Debug)]
struct Episode {
    kind: Kind,
    start: f64,
    end: f64,
    expect: Option<(u32, &'static str)>,
}

/// Injects a fault of `kind` and returns the finding it must raise.
fn inject(world: &Path, kind: Kind, gpu: u32) -> Option<(u32, &'static str)> {
    let i = gpu.to_string();
    match kind {
        Kind::GiWithoutCi => {
            let gi = gi_of(world, gpu, 19);
            mig_sim(world, &["-i", &i, "mig", "-dci", "-gi", &gi]);
            mig_sim(world, &["-i", &i, "mig", "-dgi", "-gi", &gi]);
            mig_sim(world, &["-i", &i, "mig", "-cgi", "19"]);
            Some((gpu, "gi_without_ci"))
        }
        Kind::ProfileMismatch => {
            let gi = gi_of(world, gpu, 14);
            mig_sim(world, &["-i", &i, "mig", "-dci", "-gi", &gi]);
            mig_sim(world, &["-i", &i, "mig", "-dgi", "-gi", &gi]);
            Some((gpu, "profile_mismatch"))
        }
        Kind::Reboot => {
            mig_sim(world, &["reboot"]);
            Some((gpu, "mig_mode_lost"))
        }
        Kind::HostEngineRestart => {
            edit_world(world, |w| w.faults.dcgm_hostengine_down = true);
            None
        }
    }
}

fn heal(world: &Path, kind: Kind) {
    match kind {
        Kind::HostEngineRestart => edit_world(world, |w| w.faults.dcgm_hostengine_down = false),
        _ => restore(world),
    }
}

// ------------------------------------------------------------------ figures

/// Resident memory in KiB (proc(5), /proc/PID/status): all of it
/// (`VmRSS`), the anonymous part (`RssAnon`: heap, stacks, where a leak
/// shows) and the file-backed part (`RssFile`: pages of the binary and
/// libraries, mapped in as code first runs, so at most their size).
#[derive(Debug, Clone, Copy)]
struct Resident {
    total: f64,
    anon: f64,
    file: f64,
}

fn resident_kib(pid: u32) -> Option<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Resident {
        total: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}

/// How `points` (time, KiB) grew from `from` on: the line through their
/// [`floors`], and the first and last floor.
#[derive(Debug, Clone, Copy)]
struct Growth {
    minutes: f64,
    per_minute: f64,
    fitted: f64,
    first: f64,
    last: f64,
}

fn growth_after(points: &[(f64, f64)], from: f64) -> Growth {
    let after: Vec<(f64, f64)> = points.iter().filter(|(t, _)| *t >= from).copied().collect();
    let settled = floors(&after, FLOOR_WINDOW);
    let minutes = settled.last().map_or(0.0, |l| l.0 - settled[0].0) / 60.0;
    let per_minute = slope(&settled) * 60.0;
    Growth {
        minutes,
        per_minute,
        fitted: per_minute * minutes,
        first: settled.first().map_or(0.0, |f| f.1),
        last: settled.last().map_or(0.0, |f| f.1),
    }
}

/// The lowest of `points` (time, KiB) in each `window` seconds, at the
/// window's start.
fn floors(points: &[(f64, f64)], window: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let Some(&(start, _)) = points.first() else {
        return out;
    };
    for &(t, kib) in points {
        let at = start + ((t - start) / window).floor() * window;
        match out.last_mut() {
            Some(last) if last.0 == at => last.1 = last.1.min(kib),
            _ => out.push((at, kib)),
        }
    }
    out
}

/// Theil–Sen slope of `points` (x, y): the median of the slopes between
/// every two of them. A lone jump of the allocator barely moves it; a
/// steady growth is its slope.
fn slope(points: &[(f64, f64)]) -> f64 {
    let mut slopes: Vec<f64> = points
        .iter()
        .enumerate()
        .flat_map(|(i, a)| points[i + 1..].iter().map(move |b| (a, b)))
        .filter(|(a, b)| b.0 > a.0)
        .map(|(a, b)| (b.1 - a.1) / (b.0 - a.0))
        .collect();
    if slopes.is_empty() {
        return 0.0;
    }
    slopes.sort_by(f64::total_cmp);
    slopes[slopes.len() / 2]
}

/// Per GPU instance shown: info, slices, CIs, memory total/used/free, activity.
const PER_GI: usize = 6 + 8;
/// Per compute instance shown: info, activity but DRAM, and its owner.
const PER_CI: usize = 1 + 7 + 1;

/// The `nvidia_*` series the node's GPUs may have whatever their geometry:
/// every per-GPU family of the metric contract (docs/metrics.md), three per
/// GPU instance profile of the product (max, remaining, expected), two per
/// drift reason, and the owner of the whole GPU.
fn per_gpu_series(world: &World) -> usize {
    const PER_GPU: usize = 38; // info, memory, ECC (2 + 4), rows (2 + 2), power (2), ... activity (8)
    const REASONS: usize = 8;
    world
        .gpus
        .iter()
        .map(|gpu| {
            // Codes seen, and the alerted codes, there at 0 before any is seen.
            let xids: BTreeSet<u64> = gpu
                .telemetry
                .xid_events
                .iter()
                .chain(mig_exporter::model::ALERTED_XIDS)
                .copied()
                .collect();
            PER_GPU + xids.len() + 3 * gpu.spec().profiles.len() + 2 * REASONS + 1
        })
        .sum()
}

/// The most `nvidia_*` series a scrape that serves `gis` GPU instances and
/// `cis` compute instances may have: the geometry it serves, not the most
/// the products could hold.
fn series_bound(per_gpu: usize, gis: usize, cis: usize) -> usize {
    per_gpu + PER_GI * gis + PER_CI * cis
}

/// The value of label `name` in an exposition line.
fn label(line: &str, name: &str) -> Option<String> {
    line.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
}

/// The count of NVML polls in an exposition (failed ones included): the
/// snapshot a scrape serves is that poll's (poll.rs publishes both at once).
fn nvml_polls(exposition: &str) -> Option<u64> {
    exposition.lines().find_map(|l| {
        l.strip_prefix("mig_exporter_poll_duration_seconds_count{source=\"nvml\"} ")?
            .parse()
            .ok()
    })
}

/// GPU instances (GPU index, GI id) and MIG device UUIDs of a World.
fn instances(world: &World) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let mut gis = BTreeSet::new();
    let mut uuids = BTreeSet::new();
    for gpu in &world.gpus {
        for gi in &gpu.gpu_instances {
            gis.insert((gpu.index.to_string(), gi.id.to_string()));
            uuids.extend(gi.compute_instances.iter().map(|ci| ci.uuid.clone()));
        }
    }
    (gis, uuids)
}

/// Judges the soak's own scrapes of the exporter as they are taken.
struct Judge {
    start: f64,
    seed: u64,
    per_gpu: usize,
    /// The Worlds a scrape may show: the current one (`None`), and earlier
    /// ones with the last NVML poll count whose snapshot may still show them.
    worlds: Vec<(World, Option<u64>)>,
    /// When the host engine restart in progress began (Unix seconds).
    restart: Option<f64>,
    scrapes: u64,
    /// The scrape closest to its bound: (series, bound, seconds into the soak).
    closest: Option<(usize, usize, f64)>,
}

impl Judge {
    fn new(start: f64, seed: u64, world: World) -> Judge {
        Judge {
            start,
            seed,
            per_gpu: per_gpu_series(&world),
            worlds: vec![(world, None)],
            restart: None,
            scrapes: 0,
            closest: None,
        }
    }

    /// The soak finished a batch of edits (a fault, or its healing), leaving
    /// `world`; `polls` is the NVML poll count of a scrape taken after the
    /// last edit. Poll `polls + 1` may have been under way during the edits
    /// and have read the World before them or between two of them (every
    /// instance of which is in the World before or after); poll `polls + 2`
    /// began after that scrape, so it and every later one must show `world`
    /// alone.
    fn changed(&mut self, world: World, polls: u64) {
        for (_, until) in &mut self.worlds {
            until.get_or_insert(polls + 1);
        }
        self.worlds.push((world, None));
    }

    fn fail(&self, at: f64, poll: u64, what: String) -> ! {
        panic!(
            "soak failed (seed {}) at the scrape {at:.1} s into the soak (NVML poll {poll}): {what}",
            self.seed
        )
    }

    fn check(&mut self, text: &str) {
        let at = unix_now() - self.start;
        self.scrapes += 1;
        let Some(poll) = nvml_polls(text) else {
            self.fail(at, 0, "no NVML poll count in the scrape".into())
        };
        self.worlds.retain(|(_, until)| until.is_none_or(|u| u >= poll));
        let (mut gis, mut uuids) = (BTreeSet::new(), BTreeSet::new());
        for (world, _) in &self.worlds {
            let (g, u) = instances(world);
            gis.extend(g);
            uuids.extend(u);
        }
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("nvidia_")).collect();
        let listed = |family: &'static str| {
            let prefix = format!("{family}{{");
            lines.iter().filter(move |l| l.starts_with(&prefix))
        };
        let shown_gis: BTreeSet<(String, String)> = listed("nvidia_mig_gpu_instance_info")
            .filter_map(|l| Some((label(l, "gpu")?, label(l, "gi")?)))
            .collect();
        let shown_cis: BTreeSet<String> = listed("nvidia_mig_compute_instance_info")
            .filter_map(|l| label(l, "mig_uuid"))
            .collect();
        for line in &lines {
            if let (Some(gpu), Some(gi)) = (label(line, "gpu"), label(line, "gi").filter(|g| !g.is_empty())) {
                let gi = (gpu, gi);
                if !gis.contains(&gi) {
                    self.fail(
                        at,
                        poll,
                        format!("a series of a GPU instance that is gone: {line}"),
                    );
                }
                if !shown_gis.contains(&gi) {
                    self.fail(
                        at,
                        poll,
                        format!("a series of a GPU instance the scrape does not list: {line}"),
                    );
                }
            }
            if let Some(uuid) = label(line, "mig_uuid").filter(|u| u.starts_with("MIG-")) {
                if !uuids.contains(&uuid) {
                    self.fail(at, poll, format!("a series of a MIG device that is gone: {line}"));
                }
                if !shown_cis.contains(&uuid) {
                    self.fail(
                        at,
                        poll,
                        format!("a series of a MIG device the scrape does not list: {line}"),
                    );
                }
            }
            if let (Some(restart), Some(since)) = (
                self.restart,
                line.strip_prefix("nvidia_mig_drift_since_timestamp_seconds{")
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()),
            ) {
                if since >= restart {
                    self.fail(
                        at,
                        poll,
                        format!(
                            "a drift finding first seen {:.1} s into the soak, during the host engine \
                             restart begun at {:.1} s, which changes no geometry: {line}",
                            since - self.start,
                            restart - self.start
                        ),
                    );
                }
            }
        }
        let bound = series_bound(self.per_gpu, shown_gis.len(), shown_cis.len());
        if lines.len() > bound {
            self.fail(
                at,
                poll,
                format!(
                    "{} nvidia_* series, more than the bound {bound} of the {} GPU and {} compute \
                     instances it serves",
                    lines.len(),
                    shown_gis.len(),
                    shown_cis.len()
                ),
            );
        }
        if self.closest.is_none_or(|(n, b, _)| bound - lines.len() < b - n) {
            self.closest = Some((lines.len(), bound, at));
        }
    }
}

// ------------------------------------------------------------------ the soak

#[test]
fn soak() {
    let seconds: u64 = std::env::var("MIG_SOAK_SECONDS")
        .ok()
        .map(|s| s.parse().expect("MIG_SOAK_SECONDS: a number of seconds"))
        .unwrap_or(120);
    let seed: u64 = std::env::var("MIG_SOAK_SEED")
        .ok()
        .map(|s| s.parse().expect("MIG_SOAK_SEED: a number"))
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    let knob = |name: &str, what: &str| -> Option<u64> {
        let value = std::env::var(name).ok().filter(|v| !v.is_empty())?;
        Some(
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value:?}: {what}, a whole number")),
        )
    };
    let poll_ms = knob("MIG_SOAK_POLL_MS", "the poll interval in milliseconds");
    let max_growth_kib = knob("MIG_SOAK_MAX_GROWTH_KIB", "KiB").map_or(MAX_GROWTH_KIB, |k| k as f64);
    let min_polls = knob("MIG_SOAK_MIN_POLLS", "a count of polls").unwrap_or(0);
    let after_warm_up = match std::env::var("MIG_SOAK_FAULTS") {
        Ok(list) if !list.is_empty() => kinds_named(&list).unwrap_or_else(|e| panic!("{e}")),
        _ => EVERY_KIND.to_vec(),
    };
    assert!(
        poll_ms != Some(0),
        "MIG_SOAK_POLL_MS=0: the poll interval must be at least 1 ms"
    );
    let warm_up_round = EVERY_KIND.len() as u32 * (HOLD + SETTLE) + Duration::from_secs(10);
    assert!(
        seconds >= (warm_up_round + MIN_MEASURED).as_secs(),
        "MIG_SOAK_SECONDS={seconds}: at least {} s, since memory is judged for {} s after a \
         warm-up round of every fault",
        (warm_up_round + MIN_MEASURED).as_secs(),
        MIN_MEASURED.as_secs()
    );
    println!(
        "soak: {seconds} s, seed {seed} (MIG_SOAK_SEED={seed} replays it), poll every {} ms, \
         growth limit {max_growth_kib} KiB, at least {min_polls} polls, faults after the warm-up: {:?}",
        poll_ms.unwrap_or(100),
        after_warm_up
    );
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.json");
    mig_sim(
        &world,
        &[
            "init",
            "--gpus",
            &GPUS.to_string(),
            "--product",
            "h100-80gb",
            world.to_str().unwrap(),
        ],
    );
    restore(&world);
    for (gpu, gi) in [(0, "2"), (1, "2")] {
        mig_sim(
            &world,
            &[
                "load",
                "--gpu",
                &gpu.to_string(),
                "--gi",
                gi,
                "--sm-active",
                "0.6",
                "--dram-active",
                "0.3",
            ],
        );
    }
    let config = dir.path().join("mig-parted.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let kubelet = FakeKubelet::start(dir.path());
    advertise(&kubelet, &world);
    let (nvml, dcgm) = (built("libfake_nvml.so"), built("libfake_dcgm.so"));
    let poll_interval = poll_ms.map(|ms| format!("--poll.interval={ms}ms"));
    let exporter = Exporter::start_with_env(
        &[
            poll_interval.as_deref().unwrap_or("--poll.interval=100ms"),
            "--nvml",
            "--nvml.library",
            nvml.to_str().unwrap(),
            "--dcgm.library",
            dcgm.to_str().unwrap(),
            "--mig.config",
            config.to_str().unwrap(),
            "--kubelet.pod-resources-socket",
            kubelet.socket.to_str().unwrap(),
        ],
        &[("MIG_WORLD", &world)],
    );
    let pid = exporter.pid();
    let prometheus = Prometheus::start(dir.path(), &exporter.address);

    // Resident memory, every MEMORY_SAMPLE, from its own thread.
    let memory = Arc::new(Mutex::new(Vec::<(f64, Resident)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = Instant::now();
    let sampler = {
        let (memory, stop) = (memory.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(resident) = resident_kib(pid) {
                    memory
                        .lock()
                        .unwrap()
                        .push((sampling.elapsed().as_secs_f64(), resident));
                }
                std::thread::sleep(MEMORY_SAMPLE);
            }
        })
    };

    let start = unix_now();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // A quiet start: Prometheus scrapes the node as it should be first.
    let first_scrape = Instant::now();
    while prometheus.scalar("up{job=\"mig-exporter\"}") != Some(1.0) {
        assert!(
            first_scrape.elapsed() < Duration::from_secs(30),
            "prometheus never scraped the exporter"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(SETTLE);
    let mut judge = Judge::new(start, seed, World::load(&world).unwrap());
    let mut episodes = Vec::new();
    let mut round = 0;
    // Pods change every second; the exporter is scraped and judged twice as often.
    let mut wait = |until: Instant, rng: &mut Rng, judge: &mut Judge| {
        while Instant::now() < until {
            round += 1;
            churn_pods(&kubelet, &world, rng, round);
            let second = Instant::now() + Duration::from_secs(1);
            while Instant::now() < second.min(until) {
                judge.check(&exporter.metrics());
                std::thread::sleep(OWN_SCRAPE.min(until.saturating_duration_since(Instant::now())));
            }
        }
    };
    // After a batch of edits, the World as they left it and the poll count then.
    let changed = |judge: &mut Judge| {
        let polls = nvml_polls(&exporter.metrics()).expect("the NVML poll count");
        judge.changed(World::load(&world).unwrap(), polls);
    };
    let mut warm_up = EVERY_KIND.to_vec();
    let mut warm_up_end = None;
    let mut warm_up_polls = 0;
    while Instant::now() + HOLD + SETTLE < deadline {
        let kind = if warm_up.is_empty() {
            warm_up_end.get_or_insert_with(|| {
                warm_up_polls = nvml_polls(&exporter.metrics()).expect("the NVML poll count");
                sampling.elapsed().as_secs_f64()
            });
            if after_warm_up.is_empty() {
                wait(Instant::now() + HOLD + SETTLE, &mut rng, &mut judge);
                continue;
            }
            after_warm_up[rng.below(after_warm_up.len())]
        } else {
            warm_up.remove(rng.below(warm_up.len()))
        };
        let gpu = rng.below(GPUS as usize) as u32;
        let started = unix_now();
        judge.restart = (kind == Kind::HostEngineRestart).then_some(started);
        let expect = inject(&world, kind, gpu);
        changed(&mut judge);
        wait(Instant::now() + HOLD, &mut rng, &mut judge);
        heal(&world, kind);
        advertise(&kubelet, &world);
        changed(&mut judge);
        episodes.push(Episode {
            kind,
            start: started,
            end: unix_now(),
            expect,
        });
        wait(Instant::now() + SETTLE, &mut rng, &mut judge);
    }
    // Quiet: no more faults; DCGM's reconnection backoff may take a few seconds.
    let quiet = Instant::now();
    while prometheus.query("mig_exporter_source_up == 0").len() + prometheus.query("nvidia_mig_drift").len()
        > 0
        && quiet.elapsed() < Duration::from_secs(70)
    {
        judge.check(&exporter.metrics());
        std::thread::sleep(Duration::from_secs(1));
    }
    judge.check(&exporter.metrics());
    std::thread::sleep(Duration::from_secs(2));
    let end = unix_now();
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let polls = nvml_polls(&exporter.metrics()).expect("the NVML poll count");

    let mut failures = Vec::new();
    let mut fail = |what: String| failures.push(what);

    // The process and its log.
    let alive = resident_kib(pid).is_some();
    if !alive || exporter.get("/healthz", None).0 != 200 {
        fail("the exporter is no longer running".into());
    }
    let log = exporter.log();
    for bad in ["panicked", "poller task failed"] {
        if let Some(line) = log.iter().find(|l| l.contains(bad)) {
            fail(format!("the log says {bad:?}: {line}"));
        }
    }

    // Every scrape succeeded.
    let window = format!("{}s", (end - start).ceil() as u64 + 5);
    let scrapes = prometheus
        .scalar(&format!("count_over_time(up{{job=\"mig-exporter\"}}[{window}])"))
        .unwrap_or(0.0);
    let worst_up = prometheus
        .scalar(&format!("min_over_time(up{{job=\"mig-exporter\"}}[{window}])"))
        .unwrap_or(0.0);
    if worst_up != 1.0 {
        fail(format!("a scrape failed (min up over the soak: {worst_up})"));
    }

    // Series bounded by the geometry each Prometheus scrape served: the
    // counts at each step of a range query are those of one scrape.
    let final_world = World::load(&world).unwrap();
    let per_step = |expr: &str| -> BTreeMap<i64, f64> {
        prometheus
            .range(expr, start, end)
            .into_iter()
            .flat_map(|(_, points)| points)
            .map(|(t, v)| ((t * 1000.0) as i64, v))
            .collect()
    };
    let counts = per_step("count({__name__=~\"nvidia_.+\"})");
    let shown_gis = per_step("count(nvidia_mig_gpu_instance_info)");
    let shown_cis = per_step("count(nvidia_mig_compute_instance_info)");
    let per_gpu = per_gpu_series(&final_world);
    let mut most = (0.0, 0);
    for (t, &n) in &counts {
        let gis = shown_gis.get(t).copied().unwrap_or(0.0) as usize;
        let cis = shown_cis.get(t).copied().unwrap_or(0.0) as usize;
        let bound = series_bound(per_gpu, gis, cis);
        if n > most.0 {
            most = (n, bound);
        }
        if n > bound as f64 {
            fail(format!(
                "{n} nvidia_* series {:.0} s into the soak, more than the bound {bound} of the {gis} GPU \
                 and {cis} compute instances served then",
                *t as f64 / 1000.0 - start
            ));
        }
    }
    let (most, bound) = most;

    // No series of an instance that no longer exists.
    let text = exporter.metrics();
    let live: BTreeSet<String> = mig_devices(&world).into_iter().map(|(_, u, _)| u).collect();
    let gis: BTreeSet<(String, String)> = final_world
        .gpus
        .iter()
        .flat_map(|g| {
            g.gpu_instances
                .iter()
                .map(move |gi| (g.index.to_string(), gi.id.to_string()))
        })
        .collect();
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_string)
    };
    for line in text.lines().filter(|l| l.starts_with("nvidia_")) {
        if let Some(uuid) = label(line, "mig_uuid").filter(|u| u.starts_with("MIG-")) {
            if !live.contains(&uuid) {
                fail(format!(
                    "stale series of a MIG device that no longer exists: {line}"
                ));
            }
        }
        if let (Some(gpu), Some(gi)) = (label(line, "gpu"), label(line, "gi").filter(|g| !g.is_empty())) {
            if !gis.contains(&(gpu, gi)) {
                fail(format!(
                    "stale series of a GPU instance that no longer exists: {line}"
                ));
            }
        }
    }

    // Every source up again.
    for r in prometheus.query("mig_exporter_source_up") {
        if r["value"][1] != "1" {
            fail(format!(
                "source {} is still down at the end",
                r["metric"]["source"]
            ));
        }
    }

    // Drift: raised during geometry faults only (a host engine restart
    // changes no geometry), cleared after, each fault's finding seen.
    let covered = |t: f64| {
        episodes
            .iter()
            .filter(|e| e.kind != Kind::HostEngineRestart)
            .any(|e| t >= e.start && t <= e.end + LAG)
    };
    let restart_at = |t: f64| {
        episodes
            .iter()
            .find(|e| e.kind == Kind::HostEngineRestart && t >= e.start && t <= e.end + LAG)
            .map(|e| e.start - start)
    };
    let findings = prometheus.range("nvidia_mig_drift", start, end);
    let mut outside = BTreeMap::new();
    for (labels, points) in &findings {
        for (t, _) in points.iter().filter(|(t, _)| !covered(*t)) {
            outside
                .entry(format!("gpu {} {}", labels["gpu"], labels["reason"]))
                .or_insert((*t - start, restart_at(*t)));
        }
    }
    for (finding, (at, restart)) in outside {
        match restart {
            Some(restart) => fail(format!(
                "finding {finding} {at:.0} s into the soak, during the host engine restart begun at \
                 {restart:.0} s, which changes no geometry"
            )),
            None => fail(format!(
                "finding {finding} outside any geometry fault, {at:.0} s into the soak"
            )),
        }
    }
    for e in &episodes {
        let Some((gpu, reason)) = e.expect else { continue };
        let seen = findings.iter().any(|(labels, points)| {
            labels["gpu"] == gpu.to_string().as_str()
                && labels["reason"] == reason
                && points.iter().any(|(t, _)| *t >= e.start && *t <= e.end + LAG)
        });
        if !seen {
            fail(format!(
                "{:?} on GPU {gpu} at {:.0} s never raised {reason}",
                e.kind,
                e.start - start
            ));
        }
    }
    let left = prometheus.query("nvidia_mig_drift");
    if !left.is_empty() {
        fail(format!("findings not cleared at the end: {left:?}"));
    }
    let dcgm_up = prometheus.range("mig_exporter_source_up{source=\"dcgm\"}", start, end);
    for e in episodes.iter().filter(|e| e.kind == Kind::HostEngineRestart) {
        let down = dcgm_up
            .iter()
            .flat_map(|(_, p)| p)
            .any(|(t, v)| *v == 0.0 && *t >= e.start && *t <= e.end + LAG);
        if !down {
            fail(format!(
                "the host engine restart at {:.0} s never showed as DCGM down",
                e.start - start
            ));
        }
    }

    // Resident memory flat after the warm-up.
    let samples = memory.lock().unwrap().clone();
    let part =
        |of: fn(&Resident) -> f64| -> Vec<(f64, f64)> { samples.iter().map(|(t, r)| (*t, of(r))).collect() };
    let memory = part(|r| r.total);
    let warm_up_end = warm_up_end.unwrap_or(f64::INFINITY);
    let total = growth_after(&memory, warm_up_end);
    let (anon, file) = (
        growth_after(&part(|r| r.anon), warm_up_end),
        growth_after(&part(|r| r.file), warm_up_end),
    );
    let Growth {
        minutes: measured_minutes,
        per_minute,
        fitted: growth,
        first: after_warm_up,
        last: at_end,
    } = total;
    let measured_polls = polls.saturating_sub(warm_up_polls);
    let per_1000_polls = growth / (measured_polls.max(1) as f64 / 1000.0);
    if measured_minutes * 60.0 < MIN_MEASURED.as_secs_f64() {
        fail(format!(
            "only {:.0} s of memory samples after the warm-up round: run longer",
            measured_minutes * 60.0
        ));
    } else if growth > max_growth_kib {
        fail(format!(
            "resident memory grows {per_minute:.1} KiB/min after the warm-up, {growth:.0} KiB over \
             {measured_minutes:.1} min (at most {max_growth_kib} KiB)"
        ));
    }
    if polls < min_polls {
        fail(format!(
            "only {polls} NVML polls in {:.0} s (at least {min_polls}): the machine was too busy, \
             run longer",
            end - start
        ));
    }

    let mut kinds = BTreeMap::new();
    for e in &episodes {
        *kinds.entry(format!("{:?}", e.kind)).or_insert(0) += 1;
    }
    let (first, last) = (
        memory.first().map_or(0.0, |m| m.1),
        memory.last().map_or(0.0, |m| m.1),
    );
    let raised: usize = findings.len();
    let every = if seconds > LONG_RUN { 60.0 } else { 10.0 };
    let lowest: Vec<String> = floors(&memory, every)
        .iter()
        .map(|(_, kib)| format!("{kib:.0}"))
        .collect();
    println!(
        "soak resident memory (KiB), lowest in each {every:.0} s: {}",
        lowest.join(" ")
    );
    println!(
        "soak figures: {:.0} s, {} faults {kinds:?}, {scrapes} scrapes (min up {worst_up}), \
         nvidia_* series at most {most} (bound {bound} then), {} own scrapes judged (closest to \
         its bound: {:?} as (series, bound, s)), {raised} drift series raised, \
         resident {first:.0} KiB at start, {last:.0} KiB at the end, {per_minute:+.1} KiB/min \
         ({growth:+.0} KiB fitted over {measured_minutes:.1} min) after {warm_up_end:.0} s of warm-up",
        end - start,
        episodes.len(),
        judge.scrapes,
        judge.closest,
    );
    let verdict = if growth <= max_growth_kib {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "soak memory: {polls} NVML polls ({measured_polls} after the warm-up), {} faults {kinds:?}; \
         resident {after_warm_up:.0} KiB after the warm-up, {at_end:.0} KiB at the end \
         ({:+.0} KiB unfitted); growth {growth:+.0} KiB fitted over {measured_minutes:.1} min = \
         {per_minute:+.1} KiB/min = {per_1000_polls:+.2} KiB per 1000 polls (anonymous {:.0} → \
         {:.0} KiB, {:+.0} fitted; file-backed {:.0} → {:.0} KiB, {:+.0} fitted); \
         limit {max_growth_kib} KiB: {verdict}",
        episodes.len(),
        at_end - after_warm_up,
        anon.first,
        anon.last,
        anon.fitted,
        file.first,
        file.last,
        file.fitted,
    );
    assert!(
        failures.is_empty(),
        "soak failed (seed {seed}):\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn the_faults_knob_names_kinds_or_none() {
    assert_eq!(
        kinds_named("reboot, host-engine-restart"),
        Ok(vec![Kind::Reboot, Kind::HostEngineRestart])
    );
    assert_eq!(kinds_named("none"), Ok(vec![]));
    let unknown = kinds_named("reboot,meteor").unwrap_err();
    assert!(
        unknown.contains("\"meteor\"") && unknown.contains("gi-without-ci"),
        "{unknown}"
    );
}

#[test]
fn memory_is_judged_by_the_floor_of_each_window() {
    // A flat floor with a transient peak in every window: no growth.
    let flat: Vec<(f64, f64)> = (0..100)
        .map(|i| (i as f64 * 0.1, if i % 20 == 5 { 9_000.0 } else { 8_000.0 }))
        .collect();
    let windows = floors(&flat, 2.0);
    assert_eq!(windows.len(), 5);
    assert!(windows.iter().all(|&(_, kib)| kib == 8_000.0), "{windows:?}");
    assert_eq!(slope(&windows), 0.0);
    // A floor that rises by 10 KiB a second is growth, whatever rides on it.
    let leak: Vec<(f64, f64)> = (0..100)
        .map(|i| {
            let t = i as f64 * 0.1;
            (t, 8_000.0 + 10.0 * t + if i % 7 == 0 { 500.0 } else { 0.0 })
        })
        .collect();
    let per_second = slope(&floors(&leak, 2.0));
    assert!((per_second - 10.0).abs() < 0.5, "{per_second}");
}
