use crate::product::{Architecture, Product, ProductSpec};

// TODO(issue 3): fill from NVIDIA's public Supported MIG Profiles table.
pub static SPEC: ProductSpec = ProductSpec {
    product: Product::A30_24GB,
    name: "",
    architecture: Architecture::Ampere,
    pci_device_id: 0,
    memory_mib: 0,
    sm_count: 0,
    compute_slices: 7,
    memory_slots: 8,
    profiles: &[],
};
