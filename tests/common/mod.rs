//! The end-to-end harness shared by the integration tests: the real
//! `mig-exporter` and `mig-sim` binaries on loopback, a minimal HTTP client,
//! and helpers to read an exposition.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod daemon;
pub mod device_plugin;
pub mod grafana;
pub mod kubelet;

pub const EXPORTER: &str = env!("CARGO_BIN_EXE_mig-exporter");

/// Where a start without --nvml looks for the driver, as --nvml.library does.
pub const NVML_LIBRARY_ENV: &str = "MIG_EXPORTER_NVML_LIBRARY";
/// A driver that is not there: what a machine without NVIDIA's driver has.
pub const NO_DRIVER: &str = "/nonexistent/libnvidia-ml.so.1";

/// The Python with NVIDIA's pynvml that MIG_TEST_PYTHON names (scripts/test.sh
/// creates one under the target directory); a clear failure without it.
pub fn python() -> PathBuf {
    let py = std::env::var_os("MIG_TEST_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "MIG_TEST_PYTHON is not set. It names a Python with NVIDIA's pynvml \
                 (`pip install nvidia-ml-py`); scripts/test.sh creates one under the target \
                 directory and exports it."
            )
        });
    let check = Command::new(&py)
        .args(["-c", "import pynvml"])
        .output()
        .unwrap_or_else(|e| panic!("MIG_TEST_PYTHON={} cannot run: {e}", py.display()));
    assert!(
        check.status.success(),
        "MIG_TEST_PYTHON={} has no pynvml (pip install nvidia-ml-py)",
        py.display()
    );
    py
}

/// An artifact of this workspace (binary, cdylib, `examples/…`), found
/// beside the exporter: `scripts/test.sh` builds them all before the tests.
pub fn built(name: &str) -> PathBuf {
    let path = Path::new(EXPORTER).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace --lib --bins --examples`)",
        path.display()
    );
    path
}

/// Changes a World file the way a test would by hand (fault switches,
/// telemetry), saved atomically like `mig-sim` does.
pub fn edit_world(world: &Path, change: impl FnOnce(&mut mig_model::World)) {
    let mut w = mig_model::World::load(world).expect("read the World");
    change(&mut w);
    w.save(world).expect("save the World");
}

pub fn mig_sim(world: &Path, args: &[&str]) -> Output {
    run_ok(
        Command::new(built("mig-sim")).args(args).env("MIG_WORLD", world),
        &format!("mig-sim {args:?}"),
    )
}

/// `world.json` in `dir`: `gpus` H100 80GB, GPU 0 in MIG mode with GPU
/// instances of `gpu0_profiles` (mig-sim `-cgi`, e.g. "9,19,19"), each with
/// its default compute instance.
pub fn h100_world(dir: &Path, gpus: u32, gpu0_profiles: &str) -> PathBuf {
    let world = dir.join("world.json");
    let path = world.to_str().expect("a UTF-8 temporary path");
    mig_sim(
        &world,
        &[
            "init",
            "--gpus",
            &gpus.to_string(),
            "--product",
            "h100-80gb",
            path,
        ],
    );
    mig_sim(&world, &["-i", "0", "-mig", "1"]);
    mig_sim(&world, &["-i", "0", "mig", "-cgi", gpu0_profiles, "-C"]);
    world
}

/// Runs `command` to its end and returns what it printed; the test fails,
/// with that output, when it cannot start or exits non-zero. `what` names
/// the command in the message.
pub fn run_ok(command: &mut Command, what: &str) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `openssl` in `dir` with `args`, split at whitespace.
pub fn openssl(dir: &Path, args: &str) {
    let openssl = which("openssl").expect("openssl is missing (Debian package openssl)");
    let args: Vec<&str> = args.split_whitespace().collect();
    run_ok(
        Command::new(openssl).current_dir(dir).args(&args),
        &format!("openssl {args:?}"),
    );
}

/// A running exporter on an ephemeral loopback port, killed on drop.
pub struct Exporter {
    child: Child,
    pub address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    pub fn start(args: &[&str]) -> Exporter {
        Exporter::start_with_env(args, &[])
    }

    /// Starts the exporter with extra environment variables (e.g. MIG_WORLD for fake-nvml).
    pub fn start_with_env(args: &[&str], env: &[(&str, &Path)]) -> Exporter {
        let mut command = Command::new(EXPORTER);
        command.envs(env.iter().copied());
        Exporter::start_command(command, args)
    }

    /// Starts `command`, the exporter or a wrapper whose last argument is the
    /// exporter (`unshare … sh -c '…; exec "$0" "$@"' EXPORTER`), with the
    /// harness's listen address and poll interval, then `args`.
    pub fn start_command(command: Command, args: &[&str]) -> Exporter {
        let exporter = Exporter::listening(command, args);
        wait_for(|| exporter.get("/readyz", None).0 == 200, "exporter ready");
        exporter
    }

    /// Like [`Exporter::start_with_env`], but returns once it listens, ready or not.
    pub fn start_unready(args: &[&str], env: &[(&str, &Path)]) -> Exporter {
        let mut command = Command::new(EXPORTER);
        command.envs(env.iter().copied());
        Exporter::listening(command, args)
    }

    fn listening(mut command: Command, args: &[&str]) -> Exporter {
        // A start that names no source reads the hardware where a driver answers:
        // here it is the demo, as on a machine without one, unless the test says otherwise.
        let names_a_source = args.iter().any(|a| {
            ["--nvml", "--simulate", "--world"]
                .iter()
                .any(|f| a.starts_with(f))
        });
        let names_a_library = command.get_envs().any(|(k, _)| k == NVML_LIBRARY_ENV);
        if !names_a_source && !names_a_library {
            command.env(NVML_LIBRARY_ENV, NO_DRIVER);
        }
        // The harness's poll interval, unless the test names its own (the soak's knob).
        if !args.iter().any(|a| a.starts_with("--poll.interval")) {
            command.args(["--poll.interval", "100ms"]);
        }
        let mut child = command
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start mig-exporter");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let address = loop {
            let line = lines
                .next()
                .expect("exporter exited before listening")
                .expect("read stderr");
            // Other lines carry addresses too (DCGM's host engine): take the listener's.
            let address = line
                .contains("msg=listening")
                .then(|| line.split("address=").nth(1))
                .flatten()
                .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string());
            log.lock().unwrap().push(line);
            if let Some(address) = address {
                break address;
            }
        };
        // Keep reading the log so the exporter never blocks on a full pipe.
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Exporter { child, address, log }
    }

    /// The process id of what was started (a wrapper that `exec`s keeps it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log lines the exporter wrote so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// A minimal HTTP/1.1 GET: status and body.
    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{accept}Connection: close\r\n\r\n",
            self.address
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics", None);
        assert_eq!(status, 200);
        body
    }

    /// Sends SIGTERM, as systemd and the kubelet stop it, and waits (at most
    /// 15 s) for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) only sends a signal to the process we started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM to {pid}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the exporter") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the exporter did not stop within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Series identities (`name{labels}`) of the MIG and GPU families.
pub fn series(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| l.starts_with("nvidia_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(k, _)| k.to_string()))
        .collect()
}

pub fn value(exposition: &str, key: &str) -> Option<String> {
    exposition.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::to_string)
    })
}

/// Every file under `dir` and its subdirectories, in no particular order.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The value of `family`'s first series with label `gi` (any GI when `None`).
pub fn gauge(exposition: &str, family: &str, gi: Option<u32>) -> Option<f64> {
    let tag = gi.map(|gi| format!("gi=\"{gi}\""));
    exposition
        .lines()
        .find(|l| l.starts_with(&format!("{family}{{")) && tag.as_ref().is_none_or(|t| l.contains(t)))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// Whether `got` is `want`, to floating-point noise.
pub fn near(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| (g - want).abs() < 1e-6)
}
