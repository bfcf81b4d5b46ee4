//! Explainers: global importances and per-sample contributions (being written).
