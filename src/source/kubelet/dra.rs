//! Devices that NVIDIA's DRA driver (NVIDIA/k8s-dra-driver-gpu, driver
//! `gpu.nvidia.com`) allocated to a resource claim, as the kubelet lists them
//! in `ContainerResources.dynamic_resources`: which GPU or MIG device of this
//! node each one is.
//!
//! A `ClaimResource` carries the driver, pool and device name of the
//! ResourceSlice device, and CDI device names; none of them carries a UUID.
//! The driver names its devices after the GPU's minor number (`/dev/nvidiaN`,
//! not the NVML index; cmd/gpu-kubelet-plugin/deviceinfo.go,
//! `GpuInfo.CanonicalName`: `gpu-<minor>`), and a MIG device after its parent's
//! minor, GPU-instance profile id and placement start
//! (cmd/gpu-kubelet-plugin/mig.go, `MigSpecTuple.ToCanonicalName`, from
//! v25.12.0: `gpu-<minor>-mig-<profile name without dots>-<GI profile id>-<placement start>`;
//! v25.3 to v25.8, deviceinfo.go `MigDeviceInfo.CanonicalName`:
//! `gpu-<minor>-mig-<GI profile id>-<placement start>-<placement size>`).
//! Its CDI names (cmd/gpu-kubelet-plugin/cdi.go, `GetClaimDeviceName`) are
//! `k8s.gpu.nvidia.com/claim=<claim UID>-<device name>`, so they add nothing,
//! and the kubelet fills them in wrongly for a claim with several devices of
//! one driver (kubernetes/kubernetes pkg/kubelet/cm/container_manager_linux.go,
//! `GetDynamicResources`: the list of CDI devices is declared outside the loop
//! over devices, so each `ClaimResource` also lists the ones before it): the
//! device name is what identifies the device.
//!
//! The GPU instance at that profile and placement is the MIG device; the
//! driver creates one compute instance spanning it, whose MIG UUID is the
//! device's.

use crate::model::GpuSnapshot;

/// The DRA driver name of NVIDIA/k8s-dra-driver-gpu (cmd/gpu-kubelet-plugin/main.go, `DriverName`).
pub const NVIDIA_GPU_DRIVER: &str = "gpu.nvidia.com";

/// What a device name of the NVIDIA DRA driver says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraDevice {
    /// `gpu-<minor>`: a whole GPU.
    Gpu { minor: u32 },
    /// A MIG device: its parent's minor, GPU-instance profile id and placement start.
    Mig {
        minor: u32,
        gi_profile_id: u32,
        placement_start: u32,
    },
}

impl DraDevice {
    /// Parses a device name of the NVIDIA DRA driver; `None` for names it
    /// does not give GPUs and MIG devices (`gpu-vfio-0`, other drivers').
    pub fn parse(name: &str) -> Option<DraDevice> {
        let rest = name.strip_prefix("gpu-")?;
        let (minor, mig) = match rest.split_once('-') {
            None => {
                return Some(DraDevice::Gpu {
                    minor: rest.parse().ok()?,
                })
            }
            Some((minor, mig)) => (minor.parse().ok()?, mig.strip_prefix("mig-")?),
        };
        let parts: Vec<&str> = mig.split('-').collect();
        let number = |s: &str| s.parse::<u32>().ok();
        let all_numbers = parts.iter().all(|p| number(p).is_some());
        let (gi_profile_id, placement_start) = match parts.as_slice() {
            // v25.3-v25.8: <profile id>-<start>-<size>.
            [id, start, _size] if all_numbers => (number(id)?, number(start)?),
            // v25.12 on: <profile name, which has letters>-<profile id>-<start>.
            [name @ .., id, start] if !name.is_empty() && !all_numbers => (number(id)?, number(start)?),
            _ => return None,
        };
        Some(DraDevice::Mig {
            minor,
            gi_profile_id,
            placement_start,
        })
    }

    /// The GPU or MIG device of `gpus` it names: its UUID, GPU index, and
    /// GI and CI ids for a MIG device. `None` when no device of `gpus`
    /// matches (a GPU whose minor NVML did not tell, a MIG device destroyed
    /// since, or a GPU instance with other than one compute instance).
    pub fn resolve(self, gpus: &[GpuSnapshot]) -> Option<(String, u32, Option<u32>, Option<u32>)> {
        let by_minor = |minor: u32| gpus.iter().find(|g| g.minor_number == Some(minor));
        match self {
            DraDevice::Gpu { minor } => by_minor(minor).map(|g| (g.uuid.clone(), g.index, None, None)),
            DraDevice::Mig {
                minor,
                gi_profile_id,
                placement_start,
            } => {
                let gpu = by_minor(minor)?;
                let gi = gpu
                    .gpu_instances
                    .iter()
                    .find(|gi| gi.profile_id == gi_profile_id && gi.placement_start == placement_start)?;
                match gi.compute_instances.as_slice() {
                    [ci] => Some((ci.mig_uuid.clone(), gpu.index, Some(gi.id), Some(ci.id))),
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_of_both_driver_generations_parse() {
        assert_eq!(DraDevice::parse("gpu-3"), Some(DraDevice::Gpu { minor: 3 }));
        let mig = DraDevice::Mig {
            minor: 1,
            gi_profile_id: 19,
            placement_start: 4,
        };
        // v25.12 on, profile `1g.10gb` and `1g.10gb+me` (`+` becomes `-`).
        assert_eq!(DraDevice::parse("gpu-1-mig-1g10gb-19-4"), Some(mig));
        assert_eq!(
            DraDevice::parse("gpu-1-mig-1g10gb-me-20-4"),
            Some(DraDevice::Mig {
                minor: 1,
                gi_profile_id: 20,
                placement_start: 4,
            })
        );
        // v25.3-v25.8: profile id, start, size.
        assert_eq!(DraDevice::parse("gpu-1-mig-19-4-1"), Some(mig));
        for other in [
            "gpu-vfio-0",
            "gpu-x",
            "gpu-1-mig-",
            "gpu-1-mig-1g10gb-19",
            "nic-0",
            "gpu-1-mig-19-4",
        ] {
            assert_eq!(DraDevice::parse(other), None, "{other}");
        }
    }
}
