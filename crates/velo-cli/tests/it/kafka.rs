//! `KafkaInferenceJob` against a real Kafka-compatible broker (tansu, started here on a free
//! loopback port with its SQLite storage): every input gets an output or a dead letter, keys
//! are kept, and committed offsets are where a second run resumes.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message as _,
    consumer::{Consumer as _, StreamConsumer},
    message::Headers as _,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};

use crate::jobs::{run_job, synthetic_data, training_snippet};

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

/// A tansu broker on a free loopback port, storing in a temp dir; killed on drop.
pub(crate) struct Broker {
    child: Child,
    pub(crate) address: String,
    binary: PathBuf,
    _dir: tempfile::TempDir,
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
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let broker = Self {
            child,
            address: format!("127.0.0.1:{port}"),
            binary,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(broker)
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

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

#[test]
fn every_record_gets_a_prediction_or_a_dead_letter_and_offsets_are_committed() {
    let Some(broker) = Broker::start_or_skip("the Kafka inference job") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_data(&data);
    let uri = dir.path().join("mlruns").display().to_string();
    assert_eq!(
        run_job("configs/training.yaml", &uri, &training_snippet(&data)).code,
        0
    );
    assert_eq!(run_job("configs/promotion.yaml", &uri, "").code, 0);
    for (topic, partitions) in [("inputs", 3), ("predictions", 3), ("dead", 1)] {
        broker.create_topic(topic, partitions);
    }

    // Every 50th record is broken: bad JSON, not an object, or out of the schema's range.
    let rows = inputs_records(&data);
    let mut records = Vec::new();
    let mut broken = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let key = row["instant"].to_string();
        let value = match i % 150 {
            49 => b"{\"season\": 3, ".to_vec(),
            99 => b"[1, 2, 3]".to_vec(),
            149 => {
                let mut bad = row.clone();
                bad.insert("hr".to_owned(), json!(30));
                serde_json::to_vec(&bad).unwrap()
            }
            _ => serde_json::to_vec(row).unwrap(),
        };
        if i % 50 == 49 {
            broken.push((key.clone(), value.clone()));
        }
        records.push((key, value));
    }
    produce(&broker.address, "inputs", &records);

    let job = format!(
        "brokers: '{}', input_topic: inputs, output_topic: predictions, dead_letter_topic: dead, max_batch: 64, idle_timeout_ms: 3000, poll_interval_s: 0",
        broker.address
    );
    let first = run_job("configs/kafka_inference.yaml", &uri, &job);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let good = records.len() - broken.len();
    assert!(
        first.stdout.contains(&format!(
            "consumed {} records: {good} predictions to `predictions`, {} dead letters to `dead`",
            records.len(),
            broken.len()
        )),
        "{}",
        first.stdout
    );

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
