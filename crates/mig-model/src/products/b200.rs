use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA B200 180GB (NVML name "NVIDIA B200").
// Read: the 1g.23gb, 1g.23gb+me, 1g.45gb and 2g.45gb rows (ids, instance
// counts, SMs, DEC/ENC/CE/JPEG/OFA, GiB 20.50 / 44.25) from the real B200
// `nvidia-smi mig -lgip` NVIDIA posted in NVIDIA/mig-parted PR #187 (the
// January posting, PR #166, printed 22.00 GiB for the 1g profiles: the column
// drifts between drivers). Ids 9 / 5 / 0 of the other rows: GKE's partition
// table (GoogleCloudPlatform/container-engine-accelerators). Instance counts
// and the copy-engine counts 6 / 8 / 16 of 3g/4g/7g: NVIDIA's "Supported MIG
// Profiles" B200 table. Name and the
// 183359 MiB total: real `nvidia-smi`; PCI id 0x290110DE: mig-parted's B200
// device filter; 148 SMs: the B200's SM count.
//
// Derived, not read (the lower rows of the posted tables were not retrievable):
// - 3g.90gb / 4g.90gb SMs 70 / 72: from a third-party B200 MIG script that
//   annotates them so; unconfirmed. (The H100 relation, 4g = 4 x 1g and
//   3g = 4g - 4, would give 72 / 68.)
// - 7g.180gb: 148 SMs, the whole GPU, as H100's 7g has all 132.
// - DEC/JPEG/OFA of 3g/4g/7g: the H100 pattern (one DEC and JPEG per SM
//   slice, 7/7/1 for the whole GPU), which the B200 1g/2g rows follow; the
//   B200 has 7 NVDEC and 7 NVJPG.
// - Memory of 3g/4g/7g, following H100's relation between rows:
//   4-slot = 2 x 2-slot + 0.25 GiB (88.75 GiB = 90880 MiB) and
//   7g = 2 x 4-slot + 0.25 GiB (177.75 GiB = 182016 MiB).
// - Placements: those of the real H100 (same eighths/sevenths geometry and
//   instance counts).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "b200-180gb",
    name: "NVIDIA B200",
    architecture: Architecture::Blackwell,
    pci_device_id: 0x2901_10DE,
    memory_mib: 183359,
    sm_count: 148,
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
            memory_mib: 20992,
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
            memory_mib: 20992,
            max_instances: 1,
            engines: Engines::new(2, 1, 0, 1, 1),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 15,
            nvml_index: 9,
            name: ProfileName::new(1, 45),
            compute_slices: 1,
            memory_slices: 2,
            sm_count: 30,
            memory_mib: 45312,
            max_instances: 4,
            engines: Engines::new(2, 1, 0, 1, 0),
            placement_starts: &[0, 2, 4, 6],
        },
        GiProfile {
            id: 14,
            nvml_index: 1,
            name: ProfileName::new(2, 45),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 36,
            memory_mib: 45312,
            max_instances: 3,
            engines: Engines::new(4, 2, 0, 2, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 90),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 70,
            memory_mib: 90880,
            max_instances: 2,
            engines: Engines::new(6, 3, 0, 3, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 90),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 72,
            memory_mib: 90880,
            max_instances: 1,
            engines: Engines::new(8, 4, 0, 4, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 180),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 148,
            memory_mib: 182016,
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
    fn b200_table_is_pinned() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.23gb",
                "MIG 1g.23gb+me",
                "MIG 1g.45gb",
                "MIG 2g.45gb",
                "MIG 3g.90gb",
                "MIG 4g.90gb",
                "MIG 7g.180gb"
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
                    18,
                    20992,
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
                    20992,
                    1,
                    (2, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 30, 45312, 4, (2, 1, 0, 1, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 36, 45312, 3, (4, 2, 0, 2, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 70, 90880, 2, (6, 3, 0, 3, 0), vec![0, 4]),
                (5, 3, 4, 4, 72, 90880, 1, (8, 4, 0, 4, 0), vec![0]),
                (0, 4, 7, 8, 148, 182016, 1, (16, 7, 0, 7, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA B200", 0x2901_10DE, 183359, 148)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
