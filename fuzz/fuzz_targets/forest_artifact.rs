//! A valid artifact of a small fitted forest, edited by the fuzzer: tensor values changed,
//! tensors shortened or lengthened, JSON sections altered. The content hash is recomputed
//! (`to_bytes`), so the edits reach the model's own validation; a model that loads must then
//! predict and explain a batch of inputs without panicking.
#![no_main]

use std::sync::{Arc, OnceLock};

use arrow::{
    array::{ArrayRef, Float64Array, Int64Array, RecordBatch},
    datatypes::{DataType, Field, Schema as ArrowSchema},
};
use libfuzzer_sys::fuzz_target;
use velo_core::{
    schemas::{ColumnSpec, ColumnType, Schema, Value},
};
use velo_models::{
        FeaturesConfig, ForestModel, Model, RandomForestModel,
        artifact::{Artifact, Tensor, TensorData},
        load_model,
    };

struct Fixture {
    artifact: Artifact,
    inputs: RecordBatch,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut category = ColumnSpec::new("c", ColumnType::Categorical);
        category.allowed = Some((1_i64..=3).map(Value::from).collect());
        let schema = Schema::new(vec![
            ColumnSpec::new("x0", ColumnType::Float64),
            ColumnSpec::new("x1", ColumnType::Float64),
            category,
        ]);
        let rows: u32 = 64;
        let x0: Vec<f64> = (0..rows).map(|i| f64::from(i) / 7.0).collect();
        let x1: Vec<f64> = (0..rows).map(|i| f64::from((i * 13) % 17)).collect();
        let c: Vec<i64> = (0..rows).map(|i| i64::from(i % 3 + 1)).collect();
        let targets: Vec<f64> = (0..rows as usize)
            .map(|i| x0[i] * 2.0 - x1[i] + c[i] as f64)
            .collect();
        let arrow_schema = Arc::new(ArrowSchema::new(vec![
            Field::new("x0", DataType::Float64, false),
            Field::new("x1", DataType::Float64, false),
            Field::new("c", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(x0)),
            Arc::new(Float64Array::from(x1)),
            Arc::new(Int64Array::from(c)),
        ];
        let inputs = RecordBatch::try_new(arrow_schema, columns).expect("a valid batch");
        let config = RandomForestModel {
            n_estimators: 4,
            max_depth: Some(4),
            features: FeaturesConfig {
                categoricals: vec!["c".into()],
                ..FeaturesConfig::default()
            },
            ..RandomForestModel::default()
        };
        let mut model = ForestModel::new(config, schema);
        model.fit(&inputs, &targets).expect("the fixture fits");
        let artifact = model.to_artifact().expect("a fitted model");
        Fixture { artifact, inputs }
    })
}

/// Reads little-endian numbers off the fuzzer's bytes.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

fn edit_tensor(tensor: &mut Tensor, index: usize, bits: u64, resize: bool) {
    let len = tensor.data.len();
    let at = index % (len + 1);
    macro_rules! apply {
        ($values:expr, $value:expr) => {{
            if resize {
                $values.truncate(at);
            } else if at < len {
                $values[at] = $value;
            } else {
                $values.push($value);
            }
        }};
    }
    match &mut tensor.data {
        TensorData::F32(values) => apply!(values, f32::from_bits(bits as u32)),
        TensorData::F64(values) => apply!(values, f64::from_bits(bits)),
        TensorData::U32(values) => apply!(values, bits as u32),
        TensorData::U64(values) => apply!(values, bits),
        _ => {}
    }
    // Keep the shape consistent with the values half of the time, so both the artifact's
    // shape check and the model's own checks get exercised.
    if bits % 2 == 0 {
        tensor.shape = vec![tensor.data.len()];
    }
}

fn edit_section(json: &mut String, index: usize, byte: u8) {
    let mut bytes = std::mem::take(json).into_bytes();
    if bytes.is_empty() {
        bytes.push(byte);
    } else {
        let at = index % bytes.len();
        bytes[at] = byte;
    }
    *json = String::from_utf8_lossy(&bytes).into_owned();
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let mut artifact = fixture.artifact.clone();
    let mut input = Input(data);
    while let (Some([op]), Some(index), Some(bits)) =
        (input.take::<1>(), input.take::<4>(), input.take::<8>())
    {
        let index = u32::from_le_bytes(index) as usize;
        let bits = u64::from_le_bytes(bits);
        let n_tensors = artifact.tensors.len();
        let n_sections = artifact.sections.len();
        let target = usize::from(op >> 1) % (n_tensors + n_sections).max(1);
        if target < n_tensors {
            if let Some(tensor) = artifact.tensors.values_mut().nth(target) {
                edit_tensor(tensor, index, bits, op & 1 == 1);
            }
        } else if let Some(json) = artifact.sections.values_mut().nth(target - n_tensors) {
            edit_section(json, index, bits as u8);
        }
    }
    let Ok(bytes) = artifact.to_bytes() else {
        return;
    };
    let Ok(loaded) = Artifact::from_bytes(&bytes) else {
        return;
    };
    if let Ok(model) = load_model(&loaded) {
        let _ = model.predict(&fixture.inputs);
        let _ = model.predict(&fixture.inputs.slice(0, 1));
        let _ = model.explain_model();
        let _ = model.explain_samples(&fixture.inputs.slice(0, 4));
    }
});
