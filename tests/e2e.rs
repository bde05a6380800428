//! End to end: the real `mig-exporter` and `mig-sim` binaries on a World file,
//! scraped over HTTP, checked with Prometheus's `promtool` and rendered in
//! headless Chromium. The test command (`scripts/test.sh`) installs both.

#[path = "e2e/browser.rs"]
mod browser;
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{mig_sim, series, value, wait_for, which, Exporter, EXPORTER};

fn world_with_two_3g(dir: &Path) -> PathBuf {
    let world = dir.join("world.json");
    mig_sim(
        &world,
        &[
            "init",
            "--gpus",
            "2",
            "--product",
            "h100-80gb",
            world.to_str().unwrap(),
        ],
    );
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["-i", "0", "mig", "-cgi", "9,9", "-C"]);
    world
}

const GI_FAMILIES: [&str; 6] = [
    "nvidia_mig_gpu_instance_info",
    "nvidia_mig_gpu_instance_compute_slices",
    "nvidia_mig_gpu_instance_compute_instances",
    "nvidia_mig_gpu_instance_memory_total_bytes",
    "nvidia_mig_gpu_instance_memory_used_bytes",
    "nvidia_mig_gpu_instance_dram_active_ratio",
];
const CI_FAMILIES: [&str; 4] = [
    "nvidia_mig_compute_instance_info",
    "nvidia_mig_compute_instance_sm_active_ratio",
    "nvidia_mig_compute_instance_sm_occupancy_ratio",
    "nvidia_mig_compute_instance_tensor_active_ratio",
];

/// The series one GI (and its CIs) contributes, found by their labels.
fn series_of_gi(all: &BTreeSet<String>, gi: u32) -> BTreeSet<String> {
    let tag = "gpu=\"0\",";
    let gi_tag = format!(",gi=\"{gi}\"");
    all.iter()
        .filter(|s| s.contains(tag) && s.contains(&gi_tag))
        .cloned()
        .collect()
}

fn families(keys: &BTreeSet<String>) -> Vec<String> {
    keys.iter()
        .map(|k| k.split('{').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn reconfiguring_with_mig_sim_adds_and_removes_exactly_the_affected_series() {
    let dir = tempfile::tempdir().unwrap();
    let world = world_with_two_3g(dir.path());
    let exporter = Exporter::start(&["--world", world.to_str().unwrap()]);

    let before_text = exporter.metrics();
    let before = series(&before_text);
    // The first 3g.40gb lands at 4:4 (GI 2), the second at 0:4 (GI 1).
    let gi1 = series_of_gi(&before, 1);
    assert_eq!(gi1.len(), GI_FAMILIES.len() + CI_FAMILIES.len(), "{gi1:#?}");
    assert!(gi1
        .iter()
        .any(|k| k.starts_with("nvidia_mig_gpu_instance_info{") && k.contains("placement_start=\"0\"")));

    // Replace GI 1 (0:4) with two 1g.10gb: the driver puts them at 0:1 (GI 7) and 1:1 (GI 8),
    // keeping 2:2 free for a 2g.
    mig_sim(&world, &["-i", "0", "mig", "-dci", "-gi", "1"]);
    mig_sim(&world, &["-i", "0", "mig", "-dgi", "-gi", "1"]);
    mig_sim(&world, &["-i", "0", "mig", "-cgi", "19,19", "-C"]);

    let mut after_text = String::new();
    wait_for(
        || {
            after_text = exporter.metrics();
            !series_of_gi(&series(&after_text), 8).is_empty()
        },
        "the new GPU instances in /metrics",
    );
    let after = series(&after_text);

    let vanished: BTreeSet<String> = before.difference(&after).cloned().collect();
    let appeared: BTreeSet<String> = after.difference(&before).cloned().collect();
    assert_eq!(vanished, gi1, "exactly GI 1 and its CI vanished");
    let mut expected_appeared = series_of_gi(&after, 7);
    expected_appeared.extend(series_of_gi(&after, 8));
    assert_eq!(
        appeared, expected_appeared,
        "exactly GIs 7 and 8 and their CIs appeared"
    );
    let mut fams = families(&appeared);
    fams.sort();
    fams.dedup();
    let mut expected_fams: Vec<String> = GI_FAMILIES
        .iter()
        .chain(&CI_FAMILIES)
        .map(|s| s.to_string())
        .collect();
    expected_fams.sort();
    assert_eq!(fams, expected_fams);
    assert_eq!(appeared.len(), 2 * (GI_FAMILIES.len() + CI_FAMILIES.len()));

    // Placement labels are the driver's.
    assert!(appeared
        .iter()
        .any(|k| k.starts_with("nvidia_mig_gpu_instance_info{")
            && k.contains(
                "gi=\"8\",profile=\"1g.10gb\",profile_id=\"19\",placement_start=\"1\",placement_size=\"1\""
            )));
    // Capacity follows: 5 of 7 SM slices used on GPU 0 now (3g + 1g + 1g).
    let used = |text: &str| {
        let key = text
            .lines()
            .find(|l| l.starts_with("nvidia_mig_compute_slices_used{gpu=\"0\""))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.to_string());
        key.unwrap_or_default()
    };
    assert_eq!(used(&before_text), "6");
    assert_eq!(used(&after_text), "5");
}

#[test]
fn load_set_with_mig_sim_shows_on_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let world = world_with_two_3g(dir.path());
    let exporter = Exporter::start(&["--world", world.to_str().unwrap()]);
    mig_sim(
        &world,
        &[
            "load",
            "--gpu",
            "0",
            "--gi",
            "2",
            "--sm-active",
            "0.75",
            "--dram-active",
            "0.5",
        ],
    );
    wait_for(
        || {
            let text = exporter.metrics();
            text.lines().any(|l| {
                l.starts_with("nvidia_mig_compute_instance_sm_active_ratio{gpu=\"0\"")
                    && l.contains("gi=\"2\"")
                    && l.ends_with(" 0.75")
            }) && text.lines().any(|l| {
                l.starts_with("nvidia_mig_gpu_instance_dram_active_ratio{gpu=\"0\"")
                    && l.contains("gi=\"2\"")
                    && l.ends_with(" 0.5")
            })
        },
        "the load in /metrics",
    );
}

#[test]
fn a_broken_world_file_drops_every_series_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let world = world_with_two_3g(dir.path());
    let good = std::fs::read(&world).unwrap();
    let exporter = Exporter::start(&["--world", world.to_str().unwrap()]);
    assert!(!series(&exporter.metrics()).is_empty());

    std::fs::write(&world, b"{ not json").unwrap();
    wait_for(
        || value(&exporter.metrics(), "mig_exporter_source_up{source=\"sim\"}").as_deref() == Some("0"),
        "source_up 0",
    );
    let broken = exporter.metrics();
    assert!(
        series(&broken).is_empty(),
        "no stale geometry while the source is down"
    );
    let errors: f64 = value(&broken, "mig_exporter_poll_errors_total{source=\"sim\"}")
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 1.0);
    let (_, page) = exporter.get("/", None);
    assert!(
        page.contains("sim down") && page.contains("world.json"),
        "landing page says why"
    );

    std::fs::write(&world, good).unwrap();
    wait_for(
        || value(&exporter.metrics(), "mig_exporter_source_up{source=\"sim\"}").as_deref() == Some("1"),
        "source_up back to 1",
    );
    assert!(!series(&exporter.metrics()).is_empty());
}

#[test]
fn endpoints_and_content_negotiation() {
    let exporter = Exporter::start(&["--simulate", "h100-mixed"]);
    assert_eq!(exporter.get("/healthz", None).0, 200);
    assert_eq!(exporter.get("/readyz", None).0, 200);
    assert_eq!(exporter.get("/nope", None).0, 404);
    let (status, om) = exporter.get(
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(status, 200);
    assert!(om.trim_end().ends_with("# EOF"), "OpenMetrics ends with EOF");
    let text = exporter.metrics();
    assert!(!text.contains("# EOF"));
    assert_eq!(series(&om), series(&text), "same series in both formats");
}

fn promtool() -> PathBuf {
    which("promtool").expect("promtool not found: scripts/test.sh installs it (Debian package prometheus)")
}

/// `promtool check metrics` on `text`, which must pass (`what` names it).
fn promtool_check_metrics(text: &str, what: &str) {
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed for {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_every_scenarios_exposition() {
    for scenario in [
        "h100-mixed",
        "a100-single",
        "h100-rebooted",
        "gi-without-ci",
        "a100-pending",
    ] {
        let exporter = Exporter::start(&["--simulate", scenario]);
        promtool_check_metrics(&exporter.metrics(), scenario);
    }
}

/// An A100 node (fake-nvml) without DCGM: GPM cannot exist on Ampere and
/// DCGM is not installed, and neither is a failure.
#[test]
fn on_an_ampere_node_without_dcgm_gpm_is_unsupported_and_dcgm_disabled_not_down() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.json");
    let w = world.to_str().unwrap();
    mig_sim(&world, &["init", "--gpus", "1", "--product", "a100-sxm4-40gb", w]);
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", "9", "-C"]);
    let nvml = common::built("libfake_nvml.so");
    let missing = dir.path().join("libdcgm.so.4");
    let exporter = Exporter::start_with_env(
        &[
            "--nvml",
            "--nvml.library",
            nvml.to_str().unwrap(),
            "--dcgm.library",
            missing.to_str().unwrap(),
        ],
        &[("MIG_WORLD", world.as_path())],
    );
    let info = |source: &str, state: &str| {
        format!("mig_exporter_source_info{{source=\"{source}\",state=\"{state}\"}}")
    };
    wait_for(
        || value(&exporter.metrics(), &info("gpm", "unsupported")).as_deref() == Some("1"),
        "GPM unsupported",
    );
    let text = exporter.metrics();
    assert_eq!(
        value(&text, &info("nvml", "enabled")).as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        value(&text, &info("dcgm", "disabled")).as_deref(),
        Some("1"),
        "{text}"
    );
    let up: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("mig_exporter_source_up{"))
        .collect();
    assert_eq!(up, ["mig_exporter_source_up{source=\"nvml\"} 1"], "{text}");
    for source in ["dcgm", "gpm"] {
        assert_eq!(
            value(
                &text,
                &format!("mig_exporter_poll_errors_total{{source=\"{source}\"}}")
            )
            .as_deref(),
            Some("0"),
            "a source that does not apply fails no poll"
        );
    }
    promtool_check_metrics(&text, "an Ampere node without DCGM");
    let (_, page) = exporter.get("/", None);
    assert!(
        page.contains("dcgm disabled: DCGM: cannot load")
            && page.contains("gpm unsupported: GPM: NVML GPM is not supported")
            && !page.contains("class=\"down\""),
        "{page}"
    );
}

/// The viewport the landing page is checked at: a laptop screen, and its
/// first screenful ("above the fold").
const VIEWPORT: (u32, u32) = (1280, 720);

/// Memory slices of an H100 80GB: the MIG User Guide's H100 profile table
/// places instances on 8 memory slices (7g.80gb spans 0:8, 1g.10gb starts at
/// 0..6), and `placement.size` in a World counts them.
const H100_MEMORY_SLICES: f64 = 8.0;

/// What the test reads off the laid-out page, in CSS pixels.
const MEASURE: &str = r#"
const box = e => { const r = e.getBoundingClientRect();
  return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height}; };
const shown = e => { const s = getComputedStyle(e);
  return s.display !== 'none' && s.visibility === 'visible' && parseFloat(s.opacity) > 0; };
const root = document.documentElement;
return {
  viewport: {width: innerWidth, height: innerHeight},
  scroll_width: root.scrollWidth,
  client_width: root.clientWidth,
  dom: root.outerHTML,
  alerts: [...document.querySelectorAll('[role=alert]')].map(e => {
    const b = box(e);
    const hit = document.elementFromPoint((b.left + b.right) / 2, (b.top + b.bottom) / 2);
    return {box: b, text: e.innerText, shown: shown(e), on_top: hit !== null && e.contains(hit),
      links: [...e.querySelectorAll('a')].map(a => a.getAttribute('href'))};
  }),
  gpus: [...document.querySelectorAll('section[data-gpu]')].map(s => {
    const bar = s.querySelector('.slots');
    return {gpu: +s.dataset.gpu, id: s.id, box: box(s),
      bar: bar && {box: box(bar), gap: parseFloat(getComputedStyle(bar).columnGap) || 0},
      gis: [...s.querySelectorAll('[data-gi]')].map(g => ({gi: +g.dataset.gi, box: box(g), shown: shown(g),
        content_width: g.scrollWidth, inner_width: g.clientWidth})),
      drift: [...s.querySelectorAll('[data-reason]')].map(d => ({reason: d.dataset.reason, box: box(d), shown: shown(d)}))};
  }),
};
"#;

/// The landing page of `exporter`, laid out by headless Chromium at
/// [`VIEWPORT`] and measured with [`MEASURE`].
fn measure_landing_page(exporter: &Exporter, dir: &Path) -> serde_json::Value {
    let chromium = which("chromium")
        .or_else(|| which("chromium-browser"))
        .expect("chromium not found: scripts/test.sh installs it (Debian package chromium)");
    let mut browser = browser::Browser::start(&chromium, dir);
    let url = format!("http://{}/", exporter.address);
    browser.open(&url, VIEWPORT.0, VIEWPORT.1);
    let page = browser.measure(&url, MEASURE);
    assert_eq!(
        (
            page["viewport"]["width"].as_u64(),
            page["viewport"]["height"].as_u64()
        ),
        (Some(VIEWPORT.0.into()), Some(VIEWPORT.1.into())),
        "the viewport asked for"
    );
    page
}

fn px(v: &serde_json::Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("a number of pixels, not {v}"))
}

/// Every GPU instance of `world` is drawn in its GPU's slice bar as wide as
/// its memory slices, where they are: with `n` slices in a bar of width `w`
/// and gutter `g`, an instance of `size` slices at `start` begins
/// `start·(w+g)/n` from the bar's left and is `size·(w+g)/n − g` wide.
fn assert_instances_drawn_to_scale(page: &serde_json::Value, world: &serde_json::Value) -> usize {
    let mut checked = 0;
    for gpu in world["gpus"].as_array().unwrap() {
        let index = gpu["index"].as_u64().unwrap();
        let drawn = page["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["gpu"].as_u64() == Some(index))
            .unwrap_or_else(|| panic!("GPU {index} has no section"));
        let gis = gpu["gpu_instances"].as_array().unwrap();
        if gis.is_empty() {
            continue;
        }
        let bar = &drawn["bar"];
        assert!(bar.is_object(), "GPU {index} has GPU instances but no slice bar");
        let (left, width, gap) = (px(&bar["box"]["left"]), px(&bar["box"]["width"]), px(&bar["gap"]));
        let slice = (width + gap) / H100_MEMORY_SLICES;
        assert!(slice > 20.0, "GPU {index}: a slice is {slice:.1} px wide");
        assert_eq!(
            drawn["gis"].as_array().unwrap().len(),
            gis.len(),
            "GPU {index}: one box per GPU instance"
        );
        for gi in gis {
            let id = gi["id"].as_u64().unwrap();
            let start = gi["placement"]["start"].as_f64().unwrap();
            let size = gi["placement"]["size"].as_f64().unwrap();
            let b = drawn["gis"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["gi"].as_u64() == Some(id))
                .unwrap_or_else(|| panic!("GPU {index}: GI {id} not drawn"));
            let (want_left, want_width) = (left + start * slice, size * slice - gap);
            let (got_left, got_width) = (px(&b["box"]["left"]), px(&b["box"]["width"]));
            assert!(
                b["shown"] == true
                    && (got_left - want_left).abs() <= 1.0
                    && (got_width - want_width).abs() <= 1.0,
                "GPU {index} GI {id} at {start}:{size} of {H100_MEMORY_SLICES} slices: drawn at \
                 x={got_left:.1} w={got_width:.1}, expected x={want_left:.1} w={want_width:.1} \
                 (bar x={left:.1} w={width:.1}, gap {gap}); {b}"
            );
            // The box clips what overflows it: nothing may be cut off sideways.
            assert!(
                px(&b["content_width"]) <= px(&b["inner_width"]),
                "GPU {index} GI {id}: content {} px wide in a box of {} px, cut off; {b}",
                b["content_width"],
                b["inner_width"]
            );
            checked += 1;
        }
    }
    checked
}

/// Nothing is wider than the window: no horizontal scroll bar.
fn assert_no_horizontal_scroll(page: &serde_json::Value) {
    let (scroll, client) = (px(&page["scroll_width"]), px(&page["client_width"]));
    assert!(
        scroll <= client && client <= f64::from(VIEWPORT.0),
        "the page scrolls sideways at {} px: {scroll} px of content in {client} px",
        VIEWPORT.0
    );
    for gpu in page["gpus"].as_array().unwrap() {
        let right = px(&gpu["box"]["right"]);
        assert!(
            right <= client,
            "GPU {} ends at x={right}, past {client}",
            gpu["gpu"]
        );
    }
}

#[test]
fn landing_page_in_chromium_draws_the_worlds_gis_to_scale() {
    let dir = tempfile::tempdir().unwrap();
    let world = world_with_two_3g(dir.path());
    mig_sim(&world, &["-i", "1", "mig", "-cgi", "19,14,5", "-C"]);
    let exporter = Exporter::start(&["--world", world.to_str().unwrap()]);
    let page = measure_landing_page(&exporter, dir.path());
    let dom = page["dom"].as_str().unwrap();

    let world: serde_json::Value = serde_json::from_slice(&std::fs::read(&world).unwrap()).unwrap();
    let mut drawn = 0;
    for gpu in world["gpus"].as_array().unwrap() {
        let section = dom
            .split(&format!("data-gpu=\"{}\"", gpu["index"]))
            .nth(1)
            .expect("a section per GPU")
            .split("data-gpu=")
            .next()
            .unwrap()
            .to_string();
        for gi in gpu["gpu_instances"].as_array().unwrap() {
            let placement = format!("{}:{}", gi["placement"]["start"], gi["placement"]["size"]);
            let tag = format!("data-gi=\"{}\"", gi["id"]);
            let block = section
                .split(&tag)
                .nth(1)
                .unwrap_or_else(|| panic!("GI {} not drawn", gi["id"]));
            assert!(
                block.contains(&format!("data-placement=\"{placement}\"")),
                "GI {} at {placement}",
                gi["id"]
            );
            for ci in gi["compute_instances"].as_array().unwrap() {
                assert!(
                    section.contains(ci["uuid"].as_str().unwrap()),
                    "CI {} shown",
                    ci["uuid"]
                );
            }
            drawn += 1;
        }
    }
    assert_eq!(drawn, 5, "2 GIs on GPU 0 and 3 on GPU 1");
    // Sizes 1, 2 and 4 (1g.10gb, 2g.20gb, 3g.40gb and 4g.40gb), each as wide as its slices.
    assert_eq!(assert_instances_drawn_to_scale(&page, &world), 5);
    assert_no_horizontal_scroll(&page);
}

/// mig-parted config: seven 1g.10gb on every GPU but GPU 5, which should
/// hold four 1g.20gb.
const SEVEN_1G_BUT_GPU5: &str = r#"version: v1
mig-configs:
  seven-but-gpu5:
    - devices: [0, 1, 2, 3, 4, 6, 7]
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
    - devices: [5]
      mig-enabled: true
      mig-devices:
        "1g.20gb": 4
"#;

#[test]
fn landing_page_at_1280px_fits_8_gpus_of_7_instances_and_shows_drift_above_the_fold() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.json");
    mig_sim(
        &world,
        &[
            "init",
            "--gpus",
            "8",
            "--product",
            "h100-80gb",
            world.to_str().unwrap(),
        ],
    );
    mig_sim(&world, &["-mig", "1"]);
    mig_sim(&world, &["mig", "-cgi", &["19"; 7].join(","), "-C"]);
    let config = dir.path().join("mig-parted.yaml");
    std::fs::write(&config, SEVEN_1G_BUT_GPU5).unwrap();
    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--mig.config",
        config.to_str().unwrap(),
        "--mig.config-name",
        "seven-but-gpu5",
        "--state.file",
        dir.path().join("state.json").to_str().unwrap(),
    ]);
    // The reasons the exporter finds on GPU 5, and on no other GPU.
    let drift = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("nvidia_mig_drift{"))
            .filter_map(|l| {
                let label = |name: &str| {
                    l.split(&format!("{name}=\""))
                        .nth(1)?
                        .split('"')
                        .next()
                        .map(str::to_string)
                };
                Some((label("gpu")?, label("reason")?))
            })
            .collect()
    };
    let mut findings = Vec::new();
    wait_for(
        || {
            findings = drift(&exporter.metrics());
            !findings.is_empty()
        },
        "a drift finding",
    );
    assert!(findings.iter().all(|(gpu, _)| gpu == "5"), "{findings:?}");

    let page = measure_landing_page(&exporter, dir.path());
    let world: serde_json::Value = serde_json::from_slice(&std::fs::read(&world).unwrap()).unwrap();
    assert_eq!(
        assert_instances_drawn_to_scale(&page, &world),
        56,
        "8 GPUs of 7 instances"
    );
    assert_no_horizontal_scroll(&page);

    // A banner in the first screenful, drawn on top, names GPU 5, its
    // reasons, links to its section, and names no other GPU.
    let banners: Vec<&serde_json::Value> = page["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["text"].as_str().unwrap().to_lowercase().contains("drift"))
        .collect();
    assert_eq!(banners.len(), 1, "one drift banner: {:#?}", page["alerts"]);
    let banner = banners[0];
    let text = banner["text"].as_str().unwrap();
    let (top, bottom) = (px(&banner["box"]["top"]), px(&banner["box"]["bottom"]));
    assert!(
        banner["shown"] == true
            && banner["on_top"] == true
            && top >= 0.0
            && bottom <= f64::from(VIEWPORT.1)
            && bottom > top,
        "the drift banner is not seen in the first {} px: {banner}",
        VIEWPORT.1
    );
    assert!(text.contains("GPU 5"), "{text}");
    for (_, reason) in &findings {
        assert!(text.contains(reason.as_str()), "{reason} in {text}");
    }
    for other in (0..8).filter(|&g| g != 5) {
        assert!(!text.contains(&format!("GPU {other}")), "{text}");
    }
    let links = banner["links"].as_array().unwrap();
    let gpu5 = page["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gpu"] == 5)
        .expect("GPU 5's section");
    assert_eq!(
        links,
        &[serde_json::json!(format!("#{}", gpu5["id"].as_str().unwrap()))],
        "the banner links to GPU 5's section"
    );

    // GPU 5's section carries its own findings, inside its box; no other does.
    for gpu in page["gpus"].as_array().unwrap() {
        let own = gpu["drift"].as_array().unwrap();
        if gpu["gpu"] != 5 {
            assert!(own.is_empty(), "GPU {} shows drift: {own:?}", gpu["gpu"]);
            continue;
        }
        assert_eq!(own.len(), findings.len(), "{own:?}");
        for finding in own {
            let (b, s) = (&finding["box"], &gpu["box"]);
            assert!(
                finding["shown"] == true
                    && px(&b["top"]) >= px(&s["top"])
                    && px(&b["bottom"]) <= px(&s["bottom"])
                    && px(&b["width"]) > 0.0,
                "GPU 5's finding is drawn in its section: {finding} in {s}"
            );
        }
    }
}

#[test]
fn bad_input_exits_non_zero_and_names_the_problem() {
    let out = Command::new(EXPORTER)
        .args(["--simulate", "h100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown scenario 'h100'") && err.contains("h100-mixed"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("broken.json");
    std::fs::write(&world, b"{\"format\": 1,").unwrap();
    for args in [
        vec!["--world", world.to_str().unwrap()],
        vec!["geometry", "--world", world.to_str().unwrap()],
    ] {
        let out = Command::new(EXPORTER).args(&args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("broken.json") && err.contains("line 1"), "{err}");
    }
    assert_eq!(
        std::fs::read(&world).unwrap(),
        b"{\"format\": 1,",
        "input left untouched"
    );

    let out = Command::new(EXPORTER)
        .args(["--world", "/nonexistent/world.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/world.json"));
}

#[test]
fn geometry_json_matches_the_world() {
    let dir = tempfile::tempdir().unwrap();
    let world = world_with_two_3g(dir.path());
    let out = Command::new(EXPORTER)
        .args(["geometry", "--output", "json", "--world", world.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let w: serde_json::Value = serde_json::from_slice(&std::fs::read(&world).unwrap()).unwrap();
    let gis = |gpu: &serde_json::Value, key: &str| -> Vec<(u64, u64)> {
        gpu["gpu_instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|gi| (gi["id"].as_u64().unwrap(), gi[key].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(gis(&v["gpus"][0], "profile_id"), gis(&w["gpus"][0], "profile_id"));
    assert_eq!(v["gpus"][1]["mig_current"], true);
    assert_eq!(
        v["gpus"][0]["gpu_instances"][0]["compute_instances"][0]["mig_uuid"],
        w["gpus"][0]["gpu_instances"][0]["compute_instances"][0]["uuid"]
    );
}

#[test]
fn a_missing_nvml_library_keeps_the_exporter_serving_and_says_why() {
    let exporter = Exporter::start(&["--nvml", "--nvml.library", "/nonexistent/libnvidia-ml.so.1"]);
    let text = exporter.metrics();
    assert_eq!(
        value(&text, "mig_exporter_source_up{source=\"nvml\"}").as_deref(),
        Some("0")
    );
    assert!(series(&text).is_empty());
    let (_, page) = exporter.get("/", None);
    assert!(
        page.contains("nvml down") && page.contains("/nonexistent/libnvidia-ml.so.1"),
        "{page}"
    );

    let out = Command::new(EXPORTER)
        .args([
            "geometry",
            "--nvml",
            "--nvml.library",
            "/nonexistent/libnvidia-ml.so.1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load /nonexistent/libnvidia-ml.so.1"));
}
