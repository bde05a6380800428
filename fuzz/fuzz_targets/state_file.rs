//! The last-known-good state file (`--state.file`): what parses is written
//! back unchanged (the exporter rewrites it on every change).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mig_exporter::drift::state::{self, StateDoc};

const PATH: &str = "/fuzz/state.json";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let doc = match state::parse(text, Path::new(PATH)) {
        Ok(doc) => doc,
        Err(e) => {
            assert!(e.to_string().contains(PATH), "error without the file name: {e}");
            return;
        }
    };
    let written = serde_json::to_string_pretty(&doc).expect("a state doc serializes");
    let again: StateDoc = state::parse(&written, Path::new(PATH))
        .unwrap_or_else(|e| panic!("a written state file does not read back: {e}\n{written}"));
    assert_eq!(again, doc, "the state changed on a write and read:\n{written}");
});
