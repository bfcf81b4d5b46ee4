//! Integration tests of velo-core, one binary for the whole crate.

mod schemas;
