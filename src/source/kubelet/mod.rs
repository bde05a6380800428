//! The kubelet pod-resources API v1 over its unix socket: which container
//! holds which GPU or MIG device (`List`), and which devices the kubelet
//! advertises per resource (`GetAllocatableResources`).
//!
//! Device ids are what the NVIDIA device plugin hands the kubelet: GPU and
//! MIG UUIDs (whatever its `deviceIDStrategy`), with a `::N` suffix per
//! replica when the device is shared (time-slicing, MPS). Strategy `single`
//! advertises MIG devices as `nvidia.com/gpu`; `mixed` as one
//! `nvidia.com/mig-<profile>` resource per profile; sharing with
//! `renameByDefault` adds `.shared` to either. The naming rules, and the
//! [`Advertised`] this source builds, are in [`crate::model`].
//!
//! Every poll opens a connection, makes both calls and closes it, all within
//! one deadline, on a small runtime of its own: a missing socket or a kubelet
//! that does not answer costs one deadline and marks the source down, and
//! never touches the geometry read the same poll.
//!
//! While the kubelet does not answer, owners are left out (they are values
//! read from it, and a value that could not be read is not served), but the
//! last advertisement it answered with is kept for `advertised_mismatch`:
//! see [`KubeletSource::advertised`].

pub mod proto;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tonic::codegen::http::uri::PathAndQuery;

use crate::model::{device_id, is_nvidia_resource, Advertised, GpuSnapshot, PodDevice};
use proto::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, ListPodResourcesRequest,
    ListPodResourcesResponse,
};

/// Where the kubelet serves the pod-resources API.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// What one poll of the kubelet returned.
#[derive(Debug, Clone, Default)]
pub struct KubeletReading {
    pub pods: ListPodResourcesResponse,
    /// `None` from a kubelet without `GetAllocatableResources` (before
    /// Kubernetes 1.23, or with its feature gate off): owners only.
    pub allocatable: Option<AllocatableResourcesResponse>,
}

/// The kubelet pod-resources client.
pub struct KubeletSource {
    socket: PathBuf,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
    advertised: Option<Advertised>,
}

impl std::fmt::Debug for KubeletSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletSource")
            .field("socket", &self.socket)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KubeletSource {
    /// A client of the socket at `socket`; each poll gives up after `timeout`.
    pub fn new(socket: PathBuf, timeout: Duration) -> anyhow::Result<KubeletSource> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the kubelet client's runtime")?;
        Ok(KubeletSource {
            socket,
            timeout,
            runtime,
            advertised: None,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `List` and `GetAllocatableResources`, within the deadline. Call it
    /// from a thread that is not running async code (the poller's blocking
    /// thread).
    pub fn read(&mut self) -> anyhow::Result<KubeletReading> {
        let socket = self.socket.clone();
        let timeout = self.timeout;
        let result = self.runtime.block_on(async move {
            match tokio::time::timeout(timeout, fetch(&socket)).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "kubelet pod-resources at {} did not answer within {timeout:?}",
                    socket.display()
                )),
            }
        });
        match &result {
            Ok(reading) => {
                self.advertised = reading.allocatable.as_ref().map(advertised_from);
            }
            Err(_) => {
                if let Some(advertised) = &mut self.advertised {
                    advertised.held = true;
                }
            }
        }
        result
    }

    /// What `advertised_mismatch` is judged on: the devices the kubelet
    /// advertised in its latest answer, kept (with `held` set) through the
    /// reads that fail after it. `None` before the first answer and after
    /// an answer without `GetAllocatableResources`.
    ///
    /// A kubelet that does not answer says nothing new about what it
    /// advertises, and a wrong advertisement does not fix itself while the
    /// kubelet is down: the device plugin can only re-register once the
    /// kubelet is back, and the next answer then shows it. Dropping the
    /// finding instead would resolve the alert in the middle of an incident
    /// and restart its `for:` wait each time a slow kubelet misses a poll,
    /// so a mismatch on a struggling kubelet would never page.
    pub fn advertised(&self) -> Option<&Advertised> {
        self.advertised.as_ref()
    }
}

async fn fetch(socket: &Path) -> anyhow::Result<KubeletReading> {
    let path = socket.to_path_buf();
    // The URI is required by the transport and never used: the connector dials the socket.
    let channel = tonic::transport::Endpoint::from_static("http://kubelet.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .with_context(|| {
            format!(
                "cannot connect to the kubelet pod-resources socket {}",
                socket.display()
            )
        })?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .context("kubelet pod-resources connection not ready")?;
    let pods = grpc
        .unary(
            tonic::Request::new(ListPodResourcesRequest {}),
            PathAndQuery::from_static(proto::LIST_PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .context("kubelet pod-resources List failed")?
        .into_inner();
    grpc.ready()
        .await
        .context("kubelet pod-resources connection not ready")?;
    let allocatable = match grpc
        .unary(
            tonic::Request::new(AllocatableResourcesRequest {}),
            PathAndQuery::from_static(proto::GET_ALLOCATABLE_PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await
    {
        Ok(response) => Some(response.into_inner()),
        Err(status) if status.code() == tonic::Code::Unimplemented => None,
        Err(status) => {
            return Err(
                anyhow::Error::new(status).context("kubelet pod-resources GetAllocatableResources failed")
            )
        }
    };
    Ok(KubeletReading { pods, allocatable })
}

/// Which container holds each GPU and MIG device of `gpus`: one entry per
/// (device, container), sharing suffixes stripped, sorted. Ids that name no
/// device of `gpus` are left out.
pub fn owners(pods: &ListPodResourcesResponse, gpus: &[GpuSnapshot]) -> Vec<PodDevice> {
    let mut devices: BTreeMap<&str, (u32, Option<u32>, Option<u32>)> = BTreeMap::new();
    for gpu in gpus {
        devices.insert(gpu.uuid.as_str(), (gpu.index, None, None));
        for gi in &gpu.gpu_instances {
            for ci in &gi.compute_instances {
                devices.insert(ci.mig_uuid.as_str(), (gpu.index, Some(gi.id), Some(ci.id)));
            }
        }
    }
    let mut found = BTreeSet::new();
    for pod in &pods.pod_resources {
        for container in &pod.containers {
            for d in container
                .devices
                .iter()
                .filter(|d| is_nvidia_resource(&d.resource_name))
            {
                for id in &d.device_ids {
                    let id = device_id(id);
                    if let Some(&(gpu, gi, ci)) = devices.get(id) {
                        found.insert(PodDevice {
                            mig_uuid: id.to_string(),
                            gpu,
                            gi,
                            ci,
                            namespace: pod.namespace.clone(),
                            pod: pod.name.clone(),
                            container: container.name.clone(),
                        });
                    }
                }
            }
        }
    }
    found.into_iter().collect()
}

/// What the kubelet advertises, from its `GetAllocatableResources` answer.
pub fn advertised_from(allocatable: &AllocatableResourcesResponse) -> Advertised {
    Advertised::from_devices(
        allocatable
            .devices
            .iter()
            .map(|d| (d.resource_name.as_str(), d.device_ids.as_slice())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_socket_fails_within_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = KubeletSource::new(dir.path().join("kubelet.sock"), Duration::from_secs(2)).unwrap();
        let started = std::time::Instant::now();
        let error = source.read().expect_err("no socket");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");
    }
}
