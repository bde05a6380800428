use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA A30 24GB: quarter granularity, 4 SM slices over 4 memory slots.
// Read off a real A30 (driver 535.183.01) `nvidia-smi mig -lgip` / `-lgipp`
// posted publicly: profile ids, instance counts, SMs, DEC/ENC/CE/JPEG/OFA
// counts and placements. The same posting's `nvidia-smi` MIG-device table shows
// 5952 MiB for a 1g.6gb and 11968 MiB for a 2g.12gb, matching the 5.81 and
// 11.69 GiB of `-lgip`. Name, PCI id (0x20B710DE, also mig-parted's A30
// device filter) and the 24576 MiB total are from real `nvidia-smi` output.
//
// Derived, not read:
// - 4g.24gb memory: `-lgip` prints 23.44 GiB; 24000 MiB is the 1/16-GiB value
//   that prints so (the same rounding that gives the two values above).
// - `nvml_index` of the `+me` rows: 1_SLICE_REV1 (7) and 2_SLICE_REV1 (8), by
//   analogy with the H100 probe, where NVML index 7 is the `+me` profile.
// - sm_count 56: the SM count of the 4g.24gb (whole-GPU) profile.
pub static SPEC: ProductSpec = ProductSpec {
    slug: "a30-24gb",
    name: "NVIDIA A30",
    architecture: Architecture::Ampere,
    pci_device_id: 0x20B7_10DE,
    memory_mib: 24576,
    sm_count: 56,
    compute_slices: 4,
    memory_slots: 4,
    profiles: &[
        GiProfile {
            id: 14,
            nvml_index: 0,
            name: ProfileName::new(1, 6),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 14,
            memory_mib: 5952,
            max_instances: 4,
            engines: Engines::new(1, 1, 0, 0, 0),
            placement_starts: &[0, 1, 2, 3],
        },
        GiProfile {
            id: 21,
            nvml_index: 7,
            name: ProfileName::new(1, 6).with_media(MediaEngines::Extended),
            compute_slices: 1,
            memory_slices: 1,
            sm_count: 14,
            memory_mib: 5952,
            max_instances: 1,
            engines: Engines::new(1, 1, 0, 1, 1),
            placement_starts: &[0, 1, 2, 3],
        },
        GiProfile {
            id: 5,
            nvml_index: 1,
            name: ProfileName::new(2, 12),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 28,
            memory_mib: 11968,
            max_instances: 2,
            engines: Engines::new(2, 2, 0, 0, 0),
            placement_starts: &[0, 2],
        },
        GiProfile {
            id: 6,
            nvml_index: 8,
            name: ProfileName::new(2, 12).with_media(MediaEngines::Extended),
            compute_slices: 2,
            memory_slices: 2,
            sm_count: 28,
            memory_mib: 11968,
            max_instances: 1,
            engines: Engines::new(2, 2, 0, 1, 1),
            placement_starts: &[0, 2],
        },
        GiProfile {
            id: 0,
            nvml_index: 3,
            name: ProfileName::new(4, 24),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 56,
            memory_mib: 24000,
            max_instances: 1,
            engines: Engines::new(4, 4, 0, 1, 1),
            placement_starts: &[0],
        },
    ],
    // NVIDIA's MIG user guide, "Supported MIG Profiles", A30 notes: 1g.6gb+me
    // only from R470 drivers, 2g.12gb+me only from R525.
    profiles_since_driver: &[(21, 470), (6, 525)],
};

#[cfg(test)]
mod tests {
    use super::SPEC;
    use crate::placement::{gpu_instance_id, Placement};

    #[test]
    fn a30_table_is_pinned() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.6gb",
                "MIG 1g.6gb+me",
                "MIG 2g.12gb",
                "MIG 2g.12gb+me",
                "MIG 4g.24gb"
            ]
        );
        let rows = super::super::pinned_rows(&SPEC);
        assert_eq!(
            rows,
            vec![
                (14, 0, 1, 1, 14, 5952, 4, (1, 1, 0, 0, 0), vec![0, 1, 2, 3]),
                (21, 7, 1, 1, 14, 5952, 1, (1, 1, 0, 1, 1), vec![0, 1, 2, 3]),
                (5, 1, 2, 2, 28, 11968, 2, (2, 2, 0, 0, 0), vec![0, 2]),
                (6, 8, 2, 2, 28, 11968, 1, (2, 2, 0, 1, 1), vec![0, 2]),
                (0, 3, 4, 4, 56, 24000, 1, (4, 4, 0, 1, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA A30", 0x20B7_10DE, 24576, 56)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (4, 4));
    }

    #[test]
    fn gi_ids_match_the_real_a30() {
        // `nvidia-smi mig -lgi` on the same A30: GI 3 at 0:1, GI 4 at 1:1, GI 2 at 2:2.
        let ids: Vec<u32> = [(0, 1), (1, 1), (2, 2)]
            .into_iter()
            .map(|(s, n)| gpu_instance_id(Placement::new(s, n), SPEC.memory_slots))
            .collect();
        assert_eq!(ids, [3, 4, 2]);
    }
}
