//! `mig-exporter relay-pod-resources`, the process the DaemonSet runs as root
//! so the exporter can read the kubelet's root-only socket as a non-root
//! user: a fake kubelet → the relay → the exporter end to end, the relay's
//! socket mode, its limits, and that it outlives kubelet restarts and
//! clients that hang up mid-stream.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kubelet::{devices, pod, FakeKubelet};
use common::{h100_world, value, wait_for, Exporter, EXPORTER};

/// A running relay, killed on drop.
struct Relay {
    child: Child,
    socket: PathBuf,
}

impl Relay {
    fn start(upstream: &Path, socket: &Path, extra: &[&str]) -> Relay {
        let child = Command::new(EXPORTER)
            .arg("relay-pod-resources")
            .arg("--kubelet.pod-resources-socket")
            .arg(upstream)
            .arg("--relay.listen-socket")
            .arg(socket)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the relay");
        let mut relay = Relay {
            child,
            socket: socket.to_path_buf(),
        };
        wait_for(
            || {
                assert!(relay.alive(), "the relay exited at start");
                std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket())
            },
            "the relay's socket",
        );
        relay
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("relay status").is_none()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One H100 with MIG and one 1g.10gb instance.
fn world(dir: &Path) -> PathBuf {
    h100_world(dir, 1, "19")
}

fn mig_uuid(exposition: &str) -> String {
    exposition
        .lines()
        .find(|l| l.starts_with("nvidia_mig_compute_instance_info{"))
        .and_then(|l| l.split("mig_uuid=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("a MIG device")
        .to_string()
}

fn owner_of(exposition: &str) -> Option<String> {
    exposition
        .lines()
        .find(|l| l.starts_with("nvidia_mig_instance_pod_info{"))
        .and_then(|l| l.split("pod=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
}

fn kubelet_up(exporter: &Exporter) -> Option<String> {
    value(&exporter.metrics(), "mig_exporter_source_up{source=\"kubelet\"}")
}

#[test]
fn the_exporter_reads_pod_owners_through_the_relay_across_kubelet_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let kubelet_dir = dir.path().join("kubelet");
    std::fs::create_dir(&kubelet_dir).unwrap();
    let mut kubelet = FakeKubelet::start(&kubelet_dir);
    let mut relay = Relay::start(&kubelet.socket, &dir.path().join("pod-resources.sock"), &[]);

    // The mode the README and the DaemonSet rely on: owner and group only,
    // the group being the relay's own (the exporter's, in the DaemonSet).
    let meta = std::fs::metadata(&relay.socket).unwrap();
    assert_eq!(format!("{:o}", meta.permissions().mode() & 0o7777), "660");
    assert_eq!(meta.gid(), unsafe { libc::getegid() });

    let exporter = Exporter::start(&[
        "--world",
        world.to_str().unwrap(),
        "--kubelet.pod-resources-socket",
        relay.socket.to_str().unwrap(),
        "--kubelet.timeout",
        "500ms",
    ]);
    let mig = mig_uuid(&exporter.metrics());
    let held_by = |name: &str| {
        let owner = pod(
            "ml",
            name,
            "main",
            vec![devices("nvidia.com/mig-1g.10gb", &[mig.as_str()])],
        );
        move |a: &mut common::kubelet::Answers| a.pods.pod_resources = vec![owner]
    };
    kubelet.set(held_by("trainer-0"));
    wait_for(
        || owner_of(&exporter.metrics()).as_deref() == Some("trainer-0"),
        "the owner, read through the relay",
    );
    assert_eq!(kubelet_up(&exporter).as_deref(), Some("1"));

    // Clients that hang up mid-stream, more of them than the relay serves at
    // once: each frees its slot, and the relay goes on.
    for _ in 0..10 {
        let mut client = UnixStream::connect(&relay.socket).expect("connect to the relay");
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00")
            .unwrap();
    }
    kubelet.set(held_by("trainer-1"));
    wait_for(
        || owner_of(&exporter.metrics()).as_deref() == Some("trainer-1"),
        "new answers after clients hung up",
    );
    assert!(relay.alive());

    // The kubelet restarts (a new socket at the same path): down meanwhile,
    // then back through the same relay.
    drop(kubelet);
    wait_for(|| kubelet_up(&exporter).as_deref() == Some("0"), "kubelet down");
    assert!(relay.alive(), "the relay outlives the kubelet");
    kubelet = FakeKubelet::start(&kubelet_dir);
    kubelet.set(held_by("after-restart"));
    wait_for(
        || owner_of(&exporter.metrics()).as_deref() == Some("after-restart"),
        "owners from the restarted kubelet",
    );
    assert_eq!(kubelet_up(&exporter).as_deref(), Some("1"));
    assert!(relay.alive());
}

/// The next connection `upstream` accepts within `within`, if any.
fn accept_within(upstream: &UnixListener, within: Duration) -> Option<UnixStream> {
    let deadline = Instant::now() + within;
    loop {
        match upstream.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return Some(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn read_exactly(stream: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read");
    buf
}

#[test]
fn the_relay_copies_both_ways_caps_connections_and_closes_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for the kubelet that shows what reaches it.
    let upstream_path = dir.path().join("upstream.sock");
    let upstream = UnixListener::bind(&upstream_path).unwrap();
    upstream.set_nonblocking(true).unwrap();
    let relay = Relay::start(
        &upstream_path,
        &dir.path().join("relay.sock"),
        &["--relay.max-connections", "1", "--relay.connection-timeout", "2s"],
    );

    let mut first = UnixStream::connect(&relay.socket).unwrap();
    let opened = Instant::now();
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    first.write_all(b"ping").unwrap();
    let mut kubelet_side = accept_within(&upstream, Duration::from_secs(5)).expect("relayed");
    kubelet_side
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(read_exactly(&mut kubelet_side, 4), b"ping");
    kubelet_side.write_all(b"pong").unwrap();
    assert_eq!(read_exactly(&mut first, 4), b"pong");

    // The only slot is taken: a second client waits, unrelayed.
    let mut second = UnixStream::connect(&relay.socket).unwrap();
    second.write_all(b"second").unwrap();
    assert!(
        accept_within(&upstream, Duration::from_millis(700)).is_none(),
        "a connection beyond --relay.max-connections was relayed"
    );

    // The first is closed at the time limit, on both sides, idle or not.
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).expect("closed, not timed out");
    let lived = opened.elapsed();
    assert!(
        lived >= Duration::from_millis(1500) && lived < Duration::from_secs(8),
        "closed after {lived:?}"
    );
    assert_eq!(
        kubelet_side.read(&mut [0; 8]).expect("read"),
        0,
        "the kubelet side is closed too"
    );

    // Its slot goes to the second.
    let mut kubelet_side = accept_within(&upstream, Duration::from_secs(5)).expect("the second, relayed");
    kubelet_side
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(read_exactly(&mut kubelet_side, 6), b"second");
}

#[test]
fn the_relay_replaces_a_stale_socket_but_no_other_file() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("kubelet.sock");
    let listen = dir.path().join("relay.sock");
    // A socket left by an earlier run (an emptyDir outlives its containers).
    drop(UnixListener::bind(&listen).unwrap());
    let mut relay = Relay::start(&upstream, &listen, &[]);
    wait_for(
        || UnixStream::connect(&relay.socket).is_ok(),
        "the relay listening on the replaced path",
    );
    assert!(relay.alive());
    drop(relay);

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let out = Command::new(EXPORTER)
        .args(["relay-pod-resources", "--relay.listen-socket"])
        .arg(&file)
        .output()
        .expect("run the relay");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "--relay.listen-socket {}: exists and is not a socket",
            file.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}
