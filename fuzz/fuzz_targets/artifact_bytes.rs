//! Arbitrary bytes given to the artifact loader: every input must give a model or an error,
//! never a panic, an out-of-bounds read or an allocation the input does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use velo_models::{artifact::Artifact, load_model};

fuzz_target!(|data: &[u8]| {
    if let Ok(artifact) = Artifact::from_bytes(data) {
        if let Ok(model) = load_model(&artifact) {
            let _ = model.explain_model();
            let _ = model.to_artifact();
        }
    }
});
