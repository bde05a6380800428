use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA RTX PRO 6000 Blackwell 96GB (Server Edition, PCI id 0x2BB510DE).
/// Quarter granularity: 4 SM slices; NVML places GPU instances on a grid of 12
/// memory units (a 1g takes 3, a 2g 6, a 4g all 12).
// Read off a real "NVIDIA RTX PRO 6000 Blackwell Server Edition" (publicly
// posted `nvidia-smi mig -lgip`, `-lgipp`, `-lgi` and `nvidia-smi` output):
// all eleven profile ids, instance counts, SMs, DEC/ENC/CE/JPEG/OFA, the GiB
// column, the placements ({0,3,6,9}:3, {0,6}:6, {0}:12) and the 97887 MiB
// total. The same lgip (ids, SMs, 23.62 GiB) appears in GKE's and Bottlerocket's
// RTX PRO 6000 pull requests, the latter with pci.device_id 0x2BB510DE; the
// engine counts agree with NVIDIA's "Supported MIG Profiles" RTX PRO 6000 table.
// A 1g.24gb MIG device reports 24192 MiB to CUDA, i.e. 23.62 GiB exactly.
//
// Not the 4 memory slots one might expect from "1/4 granularity": the driver's
// placements are in twelfths, so `memory_slots` is 12 and `memory_slices` is
// the placement size (3/6/12). `gpu_instance_id` still gives the real GI ids
// (1g at 6:3 and 9:3 is GI 5 and 6, 2g at 0:6 is GI 1, as `-lgi` shows).
//
// Derived, not read:
// - 2g.48gb and 4g.96gb memory: 47.38 GiB -> 48512 MiB, 95.12 GiB -> 97408
//   MiB, the 1/8-GiB values that print so (like the 1g row, which is exact).
// - `nvml_index`: from the NVML_GPU_INSTANCE_PROFILE_* names in nvml.h (GFX,
//   NO_ME, ALL_ME); `+me` as 1_SLICE_REV1 (7), as on the H100 probe.
pub static SPEC: ProductSpec = ProductSpec {
    slug: "rtx-pro-6000-96gb",
    name: "NVIDIA RTX PRO 6000 Blackwell Server Edition",
    architecture: Architecture::Blackwell,
    pci_device_id: 0x2BB5_10DE,
    memory_mib: 97887,
    sm_count: 188,
    compute_slices: 4,
    memory_slots: 12,
    profiles: &[
        GiProfile {
            id: 14,
            nvml_index: 0,
            name: ProfileName::new(1, 24),
            compute_slices: 1,
            memory_slices: 3,
            sm_count: 46,
            memory_mib: 24192,
            max_instances: 4,
            engines: Engines::new(1, 1, 1, 1, 0),
            placement_starts: &[0, 3, 6, 9],
        },
        GiProfile {
            id: 21,
            nvml_index: 7,
            name: ProfileName::new(1, 24).with_media(MediaEngines::Extended),
            compute_slices: 1,
            memory_slices: 3,
            sm_count: 46,
            memory_mib: 24192,
            max_instances: 1,
            engines: Engines::new(1, 1, 1, 1, 1),
            placement_starts: &[0, 3, 6, 9],
        },
        GiProfile {
            id: 47,
            nvml_index: 10,
            name: ProfileName::new(1, 24).with_graphics(),
            compute_slices: 1,
            memory_slices: 3,
            sm_count: 46,
            memory_mib: 24192,
            max_instances: 4,
            engines: Engines::new(1, 1, 1, 1, 0),
            placement_starts: &[0, 3, 6, 9],
        },
        GiProfile {
            id: 65,
            nvml_index: 15,
            name: ProfileName::new(1, 24).with_media(MediaEngines::All),
            compute_slices: 1,
            memory_slices: 3,
            sm_count: 46,
            memory_mib: 24192,
            max_instances: 1,
            engines: Engines::new(1, 4, 4, 4, 1),
            placement_starts: &[0, 3, 6, 9],
        },
        GiProfile {
            id: 67,
            nvml_index: 13,
            name: ProfileName::new(1, 24).with_media(MediaEngines::Stripped),
            compute_slices: 1,
            memory_slices: 3,
            sm_count: 46,
            memory_mib: 24192,
            max_instances: 4,
            engines: Engines::new(1, 0, 0, 0, 0),
            placement_starts: &[0, 3, 6, 9],
        },
        GiProfile {
            id: 5,
            nvml_index: 1,
            name: ProfileName::new(2, 48),
            compute_slices: 2,
            memory_slices: 6,
            sm_count: 94,
            memory_mib: 48512,
            max_instances: 2,
            engines: Engines::new(2, 2, 2, 2, 0),
            placement_starts: &[0, 6],
        },
        GiProfile {
            id: 35,
            nvml_index: 11,
            name: ProfileName::new(2, 48).with_graphics(),
            compute_slices: 2,
            memory_slices: 6,
            sm_count: 94,
            memory_mib: 48512,
            max_instances: 2,
            engines: Engines::new(2, 2, 2, 2, 0),
            placement_starts: &[0, 6],
        },
        GiProfile {
            id: 64,
            nvml_index: 16,
            name: ProfileName::new(2, 48).with_media(MediaEngines::All),
            compute_slices: 2,
            memory_slices: 6,
            sm_count: 94,
            memory_mib: 48512,
            max_instances: 1,
            engines: Engines::new(2, 4, 4, 4, 1),
            placement_starts: &[0, 6],
        },
        GiProfile {
            id: 66,
            nvml_index: 14,
            name: ProfileName::new(2, 48).with_media(MediaEngines::Stripped),
            compute_slices: 2,
            memory_slices: 6,
            sm_count: 94,
            memory_mib: 48512,
            max_instances: 2,
            engines: Engines::new(2, 0, 0, 0, 0),
            placement_starts: &[0, 6],
        },
        GiProfile {
            id: 0,
            nvml_index: 3,
            name: ProfileName::new(4, 96),
            compute_slices: 4,
            memory_slices: 12,
            sm_count: 188,
            memory_mib: 97408,
            max_instances: 1,
            engines: Engines::new(4, 4, 4, 4, 1),
            placement_starts: &[0],
        },
        GiProfile {
            id: 32,
            nvml_index: 12,
            name: ProfileName::new(4, 96).with_graphics(),
            compute_slices: 4,
            memory_slices: 12,
            sm_count: 188,
            memory_mib: 97408,
            max_instances: 1,
            engines: Engines::new(4, 4, 4, 4, 1),
            placement_starts: &[0],
        },
    ],
    profiles_since_driver: &[],
};

#[cfg(test)]
mod tests {
    use super::SPEC;
    use crate::placement::{gpu_instance_id, Placement};
    use crate::profile::{MediaEngines, ProfileName};

    #[test]
    fn rtx_pro_6000_table_is_pinned() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.24gb",
                "MIG 1g.24gb+me",
                "MIG 1g.24gb+gfx",
                "MIG 1g.24gb+me.all",
                "MIG 1g.24gb-me",
                "MIG 2g.48gb",
                "MIG 2g.48gb+gfx",
                "MIG 2g.48gb+me.all",
                "MIG 2g.48gb-me",
                "MIG 4g.96gb",
                "MIG 4g.96gb+gfx"
            ]
        );
        // The suffixes are parsed, not kept as text.
        let flags: Vec<_> = SPEC
            .profiles
            .iter()
            .map(|p| (p.name.media, p.name.graphics))
            .collect();
        use MediaEngines::*;
        assert_eq!(
            flags,
            [
                (Proportional, false),
                (Extended, false),
                (Proportional, true),
                (All, false),
                (Stripped, false),
                (Proportional, false),
                (Proportional, true),
                (All, false),
                (Stripped, false),
                (Proportional, false),
                (Proportional, true),
            ]
        );
        for p in SPEC.profiles {
            assert_eq!(p.nvml_name().parse::<ProfileName>().unwrap(), p.name);
        }
        let rows = super::super::pinned_rows(&SPEC);
        assert_eq!(
            rows,
            vec![
                (14, 0, 1, 3, 46, 24192, 4, (1, 1, 1, 1, 0), vec![0, 3, 6, 9]),
                (21, 7, 1, 3, 46, 24192, 1, (1, 1, 1, 1, 1), vec![0, 3, 6, 9]),
                (47, 10, 1, 3, 46, 24192, 4, (1, 1, 1, 1, 0), vec![0, 3, 6, 9]),
                (65, 15, 1, 3, 46, 24192, 1, (1, 4, 4, 4, 1), vec![0, 3, 6, 9]),
                (67, 13, 1, 3, 46, 24192, 4, (1, 0, 0, 0, 0), vec![0, 3, 6, 9]),
                (5, 1, 2, 6, 94, 48512, 2, (2, 2, 2, 2, 0), vec![0, 6]),
                (35, 11, 2, 6, 94, 48512, 2, (2, 2, 2, 2, 0), vec![0, 6]),
                (64, 16, 2, 6, 94, 48512, 1, (2, 4, 4, 4, 1), vec![0, 6]),
                (66, 14, 2, 6, 94, 48512, 2, (2, 0, 0, 0, 0), vec![0, 6]),
                (0, 3, 4, 12, 188, 97408, 1, (4, 4, 4, 4, 1), vec![0]),
                (32, 12, 4, 12, 188, 97408, 1, (4, 4, 4, 4, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            (
                "NVIDIA RTX PRO 6000 Blackwell Server Edition",
                0x2BB5_10DE,
                97887,
                188
            )
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (4, 12));
    }

    #[test]
    fn gi_ids_match_the_real_rtx_pro_6000() {
        // `nvidia-smi mig -lgi` on the real card: four 1g.24gb are GI 3..6 at
        // 0:3, 3:3, 6:3, 9:3; a 2g.48gb + two 1g.24gb are GI 1 (0:6), 5, 6.
        let id = |s, n| gpu_instance_id(Placement::new(s, n), SPEC.memory_slots);
        assert_eq!([id(0, 3), id(3, 3), id(6, 3), id(9, 3)], [3, 4, 5, 6]);
        assert_eq!([id(0, 6), id(6, 3), id(9, 3)], [1, 5, 6]);
        assert_eq!(id(0, 12), 0);
    }
}
