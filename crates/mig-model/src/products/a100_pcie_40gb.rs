use crate::product::{Architecture, ProductSpec};

/// NVIDIA A100 PCIe 40GB (NVML name "NVIDIA A100-PCIE-40GB").
/// The same GA100 chip and profile table as the A100-SXM4-40GB: the table is
/// shared with [`super::a100_40gb`], not copied.
// Read: name and PCI id 0x20F110DE from the NVIDIA Linux driver README's
// supported-GPU table ("NVIDIA A100-PCIE-40GB", 20F1); mig-parted's
// A100-40GB device filter lists 0x20F110DE as well (next to 0x20B110DE, the
// other A100 PCIe 40GB id in pci.ids). The 40960 MiB total is from real
// `nvidia-smi` output of A100-PCIE-40GB cards. A real MIG-enabled
// A100-PCIE-40GB (driver 570.124.06, an HPC site's published `nvidia-smi`)
// shows a 3g.20gb MIG device of 20096 MiB with 42 SMs, 3 CE and 2 DEC:
// the SXM4 table's 3g.20gb row exactly.
// sm_count 108: the A100's SM count, as for the SXM4 part.
//
// Derived, not read:
// - Every other row: no A100-PCIE-40GB `-lgip`/`-lgipp` was found; they are
//   the A100-SXM4-40GB rows (same chip, same 1/7 and 1/8 geometry, and the
//   MIG user guide's A100 table covers both form factors).
// - profiles_since_driver: the A100 note of the MIG user guide (1g.10gb from
//   R525), as for the SXM4 part.
pub static SPEC: ProductSpec = ProductSpec {
    slug: "a100-pcie-40gb",
    name: "NVIDIA A100-PCIE-40GB",
    architecture: Architecture::Ampere,
    pci_device_id: 0x20F1_10DE,
    memory_mib: 40960,
    sm_count: 108,
    compute_slices: 7,
    memory_slots: 8,
    profiles: super::a100_40gb::SPEC.profiles,
    profiles_since_driver: super::a100_40gb::SPEC.profiles_since_driver,
};

#[cfg(test)]
mod tests {
    use super::SPEC;

    #[test]
    fn a100_pcie_40gb_shares_the_sxm4_table() {
        // Its rows are the a100_40gb table (the spec reads them from there).
        assert_eq!(SPEC.profiles, super::super::a100_40gb::SPEC.profiles);
        // The row the real PCIe card showed (20096 MiB, 42 SMs, 3 CE, 2 DEC).
        let rows = super::super::pinned_rows(&SPEC);
        assert!(rows.contains(&(9, 2, 3, 4, 42, 20096, 2, (3, 2, 0, 0, 0), vec![0, 4])));
        assert_eq!(SPEC.profiles_since_driver, &[(15, 525)]);
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA A100-PCIE-40GB", 0x20F1_10DE, 40960, 108)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
