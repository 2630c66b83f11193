//! The driver: one task that owns the broker connections and feeds the [`Membership`] state machine.
//!
//! The application talks to it through a [`GroupHandle`]: it receives [`Event`]s (assigned, revoke …)
//! and sends [`Command`]s (positions, "revoke done"). Heartbeats run on the state machine's timers in
//! this task, so message processing elsewhere never delays them.
//!
//! Two lanes, each with its own connection: heartbeats, and everything else. Apache Kafka answers one
//! request per connection at a time (its SocketServer mutes a channel until the response to its
//! request is sent), so a heartbeat pipelined behind a slow OffsetCommit on the same connection would
//! still wait at the broker; on a connection of its own it does not.

use std::{future::Future, pin::Pin, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    connection::{Connection, ConnectionError},
    kip848::Kip848,
    member::Member,
    membership::{
        Action, Config, Coordinator, Event, FatalError, GroupProtocol, Lane, Membership, State,
        Target,
    },
    wire::{Request, Response, WireError},
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
    /// TLS and SASL for every connection.
    pub security: transport::Security,
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
    /// The bootstrap list is empty: there is no broker to ask for the coordinator.
    #[error("no bootstrap brokers to connect to")]
    NoBootstrap,
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
    let membership: Box<dyn Member> = match config.protocol {
        GroupProtocol::Classic => Box::new(Membership::new(config, now())),
        GroupProtocol::Consumer => Box::new(Kip848::new(config, now())),
    };
    let task = Driver {
        config: driver,
        membership,
        events: events_tx,
        commands: commands_rx,
        status: status_tx,
        bootstrap_conn: None,
        bootstrap_next: 0,
        coordinator_conn: None,
        heartbeat_conn: None,
        main: None,
        heartbeat: None,
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

/// How a request ended.
// Consumed at once, one per request: boxing the answer would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    /// Answered; the connection can be reused.
    Answered(Response, Connection),
    /// Connecting, writing, reading or decoding failed.
    Failed(String),
    /// The broker does not speak the request's API at a version we do.
    Unsupported(String),
    /// No answer before the deadline.
    TimedOut(Duration),
}

/// A request in flight: connect if needed, send, wait for the answer.
type InFlight = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The lane's request in flight, what it was, and where it went.
struct Flight {
    future: InFlight,
    target: Target,
    api: kafka_protocol::messages::ApiKey,
    /// JoinGroup or SyncGroup, which shutdown abandons rather than waits for.
    held: bool,
}

struct Driver {
    config: DriverConfig,
    membership: Box<dyn Member>,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<Status>,
    /// A connection to some bootstrap broker, for FindCoordinator.
    bootstrap_conn: Option<Connection>,
    /// Which bootstrap broker to try next.
    bootstrap_next: usize,
    /// The coordinator and our main connection to it.
    coordinator_conn: Option<(Coordinator, Connection)>,
    /// The coordinator and our heartbeat connection to it.
    heartbeat_conn: Option<(Coordinator, Connection)>,
    /// The main lane's request in flight.
    main: Option<Flight>,
    /// The heartbeat in flight.
    heartbeat: Option<Flight>,
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

/// Waits for the flight, or forever when there is none (a disabled `select!` branch).
async fn land(flight: &mut Option<Flight>) -> Outcome {
    match flight {
        Some(f) => (&mut f.future).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(mut self, cancel: CancellationToken) -> Result<(), DriverError> {
        if self.config.bootstrap.is_empty() {
            return Err(DriverError::NoBootstrap);
        }
        // Each pass is bounded: poll only starts a request on a free lane, or names a deadline.
        loop {
            if let Some(result) = self.forward_events() {
                return result;
            }
            if cancel.is_cancelled() && self.leave_deadline.is_none() {
                self.start_leave();
            }
            let mut until = None;
            for _ in 0..4 {
                let action = self.membership.poll(now());
                // Polling can raise events (a revoke on leave): deliver them before waiting on anything.
                if let Some(result) = self.forward_events() {
                    return result;
                }
                match action {
                    Action::Done => return Ok(()),
                    Action::Wait(at) => {
                        until = Some(Instant::from_std(at));
                        break;
                    }
                    Action::Send {
                        lane,
                        target,
                        request,
                        timeout,
                    } => self.launch(lane, target, request, timeout),
                }
            }
            let mut until = until.unwrap_or_else(Instant::now);
            if let Some(deadline) = self.leave_deadline {
                if Instant::now() >= deadline {
                    tracing::warn!(timeout = ?self.config.leave_timeout, "leaving the group took too long; giving up");
                    return Err(DriverError::LeaveTimedOut(self.config.leave_timeout));
                }
                until = until.min(deadline);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                Some(cmd) = self.commands.recv() => self.apply(cmd),
                _ = cancel.cancelled(), if self.leave_deadline.is_none() => {
                    self.start_leave();
                    // Shutdown abandons a held join; anything else is quick and finishes first.
                    if self.main.as_ref().is_some_and(|f| f.held) {
                        self.main = None;
                        self.membership.abandon();
                    }
                }
                outcome = land(&mut self.main) => {
                    if let Some(flight) = self.main.take() {
                        self.landed(Lane::Main, flight, outcome);
                    }
                }
                outcome = land(&mut self.heartbeat) => {
                    if let Some(flight) = self.heartbeat.take() {
                        self.landed(Lane::Heartbeat, flight, outcome);
                    }
                }
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

    /// Starts `request` on `lane`: connecting (if needed), sending and waiting run in the lane's
    /// future, so the other lane, commands and timers are served meanwhile.
    fn launch(&mut self, lane: Lane, target: Target, request: Request, timeout: Duration) {
        let api = request.api_key();
        let held = matches!(request, Request::JoinGroup(_) | Request::SyncGroup(_));
        if let Request::JoinGroup(join) = &request {
            let reason = join.reason.as_ref().map(|r| r.as_str()).unwrap_or_default();
            if join.member_id.is_empty() || !reason.starts_with("rejoining with the member id") {
                tracing::info!(reason, "joining the group");
            }
        }
        let mut deadline = Instant::now() + timeout;
        if let Some(leave) = self.leave_deadline {
            deadline = deadline.min(leave);
        }
        let cached = self.take_connection(lane, &target);
        // Bootstrap brokers are tried in turn, starting after the last one used.
        let addrs: Vec<String> = match &target {
            Target::Coordinator(c) => vec![c.addr()],
            Target::AnyBroker => {
                let n = self.config.bootstrap.len();
                let start = self.bootstrap_next;
                self.bootstrap_next = self.bootstrap_next.wrapping_add(1);
                (0..n)
                    .map(|i| self.config.bootstrap[(start + i) % n].clone())
                    .collect()
            }
        };
        let (client_id, connect_timeout, security) = (
            self.config.client_id.clone(),
            self.config.connect_timeout,
            self.config.security.clone(),
        );
        let future: InFlight = Box::pin(async move {
            let exchange = async move {
                let mut conn = match cached {
                    Some(conn) => conn,
                    None => {
                        let mut last = String::from("no bootstrap brokers");
                        let mut connected = None;
                        for addr in &addrs {
                            match Connection::connect_secure(
                                addr,
                                &client_id,
                                connect_timeout,
                                &security,
                            )
                            .await
                            {
                                Ok(conn) => {
                                    connected = Some(conn);
                                    break;
                                }
                                Err(e) => last = e.to_string(),
                            }
                        }
                        match connected {
                            Some(conn) => conn,
                            None => return Outcome::Failed(last),
                        }
                    }
                };
                match conn.call(request).await {
                    Ok(response) => Outcome::Answered(response, conn),
                    Err(
                        err @ ConnectionError::Wire {
                            error: WireError::UnsupportedVersion { .. },
                            ..
                        },
                    ) => Outcome::Unsupported(err.to_string()),
                    Err(err) => Outcome::Failed(err.to_string()),
                }
            };
            // A timed-out exchange drops its connection with it: a late answer must not be read as
            // the answer to the next request.
            tokio::time::timeout_at(deadline, exchange)
                .await
                .unwrap_or(Outcome::TimedOut(timeout))
        });
        let flight = Some(Flight {
            future,
            target,
            api,
            held,
        });
        match lane {
            Lane::Main => self.main = flight,
            Lane::Heartbeat => self.heartbeat = flight,
        }
    }

    fn landed(&mut self, lane: Lane, flight: Flight, outcome: Outcome) {
        let api = flight.api;
        match (lane, outcome) {
            (_, Outcome::Answered(response, conn)) => {
                self.last_failure = None;
                self.keep(lane, flight.target, conn);
                self.membership.on_response(now(), response);
            }
            // Shutting down: an unanswered request is dropped, not retried.
            (Lane::Main, Outcome::TimedOut(_)) if self.leave_deadline.is_some() => {
                self.membership.abandon()
            }
            (lane, Outcome::Unsupported(reason)) => {
                self.failed(&format!("{api:?}: {reason}"));
                self.membership.on_unsupported(now(), lane, &reason);
            }
            (Lane::Main, Outcome::Failed(reason)) => {
                self.failed(&format!("{api:?}: {reason}"));
                self.membership.on_failure(now(), &reason);
            }
            (Lane::Main, Outcome::TimedOut(timeout)) => {
                self.failed(&format!("{api:?}: no answer within {timeout:?}"));
                self.membership.on_failure(now(), "timed out");
            }
            (Lane::Heartbeat, Outcome::Failed(reason)) => {
                self.failed(&format!("{api:?}: {reason}"));
                self.membership.on_heartbeat_failure(now());
            }
            (Lane::Heartbeat, Outcome::TimedOut(timeout)) => {
                self.failed(&format!("{api:?}: no answer within {timeout:?}"));
                self.membership.on_heartbeat_failure(now());
            }
        }
    }

    fn failed(&mut self, what: &str) {
        if self.last_failure.as_deref() != Some(what) {
            tracing::warn!(cause = %what, "group request failed; retrying");
            self.last_failure = Some(what.to_string());
        }
    }

    /// Takes the lane's cached connection for `target`, if it has one.
    fn take_connection(&mut self, lane: Lane, target: &Target) -> Option<Connection> {
        match (lane, target) {
            (_, Target::AnyBroker) => self.bootstrap_conn.take(),
            (Lane::Main, Target::Coordinator(c)) => self
                .coordinator_conn
                .take()
                .filter(|(known, _)| known == c)
                .map(|(_, conn)| conn),
            (Lane::Heartbeat, Target::Coordinator(c)) => self
                .heartbeat_conn
                .take()
                .filter(|(known, _)| known == c)
                .map(|(_, conn)| conn),
        }
    }

    fn keep(&mut self, lane: Lane, target: Target, conn: Connection) {
        match (lane, target) {
            (_, Target::AnyBroker) => self.bootstrap_conn = Some(conn),
            (Lane::Main, Target::Coordinator(c)) => self.coordinator_conn = Some((c, conn)),
            (Lane::Heartbeat, Target::Coordinator(c)) => self.heartbeat_conn = Some((c, conn)),
        }
    }

    /// Forwards the state machine's events to the application and logs them. `Some` ends the driver.
    fn forward_events(&mut self) -> Option<Result<(), DriverError>> {
        let mut end = None;
        while let Some(event) = self.membership.next_event() {
            self.log(&event);
            if let Event::Assigned { owned, .. } = &event {
                self.last_assignment = owned.clone();
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
                generation, owned, ..
            } => {
                // What changed since the last assignment is what matters to someone watching a
                // scale-up (eager members get everything back each time).
                let now: Vec<&TopicPartition> = owned.iter().collect();
                let gained = now.iter().filter(|tp| !self.last_assignment.contains(tp));
                let lost = self.last_assignment.iter().filter(|tp| !now.contains(tp));
                tracing::info!(
                    generation,
                    partitions = %join(now.iter().copied()),
                    count = owned.len(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_bootstrap_list_is_an_error_not_a_panic() {
        let (_handle, task) = spawn(
            DriverConfig {
                bootstrap: Vec::new(),
                client_id: "test".into(),
                connect_timeout: Duration::from_secs(1),
                security: transport::Security::plaintext(),
                leave_timeout: Duration::from_secs(1),
            },
            Config::new("g", vec!["t".into()]),
            CancellationToken::new(),
        );
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the driver stops at once");
        assert!(
            matches!(result, Ok(Err(DriverError::NoBootstrap))),
            "{result:?}"
        );
    }
}
