use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA A100 80GB (reported by NVML as e.g. "NVIDIA A100-SXM4-80GB").
// Read off real A100 80GB `nvidia-smi mig -lgip` outputs posted publicly from
// R525+ drivers (the ones that list 1g.20gb): profile ids, instance counts,
// SMs, DEC/ENC/CE/JPEG/OFA and the GiB column (9.50 / 19.50 / 39.25 / 79.00).
// 9728 MiB for a 1g.10gb is also what GPU feature discovery labels
// (`nvidia.com/gpu.memory`) on such a GPU. Name and the 81920 MiB total are
// from a real A100-SXM4-80GB `nvidia-smi`; PCI id 0x20B210DE is mig-parted's
// A100-SXM4-80GB device filter.
//
// Derived, not read:
// - The postings with a 1g.20gb row are PCIe cards or do not name the model;
//   the SXM4 part is the same GA100 and shares the profile table, but the GiB
//   column drifts by ±0.25 between driver releases (78.75..79.25 for 7g.80gb).
// - 19968 / 40192 / 80896 MiB: the 1/8-GiB values that print as 19.50 / 39.25
//   / 79.00 GiB.
// - Placements: those of NVIDIA's A100 `-lgipp` example (same chip and counts).
// - sm_count 108 (the 7g.80gb profile has 98); `nvml_index` as for H100.
pub static SPEC: ProductSpec = ProductSpec {
    slug: "a100-80gb",
    name: "NVIDIA A100-SXM4-80GB",
    architecture: Architecture::Ampere,
    pci_device_id: 0x20B2_10DE,
    memory_mib: 81920,
    sm_count: 108,
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
            memory_mib: 9728,
            max_instances: 7,
            engines: Engines::new(1, 0, 0, 0, 0),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 20,
            nvml_index: 7,
            name: ProfileName::new(1, 10).with_media(MediaEngines::Extended),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 14,
            memory_mib: 9728,
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
            memory_mib: 19968,
            max_instances: 4,
            engines: Engines::new(1, 1, 0, 0, 0),
            placement_starts: &[0, 2, 4, 6],
        },
        GiProfile {
            id: 14,
            nvml_index: 1,
            name: ProfileName::new(2, 20),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 28,
            memory_mib: 19968,
            max_instances: 3,
            engines: Engines::new(2, 1, 0, 0, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 40),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 42,
            memory_mib: 40192,
            max_instances: 2,
            engines: Engines::new(3, 2, 0, 0, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 40),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 56,
            memory_mib: 40192,
            max_instances: 1,
            engines: Engines::new(4, 2, 0, 0, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 80),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 98,
            memory_mib: 80896,
            max_instances: 1,
            engines: Engines::new(7, 5, 0, 1, 1),
            placement_starts: &[0],
        },
    ],
    // As for the A100-40GB's 1g.10gb (NVIDIA's MIG user guide, A100 notes):
    // its 1g.20gb, the same one-slice-two-memory-slots profile, from R525.
    // The header comment above: only R525+ postings list a 1g.20gb row.
    profiles_since_driver: &[(15, 525)],
};

#[cfg(test)]
mod tests {
    use super::SPEC;

    #[test]
    fn a100_80gb_table_is_pinned() {
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
        let rows = super::super::pinned_rows(&SPEC);
        assert_eq!(
            rows,
            vec![
                (
                    19,
                    0,
                    1,
                    1,
                    14,
                    9728,
                    7,
                    (1, 0, 0, 0, 0),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (
                    20,
                    7,
                    1,
                    1,
                    14,
                    9728,
                    1,
                    (1, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 14, 19968, 4, (1, 1, 0, 0, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 28, 19968, 3, (2, 1, 0, 0, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 42, 40192, 2, (3, 2, 0, 0, 0), vec![0, 4]),
                (5, 3, 4, 4, 56, 40192, 1, (4, 2, 0, 0, 0), vec![0]),
                (0, 4, 7, 8, 98, 80896, 1, (7, 5, 0, 1, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA A100-SXM4-80GB", 0x20B2_10DE, 81920, 108)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
