//! World files (`--world`, `mig-sim`, the fakes): a World that validates is
//! saved and read back equal, and the exporter can read a node from it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mig_exporter::source::sim::reading_from_world;
use mig_model::{World, WorldFileError};

const PATH: &str = "/fuzz/world.json";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let world = match World::from_json(text, Path::new(PATH)) {
        Ok(world) => world,
        Err(e) => {
            assert!(e.to_string().contains(PATH), "error without the file name: {e}");
            if let WorldFileError::Invalid { location, .. } = &e {
                assert!(location.is_some(), "error without a line: {e}");
            }
            return;
        }
    };
    let saved = world.to_json();
    let again = World::from_json(&saved, Path::new(PATH))
        .unwrap_or_else(|e| panic!("a saved World does not read back: {e}\n{saved}"));
    assert_eq!(again, world, "the World changed on a save and read:\n{saved}");
    let reading = reading_from_world(&world);
    assert_eq!(reading.gpus.len(), world.gpus.len());
});
