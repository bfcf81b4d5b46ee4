//! The HTTP scoring server (`velo serve`), speaking MLflow's scoring protocol.
//!
//! `POST /invocations` takes the JSON and CSV payloads of MLflow's scoring server
//! ([`protocol`]) and answers `{"predictions": [...]}`; `GET /ping` and `GET /health` answer
//! 200 once a model is loaded; `GET /version` gives velo's version; `GET /metrics` exposes
//! Prometheus metrics. Inputs are validated against the model's inputs schema (columns the
//! schema does not name are ignored, as MLflow does, and the schema's index column, never a
//! feature, is optional); a violation answers 400 with MLflow's error body naming the column,
//! the rows and the rule.
//!
//! The model, its validation and the payload parsing are the [`scoring`](crate::scoring)
//! module's, shared with the Kafka job: a [`Scorer`] holds the model a [`ModelUri`] names, and
//! [`serve`] asks it on an interval to resolve the URI again and swap in a new version between
//! requests (an alias that moved). Requests in flight finish with the model they started
//! with. This module keeps the HTTP transport and its metrics.
//!
//! Available with the `serve` feature.

use std::{
    future::Future,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};
use velo_io::{
    prediction_logs::{PredictionLog, PredictionLogConfig, RequestIds as LogIds, Scored},
    registries::ModelUri,
};

use crate::scoring::{
    Scorer,
    live::{self, Recent},
    metrics::{self as exposition, Exporter},
    protocol::{self, ScoringError},
};

/// What the handlers share: the scorer, the server's metrics, and the permits of large
/// bodies being parsed at once.
#[derive(Debug)]
struct Server {
    scorer: Arc<Scorer>,
    metrics: Metrics,
    parsing: tokio::sync::Semaphore,
    /// Where scored requests are logged, when they are.
    log: Option<PredictionLog>,
    /// Numbers the requests that come without an `x-request-id`.
    requests: RequestIds,
    /// The latest scored rows, for live drift (with `drift_rows`).
    recent: Option<Recent>,
    /// A model scoring every request in the shadow of the served one (its answers are logged
    /// and measured, never returned).
    shadow: Option<Arc<Scorer>>,
}

/// Ids of requests that bring none: this process's start and a counter.
#[derive(Debug)]
struct RequestIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros());
        Self {
            prefix: format!("{:x}-{:x}", started, std::process::id()),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The request's own id (`x-request-id`, when it is short plain text), else a new one.
    fn of(&self, headers: &HeaderMap) -> String {
        headers
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .map_or_else(
                || {
                    let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    format!("{}-{n}", self.prefix)
                },
                str::to_owned,
            )
    }
}

/// The header carrying a request's id, answered back (and logged with its predictions).
const REQUEST_ID: &str = "x-request-id";

/// How [`serve`] runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How often the registry is asked whether the URI names another version (`None`: never;
    /// a URI naming a fixed version never moves).
    pub poll_interval: Option<Duration>,
    /// The largest request body accepted, in bytes (larger ones answer 413).
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers; the connection is closed after.
    pub header_timeout: Duration,
    /// How long a request body may go without sending data; the request answers 408 after.
    pub body_timeout: Duration,
    /// The most connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// The most large bodies (16 KiB and more) parsed and scored at once; more wait their
    /// turn, so that memory is bounded by this many bodies, not by the number of clients.
    pub max_parsing: usize,
    /// Log every scored request (inputs, predictions, model, version, request id, time) to
    /// rolling Parquet files, without ever waiting on the disk.
    pub prediction_log: Option<PredictionLogConfig>,
    /// Measure the drift of about this many latest scored rows against the served version's
    /// training profile whenever `/metrics` is read (0: never).
    pub drift_rows: usize,
    /// A model (a challenger) that scores every request too, in the shadow: its predictions
    /// go to the prediction log and the disagreement metrics, never to the client. Followed
    /// on the poll interval like the served model.
    pub shadow: Option<Arc<Scorer>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            poll_interval: Some(Duration::from_secs(10)),
            max_body_bytes: 64 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_parsing: std::thread::available_parallelism().map_or(2, usize::from),
            prediction_log: None,
            drift_rows: 0,
            shadow: None,
        }
    }
}

/// Bodies at least this large are scored on the blocking pool, smaller ones on the request's
/// own task (a thread hop costs more than predicting a few rows).
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// The routes of the scoring server for `scorer`.
pub fn router(scorer: Arc<Scorer>, options: &ServeOptions) -> Router {
    router_with(Arc::new(Server::new(scorer, options)), options)
}

fn router_with(server: Arc<Server>, options: &ServeOptions) -> Router {
    Router::new()
        .route("/invocations", post(invocations))
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/ready", get(ready))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            options.body_timeout,
        ))
        .with_state(server)
}

impl Server {
    fn new(scorer: Arc<Scorer>, options: &ServeOptions) -> Self {
        let metrics = Metrics::new();
        exposition::set_version(&metrics.version, &scorer.current().version.version);
        let log = options.prediction_log.clone().and_then(|config| {
            let dir = config.dir.clone();
            PredictionLog::start(config)
                .inspect_err(|error| {
                    tracing::error!(dir = %dir.display(), %error, "cannot log predictions");
                })
                .ok()
        });
        Self {
            scorer,
            metrics,
            parsing: tokio::sync::Semaphore::new(options.max_parsing.max(1)),
            log,
            requests: RequestIds::new(),
            recent: (options.drift_rows > 0).then(|| Recent::new(options.drift_rows)),
            shadow: options.shadow.clone(),
        }
    }
}

/// Serves `scorer` on `listener` until `shutdown` completes, then lets requests in flight
/// finish. With a poll interval, the URI is resolved again on that interval and a moved alias
/// swaps the model.
///
/// Slow or stalled clients are bounded: headers must arrive within `header_timeout`, a body
/// may pause at most `body_timeout` (408), and at most `max_connections` are served at once
/// (further ones wait in the listen queue).
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    scorer: Arc<Scorer>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let follows = !matches!(scorer.uri(), ModelUri::Version { .. });
    let server = Arc::new(Server::new(scorer, &options));
    let poller = match options.poll_interval {
        Some(interval) if follows => Some(tokio::spawn(poll(Arc::clone(&server), interval))),
        _ => None,
    };
    let app = router_with(server, &options);
    let result = accept_loop(listener, app, &options, shutdown).await;
    if let Some(poller) = poller {
        poller.abort();
    }
    result
}

/// Accepts connections until `shutdown`, each served on its own task by hyper's HTTP/1.1
/// connection with a header read timeout, at most `max_connections` at a time; then waits
/// for the connections in flight to finish their requests.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limit = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(options.header_timeout);
        // No upgrades: the scoring protocol is plain request and response.
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn poll(server: Arc<Server>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let scorer = Arc::clone(&server.scorer);
        match tokio::task::spawn_blocking(move || scorer.refresh()).await {
            Ok(Ok(Some(version))) => {
                exposition::set_version(&server.metrics.version, &version.version);
                server.metrics.swaps.inc();
                tracing::info!(
                    model = %version.name,
                    version = %version.version,
                    "serving a new model version"
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot refresh the model; the current one stays");
            }
            Err(error) => tracing::warn!(%error, "the model refresh task failed"),
        }
        if let Some(shadow) = server.shadow.as_ref().map(Arc::clone) {
            match tokio::task::spawn_blocking(move || shadow.refresh()).await {
                Ok(Ok(Some(version))) => tracing::info!(
                    version = %version.version,
                    "shadowing with a new model version"
                ),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot refresh the shadow model; the current one stays");
                }
                Err(error) => tracing::warn!(%error, "the shadow refresh task failed"),
            }
        }
    }
}

async fn invocations(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let scorer = &server.scorer;
    let start = Instant::now();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            // A body that stalled past the body timeout answers 408; a too large one 413.
            let response = if timed_out(&rejection) {
                (
                    StatusCode::REQUEST_TIMEOUT,
                    [(header::CONNECTION, "close")],
                    "the request body stalled past the server's body timeout",
                )
                    .into_response()
            } else {
                rejection.into_response()
            };
            server.metrics.observe(response.status().as_u16(), 0, start);
            return response;
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let result = if body.len() < INLINE_BODY_BYTES {
        scorer.score_inputs(content_type.as_deref(), &body)
    } else {
        // Large bodies wait for a parsing permit: memory is bounded by max_parsing bodies.
        let Ok(_permit) = server.parsing.acquire().await else {
            return (StatusCode::SERVICE_UNAVAILABLE, "the server is stopping").into_response();
        };
        let task = Arc::clone(scorer);
        match tokio::task::spawn_blocking(move || task.score_inputs(content_type.as_deref(), &body))
            .await
        {
            Ok(result) => result,
            Err(error) => {
                tracing::error!(%error, "a scoring task failed");
                let response =
                    (StatusCode::INTERNAL_SERVER_ERROR, "scoring failed").into_response();
                server.metrics.observe(500, 0, start);
                return response;
            }
        }
    };
    let request_id = server.requests.of(&headers);
    let (status, rows, response) = match result {
        Ok(scored) => {
            let (model, predictions) = (scored.model, scored.predictions);
            let mut response = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                protocol::predictions_json(&predictions),
            )
                .into_response();
            if let Some(recent) = &server.recent {
                recent.push(&model.log_names().1, &scored.inputs, &predictions);
            }
            // The shadow model scores the same validated rows; its failures are counted, never
            // answered.
            let shadow = server.shadow.as_ref().and_then(|shadow| {
                let shadow_model = shadow.current();
                match shadow_model.predict_inputs(&scored.inputs) {
                    Ok((_, values)) => {
                        server.metrics.observe_shadow(&predictions, &values);
                        Some((values, shadow_model.log_names().1))
                    }
                    Err(error) => {
                        tracing::debug!(%error, "the shadow model refused a request");
                        server.metrics.shadow_errors.inc();
                        None
                    }
                }
            });
            if let Some(log) = &server.log {
                let mut entry = Scored::new(
                    scored.inputs,
                    predictions.clone(),
                    model.log_names(),
                    LogIds::Request(request_id.clone()),
                );
                if let Some((values, version)) = shadow {
                    entry = entry.with_shadow(values, version);
                }
                log.log(entry);
            }
            let headers = response.headers_mut();
            if let Ok(id) = HeaderValue::from_str(&request_id) {
                headers.insert(REQUEST_ID, id);
            }
            if let Ok(name) = HeaderValue::from_str(&model.version.name) {
                headers.insert("x-velo-model-name", name);
            }
            if let Ok(version) = HeaderValue::from_str(&model.version.version) {
                headers.insert("x-velo-model-version", version);
            }
            (200, predictions.len(), response)
        }
        Err(ScoringError::UnsupportedMediaType(message)) => (
            415,
            0,
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                [(header::CONTENT_TYPE, "text/plain")],
                message,
            )
                .into_response(),
        ),
        Err(ScoringError::BadRequest(message)) => (
            400,
            0,
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                protocol::error_json(&message),
            )
                .into_response(),
        ),
    };
    server.metrics.observe(status, rows, start);
    response
}

/// Whether a body error comes from the body timeout.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = error.source();
    }
    false
}

async fn ping() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], "\n")
}

/// Readiness, apart from liveness (`/health`): the model that answers requests now. A server
/// listens only once its model is loaded, and keeps serving the old version while a moved
/// alias loads, so it is ready whenever it answers; the body says with what.
async fn ready(State(server): State<Arc<Server>>) -> impl IntoResponse {
    let model = server.scorer.current();
    let body = serde_json::json!({
        "ready": true,
        "model": model.version.name,
        "version": model.version.version,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn version() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        env!("CARGO_PKG_VERSION"),
    )
}

async fn metrics(
    State(server): State<Arc<Server>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    if let Some(recent) = &server.recent {
        let model = server.scorer.current();
        if let (Some(reference), Some((inputs, predictions))) =
            (model.reference(), recent.snapshot(&model.version.version))
        {
            let measured = live::measure(reference, &inputs, &predictions);
            server.metrics.record_drift(&measured);
        }
    }
    if let Some(log) = &server.log {
        let count = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        server.metrics.logged.set(count(log.logged_rows()));
        server.metrics.dropped.set(count(log.dropped_rows()));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let (kind, text) = server.metrics.exporter.negotiate(accept);
    ([(header::CONTENT_TYPE, kind)], text)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// The server's Prometheus metrics.
#[derive(Debug)]
struct Metrics {
    exporter: Exporter,
    requests: Family<StatusLabel, Counter>,
    rows: Counter,
    latency: Histogram,
    version: Gauge,
    swaps: Counter,
    logged: Gauge,
    dropped: Gauge,
    feature_drift: Family<ColumnLabel, Gauge<f64, AtomicU64>>,
    feature_drifted: Family<ColumnLabel, Gauge>,
    drift_share: Gauge<f64, AtomicU64>,
    prediction_drift: Gauge<f64, AtomicU64>,
    estimated_error: Gauge<f64, AtomicU64>,
    drift_rows: Gauge,
    shadow_rows: Counter,
    shadow_errors: Counter,
    shadow_difference: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ColumnLabel {
    column: String,
}

impl Metrics {
    fn new() -> Self {
        let mut exporter = Exporter::new("velo_serve");
        let requests = exporter.register(
            "requests",
            "Scoring requests, by HTTP status",
            Family::<StatusLabel, Counter>::default(),
        );
        let rows = exporter.counter("rows", "Rows predicted");
        // 50 µs to about 3 s, doubling.
        let latency = exporter.histogram(
            "request_duration_seconds",
            "Time to answer a scoring request",
            (0.000_05, 2.0, 16),
        );
        let version = exporter.gauge("model_version", "The registered version being served");
        let swaps = exporter.counter("model_swaps", "Times a new model version was swapped in");
        let logged = exporter.gauge(
            "prediction_log_rows",
            "Scored rows written to the prediction log",
        );
        let dropped = exporter.gauge(
            "prediction_log_dropped_rows",
            "Scored rows the prediction log dropped (queue full or file not written)",
        );
        let feature_drift = exporter.register(
            "feature_drift",
            "Drift score of each input column over the latest rows (p-value or distance)",
            Family::<ColumnLabel, Gauge<f64, AtomicU64>>::default(),
        );
        let feature_drifted = exporter.register(
            "feature_drifted",
            "Whether each input column drifted over the latest rows (1) or not (0)",
            Family::<ColumnLabel, Gauge>::default(),
        );
        let drift_share = exporter.register(
            "drift_share",
            "Share of input columns that drifted over the latest rows",
            Gauge::<f64, AtomicU64>::default(),
        );
        let prediction_drift = exporter.register(
            "prediction_drift",
            "Drift score of the predictions over the latest rows",
            Gauge::<f64, AtomicU64>::default(),
        );
        let estimated_error = exporter.register(
            "estimated_error",
            "Root mean squared error the loss estimator expects over the latest rows",
            Gauge::<f64, AtomicU64>::default(),
        );
        let drift_rows = exporter.gauge("drift_rows", "Latest rows the drift gauges measure");
        let shadow_rows = exporter.counter("shadow_rows", "Rows the shadow model scored");
        let shadow_errors = exporter.counter(
            "shadow_errors",
            "Requests the shadow model refused (the client got the served model's answer)",
        );
        // 0.01 to about 650, quadrupling: how far the shadow's predictions are from the served.
        let shadow_difference = exporter.histogram(
            "shadow_absolute_difference",
            "Absolute difference between the shadow's and the served model's predictions",
            (0.01, 4.0, 9),
        );
        Self {
            exporter,
            requests,
            rows,
            latency,
            version,
            swaps,
            logged,
            dropped,
            feature_drift,
            feature_drifted,
            drift_share,
            prediction_drift,
            estimated_error,
            drift_rows,
            shadow_rows,
            shadow_errors,
            shadow_difference,
        }
    }

    /// Counts a request the shadow model scored, and how far its predictions were.
    fn observe_shadow(&self, served: &[f64], shadow: &[f64]) {
        self.shadow_rows.inc_by(shadow.len() as u64);
        for (a, b) in served.iter().zip(shadow) {
            self.shadow_difference.observe((a - b).abs());
        }
    }

    /// Sets the drift gauges to a measurement of the latest rows.
    fn record_drift(&self, measured: &live::LiveDrift) {
        for (column, score, drifted) in &measured.columns {
            let label = ColumnLabel {
                column: column.clone(),
            };
            self.feature_drift.get_or_create(&label).set(*score);
            self.feature_drifted
                .get_or_create(&label)
                .set(i64::from(*drifted));
        }
        self.drift_share.set(measured.share);
        if let Some(score) = measured.prediction {
            self.prediction_drift.set(score);
        }
        if let Some(error) = measured.estimated {
            self.estimated_error.set(error);
        }
        self.drift_rows
            .set(i64::try_from(measured.rows).unwrap_or(i64::MAX));
    }

    fn observe(&self, status: u16, rows: usize, start: Instant) {
        self.requests.get_or_create(&StatusLabel { status }).inc();
        self.rows.inc_by(rows as u64);
        self.latency.observe(start.elapsed().as_secs_f64());
    }
}
