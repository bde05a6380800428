//! The rules of NVIDIA MIG (Multi-Instance GPU) as a library.
//!
//! * [`product`] and [`products`]: per-product GPU-instance profile tables with
//!   real NVML profile ids, slices, SMs, memory, engines and placements.
//! * [`profile`]: profile names with their suffix semantics, compute-instance profiles.
//! * [`placement`]: the placement engine (what fits, where the driver puts it,
//!   remaining capacity).
//! * [`table`]: product tables a World file carries inline, for GPUs with no
//!   compiled-in table.
//! * [`world`]: a serializable node whose lifecycle follows the driver, and
//!   [`file`]: validated, atomically written World files.
//! * [`locate`]: the line and column of a problem found after parsing.
//!
//! The simulator source, `mig-sim`, `fake-nvml` and `fake-dcgm` all share one World.

pub mod driver;
pub mod file;
pub mod locate;
pub mod placement;
pub mod product;
pub mod products;
pub mod profile;
pub mod table;
pub mod world;

pub use file::{WorldCache, WorldFileError};
pub use placement::{Placement, Placer};
pub use product::{Architecture, Product, ProductSpec, UnknownProfile};
pub use profile::{CiProfile, Engines, GiProfile, MediaEngines, ProfileName};
pub use table::ProductTable;
pub use world::{
    CiLoad, ComputeInstance, EccErrors, Faults, GiLoad, Gpu, GpuInstance, MigError, MigMode, MigUuids,
    ModeChange, RemappedRows, Telemetry, World, WorldSwap,
};

/// Environment variable naming the World file that `mig-sim`, `fake-nvml` and
/// `fake-dcgm` share.
pub const WORLD_ENV: &str = "MIG_WORLD";
