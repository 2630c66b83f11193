//! Test data written with rskafka directly, so tests of the consumer do not depend on our producer.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use rskafka::{
    client::{
        partition::{Compression, UnknownTopicHandling},
        ClientBuilder,
    },
    record::Record,
};

/// The seed's payload with an audit identity: `{"cnt":"cnt: N","producer":P,"seq":N}`.
pub fn payload(producer: &str, seq: u64) -> Vec<u8> {
    format!(r#"{{"cnt":"cnt: {seq}","producer":"{producer}","seq":{seq}}}"#).into_bytes()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Writes `values` round-robin over `partitions` partitions, in batches of up to 500 per partition.
pub fn produce(broker: &str, topic: &str, partitions: i32, values: Vec<Option<Vec<u8>>>) {
    runtime().block_on(async {
        let client = ClientBuilder::new(broker.split(',').map(str::to_string).collect())
            .build()
            .await
            .expect("client");
        let mut per: Vec<Vec<Record>> = (0..partitions).map(|_| Vec::new()).collect();
        for (i, value) in values.into_iter().enumerate() {
            per[i % partitions as usize].push(Record {
                key: None,
                value,
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            });
        }
        for (p, records) in per.into_iter().enumerate() {
            let pc = client
                .partition_client(topic, p as i32, UnknownTopicHandling::Retry)
                .await
                .expect("partition client");
            let mut records = records;
            while !records.is_empty() {
                let rest = records.split_off(records.len().min(500));
                pc.produce(records, Compression::NoCompression)
                    .await
                    .expect("produce");
                records = rest;
            }
        }
    });
}

/// `count` seed-shaped messages from producer `name`, seq 1..=count.
pub fn produce_seq(broker: &str, topic: &str, partitions: i32, name: &str, count: u64) {
    produce(
        broker,
        topic,
        partitions,
        (1..=count).map(|s| Some(payload(name, s))).collect(),
    );
}

/// A background producer at a steady rate (like 200 pods at 1 Hz), seq 1, 2, 3 … from `name`.
#[derive(Debug)]
pub struct RateProducer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RateProducer {
    /// Starts sending `per_second` messages a second, round-robin over `partitions`, for at most
    /// `max_duration`.
    pub fn start(
        broker: &str,
        topic: &str,
        partitions: i32,
        name: &str,
        per_second: u32,
        max_duration: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (broker, topic, name) = (broker.to_string(), topic.to_string(), name.to_string());
        let (stop_flag, counter) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = thread::spawn(move || {
            runtime().block_on(async move {
                let client = ClientBuilder::new(broker.split(',').map(str::to_string).collect())
                    .build()
                    .await
                    .expect("client");
                let mut clients = Vec::new();
                for p in 0..partitions {
                    clients.push(Arc::new(
                        client
                            .partition_client(topic.clone(), p, UnknownTopicHandling::Retry)
                            .await
                            .expect("partition client"),
                    ));
                }
                // Ticks of 50 ms, each sending its share: one request per partition, all at once, so
                // the rate holds on a loaded machine where one round trip can take 10 ms.
                // What is owed follows the clock, not the ticks, so late ticks catch up.
                let tick = Duration::from_millis(50);
                let started = Instant::now();
                let mut interval = tokio::time::interval(tick);
                let mut seq = 0u64;
                while !stop_flag.load(Ordering::Relaxed) && started.elapsed() < max_duration {
                    interval.tick().await;
                    let due = (started.elapsed().as_secs_f64() * f64::from(per_second)) as u64;
                    let mut per: Vec<Vec<Record>> = (0..partitions).map(|_| Vec::new()).collect();
                    while seq < due {
                        seq += 1;
                        per[(seq % partitions as u64) as usize].push(Record {
                            key: None,
                            value: Some(payload(&name, seq)),
                            headers: Default::default(),
                            timestamp: chrono::Utc::now(),
                        });
                    }
                    let mut sends = tokio::task::JoinSet::new();
                    for (p, records) in per.into_iter().enumerate() {
                        if !records.is_empty() {
                            let pc = Arc::clone(&clients[p]);
                            sends.spawn(async move {
                                pc.produce(records, Compression::NoCompression).await
                            });
                        }
                    }
                    // A lost batch would be a gap the audits report: these must succeed.
                    while let Some(done) = sends.join_next().await {
                        done.expect("send task").expect("produce");
                    }
                    counter.store(seq, Ordering::Relaxed);
                }
            });
        });
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Messages acknowledged so far (seq 1..=n).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops and returns how many were sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sent()
    }
}

impl Drop for RateProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
