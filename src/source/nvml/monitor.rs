//! Why NVML refuses to list MIG instances in a container, when the reason is
//! known: the container asked the NVIDIA runtime for the MIG monitor device
//! and did not get it.
//!
//! Facts relied on:
//! * `/proc/driver/nvidia/capabilities/mig/monitor` names the device's minor
//!   (`DeviceFileMinor: 2`, then `DeviceFileMode` and `DeviceFileModify`
//!   lines: the real H100's, /work/shared/fixtures/h100-80gb-hbm3-real/probe.txt),
//!   and the device is `/dev/nvidia-caps/nvidia-cap<minor>`.
//! * NVIDIA/nvidia-container-toolkit: `NVIDIA_MIG_MONITOR_DEVICES` asks the
//!   runtime for that device (cmd/nvidia-container-runtime/README.md). From
//!   1.18.0 the runtime's `auto` mode resolves to `jit-cdi` where 1.17 resolved
//!   to `legacy` (internal/info/auto.go, `NewRuntimeModeResolver`), and its CDI
//!   modifier (internal/modifier/cdi.go, through v1.20.0) never reads the
//!   variable, so the device is not injected (nvidia-container-toolkit issue
//!   1740; fixed by pull request 1947, released in 1.20.1 per
//!   NVIDIA/cloud-native-docs pull request 498). The GPU operator's values
//!   ship toolkit v1.20.0 (NVIDIA/gpu-operator deployments/gpu-operator/values.yaml).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The environment variable the NVIDIA runtime reads.
pub const MONITOR_DEVICES_ENV: &str = "NVIDIA_MIG_MONITOR_DEVICES";
/// Relative to the root (`/` outside tests).
const MONITOR_PROC_FILE: &str = "proc/driver/nvidia/capabilities/mig/monitor";
const CAPS_DEV_DIR: &str = "dev/nvidia-caps";

/// The container asked for the MIG monitor device and the runtime did not
/// give it. Its message says what happened and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "listing MIG instances is not permitted: this container asked the NVIDIA container runtime for the MIG \
     monitor device ({MONITOR_DEVICES_ENV}={requested}) but {device} {state}. NVIDIA container toolkit \
     1.18.0 to 1.20.0 in its CDI modes (jit-cdi, the default from 1.18.0, and cdi) do not inject it \
     (nvidia-container-toolkit issue 1740). Fix: upgrade the toolkit on the node to 1.20.1 or later \
     (GPU operator: toolkit.version), or set the NVIDIA runtime's mode to legacy \
     ([nvidia-container-runtime] mode = \"legacy\" in its config.toml), then restart this pod"
)]
pub struct MonitorDeviceNotInjected {
    pub requested: String,
    pub device: PathBuf,
    /// `is missing` or `cannot be opened (…)`.
    pub state: String,
}

/// Whether the NoPermission NVML gave is explained by a monitor device the
/// runtime was asked for and did not inject. `requested` is the variable's
/// value; `root` is `/` outside tests. None when the container did not ask,
/// when the proc file cannot be read (not the container runtime's doing) or
/// when the device opens (then something else refuses).
pub fn diagnose(requested: Option<&str>, root: &Path) -> Option<MonitorDeviceNotInjected> {
    let requested = requested
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "void")?;
    let proc_file = root.join(MONITOR_PROC_FILE);
    let text = match std::fs::read_to_string(&proc_file) {
        Ok(text) => text,
        Err(e) => {
            tracing::debug!(file = %proc_file.display(), error = %e, "no MIG monitor capability file");
            return None;
        }
    };
    let minor = text.lines().find_map(|line| {
        line.strip_prefix("DeviceFileMinor:")
            .and_then(|n| n.trim().parse::<u32>().ok())
    })?;
    let device = root.join(CAPS_DEV_DIR).join(format!("nvidia-cap{minor}"));
    let state = match std::fs::File::open(&device) {
        Ok(_) => return None,
        Err(e) if e.kind() == ErrorKind::NotFound => "is missing".to_string(),
        // Present but refused: the device cgroup does not allow it.
        Err(e) => format!("cannot be opened ({e})"),
    };
    Some(MonitorDeviceNotInjected {
        requested: requested.to_string(),
        device: Path::new("/")
            .join(CAPS_DEV_DIR)
            .join(format!("nvidia-cap{minor}")),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root with the real H100's monitor file (minor 2) and, if `device`, its device.
    fn root(device: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join(MONITOR_PROC_FILE);
        std::fs::create_dir_all(proc.parent().unwrap()).unwrap();
        std::fs::write(
            &proc,
            "DeviceFileMinor: 2\nDeviceFileMode: 292\nDeviceFileModify: 1\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join(CAPS_DEV_DIR)).unwrap();
        if device {
            std::fs::write(dir.path().join(CAPS_DEV_DIR).join("nvidia-cap2"), "").unwrap();
        }
        dir
    }

    #[test]
    fn a_requested_device_that_is_missing_is_the_toolkit_bug_with_its_fix() {
        let dir = root(false);
        let problem = diagnose(Some("all"), dir.path()).expect("diagnosed");
        assert_eq!(problem.device, Path::new("/dev/nvidia-caps/nvidia-cap2"));
        let message = problem.to_string();
        for needle in [
            "NVIDIA_MIG_MONITOR_DEVICES=all",
            "/dev/nvidia-caps/nvidia-cap2 is missing",
            "1.18.0 to 1.20.0",
            "issue 1740",
            "1.20.1",
            "mode = \"legacy\"",
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }

    #[test]
    fn nothing_is_claimed_when_not_asked_for_or_when_the_device_is_there() {
        assert_eq!(diagnose(None, root(false).path()), None, "not asked for");
        assert_eq!(diagnose(Some(""), root(false).path()), None);
        assert_eq!(diagnose(Some("all"), root(true).path()), None, "injected");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            diagnose(Some("all"), empty.path()),
            None,
            "no driver capability file"
        );
    }
}
