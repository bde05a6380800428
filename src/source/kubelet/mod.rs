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
//! [`Advertised`] this source builds, are in [`crate::model`]. Devices that
//! NVIDIA's DRA driver allocated come in `dynamic_resources` ([`dra`]);
//! [`owners`] tells live allocations from those of finished pods.
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

pub mod dra;
pub mod owners;
pub mod proto;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::model::{Advertised, GpuSnapshot, PodDevice};
use owners::OwnerTracker;
use proto::pod_resources_lister_client::PodResourcesListerClient;
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
    /// `None` from a kubelet without `GetAllocatableResources`, with the
    /// reason in `allocatable_off`: owners only.
    pub allocatable: Option<AllocatableResourcesResponse>,
    pub allocatable_off: Option<AllocatableOff>,
}

/// Why a kubelet that answers does not tell what it advertises, so that
/// `advertised_mismatch` is not judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocatableOff {
    /// gRPC Unimplemented: a kubelet without the method (before 1.21).
    Unimplemented,
    /// gRPC Unknown with the kubelet's message: Kubernetes 1.21 to 1.29 with
    /// the feature gate `KubeletPodResourcesGetAllocatable` off (alpha and
    /// off by default in 1.21 and 1.22). kubernetes/kubernetes
    /// pkg/kubelet/apis/podresources/server_v1.go,
    /// `(*v1PodResourcesServer).GetAllocatableResources`, returns a plain
    /// error "Pod Resources API GetAllocatableResources disabled", which
    /// grpc-go sends as code Unknown (server.go `processUnaryRPC`,
    /// status/status.go `FromContextError`).
    FeatureGateOff { message: String },
}

/// The kubelet's message when the feature gate is off (see [`AllocatableOff::FeatureGateOff`]).
pub const ALLOCATABLE_DISABLED_MESSAGE: &str = "Pod Resources API GetAllocatableResources disabled";

impl AllocatableOff {
    /// The reason in `status`, or `None` when it is a failure.
    pub fn from_status(status: &tonic::Status) -> Option<AllocatableOff> {
        match status.code() {
            tonic::Code::Unimplemented => Some(AllocatableOff::Unimplemented),
            tonic::Code::Unknown if status.message().contains("GetAllocatableResources disabled") => {
                Some(AllocatableOff::FeatureGateOff {
                    message: status.message().to_string(),
                })
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for AllocatableOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllocatableOff::Unimplemented => write!(
                f,
                "the kubelet answers GetAllocatableResources with Unimplemented (a kubelet older than 1.21)"
            ),
            AllocatableOff::FeatureGateOff { message } => write!(
                f,
                "the kubelet's feature gate KubeletPodResourcesGetAllocatable is off (it answers \
                 GetAllocatableResources with \"{message}\"); turn it on to judge advertised devices"
            ),
        }
    }
}

/// The kubelet pod-resources client.
pub struct KubeletSource {
    socket: PathBuf,
    timeout: Duration,
    runtime: crate::client_runtime::ClientRuntime,
    advertised: Option<Advertised>,
    advertisement_off: Option<AllocatableOff>,
    owners: OwnerTracker,
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
        let runtime =
            crate::client_runtime::ClientRuntime::new().context("starting the kubelet client's runtime")?;
        Ok(KubeletSource {
            socket,
            timeout,
            runtime,
            advertised: None,
            advertisement_off: None,
            owners: OwnerTracker::default(),
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
                if reading.allocatable_off != self.advertisement_off {
                    match &reading.allocatable_off {
                        Some(off) => tracing::warn!(
                            reason = %off,
                            "advertised_mismatch is not judged: the kubelet does not tell what it advertises"
                        ),
                        None => tracing::info!(
                            "the kubelet tells what it advertises: advertised_mismatch is judged"
                        ),
                    }
                    self.advertisement_off = reading.allocatable_off.clone();
                }
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

    /// Why the latest answer told nothing of what the kubelet advertises
    /// (so `advertised_mismatch` is off), when that is why.
    pub fn advertisement_off(&self) -> Option<&AllocatableOff> {
        self.advertisement_off.as_ref()
    }

    /// The owners of the devices of `gpus` in `pods` (read from this
    /// kubelet): see [`OwnerTracker::owners`].
    pub fn owners(&mut self, pods: &ListPodResourcesResponse, gpus: &[GpuSnapshot]) -> Vec<PodDevice> {
        self.owners.owners(pods, gpus)
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
    let mut client = PodResourcesListerClient::new(channel);
    let pods = client
        .list(ListPodResourcesRequest {})
        .await
        .context("kubelet pod-resources List failed")?
        .into_inner();
    let (allocatable, allocatable_off) = match client
        .get_allocatable_resources(AllocatableResourcesRequest {})
        .await
    {
        Ok(response) => (Some(response.into_inner()), None),
        Err(status) => match AllocatableOff::from_status(&status) {
            Some(off) => (None, Some(off)),
            None => {
                return Err(anyhow::Error::new(status)
                    .context("kubelet pod-resources GetAllocatableResources failed"))
            }
        },
    };
    Ok(KubeletReading {
        pods,
        allocatable,
        allocatable_off,
    })
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
    fn get_allocatable_off_is_told_from_a_failure() {
        let gate = tonic::Status::unknown(ALLOCATABLE_DISABLED_MESSAGE);
        let off = AllocatableOff::from_status(&gate).expect("the feature gate is off");
        assert_eq!(
            off,
            AllocatableOff::FeatureGateOff {
                message: ALLOCATABLE_DISABLED_MESSAGE.to_string()
            }
        );
        assert!(
            off.to_string()
                .contains("feature gate KubeletPodResourcesGetAllocatable is off"),
            "{off}"
        );
        assert_eq!(
            AllocatableOff::from_status(&tonic::Status::unimplemented("")),
            Some(AllocatableOff::Unimplemented)
        );
        for failure in [
            tonic::Status::unknown("transport is closing"),
            tonic::Status::unavailable(ALLOCATABLE_DISABLED_MESSAGE),
            tonic::Status::internal("oops"),
        ] {
            assert_eq!(AllocatableOff::from_status(&failure), None, "{failure:?}");
        }
    }

    /// A length-delimited field: key (`tag`, wire type 2), the length as a
    /// base-128 varint (low groups first, high bit set on all but the last),
    /// the bytes.
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2];
        let mut length = bytes.len();
        while length >= 0x80 {
            out.push((length & 0x7f) as u8 | 0x80);
            length >>= 7;
        }
        out.push(length as u8);
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_dra_list_answer_encoded_by_hand_from_the_proto_decodes() {
        use prost::Message;
        // api.proto: CDIDevice.name = 1; ClaimResource cdi_devices = 1,
        // driver_name = 2, pool_name = 3, device_name = 4, share_id = 5;
        // DynamicResource claim_name = 2, claim_namespace = 3,
        // claim_resources = 4; ContainerResources name = 1,
        // dynamic_resources = 5; PodResources name = 1, namespace = 2,
        // containers = 3; ListPodResourcesResponse pod_resources = 1.
        let cdi = field(1, b"k8s.gpu.nvidia.com/claim=6f1d-gpu-0-mig-1g10gb-19-4");
        let claim_resource = [
            field(1, &cdi),
            field(2, b"gpu.nvidia.com"),
            field(3, b"node-a"),
            field(4, b"gpu-0-mig-1g10gb-19-4"),
            field(5, b"share-1"),
        ]
        .concat();
        let dynamic = [field(2, b"infer-gpu"), field(3, b"ml"), field(4, &claim_resource)].concat();
        let container = [field(1, b"main"), field(5, &dynamic)].concat();
        let pod = [field(1, b"infer-0"), field(2, b"ml"), field(3, &container)].concat();
        let bytes = field(1, &pod);

        let decoded = ListPodResourcesResponse::decode(bytes.as_slice()).expect("decode");
        let container = &decoded.pod_resources[0].containers[0];
        assert_eq!(
            (decoded.pod_resources[0].name.as_str(), container.name.as_str()),
            ("infer-0", "main")
        );
        let claim = &container.dynamic_resources[0];
        assert_eq!(
            (claim.claim_name.as_str(), claim.claim_namespace.as_str()),
            ("infer-gpu", "ml")
        );
        let resource = &claim.claim_resources[0];
        assert_eq!(
            (
                resource.driver_name.as_str(),
                resource.pool_name.as_str(),
                resource.device_name.as_str(),
                resource.share_id.as_deref(),
            ),
            (
                "gpu.nvidia.com",
                "node-a",
                "gpu-0-mig-1g10gb-19-4",
                Some("share-1")
            )
        );
        assert_eq!(
            resource.cdi_devices[0].name,
            "k8s.gpu.nvidia.com/claim=6f1d-gpu-0-mig-1g10gb-19-4"
        );
        assert_eq!(
            decoded.encode_to_vec(),
            bytes,
            "the generated types encode the same bytes"
        );
    }

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
