use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA GH200 96GB HBM3 (the Grace Hopper superchip's GPU, NVML name
/// "NVIDIA GH200 480GB"; "H100 on GH200" in the MIG user guide).
// Read off a real GH200 (a published Slurm MIG install log of a Grace Hopper
// node, `nvidia-smi mig -lgip`): profile ids, instance counts, SMs,
// DEC/ENC/CE/JPEG/OFA and the GiB column (11.00 / 23.00 / 46.50 / 93.00).
// Name and the 97871 MiB total: real `nvidia-smi` on GH200 480GB nodes (one of
// them the same PCI bus id as the MIG log). PCI id 0x234210DE: the NVIDIA Linux
// driver README's supported-GPU table ("NVIDIA GH200 480GB", 2342), also in
// mig-parted's "H100-96GB, PG506-96GB, GH200, H20" device filter.
//
// Derived, not read:
// - MiB values: the GiB column times 1024 (all are exact quarter GiB).
// - Placements: no GH200 `-lgipp` was found; they are those of the real H100
//   80GB HBM3 and H100 NVL (same GH100 chip, same instance counts).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "gh200-96gb",
    name: "NVIDIA GH200 480GB",
    architecture: Architecture::Hopper,
    pci_device_id: 0x2342_10DE,
    memory_mib: 97871,
    sm_count: 132,
    compute_slices: 7,
    memory_slots: 8,
    profiles: &[
        GiProfile {
            id: 19,
            nvml_index: 0,
            name: ProfileName::new(1, 12),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 16,
            memory_mib: 11264,
            max_instances: 7,
            engines: Engines::new(1, 1, 0, 1, 0),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 20,
            nvml_index: 7,
            name: ProfileName::new(1, 12).with_media(MediaEngines::Extended),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 16,
            memory_mib: 11264,
            max_instances: 1,
            engines: Engines::new(1, 1, 0, 1, 1),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 15,
            nvml_index: 9,
            name: ProfileName::new(1, 24),
            compute_slices: 1,
            memory_slices: 2,
            sm_count: 26,
            memory_mib: 23552,
            max_instances: 4,
            engines: Engines::new(1, 1, 0, 1, 0),
            placement_starts: &[0, 2, 4, 6],
        },
        GiProfile {
            id: 14,
            nvml_index: 1,
            name: ProfileName::new(2, 24),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 32,
            memory_mib: 23552,
            max_instances: 3,
            engines: Engines::new(2, 2, 0, 2, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 48),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 60,
            memory_mib: 47616,
            max_instances: 2,
            engines: Engines::new(3, 3, 0, 3, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 48),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 64,
            memory_mib: 47616,
            max_instances: 1,
            engines: Engines::new(4, 4, 0, 4, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 96),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 132,
            memory_mib: 95232,
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
    fn gh200_96gb_table_is_the_real_one() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.12gb",
                "MIG 1g.12gb+me",
                "MIG 1g.24gb",
                "MIG 2g.24gb",
                "MIG 3g.48gb",
                "MIG 4g.48gb",
                "MIG 7g.96gb"
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
                    11264,
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
                    11264,
                    1,
                    (1, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 26, 23552, 4, (1, 1, 0, 1, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 32, 23552, 3, (2, 2, 0, 2, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 60, 47616, 2, (3, 3, 0, 3, 0), vec![0, 4]),
                (5, 3, 4, 4, 64, 47616, 1, (4, 4, 0, 4, 0), vec![0]),
                (0, 4, 7, 8, 132, 95232, 1, (8, 7, 0, 7, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA GH200 480GB", 0x2342_10DE, 97871, 132)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
