use crate::product::{Architecture, ProductSpec};
use crate::profile::{Engines, GiProfile, MediaEngines, ProfileName};

/// NVIDIA H100 NVL 94GB (NVML name "NVIDIA H100 NVL").
// Read off a real H100 NVL on driver 560.35.03 (a published walkthrough of MIG
// on an Azure NC H100 v5 VM: `nvidia-smi mig -lgip`, `-lgipp` and the
// MIG-device table): profile ids, instance counts, SMs, DEC/ENC/CE/JPEG/OFA,
// the GiB column (10.75 / 21.62 / 46.38 / 93.12), the placements, the 95830
// MiB total, and 11008 / 22144 / 47488 MiB for a 1g.12gb / 1g.24gb / 3g.47gb
// MIG device (GPU feature discovery labels `nvidia.com/mig-*.memory` of
// another H100 NVL give the same 11008 and 22144). The same rows are in the
// `-lgip` NVIDIA posted in NVIDIA/gpu-operator PR #900 and NVIDIA/mig-parted
// PR #101; a posting from a MIG-backed vGPU host prints 0.12 to 0.5 GiB less
// in every row (the column drifts between drivers). Name and PCI id 0x232110DE:
// the NVIDIA Linux driver README's supported-GPU table ("NVIDIA H100 NVL",
// 2321), also mig-parted's H100 NVL device filter.
//
// Derived, not read:
// - 7g.94gb memory: `-lgip` prints 93.12 GiB; 95360 MiB is the 1/8-GiB value
//   that prints so (the other rows are exact MIG-device readings).
// - `nvml_index`: the same constants as for the matching H100 rows (probe).
pub static SPEC: ProductSpec = ProductSpec {
    slug: "h100-nvl-94gb",
    name: "NVIDIA H100 NVL",
    architecture: Architecture::Hopper,
    pci_device_id: 0x2321_10DE,
    memory_mib: 95830,
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
            memory_mib: 11008,
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
            memory_mib: 11008,
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
            memory_mib: 22144,
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
            memory_mib: 22144,
            max_instances: 3,
            engines: Engines::new(2, 2, 0, 2, 0),
            placement_starts: &[0, 2, 4],
        },
        GiProfile {
            id: 9,
            nvml_index: 2,
            name: ProfileName::new(3, 47),
            compute_slices: 3,
            memory_slices: 4,
            sm_count: 60,
            memory_mib: 47488,
            max_instances: 2,
            engines: Engines::new(3, 3, 0, 3, 0),
            placement_starts: &[0, 4],
        },
        GiProfile {
            id: 5,
            nvml_index: 3,
            name: ProfileName::new(4, 47),
            compute_slices: 4,
            memory_slices: 4,
            sm_count: 64,
            memory_mib: 47488,
            max_instances: 1,
            engines: Engines::new(4, 4, 0, 4, 0),
            placement_starts: &[0],
        },
        GiProfile {
            id: 0,
            nvml_index: 4,
            name: ProfileName::new(7, 94),
            compute_slices: 7,
            memory_slices: 8,
            sm_count: 132,
            memory_mib: 95360,
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
    fn h100_nvl_table_is_the_real_one() {
        let names: Vec<String> = SPEC.profiles.iter().map(|p| p.nvml_name()).collect();
        assert_eq!(
            names,
            [
                "MIG 1g.12gb",
                "MIG 1g.12gb+me",
                "MIG 1g.24gb",
                "MIG 2g.24gb",
                "MIG 3g.47gb",
                "MIG 4g.47gb",
                "MIG 7g.94gb"
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
                    11008,
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
                    11008,
                    1,
                    (1, 1, 0, 1, 1),
                    vec![0, 1, 2, 3, 4, 5, 6]
                ),
                (15, 9, 1, 2, 26, 22144, 4, (1, 1, 0, 1, 0), vec![0, 2, 4, 6]),
                (14, 1, 2, 2, 32, 22144, 3, (2, 2, 0, 2, 0), vec![0, 2, 4]),
                (9, 2, 3, 4, 60, 47488, 2, (3, 3, 0, 3, 0), vec![0, 4]),
                (5, 3, 4, 4, 64, 47488, 1, (4, 4, 0, 4, 0), vec![0]),
                (0, 4, 7, 8, 132, 95360, 1, (8, 7, 0, 7, 1), vec![0]),
            ]
        );
        assert_eq!(
            (SPEC.name, SPEC.pci_device_id, SPEC.memory_mib, SPEC.sm_count),
            ("NVIDIA H100 NVL", 0x2321_10DE, 95830, 132)
        );
        assert_eq!((SPEC.compute_slices, SPEC.memory_slots), (7, 8));
    }
}
