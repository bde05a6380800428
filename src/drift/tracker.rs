//! [`DriftTracker`]: runs the detectors on every poll and keeps what must
//! outlive one poll: since when each finding holds, when each GPU's geometry
//! last changed, and the last-known-good state.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use super::advertised::judge_advertised;
use super::desired::{DesiredError, DesiredSource, Resolved};
use super::detect::{detect, Geometry, Reference};
use super::state::{GpuState, StateError, StateStore};
use crate::model::{
    Advertised, DriftFinding, DriftReason, DriftSnapshot, ExpectedInstances, GeometryChange, GpuSnapshot,
    SourceHealth,
};

/// Drift detection across polls.
#[derive(Debug)]
pub struct DriftTracker {
    desired: Option<DesiredSource>,
    state: StateStore,
    /// (GPU UUID, reason) → (GPU index, since) of every finding now holding.
    active: BTreeMap<(String, DriftReason), (u32, f64)>,
    /// GPU UUID → (layout fingerprint, when it last changed).
    layouts: HashMap<String, (String, f64)>,
    /// Why the advertised devices were last not judged, so it is logged once.
    advertised_not_judged: Option<String>,
}

impl DriftTracker {
    pub fn new(desired: Option<DesiredSource>, state: StateStore) -> DriftTracker {
        DriftTracker {
            desired,
            state,
            active: BTreeMap::new(),
            layouts: HashMap::new(),
            advertised_not_judged: None,
        }
    }

    /// Judges one successful read of the node at unix time `now`.
    ///
    /// A GPU is **healthy** when the source read it and no detector found
    /// anything on it: MIG mode is what is expected and not waiting for a
    /// reset, every GPU instance has a compute instance, the instances match
    /// the desired config (when one selects the GPU), and after a reboot they
    /// match the last-known-good geometry of the previous boot (when no
    /// desired config selects the GPU). Only a healthy GPU's geometry becomes
    /// its last-known-good state.
    pub fn observe(&mut self, boot_id: Option<&str>, gpus: &[GpuSnapshot], now: f64) -> DriftSnapshot {
        self.observe_with_advertised(boot_id, gpus, None, now)
    }

    /// [`DriftTracker::observe`], and with `advertised` (what the kubelet
    /// advertises, when it was read this poll) `advertised_mismatch` and
    /// `advertised_unhealthy` too. Those findings are about the kubelet, not
    /// the geometry: they do not keep a GPU from becoming last known good.
    /// An advertisement that cannot be judged gives no finding; why is logged
    /// when it starts and kept in the snapshot's `advertised_not_judged`.
    pub fn observe_with_advertised(
        &mut self,
        boot_id: Option<&str>,
        gpus: &[GpuSnapshot],
        advertised: Option<&Advertised>,
        now: f64,
    ) -> DriftSnapshot {
        let not_judged = advertised.and_then(Advertised::not_judged);
        if not_judged != self.advertised_not_judged {
            match &not_judged {
                Some(why) => tracing::warn!(reason = %why, "the kubelet's advertised devices are not judged"),
                None if advertised.is_some() => {
                    tracing::info!("the kubelet's advertised devices are judged again")
                }
                None => {}
            }
            self.advertised_not_judged = not_judged.clone();
        }
        let mut kubelet = advertised.map(|a| judge_advertised(gpus, a)).unwrap_or_default();
        let desired: Option<Resolved> = self.desired.as_mut().and_then(|d| d.refresh(gpus, now).cloned());
        self.state.refresh();
        let boot = boot_id.unwrap_or("");

        let mut findings = Vec::new();
        let mut expected = Vec::new();
        let mut geometry_changes = Vec::new();
        let mut healthy = Vec::new();
        let mut active = BTreeMap::new();
        for gpu in gpus {
            let observed = Geometry::observed(gpu);
            let stored = self.state.get(&gpu.uuid);
            let changed_at = layout_changed_at(&mut self.layouts, gpu, &observed, stored, boot, now);
            geometry_changes.push(GeometryChange {
                gpu: gpu.index,
                gpu_uuid: gpu.uuid.clone(),
                changed_at_seconds: changed_at,
            });

            let wanted = desired
                .as_ref()
                .and_then(|d| Some((d.gpus.get(&gpu.uuid)?, d.origin.as_str())));
            let reference = match (wanted, stored) {
                (Some((geometry, origin)), _) => Reference::Desired { geometry, origin },
                (None, Some(before))
                    if !boot.is_empty() && !before.boot_id.is_empty() && before.boot_id != boot =>
                {
                    Reference::BeforeReboot {
                        geometry: &before.geometry,
                        previous_boot: &before.boot_id,
                        current_boot: boot,
                    }
                }
                _ => Reference::None,
            };
            if let Some((geometry, _)) = wanted {
                expected.extend(
                    geometry
                        .instances
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(profile, n)| ExpectedInstances {
                            gpu: gpu.index,
                            gpu_uuid: gpu.uuid.clone(),
                            profile: profile.clone(),
                            count: *n,
                        }),
                );
            }

            let mut detected = detect(gpu, reference);
            let geometry_healthy = detected.is_empty();
            detected.extend(kubelet.remove(&gpu.uuid).unwrap_or_default());
            if geometry_healthy {
                healthy.push((
                    gpu.uuid.clone(),
                    GpuState {
                        index: gpu.index,
                        name: gpu.name.clone(),
                        boot_id: boot.to_string(),
                        geometry: observed,
                        since_seconds: changed_at,
                    },
                ));
            }
            for d in detected {
                let key = (gpu.uuid.clone(), d.reason);
                let since = match self.active.get(&key) {
                    Some(&(_, since)) => since,
                    None => {
                        tracing::warn!(
                            gpu = gpu.index,
                            gpu_uuid = %gpu.uuid,
                            reason = %d.reason,
                            detail = %d.message,
                            "drift detected"
                        );
                        now
                    }
                };
                active.insert(key, (gpu.index, since));
                findings.push(DriftFinding {
                    gpu: gpu.index,
                    gpu_uuid: gpu.uuid.clone(),
                    reason: d.reason,
                    message: d.message,
                    since_seconds: since,
                });
            }
        }
        for ((uuid, reason), (index, since)) in &self.active {
            if !active.contains_key(&(uuid.clone(), *reason)) {
                tracing::info!(
                    gpu = *index,
                    gpu_uuid = %uuid,
                    reason = %reason,
                    lasted_seconds = (now - since).max(0.0),
                    "drift cleared"
                );
            }
        }
        self.active = active;

        // Only GPUs with a boot id to tell reboots by become last known good.
        if !boot.is_empty() {
            for (uuid, state) in healthy {
                self.state.record(&uuid, state);
            }
        }
        self.state.sync(now);

        findings.sort_by_key(|f| (f.gpu, f.reason));
        DriftSnapshot {
            findings,
            expected,
            geometry_changes,
            desired: desired.map(|d| d.origin),
            advertised_not_judged: not_judged,
        }
    }

    /// A poll whose read failed: nothing is judged, and nothing is forgotten
    /// (a finding that still holds afterwards keeps its `since`).
    pub fn unavailable(&self) -> DriftSnapshot {
        DriftSnapshot::default()
    }

    /// Why the desired config could not be used on the last poll.
    pub fn desired_error(&self) -> Option<&DesiredError> {
        self.desired.as_ref().and_then(DesiredSource::error)
    }

    /// Why the state file is not in use.
    pub fn state_error(&self) -> Option<&StateError> {
        self.state.error()
    }

    /// The desired config file, when one is configured.
    pub fn desired_source(&self) -> Option<&DesiredSource> {
        self.desired.as_ref()
    }

    /// Health of the desired config and the state file, beside the geometry source's.
    pub fn sources(&self) -> Vec<SourceHealth> {
        self.desired
            .as_ref()
            .map(|d| d.health().clone())
            .into_iter()
            .chain(self.state.health().cloned())
            .collect()
    }
}

/// When the GPU's layout (MIG mode, GPU and compute instances, their
/// placements and MIG UUIDs) last changed: the first poll that saw it, or,
/// right after a restart, the time recorded in the state when the boot
/// and geometry are the same as recorded.
fn layout_changed_at(
    layouts: &mut HashMap<String, (String, f64)>,
    gpu: &GpuSnapshot,
    observed: &Geometry,
    stored: Option<&GpuState>,
    boot: &str,
    now: f64,
) -> f64 {
    let fingerprint = fingerprint(gpu);
    let at = match layouts.get(&gpu.uuid) {
        Some((old, at)) if *old == fingerprint => *at,
        Some(_) => now,
        None => stored
            .filter(|s| !boot.is_empty() && s.boot_id == boot && s.geometry == *observed)
            .map_or(now, |s| s.since_seconds.min(now)),
    };
    layouts.insert(gpu.uuid.clone(), (fingerprint, at));
    at
}

/// Everything that makes up a GPU's layout, as text.
fn fingerprint(gpu: &GpuSnapshot) -> String {
    let mut s = format!("{}{}", u8::from(gpu.mig_current), u8::from(gpu.mig_pending));
    for gi in &gpu.gpu_instances {
        let _ = write!(
            s,
            "|{}:{}@{}+{}",
            gi.id, gi.profile_id, gi.placement_start, gi.placement_size
        );
        for ci in &gi.compute_instances {
            let _ = write!(
                s,
                "/{}:{}@{}+{}={}",
                ci.id, ci.profile_id, ci.placement_start, ci.placement_size, ci.mig_uuid
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::desired::ConfigName;
    use crate::drift::state::StateDoc;
    use crate::source::sim::reading_from_world;
    use mig_model::{Product, World};

    fn h100_with(profiles: &[u32]) -> World {
        let mut w = World::new("node", Product::H100_80GB, 1);
        let gpu = &mut w.gpus[0];
        gpu.set_mig_mode(true);
        for &p in profiles {
            let gi = gpu.create_gpu_instance(p, None).unwrap();
            gpu.create_compute_instance(gi, None).unwrap();
        }
        w
    }

    fn observe(t: &mut DriftTracker, w: &World, now: f64) -> DriftSnapshot {
        let r = reading_from_world(w);
        t.observe(r.boot_id.as_deref(), &r.gpus, now)
    }

    fn reasons(s: &DriftSnapshot) -> Vec<DriftReason> {
        s.findings.iter().map(|f| f.reason).collect()
    }

    #[test]
    fn advertised_mismatch_keeps_its_since_clears_and_leaves_last_known_good_alone() {
        let mut t = DriftTracker::new(None, StateStore::in_memory(StateDoc::default()));
        let w = h100_with(&[19, 19]);
        let r = reading_from_world(&w);
        let ids: Vec<String> = r.gpus[0]
            .gpu_instances
            .iter()
            .map(|gi| gi.compute_instances[0].mig_uuid.clone())
            .collect();
        let mut stale = Advertised::default();
        stale
            .resources
            .entry("nvidia.com/mig-1g.10gb".to_string())
            .or_default()
            .extend(ids.iter().cloned().chain(["MIG-gone".to_string()]));
        let first = t.observe_with_advertised(Some("boot-1"), &r.gpus, Some(&stale), 100.0);
        assert_eq!(reasons(&first), [DriftReason::AdvertisedMismatch]);
        assert!(
            first.findings[0].message.contains("MIG-gone"),
            "{}",
            first.findings[0].message
        );
        assert!(
            t.state.get(&r.gpus[0].uuid).is_some(),
            "a kubelet finding does not keep the geometry from being last known good"
        );
        let second = t.observe_with_advertised(Some("boot-1"), &r.gpus, Some(&stale), 105.0);
        assert_eq!(second.findings[0].since_seconds, 100.0, "kept across polls");
        let mut fixed = stale.clone();
        fixed.resources.values_mut().for_each(|ids| {
            ids.remove("MIG-gone");
        });
        let third = t.observe_with_advertised(Some("boot-1"), &r.gpus, Some(&fixed), 110.0);
        assert!(third.findings.is_empty(), "{:?}", third.findings);
        // Without a kubelet read there is nothing to judge.
        let fourth = t.observe_with_advertised(Some("boot-1"), &r.gpus, None, 115.0);
        assert!(fourth.findings.is_empty());
    }

    #[test]
    fn since_is_kept_while_a_finding_persists_and_reset_after_it_clears() {
        let mut t = DriftTracker::new(None, StateStore::in_memory(StateDoc::default()));
        let mut w = h100_with(&[9]);
        w.gpus[0].create_gpu_instance(19, None).unwrap(); // no CI
        let first = observe(&mut t, &w, 100.0);
        assert_eq!(reasons(&first), [DriftReason::GiWithoutCi]);
        assert_eq!(first.findings[0].since_seconds, 100.0);
        let second = observe(&mut t, &w, 105.0);
        assert_eq!(second.findings[0].since_seconds, 100.0, "kept across polls");
        assert_eq!(t.unavailable(), DriftSnapshot::default());
        assert_eq!(
            observe(&mut t, &w, 110.0).findings[0].since_seconds,
            100.0,
            "kept across a failed read"
        );

        let gi = w.gpus[0].gpu_instances[1].id;
        w.gpus[0].create_compute_instance(gi, None).unwrap();
        assert!(observe(&mut t, &w, 115.0).findings.is_empty());
        w.gpus[0].destroy_compute_instance(gi, 0).unwrap();
        assert_eq!(observe(&mut t, &w, 120.0).findings[0].since_seconds, 120.0);
    }

    #[test]
    fn geometry_last_change_moves_only_when_the_layout_changes() {
        let mut t = DriftTracker::new(None, StateStore::in_memory(StateDoc::default()));
        let mut w = h100_with(&[9]);
        assert_eq!(
            observe(&mut t, &w, 10.0).geometry_changes[0].changed_at_seconds,
            10.0
        );
        assert_eq!(
            observe(&mut t, &w, 20.0).geometry_changes[0].changed_at_seconds,
            10.0
        );
        // Recreating the CI keeps the counts but is a change (new MIG UUID).
        let gi = w.gpus[0].gpu_instances[0].id;
        w.gpus[0].destroy_compute_instance(gi, 0).unwrap();
        w.gpus[0].create_compute_instance(gi, None).unwrap();
        assert_eq!(
            observe(&mut t, &w, 30.0).geometry_changes[0].changed_at_seconds,
            30.0
        );
    }

    #[test]
    fn healthy_geometry_becomes_last_known_good_and_is_compared_after_a_reboot() {
        let mut t = DriftTracker::new(None, StateStore::in_memory(StateDoc::default()));
        let mut w = h100_with(&[19, 19, 19]);
        assert!(observe(&mut t, &w, 1.0).findings.is_empty());
        let uuid = w.gpus[0].uuid.clone();
        let saved = t.state.get(&uuid).unwrap().clone();
        assert_eq!(saved.boot_id, w.boot_id);
        assert_eq!(saved.geometry.instances["1g.10gb"], 3);

        w.reboot();
        let after = observe(&mut t, &w, 2.0);
        assert_eq!(
            reasons(&after),
            [
                DriftReason::MigModeLost,
                DriftReason::GeometryLost,
                DriftReason::ChangedSinceReboot
            ]
        );
        assert_eq!(
            t.state.get(&uuid),
            Some(&saved),
            "an unhealthy GPU is not recorded"
        );

        // Restoring the layout clears every finding and records the new boot.
        let gpu = &mut w.gpus[0];
        gpu.set_mig_mode(true);
        for _ in 0..3 {
            let gi = gpu.create_gpu_instance(19, None).unwrap();
            gpu.create_compute_instance(gi, None).unwrap();
        }
        assert!(observe(&mut t, &w, 3.0).findings.is_empty());
        assert_eq!(t.state.get(&uuid).unwrap().boot_id, w.boot_id);
    }

    #[test]
    fn a_desired_config_takes_precedence_and_reports_expected_instances() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mig.yaml");
        std::fs::write(
            &config,
            "version: v1\nmig-configs:\n  two-3g:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"3g.40gb\": 2}\n",
        )
        .unwrap();
        let desired = DesiredSource::new(config.clone(), ConfigName::Fixed("two-3g".into()));
        let mut t = DriftTracker::new(Some(desired), StateStore::in_memory(StateDoc::default()));
        let mut w = h100_with(&[9]);
        let s = observe(&mut t, &w, 1.0);
        assert_eq!(reasons(&s), [DriftReason::ProfileMismatch]);
        assert!(s.findings[0].message.contains("missing 1x 3g.40gb"));
        assert_eq!(s.expected.len(), 1);
        assert_eq!(
            (s.expected[0].profile.as_str(), s.expected[0].count),
            ("3g.40gb", 2)
        );
        assert_eq!(
            s.desired.as_deref(),
            Some(format!("config 'two-3g' in {}", config.display()).as_str())
        );

        let gi = w.gpus[0].create_gpu_instance(9, None).unwrap();
        w.gpus[0].create_compute_instance(gi, None).unwrap();
        assert!(observe(&mut t, &w, 2.0).findings.is_empty());

        // A config that turns invalid is reported; the last valid one stays.
        std::fs::write(
            &config,
            "version: v1\nmig-configs:\n  two-3g:\n    - devices: all\n",
        )
        .unwrap();
        let s = observe(&mut t, &w, 3.0);
        assert!(s.findings.is_empty());
        assert_eq!(s.expected.len(), 1);
        let e = t.desired_error().unwrap().to_string();
        assert!(
            e.contains("config 'two-3g': entry 0: missing required field 'mig-enabled'"),
            "{e}"
        );
        let health = &t.sources()[0];
        assert_eq!(health.name, "mig_config");
        assert!(!health.up && health.errors_total == 1);
    }
}
