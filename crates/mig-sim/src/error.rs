//! Failures that carry the exit status the process ends with.

use std::fmt;

/// Exit status for a malformed command line (nvidia-smi's "invalid argument").
pub const EXIT_USAGE: u8 = 2;
/// Exit status for an unreadable, malformed or unwritable World file.
pub const EXIT_WORLD_FILE: u8 = 1;

/// An error whose message is printed as is and whose exit status is chosen.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn error(code: u8, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure {
            code,
            message: message.into(),
        })
    }

    /// A command-line mistake: names the problem and points at `--help`.
    pub fn usage(message: impl fmt::Display) -> anyhow::Error {
        Failure::error(
            EXIT_USAGE,
            format!("mig-sim: {message}\nRun 'mig-sim --help' for usage."),
        )
    }

    /// A refusal reported the way nvidia-smi reports an NVML error; the exit
    /// status follows nvidia-smi's documented return values.
    pub fn nvml(nvml_return: u32, message: impl Into<String>) -> anyhow::Error {
        Failure::error(exit_status_for_nvml(nvml_return), message)
    }
}

/// nvidia-smi returns 2 (invalid argument), 3 (not supported), 4 (no
/// permission) and 6 (not found) as themselves and 255 for any other error.
pub fn exit_status_for_nvml(nvml_return: u32) -> u8 {
    match nvml_return {
        2 | 3 | 4 | 6 => nvml_return as u8,
        _ => 255,
    }
}

/// `nvmlErrorString` for the return codes the model produces.
pub fn nvml_error_string(nvml_return: u32) -> &'static str {
    match nvml_return {
        2 => "Invalid Argument",
        3 => "Not Supported",
        4 => "Insufficient Permissions",
        6 => "Not Found",
        23 => "Insufficient Resources",
        19 => "In use by another client",
        _ => "Unknown Error",
    }
}
