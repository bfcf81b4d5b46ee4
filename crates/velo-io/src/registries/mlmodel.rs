//! MLflow model directories: an `MLmodel` file with velo's flavor, the column signature and an
//! input example, next to the model's own files.

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
        Ok(json)
    }
}

/// Reads the `MLmodel` file of a model directory.
pub fn read(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join(MLMODEL_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| RegistryError::io("read", &path, e))?;
    serde_yaml::from_str(&text).map_err(|error| RegistryError::Corrupt {
        path,
        message: error.to_string(),
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
    tracking.record_logged_model(&run.run_id, &mlmodel)?;
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
}
