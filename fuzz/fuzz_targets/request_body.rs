//! Arbitrary bytes as a scoring request body, JSON and CSV: every input must give a batch or a
//! 400-style error, never a panic or an allocation the input does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use velo_jobs::scoring::protocol::{MediaType, read_body};

fuzz_target!(|data: &[u8]| {
    for media in [MediaType::Json, MediaType::Csv] {
        if let Ok(batch) = read_body(media, data) {
            let _ = batch.num_rows();
        }
    }
});
