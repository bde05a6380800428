use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA H20 96GB (NVML name "NVIDIA H20"): a GH100 with 78 SMs.
// Read: GPU feature discovery labels of a real H20 with 1g.12gb, 1g.24gb and
// 3g.48gb MIG devices (a published GPU Operator MIG walkthrough):
// `nvidia.com/mig-*.memory` 12032 / 24192 / 48512 MiB, `.multiprocessors`
// 8 / 8 / 32, and `.engines.*` (copy, decoder, encoder, jpeg, ofa) 1,1,0,1,0 /
// 1,1,0,1,0 / 3,3,0,3,0. Profile names and instance counts: mig-parted's
// default config, whose all-balanced section puts 0x232910DE in one device
// filter with the 96GB GH100 parts ("H100-96GB, PG506-96GB, GH200, H20") and
// whose all-1g.12gb ... all-7g.96gb sections give that table's counts
// (7 / 1 / 4 / 3 / 2 / 1 / 1). Name, PCI id
// (the NVIDIA Linux driver README's supported-GPU table: "NVIDIA H20", 2329)
// and the 97871 MiB total: real `nvidia-smi`; 78 SMs: NVIDIA's H20 spec, as
// users report it.
//
// Derived, not read (no H20 `nvidia-smi mig -lgip` was found):
// - Profile ids 19 / 20 / 15 / 14 / 9 / 5 / 0: those of every GH100 table.
// - 1g.12gb+me: the 1g.12gb row plus the OFA, as on every Hopper table.
// - 2g.24gb: 24192 MiB (the two memory slots of 1g.24gb), 16 SMs (2 x 1g, as
//   the H100 80GB HBM3's 2g has twice its 1g's SMs), engines 2,2,0,2,0.
// - 4g.48gb: 48512 MiB (the four memory slots of 3g.48gb); SMs: unverified,
//   32 assumed by the H100 80GB HBM3's relation 4g = 4 x 1g.
// - 7g.96gb: all 78 SMs (as H100's 7g has all 132); memory by the H100's
//   relation 7g = 2 x 4-slot + 0.25 GiB (97280 MiB); engines 8,7,0,7,1.
// - Placements: the real H100's (same eighths/sevenths geometry and counts).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "h20-96gb",
    name: "NVIDIA H20",
    architecture: Architecture::Hopper,
    pci_device_id: 0x2329_10DE,
    memory_mib: 97871,
    sm_count: 78,
    compute_slices: 7,
    memory_slots: 8,
    profiles: &[
        GiProfile {
            id: 19,
            nvml_index: 0,
            name: ProfileName::new(1, 12),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 8,
            memory_mib: 12032,
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
            sm_count: 8,
            memory_mib: 12032,
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
            sm_count: 8,
            memory_mib: 24192,
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
            sm_count: 16,
            memory_mib: 24192,
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
            sm_count: 32,
            memory_mib: 48512,
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
            sm_count: 32,
            memory_mib: 48512,
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
            sm_count: 78,
            memory_mib: 97280,
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
    fn h20_table_is_pinned() {
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
                    8,
                    12032,
                    7,
                    (1, 1, 0, 1, 0),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (
                    20,
                    7,
                    1,
                    1,
                    8,
                    12032,
                    1,
                    (1, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 8, 24192, 4, (1, 1, 0, 1, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 16, 24192, 3, (2, 2, 0, 2, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 32, 48512, 2, (3, 3, 0, 3, 0), vec![0, 4]),
                (5, 3, 4, 4, 32, 48512, 1, (4, 4, 0, 4, 0), vec![0]),
                (0, 4, 7, 8, 78, 97280, 1, (8, 7, 0, 7, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA H20", 0x2329_10DE, 97871, 78)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
