//! Schema files: velo schemas written in YAML or JSON.

use std::path::Path;

use serde::de::DeserializeOwned;
use velo_core::schemas::Schema;

use super::DatasetError;

/// Reads a velo schema file (YAML for `.yaml`/`.yml`, JSON for `.json`) and checks its
/// definition.
///
/// # Errors
/// A missing or unreadable file, an unsupported extension, malformed YAML or JSON, unknown
/// keys or wrong types (with line, column and key), or an inconsistent definition (every
/// problem listed).
pub fn load_schema(path: &Path) -> Result<Schema, DatasetError> {
    let schema: Schema = parse_file(path)?;
    schema
        .check_definition()
        .map_err(|source| DatasetError::InvalidSchema {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(schema)
}

/// Reads and deserializes a YAML or JSON file, by extension.
pub(crate) fn parse_file<T: DeserializeOwned>(path: &Path) -> Result<T, DatasetError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let parse_error = |message: String| DatasetError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let json = match extension.as_str() {
        "yaml" | "yml" => false,
        "json" => true,
        _ => {
            return Err(parse_error(
                "unsupported extension (expected .yaml, .yml or .json)".into(),
            ));
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DatasetError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            DatasetError::Io {
                action: "read",
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    if json {
        serde_json::from_str(&text).map_err(|e| parse_error(e.to_string()))
    } else {
        serde_yaml::from_str(&text).map_err(|e| parse_error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn loads_yaml_and_json_schemas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = write(
            dir.path(),
            "s.yaml",
            "name: t\nindex: id\ncolumns:\n  - {name: id, type: int64}\n  - {name: x, type: float64, nullable: true}\n",
        );
        let schema = load_schema(&yaml).expect("yaml");
        assert_eq!(schema.index.as_deref(), Some("id"));
        assert_eq!(schema.columns.len(), 2);
        let json = write(
            dir.path(),
            "s.json",
            r#"{"columns": [{"name": "id", "type": "int64"}]}"#,
        );
        assert_eq!(load_schema(&json).expect("json").columns.len(), 1);
    }

    #[test]
    fn errors_name_the_file_and_the_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unknown = write(
            dir.path(),
            "unknown.yaml",
            "columns:\n  - {name: id, type: int64}\n  - {name: x, tpye: float64}\n", // spellchecker:disable-line
        );
        let message = load_schema(&unknown).expect_err("unknown key").to_string();
        assert!(message.contains("unknown.yaml"), "{message}");
        assert!(message.contains("tpye"), "{message}"); // spellchecker:disable-line
        assert!(message.contains("line 3"), "{message}");

        let bad_type = write(
            dir.path(),
            "bad_type.yaml",
            "columns:\n  - {name: id, type: integer}\n",
        );
        let message = load_schema(&bad_type).expect_err("bad type").to_string();
        assert!(
            message.contains("bad_type.yaml") && message.contains("integer"),
            "{message}"
        );
        assert!(message.contains("columns[0].type"), "{message}");

        let inconsistent = write(
            dir.path(),
            "inconsistent.yaml",
            "index: nope\ncolumns:\n  - {name: id, type: int64}\n",
        );
        let error = load_schema(&inconsistent).expect_err("index not a column");
        assert!(
            matches!(error, DatasetError::InvalidSchema { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("inconsistent.yaml"), "{error}");

        let missing = load_schema(&dir.path().join("absent.yaml")).expect_err("missing");
        assert!(
            missing.to_string().contains("absent.yaml: no such file"),
            "{missing}"
        );

        let txt = write(dir.path(), "schema.txt", "columns: []");
        assert!(
            load_schema(&txt)
                .expect_err("extension")
                .to_string()
                .contains("extension")
        );
    }
}
