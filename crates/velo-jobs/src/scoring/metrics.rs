//! The Prometheus registry the scoring transports expose at `/metrics`.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};

/// The media type of the exposition [`Exporter::encode`] writes.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// Sets a model-version gauge from a registry version string (-1 when it is not a number).
pub(crate) fn set_version(gauge: &Gauge, version: &str) {
    gauge.set(version.parse::<i64>().unwrap_or(-1));
}
