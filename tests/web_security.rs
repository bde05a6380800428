//! Who may read the exporter, and what a hostile client can do to it: TLS,
//! client certificates and basic auth from `--web.config.file` tested with
//! curl against the real binary, request limits with raw sockets, and the
//! state file's guarantees.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{openssl, which, EXPORTER};

/// The exporter started with a web config: its log is kept whole, because
/// the tests look for secrets in it.
struct Running {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(EXPORTER)
            .args(["--web.listen-address", "127.0.0.1:0", "--poll.interval", "100ms"])
            .args(["--log.level", "debug"])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start mig-exporter");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let port = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("exporter exited before listening: {:?}", log.lock().unwrap()))
                .expect("read stderr");
            let port = line
                .contains("msg=listening")
                .then(|| line.split("address=127.0.0.1:").nth(1))
                .flatten()
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok());
            log.lock().unwrap().push(line);
            if let Some(port) = port {
                break port;
            }
        };
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, port, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    }

    /// One raw HTTP/1.1 exchange: the whole response as text.
    fn raw(&self, request: &str) -> String {
        let mut stream = self.connect();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }

    fn status(&self, request: &str) -> u16 {
        status_of(&self.raw(request))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

fn curl_path() -> PathBuf {
    which("curl").expect("curl is missing: scripts/test.sh installs it (Debian package curl)")
}

/// curl with `args`; the status it printed (0 when no response) and its own exit status.
fn curl(args: &[&str]) -> (u16, i32, String) {
    let out = Command::new(curl_path())
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or(0);
    (code, out.status.code().unwrap_or(-1), body.to_string())
}

/// A test CA in `dir` named `ca`, and certificates it signs.
struct Ca {
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        openssl(
            dir,
            &format!(
                "req -x509 {key} -keyout {name}.key -out {name}.crt -subj /CN={name} -days 2 \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    fn cert(&self) -> String {
        self.dir.join(format!("{}.crt", self.name)).display().to_string()
    }

    /// Issues `<name>.crt` and `<name>.key`: a server certificate for
    /// 127.0.0.1 and localhost, or a client certificate.
    fn issue(&self, name: &str, server: bool) -> (String, String) {
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        openssl(
            &self.dir,
            &format!("req {key} -keyout {name}.key -out {name}.csr -subj /CN={name}"),
        );
        let extensions = if server {
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        } else {
            "subjectAltName=DNS:prometheus\nextendedKeyUsage=clientAuth\n"
        };
        std::fs::write(self.dir.join(format!("{name}.ext")), extensions).unwrap();
        let ca = &self.name;
        openssl(
            &self.dir,
            &format!(
                "x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -days 2 \
                 -out {name}.crt -extfile {name}.ext"
            ),
        );
        let path = |ext| self.dir.join(format!("{name}.{ext}")).display().to_string();
        (path("crt"), path("key"))
    }
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("web.yml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn tls_serves_only_clients_that_speak_tls_and_trust_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    ca.issue("server", true);
    // Relative names: relative to the config file, as in the exporter-toolkit.
    let config = write_config(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let exporter = Running::start(&["--web.config.file", &config, "--web.read-timeout", "1s"]);
    assert!(exporter.log().contains("tls=true"), "{}", exporter.log());
    let url = format!("https://127.0.0.1:{}/metrics", exporter.port);

    let (code, _, body) = curl(&["--cacert", &ca.cert(), &url]);
    assert_eq!(code, 200);
    assert!(body.contains("mig_exporter_build_info"), "{body}");
    let (code, _, body) = curl(&["--cacert", &ca.cert(), "--tlsv1.2", "--tls-max", "1.2", &url]);
    assert_eq!((code, body.is_empty()), (200, false), "TLS 1.2 is served too");

    // 60: the server's certificate is not trusted.
    let (code, exit, _) = curl(&[&url]);
    assert_eq!((code, exit), (0, 60), "a client without the CA must not connect");
    let (code, _, _) = curl(&[&format!("http://127.0.0.1:{}/metrics", exporter.port)]);
    assert_ne!(code, 200, "plain HTTP is not served on a TLS port");

    // A client that never finishes its handshake is cut off after the read timeout.
    let mut silent = exporter.connect();
    let opened = Instant::now();
    let mut buf = [0; 16];
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)));
    assert!(
        opened.elapsed() < Duration::from_secs(4),
        "{:?}",
        opened.elapsed()
    );
}

#[test]
fn client_certificates_are_required_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    ca.issue("server", true);
    let (client_cert, client_key) = ca.issue("client", false);
    let other = Ca::new(dir.path(), "other-ca");
    let (stranger_cert, stranger_key) = other.issue("stranger", false);
    let config = write_config(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let exporter = Running::start(&["--web.config.file", &config]);
    let url = format!("https://127.0.0.1:{}/metrics", exporter.port);
    let cacert = ca.cert();
    assert!(
        !exporter.log().contains("authenticates no one"),
        "{}",
        exporter.log()
    );

    let (code, _, body) = curl(&[
        "--cacert",
        &cacert,
        "--cert",
        &client_cert,
        "--key",
        &client_key,
        &url,
    ]);
    assert_eq!(code, 200);
    assert!(body.contains("nvidia_mig_"), "{body}");
    let (code, exit, _) = curl(&["--cacert", &cacert, &url]);
    assert_eq!(code, 0, "no certificate, no response (curl exit {exit})");
    assert_ne!(exit, 0);
    let (code, exit, _) = curl(&[
        "--cacert",
        &cacert,
        "--cert",
        &stranger_cert,
        "--key",
        &stranger_key,
        &url,
    ]);
    assert_eq!(
        code, 0,
        "a certificate from another CA is refused (curl exit {exit})"
    );
    assert_ne!(exit, 0);
    drop(exporter);

    // VerifyClientCertIfGiven: no certificate is fine, a bad one is not.
    let config = write_config(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n",
    );
    let exporter = Running::start(&["--web.config.file", &config]);
    let url = format!("https://127.0.0.1:{}/metrics", exporter.port);
    // Without basic auth, a client without a certificate is served: said at start.
    let log = exporter.log();
    let warning = log
        .lines()
        .find(|l| l.contains("authenticates no one"))
        .unwrap_or_else(|| panic!("no warning about VerifyClientCertIfGiven:\n{log}"));
    assert!(
        warning.contains("level=warn")
            && warning.contains("VerifyClientCertIfGiven")
            && warning.contains(&config),
        "{warning}"
    );
    assert_eq!(curl(&["--cacert", &cacert, &url]).0, 200);
    let with = |cert: &str, key: &str| curl(&["--cacert", &cacert, "--cert", cert, "--key", key, &url]).0;
    assert_eq!(with(&client_cert, &client_key), 200);
    assert_eq!(with(&stranger_cert, &stranger_key), 0);
}

#[test]
fn basic_auth_guards_every_page_and_never_logs_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    ca.issue("server", true);
    let password = "correct-horse-battery";
    let hash = bcrypt::hash(password, 6).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: {hash}\n  other: {hash}\n"
        ),
    );
    let exporter = Running::start(&["--web.config.file", &config]);
    let base = format!("https://127.0.0.1:{}", exporter.port);
    let cacert = ca.cert();
    let good = format!("prometheus:{password}");

    for path in ["/", "/metrics", "/healthz", "/readyz"] {
        let url = format!("{base}{path}");
        let (code, _, _) = curl(&["--cacert", &cacert, "-u", &good, &url]);
        assert_eq!(code, 200, "{path} with the right password");
        let (code, _, _) = curl(&["--cacert", &cacert, &url]);
        assert_eq!(code, 401, "{path} without credentials");
        let (code, _, _) = curl(&["--cacert", &cacert, "-u", "prometheus:wrong", &url]);
        assert_eq!(code, 401, "{path} with a wrong password");
        let (code, _, _) = curl(&["--cacert", &cacert, "-u", &format!("nobody:{password}"), &url]);
        assert_eq!(code, 401, "{path} for an unknown user with a valid password");
    }
    let (_, _, body) = curl(&["--cacert", &cacert, "-u", &good, &format!("{base}/metrics")]);
    assert!(body.contains("nvidia_mig_"), "{body}");
    let out = Command::new(curl_path())
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            &cacert,
            &format!("{base}/metrics"),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.contains("www-authenticate: basic"), "{head}");
    assert!(
        head.contains("x-frame-options: deny"),
        "configured headers on every response: {head}"
    );

    let log = exporter.log();
    assert!(!log.contains(password), "the password is logged:\n{log}");
    assert!(!log.contains(&hash), "the hash is logged:\n{log}");
    assert!(!log.contains(&hash[7..]), "part of the hash is logged:\n{log}");
}

#[test]
fn a_changed_web_config_is_read_on_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new(dir.path(), "first");
    first.issue("server", true);
    let hash = bcrypt::hash("old", 4).unwrap();
    let config = write_config(
        dir.path(),
        &format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  p: {hash}\n"),
    );
    let exporter = Running::start(&["--web.config.file", &config]);
    let url = format!("https://127.0.0.1:{}/healthz", exporter.port);
    assert_eq!(curl(&["--cacert", &first.cert(), "-u", "p:old", &url]).0, 200);

    // A rotated certificate from another CA, and a new password.
    let second = Ca::new(dir.path(), "second");
    second.issue("server", true);
    let hash = bcrypt::hash("new", 4).unwrap();
    write_config(
        dir.path(),
        &format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  p: {hash}\n"),
    );
    assert_eq!(curl(&["--cacert", &second.cert(), "-u", "p:new", &url]).0, 200);
    assert_eq!(curl(&["--cacert", &second.cert(), "-u", "p:old", &url]).0, 401);
    assert_eq!(curl(&["--cacert", &first.cert(), "-u", "p:new", &url]).0, 0);

    // A broken config refuses connections, and its fix is picked up.
    std::fs::write(&config, "tls_server_config:\n  cert_file: [\n").unwrap();
    assert_eq!(curl(&["--cacert", &second.cert(), "-u", "p:new", &url]).0, 0);
    common::wait_for(|| exporter.log().contains("web.yml, line 2"), "the error logged");
    write_config(
        dir.path(),
        &format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  p: {hash}\n"),
    );
    assert_eq!(curl(&["--cacert", &second.cert(), "-u", "p:new", &url]).0, 200);
}

/// Runs the exporter with `config` as its web config: it must exit at once.
fn refused(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), config);
    let out = Command::new(EXPORTER)
        .args(["--web.listen-address", "127.0.0.1:0", "--web.config.file", &path])
        .stdin(Stdio::null())
        .output()
        .expect("run mig-exporter");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    assert!(stderr.contains(&path), "the file is named: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn a_bad_web_config_stops_the_exporter_naming_file_line_and_field() {
    let e = refused("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth: x\n");
    assert!(e.contains("line 4") && e.contains("client_auth"), "{e}");
    let e = refused("basic_auth_users:\n  alice: not-a-hash\n");
    assert!(e.contains("line 2") && e.contains("bcrypt"), "{e}");
    assert!(
        !e.contains("not-a-hash"),
        "the (would-be) hash is not echoed: {e}"
    );
    let e = refused("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAnyClientCert\n");
    assert!(e.contains("line 4") && e.contains("not supported"), "{e}");
    let e = refused("http_server_config:\n  http2: true\n");
    assert!(e.contains("line 2") && e.contains("HTTP/1.1"), "{e}");
    let e = refused("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n");
    assert!(
        e.contains("missing.crt"),
        "a certificate that cannot be read is named: {e}"
    );
    let e = refused("tls_server_config: [\n");
    assert!(e.contains("line"), "{e}");
    // A cost-15 hash (the cost is in the hash's text: no need to compute one).
    let hash = bcrypt::hash("x", 4).unwrap().replacen("$04$", "$15$", 1);
    let e = refused(&format!("basic_auth_users:\n  prometheus: {hash}\n"));
    assert!(
        e.contains("line 2") && e.contains("\"prometheus\"") && e.contains("cost 15") && e.contains("14"),
        "a bcrypt cost above the cap is refused, naming the user: {e}"
    );
}

#[test]
fn unknown_paths_are_404_and_only_get_and_head_are_served() {
    let exporter = Running::start(&[]);
    assert_eq!(exporter.status(&get("/metrics")), 200);
    assert_eq!(exporter.status(&get("/nope")), 404);
    assert_eq!(exporter.status(&get("/metrics/../../etc/passwd")), 404);
    let head = exporter.raw("HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&head), 200);
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/metrics", "/", "/healthz", "/readyz"] {
            let response = exporter.raw(&format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ));
            assert_eq!(status_of(&response), 405, "{method} {path}: {response}");
            let allow = response
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("allow: ").map(str::to_string))
                .unwrap_or_default();
            assert!(
                allow.contains("get") && allow.contains("head"),
                "{method} {path}: {response}"
            );
        }
    }
    let with_body = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(exporter.status(with_body), 413, "no endpoint reads a body");
    let chunked = "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(exporter.status(chunked), 413);
}

#[test]
fn oversized_request_heads_are_refused() {
    let exporter = Running::start(&[]);
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let response = exporter.raw(&big);
    assert!(
        response.is_empty() || status_of(&response) == 431,
        "a 64 KiB header: {response:.200}"
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let response = exporter.raw(&format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n"
    ));
    assert!(
        response.is_empty() || status_of(&response) == 431,
        "200 headers: {response:.200}"
    );
    assert_eq!(
        exporter.status(&get("/metrics")),
        200,
        "and the exporter serves on"
    );
}

#[test]
fn a_slowloris_client_is_cut_off_while_scrapes_go_on() {
    let exporter = Running::start(&["--web.read-timeout", "1s"]);
    let mut slow = exporter.connect();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut cut_off = None;
    // A header byte every 200 ms: never a whole head within the timeout.
    for byte in b"X-Slow: ".iter().chain([b'a'; 40].iter()) {
        if slow.write_all(&[*byte]).is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        let scraped = Instant::now();
        assert_eq!(
            exporter.status(&get("/metrics")),
            200,
            "a normal scrape meanwhile"
        );
        assert!(scraped.elapsed() < Duration::from_secs(2), "scrapes stay fast");
        std::thread::sleep(Duration::from_millis(200));
    }
    let cut_off = cut_off.unwrap_or_else(|| {
        // The write may still be buffered by the kernel: the read tells.
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0; 1024];
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => started.elapsed(),
            Ok(n) => panic!(
                "the slow client got a response: {}",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
    });
    assert!(cut_off < Duration::from_secs(4), "cut off after {cut_off:?}");

    // An idle connection is closed after the timeout as well.
    let mut idle = exporter.connect();
    let mut buf = [0; 16];
    let opened = Instant::now();
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
    assert!(opened.elapsed() < Duration::from_secs(4));
}

#[test]
fn connections_over_the_cap_wait_for_a_free_one() {
    let exporter = Running::start(&["--web.read-timeout", "1s", "--web.max-connections", "2"]);
    let _hogs: Vec<TcpStream> = (0..2).map(|_| exporter.connect()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(exporter.status(&get("/metrics")), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "the third connection is served only after an idle one timed out ({waited:?})"
    );
}

#[test]
fn a_client_that_does_not_read_its_responses_is_cut_off_after_the_write_timeout() {
    // One connection at a time, and a read timeout far longer than the test:
    // only the write timeout can free the connection.
    let exporter = Running::start(&[
        "--web.max-connections",
        "1",
        "--web.read-timeout",
        "60s",
        "--web.write-timeout",
        "1s",
    ]);
    // 500 pipelined scrapes of about 100 KB each: far more than the socket
    // buffers hold, so the server waits on a client that never reads.
    let pipelined = 500;
    let mut hog = exporter.connect();
    hog.write_all(
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            .repeat(pipelined)
            .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let started = Instant::now();
    let response = exporter.raw(&get("/metrics"));
    let waited = started.elapsed();
    assert_eq!(
        status_of(&response),
        200,
        "a scrape behind the slow reader is served (after {waited:?})"
    );
    assert!(
        waited >= Duration::from_millis(300),
        "the slow reader held the only connection until its write timed out ({waited:?})"
    );
    assert!(
        waited < Duration::from_secs(6),
        "served soon after the 1s write timeout ({waited:?})"
    );

    // The slow reader's connection was closed by the exporter, short of its scrapes.
    hog.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0; 1 << 16];
    let ended = loop {
        match hog.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    assert!(
        !matches!(&ended, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the slow reader's connection is still open: {ended:?}"
    );
    let answered = String::from_utf8_lossy(&received)
        .matches("HTTP/1.1 200 OK")
        .count();
    assert!(answered < pipelined, "{answered} of {pipelined} scrapes answered");
}

#[test]
fn the_state_file_is_private_even_when_an_older_one_was_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, "{}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    mig_exporter::drift::state::save(&path, &mig_exporter::drift::StateDoc::default()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "replaced by a new file, not rewritten in place");
}

#[test]
fn a_symlink_planted_at_the_temp_path_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep").unwrap();
    let temp = dir.path().join(format!(".state.json.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&target, &temp).unwrap();
    mig_exporter::drift::state::save(&path, &mig_exporter::drift::StateDoc::default()).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    assert!(
        !temp.exists() && std::fs::symlink_metadata(&temp).is_err(),
        "no temp left"
    );
}
