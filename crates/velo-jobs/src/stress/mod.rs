//! The stress job: where serving a model breaks. A sweep of clients (closed loop), of offered
//! rates (open loop, Poisson arrivals) and of rows per request against `velo serve` (started
//! in this process) or any MLflow-compatible scoring server given by URL, side by side in one
//! tracking run, on loopback, each step bounded in time and requests (ADR 0010).

#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "serve")]
mod load;
#[cfg(feature = "serve")]
mod results;

#[cfg(feature = "serve")]
use std::{sync::Arc, time::Duration};

#[cfg(feature = "serve")]
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use velo_io::{
    datasets::{Reader, Writer},
    services::RunConfig,
};
#[cfg(feature = "serve")]
use velo_io::{registries::Tag, services::tracking::ActiveRun};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{AliasOrVersion, SchemaFiles, Services, describe_reader},
};
#[cfg(feature = "serve")]
use crate::{common::run_tracked, scoring::Scorer, serving::ServeOptions};
#[cfg(feature = "serve")]
use load::{Endpoint, Limits};
#[cfg(feature = "serve")]
pub use results::{Finding, StressStep};

/// A scoring server to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StressServer {
    /// A short name for metrics and charts (letters, digits, `_`, `-`).
    pub name: String,
    /// The server's URL (`http://127.0.0.1:5001`, path `/invocations` by default); without
    /// one, velo's scoring server is started in this process on a free loopback port with the
    /// job's registered model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The server's process id, to report its resident memory (a server started here reports
    /// this process's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Threads of a server started here (default: one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

/// The closed-loop sweep: a number of clients, each waiting for its answer before the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosedLoop {
    /// Clients at each step.
    pub clients: Vec<usize>,
    /// Rows per request.
    #[serde(default = "one")]
    pub rows: usize,
}

/// The open-loop sweep: requests arriving at an offered rate (Poisson), whatever the answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenLoop {
    /// Offered requests per second at each step.
    pub rates: Vec<f64>,
    /// Rows per request.
    #[serde(default = "one")]
    pub rows: usize,
    /// Requests in flight at most; an arrival beyond is dropped and counted as an error.
    #[serde(default = "OpenLoop::default_max_in_flight")]
    pub max_in_flight: usize,
}

impl OpenLoop {
    fn default_max_in_flight() -> usize {
        256
    }
}

/// The batch sweep: rows per request at a fixed number of clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Batches {
    /// Rows per request at each step.
    pub rows: Vec<usize>,
    /// Clients.
    #[serde(default = "Batches::default_clients")]
    pub clients: usize,
}

impl Batches {
    fn default_clients() -> usize {
        4
    }
}

fn one() -> usize {
    1
}

/// How long each step loads a server, and how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepLimits {
    /// Seconds of load before measuring.
    #[serde(default = "StepLimits::default_warmup_s")]
    pub warmup_s: f64,
    /// Seconds measured.
    #[serde(default = "StepLimits::default_seconds")]
    pub seconds: f64,
    /// The most requests a step sends.
    #[serde(default = "StepLimits::default_max_requests")]
    pub max_requests: u64,
    /// Seconds after which a request counts as an error.
    #[serde(default = "StepLimits::default_timeout_s")]
    pub timeout_s: f64,
}

impl Default for StepLimits {
    fn default() -> Self {
        Self {
            warmup_s: Self::default_warmup_s(),
            seconds: Self::default_seconds(),
            max_requests: Self::default_max_requests(),
            timeout_s: Self::default_timeout_s(),
        }
    }
}

impl StepLimits {
    fn default_warmup_s() -> f64 {
        0.5
    }
    fn default_seconds() -> f64 {
        2.0
    }
    fn default_max_requests() -> u64 {
        500_000
    }
    fn default_timeout_s() -> f64 {
        10.0
    }

    #[cfg(feature = "serve")]
    fn limits(&self) -> Limits {
        Limits {
            warmup: Duration::from_secs_f64(self.warmup_s),
            measure: Duration::from_secs_f64(self.seconds),
            max_requests: self.max_requests,
            timeout: Duration::from_secs_f64(self.timeout_s),
        }
    }
}

/// Loading the Kafka inference job: offered records per second, step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaStress {
    /// Bootstrap servers, `host:port[,host:port…]`; the job creates its topics there
    /// (`velo-stress-<run>-inputs`, `-outputs`, `-dead`).
    pub brokers: String,
    /// Offered records per second at each step.
    pub rates: Vec<f64>,
    /// Partitions of the input topic.
    #[serde(default = "KafkaStress::default_partitions")]
    pub partitions: i32,
    /// The most records the job predicts together.
    #[serde(default = "KafkaStress::default_max_batch")]
    pub max_batch: usize,
}

impl KafkaStress {
    fn default_partitions() -> i32 {
        1
    }
    fn default_max_batch() -> usize {
        1000
    }
}

/// The service level a step must keep; the first step that does not is the failure point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// The 99th percentile latency allowed, in milliseconds.
    #[serde(default = "Slo::default_p99_ms")]
    pub p99_ms: f64,
    /// The fraction of failed requests allowed.
    #[serde(default = "Slo::default_max_error_rate")]
    pub max_error_rate: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Self {
            p99_ms: Self::default_p99_ms(),
            max_error_rate: Self::default_max_error_rate(),
        }
    }
}

impl Slo {
    fn default_p99_ms() -> f64 {
        100.0
    }
    fn default_max_error_rate() -> f64 {
        0.01
    }
}

/// Load scoring servers step by step to find where they break: a sweep of clients (closed
/// loop), of offered rates (open loop) and of rows per request, each step bounded in time and
/// requests, on loopback only.
///
/// Per step: requests/s, rows/s, p50/p90/p99/max latency (HDR histograms), errors and the
/// server's resident memory; per sweep: the knee (throughput stops rising) and the failure
/// point (the SLO missed). Curves are logged as metrics with steps, with charts and a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StressJob {
    /// The tracking run.
    #[serde(default = "StressJob::default_run_config")]
    pub run_config: RunConfig,
    /// Rows sent in request bodies (`dataframe_records`), in turn.
    pub inputs: Reader,
    /// Schemas: the inputs' validates the rows sent.
    pub schemas: SchemaFiles,
    /// The model served by a server started here.
    #[serde(default)]
    pub alias_or_version: AliasOrVersion,
    /// The servers, loaded one after the other with the same steps.
    #[serde(default = "StressJob::default_servers")]
    pub servers: Vec<StressServer>,
    /// The closed-loop sweep (none: skipped).
    #[serde(default = "StressJob::default_closed_loop")]
    pub closed_loop: Option<ClosedLoop>,
    /// The open-loop sweep (none: skipped).
    #[serde(default = "StressJob::default_open_loop")]
    pub open_loop: Option<OpenLoop>,
    /// The batch-size sweep (none: skipped).
    #[serde(default = "StressJob::default_batches")]
    pub batches: Option<Batches>,
    /// The Kafka inference job loaded at rising rates (none: skipped; needs the `kafka`
    /// feature, on in the CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaStress>,
    /// Each step's length and request budget.
    #[serde(default)]
    pub step: StepLimits,
    /// The service level that defines the failure point.
    #[serde(default)]
    pub slo: Slo,
    /// Seed of the open loop's arrivals.
    #[serde(default = "StressJob::default_seed")]
    pub seed: u64,
    /// Writes the table of steps (also logged as `stress/results.parquet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Writer>,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl StressJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Stress")
    }
    fn default_servers() -> Vec<StressServer> {
        vec![StressServer {
            name: "velo".to_owned(),
            url: None,
            pid: None,
            workers: None,
        }]
    }
    fn default_closed_loop() -> Option<ClosedLoop> {
        Some(ClosedLoop {
            clients: vec![1, 2, 4, 8, 16, 32],
            rows: 1,
        })
    }
    fn default_open_loop() -> Option<OpenLoop> {
        Some(OpenLoop {
            rates: vec![500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0],
            rows: 1,
            max_in_flight: OpenLoop::default_max_in_flight(),
        })
    }
    fn default_batches() -> Option<Batches> {
        Some(Batches {
            rows: vec![1, 10, 100, 1000],
            clients: Batches::default_clients(),
        })
    }
    fn default_seed() -> u64 {
        42
    }

    /// Every step of every sweep, in order: mode, level, rows per request.
    fn steps(&self) -> Vec<(Mode, f64, usize)> {
        let mut steps = Vec::new();
        if let Some(closed) = &self.closed_loop {
            steps.extend(
                closed
                    .clients
                    .iter()
                    .map(|c| (Mode::Closed, *c as f64, closed.rows)),
            );
        }
        if let Some(open) = &self.open_loop {
            steps.extend(open.rates.iter().map(|r| (Mode::Open, *r, open.rows)));
        }
        if let Some(batches) = &self.batches {
            steps.extend(
                batches
                    .rows
                    .iter()
                    .map(|rows| (Mode::Batch, *rows as f64, *rows)),
            );
        }
        steps
    }

    fn starts_a_server(&self) -> bool {
        self.kafka.is_some() || self.servers.iter().any(|server| server.url.is_none())
    }
}

/// A sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Clients waiting for answers.
    Closed,
    /// Offered rate.
    Open,
    /// Offered records per second to the Kafka job.
    #[cfg_attr(
        not(feature = "kafka"),
        expect(dead_code, reason = "only the Kafka steps make it")
    )]
    Kafka,
    /// Rows per request.
    Batch,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::Batch => "batch",
            Self::Kafka => "kafka",
        }
    }
}

impl crate::Job for StressJob {
    const KIND: &'static str = "StressJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        let steps = self.steps().len();
        let per_step = self.step.warmup_s + self.step.seconds;
        let mut plan = vec![format!(
            "send rows from {} as dataframe_records bodies",
            describe_reader(&self.inputs)
        )];
        for server in &self.servers {
            plan.push(match &server.url {
                Some(url) => format!("load `{}` at {url}", server.name),
                None => format!(
                    "start velo's scoring server `{}` here with `{}` {} and load it",
                    server.name, self.services.mlflow.registry_name, self.alias_or_version
                ),
            });
        }
        if let Some(kafka) = &self.kafka {
            plan.push(format!(
                "start the Kafka inference job here on fresh topics at {} and feed it {} rate(s) of records",
                kafka.brokers,
                kafka.rates.len()
            ));
        }
        plan.push(format!(
            "{steps} step(s) per server of {per_step} s at most each ({} s in all), up to {} requests each; SLO p99 <= {} ms, errors <= {}%",
            steps as f64 * per_step * self.servers.len() as f64,
            self.step.max_requests,
            self.slo.p99_ms,
            self.slo.max_error_rate * 100.0
        ));
        plan
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        self.starts_a_server()
            .then(|| self.alias_or_version.clone())
    }

    fn check(&self) -> Result<(), JobError> {
        let config = |message: String| Err(JobError::Config(message));
        if self.servers.is_empty() && self.kafka.is_none() {
            return config("`servers` lists no server and there is no `kafka` section".to_owned());
        }
        if let Some(kafka) = &self.kafka
            && (kafka.rates.is_empty() || kafka.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)))
        {
            return config("`kafka.rates` needs positive offered rates".to_owned());
        }
        let mut names = std::collections::BTreeSet::new();
        for server in &self.servers {
            if server.name.is_empty()
                || !server
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            {
                return config(format!(
                    "server name {:?} must be letters, digits, `_` or `-`",
                    server.name
                ));
            }
            if !names.insert(server.name.as_str()) {
                return config(format!("server name `{}` is used twice", server.name));
            }
            if let Some(url) = &server.url
                && !url.starts_with("http://")
            {
                return config(format!(
                    "server `{}`: `{url}` is not an http:// URL (https is not load-tested)",
                    server.name
                ));
            }
        }
        if self.steps().is_empty() && self.kafka.is_none() {
            return config("no sweep: set `closed_loop`, `open_loop` or `batches`".to_owned());
        }
        for (mode, level, rows) in self.steps() {
            if !(level.is_finite() && level > 0.0) || rows == 0 {
                return config(format!(
                    "the {} sweep has a step of {level} with {rows} row(s) per request; levels and rows must be positive",
                    mode.as_str()
                ));
            }
        }
        let step = &self.step;
        if !(step.seconds > 0.0 && step.warmup_s >= 0.0 && step.timeout_s > 0.0)
            || step.seconds > 3600.0
            || step.max_requests == 0
        {
            return config(
                "`step` needs seconds in (0, 3600], warmup_s >= 0, timeout_s > 0 and max_requests >= 1"
                    .to_owned(),
            );
        }
        Ok(())
    }

    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        #[cfg(feature = "serve")]
        return run_tracked(context, &self.run_config, self, |run| {
            self.stress(context, run)
        });
        #[cfg(not(feature = "serve"))]
        {
            let _ = context;
            Err(JobError::Unsupported(
                "StressJob needs velo-jobs' `serve` feature".to_owned(),
            ))
        }
    }
}

#[cfg(feature = "serve")]
fn runtime(threads: usize, name: &str) -> Result<tokio::runtime::Runtime, JobError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|source| JobError::Runtime {
            action: format!("start {threads} {name} thread(s)"),
            source: source.into(),
        })
}

/// Up to 1,000 rows of `batch` as JSON objects, one per Kafka record.
#[cfg(feature = "kafka")]
fn records(batch: &arrow::record_batch::RecordBatch) -> Result<Vec<Vec<u8>>, JobError> {
    let table = |source| JobError::Table {
        action: "encode Kafka records".to_owned(),
        source,
    };
    let rows = batch.slice(0, batch.num_rows().min(1000));
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(&rows).map_err(table)?;
    writer.finish().map_err(table)?;
    Ok(writer
        .into_inner()
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// `rows` of `batch` from `start` (wrapping) as a `dataframe_records` body.
#[cfg(feature = "serve")]
fn body(
    batch: &arrow::record_batch::RecordBatch,
    start: usize,
    rows: usize,
) -> Result<Bytes, JobError> {
    let table = |source| JobError::Table {
        action: "encode request bodies".to_owned(),
        source,
    };
    let n = batch.num_rows().max(1);
    let indices = arrow::array::UInt32Array::from_iter_values(
        (0..rows).map(|offset| ((start + offset) % n) as u32),
    );
    let chosen = arrow::compute::take_record_batch(batch, &indices).map_err(table)?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&chosen).map_err(table)?;
    writer.finish().map_err(table)?;
    let records = writer.into_inner();
    let mut text = Vec::with_capacity(records.len() + 24);
    text.extend_from_slice(b"{\"dataframe_records\": ");
    text.extend_from_slice(&records);
    text.push(b'}');
    Ok(Bytes::from(text))
}

#[cfg(feature = "serve")]
impl StressJob {
    fn stress(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let schema = velo_io::datasets::load_schema(&self.schemas.inputs)?;
        let rows = self.inputs.read_validated(&schema)?;
        run.log_dataset(&rows.lineage, "stress")?;
        let rows = rows.data;
        if rows.num_rows() == 0 {
            return Err(JobError::Data(format!(
                "{} has no rows to send",
                self.inputs.path().display()
            )));
        }
        // Up to 64 distinct bodies per size, sent in turn.
        let mut bodies = std::collections::BTreeMap::new();
        for (_, _, size) in self.steps() {
            if let std::collections::btree_map::Entry::Vacant(entry) = bodies.entry(size) {
                let count = (rows.num_rows() / size).clamp(1, 64);
                let made = (0..count)
                    .map(|index| body(&rows, index * size, size))
                    .collect::<Result<Vec<_>, _>>()?;
                entry.insert(Arc::new(made));
            }
        }
        let generator = runtime(1, "velo-load")?;
        let mut steps: Vec<StressStep> = Vec::new();
        for server in &self.servers {
            let started = self.start(context, server)?;
            let endpoint = started.endpoint.clone();
            let first = bodies
                .values()
                .next()
                .and_then(|bodies| bodies.first().cloned())
                .unwrap_or_default();
            generator
                .block_on(load::probe(&endpoint, first))
                .map_err(|message| {
                    JobError::Data(format!(
                        "server `{}` cannot be loaded: {message}",
                        server.name
                    ))
                })?;
            let progress = context.progress.start(
                &format!("loading `{}`", server.name),
                Some(self.steps().len() as u64),
            );
            for (mode, level, size) in self.steps() {
                if context.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(JobError::Interrupted("the stress test was stopped"));
                }
                let payloads = bodies.get(&size).cloned().unwrap_or_default();
                let limits = self.step.limits();
                let measured = generator.block_on(async {
                    match mode {
                        Mode::Closed => {
                            load::closed_loop(&endpoint, payloads, level as usize, limits).await
                        }
                        Mode::Open => {
                            let max_in_flight = self
                                .open_loop
                                .as_ref()
                                .map_or(256, |open| open.max_in_flight);
                            load::open_loop(
                                &endpoint,
                                payloads,
                                level,
                                max_in_flight,
                                limits,
                                self.seed,
                            )
                            .await
                        }
                        // Kafka steps are not a server's: `steps` never yields them.
                        Mode::Batch | Mode::Kafka => {
                            let clients = self.batches.as_ref().map_or(4, |b| b.clients);
                            load::closed_loop(&endpoint, payloads, clients, limits).await
                        }
                    }
                });
                let rss = server
                    .pid
                    .or(started.pid)
                    .and_then(velo_io::services::system::resident_mb);
                steps.push(StressStep::new(
                    &server.name,
                    mode,
                    level,
                    size,
                    &measured,
                    rss,
                ));
                progress.advance(1);
            }
            drop(progress);
            drop(started);
        }
        if let Some(kafka) = &self.kafka {
            #[cfg(feature = "kafka")]
            {
                let records = records(&rows)?;
                steps.extend(kafka::stress(
                    context,
                    kafka,
                    &self.alias_or_version,
                    &records,
                    &self.step,
                    run.id(),
                )?);
            }
            #[cfg(not(feature = "kafka"))]
            {
                let _ = kafka;
                return Err(JobError::Unsupported(
                    "the `kafka` section of a StressJob needs velo-jobs' `kafka` feature"
                        .to_owned(),
                ));
            }
        }
        let findings = results::findings(&steps, &self.slo);
        results::log(run, &steps, &findings)?;
        let table = results::table(&steps)?;
        run.tracking().log_artifact(
            run.id(),
            "stress/results.parquet",
            &velo_io::datasets::parquet_bytes(&table, "stress/results.parquet")?,
        )?;
        if let Some(writer) = &self.outputs {
            writer.write(&table)?;
        }
        run.set_tags(&[Tag::new(
            "velo.stress.servers",
            self.servers
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
                .join(","),
        )])?;
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        for finding in &findings {
            outcome.lines.push(finding.line());
            outcome.metrics.insert(
                format!(
                    "stress.{}.{}.max_requests_per_s",
                    finding.server, finding.mode
                ),
                finding.max_requests_per_s,
            );
        }
        Ok(outcome)
    }

    /// Starts velo's scoring server here for `server` when it has no URL.
    fn start(&self, context: &JobContext, server: &StressServer) -> Result<Started, JobError> {
        if let Some(url) = &server.url {
            let endpoint = Endpoint::parse(url).map_err(JobError::Config)?;
            return Ok(Started {
                endpoint,
                pid: server.pid,
                runtime: None,
                stop: None,
            });
        }
        let uri = self
            .alias_or_version
            .uri(context.mlflow.registry_name.clone());
        let scorer = Arc::new(Scorer::load(Arc::clone(&context.registry), uri)?);
        let threads = server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
        let runtime = runtime(threads, "velo-serve")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .and_then(|listener| listener.local_addr().map(|address| (listener, address)));
        let (listener, address) = listener.map_err(|source| JobError::Runtime {
            action: "listen on a loopback port".to_owned(),
            source: source.into(),
        })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions {
            poll_interval: None,
            ..ServeOptions::default()
        };
        runtime.spawn(crate::serving::serve(
            listener,
            scorer,
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Started {
            endpoint: Endpoint {
                authority: address.to_string(),
                path: "/invocations".to_owned(),
            },
            pid: Some(std::process::id()),
            runtime: Some(runtime),
            stop: Some(stop),
        })
    }
}

/// A server being loaded; one started here stops when this is dropped.
#[cfg(feature = "serve")]
struct Started {
    endpoint: Endpoint,
    pid: Option<u32>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[cfg(feature = "serve")]
impl Drop for Started {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}
