//! The landing page: every GPU's slice map, rendered on the server from the
//! published snapshot and refreshed by the browser every few seconds. No
//! script is needed, so it works in any browser and in `curl`.

use std::fmt::Write;

use crate::drift::detect::describe_counts;
use crate::model::{
    ComputeInstanceSnapshot, DriftSnapshot, GpuInstanceSnapshot, GpuSnapshot, NodeSnapshot, SourceState,
};

const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#f6f7f9;color:#1d232b}
h1{font-size:1.4rem;margin:0 0 .3rem} .sub{color:#5b6673;margin-bottom:1rem}
.sources span{display:inline-block;padding:.1rem .5rem;border-radius:.7rem;margin-right:.4rem;font-size:.85rem}
.up{background:#d7f5dd;color:#145c24}.down{background:#fde0e0;color:#8a1414}.off{background:#eceef1;color:#5b6673}
.gpu{background:#fff;border:1px solid #d9dde3;border-radius:8px;padding:.8rem 1rem;margin:.8rem 0}
.gpu h2{font-size:1rem;margin:0 0 .4rem}.gpu .meta{color:#5b6673;font-size:.8rem;margin-bottom:.5rem}
.warn{color:#8a4b00;font-weight:600}
.simulated{margin:.5rem 0 1rem;padding:.6rem .8rem;border-left:5px solid #b7791f;background:#fff4d6;font-weight:600}
.blocked,.driftsum{margin:.5rem 0 1rem;padding:.6rem .8rem;border-left:5px solid #c0392b;background:#fdecea;font-weight:600}
.driftsum a{color:#8a1414}
.slots{display:grid;gap:4px;grid-auto-rows:minmax(5.5rem,auto)}
.slot{border:1px dashed #c3c9d1;border-radius:6px;color:#9aa3ad;font-size:.75rem;padding:.3rem}
.gi{border-radius:6px;padding:.35rem .45rem;font-size:.78rem;background:#e4ecfb;border:1px solid #7d9fe0;overflow:hidden}
.gi.noci{background:#fff1db;border-color:#e0a44a}
.gi b{font-size:.85rem}.ci{margin-top:.25rem;padding:.2rem .3rem;background:#fff;border-radius:4px}
.bar{height:5px;background:#e3e6ea;border-radius:3px;margin-top:2px}.bar i{display:block;height:5px;border-radius:3px;background:#3b7ddd}
.uuid{font-family:ui-monospace,monospace;font-size:.68rem;color:#5b6673}
.whole{padding:1rem;border:1px solid #c3c9d1;border-radius:6px;background:#eef0f3}
.cap{margin-top:.5rem;font-size:.75rem;color:#5b6673}.cap span{display:inline-block;margin:.15rem .3rem 0 0;padding:.05rem .45rem;border:1px solid #d9dde3;border-radius:.6rem}
.cap span.none{color:#aab1ba}
.drift{margin:.3rem 0 .5rem;padding:.4rem .6rem;border-left:4px solid #c0392b;background:#fdecea;font-size:.82rem}
.drift b{font-family:ui-monospace,monospace;color:#8a1414}.drift .for{color:#5b6673}
.nodrift{color:#145c24;font-size:.8rem;margin-bottom:.4rem}.expected,.desired{color:#5b6673;font-size:.8rem;margin-bottom:.4rem}
"#;

/// Shown on a simulated node, so a demo is never taken for the machine's GPUs.
const SIMULATED_BANNER: &str = "<div class=\"simulated\" role=\"alert\">Simulated node: these GPUs are \
    made up by mig-exporter's built-in simulator (--simulate or --world, or a start without --nvml \
    where no NVIDIA driver answered), not this machine's. Start it with --nvml to read the hardware.</div>";

pub fn render(snapshot: &NodeSnapshot, telemetry_path: &str) -> String {
    let mut html = String::with_capacity(32 * 1024);
    let title = format!("mig-exporter on {}", escape(&snapshot.hostname));
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title}</h1><div class=\"sub\">{} GPUs · driver {} · <a href=\"{}\">metrics</a> · \
         <a href=\"/healthz\">healthz</a> · <a href=\"/readyz\">readyz</a></div>",
        snapshot.gpus.len(),
        escape(snapshot.driver_version.as_deref().unwrap_or("unknown")),
        escape(telemetry_path),
    );
    if snapshot.simulated {
        html.push_str(SIMULATED_BANNER);
    }
    if let Some(why) = &snapshot.blocked {
        let _ = write!(html, "<div class=\"blocked\">{}</div>", escape(why));
    }
    html.push_str("<div class=\"sources\">");
    for source in &snapshot.sources {
        // A source that does not apply here is not shown as a failure.
        let (class, state) = match source.state {
            SourceState::Enabled if source.up => ("up", "up"),
            SourceState::Enabled => ("down", "down"),
            other => ("off", other.as_str()),
        };
        let _ = write!(
            html,
            "<span class=\"{class}\" data-source=\"{}\">{} {state}{}</span>",
            source.name,
            source.name,
            source
                .last_error
                .as_deref()
                .map(|e| format!(": {}", escape(e)))
                .unwrap_or_default()
        );
    }
    html.push_str("</div>");
    let _ = write!(
        html,
        "<div class=\"desired\">desired MIG config: {}</div>",
        escape(snapshot.drift.desired.as_deref().unwrap_or("none"))
    );
    if let Some(why) = &snapshot.drift.advertised_not_judged {
        let _ = write!(
            html,
            "<div class=\"desired\" data-advertised=\"not-judged\">advertised devices not judged: {}</div>",
            escape(why)
        );
    }
    render_drift_summary(&mut html, snapshot);
    for gpu in &snapshot.gpus {
        render_gpu(&mut html, gpu, &snapshot.drift, snapshot.taken_at_seconds);
    }
    html.push_str("</body></html>\n");
    html
}

/// Which GPUs drift, at the top of the page: a GPU's own findings are drawn
/// in its section, which on a node of eight GPUs is far below the first
/// screen. Each GPU links to its section.
fn render_drift_summary(html: &mut String, snapshot: &NodeSnapshot) {
    let drifting: Vec<(&GpuSnapshot, Vec<&str>)> = snapshot
        .gpus
        .iter()
        .map(|gpu| {
            let mut reasons: Vec<&str> = snapshot
                .drift
                .findings_of(&gpu.uuid)
                .map(|f| f.reason.as_str())
                .collect();
            reasons.dedup();
            (gpu, reasons)
        })
        .filter(|(_, reasons)| !reasons.is_empty())
        .collect();
    if drifting.is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<div class=\"driftsum\" role=\"alert\">Drift on {} of {} GPUs:",
        drifting.len(),
        snapshot.gpus.len()
    );
    for (i, (gpu, reasons)) in drifting.iter().enumerate() {
        let _ = write!(
            html,
            "{} <a href=\"#gpu-{}\" data-drift-gpu=\"{}\">GPU {}</a> ({})",
            if i == 0 { "" } else { ";" },
            gpu.index,
            gpu.index,
            gpu.index,
            reasons.join(", ")
        );
    }
    html.push_str("</div>");
}

/// The GPU's drift findings with their messages, and what the desired config wants.
fn render_drift(html: &mut String, gpu: &GpuSnapshot, drift: &DriftSnapshot, now: f64) {
    let expected: std::collections::BTreeMap<String, u32> = drift
        .expected_of(&gpu.uuid)
        .map(|e| (e.profile.clone(), e.count))
        .collect();
    if !expected.is_empty() {
        let _ = write!(
            html,
            "<div class=\"expected\">expected: {}</div>",
            escape(&describe_counts(&expected))
        );
    }
    let mut any = false;
    for f in drift.findings_of(&gpu.uuid) {
        any = true;
        let _ = write!(
            html,
            "<div class=\"drift\" data-reason=\"{}\"><b>{}</b> <span class=\"for\">for {}</span><br>{}</div>",
            f.reason,
            f.reason,
            duration(now - f.since_seconds),
            escape(&f.message)
        );
    }
    if !any && drift.geometry_changes.iter().any(|c| c.gpu_uuid == gpu.uuid) {
        html.push_str("<div class=\"nodrift\">no drift</div>");
    }
}

/// `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn render_gpu(html: &mut String, gpu: &GpuSnapshot, drift: &DriftSnapshot, now: f64) {
    let mode = |on: bool| if on { "enabled" } else { "disabled" };
    let pending = if gpu.mig_current != gpu.mig_pending {
        format!(
            " <span class=\"warn\">(pending: {} after reset)</span>",
            mode(gpu.mig_pending)
        )
    } else {
        String::new()
    };
    let _ = write!(
        html,
        "<section class=\"gpu\" id=\"gpu-{}\" data-gpu=\"{}\"><h2>GPU {} · {}</h2>\
         <div class=\"meta\">{} · {} · MIG {}{pending} · {}/{} SM slices, {}/{} memory slices used</div>",
        gpu.index,
        gpu.index,
        gpu.index,
        escape(&gpu.name),
        escape(&gpu.uuid),
        escape(&gpu.pci_bus_id),
        mode(gpu.mig_current),
        gpu.compute_slices_used,
        gpu.compute_slices_capacity,
        gpu.memory_slices_used,
        gpu.memory_slices_capacity,
    );
    render_drift(html, gpu, drift, now);
    if !gpu.mig_current {
        html.push_str("<div class=\"whole\">MIG is disabled: one whole GPU, no slices.</div></section>");
        return;
    }
    let slots = gpu.memory_slices_capacity;
    let _ = write!(
        html,
        "<div class=\"slots\" style=\"grid-template-columns:repeat({slots},1fr)\">"
    );
    let mut covered = vec![false; slots as usize];
    for gi in &gpu.gpu_instances {
        for slot in gi.placement_start..gi.placement_start + gi.placement_size {
            if let Some(c) = covered.get_mut(slot as usize) {
                *c = true;
            }
        }
        render_gi(html, gi);
    }
    for (slot, _) in covered.iter().enumerate().filter(|(_, c)| !**c) {
        let _ = write!(
            html,
            "<div class=\"slot\" data-free-slot=\"{slot}\" style=\"grid-column:{} / span 1;grid-row:1\">slot {slot}<br>free</div>",
            slot + 1
        );
    }
    html.push_str("</div><div class=\"cap\">can still create: ");
    for p in &gpu.profiles {
        let class = if p.remaining_instances == 0 {
            " class=\"none\""
        } else {
            ""
        };
        let _ = write!(
            html,
            "<span{class} data-remaining=\"{}\">{} {}/{}</span>",
            escape(&p.name),
            escape(&p.name),
            p.remaining_instances,
            p.max_instances
        );
    }
    html.push_str("</div></section>");
}

fn render_gi(html: &mut String, gi: &GpuInstanceSnapshot) {
    let class = if gi.compute_instances.is_empty() {
        "gi noci"
    } else {
        "gi"
    };
    let _ = write!(
        html,
        "<div class=\"{class}\" data-gi=\"{}\" data-profile=\"{}\" data-placement=\"{}:{}\" \
         style=\"grid-column:{} / span {};grid-row:1\"><b>{}</b> · GI {} · {}:{}",
        gi.id,
        escape(&gi.profile),
        gi.placement_start,
        gi.placement_size,
        gi.placement_start + 1,
        gi.placement_size,
        escape(&gi.profile),
        gi.id,
        gi.placement_start,
        gi.placement_size,
    );
    if let (Some(used), total) = (gi.memory_used_bytes, gi.memory_total_bytes) {
        let _ = write!(html, "<div>memory {} / {} GiB</div>", gib(used), gib(total));
        bar(html, used as f64 / total.max(1) as f64);
    }
    if gi.compute_instances.is_empty() {
        html.push_str("<div class=\"warn\">no compute instance: CUDA cannot use this slice</div>");
    }
    for ci in &gi.compute_instances {
        render_ci(html, ci);
    }
    html.push_str("</div>");
}

fn render_ci(html: &mut String, ci: &ComputeInstanceSnapshot) {
    let _ = write!(
        html,
        "<div class=\"ci\" data-ci=\"{}\">CI {} · {}<div class=\"uuid\">{}</div>",
        ci.id,
        ci.id,
        escape(&ci.profile),
        escape(&ci.mig_uuid)
    );
    if let Some(sm) = ci.activity.sm_active_ratio {
        let _ = write!(html, "SM active {:.0}%", sm * 100.0);
        bar(html, sm);
    }
    html.push_str("</div>");
}

fn bar(html: &mut String, ratio: f64) {
    let _ = write!(
        html,
        "<div class=\"bar\"><i style=\"width:{:.0}%\"></i></div>",
        (ratio.clamp(0.0, 1.0) * 100.0)
    );
}

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{scenarios, sim};

    fn snapshot(scenario: &str) -> NodeSnapshot {
        let r = sim::reading_from_world(&scenarios::build(scenario).unwrap());
        NodeSnapshot {
            hostname: r.hostname,
            driver_version: r.driver_version,
            gpus: r.gpus,
            ..Default::default()
        }
    }

    #[test]
    fn draws_every_gi_at_its_placement_and_the_free_slots() {
        let html = render(&snapshot("h100-mixed"), "/metrics");
        // GPU 2: 4g.40gb at 0:4 (GI 1), 2g.20gb at 4:2 (GI 5), 1g.10gb at 6:1 (GI 13); slot 7 free.
        let gpu2 = html
            .split("data-gpu=\"2\"")
            .nth(1)
            .unwrap()
            .split("data-gpu=\"3\"")
            .next()
            .unwrap();
        for (gi, profile, placement) in [
            (1, "4g.40gb", "0:4"),
            (5, "2g.20gb", "4:2"),
            (13, "1g.10gb", "6:1"),
        ] {
            let tag = format!("data-gi=\"{gi}\" data-profile=\"{profile}\" data-placement=\"{placement}\"");
            assert!(gpu2.contains(&tag), "missing {tag}");
        }
        assert!(gpu2.contains("data-free-slot=\"7\""));
        assert!(!gpu2.contains("data-free-slot=\"6\""));
    }

    #[test]
    fn says_when_mig_is_off_or_a_gi_has_no_ci() {
        let html = render(&snapshot("h100-rebooted"), "/metrics");
        assert_eq!(html.matches("MIG is disabled").count(), 8);
        let html = render(&snapshot("gi-without-ci"), "/metrics");
        assert_eq!(html.matches("gi noci").count(), 3);
    }

    #[test]
    fn shows_each_gpus_findings_with_their_messages_and_what_is_expected() {
        use crate::model::{DriftFinding, DriftReason, ExpectedInstances};
        let mut snap = snapshot("h100-rebooted");
        snap.taken_at_seconds = 1000.0;
        let uuid = snap.gpus[1].uuid.clone();
        snap.drift.desired = Some("config 'x<y' in /etc/mig.yaml".into());
        snap.drift.expected.push(ExpectedInstances {
            gpu: 1,
            gpu_uuid: uuid.clone(),
            profile: "3g.40gb".into(),
            count: 2,
        });
        snap.drift.findings.push(DriftFinding {
            gpu: 1,
            gpu_uuid: uuid,
            reason: DriftReason::MigModeLost,
            message: "GPU 1: MIG mode is disabled: expected <enabled>".into(),
            since_seconds: 875.0,
        });
        let html = render(&snap, "/metrics");
        assert!(html.contains("desired MIG config: config &#39;x&lt;y&#39; in /etc/mig.yaml"));
        let gpu1 = html
            .split("data-gpu=\"1\"")
            .nth(1)
            .unwrap()
            .split("data-gpu=\"2\"")
            .next()
            .unwrap();
        assert!(gpu1.contains("expected: 2x 3g.40gb"), "{gpu1}");
        assert!(
            gpu1.contains(
                "data-reason=\"mig_mode_lost\"><b>mig_mode_lost</b> <span class=\"for\">for 2m 5s</span>"
            ) && gpu1.contains("expected &lt;enabled&gt;"),
            "{gpu1}"
        );
        assert_eq!(html.matches("data-reason=").count(), 1, "only on its GPU");
        let summary = html
            .split("<div class=\"driftsum\" role=\"alert\">")
            .nth(1)
            .and_then(|rest| rest.split("</div>").next())
            .expect("a summary at the top");
        assert_eq!(
            summary,
            "Drift on 1 of 8 GPUs: <a href=\"#gpu-1\" data-drift-gpu=\"1\">GPU 1</a> (mig_mode_lost)"
        );
        assert!(
            html.find("class=\"driftsum\"") < html.find("<section") && html.contains("id=\"gpu-1\""),
            "before the GPUs, linking to GPU 1's section"
        );
        snap.drift.findings.clear();
        assert!(
            !render(&snap, "/metrics").contains("class=\"driftsum\""),
            "none without drift"
        );
        assert_eq!(duration(3.0 * 86400.0 + 7200.0), "3d 2h");
        assert_eq!(duration(-1.0), "0s");
    }

    #[test]
    fn says_once_why_advertised_devices_are_not_judged() {
        let mut snap = snapshot("h100-rebooted");
        assert!(!render(&snap, "/metrics").contains("data-advertised"));
        snap.drift.advertised_not_judged = Some("ids <0> are not UUIDs".into());
        let html = render(&snap, "/metrics");
        assert_eq!(
            html.matches(
                "data-advertised=\"not-judged\">advertised devices not judged: ids &lt;0&gt; are not UUIDs<"
            )
            .count(),
            1,
            "{html}"
        );
    }

    #[test]
    fn a_source_that_does_not_apply_is_shown_as_such_not_as_down() {
        use crate::model::SourceHealth;
        let mut snapshot = snapshot("a100-single");
        let source = |name, state, up, error: Option<&str>| SourceHealth {
            state,
            up,
            last_error: error.map(str::to_string),
            ..SourceHealth::new(name)
        };
        snapshot.sources = vec![
            source("nvml", SourceState::Enabled, true, None),
            source(
                "dcgm",
                SourceState::Disabled,
                false,
                Some("DCGM: cannot load libdcgm.so.4"),
            ),
            source("gpm", SourceState::Unsupported, false, Some("GPM: not supported")),
            source("kubelet", SourceState::Enabled, false, Some("no socket")),
        ];
        let html = render(&snapshot, "/metrics");
        for badge in [
            "<span class=\"up\" data-source=\"nvml\">nvml up</span>",
            "<span class=\"off\" data-source=\"dcgm\">dcgm disabled: DCGM: cannot load libdcgm.so.4</span>",
            "<span class=\"off\" data-source=\"gpm\">gpm unsupported: GPM: not supported</span>",
            "<span class=\"down\" data-source=\"kubelet\">kubelet down: no socket</span>",
        ] {
            assert!(html.contains(badge), "{badge}");
        }
    }

    #[test]
    fn a_simulated_node_carries_a_banner_that_names_nvml_and_hardware_does_not() {
        let mut simulated = snapshot("h100-mixed");
        simulated.simulated = true;
        let html = render(&simulated, "/metrics");
        let banner = html
            .split("<div class=\"simulated\"")
            .nth(1)
            .and_then(|rest| rest.split("</div>").next())
            .expect("a banner");
        assert!(
            banner.contains("Simulated node") && banner.contains("--nvml") && banner.contains("--simulate"),
            "{banner}"
        );
        let hardware = snapshot("h100-mixed");
        assert!(!render(&hardware, "/metrics").contains("class=\"simulated\""));
    }

    #[test]
    fn escapes_outside_text() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
