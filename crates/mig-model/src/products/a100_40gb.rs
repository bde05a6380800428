use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA A100-SXM4-40GB.
// Read off a real A100-SXM4-40GB on driver 580.126.09 (the H100 fixture's
// driver branch), `nvidia-smi mig -lgip` posted publicly: profile ids,
// instance counts, SMs, DEC/ENC/CE/JPEG/OFA and the GiB column. Its MIG-device
// table shows 4864 / 9984 / 20096 MiB for a 1g.5gb / 2g.10gb / 4g.20gb, i.e.
// exactly the 4.75 / 9.75 / 19.62 GiB of `-lgip`. Placements are the
// `nvidia-smi mig -lgipp` example of NVIDIA's MIG user guide (an A100-40GB).
// Name and the 40960 MiB total are from real `nvidia-smi` output; the PCI id
// 0x20B010DE is mig-parted's A100-40GB device filter.
//
// Derived, not read:
// - 7g.40gb memory: `-lgip` prints 39.38 GiB; 40320 MiB is the 1/8-GiB value
//   that prints so, as the other rows are.
// - sm_count 108: the A100's SM count (the 7g.40gb profile itself has 98).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "a100-sxm4-40gb",
    name: "NVIDIA A100-SXM4-40GB",
    architecture: Architecture::Ampere,
    pci_device_id: 0x20B0_10DE,
    memory_mib: 40960,
    sm_count: 108,
    compute_slices: 7,
    memory_slots: 8,
    profiles: &[
        GiProfile {
            id: 19,
            nvml_index: 0,
            name: ProfileName::new(1, 5),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 14,
            memory_mib: 4864,
            max_instances: 7,
            engines: Engines::new(1, 0, 0, 0, 0),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 20,
            nvml_index: 7,
            name: ProfileName::new(1, 5).with_media(MediaEngines::Extended),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 14,
            memory_mib: 4864,
            max_instances: 1,
            engines: Engines::new(1, 1, 0, 1, 1),
            placement_starts: &[0, 1, 2, 3, 4, 5, 6],
        },
        GiProfile {
            id: 15,
            nvml_index: 9,
            name: ProfileName::new(1, 10),
            compute_slices: 1,
            memory_slices: 2,
            sm_count: 14,
            memory_mib: 9984,
            max_instances: 4,
            engines: Engines::new(1, 1, 0, 0, 0),
            placement_starts: &[0, 2, 4, 6],
        },
        GiProfile {
            id: 14,
            nvml_index: 1,
            name: ProfileName::new(2, 10),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 28,
            memory_mib: 9984,
            max_instances: 3,
            engines: Engines::new(2, 1, 0, 0, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 20),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 42,
            memory_mib: 20096,
            max_instances: 2,
            engines: Engines::new(3, 2, 0, 0, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 20),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 56,
            memory_mib: 20096,
            max_instances: 1,
            engines: Engines::new(4, 2, 0, 0, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 40),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 98,
            memory_mib: 40320,
            max_instances: 1,
            engines: Engines::new(7, 5, 0, 1, 1),
            placement_starts: &[0],
        },
    ],
    // NVIDIA's MIG user guide ("Supported MIG Profiles", A100 notes) and
    // issue 16's review: the 1g.10gb profile exists only from R525 drivers.
    profiles_since_driver: &[(15, 525)],
};

#[cfg(test)]
mod tests {
    use super::SPEC;

    #[test]
    fn a100_40gb_table_is_pinned() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.5gb",
                "MIG 1g.5gb+me",
                "MIG 1g.10gb",
                "MIG 2g.10gb",
                "MIG 3g.20gb",
                "MIG 4g.20gb",
                "MIG 7g.40gb"
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
                    4864,
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
                    4864,
                    1,
                    (1, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 14, 9984, 4, (1, 1, 0, 0, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 28, 9984, 3, (2, 1, 0, 0, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 42, 20096, 2, (3, 2, 0, 0, 0), vec![0, 4]),
                (5, 3, 4, 4, 56, 20096, 1, (4, 2, 0, 0, 0), vec![0]),
                (0, 4, 7, 8, 98, 40320, 1, (7, 5, 0, 1, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA A100-SXM4-40GB", 0x20B0_10DE, 40960, 108)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
