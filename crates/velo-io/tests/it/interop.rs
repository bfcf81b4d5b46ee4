//! Parquet written by velo, read back by pandas and polars.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array, Int16Array,
    Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt8Array,
    UInt16Array, UInt32Array, UInt64Array,
};
use velo_io::datasets::{Compression, DatasetWriter, ParquetWriter};

/// Reads the file with pandas and polars and prints what they see as JSON.
const SCRIPT: &str = r#"
import json, sys
import pandas as pd
import polars as pl

path = sys.argv[1]
df = pd.read_parquet(path)
pdf = pl.read_parquet(path)

def plain(value):
    if value is None or pd.isna(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value

print(json.dumps({
    "pandas": {
        "index_name": df.index.name,
        "index": [plain(v) for v in df.index.tolist()],
        "columns": list(df.columns),
        "dtypes": {c: str(t) for c, t in df.dtypes.items()},
        "values": {c: [plain(v) for v in df[c].tolist()] for c in df.columns},
    },
    "polars": {
        "columns": pdf.columns,
        "dtypes": {c: str(t) for c, t in pdf.schema.items()},
        "values": {c: [plain(v) for v in pdf[c].to_list()] for c in pdf.columns},
    },
}))
"#;

fn batch() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(vec![10, 20, 30]))),
        ("i8", Arc::new(Int8Array::from(vec![-128, 0, 127]))),
        ("i16", Arc::new(Int16Array::from(vec![-1, 0, 1]))),
        (
            "i32",
            Arc::new(Int32Array::from(vec![i32::MIN, 0, i32::MAX])),
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
        ),
        ("u8", Arc::new(UInt8Array::from(vec![0, 1, 255]))),
        ("u16", Arc::new(UInt16Array::from(vec![0, 1, 65_535]))),
        ("u32", Arc::new(UInt32Array::from(vec![0, 1, u32::MAX]))),
        ("u64", Arc::new(UInt64Array::from(vec![0, 1, 1 << 60]))),
        (
            "f32",
            Arc::new(Float32Array::from(vec![Some(0.5), None, Some(-2.25)])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![Some(1.5), Some(2.5), None])),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(vec![true, false, true])),
        ),
        (
            "text",
            Arc::new(StringArray::from(vec![Some("a"), None, Some("ç")])),
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![Some(0), Some(18_262), None])),
        ),
        (
            "time",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_500_000),
                None,
                Some(0),
            ])),
        ),
    ];
    RecordBatch::try_from_iter(columns).expect("batch")
}

#[test]
fn pandas_and_polars_read_velos_parquet_with_the_right_types() {
    let Some(python) = crate::python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("interop.parquet");
    let writer = ParquetWriter {
        index: Some("id".to_owned()),
        compression: Compression::Zstd,
        ..ParquetWriter::new(&path)
    };
    writer.write(&batch()).expect("write");
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let pandas = &seen["pandas"];

    // pandas restores the index column as the index, and keeps the column order.
    assert_eq!(pandas["index_name"], "id");
    assert_eq!(pandas["index"], serde_json::json!([10, 20, 30]));
    let expected_columns = [
        "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64", "flag", "text", "day",
        "time",
    ];
    assert_eq!(pandas["columns"], serde_json::json!(expected_columns));
    let dtypes = &pandas["dtypes"];
    for (name, dtype) in [
        ("i8", "int8"),
        ("i16", "int16"),
        ("i32", "int32"),
        ("u8", "uint8"),
        ("u16", "uint16"),
        ("u32", "uint32"),
        ("u64", "uint64"),
    ] {
        assert_eq!(dtypes[name], dtype, "{name}");
    }
    // pandas' own convention for integers with missing values (numpy-backed frames).
    assert_eq!(dtypes["i64"], "float64");
    assert_eq!(dtypes["f32"], "float32");
    assert_eq!(dtypes["f64"], "float64");
    assert_eq!(dtypes["flag"], "bool");
    assert!(
        matches!(dtypes["text"].as_str(), Some("object" | "str" | "string")),
        "{dtypes}"
    );
    assert_eq!(dtypes["day"], "object");
    assert_eq!(dtypes["time"], "datetime64[us]");
    let values = &pandas["values"];
    assert_eq!(values["i8"], serde_json::json!([-128, 0, 127]));
    assert_eq!(values["u64"], serde_json::json!([0, 1, 1_u64 << 60]));
    assert_eq!(values["i64"], serde_json::json!([1.0, null, 3.0]));
    assert_eq!(values["text"], serde_json::json!(["a", null, "ç"]));
    assert_eq!(
        values["day"],
        serde_json::json!(["1970-01-01", "2020-01-01", null])
    );
    assert_eq!(
        values["time"],
        serde_json::json!(["1970-01-01T00:00:01.500000", null, "1970-01-01T00:00:00"])
    );

    // polars sees the index as an ordinary column, last.
    let polars = &seen["polars"];
    let mut with_index: Vec<&str> = expected_columns.to_vec();
    with_index.push("id");
    assert_eq!(polars["columns"], serde_json::json!(with_index));
    let dtypes = &polars["dtypes"];
    let expected = [
        ("id", "Int64"),
        ("i8", "Int8"),
        ("i16", "Int16"),
        ("i32", "Int32"),
        ("i64", "Int64"),
        ("u8", "UInt8"),
        ("u16", "UInt16"),
        ("u32", "UInt32"),
        ("u64", "UInt64"),
        ("f32", "Float32"),
        ("f64", "Float64"),
        ("flag", "Boolean"),
        ("text", "String"),
        ("day", "Date"),
        ("time", "Datetime(time_unit='us', time_zone=None)"),
    ];
    for (name, dtype) in expected {
        assert_eq!(dtypes[name], dtype, "{name}");
    }
    assert_eq!(polars["values"]["i64"], serde_json::json!([1, null, 3]));
    assert_eq!(polars["values"]["id"], serde_json::json!([10, 20, 30]));
}

/// Writes three Parquet files with pandas itself: a named `RangeIndex` (`id`, starting at 100
/// by 2, so pyarrow keeps it as metadata only), an unnamed one, and a `MultiIndex`.
const PANDAS_WRITES: &str = r#"
import sys
import pandas as pd

out = sys.argv[1]
df = pd.DataFrame({"x": [1.5, 2.5, 3.5, 4.5], "kind": ["a", "b", "a", "b"]})
named = df.copy()
named.index = pd.RangeIndex(start=100, stop=108, step=2, name="id")
named.to_parquet(f"{out}/named.parquet")
df.to_parquet(f"{out}/unnamed.parquet")
multi = df.set_index(["kind", pd.Index([7, 8, 9, 10], name="id")])
multi.to_parquet(f"{out}/multi.parquet")
"#;

#[test]
fn pandas_range_indexes_are_read_as_pandas_shows_them() {
    use arrow::array::AsArray as _;
    use arrow::datatypes::Int64Type;
    use velo_io::datasets::{DatasetReader as _, ParquetReader, load_schema};

    let Some(python) = crate::python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new(&python)
        .args(["-c", PANDAS_WRITES])
        .arg(dir.path())
        .status()
        .expect("python runs");
    assert!(status.success());

    // Named: the index is a column, first, with pandas' values, also when read in batches.
    let mut named = ParquetReader::new(dir.path().join("named.parquet"));
    named.batch_size = 3;
    let data = named.read().expect("reads").data;
    assert_eq!(data.schema().field(0).name(), "id");
    let ids: Vec<i64> = data.column(0).as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(ids, [100, 102, 104, 106]);
    assert_eq!(data.schema().field(1).name(), "x");

    // A schema whose index is `id` validates it (int64 coerced to the schema's type).
    std::fs::write(
        dir.path().join("schema.yaml"),
        "name: t\nindex: id\ncolumns:\n  - {name: id, type: uint32}\n  - {name: x, type: float64}\n  - {name: kind, type: string}\n",
    )
    .expect("schema");
    let schema = load_schema(&dir.path().join("schema.yaml")).expect("loads");
    let validated = ParquetReader::new(dir.path().join("named.parquet"))
        .read_validated(&schema)
        .expect("the range index fills the schema's index");
    assert_eq!(validated.data.num_rows(), 4);

    // Asking for columns by name includes the index wherever it is asked.
    let mut projected = ParquetReader::new(dir.path().join("named.parquet"));
    projected.columns = Some(vec!["x".to_owned(), "id".to_owned()]);
    let data = projected.read().expect("reads").data;
    assert_eq!(data.schema().field(1).name(), "id");
    assert_eq!(data.column(1).as_primitive::<Int64Type>().value(3), 106);

    // Unnamed: no column in pandas either; the schema's index is reported missing, named.
    let error = ParquetReader::new(dir.path().join("unnamed.parquet"))
        .read_validated(&schema)
        .expect_err("no id column");
    let mut said = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        said.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(said.contains("column 'id': missing"), "{said}");

    // A MultiIndex's levels are columns, read as they are.
    let data = ParquetReader::new(dir.path().join("multi.parquet"))
        .read()
        .expect("reads")
        .data;
    let schema = data.schema();
    let names: Vec<&str> = schema
        .fields()
        .iter()
        .map(|field| field.name().as_str())
        .collect();
    assert!(
        names.contains(&"kind") && names.contains(&"id"),
        "{names:?}"
    );
}
