//! The kubelet pod-resources API v1: the prost messages and the tonic client
//! that build.rs generates from proto/podresources/v1/api.proto, and the
//! paths of the methods (which the tests' fake kubelet routes on).

/// `v1.PodResourcesLister`, the gRPC service name.
pub const SERVICE: &str = "v1.PodResourcesLister";
pub const LIST_PATH: &str = "/v1.PodResourcesLister/List";
pub const GET_ALLOCATABLE_PATH: &str = "/v1.PodResourcesLister/GetAllocatableResources";

#[allow(clippy::all, clippy::pedantic)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/v1.rs"));
}

pub use generated::*;
