use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA GH200 144GB HBM3e (NVML name "NVIDIA GH200 144G HBM3e").
// Read: the 1g.18gb, 1g.18gb+me, 1g.36gb and 2g.36gb rows (ids, instance
// counts, SMs, DEC/ENC/CE/JPEG/OFA, GiB 17.50 / 35.25) from the real `nvidia-smi
// mig -lgip` NVIDIA posted in NVIDIA/mig-parted PR #139 (and NVIDIA/gpu-operator
// PR #1057); the names and instance counts of 3g.72gb / 4g.72gb / 7g.144gb
// from mig-parted's default config (its GH200 144G HBM3e sections). Name and
// PCI id 0x234810DE: the NVIDIA Linux driver README's supported-GPU table
// (2348) and that PR's title; the 146831 MiB total and 132 SMs: real
// `nvidia-smi` and CUDA device properties of GH200 144G HBM3e nodes.
//
// Derived, not read (the lower rows of the posted table were not retrievable):
// - MiB of the read rows: the GiB column times 1024 (exact quarter GiB).
// - Memory of 3g/4g/7g, following the real H100's relation between rows:
//   4-slot = 2 x 2-slot + 0.25 GiB (70.75 GiB = 72448 MiB) and
//   7g = 2 x 4-slot + 0.25 GiB (141.75 GiB = 145152 MiB).
// - SMs and engines of 3g/4g/7g: the real H100 80GB HBM3's (same GH100 chip
//   with 132 SMs, whose 1g/2g rows these read rows equal).
// - Placements: the real H100's (same eighths/sevenths geometry and counts).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "gh200-144gb",
    name: "NVIDIA GH200 144G HBM3e",
    architecture: Architecture::Hopper,
    pci_device_id: 0x2348_10DE,
    memory_mib: 146831,
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
            memory_mib: 17920,
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
            memory_mib: 17920,
            max_instances: 1,
            engines: Engines::new(1, 1, 0, 1, 1),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 15,
            nvml_index: 9,
            name: ProfileName::new(1, 36),
            compute_slices: 1,
            memory_slices: 2,
            sm_count: 26,
            memory_mib: 36096,
            max_instances: 4,
            engines: Engines::new(1, 1, 0, 1, 0),
            placement_starts: &[0, 2, 4, 6],
        },
        GiProfile {
            id: 14,
            nvml_index: 1,
            name: ProfileName::new(2, 36),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 32,
            memory_mib: 36096,
            max_instances: 3,
            engines: Engines::new(2, 2, 0, 2, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 72),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 60,
            memory_mib: 72448,
            max_instances: 2,
            engines: Engines::new(3, 3, 0, 3, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 72),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 64,
            memory_mib: 72448,
            max_instances: 1,
            engines: Engines::new(4, 4, 0, 4, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 144),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 132,
            memory_mib: 145152,
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
    fn gh200_144gb_table_is_pinned() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.18gb",
                "MIG 1g.18gb+me",
                "MIG 1g.36gb",
                "MIG 2g.36gb",
                "MIG 3g.72gb",
                "MIG 4g.72gb",
                "MIG 7g.144gb"
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
                    17920,
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
                    17920,
                    1,
                    (1, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 26, 36096, 4, (1, 1, 0, 1, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 32, 36096, 3, (2, 2, 0, 2, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 60, 72448, 2, (3, 3, 0, 3, 0), vec![0, 4]),
                (5, 3, 4, 4, 64, 72448, 1, (4, 4, 0, 4, 0), vec![0]),
                (0, 4, 7, 8, 132, 145152, 1, (8, 7, 0, 7, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA GH200 144G HBM3e", 0x2348_10DE, 146831, 132)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
