//! The portable model artifact: one safetensors file holding JSON sections and tensors.
//!
//! Layout (format `velo-model`, version [`FORMAT_VERSION`]): a [safetensors] file whose
//! `__metadata__` holds `format`, `format_version`, `velo_version`, `kind` (the model's
//! `KIND`), one `section.<name>` JSON document per section (parameters, the fitted feature
//! pipeline, the input and output schemas, …) and `content_hash`, a BLAKE3 digest of every
//! other metadata entry and every tensor (name, dtype, shape and bytes). Tensors carry the
//! numeric payload: tree nodes, network weights.
//!
//! Loading never trusts the bytes: the safetensors header is bounds-checked by the
//! safetensors crate, then the format, version, hash, dtypes and shapes are checked here, and
//! each model validates its own structure (tree indices, feature indices, tensor shapes) before
//! it is used. A damaged, truncated, foreign or crafted file is an [`ModelError::Artifact`]
//! error, never a panic or an out-of-bounds read.
//!
//! velo-core only turns artifacts into bytes and back; velo-io decides where the bytes live.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Serialize, de::DeserializeOwned};

use super::ModelError;

/// The `format` metadata value of velo model artifacts.
pub const FORMAT: &str = "velo-model";

/// The artifact format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The version of velo-core that writes artifacts.
pub const VELO_VERSION: &str = env!("CARGO_PKG_VERSION");

const SECTION_PREFIX: &str = "section.";

/// A tensor as hashed and stored: name, dtype, shape and little-endian bytes.
type HashedTensor<B> = (String, Dtype, Vec<usize>, B);
const HASH_KEY: &str = "content_hash";

/// The numbers of one tensor.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 32-bit unsigned integers.
    U32(Vec<u32>),
    /// 64-bit unsigned integers.
    U64(Vec<u64>),
}

impl TensorData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(values) => values.len(),
            Self::F64(values) => values.len(),
            Self::U32(values) => values.len(),
            Self::U64(values) => values.len(),
        }
    }

    /// Whether there is no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dtype(&self) -> Dtype {
        match self {
            Self::F32(_) => Dtype::F32,
            Self::F64(_) => Dtype::F64,
            Self::U32(_) => Dtype::U32,
            Self::U64(_) => Dtype::U64,
        }
    }

    /// The values as little-endian bytes: borrowed on little-endian machines (no copy of a
    /// model's largest part while it is saved), converted elsewhere.
    fn le_bytes(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            return Cow::Borrowed(match self {
                Self::F32(values) => bytemuck::cast_slice(values),
                Self::F64(values) => bytemuck::cast_slice(values),
                Self::U32(values) => bytemuck::cast_slice(values),
                Self::U64(values) => bytemuck::cast_slice(values),
            });
        }
        Cow::Owned(match self {
            Self::F32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::F64(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::U32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::U64(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
    }

    fn from_le_bytes(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Self, ModelError> {
        fn decode<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|chunk| {
                    let mut array = [0_u8; N];
                    array.copy_from_slice(chunk);
                    from(array)
                })
                .collect()
        }
        Ok(match dtype {
            Dtype::F32 => Self::F32(decode(bytes, f32::from_le_bytes)),
            Dtype::F64 => Self::F64(decode(bytes, f64::from_le_bytes)),
            Dtype::U32 => Self::U32(decode(bytes, u32::from_le_bytes)),
            Dtype::U64 => Self::U64(decode(bytes, u64::from_le_bytes)),
            other => {
                return Err(invalid(format!(
                    "tensor `{name}` has unsupported dtype {other:?}"
                )));
            }
        })
    }
}

/// A tensor: a shape and its numbers, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The values; their count is the product of the dimensions.
    pub data: TensorData,
}

impl Tensor {
    /// A one-dimensional tensor.
    pub fn vector(data: TensorData) -> Self {
        Self {
            shape: vec![data.len()],
            data,
        }
    }
}

/// A model artifact in memory: what [`Artifact::to_bytes`] writes and
/// [`Artifact::from_bytes`] reads back after checking it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Artifact {
    /// The model's `KIND`.
    pub kind: String,
    /// The velo version that wrote it.
    pub velo_version: String,
    /// The format version it was read in ([`FORMAT_VERSION`] for a new artifact; writing
    /// always uses the current one).
    pub format_version: u32,
    /// JSON documents by name.
    pub sections: BTreeMap<String, String>,
    /// Tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
}

/// Rewrites a safetensors file's JSON header with its keys in sorted order: safetensors writes
/// the metadata from a hash map, whose order changes from process to process, and an artifact
/// must be the same bytes wherever and whenever the same model is written. The data section
/// (its offsets are relative to the header's end) is kept as it is.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, ModelError> {
    const LENGTH: usize = 8;
    let header_length = bytes
        .get(..LENGTH)
        .and_then(|prefix| <[u8; LENGTH]>::try_from(prefix).ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| LENGTH + n <= bytes.len())
        .ok_or_else(|| invalid("the serialized header is truncated"))?;
    let header = &bytes[LENGTH..LENGTH + header_length];
    let mut entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| invalid(format!("cannot read back the serialized header: {e}")))?;
    if let Some(metadata) = entries.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(metadata.take())
            .map_err(|e| invalid(format!("cannot read back the metadata: {e}")))?;
        *metadata = serde_json::to_value(sorted)
            .map_err(|e| invalid(format!("cannot write the metadata: {e}")))?;
    }
    let mut canonical = serde_json::to_vec(&entries)
        .map_err(|e| invalid(format!("cannot write the header: {e}")))?;
    canonical.resize(canonical.len().next_multiple_of(LENGTH), b' ');
    let mut out =
        Vec::with_capacity(LENGTH + canonical.len() + bytes.len() - LENGTH - header_length);
    out.extend_from_slice(&(canonical.len() as u64).to_le_bytes());
    out.extend_from_slice(&canonical);
    out.extend_from_slice(&bytes[LENGTH + header_length..]);
    Ok(out)
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Artifact {
        message: message.into(),
    }
}

impl Artifact {
    /// An empty artifact for a model of this `KIND`, written by this velo version.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            velo_version: VELO_VERSION.to_owned(),
            format_version: FORMAT_VERSION,
            ..Self::default()
        }
    }

    /// Adds a section holding `value` as JSON.
    ///
    /// # Errors
    /// When `value` cannot be serialized as JSON.
    pub fn put_section<T: Serialize>(&mut self, name: &str, value: &T) -> Result<(), ModelError> {
        let json = serde_json::to_string(value)
            .map_err(|e| invalid(format!("cannot serialize section `{name}`: {e}")))?;
        self.sections.insert(name.to_owned(), json);
        Ok(())
    }

    /// Reads a section back.
    ///
    /// # Errors
    /// When the section is missing or does not hold a `T`.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T, ModelError> {
        let json = self
            .sections
            .get(name)
            .ok_or_else(|| invalid(format!("section `{name}` is missing")))?;
        serde_json::from_str(json).map_err(|e| invalid(format!("section `{name}` is invalid: {e}")))
    }

    /// Adds a tensor.
    ///
    /// # Errors
    /// When the shape does not match the number of values.
    pub fn put_tensor(&mut self, name: &str, tensor: Tensor) -> Result<(), ModelError> {
        let expected: usize = tensor.shape.iter().product();
        if expected != tensor.data.len() {
            return Err(invalid(format!(
                "tensor `{name}` has {} values for shape {:?}",
                tensor.data.len(),
                tensor.shape
            )));
        }
        self.tensors.insert(name.to_owned(), tensor);
        Ok(())
    }

    /// The tensor `name`, which must be one-dimensional of `dtype`-matching values.
    fn vector(&self, name: &str) -> Result<&Tensor, ModelError> {
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| invalid(format!("tensor `{name}` is missing")))?;
        if tensor.shape.len() != 1 {
            return Err(invalid(format!(
                "tensor `{name}` has shape {:?}, expected a vector",
                tensor.shape
            )));
        }
        Ok(tensor)
    }

    /// A vector of `f32`.
    ///
    /// # Errors
    /// When missing, not a vector, or of another dtype.
    pub fn f32s(&self, name: &str) -> Result<&[f32], ModelError> {
        match &self.vector(name)?.data {
            TensorData::F32(values) => Ok(values),
            _ => Err(invalid(format!("tensor `{name}` is not f32"))),
        }
    }

    /// A vector of `f64`.
    ///
    /// # Errors
    /// When missing, not a vector, or of another dtype.
    pub fn f64s(&self, name: &str) -> Result<&[f64], ModelError> {
        match &self.vector(name)?.data {
            TensorData::F64(values) => Ok(values),
            _ => Err(invalid(format!("tensor `{name}` is not f64"))),
        }
    }

    /// A vector of `u32`.
    ///
    /// # Errors
    /// When missing, not a vector, or of another dtype.
    pub fn u32s(&self, name: &str) -> Result<&[u32], ModelError> {
        match &self.vector(name)?.data {
            TensorData::U32(values) => Ok(values),
            _ => Err(invalid(format!("tensor `{name}` is not u32"))),
        }
    }

    /// A vector of `u64`.
    ///
    /// # Errors
    /// When missing, not a vector, or of another dtype.
    pub fn u64s(&self, name: &str) -> Result<&[u64], ModelError> {
        match &self.vector(name)?.data {
            TensorData::U64(values) => Ok(values),
            _ => Err(invalid(format!("tensor `{name}` is not u64"))),
        }
    }

    /// The metadata entries other than the hash, sorted.
    fn metadata(&self) -> BTreeMap<String, String> {
        let mut metadata = BTreeMap::from([
            ("format".to_owned(), FORMAT.to_owned()),
            ("format_version".to_owned(), FORMAT_VERSION.to_string()),
            ("velo_version".to_owned(), self.velo_version.clone()),
            ("kind".to_owned(), self.kind.clone()),
        ]);
        for (name, json) in &self.sections {
            metadata.insert(format!("{SECTION_PREFIX}{name}"), json.clone());
        }
        metadata
    }

    /// The content hash: BLAKE3 over the metadata and the tensors, length-prefixed.
    fn content_hash<B: AsRef<[u8]>>(
        metadata: &BTreeMap<String, String>,
        tensors: &[HashedTensor<B>],
    ) -> String {
        let mut hasher = blake3::Hasher::new();
        let mut put = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        for (key, value) in metadata {
            put(key.as_bytes());
            put(value.as_bytes());
        }
        for (name, dtype, shape, bytes) in tensors {
            put(name.as_bytes());
            put(format!("{dtype:?}").as_bytes());
            let shape: Vec<u8> = shape
                .iter()
                .flat_map(|d| (*d as u64).to_le_bytes())
                .collect();
            put(&shape);
            put(bytes.as_ref());
        }
        hasher.finalize().to_hex().to_string()
    }

    /// Serializes the artifact.
    ///
    /// # Errors
    /// When safetensors refuses the layout (it does not for well-formed artifacts).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let tensors: Vec<HashedTensor<Cow<'_, [u8]>>> = self
            .tensors
            .iter()
            .map(|(name, tensor)| {
                (
                    name.clone(),
                    tensor.data.dtype(),
                    tensor.shape.clone(),
                    tensor.data.le_bytes(),
                )
            })
            .collect();
        let metadata = self.metadata();
        let hash = Self::content_hash(&metadata, &tensors);
        let mut info: HashMap<String, String> = metadata.into_iter().collect();
        info.insert(HASH_KEY.to_owned(), hash);
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes.as_ref())
                    .map(|view| (name.clone(), view))
                    .map_err(|e| invalid(format!("tensor `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bytes = safetensors::serialize(views, Some(info))
            .map_err(|e| invalid(format!("cannot serialize: {e}")))?;
        canonical_header(bytes)
    }

    /// Reads and checks an artifact: safetensors layout, format, version, hash, dtypes.
    ///
    /// # Errors
    /// [`ModelError::Artifact`] naming what is wrong; never panics on any input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let parsed = SafeTensors::deserialize(bytes).map_err(|e| {
            invalid(format!(
                "not a velo model file (truncated, damaged or foreign: {e})"
            ))
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| invalid(format!("not a velo model file: {e}")))?;
        let mut metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(invalid(format!(
                "not a velo model file (format is not `{FORMAT}`)"
            )));
        }
        let version: u32 = metadata
            .get("format_version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid("the format version is missing or not a number"))?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(invalid(format!(
                "format version {version} is not supported by this velo (it reads 1..={FORMAT_VERSION}); upgrade velo"
            )));
        }
        let stored_hash = metadata
            .remove(HASH_KEY)
            .ok_or_else(|| invalid("the content hash is missing"))?;
        // The tensors' bytes are borrowed from `bytes` until they are decoded, once.
        let mut tensors = Vec::new();
        for (name, view) in parsed.iter() {
            tensors.push((
                name.to_owned(),
                view.dtype(),
                view.shape().to_vec(),
                view.data(),
            ));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        if Self::content_hash(&metadata, &tensors) != stored_hash {
            return Err(invalid(
                "the content hash does not match: the file is corrupted or was modified",
            ));
        }
        let kind = metadata
            .remove("kind")
            .ok_or_else(|| invalid("the model kind is missing"))?;
        let velo_version = metadata.remove("velo_version").unwrap_or_default();
        let sections = metadata
            .into_iter()
            .filter_map(|(key, value)| {
                key.strip_prefix(SECTION_PREFIX)
                    .map(|name| (name.to_owned(), value))
            })
            .collect();
        let mut artifact = Self {
            kind,
            velo_version,
            format_version: version,
            sections,
            tensors: BTreeMap::new(),
        };
        for (name, dtype, shape, data) in tensors {
            let data = TensorData::from_le_bytes(&name, dtype, data)?;
            artifact.put_tensor(&name, Tensor { shape, data })?;
        }
        Ok(artifact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Artifact {
        let mut artifact = Artifact::new("TestModel");
        artifact
            .put_section("params", &serde_json::json!({"depth": 3}))
            .expect("section");
        artifact
            .put_tensor("a", Tensor::vector(TensorData::F64(vec![1.5, -2.0])))
            .expect("tensor");
        artifact
            .put_tensor("b", Tensor::vector(TensorData::U32(vec![7, 8, 9])))
            .expect("tensor");
        artifact
            .put_tensor(
                "m",
                Tensor {
                    shape: vec![2, 2],
                    data: TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]),
                },
            )
            .expect("tensor");
        artifact
    }

    #[test]
    fn round_trips() {
        let artifact = sample();
        let read = Artifact::from_bytes(&artifact.to_bytes().expect("bytes")).expect("reads");
        assert_eq!(read, artifact);
        assert_eq!(read.f64s("a").expect("a"), &[1.5, -2.0]);
        assert_eq!(
            read.section::<serde_json::Value>("params").expect("params")["depth"],
            3
        );
        assert!(read.f32s("a").is_err(), "dtype is checked");
        assert!(read.f32s("m").is_err(), "shape is checked");
        assert!(read.u64s("absent").is_err());
    }

    #[test]
    fn damaged_files_are_rejected_with_a_reason() {
        let bytes = sample().to_bytes().expect("bytes");
        let error = |bytes: &[u8]| {
            Artifact::from_bytes(bytes)
                .expect_err("must fail")
                .to_string()
        };
        assert!(error(&bytes[..bytes.len() / 2]).contains("not a velo model file"));
        assert!(error(&[]).contains("not a velo model file"));
        assert!(error(b"PK\x03\x04 a zip file").contains("not a velo model file"));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(error(&flipped).contains("content hash"));
    }

    #[test]
    fn newer_and_foreign_formats_are_named() {
        let foreign =
            safetensors::serialize(Vec::<(String, TensorView<'_>)>::new(), None).expect("bytes");
        assert!(
            Artifact::from_bytes(&foreign)
                .expect_err("foreign")
                .to_string()
                .contains("format")
        );
        let mut info = HashMap::new();
        info.insert("format".to_owned(), FORMAT.to_owned());
        info.insert("format_version".to_owned(), "99".to_owned());
        let newer = safetensors::serialize(Vec::<(String, TensorView<'_>)>::new(), Some(info))
            .expect("bytes");
        assert!(
            Artifact::from_bytes(&newer)
                .expect_err("newer")
                .to_string()
                .contains("upgrade velo")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Artifact::from_bytes(&bytes);
        }

        #[test]
        fn any_single_byte_change_is_detected(position in 0_usize..10_000, bit in 0_u8..8) {
            let bytes = sample().to_bytes().expect("bytes");
            let mut damaged = bytes.clone();
            let position = position % damaged.len();
            damaged[position] ^= 1 << bit;
            prop_assert!(Artifact::from_bytes(&damaged).is_err());
        }
    }
}
