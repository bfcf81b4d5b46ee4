//! The promotion job: point an alias at a registered model version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use velo_core::metrics::Threshold;

use crate::common::Services;

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

impl PromotionJob {
    fn default_alias() -> String {
        "Champion".to_owned()
    }

    pub(crate) fn plan(&self) -> Vec<String> {
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
}
