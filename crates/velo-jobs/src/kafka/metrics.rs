//! The Kafka job's Prometheus metrics, and the server that exposes them.

use std::sync::Arc;

use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};

use crate::{
    JobError,
    scoring::metrics::{self as exposition, Exporter},
};

/// Serves `/metrics`, `/health` (liveness: the process answers) and `/ready` (readiness: it
/// owns partitions of the input topic; 503 while it joins the group or has none) on `address`
/// until the returned task is aborted.
pub(super) async fn serve_metrics(
    address: &str,
    metrics: Arc<StreamMetrics>,
) -> Result<tokio::task::JoinHandle<()>, JobError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| JobError::Runtime {
            action: format!("serve metrics on {address}"),
            source: Box::new(error),
        })?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(address = %bound, "serving Prometheus metrics at /metrics");
    }
    let assigned = Arc::clone(&metrics.assigned);
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let metrics = Arc::clone(&metrics);
                async move {
                    let accept = headers
                        .get(axum::http::header::ACCEPT)
                        .and_then(|value| value.to_str().ok());
                    let (kind, text) = metrics.negotiate(accept);
                    ([(axum::http::header::CONTENT_TYPE, kind)], text)
                }
            }),
        )
        .route("/health", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/ready",
            axum::routing::get(move || {
                let partitions = assigned.load(std::sync::atomic::Ordering::SeqCst);
                async move {
                    if partitions > 0 {
                        (
                            axum::http::StatusCode::OK,
                            format!("ready: {partitions} partitions assigned\n"),
                        )
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: no partition assigned (joining the group, or rebalancing)\n"
                                .to_owned(),
                        )
                    }
                }
            }),
        );
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the metrics server stopped");
        }
    }))
}

/// The Prometheus metrics of a stream.
#[derive(Debug)]
pub(super) struct StreamMetrics {
    pub(super) exporter: Exporter,
    pub(super) records_in: Counter,
    pub(super) records_out: Counter,
    pub(super) dead_letters: Counter,
    pub(super) batch_seconds: Histogram,
    pub(super) lag: Gauge,
    pub(super) version: Gauge,
    /// The input partitions this worker owns now (kept by the group context).
    pub(super) assigned: Arc<std::sync::atomic::AtomicI64>,
    assigned_gauge: Gauge,
}

impl StreamMetrics {
    pub(super) fn new() -> Self {
        let mut exporter = Exporter::new("velo_kafka");
        let records_in = exporter.counter("records_in", "Input records consumed");
        let records_out = exporter.counter("records_out", "Predictions produced");
        let dead_letters =
            exporter.counter("dead_letters", "Records sent to the dead-letter topic");
        // 1 ms to about 16 s, doubling.
        let batch_seconds = exporter.histogram(
            "batch_duration_seconds",
            "From a batch's first record to its commit",
            (0.001, 2.0, 15),
        );
        let lag = exporter.gauge(
            "consumer_lag",
            "Records behind the end of the assigned partitions",
        );
        let version = exporter.gauge("model_version", "The registered version scoring the stream");
        let assigned_gauge = exporter.gauge(
            "assigned_partitions",
            "Input partitions this worker owns in its consumer group",
        );
        Self {
            assigned: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            assigned_gauge,
            exporter,
            records_in,
            records_out,
            dead_letters,
            batch_seconds,
            lag,
            version,
        }
    }

    /// Adds `change` to the partitions this worker owns (negative on a revocation).
    pub(super) fn assign(&self, change: i64) {
        let now = self
            .assigned
            .fetch_add(change, std::sync::atomic::Ordering::SeqCst)
            + change;
        self.assigned_gauge.set(now.max(0));
    }

    pub(super) fn set_version(&self, version: &str) {
        exposition::set_version(&self.version, version);
    }

    /// The exposition a scrape's `Accept` header asks for (see [`Exporter::negotiate`]).
    pub(super) fn negotiate(&self, accept: Option<&str>) -> (&'static str, String) {
        self.exporter.negotiate(accept)
    }
}
