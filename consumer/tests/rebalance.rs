//! The session survives what a healthy member does: a commit the broker is slow to answer (a TCP proxy
//! in front of Apache Kafka holds OffsetCommit responses past the session timeout), and an application
//! that takes longer than the session timeout to give up its partitions.
//!
//! "Still in its generation" is read from the broker (DescribeGroups: the same member id) and from the
//! consumer's metrics (no new assignment), never from log lines.

mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use common::{broker, consumer, describe, heavy, metrics_addr};
use kafka_protocol::{
    messages::{ApiKey, FindCoordinatorResponse, MetadataResponse, ResponseHeader},
    protocol::{Decodable, Encodable, StrBytes},
};
use testkit::{unique, wait_for, Spawned};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{tcp::OwnedReadHalf, TcpListener, TcpStream},
};
use tokio_util::bytes::{Buf, BufMut, Bytes, BytesMut};

/// The session timeout of every member here.
const SESSION: Duration = Duration::from_secs(6);

/// A TCP proxy in front of one broker. It advertises itself in Metadata and FindCoordinator answers,
/// so every connection a client opens after bootstrap also goes through it, and holds each
/// OffsetCommit response (and so everything behind it on that connection) for `commit_delay`.
struct Proxy {
    addr: String,
    /// OffsetCommit answers held so far, so the test knows the fault was injected.
    held: Arc<AtomicUsize>,
    /// Runs the proxy; dropping it closes every proxied connection.
    _runtime: tokio::runtime::Runtime,
}

/// What a request on one proxied connection was, by correlation id.
type InFlight = Arc<Mutex<HashMap<i32, (i16, i16)>>>;

impl Proxy {
    fn start(upstream: String, commit_delay: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let advertised = addr.clone();
        let held = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&held);
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, advertised) = (upstream.clone(), advertised.clone());
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    if let Ok(broker) = TcpStream::connect(&upstream).await {
                        relay(client, broker, &advertised, commit_delay, &counter).await;
                    }
                });
            }
        });
        Self {
            addr,
            held,
            _runtime: runtime,
        }
    }
}

async fn read_frame(r: &mut OwnedReadHalf) -> Option<Bytes> {
    let size = usize::try_from(r.read_i32().await.ok()?).ok()?;
    let mut body = BytesMut::zeroed(size);
    r.read_exact(&mut body).await.ok()?;
    Some(body.freeze())
}

async fn relay(
    client: TcpStream,
    broker: TcpStream,
    advertised: &str,
    commit_delay: Duration,
    held: &AtomicUsize,
) {
    let _ = (client.set_nodelay(true), broker.set_nodelay(true));
    let (mut client_r, mut client_w) = client.into_split();
    let (mut broker_r, mut broker_w) = broker.into_split();
    let in_flight: InFlight = Arc::default();
    let requests = Arc::clone(&in_flight);
    let upstream = tokio::spawn(async move {
        while let Some(frame) = read_frame(&mut client_r).await {
            // Request header v1+: api key, api version, correlation id.
            if frame.len() >= 8 {
                let mut head = &frame[..8];
                let (api, version, id) = (head.get_i16(), head.get_i16(), head.get_i32());
                if let Ok(mut m) = requests.lock() {
                    m.insert(id, (api, version));
                }
            }
            let mut out = BytesMut::with_capacity(frame.len() + 4);
            out.put_i32(frame.len() as i32);
            out.extend_from_slice(&frame);
            if broker_w.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let (host, port) = advertised.rsplit_once(':').expect("host:port");
    let port: i32 = port.parse().expect("port");
    while let Some(frame) = read_frame(&mut broker_r).await {
        let id = frame.get(..4).map_or(-1, |mut b| b.get_i32());
        let request = in_flight.lock().ok().and_then(|mut m| m.remove(&id));
        let frame = match request {
            Some((api, _)) if api == ApiKey::OffsetCommit as i16 => {
                // A slow broker: this answer, and the stream behind it, arrive late.
                held.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(commit_delay).await;
                frame
            }
            Some((api, version)) => rewrite(api, version, frame, host, port),
            None => frame,
        };
        let mut out = BytesMut::with_capacity(frame.len() + 4);
        out.put_i32(frame.len() as i32);
        out.extend_from_slice(&frame);
        if client_w.write_all(&out).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

/// Points the brokers of Metadata and the coordinator of FindCoordinator at the proxy.
fn rewrite(api: i16, version: i16, frame: Bytes, host: &str, port: i32) -> Bytes {
    let Ok(key) = ApiKey::try_from(api) else {
        return frame;
    };
    if !matches!(key, ApiKey::Metadata | ApiKey::FindCoordinator) {
        return frame;
    }
    let header_version = key.response_header_version(version);
    let mut body = frame.clone();
    let Ok(header) = ResponseHeader::decode(&mut body, header_version) else {
        return frame;
    };
    let mut out = BytesMut::new();
    let encoded = if key == ApiKey::Metadata {
        let Ok(mut r) = MetadataResponse::decode(&mut body, version) else {
            return frame;
        };
        for b in r.brokers.iter_mut() {
            b.host = StrBytes::from_string(host.to_string());
            b.port = port;
        }
        header
            .encode(&mut out, header_version)
            .and_then(|()| r.encode(&mut out, version))
    } else {
        let Ok(mut r) = FindCoordinatorResponse::decode(&mut body, version) else {
            return frame;
        };
        // Up to v3 one coordinator at the top level, from v4 one per key.
        if version < 4 && r.error_code == 0 {
            r.host = StrBytes::from_string(host.to_string());
            r.port = port;
        }
        for c in r.coordinators.iter_mut().filter(|c| c.error_code == 0) {
            c.host = StrBytes::from_string(host.to_string());
            c.port = port;
        }
        header
            .encode(&mut out, header_version)
            .and_then(|()| r.encode(&mut out, version))
    };
    match encoded {
        Ok(()) => out.freeze(),
        Err(_) => frame,
    }
}

/// The group's members as the broker sees them: client id -> member id.
fn members(bootstrap: &str, group: &str) -> HashMap<String, String> {
    describe(bootstrap, group)
        .members
        .into_iter()
        .map(|m| (m.client_id, m.member_id))
        .collect()
}

/// A counter or gauge from the consumer's `/metrics`.
fn metric(c: &Spawned, name: &str) -> Option<f64> {
    let addr = metrics_addr(c)?;
    let (_, body) = testkit::http_get(&addr, "/metrics");
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_commit_answered_after_the_session_timeout_does_not_cost_the_session() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("slow-commit"), unique("slow-commit-g"));
    testkit::create_topic(&broker.addr(), &topic, 3);
    testkit::produce::produce_seq(&broker.addr(), &topic, 3, "p", 300);
    // OffsetCommit answers held for longer than the session; the request timeout equals the session
    // (the longest validate() allows), so the commit is abandoned only as the session would end.
    let proxy = Proxy::start(broker.addr(), SESSION + Duration::from_secs(2));
    let mut c = consumer(
        broker,
        &topic,
        &group,
        "slow-commit-member",
        &[
            ("KAFKA_BROKERS", proxy.addr.as_str()),
            ("SESSION_TIMEOUT", "6s"),
            ("REQUEST_TIMEOUT", "6s"),
            ("PROCESS_DELAY_MS", "20"),
        ],
    );
    let before = wait_for(
        "joined",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            (metric(&c, "consumer_group_generation")? > 0.0).then_some(())?;
            members(&broker.addr(), &group).remove("slow-commit-member")
        },
    );
    let generation = metric(&c, "consumer_group_generation");
    let rebalances = metric(&c, "consumer_rebalances_total");
    // Three session timeouts with every commit stuck behind the proxy.
    std::thread::sleep(3 * SESSION);
    assert!(c.running(), "{}", c.stderr());
    assert!(
        proxy.held.load(Ordering::Relaxed) >= 2,
        "the proxy held commits; log:\n{}",
        c.stderr()
    );
    let after = members(&broker.addr(), &group).remove("slow-commit-member");
    assert_eq!(
        after.as_deref(),
        Some(before.as_str()),
        "the broker still has the same member; log:\n{}",
        c.stderr()
    );
    assert_eq!(metric(&c, "consumer_group_generation"), generation);
    assert_eq!(
        metric(&c, "consumer_rebalances_total"),
        rebalances,
        "no new assignment; log:\n{}",
        c.stderr()
    );
    c.terminate(Duration::from_secs(20));
}

#[test]
fn an_application_slow_to_give_up_its_partitions_is_not_evicted() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("slow-revoke"), unique("slow-revoke-g"));
    testkit::create_topic(&broker.addr(), &topic, 2);
    testkit::produce::produce_seq(&broker.addr(), &topic, 2, "p", 20);
    // Each record takes more than twice the session: the revoke is confirmed only after the record
    // in progress is done, well after a session's worth of time.
    let mut slow = consumer(
        broker,
        &topic,
        &group,
        "slow-revoker",
        &[
            ("PROCESS_DELAY_MS", "15000"),
            ("REBALANCE_TIMEOUT", "40s"),
            ("SHUTDOWN_TIMEOUT", "30s"),
        ],
    );
    let before = wait_for(
        "joined",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            (metric(&slow, "consumer_group_generation")? > 0.0).then_some(())?;
            members(&broker.addr(), &group).remove("slow-revoker")
        },
    );
    // Processing is under way (the first record takes 15 s): a second member makes the group
    // rebalance.
    std::thread::sleep(Duration::from_secs(1));
    let mut other = consumer(broker, &topic, &group, "newcomer", &[]);
    wait_for(
        "both members assigned",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let m = members(&broker.addr(), &group);
            (m.len() == 2
                && metric(&slow, "consumer_rebalances_total")? >= 2.0
                && metric(&other, "consumer_rebalances_total")? >= 1.0)
                .then_some(())
        },
    );
    let after = members(&broker.addr(), &group).remove("slow-revoker");
    assert_eq!(
        after.as_deref(),
        Some(before.as_str()),
        "the slow member kept its member id (not evicted); log:\n{}",
        slow.stderr()
    );
    assert_eq!(
        metric(&slow, "consumer_rebalances_total"),
        Some(2.0),
        "one rebalance, no second one after an eviction; log:\n{}",
        slow.stderr()
    );
    other.terminate(Duration::from_secs(20));
    slow.terminate(Duration::from_secs(40));
}
