//! What the kubelet advertises for NVIDIA's k8s-device-plugin: resource name
//! → device ids, and the plugin's naming rules that drift judges it by. The
//! kubelet source builds an [`Advertised`] from its `GetAllocatableResources`
//! answer; drift reads only this type, never the source.

use std::collections::{BTreeMap, BTreeSet};

/// The resource whole GPUs (and, with strategy `single`, MIG devices) are
/// advertised as.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Strategy `mixed`: `nvidia.com/mig-3g.40gb`.
pub const MIG_RESOURCE_PREFIX: &str = "nvidia.com/mig-";
/// What time-slicing and MPS with `renameByDefault` append to a shared
/// resource's name: NVIDIA/k8s-device-plugin api/config/v1/consts.go,
/// `DefaultSharedResourceNameSuffix`, applied by `ResourceName.DefaultSharedRename`
/// (api/config/v1/resources.go) when `ReplicatedResources.UnmarshalJSON`
/// (api/config/v1/replicas.go) finds `renameByDefault` with no `rename`.
pub const SHARED_SUFFIX: &str = ".shared";

/// The resource NVIDIA's device plugin advertises a MIG device of `profile`
/// under with strategy `mixed`: `1g.10gb+me` → `nvidia.com/mig-1g.10gb.me`.
///
/// NVIDIA/k8s-device-plugin internal/rm/rm.go, `AddDefaultResourcesToConfig`:
/// `"mig-" + profile` with every `+` replaced by `.`, because
/// `NewResourceName` (api/config/v1/resources.go) rejects a name that is not
/// a DNS subdomain (kubernetes/apimachinery pkg/api/validation, `NameIsDNSSubdomain`: lower-case
/// letters, digits, `-` and `.`), and `+` is none of those. Profile names are
/// go-nvlib's `MigProfileInfo.String` (`<g>g.<gb>gb`, then `+me`, `+me.all`,
/// `+gfx` or `-me`), so no other character needs replacing: `-` is kept.
pub fn mig_resource(profile: &str) -> String {
    format!("{MIG_RESOURCE_PREFIX}{}", profile.replace('+', "."))
}

/// `resource` without the suffix sharing with `renameByDefault` adds:
/// `nvidia.com/mig-1g.10gb.shared` → `nvidia.com/mig-1g.10gb`.
pub fn unshared(resource: &str) -> &str {
    resource.strip_suffix(SHARED_SUFFIX).unwrap_or(resource)
}

/// Whether `resource` is one NVIDIA's device plugin advertises GPUs or MIG
/// devices as, shared or not.
pub fn is_nvidia_resource(resource: &str) -> bool {
    let base = unshared(resource);
    base == GPU_RESOURCE || base.starts_with(MIG_RESOURCE_PREFIX)
}

/// A device id without its replica suffix: `MIG-…::3` → `MIG-…`.
/// NVIDIA/k8s-device-plugin internal/rm/devices.go, `NewAnnotatedID`: a
/// replica of a shared device is `<id>::<replica>`.
pub fn device_id(id: &str) -> &str {
    id.split_once("::").map_or(id, |(base, _)| base).trim()
}

/// Whether `id` is a GPU or MIG UUID, the only ids NVIDIA's device plugin
/// advertises: NVIDIA/k8s-device-plugin internal/rm/devices.go, `BuildDevice`,
/// sets every device's id to its UUID whatever the `deviceIDStrategy`; that
/// strategy changes only the ids handed to the container at `Allocate`
/// (internal/plugin/server.go, `uniqueDeviceIDsFromAnnotatedDeviceIDs`).
pub fn is_device_uuid(id: &str) -> bool {
    id.starts_with("GPU-") || id.starts_with("MIG-")
}

/// The devices the kubelet advertises: NVIDIA resource name (as advertised,
/// `.shared` included) → distinct device ids (replica suffixes stripped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertised {
    pub resources: BTreeMap<String, BTreeSet<String>>,
    /// The kubelet did not answer the latest read: this is what it
    /// advertised when it last did.
    pub held: bool,
}

impl Advertised {
    /// From `(resource name, device ids)` pairs as the kubelet lists them:
    /// resources that are not NVIDIA's are left out, replica suffixes stripped.
    pub fn from_devices<'a>(devices: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Advertised {
        let mut resources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (resource, ids) in devices {
            if is_nvidia_resource(resource) {
                resources
                    .entry(resource.to_string())
                    .or_default()
                    .extend(ids.iter().map(|id| device_id(id).to_string()));
            }
        }
        Advertised {
            resources,
            held: false,
        }
    }

    /// `mixed` when any `nvidia.com/mig-*` resource (shared or not) is advertised.
    pub fn strategy(&self) -> Strategy {
        if self
            .resources
            .keys()
            .any(|r| unshared(r).starts_with(MIG_RESOURCE_PREFIX))
        {
            Strategy::Mixed
        } else {
            Strategy::Single
        }
    }

    /// Why these devices cannot be judged against the GPUs, when they
    /// cannot: ids that are no GPU or MIG UUID name no device the exporter
    /// knows, so every device would look unadvertised.
    pub fn not_judged(&self) -> Option<String> {
        let foreign: Vec<String> = self
            .resources
            .iter()
            .flat_map(|(resource, ids)| ids.iter().map(move |id| (resource, id)))
            .filter(|(_, id)| !is_device_uuid(id))
            .map(|(resource, id)| format!("{id} ({resource})"))
            .collect();
        if foreign.is_empty() {
            return None;
        }
        const SHOWN: usize = 4;
        let more = foreign.len().saturating_sub(SHOWN);
        Some(format!(
            "the kubelet advertises NVIDIA devices by ids that are not GPU or MIG UUIDs ({}{}); \
             NVIDIA's k8s-device-plugin advertises UUIDs whatever its deviceIDStrategy, so these \
             come from another device plugin and cannot be matched to the GPUs",
            foreign[..foreign.len().min(SHOWN)].join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ))
    }
}

/// The device plugin's MIG strategy, told from the resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// MIG devices (and whole GPUs) as `nvidia.com/gpu`.
    Single,
    /// MIG devices as `nvidia.com/mig-<profile>`, whole GPUs as `nvidia.com/gpu`.
    Mixed,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Single => "single",
            Strategy::Mixed => "mixed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_suffixes_are_stripped() {
        assert_eq!(device_id("MIG-abc::3"), "MIG-abc");
        assert_eq!(device_id("GPU-abc"), "GPU-abc");
    }

    #[test]
    fn plus_becomes_a_dot_in_mig_resource_names() {
        assert_eq!(mig_resource("1g.10gb+me"), "nvidia.com/mig-1g.10gb.me");
        assert_eq!(mig_resource("1g.24gb+me.all"), "nvidia.com/mig-1g.24gb.me.all");
        assert_eq!(mig_resource("2g.48gb+gfx"), "nvidia.com/mig-2g.48gb.gfx");
        assert_eq!(mig_resource("1g.23gb-me"), "nvidia.com/mig-1g.23gb-me");
        assert_eq!(mig_resource("3g.40gb"), "nvidia.com/mig-3g.40gb");
    }

    #[test]
    fn shared_resources_are_nvidia_resources_of_their_base() {
        assert!(is_nvidia_resource("nvidia.com/gpu.shared"));
        assert!(is_nvidia_resource("nvidia.com/mig-1g.10gb.me.shared"));
        assert!(!is_nvidia_resource("example.com/gpu"));
        assert_eq!(
            unshared("nvidia.com/mig-1g.10gb.shared"),
            "nvidia.com/mig-1g.10gb"
        );
        assert_eq!(unshared("nvidia.com/gpu"), "nvidia.com/gpu");
    }

    #[test]
    fn strategy_is_told_from_the_resource_names() {
        let of = |names: &[&str]| Advertised {
            resources: names.iter().map(|n| (n.to_string(), BTreeSet::new())).collect(),
            held: false,
        };
        assert_eq!(of(&["nvidia.com/gpu"]).strategy(), Strategy::Single);
        assert_eq!(of(&["nvidia.com/gpu.shared"]).strategy(), Strategy::Single);
        assert_eq!(
            of(&["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]).strategy(),
            Strategy::Mixed
        );
        assert_eq!(of(&["nvidia.com/mig-1g.10gb.shared"]).strategy(), Strategy::Mixed);
    }

    #[test]
    fn ids_that_are_not_uuids_are_not_judged_and_say_why() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let uuids = ids(&["GPU-a", "MIG-b::1"]);
        let advertised = Advertised::from_devices([("nvidia.com/gpu", uuids.as_slice())]);
        assert_eq!(advertised.not_judged(), None);
        let indexes = ids(&["0", "1:0::2"]);
        let advertised = Advertised::from_devices([
            ("nvidia.com/gpu", uuids.as_slice()),
            ("nvidia.com/gpu.shared", indexes.as_slice()),
        ]);
        let why = advertised.not_judged().expect("not judged");
        assert!(
            why.contains("0 (nvidia.com/gpu.shared), 1:0 (nvidia.com/gpu.shared)"),
            "{why}"
        );
    }

    #[test]
    fn only_nvidia_resources_are_kept() {
        let ids = vec!["MIG-a::0".to_string(), "MIG-a::1".to_string()];
        let other = vec!["x".to_string()];
        let advertised = Advertised::from_devices([
            ("nvidia.com/mig-1g.10gb.shared", ids.as_slice()),
            ("example.com/fpga", other.as_slice()),
        ]);
        assert_eq!(
            advertised.resources.keys().collect::<Vec<_>>(),
            ["nvidia.com/mig-1g.10gb.shared"]
        );
        assert_eq!(
            advertised.resources["nvidia.com/mig-1g.10gb.shared"]
                .iter()
                .collect::<Vec<_>>(),
            ["MIG-a"]
        );
    }
}
