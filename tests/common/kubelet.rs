//! A fake kubelet pod-resources server (v1) on a unix socket, for the tests:
//! it answers `List` and `GetAllocatableResources` with what the test sets,
//! after an optional delay.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use mig_exporter::source::kubelet::proto::{
    self, AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices, ContainerResources,
    ListPodResourcesRequest, ListPodResourcesResponse, PodResources,
};
use tonic::codegen::{http, Body, BoxFuture, StdError};

#[derive(Debug, Default, Clone)]
pub struct Answers {
    pub pods: ListPodResourcesResponse,
    pub allocatable: AllocatableResourcesResponse,
    pub delay: Duration,
    /// Answer `GetAllocatableResources` with Unimplemented, as an old kubelet does.
    pub allocatable_unimplemented: bool,
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
            cpu_ids: Vec::new(),
        }],
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
            Ok(tonic::Response::new(answers.pods))
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
