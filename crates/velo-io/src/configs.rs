//! Layered configuration: files, environment, `--extras` snippets and profiles, with provenance.
//!
//! A [`ConfigLoader`] builds one figment from, in increasing order of precedence:
//!
//! 1. YAML, JSON or TOML files, merged left to right (later files override earlier ones);
//! 2. inside each file, the section `profiles.<name>` of the selected profile, which overrides
//!    that file's top level (profiles are chosen with [`ConfigLoader::profile`], e.g. from
//!    `--profile` or `VELO_PROFILE` in the CLI);
//! 3. environment variables `VELO_<KEY>__<KEY>…` (a double underscore separates nesting levels,
//!    keys are lower-cased except `KIND`): `VELO_JOB__MODEL__MAX_DEPTH=7`. Variables without a
//!    double underscore (`VELO_PROFILE`, `VELO_LOG`, …) are not configuration and are ignored;
//! 4. `--extras` YAML snippets, in order: `job: {model: {max_depth: 7}}`;
//! 5. MLflow's own variables `MLFLOW_TRACKING_URI`, `MLFLOW_REGISTRY_URI` and
//!    `MLFLOW_EXPERIMENT_NAME`, which set the [`MlflowService`] at [`MLFLOW_KEY`] as MLflow's
//!    clients would (see [`MlflowService::overrides`]): the one place that decides where MLflow
//!    lives, for `velo run`, `velo config show` and embedders alike.
//!
//! # Relative paths
//!
//! A relative path in a file is relative to that file's directory, as in compose files and
//! Cargo manifests: in `configs/training.yaml`, `../data/inputs_train.parquet` and
//! `schemas/inputs.yaml`. The values read as paths are those at the keys [`PATH_KEYS`] and the
//! strings of a `schemas` mapping. Paths from the environment or `--extras` are relative to the
//! working directory, and so are URIs (`tracking_uri`), as in MLflow.
//!
//! Configs written before this rule named paths relative to the working directory. Such a path
//! is still read that way, with a notice saying how to write it ([`Loaded::notices`]), when it
//! names nothing relative to its file but does relative to the working directory (the file, or
//! for an output its directory).
//!
//! Extraction errors name the key path, the expected type and the source (file, variable or
//! snippet) of the offending value; [`Loaded::provenance`] tells, for each effective value,
//! which source it came from. figment appears nowhere else in velo.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use figment::{
    Figment, Metadata, Profile, Provider, Source,
    providers::{Env, Format, Json, Toml, Yaml},
    value::{Dict, Map, Value},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::services::MlflowService;

/// The prefix of environment variables read as configuration.
pub const ENV_PREFIX: &str = "VELO_";

/// The key of the per-file section holding profile overrides.
pub const PROFILES_KEY: &str = "profiles";

/// The keys whose string values are paths, relative to the file that sets them (besides the
/// strings of a `schemas` mapping): readers' and writers' `path`, a CSV reader's `schema`,
/// reports (`junit`, `report`, `markdown`, `html`) and log directories (`logs`,
/// `prediction_log`).
pub const PATH_KEYS: [&str; 8] = [
    "path",
    "schema",
    "junit",
    "report",
    "markdown",
    "html",
    "logs",
    "prediction_log",
];

/// The key of a mapping whose string values are all paths (a job's schema files).
const SCHEMAS_KEY: &str = "schemas";

/// Where velo's configuration files hold their [`MlflowService`], which the MLflow variables
/// override.
pub const MLFLOW_KEY: &str = "job.services.mlflow";

/// The prefix of the custom source names given to MLflow variable layers.
const VARIABLE_SOURCE: &str = "environment variable ";

/// Errors raised while loading configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configuration file does not exist or cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file's extension is not one of yaml, yml, json or toml.
    #[error(
        "config file {path} has an unsupported extension (expected .yaml, .yml, .json or .toml)"
    )]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// A configuration file or snippet is not well-formed.
    #[error("cannot parse {origin}: {message}")]
    Parse {
        /// The file path or `--extras #N`.
        origin: String,
        /// The parser's message, with line and column where known.
        message: String,
    },
    /// A profile section is not a mapping.
    #[error("{origin}: `{PROFILES_KEY}.{profile}` must be a mapping of config keys")]
    Profile {
        /// The file path.
        origin: String,
        /// The profile name.
        profile: String,
    },
    /// The selected profile is defined by no configuration file.
    #[error(
        "profile `{profile}` is defined by no configuration file ({})",
        describe_profiles(defined)
    )]
    UnknownProfile {
        /// The profile asked for.
        profile: String,
        /// The profiles the files define, sorted.
        defined: Vec<String>,
    },
    /// The merged configuration does not match the expected types.
    #[error("invalid configuration:\n{}", .errors.join("\n"))]
    Invalid {
        /// One line per error: key path, what was found, what was expected and its source.
        errors: Vec<String>,
    },
}

/// The format of a configuration file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Yaml,
    Json,
    Toml,
}

impl FileFormat {
    fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            "toml" => Some(Self::Toml),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Yaml => "YAML",
            Self::Json => "JSON",
            Self::Toml => "TOML",
        }
    }

    fn parse(self, text: &str) -> Result<Dict, String> {
        if self == Self::Yaml {
            refuse_duplicate_keys(text)?;
        }
        let parsed = match self {
            Self::Yaml => Yaml::from_str::<Option<Dict>>(text).map_err(|e| e.to_string()),
            Self::Json => Json::from_str::<Option<Dict>>(text).map_err(|e| e.to_string()),
            Self::Toml => Toml::from_str::<Option<Dict>>(text).map_err(|e| e.to_string()),
        };
        // An empty file is an empty configuration, not an error.
        parsed.map(Option::unwrap_or_default)
    }
}

/// Refuses a YAML document in which a mapping repeats a key (where the last value would win
/// silently), naming the key and the lines of both occurrences.
fn refuse_duplicate_keys(text: &str) -> Result<(), String> {
    let Err(error) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return Ok(());
    };
    let message = error.to_string();
    // serde_yaml prefixes the path of the mapping (`job: duplicate entry …`).
    let marker = "duplicate entry with key ";
    let Some(rest) = message.find(marker).map(|at| &message[at + marker.len()..]) else {
        // Other errors are the parser's to report, with its own wording.
        return Ok(());
    };
    let key = rest
        .split(" at line ")
        .next()
        .unwrap_or(rest)
        .trim_matches('"')
        .to_owned();
    let lines: Vec<&str> = text.lines().collect();
    let is_key = |line: &str| {
        let trimmed = line.trim_start().trim_start_matches("- ");
        [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ]
        .iter()
        .any(|form| trimmed.starts_with(form.as_str()))
    };
    let indent = |line: &str| line.len() - line.trim_start().len();
    // The parser points at the start of the mapping that repeats the key: its occurrences are
    // the lines of that mapping, at its indentation, holding the key (a flow mapping on one
    // line holds both).
    let occurrences: Vec<usize> = error
        .location()
        .map(|location| {
            let start = location.line().max(1);
            let depth = location.column().saturating_sub(1);
            let mut found = Vec::new();
            for (n, line) in lines.iter().enumerate().skip(start - 1) {
                let number = n + 1;
                if number > start && !line.trim().is_empty() && indent(line) < depth {
                    break;
                }
                if number == start && line.matches(&format!("{key}:")).count() > 1 {
                    found.extend([number, number]);
                } else if indent(line) == depth && is_key(line) {
                    found.push(number);
                }
            }
            found
        })
        .unwrap_or_default();
    let (first, second) = (occurrences.first().copied(), occurrences.get(1).copied());
    Err(match (first, second) {
        (Some(first), Some(second)) => {
            format!(
                "duplicate key `{key}` at lines {first} and {second}; a key may appear once per mapping"
            )
        }
        _ => format!("{message}; a key may appear once per mapping"),
    })
}

/// One parsed configuration layer: its top level and its profile sections.
#[derive(Debug, Clone)]
struct Layer {
    metadata: Metadata,
    data: Map<Profile, Dict>,
}

impl Layer {
    fn new(metadata: Metadata, origin: &str, mut dict: Dict) -> Result<Self, ConfigError> {
        let mut data = Map::new();
        if let Some(profiles) = dict.remove(PROFILES_KEY) {
            let Value::Dict(_, profiles) = profiles else {
                return Err(ConfigError::Profile {
                    origin: origin.to_owned(),
                    profile: "*".to_owned(),
                });
            };
            for (name, section) in profiles {
                let Value::Dict(_, section) = section else {
                    return Err(ConfigError::Profile {
                        origin: origin.to_owned(),
                        profile: name,
                    });
                };
                data.insert(Profile::new(&name), section);
            }
        }
        data.insert(Profile::Default, dict);
        Ok(Self { metadata, data })
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(self.data.clone())
    }
}

/// Where an effective configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueSource {
    /// A configuration file (with the profile section it came from, if any).
    File {
        /// The file.
        path: PathBuf,
    },
    /// An environment variable `VELO_…`.
    Env,
    /// A named environment variable (MLflow's `MLFLOW_TRACKING_URI`, …).
    Variable {
        /// The variable.
        name: String,
    },
    /// An `--extras` snippet, numbered from 1.
    Extra {
        /// The snippet's position on the command line.
        index: usize,
    },
    /// Not set anywhere: the default of the config type.
    Default,
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path } => write!(f, "{}", path.display()),
            Self::Env => f.write_str("environment"),
            Self::Variable { name } => write!(f, "environment variable {name}"),
            Self::Extra { index } => write!(f, "--extras #{index}"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// One effective value with its dotted key path and source.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceEntry {
    /// The dotted key path, e.g. `job.model.max_depth`.
    pub key: String,
    /// The value, rendered as JSON.
    pub value: serde_json::Value,
    /// Where it came from.
    pub source: ValueSource,
}

/// Builds a configuration from files, environment, snippets and a profile.
///
/// ```
/// use velo_io::configs::ConfigLoader;
/// #[derive(serde::Deserialize)]
/// struct Settings { job: Job }
/// #[derive(serde::Deserialize)]
/// struct Job { depth: u32 }
/// let settings: Settings = ConfigLoader::default()
///     .without_env()
///     .extra("job: {depth: 7}")
///     .load()?
///     .value;
/// assert_eq!(settings.job.depth, 7);
/// # Ok::<(), velo_io::configs::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    files: Vec<PathBuf>,
    extras: Vec<String>,
    profile: Option<String>,
    env_prefix: Option<String>,
    mlflow_key: Option<String>,
}

impl Default for ConfigLoader {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            extras: Vec::new(),
            profile: None,
            env_prefix: Some(ENV_PREFIX.to_owned()),
            mlflow_key: Some(MLFLOW_KEY.to_owned()),
        }
    }
}

impl ConfigLoader {
    /// Adds a configuration file (YAML, JSON or TOML by extension); later files win.
    #[must_use]
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }

    /// Adds several configuration files, in order.
    #[must_use]
    pub fn files<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.files.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds a YAML snippet that overrides files and environment; later snippets win.
    #[must_use]
    pub fn extra(mut self, snippet: impl Into<String>) -> Self {
        self.extras.push(snippet.into());
        self
    }

    /// Adds several YAML snippets, in order.
    #[must_use]
    pub fn extras<S: Into<String>>(mut self, snippets: impl IntoIterator<Item = S>) -> Self {
        self.extras.extend(snippets.into_iter().map(Into::into));
        self
    }

    /// Selects a profile (`dev`, `prod`, …); `None` keeps the default profile.
    #[must_use]
    pub fn profile(mut self, profile: Option<String>) -> Self {
        self.profile = profile;
        self
    }

    /// Reads environment variables with this prefix (default [`ENV_PREFIX`]).
    #[must_use]
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefix = Some(prefix.into());
        self
    }

    /// Where the MLflow variables apply (default [`MLFLOW_KEY`]); `None` leaves them out.
    #[must_use]
    pub fn mlflow_key(mut self, key: Option<String>) -> Self {
        self.mlflow_key = key;
        self
    }

    /// Ignores the environment entirely, `VELO_…` and MLflow's variables (for embedders and
    /// tests).
    #[must_use]
    pub fn without_env(mut self) -> Self {
        self.env_prefix = None;
        self.mlflow_key = None;
        self
    }

    /// Builds the merged figment, reading and parsing every file and snippet.
    ///
    /// # Errors
    /// A file that is missing, unreadable, of an unknown extension or malformed, or a
    /// malformed snippet.
    fn figment(&self, notices: &mut Vec<String>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        let mut defined = std::collections::BTreeSet::new();
        for path in &self.files {
            let format =
                FileFormat::of(path).ok_or_else(|| ConfigError::Format { path: path.clone() })?;
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let origin = path.display().to_string();
            let mut dict = format.parse(&text).map_err(|message| ConfigError::Parse {
                origin: origin.clone(),
                message,
            })?;
            let base = path.parent().unwrap_or_else(|| Path::new(""));
            rebase_paths(&mut dict, base, &origin, "", notices);
            let metadata = Metadata::from(
                format!("{} file", format.name()),
                Source::File(path.clone()),
            );
            let layer = Layer::new(metadata, &origin, dict)?;
            defined.extend(
                layer
                    .data
                    .keys()
                    .filter(|profile| **profile != Profile::Default)
                    // Profiles are case-insensitive, as figment selects them.
                    .map(|profile| profile.as_str().as_str().to_ascii_lowercase()),
            );
            figment = figment.merge(layer);
        }
        if let Some(profile) = &self.profile
            && !profile.eq_ignore_ascii_case(Profile::Default.as_str().as_str())
            && !defined.contains(&profile.to_ascii_lowercase())
        {
            return Err(ConfigError::UnknownProfile {
                profile: profile.clone(),
                defined: defined.into_iter().collect(),
            });
        }
        if let Some(prefix) = &self.env_prefix {
            figment = figment.merge(env_provider(prefix));
        }
        for (position, snippet) in self.extras.iter().enumerate() {
            let origin = format!("--extras #{}", position + 1);
            let dict = FileFormat::Yaml
                .parse(snippet)
                .map_err(|message| ConfigError::Parse {
                    origin: origin.clone(),
                    message,
                })?;
            let metadata = Metadata::from(origin.clone(), Source::Custom(origin.clone()));
            let mut layer = Layer::new(metadata, &origin, dict)?;
            // Snippets override every profile: they are the user's last word.
            let top = layer.data.remove(&Profile::Default).unwrap_or_default();
            layer.data.insert(Profile::Global, top);
            figment = figment.merge(layer);
        }
        if let Some(profile) = &self.profile {
            figment = figment.select(profile.as_str());
        }
        if let Some(key) = &self.mlflow_key {
            figment = mlflow_layers(figment, key, |name| std::env::var(name).ok())?;
        }
        Ok(figment)
    }

    /// The sources this loader reads, for messages: its files and snippets, or `the defaults`.
    fn sources(&self) -> String {
        let mut names: Vec<String> = self
            .files
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        names.extend((1..=self.extras.len()).map(|index| format!("--extras #{index}")));
        if names.is_empty() {
            "the defaults and the environment".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// Loads and validates a configuration of type `T`.
    ///
    /// # Errors
    /// See [`ConfigError`]: every extraction error is listed with its key path and source.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Loaded<T>, ConfigError> {
        let mut notices = Vec::new();
        let figment = self.figment(&mut notices)?;
        let value = figment
            .extract::<T>()
            .map_err(|error| invalid(&figment, error, &self.sources()))?;
        Ok(Loaded {
            value,
            figment,
            notices,
        })
    }
}

/// Resolves the relative paths of a file's `dict` against `base`, the file's directory (see
/// the module docs); `key` is the dotted path of `dict`, for notices.
fn rebase_paths(dict: &mut Dict, base: &Path, origin: &str, key: &str, notices: &mut Vec<String>) {
    let in_schemas = key.rsplit('.').next() == Some(SCHEMAS_KEY);
    for (name, value) in dict.iter_mut() {
        let dotted = if key.is_empty() {
            name.clone()
        } else {
            format!("{key}.{name}")
        };
        match value {
            Value::Dict(_, inner) => rebase_paths(inner, base, origin, &dotted, notices),
            Value::Array(_, items) => {
                for (position, item) in items.iter_mut().enumerate() {
                    if let Value::Dict(_, inner) = item {
                        let dotted = format!("{dotted}.{position}");
                        rebase_paths(inner, base, origin, &dotted, notices);
                    }
                }
            }
            Value::String(_, text) if in_schemas || PATH_KEYS.contains(&name.as_str()) => {
                if let Some(resolved) = rebase(text, base, origin, &dotted, notices) {
                    *text = resolved;
                }
            }
            _ => {}
        }
    }
}

/// `text` resolved against `base` when it is a relative path (`None` to keep it as it is):
/// an absolute path, a URI, an empty string and paths in a file of the working directory are
/// kept; a path written for the working directory (see the module docs) is kept too, with a
/// notice.
fn rebase(
    text: &str,
    base: &Path,
    origin: &str,
    key: &str,
    notices: &mut Vec<String>,
) -> Option<String> {
    let path = Path::new(text);
    let uri = text.contains("://");
    if text.is_empty() || uri || path.is_absolute() || base.as_os_str().is_empty() {
        return None;
    }
    let resolved = normalize(&base.join(path));
    if resolved == normalize(path) {
        return None;
    }
    // What exists decides: the file itself first, then (for an output) its directory.
    let has_parent = |candidate: &Path| {
        candidate
            .parent()
            .is_some_and(|parent| !parent.as_os_str().is_empty() && parent.is_dir())
    };
    let legacy =
        !resolved.exists() && (path.exists() || (!has_parent(&resolved) && has_parent(path)));
    if legacy {
        let relative = relative_to(path, base);
        notices.push(format!(
            "{origin}: `{key}: {text}` is read relative to the working directory, as configs \
             were before paths became relative to their file; write `{key}: {}` to keep this \
             meaning wherever velo runs from",
            relative.display()
        ));
        return None;
    }
    Some(resolved.display().to_string())
}

/// `path` with `.` and `name/..` pairs removed, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(component),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// A relative `path` (from the working directory) written relative to the directory `base`:
/// `data/x` from `configs` is `../data/x` (an absolute `base` is compared with the absolute
/// `path`).
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    use std::path::Component;
    let absolute =
        |path: &Path| normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
    let (base, path) = if base.is_absolute() {
        (absolute(base), absolute(path))
    } else {
        (normalize(base), normalize(path))
    };
    let base: Vec<Component<'_>> = base
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let target: Vec<Component<'_>> = path.components().collect();
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for component in &target[common..] {
        out.push(component.as_os_str());
    }
    out
}

/// Merges one layer per MLflow variable that changes the [`MlflowService`] at `key`, over
/// everything else, each named after its variable. Nothing is added when no variable is set,
/// or when the configuration has nothing at `key`'s first segment (it is not a job file).
fn mlflow_layers(
    mut figment: Figment,
    key: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Figment, ConfigError> {
    let root = key.split('.').next().unwrap_or(key);
    if !figment.contains(root) {
        return Ok(figment);
    }
    // Values of the wrong type are reported by the full extraction; here they count as unset.
    let configured: MlflowService = figment.extract_inner(key).unwrap_or_default();
    for variable in MlflowService::VARIABLES {
        let changes: Vec<_> = configured
            .overrides(&lookup)
            .into_iter()
            .filter(|change| change.variable == variable)
            .collect();
        if changes.is_empty() {
            continue;
        }
        let mut leaf = serde_json::Map::new();
        for change in changes {
            leaf.insert(change.field.to_owned(), change.value.into());
        }
        let nested = key.rsplit('.').fold(
            serde_json::Value::Object(leaf),
            |inner, segment| serde_json::json!({ segment: inner }),
        );
        let origin = format!("{VARIABLE_SOURCE}{variable}");
        let dict = match Value::serialize(&nested) {
            Ok(Value::Dict(_, dict)) => dict,
            _ => {
                return Err(ConfigError::Parse {
                    origin,
                    message: "cannot be placed in the configuration".to_owned(),
                });
            }
        };
        let metadata = Metadata::from(origin.clone(), Source::Custom(origin.clone()));
        let mut data = Map::new();
        // Over every profile, as MLflow's variables are over every configuration.
        data.insert(Profile::Global, dict);
        figment = figment.merge(Layer { metadata, data });
    }
    Ok(figment)
}

/// The environment provider: `VELO_A__B=1` becomes `a.b = 1`, `KIND` keeps its case.
fn env_provider(prefix: &str) -> Env {
    // `lowercase(false)` must come after `filter_map`, which resets it.
    Env::prefixed(prefix)
        .filter_map(|key| {
            let key = key.as_str();
            if !key.contains("__") {
                return None;
            }
            let mapped: Vec<String> = key
                .split("__")
                .map(|part| {
                    if part.eq_ignore_ascii_case("kind") {
                        "KIND".to_owned()
                    } else {
                        part.to_ascii_lowercase()
                    }
                })
                .collect();
            Some(mapped.join(".").into())
        })
        .lowercase(false)
        .global()
}

fn describe_profiles(defined: &[String]) -> String {
    if defined.is_empty() {
        "the files define no profile".to_owned()
    } else {
        format!("defined: {}", defined.join(", "))
    }
}

/// Renders every figment error as one line naming key, problem and source; an error that no
/// value caused (a required key no source sets) names the sources that were read, `sources`.
fn invalid(figment: &Figment, error: figment::Error, sources: &str) -> ConfigError {
    let errors = error
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let source = error.metadata.as_ref().map(describe_metadata).or_else(|| {
                (!key.is_empty())
                    .then(|| figment.find_metadata(&key))
                    .flatten()
                    .map(describe_metadata)
            });
            let source = source.map(|source| name_variable(&source, &key));
            let mut line = String::new();
            if !key.is_empty() {
                line.push_str(&format!("key `{key}`: "));
            }
            match &error.kind {
                figment::error::Kind::UnknownField(found, expected)
                | figment::error::Kind::UnknownVariant(found, expected) => {
                    let what = if matches!(error.kind, figment::error::Kind::UnknownField(..)) {
                        "key"
                    } else {
                        "value"
                    };
                    line.push_str(&format!("unknown {what} `{found}`"));
                    if let Some(nearest) = nearest(found, expected) {
                        line.push_str(&format!("; did you mean `{nearest}`?"));
                    }
                    let valid: Vec<String> =
                        expected.iter().map(|name| format!("`{name}`")).collect();
                    if !valid.is_empty() {
                        line.push_str(&format!(" (expected one of {})", valid.join(", ")));
                    }
                }
                kind => line.push_str(&plain_types(&kind.to_string())),
            }
            match source {
                Some(source) => line.push_str(&format!(" (in {source})")),
                None => line.push_str(&format!(" (set by none of {sources})")),
            }
            line
        })
        .collect();
    ConfigError::Invalid { errors }
}

/// `source` with the one variable that set `key` named, when the source is the prefixed
/// environment (`` `VELO_` environment variable(s) `` for `job.model.max_depth` becomes
/// `environment variable VELO_JOB__MODEL__MAX_DEPTH`, the mapping [`env_provider`] reverses).
fn name_variable(source: &str, key: &str) -> String {
    let prefix = source
        .strip_prefix('`')
        .and_then(|rest| rest.split_once('`'))
        .filter(|(_, tail)| tail.trim() == "environment variable(s)")
        .map(|(prefix, _)| prefix);
    match prefix {
        Some(prefix) if !key.is_empty() => {
            let parts: Vec<String> = key.split('.').map(str::to_ascii_uppercase).collect();
            format!("{VARIABLE_SOURCE}{prefix}{}", parts.join("__"))
        }
        _ => source.to_owned(),
    }
}

/// The valid name closest to `found` when it is close enough to be a typo: within a third of
/// its length in edits (at least 2), or differing only in case.
fn nearest<'a>(found: &str, valid: &[&'a str]) -> Option<&'a str> {
    let length = found.chars().count();
    let limit = (length / 3).max(2);
    let found = found.to_lowercase();
    valid
        .iter()
        .map(|name| {
            let name_lower = name.to_lowercase();
            let whole = strsim::levenshtein(&found, &name_lower);
            // A misspelt start of a longer name (`RandomForrest` for `RandomForestModel`)
            // counts as one edit more than the misspelling.
            let start: String = name_lower.chars().take(length).collect();
            let prefix = if length >= 4 && name_lower.chars().count() > length {
                strsim::levenshtein(&found, &start) + 1
            } else {
                usize::MAX
            };
            (whole.min(prefix), *name)
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Serde's names of Rust types in an error message, said as a config's author writes values.
fn plain_types(message: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("expected usize", "expected an integer >= 0"),
        ("expected u64", "expected an integer >= 0"),
        ("expected u32", "expected an integer >= 0"),
        ("expected u16", "expected an integer >= 0"),
        ("expected u8", "expected an integer >= 0"),
        ("expected i64", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a string", "expected text"),
    ];
    let mut text = message.to_owned();
    for (rust, plain) in NAMES {
        // Whole words only: `expected u8` must not touch `expected u80`.
        let mut from = 0;
        while let Some(at) = text[from..].find(rust) {
            let start = from + at;
            let end = start + rust.len();
            let boundary = text[end..]
                .chars()
                .next()
                .is_none_or(|next| !next.is_alphanumeric());
            if boundary {
                text.replace_range(start..end, plain);
                from = start + plain.len();
            } else {
                from = end;
            }
        }
    }
    text
}

fn describe_metadata(metadata: &Metadata) -> String {
    match &metadata.source {
        Some(Source::File(path)) => path.display().to_string(),
        Some(Source::Custom(custom)) => custom.clone(),
        _ => metadata.name.to_string(),
    }
}

fn source_of(metadata: &Metadata) -> ValueSource {
    match &metadata.source {
        Some(Source::File(path)) => ValueSource::File { path: path.clone() },
        Some(Source::Custom(custom)) => {
            if let Some(name) = custom.strip_prefix(VARIABLE_SOURCE) {
                return ValueSource::Variable {
                    name: name.to_owned(),
                };
            }
            custom
                .strip_prefix("--extras #")
                .and_then(|n| n.parse().ok())
                .map_or(ValueSource::Env, |index| ValueSource::Extra { index })
        }
        _ => ValueSource::Env,
    }
}

/// A loaded configuration together with what is needed to explain where its values came from.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The validated configuration.
    pub value: T,
    figment: Figment,
    notices: Vec<String>,
}

impl<T> Loaded<T> {
    /// What the user should know about how the configuration was read, one sentence each:
    /// paths still read relative to the working directory, and how to write them (see the
    /// module docs).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }
}

impl<T: Serialize> Loaded<T> {
    /// Every leaf of the effective configuration (defaults included), in key order, with the
    /// source that set it.
    ///
    /// # Errors
    /// Fails only if `T` cannot be serialized, which the config types never do.
    pub fn provenance(&self) -> Result<Vec<ProvenanceEntry>, ConfigError> {
        let effective = serde_json::to_value(&self.value).map_err(|e| ConfigError::Invalid {
            errors: vec![e.to_string()],
        })?;
        let mut leaves = BTreeMap::new();
        flatten(String::new(), &effective, &mut leaves);
        Ok(leaves
            .into_iter()
            .map(|(key, value)| {
                // figment finds values by dict keys only: an array element is attributed to
                // the source of its array.
                let lookup = match key
                    .split('.')
                    .position(|part| part.parse::<usize>().is_ok())
                {
                    Some(first_index) => key
                        .split('.')
                        .take(first_index)
                        .collect::<Vec<_>>()
                        .join("."),
                    None => key.clone(),
                };
                let source = self
                    .figment
                    .find_value(&lookup)
                    .ok()
                    .and_then(|found| self.figment.get_metadata(found.tag()))
                    .map_or(ValueSource::Default, source_of);
                ProvenanceEntry { key, value, source }
            })
            .collect())
    }

    /// The effective configuration as JSON.
    ///
    /// # Errors
    /// Fails only if `T` cannot be serialized.
    pub fn effective(&self) -> Result<serde_json::Value, ConfigError> {
        serde_json::to_value(&self.value).map_err(|e| ConfigError::Invalid {
            errors: vec![e.to_string()],
        })
    }
}

/// Collects the leaves of a JSON value under dotted keys (arrays index as `key.0`).
fn flatten(
    prefix: String,
    value: &serde_json::Value,
    out: &mut BTreeMap<String, serde_json::Value>,
) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                flatten(join(key), child, out);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for (index, child) in items.iter().enumerate() {
                flatten(join(&index.to_string()), child, out);
            }
        }
        leaf => {
            out.insert(prefix, leaf.clone());
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail closures return figment's error"
)]
mod tests {
    use super::*;
    use figment::Jail;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        job: Job,
    }

    #[derive(Debug, Serialize, PartialEq)]
    #[serde(tag = "KIND")]
    enum Job {
        Train(Train),
    }

    velo_core::impl_kind_deserialize!(Job { Train });

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Train {
        #[serde(default = "default_depth")]
        depth: u32,
        #[serde(default)]
        name: String,
    }

    fn default_depth() -> u32 {
        20
    }

    #[test]
    fn relative_paths_are_relative_to_their_file_and_old_configs_still_load() {
        Jail::expect_with(|jail| {
            jail.create_dir("configs")?;
            jail.create_dir("configs/schemas")?;
            jail.create_dir("data")?;
            jail.create_file("data/old.parquet", "")?;
            jail.create_file(
                "configs/job.yaml",
                "job:\n  inputs: {KIND: ParquetReader, path: ../data/x.parquet}\n  \
                 legacy: {path: data/old.parquet}\n  absolute: {path: /srv/x.parquet}\n  \
                 schemas: {inputs: schemas/inputs.yaml}\n  name: data/not_a_path\n  \
                 services: {mlflow: {tracking_uri: ./mlruns}}\n  \
                 outputs: {report: ../outputs/r.html}\n",
            )?;
            let loaded = ConfigLoader::default()
                .without_env()
                .file("configs/job.yaml")
                .extra("job: {extra: {path: data/from_extras.parquet}}")
                .load::<serde_json::Value>()
                .map_err(|error| error.to_string())?;
            let job = &loaded.value["job"];
            assert_eq!(job["inputs"]["path"], "data/x.parquet");
            assert_eq!(job["schemas"]["inputs"], "configs/schemas/inputs.yaml");
            assert_eq!(job["absolute"]["path"], "/srv/x.parquet");
            assert_eq!(job["name"], "data/not_a_path", "not a path key");
            assert_eq!(
                job["services"]["mlflow"]["tracking_uri"], "./mlruns",
                "a URI"
            );
            assert_eq!(job["outputs"]["report"], "outputs/r.html");
            assert_eq!(
                job["extra"]["path"], "data/from_extras.parquet",
                "the working directory"
            );
            // A path written for the working directory still names what it named, with a
            // notice saying how to write it.
            assert_eq!(job["legacy"]["path"], "data/old.parquet");
            let notices = loaded.notices();
            assert_eq!(notices.len(), 1, "{notices:?}");
            assert!(
                notices[0].contains("write `job.legacy.path: ../data/old.parquet`"),
                "{}",
                notices[0]
            );
            Ok(())
        });
    }

    #[test]
    fn the_nearest_name_allows_a_misspelt_start_of_a_longer_one() {
        let kinds = [
            "RandomForestModel",
            "GradientBoostingModel",
            "NeuralNetModel",
        ];
        assert_eq!(nearest("RandomForrest", &kinds), Some("RandomForestModel"));
        assert_eq!(
            nearest("randomforestmodel", &kinds),
            Some("RandomForestModel")
        );
        assert_eq!(
            nearest("n_estimator", &["n_estimators", "max_depth"]),
            Some("n_estimators")
        );
        assert_eq!(nearest("Tree", &kinds), None);
        assert_eq!(
            nearest("abc", &["abcdefgh"]),
            None,
            "too short to be a start"
        );
    }

    fn check(loader: ConfigLoader, expected_depth: u32, expected_name: &str) {
        let loaded = loader.load::<Settings>().expect("loads");
        let Job::Train(train) = loaded.value.job;
        assert_eq!(
            (train.depth, train.name.as_str()),
            (expected_depth, expected_name)
        );
    }

    #[test]
    fn files_merge_left_to_right_then_env_then_extras() {
        Jail::expect_with(|jail| {
            jail.create_file("a.yaml", "job: {KIND: Train, depth: 3, name: a}")?;
            jail.create_file("b.json", r#"{"job": {"depth": 4}}"#)?;
            check(ConfigLoader::default().file("a.yaml"), 3, "a");
            check(
                ConfigLoader::default().file("a.yaml").file("b.json"),
                4,
                "a",
            );
            jail.set_env("VELO_JOB__DEPTH", "5");
            check(
                ConfigLoader::default().file("a.yaml").file("b.json"),
                5,
                "a",
            );
            check(
                ConfigLoader::default()
                    .file("a.yaml")
                    .extra("job: {depth: 6}"),
                6,
                "a",
            );
            check(ConfigLoader::default().file("a.yaml").without_env(), 3, "a");
            Ok(())
        });
    }

    #[test]
    fn env_keeps_kind_upper_case_and_ignores_flat_variables() {
        Jail::expect_with(|jail| {
            jail.set_env("VELO_JOB__KIND", "Train");
            jail.set_env("VELO_JOB__NAME", "env");
            jail.set_env("VELO_PROFILE", "dev");
            jail.set_env("VELO_IT", "1");
            check(ConfigLoader::default(), 20, "env");
            Ok(())
        });
    }

    #[test]
    fn profiles_override_the_top_level_of_their_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "job: {KIND: Train, depth: 3}\nprofiles:\n  dev: {job: {depth: 1}}\n  prod: {job: {name: p}}\n",
            )?;
            check(ConfigLoader::default().file("c.yaml"), 3, "");
            check(
                ConfigLoader::default()
                    .file("c.yaml")
                    .profile(Some("dev".into())),
                1,
                "",
            );
            check(
                ConfigLoader::default()
                    .file("c.yaml")
                    .profile(Some("prod".into())),
                3,
                "p",
            );
            check(
                ConfigLoader::default()
                    .file("c.yaml")
                    .profile(Some("dev".into()))
                    .extra("job: {depth: 9}"),
                9,
                "",
            );
            check(
                ConfigLoader::default()
                    .file("c.yaml")
                    .profile(Some("default".into())),
                3,
                "",
            );
            // A profile no file defines is refused, naming those that exist.
            let error = ConfigLoader::default()
                .file("c.yaml")
                .profile(Some("nope".into()))
                .load::<Settings>()
                .unwrap_err()
                .to_string();
            assert_eq!(
                error,
                "profile `nope` is defined by no configuration file (defined: dev, prod)"
            );
            jail.create_file("plain.yaml", "job: {KIND: Train}")?;
            let error = ConfigLoader::default()
                .file("plain.yaml")
                .profile(Some("dev".into()))
                .load::<Settings>()
                .unwrap_err()
                .to_string();
            assert!(error.contains("the files define no profile"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn duplicate_keys_are_refused_with_both_lines() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "dup.yaml",
                "job:\n  KIND: Train\n  name: a\n  depth: 3\n  name: b\n",
            )?;
            let error = ConfigLoader::default()
                .file("dup.yaml")
                .load::<Settings>()
                .unwrap_err()
                .to_string();
            assert_eq!(
                error,
                "cannot parse dup.yaml: duplicate key `name` at lines 3 and 5; a key may appear once per mapping"
            );
            let snippet = ConfigLoader::default()
                .extra("{job: {KIND: Train, depth: 1, depth: 2}}")
                .load::<Settings>()
                .unwrap_err()
                .to_string();
            assert!(
                snippet.starts_with("cannot parse --extras #1: ") && snippet.contains("depth"),
                "{snippet}"
            );
            // The same key in different mappings is fine.
            jail.create_file(
                "ok.yaml",
                "job: {KIND: Train, name: a}\nprofiles:\n  dev: {job: {name: b}}\n",
            )?;
            check(ConfigLoader::default().file("ok.yaml"), 20, "a");
            Ok(())
        });
    }

    #[test]
    fn provenance_names_each_source() {
        Jail::expect_with(|jail| {
            jail.create_file("a.yaml", "job: {KIND: Train, name: a}")?;
            let loaded = ConfigLoader::default()
                .without_env()
                .file("a.yaml")
                .extra("job: {depth: 8}")
                .load::<Settings>()
                .expect("loads");
            let entries = loaded.provenance().expect("provenance");
            let find = |key: &str| {
                entries
                    .iter()
                    .find(|e| e.key == key)
                    .expect(key)
                    .source
                    .clone()
            };
            assert_eq!(
                find("job.name"),
                ValueSource::File {
                    path: "a.yaml".into()
                }
            );
            assert_eq!(find("job.depth"), ValueSource::Extra { index: 1 });
            assert_eq!(
                find("job.KIND"),
                ValueSource::File {
                    path: "a.yaml".into()
                }
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("a.yaml", "job: {KIND: Train}")?;
            jail.set_env("VELO_JOB__NAME", "from-env");
            let loaded = ConfigLoader::default()
                .file("a.yaml")
                .load::<Settings>()
                .expect("loads");
            let entries = loaded.provenance().expect("provenance");
            let find = |key: &str| {
                entries
                    .iter()
                    .find(|e| e.key == key)
                    .expect(key)
                    .source
                    .clone()
            };
            assert_eq!(find("job.name"), ValueSource::Env);
            assert_eq!(find("job.depth"), ValueSource::Default);
            Ok(())
        });
    }

    fn error_of(loader: ConfigLoader) -> String {
        loader
            .without_env()
            .load::<Settings>()
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_expectation() {
        Jail::expect_with(|jail| {
            jail.create_file("wrong_type.yaml", "job: {KIND: Train, depth: deep}")?;
            let message = error_of(ConfigLoader::default().file("wrong_type.yaml"));
            assert!(message.contains("depth"), "{message}");
            assert!(message.contains("expected an integer >= 0"), "{message}");
            assert!(message.contains("wrong_type.yaml"), "{message}");

            jail.create_file("unknown.yaml", "job: {KIND: Train, dpeth: 3}")?;
            let message = error_of(ConfigLoader::default().file("unknown.yaml"));
            assert!(message.contains("dpeth"), "{message}");
            assert!(message.contains("unknown.yaml"), "{message}");

            jail.create_file("top.yaml", "job: {KIND: Train}\njbo: 1")?;
            let message = error_of(ConfigLoader::default().file("top.yaml"));
            assert!(message.contains("jbo"), "{message}");

            jail.create_file("missing.yaml", "{}")?;
            let message = error_of(ConfigLoader::default().file("missing.yaml"));
            assert!(message.contains("missing field `job`"), "{message}");

            jail.create_file("kind.yaml", "job: {KIND: Tarin}")?;
            let message = error_of(ConfigLoader::default().file("kind.yaml"));
            assert!(
                message.contains("Tarin") && message.contains("Train"),
                "{message}"
            );

            // A typo gets the nearest valid name; a far-off word gets none.
            jail.create_file("typo.yaml", "job: {KIND: Train, depht: 3}")?;
            let message = error_of(ConfigLoader::default().file("typo.yaml"));
            assert!(message.contains("did you mean `depth`?"), "{message}");
            // A variable's error names the variable.
            jail.create_file("plain.yaml", "job: {KIND: Train}")?;
            jail.set_env("VELO_JOB__DEPTH", "deep");
            let message = ConfigLoader::default()
                .file("plain.yaml")
                .load::<Settings>()
                .expect_err("a word for a number")
                .to_string();
            assert!(
                message.contains("environment variable VELO_JOB__DEPTH"),
                "{message}"
            );
            jail.set_env("VELO_JOB__DEPTH", "3");
            jail.create_file("far.yaml", "job: {KIND: Train, colour: 3}")?;
            let message = error_of(ConfigLoader::default().file("far.yaml"));
            assert!(!message.contains("did you mean"), "{message}");

            jail.create_file("broken.yaml", "job: {KIND: Train\n  depth: [")?;
            let message = error_of(ConfigLoader::default().file("broken.yaml"));
            assert!(
                message.contains("broken.yaml") && message.contains("line"),
                "{message}"
            );

            let message = error_of(ConfigLoader::default().file("absent.yaml"));
            assert!(message.contains("absent.yaml"), "{message}");

            jail.create_file("conf.ini", "")?;
            let message = error_of(ConfigLoader::default().file("conf.ini"));
            assert!(message.contains("unsupported extension"), "{message}");

            let message = error_of(ConfigLoader::default().extra("job: [unclosed"));
            assert!(message.contains("--extras #1"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn empty_files_and_toml_are_accepted() {
        Jail::expect_with(|jail| {
            jail.create_file("empty.yaml", "")?;
            jail.create_file("t.toml", "[job]\nKIND = \"Train\"\ndepth = 2\n")?;
            check(
                ConfigLoader::default()
                    .without_env()
                    .file("empty.yaml")
                    .file("t.toml"),
                2,
                "",
            );
            Ok(())
        });
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct JobFile {
        job: Served,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Served {
        #[serde(default)]
        services: Services,
    }

    #[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Services {
        #[serde(default)]
        mlflow: MlflowService,
    }

    fn mlflow_of(loader: ConfigLoader) -> (MlflowService, BTreeMap<String, String>) {
        let loaded = loader.load::<JobFile>().expect("loads");
        let sources = loaded
            .provenance()
            .expect("provenance")
            .into_iter()
            .map(|entry| (entry.key, entry.source.to_string()))
            .collect();
        (loaded.value.job.services.mlflow, sources)
    }

    #[test]
    fn mlflow_variables_are_the_last_layer_and_name_their_source() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "run.yaml",
                "job: {services: {mlflow: {experiment_name: bikes}}}\nprofiles:\n  dev: {job: {services: {mlflow: {tracking_uri: ./dev}}}}\n",
            )?;
            let (plain, sources) = mlflow_of(ConfigLoader::default().file("run.yaml"));
            assert_eq!(plain.tracking_uri, MlflowService::DEFAULT_URI);
            assert_eq!(sources["job.services.mlflow.tracking_uri"], "default");

            jail.set_env("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000");
            jail.set_env("MLFLOW_EXPERIMENT_NAME", "staging");
            let loader = || {
                ConfigLoader::default()
                    .file("run.yaml")
                    .profile(Some("dev".into()))
                    .extra("job: {services: {mlflow: {experiment_name: extra}}}")
            };
            let (moved, sources) = mlflow_of(loader());
            assert_eq!(moved.tracking_uri, "http://127.0.0.1:5000");
            // The registry followed: the profile set tracking only, so both were one place.
            assert_ne!(moved.registry_uri, moved.tracking_uri);
            assert_eq!(moved.registry_uri, MlflowService::DEFAULT_URI);
            assert_eq!(moved.experiment_name, "staging");
            let variable = "environment variable MLFLOW_TRACKING_URI";
            assert_eq!(sources["job.services.mlflow.tracking_uri"], variable);
            assert_eq!(
                sources["job.services.mlflow.experiment_name"],
                "environment variable MLFLOW_EXPERIMENT_NAME"
            );

            // Without the profile, tracking and registry were both the default: both move.
            let (both, sources) = mlflow_of(ConfigLoader::default().file("run.yaml"));
            assert_eq!(both.registry_uri, "http://127.0.0.1:5000");
            assert_eq!(sources["job.services.mlflow.registry_uri"], variable);

            jail.set_env("MLFLOW_REGISTRY_URI", "./models");
            let (split, sources) = mlflow_of(ConfigLoader::default().file("run.yaml"));
            assert_eq!(
                (split.tracking_uri.as_str(), split.registry_uri.as_str()),
                ("http://127.0.0.1:5000", "./models")
            );
            assert_eq!(
                sources["job.services.mlflow.registry_uri"],
                "environment variable MLFLOW_REGISTRY_URI"
            );

            // Out of the way when asked, and for files that hold no job.
            let (kept, _) = mlflow_of(ConfigLoader::default().file("run.yaml").without_env());
            assert_eq!(kept.tracking_uri, MlflowService::DEFAULT_URI);
            jail.create_file("other.yaml", "job: {KIND: Train}")?;
            check(
                ConfigLoader::default().file("other.yaml").mlflow_key(None),
                20,
                "",
            );
            Ok(())
        });
    }
}
