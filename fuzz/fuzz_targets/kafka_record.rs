//! Arbitrary bytes as a Kafka record and as a records request body, through the fast parser
//! that reads them straight into a model's columns: a batch or a refusal, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = velo_jobs::scoring::fuzz_records(data);
});
