//! `velo serve`: the scoring server of `velo_jobs::serving` on a port, until Ctrl-C or SIGTERM.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use velo_io::registries::{self, ModelUri};
use velo_jobs::{scoring::Scorer, serving::ServeOptions};

use crate::commands::Failure;

/// Arguments of `velo serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The model: `models:/NAME@ALIAS`, `models:/NAME/VERSION` or `models:/NAME/latest`.
    #[arg(short = 'm', long = "model-uri")]
    model_uri: String,
    /// The port to listen on (0 picks a free one; the address is printed).
    #[arg(short, long, default_value_t = 5000)]
    port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The model registry: a directory (the embedded store) or an MLflow server URL;
    /// `MLFLOW_REGISTRY_URI`, else `MLFLOW_TRACKING_URI`, else `./mlruns`.
    #[arg(long)]
    registry_uri: Option<String>,
    /// Seconds between checks that the alias still names the version being served; a moved
    /// alias swaps the model without a restart (0: never check).
    #[arg(long, default_value_t = 10)]
    poll_interval: u64,
    /// The largest request body accepted, in MiB (larger ones answer 413).
    #[arg(long, default_value_t = 64)]
    max_body_mb: usize,
    /// Seconds a client may take to send a request's headers (then the connection closes).
    #[arg(long, default_value_t = 10)]
    header_timeout_s: u64,
    /// Seconds a request body may go without data (then 408).
    #[arg(long, default_value_t = 30)]
    body_timeout_s: u64,
    /// Connections served at once; more wait in the listen queue.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Large request bodies (16 KiB and more) parsed at once (default: one per core); more
    /// wait their turn, which bounds memory.
    #[arg(long)]
    max_parsing: Option<usize>,
    /// Threads answering requests (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Log every scored request (inputs, prediction, model, version, request id, time) to
    /// rolling Parquet files under this directory, partitioned by date; scoring never waits
    /// on the log (rows it cannot keep up with are dropped and counted in `/metrics`).
    #[arg(long, value_name = "DIR")]
    log_predictions: Option<std::path::PathBuf>,
    /// Seconds between writes of the prediction log's files.
    #[arg(long, default_value_t = 10)]
    log_flush_s: u64,
    /// Measure the drift of about this many latest scored rows against the served version's
    /// training profile whenever `/metrics` is read (`velo_serve_feature_drift{column}`,
    /// `_drift_share`, `_prediction_drift`, `_estimated_error`); 0 turns it off.
    #[arg(long, default_value_t = 0)]
    drift_rows: usize,
    /// A model URI (a challenger, `models:/NAME@Challenger`) that scores every request in the
    /// shadow: clients get the served model's answers; the shadow's go to the prediction log
    /// (`shadow_prediction`, `shadow_version`) and `/metrics`.
    #[arg(long, value_name = "MODEL_URI")]
    shadow: Option<String>,
}

/// The registry `velo serve` reads: the flag, else where MLflow's variables put it (velo-io's
/// one resolver: `MLFLOW_REGISTRY_URI`, else `MLFLOW_TRACKING_URI`, else the default store).
fn registry_uri(args: &ServeArgs) -> String {
    args.registry_uri
        .clone()
        .unwrap_or_else(|| velo_io::services::MlflowService::from_env().registry_uri)
}

pub(crate) fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let uri: ModelUri = args
        .model_uri
        .parse()
        .with_context(|| format!("invalid --model-uri `{}`", args.model_uri))
        .map_err(Failure::Usage)?;
    let registry_uri = registry_uri(args);
    // Serving only reads: a store that does not exist is an error, never created.
    let stores = registries::open_existing(&registry_uri)
        .with_context(|| format!("cannot open the registry {registry_uri}"))
        .map_err(Failure::Usage)?;
    let scorer = Scorer::load(stores.registry, uri.clone())
        .with_context(|| format!("cannot load {uri} from {registry_uri}"))
        .map_err(Failure::Job)?;
    let shadow = match &args.shadow {
        Some(text) => {
            let shadow_uri: ModelUri = text
                .parse()
                .with_context(|| format!("invalid --shadow `{text}`"))
                .map_err(Failure::Usage)?;
            let shadow_stores = registries::open_existing(&registry_uri)
                .with_context(|| format!("cannot open the registry {registry_uri}"))
                .map_err(Failure::Usage)?;
            let scorer = Scorer::load(shadow_stores.registry, shadow_uri.clone())
                .with_context(|| format!("cannot load the shadow {shadow_uri} from {registry_uri}"))
                .map_err(Failure::Job)?;
            Some(Arc::new(scorer))
        }
        None => None,
    };
    let options = ServeOptions {
        poll_interval: (args.poll_interval > 0).then(|| Duration::from_secs(args.poll_interval)),
        max_body_bytes: args.max_body_mb.saturating_mul(1024 * 1024),
        header_timeout: Duration::from_secs(args.header_timeout_s.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout_s.max(1)),
        max_connections: args.max_connections.max(1),
        max_parsing: args
            .max_parsing
            .unwrap_or_else(|| ServeOptions::default().max_parsing)
            .max(1),
        prediction_log: args.log_predictions.as_ref().map(|dir| {
            let mut config = velo_io::prediction_logs::PredictionLogConfig::new(dir);
            config.flush_interval = Duration::from_secs(args.log_flush_s.max(1));
            config.shadow = shadow.is_some();
            config
        }),
        drift_rows: args.drift_rows,
        shadow,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers.max(1));
    }
    let runtime = runtime
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::Job)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))
            .map_err(Failure::Usage)?;
        let address = listener
            .local_addr()
            .context("the listener has no address")
            .map_err(Failure::Job)?;
        let current = scorer.current();
        eprintln!(
            "serving {uri} (version {}) on http://{address}",
            current.version.version
        );
        velo_jobs::serving::serve(listener, Arc::new(scorer), options, shutdown())
            .await
            .context("the server failed")
            .map_err(Failure::Job)?;
        eprintln!("stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM; the server then finishes the requests in flight.
async fn shutdown() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
