//! MIG profile names (mig-parted configs, World files, NVML's "MIG 1g.10gb"):
//! a name that parses prints in one canonical form that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mig_model::ProfileName;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<ProfileName>() {
        Ok(name) => {
            let shown = name.to_string();
            assert_eq!(
                shown.parse::<ProfileName>(),
                Ok(name),
                "'{shown}' reads back differently"
            );
            assert_eq!(format!("MIG {shown}").parse::<ProfileName>(), Ok(name));
            assert!(!shown.contains(char::is_whitespace), "'{shown}'");
        }
        Err(e) => assert_eq!(e.input, text, "the error names another input"),
    }
});
