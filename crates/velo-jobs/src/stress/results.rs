//! A stress test's steps, what they show (knee, failure point), and how they are logged.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Float64Array, StringArray, UInt64Array},
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};
use velo_io::services::tracking::ActiveRun;

use super::{Mode, Slo, load::Measured};
use crate::{JobError, plots};

/// One measured step.
#[derive(Debug, Clone, PartialEq)]
pub struct StressStep {
    /// The server's name.
    pub server: String,
    /// The sweep: `closed`, `open` or `batch`.
    pub mode: &'static str,
    /// Clients (closed, batch), offered requests per second (open).
    pub level: f64,
    /// Rows per request.
    pub rows: usize,
    /// Answered requests per second.
    pub requests_per_s: f64,
    /// Rows scored per second.
    pub rows_per_s: f64,
    /// Latency percentiles and maximum, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Answered requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Failed over all requests.
    pub error_rate: f64,
    /// The server's resident memory after the step, in MiB, when known.
    pub rss_mb: Option<f64>,
    /// Kafka: records produced and not yet answered at the step's end.
    pub backlog: Option<f64>,
    /// Kafka: how fast that backlog grew during the step, in records per second.
    pub backlog_growth_per_s: Option<f64>,
}

impl StressStep {
    pub(super) fn new(
        server: &str,
        mode: Mode,
        level: f64,
        rows: usize,
        measured: &Measured,
        rss_mb: Option<f64>,
    ) -> Self {
        let seconds = measured.seconds.max(1e-9);
        let at = |quantile: f64| {
            if measured.latency.is_empty() {
                f64::NAN
            } else {
                measured.latency.value_at_quantile(quantile) as f64 / 1000.0
            }
        };
        let total = measured.ok + measured.errors;
        Self {
            server: server.to_owned(),
            mode: mode.as_str(),
            level,
            rows,
            requests_per_s: measured.ok as f64 / seconds,
            rows_per_s: (measured.ok as f64 * rows as f64) / seconds,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: if measured.latency.is_empty() {
                f64::NAN
            } else {
                measured.latency.max() as f64 / 1000.0
            },
            ok: measured.ok,
            errors: measured.errors,
            error_rate: if total == 0 {
                1.0
            } else {
                measured.errors as f64 / total as f64
            },
            rss_mb,
            backlog: None,
            backlog_growth_per_s: None,
        }
    }

    /// A Kafka step: `offered` records/s asked, `produced` records/s sent, `answered` records/s
    /// that came back.
    #[cfg(feature = "kafka")]
    pub(super) fn kafka(offered: f64, answered: f64, produced: f64) -> Self {
        Self {
            server: "kafka".to_owned(),
            mode: Mode::Kafka.as_str(),
            level: offered,
            rows: 1,
            requests_per_s: answered,
            rows_per_s: answered,
            p50_ms: f64::NAN,
            p90_ms: f64::NAN,
            p99_ms: f64::NAN,
            max_ms: f64::NAN,
            ok: 0,
            errors: 0,
            error_rate: if produced > 0.0 {
                (produced - answered).max(0.0) / produced
            } else {
                0.0
            },
            rss_mb: None,
            backlog: None,
            backlog_growth_per_s: None,
        }
    }

    /// Whether the step keeps the SLO; a Kafka step, whether its backlog stays bounded: it
    /// grows by less than 5% of the offered rate, or holds less than a second of records (the
    /// records in flight through batching and acknowledgements).
    fn within(&self, slo: &Slo) -> bool {
        if let Some(growth) = self.backlog_growth_per_s {
            let waiting = self.backlog.unwrap_or(0.0);
            return growth <= 0.05 * self.level || waiting <= self.level.max(100.0);
        }
        self.p99_ms <= slo.p99_ms && self.error_rate <= slo.max_error_rate
    }
}

/// What one sweep of one server shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The server.
    pub server: String,
    /// The sweep.
    pub mode: &'static str,
    /// The level after which throughput rises by less than 10% (`None`: still rising at the
    /// largest level).
    pub knee: Option<f64>,
    /// The first level that misses the SLO (`None`: none does).
    pub failure_point: Option<f64>,
    /// Why the failure point fails.
    pub failure: Option<String>,
    /// The most requests per second of the sweep.
    pub max_requests_per_s: f64,
    /// The most rows per second of the sweep.
    pub max_rows_per_s: f64,
}

fn unit(mode: &str) -> &'static str {
    match mode {
        "closed" => "clients",
        "open" => "requests/s offered",
        "kafka" => "records/s offered",
        _ => "rows per request",
    }
}

impl Finding {
    /// The finding in one line.
    pub fn line(&self) -> String {
        let unit = unit(self.mode);
        let knee = self.knee.map_or_else(
            || format!("still rising at the largest {unit} tried"),
            |knee| format!("knee at {knee} {unit}"),
        );
        if self.mode == "kafka" {
            let backlog = match (self.failure_point, &self.failure) {
                (Some(point), Some(why)) => {
                    format!("its backlog grows without bound from {point} {unit} ({why})")
                }
                _ => "its backlog stays bounded at every rate".to_owned(),
            };
            return format!(
                "kafka stream: {:.0} records/s answered at most; {knee}; {backlog}",
                self.max_requests_per_s
            );
        }
        let failure = match (self.failure_point, &self.failure) {
            (Some(point), Some(why)) => format!("fails its SLO at {point} {unit} ({why})"),
            _ => "within its SLO at every step".to_owned(),
        };
        format!(
            "{} {} loop: {:.0} requests/s, {:.0} rows/s at most; {knee}; {failure}",
            self.server, self.mode, self.max_requests_per_s, self.max_rows_per_s
        )
        .replace("batch loop", "batch sweep")
    }
}

/// The knee and failure point of every server's every sweep.
pub(super) fn findings(steps: &[StressStep], slo: &Slo) -> Vec<Finding> {
    let mut groups: Vec<(&str, &'static str)> = Vec::new();
    for step in steps {
        if !groups.contains(&(step.server.as_str(), step.mode)) {
            groups.push((step.server.as_str(), step.mode));
        }
    }
    groups
        .into_iter()
        .map(|(server, mode)| {
            let sweep: Vec<&StressStep> = steps
                .iter()
                .filter(|s| s.server == server && s.mode == mode)
                .collect();
            // Rows/s for batch sweeps, requests/s otherwise.
            let throughput = |s: &StressStep| {
                if mode == "batch" {
                    s.rows_per_s
                } else {
                    s.requests_per_s
                }
            };
            let knee = sweep
                .windows(2)
                .find(|pair| throughput(pair[1]) < 1.1 * throughput(pair[0]))
                .map(|pair| pair[0].level);
            let failed = sweep.iter().find(|s| !s.within(slo));
            Finding {
                server: server.to_owned(),
                mode,
                knee,
                failure_point: failed.map(|s| s.level),
                failure: failed.map(|s| {
                    if let Some(growth) = s.backlog_growth_per_s {
                        format!(
                            "backlog +{growth:.0} records/s, {:.0} waiting",
                            s.backlog.unwrap_or(0.0)
                        )
                    } else if s.error_rate > slo.max_error_rate {
                        format!(
                            "{:.1}% errors > {:.1}%",
                            s.error_rate * 100.0,
                            slo.max_error_rate * 100.0
                        )
                    } else {
                        format!("p99 {:.1} ms > {} ms", s.p99_ms, slo.p99_ms)
                    }
                }),
                max_requests_per_s: sweep.iter().map(|s| s.requests_per_s).fold(0.0, f64::max),
                max_rows_per_s: sweep.iter().map(|s| s.rows_per_s).fold(0.0, f64::max),
            }
        })
        .collect()
}

/// Logs every step as metrics with steps (one series per server and sweep), the findings as
/// metrics, and the charts.
pub(super) fn log(
    run: &ActiveRun,
    steps: &[StressStep],
    findings: &[Finding],
) -> Result<(), JobError> {
    for finding in findings {
        let key = |what: &str| format!("stress.{}.{}.{what}", finding.server, finding.mode);
        let mut metrics = vec![
            (key("max_requests_per_s"), finding.max_requests_per_s),
            (key("max_rows_per_s"), finding.max_rows_per_s),
        ];
        if let Some(knee) = finding.knee {
            metrics.push((key("knee"), knee));
        }
        if let Some(point) = finding.failure_point {
            metrics.push((key("failure_point"), point));
        }
        let borrowed: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        run.log_metrics(&borrowed, 0)?;
        let sweep = steps
            .iter()
            .filter(|s| s.server == finding.server && s.mode == finding.mode);
        for (index, step) in sweep.enumerate() {
            let mut metrics = vec![
                (key("level"), step.level),
                (key("requests_per_s"), step.requests_per_s),
                (key("rows_per_s"), step.rows_per_s),
                (key("p50_ms"), step.p50_ms),
                (key("p90_ms"), step.p90_ms),
                (key("p99_ms"), step.p99_ms),
                (key("max_ms"), step.max_ms),
                (key("error_rate"), step.error_rate),
            ];
            if let Some(rss) = step.rss_mb {
                metrics.push((key("rss_mb"), rss));
            }
            if let Some(backlog) = step.backlog {
                metrics.push((key("backlog"), backlog));
            }
            if let Some(growth) = step.backlog_growth_per_s {
                metrics.push((key("backlog_growth_per_s"), growth));
            }
            let borrowed: Vec<(&str, f64)> = metrics
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| (k.as_str(), *v))
                .collect();
            run.log_metrics(&borrowed, index as i64)?;
        }
    }
    for (path, png) in charts(steps)? {
        run.tracking().log_artifact(run.id(), &path, &png)?;
    }
    Ok(())
}

/// A chart of one sweep: the sweep, the artifact path, the y axis and the value drawn.
type Chart = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StressStep) -> f64,
);

/// Per sweep, one chart with a line per server: requests/s against clients (closed), p99
/// against offered rate (open), rows/s against rows per request (batch).
pub(super) fn charts(steps: &[StressStep]) -> Result<Vec<(String, Vec<u8>)>, JobError> {
    let mut charts = Vec::new();
    let sweeps: [Chart; 6] = [
        (
            "closed",
            "plots/stress_closed_loop.png",
            "requests/s",
            |s| s.requests_per_s,
        ),
        (
            "closed",
            "plots/stress_closed_loop_p99.png",
            "p99 latency (ms)",
            |s| s.p99_ms,
        ),
        (
            "open",
            "plots/stress_open_loop_p99.png",
            "p99 latency (ms)",
            |s| s.p99_ms,
        ),
        ("batch", "plots/stress_batches.png", "rows/s", |s| {
            s.rows_per_s
        }),
        (
            "kafka",
            "plots/stress_kafka.png",
            "records/s answered",
            |s| s.requests_per_s,
        ),
        (
            "kafka",
            "plots/stress_kafka_backlog.png",
            "backlog growth (records/s)",
            |s| s.backlog_growth_per_s.unwrap_or(f64::NAN),
        ),
    ];
    for (mode, path, y_label, value) in sweeps {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for step in steps.iter().filter(|s| s.mode == mode) {
            let point = (step.level.log2(), value(step));
            match series.iter_mut().find(|(name, _)| *name == step.server) {
                Some((_, points)) => points.push(point),
                None => series.push((step.server.clone(), vec![point])),
            }
        }
        if series.is_empty() {
            continue;
        }
        charts.push((
            path.to_owned(),
            plots::lines(
                &format!("{y_label} against {} ({mode} loop)", unit(mode)),
                &format!("log2 of {}", unit(mode)),
                y_label,
                &series,
            )?,
        ));
    }
    Ok(charts)
}

/// The steps as a table, one row each.
pub(super) fn table(steps: &[StressStep]) -> Result<RecordBatch, JobError> {
    let number = |f: &dyn Fn(&StressStep) -> Option<f64>| -> ArrayRef {
        Arc::new(steps.iter().map(f).collect::<Float64Array>())
    };
    let fields = vec![
        Field::new("server", DataType::Utf8, false),
        Field::new("sweep", DataType::Utf8, false),
        Field::new("level", DataType::Float64, false),
        Field::new("rows_per_request", DataType::UInt64, false),
        Field::new("requests_per_s", DataType::Float64, false),
        Field::new("rows_per_s", DataType::Float64, false),
        Field::new("p50_ms", DataType::Float64, true),
        Field::new("p90_ms", DataType::Float64, true),
        Field::new("p99_ms", DataType::Float64, true),
        Field::new("max_ms", DataType::Float64, true),
        Field::new("ok", DataType::UInt64, false),
        Field::new("errors", DataType::UInt64, false),
        Field::new("error_rate", DataType::Float64, false),
        Field::new("rss_mb", DataType::Float64, true),
        Field::new("backlog", DataType::Float64, true),
        Field::new("backlog_growth_per_s", DataType::Float64, true),
    ];
    let finite = |value: f64| value.is_finite().then_some(value);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            steps
                .iter()
                .map(|s| Some(s.server.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(steps.iter().map(|s| Some(s.mode)).collect::<StringArray>()),
        number(&|s| Some(s.level)),
        Arc::new(UInt64Array::from_iter_values(
            steps.iter().map(|s| s.rows as u64),
        )),
        number(&|s| Some(s.requests_per_s)),
        number(&|s| Some(s.rows_per_s)),
        number(&|s| finite(s.p50_ms)),
        number(&|s| finite(s.p90_ms)),
        number(&|s| finite(s.p99_ms)),
        number(&|s| finite(s.max_ms)),
        Arc::new(UInt64Array::from_iter_values(steps.iter().map(|s| s.ok))),
        Arc::new(UInt64Array::from_iter_values(
            steps.iter().map(|s| s.errors),
        )),
        number(&|s| Some(s.error_rate)),
        number(&|s| s.rss_mb),
        number(&|s| s.backlog),
        number(&|s| s.backlog_growth_per_s),
    ];
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|source| JobError::Table {
        action: "build the stress table".to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(
        server: &str,
        level: f64,
        requests_per_s: f64,
        p99_ms: f64,
        error_rate: f64,
    ) -> StressStep {
        StressStep {
            server: server.to_owned(),
            mode: "closed",
            level,
            rows: 1,
            requests_per_s,
            rows_per_s: requests_per_s,
            p50_ms: p99_ms / 2.0,
            p90_ms: p99_ms,
            p99_ms,
            max_ms: p99_ms,
            ok: 100,
            errors: 0,
            error_rate,
            rss_mb: None,
            backlog: None,
            backlog_growth_per_s: None,
        }
    }

    #[test]
    fn the_knee_is_where_throughput_stops_rising_and_the_slo_sets_the_failure_point() {
        let slo = Slo {
            p99_ms: 50.0,
            max_error_rate: 0.01,
        };
        let steps = [
            step("a", 1.0, 1000.0, 2.0, 0.0),
            step("a", 2.0, 1900.0, 3.0, 0.0),
            step("a", 4.0, 2000.0, 20.0, 0.0),
            step("a", 8.0, 2050.0, 60.0, 0.0),
            step("b", 1.0, 100.0, 10.0, 0.0),
            step("b", 2.0, 200.0, 10.0, 0.05),
        ];
        let found = findings(&steps, &slo);
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].knee, found[0].failure_point),
            (Some(2.0), Some(8.0))
        );
        assert_eq!(found[0].failure.as_deref(), Some("p99 60.0 ms > 50 ms"));
        assert_eq!(found[0].max_requests_per_s, 2050.0);
        assert_eq!((found[1].knee, found[1].failure_point), (None, Some(2.0)));
        assert_eq!(found[1].failure.as_deref(), Some("5.0% errors > 1.0%"));
        assert!(
            found[1]
                .line()
                .contains("still rising at the largest clients tried")
        );
        let table = table(&steps).unwrap();
        assert_eq!(table.num_rows(), 6);
    }
}
