//! The client: connection settings, credentials, and one request path with retries.

use std::{fmt, time::Duration};

use backon::{ExponentialBuilder, Retryable as _};
use reqwest::{Method, StatusCode, header};
use serde::{Serialize, de::DeserializeOwned};
use url::Url;

use crate::error::{Error, Result};

/// Credentials sent with every request. `Debug` never shows a secret.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// HTTP Basic (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
}

impl Auth {
    /// Credentials from the environment as MLflow's own client reads them: a token first, then
    /// a username and password, else none.
    pub fn from_env() -> Self {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        if let Some(token) = read("MLFLOW_TRACKING_TOKEN") {
            return Self::Bearer(token);
        }
        match (
            read("MLFLOW_TRACKING_USERNAME"),
            read("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(username), Some(password)) => Self::Basic { username, password },
            _ => Self::None,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => formatter.write_str("None"),
            Self::Basic { username, .. } => write!(formatter, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => formatter.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Whether a call may be sent again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Repeating it leaves the same state (reads, tags, updates, identical params and metrics,
    /// aliases, artifact uploads).
    Safe,
    /// Repeating it may create a second record (`runs/create`, `model-versions/create`).
    Unsafe,
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    tracking_uri: String,
    auth: Auth,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: usize,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl ClientBuilder {
    /// A client of the server at `tracking_uri` (`http://host:port`, with an optional path
    /// prefix), without credentials, a 120 s timeout and up to 7 retries (MLflow's defaults).
    pub fn new(tracking_uri: impl Into<String>) -> Self {
        Self {
            tracking_uri: tracking_uri.into(),
            auth: Auth::None,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_retries: 7,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// Settings from the environment, as MLflow's Python client reads them:
    /// `MLFLOW_TRACKING_URI` (required), credentials ([`Auth::from_env`]),
    /// `MLFLOW_HTTP_REQUEST_TIMEOUT` (seconds) and `MLFLOW_HTTP_REQUEST_MAX_RETRIES`.
    pub fn from_env() -> Result<Self> {
        let uri = std::env::var("MLFLOW_TRACKING_URI")
            .map_err(|_| Error::InvalidArgument("MLFLOW_TRACKING_URI is not set".to_owned()))?;
        let mut builder = Self::new(uri).auth(Auth::from_env());
        if let Some(seconds) = env_number("MLFLOW_HTTP_REQUEST_TIMEOUT")? {
            builder = builder.timeout(Duration::from_secs(seconds));
        }
        if let Some(retries) = env_number("MLFLOW_HTTP_REQUEST_MAX_RETRIES")? {
            builder = builder.max_retries(usize::try_from(retries).unwrap_or(usize::MAX));
        }
        Ok(builder)
    }

    /// Credentials.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// The timeout of one request, from connecting to reading the whole body.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The timeout of establishing a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many times a transient failure of a safe call is retried (0: never).
    pub fn max_retries(mut self, retries: usize) -> Self {
        self.max_retries = retries;
        self
    }

    /// The first and the longest wait between retries (exponential, with jitter).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        let mut base = Url::parse(&self.tracking_uri).map_err(|error| {
            Error::InvalidArgument(format!(
                "tracking uri {:?} is not a URL: {error}",
                self.tracking_uri
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::InvalidArgument(format!(
                "tracking uri {:?} must start with http:// or https://",
                self.tracking_uri
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Error::InvalidArgument(
                "put credentials in MLFLOW_TRACKING_USERNAME/PASSWORD or a token, not in the URL"
                    .to_owned(),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("velo-mlflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::Transport {
                url: base.to_string(),
                source,
            })?;
        Ok(Client {
            http,
            base,
            auth: self.auth,
            retry: ExponentialBuilder::default()
                .with_min_delay(self.min_backoff)
                .with_max_delay(self.max_backoff)
                .with_max_times(self.max_retries)
                .with_jitter(),
        })
    }
}

fn env_number(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(text) => {
            text.trim().parse().map(Some).map_err(|_| {
                Error::InvalidArgument(format!("{name}={text:?} is not a whole number"))
            })
        }
        Err(_) => Ok(None),
    }
}

/// An MLflow REST client. Cheap to clone (connections are pooled and shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    retry: ExponentialBuilder,
}

/// A request body, serialised once so that a retry sends the same bytes.
pub(crate) enum Body {
    Empty,
    Json(Vec<u8>),
    Bytes(Vec<u8>),
}

impl Body {
    pub(crate) fn json(value: &impl Serialize) -> Result<Self> {
        serde_json::to_vec(value)
            .map(Self::Json)
            .map_err(|error| Error::InvalidArgument(format!("cannot encode request: {error}")))
    }
}

impl Client {
    /// A client with default settings; see [`ClientBuilder`].
    pub fn new(tracking_uri: impl Into<String>) -> Result<Self> {
        ClientBuilder::new(tracking_uri).build()
    }

    /// The tracking URI, ending with `/`.
    pub fn tracking_uri(&self) -> &Url {
        &self.base
    }

    /// `{base}{path}` where `path` is relative, such as `api/2.0/mlflow/runs/get`.
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|error| Error::InvalidArgument(format!("bad request path {path:?}: {error}")))
    }

    /// Calls a JSON endpoint of `api/2.0/mlflow/` and decodes the answer.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, String)],
        body: Body,
        idempotency: Idempotency,
    ) -> Result<T> {
        let url = self.url(&format!("api/2.0/mlflow/{endpoint}"))?;
        let bytes = self
            .send(method, url, endpoint, query, &body, idempotency)
            .await?;
        let bytes = if bytes.is_empty() { &b"{}"[..] } else { &bytes };
        serde_json::from_slice(bytes).map_err(|source| Error::Decode {
            endpoint: endpoint.to_owned(),
            body: snippet(bytes),
            source,
        })
    }

    /// Sends a request (retrying transient failures of safe calls) and returns the body of a
    /// 2xx answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        endpoint: &str,
        query: &[(&str, String)],
        body: &Body,
        idempotency: Idempotency,
    ) -> Result<Vec<u8>> {
        let attempt = || self.send_once(method.clone(), url.clone(), endpoint, query, body);
        match idempotency {
            Idempotency::Unsafe => attempt().await,
            Idempotency::Safe => {
                attempt
                    .retry(self.retry)
                    .sleep(tokio::time::sleep)
                    .when(Error::is_transient)
                    .adjust(|error, delay| error.retry_after().or(delay))
                    .notify(|error, delay| {
                        tracing::warn!(%error, ?delay, "mlflow call failed, retrying");
                    })
                    .await
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        url: Url,
        endpoint: &str,
        query: &[(&str, String)],
        body: &Body,
    ) -> Result<Vec<u8>> {
        let shown = url.to_string();
        let mut request = self.http.request(method, url);
        if !query.is_empty() {
            request = request.query(query);
        }
        request = match body {
            Body::Empty => request,
            Body::Json(bytes) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Body::Bytes(bytes) => request
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone()),
        };
        request = match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        let transport = |source| Error::Transport {
            url: shown.clone(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(api_error(endpoint, status, &bytes, retry_after))
    }
}

fn api_error(
    endpoint: &str,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Error {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        error_code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<Answer>(body).ok();
    let error_code = parsed
        .as_ref()
        .and_then(|answer| answer.error_code.clone())
        .unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
    let message = parsed
        .and_then(|answer| answer.message)
        .unwrap_or_else(|| snippet(body));
    Error::Api {
        endpoint: endpoint.to_owned(),
        status: status.as_u16(),
        error_code,
        message,
        retry_after,
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let basic = Auth::Basic {
            username: "ann".into(),
            password: "hunter2".into(),
        };
        let bearer = Auth::Bearer("tok-123".into());
        let shown = format!(
            "{basic:?} {bearer:?} {:?}",
            ClientBuilder::new("http://x").auth(basic.clone())
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-123"),
            "{shown}"
        );
        assert!(shown.contains("ann"));
    }

    #[test]
    fn bad_tracking_uris_are_refused() {
        for uri in ["./store", "file:///tmp/x", "http://user:pw@host:5000"] {
            let error = Client::new(uri).unwrap_err();
            assert!(matches!(error, Error::InvalidArgument(_)), "{uri}: {error}");
        }
        let client = Client::new("http://127.0.0.1:5000/prefix").unwrap();
        assert_eq!(
            client.url("api/2.0/mlflow/runs/get").unwrap().as_str(),
            "http://127.0.0.1:5000/prefix/api/2.0/mlflow/runs/get"
        );
    }

    #[test]
    fn error_bodies_are_read_leniently() {
        let error = api_error(
            "runs/get",
            StatusCode::NOT_FOUND,
            br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Run 'x' not found"}"#,
            None,
        );
        assert!(error.is_not_found() && !error.is_transient());
        assert_eq!(error.error_code(), Some("RESOURCE_DOES_NOT_EXIST"));
        let error = api_error(
            "x",
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
            None,
        );
        assert_eq!(error.error_code(), Some("HTTP_502"));
        assert!(error.is_transient());
        assert!(error.to_string().contains("bad gateway"));
    }
}
