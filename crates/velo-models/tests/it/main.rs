//! Integration tests of velo-models, one binary for the whole crate.

mod golden;
mod models;
mod onnx;
mod scenarios;
