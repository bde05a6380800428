use clap::Parser;

fn main() -> std::process::ExitCode {
    steady_allocator();
    let cli = mig_exporter::cli::Cli::parse();
    match mig_exporter::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mig-exporter: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A node agent should hold a small, flat resident set. glibc's defaults
/// work against that: every thread that allocates may get its own arena, and
/// the mmap threshold adapts upward after each large free, so the same work
/// moves the heap by a megabyte at a time and the top is rarely trimmed back.
/// Two arenas (the threads here rarely allocate at once) and fixed
/// thresholds keep resident memory where the live data is. 256 KiB is above
/// the largest block a poll or scrape allocates (a `/metrics` body of the
/// 8-GPU, 56-instance node is about 140 kB), so those come from the heap
/// instead of an mmap and munmap each.
/// Set before any thread starts. mallopt would override an operator's own
/// `GLIBC_TUNABLES`, so with that variable set nothing is changed here.
fn steady_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("GLIBC_TUNABLES").is_some_and(|v| !v.is_empty()) {
            return;
        }
        const THRESHOLD: libc::c_int = 256 * 1024;
        // SAFETY: mallopt only sets allocator parameters; no thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
    }
}
