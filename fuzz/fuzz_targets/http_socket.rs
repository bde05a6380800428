//! Raw bytes to the exporter's HTTP/1.1 server over a real loopback socket:
//! the server `serve` runs for the whole process (with `--web.config.file`
//! basic auth, so every request goes through the password check), and each
//! input is one connection that writes the bytes in chunks, with pauses, and
//! reads what comes back.
//!
//! Nothing panics; the server answers with an HTTP/1.1 status line (1.0 to
//! an HTTP/1.0 request) that is not a server error, or closes, within its
//! limits (the header read timeout when the client stops sending, the write
//! timeout after a request); nothing but a request with the right password
//! gets a 2xx; and afterwards a normal scrape with the password still gets
//! `/metrics`.
//!
//! Input: a mode byte (bits 0-2: chunk size, 1 to the whole input; bits 3-4:
//! pause between chunks; bits 5-7 all set: keep the connection open after
//! writing, as a client that stops mid-request or keeps a connection alive
//! does, instead of shutting down its side), a pad byte (when not 0, a header
//! line of 128 × pad bytes is put after the first line, for heads over the
//! 16 KiB limit), then the bytes sent.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mig_exporter::expose::listener::{serve, Limits, WebConfigFile};
use mig_exporter::expose::routes::router;
use mig_exporter::poll::{Poller, Published};
use mig_exporter::source::scenarios::{self, DEFAULT_SCENARIO};
use mig_exporter::source::sim::SimSource;

/// `fuzz:right`, base64: the only credentials the server takes.
const CREDENTIALS: &str = "ZnV6ejpyaWdodA==";
const LIMITS: Limits = Limits {
    read_timeout: Duration::from_millis(150),
    write_timeout: Duration::from_secs(1),
    max_connections: 8,
};
/// Room above the limits for a loaded machine and a sanitizer build.
const SLACK: Duration = Duration::from_secs(5);
const CHUNKS: [usize; 8] = [1, 2, 5, 13, 64, 256, 1024, usize::MAX];
const PAUSES: [Duration; 4] = [
    Duration::ZERO,
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(3),
];
/// At most this much pausing per input, so the fuzzer keeps its pace; less
/// than the header read timeout, so that mostly a client that stops sending
/// is cut off (either way, the properties hold).
const MAX_PAUSING: Duration = Duration::from_millis(30);

struct Server {
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
}

const WEB_DIR_PREFIX: &str = "mig-exporter-fuzz-http-";

/// The server, started on the first input. Its web config file stays in a
/// temporary directory named after the process while the process runs (the
/// server re-reads it when it changes); those of processes that are gone are
/// removed here.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let temp = std::env::temp_dir();
        for entry in std::fs::read_dir(&temp).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(WEB_DIR_PREFIX));
            if pid.is_some_and(|pid| !std::path::Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = temp.join(format!("{WEB_DIR_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path: PathBuf = dir.join("web.yml");
        // Cost 4, bcrypt's lowest: a wrong password costs milliseconds, not tens.
        let hash = bcrypt::hash("right", 4).expect("a bcrypt hash");
        std::fs::write(&path, format!("basic_auth_users:\n  fuzz: {hash}\n")).expect("the web config");
        let web = Arc::new(WebConfigFile::open(&path).expect("a valid web config"));

        let world = scenarios::build(DEFAULT_SCENARIO).expect("the default scenario");
        let published = Arc::new(Published::default());
        published.publish(Poller::new(Box::new(SimSource::Scenario(world))).poll_once());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        runtime.spawn(serve(
            vec![listener],
            router(published, "/metrics"),
            LIMITS,
            Some(web),
            std::future::pending(),
        ));
        Server {
            _runtime: runtime,
            addr,
        }
    })
}

/// Everything the server sends until it closes; fails the input when that
/// takes longer than `within`.
fn read_to_close(stream: &mut TcpStream, within: Duration, what: &str) -> Vec<u8> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = within.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "{what}: the server neither closed nor finished within {within:?}"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{what}: the server neither closed nor finished within {within:?}")
            }
            // Reset: the server closed with bytes of ours unread.
            Err(_) => return got,
        }
    }
}

/// The status code of the response at the start of `got` (HTTP/1.0 to a
/// client that asked in it).
fn status(got: &[u8]) -> Option<u16> {
    let rest = got
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| got.strip_prefix(b"HTTP/1.0 "))?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

fn with_pad(request: &[u8], pad: u8) -> Vec<u8> {
    if pad == 0 {
        return request.to_vec();
    }
    let at = request
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(request.len(), |i| i + 2);
    let mut out = request[..at].to_vec();
    out.extend_from_slice(b"X-Pad: ");
    out.resize(out.len() + 128 * usize::from(pad), b'a');
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&request[at..]);
    out
}

fuzz_target!(|data: &[u8]| {
    let [mode, pad, request @ ..] = data else {
        return;
    };
    let chunk = CHUNKS[usize::from(mode & 0b111)];
    let pause = PAUSES[usize::from((mode >> 3) & 0b11)];
    let keep_open = mode >> 5 == 0b111;
    let sent = with_pad(request, *pad);
    let server = server();

    let mut stream = TcpStream::connect(server.addr).expect("connecting to the server");
    stream.set_write_timeout(Some(SLACK)).unwrap();
    let mut paused = Duration::ZERO;
    for piece in sent.chunks(chunk.max(1)) {
        if stream.write_all(piece).is_err() {
            // The server closed already: an answer to a head it refused.
            break;
        }
        if !pause.is_zero() && paused < MAX_PAUSING {
            std::thread::sleep(pause);
            paused += pause;
        }
    }
    if !keep_open {
        let _ = stream.shutdown(Shutdown::Write);
    }
    // A kept-open connection waits for the header read timeout to close it,
    // after a response when a whole request was sent.
    let within = LIMITS.read_timeout + LIMITS.write_timeout + SLACK;
    let got = read_to_close(&mut stream, within, "the fuzzed connection");
    drop(stream);
    if !got.is_empty() {
        let code = status(&got).unwrap_or_else(|| {
            panic!(
                "not an HTTP/1.1 status line: {:?}",
                String::from_utf8_lossy(&got[..got.len().min(200)])
            )
        });
        assert!(code < 500, "a server error: {code}");
        if (200..300).contains(&code) {
            let authorized = request
                .windows(CREDENTIALS.len())
                .any(|w| w == CREDENTIALS.as_bytes());
            assert!(authorized, "{code} without the password");
        }
    }

    // A normal scrape is still served.
    let mut scrape = TcpStream::connect(server.addr).expect("connecting to the server after the input");
    scrape.set_write_timeout(Some(SLACK)).unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Basic {CREDENTIALS}\r\nConnection: close\r\n\r\n"
    );
    scrape.write_all(request.as_bytes()).expect("sending a scrape");
    let got = read_to_close(&mut scrape, within, "the scrape after the input");
    assert_eq!(
        status(&got),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&got[..got.len().min(300)])
    );
    // The body's start, not the whole of it: a search through 100 KB of
    // exposition in an unoptimized, instrumented build would take most of
    // each input's time.
    let body = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| &got[end + 4..])
        .expect("the end of the head");
    assert!(body.starts_with(b"# HELP "), "the scrape is no exposition");
});
