//! Prediction logs: what a scoring process scored, written to rolling Parquet files by a
//! background thread that never holds scoring up.
//!
//! [`PredictionLog::log`] hands a scored batch to a bounded queue and returns at once; when the
//! queue is full (the disk is slower than the traffic) the batch is dropped and counted
//! ([`PredictionLog::dropped_rows`]), so that scoring never waits on logging. The writer thread
//! gathers batches and writes a file when it holds `max_rows_per_file` rows, when
//! `flush_interval` passed since its oldest row, when the inputs' columns change (another model
//! version), and when the log closes. Files land under `dir/date=YYYY-MM-DD/` (the UTC date of
//! their first row) as `predictions-<micros>-<pid>-<n>.parquet`, each written to a temporary
//! file and renamed into place: a reader listing the directory sees whole files only, while the
//! log keeps writing.
//!
//! Each row holds the model's input columns, then `prediction`, `model_name`,
//! `model_version`, `request_id` (a request, or a Kafka record), `request_row` (the row's place
//! in its request) and `logged_at` (UTC, microseconds).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use arrow::{
    array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray, UInt32Array},
    datatypes::{DataType, Field, Schema, TimeUnit},
    record_batch::RecordBatch,
};

/// The columns a log row adds to the model's inputs.
pub const LOG_COLUMNS: [&str; 8] = [
    "prediction",
    "model_name",
    "model_version",
    "request_id",
    "request_row",
    "logged_at",
    "shadow_prediction",
    "shadow_version",
];

/// Where and how often a [`PredictionLog`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PredictionLogConfig {
    /// The directory of the date partitions.
    pub dir: PathBuf,
    /// A file is written once this many rows wait.
    pub max_rows_per_file: usize,
    /// A file is written once its oldest row waited this long.
    pub flush_interval: Duration,
    /// Scored batches the queue holds; more are dropped and counted.
    pub queue: usize,
    /// Every row also holds `shadow_prediction` and `shadow_version` (null where the shadow
    /// model did not answer): the log of a server scoring with a shadow model.
    pub shadow: bool,
}

impl PredictionLogConfig {
    /// Logs into `dir`: files of at most 100,000 rows, written at least every 10 seconds, a
    /// queue of 4,096 batches.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_rows_per_file: 100_000,
            flush_interval: Duration::from_secs(10),
            queue: 4_096,
            shadow: false,
        }
    }
}

/// One scored request (or Kafka batch): its validated inputs and their predictions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Scored {
    /// The inputs as the model read them.
    pub inputs: RecordBatch,
    /// One prediction per input row.
    pub predictions: Vec<f64>,
    /// The registered model's name.
    pub model_name: Arc<str>,
    /// Its version.
    pub model_version: Arc<str>,
    /// The request's id (or one per row, for Kafka records).
    pub request_ids: RequestIds,
    /// When it was scored.
    pub at: SystemTime,
    /// A shadow model's predictions of the same rows and its version, when it answered.
    pub shadow: Option<(Vec<f64>, Arc<str>)>,
}

/// The ids of a scored batch's rows.
#[derive(Debug, Clone)]
pub enum RequestIds {
    /// One request: every row has its id, and its place in the request as `request_row`.
    Request(String),
    /// One id per row (Kafka records), `request_row` 0.
    PerRow(Vec<String>),
}

impl Scored {
    /// A scored request.
    pub fn new(
        inputs: RecordBatch,
        predictions: Vec<f64>,
        (model_name, model_version): (Arc<str>, Arc<str>),
        request_ids: RequestIds,
    ) -> Self {
        Self {
            inputs,
            predictions,
            model_name,
            model_version,
            request_ids,
            at: SystemTime::now(),
            shadow: None,
        }
    }

    /// The same, with a shadow model's predictions and version.
    #[must_use]
    pub fn with_shadow(mut self, predictions: Vec<f64>, version: Arc<str>) -> Self {
        self.shadow = Some((predictions, version));
        self
    }

    /// The log rows of this batch: its inputs and the log's columns.
    ///
    /// # Errors
    /// Predictions or ids not one per row, or an input column named like a log column.
    pub fn to_batch(&self) -> Result<RecordBatch, String> {
        self.check()?;
        check_columns(&self.inputs.schema())?;
        rows_batch(std::slice::from_ref(self), self.shadow.is_some())
    }

    /// Whether predictions and ids are one per row.
    fn check(&self) -> Result<(), String> {
        let rows = self.inputs.num_rows();
        if self.predictions.len() != rows {
            return Err(format!(
                "{} predictions for {rows} rows",
                self.predictions.len()
            ));
        }
        match &self.request_ids {
            RequestIds::PerRow(ids) if ids.len() != rows => {
                Err(format!("{} ids for {rows} rows", ids.len()))
            }
            _ => Ok(()),
        }
    }
}

/// Whether inputs of `schema` can take the log's columns (none of their names is taken).
fn check_columns(schema: &Schema) -> Result<(), String> {
    match LOG_COLUMNS
        .iter()
        .find(|name| schema.column_with_name(name).is_some())
    {
        Some(clash) => Err(format!(
            "the inputs have a column {clash:?}, which the log adds"
        )),
        None => Ok(()),
    }
}

/// The log rows of checked scored batches whose inputs share one schema: the inputs
/// concatenated, then the log's columns, built once for all rows.
fn rows_batch(items: &[Scored], shadow: bool) -> Result<RecordBatch, String> {
    let Some(first) = items.first() else {
        return Err("no rows".to_owned());
    };
    let schema = first.inputs.schema();
    let inputs = arrow::compute::concat_batches(&schema, items.iter().map(|item| &item.inputs))
        .map_err(|e| e.to_string())?;
    let rows = inputs.num_rows();
    let mut predictions = Vec::with_capacity(rows);
    let mut names = Vec::with_capacity(rows);
    let mut versions = Vec::with_capacity(rows);
    let mut ids: Vec<&str> = Vec::with_capacity(rows);
    let mut positions: Vec<u32> = Vec::with_capacity(rows);
    let mut times = Vec::with_capacity(rows);
    for item in items {
        let n = item.inputs.num_rows();
        predictions.extend_from_slice(&item.predictions);
        names.extend(std::iter::repeat_n(item.model_name.as_ref(), n));
        versions.extend(std::iter::repeat_n(item.model_version.as_ref(), n));
        match &item.request_ids {
            RequestIds::Request(id) => {
                ids.extend(std::iter::repeat_n(id.as_str(), n));
                positions.extend(0..n as u32);
            }
            RequestIds::PerRow(row_ids) => {
                ids.extend(row_ids.iter().map(String::as_str));
                positions.extend(std::iter::repeat_n(0, n));
            }
        }
        let micros = item
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros() as i64);
        times.extend(std::iter::repeat_n(micros, n));
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend([
        Field::new("prediction", DataType::Float64, false),
        Field::new("model_name", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("request_id", DataType::Utf8, false),
        Field::new("request_row", DataType::UInt32, false),
        Field::new(
            "logged_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]);
    let mut columns: Vec<ArrayRef> = inputs.columns().to_vec();
    columns.extend([
        Arc::new(Float64Array::from(predictions)) as ArrayRef,
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(versions)),
        Arc::new(StringArray::from(ids)),
        Arc::new(UInt32Array::from(positions)),
        Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
    ]);
    if shadow {
        let mut predictions: Vec<Option<f64>> = Vec::with_capacity(rows);
        let mut versions: Vec<Option<&str>> = Vec::with_capacity(rows);
        for item in items {
            let n = item.inputs.num_rows();
            match &item.shadow {
                Some((values, version)) if values.len() == n => {
                    predictions.extend(values.iter().copied().map(Some));
                    versions.extend(std::iter::repeat_n(Some(version.as_ref()), n));
                }
                _ => {
                    predictions.extend(std::iter::repeat_n(None, n));
                    versions.extend(std::iter::repeat_n(None, n));
                }
            }
        }
        fields.push(Field::new("shadow_prediction", DataType::Float64, true));
        fields.push(Field::new("shadow_version", DataType::Utf8, true));
        columns.push(Arc::new(Float64Array::from(predictions)));
        columns.push(Arc::new(StringArray::from(versions)));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

/// Counters of a log, shared with its writer thread.
#[derive(Debug, Default)]
struct Counters {
    logged_rows: AtomicU64,
    dropped_rows: AtomicU64,
    files: AtomicU64,
    errors: AtomicU64,
}

/// A running prediction log (see the [module](self) documentation). Dropping it writes what
/// waits and stops the writer.
#[derive(Debug)]
pub struct PredictionLog {
    sender: Option<SyncSender<Scored>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    dir: PathBuf,
}

impl PredictionLog {
    /// Creates `config.dir` and starts the writer thread.
    ///
    /// # Errors
    /// The directory cannot be created, or the thread cannot start.
    pub fn start(config: PredictionLogConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.dir)?;
        let (sender, receiver) = sync_channel(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        let writer = {
            let counters = Arc::clone(&counters);
            let config = config.clone();
            std::thread::Builder::new()
                .name("velo-prediction-log".to_owned())
                .spawn(move || write_loop(&receiver, &config, &counters))?
        };
        Ok(Self {
            sender: Some(sender),
            writer: Some(writer),
            counters,
            dir: config.dir,
        })
    }

    /// Queues a scored batch without waiting; `false` when the queue was full and the batch
    /// was dropped (counted in [`PredictionLog::dropped_rows`]).
    pub fn log(&self, scored: Scored) -> bool {
        let rows = scored.inputs.num_rows() as u64;
        let Some(sender) = &self.sender else {
            return false;
        };
        match sender.try_send(scored) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters
                    .dropped_rows
                    .fetch_add(rows, Ordering::Relaxed);
                false
            }
        }
    }

    /// Rows written to files so far.
    pub fn logged_rows(&self) -> u64 {
        self.counters.logged_rows.load(Ordering::Relaxed)
    }

    /// Rows dropped because the queue was full, or because their file could not be written.
    pub fn dropped_rows(&self) -> u64 {
        self.counters.dropped_rows.load(Ordering::Relaxed)
    }

    /// Files written so far.
    pub fn files(&self) -> u64 {
        self.counters.files.load(Ordering::Relaxed)
    }

    /// Files that could not be written (their rows are counted as dropped).
    pub fn errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// The directory of the date partitions.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes what waits and stops the writer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            // A writer that panicked has nothing left to flush.
            let _ = writer.join();
        }
    }
}

impl Drop for PredictionLog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Scored batches waiting for their file (their inputs share one schema).
struct Pending {
    items: Vec<Scored>,
    rows: usize,
    since: Option<Instant>,
    /// The inputs' schema, checked to take the log's columns.
    schema: Option<arrow::datatypes::SchemaRef>,
}

fn write_loop(receiver: &Receiver<Scored>, config: &PredictionLogConfig, counters: &Counters) {
    let mut pending = Pending {
        items: Vec::new(),
        rows: 0,
        since: None,
        schema: None,
    };
    let mut sequence = 0_u64;
    let mut flush = |pending: &mut Pending| {
        if pending.rows > 0 {
            sequence += 1;
            write_pending(pending, config, counters, sequence);
        }
        pending.items.clear();
        pending.rows = 0;
        pending.since = None;
    };
    let drop_rows = |scored: &Scored, reason: &str| {
        tracing::warn!(%reason, "a scored batch cannot be logged");
        counters
            .dropped_rows
            .fetch_add(scored.inputs.num_rows() as u64, Ordering::Relaxed);
    };
    loop {
        let wait = pending.since.map_or(Duration::from_secs(3_600), |since| {
            config.flush_interval.saturating_sub(since.elapsed())
        });
        match receiver.recv_timeout(wait) {
            Ok(scored) => {
                if let Err(reason) = scored.check() {
                    drop_rows(&scored, &reason);
                    continue;
                }
                let schema = scored.inputs.schema();
                let same = pending
                    .schema
                    .as_ref()
                    .is_some_and(|known| Arc::ptr_eq(known, &schema) || **known == *schema);
                if !same {
                    if let Err(reason) = check_columns(&schema) {
                        drop_rows(&scored, &reason);
                        continue;
                    }
                    flush(&mut pending);
                    pending.schema = Some(schema);
                }
                pending.rows += scored.inputs.num_rows();
                pending.since.get_or_insert_with(Instant::now);
                pending.items.push(scored);
                if pending.rows >= config.max_rows_per_file {
                    flush(&mut pending);
                }
            }
            Err(RecvTimeoutError::Timeout) => flush(&mut pending),
            Err(RecvTimeoutError::Disconnected) => {
                flush(&mut pending);
                return;
            }
        }
    }
}

fn write_pending(pending: &Pending, config: &PredictionLogConfig, counters: &Counters, n: u64) {
    let at = pending
        .items
        .first()
        .map_or_else(SystemTime::now, |item| item.at);
    let time: chrono::DateTime<chrono::Utc> = at.into();
    let micros = time.timestamp_micros();
    let path = config
        .dir
        .join(format!("date={}", time.format("%Y-%m-%d")))
        .join(format!(
            "predictions-{micros}-{}-{n}.parquet",
            std::process::id()
        ));
    let rows = pending.rows as u64;
    let written = rows_batch(&pending.items, config.shadow)
        .and_then(|batch| {
            crate::datasets::parquet_bytes(&batch, &path.display().to_string())
                .map_err(|e| e.to_string())
        })
        .and_then(|bytes| crate::datasets::write_file(&path, &bytes).map_err(|e| e.to_string()));
    match written {
        Ok(_) => {
            counters.logged_rows.fetch_add(rows, Ordering::Relaxed);
            counters.files.fetch_add(1, Ordering::Relaxed);
        }
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "cannot write a prediction log file");
            counters.errors.fetch_add(1, Ordering::Relaxed);
            counters.dropped_rows.fetch_add(rows, Ordering::Relaxed);
        }
    }
}

/// The files of a prediction log directory: every `*.parquet` under its date partitions (or
/// directly in it), in path order (date, then time of writing); temporary files are skipped.
///
/// # Errors
/// The directory cannot be listed.
pub fn log_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a prediction log directory into one batch (see [`log_files`]), or `None` when it
/// holds no file yet.
///
/// # Errors
/// A file that cannot be read, or files of different columns (a model version with other
/// inputs: monitor it from its own directory), naming the file.
pub fn read_logs(dir: &Path) -> Result<Option<RecordBatch>, crate::datasets::DatasetError> {
    use crate::datasets::DatasetReader as _;
    let files = log_files(dir).map_err(|source| crate::datasets::DatasetError::Io {
        action: "list",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut batches: Vec<RecordBatch> = Vec::with_capacity(files.len());
    for file in &files {
        let batch = crate::datasets::ParquetReader::new(file).read()?.data;
        if let Some(first) = batches.first()
            && first.schema().fields() != batch.schema().fields()
        {
            let names = |batch: &RecordBatch| {
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(crate::datasets::DatasetError::Inconsistent {
                path: file.clone(),
                message: format!(
                    "its columns ({}) differ from those of {} ({}): another model's inputs; \
                     monitor each model's log on its own",
                    names(&batch),
                    files[0].display(),
                    names(first)
                ),
            });
        }
        batches.push(batch);
    }
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    arrow::compute::concat_batches(&first.schema(), &batches)
        .map(Some)
        .map_err(|source| crate::datasets::DatasetError::Arrow {
            path: dir.to_path_buf(),
            source: source.into(),
        })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray as _, Int32Array};
    use arrow::datatypes::Float64Type;

    use super::*;
    use crate::datasets::{DatasetReader as _, ParquetReader};

    fn scored(values: Vec<i32>, version: &str, id: &str) -> Scored {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let predictions = values.iter().map(|v| f64::from(*v) * 2.0).collect();
        let inputs =
            RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(values))]).unwrap();
        Scored::new(
            inputs,
            predictions,
            ("bikes".into(), version.into()),
            RequestIds::Request(id.to_owned()),
        )
    }

    /// Every Parquet file under `dir`, sorted by path.
    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for partition in std::fs::read_dir(dir).unwrap() {
            for file in std::fs::read_dir(partition.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_some_and(|e| e == "parquet") {
                    found.push(path);
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn scored_rows_reach_dated_parquet_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::start(PredictionLogConfig::new(dir.path())).unwrap();
        assert!(log.log(scored(vec![1, 2], "1", "a")));
        assert!(log.log(scored(vec![3], "1", "b")));
        log.close();
        let written = files(dir.path());
        assert_eq!(written.len(), 1, "{written:?}");
        let partition = written[0].parent().unwrap().file_name().unwrap();
        assert!(partition.to_string_lossy().starts_with("date=20"));
        let batch = ParquetReader::new(&written[0]).read().unwrap().data;
        assert_eq!(batch.num_rows(), 3);
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "x",
                "prediction",
                "model_name",
                "model_version",
                "request_id",
                "request_row",
                "logged_at"
            ]
        );
        let predictions = batch.column(1).as_primitive::<Float64Type>();
        assert_eq!(predictions.values().to_vec(), vec![2.0, 4.0, 6.0]);
        let ids = batch.column(4).as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(2)), ("a", "b"));
        let rows = batch
            .column(5)
            .as_primitive::<arrow::datatypes::UInt32Type>();
        assert_eq!(rows.values().to_vec(), vec![0, 1, 0]);
        assert_eq!(batch.column(6).null_count(), 0);
        let all = read_logs(dir.path()).unwrap().unwrap();
        assert_eq!(all.num_rows(), 3);
        assert!(read_logs(&dir.path().join("date=1999-01-01")).is_err());
    }

    #[test]
    fn a_shadow_log_holds_the_shadow_predictions_or_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PredictionLogConfig::new(dir.path());
        config.shadow = true;
        let log = PredictionLog::start(config).unwrap();
        log.log(scored(vec![1, 2], "1", "a").with_shadow(vec![5.0, 6.0], "2".into()));
        // The shadow refused this one: its rows are logged with nulls.
        log.log(scored(vec![3], "1", "b"));
        log.close();
        let batch = read_logs(dir.path()).unwrap().unwrap();
        let shadow = batch
            .column_by_name("shadow_prediction")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(
            shadow.iter().collect::<Vec<_>>(),
            vec![Some(5.0), Some(6.0), None]
        );
        let versions = batch
            .column_by_name("shadow_version")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(
            versions.iter().collect::<Vec<_>>(),
            vec![Some("2"), Some("2"), None]
        );
    }

    #[test]
    fn files_roll_by_size_and_model_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PredictionLogConfig::new(dir.path());
        config.max_rows_per_file = 4;
        config.flush_interval = Duration::from_millis(50);
        let log = PredictionLog::start(config).unwrap();
        for _ in 0..4 {
            log.log(scored(vec![1, 2], "1", "r"));
        }
        // Another version's inputs (another schema) start a new file.
        let other = {
            let schema = Arc::new(Schema::new(vec![Field::new("y", DataType::Int32, false)]));
            let inputs =
                RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![7]))]).unwrap();
            Scored::new(
                inputs,
                vec![1.0],
                ("bikes".into(), "2".into()),
                RequestIds::Request("s".into()),
            )
        };
        log.log(other);
        // The interval writes what waits without more traffic: readable while the log runs.
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.logged_rows() < 9 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(log.logged_rows(), 9);
        assert_eq!(log.files(), 3);
        assert_eq!(files(dir.path()).len(), 3);
        assert_eq!((log.dropped_rows(), log.errors()), (0, 0));
        log.close();
        // Two models' inputs in one directory: read together, they are refused by name.
        let error = read_logs(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("its columns (y, prediction") && error.contains("another model"),
            "{error}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(read_logs(empty.path()).unwrap().is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PredictionLogConfig::new(dir.path());
        config.queue = 1;
        config.max_rows_per_file = usize::MAX;
        config.flush_interval = Duration::from_secs(3_600);
        let log = PredictionLog::start(config).unwrap();
        // A blocking queue would wait for the writer and drop nothing.
        let accepted = (0..10_000)
            .filter(|_| log.log(scored(vec![1], "1", "r")))
            .count();
        assert_eq!(log.dropped_rows() as usize, 10_000 - accepted);
        assert!(log.dropped_rows() > 0);
        log.close();
    }

    #[test]
    fn rows_that_cannot_be_logged_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::start(PredictionLogConfig::new(dir.path())).unwrap();
        let mut bad = scored(vec![1, 2], "1", "r");
        bad.predictions.pop();
        assert!(log.log(bad));
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.dropped_rows() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(log.dropped_rows(), 2);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "prediction",
            DataType::Int32,
            false,
        )]));
        let clash =
            RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1]))]).unwrap();
        let error = Scored::new(
            clash,
            vec![1.0],
            ("m".into(), "1".into()),
            RequestIds::PerRow(vec!["k".into()]),
        )
        .to_batch()
        .unwrap_err();
        assert_eq!(
            error,
            "the inputs have a column \"prediction\", which the log adds"
        );
        log.close();
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
