//! `KafkaInferenceJob` against a real Kafka-compatible broker (tansu, started here on a free
//! loopback port with its SQLite storage): every input gets an output or a dead letter, keys
//! are kept, and committed offsets are where a second run resumes.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use arrow::array::AsArray as _;
use rdkafka::{
    ClientConfig, Message as _,
    consumer::{Consumer as _, StreamConsumer},
    message::Headers as _,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};

use crate::jobs::{model_store, run_job, training_snippet};

/// The tansu binary: `$VELO_TANSU`, else the one `cargo xtask install` puts in the tools dir.
fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VELO_TANSU") {
        return Some(PathBuf::from(path));
    }
    let tools =
        std::env::var_os("VELO_TOOLS").map_or_else(|| crate::root().join(".tools"), PathBuf::from);
    let path = tools.join("bin").join("tansu");
    path.is_file().then_some(path)
}

/// A tansu broker on a free loopback port, storing in a temp dir; ended on drop.
pub(crate) struct Broker {
    server: velo_child::ChildServer,
    pub(crate) address: String,
    binary: PathBuf,
    // Dropped after the server.
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker, or returns `None` (saying so) when tansu is not installed and the
    /// environment does not require it (`VELO_IT`).
    #[allow(clippy::print_stderr, reason = "a skipped test says so")]
    pub(crate) fn start_or_skip(what: &str) -> Option<Self> {
        let Some(binary) = tansu_binary() else {
            assert!(
                std::env::var_os("VELO_IT").is_none(),
                "VELO_IT is set but tansu is missing (cargo xtask install builds it)"
            );
            eprintln!("SKIPPED {what}: no tansu broker (cargo xtask install builds it)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = velo_child::free_port().unwrap();
        let server = Self::spawn(&binary, port, dir.path());
        Some(Self {
            address: server.address(),
            server,
            binary,
            dir,
        })
    }

    /// Starts tansu on `port`, storing in `dir` (SQLite: what it stored survives a restart),
    /// and waits until it listens.
    fn spawn(binary: &Path, port: u16, dir: &Path) -> velo_child::ChildServer {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(binary);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir);
        velo_child::ChildServer::start_within(
            "tansu",
            &mut command,
            port,
            &dir.join("tansu.log"),
            velo_child::Ready::Listening,
            Duration::from_secs(30),
        )
        .unwrap()
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port and storage.
    fn restart(&mut self) {
        self.server.kill();
        self.server = Self::spawn(&self.binary, self.server.port(), self.dir.path());
    }

    pub(crate) fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(&self.binary)
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://{}", self.address)])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "cannot create topic {name}");
    }
}

/// Reads every record of `topic` from the start, until `expected` or 30 s pass.
fn read_all(broker: &str, topic: &str, expected: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("group.id", format!("reader-{topic}-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seen.len() < expected {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => seen.push(message.detach()),
                Ok(Err(error)) => panic!("consumer error: {error}"),
                Err(_) => break,
            }
        }
        // Nothing more than expected arrives.
        if let Ok(Ok(extra)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
            seen.push(extra.detach());
        }
        seen
    })
}

/// Reads `topic` from the start until nothing new arrives for `idle`.
fn read_until_idle(
    broker: &str,
    topic: &str,
    idle: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set(
                "group.id",
                format!("idle-reader-{topic}-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut seen = Vec::new();
        while let Ok(Ok(message)) = tokio::time::timeout(idle, consumer.recv()).await {
            seen.push(message.detach());
        }
        seen
    })
}

/// Every record of `topic` up to the ends its partitions have now: read by assignment (no
/// group to join) until each partition's high watermark, so that a slow broker makes the read
/// slower, never shorter.
fn read_to_end(broker: &str, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let mut ends = std::collections::HashMap::new();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for partition in metadata
        .topics()
        .iter()
        .flat_map(rdkafka::metadata::MetadataTopic::partitions)
    {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), timeout)
            .unwrap();
        if high > low {
            ends.insert(partition.id(), high);
            partitions
                .add_partition_offset(topic, partition.id(), rdkafka::Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&partitions).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    while !ends.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{topic}: partitions {ends:?} not read to their ends in 5 minutes ({} records read)",
            seen.len()
        );
        // A transient fetch error is retried: the deadline above bounds the retries.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
            if ends
                .get(&message.partition())
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&message.partition());
            }
            seen.push(message.detach());
        }
    }
    seen
}

fn produce(broker: &str, topic: &str, records: &[(String, Vec<u8>)]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("acks", "all")
            .create()
            .unwrap();
        let mut pending = Vec::new();
        for (key, value) in records {
            let record = FutureRecord::to(topic).key(key).payload(value);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for delivery in pending {
            delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    });
}

fn inputs_records(data: &Path) -> Vec<serde_json::Map<String, Value>> {
    let reader: velo_io::datasets::Reader = serde_json::from_value(
        json!({"KIND": "ParquetReader", "path": data.join("inputs_test.parquet")}),
    )
    .unwrap();
    let batch = reader.read().unwrap().data;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    serde_json::from_slice(&writer.into_inner()).unwrap()
}

/// A broker with the topics `inputs` and `predictions` (`partitions` each) and `dead` (one),
/// and a temp dir holding a promoted model; `None` when the test is skipped.
fn setup(what: &str, partitions: u32) -> Option<(Broker, tempfile::TempDir, String)> {
    let broker = Broker::start_or_skip(what)?;
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());
    for (topic, count) in [
        ("inputs", partitions),
        ("predictions", partitions),
        ("dead", 1),
    ] {
        broker.create_topic(topic, count);
    }
    Some((broker, dir, uri))
}

/// Test row `i % rows` with its own index `i`.
fn numbered_row(
    base: &[serde_json::Map<String, Value>],
    i: usize,
) -> serde_json::Map<String, Value> {
    let mut row = base[i % base.len()].clone();
    row.insert("instant".to_owned(), json!(i));
    row
}

/// Test row `i % rows` with its own index `i`, keyed `i`, as a record to produce.
fn numbered_record(base: &[serde_json::Map<String, Value>], i: usize) -> (String, Vec<u8>) {
    (
        i.to_string(),
        serde_json::to_vec(&numbered_row(base, i)).unwrap(),
    )
}

/// `velo run configs/kafka_inference.yaml` with `job` and the store at `uri`, not yet started.
fn job_command(uri: &str, job: &str) -> Command {
    let mut command = Command::new(crate::velo_binary());
    command
        .current_dir(crate::root())
        .args(["run", "configs/kafka_inference.yaml", "-e"])
        .arg(format!(
            "job: {{{job}, services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}'}}}}}}"
        ))
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_REGISTRY_URI")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// `total` records from the test rows in `data`, each with its own index as key; one in a
/// hundred is not JSON. Returns them with the keys of the good and of the broken ones.
/// Records to produce, with the keys of the good ones and of the broken ones.
type Stream = (
    Vec<(String, Vec<u8>)>,
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
);

fn one_in_a_hundred_broken(data: &Path, total: usize) -> Stream {
    let base = inputs_records(data);
    let mut records = Vec::with_capacity(total);
    let (mut good, mut bad) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for i in 0..total {
        let key = i.to_string();
        let value = if i % 100 == 99 {
            bad.insert(key.clone());
            format!("{{\"broken\": {i}").into_bytes()
        } else {
            good.insert(key.clone());
            serde_json::to_vec(&numbered_row(&base, i)).unwrap()
        };
        records.push((key, value));
    }
    (records, good, bad)
}

#[test]
fn a_killed_job_and_a_restarted_broker_lose_no_record() {
    let Some((mut broker, dir, uri)) = setup("Kafka restarts", 3) else {
        return;
    };
    // 20,000 records from the test rows, each with its own index; 1% is not JSON.
    let total = 20_000_usize;
    let (records, good, bad) = one_in_a_hundred_broken(&dir.path().join("data"), total);
    produce(&broker.address, "inputs", &records);
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, max_batch: 200, idle_timeout_ms: 5000, poll_interval_s: 0, consumer: {{session.timeout.ms: '6000'}}",
        broker.address
    );

    // The job is killed outright mid-stream.
    let mut first = job_command(&uri, &job).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    first.kill().unwrap();
    let _ = first.wait();
    let before_kill = read_until_idle(&broker.address, "predictions", Duration::from_secs(2)).len();
    println!(
        "outputs when the first job was killed: {before_kill} of {}",
        good.len()
    );
    // A second job is running when the broker is killed and restarted.
    let mut second = job_command(&uri, &job).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    broker.restart();
    let status = second.wait().unwrap();
    let second_output = second.wait_with_output().unwrap();
    println!(
        "the job running across the broker restart exited with {status}: {}",
        String::from_utf8_lossy(&second_output.stderr)
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    // The job may fail on the commit the broker refused; restarted, it resumes from the last
    // commit. Either way every input ends with an output or a dead letter.
    let mut runs = 0;
    let mut last_status = status;
    while runs < 3 {
        let finish = job_command(&uri, &job).output().unwrap();
        last_status = finish.status;
        runs += 1;
        if finish.status.success()
            && String::from_utf8_lossy(&finish.stdout).contains("consumed 0 records")
        {
            break;
        }
    }
    assert!(last_status.success(), "the last run succeeds");

    let outputs = read_until_idle(&broker.address, "predictions", Duration::from_secs(5));
    let output_keys: std::collections::BTreeSet<String> = outputs
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned())
        .collect();
    assert_eq!(
        output_keys, good,
        "every good input has an output (duplicates allowed)"
    );
    let dead = read_until_idle(&broker.address, "dead", Duration::from_secs(3));
    let dead_keys: std::collections::BTreeSet<String> = dead
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned())
        .collect();
    assert_eq!(dead_keys, bad, "every broken input has a dead letter");
    // Duplicates are replays of whole batches: same key, same source offset.
    let mut by_key: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for message in &outputs {
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        by_key
            .entry(String::from_utf8_lossy(message.key().unwrap()).into_owned())
            .or_default()
            .push(value["source"].as_str().unwrap().to_owned());
    }
    for (key, sources) in by_key {
        assert!(
            sources.windows(2).all(|w| w[0] == w[1]),
            "{key}: {sources:?}"
        );
    }
}

#[test]
fn a_hundred_thousand_records_give_99_000_predictions_and_1_000_dead_letters() {
    let Some((broker, dir, uri)) = setup("the Kafka inference job", 3) else {
        return;
    };
    let data = dir.path().join("data");

    // 100,000 records cycling through the test rows, each with its own index; 1% is broken:
    // bad JSON, not an object, out of the schema's range, or of the wrong type, in turn.
    let rows = inputs_records(&data);
    let mut records = Vec::new();
    let mut broken = Vec::new();
    for i in 0..100_000_usize {
        let key = i.to_string();
        let mut row = numbered_row(&rows, i);
        let value = match i % 400 {
            99 => b"{\"season\": 3, ".to_vec(),
            199 => b"[1, 2, 3]".to_vec(),
            299 => {
                row.insert("hr".to_owned(), json!(30));
                serde_json::to_vec(&row).unwrap()
            }
            // A string among numbers: the batch's fast typing declines, the slow path types
            // and refuses it.
            399 => {
                row.insert("hr".to_owned(), json!("noon"));
                serde_json::to_vec(&row).unwrap()
            }
            _ => serde_json::to_vec(&row).unwrap(),
        };
        if i % 100 == 99 {
            broken.push((key.clone(), value.clone()));
        }
        records.push((key, value));
    }
    assert_eq!(broken.len(), 1_000);
    produce(&broker.address, "inputs", &records);

    let logs = dir.path().join("logs");
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, max_batch: 500, idle_timeout_ms: 3000, poll_interval_s: 0, prediction_log: '{}'",
        broker.address,
        logs.display()
    );
    let first = run_job("configs/kafka_inference.yaml", &uri, &job);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let good = records.len() - broken.len();
    // The prediction log holds each scored record once, its source as its id.
    let logged = velo_io::prediction_logs::read_logs(&logs).unwrap().unwrap();
    assert_eq!(logged.num_rows(), good);
    let ids = logged
        .column_by_name("request_id")
        .unwrap()
        .as_string::<i32>();
    let distinct: std::collections::BTreeSet<&str> = ids.iter().flatten().collect();
    assert_eq!(distinct.len(), good);
    assert!(distinct.iter().all(|id| id.starts_with("inputs/")));
    assert!(
        first.stdout.contains(&format!(
            "consumed {} records: {good} predictions to `predictions`, {} dead letters to `dead`",
            records.len(),
            broken.len()
        )),
        "{}",
        first.stdout
    );

    // The tracking run holds the counts.
    let run_id = first
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("KafkaInferenceJob finished (run "))
        .and_then(|rest| rest.strip_suffix(')'))
        .expect("the run id is printed")
        .to_owned();
    let stores = velo_io::registries::open_pair(&uri, &uri).unwrap();
    for (metric, expected) in [
        ("records_in", 100_000.0),
        ("records_out", 99_000.0),
        ("dead_letters", 1_000.0),
    ] {
        let history = stores.tracking.metric_history(&run_id, metric).unwrap();
        assert_eq!(history.last().map(|m| m.value), Some(expected), "{metric}");
    }

    let outputs = read_all(&broker.address, "predictions", good);
    assert_eq!(outputs.len(), good, "exactly one output per good input");
    let broken_keys: std::collections::BTreeSet<&str> =
        broken.iter().map(|(key, _)| key.as_str()).collect();
    let mut keys = std::collections::BTreeSet::new();
    for message in &outputs {
        let key = std::str::from_utf8(message.key().unwrap())
            .unwrap()
            .to_owned();
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert!(
            value["prediction"].as_f64().is_some_and(f64::is_finite),
            "{value}"
        );
        assert_eq!(value["index"].to_string(), key, "the input index is kept");
        assert_eq!(value["model"], "bikes");
        assert_eq!(value["version"], "1");
        assert!(
            value["source"].as_str().unwrap().starts_with("inputs/"),
            "{value}"
        );
        assert!(!broken_keys.contains(key.as_str()), "{key} was broken");
        keys.insert(key);
    }
    assert_eq!(keys.len(), good, "no duplicate and no missing key");

    let dead = read_all(&broker.address, "dead", broken.len());
    assert_eq!(dead.len(), broken.len());
    for message in &dead {
        let key = std::str::from_utf8(message.key().unwrap()).unwrap();
        let original = broken.iter().find(|(k, _)| k == key).expect("a broken key");
        assert_eq!(
            message.payload().unwrap(),
            original.1.as_slice(),
            "original bytes kept"
        );
        let headers = message.headers().expect("headers");
        let reason = headers
            .iter()
            .find(|header| header.key == "velo.error")
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .expect("a reason");
        assert!(
            reason.contains("not valid JSON")
                || reason.contains("not a JSON object")
                || reason.contains("column 'hr'"),
            "{reason}"
        );
    }

    // Offsets were committed: a second run finds nothing new.
    let again = run_job(
        "configs/kafka_inference.yaml",
        &uri,
        &job.replace("3000", "1500"),
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("consumed 0 records"),
        "{}",
        again.stdout
    );
}

/// A client velo did not write: Python's confluent-kafka (librdkafka in its wheel, from PyPI)
/// produces the inputs and reads the predictions and dead letters back in its own group.
#[test]
fn a_python_kafka_client_feeds_the_job_and_reads_its_answers() {
    let Some(python) = std::env::var_os("VELO_PYTHON") else {
        assert!(
            std::env::var_os("VELO_IT").is_none(),
            "VELO_IT is set but VELO_PYTHON is not"
        );
        return;
    };
    let Some((broker, dir, uri)) = setup("the Python Kafka client", 2) else {
        return;
    };
    let rows = inputs_records(&dir.path().join("data"));
    let rows_file = dir.path().join("rows.json");
    std::fs::write(&rows_file, serde_json::to_vec(&rows[..200]).unwrap()).unwrap();
    let produce = r#"
import json, sys
from confluent_kafka import Producer
broker, rows = sys.argv[1], json.load(open(sys.argv[2]))
producer = Producer({"bootstrap.servers": broker, "acks": "all"})
for i, row in enumerate(rows):
    value = b"not json" if i % 20 == 19 else json.dumps(row).encode()
    producer.produce("inputs", key=str(row["instant"]).encode(), value=value)
assert producer.flush(30) == 0
"#;
    let produced = Command::new(&python)
        .args(["-c", produce, &broker.address])
        .arg(&rows_file)
        .output()
        .unwrap();
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );

    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, idle_timeout_ms: 3000, poll_interval_s: 0",
        broker.address
    );
    // Metrics, liveness and readiness are served while the job streams.
    let port = velo_child::free_port().unwrap();
    let mut child = job_command(&uri, &format!("{job}, metrics_addr: '127.0.0.1:{port}'"))
        .spawn()
        .unwrap();
    let get = |path: &str| {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}{path}"))
            .map(|response| {
                (
                    response.status().as_u16(),
                    response.text().unwrap_or_default(),
                )
            })
            .unwrap_or((0, String::new()))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get("/ready");
        if status == 200 {
            assert!(body.contains("2 partitions assigned"), "{body}");
            break;
        }
        assert!(
            status == 0 || status == 503,
            "/ready answers 503 until the group is joined: {status} {body}"
        );
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get("/health").0, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    let scraped = loop {
        let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
            .and_then(reqwest::blocking::Response::text)
            .unwrap_or_default();
        if text.contains("velo_kafka_records_in_total 200") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never showed 200 records: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for line in [
        "velo_kafka_records_out_total 190",
        "velo_kafka_dead_letters_total 10",
        "velo_kafka_model_version 1",
        "velo_kafka_assigned_partitions 2",
        "velo_kafka_batch_duration_seconds_count",
    ] {
        assert!(scraped.contains(line), "{line} in {scraped}");
    }
    // Every Kafka metric the shipped dashboard and alerting rules query is exposed.
    let exposed = crate::deploy::exposed(&scraped);
    for name in crate::deploy::queried("velo_kafka_") {
        assert!(
            exposed.contains(&name),
            "deploy/ queries {name}, not in {scraped}"
        );
    }
    assert!(child.wait().unwrap().success());

    let read = r#"
import json, sys, time
from confluent_kafka import Consumer
broker, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({"bootstrap.servers": broker, "group.id": "python-" + topic, "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
seen, deadline = [], time.time() + 30
while len(seen) < expected and time.time() < deadline:
    message = consumer.poll(1.0)
    if message is None or message.error():
        continue
    headers = dict(message.headers() or [])
    seen.append({"key": message.key().decode(), "value": message.value().decode(errors="replace"),
                 "error": (headers.get("velo.error") or b"").decode()})
consumer.close()
print(json.dumps(seen))
"#;
    let read_topic = |topic: &str, expected: usize| -> Vec<Value> {
        let out = Command::new(&python)
            .args(["-c", read, &broker.address, topic, &expected.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let predictions = read_topic("predictions", 190);
    assert_eq!(predictions.len(), 190);
    for message in &predictions {
        let value: Value = serde_json::from_str(message["value"].as_str().unwrap()).unwrap();
        assert_eq!(value["index"].to_string(), message["key"].as_str().unwrap());
        assert!(value["prediction"].as_f64().is_some());
    }
    let dead = read_topic("dead", 10);
    assert_eq!(dead.len(), 10);
    for message in &dead {
        assert_eq!(message["value"], "not json");
        assert!(
            message["error"]
                .as_str()
                .unwrap()
                .contains("not valid JSON"),
            "{message}"
        );
    }
}

/// SIGTERM mid-stream: the job finishes its batch, commits and exits 130; a second run picks up
/// exactly where it stopped, so every input has exactly one output.
#[test]
fn sigterm_drains_the_batch_in_flight_and_commits() {
    let Some((broker, dir, uri)) = setup("Kafka shutdown", 2) else {
        return;
    };
    let base = inputs_records(&dir.path().join("data"));
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, max_batch: 100, poll_interval_s: 0",
        broker.address
    );
    // Records keep arriving (about 10,000/s for 4 s) while the first run is signalled.
    let feeder = {
        let address = broker.address.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(4) {
                let chunk: Vec<(String, Vec<u8>)> = (sent..sent + 200)
                    .map(|i| numbered_record(&base, i))
                    .collect();
                produce(&address, "inputs", &chunk);
                sent += 200;
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        })
    };
    // No idle timeout: only the signal ends the first run.
    let child = job_command(&uri, &job).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let first = child.wait_with_output().unwrap();
    let total = feeder.join().unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    // Drained and committed, and interrupted all the same: exit 130, as other jobs.
    assert_eq!(
        first.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let consumed: usize = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("consumed "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {stdout}"));
    assert!(
        consumed > 0 && consumed < total,
        "stopped mid-stream: {consumed}"
    );

    let rest = run_job(
        "configs/kafka_inference.yaml",
        &uri,
        &format!("{job}, idle_timeout_ms: 3000"),
    );
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    assert!(
        rest.stdout
            .contains(&format!("consumed {} records", total - consumed)),
        "the second run starts at the first one's commit: {}",
        rest.stdout
    );
    let outputs = read_all(&broker.address, "predictions", total);
    assert_eq!(outputs.len(), total, "exactly one output per input");
    let keys: std::collections::BTreeSet<String> = outputs
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned())
        .collect();
    assert_eq!(keys.len(), total);
}

/// The alias moves while the job runs: without a restart, predictions switch from version 1
/// to version 2 between batches, never back, and every input still gets exactly one output.
#[test]
fn the_job_follows_the_alias_to_a_new_version() {
    let Some((broker, dir, uri)) = setup("Kafka alias move", 1) else {
        return;
    };
    let data = dir.path().join("data");
    let base = inputs_records(&data);
    let record = |i: usize| numbered_record(&base, i);
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, max_batch: 50, poll_interval_s: 1",
        broker.address
    );
    let child = job_command(&uri, &job).spawn().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _context = runtime.enter();
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "alias-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&["predictions"]).unwrap();
    let mut versions: Vec<String> = Vec::new();
    let read_until = |versions: &mut Vec<String>, done: &dyn Fn(&[String]) -> bool| {
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !done(versions.as_slice()) {
                let message = tokio::time::timeout_at(deadline, reader.recv())
                    .await
                    .expect("predictions keep arriving")
                    .unwrap();
                let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
                versions.push(value["version"].as_str().unwrap().to_owned());
            }
        });
    };
    let first: Vec<_> = (0..500).map(record).collect();
    produce(&broker.address, "inputs", &first);
    read_until(&mut versions, &|seen| seen.len() >= 500);
    assert!(versions.iter().all(|version| version == "1"));

    // A second version is trained and the alias moved to it, the job still running.
    assert_eq!(
        run_job("configs/training.yaml", &uri, &training_snippet(&data)).code,
        0
    );
    assert_eq!(run_job("configs/promotion.yaml", &uri, "").code, 0);
    let mut sent = 500;
    while !versions.iter().any(|version| version == "2") {
        assert!(sent < 20_000, "the job never switched to version 2");
        let more: Vec<_> = (sent..sent + 50).map(record).collect();
        produce(&broker.address, "inputs", &more);
        sent += 50;
        read_until(&mut versions, &|seen| seen.len() >= sent);
    }
    // Stopped by SIGTERM (no idle timeout: the job waits while the second version trains).
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(versions.len(), sent, "one output per input");
    // One partition: outputs are in input order, so the switch happens once.
    let switch = versions.iter().position(|version| version == "2").unwrap();
    assert!(versions[..switch].iter().all(|version| version == "1"));
    assert!(versions[switch..].iter().all(|version| version == "2"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("consumed {sent} records")),
        "{stdout}"
    );
}

#[test]
fn a_job_without_a_broker_fails_after_its_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());
    let mut child = job_command(
        &uri,
        "brokers: '127.0.0.1:1', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, connect_timeout_ms: 1500, idle_timeout_ms: 2000",
    )
    .spawn()
    .unwrap();
    // A guard against the hang this test is about, not a speed check.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the job kept waiting for a broker that does not exist");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("reach the brokers 127.0.0.1:1 within connect_timeout_ms (1500 ms)"),
        "{stderr}"
    );
}

#[test]
fn a_sandboxed_stream_reads_a_copy_of_the_input_and_writes_only_sandbox_topics() {
    let Some((broker, dir, uri)) = setup("Kafka in a sandbox", 1) else {
        return;
    };
    for topic in ["sandbox.trial.predictions", "sandbox.trial.dead"] {
        broker.create_topic(topic, 1);
    }
    let base = inputs_records(&dir.path().join("data"));
    let records: Vec<(String, Vec<u8>)> = (0..200).map(|i| numbered_record(&base, i)).collect();
    produce(&broker.address, "inputs", &records);
    crate::jobs::small_project(dir.path());
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, idle_timeout_ms: 3000, poll_interval_s: 0",
        broker.address
    );
    let sandboxed = Command::new(crate::velo_binary())
        .current_dir(dir.path())
        .args([
            "run",
            "configs/kafka_inference.yaml",
            "--sandbox",
            "trial",
            "-e",
        ])
        .arg(format!(
            "job: {{{job}, services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}'}}}}}}"
        ))
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_REGISTRY_URI")
        .output()
        .unwrap();
    assert!(
        sandboxed.status.success(),
        "{}",
        String::from_utf8_lossy(&sandboxed.stderr)
    );
    assert_eq!(
        read_all(&broker.address, "sandbox.trial.predictions", 200).len(),
        200
    );
    assert!(
        read_until_idle(&broker.address, "predictions", Duration::from_secs(2)).is_empty(),
        "nothing reached production's topic"
    );
    // Production's consumer group did not move: the production job still scores every record.
    let production = job_command(&uri, &job).output().unwrap();
    assert!(
        production.status.success(),
        "{}",
        String::from_utf8_lossy(&production.stderr)
    );
    assert_eq!(read_all(&broker.address, "predictions", 200).len(), 200);
}

#[test]
fn the_monitor_joins_labels_arriving_on_a_topic() {
    let Some((broker, dir, uri)) = setup("labels on a topic", 1) else {
        return;
    };
    broker.create_topic("labels", 1);
    let data = dir.path().join("data");
    // The first 300 test rows are labelled, on the topic and in a file alike.
    let targets: velo_io::datasets::Reader = serde_json::from_value(
        json!({"KIND": "ParquetReader", "path": data.join("targets_test.parquet")}),
    )
    .unwrap();
    let targets = targets.read().unwrap().data;
    let instants = arrow::compute::cast(
        targets.column_by_name("instant").unwrap(),
        &arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    let counts = arrow::compute::cast(
        targets.column_by_name("cnt").unwrap(),
        &arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    let (instants, counts) = (
        instants.as_primitive::<arrow::datatypes::Int64Type>(),
        counts.as_primitive::<arrow::datatypes::Float64Type>(),
    );
    let records: Vec<(String, Vec<u8>)> = (0..300)
        .map(|row| {
            let value = json!({"instant": instants.value(row), "cnt": counts.value(row)});
            (row.to_string(), serde_json::to_vec(&value).unwrap())
        })
        .collect();
    produce(&broker.address, "labels", &records);
    let labels_file = dir.path().join("labels.parquet");
    let sliced = targets.slice(0, 300);
    velo_io::datasets::Writer::ParquetWriter(velo_io::datasets::ParquetWriter::new(&labels_file))
        .write(&sliced)
        .unwrap();
    let monitor = |labels: &str| {
        run_job(
            "configs/monitoring.yaml",
            &uri,
            &format!(
                "inputs: {{path: '{}'}}, {labels}, join_on: [instant], window: {{rows: 1000}}, outputs: {{}}",
                data.join("inputs_test.parquet").display()
            ),
        )
    };
    let from_topic = monitor(&format!(
        "targets: null, label_topic: {{brokers: '{}', topic: labels, idle_ms: 2000}}",
        broker.address
    ));
    assert_eq!(
        from_topic.code, 0,
        "{}\n{}",
        from_topic.stdout, from_topic.stderr
    );
    let from_file = monitor(&format!("targets: {{path: '{}'}}", labels_file.display()));
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);
    let figure = |out: &crate::Output, key: &str| -> String {
        out.stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {}", out.stdout))
            .to_owned()
    };
    assert_eq!(figure(&from_topic, "labelled_rows"), "300");
    assert_eq!(
        figure(&from_topic, "overall_root_mean_squared_error"),
        figure(&from_file, "overall_root_mean_squared_error")
    );
}

#[test]
fn the_job_logs_what_it_scored_to_a_topic() {
    let Some((broker, dir, uri)) = setup("a prediction log topic", 1) else {
        return;
    };
    broker.create_topic("scored", 1);
    let base = inputs_records(&dir.path().join("data"));
    let records: Vec<(String, Vec<u8>)> = (0..50).map(|i| numbered_record(&base, i)).collect();
    produce(&broker.address, "inputs", &records);
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, idle_timeout_ms: 3000, poll_interval_s: 0, prediction_log_topic: scored",
        broker.address
    );
    let done = job_command(&uri, &job).output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let logged = read_all(&broker.address, "scored", 50);
    assert_eq!(logged.len(), 50);
    let answers = read_all(&broker.address, "predictions", 50);
    let answered: std::collections::BTreeMap<String, f64> = answers
        .iter()
        .map(|message| {
            let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
            (
                value["source"].as_str().unwrap().to_owned(),
                value["prediction"].as_f64().unwrap(),
            )
        })
        .collect();
    for message in &logged {
        let row: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        let id = row["request_id"].as_str().unwrap();
        assert_eq!(String::from_utf8_lossy(message.key().unwrap()), id);
        assert!(
            row["temp"].is_number() && row["model_version"] == "1",
            "{row}"
        );
        // The log holds the very prediction the output topic answered for that record.
        assert_eq!(
            row["prediction"].as_f64(),
            answered.get(id).copied(),
            "{row}"
        );
    }
}

/// The number of records in `topic`, summed over its partitions' high watermarks.
fn records_in(broker: &str, topic: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .unwrap();
    // A broker slow to answer under load counts as nothing yet: the callers poll again.
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(30)) else {
        return 0;
    };
    metadata
        .topics()
        .iter()
        .flat_map(rdkafka::metadata::MetadataTopic::partitions)
        .map(|partition| {
            consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(5))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

#[test]
fn three_workers_in_one_group_share_the_stream_and_survive_a_killed_member() {
    let Some((broker, dir, uri)) = setup("a consumer group of three workers", 6) else {
        return;
    };
    let total = 100_000_usize;
    let (records, good, bad) = one_in_a_hundred_broken(&dir.path().join("data"), total);
    produce(&broker.address, "inputs", &records);
    let max_batch = 500_usize;
    // Eager assignment: tansu's coordinator, with cooperative-sticky, handed one partition to
    // two members at once (see the deployment chapter).
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, max_batch: {max_batch}, idle_timeout_ms: 15000, poll_interval_s: 0, consumer: {{session.timeout.ms: '6000', heartbeat.interval.ms: '1000', partition.assignment.strategy: roundrobin}}",
        broker.address
    );
    // Each worker's log, line by line: it says which partitions the group gives it.
    let (lines, seen) = std::sync::mpsc::channel::<(usize, String)>();
    let mut logs = Vec::new();
    let mut spawn = |index: usize| {
        let mut child = job_command(&uri, &job).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = lines.clone();
        logs.push(std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut text = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send((index, line.clone()));
                text.push_str(&format!("[worker {index}] {line}"));
                text.push('\n');
            }
            text
        }));
        child
    };
    let mut workers: Vec<std::process::Child> = (0..3).map(&mut spawn).collect();
    // Once every worker owns partitions and a fifth of the stream is scored, the first worker
    // dies without a word and another joins.
    let mut assigned = [false; 3];
    let started = Instant::now();
    while !assigned.iter().all(|a| *a) {
        while let Ok((index, line)) = seen.try_recv() {
            if index < 3 && line.contains("partitions assigned") && line.contains("inputs/") {
                assigned[index] = true;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the group never formed: assignments {assigned:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The group has worked together for a while (15,000 outputs, and 20,000 in all).
    let formed = records_in(&broker.address, "predictions");
    while records_in(&broker.address, "predictions") < (formed + 15_000).max(20_000) {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the group scored too little"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    workers[0].kill().unwrap();
    let _ = workers[0].wait();
    workers.push(spawn(3));
    drop(lines);
    let mut consumed = Vec::new();
    let mut logs = logs.into_iter();
    let killed_log = logs.next().unwrap().join().unwrap();
    let mut all_logs = killed_log.clone();
    for (worker, log) in workers.into_iter().skip(1).zip(logs) {
        let output = worker.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let log = log.join().unwrap();
        all_logs.push_str(&log);
        assert!(output.status.success(), "a worker failed: {log}");
        let count: u64 = stdout
            .split("consumed ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        consumed.push(count);
    }
    // Both survivors took a part (the newcomer takes what is left when its assignment comes,
    // possibly nothing; the killed worker's part is what the others did not consume).
    assert!(consumed[..2].iter().all(|count| *count > 0), "{consumed:?}");

    // A partition whose rebalance outlasted the others' idle timeout is left where its last
    // owner committed: a worker started again takes it from there (and finds nothing when
    // the group finished it).
    let last = job_command(&uri, &job).output().unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    all_logs.push_str(&String::from_utf8_lossy(&last.stderr));
    let outputs = read_to_end(&broker.address, "predictions");
    let keys: std::collections::BTreeSet<String> = outputs
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned())
        .collect();
    let missing: Vec<&String> = good.difference(&keys).take(20).collect();
    assert!(
        missing.is_empty(),
        "{} good inputs have no output (of {}; {} outputs; consumed by the survivors and the newcomer {consumed:?}), e.g. {missing:?}",
        good.difference(&keys).count(),
        good.len(),
        outputs.len()
    );
    assert_eq!(keys, good, "every good input has an output");
    let dead = read_to_end(&broker.address, "dead");
    let dead_keys: std::collections::BTreeSet<String> = dead
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned())
        .collect();
    assert_eq!(dead_keys, bad, "every broken input has a dead letter");
    // Repeats come from work the broker had not committed when the group changed. A batch
    // counts as in flight until the broker acknowledged its commit, so the killed worker
    // leaves its window (four batches) and the batch it was reading; a revocation leaves the
    // batch being read (those sent before are flushed and committed first), or a window when
    // the flush timed out; a refused commit of the killed worker may leave one more window.
    // A broken group, where members read the same partitions, would repeat the whole stream
    // once per extra member.
    let repeats = outputs.len() - good.len() + dead.len() - bad.len();
    let count = |log: &str, what: &str| log.lines().filter(|line| line.contains(what)).count();
    let revocations = count(&all_logs, "revoked by the group");
    let unflushed = count(&all_logs, "revoked before every output was acknowledged");
    let refused = count(&killed_log, "a commit was refused");
    let window = 5 * max_batch;
    let bound = window * (1 + unflushed + refused) + max_batch * revocations;
    let mut per_source: std::collections::BTreeMap<String, usize> = Default::default();
    for message in &outputs {
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        *per_source
            .entry(value["source"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let mut repeated: std::collections::BTreeMap<String, (usize, i64, i64)> = Default::default();
    for (source, count) in &per_source {
        if *count > 1 {
            let (partition, offset) = source.rsplit_once('/').unwrap();
            let offset: i64 = offset.parse().unwrap();
            let entry = repeated
                .entry(partition.to_owned())
                .or_insert((0, i64::MAX, i64::MIN));
            entry.0 += count - 1;
            entry.1 = entry.1.min(offset);
            entry.2 = entry.2.max(offset);
        }
    }
    assert!(
        repeats <= bound,
        "{repeats} repeats, above {bound} ({revocations} revocations, {unflushed} unflushed, {refused} commits refused to the killed worker): by partition (repeats, first, last offset) {repeated:?}; the workers' group events:\n{}",
        all_logs
            .lines()
            .filter(|line| [
                "partitions",
                "revoked",
                "refused",
                "commit",
                "WARN",
                "ERROR"
            ]
            .iter()
            .any(|word| line.contains(word)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The pause: the longest stretch without an output after the kill.
    let mut after: Vec<i64> = outputs
        .iter()
        .filter_map(|m| m.timestamp().to_millis())
        .filter(|at| *at >= killed_at_ms)
        .collect();
    after.sort_unstable();
    let pause = after
        .first()
        .map(|first| first - killed_at_ms)
        .into_iter()
        .chain(after.windows(2).map(|pair| pair[1] - pair[0]))
        .max()
        .unwrap_or_default();
    println!(
        "three workers, one killed once the group had scored 15,000 records: {} outputs for {} good inputs ({repeats} repeats, bound {bound} from {revocations} revocations, {unflushed} unflushed, {refused} refused; by partition (repeats, first, last offset) {repeated:?}), {} dead letters; records consumed by the survivors and the newcomer: {consumed:?}; longest pause in output after the kill: {pause} ms",
        outputs.len(),
        good.len(),
        dead.len()
    );
}

#[test]
fn sighup_reloads_what_a_stream_can_change_and_refuses_the_rest() {
    let Some((broker, dir, uri)) = setup("configuration reloads", 2) else {
        return;
    };
    let base = inputs_records(&dir.path().join("data"));
    let tune = dir.path().join("tune.yaml");
    std::fs::write(&tune, "job: {max_batch: 500}\n").unwrap();
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, poll_interval_s: 0",
        broker.address
    );
    let command = job_command(&uri, &job);
    // The tunables come from a second file, read again on SIGHUP (the snippet stays as given).
    let mut args: Vec<std::ffi::OsString> = command.get_args().map(ToOwned::to_owned).collect();
    args.insert(2, tune.clone().into_os_string());
    let mut command = Command::new(crate::velo_binary());
    command
        .current_dir(crate::root())
        .args(&args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_REGISTRY_URI")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let (lines, seen) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let wait_for = |needle: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut other = Vec::new();
        loop {
            match seen.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => other.push(line),
                Err(_) => assert!(
                    Instant::now() < deadline,
                    "never logged {needle:?}; logged:\n{}",
                    other.join("\n")
                ),
            }
        }
    };
    let records: Vec<(String, Vec<u8>)> = (0..300).map(|i| numbered_record(&base, i)).collect();
    produce(&broker.address, "inputs", &records);
    wait_for("partitions assigned");
    let hup = |content: &str| {
        std::fs::write(&tune, content).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // A tunable: applied between batches, and said.
    hup("job: {max_batch: 50}\n");
    let applied = wait_for("configuration reloaded");
    assert!(applied.contains("max_batch 500 -> 50"), "{applied}");
    // A typo: refused with the loader's diagnosis; the stream goes on.
    hup("job: {max_bach: 5}\n");
    let refused = wait_for("configuration is refused");
    assert!(refused.contains("did you mean `max_batch`"), "{refused}");
    // A change that needs a restart: refused, naming the key.
    hup("job: {max_batch: 50, group_id: elsewhere}\n");
    let restart = wait_for("needs a restart");
    assert!(restart.contains("group_id"), "{restart}");
    // Still streaming with what runs.
    let more: Vec<(String, Vec<u8>)> = (300..400).map(|i| numbered_record(&base, i)).collect();
    produce(&broker.address, "inputs", &more);
    let deadline = Instant::now() + Duration::from_secs(60);
    while records_in(&broker.address, "predictions") < 400 {
        assert!(
            Instant::now() < deadline,
            "the stream stopped after the reloads"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let _ = log.join();
}

#[test]
fn the_job_scores_with_a_model_from_mlflow_on_postgresql_and_s3() {
    let Some(broker) = Broker::start_or_skip("the Kafka job on MLflow with PostgreSQL and S3")
    else {
        return;
    };
    let Some(server) = velo_mlflow::test_server::TestServer::on_postgres_and_s3_or_skip(
        "the Kafka job on MLflow with PostgreSQL and S3",
        velo_mlflow::test_server::ArtifactMode::Proxied,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::jobs::synthetic_data(&data);
    let uri = server.uri();
    let trained = run_job("configs/training.yaml", uri, &training_snippet(&data));
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    let promoted = run_job("configs/promotion.yaml", uri, "");
    assert_eq!(promoted.code, 0, "{}", promoted.stderr);
    for topic in ["inputs", "predictions", "dead"] {
        broker.create_topic(topic, 1);
    }
    let base = inputs_records(&data);
    let records: Vec<(String, Vec<u8>)> = (0..100).map(|i| numbered_record(&base, i)).collect();
    produce(&broker.address, "inputs", &records);
    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, idle_timeout_ms: 3000, poll_interval_s: 0",
        broker.address
    );
    let done = job_command(uri, &job).output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    // Every record answered by the Champion whose files are objects in the bucket, and the
    // stream's run kept by the server on PostgreSQL.
    let answers = read_all(&broker.address, "predictions", 100);
    assert_eq!(answers.len(), 100);
    assert!(answers.iter().all(|message| {
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        value["prediction"].as_f64().is_some_and(f64::is_finite)
    }));
    let stores = velo_io::registries::open(uri).unwrap();
    let experiment = stores.tracking.get_or_create_experiment("bikes").unwrap();
    let run = stores
        .tracking
        .list_runs(&experiment)
        .unwrap()
        .into_iter()
        .find(|run| run.info.run_name == "KafkaInference")
        .expect("the stream's run");
    assert_eq!(run.data.metric("records_out"), Some(100.0));
}
