//! MIG-capable products and their profile tables.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::products;
use crate::profile::{ci_profiles, CiProfile, GiProfile, ProfileName};
use crate::table::ProductTable;

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

/// A MIG-capable product: one of the tables compiled in (the named variants),
/// or a table a World file carries inline for a GPU the project has none for.
///
/// Two products are equal when they are the same table: compiled-in tables
/// are statics and inline ones are interned ([`ProductTable::intern`]), so
/// comparing table addresses compares contents.
#[derive(Debug, Clone, Copy)]
pub enum Product {
    A30_24GB,
    A100Sxm4_40GB,
    A100Pcie40GB,
    A100_80GB,
    A100Pcie80GB,
    H100_80GB,
    H100Pcie80GB,
    H100Nvl94GB,
    Gh200_96GB,
    Gh200_144GB,
    H20_96GB,
    H200_141GB,
    H200Nvl141GB,
    B200_180GB,
    Gb200_186GB,
    RtxPro6000Blackwell96GB,
    /// A table read from a World file (`"product": { ... }`), not compiled in.
    Inline(&'static ProductSpec),
}

/// Static facts of one product.
#[derive(Debug)]
pub struct ProductSpec {
    /// The command-line and World-file name (`h100-80gb`).
    pub slug: &'static str,
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
    /// `(profile id, driver branch)` for profiles a driver offers only from
    /// that branch on (e.g. the A100's `1g.10gb` from R525); every other
    /// profile is offered by every MIG-capable driver.
    pub profiles_since_driver: &'static [(u32, u32)],
}

impl ProductSpec {
    pub fn profile_by_id(&self, id: u32) -> Option<&GiProfile> {
        self.profiles.iter().find(|p| p.id == id)
    }

    pub fn profile_by_name(&self, name: &ProfileName) -> Option<&GiProfile> {
        self.profiles.iter().find(|p| p.name == *name)
    }

    /// The first driver branch that offers profile `id` (0: every branch).
    pub fn first_driver_branch(&self, id: u32) -> u32 {
        self.profiles_since_driver
            .iter()
            .find(|(profile, _)| *profile == id)
            .map_or(0, |(_, branch)| *branch)
    }

    /// Whether a driver of `driver_version` (`580.159.04`) offers profile `id`.
    pub fn offers(&self, id: u32, driver_version: &str) -> bool {
        crate::driver::branch(driver_version) >= self.first_driver_branch(id)
    }

    /// The profiles a driver of `driver_version` offers, in table order.
    pub fn profiles_offered(&self, driver_version: &str) -> impl Iterator<Item = &GiProfile> + use<'_> {
        let branch = crate::driver::branch(driver_version);
        self.profiles
            .iter()
            .filter(move |p| branch >= self.first_driver_branch(p.id))
    }

    /// The table's invariants ([`ProductTable::check`]).
    pub fn check(&self) -> Result<(), String> {
        ProductTable::from_spec(self).check()
    }
}

impl Product {
    /// The compiled-in products.
    pub const ALL: [Product; 16] = [
        Product::A30_24GB,
        Product::A100Sxm4_40GB,
        Product::A100Pcie40GB,
        Product::A100_80GB,
        Product::A100Pcie80GB,
        Product::H100_80GB,
        Product::H100Pcie80GB,
        Product::H100Nvl94GB,
        Product::Gh200_96GB,
        Product::Gh200_144GB,
        Product::H20_96GB,
        Product::H200_141GB,
        Product::H200Nvl141GB,
        Product::B200_180GB,
        Product::Gb200_186GB,
        Product::RtxPro6000Blackwell96GB,
    ];

    pub fn spec(self) -> &'static ProductSpec {
        match self {
            Product::A30_24GB => &products::a30::SPEC,
            Product::A100Sxm4_40GB => &products::a100_40gb::SPEC,
            Product::A100Pcie40GB => &products::a100_pcie_40gb::SPEC,
            Product::A100_80GB => &products::a100_80gb::SPEC,
            Product::A100Pcie80GB => &products::a100_pcie_80gb::SPEC,
            Product::H100_80GB => &products::h100::SPEC,
            Product::H100Pcie80GB => &products::h100_pcie::SPEC,
            Product::H100Nvl94GB => &products::h100_nvl::SPEC,
            Product::Gh200_96GB => &products::gh200_96gb::SPEC,
            Product::Gh200_144GB => &products::gh200_144gb::SPEC,
            Product::H20_96GB => &products::h20::SPEC,
            Product::H200_141GB => &products::h200::SPEC,
            Product::H200Nvl141GB => &products::h200_nvl::SPEC,
            Product::B200_180GB => &products::b200::SPEC,
            Product::Gb200_186GB => &products::gb200::SPEC,
            Product::RtxPro6000Blackwell96GB => &products::rtx_pro_6000::SPEC,
            Product::Inline(spec) => spec,
        }
    }

    /// The command-line name (`h100-80gb`).
    pub fn slug(self) -> &'static str {
        self.spec().slug
    }

    /// The compiled-in product NVML names `name` (`NVIDIA H100 80GB HBM3`).
    pub fn by_nvml_name(name: &str) -> Option<Product> {
        Product::ALL.into_iter().find(|p| p.spec().name == name)
    }

    pub fn profile_by_id(self, id: u32) -> Option<&'static GiProfile> {
        self.spec().profile_by_id(id)
    }

    pub fn profile_by_name(self, name: &ProfileName) -> Option<&'static GiProfile> {
        self.spec().profile_by_name(name)
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

impl PartialEq for Product {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.spec(), other.spec())
    }
}

impl Eq for Product {}

impl std::hash::Hash for Product {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.spec(), state)
    }
}

impl PartialOrd for Product {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Product {
    /// By slug, and two inline tables of one slug by address, so the order is total.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |p: &Product| (p.slug(), p.spec() as *const ProductSpec as usize);
        key(self).cmp(&key(other))
    }
}

/// A compiled-in product is written as its slug, an inline one as its table.
impl Serialize for Product {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Product::Inline(spec) => ProductTable::from_spec(spec).serialize(serializer),
            known => serializer.serialize_str(known.slug()),
        }
    }
}

impl<'de> Deserialize<'de> for Product {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Product;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a product name such as \"h100-80gb\", or an inline product table")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Product, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Product, A::Error> {
                let table = ProductTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                table.intern().map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
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
#[error("unknown product '{input}' (known: {known}; or an inline product table)", input = .0, known = known_products())]
pub struct UnknownProduct(pub String);

fn known_products() -> String {
    Product::ALL.map(Product::slug).join(", ")
}

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

    #[test]
    fn every_compiled_in_table_is_self_consistent() {
        for product in Product::ALL {
            let spec = product.spec();
            assert_eq!(spec.check(), Ok(()));
            for p in spec.profiles {
                // The compiled-in tables place every profile at multiples of its size.
                for s in p.placement_starts {
                    assert_eq!(
                        s % p.memory_slices.min(spec.memory_slots),
                        0,
                        "{product} {} unaligned",
                        p.name
                    );
                }
                assert_eq!(product.resolve_profile(&p.id.to_string()).unwrap().id, p.id);
                assert_eq!(product.resolve_profile(&p.name.to_string()).unwrap().id, p.id);
            }
            assert_eq!(product.slug().parse::<Product>().unwrap(), product);
            assert_eq!(Product::by_nvml_name(spec.name), Some(product));
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
