use crate::product::{Architecture, ProductSpec};

/// NVIDIA A100 80GB PCIe (NVML name "NVIDIA A100 80GB PCIe").
/// The same GA100 chip and profile table as the A100-SXM4-80GB: the table is
/// shared with [`super::a100_80gb`], not copied.
// Read: name and PCI id 0x20B510DE from the NVIDIA Linux driver README's
// supported-GPU table ("NVIDIA A100 80GB PCIe", 20B5), also in mig-parted's
// A100-80GB device filter. The 81920 MiB total is from real `nvidia-smi`
// output of A100 80GB PCIe cards. A real MIG-enabled A100 80GB PCIe (driver
// 545.23.08, an HPC site's published `nvidia-smi`) shows a 1g.10gb MIG device
// of 9728 MiB with 14 SMs, 1 CE and no DEC: the shared table's 1g.10gb row.
// The a100_80gb table itself was read mostly off postings of PCIe cards (see
// its header), which is why the two share it.
//
// Derived, not read:
// - The other rows: the shared A100 80GB rows, whose GiB column drifts by
//   ±0.25 between driver releases.
// - profiles_since_driver: the A100 note of the MIG user guide (1g.20gb, the
//   one-slice two-slot profile, from R525), as for the SXM4 part.
pub static SPEC: ProductSpec = ProductSpec {
    slug: "a100-pcie-80gb",
    name: "NVIDIA A100 80GB PCIe",
    architecture: Architecture::Ampere,
    pci_device_id: 0x20B5_10DE,
    memory_mib: 81920,
    sm_count: 108,
    compute_slices: 7,
    memory_slots: 8,
    profiles: super::a100_80gb::SPEC.profiles,
    profiles_since_driver: super::a100_80gb::SPEC.profiles_since_driver,
};

#[cfg(test)]
mod tests {
    use super::SPEC;

    #[test]
    fn a100_pcie_80gb_shares_the_sxm4_table() {
        // Its rows are the a100_80gb table (the spec reads them from there).
        assert_eq!(SPEC.profiles, super::super::a100_80gb::SPEC.profiles);
        // The row the real PCIe card showed (9728 MiB, 14 SMs, 1 CE).
        let rows = super::super::pinned_rows(&SPEC);
        let one = (
            19,
            0,
            1,
            1,
            14,
            9728,
            7,
            (1, 0, 0, 0, 0),
            vec![0, 1, 2, 3, 4, 5, 6],
        );
        assert!(rows.contains(&one));
        assert_eq!(SPEC.profiles_since_driver, &[(15, 525)]);
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA A100 80GB PCIe", 0x20B5_10DE, 81920, 108)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
