//! `--web.config.file` (the Prometheus exporter-toolkit format): errors name
//! the file, and a parsed config never shows a password hash when printed.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mig_exporter::expose::web_config::WebConfig;

const PATH: &str = "/fuzz/web-config.yml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match WebConfig::parse(text, Path::new(PATH)) {
        Ok(config) => {
            let shown = format!("{config:?}");
            for hash in config.users.values().filter(|h| !h.is_empty()) {
                assert!(!shown.contains(hash.as_str()), "a hash is shown: {shown}");
            }
        }
        Err(e) => assert!(e.to_string().contains(PATH), "error without the file name: {e}"),
    }
});
