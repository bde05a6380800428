use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA GB200 186GB (the Grace Blackwell superchip's GPU, NVML name
/// "NVIDIA GB200"): the B200's GB100 with 152 SMs.
// Read: the 1g.23gb, 1g.23gb+me, 1g.47gb and 2g.47gb rows (ids, instance
// counts, SMs 18 / 18 / 32 / 38, DEC/ENC/CE/JPEG/OFA, GiB 22.00 / 45.50) from
// the real GB200 `nvidia-smi mig -lgip` posted in NVIDIA/mig-parted issue #227;
// the 2g row's CE/JPEG/OFA (4 / 2 / 0) from the real GB200 `-lgip` in
// NVIDIA/gpu-operator PR #1303 (an earlier driver, which named the 1g profile
// 1g.24gb and printed 20.00 GiB for it: names and sizes drift between
// drivers). Names and instance counts of 3g.93gb / 4g.93gb / 7g.186gb:
// mig-parted's default config (its GB200 HGX sections, device filter
// 0x294110DE). Name and PCI id: the NVIDIA Linux driver README's
// supported-GPU table ("NVIDIA GB200", 2941); the 189471 MiB total: real
// `nvidia-smi`; 152 SMs: CUDA device properties users report for GB200.
//
// Derived, not read (the lower rows of the posted tables were not retrievable):
// - MiB of the read rows: the GiB column times 1024 (exact quarter GiB).
// - 3g.93gb / 4g.93gb SMs 70 / 72: the B200 table's (same GB100 die, and the
//   1g rows agree at 18 SMs); unconfirmed for GB200.
// - 7g.186gb: all 152 SMs, as H100's 7g has all 132.
// - CE of 3g/4g/7g (6 / 8 / 16): NVIDIA's "Supported MIG Profiles" B200 table,
//   as for b200.rs; DEC/JPEG/OFA: the H100 pattern the 1g/2g rows follow.
// - Memory of 3g/4g/7g, following H100's relation between rows:
//   4-slot = 2 x 2-slot + 0.25 GiB (91.25 GiB = 93440 MiB) and
//   7g = 2 x 4-slot + 0.25 GiB (182.75 GiB = 187136 MiB).
// - Placements: the real H100's (same eighths/sevenths geometry and counts).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "gb200-186gb",
    name: "NVIDIA GB200",
    architecture: Architecture::Blackwell,
    pci_device_id: 0x2941_10DE,
    memory_mib: 189471,
    sm_count: 152,
    compute_slices: 7,
    memory_slots: 8,
    profiles: &[
        GiProfile {
            id: 19,
            nvml_index: 0,
            name: ProfileName::new(1, 23),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 18,
            memory_mib: 22528,
            max_instances: 7,
            engines: Engines::new(2, 1, 0, 1, 0),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 20,
            nvml_index: 7,
            name: ProfileName::new(1, 23).with_media(MediaEngines::Extended),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 18,
            memory_mib: 22528,
            max_instances: 1,
            engines: Engines::new(2, 1, 0, 1, 1),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 15,
            nvml_index: 9,
            name: ProfileName::new(1, 47),
            compute_slices: 1,
            memory_slices: 2,
            sm_count: 32,
            memory_mib: 46592,
            max_instances: 4,
            engines: Engines::new(2, 1, 0, 1, 0),
            placement_starts: &[0, 2, 4, 6],
        },
        GiProfile {
            id: 14,
            nvml_index: 1,
            name: ProfileName::new(2, 47),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 38,
            memory_mib: 46592,
            max_instances: 3,
            engines: Engines::new(4, 2, 0, 2, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 93),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 70,
            memory_mib: 93440,
            max_instances: 2,
            engines: Engines::new(6, 3, 0, 3, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 93),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 72,
            memory_mib: 93440,
            max_instances: 1,
            engines: Engines::new(8, 4, 0, 4, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 186),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 152,
            memory_mib: 187136,
            max_instances: 1,
            engines: Engines::new(16, 7, 0, 7, 1),
            placement_starts: &[0],
        },
    ],
    profiles_since_driver: &[],
};

#[cfg(test)]
mod tests {
    use super::SPEC;

    #[test]
    fn gb200_table_is_pinned() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.23gb",
                "MIG 1g.23gb+me",
                "MIG 1g.47gb",
                "MIG 2g.47gb",
                "MIG 3g.93gb",
                "MIG 4g.93gb",
                "MIG 7g.186gb"
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
                    18,
                    22528,
                    7,
                    (2, 1, 0, 1, 0),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (
                    20,
                    7,
                    1,
                    1,
                    18,
                    22528,
                    1,
                    (2, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 32, 46592, 4, (2, 1, 0, 1, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 38, 46592, 3, (4, 2, 0, 2, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 70, 93440, 2, (6, 3, 0, 3, 0), vec![0, 4]),
                (5, 3, 4, 4, 72, 93440, 1, (8, 4, 0, 4, 0), vec![0]),
                (0, 4, 7, 8, 152, 187136, 1, (16, 7, 0, 7, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA GB200", 0x2941_10DE, 189471, 152)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
