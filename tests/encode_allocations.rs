//! The Prometheus encoder allocates nothing per series: a scrape of twice
//! the GPUs (twice the series) takes about as many allocations as one of
//! half. Counted with a global allocator of this test binary, so the file
//! holds one test (tests run on threads of one process).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use mig_exporter::expose::metrics::{registry, render, Format};
use mig_exporter::model::NodeSnapshot;
use mig_exporter::poll::Published;
use mig_exporter::source::{scenarios, sim};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The h100-mixed node with its GPUs repeated `times` times (new indexes
/// and UUIDs), and what a scrape of it costs: (series, allocations).
fn scrape(times: u32) -> (usize, usize) {
    let reading = sim::reading_from_world(&scenarios::build("h100-mixed").unwrap());
    let mut gpus = Vec::new();
    for copy in 0..times {
        for g in &reading.gpus {
            let mut g = g.clone();
            g.index += copy * 100;
            g.uuid = format!("{}-{copy}", g.uuid);
            gpus.push(g);
        }
    }
    let published = Arc::new(Published::default());
    published.publish(NodeSnapshot {
        gpus,
        driver_version: reading.driver_version,
        ..Default::default()
    });
    let registry = registry(published);
    // Once before counting, so that lazily built state (the contract's
    // table) is not counted.
    render(&registry, Format::PrometheusText).unwrap();
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let text = render(&registry, Format::PrometheusText).unwrap();
    COUNTING.store(false, Ordering::Relaxed);
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    (series, ALLOCATIONS.load(Ordering::Relaxed))
}

#[test]
fn a_scrape_allocates_nothing_per_series() {
    let (small_series, small) = scrape(1);
    let (large_series, large) = scrape(4);
    assert!(
        large_series >= 3 * small_series,
        "{small_series} → {large_series} series"
    );
    // The output string grows by doubling: a few more allocations for four
    // times the text, never one per series.
    assert!(
        large <= small + 8,
        "{small} allocations for {small_series} series, {large} for {large_series}"
    );
}
