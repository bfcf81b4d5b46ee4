//! Integration tests of velo-models, one binary for the whole crate.

mod models;
mod scenarios;
