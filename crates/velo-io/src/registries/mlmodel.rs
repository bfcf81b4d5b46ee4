//! MLflow model directories: an `MLmodel` file with velo's flavor, the column signature and an
//! input example, next to the model's own files.
//!
//! [`log_model`] writes such a directory for a run and [`load_model_bytes`] reads a registered
//! version's model file back; [`read`] parses an `MLmodel` file into a [`ModelFile`]. Jobs hand
//! in and take back bytes: the temporary directories and file names are this module's.

use std::path::Path;

use arrow::{
    array::{Array, AsArray as _, RecordBatch},
    datatypes::{DataType, Float64Type, Int64Type, Schema},
};
use serde::{Deserialize, Serialize};

use super::{RegistryError, Result, RunInfo, Tracking};

/// The flavor name velo writes in `MLmodel`.
pub const FLAVOR: &str = "velo";
/// The name of the MLmodel file.
pub const MLMODEL_FILE: &str = "MLmodel";
/// The input example file, in pandas' `split` orientation.
pub const INPUT_EXAMPLE_FILE: &str = "input_example.json";
/// The serving payload built from the example, as MLflow's scoring server takes it.
pub const SERVING_EXAMPLE_FILE: &str = "serving_input_example.json";
/// The model file velo writes in a model directory, and assumes when a velo flavor names none.
pub const MODEL_FILE: &str = "model.velo";
/// The loss estimator beside the model file (see
/// [`velo_core::drift::ReferenceProfile::loss_estimator`]).
pub const ESTIMATOR_FILE: &str = "loss_estimator.velo";
/// The reference profile of the training data beside the model file
/// ([`velo_core::drift::ReferenceProfile`]), read by monitoring.
pub const PROFILE_FILE: &str = "profile.json";

/// The ONNX graph of the model, when the version has one: with it among the extra files, the
/// `MLmodel` declares MLflow's `onnx` flavor and a `python_function` flavor loaded by
/// `mlflow.onnx`, so that `mlflow.pyfunc.load_model` scores the version with onnxruntime.
pub const ONNX_FILE: &str = "model.onnx";

/// The ONNX package version the `onnx` flavor names (the graphs use opset 19, IR version 9).
const ONNX_VERSION: &str = "1.23.2";

/// One column of a signature, in MLflow's colspec form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColSpec {
    /// MLflow's type name: boolean, integer, long, float, double, string, binary or datetime.
    #[serde(rename = "type")]
    pub kind: String,
    /// The column name.
    pub name: String,
    /// Whether values are required (no nulls).
    pub required: bool,
}

/// The colspec signature of an Arrow schema, with the type names of
/// [`mlflow_type`](crate::datasets::mlflow_type); a column is required when it is not nullable.
pub fn signature_of(schema: &Schema) -> Vec<ColSpec> {
    schema
        .fields()
        .iter()
        .map(|field| ColSpec {
            kind: crate::datasets::mlflow_type(field.data_type()).to_owned(),
            name: field.name().clone(),
            required: !field.is_nullable(),
        })
        .collect()
}

/// `{"columns": […], "data": [[…], …]}` for the first `rows` rows of a batch (numbers as JSON
/// numbers, nulls as null, other values as strings).
pub fn example_of(batch: &RecordBatch, rows: usize) -> Result<serde_json::Value> {
    let rows = rows.min(batch.num_rows());
    let schema = batch.schema();
    let mut columns = Vec::new();
    let mut cells: Vec<Vec<serde_json::Value>> = vec![Vec::new(); rows];
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        columns.push(serde_json::Value::String(field.name().clone()));
        let slice = column.slice(0, rows);
        let values: Vec<serde_json::Value> = match slice.data_type() {
            DataType::Boolean => slice
                .as_boolean()
                .iter()
                .map(|value| value.map_or(serde_json::Value::Null, serde_json::Value::Bool))
                .collect(),
            data_type if data_type.is_integer() => {
                let cast = arrow::compute::cast(&slice, &DataType::Int64)
                    .map_err(|error| RegistryError::InvalidArgument(error.to_string()))?;
                cast.as_primitive::<Int64Type>()
                    .iter()
                    .map(|value| value.map_or(serde_json::Value::Null, serde_json::Value::from))
                    .collect()
            }
            data_type if data_type.is_floating() => {
                let cast = arrow::compute::cast(&slice, &DataType::Float64)
                    .map_err(|error| RegistryError::InvalidArgument(error.to_string()))?;
                cast.as_primitive::<Float64Type>()
                    .iter()
                    .map(|value| {
                        value
                            .and_then(serde_json::Number::from_f64)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number)
                    })
                    .collect()
            }
            _ => {
                let cast = arrow::compute::cast(&slice, &DataType::Utf8)
                    .map_err(|error| RegistryError::InvalidArgument(error.to_string()))?;
                cast.as_string::<i32>()
                    .iter()
                    .map(|value| value.map_or(serde_json::Value::Null, serde_json::Value::from))
                    .collect()
            }
        };
        for (row, value) in values.into_iter().enumerate() {
            cells[row].push(value);
        }
    }
    Ok(serde_json::json!({ "columns": columns, "data": cells }))
}

/// What goes into an `MLmodel` file.
#[derive(Debug, Clone)]
pub struct MlModel {
    /// The artifact path under the run (`model`).
    pub artifact_path: String,
    /// The run that logged it.
    pub run_id: String,
    /// The model file inside the directory, named in velo's flavor.
    pub model_file: String,
    /// The model kind (`RandomForestModel`, …), recorded in the flavor.
    pub model_kind: String,
    /// Input columns.
    pub inputs: Vec<ColSpec>,
    /// Output columns.
    pub outputs: Vec<ColSpec>,
    /// An input example (see [`example_of`]), if any.
    pub input_example: Option<serde_json::Value>,
    /// More files of the model directory, by name (for example [`PROFILE_FILE`]).
    pub extra_files: Vec<(String, Vec<u8>)>,
}

impl MlModel {
    /// The `MLmodel` content as JSON (also what `runs/log-model` takes).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let encode = |specs: &[ColSpec]| {
            serde_json::to_string(specs)
                .map_err(|error| RegistryError::InvalidArgument(error.to_string()))
        };
        let created = chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string();
        let mut model = serde_json::json!({
            "artifact_path": self.artifact_path,
            "flavors": {
                FLAVOR: {
                    "model_file": self.model_file,
                    "model_kind": self.model_kind,
                    "velo_version": env!("CARGO_PKG_VERSION"),
                }
            },
            "model_uuid": uuid_hex(),
            "run_id": self.run_id,
            "utc_time_created": created,
            "signature": {
                "inputs": encode(&self.inputs)?,
                "outputs": encode(&self.outputs)?,
                "params": null,
            },
        });
        if self.extra_files.iter().any(|(name, _)| name == ONNX_FILE) {
            model["flavors"]["onnx"] = serde_json::json!({
                "onnx_version": ONNX_VERSION,
                "data": ONNX_FILE,
                "providers": ["CPUExecutionProvider"],
                "code": null,
            });
            model["flavors"]["python_function"] = serde_json::json!({
                "loader_module": "mlflow.onnx",
                "data": ONNX_FILE,
            });
        }
        if self.input_example.is_some() {
            model["saved_input_example_info"] = serde_json::json!({
                "artifact_path": INPUT_EXAMPLE_FILE,
                "type": "dataframe",
                "pandas_orient": "split",
                "serving_input_path": SERVING_EXAMPLE_FILE,
            });
        }
        Ok(model)
    }

    /// Writes `MLmodel` and the example files into `dir` (the model file is the caller's).
    pub fn write_into(&self, dir: &Path) -> Result<serde_json::Value> {
        let json = self.to_json()?;
        let yaml = serde_yaml::to_string(&json)
            .map_err(|error| RegistryError::InvalidArgument(error.to_string()))?;
        write(dir, MLMODEL_FILE, yaml.as_bytes())?;
        if let Some(example) = &self.input_example {
            let text = serde_json::to_string(example)
                .map_err(|error| RegistryError::InvalidArgument(error.to_string()))?;
            write(dir, INPUT_EXAMPLE_FILE, text.as_bytes())?;
            let serving = serde_json::json!({ "dataframe_split": example });
            write(dir, SERVING_EXAMPLE_FILE, serving.to_string().as_bytes())?;
        }
        for (name, bytes) in &self.extra_files {
            let segments = velo_mlflow::check_relative_path(name)?;
            let path = segments
                .iter()
                .fold(dir.to_path_buf(), |path, segment| path.join(segment));
            let parent = path.parent().unwrap_or(dir);
            let file = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or(name);
            write(parent, file, bytes)?;
        }
        Ok(json)
    }
}

/// An `MLmodel` file as read back: the document, and the parts velo uses, typed and checked.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelFile {
    /// The whole document, as written (what `runs/log-model` records).
    pub document: serde_json::Value,
    /// The flavors the model declares (`velo`, `python_function`, …).
    pub flavors: Vec<String>,
    /// velo's flavor, when the model has one.
    pub velo: Option<VeloFlavor>,
    /// Input columns of the signature (empty when the model has none).
    pub inputs: Vec<ColSpec>,
    /// Output columns of the signature (empty when the model has none).
    pub outputs: Vec<ColSpec>,
}

/// velo's flavor in an `MLmodel` file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VeloFlavor {
    /// The model file, relative to the model directory, checked not to leave it.
    pub model_file: String,
    /// The model kind (`RandomForestModel`, …), when recorded.
    pub model_kind: Option<String>,
    /// The velo version that wrote the model, when recorded.
    pub velo_version: Option<String>,
}

impl ModelFile {
    /// Parses an `MLmodel` document (YAML or JSON); `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let corrupt = |message: String| RegistryError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let document: serde_json::Value =
            serde_yaml::from_str(text).map_err(|error| corrupt(error.to_string()))?;
        if !document.is_object() {
            return Err(corrupt("expected a mapping at the top level".to_owned()));
        }
        let flavors = match document.get("flavors") {
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(serde_json::Value::Object(flavors)) => flavors.clone(),
            Some(_) => return Err(corrupt("`flavors` must be a mapping".to_owned())),
        };
        let velo = flavors
            .get(FLAVOR)
            .map(|flavor| VeloFlavor::parse(flavor).map_err(corrupt))
            .transpose()?;
        let signature = |side: &str| -> Result<Vec<ColSpec>> {
            match document
                .get("signature")
                .and_then(|signature| signature.get(side))
            {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                // MLflow stores each side as a JSON string inside the YAML document.
                Some(serde_json::Value::String(text)) => {
                    serde_json::from_str(text).map_err(|error| {
                        corrupt(format!("`signature.{side}` is not a column list: {error}"))
                    })
                }
                Some(_) => Err(corrupt(format!("`signature.{side}` must be a JSON string"))),
            }
        };
        Ok(Self {
            flavors: flavors.keys().cloned().collect(),
            velo,
            inputs: signature("inputs")?,
            outputs: signature("outputs")?,
            document,
        })
    }

    /// velo's flavor, or an error naming the flavors the model has instead.
    pub fn velo_flavor(&self) -> Result<&VeloFlavor> {
        self.velo.as_ref().ok_or_else(|| {
            RegistryError::InvalidArgument(format!(
                "the model has no `{FLAVOR}` flavor (its flavors: {}), so velo cannot load it",
                if self.flavors.is_empty() {
                    "none".to_owned()
                } else {
                    self.flavors.join(", ")
                }
            ))
        })
    }
}

impl VeloFlavor {
    fn parse(flavor: &serde_json::Value) -> Result<Self, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            match flavor.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
                Some(other) => Err(format!(
                    "`flavors.{FLAVOR}.{key}` must be a string, not {other}"
                )),
            }
        };
        let model_file = text("model_file")?.unwrap_or_else(|| MODEL_FILE.to_owned());
        velo_mlflow::check_relative_path(&model_file)
            .map_err(|error| format!("`flavors.{FLAVOR}.model_file`: {error}"))
            .and_then(|segments| {
                if segments.is_empty() {
                    Err(format!("`flavors.{FLAVOR}.model_file` names no file"))
                } else {
                    Ok(())
                }
            })?;
        Ok(Self {
            model_file,
            model_kind: text("model_kind")?,
            velo_version: text("velo_version")?,
        })
    }
}

/// Reads and parses the `MLmodel` file of a model directory.
pub fn read(dir: &Path) -> Result<ModelFile> {
    let path = dir.join(MLMODEL_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| RegistryError::io("read", &path, e))?;
    ModelFile::parse(&text, &path)
}

/// Logs a model directory (the model file named by `model.model_file`, `MLmodel` and the
/// example files) under the run's `model.artifact_path`, and records it on the run; returns the
/// model's source URI for registration.
///
/// The files go from memory to the store ([`Tracking::log_artifact_files`]): no temporary
/// copy of the model is written anywhere, and in the embedded store the directory appears
/// whole, so a killed process leaves no half-written model.
///
/// # Errors
/// A model file name that is not a plain relative path, a failed write or upload.
pub fn log_model(
    tracking: &dyn Tracking,
    run: &RunInfo,
    model: &MlModel,
    model_bytes: &[u8],
) -> Result<String> {
    let segments = velo_mlflow::check_relative_path(&model.model_file)?;
    if segments.is_empty() {
        return Err(RegistryError::InvalidArgument(format!(
            "model file {:?} names no file",
            model.model_file
        )));
    }
    let document = model.to_json()?;
    let yaml = serde_yaml::to_string(&document)
        .map_err(|error| RegistryError::InvalidArgument(error.to_string()))?;
    let mut examples = Vec::new();
    if let Some(example) = &model.input_example {
        let text = serde_json::to_string(example)
            .map_err(|error| RegistryError::InvalidArgument(error.to_string()))?;
        let serving = serde_json::json!({ "dataframe_split": example }).to_string();
        examples.push((INPUT_EXAMPLE_FILE, text));
        examples.push((SERVING_EXAMPLE_FILE, serving));
    }
    let mut files: Vec<(&str, &[u8])> = vec![
        (model.model_file.as_str(), model_bytes),
        (MLMODEL_FILE, yaml.as_bytes()),
    ];
    files.extend(examples.iter().map(|(name, text)| (*name, text.as_bytes())));
    for (name, bytes) in &model.extra_files {
        velo_mlflow::check_relative_path(name)?;
        files.push((name.as_str(), bytes.as_slice()));
    }
    tracking.log_artifact_files(&run.run_id, &model.artifact_path, &files)?;
    tracking.record_logged_model(&run.run_id, &document)?;
    Ok(format!(
        "{}/{}",
        run.artifact_uri.trim_end_matches('/'),
        model.artifact_path
    ))
}

/// A registered version's model file, read back.
#[derive(Debug)]
#[non_exhaustive]
pub struct ModelBytes {
    /// The version the URI resolved to.
    pub version: super::ModelVersion,
    /// Its `MLmodel` file.
    pub mlmodel: ModelFile,
    /// The bytes of the file velo's flavor names.
    pub bytes: Vec<u8>,
    /// Where those bytes came from: the version's source and the file's name in it.
    pub location: String,
}

/// Resolves `uri` in `registry` and reads the model file its `MLmodel` names (velo's flavor),
/// straight from the store ([`ModelRegistry::read_model_file`](super::ModelRegistry)): no
/// temporary copy is written.
///
/// # Errors
/// An unknown model, alias or version; a model without velo's flavor; a missing file; every
/// error names the version.
pub fn load_model_bytes(
    registry: &dyn super::ModelRegistry,
    uri: &super::ModelUri,
) -> Result<ModelBytes> {
    let version = uri.resolve(registry)?;
    let context = |error: RegistryError| RegistryError::Model {
        name: version.name.clone(),
        version: version.version.clone(),
        source: Box::new(error),
    };
    let text = registry
        .read_model_file(&version, MLMODEL_FILE)
        .map_err(context)?;
    let text = String::from_utf8(text).map_err(|error| {
        context(RegistryError::Corrupt {
            path: MLMODEL_FILE.into(),
            message: error.to_string(),
        })
    })?;
    let mlmodel = ModelFile::parse(&text, Path::new(MLMODEL_FILE)).map_err(context)?;
    let file = &mlmodel.velo_flavor().map_err(context)?.model_file;
    let bytes = registry.read_model_file(&version, file).map_err(context)?;
    let location = format!("{}/{file}", version.source.trim_end_matches('/'));
    Ok(ModelBytes {
        version,
        mlmodel,
        bytes,
        location,
    })
}

/// The reference profile a registered version keeps of its training data ([`PROFILE_FILE`]).
///
/// # Errors
/// A version without one (trained before velo stored profiles: retrain it), or a damaged or
/// newer-format profile; every error names the version.
pub fn load_profile(
    registry: &dyn super::ModelRegistry,
    version: &super::ModelVersion,
) -> Result<velo_core::drift::ReferenceProfile> {
    let context = |error: RegistryError| RegistryError::Model {
        name: version.name.clone(),
        version: version.version.clone(),
        source: Box::new(error),
    };
    let bytes = registry
        .read_model_file(version, PROFILE_FILE)
        .map_err(|error| {
            context(RegistryError::NotFound {
                what: format!(
                    "{PROFILE_FILE}, the profile of the training data monitoring compares with \
                     (versions trained before velo stored it have none: retrain), ({error})"
                ),
            })
        })?;
    velo_core::drift::ReferenceProfile::from_json(&bytes).map_err(|message| {
        context(RegistryError::Corrupt {
            path: PROFILE_FILE.into(),
            message,
        })
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| RegistryError::io("create", dir, e))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| RegistryError::io("write", &path, e))
}

fn uuid_hex() -> String {
    use rand::RngCore as _;
    let mut bytes = [0_u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Logs a prepared model directory under the run's `artifact_path` and records it on the run;
/// returns the model's source URI (`<artifact_uri>/<artifact_path>`) for registration.
pub fn log_model_dir(
    tracking: &dyn Tracking,
    run: &RunInfo,
    artifact_path: &str,
    local: &Path,
) -> Result<String> {
    let mlmodel = read(local)?;
    tracking.log_artifact_dir(&run.run_id, artifact_path, local)?;
    tracking.record_logged_model(&run.run_id, &mlmodel.document)?;
    Ok(format!(
        "{}/{}",
        run.artifact_uri.trim_end_matches('/'),
        artifact_path
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::{Float64Array, Int64Array, StringArray},
        datatypes::Field,
    };

    use super::*;

    #[test]
    fn signatures_and_examples_use_mlflow_forms() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("hr", DataType::Int64, false),
            Field::new("temp", DataType::Float64, true),
            Field::new("season", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(Float64Array::from(vec![Some(0.5), None, Some(1.0)])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
            ],
        )
        .unwrap();
        let specs = signature_of(&schema);
        assert_eq!(
            serde_json::to_string(&specs).unwrap(),
            r#"[{"type":"long","name":"hr","required":true},{"type":"double","name":"temp","required":false},{"type":"string","name":"season","required":true}]"#
        );
        let example = example_of(&batch, 2).unwrap();
        assert_eq!(
            example,
            serde_json::json!({"columns": ["hr", "temp", "season"], "data": [[1, 0.5, "a"], [2, null, "b"]]})
        );
    }

    fn parse(text: &str) -> Result<ModelFile> {
        ModelFile::parse(text, Path::new("dir/MLmodel"))
    }

    #[test]
    fn a_written_mlmodel_reads_back_typed() {
        let model = MlModel {
            artifact_path: "model".to_owned(),
            run_id: "0123".to_owned(),
            model_file: "weights/model.velo".to_owned(),
            model_kind: "RandomForestModel".to_owned(),
            inputs: vec![ColSpec {
                kind: "long".to_owned(),
                name: "hr".to_owned(),
                required: true,
            }],
            outputs: vec![ColSpec {
                kind: "double".to_owned(),
                name: "prediction".to_owned(),
                required: true,
            }],
            input_example: None,
            extra_files: Vec::new(),
        };
        let yaml = serde_yaml::to_string(&model.to_json().unwrap()).unwrap();
        let file = parse(&yaml).unwrap();
        let flavor = file.velo_flavor().unwrap();
        assert_eq!(flavor.model_file, "weights/model.velo");
        assert_eq!(flavor.model_kind.as_deref(), Some("RandomForestModel"));
        assert_eq!(
            flavor.velo_version.as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(file.inputs, model.inputs);
        assert_eq!(file.outputs, model.outputs);
        assert_eq!(file.flavors, ["velo"]);
    }

    #[test]
    fn a_velo_flavor_without_a_file_name_means_the_default_file() {
        let file = parse("flavors: {velo: {model_kind: X}}").unwrap();
        assert_eq!(file.velo_flavor().unwrap().model_file, MODEL_FILE);
        assert!(file.inputs.is_empty());
    }

    #[test]
    fn model_files_that_leave_the_directory_are_refused() {
        for name in ["../x", "/etc/passwd", "a/../../b", "C:x", "a\\b", ".", ""] {
            let text = format!("flavors: {{velo: {{model_file: '{name}'}}}}");
            let error = parse(&text).expect_err(name).to_string();
            assert!(error.contains("dir/MLmodel"), "{name:?}: {error}");
            assert!(error.contains("model_file"), "{name:?}: {error}");
        }
    }

    #[test]
    fn a_model_without_velo_flavor_names_the_flavors_it_has() {
        let file = parse("flavors: {sklearn: {}, python_function: {}}").unwrap();
        let error = file.velo_flavor().unwrap_err().to_string();
        assert!(
            error.contains("sklearn") && error.contains("python_function"),
            "{error}"
        );
        for text in [
            "- a list",
            "flavors: 3",
            "signature: {inputs: [1]}",
            "{flavors: {velo: {model_file: 3}}}",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
