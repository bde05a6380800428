//! Command-line interface: `serve` (the default), `check`, `geometry` and
//! `relay-pod-resources`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::drift::report::CheckReport;
use crate::drift::{
    from_kubernetes, ConfigName, DesiredSource, DriftTracker, StateDoc, StateStore, DEFAULT_STATE_DIR,
    DEFAULT_STATE_FILE,
};
use crate::expose::listen_address::ListenAddress;
use crate::geometry::{self, OutputFormat};
use crate::poll::{unix_now, Poller, Published};
use crate::source::dcgm::{DcgmAddress, DcgmOptions, DcgmSource};
use crate::source::gpm::GpmSource;
use crate::source::nvml::{NvmlOptions, NvmlSource};
use crate::source::scenarios::{self, DEFAULT_SCENARIO};
use crate::source::sim::SimSource;
use crate::source::{GeometrySource, UtilizationSource};

/// A geometry source and the utilization sources that run on what it reads, in order.
pub type Sources = (Box<dyn GeometrySource>, Vec<Box<dyn UtilizationSource>>);

/// Default listen port: exporters register from 10000 up, and 9100–9999 are all taken.
/// No host: every address of both families, so IPv6-only and dual-stack nodes work too.
pub const DEFAULT_LISTEN: &str = ":10110";

/// Where the DaemonSet puts this node's name (the downward API's spec.nodeName), read when
/// neither --kubernetes.node-name nor MIG_EXPORTER_KUBERNETES_NODE_NAME gives it.
pub const NODE_NAME_ENV: &str = "NODE_NAME";

#[derive(Debug, Parser)]
#[command(
    name = "mig-exporter",
    version,
    long_version = crate::LONG_VERSION,
    about = "Prometheus exporter for NVIDIA MIG geometry, utilization and drift",
    after_help = "Every flag can also be set from the environment variable in [env: ...] beside it; \
                  a flag on the command line wins."
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Parsed once at start and never moved about: boxing `serve`'s flags would
// buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve /metrics and the landing page (the default).
    Serve(ServeArgs),
    /// Print the node's MIG layout: GPU instances, compute instances, remaining capacity.
    Geometry(GeometryArgs),
    /// Read the node once, compare it with the desired config and the last-known-good
    /// state, print the findings; exit 0 no drift, 1 drift, 2 cannot tell.
    Check(CheckArgs),
    /// Relay the kubelet's pod-resources socket to one the exporter's group may use,
    /// so the exporter need not run as root (see docs/security.md).
    RelayPodResources(crate::relay::RelayArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Built-in simulated node (h100-mixed, a100-single, h100-rebooted, gi-without-ci, a100-pending).
    /// Without --simulate, --world or --nvml: the hardware where NVIDIA's driver answers,
    /// else h100-mixed, with a warning.
    #[arg(
        long,
        env = "MIG_EXPORTER_SIMULATE",
        value_name = "SCENARIO",
        conflicts_with = "world"
    )]
    pub simulate: Option<String>,
    /// Simulated node read from a World file, re-read on every poll (mutate it with `mig-sim`).
    #[arg(
        long,
        env = "MIG_EXPORTER_WORLD",
        value_name = "FILE",
        conflicts_with = "nvml"
    )]
    pub world: Option<PathBuf>,
    /// Read the real node through NVML (libnvidia-ml.so.1), never a simulated one: a missing
    /// driver shows as mig_exporter_source_up{source="nvml"} 0.
    #[arg(long, env = "MIG_EXPORTER_NVML", conflicts_with = "simulate", value_parser = BoolishValueParser::new())]
    pub nvml: bool,
    /// Load NVML from this file instead of the system's libnvidia-ml.so.1 (also where a start
    /// without --nvml, --simulate or --world looks for the driver).
    #[arg(
        long = "nvml.library",
        env = "MIG_EXPORTER_NVML_LIBRARY",
        value_name = "PATH",
        conflicts_with_all = ["simulate", "world"]
    )]
    pub nvml_library: Option<PathBuf>,
    /// Cadence of NVML reads that are expensive on real GPUs (total energy ≈ 4 ms per call).
    #[arg(
        long = "nvml.slow-interval",
        env = "MIG_EXPORTER_NVML_SLOW_INTERVAL",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub nvml_slow_interval: Duration,
    /// Also read PCIe throughput (≈ 21 ms per GPU on a real H100), on the slow cadence.
    #[arg(
        long = "nvml.pcie-throughput",
        env = "MIG_EXPORTER_NVML_PCIE_THROUGHPUT",
        value_parser = BoolishValueParser::new()
    )]
    pub nvml_pcie_throughput: bool,
    /// With --nvml, do not read per-instance activity from DCGM.
    #[arg(long = "no-dcgm", env = "MIG_EXPORTER_NO_DCGM", requires = "nvml", value_parser = BoolishValueParser::new())]
    pub no_dcgm: bool,
    /// With --nvml, do not read GPU and GPU-instance activity from NVML GPM
    /// (GPU Performance Monitoring, Hopper and newer).
    #[arg(long = "no-gpm", env = "MIG_EXPORTER_NO_GPM", requires = "nvml", value_parser = BoolishValueParser::new())]
    pub no_gpm: bool,
    /// Load DCGM from this file instead of libdcgm.so.4.
    #[arg(
        long = "dcgm.library",
        env = "MIG_EXPORTER_DCGM_LIBRARY",
        value_name = "PATH",
        requires = "nvml"
    )]
    pub dcgm_library: Option<PathBuf>,
    /// The nv-hostengine to read: host[:port], or unix:///path for its unix socket.
    #[arg(
        long = "dcgm.address",
        env = "MIG_EXPORTER_DCGM_ADDRESS",
        value_name = "ADDR",
        default_value = "localhost:5555",
        value_parser = DcgmAddress::parse
    )]
    pub dcgm_address: DcgmAddress,
    /// Start a DCGM host engine inside the exporter instead of connecting to one.
    #[arg(
        long = "dcgm.embedded",
        env = "MIG_EXPORTER_DCGM_EMBEDDED",
        requires = "nvml",
        value_parser = BoolishValueParser::new()
    )]
    pub dcgm_embedded: bool,
    /// Tests only: where /proc/driver/nvidia and /dev/nvidia-caps are looked for.
    #[arg(
        long = "nvml.capabilities-root",
        env = "MIG_EXPORTER_NVML_CAPABILITIES_ROOT",
        value_name = "DIR",
        requires = "nvml",
        hide = true
    )]
    pub nvml_capabilities_root: Option<PathBuf>,
}

/// What the node should be: the desired MIG config and the last-known-good state.
#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    /// nvidia-mig-parted config file (version: v1) holding the MIG geometry the node should have;
    /// re-read on every poll.
    #[arg(long = "mig.config", env = "MIG_EXPORTER_MIG_CONFIG", value_name = "FILE")]
    pub mig_config: Option<PathBuf>,
    /// The config of --mig.config that applies (the node's nvidia.com/mig.config label value).
    /// Without it or --mig.config-name-file, the file's only config.
    #[arg(
        long = "mig.config-name",
        env = "MIG_EXPORTER_MIG_CONFIG_NAME",
        value_name = "NAME",
        requires = "mig_config",
        conflicts_with = "mig_config_name_file"
    )]
    pub mig_config_name: Option<String>,
    /// File holding the config name, re-read on every poll: the bare label value, or
    /// `nvidia.com/mig.config="NAME"` among other label lines. Empty: no desired config.
    #[arg(
        long = "mig.config-name-file",
        env = "MIG_EXPORTER_MIG_CONFIG_NAME_FILE",
        value_name = "FILE",
        requires = "mig_config"
    )]
    pub mig_config_name_file: Option<PathBuf>,
    /// Read the desired config from the Kubernetes API, as the GPU operator's MIG manager does: the
    /// config this node's nvidia.com/mig.config label names, in the operator's mig-parted ConfigMap.
    /// Read-only: a get of this node and of the ConfigMap (docs/kubernetes.md, "Desired state from the GPU
    /// operator"). Needs the node's name (--kubernetes.node-name or NODE_NAME).
    #[arg(
        long = "mig.config-from-kubernetes",
        env = "MIG_EXPORTER_MIG_CONFIG_FROM_KUBERNETES",
        conflicts_with = "mig_config",
        value_parser = BoolishValueParser::new()
    )]
    pub mig_config_from_kubernetes: bool,
    /// The GPU operator's namespace, where its mig-parted ConfigMaps are.
    #[arg(
        long = "mig.config-namespace", env = "MIG_EXPORTER_MIG_CONFIG_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = from_kubernetes::DEFAULT_NAMESPACE,
        requires = "mig_config_from_kubernetes"
    )]
    pub mig_config_namespace: String,
    /// The ConfigMaps holding the mig-parted configs, comma-separated or repeated: the first that
    /// exists is used; {node} is this node's name. Default: the config the MIG manager generates
    /// for the node (GPU operator 26.3 and later), then the operator's default one. Give the one
    /// the operator's migManager.config.name names when it has one.
    #[arg(
        long = "mig.config-configmap", env = "MIG_EXPORTER_MIG_CONFIG_CONFIGMAP",
        value_name = "NAME",
        value_delimiter = ',',
        default_values_t = from_kubernetes::DEFAULT_CONFIG_MAPS.map(String::from),
        requires = "mig_config_from_kubernetes"
    )]
    pub mig_config_configmaps: Vec<String>,
    /// The ConfigMap key holding the mig-parted config.
    #[arg(
        long = "mig.config-key", env = "MIG_EXPORTER_MIG_CONFIG_KEY",
        value_name = "KEY",
        default_value = from_kubernetes::DEFAULT_KEY,
        requires = "mig_config_from_kubernetes"
    )]
    pub mig_config_key: String,
    /// How often to read the label and the ConfigMap from the Kubernetes API.
    #[arg(
        long = "mig.config-interval", env = "MIG_EXPORTER_MIG_CONFIG_INTERVAL",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration,
        requires = "mig_config_from_kubernetes"
    )]
    pub mig_config_interval: Duration,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    /// Where each GPU's last-known-good geometry is kept across restarts and reboots.
    /// Default with --nvml: /var/lib/mig-exporter/state.json when /var/lib/mig-exporter exists,
    /// else in memory; with a simulated node (--simulate, --world): in memory.
    #[arg(long = "state.file", env = "MIG_EXPORTER_STATE_FILE", value_name = "FILE")]
    pub state_file: Option<PathBuf>,
}

/// How the exporter reaches the Kubernetes API server (for --mig.config-from-kubernetes).
#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    /// This node's name, as the downward API's spec.nodeName gives it. Default: NODE_NAME.
    #[arg(
        long = "kubernetes.node-name",
        value_name = "NAME",
        env = "MIG_EXPORTER_KUBERNETES_NODE_NAME"
    )]
    pub kubernetes_node_name: Option<String>,
    /// The API server, https://HOST[:PORT]. Default: KUBERNETES_SERVICE_HOST and
    /// KUBERNETES_SERVICE_PORT, which the kubelet gives every pod.
    #[arg(
        long = "kubernetes.api-server",
        env = "MIG_EXPORTER_KUBERNETES_API_SERVER",
        value_name = "URL"
    )]
    pub kubernetes_api_server: Option<String>,
    /// The service account token, re-read for every request.
    #[arg(long = "kubernetes.token-file", env = "MIG_EXPORTER_KUBERNETES_TOKEN_FILE", value_name = "FILE", default_value = crate::kube::DEFAULT_TOKEN_FILE)]
    pub kubernetes_token_file: PathBuf,
    /// The CA certificates the API server's certificate must chain to.
    #[arg(long = "kubernetes.ca-file", env = "MIG_EXPORTER_KUBERNETES_CA_FILE", value_name = "FILE", default_value = crate::kube::DEFAULT_CA_FILE)]
    pub kubernetes_ca_file: PathBuf,
    /// How long one read of the Kubernetes API (the node and the ConfigMaps) may take.
    #[arg(long = "kubernetes.timeout", env = "MIG_EXPORTER_KUBERNETES_TIMEOUT", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub kubernetes_timeout: Duration,
}

impl DriftArgs {
    /// The desired config source the flags name, if any. Fails on flags that
    /// cannot work: --mig.config-from-kubernetes without a node name or an
    /// API server, or with names that are not Kubernetes object names.
    pub fn desired(&self) -> anyhow::Result<Option<DesiredSource>> {
        if self.mig_config_from_kubernetes {
            return self.kubernetes_source().map(Some);
        }
        let Some(path) = self.mig_config.clone() else {
            return Ok(None);
        };
        let name = match (&self.mig_config_name, &self.mig_config_name_file) {
            (Some(name), _) => ConfigName::Fixed(name.clone()),
            (None, Some(file)) => ConfigName::File(file.clone()),
            (None, None) => ConfigName::Only,
        };
        Ok(Some(DesiredSource::new(path, name)))
    }

    fn kubernetes_source(&self) -> anyhow::Result<DesiredSource> {
        use crate::kube::{ApiServer, Client};
        let k = &self.kubernetes;
        let node = k
            .kubernetes_node_name
            .clone()
            .or_else(|| std::env::var(NODE_NAME_ENV).ok())
            .filter(|n| !n.is_empty())
            .context(
                "--mig.config-from-kubernetes needs this node's name: --kubernetes.node-name, or \
             NODE_NAME set from the downward API's spec.nodeName",
            )?;
        let server = match &k.kubernetes_api_server {
            Some(url) => ApiServer::parse(url)?,
            None => ApiServer::in_cluster(|name| std::env::var(name).ok())?,
        };
        let client = Client::new(
            server,
            k.kubernetes_token_file.clone(),
            k.kubernetes_ca_file.clone(),
            k.kubernetes_timeout,
        )
        .context("starting the Kubernetes client's runtime")?;
        let origin = from_kubernetes::KubernetesOrigin::new(
            client,
            from_kubernetes::KubernetesSettings {
                node,
                namespace: self.mig_config_namespace.clone(),
                config_maps: self.mig_config_configmaps.clone(),
                key: self.mig_config_key.clone(),
                interval: self.mig_config_interval,
            },
        )
        .map_err(|e| anyhow::anyhow!("--mig.config-from-kubernetes: {e}"))?;
        Ok(DesiredSource::from_kubernetes(origin))
    }

    /// A drift tracker for `source`. Fails when the desired config cannot be
    /// read, parsed or selected; a state file that cannot be read is not an
    /// error here (the tracker reports it). Also says where the
    /// last-known-good state comes from.
    pub fn tracker(
        &self,
        source: &SourceArgs,
        read_only: bool,
    ) -> anyhow::Result<(DriftTracker, Option<String>)> {
        let desired = self.desired()?;
        match &desired {
            Some(d) if d.fatal_at_start() => {
                d.load()?;
            }
            Some(d) => tracing::info!(from = %d.describe(), "reading the desired MIG config from Kubernetes"),
            None => {}
        }
        let file = |path: &std::path::Path| {
            (
                StateStore::open(path, read_only),
                Some(path.display().to_string()),
            )
        };
        let (state, origin) = match (&self.state_file, source.scenario()) {
            (Some(path), _) => file(path),
            (None, Some(scenario)) => {
                let before = scenarios::previous_boot(scenario)?;
                let origin = before
                    .is_some()
                    .then(|| format!("built-in scenario '{scenario}' before its reboot (in memory)"));
                let doc = before.map_or_else(StateDoc::default, |world| {
                    let reading = crate::source::sim::reading_from_world(&world);
                    StateDoc::from_gpus(&world.boot_id, &reading.gpus, 0.0)
                });
                (StateStore::in_memory(doc), origin)
            }
            (None, None) if source.nvml && std::path::Path::new(DEFAULT_STATE_DIR).is_dir() => {
                file(std::path::Path::new(DEFAULT_STATE_FILE))
            }
            (None, None) => {
                tracing::info!(
                    "last-known-good state is kept in memory only (no --state.file{}): \
                     it does not survive a restart",
                    if source.nvml {
                        ", and no /var/lib/mig-exporter"
                    } else {
                        " for a simulated node"
                    }
                );
                (StateStore::in_memory(StateDoc::default()), None)
            }
        };
        Ok((DriftTracker::new(desired, state), origin))
    }
}

/// The kubelet pod-resources source: pod owners and `advertised_mismatch`.
#[derive(Debug, Clone, Args)]
pub struct KubeletArgs {
    /// The kubelet pod-resources socket. Without this flag the source is on only when
    /// /var/lib/kubelet/pod-resources/kubelet.sock exists at start; with it, always (a
    /// missing socket then shows as mig_exporter_source_up{source="kubelet"} 0).
    #[arg(
        long = "kubelet.pod-resources-socket",
        env = "MIG_EXPORTER_KUBELET_POD_RESOURCES_SOCKET",
        value_name = "PATH",
        conflicts_with = "no_kubelet"
    )]
    pub pod_resources_socket: Option<PathBuf>,
    /// How long one poll of the kubelet (connect, List, GetAllocatableResources) may take.
    #[arg(long = "kubelet.timeout", env = "MIG_EXPORTER_KUBELET_TIMEOUT", value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Do not read the kubelet, even where its socket exists.
    #[arg(long = "no-kubelet", env = "MIG_EXPORTER_NO_KUBELET", value_parser = BoolishValueParser::new())]
    pub no_kubelet: bool,
}

impl KubeletArgs {
    /// The socket to read, if the source is on.
    pub fn socket(&self) -> Option<PathBuf> {
        if self.no_kubelet {
            return None;
        }
        self.pod_resources_socket.clone().or_else(|| {
            let default = std::path::Path::new(crate::source::kubelet::DEFAULT_SOCKET);
            default.exists().then(|| default.to_path_buf())
        })
    }
}

/// OTLP push to an OpenTelemetry collector; the standard `OTEL_*` variables
/// configure it too (see docs/otlp.md).
#[derive(Debug, Clone, Args)]
pub struct OtlpArgs {
    /// Push metrics over OTLP to this collector (e.g. http://collector:4318, or
    /// http://collector:4317 with grpc), as OTEL_EXPORTER_OTLP_ENDPOINT does; overrides it.
    /// Without it or an OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT, nothing is pushed.
    #[arg(
        long = "otlp.endpoint",
        env = "MIG_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// OTLP transport: grpc or http/protobuf. Default: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.
    #[arg(
        long = "otlp.protocol",
        env = "MIG_EXPORTER_OTLP_PROTOCOL",
        value_name = "PROTOCOL"
    )]
    pub protocol: Option<crate::expose::otlp::Protocol>,
}

impl OtlpArgs {
    /// Where to push, if anywhere: the flags over the process environment.
    pub fn settings(&self) -> anyhow::Result<Option<crate::expose::otlp::Settings>> {
        crate::expose::otlp::Settings::resolve(self.endpoint.as_deref(), self.protocol, |name| {
            std::env::var(name).ok()
        })
    }
}

/// The series budget: collectors a big fleet may leave out of `/metrics` and the
/// OTLP push (docs/series-budget.md). Each only filters what is exposed.
#[derive(Debug, Clone, Default, Args)]
pub struct CollectorArgs {
    /// Leave out each compute instance's activity ratios (nvidia_mig_compute_instance_*_ratio):
    /// the shipped MigInstanceSaturated alert and the SM and tensor panels lose their input.
    #[arg(long = "no-collector.ci-activity", env = "MIG_EXPORTER_NO_COLLECTOR_CI_ACTIVITY", value_parser = BoolishValueParser::new())]
    pub no_ci_activity: bool,
    /// Leave out each GPU instance's activity ratios (nvidia_mig_gpu_instance_*_ratio).
    #[arg(long = "no-collector.gi-activity", env = "MIG_EXPORTER_NO_COLLECTOR_GI_ACTIVITY", value_parser = BoolishValueParser::new())]
    pub no_gi_activity: bool,
    /// Leave out the whole GPU's activity ratios and utilization (nvidia_gpu_*_ratio).
    #[arg(long = "no-collector.gpu-activity", env = "MIG_EXPORTER_NO_COLLECTOR_GPU_ACTIVITY", value_parser = BoolishValueParser::new())]
    pub no_gpu_activity: bool,
    /// Leave out each GPU instance's framebuffer (nvidia_mig_gpu_instance_memory_*_bytes):
    /// MigInstanceSaturated loses its memory half.
    #[arg(long = "no-collector.gi-memory", env = "MIG_EXPORTER_NO_COLLECTOR_GI_MEMORY", value_parser = BoolishValueParser::new())]
    pub no_gi_memory: bool,
    /// Leave out GPU health: ECC, remapped rows, XID errors, persistence mode. The shipped
    /// MigGpuXid*, MigGpuEcc* and MigGpuRowRemapping* alerts then cannot fire.
    #[arg(long = "no-collector.health", env = "MIG_EXPORTER_NO_COLLECTOR_HEALTH", value_parser = BoolishValueParser::new())]
    pub no_health: bool,
    /// Leave out GPU telemetry: power, temperature, SM clock, whole-GPU framebuffer use,
    /// energy, PCIe throughput.
    #[arg(long = "no-collector.gpu-telemetry", env = "MIG_EXPORTER_NO_COLLECTOR_GPU_TELEMETRY", value_parser = BoolishValueParser::new())]
    pub no_gpu_telemetry: bool,
    /// Leave out per-profile capacity (nvidia_mig_profile_max_instances and
    /// _remaining_instances): the dashboards' profile variable and "can still be created" panel.
    #[arg(long = "no-collector.profiles", env = "MIG_EXPORTER_NO_COLLECTOR_PROFILES", value_parser = BoolishValueParser::new())]
    pub no_profiles: bool,
}

impl CollectorArgs {
    /// The budget the flags select.
    pub fn budget(&self) -> crate::expose::budget::Budget {
        use crate::expose::budget::{Budget, Collector};
        [
            (self.no_ci_activity, Collector::CiActivity),
            (self.no_gi_activity, Collector::GiActivity),
            (self.no_gpu_activity, Collector::GpuActivity),
            (self.no_gi_memory, Collector::GiMemory),
            (self.no_health, Collector::Health),
            (self.no_gpu_telemetry, Collector::GpuTelemetry),
            (self.no_profiles, Collector::Profiles),
        ]
        .into_iter()
        .filter(|(off, _)| *off)
        .fold(Budget::FULL, |b, (_, c)| b.without(c))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub drift: DriftArgs,
    #[command(flatten)]
    pub kubelet: KubeletArgs,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    #[command(flatten)]
    pub collectors: CollectorArgs,
    /// Address to listen on: `:PORT` or `[::]:PORT` for every address of both families,
    /// `0.0.0.0:PORT` for IPv4 only, `HOST:PORT`, `[IPV6]:PORT`. Repeat for several (or separate
    /// them with commas).
    #[arg(long = "web.listen-address", env = "MIG_EXPORTER_WEB_LISTEN_ADDRESS", value_name = "ADDR", default_value = DEFAULT_LISTEN, value_delimiter = ',')]
    pub listen_address: Vec<ListenAddress>,
    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        env = "MIG_EXPORTER_WEB_TELEMETRY_PATH",
        value_name = "PATH",
        default_value = "/metrics"
    )]
    pub telemetry_path: String,
    /// How often to read the node (e.g. 500ms, 5s, 1m). NVML GPM samples at
    /// most every 100 ms whatever this says; a faster poll shows its latest rate.
    #[arg(long = "poll.interval", env = "MIG_EXPORTER_POLL_INTERVAL", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(
        long = "log.level",
        env = "MIG_EXPORTER_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "info"
    )]
    pub log_level: LogLevel,
    /// Output format of log messages.
    #[arg(
        long = "log.format",
        env = "MIG_EXPORTER_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,
    /// TLS and basic authentication, in the Prometheus exporter-toolkit format (see the
    /// docs/security.md); re-read when it or a certificate it names changes.
    #[arg(
        long = "web.config.file",
        env = "MIG_EXPORTER_WEB_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub web_config_file: Option<PathBuf>,
    /// Longest wait for a request's headers (the idle time of a kept-alive connection
    /// included) and for a TLS handshake; slower connections are closed.
    #[arg(long = "web.read-timeout", env = "MIG_EXPORTER_WEB_READ_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub read_timeout: Duration,
    /// Longest time from reading a request's headers to having written its whole response;
    /// a client that does not read its response in time is disconnected, so slow readers
    /// cannot hold every --web.max-connections slot.
    #[arg(long = "web.write-timeout", env = "MIG_EXPORTER_WEB_WRITE_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// Connections served at once; further ones wait until one closes.
    #[arg(long = "web.max-connections", env = "MIG_EXPORTER_WEB_MAX_CONNECTIONS", value_name = "N", default_value = "512",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Also serve, on the same /metrics, the DCGM_FI_* series dcgm-exporter's dashboards and
    /// alerts read, with its labels and units, while a team moves over (Prometheus only; see
    /// docs/migrating-from-dcgm-exporter.md). Hostname is --kubernetes.node-name, else NODE_NAME,
    /// else the host's name.
    #[arg(
        long = "compat.dcgm-exporter",
        env = "MIG_EXPORTER_COMPAT_DCGM_EXPORTER",
        value_parser = BoolishValueParser::new()
    )]
    pub compat_dcgm_exporter: bool,
}

#[derive(Debug, Clone, Args)]
pub struct GeometryArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[arg(
        long,
        env = "MIG_EXPORTER_OUTPUT",
        short,
        value_name = "FORMAT",
        default_value = "table"
    )]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub drift: DriftArgs,
    #[arg(
        long,
        env = "MIG_EXPORTER_OUTPUT",
        short,
        value_name = "FORMAT",
        default_value = "table"
    )]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Parses a duration as Prometheus writes one: numbers with units from hours
/// down to milliseconds, each unit at most once, e.g. `500ms`, `5s`, `1m30s`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let not_a_duration = || format!("'{s}' is not a duration (e.g. 500ms, 5s, 1m30s, 2h)");
    if s.is_empty() {
        return Err(not_a_duration());
    }
    let mut rest = s;
    let mut millis: u64 = 0;
    // Index into UNITS of the smallest unit the next number may have.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(not_a_duration());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| format!("'{s}' is too long"))?;
        let after = &rest[digits..];
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let unit = &after[..unit_len];
        let Some(position) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(if unit.is_empty() {
                format!("'{s}' has no unit ms, s, m or h")
            } else {
                format!("'{s}': unknown unit '{unit}' (ms, s, m or h)")
            });
        };
        if position < next_unit {
            return Err(format!(
                "'{s}': units go from hours down to milliseconds, each once (e.g. 1h30m)"
            ));
        }
        next_unit = position + 1;
        millis = n
            .checked_mul(UNITS[position].1)
            .and_then(|m| millis.checked_add(m))
            .ok_or_else(|| format!("'{s}' is too long"))?;
        rest = &after[unit_len..];
    }
    if millis == 0 {
        return Err(format!("'{s}' must be longer than zero"));
    }
    Ok(Duration::from_millis(millis))
}

impl SourceArgs {
    /// A start that names no source (no --nvml, --simulate or --world) reads
    /// the hardware where NVIDIA's driver answers (the library loads and
    /// reports a GPU), as other GPU exporters do; elsewhere it serves the
    /// built-in demo. Returns why it is the demo, which the caller must say
    /// loudly: the packaged starts pass --nvml, so only a start by hand gets here.
    pub fn resolve_default(&mut self) -> Option<String> {
        if self.nvml || self.simulate.is_some() || self.world.is_some() {
            return None;
        }
        match crate::source::nvml::probe(self.nvml_library.as_deref()) {
            Ok(gpus) => {
                tracing::info!(
                    gpus,
                    "NVIDIA's driver answers: reading this node through NVML, as --nvml does"
                );
                self.nvml = true;
                None
            }
            Err(reason) => {
                self.simulate = Some(DEFAULT_SCENARIO.to_string());
                Some(reason)
            }
        }
    }

    /// The built-in scenario the flags select, when they select one.
    pub fn scenario(&self) -> Option<&str> {
        (!self.nvml && self.world.is_none()).then(|| self.simulate.as_deref().unwrap_or(DEFAULT_SCENARIO))
    }

    /// The geometry source and the utilization sources that run on what it
    /// reads, in order. With `--nvml`: DCGM (unless `--no-dcgm`), then NVML GPM
    /// from samples the NVML source takes (unless `--no-gpm`), so a ratio is
    /// DCGM's where DCGM has it and GPM's only where DCGM has none. The
    /// simulator brings its own load and needs none.
    pub fn open_with_utilization(&self) -> anyhow::Result<Sources> {
        if !self.nvml {
            return Ok((self.open()?, Vec::new()));
        }
        let mut nvml = self.nvml_source();
        let mut utilization: Vec<Box<dyn UtilizationSource>> = Vec::new();
        if !self.no_dcgm {
            utilization.push(Box::new(DcgmSource::new(DcgmOptions {
                library: self.dcgm_library.clone(),
                address: self.dcgm_address.clone(),
                embedded: self.dcgm_embedded,
                ..DcgmOptions::default()
            })));
        }
        if !self.no_gpm {
            utilization.push(Box::new(GpmSource::new(&mut nvml)));
        }
        Ok((Box::new(nvml), utilization))
    }

    fn nvml_source(&self) -> NvmlSource {
        let source = NvmlSource::new(NvmlOptions {
            library: self.nvml_library.clone(),
            slow_interval: self.nvml_slow_interval,
            pcie_throughput: self.nvml_pcie_throughput,
        });
        match &self.nvml_capabilities_root {
            Some(root) => source.with_capabilities_root(root.clone()),
            None => source,
        }
    }

    /// The geometry source the flags select. Fails on an unknown scenario or a
    /// World file that cannot be read now, so a typo stops the process at start.
    pub fn open(&self) -> anyhow::Result<Box<dyn GeometrySource>> {
        if self.nvml {
            // A missing library or driver is reported by the source and retried
            // on every poll, so the exporter serves (source_up 0) meanwhile.
            return Ok(Box::new(self.nvml_source()));
        }
        if let Some(path) = &self.world {
            mig_model::World::load(path)?;
            return Ok(Box::new(SimSource::File(path.clone())));
        }
        let name = self.simulate.as_deref().unwrap_or(DEFAULT_SCENARIO);
        Ok(Box::new(SimSource::Scenario(scenarios::build(name)?)))
    }
}

/// What the demo fallback says, in the log and on stderr.
pub fn demo_warning(reason: &str) -> String {
    format!(
        "no NVIDIA driver answered ({reason}): serving the built-in SIMULATED node '{DEFAULT_SCENARIO}', \
         not this machine's GPUs. Pass --nvml to read the hardware (a missing driver then shows as \
         mig_exporter_source_up{{source=\"nvml\"}} 0), or --simulate SCENARIO to run the demo on purpose"
    )
}

/// How long an idle thread of the runtime's blocking pool waits for work
/// before it exits. Each poll runs on one ([`Poller::run`]); tokio's default
/// of 10 s would end it between two polls of a longer interval and start a
/// new thread, with a fresh stack and malloc cache, for every poll (seen
/// with `strace -f -e clone3` at a 12 s poll). Outliving the interval keeps
/// one thread for all of them.
fn blocking_keep_alive(poll_interval: Duration) -> Duration {
    const TOKIO_DEFAULT: Duration = Duration::from_secs(10);
    poll_interval.saturating_mul(2).max(TOKIO_DEFAULT)
}

/// Runs the command; the exit status is `check`'s verdict, or success.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Geometry(mut args)) => {
            if let Some(reason) = args.source.resolve_default() {
                eprintln!("mig-exporter: {}", demo_warning(&reason));
            }
            let reading = args.source.open()?.poll()?;
            print!("{}", geometry::render(&reading, args.output));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Check(mut args)) => {
            if let Some(reason) = args.source.resolve_default() {
                eprintln!("mig-exporter: {}", demo_warning(&reason));
            }
            let report = check(&args);
            print!("{}", report.render(args.output));
            Ok(ExitCode::from(report.status.exit_code()))
        }
        Some(Command::Serve(args)) => serve(args).map(|()| ExitCode::SUCCESS),
        Some(Command::RelayPodResources(args)) => crate::relay::run(args).map(|()| ExitCode::SUCCESS),
        None => serve(cli.serve).map(|()| ExitCode::SUCCESS),
    }
}

/// `mig-exporter check`: anything that keeps it from judging (the source
/// fails, the desired config is bad, the state file cannot be read) is
/// `unknown`, exit status 2. The state file is only read, never written.
fn check(args: &CheckArgs) -> CheckReport {
    let (mut tracker, last_known_good) = match args.drift.tracker(&args.source, true) {
        Ok(t) => t,
        Err(e) => return CheckReport::unknown(format!("{e:#}")),
    };
    let reading = match args.source.open().and_then(|mut source| source.poll()) {
        Ok(r) => r,
        Err(e) => return CheckReport::unknown(format!("{e:#}")),
    };
    let drift = tracker.observe(reading.boot_id.as_deref(), &reading.gpus, unix_now());
    if let Some(e) = tracker.desired_error() {
        return CheckReport::unknown(e.to_string());
    }
    if let Some(e) = tracker.state_error() {
        return CheckReport::unknown(e.to_string());
    }
    CheckReport::judged(reading.hostname, reading.gpus.len(), drift, last_known_good)
}

fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    crate::logging::init(args.log_level, args.log_format);
    if let Some(reason) = args.source.resolve_default() {
        tracing::warn!(simulate = DEFAULT_SCENARIO, "{}", demo_warning(&reason));
    }
    let web_config = match &args.web_config_file {
        Some(path) => Some(Arc::new(crate::expose::listener::WebConfigFile::open(path)?)),
        None => None,
    };
    let (source, utilization) = args.source.open_with_utilization()?;
    let (tracker, last_known_good) = args.drift.tracker(&args.source, false)?;
    let otlp = args.otlp.settings()?;
    if let Some(origin) = &last_known_good {
        tracing::info!(last_known_good = %origin, "drift detection keeps the last-known-good state here");
    }
    let budget = args.collectors.budget();
    budget.log();
    // The first poll runs before serving, so that a desired config the node's
    // GPUs cannot hold stops the exporter at start.
    let mut poller = Poller::new(source).with_drift(tracker);
    for source in utilization {
        poller = poller.with_utilization(source);
    }
    if let Some(socket) = args.kubelet.socket() {
        tracing::info!(socket = %socket.display(), "reading pod owners and advertised devices from the kubelet");
        poller = poller.with_kubelet(crate::source::kubelet::KubeletSource::new(
            socket,
            args.kubelet.timeout,
        )?);
    }
    let first = poller.poll_once();
    let desired_fatal = poller
        .drift()
        .and_then(DriftTracker::desired_source)
        .is_some_and(DesiredSource::fatal_at_start);
    if let Some(e) = poller.drift().and_then(DriftTracker::desired_error) {
        if desired_fatal {
            return Err(anyhow::anyhow!("{e}"));
        }
    }
    let host_name = first.hostname.clone();
    // This node's name: --kubernetes.node-name, else NODE_NAME (downward API).
    let node_name = args
        .drift
        .kubernetes
        .kubernetes_node_name
        .clone()
        .or_else(|| std::env::var(NODE_NAME_ENV).ok())
        .filter(|n| !n.is_empty());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(blocking_keep_alive(args.poll_interval))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut listeners = Vec::with_capacity(args.listen_address.len());
        for address in &args.listen_address {
            let listener = address
                .bind()
                .await
                .with_context(|| format!("cannot listen on {address}"))?;
            listeners.push(listener);
        }
        let published = Arc::new(Published::default());
        published.publish(first);
        tokio::spawn(poller.run(args.poll_interval, published.clone()));
        // Dropped when the server stops, which sends a last push.
        let (_pusher, mut extra) = start_otlp(otlp, &published, &host_name, node_name.as_deref(), budget)?;
        if args.compat_dcgm_exporter {
            tracing::info!(
                hostname = node_name.as_deref().unwrap_or(&host_name),
                "also serving dcgm-exporter's series (--compat.dcgm-exporter)"
            );
            extra.push(Box::new(crate::expose::dcgm_compat::DcgmCompatCollector::new(
                published.clone(),
                node_name.clone(),
            )));
        }
        let app = crate::expose::routes::router_with(published, &args.telemetry_path, extra, budget);
        let tls = web_config.as_ref().is_some_and(|w| w.tls());
        for listener in &listeners {
            tracing::info!(address = %listener.local_addr()?, path = %args.telemetry_path, tls, "listening");
        }
        let limits = crate::expose::listener::Limits {
            read_timeout: args.read_timeout,
            write_timeout: args.write_timeout,
            max_connections: args.max_connections as usize,
        };
        crate::expose::listener::serve(listeners, app, limits, web_config, shutdown_signal()).await;
        Ok(())
    })
}

/// The OTLP pusher when one is configured, and its counters for `/metrics`.
type OtlpStart = (
    Option<crate::expose::otlp::Pusher>,
    Vec<Box<dyn prometheus_client::collector::Collector>>,
);

fn start_otlp(
    settings: Option<crate::expose::otlp::Settings>,
    published: &Arc<Published>,
    host_name: &str,
    node_name: Option<&str>,
    budget: crate::expose::budget::Budget,
) -> anyhow::Result<OtlpStart> {
    use crate::expose::otlp::{ExportStats, Pusher, StatsCollector};
    let Some(settings) = settings else {
        return Ok((None, Vec::new()));
    };
    let stats = Arc::new(ExportStats::default());
    let pusher = Pusher::start(
        &settings,
        published.clone(),
        stats.clone(),
        host_name,
        node_name,
        budget,
    )?;
    Ok((Some(pusher), vec![Box::new(StatsCollector(stats))]))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn durations_combine_units_as_prometheus_writes_them() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("2h0m5s250ms"),
            Ok(Duration::from_millis(7_205_250))
        );
        assert_eq!(parse_duration("0m10s"), Ok(Duration::from_secs(10)));
        for (bad, says) in [
            ("30s1m", "from hours down"),
            ("1m1m", "from hours down"),
            ("1m30", "no unit"),
            ("1m30x", "unknown unit 'x'"),
            ("1.5s", "unknown unit '.'"),
            ("m30s", "is not a duration"),
            ("", "is not a duration"),
            ("0m0s", "longer than zero"),
            ("99999999999999999999s", "too long"),
            ("9999999999999999h", "too long"),
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains(says) && e.contains(&format!("'{bad}'")), "{bad}: {e}");
        }
        let cli = Cli::try_parse_from(["mig-exporter", "--poll.interval", "1m30s"]).unwrap();
        assert_eq!(cli.serve.poll_interval, Duration::from_secs(90));
    }

    /// Every argument of `command` and of its subcommands, with the command's name.
    fn every_arg(command: &clap::Command) -> Vec<(String, clap::Arg)> {
        let mut args: Vec<(String, clap::Arg)> = command
            .get_arguments()
            .map(|a| (command.get_name().to_string(), a.clone()))
            .collect();
        for sub in command.get_subcommands() {
            args.extend(every_arg(sub));
        }
        args
    }

    #[test]
    fn every_flag_has_its_environment_variable_and_help_lists_it() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        command.build();
        let mut checked = 0;
        for (owner, arg) in every_arg(&command) {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if matches!(long, "help" | "version") {
                continue;
            }
            let want = format!("MIG_EXPORTER_{}", long.replace(['.', '-'], "_").to_uppercase());
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "{owner} --{long}"
            );
            // Kubernetes gives every pod MIG_EXPORTER_SERVICE_* and MIG_EXPORTER_PORT*
            // for a Service named mig-exporter: no flag may take those.
            assert!(
                !want.starts_with("MIG_EXPORTER_SERVICE_") && !want.starts_with("MIG_EXPORTER_PORT"),
                "{want} is a Kubernetes service variable"
            );
            checked += 1;
        }
        assert!(checked > 40, "{checked}");
        let help = |command: &mut clap::Command| command.render_long_help().to_string();
        let top = help(&mut command);
        for (owner, arg) in every_arg(&command) {
            let (Some(env), false) = (arg.get_env(), arg.is_hide_set()) else {
                continue;
            };
            let env = env.to_string_lossy();
            let text = if owner == "mig-exporter" {
                top.clone()
            } else {
                help(command.find_subcommand_mut(&owner).expect("a subcommand"))
            };
            assert!(
                text.contains(&format!("[env: {env}")),
                "{owner} --help lacks {env}"
            );
        }
    }

    #[test]
    fn boolean_flags_take_the_usual_words_from_the_environment() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        command.build();
        for (owner, arg) in every_arg(&command) {
            if !matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                continue;
            }
            // An environment value goes through the flag's value parser; the same
            // parser behind an option that takes a value reads what it would.
            let option = clap::Command::new("t").arg(
                clap::Arg::new("flag")
                    .long("flag")
                    .action(clap::ArgAction::Set)
                    .value_parser(arg.get_value_parser().clone()),
            );
            for (word, want) in [
                ("true", true),
                ("1", true),
                ("yes", true),
                ("false", false),
                ("0", false),
            ] {
                let parsed = option
                    .clone()
                    .try_get_matches_from(["t".to_string(), format!("--flag={word}")])
                    .map(|m| m.get_one::<bool>("flag").copied())
                    .unwrap_or_else(|e| panic!("{owner} {arg}: {word}: {e}"));
                assert_eq!(parsed, Some(want), "{owner} {arg}: {word}");
            }
        }
    }

    #[test]
    fn a_start_naming_a_source_is_left_as_it_is() {
        for args in [
            &["mig-exporter", "--nvml"][..],
            &["mig-exporter", "--simulate", "a100-single"],
            &["mig-exporter", "--world", "/w.json"],
        ] {
            let mut cli = Cli::try_parse_from(args).unwrap();
            let before = format!("{:?}", cli.serve.source);
            assert_eq!(cli.serve.source.resolve_default(), None, "{args:?}");
            assert_eq!(format!("{:?}", cli.serve.source), before, "{args:?}");
        }
    }

    #[test]
    fn a_bare_start_without_a_driver_is_the_demo_and_says_why() {
        let mut cli =
            Cli::try_parse_from(["mig-exporter", "--nvml.library", "/nonexistent/libnvidia-ml.so.1"])
                .unwrap();
        let reason = cli.serve.source.resolve_default().expect("the demo");
        assert!(
            reason.contains("cannot load /nonexistent/libnvidia-ml.so.1"),
            "{reason}"
        );
        assert!(!cli.serve.source.nvml);
        assert_eq!(cli.serve.source.scenario(), Some(DEFAULT_SCENARIO));
        let warning = demo_warning(&reason);
        assert!(
            warning.contains("--nvml") && warning.contains("--simulate") && warning.contains("SIMULATED"),
            "{warning}"
        );
    }

    #[test]
    fn the_long_version_names_revision_build_date_and_rust() {
        use clap::CommandFactory;
        let version = Cli::command().render_long_version();
        assert!(
            version.starts_with(&format!("mig-exporter version {}", env!("CARGO_PKG_VERSION"))),
            "{version}"
        );
        for part in [
            format!("revision: {}", crate::REVISION),
            "build date:".to_string(),
            "rust version: rustc ".to_string(),
        ] {
            assert!(version.contains(&part), "{part} in {version}");
        }
    }

    #[test]
    fn the_dcgm_exporter_compatibility_is_off_unless_asked_for() {
        let cli = Cli::try_parse_from(["mig-exporter"]).unwrap();
        assert!(!cli.serve.compat_dcgm_exporter);
        for args in [
            &["mig-exporter", "--compat.dcgm-exporter"][..],
            &["mig-exporter", "serve", "--compat.dcgm-exporter"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let serve = match cli.command {
                Some(Command::Serve(serve)) => serve,
                _ => cli.serve,
            };
            assert!(serve.compat_dcgm_exporter, "{args:?}");
        }
    }

    #[test]
    fn no_collector_flags_select_the_series_budget() {
        use crate::expose::budget::{Budget, Collector};
        let cli = Cli::try_parse_from(["mig-exporter"]).unwrap();
        assert_eq!(
            cli.serve.collectors.budget(),
            Budget::FULL,
            "every family by default"
        );
        for c in Collector::ALL {
            let flag = c.flag();
            let cli = Cli::try_parse_from(["mig-exporter", flag.as_str()]).unwrap();
            assert_eq!(cli.serve.collectors.budget(), Budget::FULL.without(c), "{flag}");
            let cli = Cli::try_parse_from(["mig-exporter", "serve", flag.as_str()]).unwrap();
            let Some(Command::Serve(serve)) = cli.command else {
                panic!("not serve")
            };
            assert_eq!(serve.collectors.budget(), Budget::FULL.without(c), "serve {flag}");
        }
        let mut every = vec!["mig-exporter".to_string()];
        every.extend(Collector::ALL.iter().map(|c| c.flag()));
        let cli = Cli::try_parse_from(&every).unwrap();
        assert_eq!(cli.serve.collectors.budget(), Budget::trimmed());
        assert!(Cli::try_parse_from(["mig-exporter", "--no-collector.nonexistent"]).is_err());
    }

    #[test]
    fn serve_is_the_default_command() {
        let cli = Cli::try_parse_from(["mig-exporter", "--simulate", "a100-single"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.source.simulate.as_deref(), Some("a100-single"));
        assert_eq!(cli.serve.listen_address.len(), 1);
        assert_eq!(cli.serve.listen_address[0].port(), 10110);
        assert!(
            cli.serve.listen_address[0].is_every_address(),
            "both families by default"
        );
        let cli = Cli::try_parse_from([
            "mig-exporter",
            "--web.listen-address=127.0.0.1:9",
            "--web.listen-address",
            "[::1]:9",
        ])
        .unwrap();
        let addresses: Vec<String> = cli.serve.listen_address.iter().map(|a| a.to_string()).collect();
        assert_eq!(addresses, ["127.0.0.1:9", "[::1]:9"], "the flag repeats");
        let cli = Cli::try_parse_from(["mig-exporter", "geometry", "--output", "json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Geometry(_))));
        assert!(Cli::try_parse_from(["mig-exporter", "--simulate", "x", "--world", "y"]).is_err());
    }

    #[test]
    fn otlp_flags_parse_and_name_the_protocols_as_otel_does() {
        use crate::expose::otlp::Protocol;
        let cli = Cli::try_parse_from([
            "mig-exporter",
            "--otlp.endpoint",
            "http://collector:4317",
            "--otlp.protocol",
            "grpc",
        ])
        .unwrap();
        assert_eq!(cli.serve.otlp.endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(cli.serve.otlp.protocol, Some(Protocol::Grpc));
        let cli = Cli::try_parse_from(["mig-exporter", "--otlp.protocol", "http/protobuf"]).unwrap();
        assert_eq!(cli.serve.otlp.protocol, Some(Protocol::HttpProtobuf));
        assert!(Cli::try_parse_from(["mig-exporter", "--otlp.protocol", "http/json"]).is_err());
    }

    #[test]
    fn drift_flags_parse_for_serve_and_check() {
        let cli = Cli::try_parse_from([
            "mig-exporter",
            "--mig.config",
            "/etc/mig.yaml",
            "--mig.config-name",
            "all-1g.10gb",
            "--state.file",
            "/tmp/state.json",
        ])
        .unwrap();
        let drift = &cli.serve.drift;
        assert_eq!(drift.mig_config_name.as_deref(), Some("all-1g.10gb"));
        assert_eq!(
            drift.state_file.as_deref(),
            Some(std::path::Path::new("/tmp/state.json"))
        );
        let cli = Cli::try_parse_from([
            "mig-exporter",
            "check",
            "--output",
            "json",
            "--mig.config",
            "/etc/mig.yaml",
            "--mig.config-name-file",
            "/etc/labels",
        ])
        .unwrap();
        let Some(Command::Check(args)) = cli.command else {
            panic!("not check")
        };
        assert_eq!(args.output, OutputFormat::Json);
        assert!(args.drift.desired().unwrap().is_some());
        // A name needs a file, and only one way of naming is allowed.
        assert!(Cli::try_parse_from(["mig-exporter", "--mig.config-name", "x"]).is_err());
        assert!(Cli::try_parse_from([
            "mig-exporter",
            "--mig.config",
            "f",
            "--mig.config-name",
            "x",
            "--mig.config-name-file",
            "y"
        ])
        .is_err());
    }

    #[test]
    fn nvml_runs_dcgm_then_gpm_unless_turned_off() {
        let names = |args: &[&str]| -> Vec<&'static str> {
            let cli = Cli::try_parse_from(args).unwrap();
            let (source, utilization) = cli.serve.source.open_with_utilization().unwrap();
            assert_eq!(source.name(), if cli.serve.source.nvml { "nvml" } else { "sim" });
            utilization.iter().map(|u| u.name()).collect()
        };
        assert_eq!(names(&["mig-exporter", "--nvml"]), ["dcgm", "gpm"]);
        assert_eq!(names(&["mig-exporter", "--nvml", "--no-dcgm"]), ["gpm"]);
        assert_eq!(names(&["mig-exporter", "--nvml", "--no-gpm"]), ["dcgm"]);
        assert!(names(&["mig-exporter", "--nvml", "--no-gpm", "--no-dcgm"]).is_empty());
        assert!(names(&["mig-exporter"]).is_empty(), "the simulator needs none");
        assert!(
            Cli::try_parse_from(["mig-exporter", "--no-gpm"]).is_err(),
            "--no-gpm only with --nvml"
        );
    }

    #[test]
    fn built_in_scenarios_keep_their_state_in_memory() {
        let cli = Cli::try_parse_from(["mig-exporter", "--simulate", "h100-rebooted"]).unwrap();
        let (_, origin) = cli.serve.drift.tracker(&cli.serve.source, false).unwrap();
        assert_eq!(
            origin.as_deref(),
            Some("built-in scenario 'h100-rebooted' before its reboot (in memory)")
        );
        let cli = Cli::try_parse_from(["mig-exporter", "--world", "/w.json"]).unwrap();
        assert_eq!(cli.serve.source.scenario(), None);
        let (_, origin) = cli.serve.drift.tracker(&cli.serve.source, true).unwrap();
        assert_eq!(
            origin, None,
            "a simulated node's state is never written to the host"
        );
        let cli = Cli::try_parse_from([
            "mig-exporter",
            "--world",
            "/w.json",
            "--state.file",
            "/tmp/s.json",
        ])
        .unwrap();
        let (_, origin) = cli.serve.drift.tracker(&cli.serve.source, true).unwrap();
        assert_eq!(origin.as_deref(), Some("/tmp/s.json"));
    }

    #[test]
    fn mig_config_from_kubernetes_takes_the_operators_defaults_and_needs_a_node_name() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["mig-exporter"].iter().chain(args).copied()).map(|cli| cli.serve.drift)
        };
        let server = ["--kubernetes.api-server", "https://10.96.0.1:443"];
        let drift = parse(
            &[
                &["--mig.config-from-kubernetes", "--kubernetes.node-name", "gpu-1"][..],
                &server,
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(drift.mig_config_namespace, "gpu-operator");
        assert_eq!(
            drift.mig_config_configmaps,
            ["{node}-mig-config", "default-mig-parted-config"]
        );
        assert_eq!(drift.mig_config_key, "config.yaml");
        assert_eq!(drift.mig_config_interval, Duration::from_secs(30));
        let desired = drift.desired().unwrap().expect("a desired source");
        assert!(!desired.fatal_at_start());
        let described = desired.describe();
        assert!(
            described.contains("node gpu-1")
                && described.contains("gpu-1-mig-config or default-mig-parted-config")
                && described.contains("https://10.96.0.1:443"),
            "{described}"
        );

        let drift = parse(
            &[
                &[
                    "--mig.config-from-kubernetes",
                    "--kubernetes.node-name",
                    "gpu-1",
                    "--mig.config-configmap",
                    "custom-mig-parted-configs",
                    "--mig.config-namespace",
                    "nvidia-gpu-operator",
                    "--mig.config-interval",
                    "2m",
                ][..],
                &server,
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(drift.mig_config_configmaps, ["custom-mig-parted-configs"]);
        assert!(drift
            .desired()
            .unwrap()
            .unwrap()
            .describe()
            .contains("namespace nvidia-gpu-operator"));

        // The flags that only mean something with it need it; a file and Kubernetes exclude each other.
        assert!(parse(&["--mig.config-configmap", "x"]).is_err());
        assert!(parse(&["--mig.config-from-kubernetes", "--mig.config", "/etc/mig.yaml"]).is_err());
        let drift = parse(
            &[
                &["--mig.config-from-kubernetes", "--kubernetes.node-name", ""][..],
                &server,
            ]
            .concat(),
        )
        .unwrap();
        let e = drift.desired().unwrap_err().to_string();
        assert!(
            e.contains("--kubernetes.node-name") && e.contains("spec.nodeName"),
            "{e}"
        );
        let drift = parse(
            &[
                &["--mig.config-from-kubernetes", "--kubernetes.node-name", "gpu-1"][..],
                &["--mig.config-namespace", "GPU_Operator"],
                &server,
            ]
            .concat(),
        )
        .unwrap();
        let e = drift.desired().unwrap_err().to_string();
        assert!(
            e.contains("namespace 'GPU_Operator' is not a Kubernetes object name"),
            "{e}"
        );
    }
}
