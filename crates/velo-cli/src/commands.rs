//! Command-line arguments and the command each one runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use velo_io::services::tracking::RunContext;
use velo_io::{
    configs::ConfigLoader,
    datasets::{self, spec::DataSpec},
};
use velo_jobs::{JobContext, Settings};

/// Writes a line to stdout; a closed pipe (`velo … | head`) ends the output quietly.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::commands::emit(&format!("{}\n", format_args!($($arg)*)))?
    };
}

/// Writes text to stdout as it is, like [`say!`] without the newline.
macro_rules! say_raw {
    ($($arg:tt)*) => {
        $crate::commands::emit(&format!($($arg)*))?
    };
}

/// Writes to stdout, treating a closed pipe as the reader's wish to stop.
pub(crate) fn emit(text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Job(error.into()))
        }
        _ => Ok(()),
    }
}

/// A failed command: bad usage or configuration (exit 2), or a job that failed (exit 1).
#[derive(Debug)]
pub(crate) enum Failure {
    Usage(anyhow::Error),
    Job(anyhow::Error),
    /// Stopped by a signal after finishing cleanly (a stream that drained and committed).
    Interrupted,
}

/// velo: an MLOps toolkit for tabular regression models.
#[derive(Debug, Parser)]
#[command(name = "velo", version, about, long_about = None, arg_required_else_help = true)]
pub(crate) struct Cli {
    /// Print the JSON Schema of configuration files and exit.
    #[arg(long, exclusive = true)]
    schema: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration and run the job it names.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Load and validate only; print what would run.
        #[arg(long)]
        dry_run: bool,
        /// Run sandboxed: read the configured store, but write every run, version, alias and
        /// output file to `.velo/sandboxes/NAME` (NAME defaults to `default`).
        #[arg(long, num_args = 0..=1, default_missing_value = "default", value_name = "NAME")]
        sandbox: Option<String>,
    },
    /// Inspect configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the configuration schema (JSON Schema, or the Markdown reference).
    Schema {
        /// Print the Markdown reference instead of the JSON Schema.
        #[arg(long)]
        markdown: bool,
    },
    /// Create datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Create a project for a new dataset: schemas inferred from the data (with a comment on
    /// each rule), features with leaking columns left out, the data split into `data/`, and the
    /// job configs; then `cd DIR && velo project` runs it.
    Init(crate::init::InitArgs),
    /// Run the whole lifecycle from `configs/` (tuning, training, promotion, inference,
    /// evaluations, explanations), creating `data/` first when it holds no dataset.
    Project {
        /// Import this UCI CSV into `data/` when it is empty (synthetic data otherwise).
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Serve a registered model over HTTP with MLflow's scoring protocol (`POST /invocations`,
    /// `/ping`, `/health`, `/version`, `/metrics`), like `mlflow models serve`.
    Serve(crate::serve::ServeArgs),
    /// Sandboxes (`velo run --sandbox NAME`): list them, compare one with production, promote
    /// one of its versions into production, or drop it.
    Sandbox {
        #[command(subcommand)]
        command: crate::models::SandboxCommand,
        #[command(flatten)]
        store: crate::models::StoreArgs,
    },
    /// Registered models: list, history with the alias log, diff two versions, roll back.
    Models {
        #[command(subcommand)]
        command: crate::models::ModelsCommand,
        #[command(flatten)]
        store: crate::models::StoreArgs,
    },
    /// Run the tasks that jobs with `executor: {KIND: Queue, url: postgres://…}` put on a
    /// PostgreSQL queue (tuning folds), one at a time, until stopped or idle.
    Worker(crate::worker::WorkerArgs),
}

/// The jobs of the lifecycle, in the order `velo project` runs them (`configs/<job>.yaml`).
const LIFECYCLE: [&str; 6] = [
    "tuning",
    "training",
    "promotion",
    "inference",
    "evaluations",
    "explanations",
];

/// The files a project's `data/` holds.
const DATA_FILES: [&str; 4] = [
    "inputs_train.parquet",
    "targets_train.parquet",
    "inputs_test.parquet",
    "targets_test.parquet",
];

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration and the source of every value.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Import a CSV into inputs/targets train/test Parquet files, split by time.
    Import {
        /// The CSV file.
        #[arg(long)]
        csv: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// The data spec naming the schemas and the test ratio.
        #[arg(long, default_value = "configs/data.yaml")]
        spec: PathBuf,
    },
    /// Validate a Parquet or CSV file against a schema and print its lineage.
    Validate {
        /// The dataset (`.parquet` or `.csv`).
        file: PathBuf,
        /// The schema file.
        #[arg(long)]
        schema: PathBuf,
    },
    /// Generate a deterministic synthetic dataset with the spec's schema.
    Synth {
        /// Number of rows.
        #[arg(long, default_value_t = 17_379)]
        rows: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// The data spec naming the schemas, the test ratio and the generator's columns.
        #[arg(long, default_value = "configs/data.yaml")]
        spec: PathBuf,
    },
}

/// Where a configuration comes from.
#[derive(Debug, Clone, Args)]
struct ConfigArgs {
    /// Configuration files (YAML, JSON or TOML), merged left to right.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// YAML snippets applied last, e.g. -e 'job: {model: {max_depth: 7}}'.
    #[arg(short = 'e', long = "extras")]
    extras: Vec<String>,
    /// The profile to select (`dev`, `prod`, …).
    #[arg(long, env = "VELO_PROFILE")]
    profile: Option<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<velo_io::configs::Loaded<Settings>, Failure> {
        let loaded = ConfigLoader::default()
            .files(self.files.iter().cloned())
            .extras(self.extras.iter().cloned())
            .profile(self.profile.clone())
            .load::<Settings>()
            .map_err(|error| Failure::Usage(error.into()))?;
        // Before logging starts (the config configures it): straight to the terminal.
        for notice in loaded.notices() {
            eprintln!("note: {notice}");
        }
        Ok(loaded)
    }
}

/// Runs the command.
pub(crate) fn dispatch(cli: Cli) -> Result<(), Failure> {
    // `velo run` logs as its job's `services.logger` says, once the configuration is loaded.
    if !matches!(cli.command, Some(Command::Run { .. })) {
        crate::logging::init(&velo_io::services::LoggerService::default())
            .map_err(Failure::Usage)?;
    }
    if cli.schema {
        return print_json(&velo_jobs::settings_schema());
    }
    match cli.command {
        None => Err(Failure::Usage(anyhow::anyhow!(
            "no command given (see `velo --help`)"
        ))),
        Some(Command::Run {
            config,
            dry_run,
            sandbox,
        }) => run(&config, dry_run, sandbox.as_deref()),
        Some(Command::Config(ConfigCommand::Show { config })) => show(&config),
        Some(Command::Schema { markdown: false }) => print_json(&velo_jobs::settings_schema()),
        Some(Command::Schema { markdown: true }) => {
            say_raw!(
                "{}",
                crate::reference::markdown(&velo_jobs::settings_schema())
            );
            Ok(())
        }
        Some(Command::Data(DataCommand::Import { csv, out, spec })) => {
            let spec = load_spec(&spec)?;
            let summary = datasets::import::import_csv(&csv, &spec, &out)
                .with_context(|| format!("cannot import {}", csv.display()))
                .map_err(Failure::Job)?;
            let source = &summary.source;
            say!(
                "imported {} rows of {} (digest {})",
                source.rows,
                csv.display(),
                source.digest
            );
            say!("{}", summary.splits);
            Ok(())
        }
        Some(Command::Data(DataCommand::Validate { file, schema })) => validate(&file, &schema),
        Some(Command::Project { csv }) => project(csv.as_deref()),
        Some(Command::Init(args)) => crate::init::init(&args),
        Some(Command::Serve(args)) => crate::serve::serve(&args),
        Some(Command::Worker(args)) => crate::worker::worker(&args),
        Some(Command::Models { command, store }) => crate::models::run(&command, &store),
        Some(Command::Sandbox { command, store }) => crate::models::sandbox(&command, &store),
        Some(Command::Data(DataCommand::Synth {
            rows,
            seed,
            out,
            spec,
        })) => {
            let spec = load_spec(&spec)?;
            let summary = spec
                .synthesize(rows, seed, &out)
                .with_context(|| format!("cannot generate {rows} rows into {}", out.display()))
                .map_err(Failure::Job)?;
            say!("generated {rows} rows with seed {seed}");
            say!("{}", summary.split);
            Ok(())
        }
    }
}

fn project(csv: Option<&Path>) -> Result<(), Failure> {
    let data = Path::new("data");
    let spec_path = Path::new("configs/data.yaml");
    if DATA_FILES.iter().all(|file| data.join(file).is_file()) {
        say!("using the dataset in {}", data.display());
    } else if let Some(csv) = csv {
        let spec = load_spec(spec_path)?;
        let summary = datasets::import::import_csv(csv, &spec, data)
            .with_context(|| format!("cannot import {}", csv.display()))
            .map_err(Failure::Job)?;
        say!("imported {} rows of {}", summary.source.rows, csv.display());
    } else {
        let spec = load_spec(spec_path)?;
        spec.synthesize(17_379, 42, data)
            .with_context(|| format!("cannot generate data into {}", data.display()))
            .map_err(Failure::Job)?;
        say!("generated 17379 synthetic rows into {}", data.display());
    }
    for job in LIFECYCLE {
        let config = ConfigArgs {
            files: vec![PathBuf::from(format!("configs/{job}.yaml"))],
            extras: Vec::new(),
            profile: None,
        };
        run(&config, false, None)?;
    }
    Ok(())
}

fn validate(file: &Path, schema: &Path) -> Result<(), Failure> {
    let schema = datasets::load_schema(schema).map_err(|error| Failure::Usage(error.into()))?;
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("parquet" | "pq") => "ParquetReader",
        Some("csv") => "CsvReader",
        _ => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "{} is neither .parquet nor .csv",
                file.display()
            )));
        }
    };
    let reader: datasets::Reader =
        serde_json::from_value(serde_json::json!({"KIND": kind, "path": file}))
            .map_err(|error| Failure::Usage(error.into()))?;
    let dataset = reader
        .read_validated(&schema)
        .map_err(|error| Failure::Job(error.into()))?;
    let lineage = &dataset.lineage;
    say!(
        "{} is valid: {} rows, {} columns, digest {}",
        file.display(),
        lineage.rows,
        lineage.columns,
        lineage.digest
    );
    Ok(())
}

fn load_spec(path: &Path) -> Result<DataSpec, Failure> {
    DataSpec::load(path).map_err(|error| Failure::Usage(error.into()))
}

fn print_json(value: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Job(e.into()))?;
    say!("{text}");
    Ok(())
}

fn run(config: &ConfigArgs, dry_run: bool, sandbox: Option<&str>) -> Result<(), Failure> {
    let mut settings = config.load()?.value;
    let sandbox = sandbox
        .or(settings.job.services().mlflow.sandbox.as_deref())
        .map(str::to_owned);
    if let Some(name) = &sandbox {
        velo_io::registries::sandbox::check_name(name).map_err(|e| Failure::Usage(e.into()))?;
        let dir = velo_jobs::sandbox::sandbox_dir(std::path::Path::new("."), name);
        settings.job = velo_jobs::sandbox::sandboxed(&settings.job, name, &dir)
            .map_err(|e| Failure::Usage(e.into()))?;
        say!(
            "sandbox {name}: reading the configured store, writing to {}",
            dir.display()
        );
    }
    let job = &settings.job;
    crate::logging::init(&job.services().logger).map_err(Failure::Usage)?;
    tracing::info!(kind = job.kind(), "configuration loaded");
    for path in job.schema_paths() {
        datasets::load_schema(path).map_err(|error| Failure::Usage(error.into()))?;
    }
    if dry_run {
        return dry_run_checks(&settings);
    }
    // The loader has applied MLflow's variables (`MLFLOW_TRACKING_URI`, …) already.
    let mlflow = &job.services().mlflow;
    let files: Vec<String> = config
        .files
        .iter()
        .map(|file| file.display().to_string())
        .collect();
    let run_context = RunContext {
        source_name: format!("velo run {}", files.join(" ")),
        project_dir: std::env::current_dir().ok(),
        ..RunContext::default()
    };
    let mut context =
        JobContext::open(mlflow, run_context).map_err(|error| Failure::Job(error.into()))?;
    context.progress = std::sync::Arc::new(crate::progress::Bars::on_stderr());
    // Ctrl-C or SIGTERM ends the open run as KILLED before the process exits. A streaming job
    // is asked to stop first: it finishes its batch, commits and returns; a second signal kills.
    let on_signal = context.clone();
    let streaming = matches!(job, velo_jobs::JobConfig::KafkaInferenceJob(_));
    let on_stop = move || {
        // Every job sees the request: a training job registers nothing after it.
        let again = on_signal
            .stop
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        if streaming && !again {
            eprintln!("stopping: finishing the batch in flight and committing (again to kill)");
            return;
        }
        // Ends the run as KILLED and tags any version it registered already, so that promoting
        // the latest version passes over it.
        let _ = on_signal.kill_active_run();
        eprintln!("interrupted: the open run was ended as KILLED");
        std::process::exit(130);
    };
    // SIGHUP: a streaming job's configuration is read again and validated; a valid one is
    // handed to the job, which applies what can change while it runs; a bad one is refused
    // and the running one stays. Other jobs take SIGHUP as a stop, as a hung-up terminal.
    #[cfg(unix)]
    {
        let reload = (streaming && sandbox.is_none())
            .then(|| (config.clone(), std::sync::Arc::clone(&context.reload)));
        watch_signals(on_stop, reload);
    }
    #[cfg(not(unix))]
    let _ = ctrlc::set_handler(on_stop);
    // What the job refers to is checked before any run is opened: a wrong alias, version or
    // registered model name is a usage error (exit 2) that leaves no FAILED run behind.
    job.preflight(&context)
        .map_err(|error| Failure::Usage(error.into()))?;
    let result = job.run(&context);
    let (title, message) = match &result {
        Ok(outcome) => (
            format!("{} finished", job.kind()),
            outcome
                .lines
                .last()
                .cloned()
                .unwrap_or_else(|| "done".to_owned()),
        ),
        Err(error) => (format!("{} failed", job.kind()), error.to_string()),
    };
    // Where the alert falls back to the terminal, the summary below (or the error) already
    // says it: one message per event.
    match job.services().alerts.notify(&title, &message) {
        Ok(velo_io::services::alerts::Delivery::Line(_)) => {
            tracing::debug!("no webhook or desktop notifier: the terminal summary is the alert");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "the alert was not delivered"),
    }
    let outcome = result.map_err(|error| Failure::Job(error.into()))?;
    say!(
        "{} finished{}",
        job.kind(),
        outcome
            .run_id
            .as_deref()
            .map(|id| format!(" (run {id})"))
            .unwrap_or_default()
    );
    for (name, value) in &outcome.metrics {
        say!("  {name} = {value}");
    }
    for line in &outcome.lines {
        say!("  {line}");
    }
    // A stream stopped by Ctrl-C or SIGTERM drained and committed, and still says it was
    // interrupted (exit 130), as every other job does.
    if streaming && context.stop_requested() {
        return Err(Failure::Interrupted);
    }
    Ok(())
}

/// Calls `on_stop` on SIGINT, SIGTERM and SIGHUP (Ctrl-C elsewhere).
pub(crate) fn watch_stop(on_stop: impl Fn() + Send + 'static) {
    #[cfg(unix)]
    watch_signals(on_stop, None);
    #[cfg(not(unix))]
    let _ = ctrlc::set_handler(on_stop);
}

/// The slot a streaming job takes reloaded configurations from.
#[cfg(unix)]
type ReloadSlot = std::sync::Arc<std::sync::Mutex<Option<velo_jobs::JobConfig>>>;

/// Watches SIGINT and SIGTERM (`on_stop`) and SIGHUP: with `reload`, the configuration is
/// read again and, when valid, handed to the job; without, SIGHUP stops as the others do.
#[cfg(unix)]
fn watch_signals(on_stop: impl Fn() + Send + 'static, reload: Option<(ConfigArgs, ReloadSlot)>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(error) => {
            tracing::warn!(%error, "cannot watch signals; Ctrl-C ends the process without ending its run");
            return;
        }
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            match (&reload, signal) {
                (Some((config, slot)), SIGHUP) => reload_config(config, slot),
                _ => on_stop(),
            }
        }
    });
}

/// Reads `config` again; a valid configuration goes to `slot`, a bad one is refused (logged).
#[cfg(unix)]
fn reload_config(config: &ConfigArgs, slot: &ReloadSlot) {
    match config.load() {
        Ok(loaded) => {
            tracing::info!(files = ?config.files, "SIGHUP: configuration read again and valid");
            if let Ok(mut pending) = slot.lock() {
                *pending = Some(loaded.value.job);
            }
        }
        Err(Failure::Usage(error) | Failure::Job(error)) => {
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                message.push_str(&format!(": {cause}"));
            }
            // One line: a log line per event.
            let message = message.replace('\n', " ");
            tracing::error!(
                error = %message,
                "SIGHUP: the configuration is refused; the running one stays"
            );
        }
        Err(Failure::Interrupted) => {}
    }
}

/// `velo run --dry-run`: beyond the configuration and schema files, every input file the job
/// reads must exist, and the model it refers to, in its store (when the store exists already:
/// a dry run creates nothing); then the plan is printed. What is missing is named, exit 2.
fn dry_run_checks(settings: &Settings) -> Result<(), Failure> {
    let job = &settings.job;
    let value = serde_json::to_value(settings).map_err(|error| Failure::Usage(error.into()))?;
    let mut problems = Vec::new();
    for (key, path) in reader_paths(&value, "") {
        if let Err(reason) = datasets::probe(std::path::Path::new(&path)) {
            problems.push(format!("{key} = {path}: {reason}"));
        }
    }
    let mlflow = &job.services().mlflow;
    let local_store =
        !mlflow.tracking_uri.contains("://") || mlflow.tracking_uri.starts_with("file://");
    let store_path = mlflow.tracking_uri.trim_start_matches("file://");
    let mut notes = Vec::new();
    if local_store && !std::path::Path::new(store_path).exists() {
        notes.push(format!(
            "the store {store_path} does not exist yet: model references were not checked"
        ));
    } else {
        match JobContext::open(mlflow, RunContext::default()) {
            Ok(context) => {
                if let Err(error) = job.preflight(&context) {
                    problems.push(error.to_string());
                }
            }
            Err(error) => problems.push(format!("cannot open the store: {error}")),
        }
    }
    if !problems.is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{} would not run:\n  {}",
            job.kind(),
            problems.join("\n  ")
        )));
    }
    say!("{} is valid; it would:", job.kind());
    for (step, line) in job.plan().iter().enumerate() {
        say!("  {}. {line}", step + 1);
    }
    for note in notes {
        say!("note: {note}");
    }
    Ok(())
}

/// Every `path` of a dataset reader (`KIND: ParquetReader` or `CsvReader`) in a serialized
/// configuration, with its key (`job.inputs.path`).
fn reader_paths(value: &serde_json::Value, key: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    match value {
        serde_json::Value::Object(map) => {
            let is_reader = map
                .get("KIND")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|kind| kind == "ParquetReader" || kind == "CsvReader");
            if is_reader && let Some(path) = map.get("path").and_then(serde_json::Value::as_str) {
                found.push((format!("{key}.path"), path.to_owned()));
            }
            for (name, child) in map {
                let child_key = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                found.extend(reader_paths(child, &child_key));
            }
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                found.extend(reader_paths(item, &format!("{key}[{index}]")));
            }
        }
        _ => {}
    }
    found
}

fn show(config: &ConfigArgs) -> Result<(), Failure> {
    let loaded = config.load()?;
    let entries = loaded
        .provenance()
        .map_err(|error| Failure::Usage(error.into()))?;
    let width = entries
        .iter()
        .map(|entry| entry.key.len())
        .max()
        .unwrap_or(0);
    for entry in entries {
        say!("{:width$} = {}  # {}", entry.key, entry.value, entry.source);
    }
    Ok(())
}
