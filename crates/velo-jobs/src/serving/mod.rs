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
//! A [`Scorer`] holds the model a [`ModelUri`] names; [`Scorer::refresh`] resolves the URI
//! again and swaps in a new version between requests (an alias that moved), which [`serve`]
//! does on an interval. Requests in flight finish with the model they started with.
//!
//! Available with the `serve` feature.

pub mod protocol;
pub(crate) mod records;

use std::{
    future::Future,
    sync::{Arc, RwLock},
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
    registry::Registry,
};
use velo_core::{models::Model, schemas::Schema};
use velo_io::registries::{ModelRegistry, ModelUri, ModelVersion};

use crate::{JobError, common::load_model_uri};
use protocol::{MediaType, ScoringError};

/// A loaded model version and the schema its inputs are validated against.
#[derive(Debug)]
pub struct LoadedModel {
    /// The registered version.
    pub version: ModelVersion,
    model: Box<dyn Model>,
    /// The model's inputs schema, with columns it does not name ignored.
    schema: Schema,
    /// The schema's index column (optional in requests).
    index: Option<String>,
    /// The columns one-record-per-message streams read (the schema's, then the index).
    records: records::RecordColumns,
}

impl LoadedModel {
    fn new(version: ModelVersion, model: Box<dyn Model>) -> Self {
        let mut schema = model.inputs_schema().clone();
        schema.strict = false;
        schema.extra_columns = None;
        // The index is never a feature: requests need not carry it (pandas sends it apart).
        let index = schema.index.take();
        if let Some(index) = &index {
            schema.columns.retain(|column| &column.name != index);
        }
        let records = records::RecordColumns::new(
            schema
                .columns
                .iter()
                .map(|column| column.name.clone())
                .collect(),
            index.as_deref(),
        );
        Self {
            version,
            model,
            schema,
            index,
            records,
        }
    }

    /// The columns read from each JSON record by the fast path of [`records`].
    pub(crate) fn record_columns(&self) -> &records::RecordColumns {
        &self.records
    }

    /// The name of the schema's index column, if it has one.
    pub fn index_column(&self) -> Option<&str> {
        self.index.as_deref()
    }

    /// Validates `batch` against the inputs schema and predicts it.
    ///
    /// # Errors
    /// [`ScoringError::BadRequest`] with the schema's violations (column, rows, rule) or the
    /// model's refusal.
    pub fn predict(&self, batch: &arrow::array::RecordBatch) -> Result<Vec<f64>, ScoringError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let valid = self.schema.validate(batch).map_err(|error| {
            ScoringError::BadRequest(format!("the inputs break the model's schema: {error}"))
        })?;
        self.model.predict(&valid).map_err(|error| {
            ScoringError::BadRequest(format!("the model cannot predict these inputs: {error}"))
        })
    }
}

/// Serves the model a URI names, and follows it when it moves.
#[derive(Debug)]
pub struct Scorer {
    registry: Arc<dyn ModelRegistry>,
    uri: ModelUri,
    current: RwLock<Arc<LoadedModel>>,
    metrics: Metrics,
}

impl Scorer {
    /// Loads the version `uri` names in `registry`.
    ///
    /// # Errors
    /// An unknown model, alias or version, or a model file that does not load.
    pub fn load(registry: Arc<dyn ModelRegistry>, uri: ModelUri) -> Result<Self, JobError> {
        let (version, model) = load_model_uri(registry.as_ref(), &uri)?;
        let metrics = Metrics::new();
        metrics.set_version(&version);
        Ok(Self {
            registry,
            uri,
            current: RwLock::new(Arc::new(LoadedModel::new(version, model))),
            metrics,
        })
    }

    /// The model version answering requests now.
    pub fn current(&self) -> Arc<LoadedModel> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The URI this scorer follows.
    pub fn uri(&self) -> &ModelUri {
        &self.uri
    }

    /// Resolves the URI again; when it names another version, loads that one and swaps it in.
    /// Returns the new version when it swapped.
    ///
    /// # Errors
    /// The registry cannot be read or the new version does not load; the current model stays.
    pub fn refresh(&self) -> Result<Option<ModelVersion>, JobError> {
        let resolved = self.uri.resolve(self.registry.as_ref())?;
        if resolved.version == self.current().version.version {
            return Ok(None);
        }
        let (version, model) = load_model_uri(self.registry.as_ref(), &self.uri)?;
        let loaded = Arc::new(LoadedModel::new(version.clone(), model));
        match self.current.write() {
            Ok(mut current) => *current = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        self.metrics.set_version(&version);
        self.metrics.swaps.inc();
        Ok(Some(version))
    }

    /// Scores one request body: `{"predictions": [...]}` or the error to answer.
    ///
    /// # Errors
    /// [`ScoringError`]: a media type other than JSON or CSV, a malformed body, inputs the
    /// schema refuses.
    pub fn score(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(Arc<LoadedModel>, Vec<f64>), ScoringError> {
        let media = MediaType::parse(content_type)?;
        let batch = protocol::read_body(media, body)?;
        let model = self.current();
        let predictions = model.predict(&batch)?;
        Ok((model, predictions))
    }

    /// The Prometheus text exposition of the server's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}

/// How [`serve`] runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How often the registry is asked whether the URI names another version (`None`: never;
    /// a URI naming a fixed version never moves).
    pub poll_interval: Option<Duration>,
    /// The largest request body accepted, in bytes (larger ones answer 413).
    pub max_body_bytes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            poll_interval: Some(Duration::from_secs(10)),
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Bodies at least this large are scored on the blocking pool, smaller ones on the request's
/// own task (a thread hop costs more than predicting a few rows).
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// The routes of the scoring server for `scorer`.
pub fn router(scorer: Arc<Scorer>, options: &ServeOptions) -> Router {
    Router::new()
        .route("/invocations", post(invocations))
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(scorer)
}

/// Serves `scorer` on `listener` until `shutdown` completes, then lets requests in flight
/// finish. With a poll interval, the URI is resolved again on that interval and a moved alias
/// swaps the model.
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
    let poller = match options.poll_interval {
        Some(interval) if follows => Some(tokio::spawn(poll(Arc::clone(&scorer), interval))),
        _ => None,
    };
    let app = router(scorer, &options);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(poller) = poller {
        poller.abort();
    }
    result
}

async fn poll(scorer: Arc<Scorer>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let scorer = Arc::clone(&scorer);
        match tokio::task::spawn_blocking(move || scorer.refresh()).await {
            Ok(Ok(Some(version))) => tracing::info!(
                model = %version.name,
                version = %version.version,
                "serving a new model version"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot refresh the model; the current one stays");
            }
            Err(error) => tracing::warn!(%error, "the model refresh task failed"),
        }
    }
}

async fn invocations(
    State(scorer): State<Arc<Scorer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let start = Instant::now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let result = if body.len() < INLINE_BODY_BYTES {
        scorer.score(content_type.as_deref(), &body)
    } else {
        let task = Arc::clone(&scorer);
        match tokio::task::spawn_blocking(move || task.score(content_type.as_deref(), &body)).await
        {
            Ok(result) => result,
            Err(error) => {
                tracing::error!(%error, "a scoring task failed");
                let response =
                    (StatusCode::INTERNAL_SERVER_ERROR, "scoring failed").into_response();
                scorer.metrics.observe(500, 0, start);
                return response;
            }
        }
    };
    let (status, rows, response) = match result {
        Ok((model, predictions)) => {
            let mut response = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                protocol::predictions_json(&predictions),
            )
                .into_response();
            let headers = response.headers_mut();
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
    scorer.metrics.observe(status, rows, start);
    response
}

async fn ping() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], "\n")
}

async fn version() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        env!("CARGO_PKG_VERSION"),
    )
}

async fn metrics(State(scorer): State<Arc<Scorer>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        scorer.metrics_text(),
    )
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// The server's Prometheus metrics.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    requests: Family<StatusLabel, Counter>,
    rows: Counter,
    latency: Histogram,
    version: Gauge,
    swaps: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("velo_serve");
        let requests = Family::<StatusLabel, Counter>::default();
        registry.register(
            "requests",
            "Scoring requests, by HTTP status",
            requests.clone(),
        );
        let rows = Counter::default();
        registry.register("rows", "Rows predicted", rows.clone());
        // 50 µs to about 3 s, doubling.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_05, 2.0, 16,
        ));
        registry.register(
            "request_duration_seconds",
            "Time to answer a scoring request",
            latency.clone(),
        );
        let version = Gauge::default();
        registry.register(
            "model_version",
            "The registered version being served",
            version.clone(),
        );
        let swaps = Counter::default();
        registry.register(
            "model_swaps",
            "Times a new model version was swapped in",
            swaps.clone(),
        );
        Self {
            registry,
            requests,
            rows,
            latency,
            version,
            swaps,
        }
    }

    fn set_version(&self, version: &ModelVersion) {
        self.version
            .set(version.version.parse::<i64>().unwrap_or(-1));
    }

    fn observe(&self, status: u16, rows: usize, start: Instant) {
        self.requests.get_or_create(&StatusLabel { status }).inc();
        self.rows.inc_by(rows as u64);
        self.latency.observe(start.elapsed().as_secs_f64());
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "cannot encode the metrics");
        }
        text
    }
}
