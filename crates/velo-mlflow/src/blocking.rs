//! A blocking face of [`Client`] for synchronous code (jobs, scripts, tests).

use crate::{
    client::Client,
    error::{Error, Result},
};

/// Runs [`Client`] calls to completion on a private single-threaded runtime, the way
/// `reqwest::blocking` does. Do not use it from inside an async runtime: call the async
/// [`Client`] there.
///
/// ```no_run
/// # fn main() -> velo_mlflow::Result<()> {
/// let mlflow = velo_mlflow::BlockingClient::new(velo_mlflow::Client::new("http://127.0.0.1:5000")?)?;
/// let experiment = mlflow.run(async |client| client.get_or_create_experiment("bikes").await)?;
/// # let _ = experiment; Ok(()) }
/// ```
#[derive(Debug)]
pub struct BlockingClient {
    client: Client,
    runtime: tokio::runtime::Runtime,
}

impl BlockingClient {
    /// Wraps a client.
    pub fn new(client: Client) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "<tokio runtime>".to_owned(),
                source,
            })?;
        Ok(Self { client, runtime })
    }

    /// The async client inside.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one or more calls to completion.
    pub fn run<T>(&self, calls: impl AsyncFnOnce(&Client) -> T) -> T {
        self.runtime.block_on(calls(&self.client))
    }
}
