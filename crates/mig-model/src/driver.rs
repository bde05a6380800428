//! Facts NVML reports about the driver itself, derived from its version.

/// The branch of a driver version: `580.159.04` → 580 (0 when unreadable).
pub fn branch(driver_version: &str) -> u32 {
    driver_version
        .split('.')
        .next()
        .and_then(|major| major.trim().parse().ok())
        .unwrap_or(0)
}

/// The CUDA version a driver branch ships, as `nvmlSystemGetCudaDriverVersion`
/// encodes it (1000 × major + 10 × minor): 580.x → 13000.
pub fn cuda_version(driver_version: &str) -> i32 {
    let branch = branch(driver_version);
    const TABLE: &[(u32, i32)] = &[
        (590, 13010),
        (580, 13000),
        (575, 12090),
        (570, 12080),
        (565, 12070),
        (560, 12060),
        (555, 12050),
        (550, 12040),
        (545, 12030),
        (535, 12020),
        (530, 12010),
        (525, 12000),
        (520, 11080),
        (515, 11070),
        (510, 11060),
        (495, 11050),
        (470, 11040),
        (465, 11030),
        (460, 11020),
        (455, 11010),
        (450, 11000),
    ];
    TABLE
        .iter()
        .find(|(min, _)| branch >= *min)
        .map_or(10020, |(_, cuda)| *cuda)
}

/// `nvmlSystemGetNVMLVersion`: the CUDA major version, then the driver
/// version (`13.580.159.04` on the fixture's H100).
pub fn nvml_version(driver_version: &str) -> String {
    format!("{}.{driver_version}", cuda_version(driver_version) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_driver_branch() {
        assert_eq!(cuda_version("580.159.04"), 13000);
        assert_eq!(nvml_version("580.159.04"), "13.580.159.04");
        assert_eq!(cuda_version("550.54.15"), 12040);
        assert_eq!(nvml_version("535.104.05"), "12.535.104.05");
        assert_eq!(cuda_version("garbage"), 10020);
        assert_eq!((branch("525.85.12"), branch("garbage")), (525, 0));
    }
}
