//! Random forest (being written).
