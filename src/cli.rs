//! Command-line interface: `serve` (the default) and `geometry`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::geometry::{self, OutputFormat};
use crate::poll::{Poller, Published};
use crate::source::nvml::{NvmlOptions, NvmlSource};
use crate::source::scenarios::{self, DEFAULT_SCENARIO};
use crate::source::sim::SimSource;
use crate::source::GeometrySource;

/// Default listen port: exporters register from 10000 up, and 9100–9999 are all taken.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:10110";

#[derive(Debug, Parser)]
#[command(
    name = "mig-exporter",
    version,
    about = "Prometheus exporter for NVIDIA MIG geometry, utilization and drift"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve /metrics and the landing page (the default).
    Serve(ServeArgs),
    /// Print the node's MIG layout: GPU instances, compute instances, remaining capacity.
    Geometry(GeometryArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Built-in simulated node (h100-mixed, a100-single, h100-rebooted, gi-without-ci, a100-pending).
    /// The default when no other source is given.
    #[arg(long, value_name = "SCENARIO", conflicts_with = "world")]
    pub simulate: Option<String>,
    /// Simulated node read from a World file, re-read on every poll (mutate it with `mig-sim`).
    #[arg(long, value_name = "FILE", conflicts_with = "nvml")]
    pub world: Option<PathBuf>,
    /// Read the real node through NVML (libnvidia-ml.so.1).
    #[arg(long, conflicts_with = "simulate")]
    pub nvml: bool,
    /// Load NVML from this file instead of the system's libnvidia-ml.so.1.
    #[arg(long = "nvml.library", value_name = "PATH", requires = "nvml")]
    pub nvml_library: Option<PathBuf>,
    /// Cadence of NVML reads that are expensive on real GPUs (total energy ≈ 4 ms per call).
    #[arg(long = "nvml.slow-interval", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub nvml_slow_interval: Duration,
    /// Also read PCIe throughput (≈ 21 ms per GPU on a real H100), on the slow cadence.
    #[arg(long = "nvml.pcie-throughput")]
    pub nvml_pcie_throughput: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Address to listen on.
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen_address: SocketAddr,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics")]
    pub telemetry_path: String,
    /// How often to read the node (e.g. 500ms, 5s, 1m).
    #[arg(long = "poll.interval", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info")]
    pub log_level: LogLevel,
    /// Output format of log messages.
    #[arg(long = "log.format", value_name = "FORMAT", default_value = "logfmt")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct GeometryArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[arg(long, short, value_name = "FORMAT", default_value = "table")]
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

/// Parses `500ms`, `5s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 500ms, 5s, 1m)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("'{s}' has no unit ms, s, m or h")),
    };
    if d.is_zero() {
        return Err(format!("'{s}' must be longer than zero"));
    }
    Ok(d)
}

impl SourceArgs {
    /// The geometry source the flags select. Fails on an unknown scenario or a
    /// World file that cannot be read now, so a typo stops the process at start.
    pub fn open(&self) -> anyhow::Result<Box<dyn GeometrySource>> {
        if self.nvml {
            // A missing library or driver is reported by the source and retried
            // on every poll, so the exporter serves (source_up 0) meanwhile.
            return Ok(Box::new(NvmlSource::new(NvmlOptions {
                library: self.nvml_library.clone(),
                slow_interval: self.nvml_slow_interval,
                pcie_throughput: self.nvml_pcie_throughput,
            })));
        }
        if let Some(path) = &self.world {
            mig_model::World::load(path)?;
            return Ok(Box::new(SimSource::File(path.clone())));
        }
        let name = self.simulate.as_deref().unwrap_or(DEFAULT_SCENARIO);
        Ok(Box::new(SimSource::Scenario(scenarios::build(name)?)))
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Geometry(args)) => {
            let reading = args.source.open()?.poll()?;
            print!("{}", geometry::render(&reading, args.output));
            Ok(())
        }
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    crate::logging::init(args.log_level, args.log_format);
    let source = args.source.open()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen_address)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen_address))?;
        let published = Arc::new(Published::default());
        tokio::spawn(Poller::new(source).run(args.poll_interval, published.clone()));
        let app = crate::expose::http::router(published, &args.telemetry_path);
        tracing::info!(address = %listener.local_addr()?, path = %args.telemetry_path, "listening");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("HTTP server failed")
    })
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
    fn serve_is_the_default_command() {
        let cli = Cli::try_parse_from(["mig-exporter", "--simulate", "a100-single"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.source.simulate.as_deref(), Some("a100-single"));
        assert_eq!(cli.serve.listen_address.port(), 10110);
        let cli = Cli::try_parse_from(["mig-exporter", "geometry", "--output", "json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Geometry(_))));
        assert!(Cli::try_parse_from(["mig-exporter", "--simulate", "x", "--world", "y"]).is_err());
    }
}
