//! The alerts service: a notification when a job finishes or fails, posted to a
//! Slack-compatible webhook when one is configured, else shown by the desktop's notifier where
//! the machine has one, otherwise a line for the caller to print.
//!
//! The desktop notifier is the system's own program (`notify-send` on Linux and BSD, which
//! needs a D-Bus session; `osascript` on macOS), run with a deadline; docs/adr/0005 says why
//! velo runs these rather than linking a D-Bus client.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

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
    /// Shown on the desktop by this program (`notify-send`, `osascript`).
    Desktop {
        /// The program that showed it.
        program: String,
    },
    /// No webhook, no desktop notifier (or alerts disabled): the line the caller should print.
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

/// How long the desktop notifier may take before velo gives up on it and prints the line.
const DESKTOP_DEADLINE: Duration = Duration::from_secs(5);

impl AlertsService {
    /// Sends `title: message` as this service says: when alerts are enabled, a webhook post of
    /// `{"text": …}` if a webhook is configured, else a desktop notification where the machine
    /// has a notifier (see [`AlertsService::desktop`]); otherwise, or when the notifier fails,
    /// the line to print.
    pub fn notify(&self, title: &str, message: &str) -> Result<Delivery, AlertError> {
        self.notify_with(title, message, |name| std::env::var_os(name))
    }

    /// [`notify`](Self::notify) with the environment (`PATH`, `DBUS_SESSION_BUS_ADDRESS`) read
    /// through `lookup`.
    pub fn notify_with(
        &self,
        title: &str,
        message: &str,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Delivery, AlertError> {
        let text = format!("[{}] {title}: {message}", self.app_name);
        if !self.enable {
            return Ok(Delivery::Line(text));
        }
        let Some(url) = &self.webhook_url else {
            if self.desktop
                && let Some(mut command) = self.desktop_command(title, message, &lookup)
            {
                let program = command.get_program().to_string_lossy().into_owned();
                if run_with_deadline(&mut command, DESKTOP_DEADLINE) {
                    return Ok(Delivery::Desktop { program });
                }
                tracing::debug!(%program, "the desktop notifier failed; printing the alert");
            }
            return Ok(Delivery::Line(text));
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

impl AlertsService {
    /// The notifier command for this machine, if it has one.
    fn desktop_command(
        &self,
        title: &str,
        message: &str,
        lookup: &impl Fn(&str) -> Option<OsString>,
    ) -> Option<Command> {
        let path = lookup("PATH")?;
        if cfg!(target_os = "macos") {
            let program = find_program(&path, "osascript")?;
            let mut command = Command::new(program);
            command.arg("-e").arg(format!(
                "display notification {} with title {}",
                applescript_string(message),
                applescript_string(&format!("{}: {title}", self.app_name))
            ));
            return Some(command);
        }
        if cfg!(windows) {
            return None;
        }
        // notify-send talks to the session's notification daemon over D-Bus: without a session
        // bus (a server, a container, CI) there is nobody to show it.
        lookup("DBUS_SESSION_BUS_ADDRESS").filter(|address| !address.is_empty())?;
        let program = find_program(&path, "notify-send")?;
        let mut command = Command::new(program);
        command.arg(format!("--app-name={}", self.app_name));
        if let Some(seconds) = self.timeout {
            command.arg(format!("--expire-time={}", seconds.saturating_mul(1000)));
        }
        command.arg("--").arg(title).arg(message);
        Some(command)
    }
}

/// The first executable file named `name` in the directories of `path` (a `PATH` value).
fn find_program(path: &OsString, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// An AppleScript string literal holding `text`.
fn applescript_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Runs `command` with no input or output and waits at most `deadline`; true when it exited
/// successfully in time (a late one is killed).
fn run_with_deadline(command: &mut Command, deadline: Duration) -> bool {
    let Ok(mut child) = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if start.elapsed() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
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
                .notify_with("EvaluationsJob failed", "r2_score = 0.1", |_| None)
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

    #[test]
    fn applescript_strings_escape_quotes_and_backslashes() {
        assert_eq!(
            applescript_string(r#"say "hi" \ bye"#),
            r#""say \"hi\" \\ bye""#
        );
    }

    /// A directory holding an executable `notify-send` that records its arguments, one per
    /// line, in `args`, then exits with `status`.
    #[cfg(all(unix, not(target_os = "macos")))]
    fn notifier(status: u8) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("notify-send");
        let args = dir.path().join("args");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor arg in \"$@\"; do printf '%s\\n' \"$arg\"; done > '{}'\nexit {status}\n",
                args.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn the_desktop_notifier_shows_title_and_message_in_a_dbus_session() {
        let dir = notifier(0);
        let service = AlertsService {
            timeout: Some(3),
            ..AlertsService::default()
        };
        let path = dir.path().as_os_str().to_owned();
        let lookup = |name: &str| match name {
            "PATH" => Some(path.clone()),
            "DBUS_SESSION_BUS_ADDRESS" => Some("unix:path=/run/user/1000/bus".into()),
            _ => None,
        };
        let delivery = service
            .notify_with("TrainingJob finished", "--bikes version 3", lookup)
            .unwrap();
        let program = dir.path().join("notify-send").display().to_string();
        assert_eq!(delivery, Delivery::Desktop { program });
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert_eq!(
            args.lines().collect::<Vec<_>>(),
            [
                "--app-name=velo",
                "--expire-time=3000",
                "--",
                "TrainingJob finished",
                "--bikes version 3"
            ]
        );
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn without_a_session_bus_or_when_the_notifier_fails_the_line_is_returned() {
        let line = Delivery::Line("[velo] a: b".to_owned());
        let dir = notifier(0);
        let path = dir.path().as_os_str().to_owned();
        let no_bus = |name: &str| (name == "PATH").then(|| path.clone());
        let service = AlertsService::default();
        assert_eq!(service.notify_with("a", "b", no_bus).unwrap(), line);
        assert!(!dir.path().join("args").exists(), "not run without a bus");

        let failing = notifier(1);
        let path = failing.path().as_os_str().to_owned();
        let with_bus = |name: &str| match name {
            "PATH" => Some(path.clone()),
            "DBUS_SESSION_BUS_ADDRESS" => Some("unix:path=/nonexistent".into()),
            _ => None,
        };
        assert_eq!(service.notify_with("a", "b", with_bus).unwrap(), line);
        assert!(failing.path().join("args").exists(), "the notifier ran");

        let off = AlertsService {
            desktop: false,
            ..AlertsService::default()
        };
        let path = dir.path().as_os_str().to_owned();
        let with_bus = |name: &str| match name {
            "PATH" => Some(path.clone()),
            "DBUS_SESSION_BUS_ADDRESS" => Some("unix:path=/run/bus".into()),
            _ => None,
        };
        assert_eq!(off.notify_with("a", "b", with_bus).unwrap(), line);
        assert!(!dir.path().join("args").exists(), "desktop: false");
    }
}
