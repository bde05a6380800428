//! A fake kubelet pod-resources server (v1) on a unix socket, for the tests:
//! it answers `List` and `GetAllocatableResources` with what the test sets,
//! after an optional delay, with the messages generated from
//! proto/podresources/v1/api.proto that the exporter's client uses.
//!
//! Pods in a terminal phase are listed as the kubelet version set in
//! [`Answers::lists`] lists them (see [`Listing`]).

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use mig_exporter::source::kubelet::proto::{
    self, AllocatableResourcesRequest, AllocatableResourcesResponse, CdiDevice, ClaimResource,
    ContainerDevices, ContainerResources, DynamicResource, ListPodResourcesRequest, ListPodResourcesResponse,
    PodResources,
};
use tonic::codegen::{http, Body, BoxFuture, StdError};

#[derive(Debug, Default, Clone)]
pub struct Answers {
    /// The active pods (not in a terminal phase).
    pub pods: ListPodResourcesResponse,
    /// Pods in a terminal phase (a completed Job's), each with what the
    /// kubelet's device manager allocated to it.
    pub terminal: Vec<PodResources>,
    pub lists: Listing,
    pub allocatable: AllocatableResourcesResponse,
    pub delay: Duration,
    /// Answer `GetAllocatableResources` with Unimplemented, as a kubelet
    /// without the method (before 1.21) does.
    pub allocatable_unimplemented: bool,
    /// Answer `GetAllocatableResources` as a kubelet from 1.21 to 1.29 with
    /// its feature gate `KubeletPodResourcesGetAllocatable` off does:
    /// kubernetes/kubernetes pkg/kubelet/apis/podresources/server_v1.go,
    /// `GetAllocatableResources`, returns the plain error
    /// "Pod Resources API GetAllocatableResources disabled", which grpc-go
    /// answers with code Unknown and that message (server.go
    /// `processUnaryRPC`, status/status.go `FromContextError`).
    pub allocatable_gate_off: bool,
}

/// Which pods `List` answers with, by kubelet version.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Kubernetes 1.34 on (feature gate `KubeletPodResourcesListUseActivePods`,
    /// on by default): only active pods, never terminal ones.
    /// kubernetes/kubernetes pkg/kubelet/apis/podresources/server_v1.go,
    /// `List`: `GetActivePods()` when `useActivePods`.
    #[default]
    ActivePods,
    /// Before 1.34: every pod the pod manager knows, terminal ones too
    /// (`List`: `GetPods()`). Before listing, `UpdateAllocatedDevices`
    /// (pkg/kubelet/cm/devicemanager/manager.go) frees the devices of pods
    /// that are not active, so a terminal pod is listed without its
    /// device-plugin devices, unless `sources_ready` is false (after a kubelet
    /// restart, until its config sources are ready): then the function
    /// returns early and the pod is listed with them. unverified: that its
    /// DRA claims are listed alike (the kubelet unprepares them when the pod
    /// terminates); the fake lists them as set.
    AllPods { sources_ready: bool },
}

/// The server, on its own runtime thread; stops when dropped.
pub struct FakeKubelet {
    pub socket: PathBuf,
    answers: Arc<Mutex<Answers>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeKubelet {
    pub fn start(dir: &Path) -> FakeKubelet {
        let socket = dir.join("kubelet.sock");
        let answers = Arc::new(Mutex::new(Answers::default()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        // A restarted kubelet replaces the socket its previous run left behind.
        let _ = std::fs::remove_file(&socket);
        let listener = {
            let _guard = runtime.enter();
            tokio::net::UnixListener::bind(&socket).expect("bind the fake kubelet socket")
        };
        let service = Lister(answers.clone());
        runtime.spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await;
        });
        FakeKubelet {
            socket,
            answers,
            _runtime: runtime,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut Answers)) {
        f(&mut self.answers.lock().unwrap());
    }
}

/// `resource` with `ids`.
pub fn devices(resource: &str, ids: &[&str]) -> ContainerDevices {
    ContainerDevices {
        resource_name: resource.to_string(),
        device_ids: ids.iter().map(|s| s.to_string()).collect(),
        topology: None,
    }
}

/// One pod with one container holding `devices`.
pub fn pod(namespace: &str, name: &str, container: &str, devices: Vec<ContainerDevices>) -> PodResources {
    PodResources {
        name: name.to_string(),
        namespace: namespace.to_string(),
        containers: vec![ContainerResources {
            name: container.to_string(),
            devices,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One pod with one container using the resource claim `claim` of its
/// namespace, to which NVIDIA's DRA driver allocated `devices` (device names
/// from the node's pool `node`), as the kubelet lists it
/// (kubernetes/kubernetes pkg/kubelet/cm/container_manager_linux.go,
/// `GetDynamicResources`). CDI names as the driver's `GetClaimDeviceName`
/// makes them (NVIDIA/k8s-dra-driver-gpu cmd/gpu-kubelet-plugin/cdi.go):
/// `k8s.gpu.nvidia.com/claim=<claim UID>-<device name>`.
pub fn dra_pod(namespace: &str, name: &str, container: &str, claim: &str, devices: &[&str]) -> PodResources {
    let claim_resources = devices
        .iter()
        .map(|device| ClaimResource {
            cdi_devices: vec![CdiDevice {
                name: format!("k8s.gpu.nvidia.com/claim=0d3c2b1a-{claim}-{device}"),
            }],
            driver_name: "gpu.nvidia.com".to_string(),
            pool_name: "node".to_string(),
            device_name: device.to_string(),
            share_id: None,
        })
        .collect();
    PodResources {
        name: name.to_string(),
        namespace: namespace.to_string(),
        containers: vec![ContainerResources {
            name: container.to_string(),
            dynamic_resources: vec![DynamicResource {
                claim_name: claim.to_string(),
                claim_namespace: namespace.to_string(),
                claim_resources,
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

impl Answers {
    /// What `List` answers.
    fn listed(&self) -> ListPodResourcesResponse {
        let mut pods = self.pods.clone();
        if let Listing::AllPods { sources_ready } = self.lists {
            for terminal in &self.terminal {
                let mut terminal = terminal.clone();
                if sources_ready {
                    for container in &mut terminal.containers {
                        container.devices.clear();
                    }
                }
                pods.pod_resources.push(terminal);
            }
        }
        pods
    }
}

#[derive(Clone)]
struct Lister(Arc<Mutex<Answers>>);

impl tonic::server::NamedService for Lister {
    const NAME: &'static str = proto::SERVICE;
}

struct ListSvc(Arc<Mutex<Answers>>);
impl tonic::server::UnaryService<ListPodResourcesRequest> for ListSvc {
    type Response = ListPodResourcesResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;
    fn call(&mut self, _: tonic::Request<ListPodResourcesRequest>) -> Self::Future {
        let answers = self.0.lock().unwrap().clone();
        Box::pin(async move {
            tokio::time::sleep(answers.delay).await;
            Ok(tonic::Response::new(answers.listed()))
        })
    }
}

struct AllocatableSvc(Arc<Mutex<Answers>>);
impl tonic::server::UnaryService<AllocatableResourcesRequest> for AllocatableSvc {
    type Response = AllocatableResourcesResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;
    fn call(&mut self, _: tonic::Request<AllocatableResourcesRequest>) -> Self::Future {
        let answers = self.0.lock().unwrap().clone();
        Box::pin(async move {
            tokio::time::sleep(answers.delay).await;
            if answers.allocatable_unimplemented {
                return Err(tonic::Status::unimplemented("GetAllocatableResources"));
            }
            if answers.allocatable_gate_off {
                return Err(tonic::Status::unknown(
                    "Pod Resources API GetAllocatableResources disabled",
                ));
            }
            Ok(tonic::Response::new(answers.allocatable))
        })
    }
}

impl<B> tower::Service<http::Request<B>> for Lister
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let answers = self.0.clone();
        match req.uri().path() {
            proto::LIST_PATH => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(ListSvc(answers), req).await)
            }),
            proto::GET_ALLOCATABLE_PATH => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(AllocatableSvc(answers), req).await)
            }),
            _ => Box::pin(async move { Ok(tonic::Status::unimplemented("").into_http()) }),
        }
    }
}
