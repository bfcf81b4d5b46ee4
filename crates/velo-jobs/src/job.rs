//! The [`Job`] trait every job implements, and the macro that registers jobs in [`JobConfig`].
//!
//! A job is one module holding its config struct (its `KIND`) and `impl Job for …`. The crate
//! root lists each job once in a `register_jobs!` invocation, which declares the module,
//! re-exports the job and generates [`JobConfig`] (the `KIND`-tagged enum), its
//! deserializer and the dispatch of [`JobConfig::kind`], [`JobConfig::services`],
//! [`JobConfig::plan`], [`JobConfig::schema_paths`] and [`JobConfig::run`].
//!
//! [`JobConfig`]: crate::JobConfig
//! [`JobConfig::kind`]: crate::JobConfig::kind
//! [`JobConfig::services`]: crate::JobConfig::services
//! [`JobConfig::plan`]: crate::JobConfig::plan
//! [`JobConfig::schema_paths`]: crate::JobConfig::schema_paths
//! [`JobConfig::run`]: crate::JobConfig::run

use std::path::Path;

use crate::{
    JobContext, JobError, JobOutcome,
    common::{AliasOrVersion, SchemaFiles, Services},
};

/// A configurable job: the config struct a YAML file's `job:` holds, and what running it does.
///
/// Embedders run a job through [`JobConfig::run`](crate::JobConfig::run), or call
/// [`Job::run`] on the config struct directly:
///
/// ```no_run
/// use velo_jobs::{Job as _, JobContext, PromotionJob};
///
/// let job: PromotionJob = serde_yaml::from_str("alias: Champion")?;
/// let context = JobContext::open(&job.services.mlflow, Default::default())?;
/// let outcome = job.run(&context)?;
/// println!("{}", outcome.lines.join("\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Job {
    /// The job's `KIND` in configuration files: the config struct's name.
    const KIND: &'static str;

    /// The job's services (logging, alerts, tracking).
    fn services(&self) -> &Services;

    /// A human description of what this job would do, one step per line.
    fn plan(&self) -> Vec<String>;

    /// The schema files the job refers to, validated before it runs (none by default).
    fn schemas(&self) -> Option<&SchemaFiles> {
        None
    }

    /// The registered model version the job reads, checked to exist before it runs (none by
    /// default).
    fn registered_model(&self) -> Option<AliasOrVersion> {
        None
    }

    /// Checks what the configuration can check before anything runs, beyond its types (names
    /// that refer to each other, columns the schemas must have); nothing by default.
    ///
    /// # Errors
    /// [`JobError::Config`] naming the field, or a schema file that cannot be read.
    fn check(&self) -> Result<(), JobError> {
        Ok(())
    }

    /// Runs the job with the services of `context`.
    ///
    /// # Errors
    /// Whatever stops the job; the tracking run it opened, if any, ends FAILED with it.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError>;
}

/// The schema files of `schemas` that exist in the configuration, inputs first.
pub(crate) fn schema_paths(schemas: Option<&SchemaFiles>) -> Vec<&Path> {
    schemas
        .map(|files| {
            std::iter::once(files.inputs.as_path())
                .chain(files.targets.as_deref())
                .chain(files.outputs.as_deref())
                .collect()
        })
        .unwrap_or_default()
}

/// Resolves the registered model `which` names, if any, in `context`'s registry.
pub(crate) fn check_reference(
    context: &JobContext,
    which: Option<AliasOrVersion>,
) -> Result<(), JobError> {
    let Some(which) = which else {
        return Ok(());
    };
    let uri = which.uri(context.mlflow.registry_name.clone());
    uri.resolve(context.registry.as_ref())
        .map(|_| ())
        .map_err(|source| JobError::Reference {
            uri: uri.to_string(),
            hint: what_exists(context, &context.mlflow.registry_name),
            source: Box::new(source),
        })
}

/// What the registry holds for `name`, to show beside a reference that does not resolve: its
/// aliases and versions, or the registered models when `name` is none of them.
fn what_exists(context: &JobContext, name: &str) -> String {
    let registry = context.registry.as_ref();
    match registry.get_registered_model(name) {
        Ok(Some(model)) => {
            let aliases: Vec<String> = model
                .aliases
                .iter()
                .map(|alias| format!("{} (version {})", alias.alias, alias.version))
                .collect();
            let versions: Vec<String> = registry
                .list_model_versions(name)
                .unwrap_or_default()
                .into_iter()
                .map(|version| version.version)
                .collect();
            format!(
                "; `{name}` has {} and {}",
                if aliases.is_empty() {
                    "no alias".to_owned()
                } else {
                    format!("aliases {}", aliases.join(", "))
                },
                if versions.is_empty() {
                    "no version".to_owned()
                } else {
                    format!("versions {}", versions.join(", "))
                }
            )
        }
        Ok(None) => match registry.list_registered_models() {
            Ok(models) if models.is_empty() => "; the registry holds no model yet".to_owned(),
            Ok(models) => format!(
                "; there is no model `{name}`: the registered models are {}",
                models.join(", ")
            ),
            Err(_) => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// Registers jobs: one line per job, `module::Job: "what it does",`.
///
/// Declares `pub mod module;`, re-exports `module::Job`, and generates the `KIND`-tagged
/// [`JobConfig`](crate::JobConfig) (the description becomes the variant's documentation and
/// its JSON Schema description) with its deserializer and dispatch.
macro_rules! register_jobs {
    ($($module:ident :: $job:ident : $doc:literal,)+) => {
        $(pub mod $module;)+
        pub use self::{$($module::$job),+};

        /// A job, selected by `KIND`.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
        #[serde(tag = "KIND")]
        #[non_exhaustive]
        #[allow(
            clippy::large_enum_variant,
            reason = "one config per process, read once: its size does not matter, boxing would clutter every match"
        )]
        pub enum JobConfig {
            $(
                #[doc = $doc]
                $job($job),
            )+
        }

        velo_core::impl_kind_deserialize!(JobConfig { $($job),+ });

        impl JobConfig {
            /// The `KIND` of every registered job, in registration order.
            pub const KINDS: &'static [&'static str] = &[$(<$job as $crate::Job>::KIND),+];

            /// The `KIND` of this job.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$job(_) => <$job as $crate::Job>::KIND,)+
                }
            }

            /// The job's services (logging, alerts, tracking).
            pub fn services(&self) -> &$crate::common::Services {
                match self {
                    $(Self::$job(job) => $crate::Job::services(job),)+
                }
            }

            /// A human description of what this job would do, one step per line.
            pub fn plan(&self) -> Vec<String> {
                match self {
                    $(Self::$job(job) => $crate::Job::plan(job),)+
                }
            }

            /// The schema files the job refers to, for validation before it runs.
            pub fn schema_paths(&self) -> Vec<&std::path::Path> {
                match self {
                    $(Self::$job(job) => $crate::job::schema_paths($crate::Job::schemas(job)),)+
                }
            }

            /// Checks, before anything runs or is logged, the configuration ([`Job::check`])
            /// and what the job refers to in the stores of `context`: the registered model
            /// version it reads exists.
            ///
            /// # Errors
            /// [`JobError::Config`] for a configuration that cannot run, [`JobError::Reference`]
            /// naming the model URI and the registry.
            ///
            /// [`Job::check`]: $crate::Job::check
            pub fn preflight(&self, context: &JobContext) -> Result<(), JobError> {
                match self {
                    $(Self::$job(job) => $crate::Job::check(job)?,)+
                }
                let which = match self {
                    $(Self::$job(job) => $crate::Job::registered_model(job),)+
                };
                $crate::job::check_reference(context, which)
            }

            /// Runs the job with the services of `context`.
            ///
            /// # Errors
            /// Whatever stops the job (see [`JobError`]).
            pub fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
                match self {
                    $(Self::$job(job) => $crate::Job::run(job, context),)+
                }
            }
        }
    };
}

pub(crate) use register_jobs;
