//! `velo models list|history|diff|rollback`: registered versions, their history with the
//! alias log, differences between two versions, and rolling an alias back (the work is
//! `velo_jobs::models`'; this prints it).

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use velo_io::registries::{self, Stores, history};
use velo_jobs::models;

use crate::commands::Failure;

/// Where the store is, for every `velo models` command.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The tracking store and registry: a directory (the embedded store) or an MLflow server
    /// URL; `MLFLOW_TRACKING_URI` / `MLFLOW_REGISTRY_URI`, else `./mlruns`.
    #[arg(long, global = true)]
    store: Option<String>,
}

impl StoreArgs {
    /// The stores, opened for writing (created when missing).
    fn open_writable(&self) -> Result<Stores, Failure> {
        let service = velo_io::services::MlflowService::from_env();
        let (tracking, registry) = match &self.store {
            Some(uri) => (uri.clone(), uri.clone()),
            None => (service.tracking_uri, service.registry_uri),
        };
        registries::open_pair(&tracking, &registry)
            .with_context(|| format!("cannot open the store {registry}"))
            .map_err(Failure::Usage)
    }

    fn open(&self) -> Result<Stores, Failure> {
        let service = velo_io::services::MlflowService::from_env();
        let (tracking, registry) = match &self.store {
            Some(uri) => (uri.clone(), uri.clone()),
            None => (service.tracking_uri, service.registry_uri),
        };
        let stores = if tracking == registry {
            registries::open_existing(&registry)
        } else {
            registries::open_existing(&tracking).and_then(|tracking| {
                Ok(Stores {
                    tracking: tracking.tracking,
                    registry: registries::open_existing(&registry)?.registry,
                })
            })
        };
        stores
            .with_context(|| format!("cannot open the store {registry}"))
            .map_err(Failure::Usage)
    }
}

/// The `velo sandbox` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SandboxCommand {
    /// The sandboxes of this directory.
    List,
    /// What a sandbox holds against production: its versions, its runs, the aliases it moved.
    Diff {
        /// The sandbox.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy one of a sandbox's versions into production: a new production version (on a run
    /// tagged with the sandbox, its run and version), optionally aliased.
    Promote {
        /// The sandbox.
        name: String,
        /// The registered model.
        #[arg(long, default_value = "bikes")]
        model: String,
        /// The sandbox's version to promote.
        #[arg(long)]
        version: String,
        /// Point this production alias at the new version (logged in the alias log).
        #[arg(long)]
        alias: Option<String>,
        /// The production experiment of the promotion's run.
        #[arg(long, default_value = "bikes")]
        experiment: String,
    },
    /// Remove a sandbox and everything it wrote.
    Drop {
        /// The sandbox.
        name: String,
    },
}

/// Runs one `velo sandbox` command.
pub(crate) fn sandbox(command: &SandboxCommand, store: &StoreArgs) -> Result<(), Failure> {
    use velo_jobs::sandbox as sandboxes;
    let root = std::path::Path::new(".");
    match command {
        SandboxCommand::List => {
            let names = sandboxes::list(root).map_err(job_failure)?;
            if names.is_empty() {
                say!("no sandbox in {}", sandboxes::SANDBOXES);
            }
            for name in names {
                say!("{name}  {}", sandboxes::sandbox_dir(root, &name).display());
            }
            Ok(())
        }
        SandboxCommand::Diff {
            name,
            json: as_json,
        } => {
            let summary = sandboxes::summary(root, name, store.open()?).map_err(job_failure)?;
            if *as_json {
                return json(&summary);
            }
            say!(
                "sandbox {name} ({}): {} run(s)",
                summary.dir.display(),
                summary.runs
            );
            for (model, version, run) in &summary.versions {
                say!("  + version {model}/{version} (sandbox run {run})");
            }
            for (model, alias, was, is) in &summary.aliases {
                say!(
                    "  ~ {model}@{alias}: production {} , sandbox {}",
                    was.as_deref().unwrap_or("none"),
                    is.as_deref().unwrap_or("none")
                );
            }
            Ok(())
        }
        SandboxCommand::Promote {
            name,
            model,
            version,
            alias,
            experiment,
        } => {
            let by = format!("velo sandbox promote by {}", user());
            let promoted = sandboxes::promote(
                root,
                name,
                (model, version),
                (experiment, alias.as_deref(), &by),
                store.open_writable()?,
            )
            .map_err(job_failure)?;
            say!(
                "sandbox {name} version {version} -> {model} version {}{}",
                promoted.version,
                alias
                    .as_deref()
                    .map(|alias| format!(" (@{alias})"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        SandboxCommand::Drop { name } => {
            let dir = sandboxes::drop_sandbox(root, name).map_err(job_failure)?;
            say!("removed {}", dir.display());
            Ok(())
        }
    }
}

/// The `velo models` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Registered models, or the versions of one: creation, run, kind, metrics, aliases.
    List {
        /// The registered model (all models when absent).
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every version of a model with its parameters, training data and metrics, and the log
    /// of its aliases (who moved which alias from which version to which, when, why).
    History {
        /// The registered model.
        name: String,
        /// With `--at`: which version held this alias then.
        #[arg(long)]
        alias: Option<String>,
        /// A time (2026-12-01T12:00Z, RFC 3339 or a date): with `--alias`, the version that
        /// held the alias at that time.
        #[arg(long, requires = "alias")]
        at: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What differs between two versions: architecture, signature, training data, metrics
    /// with deltas, feature importances.
    Diff {
        /// The registered model.
        name: String,
        /// The first version.
        a: String,
        /// The second version.
        b: String,
        /// Print JSON.
        #[arg(long, conflicts_with = "md")]
        json: bool,
        /// Print a Markdown table.
        #[arg(long)]
        md: bool,
        /// Include the rows that are the same.
        #[arg(long)]
        all: bool,
    },
    /// Export a registered model (`models:/NAME@ALIAS` or `models:/NAME/VERSION`) with its
    /// feature pipeline to another format: one ONNX graph.
    Export {
        /// The model URI.
        model_uri: String,
        /// The format (only `onnx`).
        #[arg(long, default_value = "onnx", value_parser = ["onnx"])]
        format: String,
        /// The file to write.
        #[arg(short, long)]
        output: std::path::PathBuf,
        /// The ai.onnx.ml opset of tree ensembles: 3 (`TreeEnsembleRegressor`, float output,
        /// any onnxruntime) or 5 (`TreeEnsemble`, double output, onnxruntime 1.20+).
        #[arg(long, default_value = "3", value_parser = ["3", "5"])]
        ml_opset: String,
    },
    /// Move an alias back to the version it pointed at before (or `--to` a version), after
    /// checking that version loads; recorded in the alias log.
    Rollback {
        /// The registered model.
        name: String,
        /// The alias to move.
        #[arg(long, default_value = "Champion")]
        alias: String,
        /// The version to move it to (default: its previous holder in the alias log).
        #[arg(long)]
        to: Option<String>,
        /// Why, for the alias log.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn job_failure(error: velo_jobs::JobError) -> Failure {
    match error {
        velo_jobs::JobError::Config(message) => Failure::Usage(anyhow!(message)),
        other => Failure::Job(other.into()),
    }
}

fn json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Job(e.into()))?;
    crate::commands::emit(&format!("{text}\n"))
}

fn user() -> String {
    velo_io::services::tracking::process_user()
}

/// Runs one `velo models` command.
pub(crate) fn run(command: &ModelsCommand, store: &StoreArgs) -> Result<(), Failure> {
    let stores = store.open()?;
    let (tracking, registry) = (stores.tracking.as_ref(), stores.registry.as_ref());
    match command {
        ModelsCommand::List {
            name: None,
            json: as_json,
        } => {
            let names = registry
                .list_registered_models()
                .map_err(|e| Failure::Job(e.into()))?;
            let mut rows = Vec::new();
            for name in &names {
                let versions = registry
                    .list_model_versions(name)
                    .map_err(|e| Failure::Job(e.into()))?;
                let model = registry
                    .get_registered_model(name)
                    .map_err(|e| Failure::Job(e.into()))?;
                let aliases: Vec<String> = model
                    .map(|m| {
                        m.aliases
                            .iter()
                            .map(|a| format!("{}={}", a.alias, a.version))
                            .collect()
                    })
                    .unwrap_or_default();
                rows.push(serde_json::json!({
                    "name": name,
                    "versions": versions.len(),
                    "latest": versions.last().map(|v| v.version.clone()),
                    "aliases": aliases,
                }));
            }
            if *as_json {
                return json(&rows);
            }
            say!("{:<24} {:>8} {:>7}  aliases", "model", "versions", "latest");
            for row in &rows {
                say!(
                    "{:<24} {:>8} {:>7}  {}",
                    row["name"].as_str().unwrap_or_default(),
                    row["versions"],
                    row["latest"].as_str().unwrap_or("–"),
                    row["aliases"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        ModelsCommand::List {
            name: Some(name),
            json: as_json,
        } => {
            let found = models::history(tracking, registry, name).map_err(job_failure)?;
            if *as_json {
                return json(&found.versions);
            }
            print_versions(&found.versions)
        }
        ModelsCommand::History {
            name,
            alias: Some(alias),
            at: Some(at),
            json: as_json,
        } => {
            let at = history::parse_time(at).map_err(|e| Failure::Usage(anyhow!(e)))?;
            let event = models::holder_at(registry, name, alias, at).map_err(job_failure)?;
            if *as_json {
                return json(&serde_json::json!({
                    "name": name,
                    "alias": alias,
                    "at": history::format_ms(at),
                    "version": event.as_ref().and_then(|e| e.to.clone()),
                    "since": event,
                }));
            }
            match event {
                Some(event) => say!(
                    "{name}@{alias} at {}: version {} (since {}, by {}: {})",
                    history::format_ms(at),
                    event.to.as_deref().unwrap_or("none"),
                    event.time(),
                    event.by,
                    event.reason
                ),
                None => say!(
                    "{name}@{alias} at {}: no version (the alias had been removed)",
                    history::format_ms(at)
                ),
            }
            Ok(())
        }
        ModelsCommand::History {
            name,
            json: as_json,
            ..
        } => {
            let found = models::history(tracking, registry, name).map_err(job_failure)?;
            if *as_json {
                return json(&found);
            }
            print_versions(&found.versions)?;
            say!("");
            say!("alias log of {name}:");
            if found.log.is_empty() {
                say!("  (no alias move recorded)");
            }
            for event in &found.log {
                say!(
                    "  {}  {:<12} {} -> {}  by {}: {}",
                    event.time(),
                    event.alias,
                    event.from.as_deref().unwrap_or("none"),
                    event.to.as_deref().unwrap_or("none"),
                    event.by,
                    event.reason
                );
            }
            Ok(())
        }
        ModelsCommand::Diff {
            name,
            a,
            b,
            json: as_json,
            md,
            all,
        } => {
            let diff = models::diff(tracking, registry, name, (a, b)).map_err(job_failure)?;
            if *as_json {
                return json(&diff);
            }
            if *md {
                say_raw!("{}", diff.markdown(*all));
            } else {
                say_raw!("{}", diff.table(*all));
            }
            Ok(())
        }
        ModelsCommand::Export {
            model_uri,
            format: _,
            output,
            ml_opset,
        } => {
            let (opset, options) = if ml_opset == "5" {
                (
                    models::ONNX_ML_OPSET_V5,
                    models::OnnxOptions::with_ml_opset(models::OnnxMlOpset::V5),
                )
            } else {
                (models::ONNX_ML_OPSET, models::OnnxOptions::default())
            };
            let uri: registries::ModelUri = model_uri
                .parse()
                .with_context(|| format!("cannot read the model URI {model_uri:?}"))
                .map_err(Failure::Usage)?;
            let (version, bytes) =
                models::export_onnx(registry, &uri, &options).map_err(job_failure)?;
            velo_io::datasets::write_file(output, &bytes)
                .with_context(|| format!("cannot write {}", output.display()))
                .map_err(Failure::Job)?;
            say!(
                "{model_uri} (version {}) -> {} ({} bytes, ONNX opset {}, ai.onnx.ml {})",
                version.version,
                output.display(),
                bytes.len(),
                models::ONNX_OPSET,
                opset
            );
            Ok(())
        }
        ModelsCommand::Rollback {
            name,
            alias,
            to,
            reason,
        } => {
            let by = format!("velo models rollback by {}", user());
            let event = models::rollback(
                registry,
                name,
                alias,
                to.as_deref(),
                (&by, reason.as_deref()),
            )
            .map_err(job_failure)?;
            say!(
                "{name}@{alias}: version {} -> version {}",
                event.from.as_deref().unwrap_or("none"),
                event.to.as_deref().unwrap_or("none")
            );
            Ok(())
        }
    }
}

fn print_versions(versions: &[models::VersionInfo]) -> Result<(), Failure> {
    for info in versions {
        let aliases = if info.aliases.is_empty() {
            String::new()
        } else {
            format!("  @{}", info.aliases.join(" @"))
        };
        say!(
            "version {}  {}  {}  run {} ({}){aliases}",
            info.version,
            info.created,
            info.kind.as_deref().unwrap_or("?"),
            info.run_id,
            info.run_status.as_deref().unwrap_or("run unreadable")
        );
        let params: Vec<String> = info
            .params
            .iter()
            .filter(|(key, _)| *key != "model.KIND")
            .map(|(key, value)| format!("{}={value}", key.trim_start_matches("model.")))
            .collect();
        if !params.is_empty() {
            say!("  params: {}", params.join(", "));
        }
        for lineage in &info.datasets {
            say!(
                "  data: {} {} ({} rows, digest {}) from {}",
                lineage.context.as_deref().unwrap_or("input"),
                lineage.name,
                lineage
                    .rows
                    .map_or_else(|| "?".to_owned(), |rows| rows.to_string()),
                lineage.digest,
                lineage.source
            );
        }
        let metrics: Vec<String> = info
            .metrics
            .iter()
            .filter(|(key, _)| !key.starts_with("system/"))
            .map(|(key, value)| format!("{key}={value:.4}"))
            .collect();
        if !metrics.is_empty() {
            say!("  metrics: {}", metrics.join(", "));
        }
    }
    Ok(())
}
