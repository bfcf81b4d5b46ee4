//! The promotion job: point an alias at a registered model version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use velo_core::metrics::Threshold;

use crate::{JobContext, JobError, JobOutcome, common::Services};

/// Point an alias (default `Champion`) at a model version, the latest one unless told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionJob {
    /// The alias to set.
    #[serde(default = "PromotionJob::default_alias")]
    pub alias: String,
    /// The version to promote; `null` promotes the latest.
    #[serde(default)]
    pub version: Option<u64>,
    /// Refuse a version whose logged metrics miss these thresholds (metric name -> bound).
    #[serde(default)]
    pub thresholds: BTreeMap<String, Threshold>,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl crate::Job for PromotionJob {
    const KIND: &'static str = "PromotionJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn registered_model(&self) -> Option<crate::common::AliasOrVersion> {
        self.version.map(crate::common::AliasOrVersion::Version)
    }

    fn plan(&self) -> Vec<String> {
        let version = self.version.map_or_else(
            || "the latest version".to_owned(),
            |v| format!("version {v}"),
        );
        let mut plan = vec![format!(
            "set alias `{}` of `{}` to {version}",
            self.alias, self.services.mlflow.registry_name
        )];
        if !self.thresholds.is_empty() {
            let names: Vec<_> = self.thresholds.keys().map(String::as_str).collect();
            plan.insert(
                0,
                format!(
                    "check the version's logged {} against thresholds",
                    names.join(", ")
                ),
            );
        }
        plan
    }

    /// Checks the chosen version against the thresholds, if any, then points the alias at it.
    /// A version that misses a threshold is refused, and the alias stays where it was.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        let name = &context.mlflow.registry_name;
        let version = match self.version {
            Some(number) => context
                .registry
                .get_model_version(name, &number.to_string())?,
            None => latest_finished(context, name)?,
        }
        .ok_or_else(|| velo_io::registries::RegistryError::NotFound {
            what: match self.version {
                Some(number) => format!(
                    "model version {name}/{number} in {}",
                    context.registry.location()
                ),
                None => format!(
                    "any version of model {name} from a finished run in {}",
                    context.registry.location()
                ),
            },
        })?;
        if !self.thresholds.is_empty() {
            let run = context.tracking.get_run(&version.run_id)?;
            let mut misses = Vec::new();
            for (metric, bound) in &self.thresholds {
                match run.data.metric(metric) {
                    Some(value) if bound.check(value) => {}
                    Some(value) => misses.push(format!(
                        "{metric} = {value} (needs {} {})",
                        if bound.greater_is_better { ">=" } else { "<=" },
                        bound.threshold
                    )),
                    None => {
                        misses.push(format!("{metric} was not logged by run {}", version.run_id));
                    }
                }
            }
            if !misses.is_empty() {
                return Err(JobError::Thresholds {
                    name: name.clone(),
                    version: version.version.clone(),
                    failures: misses,
                    alias: Some(self.alias.clone()),
                });
            }
        }
        let reason = if self.thresholds.is_empty() {
            match self.version {
                Some(_) => "the version asked for".to_owned(),
                None => "the latest version from a finished run".to_owned(),
            }
        } else {
            let bounds: Vec<String> = self
                .thresholds
                .iter()
                .map(|(metric, bound)| {
                    format!(
                        "{metric} {} {}",
                        if bound.greater_is_better { ">=" } else { "<=" },
                        bound.threshold
                    )
                })
                .collect();
            format!("thresholds met: {}", bounds.join(", "))
        };
        velo_io::registries::history::move_alias(
            context.registry.as_ref(),
            name,
            &self.alias,
            &version.version,
            &context.actor("PromotionJob", None),
            &reason,
        )?;
        let mut outcome = JobOutcome::new("Promotion".to_owned());
        outcome.lines.push(format!(
            "{name}@{} -> version {}",
            self.alias, version.version
        ));
        outcome.model_version = context.registry.get_model_version(name, &version.version)?;
        Ok(outcome)
    }
}

impl PromotionJob {
    fn default_alias() -> String {
        "Champion".to_owned()
    }


}

/// The newest version of `name` whose run finished: versions registered by a run that was then
/// killed or failed (tagged [`RUN_STATUS_TAG`](crate::RUN_STATUS_TAG), or whose run in this
/// tracking store did not end FINISHED) are passed over, with a warning.
fn latest_finished(
    context: &JobContext,
    name: &str,
) -> Result<Option<velo_io::registries::ModelVersion>, JobError> {
    let mut versions = match context.registry.list_model_versions(name) {
        Ok(versions) => versions,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    versions.sort_by_key(|version| std::cmp::Reverse(version.version.parse::<u64>().unwrap_or(0)));
    for version in versions {
        let killed = version
            .tags
            .iter()
            .any(|tag| tag.key == crate::RUN_STATUS_TAG && tag.value != "FINISHED");
        // A run this tracking store does not know (a version registered from elsewhere) is
        // taken on trust; a known run must have finished.
        let finished = !killed
            && match context.tracking.get_run(&version.run_id) {
                Ok(run) => run.info.status == velo_io::registries::RunStatus::Finished,
                Err(error) if error.is_not_found() => true,
                Err(error) => return Err(error.into()),
            };
        if finished {
            return Ok(Some(version));
        }
        tracing::warn!(
            model = name,
            version = %version.version,
            run = %version.run_id,
            "passing over a version whose run did not finish"
        );
    }
    Ok(None)
}
