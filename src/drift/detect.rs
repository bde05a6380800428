//! The detectors: pure functions from one GPU's snapshot, and what the GPU
//! should be, to findings. Each finding's message names the GPU and says what
//! was expected and what was observed.
//!
//! What a GPU is compared with ([`Reference`]) is, in order: the desired
//! config, when one selects the GPU; otherwise its last-known-good geometry,
//! but only after a reboot (a different boot id), which is when geometry gets
//! lost; otherwise nothing, and only the detectors that need no reference run
//! (`gi_without_ci`, `mig_mode_pending`).
//!
//! While MIG mode waits for a reset to reach the expected mode (an Ampere
//! enable refused because processes hold the GPU), `mig_mode_pending` stands
//! for `mig_mode_lost` / `unexpected_mig` and `geometry_lost`: no instance can
//! exist before the reset, and the reset is what the operator has to do.

use std::collections::BTreeMap;
use std::fmt::Write;

use mig_model::ProfileName;
use serde::{Deserialize, Serialize};

use crate::model::{DriftReason, GpuSnapshot};

/// The part of a GPU that drift detection compares: MIG mode and how many GPU
/// instances of each profile exist. Placements, ids and UUIDs are left out:
/// the driver picks them, and they differ between two correct applications
/// of the same config (nvidia-mig-parted compares the same way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geometry {
    pub mig_enabled: bool,
    /// Profile name (`3g.40gb`) → GPU instances of it; no zero counts.
    #[serde(default)]
    pub instances: BTreeMap<String, u32>,
}

impl Geometry {
    pub fn disabled() -> Geometry {
        Geometry {
            mig_enabled: false,
            instances: BTreeMap::new(),
        }
    }

    /// What the GPU has now: the mode in force and its GPU instances.
    pub fn observed(gpu: &GpuSnapshot) -> Geometry {
        let mut instances = BTreeMap::new();
        for gi in &gpu.gpu_instances {
            *instances.entry(canonical_profile(&gi.profile)).or_insert(0) += 1;
        }
        Geometry {
            mig_enabled: gpu.mig_current,
            instances,
        }
    }

    /// `MIG disabled`, `MIG enabled, no GPU instances`, `MIG enabled, 2x 3g.40gb, 1x 1g.10gb`.
    pub fn describe(&self) -> String {
        if self.mig_enabled {
            format!("MIG enabled, {}", describe_counts(&self.instances))
        } else {
            "MIG disabled".to_string()
        }
    }
}

/// A profile name as `mig-model` prints it, so `MIG 1g.10gb` and `1g.10gb` compare equal.
pub fn canonical_profile(name: &str) -> String {
    name.parse::<ProfileName>()
        .map_or_else(|_| name.trim().to_string(), |p| p.to_string())
}

/// `2x 3g.40gb, 1x 1g.10gb`, or `no GPU instances`.
pub fn describe_counts(counts: &BTreeMap<String, u32>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(p, n)| format!("{n}x {p}"))
        .collect();
    if parts.is_empty() {
        "no GPU instances".to_string()
    } else {
        parts.join(", ")
    }
}

/// What a GPU is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Reference<'a> {
    /// Neither a desired config nor a reboot to compare across.
    None,
    /// The desired config that selects this GPU; `origin` says which
    /// (`config 'all-1g.10gb' in /etc/mig.yaml`).
    Desired { geometry: &'a Geometry, origin: &'a str },
    /// The last healthy geometry seen during the previous boot.
    BeforeReboot {
        geometry: &'a Geometry,
        previous_boot: &'a str,
        current_boot: &'a str,
    },
}

/// A finding before it gets its `since` timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub reason: DriftReason,
    pub message: String,
}

/// Every finding on `gpu` against `reference`, ordered by reason.
pub fn detect(gpu: &GpuSnapshot, reference: Reference<'_>) -> Vec<Detected> {
    let mut found = match reference {
        Reference::None => Vec::new(),
        Reference::Desired { geometry, origin } => against_desired(gpu, geometry, origin),
        Reference::BeforeReboot {
            geometry,
            previous_boot,
            current_boot,
        } => against_last_known_good(gpu, geometry, previous_boot, current_boot),
    };
    found.extend(mig_mode_pending(gpu, reference));
    found.extend(gi_without_ci(gpu));
    found.sort_by_key(|d| d.reason);
    found
}

fn gpu_name(gpu: &GpuSnapshot) -> String {
    format!("GPU {} ({})", gpu.index, gpu.uuid)
}

fn expected_vs_observed(expected: &Geometry, origin: &str, observed: &Geometry) -> String {
    format!(
        "expected {} ({origin}); observed {}",
        expected.describe(),
        observed.describe()
    )
}

/// MIG mode waits for a reset: `pending` is what it will be after it.
fn pending_toward(gpu: &GpuSnapshot, enabled: bool) -> bool {
    gpu.mig_current != gpu.mig_pending && gpu.mig_pending == enabled
}

/// `mig_mode_lost`, `geometry_lost`, `profile_mismatch`, `unexpected_mig`
/// against the desired config.
pub fn against_desired(gpu: &GpuSnapshot, expected: &Geometry, origin: &str) -> Vec<Detected> {
    let observed = Geometry::observed(gpu);
    let context = expected_vs_observed(expected, origin, &observed);
    let name = gpu_name(gpu);
    let mut found = Vec::new();
    if !expected.mig_enabled {
        if gpu.mig_current && !pending_toward(gpu, false) {
            found.push(Detected {
                reason: DriftReason::UnexpectedMig,
                message: format!(
                    "{name}: MIG mode is enabled, but the desired config wants it disabled: {context}"
                ),
            });
        }
        return found;
    }
    if !gpu.mig_current {
        if pending_toward(gpu, true) {
            return found; // mig_mode_pending says it all
        }
        found.push(Detected {
            reason: DriftReason::MigModeLost,
            message: format!("{name}: MIG mode is disabled: {context}"),
        });
    }
    let wanted: u32 = expected.instances.values().sum();
    if observed.instances.is_empty() {
        if wanted > 0 {
            found.push(Detected {
                reason: DriftReason::GeometryLost,
                message: format!("{name}: no GPU instances: {context}"),
            });
        }
    } else if observed.instances != expected.instances {
        found.push(Detected {
            reason: DriftReason::ProfileMismatch,
            message: format!(
                "{name}: GPU instances differ from the desired config ({}): {context}",
                difference(&expected.instances, &observed.instances)
            ),
        });
    }
    found
}

/// `changed_since_reboot`, with `mig_mode_lost` and `geometry_lost` where
/// they apply, against the last healthy geometry of the previous boot.
pub fn against_last_known_good(
    gpu: &GpuSnapshot,
    before: &Geometry,
    previous_boot: &str,
    current_boot: &str,
) -> Vec<Detected> {
    let observed = Geometry::observed(gpu);
    if observed == *before {
        return Vec::new();
    }
    let origin = format!("last known good before the reboot, boot {}", short(previous_boot));
    let context = expected_vs_observed(before, &origin, &observed);
    let name = gpu_name(gpu);
    let mut found = Vec::new();
    let waits = pending_toward(gpu, before.mig_enabled);
    if before.mig_enabled && !gpu.mig_current && !waits {
        found.push(Detected {
            reason: DriftReason::MigModeLost,
            message: format!("{name}: MIG mode is disabled since the reboot: {context}"),
        });
    }
    if !before.instances.is_empty() && observed.instances.is_empty() && !waits {
        found.push(Detected {
            reason: DriftReason::GeometryLost,
            message: format!("{name}: no GPU instances since the reboot: {context}"),
        });
    }
    let mut what = String::new();
    if before.mig_enabled == observed.mig_enabled && before.mig_enabled {
        let _ = write!(what, " ({})", difference(&before.instances, &observed.instances));
    }
    found.push(Detected {
        reason: DriftReason::ChangedSinceReboot,
        message: format!(
            "{name}: geometry changed across the reboot (boot {} -> {}){what}: {context}",
            short(previous_boot),
            short(current_boot)
        ),
    });
    found
}

/// `mig_mode_pending`: the mode after the next reset differs from the one in force.
pub fn mig_mode_pending(gpu: &GpuSnapshot, reference: Reference<'_>) -> Option<Detected> {
    if gpu.mig_current == gpu.mig_pending {
        return None;
    }
    let mode = |on: bool| if on { "enabled" } else { "disabled" };
    let observed = Geometry::observed(gpu);
    let context = match reference {
        Reference::Desired { geometry, origin } => expected_vs_observed(geometry, origin, &observed),
        Reference::BeforeReboot {
            geometry,
            previous_boot,
            ..
        } => expected_vs_observed(
            geometry,
            &format!("last known good before the reboot, boot {}", short(previous_boot)),
            &observed,
        ),
        Reference::None => format!("observed {}", observed.describe()),
    };
    Some(Detected {
        reason: DriftReason::MigModePending,
        message: format!(
            "{}: MIG mode is {} now and {} after the next GPU reset; the change waits for a reset, \
             which the driver refuses while processes hold the GPU (drain the GPU or reboot): {context}",
            gpu_name(gpu),
            mode(gpu.mig_current),
            mode(gpu.mig_pending),
        ),
    })
}

/// `gi_without_ci`: GPU instances that CUDA cannot use, having no compute instance.
pub fn gi_without_ci(gpu: &GpuSnapshot) -> Option<Detected> {
    let bare: Vec<String> = gpu
        .gpu_instances
        .iter()
        .filter(|gi| gi.compute_instances.is_empty())
        .map(|gi| format!("{} ({})", gi.id, gi.profile))
        .collect();
    if bare.is_empty() {
        return None;
    }
    let (noun, verb) = if bare.len() == 1 {
        ("GPU instance", "has")
    } else {
        ("GPU instances", "have")
    };
    Some(Detected {
        reason: DriftReason::GiWithoutCi,
        message: format!(
            "{}: {noun} {} {verb} no compute instance, so CUDA cannot use {} \
             (nvidia-smi mig -cci creates one): observed {}",
            gpu_name(gpu),
            bare.join(", "),
            if bare.len() == 1 { "it" } else { "them" },
            Geometry::observed(gpu).describe()
        ),
    })
}

/// `missing 1x 3g.40gb, 1x 1g.10gb; extra 1x 2g.20gb`.
fn difference(expected: &BTreeMap<String, u32>, observed: &BTreeMap<String, u32>) -> String {
    let mut missing = BTreeMap::new();
    let mut extra = BTreeMap::new();
    for profile in expected.keys().chain(observed.keys()) {
        let e = expected.get(profile).copied().unwrap_or(0);
        let o = observed.get(profile).copied().unwrap_or(0);
        if e > o {
            missing.insert(profile.clone(), e - o);
        } else if o > e {
            extra.insert(profile.clone(), o - e);
        }
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {}", describe_counts(&missing)));
    }
    if !extra.is_empty() {
        parts.push(format!("extra {}", describe_counts(&extra)));
    }
    if parts.is_empty() {
        "same instances".to_string()
    } else {
        parts.join("; ")
    }
}

/// The first 8 characters of a boot id: enough to tell two boots apart in a message.
fn short(boot_id: &str) -> &str {
    boot_id.get(..8).unwrap_or(boot_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::sim::reading_from_world;
    use mig_model::{Product, World};

    /// GPU 0 of a one-GPU node after `setup`.
    fn gpu_after(product: Product, setup: impl FnOnce(&mut World)) -> GpuSnapshot {
        let mut world = World::new("node", product, 1);
        setup(&mut world);
        reading_from_world(&world).gpus.remove(0)
    }

    fn with_instances(world: &mut World, profiles: &[u32], with_ci: bool) {
        let gpu = &mut world.gpus[0];
        gpu.set_mig_mode(true);
        for &p in profiles {
            let gi = gpu.create_gpu_instance(p, None).unwrap();
            if with_ci {
                gpu.create_compute_instance(gi, None).unwrap();
            }
        }
    }

    fn want(mig: bool, counts: &[(&str, u32)]) -> Geometry {
        Geometry {
            mig_enabled: mig,
            instances: counts.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        }
    }

    fn reasons(found: &[Detected]) -> Vec<DriftReason> {
        found.iter().map(|d| d.reason).collect()
    }

    const ORIGIN: &str = "config 'all-1g.10gb' in /etc/mig.yaml";

    #[test]
    fn hopper_reboot_against_desired_is_mig_mode_lost_and_geometry_lost() {
        let gpu = gpu_after(Product::H100_80GB, |w| {
            with_instances(w, &[19; 7], true);
            w.reboot();
        });
        let expected = want(true, &[("1g.10gb", 7)]);
        let found = detect(
            &gpu,
            Reference::Desired {
                geometry: &expected,
                origin: ORIGIN,
            },
        );
        assert_eq!(
            reasons(&found),
            [DriftReason::MigModeLost, DriftReason::GeometryLost]
        );
        for d in &found {
            assert!(
                d.message.contains("GPU 0 (GPU-")
                    && d.message.contains("expected MIG enabled, 7x 1g.10gb")
                    && d.message.contains("observed MIG disabled")
                    && d.message.contains(ORIGIN),
                "{}",
                d.message
            );
        }
    }

    #[test]
    fn ampere_reboot_against_desired_is_geometry_lost_only() {
        let gpu = gpu_after(Product::A100Sxm4_40GB, |w| {
            with_instances(w, &[19; 7], true);
            w.reboot();
        });
        let expected = want(true, &[("1g.5gb", 7)]);
        let found = against_desired(&gpu, &expected, ORIGIN);
        assert_eq!(reasons(&found), [DriftReason::GeometryLost]);
        assert!(
            found[0]
                .message
                .contains("observed MIG enabled, no GPU instances"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn partial_layout_is_profile_mismatch_naming_missing_and_extra_profiles() {
        // Wanted 2x 3g.40gb + 1x 1g.10gb; got one 3g.40gb and a 2g.20gb.
        let gpu = gpu_after(Product::H100_80GB, |w| with_instances(w, &[9, 14], true));
        let expected = want(true, &[("3g.40gb", 2), ("1g.10gb", 1)]);
        let found = against_desired(&gpu, &expected, ORIGIN);
        assert_eq!(reasons(&found), [DriftReason::ProfileMismatch]);
        let m = &found[0].message;
        assert!(
            m.contains("missing 1x 1g.10gb, 1x 3g.40gb; extra 1x 2g.20gb")
                && m.contains("expected MIG enabled, 1x 1g.10gb, 2x 3g.40gb")
                && m.contains("observed MIG enabled, 1x 2g.20gb, 1x 3g.40gb"),
            "{m}"
        );
    }

    #[test]
    fn matching_layout_has_no_findings_whatever_the_placements() {
        let gpu = gpu_after(Product::H100_80GB, |w| with_instances(w, &[19, 9, 19], true));
        let expected = want(true, &[("1g.10gb", 2), ("3g.40gb", 1)]);
        assert!(detect(
            &gpu,
            Reference::Desired {
                geometry: &expected,
                origin: ORIGIN
            }
        )
        .is_empty());
        let off = gpu_after(Product::H100_80GB, |_| {});
        assert!(detect(
            &off,
            Reference::Desired {
                geometry: &Geometry::disabled(),
                origin: ORIGIN
            }
        )
        .is_empty());
    }

    #[test]
    fn mig_enabled_where_the_config_wants_it_disabled_is_unexpected_mig() {
        let gpu = gpu_after(Product::H100_80GB, |w| with_instances(w, &[9], true));
        let found = against_desired(&gpu, &Geometry::disabled(), ORIGIN);
        assert_eq!(reasons(&found), [DriftReason::UnexpectedMig]);
        assert!(
            found[0]
                .message
                .contains("expected MIG disabled (config 'all-1g.10gb' in /etc/mig.yaml); observed MIG enabled, 1x 3g.40gb"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn gi_created_without_ci_is_gi_without_ci_naming_each_instance() {
        let gpu = gpu_after(Product::H100_80GB, |w| {
            with_instances(w, &[19], true);
            with_instances(w, &[9, 14], false);
        });
        let found = detect(&gpu, Reference::None);
        assert_eq!(reasons(&found), [DriftReason::GiWithoutCi]);
        let m = &found[0].message;
        let bare: Vec<String> = gpu
            .gpu_instances
            .iter()
            .filter(|gi| gi.profile != "1g.10gb")
            .map(|gi| format!("{} ({})", gi.id, gi.profile))
            .collect();
        assert_eq!(bare.len(), 2);
        assert!(
            m.contains(&format!(
                "GPU instances {} have no compute instance",
                bare.join(", ")
            )) && !m.contains("(1g.10gb)"),
            "{m}"
        );
        let healthy = gpu_after(Product::H100_80GB, |w| with_instances(w, &[9], true));
        assert_eq!(gi_without_ci(&healthy), None);
    }

    #[test]
    fn refused_ampere_enable_is_mig_mode_pending_only() {
        let gpu = gpu_after(Product::A100Sxm4_40GB, |w| {
            w.gpus[0].clients = 1;
            w.gpus[0].set_mig_mode(true);
        });
        assert!(!gpu.mig_current && gpu.mig_pending);
        let expected = want(true, &[("1g.5gb", 7)]);
        let found = detect(
            &gpu,
            Reference::Desired {
                geometry: &expected,
                origin: ORIGIN,
            },
        );
        assert_eq!(reasons(&found), [DriftReason::MigModePending]);
        let m = &found[0].message;
        assert!(
            m.contains("MIG mode is disabled now and enabled after the next GPU reset")
                && m.contains("expected MIG enabled, 7x 1g.5gb"),
            "{m}"
        );
        // Without a reference the pending mode is still a finding.
        assert_eq!(
            reasons(&detect(&gpu, Reference::None)),
            [DriftReason::MigModePending]
        );
    }

    #[test]
    fn refused_disable_against_a_disabled_config_is_mig_mode_pending_not_unexpected_mig() {
        let gpu = gpu_after(Product::A100Sxm4_40GB, |w| {
            with_instances(w, &[19], true);
            w.gpus[0].clients = 1;
            w.gpus[0].set_mig_mode(false);
        });
        let found = detect(
            &gpu,
            Reference::Desired {
                geometry: &Geometry::disabled(),
                origin: ORIGIN,
            },
        );
        assert_eq!(reasons(&found), [DriftReason::MigModePending]);
    }

    #[test]
    fn hopper_reboot_against_last_known_good_is_changed_since_reboot_with_what_was_lost() {
        let before = want(true, &[("1g.10gb", 7)]);
        let gpu = gpu_after(Product::H100_80GB, |w| {
            with_instances(w, &[19; 7], true);
            w.reboot();
        });
        let found = detect(
            &gpu,
            Reference::BeforeReboot {
                geometry: &before,
                previous_boot: "11111111-aaaa",
                current_boot: "22222222-bbbb",
            },
        );
        assert_eq!(
            reasons(&found),
            [
                DriftReason::MigModeLost,
                DriftReason::GeometryLost,
                DriftReason::ChangedSinceReboot
            ]
        );
        let m = &found[2].message;
        assert!(
            m.contains("boot 11111111 -> 22222222")
                && m.contains("expected MIG enabled, 7x 1g.10gb (last known good before the reboot")
                && m.contains("observed MIG disabled"),
            "{m}"
        );
    }

    #[test]
    fn ampere_reboot_against_last_known_good_keeps_mig_mode() {
        let before = want(true, &[("1g.5gb", 7)]);
        let gpu = gpu_after(Product::A100Sxm4_40GB, |w| {
            with_instances(w, &[19; 7], true);
            w.reboot();
        });
        let found = against_last_known_good(&gpu, &before, "a", "b");
        assert_eq!(
            reasons(&found),
            [DriftReason::GeometryLost, DriftReason::ChangedSinceReboot]
        );
        assert!(
            found[1].message.contains("missing 7x 1g.5gb"),
            "{}",
            found[1].message
        );
    }

    #[test]
    fn the_same_geometry_after_a_reboot_is_no_finding() {
        let gpu = gpu_after(Product::H100_80GB, |w| with_instances(w, &[9, 9], true));
        let before = Geometry::observed(&gpu);
        assert!(against_last_known_good(&gpu, &before, "a", "b").is_empty());
    }

    #[test]
    fn observed_profiles_are_compared_by_canonical_name() {
        assert_eq!(canonical_profile("MIG 1g.10gb+me"), "1g.10gb+me");
        assert_eq!(canonical_profile(" 3g.40gb"), "3g.40gb");
        assert_eq!(canonical_profile("odd"), "odd");
    }
}
