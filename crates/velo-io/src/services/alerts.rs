//! The alerts service: a notification when a job finishes or fails, posted to a
//! Slack-compatible webhook when one is configured, otherwise a line for the caller to print.

use std::time::Duration;

use super::AlertsService;

/// How a notification went out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Posted to the webhook, which answered with this HTTP status (2xx).
    Webhook {
        /// The status.
        status: u16,
    },
    /// No webhook configured (or alerts disabled): the line the caller should print.
    Line(String),
}

/// A notification that could not be delivered (the job's own result is not affected).
#[derive(Debug, thiserror::Error)]
#[error("cannot post the alert to the webhook at {url}: {reason}")]
pub struct AlertError {
    /// The webhook URL, without its path (webhook paths hold secrets).
    pub url: String,
    /// What went wrong.
    pub reason: String,
}

/// The default time a webhook gets to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl AlertsService {
    /// Sends `title: message` as this service says: a webhook post of `{"text": …}` when
    /// alerts are enabled and a webhook is configured, otherwise the line to print.
    pub fn notify(&self, title: &str, message: &str) -> Result<Delivery, AlertError> {
        let text = format!("[{}] {title}: {message}", self.app_name);
        let url = match (&self.webhook_url, self.enable) {
            (Some(url), true) => url,
            _ => return Ok(Delivery::Line(text)),
        };
        let shown = redact(url);
        let fail = |reason: String| AlertError {
            url: shown.clone(),
            reason,
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(self.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs))
            .build()
            .map_err(|error| fail(error.to_string()))?;
        let response = client
            .post(url)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .map_err(|error| fail(error.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("the webhook answered {status}")));
        }
        Ok(Delivery::Webhook {
            status: status.as_u16(),
        })
    }
}

/// The scheme and host of a URL: webhook paths carry tokens that must not reach logs.
fn redact(url: &str) -> String {
    url::Url::parse(url).map_or_else(
        |_| "<invalid url>".to_owned(),
        |parsed| {
            format!(
                "{}://{}/…",
                parsed.scheme(),
                parsed.host_str().unwrap_or("?")
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader, Read as _, Write as _},
        net::TcpListener,
    };

    use super::*;

    /// A one-request HTTP endpoint on loopback answering `status`; returns its URL and a
    /// handle yielding the body it received.
    fn endpoint(status: u16) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/services/T000/B000/secret",
            listener.local_addr().unwrap()
        );
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            write!(stream, "HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok").unwrap();
            String::from_utf8(body).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn a_webhook_receives_slack_json() {
        let (url, received) = endpoint(200);
        let service = AlertsService {
            webhook_url: Some(url),
            ..AlertsService::default()
        };
        let delivery = service
            .notify("TrainingJob finished", "bikes version 3")
            .unwrap();
        assert_eq!(delivery, Delivery::Webhook { status: 200 });
        let body: serde_json::Value = serde_json::from_str(&received.join().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"text": "[velo] TrainingJob finished: bikes version 3"})
        );
    }

    #[test]
    fn failures_name_the_host_but_never_the_secret_path() {
        let (url, received) = endpoint(500);
        let service = AlertsService {
            webhook_url: Some(url),
            ..AlertsService::default()
        };
        let error = service.notify("x", "y").unwrap_err();
        received.join().unwrap();
        let text = error.to_string();
        assert!(text.contains("127.0.0.1") && text.contains("500"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let service = AlertsService {
            webhook_url: Some(format!("http://{closed}/hooks/secret")),
            timeout: Some(2),
            ..AlertsService::default()
        };
        let error = service.notify("x", "y").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn without_a_webhook_or_when_disabled_the_line_is_returned() {
        let service = AlertsService::default();
        assert_eq!(
            service
                .notify("EvaluationsJob failed", "r2_score = 0.1")
                .unwrap(),
            Delivery::Line("[velo] EvaluationsJob failed: r2_score = 0.1".to_owned())
        );
        let disabled = AlertsService {
            enable: false,
            webhook_url: Some("http://127.0.0.1:9/never".to_owned()),
            ..AlertsService::default()
        };
        assert!(matches!(
            disabled.notify("a", "b").unwrap(),
            Delivery::Line(_)
        ));
    }
}
