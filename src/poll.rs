//! Runs the sources on their cadence and publishes complete snapshots.
//!
//! A poll builds a whole [`NodeSnapshot`] and swaps it in atomically; a scrape
//! only ever reads the latest one. When a source fails, the next snapshot has
//! nothing from it (no stale series) and says so in its [`SourceHealth`].
//! With a [`DriftTracker`], every successful read is also judged for drift
//! and the findings go into the same snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::drift::DriftTracker;
use crate::model::{NodeSnapshot, SourceHealth, SourceState};
use crate::source::kubelet::KubeletSource;
use crate::source::{failure_state, GeometrySource, NodeReading, UtilizationSource};

/// The latest published snapshot, shared by the poller and every reader.
#[derive(Debug, Default)]
pub struct Published {
    snapshot: ArcSwap<NodeSnapshot>,
    ready: AtomicBool,
}

impl Published {
    pub fn load(&self) -> Arc<NodeSnapshot> {
        self.snapshot.load_full()
    }

    /// True once a poll has completed, whether its source was up or not.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn publish(&self, snapshot: NodeSnapshot) {
        self.snapshot.store(Arc::new(snapshot));
        self.ready.store(true, Ordering::Release);
    }
}

/// Polls one geometry source, and the utilization sources on what it read,
/// and turns each reading into a snapshot.
///
/// Utilization sources run in the order they were added, each filling only
/// the values the ones before it left `None`: with DCGM and GPM both added
/// (in that order), a ratio is DCGM's wherever DCGM has it, and GPM's only
/// where DCGM has none. A series is never published twice.
pub struct Poller {
    source: Box<dyn GeometrySource>,
    health: SourceHealth,
    utilization: Vec<(Box<dyn UtilizationSource>, SourceHealth)>,
    drift: Option<DriftTracker>,
    kubelet: Option<(KubeletSource, SourceHealth)>,
}

impl Poller {
    pub fn new(source: Box<dyn GeometrySource>) -> Self {
        Poller {
            health: SourceHealth::new(source.name()),
            source,
            utilization: Vec::new(),
            drift: None,
            kubelet: None,
        }
    }

    /// Reads pod owners and advertised devices from the kubelet on every
    /// successful geometry read: `pods` in the snapshot, and
    /// `advertised_mismatch` with a drift tracker. A failed kubelet read
    /// leaves the owners out and judges `advertised_mismatch` on the last
    /// advertisement it answered with; it touches nothing else.
    pub fn with_kubelet(mut self, source: KubeletSource) -> Self {
        self.kubelet = Some((source, SourceHealth::new("kubelet")));
        self
    }

    /// Adds per-instance activity from `source` to every successful read,
    /// after the utilization sources added before it: it fills only what they
    /// left `None`.
    pub fn with_utilization(mut self, source: Box<dyn UtilizationSource>) -> Self {
        let health = SourceHealth::new(source.name());
        self.utilization.push((source, health));
        self
    }

    /// Judges every successful read for drift with `tracker`.
    pub fn with_drift(mut self, tracker: DriftTracker) -> Self {
        self.drift = Some(tracker);
        self
    }

    pub fn drift(&self) -> Option<&DriftTracker> {
        self.drift.as_ref()
    }

    /// One poll: read the sources, account for them, build the snapshot.
    pub fn poll_once(&mut self) -> NodeSnapshot {
        let started = Instant::now();
        let result = self.source.poll();
        let blocked = result.as_ref().err().and_then(|e| {
            e.downcast_ref::<crate::source::nvml::monitor::MonitorDeviceNotInjected>()
                .map(ToString::to_string)
        });
        let now = unix_now();
        let (mut reading, read) = match account(&mut self.health, started, now, result) {
            Some(reading) => (reading, true),
            None => (NodeReading::default(), false),
        };
        let mut sources = vec![self.health.clone()];
        for (source, health) in &mut self.utilization {
            // Activity is only meaningful on geometry read this very poll.
            if read {
                let started = Instant::now();
                let result = source.fill(&mut reading.gpus);
                account(health, started, unix_now(), result);
            }
            sources.push(health.clone());
        }
        let mut kubelet = None;
        if let Some((source, health)) = &mut self.kubelet {
            // Owners and advertisements are resolved against this poll's devices.
            if read {
                let started = Instant::now();
                let result = source.read();
                kubelet = account(health, started, unix_now(), result);
            }
            sources.push(health.clone());
        }
        let pods = match (&kubelet, &mut self.kubelet) {
            (Some(k), Some((source, _))) => source.owners(&k.pods, &reading.gpus),
            _ => Vec::new(),
        };
        // Kept through failed kubelet reads, unlike the owners: see KubeletSource::advertised.
        let advertised = self.kubelet.as_ref().and_then(|(source, _)| source.advertised());
        let drift = match &mut self.drift {
            Some(tracker) => {
                let drift = if read {
                    tracker.observe_with_advertised(
                        reading.boot_id.as_deref(),
                        &reading.gpus,
                        advertised,
                        now,
                    )
                } else {
                    tracker.unavailable()
                };
                sources.extend(tracker.sources());
                drift
            }
            None => Default::default(),
        };
        NodeSnapshot {
            taken_at_seconds: now,
            hostname: reading.hostname,
            boot_id: reading.boot_id,
            driver_version: reading.driver_version,
            nvml_version: reading.nvml_version,
            gpus: reading.gpus,
            sources,
            drift,
            pods,
            blocked,
            simulated: self.source.simulated(),
        }
    }

    /// Polls forever on `interval`, publishing each snapshot; the first poll
    /// is one interval from now (the caller has published one with
    /// [`Poller::poll_once`]). The source runs on a blocking thread so a slow
    /// driver call never stalls the HTTP server.
    pub async fn run(mut self, interval: Duration, published: Arc<Published>) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let joined = tokio::task::spawn_blocking(move || {
                let snapshot = self.poll_once();
                release_free_memory();
                (self, snapshot)
            })
            .await;
            match joined {
                Ok((poller, snapshot)) => {
                    self = poller;
                    published.publish(snapshot);
                }
                Err(e) => {
                    // A panicking source would be a bug; stop polling rather than spin.
                    tracing::error!(error = %e, "poller task failed; geometry is no longer updated");
                    return;
                }
            }
        }
    }
}

/// Hands the free pages inside glibc's heaps back to the kernel. A poll
/// frees most of what the one before it allocated; the holes that leaves
/// are not at the top of a heap, so glibc keeps them resident, and over
/// hours the resident set creeps up while live memory stays flat.
/// `malloc_trim` releases them (`MADV_DONTNEED` on whole free pages); over a
/// heap of a few hundred kilobytes it takes microseconds.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Records one poll of a source in its health: duration, success or the
/// error (logged when it changes), and returns what it read. An error that
/// says the source does not apply here ([`NotApplicable`]) puts it in that
/// state: not down, and no failed poll.
///
/// [`NotApplicable`]: crate::source::NotApplicable
fn account<T>(health: &mut SourceHealth, started: Instant, now: f64, result: anyhow::Result<T>) -> Option<T> {
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(value) => {
            if !health.up {
                tracing::info!(source = health.name, "source is up");
            }
            health.state = SourceState::Enabled;
            health.record(elapsed, now, None);
            Some(value)
        }
        Err(e) => {
            let message = format!("{e:#}");
            let state = failure_state(&e);
            if health.last_error.as_deref() != Some(&message) || health.state != state {
                if state == SourceState::Enabled {
                    tracing::warn!(source = health.name, error = %message, "poll failed");
                } else {
                    tracing::info!(source = health.name, %state, reason = %message, "source does not apply here");
                }
            }
            health.state = state;
            health.record(elapsed, now, Some(message));
            None
        }
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuSnapshot;

    struct Flaky {
        fail: bool,
    }

    impl GeometrySource for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn poll(&mut self) -> anyhow::Result<NodeReading> {
            if self.fail {
                anyhow::bail!("driver gone")
            }
            let reading =
                crate::source::sim::reading_from_world(&crate::source::scenarios::build("h100-mixed")?);
            Ok(NodeReading {
                gpus: reading.gpus.into_iter().take(1).collect::<Vec<GpuSnapshot>>(),
                ..reading
            })
        }
    }

    #[test]
    fn a_failed_poll_publishes_no_geometry_and_says_why() {
        let mut poller = Poller::new(Box::new(Flaky { fail: false }));
        let ok = poller.poll_once();
        assert_eq!(ok.gpus.len(), 1);
        assert!(ok.sources[0].up);

        let mut poller = Poller {
            source: Box::new(Flaky { fail: true }),
            health: ok.sources[0].clone(),
            utilization: Vec::new(),
            drift: None,
            kubelet: None,
        };
        let failed = poller.poll_once();
        assert!(failed.gpus.is_empty(), "no stale series from a failed read");
        let health = &failed.sources[0];
        assert!(!health.up);
        assert_eq!(health.errors_total, 1);
        assert_eq!(health.last_error.as_deref(), Some("driver gone"));
        assert_eq!(health.last_success_seconds, ok.sources[0].last_success_seconds);
        assert_eq!(health.poll_duration.count, 2);
    }

    /// Fails on demand and counts its calls.
    struct Activity {
        fail: bool,
        calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl UtilizationSource for Activity {
        fn name(&self) -> &'static str {
            "activity"
        }
        fn fill(&mut self, gpus: &mut [GpuSnapshot]) -> anyhow::Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                anyhow::bail!("host engine gone")
            }
            for gpu in gpus {
                gpu.health.activity.sm_active_ratio = Some(0.5);
            }
            Ok(())
        }
    }

    /// Fills each GPU's activity with `activity` where it is still `None`, or fails.
    struct Fills {
        name: &'static str,
        activity: crate::model::Activity,
        fail: bool,
    }

    impl UtilizationSource for Fills {
        fn name(&self) -> &'static str {
            self.name
        }
        fn fill(&mut self, gpus: &mut [GpuSnapshot]) -> anyhow::Result<()> {
            if self.fail {
                anyhow::bail!("{} down", self.name)
            }
            for gpu in gpus {
                gpu.health.activity.fill_from(&self.activity);
            }
            Ok(())
        }
    }

    #[test]
    fn utilization_sources_run_in_order_and_the_first_value_wins() {
        use crate::model::Activity;
        let dcgm = |fail| {
            Box::new(Fills {
                name: "dcgm",
                activity: Activity {
                    sm_active_ratio: Some(0.25),
                    ..Activity::default()
                },
                fail,
            })
        };
        let gpm = Box::new(Fills {
            name: "gpm",
            activity: Activity {
                sm_active_ratio: Some(0.75),
                tensor_active_ratio: Some(0.5),
                ..Activity::default()
            },
            fail: false,
        });
        let mut poller = Poller::new(Box::new(Flaky { fail: false }))
            .with_utilization(dcgm(false))
            .with_utilization(gpm);
        let snapshot = poller.poll_once();
        let a = snapshot.gpus[0].health.activity;
        assert_eq!(a.sm_active_ratio, Some(0.25), "DCGM's value wins");
        assert_eq!(a.tensor_active_ratio, Some(0.5), "GPM fills what DCGM left None");
        assert_eq!(
            snapshot.sources.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["flaky", "dcgm", "gpm"]
        );

        // With DCGM down, GPM's values stand alone.
        let gpm = Box::new(Fills {
            name: "gpm",
            activity: Activity {
                sm_active_ratio: Some(0.75),
                ..Activity::default()
            },
            fail: false,
        });
        let mut poller = Poller::new(Box::new(Flaky { fail: false }))
            .with_utilization(dcgm(true))
            .with_utilization(gpm);
        let snapshot = poller.poll_once();
        assert_eq!(snapshot.gpus[0].health.activity.sm_active_ratio, Some(0.75));
        assert_eq!(
            snapshot
                .sources
                .iter()
                .map(|s| (s.name, s.up))
                .collect::<Vec<_>>(),
            [("flaky", true), ("dcgm", false), ("gpm", true)]
        );
    }

    #[test]
    fn utilization_fills_the_geometry_and_fails_alone() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let activity = |fail| {
            Box::new(Activity {
                fail,
                calls: calls.clone(),
            })
        };
        let mut poller = Poller::new(Box::new(Flaky { fail: false })).with_utilization(activity(false));
        let snapshot = poller.poll_once();
        assert_eq!(snapshot.gpus[0].health.activity.sm_active_ratio, Some(0.5));
        assert_eq!(
            snapshot
                .sources
                .iter()
                .map(|s| (s.name, s.up))
                .collect::<Vec<_>>(),
            [("flaky", true), ("activity", true)]
        );

        let mut poller = Poller::new(Box::new(Flaky { fail: false })).with_utilization(activity(true));
        let snapshot = poller.poll_once();
        assert_eq!(snapshot.gpus.len(), 1, "geometry is served without activity");
        assert_eq!(snapshot.gpus[0].health.activity.sm_active_ratio, None);
        assert_eq!(
            snapshot.sources[1].last_error.as_deref(),
            Some("host engine gone")
        );

        let before = calls.load(Ordering::SeqCst);
        let mut poller = Poller::new(Box::new(Flaky { fail: true })).with_utilization(activity(false));
        poller.poll_once();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before,
            "no activity read without geometry"
        );
    }

    /// Answers each poll with the next of `answers`: `None` works, `Some(state)`
    /// fails, as not applicable in `state` or (`Enabled`) as a real failure.
    struct Scripted {
        answers: std::collections::VecDeque<Option<SourceState>>,
    }

    impl UtilizationSource for Scripted {
        fn name(&self) -> &'static str {
            "dcgm"
        }
        fn fill(&mut self, _: &mut [GpuSnapshot]) -> anyhow::Result<()> {
            match self.answers.pop_front().flatten() {
                None => Ok(()),
                Some(SourceState::Enabled) => anyhow::bail!("host engine gone"),
                Some(state) => Err(anyhow::Error::new(crate::source::NotApplicable::new(
                    state,
                    "no DCGM here",
                ))
                .context("DCGM")),
            }
        }
    }

    #[test]
    fn a_source_that_does_not_apply_is_in_its_state_not_down_and_counts_no_error() {
        use SourceState::{Disabled, Enabled, Unsupported};
        let answers = [
            Some(Disabled),
            Some(Disabled),
            None,
            Some(Enabled),
            Some(Unsupported),
        ];
        let mut poller = Poller::new(Box::new(Flaky { fail: false })).with_utilization(Box::new(Scripted {
            answers: answers.into_iter().collect(),
        }));
        let mut seen = Vec::new();
        for _ in answers {
            let dcgm = poller.poll_once().sources[1].clone();
            seen.push((dcgm.state, dcgm.up, dcgm.errors_total, dcgm.last_error));
        }
        let no_dcgm = Some("DCGM: no DCGM here".to_string());
        assert_eq!(
            seen,
            [
                (Disabled, false, 0, no_dcgm.clone()),
                (Disabled, false, 0, no_dcgm),
                (Enabled, true, 0, None),
                (Enabled, false, 1, Some("host engine gone".to_string())),
                (Unsupported, false, 1, Some("DCGM: no DCGM here".to_string())),
            ]
        );
    }
}
