//! Cost of one `/metrics` scrape: encoding the snapshot of 8 H100s, each split
//! into seven `1g.10gb` instances. Criterion prints the time per scrape and,
//! through the element throughput, series per second; the series count and
//! size are printed first so time per series can be read off directly.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mig_exporter::expose::metrics::{self, Format};
use mig_exporter::poll::Poller;
use mig_exporter::poll::Published;
use mig_exporter::source::sim::SimSource;
use mig_model::{Product, World};

fn seven_1g_on_eight_h100() -> World {
    let mut world = World::new("bench-node", Product::H100_80GB, 8);
    for gpu in &mut world.gpus {
        gpu.set_mig_mode(true);
        for _ in 0..7 {
            let gi = gpu.create_gpu_instance(19, None).expect("1g.10gb fits");
            gpu.create_compute_instance(gi, None).expect("default CI fits");
        }
    }
    world
}

fn encode(c: &mut Criterion) {
    let published = Arc::new(Published::default());
    let mut poller = Poller::new(Box::new(SimSource::Scenario(seven_1g_on_eight_h100())));
    published.publish(poller.poll_once());
    let registry = metrics::registry(published);

    for (format, label) in [
        (Format::PrometheusText, "text"),
        (Format::OpenMetrics, "openmetrics"),
    ] {
        let sample = metrics::render(&registry, format).expect("encodes");
        let series = sample
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count() as u64;
        println!("{label}: {series} series, {} bytes per scrape", sample.len());
        let mut group = c.benchmark_group(format!("scrape_8xh100_7x1g_{label}"));
        group.throughput(Throughput::Elements(series));
        group.bench_function("encode", |b| {
            b.iter(|| metrics::render(&registry, format).expect("encodes"))
        });
        group.finish();
    }
}

criterion_group!(benches, encode);
criterion_main!(benches);
