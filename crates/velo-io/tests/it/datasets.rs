//! Readers and writers: round trips, digests, limit and projection, atomicity, errors.

use std::{path::Path, sync::Arc};

use arrow::{
    array::{
        ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array, Int16Array,
        Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt8Array,
        UInt16Array, UInt32Array, UInt64Array,
    },
    datatypes::{DataType, Schema},
};
use proptest::{collection::vec, option, prelude::*};
use velo_io::datasets::{
    Compression, CsvReader, CsvWriter, DatasetError, DatasetReader, DatasetWriter, LineageBuilder,
    ParquetReader, ParquetWriter, Reader, Writer, load_schema, pandas_index_columns,
};

use crate::chain;

/// One column of every type velo schemas know, each with nulls.
#[derive(Debug, Clone)]
struct Columns {
    i8: Vec<Option<i8>>,
    i16: Vec<Option<i16>>,
    i32: Vec<Option<i32>>,
    i64: Vec<Option<i64>>,
    u8: Vec<Option<u8>>,
    u16: Vec<Option<u16>>,
    u32: Vec<Option<u32>>,
    u64: Vec<Option<u64>>,
    f32: Vec<Option<f32>>,
    f64: Vec<Option<f64>>,
    flag: Vec<Option<bool>>,
    text: Vec<Option<String>>,
    day: Vec<Option<i32>>,
    time: Vec<Option<i64>>,
}

/// The velo schema of [`Columns`], every column nullable.
const SCHEMA_YAML: &str = "columns:
  - {name: i8, type: int8, nullable: true}
  - {name: i16, type: int16, nullable: true}
  - {name: i32, type: int32, nullable: true}
  - {name: i64, type: int64, nullable: true}
  - {name: u8, type: uint8, nullable: true}
  - {name: u16, type: uint16, nullable: true}
  - {name: u32, type: uint32, nullable: true}
  - {name: u64, type: uint64, nullable: true}
  - {name: f32, type: float32, nullable: true}
  - {name: f64, type: float64, nullable: true}
  - {name: flag, type: bool, nullable: true}
  - {name: text, type: string, nullable: true}
  - {name: day, type: date, nullable: true}
  - {name: time, type: datetime, nullable: true}
";

impl Columns {
    fn batch(&self) -> RecordBatch {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("i8", Arc::new(Int8Array::from(self.i8.clone()))),
            ("i16", Arc::new(Int16Array::from(self.i16.clone()))),
            ("i32", Arc::new(Int32Array::from(self.i32.clone()))),
            ("i64", Arc::new(Int64Array::from(self.i64.clone()))),
            ("u8", Arc::new(UInt8Array::from(self.u8.clone()))),
            ("u16", Arc::new(UInt16Array::from(self.u16.clone()))),
            ("u32", Arc::new(UInt32Array::from(self.u32.clone()))),
            ("u64", Arc::new(UInt64Array::from(self.u64.clone()))),
            ("f32", Arc::new(Float32Array::from(self.f32.clone()))),
            ("f64", Arc::new(Float64Array::from(self.f64.clone()))),
            ("flag", Arc::new(BooleanArray::from(self.flag.clone()))),
            ("text", Arc::new(StringArray::from(self.text.clone()))),
            ("day", Arc::new(Date32Array::from(self.day.clone()))),
            (
                "time",
                Arc::new(TimestampMicrosecondArray::from(self.time.clone())),
            ),
        ];
        RecordBatch::try_from_iter_with_nullable(
            columns.into_iter().map(|(name, array)| (name, array, true)),
        )
        .expect("batch")
    }
}

fn columns(max_rows: usize) -> impl Strategy<Value = Columns> {
    (0..=max_rows).prop_flat_map(|n| {
        let ints = (
            vec(option::of(any::<i8>()), n),
            vec(option::of(any::<i16>()), n),
            vec(option::of(any::<i32>()), n),
            vec(option::of(any::<i64>()), n),
            vec(option::of(any::<u8>()), n),
            vec(option::of(any::<u16>()), n),
            vec(option::of(any::<u32>()), n),
            vec(option::of(any::<u64>()), n),
        );
        let others = (
            vec(option::of(-1e30_f32..1e30), n),
            vec(
                option::of(proptest::num::f64::NORMAL | proptest::num::f64::ZERO),
                n,
            ),
            vec(option::of(any::<bool>()), n),
            // Non-empty: in CSV an empty field is a null.
            vec(option::of("[a-zA-Z0-9 ,;\"'é-]{1,12}"), n),
            vec(option::of(-25_000_i32..60_000), n),
            vec(
                option::of(-2_000_000_000_000_000_i64..4_000_000_000_000_000),
                n,
            ),
        );
        (ints, others).prop_map(|((i8, i16, i32, i64, u8, u16, u32, u64), others)| {
            let (f32, f64, flag, text, day, time) = others;
            Columns {
                i8,
                i16,
                i32,
                i64,
                u8,
                u16,
                u32,
                u64,
                f32,
                f64,
                flag,
                text,
                day,
                time,
            }
        })
    })
}

fn assert_same_data(read: &RecordBatch, written: &RecordBatch) {
    assert_eq!(read.num_rows(), written.num_rows());
    assert_eq!(read.num_columns(), written.num_columns());
    for (i, field) in written.schema().fields().iter().enumerate() {
        assert_eq!(read.schema().field(i).name(), field.name());
        assert_eq!(
            read.column(i).as_ref(),
            written.column(i).as_ref(),
            "column {}",
            field.name()
        );
    }
}

fn digest_of(batch: &RecordBatch) -> String {
    let mut builder = LineageBuilder::new("b", "file:///b", batch.schema()).expect("builder");
    builder.push(batch).expect("push");
    builder.finish().digest
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn parquet_and_csv_round_trip_with_one_digest(data in columns(40), batch_size in 1_usize..9) {
        let dir = tempfile::tempdir().expect("tempdir");
        let batch = data.batch();
        let parquet = dir.path().join("data.parquet");
        let csv = dir.path().join("data.csv");
        let schema_file = dir.path().join("schema.yaml");
        std::fs::write(&schema_file, SCHEMA_YAML).expect("schema");

        let mut writer = ParquetWriter::new(&parquet);
        writer.compression = Compression::Zstd;
        writer.row_group_size = 7;
        let summary = Writer::ParquetWriter(writer).write(&batch).expect("write parquet");
        prop_assert_eq!(summary.rows, batch.num_rows());
        Writer::CsvWriter(CsvWriter::new(&csv)).write(&batch).expect("write csv");

        let mut reader = ParquetReader::new(&parquet);
        reader.batch_size = batch_size;
        let from_parquet = Reader::ParquetReader(reader).read().expect("read parquet");
        assert_same_data(&from_parquet.data, &batch);
        prop_assert_eq!(from_parquet.lineage.rows, batch.num_rows());
        prop_assert_eq!(from_parquet.lineage.columns, 14);

        let mut reader = CsvReader::new(&csv);
        reader.schema = Some(schema_file.clone());
        reader.batch_size = batch_size + 3;
        let from_csv = Reader::CsvReader(reader).read().expect("read csv");
        assert_same_data(&from_csv.data, &batch);

        // One digest whatever the format, the batch size or the compression.
        let digest = digest_of(&batch);
        prop_assert_eq!(&from_parquet.lineage.digest, &digest);
        prop_assert_eq!(&from_csv.lineage.digest, &digest);
        let whole = ParquetReader::new(&parquet).read().expect("read parquet whole");
        prop_assert_eq!(&whole.lineage.digest, &digest);

        // The data also passes its own schema, unchanged.
        let schema = load_schema(&schema_file).expect("load schema");
        let validated = ParquetReader::new(&parquet).read_validated(&schema).expect("validated");
        assert_same_data(&validated.data, &batch);

        // Changing one value changes the digest.
        if batch.num_rows() > 0 {
            let mut changed = data.clone();
            changed.i64[0] = match changed.i64[0] {
                Some(v) => Some(v.wrapping_add(1)),
                None => Some(0),
            };
            prop_assert_ne!(digest_of(&changed.batch()), digest);
        }
    }
}

/// A small table: `id` 0..n, `x` = id * 1.5, `name` = "row {id}".
fn table(n: i64) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
        ),
        (
            "x",
            Arc::new(Float64Array::from_iter_values(
                (0..n).map(|i| i as f64 * 1.5),
            )) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("row {i}")),
            )) as ArrayRef,
        ),
    ])
    .expect("table")
}

#[test]
fn limit_and_projection_read_only_what_is_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = table(1000);
    let parquet = dir.path().join("t.parquet");
    let csv = dir.path().join("t.csv");
    ParquetWriter::new(&parquet).write(&data).expect("parquet");
    CsvWriter::new(&csv).write(&data).expect("csv");

    let expected = data.slice(0, 10).project(&[2, 0]).expect("project");
    let readers = [
        Reader::ParquetReader(ParquetReader {
            limit: Some(10),
            columns: Some(vec!["name".into(), "id".into()]),
            batch_size: 3,
            ..ParquetReader::new(&parquet)
        }),
        Reader::CsvReader(CsvReader {
            limit: Some(10),
            columns: Some(vec!["name".into(), "id".into()]),
            batch_size: 3,
            ..CsvReader::new(&csv)
        }),
    ];
    for reader in &readers {
        let dataset = reader.read().expect("read");
        assert_eq!(dataset.data.schema().fields().len(), 2);
        assert_same_data(&dataset.data, &expected);
        let sizes: Vec<usize> = reader
            .stream()
            .expect("stream")
            .map(|b| b.expect("batch").num_rows())
            .collect();
        assert_eq!(sizes, vec![3, 3, 3, 1], "{}", reader.path().display());
        assert_eq!(reader.stream().expect("stream").expected_rows(), Some(10));
        assert!(
            dataset.lineage.source_uri.starts_with("file:///"),
            "{}",
            dataset.lineage.source_uri
        );
        assert!(dataset.lineage.source_uri.ends_with(&format!(
            "/{}",
            reader.path().file_name().expect("name").to_string_lossy()
        )));
        assert_eq!(dataset.lineage.name, "t");
    }
    // The same logical slice has the same digest from both formats.
    let digests: Vec<String> = readers
        .iter()
        .map(|r| r.read().expect("read").lineage.digest)
        .collect();
    assert_eq!(digests[0], digests[1]);

    let missing = Reader::ParquetReader(ParquetReader {
        columns: Some(vec!["id".into(), "nope".into()]),
        ..ParquetReader::new(&parquet)
    })
    .read()
    .expect_err("missing column");
    assert!(
        matches!(missing, DatasetError::MissingColumns { .. }),
        "{missing:?}"
    );
    let message = missing.to_string();
    assert!(
        message.contains("t.parquet has no column `nope`"),
        "{message}"
    );
}

#[test]
fn a_csv_limit_stops_before_later_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("bad_later.csv");
    let mut text = String::from("a,b\n");
    for i in 0..20 {
        text.push_str(&format!("{i},{}\n", i * 2));
    }
    text.push_str("20\n");
    std::fs::write(&csv, text).expect("write");
    let limited = CsvReader {
        limit: Some(20),
        ..CsvReader::new(&csv)
    }
    .read()
    .expect("limited");
    assert_eq!(limited.data.num_rows(), 20);
    let error = CsvReader::new(&csv).read().expect_err("bad line");
    let message = chain(&error);
    assert!(
        message.starts_with(&format!("cannot read csv file {}", csv.display())),
        "{message}"
    );
    assert!(message.contains("line 22"), "{message}");
}

#[test]
fn csv_types_are_inferred_as_pandas_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("t.csv");
    std::fs::write(
        &csv,
        "n;x;flag;day;label;empty\n1;0.5;true;2011-01-01;a;\n2;1;false;2011-01-02;b;\n",
    )
    .expect("write");
    let data = CsvReader {
        delimiter: ';',
        ..CsvReader::new(&csv)
    }
    .read()
    .expect("read")
    .data;
    let types: Vec<DataType> = data
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        vec![
            DataType::Int64,
            DataType::Float64,
            DataType::Boolean,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8
        ]
    );
    let error = CsvReader {
        delimiter: 'é',
        ..CsvReader::new(&csv)
    }
    .read()
    .expect_err("delimiter");
    assert!(
        error.to_string().contains("not one ASCII character"),
        "{error}"
    );
}

#[test]
fn reads_the_pandas_written_parquet_files() {
    let Some(dir) = crate::shared_bike_dir() else {
        return;
    };
    let reader = Reader::ParquetReader(ParquetReader::new(dir.join("inputs_train.parquet")));
    let dataset = reader.read().expect("read");
    assert_eq!(dataset.data.num_rows(), 13_903);
    assert_eq!(dataset.lineage.columns, 16);
    let schema = dataset.data.schema();
    assert_eq!(schema.field(15).name(), "instant");
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    assert_eq!(pandas_index_columns(&schema), vec!["instant".to_owned()]);
    let instant = dataset
        .data
        .column(15)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64");
    assert_eq!(instant.value(0), 1);
    assert_eq!(instant.value(13_902), 13_903);

    // The same file validates against the project's inputs schema, with lossless coercion.
    let schema = load_schema(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/schemas/inputs.yaml"),
    )
    .expect("schema");
    let validated = reader.read_validated(&schema).expect("valid");
    assert_eq!(
        validated.data.schema().field(1).data_type(),
        &DataType::Date32
    );
    assert_eq!(validated.lineage.rows, 13_903);
    assert_ne!(validated.lineage.digest, dataset.lineage.digest);
}

#[test]
fn validation_errors_name_the_file_and_every_violation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parquet = dir.path().join("t.parquet");
    ParquetWriter::new(&parquet)
        .write(&table(50))
        .expect("write");
    let schema_file = dir.path().join("schema.yaml");
    std::fs::write(
        &schema_file,
        "name: small\ncolumns:\n  - {name: id, type: uint8, max: 40}\n  - {name: x, type: float64, min: 3}\n  - {name: name, type: string}\n",
    )
    .expect("schema");
    let schema = load_schema(&schema_file).expect("schema");
    let reader = ParquetReader {
        batch_size: 8,
        ..ParquetReader::new(&parquet)
    };
    let error = reader.read_validated(&schema).expect_err("violations");
    let message = chain(&error);
    assert!(
        message.starts_with(&format!(
            "{} does not match schema small",
            parquet.display()
        )),
        "{message}"
    );
    // Rows 41..49 break the maximum (found across batches), rows 0 and 1 the minimum.
    assert!(
        message.contains("column 'id': 9 rows above the maximum 40"),
        "{message}"
    );
    assert!(
        message.contains("column 'x': 2 rows below the minimum 3"),
        "{message}"
    );
}

#[test]
fn writes_are_atomic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("nested/deeper/out.parquet");
    let writer = Writer::ParquetWriter(ParquetWriter::new(&target));
    writer.write(&table(5)).expect("first write");
    let before = std::fs::read(&target).expect("read");

    // A batch of another schema fails the write and leaves the file as it was.
    let mut sink = writer.open(table(1).schema()).expect("open");
    sink.push(&table(3)).expect("push");
    let other = table(2).project(&[0, 1]).expect("project");
    let error = sink.push(&other).expect_err("mismatch");
    assert!(error.to_string().contains("out.parquet"), "{error}");
    drop(sink);
    // A sink dropped without finish leaves it too.
    let mut sink = writer.open(table(1).schema()).expect("open");
    sink.push(&table(7)).expect("push");
    drop(sink);
    assert_eq!(std::fs::read(&target).expect("read"), before);
    let names: Vec<String> = std::fs::read_dir(target.parent().expect("parent"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["out.parquet".to_owned()]);

    // A finished sink replaces it.
    let mut sink = writer.open(table(1).schema()).expect("open");
    sink.push(&table(4)).expect("push");
    sink.push(&table(2)).expect("push");
    let summary = sink.finish().expect("finish");
    assert_eq!(summary.rows, 6);
    assert_eq!(
        summary.bytes,
        std::fs::metadata(&target).expect("meta").len()
    );
    assert_eq!(
        ParquetReader::new(&target)
            .read()
            .expect("read")
            .data
            .num_rows(),
        6
    );

    // Invalid options fail before anything is created.
    let bad = ParquetWriter {
        compression: Compression::Snappy,
        compression_level: Some(3),
        ..ParquetWriter::new(dir.path().join("never/x.parquet"))
    };
    let message = bad.write(&table(1)).expect_err("level").to_string();
    assert!(
        message.contains("compression_level is only valid with zstd or gzip"),
        "{message}"
    );
    assert!(!dir.path().join("never").exists());
}

#[test]
fn compression_codecs_and_levels_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = table(100);
    for (compression, level) in [
        (Compression::None, None),
        (Compression::Snappy, None),
        (Compression::Zstd, Some(19)),
        (Compression::Lz4, None),
        (Compression::Gzip, Some(9)),
    ] {
        let path = dir.path().join(format!("{compression:?}.parquet"));
        let writer = ParquetWriter {
            compression,
            compression_level: level,
            ..ParquetWriter::new(&path)
        };
        writer.write(&data).expect("write");
        assert_same_data(&ParquetReader::new(&path).read().expect("read").data, &data);
    }
    let error = ParquetWriter {
        compression: Compression::Zstd,
        compression_level: Some(30),
        ..ParquetWriter::new(dir.path().join("z.parquet"))
    }
    .write(&data)
    .expect_err("level out of range");
    assert!(error.to_string().contains("compression level"), "{error}");
}

#[test]
fn config_types_parse_with_kind_and_defaults_and_refuse_unknown_keys() {
    let reader: Reader =
        serde_yaml::from_str("KIND: CsvReader\npath: data/x.csv\nlimit: 5\n").expect("reader");
    let Reader::CsvReader(csv) = &reader else {
        panic!("{reader:?}")
    };
    assert_eq!(
        (csv.limit, csv.batch_size, csv.delimiter, csv.has_header),
        (Some(5), 65_536, ',', true)
    );
    let writer: Writer = serde_yaml::from_str(
        "KIND: ParquetWriter\npath: out/x.parquet\ncompression: zstd\ncompression_level: 7\nindex: id\n",
    )
    .expect("writer");
    let Writer::ParquetWriter(parquet) = &writer else {
        panic!("{writer:?}")
    };
    assert_eq!(parquet.compression, Compression::Zstd);
    assert_eq!(parquet.row_group_size, 1 << 20);
    let error = serde_yaml::from_str::<Reader>("KIND: ParquetReader\npath: x\nlimt: 3\n")
        .expect_err("unknown key")
        .to_string();
    assert!(error.contains("limt"), "{error}"); // spellchecker:disable-line
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.parquet");
    ParquetWriter::new(&path)
        .write(&table(2000))
        .expect("write");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let error = ParquetReader::new(&path).read().expect_err("truncated");
    let message = chain(&error);
    assert!(
        message.starts_with(&format!(
            "cannot read parquet file {}: file is truncated or not Parquet",
            path.display()
        )),
        "{message}"
    );

    let csv_as_parquet = dir.path().join("table.parquet");
    std::fs::write(&csv_as_parquet, "a,b\n1,2\n").expect("write");
    let message = chain(
        &ParquetReader::new(&csv_as_parquet)
            .read()
            .expect_err("not parquet"),
    );
    assert!(
        message.contains("file is truncated or not Parquet"),
        "{message}"
    );

    let absent = dir.path().join("absent.parquet");
    let message = ParquetReader::new(&absent)
        .read()
        .expect_err("absent")
        .to_string();
    assert_eq!(
        message,
        format!("cannot read {}: no such file", absent.display())
    );
    let message = CsvReader::new(dir.path().join("absent.csv"))
        .read()
        .expect_err("absent")
        .to_string();
    assert!(message.ends_with("absent.csv: no such file"), "{message}");

    let csv = dir.path().join("short.csv");
    std::fs::write(&csv, "a,b\n1,2\n3\n4,5\n").expect("write");
    let message = chain(&CsvReader::new(&csv).read().expect_err("short row"));
    assert!(message.contains("short.csv"), "{message}");
    assert!(message.contains("line 3"), "{message}");

    // Values that do not parse as the declared type name their line too (counted from 1).
    let typed = dir.path().join("typed.csv");
    std::fs::write(&typed, "a,b\n1,2\n3,x\n").expect("write");
    let types = dir.path().join("types.yaml");
    std::fs::write(
        &types,
        "columns: [{name: a, type: int64}, {name: b, type: int64}]",
    )
    .expect("write");
    let reader = CsvReader {
        schema: Some(types),
        ..CsvReader::new(&typed)
    };
    let message = chain(&reader.read().expect_err("not an integer"));
    assert!(message.contains("typed.csv"), "{message}");
    assert!(
        message.contains("'x' as type 'Int64' for column 1 at line 3"),
        "{message}"
    );

    let bad_schema = dir.path().join("bad.yaml");
    std::fs::write(
        &bad_schema,
        "columns:\n  - {name: a, type: int64}\n  - {name: b, typ: int64}\n",
    )
    .expect("write");
    let reader = CsvReader {
        schema: Some(bad_schema),
        ..CsvReader::new(&csv)
    };
    let message = reader.read().expect_err("bad schema").to_string();
    assert!(
        message.contains("bad.yaml") && message.contains("typ") && message.contains("line 3"),
        "{message}"
    );

    let reader = ParquetReader {
        batch_size: 0,
        ..ParquetReader::new(&absent)
    };
    let message = reader.read().expect_err("batch size").to_string();
    assert!(
        message.contains("batch_size must be at least 1"),
        "{message}"
    );
}

#[test]
fn empty_datasets_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = table(0);
    let parquet = dir.path().join("e.parquet");
    let csv = dir.path().join("e.csv");
    ParquetWriter::new(&parquet).write(&empty).expect("parquet");
    CsvWriter::new(&csv).write(&empty).expect("csv");
    let read = ParquetReader::new(&parquet).read().expect("read");
    assert_eq!(read.data.num_rows(), 0);
    assert_eq!(read.data.schema().fields().len(), 3);
    assert_eq!(std::fs::read_to_string(&csv).expect("csv"), "id,x,name\n");
    let schema: &Schema = &read.lineage.schema;
    assert_eq!(schema.fields().len(), 3);
}
