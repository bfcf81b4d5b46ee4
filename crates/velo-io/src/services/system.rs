//! System metrics sampled while a run is open, under MLflow's names.
//!
//! [`SystemSampler`] reads CPU, memory, disk and network figures with the same meaning and
//! names as MLflow's own system metrics monitor (`system/cpu_utilization_percentage`,
//! `system/system_memory_usage_megabytes`, …), so MLflow's UI shows velo's runs in its system
//! metrics charts. [`SystemMonitor`] samples on a background thread every interval, averages
//! the gauges over `samples_before_logging` samples, and hands each step's metrics to a sink
//! (the tracking run), until it is stopped or dropped.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};

/// The prefix of every system metric's key.
pub const PREFIX: &str = "system/";

const MEGABYTE: f64 = 1e6;

/// One sample of system metrics: `(key, value)` pairs, keys prefixed with [`PREFIX`].
pub type Sample = Vec<(String, f64)>;

/// The resident memory of process `pid`, in MiB (`None` when it cannot be read, such as a
/// process that ended).
pub fn resident_mb(pid: u32) -> Option<f64> {
    let pid = sysinfo::Pid::from_u32(pid);
    let mut system = System::new().ok()?;
    system.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[pid]),
        true,
        sysinfo::ProcessRefreshKind::nothing().with_memory(),
    );
    system
        .process(pid)
        .map(|process| process.memory() as f64 / (1024.0 * 1024.0))
}

/// Reads the machine's CPU, memory, disk and network figures.
///
/// Network figures count from the sampler's creation, as MLflow's do from the monitor's start.
/// A figure the platform cannot give is left out of the samples.
#[derive(Debug)]
pub struct SystemSampler {
    system: Option<System>,
    disks: Option<Disks>,
    networks: Option<Networks>,
    disk_path: PathBuf,
    received_at_start: u64,
    transmitted_at_start: u64,
}

impl SystemSampler {
    /// A sampler reporting the disk that holds `disk_path` (MLflow reports the root).
    pub fn new(disk_path: &Path) -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        let networks = Networks::new_with_refreshed_list().ok();
        let (received, transmitted) = networks.as_ref().map_or((0, 0), network_totals);
        Self {
            system,
            disks: Disks::new_with_refreshed_list().ok(),
            networks,
            disk_path: disk_path.to_path_buf(),
            received_at_start: received,
            transmitted_at_start: transmitted,
        }
    }

    /// Reads the figures now. CPU utilisation is measured since the previous call (or the
    /// sampler's creation), so the first call of a fresh sampler may read 0.
    pub fn sample(&mut self) -> Sample {
        let mut sample = Vec::with_capacity(8);
        let mut push = |name: &str, value: f64| {
            if value.is_finite() {
                sample.push((format!("{PREFIX}{name}"), value));
            }
        };
        if let Some(system) = &mut self.system {
            system.refresh_cpu_usage();
            system.refresh_memory();
            push(
                "cpu_utilization_percentage",
                f64::from(system.global_cpu_usage()),
            );
            let used = system.used_memory() as f64;
            let total = system.total_memory() as f64;
            push("system_memory_usage_megabytes", used / MEGABYTE);
            if total > 0.0 {
                push("system_memory_usage_percentage", used / total * 100.0);
            }
        }
        if let Some(disks) = &mut self.disks {
            disks.refresh(true);
        }
        if let Some((total, available)) = self.disk_space() {
            let used = total.saturating_sub(available) as f64;
            push("disk_usage_megabytes", used / MEGABYTE);
            push("disk_available_megabytes", available as f64 / MEGABYTE);
            if total > 0 {
                push("disk_usage_percentage", used / total as f64 * 100.0);
            }
        }
        if let Some(networks) = &mut self.networks {
            networks.refresh(true);
            let (received, transmitted) = network_totals(networks);
            push(
                "network_receive_megabytes",
                received.saturating_sub(self.received_at_start) as f64 / MEGABYTE,
            );
            push(
                "network_transmit_megabytes",
                transmitted.saturating_sub(self.transmitted_at_start) as f64 / MEGABYTE,
            );
        }
        sample
    }

    /// Total and available bytes of the disk mounted at the longest prefix of the disk path.
    fn disk_space(&self) -> Option<(u64, u64)> {
        self.disks
            .as_ref()?
            .iter()
            .filter(|disk| self.disk_path.starts_with(disk.mount_point()))
            .max_by_key(|disk| disk.mount_point().as_os_str().len())
            .map(|disk| (disk.total_space(), disk.available_space()))
    }
}

fn network_totals(networks: &Networks) -> (u64, u64) {
    networks
        .values()
        .fold((0, 0), |(received, transmitted), data| {
            (
                received.saturating_add(data.total_received()),
                transmitted.saturating_add(data.total_transmitted()),
            )
        })
}

/// The process metrics Prometheus clients conventionally expose (`process_*`), read from
/// `/proc/self` (Linux); `None` elsewhere or when `/proc` cannot be read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessMetrics {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit of open file descriptors, when there is one.
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Clock ticks per second of `/proc`'s times (`USER_HZ`, 100 on every mainstream Linux ABI).
const USER_HZ: f64 = 100.0;

/// Bytes of a memory page (`/proc/self/stat`'s `rss` is in pages): 4 KiB on x86-64 and most
/// Linux ABIs.
const PAGE_BYTES: u64 = 4096;

impl ProcessMetrics {
    /// This process's metrics now.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name may hold spaces: the fields start after its closing parenthesis.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 2..)?
            .split_whitespace()
            .collect();
        // Field numbers of proc(5), counted from 3 (`state`) at index 0.
        let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|line| line.starts_with("Max open files"))?
                    .split_whitespace()
                    .nth(3)?
                    .parse()
                    .ok()
            });
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) as f64 / USER_HZ,
            resident_memory_bytes: field(24)? * PAGE_BYTES,
            virtual_memory_bytes: field(23)?,
            open_fds,
            max_fds,
            start_time_seconds: boot as f64 + field(22)? as f64 / USER_HZ,
        })
    }
}

/// Averages samples key by key (MLflow averages its gauges between two logging steps; the
/// network counters are cumulative, so their mean is close to their last value).
pub fn average(samples: &[Sample]) -> Sample {
    let mut sums: Vec<(String, f64, usize)> = Vec::new();
    for sample in samples {
        for (key, value) in sample {
            match sums.iter_mut().find(|(name, _, _)| name == key) {
                Some((_, sum, count)) => {
                    *sum += value;
                    *count += 1;
                }
                None => sums.push((key.clone(), *value, 1)),
            }
        }
    }
    sums.into_iter()
        .map(|(key, sum, count)| (key, sum / count as f64))
        .collect()
}

/// A background thread sampling system metrics until stopped.
#[derive(Debug)]
pub struct SystemMonitor {
    stop: mpsc::Sender<()>,
    stopped: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SystemMonitor {
    /// Starts sampling every `interval`; each `samples_before_logging` samples (at least 1)
    /// are averaged and given to `sink` with the step number, counting from 0. A sample is also
    /// logged at once (step 0) and when the monitor stops (the last step, with the samples not
    /// yet logged), so that a run of a few seconds has its system metrics too.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start<F>(
        interval: Duration,
        samples_before_logging: usize,
        disk_path: &Path,
        mut sink: F,
    ) -> std::io::Result<Self>
    where
        F: FnMut(u64, Sample) + Send + 'static,
    {
        let (stop, stopped_rx) = mpsc::channel::<()>();
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopped);
        let disk_path = disk_path.to_path_buf();
        let per_step = samples_before_logging.max(1);
        let thread = thread::Builder::new()
            .name("velo-system-metrics".to_owned())
            .spawn(move || {
                let mut sampler = SystemSampler::new(&disk_path);
                // The start of the run.
                sink(0, sampler.sample());
                let mut step = 1_u64;
                let mut pending = Vec::with_capacity(per_step);
                // Waiting on the channel doubles as the interval's sleep and the stop signal.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped_rx.recv_timeout(interval) {
                    pending.push(sampler.sample());
                    if pending.len() == per_step {
                        sink(step, average(&pending));
                        pending.clear();
                        step += 1;
                    }
                }
                // The end of the run, with what was sampled since the last step.
                pending.push(sampler.sample());
                sink(step, average(&pending));
                flag.store(true, Ordering::SeqCst);
            })?;
        Ok(Self {
            stop,
            stopped,
            thread: Some(thread),
        })
    }

    /// Stops sampling and waits for the thread, which logs a last step first.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Whether the sampling thread has ended.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SystemMonitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn a_sample_carries_mlflow_names_and_plausible_values() {
        let mut sampler = SystemSampler::new(&std::env::temp_dir());
        let sample = sampler.sample();
        let value = |name: &str| {
            sample
                .iter()
                .find(|(key, _)| key == &format!("system/{name}"))
                .map(|(_, value)| *value)
        };
        for (name, high) in [
            ("cpu_utilization_percentage", 100.0),
            ("system_memory_usage_percentage", 100.0),
        ] {
            let figure = value(name).unwrap_or_else(|| panic!("{name} missing from {sample:?}"));
            assert!((0.0..=high).contains(&figure), "{name} = {figure}");
        }
        let memory = value("system_memory_usage_megabytes").unwrap();
        assert!(memory > 1.0, "{memory} MB of memory in use");
        let received = value("network_receive_megabytes").unwrap();
        assert!(received >= 0.0, "{received}");
        if let Some(percent) = value("disk_usage_percentage") {
            assert!((0.0..=100.0).contains(&percent), "{percent}");
            assert!(value("disk_available_megabytes").unwrap() >= 0.0);
        }
        assert!(sample.iter().all(|(key, _)| key.starts_with(PREFIX)));
    }

    #[test]
    fn average_means_each_key() {
        let samples = vec![
            vec![("system/a".to_owned(), 1.0), ("system/b".to_owned(), 10.0)],
            vec![("system/a".to_owned(), 3.0)],
        ];
        assert_eq!(
            average(&samples),
            vec![("system/a".to_owned(), 2.0), ("system/b".to_owned(), 10.0)]
        );
        assert!(average(&[]).is_empty());
    }

    #[test]
    fn the_monitor_logs_numbered_steps_until_stopped() {
        let steps: Arc<Mutex<Vec<(u64, Sample)>>> = Arc::default();
        let seen = Arc::clone(&steps);
        let monitor = SystemMonitor::start(
            Duration::from_millis(10),
            2,
            &std::env::temp_dir(),
            move |step, sample| seen.lock().unwrap().push((step, sample)),
        )
        .unwrap();
        while steps.lock().unwrap().len() < 3 {
            thread::sleep(Duration::from_millis(5));
        }
        monitor.stop();
        let logged = steps.lock().unwrap().clone();
        let numbers: Vec<u64> = logged.iter().map(|(step, _)| *step).collect();
        assert_eq!(numbers, (0..logged.len() as u64).collect::<Vec<_>>());
        assert!(logged.iter().all(|(_, sample)| sample.len() >= 5));
        // Nothing more arrives once stopped.
        let count = logged.len();
        assert!(count >= 4, "the start, three steps and the end: {count}");
        thread::sleep(Duration::from_millis(50));
        assert_eq!(steps.lock().unwrap().len(), count);
    }

    #[test]
    fn a_short_run_logs_its_start_and_its_end() {
        let steps: Arc<Mutex<Vec<u64>>> = Arc::default();
        let seen = Arc::clone(&steps);
        let monitor = SystemMonitor::start(
            Duration::from_secs(3600),
            1,
            &std::env::temp_dir(),
            move |step, _| seen.lock().unwrap().push(step),
        )
        .unwrap();
        monitor.stop();
        assert_eq!(*steps.lock().unwrap(), [0, 1]);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn process_metrics_are_read_from_proc() {
        let metrics = ProcessMetrics::read().expect("/proc/self is readable");
        assert!(metrics.resident_memory_bytes > 1 << 20, "{metrics:?}");
        assert!(metrics.virtual_memory_bytes >= metrics.resident_memory_bytes);
        assert!(metrics.open_fds >= 3, "{metrics:?}");
        assert!(metrics.cpu_seconds >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - 86_400.0..=now + 1.0).contains(&metrics.start_time_seconds));
    }

    #[test]
    fn dropping_the_monitor_stops_it() {
        let monitor =
            SystemMonitor::start(Duration::from_secs(3600), 1, Path::new("/"), |_, _| {}).unwrap();
        assert!(!monitor.is_stopped());
        drop(monitor); // returns at once although the interval is an hour
    }
}
