//! `velo init`: a project for a new dataset, in one command.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Args;
use velo_io::configs::ConfigLoader;
use velo_io::datasets::{self, DatasetWriter as _, ParquetReader, ParquetWriter, Reader};
use velo_jobs::Settings;
use velo_jobs::init::{CONFIGS, DATA_FILES, InitOptions, Table, plan};

use crate::commands::Failure;

/// Arguments of `velo init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The project's directory (created if needed).
    dir: PathBuf,
    /// The inputs (Parquet or CSV); with `--target`, they may hold the target as well.
    #[arg(long)]
    inputs: PathBuf,
    /// The targets (Parquet or CSV), lined up with the inputs by the index or by position.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// The target column (required when the inputs hold it, or the targets several columns).
    #[arg(long)]
    target: Option<String>,
    /// The index column (else the index a pandas-written file declares, if any).
    #[arg(long)]
    index: Option<String>,
    /// The column rows are ordered by in time: the test set is then the last rows.
    #[arg(long)]
    time: Option<String>,
    /// The MLflow experiment and registered model name (default: the directory's name).
    #[arg(long)]
    name: Option<String>,
    /// The share of rows held out as the test set, in (0, 1).
    #[arg(long, default_value_t = 0.2)]
    test_ratio: f64,
    /// Replace the files of an existing project.
    #[arg(long)]
    force: bool,
}

pub(crate) fn init(args: &InitArgs) -> Result<(), Failure> {
    let usage = |error: anyhow::Error| Failure::Usage(error);
    if !(args.test_ratio > 0.0 && args.test_ratio < 1.0) {
        return Err(usage(anyhow!(
            "--test-ratio {}: expected a share of the rows in (0, 1), such as 0.2",
            args.test_ratio
        )));
    }
    let existing: Vec<String> = ["configs/training.yaml", "configs/data.yaml"]
        .into_iter()
        .chain(DATA_FILES)
        .filter(|file| args.dir.join(file).exists())
        .map(str::to_owned)
        .collect();
    if !existing.is_empty() && !args.force {
        return Err(usage(anyhow!(
            "{} holds a project already ({}): nothing was written; pass --force to replace \
             its files",
            args.dir.display(),
            existing.join(", ")
        )));
    }
    let name = match &args.name {
        Some(name) => name.clone(),
        None => project_name(&args.dir),
    };
    let inputs = read(&args.inputs)?;
    let targets = args.targets.as_deref().map(read).transpose()?;
    let options = InitOptions {
        target: args.target.clone(),
        index: args.index.clone(),
        time: args.time.clone(),
        test_ratio: args.test_ratio,
        ..InitOptions::new(name.clone())
    };
    let plan = plan(&inputs, targets.as_ref(), &options)
        .map_err(|error| usage(anyhow::Error::new(error).context("cannot plan the project")))?;

    let write_error = |path: &Path, error: anyhow::Error| {
        Failure::Job(error.context(format!("cannot write {}", path.display())))
    };
    for file in &plan.files {
        let path = args.dir.join(&file.path);
        datasets::write_file(&path, file.text.as_bytes())
            .map_err(|error| write_error(&path, error.into()))?;
    }
    let batches = [
        &plan.data.inputs_train,
        &plan.data.targets_train,
        &plan.data.inputs_test,
        &plan.data.targets_test,
    ];
    for (file, batch) in DATA_FILES.iter().zip(batches) {
        let path = args.dir.join(file);
        let writer = ParquetWriter {
            index: plan.index.clone(),
            ..ParquetWriter::new(&path)
        };
        writer
            .write(batch)
            .map_err(|error| write_error(&path, error.into()))?;
    }
    // Every config written (`CONFIGS`) must load: a plan that does not is velo's bug, said
    // plainly.
    for config in CONFIGS {
        let path = args.dir.join(format!("configs/{config}.yaml"));
        ConfigLoader::default()
            .files([path.clone()])
            .load::<Settings>()
            .with_context(|| format!("velo init wrote {}, which does not load", path.display()))
            .map_err(Failure::Job)?;
    }

    say!(
        "velo init: project `{name}` in {} (target `{}`)",
        args.dir.display(),
        plan.target
    );
    for note in &plan.notes {
        say!("  - {note}");
    }
    say!(
        "wrote {} files and {} ({} training rows, {} test rows)",
        plan.files.len(),
        DATA_FILES.join(", "),
        plan.data.inputs_train.num_rows(),
        plan.data.inputs_test.num_rows()
    );
    say!(
        "next: cd {} && velo project   (the schemas' comments say why each rule was chosen)",
        args.dir.display()
    );
    Ok(())
}

/// A table read whole, with the index its file declares.
fn read(path: &Path) -> Result<Table, Failure> {
    let (reader, index) = match path.extension().and_then(|e| e.to_str()) {
        Some("parquet" | "pq") => {
            let reader = ParquetReader::new(path);
            let index = reader
                .pandas_index()
                .map_err(|error| Failure::Usage(error.into()))?;
            (Reader::ParquetReader(reader), index)
        }
        Some("csv") => (Reader::CsvReader(datasets::CsvReader::new(path)), None),
        _ => {
            return Err(Failure::Usage(anyhow!(
                "{}: expected a .parquet or .csv file",
                path.display()
            )));
        }
    };
    let dataset = reader
        .read()
        .map_err(|error| Failure::Usage(error.into()))?;
    Ok(Table {
        data: dataset.data,
        source: path.display().to_string(),
        index,
    })
}

/// The directory's name, as an MLflow experiment and model name.
fn project_name(dir: &Path) -> String {
    let base = std::path::absolute(dir)
        .ok()
        .and_then(|dir| {
            dir.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "project".to_owned()
    } else {
        name
    }
}
