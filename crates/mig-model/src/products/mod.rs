//! One file per product: its NVML facts and GPU-instance profile table.
//! The H100 table was read off a real H100 80GB HBM3 (see `shared/fixtures`);
//! the others follow NVIDIA's public "Supported MIG Profiles" tables.

pub mod a100_40gb;
pub mod a100_80gb;
pub mod a30;
pub mod b200;
pub mod h100;
pub mod h200;
pub mod rtx_pro_6000;
