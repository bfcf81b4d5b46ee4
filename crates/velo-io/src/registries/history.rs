//! The alias log: every move of a registered model's aliases (which version held the alias
//! before and after, when, by whom, why), appended as tags of the registered model, so that
//! MLflow's own client reads it (`MlflowClient().get_registered_model(name).tags`) from the
//! embedded store and a server alike.
//!
//! Each event is one tag, `velo.alias_log.<ms>.<alias>.<nonce>`, holding the event as JSON:
//! writers never read-modify-write a shared record, so concurrent moves cannot erase each
//! other's entries, and no entry is ever rewritten. [`move_alias`] moves an alias and appends
//! its event; [`alias_log`] reads the log in time order; [`holder_at`] answers which version
//! held an alias at a given time (MLflow issue #2169).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::{ModelRegistry, RegistryError, Result};

/// The prefix of the registered-model tags holding alias events.
pub const ALIAS_LOG_PREFIX: &str = "velo.alias_log.";

/// One move of an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AliasEvent {
    /// The alias moved.
    pub alias: String,
    /// The version that held it before, if any.
    pub from: Option<String>,
    /// The version holding it after, or `None` when the alias was removed.
    pub to: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// Who or what moved it: a job and its run, or a user at the command line.
    pub by: String,
    /// Why, in words (a gate's evidence, a rollback's reason…).
    pub reason: String,
}

impl AliasEvent {
    /// The event's time as RFC 3339 in UTC, to the millisecond.
    pub fn time(&self) -> String {
        format_ms(self.at)
    }
}

/// A time in milliseconds since the Unix epoch as RFC 3339 in UTC.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// Parses a time given by a user: RFC 3339 (`2026-12-01T12:00:00Z`), without seconds
/// (`2026-12-01T12:00Z`), or a date (`2026-12-01`, its midnight UTC); milliseconds since the
/// epoch.
///
/// # Errors
/// Anything else, quoting the text and the forms expected.
pub fn parse_time(text: &str) -> std::result::Result<i64, String> {
    let text = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M%#z", "%Y-%m-%dT%H:%MZ"] {
        if let Ok(time) = chrono::DateTime::parse_from_str(text, format) {
            return Ok(time.timestamp_millis());
        }
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc().timestamp_millis());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc().timestamp_millis());
    }
    Err(format!(
        "cannot read the time {text:?}: expected RFC 3339 (2026-12-01T12:00:00Z), \
         2026-12-01T12:00Z or a date (2026-12-01)"
    ))
}

/// Distinguishes events of one process within a millisecond.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn append(registry: &dyn ModelRegistry, name: &str, event: &AliasEvent) -> Result<()> {
    let key = format!(
        "{ALIAS_LOG_PREFIX}{:013}.{}.{}-{}",
        event.at,
        event.alias,
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let value = serde_json::to_string(event).map_err(|error| {
        RegistryError::AliasLog(format!("cannot write the alias event: {error}"))
    })?;
    registry.set_registered_model_tag(name, &key, &value)
}

/// Points `alias` of model `name` at `version` and appends the move to the alias log.
///
/// # Errors
/// The version does not exist (the alias is left where it was), or the store fails; when the
/// alias moved but its event could not be written, the error says so.
pub fn move_alias(
    registry: &dyn ModelRegistry,
    name: &str,
    alias: &str,
    version: &str,
    by: &str,
    reason: &str,
) -> Result<AliasEvent> {
    let from = registry
        .get_model_version_by_alias(name, alias)?
        .map(|holder| holder.version);
    registry.set_alias(name, alias, version)?;
    let event = AliasEvent {
        alias: alias.to_owned(),
        from,
        to: Some(version.to_owned()),
        at: now_ms(),
        by: by.to_owned(),
        reason: reason.to_owned(),
    };
    append(registry, name, &event).map_err(|error| {
        RegistryError::AliasLog(format!(
            "{name}@{alias} now points at version {version}, but its alias log entry could not \
             be written: {error}"
        ))
    })?;
    Ok(event)
}

/// Removes `alias` of model `name` and appends the removal to the alias log; `None` when the
/// alias did not exist (nothing is logged).
///
/// # Errors
/// The store fails.
pub fn remove_alias(
    registry: &dyn ModelRegistry,
    name: &str,
    alias: &str,
    by: &str,
    reason: &str,
) -> Result<Option<AliasEvent>> {
    let Some(holder) = registry.get_model_version_by_alias(name, alias)? else {
        return Ok(None);
    };
    registry.delete_alias(name, alias)?;
    let event = AliasEvent {
        alias: alias.to_owned(),
        from: Some(holder.version),
        to: None,
        at: now_ms(),
        by: by.to_owned(),
        reason: reason.to_owned(),
    };
    append(registry, name, &event)?;
    Ok(Some(event))
}

/// The alias log of model `name`, oldest first (empty for a model without one).
///
/// # Errors
/// The store fails, or an entry is not an alias event (naming its tag).
pub fn alias_log(registry: &dyn ModelRegistry, name: &str) -> Result<Vec<AliasEvent>> {
    let Some(model) = registry.get_registered_model(name)? else {
        return Ok(Vec::new());
    };
    let mut entries: Vec<(String, AliasEvent)> = Vec::new();
    for tag in model.tags {
        if !tag.key.starts_with(ALIAS_LOG_PREFIX) {
            continue;
        }
        let event: AliasEvent = serde_json::from_str(&tag.value).map_err(|error| {
            RegistryError::AliasLog(format!(
                "the alias log entry {} of model {name} is not an alias event: {error}",
                tag.key
            ))
        })?;
        entries.push((tag.key, event));
    }
    entries.sort_by(|(a_key, a), (b_key, b)| a.at.cmp(&b.at).then_with(|| a_key.cmp(b_key)));
    Ok(entries.into_iter().map(|(_, event)| event).collect())
}

/// The version holding `alias` at `at` (ms since the epoch) according to `log` (oldest first):
/// the destination of its last move at or before `at`; `None` when it was removed then, or
/// when the log records no move of it before `at`.
pub fn holder_at<'a>(log: &'a [AliasEvent], alias: &str, at: i64) -> Option<&'a str> {
    log.iter()
        .rfind(|event| event.alias == alias && event.at <= at)
        .and_then(|event| event.to.as_deref())
}

/// The version `alias` pointed at before its current holder `current` took it, by the log's
/// last move onto `current`: what a rollback returns to.
pub fn previous_holder<'a>(log: &'a [AliasEvent], alias: &str, current: &str) -> Option<&'a str> {
    log.iter()
        .rfind(|event| event.alias == alias && event.to.as_deref() == Some(current))
        .and_then(|event| event.from.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(alias: &str, from: Option<&str>, to: Option<&str>, at: i64) -> AliasEvent {
        AliasEvent {
            alias: alias.to_owned(),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            at,
            by: "test".to_owned(),
            reason: String::new(),
        }
    }

    #[test]
    fn the_holder_at_a_time_is_the_last_move_before_it() {
        let log = vec![
            event("Champion", None, Some("1"), 100),
            event("Challenger", None, Some("2"), 150),
            event("Champion", Some("1"), Some("2"), 200),
            event("Champion", Some("2"), None, 300),
        ];
        assert_eq!(holder_at(&log, "Champion", 99), None);
        assert_eq!(holder_at(&log, "Champion", 100), Some("1"));
        assert_eq!(holder_at(&log, "Champion", 199), Some("1"));
        assert_eq!(holder_at(&log, "Champion", 250), Some("2"));
        assert_eq!(holder_at(&log, "Champion", 300), None);
        assert_eq!(holder_at(&log, "Challenger", 1_000), Some("2"));
        assert_eq!(previous_holder(&log, "Champion", "2"), Some("1"));
        assert_eq!(previous_holder(&log, "Champion", "1"), None);
    }

    #[test]
    fn times_are_read_in_the_forms_users_type() {
        let noon = parse_time("2026-12-01T12:00:00Z").unwrap();
        assert_eq!(parse_time("2026-12-01T12:00Z").unwrap(), noon);
        assert_eq!(parse_time("2026-12-01T13:00:00+01:00").unwrap(), noon);
        assert_eq!(parse_time("2026-12-01").unwrap(), noon - 12 * 3_600_000);
        assert_eq!(format_ms(noon), "2026-12-01T12:00:00.000Z");
        let error = parse_time("last tuesday").unwrap_err();
        assert!(
            error.contains("last tuesday") && error.contains("RFC 3339"),
            "{error}"
        );
    }
}
