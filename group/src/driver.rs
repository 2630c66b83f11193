//! The driver: one task that owns the broker connections and feeds the [`Membership`] state machine.
//!
//! The application talks to it through a [`GroupHandle`]: it receives [`Event`]s (assigned, revoke …)
//! and sends [`Command`]s (positions, "revoke done"). Heartbeats run on the state machine's timers in
//! this task, so message processing elsewhere never delays them.

use std::time::Duration;

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    connection::Connection,
    membership::{Action, Config, Coordinator, Event, FatalError, Membership, State, Target},
    wire::Request,
    TopicPartition,
};

/// How the driver reaches the cluster.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Bootstrap brokers, `host:port`.
    pub bootstrap: Vec<String>,
    /// Client id in every request header.
    pub client_id: String,
    /// Timeout for connecting and negotiating versions.
    pub connect_timeout: Duration,
    /// After shutdown is requested, how long the commit and LeaveGroup may take in total.
    pub leave_timeout: Duration,
}

/// What the application tells the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Processed `partition` up to (not including) this offset.
    Position(TopicPartition, i64),
    /// The partitions of the last revoke are no longer consumed.
    RevokeDone,
}

/// A snapshot for readiness probes and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Coarse state.
    pub state: State,
    /// Current generation.
    pub generation: i32,
    /// Our member id.
    pub member_id: String,
    /// Owned partitions.
    pub assignment: Vec<TopicPartition>,
    /// The coordinator, once known.
    pub coordinator: Option<Coordinator>,
}

/// Why the driver stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The broker refused us in a way retrying cannot fix.
    #[error(transparent)]
    Fatal(#[from] FatalError),
    /// Shutdown did not finish the commit and LeaveGroup within the leave timeout.
    #[error("leaving the group did not finish within {0:?}; the coordinator will evict us after the session timeout")]
    LeaveTimedOut(Duration),
}

/// The application's side of a running driver.
#[derive(Debug)]
pub struct GroupHandle {
    /// Events, in order.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Commands to the driver.
    pub commands: mpsc::UnboundedSender<Command>,
    /// The latest status.
    pub status: watch::Receiver<Status>,
}

/// Starts the driver. Cancelling `cancel` makes it revoke (the application reports final positions and
/// confirms), commit, leave the group and finish.
pub fn spawn(
    driver: DriverConfig,
    config: Config,
    cancel: CancellationToken,
) -> (GroupHandle, JoinHandle<Result<(), DriverError>>) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(Status {
        state: State::Rebalancing,
        generation: -1,
        member_id: String::new(),
        assignment: Vec::new(),
        coordinator: None,
    });
    let task = Driver {
        config: driver,
        membership: Membership::new(config, now()),
        events: events_tx,
        commands: commands_rx,
        status: status_tx,
        bootstrap_conn: None,
        bootstrap_next: 0,
        coordinator_conn: None,
        leave_deadline: None,
        last_failure: None,
        last_assignment: Vec::new(),
    };
    let handle = tokio::spawn(task.run(cancel));
    (
        GroupHandle {
            events,
            commands,
            status,
        },
        handle,
    )
}

struct Driver {
    config: DriverConfig,
    membership: Membership,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<Status>,
    /// A connection to some bootstrap broker, for FindCoordinator.
    bootstrap_conn: Option<Connection>,
    /// Which bootstrap broker to try next.
    bootstrap_next: usize,
    /// The coordinator and our connection to it.
    coordinator_conn: Option<(Coordinator, Connection)>,
    /// Set once shutdown starts.
    leave_deadline: Option<Instant>,
    /// The last failure logged, so a repeating one is logged once.
    last_failure: Option<String>,
    /// The previous assignment, to log what each new one gained and lost.
    last_assignment: Vec<TopicPartition>,
}

/// `0,1,2`, or `-` for none.
fn join<'a>(parts: impl Iterator<Item = &'a TopicPartition>) -> String {
    let list: Vec<String> = parts.map(|tp| tp.partition.to_string()).collect();
    if list.is_empty() {
        "-".to_string()
    } else {
        list.join(",")
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    async fn run(mut self, cancel: CancellationToken) -> Result<(), DriverError> {
        loop {
            if let Some(result) = self.forward_events() {
                return result;
            }
            if cancel.is_cancelled() && self.leave_deadline.is_none() {
                self.start_leave();
            }
            if let Some(deadline) = self.leave_deadline {
                if Instant::now() >= deadline {
                    tracing::warn!(timeout = ?self.config.leave_timeout, "leaving the group took too long; giving up");
                    return Err(DriverError::LeaveTimedOut(self.config.leave_timeout));
                }
            }
            let action = self.membership.poll(now());
            // Polling can raise events (a revoke on leave): deliver them before waiting on anything.
            if let Some(result) = self.forward_events() {
                return result;
            }
            match action {
                Action::Done => {
                    if let Some(result) = self.forward_events() {
                        return result;
                    }
                    return Ok(());
                }
                Action::Wait(at) => {
                    let mut until = Instant::from_std(at);
                    if let Some(deadline) = self.leave_deadline {
                        until = until.min(deadline);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        Some(cmd) = self.commands.recv() => self.apply(cmd),
                        _ = cancel.cancelled(), if self.leave_deadline.is_none() => self.start_leave(),
                    }
                }
                Action::Send {
                    target,
                    request,
                    timeout,
                } => self.exchange(target, request, timeout, &cancel).await,
            }
        }
    }

    fn start_leave(&mut self) {
        tracing::info!(member_id = %self.membership.member_id(), "leaving the group");
        self.leave_deadline = Some(Instant::now() + self.config.leave_timeout);
        self.membership.leave();
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Position(tp, offset) => self.membership.set_position(&tp, offset),
            Command::RevokeDone => self.membership.revoke_done(),
        }
    }

    /// Sends one request and reports its outcome, serving commands meanwhile: a JoinGroup can be
    /// held for minutes, and the application's positions must not queue up behind it.
    async fn exchange(
        &mut self,
        target: Target,
        request: Request,
        timeout: Duration,
        cancel: &CancellationToken,
    ) {
        let api = request.api_key();
        let held = matches!(request, Request::JoinGroup(_) | Request::SyncGroup(_));
        if let Request::JoinGroup(join) = &request {
            let reason = join.reason.as_ref().map(|r| r.as_str()).unwrap_or_default();
            if join.member_id.is_empty() || !reason.starts_with("rejoining with the member id") {
                tracing::info!(reason, "joining the group");
            }
        }
        let mut conn = match self.connection(&target).await {
            Ok(conn) => conn,
            Err(reason) => {
                self.failed(&format!("{api:?}: {reason}"));
                self.membership.on_failure(now(), &reason);
                return;
            }
        };
        let mut deadline = Instant::now() + timeout;
        if let Some(leave) = self.leave_deadline {
            deadline = deadline.min(leave);
        }
        let outcome = {
            let call = conn.call(request);
            tokio::pin!(call);
            loop {
                tokio::select! {
                    result = &mut call => break Some(result),
                    _ = tokio::time::sleep_until(deadline) => break None,
                    Some(cmd) = self.commands.recv() => self.apply(cmd),
                    // Shutdown abandons a held join; anything else is quick and finishes first.
                    _ = cancel.cancelled(), if self.leave_deadline.is_none() => {
                        self.start_leave();
                        if held {
                            break None;
                        }
                        if let Some(leave) = self.leave_deadline {
                            deadline = deadline.min(leave);
                        }
                    }
                }
            }
        };
        match outcome {
            Some(Ok(response)) => {
                self.last_failure = None;
                self.keep(target, conn);
                self.membership.on_response(now(), response);
            }
            Some(Err(err)) => {
                let reason = err.to_string();
                self.failed(&format!("{api:?}: {reason}"));
                self.membership.on_failure(now(), &reason);
            }
            // The connection is dropped with the abandoned request: its late answer must not be read
            // as the answer to the next one.
            None if self.leave_deadline.is_some() => self.membership.abandon(),
            None => {
                self.failed(&format!("{api:?}: no answer within {timeout:?}"));
                self.membership.on_failure(now(), "timed out");
            }
        }
    }

    fn failed(&mut self, what: &str) {
        if self.last_failure.as_deref() != Some(what) {
            tracing::warn!(cause = %what, "group request failed; retrying");
            self.last_failure = Some(what.to_string());
        }
    }

    /// Takes the connection for `target` out of the cache (connecting if needed).
    async fn connection(&mut self, target: &Target) -> Result<Connection, String> {
        match target {
            Target::Coordinator(c) => {
                if let Some((known, conn)) = self.coordinator_conn.take() {
                    if &known == c {
                        return Ok(conn);
                    }
                }
                Connection::connect(
                    &c.addr(),
                    &self.config.client_id,
                    self.config.connect_timeout,
                )
                .await
                .map_err(|e| e.to_string())
            }
            Target::AnyBroker => {
                if let Some(conn) = self.bootstrap_conn.take() {
                    return Ok(conn);
                }
                let count = self.config.bootstrap.len().max(1);
                let mut last = String::from("no bootstrap brokers");
                for _ in 0..count {
                    let addr = self.config.bootstrap[self.bootstrap_next % count].clone();
                    self.bootstrap_next += 1;
                    match Connection::connect(
                        &addr,
                        &self.config.client_id,
                        self.config.connect_timeout,
                    )
                    .await
                    {
                        Ok(conn) => return Ok(conn),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(last)
            }
        }
    }

    fn keep(&mut self, target: Target, conn: Connection) {
        match target {
            Target::Coordinator(c) => self.coordinator_conn = Some((c, conn)),
            Target::AnyBroker => self.bootstrap_conn = Some(conn),
        }
    }

    /// Forwards the state machine's events to the application and logs them. `Some` ends the driver.
    fn forward_events(&mut self) -> Option<Result<(), DriverError>> {
        let mut end = None;
        while let Some(event) = self.membership.next_event() {
            self.log(&event);
            if let Event::Assigned { partitions, .. } = &event {
                self.last_assignment = partitions.iter().map(|(tp, _)| tp.clone()).collect();
            }
            match &event {
                Event::Fatal(err) => end = Some(Err(DriverError::Fatal(err.clone()))),
                Event::CoordinatorChanged(c) => {
                    if c.is_none() {
                        self.coordinator_conn = None;
                    }
                    let c = c.clone();
                    self.status.send_modify(|s| s.coordinator = c);
                }
                _ => {}
            }
            // The application may have stopped listening (it is shutting down): that is fine.
            let _ = self.events.send(event);
        }
        let m = &self.membership;
        self.status.send_if_modified(|s| {
            let changed = s.state != m.state()
                || s.generation != m.generation()
                || s.member_id != m.member_id()
                || s.assignment != m.assignment();
            s.state = m.state();
            s.generation = m.generation();
            s.member_id = m.member_id().to_string();
            s.assignment = m.assignment().to_vec();
            changed
        });
        end
    }

    fn log(&mut self, event: &Event) {
        match event {
            Event::Joined {
                generation,
                member_id,
                leader,
                protocol,
                members,
            } => {
                if *leader {
                    tracing::info!(
                        generation,
                        member_id,
                        protocol,
                        members,
                        "joined the group as leader"
                    );
                } else {
                    tracing::info!(generation, member_id, protocol, "joined the group");
                }
            }
            Event::Assigned {
                generation,
                partitions,
            } => {
                // The eager protocol hands everything back each time: what changed is what matters
                // to someone watching a scale-up.
                let now: Vec<&TopicPartition> = partitions.iter().map(|(tp, _)| tp).collect();
                let gained = now.iter().filter(|tp| !self.last_assignment.contains(tp));
                let lost = self.last_assignment.iter().filter(|tp| !now.contains(tp));
                tracing::info!(
                    generation,
                    partitions = %join(now.iter().copied()),
                    count = partitions.len(),
                    gained = %join(gained.copied()),
                    lost = %join(lost),
                    "partitions assigned"
                );
            }
            Event::Revoke {
                partitions,
                lost,
                reason,
            } => {
                let list: Vec<String> = partitions
                    .iter()
                    .map(|tp| tp.partition.to_string())
                    .collect();
                if *lost {
                    tracing::warn!(partitions = %list.join(","), reason, "partitions lost; not committing them");
                } else {
                    tracing::info!(partitions = %list.join(","), reason, "revoking partitions");
                }
            }
            Event::Committed { offsets } => {
                tracing::debug!(count = offsets.len(), "offsets committed")
            }
            Event::CommitFailed { reason } => tracing::warn!(reason, "commit failed; will retry"),
            Event::CoordinatorChanged(Some(c)) => {
                tracing::info!(coordinator = %c.addr(), node_id = c.node_id, "found the group coordinator")
            }
            Event::CoordinatorChanged(None) => {
                tracing::info!("lost the group coordinator; looking for it again")
            }
            Event::Fatal(err) => tracing::error!(%err, "cannot stay in the group"),
            Event::Left => tracing::info!("left the group"),
        }
    }
}
