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
    fn h200_nvl_table_is_pinned() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.18gb",
                "MIG 1g.18gb+me",
                "MIG 1g.35gb",
                "MIG 2g.35gb",
                "MIG 3g.71gb",
                "MIG 4g.71gb",
                "MIG 7g.141gb"
            ]
        );
        assert_eq!(
            super::super::pinned_rows(&SPEC),
            vec![
                (
                    19,
                    0,
                    1,
                    1,
                    16,
                    16384,
                    7,
                    (1, 1, 0, 1, 0),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (
                    20,
                    7,
                    1,
                    1,
                    16,
                    16384,
                    1,
                    (1, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 26, 33024, 4, (1, 1, 0, 1, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 32, 33024, 3, (2, 2, 0, 2, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 60, 71168, 2, (3, 3, 0, 3, 0), vec![0, 4]),
                (5, 3, 4, 4, 64, 71168, 1, (4, 4, 0, 4, 0), vec![0]),
                (0, 4, 7, 8, 132, 143104, 1, (8, 7, 0, 7, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA H200 NVL", 0x233B_10DE, 143771, 132)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
