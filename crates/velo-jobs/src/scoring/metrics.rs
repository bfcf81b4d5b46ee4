//! The Prometheus registry the scoring transports expose at `/metrics`.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};

/// The media type of the exposition [`Exporter::encode`] writes.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of Prometheus' classic text exposition, which `/metrics` answers unless the
/// scrape asks for OpenMetrics.
pub(crate) const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry of metrics whose names share a prefix (`velo_serve`, `velo_kafka`).
#[derive(Debug)]
pub(crate) struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// An empty registry whose metric names start with `prefix_`.
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            registry: Registry::with_prefix(prefix),
        }
    }

    /// Registers `metric` under `name` with its help text, and returns it.
    pub(crate) fn register<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.registry.register(name, help, metric.clone());
        metric
    }

    /// A new counter registered under `name`.
    pub(crate) fn counter(&mut self, name: &str, help: &str) -> Counter {
        self.register(name, help, Counter::default())
    }

    /// A new gauge registered under `name`.
    pub(crate) fn gauge(&mut self, name: &str, help: &str) -> Gauge {
        self.register(name, help, Gauge::default())
    }

    /// A new histogram registered under `name`, with `count` buckets from `start`, each
    /// `factor` times the last.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        help: &str,
        (start, factor, count): (f64, f64, u16),
    ) -> Histogram {
        let buckets =
            prometheus_client::metrics::histogram::exponential_buckets(start, factor, count);
        self.register(name, help, Histogram::new(buckets))
    }

    /// The OpenMetrics text exposition of every metric ([`CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "cannot encode the metrics");
        }
        text
    }
}

impl Exporter {
    /// The exposition a scrape's `Accept` header asks for, with the process metrics
    /// (`process_*`): OpenMetrics when it names `application/openmetrics-text` (as Prometheus
    /// asks), else the classic text format (as `promtool check metrics` and older clients read).
    pub(crate) fn negotiate(&self, accept: Option<&str>) -> (&'static str, String) {
        let open = with_process_metrics(self.encode());
        if accept.is_some_and(|accept| accept.contains("application/openmetrics-text")) {
            (CONTENT_TYPE, open)
        } else {
            (CLASSIC_CONTENT_TYPE, classic(&open))
        }
    }
}

/// `open` (OpenMetrics text) with the process's metrics added before its `# EOF`.
fn with_process_metrics(open: String) -> String {
    let Some(process) = velo_io::services::system::ProcessMetrics::read() else {
        return open;
    };
    let mut text = match open.rfind("# EOF") {
        Some(at) => open[..at].to_owned(),
        None => open,
    };
    let mut family = |name: &str, kind: &str, help: &str, sample: &str, value: f64| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{sample} {value}\n"
        ));
    };
    family(
        "process_cpu_seconds",
        "counter",
        "Total user and system CPU time spent in seconds.",
        "process_cpu_seconds_total",
        process.cpu_seconds,
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        "process_resident_memory_bytes",
        process.resident_memory_bytes as f64,
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        "process_virtual_memory_bytes",
        process.virtual_memory_bytes as f64,
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        "process_open_fds",
        process.open_fds as f64,
    );
    if let Some(max) = process.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            "process_max_fds",
            max as f64,
        );
    }
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        "process_start_time_seconds",
        process.start_time_seconds,
    );
    text.push_str("# EOF\n");
    text
}

/// OpenMetrics text as Prometheus' classic text format: a counter's `HELP` and `TYPE` name
/// its samples (`x_total`, where OpenMetrics names the family `x`), and the `UNIT` and `EOF`
/// lines, which the classic format does not have, go.
fn classic(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open.len() + 64);
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Sets a model-version gauge from a registry version string (-1 when it is not a number).
pub(crate) fn set_version(gauge: &Gauge, version: &str) {
    gauge.set(version.parse::<i64>().unwrap_or(-1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_for_the_classic_format_and_process_metrics_added() {
        let mut exporter = Exporter::new("velo_test");
        let requests = exporter.counter("requests", "Requests answered");
        requests.inc();
        let rows = exporter.gauge("rows", "Rows in flight");
        rows.set(3);
        let (kind, open) = exporter.negotiate(Some("application/openmetrics-text; version=1.0.0"));
        assert_eq!(kind, CONTENT_TYPE);
        assert!(
            open.contains("# TYPE velo_test_requests counter\n"),
            "{open}"
        );
        assert!(open.trim_end().ends_with("# EOF"), "{open}");
        let (kind, text) = exporter.negotiate(Some("text/plain"));
        assert_eq!(kind, CLASSIC_CONTENT_TYPE);
        assert!(
            text.contains("# HELP velo_test_requests_total Requests answered.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE velo_test_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("velo_test_requests_total 1\n"), "{text}");
        assert!(
            text.contains("# TYPE velo_test_rows gauge\nvelo_test_rows 3\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        if cfg!(target_os = "linux") {
            assert!(
                text.contains("# TYPE process_cpu_seconds_total counter\n"),
                "{text}"
            );
            assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
            assert!(text.contains("\nprocess_open_fds "), "{text}");
        }
        // No Accept header at all: the classic format.
        assert_eq!(exporter.negotiate(None).0, CLASSIC_CONTENT_TYPE);
    }
}
