use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA H200 141GB (SXM, NVML name "NVIDIA H200").
// Read off a real H200 `nvidia-smi mig -lgip` posted by NVIDIA in
// NVIDIA/mig-parted issue #120: profile ids, instance counts, SMs,
// DEC/ENC/CE/JPEG/OFA and the GiB column (16.00 / 32.25 / 69.50 / 139.75).
// A second, independent H200 posting agrees on 1g.18gb = 16.00 GiB and 16 SMs.
// Name and the 143771 MiB total are from real `nvidia-smi` output; PCI id
// 0x233510DE is mig-parted's H200 device filter.
//
// Derived, not read:
// - MiB values: the GiB column times 1024 (all are exact quarter GiB).
// - Placements: no H200 `-lgipp` was found; they are the real H100's (same
//   GH100 chip, same instance counts and memory fractions).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "h200-141gb",
    name: "NVIDIA H200",
    architecture: Architecture::Hopper,
    pci_device_id: 0x2335_10DE,
    memory_mib: 143771,
    sm_count: 132,
    compute_slices: 7,
    memory_slots: 8,
    profiles: &[
        GiProfile {
            id: 19,
            nvml_index: 0,
            name: ProfileName::new(1, 18),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 16,
            memory_mib: 16384,
            max_instances: 7,
            engines: Engines::new(1, 1, 0, 1, 0),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 20,
            nvml_index: 7,
            name: ProfileName::new(1, 18).with_media(MediaEngines::Extended),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 16,
            memory_mib: 16384,
            max_instances: 1,
            engines: Engines::new(1, 1, 0, 1, 1),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 15,
            nvml_index: 9,
            name: ProfileName::new(1, 35),
            compute_slices: 1,
            memory_slices: 2,
            sm_count: 26,
            memory_mib: 33024,
            max_instances: 4,
            engines: Engines::new(1, 1, 0, 1, 0),
            placement_starts: &[0, 2, 4, 6],
        },
        GiProfile {
            id: 14,
            nvml_index: 1,
            name: ProfileName::new(2, 35),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 32,
            memory_mib: 33024,
            max_instances: 3,
            engines: Engines::new(2, 2, 0, 2, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 71),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 60,
            memory_mib: 71168,
            max_instances: 2,
            engines: Engines::new(3, 3, 0, 3, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 71),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 64,
            memory_mib: 71168,
            max_instances: 1,
            engines: Engines::new(4, 4, 0, 4, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 141),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 132,
            memory_mib: 143104,
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
    fn h200_table_is_pinned() {
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
        let rows = super::super::pinned_rows(&SPEC);
        assert_eq!(
            rows,
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
            ("NVIDIA H200", 0x2335_10DE, 143771, 132)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
