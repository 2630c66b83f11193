//! The brokers tests run against: Apache Kafka (the reference, the default), or nisshi with
//! `TEST_BROKER=nisshi` (a second Kafka-compatible implementation, so no test leans on one broker's
//! timing).
//!
//! A JVM takes seconds to start, so most tests share one broker per test process
//! ([`Broker::shared`]) with unique topic and group names; tests that stop or restart a broker, or
//! need several, start their own.

use std::{sync::OnceLock, time::Duration};

use localkafka::{Cluster, Options};

use crate::nisshi;

/// Which implementation `TEST_BROKER` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Apache Kafka from the cached jars (`TEST_BROKER` unset or `kafka`).
    Kafka,
    /// nisshi (`TEST_BROKER=nisshi`).
    Nisshi,
}

/// `TEST_BROKER`: `kafka` (default) or `nisshi`; anything else panics with the choices.
pub fn kind() -> Kind {
    match std::env::var("TEST_BROKER").as_deref() {
        Err(_) | Ok("") | Ok("kafka") => Kind::Kafka,
        Ok("nisshi") => Kind::Nisshi,
        Ok(other) => panic!("TEST_BROKER={other:?}: use kafka (the default) or nisshi"),
    }
}

/// A running broker (or cluster). Dropping it stops it.
#[derive(Debug)]
pub struct Broker {
    /// The process(es).
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Kafka(Cluster),
    Nisshi(nisshi::Nisshi),
}

/// Test-friendly broker settings. The initial rebalance delay is Kafka's 3 s cut to 1 s (the tests
/// start members within that); everything else is Kafka's default unless a test says otherwise.
fn test_options(nodes: usize) -> Options {
    let mut options = Options::nodes(nodes).property("group.initial.rebalance.delay.ms", 1000);
    options.quick_start = true;
    options.heap = "384m".into();
    options
}

impl Broker {
    /// The broker every test in this process shares (started on first use, stopped when the
    /// process exits). Tests on it must use [`crate::unique`] names.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(Broker::start)
    }

    /// The shared broker if it is Apache Kafka, else a shared Apache Kafka beside it: for tests whose
    /// reference is Kafka itself (its tools read what its group coordinator knows, which nisshi
    /// leaves out, e.g. the members' assignments).
    pub fn shared_kafka() -> &'static Broker {
        static KAFKA: OnceLock<Broker> = OnceLock::new();
        match kind() {
            Kind::Kafka => Self::shared(),
            Kind::Nisshi => KAFKA.get_or_init(|| Self::cluster_with(test_options(1))),
        }
    }

    /// A broker of its own, for a test that stops or restarts it.
    pub fn start() -> Self {
        Self::start_with(test_options(1))
    }

    /// A broker of its own on `port` (e.g. one a client was told about before the broker was up).
    pub fn start_on(port: u16) -> Self {
        let mut options = test_options(1);
        options.port = Some(port);
        Self::start_with(options)
    }

    /// A broker of its own with `options` (Kafka), or with its port and defaults (nisshi).
    pub fn start_with(options: Options) -> Self {
        let inner = match kind() {
            Kind::Kafka => Inner::Kafka(
                Cluster::start(options).unwrap_or_else(|e| panic!("starting Apache Kafka: {e}")),
            ),
            Kind::Nisshi => Inner::Nisshi(match options.port {
                Some(port) => nisshi::Nisshi::start_on(port),
                None => nisshi::Nisshi::start(),
            }),
        };
        Self { inner }
    }

    /// A 3-node Apache Kafka cluster (every node a broker and a controller), whatever
    /// `TEST_BROKER` says: only a real cluster shows replication and failover.
    pub fn cluster() -> Self {
        Self::cluster_with(test_options(3))
    }

    /// A cluster with `options` (its node count included).
    pub fn cluster_with(options: Options) -> Self {
        Self {
            inner: Inner::Kafka(
                Cluster::start(options)
                    .unwrap_or_else(|e| panic!("starting an Apache Kafka cluster: {e}")),
            ),
        }
    }

    /// The test defaults, to adjust before [`Broker::start_with`] or [`Broker::cluster_with`].
    pub fn options(nodes: usize) -> Options {
        test_options(nodes)
    }

    /// `host:port[,host:port…]`, for `KAFKA_BROKERS`.
    pub fn addr(&self) -> String {
        match &self.inner {
            Inner::Kafka(c) => c.bootstrap(),
            Inner::Nisshi(n) => n.addr(),
        }
    }

    /// The first node's port.
    pub fn port(&self) -> u16 {
        self.addr()
            .split(',')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// What the broker printed so far (every node's log, for failure messages).
    pub fn output(&self) -> String {
        match &self.inner {
            Inner::Kafka(c) => c
                .ids()
                .into_iter()
                .map(|id| format!("--- node {id}\n{}", c.log(id)))
                .collect(),
            Inner::Nisshi(n) => n.output(),
        }
    }

    /// Whether this is Apache Kafka (some behaviour differs, e.g. nisshi forgets everything on a
    /// restart).
    pub fn is_kafka(&self) -> bool {
        matches!(self.inner, Inner::Kafka(_))
    }

    /// The Kafka cluster, to kill, stop or restart single nodes; `None` for nisshi.
    pub fn kafka(&mut self) -> Option<&mut Cluster> {
        match &mut self.inner {
            Inner::Kafka(c) => Some(c),
            Inner::Nisshi(_) => None,
        }
    }

    /// Stops every node (Kafka keeps its data for [`Broker::restart`]; nisshi's is in memory).
    pub fn stop(&mut self) {
        match &mut self.inner {
            Inner::Kafka(c) => c.stop_all(Duration::from_secs(30)),
            Inner::Nisshi(n) => n.stop(),
        }
    }

    /// Starts every stopped node again on the same ports. Kafka comes back with its topics, groups
    /// and offsets; nisshi comes back empty.
    pub fn restart(&mut self) {
        match &mut self.inner {
            Inner::Kafka(c) => c
                .resume()
                .unwrap_or_else(|e| panic!("restarting Apache Kafka: {e}")),
            Inner::Nisshi(n) => n.restart(),
        }
    }
}
