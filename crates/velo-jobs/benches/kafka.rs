//! The Kafka inference job against the broker's own ceiling (run by `cargo xtask bench --kafka`,
//! which starts the broker and registers the model; prints one JSON object).
//!
//! Usage: `kafka --brokers HOST:PORT --store DIR --data-dir DIR [--records N] [--max-batch N]
//! [--runs N]`.
//!
//! Steps 1 and 2 alternate `--runs` times (5 by default; medians reported, each run's figures
//! too), on fresh topics each time.
//!
//! 1. Ceiling: N records produced (`acks=all`) to a topic while a consumer in a group reads
//!    them and commits every 500: records/s from the first send to the last record read. Each
//!    record is produced once and consumed once. The clients do nothing else (no future per
//!    record, no bookkeeping per message), so that the figure is the broker's, as far as a
//!    client can show it.
//! 2. Sustained: the job, in this process, scoring a backlog of the same N records (produced
//!    beforehand): records/s from its first commit to its last, as the job reports it (the
//!    time to the first commit, when the producer gets its id and connections, is reported
//!    apart, as is the rate from the first record read). Each record is consumed once and its
//!    prediction produced once: the broker does the same work per record as for the ceiling.
//!    Every prediction is then read back and counted.
//! 3. Live: the job scoring N more records while they are produced as fast as possible and
//!    their predictions read back (twice the broker's work per record: two produces, two
//!    consumes): records/s from the first send to the last prediction read.
//! 4. Latency: records paced at a fixed rate well under that throughput, each timed from its
//!    send to its prediction being read back (p50, p99).
//! 5. Group: the same backlog on a topic of four partitions, drained by one worker and by two
//!    workers in one consumer group (jobs in threads of this process, each with its own
//!    clients; eager `roundrobin` assignment): records/s from the first prediction read back
//!    to the last, so that joining the group is left out.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    missing_docs,
    reason = "a benchmark harness that reports on stdout"
)]

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message as _,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer as _, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::DeliveryResult,
    producer::{
        BaseRecord, FutureProducer, FutureRecord, Producer as _, ProducerContext, ThreadedProducer,
    },
};
use serde_json::{Value, json};
use velo_io::services::{MlflowService, tracking::RunContext};
use velo_jobs::{JobConfig, JobContext};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn payloads(data_dir: &std::path::Path, n: usize, offset: usize) -> Vec<(String, Vec<u8>)> {
    let reader: velo_io::datasets::Reader = serde_json::from_value(
        json!({"KIND": "ParquetReader", "path": data_dir.join("inputs_test.parquet")}),
    )
    .unwrap();
    let batch = reader.read().unwrap().data;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    let rows: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&writer.into_inner()).unwrap();
    (offset..offset + n)
        .map(|i| {
            let mut row = rows[i % rows.len()].clone();
            row.insert("instant".to_owned(), json!(i));
            (i.to_string(), serde_json::to_vec(&row).unwrap())
        })
        .collect()
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Counts the producer's acknowledged records (a delivery failure stops the bench).
#[derive(Default)]
struct Acknowledged(AtomicUsize);

impl rdkafka::ClientContext for Acknowledged {}

impl ProducerContext for Acknowledged {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            panic!("a record was not delivered: {error}");
        }
        self.0.fetch_add(1, Ordering::Release);
    }
}

fn counting_producer(brokers: &str) -> ThreadedProducer<Acknowledged> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create_with_context(Acknowledged::default())
        .unwrap()
}

/// Produces every record with delivery reports counted, not awaited one by one (as the job
/// does); returns once all are acknowledged.
async fn produce_all(
    producer: &ThreadedProducer<Acknowledged>,
    topic: &str,
    records: &[(String, Vec<u8>)],
) {
    for (key, value) in records {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => panic!("cannot produce: {error}"),
            }
        }
    }
    while producer.context().0.load(Ordering::Acquire) < records.len() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads `n` records, committing every 500, and nothing else.
async fn count_n(consumer: &StreamConsumer, n: usize) {
    for count in 1..=n {
        let message = tokio::time::timeout(Duration::from_secs(120), consumer.recv())
            .await
            .expect("records keep arriving")
            .unwrap();
        if count % 500 == 0 {
            consumer
                .commit_message(&message, CommitMode::Async)
                .unwrap();
        }
    }
}

fn consumer(brokers: &str, group: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Sends every record, remembering when each was sent; waits for every acknowledgement.
async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    records: &[(String, Vec<u8>)],
    sent: &Mutex<HashMap<String, Instant>>,
    pace: Option<Duration>,
) {
    let mut pending = Vec::new();
    for (key, value) in records {
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
        sent.lock().unwrap().insert(key.clone(), Instant::now());
        pending.push(
            producer
                .send_result(FutureRecord::to(topic).key(key).payload(value))
                .map_err(|(e, _)| e)
                .unwrap(),
        );
        if pending.len() >= 5_000 {
            for delivery in pending.drain(..) {
                delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
        }
    }
    for delivery in pending {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// Reads `n` records, returning when each key arrived.
async fn read_n(consumer: &StreamConsumer, n: usize) -> HashMap<String, Instant> {
    let mut seen = HashMap::with_capacity(n);
    let mut count = 0;
    while count < n {
        let message = tokio::time::timeout(Duration::from_secs(120), consumer.recv())
            .await
            .expect("records keep arriving")
            .unwrap();
        count += 1;
        if let Some(key) = message.key() {
            seen.insert(String::from_utf8_lossy(key).into_owned(), Instant::now());
        }
    }
    seen
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

fn main() {
    let brokers = arg("--brokers").expect("--brokers HOST:PORT");
    let store = arg("--store").expect("--store DIR");
    let data_dir = PathBuf::from(arg("--data-dir").expect("--data-dir DIR"));
    let n: usize = arg("--records").map_or(100_000, |v| v.parse().unwrap());
    let paced_n = 5_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let records = payloads(&data_dir, n, 0);
    let paced = payloads(&data_dir, paced_n, n);
    let runs: usize = arg("--runs").map_or(5, |v| v.parse().unwrap());
    let mut names: Vec<String> = ["inputs", "predictions", "dead"]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    for run in 0..runs {
        for name in ["ceiling", "backlog", "backlog-predictions"] {
            names.push(format!("{name}-{run}"));
        }
    }
    let mut grouped: Vec<String> = Vec::new();
    for run in 0..runs {
        for workers in [1, 2] {
            grouped.push(format!("group{workers}-{run}"));
            grouped.push(format!("group{workers}-{run}-predictions"));
        }
    }
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|name| NewTopic::new(name, 3, TopicReplication::Fixed(1)))
            .chain(
                grouped
                    .iter()
                    .map(|name| NewTopic::new(name, 4, TopicReplication::Fixed(1))),
            )
            .collect();
        admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .unwrap();
    });
    let mlflow = MlflowService {
        tracking_uri: store.clone(),
        registry_uri: store,
        experiment_name: "bikes".to_owned(),
        registry_name: "bikes".to_owned(),
        sandbox: None,
    };
    let max_batch = arg("--max-batch").map_or(10_000, |v| v.parse::<usize>().unwrap());
    let job = |input: &str, output: &str, records: usize| -> JobConfig {
        serde_json::from_value(json!({
            "KIND": "KafkaInferenceJob",
            "brokers": brokers,
            "group_id": format!("velo-{input}"),
            "input_topic": input,
            "output_topic": output,
            "dead_letter_topic": "dead",
            "max_batch": max_batch,
            "max_wait_ms": 5,
            "poll_interval_s": 0,
            "max_records": records,
            "log_every_s": 0,
            "services": {"mlflow": mlflow},
        }))
        .unwrap()
    };

    // 1. and 2., interleaved `runs` times: the broker alone, then the job on a backlog.
    let mut ceilings = Vec::new();
    let mut sustained = Vec::new();
    let mut overall = Vec::new();
    let mut first_commit = Vec::new();
    for run in 0..runs {
        let (ceiling_topic, backlog, outputs) = (
            format!("ceiling-{run}"),
            format!("backlog-{run}"),
            format!("backlog-predictions-{run}"),
        );
        // The ceiling: the broker alone, same records, produced and consumed at once.
        let seconds = runtime.block_on(async {
            let reader = consumer(&brokers, &format!("{ceiling_topic}-reader"), &ceiling_topic);
            let writer = counting_producer(&brokers);
            let start = Instant::now();
            tokio::join!(
                produce_all(&writer, &ceiling_topic, &records),
                count_n(&reader, n)
            );
            start.elapsed().as_secs_f64()
        });
        ceilings.push(n as f64 / seconds);
        // Sustained: the job drains a backlog of the same records.
        runtime.block_on(produce_all(
            &counting_producer(&brokers),
            &backlog,
            &records,
        ));
        let context = JobContext::open(&mlflow, RunContext::default()).unwrap();
        let outcome = job(&backlog, &outputs, n).run(&context).unwrap();
        sustained.push(outcome.metrics["sustained_records_per_second"]);
        overall.push(outcome.metrics["records_per_second"]);
        first_commit.push(outcome.metrics["first_commit_seconds"]);
        let backlog_outputs = runtime.block_on(async {
            let reader = consumer(&brokers, &format!("{outputs}-reader"), &outputs);
            read_n(&reader, n).await.len()
        });
        assert_eq!(backlog_outputs, n, "one prediction per backlog record");
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        percentile(values, 0.5)
    };
    let shares: Vec<f64> = sustained
        .iter()
        .zip(&ceilings)
        .map(|(job, ceiling)| job / ceiling)
        .collect();
    let (ceilings_run, sustained_run) = (ceilings.clone(), sustained.clone());
    let ceiling = median(&mut ceilings);
    let sustained_median = median(&mut sustained);

    // 3. and 4. The job, in a thread of its own, until it has read every record.
    let job = job("inputs", "predictions", n + paced_n);
    let context = JobContext::open(&mlflow, RunContext::default()).unwrap();
    let worker = std::thread::spawn(move || job.run(&context).unwrap());
    let (job_seconds, latencies) = runtime.block_on(async {
        let sent = Arc::new(Mutex::new(HashMap::new()));
        let reader = consumer(&brokers, "predictions-reader", "predictions");
        let writer = producer(&brokers);
        let start = Instant::now();
        let (_, _) = tokio::join!(
            send_all(&writer, "inputs", &records, &sent, None),
            read_n(&reader, n)
        );
        let job_seconds = start.elapsed().as_secs_f64();
        sent.lock().unwrap().clear();
        // A quarter of a millisecond between records: 4,000 records/s at most.
        let (_, arrived) = tokio::join!(
            send_all(
                &writer,
                "inputs",
                &paced,
                &sent,
                Some(Duration::from_micros(250))
            ),
            read_n(&reader, paced_n)
        );
        let sent = sent.lock().unwrap();
        let mut latencies: Vec<f64> = arrived
            .iter()
            .filter_map(|(key, at)| {
                sent.get(key)
                    .map(|from| (*at - *from).as_secs_f64() * 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        (job_seconds, latencies)
    });
    worker.join().unwrap();
    let live = n as f64 / job_seconds;

    // 5. One worker, then two in one group, on the same backlog (alternating, `runs` times).
    let mut by_workers: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 0..runs {
        for workers in [1_usize, 2] {
            let (input, output) = (
                format!("group{workers}-{run}"),
                format!("group{workers}-{run}-predictions"),
            );
            runtime.block_on(produce_all(&counting_producer(&brokers), &input, &records));
            let threads: Vec<_> = (0..workers)
                .map(|_| {
                    let config: JobConfig = serde_json::from_value(json!({
                        "KIND": "KafkaInferenceJob",
                        "brokers": brokers,
                        "group_id": format!("velo-{input}"),
                        "input_topic": input,
                        "output_topic": output,
                        "dead_letter_topic": "dead",
                        "max_batch": max_batch,
                        "max_wait_ms": 5,
                        "poll_interval_s": 0,
                        "idle_timeout_ms": 3000,
                        "log_every_s": 0,
                        "consumer": {"partition.assignment.strategy": "roundrobin"},
                        "services": {"mlflow": mlflow},
                    }))
                    .unwrap();
                    let context = JobContext::open(&mlflow, RunContext::default()).unwrap();
                    std::thread::spawn(move || config.run(&context).unwrap())
                })
                .collect();
            // Until every key has a prediction (a rebalance may repeat a batch).
            let arrivals = runtime.block_on(async {
                let reader = consumer(&brokers, &format!("{output}-reader"), &output);
                let mut seen: HashMap<String, Instant> = HashMap::with_capacity(n);
                while seen.len() < n {
                    let message = tokio::time::timeout(Duration::from_secs(120), reader.recv())
                        .await
                        .expect("predictions keep arriving")
                        .unwrap();
                    if let Some(key) = message.key() {
                        seen.entry(String::from_utf8_lossy(key).into_owned())
                            .or_insert_with(Instant::now);
                    }
                }
                seen
            });
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(
                arrivals.len(),
                n,
                "one prediction per record with {workers} workers"
            );
            let first = arrivals.values().min().copied().unwrap();
            let last = arrivals.values().max().copied().unwrap();
            by_workers[workers - 1].push(n as f64 / (last - first).as_secs_f64().max(1e-9));
        }
    }
    let (one_run, two_run) = (by_workers[0].clone(), by_workers[1].clone());
    let one = median(&mut by_workers[0]);
    let two = median(&mut by_workers[1]);
    println!(
        "{}",
        json!({
            "records": n,
            "runs": runs,
            "max_batch": max_batch,
            "ceiling_records_per_second": ceiling,
            "ceiling_by_run": ceilings_run,
            "job_records_per_second": sustained_median,
            "job_by_run": sustained_run,
            "job_share_of_ceiling": sustained_median / ceiling,
            "job_share_by_run": shares,
            "job_first_commit_seconds": median(&mut first_commit),
            "job_records_per_second_from_first_record": median(&mut overall),
            "live_records_per_second": live,
            "live_share_of_ceiling": live / ceiling,
            "latency_records": latencies.len(),
            "latency_p50_ms": percentile(&latencies, 0.5),
            "latency_p99_ms": percentile(&latencies, 0.99),
            "group_one_worker_records_per_second": one,
            "group_one_worker_by_run": one_run,
            "group_two_workers_records_per_second": two,
            "group_two_workers_by_run": two_run,
            "group_speedup": two / one,
        })
    );
}
