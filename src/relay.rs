//! `mig-exporter relay-pod-resources`: lets the exporter read the kubelet's
//! pod-resources API without running as root.
//!
//! The kubelet's socket is root's with mode 0755, and connecting to a unix
//! socket takes write permission, so only root can use it. This small
//! process runs as root (with no capability: root owns the socket, so it
//! needs none), listens on a socket of its own that the exporter's group may
//! use, and copies bytes both ways between each client and a fresh
//! connection to the kubelet. The API it reaches only reads (`List`,
//! `GetAllocatableResources`, `Get`), so the relay gives nothing more than
//! reading it.
//!
//! Connections are capped and each lives at most `--relay.connection-timeout`,
//! so a client cannot use the relay to hold resources. A kubelet that is down
//! fails only the connections made meanwhile.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cli::{parse_duration, LogFormat, LogLevel};

/// Mode of the relay's socket: its owner and group may connect, nobody else.
/// The group is the process's own (the DaemonSet runs the relay with the
/// exporter's group): giving the socket to a group the process is not in
/// would take `CAP_CHOWN`.
pub const SOCKET_MODE: u32 = 0o660;

#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// The kubelet's pod-resources socket, connected to once per client.
    #[arg(
        long = "kubelet.pod-resources-socket", env = "MIG_EXPORTER_KUBELET_POD_RESOURCES_SOCKET",
        value_name = "PATH",
        default_value = crate::source::kubelet::DEFAULT_SOCKET
    )]
    pub upstream: PathBuf,
    /// Where to listen: a unix socket created with mode 0660 and the process's group.
    /// A socket left there by an earlier run is replaced; any other file is an error.
    #[arg(
        long = "relay.listen-socket",
        env = "MIG_EXPORTER_RELAY_LISTEN_SOCKET",
        value_name = "PATH"
    )]
    pub listen_socket: PathBuf,
    /// Connections relayed at once; further ones wait until one closes.
    #[arg(long = "relay.max-connections", env = "MIG_EXPORTER_RELAY_MAX_CONNECTIONS", value_name = "N", default_value = "4",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Longest a relayed connection stays open (the exporter's calls take at most
    /// its --kubelet.timeout); older ones are closed.
    #[arg(long = "relay.connection-timeout", env = "MIG_EXPORTER_RELAY_CONNECTION_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration)]
    pub connection_timeout: Duration,
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
}

/// Relays until SIGTERM or Ctrl-C, then removes its socket.
pub fn run(args: RelayArgs) -> anyhow::Result<()> {
    crate::logging::init(args.log_level, args.log_format);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = listen(&args.listen_socket)?;
        tracing::info!(
            from = %args.upstream.display(),
            to = %args.listen_socket.display(),
            "relaying the kubelet's pod-resources API"
        );
        tokio::select! {
            () = accept_loop(listener, &args) => {}
            () = shutdown_signal() => tracing::info!("shutting down"),
        }
        let _ = std::fs::remove_file(&args.listen_socket);
        Ok(())
    })
}

/// Binds `path` with [`SOCKET_MODE`], replacing a stale socket but nothing else.
fn listen(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing the old socket {}", path.display()))?,
        Ok(_) => anyhow::bail!(
            "--relay.listen-socket {}: exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("--relay.listen-socket {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

async fn accept_loop(listener: UnixListener, args: &RelayArgs) {
    let slots = Arc::new(Semaphore::new(args.max_connections as usize));
    loop {
        // Taking a slot before accepting leaves extra clients in the listen queue.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(relay(
                    client,
                    args.upstream.clone(),
                    args.connection_timeout,
                    slot,
                ));
            }
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Copies between `client` and a new connection to the kubelet until either
/// side closes or `limit` passes; the slot is freed when this returns.
async fn relay(mut client: UnixStream, upstream: PathBuf, limit: Duration, _slot: OwnedSemaphorePermit) {
    let relayed = tokio::time::timeout(limit, async {
        let mut kubelet = UnixStream::connect(&upstream)
            .await
            .with_context(|| format!("connecting to the kubelet at {}", upstream.display()))?;
        tokio::io::copy_bidirectional(&mut client, &mut kubelet)
            .await
            .context("relaying")
    })
    .await;
    match relayed {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "a relayed connection failed"),
        Err(_) => tracing::warn!(limit = ?limit, "closed a relayed connection open longer than the limit"),
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
