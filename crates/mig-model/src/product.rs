//! MIG-capable products and their profile tables.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::products;
use crate::profile::{ci_profiles, CiProfile, GiProfile, ProfileName};

/// GPU architecture, which decides what survives a reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Ampere,
    Hopper,
    Blackwell,
}

impl Architecture {
    /// Ampere stores MIG mode in the InfoROM, so it survives a reboot; Hopper
    /// and newer have no such bit and come back with MIG disabled.
    pub fn mig_mode_survives_reboot(self) -> bool {
        matches!(self, Architecture::Ampere)
    }

    /// Ampere needs a GPU reset to change MIG mode, refused while clients are
    /// attached; Hopper and newer switch without a reset.
    pub fn mig_toggle_needs_reset(self) -> bool {
        matches!(self, Architecture::Ampere)
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Architecture::Ampere => "Ampere",
            Architecture::Hopper => "Hopper",
            Architecture::Blackwell => "Blackwell",
        })
    }
}

/// The MIG-capable products this model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Product {
    #[serde(rename = "a30-24gb")]
    A30_24GB,
    #[serde(rename = "a100-sxm4-40gb")]
    A100Sxm4_40GB,
    #[serde(rename = "a100-80gb")]
    A100_80GB,
    #[serde(rename = "h100-80gb")]
    H100_80GB,
    #[serde(rename = "h200-141gb")]
    H200_141GB,
    #[serde(rename = "b200-180gb")]
    B200_180GB,
    #[serde(rename = "rtx-pro-6000-96gb")]
    RtxPro6000Blackwell96GB,
}

/// Static facts of one product.
#[derive(Debug)]
pub struct ProductSpec {
    pub product: Product,
    /// The name NVML reports (`nvmlDeviceGetName`).
    pub name: &'static str,
    pub architecture: Architecture,
    /// PCI device id as NVML reports it (`pciDeviceId`, e.g. 0x233010DE).
    pub pci_device_id: u32,
    /// Total framebuffer as NVML's memory info reports it, in MiB.
    pub memory_mib: u64,
    pub sm_count: u32,
    /// SM slices a GPU divides into (7, or 4 on A30 and RTX PRO 6000).
    pub compute_slices: u32,
    /// Placement slots of the memory (8; 4 on A30; 12 on RTX PRO 6000, where
    /// each quarter of the memory spans 3 slots, as its NVML placements show).
    pub memory_slots: u32,
    /// GPU-instance profiles in `nvidia-smi mig -lgip` order.
    pub profiles: &'static [GiProfile],
}

impl Product {
    pub const ALL: [Product; 7] = [
        Product::A30_24GB,
        Product::A100Sxm4_40GB,
        Product::A100_80GB,
        Product::H100_80GB,
        Product::H200_141GB,
        Product::B200_180GB,
        Product::RtxPro6000Blackwell96GB,
    ];

    pub fn spec(self) -> &'static ProductSpec {
        match self {
            Product::A30_24GB => &products::a30::SPEC,
            Product::A100Sxm4_40GB => &products::a100_40gb::SPEC,
            Product::A100_80GB => &products::a100_80gb::SPEC,
            Product::H100_80GB => &products::h100::SPEC,
            Product::H200_141GB => &products::h200::SPEC,
            Product::B200_180GB => &products::b200::SPEC,
            Product::RtxPro6000Blackwell96GB => &products::rtx_pro_6000::SPEC,
        }
    }

    /// The command-line name (`h100-80gb`).
    pub fn slug(self) -> &'static str {
        match self {
            Product::A30_24GB => "a30-24gb",
            Product::A100Sxm4_40GB => "a100-sxm4-40gb",
            Product::A100_80GB => "a100-80gb",
            Product::H100_80GB => "h100-80gb",
            Product::H200_141GB => "h200-141gb",
            Product::B200_180GB => "b200-180gb",
            Product::RtxPro6000Blackwell96GB => "rtx-pro-6000-96gb",
        }
    }

    pub fn profile_by_id(self, id: u32) -> Option<&'static GiProfile> {
        self.spec().profiles.iter().find(|p| p.id == id)
    }

    pub fn profile_by_name(self, name: &ProfileName) -> Option<&'static GiProfile> {
        self.spec().profiles.iter().find(|p| p.name == *name)
    }

    /// Resolves what `nvidia-smi mig -cgi` accepts: a profile id or a name.
    pub fn resolve_profile(self, id_or_name: &str) -> Result<&'static GiProfile, UnknownProfile> {
        let unknown = || UnknownProfile {
            product: self,
            input: id_or_name.to_string(),
        };
        let s = id_or_name.trim();
        if let Ok(id) = s.parse::<u32>() {
            return self.profile_by_id(id).ok_or_else(unknown);
        }
        let name: ProfileName = s.parse().map_err(|_| unknown())?;
        self.profile_by_name(&name).ok_or_else(unknown)
    }

    /// Compute-instance profiles available inside a GI of `gi`.
    pub fn ci_profiles(self, gi: &GiProfile) -> Vec<CiProfile> {
        ci_profiles(gi, self.spec().profiles)
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// A profile id or name the product does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{product} has no GPU instance profile '{input}' (known: {})", known_profiles(*.product))]
pub struct UnknownProfile {
    pub product: Product,
    pub input: String,
}

fn known_profiles(product: Product) -> String {
    product
        .spec()
        .profiles
        .iter()
        .map(|p| format!("{} ({})", p.id, p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown product '{0}' (known: a30-24gb, a100-sxm4-40gb, a100-80gb, h100-80gb, h200-141gb, b200-180gb, rtx-pro-6000-96gb)")]
pub struct UnknownProduct(pub String);

impl FromStr for Product {
    type Err = UnknownProduct;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Product::ALL
            .into_iter()
            .find(|p| p.slug() == s)
            .ok_or_else(|| UnknownProduct(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Invariants every product table must hold, whatever its source.
    #[test]
    fn every_table_is_self_consistent() {
        for product in Product::ALL {
            let spec = product.spec();
            assert_eq!(spec.product, product);
            assert!(!spec.profiles.is_empty(), "{product} has no profiles");
            for p in spec.profiles {
                assert_eq!(p.name.compute_slices, p.compute_slices, "{product} {}", p.name);
                assert!(p.compute_slices <= spec.compute_slices, "{product} {}", p.name);
                assert!(!p.placement_starts.is_empty(), "{product} {}", p.name);
                for s in p.placement_starts {
                    assert!(
                        s + p.memory_slices <= spec.memory_slots,
                        "{product} {} start {s}",
                        p.name
                    );
                    assert_eq!(
                        s % p.memory_slices.min(spec.memory_slots),
                        0,
                        "{product} {} unaligned",
                        p.name
                    );
                }
                assert!(
                    p.max_instances as usize <= p.placement_starts.len(),
                    "{product} {}",
                    p.name
                );
                assert!(p.memory_mib <= spec.memory_mib, "{product} {}", p.name);
                assert!(p.sm_count <= spec.sm_count, "{product} {}", p.name);
                assert_eq!(product.resolve_profile(&p.id.to_string()).unwrap().id, p.id);
                assert_eq!(product.resolve_profile(&p.name.to_string()).unwrap().id, p.id);
            }
            let mut ids: Vec<_> = spec.profiles.iter().map(|p| p.id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), spec.profiles.len(), "{product} has duplicate ids");
            assert_eq!(product.slug().parse::<Product>().unwrap(), product);
        }
    }

    #[test]
    fn unknown_profile_names_the_input_and_the_choices() {
        let e = Product::H100_80GB.resolve_profile("3g.20gb").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("'3g.20gb'") && msg.contains("9 (3g.40gb)"), "{msg}");
        assert!(Product::H100_80GB.resolve_profile("42").is_err());
        assert!("h100".parse::<Product>().is_err());
    }
}
