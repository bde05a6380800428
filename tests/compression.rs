//! gzip on `/metrics`: a real Prometheus (which asks for gzip) and curl
//! `--compressed` read exactly what an uncompressed scrape gets, clients that
//! do not take gzip get identity, HEAD describes the gzip body, and gzip
//! goes through TLS and basic auth.
//! The exporter polls once an hour here, so every scrape reads one snapshot
//! and bodies can be compared byte for byte.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{free_address, Daemon};
use common::{mig_sim, openssl, run_ok, which, EXPORTER};

/// The exporter on a 2-GPU H100 World, polling once an hour.
fn exporter(dir: &Path) -> Daemon {
    exporter_with(dir, &[])
}

/// The same with `extra` arguments; with a web config it answers over TLS
/// only, so it counts as started once it accepts connections.
fn exporter_with(dir: &Path, extra: &[&str]) -> Daemon {
    let world = dir.join("world.json");
    let w = world.to_str().unwrap();
    mig_sim(&world, &["init", "--gpus", "2", "--product", "h100-80gb", w]);
    let address = free_address();
    let args: Vec<String> = [
        "--world",
        w,
        "--web.listen-address",
        &address,
        "--poll.interval",
        "1h",
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect();
    Daemon::start(
        "mig-exporter",
        Path::new(EXPORTER),
        &args,
        address,
        extra.is_empty().then_some("/readyz"),
        dir.join("exporter.log"),
    )
}

struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// One HTTP/1.1 request with `headers` (whole lines), read to the close.
fn request(address: &str, method: &str, headers: &[&str]) -> Answer {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "{method} /metrics HTTP/1.1\r\nHost: {address}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    let head = String::from_utf8(raw[..split].to_vec()).expect("an ASCII head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a valid gzip body");
    out
}

#[test]
fn gzip_is_sent_only_to_clients_that_accept_it() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = exporter(dir.path());
    let plain = request(&exporter.address, "GET", &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.headers.get("content-encoding"),
        None,
        "no Accept-Encoding: identity"
    );
    assert!(plain.headers["vary"].contains("Accept-Encoding"));
    assert!(plain.body.starts_with(b"# HELP"));

    for identity in [
        "Accept-Encoding: identity",
        "Accept-Encoding: gzip;q=0",
        "Accept-Encoding: gzip;q=0, deflate",
        "Accept-Encoding: *;q=0, identity",
        "Accept-Encoding: br",
    ] {
        let answer = request(&exporter.address, "GET", &[identity]);
        assert_eq!(answer.status, 200, "{identity}");
        assert_eq!(answer.headers.get("content-encoding"), None, "{identity}");
        assert_eq!(answer.body, plain.body, "{identity}");
    }

    for gzip in [
        "Accept-Encoding: gzip",
        "Accept-Encoding: deflate, gzip;q=0.9, identity;q=0.1",
        "Accept-Encoding: *",
        "Accept-Encoding: identity;q=0, gzip;q=0.5",
    ] {
        let answer = request(&exporter.address, "GET", &[gzip]);
        assert_eq!(answer.status, 200, "{gzip}");
        assert_eq!(
            answer.headers.get("content-encoding").map(String::as_str),
            Some("gzip"),
            "{gzip}"
        );
        assert!(answer.headers["vary"].contains("Accept-Encoding"), "{gzip}");
        assert!(
            answer.body.len() * 4 < plain.body.len(),
            "{gzip}: gzip shrinks the body"
        );
        assert_eq!(gunzip(&answer.body), plain.body, "{gzip}");
    }

    let get = request(&exporter.address, "GET", &["Accept-Encoding: gzip"]);
    let head = request(&exporter.address, "HEAD", &["Accept-Encoding: gzip"]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert_eq!(
        head.headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    assert_eq!(head.headers["content-length"], get.body.len().to_string());
}

fn curl(args: &[&str]) -> Vec<u8> {
    let curl = which("curl").expect("curl is missing: scripts/test.sh installs it (Debian package curl)");
    run_ok(
        Command::new(curl).args(["-sS", "--fail"]).args(args),
        &format!("curl {args:?}"),
    )
    .stdout
}

#[test]
fn curl_compressed_decodes_to_exactly_the_uncompressed_body_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = exporter(dir.path());
    let url = format!("http://{}/metrics", exporter.address);
    let headers = dir.path().join("headers");
    for accept in ["text/plain", "application/openmetrics-text; version=1.0.0"] {
        let accept = format!("Accept: {accept}");
        let plain = curl(&["-H", &accept, &url]);
        let decoded = curl(&[
            "--compressed",
            "-D",
            headers.to_str().unwrap(),
            "-H",
            &accept,
            &url,
        ]);
        let head = std::fs::read_to_string(&headers).unwrap().to_ascii_lowercase();
        assert!(
            head.contains("content-encoding: gzip"),
            "{accept}: curl was sent gzip:\n{head}"
        );
        assert!(!plain.is_empty());
        assert_eq!(decoded, plain, "{accept}");
    }
}

#[test]
fn gzip_goes_through_tls_and_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
         -out server.crt -subj /CN=localhost -days 2 -addext subjectAltName=IP:127.0.0.1",
    );
    let hash = bcrypt::hash("secret", 4).unwrap();
    let config = dir.path().join("web.yml");
    std::fs::write(
        &config,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let exporter = exporter_with(dir.path(), &["--web.config.file", config.to_str().unwrap()]);
    let cacert = dir.path().join("server.crt");
    let tls = ["--cacert", cacert.to_str().unwrap(), "-u", "prometheus:secret"];
    let ready = format!("https://{}/readyz", exporter.address);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Command::new(which("curl").unwrap())
        .args(["-sf", "-o", "/dev/null"])
        .args(tls)
        .arg(&ready)
        .status()
        .is_ok_and(|s| !s.success())
    {
        assert!(
            Instant::now() < deadline,
            "not ready over TLS\n{}",
            exporter.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("https://{}/metrics", exporter.address);
    let headers = dir.path().join("headers");
    let plain = curl(&[&tls[..], &[url.as_str()]].concat());
    let decoded = curl(&[&tls[..], &["--compressed", "-D", headers.to_str().unwrap(), &url]].concat());
    let head = std::fs::read_to_string(&headers).unwrap().to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(plain.starts_with(b"# HELP"));
    assert_eq!(decoded, plain);
}

// ------------------------------------------------------------- Prometheus

/// One sample: metric name with its labels (`le`, `quantile` as numbers,
/// which Prometheus may write differently), and the value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn canonical(name: &str, value: String) -> String {
    match (name, value.parse::<f64>()) {
        ("le" | "quantile", Ok(number)) => number.to_string(),
        _ => value,
    }
}

/// The samples of a text exposition (one format's lines: `name{labels} value`).
fn parse_exposition(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value: {line}"),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut key = String::new();
            loop {
                let (_, c) = chars.next().expect("a closed label set");
                match c {
                    '}' => break,
                    ',' | ' ' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '"' => break,
                                '\\' => match chars.next().map(|(_, c)| c) {
                                    Some('n') => value.push('\n'),
                                    Some(other) => value.push(other),
                                    None => panic!("{line}"),
                                },
                                other => value.push(other),
                            }
                        }
                        let key = std::mem::take(&mut key);
                        let value = canonical(&key, value);
                        labels.insert(key, value);
                    }
                    other => key.push(other),
                }
            }
            let consumed = chars.next().map(|(i, _)| i).unwrap_or(inner.len());
            rest = &inner[consumed..];
        }
        let value = rest.split_whitespace().next().expect("a value");
        samples.insert((name.to_string(), labels), value.parse().expect("a number"));
    }
    samples
}

/// The newest sample of every series Prometheus took from the job, without
/// the series Prometheus adds itself and the target labels it attaches.
fn prometheus_samples(prometheus: &Daemon) -> Samples {
    let own = ["up", "scrape_duration_seconds", "scrape_samples_scraped"];
    let mut samples = Samples::new();
    for series in prometheus.query(r#"{job="compression"}"#) {
        let mut labels: BTreeMap<String, String> = series["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), canonical(k, v.as_str().unwrap().to_string())))
            .collect();
        let name = labels.remove("__name__").unwrap();
        if own.contains(&name.as_str()) || name.starts_with("scrape_") {
            continue;
        }
        labels.remove("job");
        labels.remove("instance");
        let value = series["value"][1].as_str().unwrap().parse().unwrap();
        samples.insert((name, labels), value);
    }
    samples
}

#[test]
fn prometheus_scraping_with_gzip_stores_the_samples_of_the_uncompressed_body() {
    let prometheus_bin: PathBuf = which("prometheus")
        .expect("prometheus is missing: scripts/test.sh installs it (Debian package prometheus)");
    let dir = tempfile::tempdir().unwrap();
    let exporter = exporter(dir.path());
    let address = free_address();
    let config = dir.path().join("prometheus.yml");
    // No compression setting: Prometheus asks for gzip by default.
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: compression\n    static_configs:\n      - targets: ['{}']\n",
            exporter.address
        ),
    )
    .unwrap();
    let prometheus = Daemon::start(
        "prometheus",
        &prometheus_bin,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={address}"),
        ],
        address,
        Some("/-/ready"),
        dir.path().join("prometheus.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus.query(r#"up{job="compression"} == 1"#).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no scrape in 30 s\n{}",
            prometheus.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let answer = request(
        &exporter.address,
        "GET",
        &["Accept-Encoding: gzip", "Accept: application/openmetrics-text"],
    );
    assert_eq!(
        answer.headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    let plain = request(
        &exporter.address,
        "GET",
        &["Accept: application/openmetrics-text"],
    );
    let expected = parse_exposition(std::str::from_utf8(&plain.body).unwrap());
    assert!(expected.keys().any(|(name, _)| name.starts_with("nvidia_mig_")));
    let stored = prometheus_samples(&prometheus);
    let missing: Vec<_> = expected.keys().filter(|k| !stored.contains_key(*k)).collect();
    let extra: Vec<_> = stored.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not stored: {missing:?}\nnot in the body: {extra:?}"
    );
    for (key, value) in &expected {
        let got = stored[key];
        assert!(
            got == *value || (got.is_nan() && value.is_nan()),
            "{key:?}: stored {got}, body {value}"
        );
    }
}
