use crate::product::{Architecture, ProductSpec};

/// NVIDIA H200 NVL 141GB (NVML name "NVIDIA H200 NVL").
/// The same GH100 chip, memory and profile table as the H200 SXM: the table
/// is shared with [`super::h200`], not copied.
// Read: name and PCI id 0x233B10DE from the NVIDIA Linux driver README's
// supported-GPU table ("NVIDIA H200 NVL", 233B); mig-parted's default config
// gives "H200 141GB, H200 NVL" (0x233510DE, 0x233B10DE) one device filter with
// the same 1g.18gb / 2g.35gb / 3g.71gb profiles. The 143771 MiB total is from
// real `nvidia-smi` output of an H200 NVL, the same total as the H200 SXM's.
// Users' published runs on H200 NVL MIG devices name 1g.18gb, 1g.35gb,
// 2g.35gb and 3g.71gb slices, the H200 table's names.
//
// Derived, not read:
// - Every row: no H200 NVL `nvidia-smi mig -lgip` was found; they are the
//   H200 SXM rows (see h200.rs for what those were read from).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "h200-nvl-141gb",
    name: "NVIDIA H200 NVL",
    architecture: Architecture::Hopper,
    pci_device_id: 0x233B_10DE,
    memory_mib: 143771,
    sm_count: 132,
    compute_slices: 7,
    memory_slots: 8,
    profiles: super::h200::SPEC.profiles,
    profiles_since_driver: super::h200::SPEC.profiles_since_driver,
};

#[cfg(test)]
mod tests {
    use super::SPEC;

    #[test]
    fn h200_nvl_shares_the_h200_table() {
        // Its rows are the h200 table (the spec reads them from there).
        assert_eq!(SPEC.profiles, super::super::h200::SPEC.profiles);
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA H200 NVL", 0x233B_10DE, 143771, 132)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
