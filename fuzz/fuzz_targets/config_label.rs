//! The `nvidia.com/mig.config` label file (`--mig.config-name-file`): a bare
//! config name or Kubernetes downward-API label lines. A name read from it is
//! never empty and is part of the file; reading the file gives what parsing
//! its text gives, and a file that cannot be read is an error naming it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mig_exporter::drift::desired::{name_from_label_text, read_name_file};

/// One file per process, written for each input and removed after it.
fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| std::env::temp_dir().join(format!("mig-exporter-fuzz-label-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let path = file();
    std::fs::write(path, data).expect("writing the label file");
    let read = read_name_file(path);
    let _ = std::fs::remove_file(path);
    let Ok(text) = std::str::from_utf8(data) else {
        let e = read.expect_err("a file that is not UTF-8 does not read");
        assert!(
            e.to_string().contains(&path.display().to_string()),
            "error without the file name: {e}"
        );
        return;
    };
    let name = name_from_label_text(text);
    assert_eq!(
        read.as_ref().ok(),
        Some(&name),
        "reading the file differs from parsing its text: {read:?}"
    );
    if let Some(name) = name {
        assert!(!name.is_empty(), "an empty name from {text:?}");
        assert!(text.contains(name.as_str()), "{name:?} is not in {text:?}");
    }
});
