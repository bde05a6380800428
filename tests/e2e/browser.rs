//! Headless Chromium driven over the DevTools protocol, so a test can measure
//! the laid-out page (boxes, scroll widths) rather than only read its HTML.
//!
//! The protocol runs over `--remote-debugging-pipe`: Chromium reads commands
//! from file descriptor 3 and writes replies and events to descriptor 4, each
//! message one JSON object ended by a NUL byte (Chromium's
//! `content/browser/devtools/devtools_pipe_handler.cc`). No port, no
//! WebSocket. Commands for a page go through a flattened session
//! (`Target.attachToTarget` with `flatten: true`), named by `sessionId`.

use std::fs::File;
use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Generous: a loaded two-core CI machine starts Chromium in seconds, but
/// not always in one.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Browser {
    child: Child,
    commands: PipeWriter,
    replies: Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    log: PathBuf,
}

impl Browser {
    /// Starts `chromium` headless with its profile and log in `dir`.
    pub fn start(chromium: &Path, dir: &Path) -> Browser {
        // Chromium reads its commands from `to_chromium` and writes to `from_chromium`.
        let (to_chromium, commands) = std::io::pipe().expect("a pipe for DevTools commands");
        let (from_chromium, replies_in) = std::io::pipe().expect("a pipe for DevTools replies");
        let log = dir.join("chromium.log");
        let log_file = File::create(&log).expect("create chromium.log");
        let (read_fd, write_fd) = (to_chromium.as_raw_fd(), replies_in.as_raw_fd());
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--force-device-scale-factor=1",
                "--remote-debugging-pipe",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.join("chromium-profile").display()
            ))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file);
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
        // dup2) run, on descriptors this process owns. Both are first moved
        // above 10 so that placing one on 3 cannot close the other; dup2
        // clears close-on-exec on 3 and 4, which are all Chromium inherits
        // (std opens its pipes close-on-exec).
        unsafe {
            command.pre_exec(move || {
                let r = libc::fcntl(read_fd, libc::F_DUPFD_CLOEXEC, 10);
                let w = libc::fcntl(write_fd, libc::F_DUPFD_CLOEXEC, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        // Our copies of Chromium's ends: its exit then reads as end of file.
        drop((to_chromium, replies_in));

        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_chromium);
            let mut message = Vec::new();
            loop {
                message.clear();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if message.last() == Some(&0) {
                            message.pop();
                        }
                        let Ok(value) = serde_json::from_slice::<Value>(&message) else {
                            continue;
                        };
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            commands,
            replies,
            next_id: 1,
            session: None,
            log,
        }
    }

    /// What Chromium printed, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one command (to the attached page when there is one) and
    /// waits for its reply: `Err` carries the protocol's error message.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            panic!("{method}: Chromium is gone ({e}); its log:\n{}", self.log());
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                // Events carry no id; replies to this command carry its id.
                Ok(reply) if reply["id"] == json!(id) => {
                    return match reply.get("error") {
                        Some(error) => Err(format!("{method}: {error}")),
                        None => Ok(reply["result"].clone()),
                    };
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{method}: no reply from Chromium in {CALL_TIMEOUT:?}; its log:\n{}",
                    self.log()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{method}: Chromium closed the DevTools pipe; its log:\n{}",
                    self.log()
                ),
            }
        }
    }

    /// Opens a page as a `width`×`height` viewport (CSS pixels, scale 1) and
    /// loads `url` in it.
    pub fn open(&mut self, url: &str, width: u32, height: u32) {
        let target = self
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .expect("a page");
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .expect("attach to the page");
        self.session = Some(attached["sessionId"].as_str().expect("a session id").to_string());
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .expect("set the viewport");
        self.call("Page.navigate", json!({"url": url})).expect("navigate");
    }

    /// Runs `script` (a function body that returns a JSON-able value) in
    /// the page at `url` once that page has loaded, and returns its value.
    /// Retried while the page is still navigating: a reload (the page
    /// refreshes itself) destroys the context an evaluation ran in.
    pub fn measure(&mut self, url: &str, script: &str) -> Value {
        let expression = format!(
            "new Promise(done => {{ \
               const ready = () => location.href === {url} && document.readyState === 'complete'; \
               if (ready()) done(); else addEventListener('load', () => done()); \
             }}).then(() => {{ \
               if (location.href !== {url}) throw new Error('at ' + location.href); \
               return JSON.stringify((() => {{ {script} }})()); \
             }})",
            url = json!(url),
        );
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let outcome = self.call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            );
            let failure = match outcome {
                Ok(result) => match (result.get("exceptionDetails"), result["result"]["value"].as_str()) {
                    (None, Some(text)) => {
                        return serde_json::from_str(text).expect("the script's value is JSON")
                    }
                    (details, _) => format!("{}", details.cloned().unwrap_or(result)),
                },
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "measuring {url} failed: {failure}\nChromium's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
