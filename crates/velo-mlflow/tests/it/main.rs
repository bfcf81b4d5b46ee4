//! Integration tests of velo-mlflow against a real `mlflow server` (see `test_server`).

mod live;
