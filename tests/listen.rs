//! `--web.listen-address` as prometheus/exporter-toolkit takes it (see
//! src/expose/listen_address.rs): `:PORT` and `[::]:PORT` serve both address
//! families, `0.0.0.0:PORT` IPv4 only, and the flag repeats. The harness
//! always passes `--web.listen-address 127.0.0.1:0` first, so every exporter
//! here has that listener too.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Exporter;

/// The address of every `listening` log line, in order, once there are `count`
/// (the harness returns after the first; the others follow it in the log).
fn listening(exporter: &Exporter, count: usize) -> Vec<SocketAddr> {
    common::wait_for(|| addresses(exporter).len() >= count, "every listening line");
    addresses(exporter)
}

fn addresses(exporter: &Exporter) -> Vec<SocketAddr> {
    exporter
        .log()
        .iter()
        .filter(|l| l.contains("msg=listening"))
        .filter_map(|l| {
            l.split("address=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The status of `GET /metrics` at `address`, or the connection error.
fn scrape(address: SocketAddr) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|e| format!("{address}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{address}: no status in {response:?}"))
}

fn loopbacks(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ]
}

#[test]
fn no_host_and_the_ipv6_wildcard_serve_both_families() {
    for wildcard in [":0", "[::]:0"] {
        let exporter = Exporter::start(&["--web.listen-address", wildcard]);
        let addresses = listening(&exporter, 2);
        assert_eq!(addresses.len(), 2, "{wildcard}: {addresses:?}");
        let every = addresses[1];
        assert!(every.ip().is_unspecified(), "{wildcard}: {every}");
        for address in loopbacks(every.port()) {
            assert_eq!(scrape(address), Ok(200), "{wildcard} over {address}");
        }
    }
}

#[test]
fn each_listen_address_flag_gets_its_own_listener() {
    let exporter = Exporter::start(&["--web.listen-address", "[::1]:0"]);
    let addresses = listening(&exporter, 2);
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    assert_eq!(addresses[0].ip().to_string(), "127.0.0.1");
    assert_eq!(addresses[1].ip().to_string(), "::1");
    for address in addresses {
        assert_eq!(scrape(address), Ok(200), "{address}");
    }
}

#[test]
fn the_ipv4_wildcard_does_not_serve_ipv6() {
    let exporter = Exporter::start(&["--web.listen-address", "0.0.0.0:0"]);
    let port = listening(&exporter, 2)[1].port();
    let [v4, v6] = loopbacks(port);
    assert_eq!(scrape(v4), Ok(200));
    assert!(
        scrape(v6).is_err(),
        "0.0.0.0 is IPv4 only: a pod on an IPv6-only cluster would not be reached"
    );
}

#[test]
fn a_listen_address_without_a_port_is_refused_naming_it() {
    let out = std::process::Command::new(common::EXPORTER)
        .args(["--web.listen-address", "[::]"])
        .output()
        .expect("run the exporter");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--web.listen-address") && stderr.contains("[::]"),
        "{stderr}"
    );
}
