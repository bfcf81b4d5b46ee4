//! The Kafka side of the stress job: the Kafka inference job started in this process on fresh
//! topics, fed records at rising offered rates, its outputs counted, and its backlog (records
//! produced and not yet answered) measured at the start and the end of every step: a backlog
//! that grows step after step is a rate the job cannot sustain.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer as _},
    producer::{BaseProducer, BaseRecord, Producer as _},
};

use super::{KafkaStress, StepLimits, StressStep};
use crate::{JobContext, JobError, KafkaInferenceJob, common::AliasOrVersion};

fn kafka_error(action: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> JobError + '_ {
    move |source| JobError::Runtime {
        action: action.to_owned(),
        source: source.into(),
    }
}

/// The output counter: its count, its stop flag and its thread.
type Counter = (Arc<AtomicU64>, Arc<AtomicBool>, std::thread::JoinHandle<()>);

/// Counts the records of `topic` from its start until stopped.
fn count_outputs(brokers: &str, topic: &str, group: &str) -> Result<Counter, JobError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka_error("create the output counter"))?;
    consumer
        .subscribe(&[topic])
        .map_err(kafka_error("subscribe the output counter"))?;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (counted, stopping) = (Arc::clone(&count), Arc::clone(&stop));
    let thread = std::thread::spawn(move || {
        while !stopping.load(Ordering::SeqCst) {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Ok((count, stop, thread))
}

/// Runs the Kafka steps: one [`StressStep`] per offered rate, `server` named `kafka`.
pub(super) fn stress(
    context: &JobContext,
    kafka: &KafkaStress,
    which: &AliasOrVersion,
    records: &[Vec<u8>],
    limits: &StepLimits,
    run_id: &str,
) -> Result<Vec<StressStep>, JobError> {
    let prefix = format!("velo-stress-{}", &run_id[..run_id.len().min(12)]);
    let (inputs, outputs, dead) = (
        format!("{prefix}-inputs"),
        format!("{prefix}-outputs"),
        format!("{prefix}-dead"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| JobError::Runtime {
            action: "start the Kafka admin runtime".to_owned(),
            source: source.into(),
        })?;
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .create()
            .map_err(kafka_error("create the Kafka admin client"))?;
        let topics = [
            NewTopic::new(&inputs, kafka.partitions.max(1), TopicReplication::Fixed(1)),
            NewTopic::new(&outputs, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&dead, 1, TopicReplication::Fixed(1)),
        ];
        let created = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(kafka_error("create the stress topics"))?;
        for result in created {
            if let Err((topic, code)) = result {
                return Err(JobError::Data(format!(
                    "cannot create topic `{topic}` on {}: {code}",
                    kafka.brokers
                )));
            }
        }
        Ok(())
    })?;
    // The job under load, in this process, on its own context.
    let job: KafkaInferenceJob = serde_json::from_value(serde_json::json!({
        "run_config": {"name": "Stress: Kafka inference", "log_system_metrics": false},
        "brokers": kafka.brokers,
        "group_id": format!("{prefix}-job"),
        "input_topic": inputs,
        "output_topic": outputs,
        "dead_letter_topic": dead,
        "max_batch": kafka.max_batch.max(1),
        "max_wait_ms": 5,
        "poll_interval_s": 0,
        "log_every_s": 0,
    }))
    .map_err(JobError::Encode)?;
    let job = KafkaInferenceJob {
        alias_or_version: which.clone(),
        services: crate::common::Services {
            mlflow: context.mlflow.clone(),
            ..crate::common::Services::default()
        },
        ..job
    };
    let inner = JobContext::open(&context.mlflow, context.run.clone())?;
    let stop_job = Arc::clone(&inner.stop);
    let running = std::thread::spawn(move || crate::Job::run(&job, &inner));
    let (count, stop_counting, counter) =
        count_outputs(&kafka.brokers, &outputs, &format!("{prefix}-counter"))?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(kafka_error("create the stress producer"))?;
    let mut produced: u64 = 0;
    let send = |record: &[u8], produced: &mut u64| -> Result<(), JobError> {
        let key = produced.to_string();
        loop {
            match producer.send(BaseRecord::to(&inputs).key(&key).payload(record)) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(kafka_error("produce a stress record")(error)),
            }
        }
        *produced += 1;
        Ok(())
    };
    // Warm up: one record must come back before any step is measured.
    send(&records[0], &mut produced)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) == 0 {
        producer.poll(Duration::from_millis(10));
        if Instant::now() > deadline || running.is_finished() {
            stop_counting.store(true, Ordering::SeqCst);
            stop_job.store(true, Ordering::SeqCst);
            let failed = running.join().ok().and_then(Result::err);
            return Err(JobError::Data(format!(
                "the Kafka inference job did not answer within 60 s{}",
                failed.map_or_else(String::new, |error| format!(": {error}"))
            )));
        }
    }
    let mut steps = Vec::new();
    for &rate in &kafka.rates {
        if context.stop_requested() {
            break;
        }
        let step_seconds = limits.seconds;
        let warmup = limits.warmup_s;
        let start = Instant::now();
        let mut sent_in_step: u64 = 0;
        let mut sample = None;
        loop {
            let elapsed = start.elapsed().as_secs_f64();
            if elapsed >= warmup + step_seconds {
                break;
            }
            if sample.is_none() && elapsed >= warmup {
                sample = Some((produced, count.load(Ordering::SeqCst), Instant::now()));
            }
            let due = (rate * elapsed) as u64;
            while sent_in_step < due && sent_in_step < limits.max_requests {
                send(&records[(produced as usize) % records.len()], &mut produced)?;
                sent_in_step += 1;
            }
            producer.poll(Duration::from_millis(1));
        }
        let (p0, r0, t0) =
            sample.unwrap_or((produced, count.load(Ordering::SeqCst), Instant::now()));
        let (p1, r1) = (produced, count.load(Ordering::SeqCst));
        let seconds = t0.elapsed().as_secs_f64().max(1e-9);
        let backlog_start = p0.saturating_sub(r0) as f64;
        let backlog_end = p1.saturating_sub(r1) as f64;
        let mut step =
            StressStep::kafka(rate, (r1 - r0) as f64 / seconds, (p1 - p0) as f64 / seconds);
        step.backlog = Some(backlog_end);
        step.backlog_growth_per_s = Some((backlog_end - backlog_start) / seconds);
        steps.push(step);
    }
    let _ = producer.flush(Duration::from_secs(10));
    stop_job.store(true, Ordering::SeqCst);
    let _ = running.join();
    stop_counting.store(true, Ordering::SeqCst);
    let _ = counter.join();
    Ok(steps)
}
