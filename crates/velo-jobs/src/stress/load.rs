//! The load generator: HTTP/1.1 requests over kept-alive loopback connections, in a closed
//! loop (a fixed number of clients, each waiting for its answer) or an open loop (Poisson
//! arrivals at an offered rate, latency counted from each request's scheduled time so that a
//! slow server cannot hide its queue: no coordinated omission), into HDR histograms.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, client::conn::http1, header};
use hyper_util::rt::TokioIo;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Exp};
use tokio::{net::TcpStream, task::JoinSet, time::Instant};

/// Where requests go.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `host:port`.
    pub(crate) authority: String,
    /// The request path, such as `/invocations`.
    pub(crate) path: String,
}

impl Endpoint {
    /// The endpoint of a URL such as `http://127.0.0.1:5000` (path `/invocations` unless the
    /// URL has one).
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}` is not an http:// URL (https is not load-tested)"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let path = if path.is_empty() || path == "/" {
            "/invocations"
        } else {
            path
        };
        Ok(Self {
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// How long a step lasts and how many requests it may send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Load before measuring.
    pub(crate) warmup: Duration,
    /// Measured load.
    pub(crate) measure: Duration,
    /// The most requests one step sends (warm-up included).
    pub(crate) max_requests: u64,
    /// The longest a request may take before it counts as an error.
    pub(crate) timeout: Duration,
}

/// What one step measured.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// Latencies of the answered requests of the measured window, in microseconds.
    pub(crate) latency: Histogram<u64>,
    /// Requests answered with a 2xx in the measured window.
    pub(crate) ok: u64,
    /// Requests of the measured window that failed: non-2xx, connection errors, timeouts,
    /// and (open loop) arrivals dropped because every allowed connection was busy.
    pub(crate) errors: u64,
    /// Length of the measured window, in seconds.
    pub(crate) seconds: f64,
}

/// An empty histogram of 1 µs to 10 min at 3 significant digits.
fn histogram() -> Histogram<u64> {
    #[expect(
        clippy::expect_used,
        reason = "constant bounds that hdrhistogram accepts"
    )]
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("1 µs to 10 min at 3 digits is valid")
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(endpoint: &Endpoint) -> Result<Sender, String> {
    let stream = TcpStream::connect(&endpoint.authority)
        .await
        .map_err(|error| format!("cannot connect to {}: {error}", endpoint.authority))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake with {} failed: {error}", endpoint.authority))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request on `sender`; `Ok(true)` for a 2xx answer read to its end.
async fn send(sender: &mut Sender, endpoint: &Endpoint, body: Bytes) -> Result<bool, String> {
    sender.ready().await.map_err(|error| error.to_string())?;
    let request = Request::post(endpoint.path.as_str())
        .header(header::HOST, endpoint.authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|error| error.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| error.to_string())?;
    let ok = response.status().is_success();
    response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?;
    Ok(ok)
}

/// Checks that `endpoint` answers `body` with a 2xx, so a misconfigured server fails fast.
pub(crate) async fn probe(endpoint: &Endpoint, body: Bytes) -> Result<(), String> {
    let mut sender = connect(endpoint).await?;
    match tokio::time::timeout(Duration::from_secs(30), send(&mut sender, endpoint, body)).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(format!(
            "{} answered a request with an error status",
            endpoint.authority
        )),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(format!("{} did not answer within 30 s", endpoint.authority)),
    }
}

/// `clients` clients, each sending a request and waiting for its answer, over its own
/// connection, until the step's time or request budget is spent.
pub(crate) async fn closed_loop(
    endpoint: &Endpoint,
    bodies: Arc<Vec<Bytes>>,
    clients: usize,
    limits: Limits,
) -> Measured {
    let start = Instant::now();
    let measure_from = start + limits.warmup;
    let end = measure_from + limits.measure;
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for client in 0..clients.max(1) {
        let (endpoint, bodies, issued) =
            (endpoint.clone(), Arc::clone(&bodies), Arc::clone(&issued));
        tasks.spawn(async move {
            let mut latency = histogram();
            let (mut ok, mut errors) = (0_u64, 0_u64);
            let mut sender = None;
            let mut next = client;
            loop {
                let now = Instant::now();
                if now >= end || issued.fetch_add(1, Ordering::Relaxed) >= limits.max_requests {
                    break;
                }
                if sender.is_none() {
                    match connect(&endpoint).await {
                        Ok(connected) => sender = Some(connected),
                        Err(_) => {
                            if now >= measure_from {
                                errors += 1;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(connection) = sender.as_mut() else {
                    continue;
                };
                let body = bodies[next % bodies.len()].clone();
                next += clients;
                let sent = Instant::now();
                let answer =
                    tokio::time::timeout(limits.timeout, send(connection, &endpoint, body)).await;
                let done = Instant::now();
                let measured = sent >= measure_from && done <= end;
                match answer {
                    Ok(Ok(true)) => {
                        if measured {
                            ok += 1;
                            let _ = latency.record(micros(done - sent));
                        }
                    }
                    Ok(Ok(false)) => errors += u64::from(measured),
                    Ok(Err(_)) | Err(_) => {
                        errors += u64::from(measured);
                        sender = None;
                    }
                }
            }
            (latency, ok, errors)
        });
    }
    let mut measured = Measured {
        latency: histogram(),
        ok: 0,
        errors: 0,
        seconds: 0.0,
    };
    while let Some(joined) = tasks.join_next().await {
        if let Ok((latency, ok, errors)) = joined {
            let _ = measured.latency.add(&latency);
            measured.ok += ok;
            measured.errors += errors;
        }
    }
    let finished = Instant::now().min(end);
    measured.seconds = finished
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    measured
}

/// Requests arriving as a Poisson process at `rate` per second (seeded), each sent on an idle
/// connection or a new one, at most `max_in_flight` at once (an arrival finding them all busy
/// is dropped and counted as an error); latency runs from the scheduled arrival.
pub(crate) async fn open_loop(
    endpoint: &Endpoint,
    bodies: Arc<Vec<Bytes>>,
    rate: f64,
    max_in_flight: usize,
    limits: Limits,
    seed: u64,
) -> Measured {
    let start = Instant::now();
    let measure_from = start + limits.warmup;
    let end = measure_from + limits.measure;
    let idle: Arc<Mutex<Vec<Sender>>> = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Mutex::new((histogram(), 0_u64, 0_u64)));
    let mut tasks = JoinSet::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let gaps = Exp::new(rate.max(1e-9)).ok();
    let mut at = start;
    let mut dropped = 0_u64;
    for index in 0..limits.max_requests {
        let gap = gaps.as_ref().map_or(1.0, |gaps| gaps.sample(&mut rng));
        at += Duration::from_secs_f64(gap);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let measured = at >= measure_from;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight as u64 {
            dropped += u64::from(measured);
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (endpoint, idle, in_flight, shared) = (
            endpoint.clone(),
            Arc::clone(&idle),
            Arc::clone(&in_flight),
            Arc::clone(&shared),
        );
        let body = bodies[index as usize % bodies.len()].clone();
        let scheduled = at;
        tasks.spawn(async move {
            let reused = idle.lock().ok().and_then(|mut idle| idle.pop());
            let sender = match reused {
                Some(sender) => Ok(sender),
                None => connect(&endpoint).await,
            };
            let outcome = match sender {
                Err(_) => None,
                Ok(mut sender) => {
                    let answer =
                        tokio::time::timeout(limits.timeout, send(&mut sender, &endpoint, body))
                            .await;
                    match answer {
                        Ok(Ok(ok)) => {
                            if let Ok(mut idle) = idle.lock() {
                                idle.push(sender);
                            }
                            Some(ok)
                        }
                        _ => None,
                    }
                }
            };
            let done = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if measured
                && done <= end + limits.timeout
                && let Ok(mut shared) = shared.lock()
            {
                match outcome {
                    Some(true) => {
                        let _ = shared.0.record(micros(done - scheduled));
                        shared.1 += 1;
                    }
                    _ => shared.2 += 1,
                }
            }
        });
    }
    // Answers still due are waited for, up to the timeout.
    let _ = tokio::time::timeout(limits.timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let unanswered = tasks.len() as u64;
    tasks.abort_all();
    let (latency, ok, errors) = shared
        .lock()
        .map(|shared| shared.clone())
        .unwrap_or_else(|_| (histogram(), 0, 0));
    Measured {
        latency,
        ok,
        errors: errors + dropped + unanswered,
        seconds: limits.measure.as_secs_f64(),
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}
