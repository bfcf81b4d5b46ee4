//! Feature pipeline (being written).
