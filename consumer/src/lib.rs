//! The experiment's consumer: a member of `GROUP_ID` that prints every message of `TOPIC` like the seed's
//! kafka-python consumer, at a configurable cost per message.
//!
//! # Layout
//! - [`config`]: settings from the environment.
//! - fetching is the [`fetch`] crate's: one task per partition leader, into a bounded channel, at
//!   `ISOLATION_LEVEL`.
//! - [`metrics`]: Prometheus metrics (kafka_exporter's names for lag and offsets).
//! - [`process`]: decode and print one record.
//! - [`run`] (here): the processing loop. It owns the assignment: it starts and stops fetchers on the
//!   group driver's events, processes batches one record at a time, reports positions for commits,
//!   and stops between two records when partitions are revoked or SIGTERM arrives.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod metrics;
pub mod process;

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use fetch::{Batch, FetchConfig};
use group::{
    driver::{self, Command, DriverConfig, DriverError, GroupHandle, Status},
    membership::{Event, State},
    TopicPartition,
};
use tokio::{io::AsyncWriteExt, sync::mpsc, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use metrics::Metrics;
use process::Outcome;

/// Records processed between two checks for SIGTERM and group events (a few microseconds' worth
/// without `PROCESS_DELAY_MS`).
const CHECK_EVERY: usize = 64;

/// How often printed lines are flushed (and positions reported) while a slow batch is processed.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Why the consumer stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The group membership failed.
    #[error(transparent)]
    Group(#[from] DriverError),
    /// The driver task panicked.
    #[error("the group driver stopped unexpectedly: {0}")]
    Driver(String),
    /// Writing to stdout failed (the reader went away).
    #[error("writing to stdout")]
    Stdout(#[from] std::io::Error),
    /// `METRICS_ADDR` could not be bound.
    #[error("cannot listen on METRICS_ADDR {addr}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Kafka refused the connection for a reason retrying cannot fix (TLS, SASL).
    #[error("connecting to Kafka")]
    Kafka(#[source] runtime::kafka::ConnectError<transport::TransportError>),
}

/// `/readyz`: ready once the member is in a stable group whose coordinator answers (with an
/// assignment, or legitimately without one when the group has more members than partitions).
fn readiness(status: &OnceLock<tokio::sync::watch::Receiver<Status>>) -> (bool, String) {
    let Some(status) = status.get() else {
        return (false, "connecting to Kafka".into());
    };
    let s = status.borrow();
    match (s.state, &s.coordinator) {
        (State::Stable, Some(_)) => {
            let parts: Vec<String> = s
                .assignment
                .iter()
                .map(|tp| tp.partition.to_string())
                .collect();
            (
                true,
                format!(
                    "stable in generation {} with partitions [{}]",
                    s.generation,
                    parts.join(",")
                ),
            )
        }
        (State::Stable, None) => (false, "the group coordinator is unreachable".into()),
        (state, _) => (false, format!("{state:?}")),
    }
}

/// Runs the consumer until `cancel` (then commits and leaves) or a fatal group error.
pub async fn run(
    config: &Config,
    metrics: Metrics,
    cancel: &CancellationToken,
) -> Result<(), ConsumerError> {
    // Serve health before Kafka answers: a pod waiting for its brokers is alive, just not ready.
    let status_slot: Arc<OnceLock<tokio::sync::watch::Receiver<Status>>> =
        Arc::new(OnceLock::new());
    let listener = config
        .metrics_addr
        .bind()
        .await
        .map_err(|e| ConsumerError::Metrics {
            addr: e.addr,
            source: e.source,
        })?;
    if let Some(listener) = listener {
        if let Ok(bound) = listener.local_addr() {
            tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
        }
        let slot = Arc::clone(&status_slot);
        let ready: runtime::http::Readiness = Arc::new(move || readiness(&slot));
        tokio::spawn(runtime::http::serve(
            listener,
            metrics.registry.clone(),
            ready,
            cancel.clone(),
        ));
    }
    if !wait_for_kafka(config, cancel).await? {
        tracing::info!("stopped before Kafka answered");
        return Ok(());
    }
    // The driver gets its own token: on SIGTERM it must keep running until the commit and LeaveGroup
    // are done, which it starts when it sees this one cancelled.
    let leave = cancel.child_token();
    let (handle, driver) = driver::spawn(
        DriverConfig {
            bootstrap: config.kafka_brokers.clone(),
            client_id: config.client_id.clone(),
            connect_timeout: Duration::from_secs(10),
            leave_timeout: config
                .shutdown_timeout
                .get()
                .saturating_sub(Duration::from_secs(2)),
            security: config.security.clone(),
        },
        config.membership(),
        // A child token: processing that fails (stdout closed) must make the driver leave too.
        leave.clone(),
    );
    let _ = status_slot.set(handle.status.clone());
    tracing::info!(
        group = %config.group_id,
        topic = %config.topic,
        client_id = %config.client_id,
        group_protocol = ?config.group_protocol,
        assignors = ?config.assignment_strategy.iter().map(|a| a.name()).collect::<Vec<_>>(),
        process_delay_ms = config.process_delay_ms,
        isolation_level = ?config.isolation_level,
        "consumer starting"
    );
    let mut consumer = Consumer {
        fetch: Arc::new(config.fetch()),
        delay: Duration::from_millis(config.process_delay_ms),
        group: handle,
        fetcher: None,
        epoch: 0,
        positions: BTreeMap::new(),
        group_id: config.group_id.clone(),
        metrics,
        committed: BTreeMap::new(),
        high_watermarks: BTreeMap::new(),
        rebalance_started: Some(Instant::now()),
        stdout: tokio::io::stdout(),
        line_buf: Vec::with_capacity(64 * 1024),
        stashed: None,
    };
    let processed = consumer.run(cancel).await;
    consumer.stop_fetcher();
    if let Err(err) = &processed {
        tracing::error!(%err, "processing failed; leaving the group");
        leave.cancel();
        // Nothing more will be processed: confirm the revoke at once, so the driver commits what was
        // written and leaves without waiting out its timeout. Ends when the driver does.
        while let Some(event) = consumer.group.events.recv().await {
            if matches!(event, Event::Revoke { .. }) {
                let _ = consumer.group.commands.send(Command::RevokeDone);
            }
        }
    }
    let driven = match driver.await {
        Ok(result) => result.map_err(ConsumerError::from),
        Err(join) => Err(ConsumerError::Driver(join.to_string())),
    };
    processed.and(driven)
}

struct Consumer {
    /// How fetchers fetch.
    fetch: Arc<FetchConfig>,
    /// `PROCESS_DELAY_MS`.
    delay: Duration,
    /// The group driver.
    group: GroupHandle,
    /// The running fetch of everything owned (one task per partition leader inside).
    fetcher: Option<(CancellationToken, JoinHandle<()>)>,
    /// Bumped every time the fetch stops; batches of an older one are dropped unprocessed.
    epoch: u64,
    /// The owned partitions with the offset to fetch next: committed at assignment (`None`: the
    /// reset policy), then the position after the last processed record. A cooperative rebalance
    /// restarts the fetch from here for the partitions kept, so they are never revoked nor re-read.
    positions: BTreeMap<TopicPartition, Option<i64>>,
    /// `GROUP_ID`, a metric label.
    group_id: String,
    /// Prometheus metrics.
    metrics: Metrics,
    /// Last committed offset per owned partition, for the lag gauge.
    committed: BTreeMap<TopicPartition, i64>,
    /// High watermark per owned partition at the last fetch, for the lag gauge.
    high_watermarks: BTreeMap<TopicPartition, i64>,
    /// When the member last lost its assignment (or started), for `consumer_rebalance_seconds_total`.
    rebalance_started: Option<Instant>,
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
        // Few batches queued: each holds its decoded records (about 170 bytes a record besides the
        // value, which borrows the fetch response) and keeps that response's buffer alive, so this
        // bounds memory (a pod has 64 MiB) while still keeping the next batch ready.
        let (batch_tx, mut batches) = mpsc::channel::<Batch>(4);
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
                Next::Event(Event::Assigned {
                    generation,
                    partitions,
                    owned,
                }) => {
                    // Kept partitions go on from their positions; only what is new starts at its
                    // committed offset.
                    self.on_assigned(generation, &partitions, &owned);
                    for (tp, committed) in partitions {
                        self.positions.insert(tp, committed);
                    }
                    self.restart_fetch(batch_tx.clone());
                }
                Next::Event(Event::Revoke { partitions, .. }) => {
                    // Positions of everything processed were reported as it was flushed; queued
                    // batches of a stopped fetcher are dropped unprocessed, so nothing is skipped.
                    for tp in &partitions {
                        self.positions.remove(tp);
                    }
                    self.restart_fetch(batch_tx.clone());
                    self.on_revoked(&partitions);
                    let _ = self.group.commands.send(Command::RevokeDone);
                }
                Next::Event(other) => self.observe(&other),
            }
        }
    }

    /// Stops the running fetch and, if anything is owned, starts one for all of it from
    /// [`Consumer::positions`]: batches still queued from the old one are dropped by their epoch.
    fn restart_fetch(&mut self, out: mpsc::Sender<Batch>) {
        self.stop_fetcher();
        if self.positions.is_empty() {
            return;
        }
        let assignment = self
            .positions
            .iter()
            .map(|(tp, position)| (tp.clone(), *position))
            .collect();
        let token = CancellationToken::new();
        let task = tokio::spawn(fetch::run(
            Arc::clone(&self.fetch),
            assignment,
            self.epoch,
            out,
            token.clone(),
        ));
        self.fetcher = Some((token, task));
    }

    fn on_assigned(
        &mut self,
        generation: i32,
        added: &[(TopicPartition, Option<i64>)],
        owned: &[TopicPartition],
    ) {
        let m = &self.metrics;
        m.generation.set(i64::from(generation));
        m.assigned_count.set(owned.len() as i64);
        m.assigned.reset();
        for tp in owned {
            m.assigned
                .with_label_values(&[&tp.topic, &tp.partition.to_string()])
                .set(1);
        }
        for (tp, committed) in added {
            if let Some(offset) = committed {
                self.committed.insert(tp.clone(), *offset);
            }
        }
        m.rebalances.inc();
        if let Some(started) = self.rebalance_started.take() {
            m.rebalance_seconds.inc_by(started.elapsed().as_secs_f64());
        }
    }

    fn on_revoked(&mut self, revoked: &[TopicPartition]) {
        let m = &self.metrics;
        // Each member exports only the partitions it owns; summed over members it is the group's lag.
        for tp in revoked {
            let partition = tp.partition.to_string();
            let _ = m.assigned.remove_label_values(&[&tp.topic, &partition]);
            let labels = [
                self.group_id.as_str(),
                tp.topic.as_str(),
                partition.as_str(),
            ];
            let _ = m.lag.remove_label_values(&labels);
            let _ = m.committed.remove_label_values(&labels);
            let _ = m
                .high_watermark
                .remove_label_values(&[&tp.topic, &partition]);
            self.committed.remove(tp);
            self.high_watermarks.remove(tp);
        }
        m.assigned_count.set(self.positions.len() as i64);
        // The world stops for this member only when it owns nothing (eager revokes everything; a
        // cooperative member keeps consuming what it keeps).
        if self.positions.is_empty() {
            self.rebalance_started.get_or_insert_with(Instant::now);
        }
    }

    /// Informational events: commits update the offset and lag gauges.
    fn observe(&mut self, event: &Event) {
        if let Event::Committed { offsets } = event {
            for (tp, offset) in offsets {
                self.committed.insert(tp.clone(), *offset);
                self.update_lag(tp);
            }
        }
    }

    fn update_lag(&self, tp: &TopicPartition) {
        let partition = tp.partition.to_string();
        let labels = [
            self.group_id.as_str(),
            tp.topic.as_str(),
            partition.as_str(),
        ];
        if let Some(committed) = self.committed.get(tp) {
            self.metrics
                .committed
                .with_label_values(&labels)
                .set(*committed);
            if let Some(hw) = self.high_watermarks.get(tp) {
                self.metrics
                    .lag
                    .with_label_values(&labels)
                    .set((hw - committed).max(0));
            }
        }
    }

    /// Stops the running fetch. The epoch moves on at once, so batches it already queued are
    /// dropped unprocessed: a slow member must not work through batches of partitions it gave up.
    fn stop_fetcher(&mut self) {
        if let Some((token, _task)) = self.fetcher.take() {
            token.cancel();
        }
        self.epoch += 1;
    }

    /// Processes one batch record by record. Stops between two records when SIGTERM arrives or the
    /// driver has an event that takes partitions away; what was processed is flushed and reported.
    async fn process(
        &mut self,
        batch: Batch,
        cancel: &CancellationToken,
    ) -> Result<(), ConsumerError> {
        let partition = batch.partition.partition.to_string();
        let labels = [batch.partition.topic.as_str(), partition.as_str()];
        // Label lookups once per batch, not per record.
        let (consumed, failed) = (
            self.metrics.consumed.with_label_values(&labels),
            self.metrics.failed.with_label_values(&labels),
        );
        self.metrics
            .high_watermark
            .with_label_values(&labels)
            .set(batch.high_watermark);
        let tp = batch.partition.clone();
        self.high_watermarks
            .insert(tp.clone(), batch.high_watermark);
        self.update_lag(&tp);
        let mut next_offset = None;
        let mut last_flush = Instant::now();
        let mut whole = true;
        // Per record, only what must be: one clock read (a record's time runs from the previous
        // one's end), a histogram observation without atomics (flushed once per batch), and the
        // SIGTERM and event checks every CHECK_EVERY records, or every record when each sleeps.
        // Draining a backlog, the clock and the checks were a fifth of this task's time.
        let processing = self.metrics.processing.local();
        let mut started = Instant::now();
        for (i, r) in batch.records.iter().enumerate() {
            let check = i % CHECK_EVERY == 0 || !self.delay.is_zero();
            if check && (cancel.is_cancelled() || self.interrupted()) {
                whole = false;
                break;
            }
            match process::render(r.value.as_deref(), &mut self.line_buf) {
                Outcome::Printed | Outcome::Null => consumed.inc(),
                Outcome::Invalid(reason) => {
                    failed.inc();
                    tracing::warn!(partition = batch.partition.partition, offset = r.offset, %reason, "skipping a message that is not valid JSON");
                }
            }
            next_offset = Some(r.offset + 1);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
                if last_flush.elapsed() >= FLUSH_EVERY {
                    self.flush(&tp, next_offset).await?;
                    last_flush = Instant::now();
                }
            }
            let now = Instant::now();
            processing.observe(now.saturating_duration_since(started).as_secs_f64());
            started = now;
        }
        processing.flush();
        if whole {
            // Past the transaction markers, aborted records and compaction gaps the fetch covered
            // too: with only markers after the last record, the committed offset still reaches the
            // log end, as the Java consumer's does.
            next_offset = Some(batch.next_offset);
        }
        self.flush(&tp, next_offset).await
    }

    /// Takes an event if one is waiting; `true` if it must interrupt processing.
    fn interrupted(&mut self) -> bool {
        if self.stashed.is_some() {
            return true;
        }
        match self.group.events.try_recv() {
            // A new assignment too: handled after this batch's position is reported, else it
            // would be lost here and its partitions never fetched.
            Ok(
                event @ (Event::Revoke { .. }
                | Event::Assigned { .. }
                | Event::Fatal(_)
                | Event::Left),
            ) => {
                self.stashed = Some(event);
                true
            }
            // Informational events (commits, coordinator changes) do not stop the batch.
            Ok(event) => {
                self.observe(&event);
                false
            }
            Err(_) => false,
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
            if let Some(position) = self.positions.get_mut(partition) {
                *position = Some(offset);
            }
            let _ = self
                .group
                .commands
                .send(Command::Position(partition.clone(), offset));
        }
        Ok(())
    }
}

/// Waits until a bootstrap broker answers ApiVersions (and accepts our TLS and SASL), so a consumer
/// started before Kafka says so once and joins when it comes; `false` when cancelled first, an
/// error when the broker refused us for good (a wrong password, an untrusted certificate).
async fn wait_for_kafka(
    config: &Config,
    cancel: &CancellationToken,
) -> Result<bool, ConsumerError> {
    let (brokers, id, security) = (&config.kafka_brokers, &config.client_id, &config.security);
    match runtime::kafka::preflight(brokers, id, security, None, cancel).await {
        Ok(()) => Ok(true),
        Err(runtime::kafka::ConnectError::Cancelled { .. }) => Ok(false),
        Err(err) => Err(ConsumerError::Kafka(err)),
    }
}
