use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA H100 PCIe 80GB (NVML name "NVIDIA H100 PCIe"): the GH100 chip with
/// 114 SMs enabled, so its rows have fewer SMs than the SXM5 part's.
// Read off a real H100 PCIe on driver 570.169 (a published Scaleway
// walkthrough: `nvidia-smi`, `nvidia-smi mig -lgip`, `-cgi` and the MIG-device
// table): profile ids, instance counts, SMs (14 / 14 / 14 / 30 / 46 / 62 /
// 114), DEC/ENC/CE/JPEG/OFA, the GiB column (9.75 / 19.62 / 39.50 / 79.25),
// the 81559 MiB total, and 9984 MiB for a 1g.10gb MIG device. Name and PCI id
// 0x233110DE: the NVIDIA Linux driver README's supported-GPU table ("NVIDIA
// H100 PCIe", 2331), also in mig-parted's H100-80GB device filter.
//
// Derived, not read:
// - 20096 / 40448 / 81152 MiB: the real H100 80GB HBM3's values for the same
//   GiB column (19.62 / 39.50 / 79.25; see h100.rs), same chip and memory size.
// - Placements: no H100 PCIe `-lgipp` was found; they are the real H100 80GB
//   HBM3's (same GH100 chip, same instance counts and memory fractions).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "h100-pcie-80gb",
    name: "NVIDIA H100 PCIe",
    architecture: Architecture::Hopper,
    pci_device_id: 0x2331_10DE,
    memory_mib: 81559,
    sm_count: 114,
    compute_slices: 7,
    memory_slots: 8,
    profiles: &[
        GiProfile {
            id: 19,
            nvml_index: 0,
            name: ProfileName::new(1, 10),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 14,
            memory_mib: 9984,
            max_instances: 7,
            engines: Engines::new(1, 1, 0, 1, 0),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 20,
            nvml_index: 7,
            name: ProfileName::new(1, 10).with_media(MediaEngines::Extended),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 14,
            memory_mib: 9984,
            max_instances: 1,
            engines: Engines::new(1, 1, 0, 1, 1),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 15,
            nvml_index: 9,
            name: ProfileName::new(1, 20),
            compute_slices: 1,
            memory_slices: 2,
            sm_count: 14,
            memory_mib: 20096,
            max_instances: 4,
            engines: Engines::new(1, 1, 0, 1, 0),
            placement_starts: &[0, 2, 4, 6],
        },
        GiProfile {
            id: 14,
            nvml_index: 1,
            name: ProfileName::new(2, 20),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 30,
            memory_mib: 20096,
            max_instances: 3,
            engines: Engines::new(2, 2, 0, 2, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 40),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 46,
            memory_mib: 40448,
            max_instances: 2,
            engines: Engines::new(3, 3, 0, 3, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 40),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 62,
            memory_mib: 40448,
            max_instances: 1,
            engines: Engines::new(4, 4, 0, 4, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 80),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 114,
            memory_mib: 81152,
            max_instances: 1,
            engines: Engines::new(8, 7, 0, 7, 1),
            placement_starts: &[0],
        },
    ],
    profiles_since_driver: &[],
};

#[cfg(test)]
mod tests {
    use super::SPEC;

    #[test]
    fn h100_pcie_table_is_the_real_one() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.10gb",
                "MIG 1g.10gb+me",
                "MIG 1g.20gb",
                "MIG 2g.20gb",
                "MIG 3g.40gb",
                "MIG 4g.40gb",
                "MIG 7g.80gb"
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
                    14,
                    9984,
                    7,
                    (1, 1, 0, 1, 0),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (
                    20,
                    7,
                    1,
                    1,
                    14,
                    9984,
                    1,
                    (1, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 14, 20096, 4, (1, 1, 0, 1, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 30, 20096, 3, (2, 2, 0, 2, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 46, 40448, 2, (3, 3, 0, 3, 0), vec![0, 4]),
                (5, 3, 4, 4, 62, 40448, 1, (4, 4, 0, 4, 0), vec![0]),
                (0, 4, 7, 8, 114, 81152, 1, (8, 7, 0, 7, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA H100 PCIe", 0x2331_10DE, 81559, 114)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
