//! The model registry: registered models, versions, aliases and tags.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{
    client::{Body, Client, Idempotency},
    error::{Error, Result},
    types::{ModelVersion, RegisteredModel, Tag},
};

/// Options of a model-version search.
#[derive(Debug, Clone, Default)]
pub struct VersionSearch {
    /// A filter such as `name = 'bikes'` or `run_id = '…'`.
    pub filter: Option<String>,
    /// Orderings; MLflow has no stable default, so pass one (`version_number DESC`).
    pub order_by: Vec<String>,
    /// Page size.
    pub max_results: Option<u32>,
    /// The token of the page to read.
    pub page_token: Option<String>,
}

/// A page of model versions.
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct VersionsPage {
    /// The versions (MLflow's search leaves their aliases out).
    #[serde(default)]
    pub model_versions: Vec<ModelVersion>,
    /// The token of the next page, if any.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A page of registered models.
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct ModelsPage {
    /// The models.
    #[serde(default)]
    pub registered_models: Vec<RegisteredModel>,
    /// The token of the next page, if any.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// Checks an alias name as MLflow does: letters, digits, `_` and `-`, not `latest` and not
/// `v<digits>` (both reserved for version references).
pub fn check_alias(alias: &str) -> Result<()> {
    let reserved = alias.eq_ignore_ascii_case("latest")
        || (alias.len() > 1
            && alias.starts_with(['v', 'V'])
            && alias[1..].bytes().all(|byte| byte.is_ascii_digit()));
    let valid = !alias.is_empty()
        && alias.len() <= 255
        && alias
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !valid || reserved {
        return Err(Error::InvalidArgument(format!(
            "alias {alias:?}: use letters, digits, `_` and `-`; `latest` and `v<number>` are reserved"
        )));
    }
    Ok(())
}

impl Client {
    /// Creates a registered model.
    pub async fn create_registered_model(
        &self,
        name: &str,
        tags: &[Tag],
        description: Option<&str>,
    ) -> Result<RegisteredModel> {
        #[derive(Serialize)]
        struct Request<'a> {
            name: &'a str,
            tags: &'a [Tag],
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
        }
        #[derive(Deserialize)]
        struct Answer {
            registered_model: RegisteredModel,
        }
        let answer: Answer = self
            .call(
                Method::POST,
                "registered-models/create",
                &[],
                Body::json(&Request {
                    name,
                    tags,
                    description,
                })?,
                Idempotency::Unsafe,
            )
            .await?;
        Ok(answer.registered_model)
    }

    /// A registered model, if it exists.
    pub async fn get_registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        #[derive(Deserialize)]
        struct Answer {
            registered_model: RegisteredModel,
        }
        match self
            .call::<Answer>(
                Method::GET,
                "registered-models/get",
                &[("name", name.to_owned())],
                Body::Empty,
                Idempotency::Safe,
            )
            .await
        {
            Ok(answer) => Ok(Some(answer.registered_model)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The registered model called `name`, created when missing (safe when processes race).
    pub async fn get_or_create_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        if let Some(model) = self.get_registered_model(name).await? {
            return Ok(model);
        }
        match self.create_registered_model(name, &[], None).await {
            Ok(model) => Ok(model),
            Err(error) if error.is_already_exists() => {
                self.get_registered_model(name).await?.ok_or(error)
            }
            Err(error) => Err(error),
        }
    }

    /// One page of registered models.
    pub async fn search_registered_models(
        &self,
        filter: Option<&str>,
        max_results: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<ModelsPage> {
        let mut query = vec![("max_results", max_results.unwrap_or(100).to_string())];
        if let Some(filter) = filter {
            query.push(("filter", filter.to_owned()));
        }
        if let Some(token) = page_token {
            query.push(("page_token", token.to_owned()));
        }
        self.call(
            Method::GET,
            "registered-models/search",
            &query,
            Body::Empty,
            Idempotency::Safe,
        )
        .await
    }

    /// Deletes a registered model and all its versions.
    pub async fn delete_registered_model(&self, name: &str) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::DELETE,
            "registered-models/delete",
            &[],
            Body::json(&serde_json::json!({"name": name}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// Creates a new version of a registered model from model files at `source` (use the run's
    /// `artifact_uri` + `/model`) produced by `run_id`. Not retried: a retry could create a
    /// second version.
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: Option<&str>,
        tags: &[Tag],
        description: Option<&str>,
    ) -> Result<ModelVersion> {
        #[derive(Serialize)]
        struct Request<'a> {
            name: &'a str,
            source: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            run_id: Option<&'a str>,
            tags: &'a [Tag],
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
        }
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let answer: Answer = self
            .call(
                Method::POST,
                "model-versions/create",
                &[],
                Body::json(&Request {
                    name,
                    source,
                    run_id,
                    tags,
                    description,
                })?,
                Idempotency::Unsafe,
            )
            .await?;
        Ok(answer.model_version)
    }

    /// A model version with its aliases, if it exists.
    pub async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<ModelVersion>> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        match self
            .call::<Answer>(
                Method::GET,
                "model-versions/get",
                &[("name", name.to_owned()), ("version", version.to_owned())],
                Body::Empty,
                Idempotency::Safe,
            )
            .await
        {
            Ok(answer) => Ok(Some(answer.model_version)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One page of model versions.
    pub async fn search_model_versions(&self, search: &VersionSearch) -> Result<VersionsPage> {
        let mut query = vec![(
            "max_results",
            search.max_results.unwrap_or(1000).to_string(),
        )];
        if let Some(filter) = &search.filter {
            query.push(("filter", filter.clone()));
        }
        for order in &search.order_by {
            query.push(("order_by", order.clone()));
        }
        if let Some(token) = &search.page_token {
            query.push(("page_token", token.clone()));
        }
        self.call(
            Method::GET,
            "model-versions/search",
            &query,
            Body::Empty,
            Idempotency::Safe,
        )
        .await
    }

    /// The newest version of a registered model, if it has any.
    pub async fn latest_model_version(&self, name: &str) -> Result<Option<ModelVersion>> {
        let page = self
            .search_model_versions(&VersionSearch {
                filter: Some(format!("name = '{}'", name.replace('\'', "\\'"))),
                order_by: vec!["version_number DESC".to_owned()],
                max_results: Some(1),
                page_token: None,
            })
            .await?;
        match page.model_versions.into_iter().next() {
            // Search leaves aliases out; get fills them in.
            Some(version) => self.get_model_version(name, &version.version).await,
            None => Ok(None),
        }
    }

    /// Points `alias` at `version` (moving it if it pointed elsewhere).
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        check_alias(alias)?;
        self.call::<serde_json::Value>(
            Method::POST,
            "registered-models/alias",
            &[],
            Body::json(&serde_json::json!({"name": name, "alias": alias, "version": version}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// Removes an alias.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::DELETE,
            "registered-models/alias",
            &[],
            Body::json(&serde_json::json!({"name": name, "alias": alias}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// The version an alias points at, if the alias exists (MLflow answers a missing alias
    /// with 400 INVALID_PARAMETER_VALUE, read here as `None` after checking the model exists).
    ///
    /// An alias being moved by another client can be missing for an instant on the server
    /// while the model still lists it; the lookup is then asked again, a few times, before the
    /// server's answer is passed on.
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<Option<ModelVersion>> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        const ATTEMPTS: usize = 5;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .call::<Answer>(
                    Method::GET,
                    "registered-models/alias",
                    &[("name", name.to_owned()), ("alias", alias.to_owned())],
                    Body::Empty,
                    Idempotency::Safe,
                )
                .await
            {
                Ok(answer) => return Ok(Some(answer.model_version)),
                Err(error) if error.is_not_found() => return Ok(None),
                Err(error) if error.error_code() == Some("INVALID_PARAMETER_VALUE") => {
                    match self.get_registered_model(name).await? {
                        Some(model) if !model.aliases.iter().any(|known| known.alias == alias) => {
                            return Ok(None);
                        }
                        Some(_) if attempt < ATTEMPTS => continue,
                        _ => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Sets a tag of a registered model.
    pub async fn set_registered_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::POST,
            "registered-models/set-tag",
            &[],
            Body::json(&serde_json::json!({"name": name, "key": key, "value": value}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// Sets a tag of a model version.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::POST,
            "model-versions/set-tag",
            &[],
            Body::json(
                &serde_json::json!({"name": name, "version": version, "key": key, "value": value}),
            )?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// Deletes a tag of a model version.
    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
    ) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::DELETE,
            "model-versions/delete-tag",
            &[],
            Body::json(&serde_json::json!({"name": name, "version": version, "key": key}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_follow_mlflow() {
        for good in ["Champion", "challenger-2", "a_b", "v1x"] {
            assert!(check_alias(good).is_ok(), "{good}");
        }
        for bad in ["", "latest", "LATEST", "v1", "V22", "has space", "a/b", "é"] {
            assert!(check_alias(bad).is_err(), "{bad:?}");
        }
    }
}
