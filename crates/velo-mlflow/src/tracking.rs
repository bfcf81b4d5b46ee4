//! Experiments and runs: create, update, log in batches within MLflow's limits, search.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{
    client::{Body, Client, Idempotency},
    error::{Error, Result},
    types::{
        DatasetInput, Experiment, Metric, Param, Run, RunInfo, RunStatus, RunsPage, Tag, ViewType,
    },
};

/// MLflow's limits on one `runs/log-batch` request.
pub mod limits {
    /// Metrics per request.
    pub const METRICS: usize = 1000;
    /// Params per request.
    pub const PARAMS: usize = 100;
    /// Tags per request.
    pub const TAGS: usize = 100;
    /// Entities (metrics + params + tags) per request.
    pub const ENTITIES: usize = 1000;
    /// Request body size, bytes (MLflow's limit is 1 MB; this leaves room for the envelope).
    pub const BODY_BYTES: usize = 1_000_000 - 4096;
}

/// Options of a new run.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// The display name (`mlflow.runName`).
    pub run_name: Option<String>,
    /// Start time, ms (now when absent: MLflow would store 0 otherwise).
    pub start_time: Option<i64>,
    /// The user (also sent as the `mlflow.user` tag).
    pub user_id: Option<String>,
    /// Tags set at creation.
    pub tags: Vec<Tag>,
}

/// Options of a run search.
#[derive(Debug, Clone, Default)]
pub struct RunSearch {
    /// A filter such as `metrics.rmse < 2 and params.max_depth = '5'`.
    pub filter: Option<String>,
    /// Orderings such as `attributes.start_time DESC`.
    pub order_by: Vec<String>,
    /// Page size (MLflow allows at most 50,000; 1,000 when absent).
    pub max_results: Option<u32>,
    /// Active, deleted or all runs.
    pub view: ViewType,
    /// The token of the page to read.
    pub page_token: Option<String>,
}

/// The current time in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

impl Client {
    /// The experiment called `name`, if it exists (deleted ones included, with
    /// `lifecycle_stage == "deleted"`).
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let answer = self
            .call::<Answer>(
                Method::GET,
                "experiments/get-by-name",
                &[("experiment_name", name.to_owned())],
                Body::Empty,
                Idempotency::Safe,
            )
            .await;
        match answer {
            Ok(answer) => Ok(Some(answer.experiment)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The experiment with this id.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment> {
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let answer: Answer = self
            .call(
                Method::GET,
                "experiments/get",
                &[("experiment_id", experiment_id.to_owned())],
                Body::Empty,
                Idempotency::Safe,
            )
            .await?;
        Ok(answer.experiment)
    }

    /// Creates an experiment and returns its id.
    pub async fn create_experiment(&self, name: &str, tags: &[Tag]) -> Result<String> {
        #[derive(Serialize)]
        struct Request<'a> {
            name: &'a str,
            tags: &'a [Tag],
        }
        #[derive(Deserialize)]
        struct Answer {
            experiment_id: String,
        }
        let answer: Answer = self
            .call(
                Method::POST,
                "experiments/create",
                &[],
                Body::json(&Request { name, tags })?,
                Idempotency::Unsafe,
            )
            .await?;
        Ok(answer.experiment_id)
    }

    /// The id of the experiment called `name`, created when missing and restored when deleted.
    /// Safe when several processes race to create it.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        if let Some(experiment) = self.get_experiment_by_name(name).await? {
            if experiment.lifecycle_stage == "deleted" {
                self.call::<serde_json::Value>(
                    Method::POST,
                    "experiments/restore",
                    &[],
                    Body::json(&serde_json::json!({"experiment_id": experiment.experiment_id}))?,
                    Idempotency::Safe,
                )
                .await?;
            }
            return Ok(experiment.experiment_id);
        }
        match self.create_experiment(name, &[]).await {
            Ok(id) => Ok(id),
            Err(error) if error.is_already_exists() => self
                .get_experiment_by_name(name)
                .await?
                .map(|experiment| experiment.experiment_id)
                .ok_or(error),
            Err(error) => Err(error),
        }
    }

    /// Creates a run in an experiment. Not retried: a retry could create a second run.
    pub async fn create_run(&self, experiment_id: &str, new: NewRun) -> Result<RunInfo> {
        #[derive(Serialize)]
        struct Request<'a> {
            experiment_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            run_name: Option<&'a str>,
            start_time: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            user_id: Option<&'a str>,
            tags: Vec<Tag>,
        }
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let mut tags = new.tags.clone();
        if let Some(user) = &new.user_id
            && !tags.iter().any(|tag| tag.key == "mlflow.user")
        {
            tags.push(Tag::new("mlflow.user", user.clone()));
        }
        let answer: Answer = self
            .call(
                Method::POST,
                "runs/create",
                &[],
                Body::json(&Request {
                    experiment_id,
                    run_name: new.run_name.as_deref(),
                    start_time: new.start_time.unwrap_or_else(now_ms),
                    user_id: new.user_id.as_deref(),
                    tags,
                })?,
                Idempotency::Unsafe,
            )
            .await?;
        Ok(answer.run.info)
    }

    /// Sets a run's status and, for an ended run, its end time (now when absent).
    pub async fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time: Option<i64>,
    ) -> Result<RunInfo> {
        #[derive(Serialize)]
        struct Request<'a> {
            run_id: &'a str,
            status: RunStatus,
            #[serde(skip_serializing_if = "Option::is_none")]
            end_time: Option<i64>,
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            run_info: RunInfo,
        }
        let end_time = end_time.or_else(|| status.is_terminal().then(now_ms));
        let answer: Answer = self
            .call(
                Method::POST,
                "runs/update",
                &[],
                Body::json(&Request {
                    run_id,
                    status,
                    end_time,
                })?,
                Idempotency::Safe,
            )
            .await?;
        Ok(answer.run_info)
    }

    /// A run with its latest metrics, params, tags and datasets.
    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let answer: Answer = self
            .call(
                Method::GET,
                "runs/get",
                &[("run_id", run_id.to_owned())],
                Body::Empty,
                Idempotency::Safe,
            )
            .await?;
        Ok(answer.run)
    }

    /// Every logged value of one metric, in logging order.
    pub async fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            metrics: Vec<Metric>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id.to_owned()),
                ("metric_key", key.to_owned()),
            ];
            if let Some(token) = &token {
                query.push(("page_token", token.clone()));
            }
            let answer: Answer = self
                .call(
                    Method::GET,
                    "metrics/get-history",
                    &query,
                    Body::Empty,
                    Idempotency::Safe,
                )
                .await?;
            all.extend(answer.metrics);
            match answer.next_page_token.filter(|next| !next.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Logs metrics, params and tags, split into as many `runs/log-batch` requests as MLflow's
    /// limits ([`limits`]) require. Params are sent before metrics, so that a failure midway
    /// leaves the run's configuration complete. Each request is safe to retry: MLflow keeps one
    /// entry for an identical metric and accepts an identical param again.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        check_keys(params.iter().map(|param| param.key.as_str()), "param")?;
        for chunk in batches(metrics, params, tags) {
            #[derive(Serialize)]
            struct Request<'a> {
                run_id: &'a str,
                metrics: &'a [Metric],
                params: &'a [Param],
                tags: &'a [Tag],
            }
            self.call::<serde_json::Value>(
                Method::POST,
                "runs/log-batch",
                &[],
                Body::json(&Request {
                    run_id,
                    metrics: chunk.metrics,
                    params: chunk.params,
                    tags: chunk.tags,
                })?,
                Idempotency::Safe,
            )
            .await?;
        }
        Ok(())
    }

    /// Sets one tag of a run.
    pub async fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::POST,
            "runs/set-tag",
            &[],
            Body::json(&serde_json::json!({"run_id": run_id, "key": key, "value": value}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// Deletes one tag of a run.
    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::POST,
            "runs/delete-tag",
            &[],
            Body::json(&serde_json::json!({"run_id": run_id, "key": key}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// Links datasets to a run (lineage). The same name and digest is linked once.
    pub async fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::POST,
            "runs/log-inputs",
            &[],
            Body::json(&serde_json::json!({"run_id": run_id, "datasets": datasets}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// Records a logged model on its run (the `mlflow.log-model.history` tag the UI reads);
    /// `model_json` is the MLmodel file as JSON.
    pub async fn log_model(&self, run_id: &str, model_json: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string(model_json)
            .map_err(|error| Error::InvalidArgument(format!("cannot encode MLmodel: {error}")))?;
        self.call::<serde_json::Value>(
            Method::POST,
            "runs/log-model",
            &[],
            Body::json(&serde_json::json!({"run_id": run_id, "model_json": text}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }

    /// One page of runs of the given experiments.
    pub async fn search_runs(
        &self,
        experiment_ids: &[String],
        search: &RunSearch,
    ) -> Result<RunsPage> {
        #[derive(Serialize)]
        struct Request<'a> {
            experiment_ids: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            filter: Option<&'a str>,
            run_view_type: ViewType,
            max_results: u32,
            order_by: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            page_token: Option<&'a str>,
        }
        self.call(
            Method::POST,
            "runs/search",
            &[],
            Body::json(&Request {
                experiment_ids,
                filter: search.filter.as_deref(),
                run_view_type: search.view,
                max_results: search.max_results.unwrap_or(1000),
                order_by: &search.order_by,
                page_token: search.page_token.as_deref(),
            })?,
            Idempotency::Safe,
        )
        .await
    }

    /// Marks a run deleted.
    pub async fn delete_run(&self, run_id: &str) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::POST,
            "runs/delete",
            &[],
            Body::json(&serde_json::json!({"run_id": run_id}))?,
            Idempotency::Safe,
        )
        .await?;
        Ok(())
    }
}

fn check_keys<'a>(keys: impl Iterator<Item = &'a str>, what: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        if !seen.insert(key) {
            return Err(Error::InvalidArgument(format!(
                "{what} {key:?} appears twice in one batch (a run holds one value per {what})"
            )));
        }
    }
    Ok(())
}

/// One `runs/log-batch` request's share of the entities.
#[derive(Debug, PartialEq)]
pub(crate) struct Chunk<'a> {
    pub(crate) metrics: &'a [Metric],
    pub(crate) params: &'a [Param],
    pub(crate) tags: &'a [Tag],
}

/// Splits entities into requests that respect [`limits`]: params first, then tags, then
/// metrics, each request filled as far as every limit allows.
pub(crate) fn batches<'a>(
    metrics: &'a [Metric],
    params: &'a [Param],
    tags: &'a [Tag],
) -> Vec<Chunk<'a>> {
    fn size_of<T: Serialize>(item: &T) -> usize {
        serde_json::to_vec(item).map_or(usize::MAX / 4, |bytes| bytes.len() + 1)
    }
    fn take<'a, T: Serialize>(
        items: &'a [T],
        start: &mut usize,
        count_limit: usize,
        entities: &mut usize,
        bytes: &mut usize,
    ) -> &'a [T] {
        let begin = *start;
        let mut end = begin;
        while end < items.len() && end - begin < count_limit && *entities < limits::ENTITIES {
            let size = size_of(&items[end]);
            // An entity over the byte limit on its own still goes alone; MLflow judges it.
            if *bytes + size > limits::BODY_BYTES && *entities > 0 {
                break;
            }
            *bytes += size;
            *entities += 1;
            end += 1;
        }
        *start = end;
        &items[begin..end]
    }
    let (mut metric_at, mut param_at, mut tag_at) = (0, 0, 0);
    let mut chunks = Vec::new();
    // Every round takes at least one entity (the first always fits), so this ends.
    while metric_at < metrics.len() || param_at < params.len() || tag_at < tags.len() {
        let (mut entities, mut bytes) = (0, 0);
        let params = take(
            params,
            &mut param_at,
            limits::PARAMS,
            &mut entities,
            &mut bytes,
        );
        let tags = take(tags, &mut tag_at, limits::TAGS, &mut entities, &mut bytes);
        let metrics = take(
            metrics,
            &mut metric_at,
            limits::METRICS,
            &mut entities,
            &mut bytes,
        );
        chunks.push(Chunk {
            metrics,
            params,
            tags,
        });
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(metrics: usize, params: usize, tags: usize, value_len: usize) {
        let metrics: Vec<Metric> = (0..metrics)
            .map(|i| Metric::new(format!("m{i}"), 1.0, 1, i as i64))
            .collect();
        let params: Vec<Param> = (0..params)
            .map(|i| Tag::new(format!("p{i}"), "x".repeat(value_len)))
            .collect();
        let tags: Vec<Tag> = (0..tags)
            .map(|i| Tag::new(format!("t{i}"), "y".repeat(value_len)))
            .collect();
        let chunks = batches(&metrics, &params, &tags);
        let mut seen = (0, 0, 0);
        for chunk in &chunks {
            let entities = chunk.metrics.len() + chunk.params.len() + chunk.tags.len();
            assert!(entities <= limits::ENTITIES);
            assert!(
                chunk.metrics.len() <= limits::METRICS
                    && chunk.params.len() <= limits::PARAMS
                    && chunk.tags.len() <= limits::TAGS
            );
            let body = serde_json::to_vec(&serde_json::json!({"run_id": "r", "metrics": chunk.metrics, "params": chunk.params, "tags": chunk.tags})).unwrap();
            assert!(body.len() <= 1_000_000, "{} bytes", body.len());
            seen.0 += chunk.metrics.len();
            seen.1 += chunk.params.len();
            seen.2 += chunk.tags.len();
        }
        assert_eq!(
            seen,
            (metrics.len(), params.len(), tags.len()),
            "every entity sent once"
        );
        // Nothing is split more than the limits force.
        let least = metrics
            .len()
            .div_ceil(limits::METRICS)
            .max(params.len().div_ceil(limits::PARAMS))
            .max(tags.len().div_ceil(limits::TAGS))
            .max(1);
        if value_len < 100 {
            assert!(
                chunks.len() <= least + 1,
                "{} chunks for {least}",
                chunks.len()
            );
        }
    }

    #[test]
    fn batches_respect_every_limit_and_send_everything_once() {
        check(0, 0, 0, 1);
        check(100, 20, 5, 10);
        check(2500, 250, 130, 10);
        check(999, 100, 100, 10);
        // Long values hit the byte limit before the count limits.
        check(0, 100, 100, 6000);
        check(10, 250, 0, 6000);
    }

    #[test]
    fn duplicate_params_are_refused_before_sending() {
        let error = check_keys(["a", "b", "a"].into_iter(), "param").unwrap_err();
        assert!(error.to_string().contains("\"a\""), "{error}");
    }
}
