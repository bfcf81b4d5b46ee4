//! Scoring shared by the transports: a loaded model and the schema its inputs are checked
//! against, the [`Scorer`] that follows a model URI and swaps in a moved alias's version, the
//! request payloads of MLflow's scoring protocol ([`protocol`]) and the fast parsing of
//! one-record messages (`records`).
//!
//! The HTTP server ([`serving`](crate::serving)) and the Kafka job ([`kafka`](crate::kafka))
//! keep only their transport and their own metrics; `metrics` is the Prometheus registry
//! both expose.
//!
//! Available with the `serve` feature.

pub(crate) mod live;
pub(crate) mod metrics;
pub mod protocol;
pub(crate) mod records;

use std::sync::{Arc, RwLock};

use velo_core::schemas::Schema;
use velo_io::registries::{ModelRegistry, ModelUri, ModelVersion};
use velo_models::Model;

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
    /// The version's name and number, shared by every prediction log row.
    names: (Arc<str>, Arc<str>),
    /// The profile of the version's training data and its loss estimator, when it has them.
    reference: Option<live::Reference>,
}

impl LoadedModel {
    fn new(
        version: ModelVersion,
        model: Box<dyn Model>,
        reference: Option<live::Reference>,
    ) -> Self {
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
        let names = (
            Arc::from(version.name.as_str()),
            Arc::from(version.version.as_str()),
        );
        Self {
            version,
            model,
            schema,
            index,
            records,
            names,
            reference,
        }
    }

    /// The profile of the version's training data and its loss estimator, when it has them.
    pub(crate) fn reference(&self) -> Option<&live::Reference> {
        self.reference.as_ref()
    }

    /// The version's name and number, as prediction logs record them.
    pub fn log_names(&self) -> (Arc<str>, Arc<str>) {
        (Arc::clone(&self.names.0), Arc::clone(&self.names.1))
    }

    /// The columns read from each JSON record by the fast path of `records` (the Kafka
    /// job's).
    #[cfg(feature = "kafka")]
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
        self.predict_inputs(batch)
            .map(|(_, predictions)| predictions)
    }

    /// [`LoadedModel::predict`], also returning the inputs as the model read them (the
    /// schema's columns, in its order and types): what a prediction log records.
    ///
    /// # Errors
    /// As [`LoadedModel::predict`].
    pub fn predict_inputs(
        &self,
        batch: &arrow::array::RecordBatch,
    ) -> Result<(arrow::array::RecordBatch, Vec<f64>), ScoringError> {
        if batch.num_rows() == 0 {
            return Ok((batch.clone(), Vec::new()));
        }
        let valid = self.schema.validate(batch).map_err(|error| {
            ScoringError::BadRequest(format!("the inputs break the model's schema: {error}"))
        })?;
        let predictions = self.model.predict(&valid).map_err(|error| {
            ScoringError::BadRequest(format!("the model cannot predict these inputs: {error}"))
        })?;
        Ok((valid, predictions))
    }
}

/// Serves the model a URI names, and follows it when it moves.
#[derive(Debug)]
pub struct Scorer {
    registry: Arc<dyn ModelRegistry>,
    uri: ModelUri,
    current: RwLock<Arc<LoadedModel>>,
}

impl Scorer {
    /// Loads the version `uri` names in `registry`.
    ///
    /// # Errors
    /// An unknown model, alias or version, or a model file that does not load.
    pub fn load(registry: Arc<dyn ModelRegistry>, uri: ModelUri) -> Result<Self, JobError> {
        let (version, model) = load_model_uri(registry.as_ref(), &uri)?;
        let reference = live::Reference::load(registry.as_ref(), &version);
        Ok(Self {
            registry,
            uri,
            current: RwLock::new(Arc::new(LoadedModel::new(version, model, reference))),
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
        let reference = live::Reference::load(self.registry.as_ref(), &version);
        let loaded = Arc::new(LoadedModel::new(version.clone(), model, reference));
        match self.current.write() {
            Ok(mut current) => *current = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
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
        self.score_inputs(content_type, body)
            .map(|scored| (scored.model, scored.predictions))
    }

    /// [`Scorer::score`], also returning the inputs as the model read them.
    ///
    /// # Errors
    /// As [`Scorer::score`].
    pub fn score_inputs(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<ScoredRequest, ScoringError> {
        let media = MediaType::parse(content_type)?;
        let model = self.current();
        // Records requests are read straight into the model's columns (memory a small multiple
        // of the body); other shapes, and records the fast path declines, take the protocol's
        // reader.
        let fast = (media == MediaType::Json)
            .then(|| model.records.parse_request(body))
            .flatten()
            .and_then(|rows| {
                let rows: Vec<&records::Row<'_>> = rows.iter().collect();
                model.records.batch(&rows)
            });
        let batch = match fast {
            Some(batch) => batch,
            None => protocol::read_body(media, body)?,
        };
        let (inputs, predictions) = model.predict_inputs(&batch)?;
        Ok(ScoredRequest {
            model,
            inputs,
            predictions,
        })
    }
}

/// A scored request: the model that scored it, its validated inputs and their predictions.
#[derive(Debug)]
#[non_exhaustive]
pub struct ScoredRequest {
    /// The model version that scored it.
    pub model: Arc<LoadedModel>,
    /// The inputs as the model read them.
    pub inputs: arrow::array::RecordBatch,
    /// One prediction per row.
    pub predictions: Vec<f64>,
}

/// Fuzzing entry of the record parsers, not an API: reads `payload` as a one-record message
/// and as a records request over the columns `a`, `b` and `c` (index `id`), builds the
/// batches the fast path builds, and returns their rows. Used by `fuzz/`.
#[doc(hidden)]
pub fn fuzz_records(payload: &[u8]) -> usize {
    let columns = records::RecordColumns::new(vec!["a".into(), "b".into(), "c".into()], Some("id"));
    let mut rows = 0;
    if let Ok(row) = columns.parse(payload) {
        let _ = columns.index(&row);
        rows += columns.batch(&[&row]).map_or(0, |batch| batch.num_rows());
    }
    if let Some(request) = columns.parse_request(payload) {
        let refs: Vec<&records::Row<'_>> = request.iter().collect();
        rows += columns.batch(&refs).map_or(0, |batch| batch.num_rows());
    }
    rows
}
