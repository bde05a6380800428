//! One file per product: its NVML facts and GPU-instance profile table.
//! The H100 table was read off a real H100 80GB HBM3 (see `shared/fixtures`);
//! the others from users' and NVIDIA's published `nvidia-smi mig` output,
//! GPU feature discovery labels, mig-parted's configs and NVIDIA's public
//! "Supported MIG Profiles" tables, each file saying which row came from where
//! and which were derived. Products of one chip and table shape share the
//! table (A100 PCIe and SXM4, H200 NVL and SXM).

pub mod a100_40gb;
pub mod a100_80gb;
pub mod a100_pcie_40gb;
pub mod a100_pcie_80gb;
pub mod a30;
pub mod b200;
pub mod gb200;
pub mod gh200_144gb;
pub mod gh200_96gb;
pub mod h100;
pub mod h100_nvl;
pub mod h100_pcie;
pub mod h20;
pub mod h200;
pub mod h200_nvl;
pub mod rtx_pro_6000;

/// A table as compact rows for the pinning tests: (id, NVML index, SM slices,
/// memory slices, SMs, MiB, max instances, (CE, DEC, ENC, JPEG, OFA), starts).
#[cfg(test)]
#[allow(clippy::type_complexity)]
pub(crate) fn pinned_rows(
    spec: &crate::product::ProductSpec,
) -> Vec<(
    u32,
    u32,
    u32,
    u32,
    u32,
    u64,
    u32,
    (u32, u32, u32, u32, u32),
    Vec<u32>,
)> {
    spec.profiles
        .iter()
        .map(|p| {
            let e = p.engines;
            (
                p.id,
                p.nvml_index,
                p.compute_slices,
                p.memory_slices,
                p.sm_count,
                p.memory_mib,
                p.max_instances,
                (e.copy, e.decoder, e.encoder, e.jpeg, e.ofa),
                p.placement_starts.to_vec(),
            )
        })
        .collect()
}
