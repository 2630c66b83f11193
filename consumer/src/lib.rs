//! The experiment's consumer: a member of `GROUP_ID` that prints every message of `TOPIC` like the seed's
//! kafka-python consumer, at a configurable cost per message.
//!
//! # Layout
//! - [`config`]: settings from the environment.
//! - [`fetch`]: one rskafka fetch loop per assigned partition, into a bounded channel.
//! - [`process`]: decode and print one record.
//! - [`run`] (here): the processing loop. It owns the assignment: it starts and stops fetchers on the
//!   group driver's events, processes batches one record at a time, reports positions for commits,
//!   and stops between two records when partitions are revoked or SIGTERM arrives.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod fetch;
pub mod process;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use group::{
    driver::{self, Command, DriverConfig, DriverError, GroupHandle},
    membership::Event,
    TopicPartition,
};
use rskafka::client::Client;
use tokio::{io::AsyncWriteExt, sync::mpsc, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use fetch::{Batch, FetchSettings};
use process::Outcome;

/// How often printed lines are flushed (and positions reported) while a slow batch is processed.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Counters, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records printed (including null values).
    pub consumed: AtomicU64,
    /// Records skipped because they were not UTF-8 or not JSON.
    pub failed: AtomicU64,
}

/// Why the consumer stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// Connecting was cancelled.
    #[error(transparent)]
    Connect(#[from] runtime::kafka::ConnectError),
    /// The group membership failed.
    #[error(transparent)]
    Group(#[from] DriverError),
    /// The driver task panicked.
    #[error("the group driver stopped unexpectedly: {0}")]
    Driver(String),
    /// Writing to stdout failed (the reader went away).
    #[error("writing to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

/// Runs the consumer until `cancel` (then commits and leaves) or a fatal group error.
pub async fn run(
    config: &Config,
    stats: Arc<Stats>,
    cancel: &CancellationToken,
) -> Result<(), ConsumerError> {
    let client = Arc::new(
        runtime::kafka::connect(&config.kafka_brokers, &config.client_id, None, cancel).await?,
    );
    // The driver gets its own token: on SIGTERM it must keep running until the commit and LeaveGroup
    // are done, which it starts when it sees this one cancelled.
    let (handle, driver) = driver::spawn(
        DriverConfig {
            bootstrap: config.kafka_brokers.clone(),
            client_id: config.client_id.clone(),
            connect_timeout: Duration::from_secs(10),
            leave_timeout: config
                .shutdown_timeout
                .get()
                .saturating_sub(Duration::from_secs(2)),
        },
        config.membership(),
        cancel.clone(),
    );
    tracing::info!(
        group = %config.group_id,
        topic = %config.topic,
        client_id = %config.client_id,
        assignors = ?config.assignment_strategy.iter().map(|a| a.name()).collect::<Vec<_>>(),
        process_delay_ms = config.process_delay_ms,
        "consumer starting"
    );
    let mut consumer = Consumer {
        client,
        settings: FetchSettings {
            max_bytes: config.fetch_max_bytes,
            max_wait: config.fetch_max_wait.get(),
            reset: config.auto_offset_reset,
        },
        delay: Duration::from_millis(config.process_delay_ms),
        group: handle,
        fetchers: BTreeMap::new(),
        epoch: 0,
        stats,
        stdout: tokio::io::stdout(),
        line_buf: Vec::with_capacity(64 * 1024),
        stashed: None,
    };
    let processed = consumer.run(cancel).await;
    consumer.stop_fetchers();
    let driven = match driver.await {
        Ok(result) => result.map_err(ConsumerError::from),
        Err(join) => Err(ConsumerError::Driver(join.to_string())),
    };
    processed.and(driven)
}

struct Consumer {
    /// Shared by the fetchers.
    client: Arc<Client>,
    /// How fetchers fetch.
    settings: FetchSettings,
    /// `PROCESS_DELAY_MS`.
    delay: Duration,
    /// The group driver.
    group: GroupHandle,
    /// Running fetchers by partition.
    fetchers: BTreeMap<TopicPartition, (CancellationToken, JoinHandle<()>)>,
    /// Bumped on every assignment change; batches from an older epoch are dropped unprocessed.
    epoch: u64,
    /// Counters.
    stats: Arc<Stats>,
    /// Where the seed's lines go.
    stdout: tokio::io::Stdout,
    /// Lines not yet written, flushed per batch (and every [`FLUSH_EVERY`] in slow batches).
    line_buf: Vec<u8>,
    /// An event that interrupted a batch, handled next.
    stashed: Option<Event>,
}

enum Next {
    Event(Event),
    Batch(Batch),
    DriverGone,
}

impl Consumer {
    async fn run(&mut self, cancel: &CancellationToken) -> Result<(), ConsumerError> {
        let (batch_tx, mut batches) = mpsc::channel::<Batch>(16);
        loop {
            let next = match self.stashed.take() {
                Some(event) => Next::Event(event),
                None => tokio::select! {
                    biased;
                    event = self.group.events.recv() => event.map_or(Next::DriverGone, Next::Event),
                    // After SIGTERM no new batch is started; the driver revokes, commits and leaves.
                    Some(batch) = batches.recv(), if !cancel.is_cancelled() => Next::Batch(batch),
                },
            };
            match next {
                Next::DriverGone => return Ok(()),
                Next::Batch(batch) if batch.epoch == self.epoch => {
                    self.process(batch, cancel).await?
                }
                Next::Batch(_) => {}
                Next::Event(Event::Assigned { partitions, .. }) => {
                    self.epoch += 1;
                    for (tp, committed) in partitions {
                        self.start_fetcher(tp, committed, batch_tx.clone());
                    }
                }
                Next::Event(Event::Revoke { .. }) => {
                    // Positions of everything processed were reported as it was flushed; queued
                    // batches of the old epoch are dropped unprocessed, so nothing is skipped.
                    self.stop_fetchers();
                    self.epoch += 1;
                    let _ = self.group.commands.send(Command::RevokeDone);
                }
                Next::Event(_) => {}
            }
        }
    }

    fn start_fetcher(
        &mut self,
        tp: TopicPartition,
        committed: Option<i64>,
        out: mpsc::Sender<Batch>,
    ) {
        let token = CancellationToken::new();
        let task = tokio::spawn(fetch::run(
            Arc::clone(&self.client),
            tp.clone(),
            committed,
            self.settings.clone(),
            self.epoch,
            out,
            token.clone(),
        ));
        self.fetchers.insert(tp, (token, task));
    }

    fn stop_fetchers(&mut self) {
        for (_, (token, _task)) in std::mem::take(&mut self.fetchers) {
            token.cancel();
        }
    }

    /// Processes one batch record by record. Stops between two records when SIGTERM arrives or the
    /// driver has an event that takes partitions away; what was processed is flushed and reported.
    async fn process(
        &mut self,
        batch: Batch,
        cancel: &CancellationToken,
    ) -> Result<(), ConsumerError> {
        let mut next_offset = None;
        let mut last_flush = Instant::now();
        for r in &batch.records {
            if cancel.is_cancelled() || self.interrupted() {
                break;
            }
            match process::render(&r.record, &mut self.line_buf) {
                Outcome::Printed | Outcome::Null => {
                    self.stats.consumed.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Invalid(reason) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(partition = batch.partition.partition, offset = r.offset, %reason, "skipping a message that is not valid JSON");
                }
            }
            next_offset = Some(r.offset + 1);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
                if last_flush.elapsed() >= FLUSH_EVERY {
                    self.flush(&batch.partition, next_offset).await?;
                    last_flush = Instant::now();
                }
            }
        }
        self.flush(&batch.partition, next_offset).await
    }

    /// Takes an event if one is waiting; `true` if it must interrupt processing.
    fn interrupted(&mut self) -> bool {
        if self.stashed.is_some() {
            return true;
        }
        match self.group.events.try_recv() {
            Ok(event @ (Event::Revoke { .. } | Event::Fatal(_) | Event::Left)) => {
                self.stashed = Some(event);
                true
            }
            // Informational events (commits, coordinator changes) do not stop the batch.
            _ => false,
        }
    }

    /// Writes the buffered lines, then reports the position: a committed offset is always one whose
    /// record's line has been written.
    async fn flush(
        &mut self,
        partition: &TopicPartition,
        next_offset: Option<i64>,
    ) -> Result<(), ConsumerError> {
        if !self.line_buf.is_empty() {
            self.stdout.write_all(&self.line_buf).await?;
            self.stdout.flush().await?;
            self.line_buf.clear();
        }
        if let Some(offset) = next_offset {
            let _ = self
                .group
                .commands
                .send(Command::Position(partition.clone(), offset));
        }
        Ok(())
    }
}
