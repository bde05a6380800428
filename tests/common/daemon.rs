//! Other programs the end-to-end tests run beside the exporter (Prometheus,
//! Alertmanager, vmagent) on loopback, and the plain HTTP they are read with.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// A loopback address nothing listens on right now.
pub fn free_address() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// A minimal HTTP/1.0 request (the server answers without chunking and
/// closes): status and body, or None when nothing answers.
pub fn http(address: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Percent-encoding of a query parameter (RFC 3986 unreserved kept).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A program on loopback, its output in a log file, killed on drop.
pub struct Daemon {
    pub name: String,
    pub address: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program` and waits up to 30 s until it is ready: `ready` is a
    /// path that answers 200 once it is, or `None` for a listener that
    /// speaks TLS, ready once it accepts connections.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        address: String,
        ready: Option<&str>,
        log: PathBuf,
    ) -> Daemon {
        let out = File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut daemon = Daemon {
            name: name.to_string(),
            address,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("{name} exited ({status})\n{}", daemon.log_tail());
            }
            let up = match ready {
                Some(path) => http(&daemon.address, "GET", path).is_some_and(|(s, _)| s == 200),
                None => TcpStream::connect(&daemon.address).is_ok(),
            };
            if up {
                return daemon;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready in 30 s:\n{}",
                daemon.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines the program wrote, under its name.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} log ({}):\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(15)..].join("\n")
        )
    }

    /// `data.result` of a Prometheus HTTP API GET (`/api/v1/...`).
    pub fn api(&self, path: &str) -> Vec<Json> {
        let (status, body) = http(&self.address, "GET", path)
            .unwrap_or_else(|| panic!("no answer from {} to {path}\n{}", self.name, self.log_tail()));
        let json: Json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(status == 200 && json["status"] == "success", "{path}: {body}");
        json["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The result vector of an instant PromQL query.
    pub fn query(&self, expr: &str) -> Vec<Json> {
        self.api(&format!("/api/v1/query?query={}", url_encode(expr)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
