//! Records the fuzz targets' seed corpus (`fuzz/corpus/`, docs/fuzzing.md) from a real Apache Kafka:
//! the response bodies of every API we decode at the versions the broker and we share, the record
//! batches librdkafka (every codec, transactions), the Java producer and rskafka write, and the
//! subscriptions and assignments the Java client, kafka-python, librdkafka and we put in a group.
//!
//! Ignored: it rewrites `fuzz/corpus/` and takes about a minute (`make deps` first: the Python
//! clients and the jars). Run it by hand after a protocol
//! change, then commit what changed:
//!
//!     cargo test -p group --test fuzz_corpus -- --ignored

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use group::{
    codec::{self, Subscription},
    wire::Request as GroupRequest,
    TopicPartition,
};
use kafka_protocol::{
    messages::{
        create_topics_request::CreatableTopic,
        describe_groups_response::DescribeGroupsResponse,
        fetch_request::{FetchPartition, FetchTopic},
        join_group_request::JoinGroupRequestProtocol,
        leave_group_request::MemberIdentity,
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        metadata_request::MetadataRequestTopic,
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic},
        sync_group_request::SyncGroupRequestAssignment,
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest,
        DescribeGroupsRequest, FetchRequest, FetchResponse, FindCoordinatorRequest, GroupId,
        HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
        ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
        OffsetFetchRequest, ResponseHeader, SyncGroupRequest, SyncGroupResponse, TopicName,
    },
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange},
};
use testkit::{unique, wait_for, Broker};

/// The response fuzz target's API table (fuzz/fuzz_targets/response.rs `APIS`): index, our range.
const APIS: [(ApiKey, i16, i16); 14] = [
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 1, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::CreateTopics, 2, 7),
];

/// The record batch target's control bytes for a seed: recompute CRCs after mutation (bit 1),
/// read_committed (bit 0), then fetch offset 0 and no last stable offset.
const BATCH_CONTROL: [u8; 4] = [0b10, 0, 255, 0];

struct Corpus {
    root: PathBuf,
    files: usize,
    bytes: usize,
}

impl Corpus {
    /// Empties `fuzz/corpus/<target>/` for every target.
    fn new() -> Self {
        let root = testkit::workspace_root().join("fuzz").join("corpus");
        for target in [
            "response",
            "record_batches",
            "consumer_protocol_subscription",
            "consumer_protocol_assignment",
        ] {
            let dir = root.join(target);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("corpus dir");
        }
        Self {
            root,
            files: 0,
            bytes: 0,
        }
    }

    fn save(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let path = self.root.join(target).join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.files += 1;
        self.bytes += bytes.len();
    }

    /// A response body, prefixed with the response target's API and version bytes.
    fn response(&mut self, api: ApiKey, version: i16, tag: &str, body: &[u8]) {
        let (index, min, _) = APIS
            .iter()
            .enumerate()
            .find_map(|(i, (a, min, max))| (*a == api).then_some((i, *min, *max)))
            .expect("an API of the table");
        let mut seed = vec![index as u8, (version - min) as u8];
        seed.extend_from_slice(body);
        let name = format!("{}-v{version}{tag}", snake(api));
        self.save("response", &name, &seed);
    }
}

fn snake(api: ApiKey) -> String {
    let mut out = String::new();
    for (i, c) in format!("{api:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A blocking connection that returns response bodies as the broker sent them.
struct Raw {
    stream: TcpStream,
    id: i32,
    versions: BTreeMap<i16, VersionRange>,
}

impl Raw {
    fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut raw = Self {
            stream,
            id: 0,
            versions: BTreeMap::new(),
        };
        let body = raw.exchange(ApiKey::ApiVersions, 3, |buf| {
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("fuzz-corpus"))
                .with_client_software_version(StrBytes::from_static_str("0"))
                .encode(buf, 3)
        });
        let response: ApiVersionsResponse = decode(&body, ApiKey::ApiVersions, 0, 3);
        raw.versions = response
            .api_keys
            .iter()
            .map(|k| {
                (
                    k.api_key,
                    VersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    },
                )
            })
            .collect();
        raw
    }

    /// The versions of `api` both the broker and we speak.
    fn shared(&self, api: ApiKey) -> std::ops::RangeInclusive<i16> {
        let (_, min, max) = APIS.iter().find(|(a, ..)| *a == api).expect("in APIS");
        let theirs = self.versions[&(api as i16)];
        theirs.min.max(*min)..=theirs.max.min(*max)
    }

    fn exchange(
        &mut self,
        api: ApiKey,
        version: i16,
        encode: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
    ) -> Bytes {
        self.id += 1;
        let client = StrBytes::from_static_str("fuzz-corpus");
        let frame = transport::encode_frame(api, version, self.id, &client, encode)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
        self.stream.write_all(&frame).expect("writes");
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).expect("size");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).expect("body");
        Bytes::from(body)
    }

    fn call<R: Request>(&mut self, request: &R, version: i16) -> Bytes {
        let api = ApiKey::try_from(R::KEY).expect("known API");
        self.exchange(api, version, |buf| request.encode(buf, version))
    }

    fn group(&mut self, mut request: GroupRequest, version: i16) -> Bytes {
        request.fit(version);
        self.id += 1;
        let frame = request
            .encode_frame(version, self.id, "fuzz-corpus")
            .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", request.api_key()));
        self.stream.write_all(&frame).expect("writes");
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).expect("size");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).expect("body");
        Bytes::from(body)
    }
}

/// Decodes a recorded body as transport does (which checks it is what we would read).
fn decode<T: Decodable>(body: &Bytes, api: ApiKey, header_version: i16, version: i16) -> T {
    let mut peek = body.clone();
    let id = ResponseHeader::decode(&mut peek, 0)
        .expect("header")
        .correlation_id;
    transport::decode_body(body.clone(), api, header_version, version, id)
        .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"))
}

/// The oldest and newest versions of `range`, and those of `also` in it: where layouts change, so the
/// corpus stays small (tens of files) without losing a layout.
fn layouts(range: std::ops::RangeInclusive<i16>, also: &[i16]) -> Vec<i16> {
    let mut out: Vec<i16> = [*range.start(), *range.end()]
        .into_iter()
        .chain(also.iter().copied().filter(|v| range.contains(v)))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn fetch_request(topic: &str, partitions: i32, committed: bool) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(i8::from(committed))
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(name(topic)))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(256 * 1024)
                    })
                    .collect(),
            )])
}

/// A Java, kafka-python or confluent-kafka group member (tests/java, tests/py), killed on drop.
struct Peer(Child);

impl Peer {
    fn start(client: &str, broker: &str, group: &str, topic: &str, extra: &[&str]) -> Self {
        let mut command = if client == "java" {
            testkit::java::group_member()
        } else {
            let mut c = Command::new(testkit::python::interpreter());
            c.arg(testkit::workspace_root().join("tests/py/group_member.py"))
                .args(["--client", client]);
            c
        };
        let child = command
            .args(["--brokers", broker, "--group", group, "--topic", topic])
            .args(["--seconds", "120"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {client} member: {e}"));
        Self(child)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "rewrites fuzz/corpus/ from a real broker: run by hand (docs/fuzzing.md)"]
fn record_the_fuzz_corpus() {
    let broker = Broker::shared();
    let addr = broker.addr();
    let mut corpus = Corpus::new();

    // Data: rskafka's plain batches (with a null value), librdkafka's in every codec with keys and
    // headers, librdkafka's interleaved committed and aborted transactions, the Java producer's.
    let plain = unique("fuzz-plain");
    testkit::create_topic(&addr, &plain, 3);
    testkit::produce::produce(
        &addr,
        &plain,
        3,
        (0..9)
            .map(|i| (i != 4).then(|| format!("{{\"cnt\": \"cnt: {i}\"}}").into_bytes()))
            .collect(),
    );
    let mut topics = vec![(plain.clone(), 3, "rskafka".to_string(), false)];
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = unique(&format!("fuzz-{codec}"));
        testkit::create_topic(&addr, &topic, 1);
        testkit::python::run(
            "produce_compressed.py",
            &[
                "--brokers",
                &addr,
                "--topic",
                &topic,
                "--compression",
                codec,
                "--count",
                "6",
            ],
        );
        topics.push((topic, 1, format!("librdkafka-{codec}"), false));
    }
    let txn = unique("fuzz-txn");
    testkit::create_topic(&addr, &txn, 1);
    testkit::python::run(
        "produce_transactional.py",
        &[
            "--brokers",
            &addr,
            "--topic",
            &txn,
            "--partitions",
            "1",
            "--rounds",
            "2",
            "--per-txn",
            "2",
        ],
    );
    topics.push((txn.clone(), 1, "librdkafka-transactions".to_string(), true));
    let java = unique("fuzz-java");
    testkit::create_topic(&addr, &java, 1);
    let (code, out, err) = testkit::java::tool(
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic",
            &java,
            "--num-records",
            "8",
            "--record-size",
            "24",
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={addr}"),
            "compression.type=lz4",
            "linger.ms=50",
        ],
    );
    assert_eq!(code, Some(0), "ProducerPerformance:\n{out}\n{err}");
    topics.push((java, 1, "java-lz4".to_string(), false));

    let mut raw = Raw::connect(&addr);

    for version in raw.shared(ApiKey::ApiVersions) {
        let body = raw.exchange(ApiKey::ApiVersions, version, |buf| {
            let request = if version >= 3 {
                ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("fuzz-corpus"))
                    .with_client_software_version(StrBytes::from_static_str("0"))
            } else {
                ApiVersionsRequest::default()
            };
            request.encode(buf, version)
        });
        corpus.response(ApiKey::ApiVersions, version, "", &body);
    }

    let all: Vec<String> = topics.iter().map(|(t, ..)| t.clone()).collect();
    // v4: auto-creation flag; v9: flexible; v10: topic ids.
    for version in layouts(raw.shared(ApiKey::Metadata), &[4, 9, 10]) {
        let request = MetadataRequest::default().with_topics(Some(
            all.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(name(t)))))
                .collect(),
        ));
        let body = raw.group(GroupRequest::Metadata(request), version);
        corpus.response(ApiKey::Metadata, version, "", &body);
    }

    // v4: leader epochs; v6: flexible.
    for version in layouts(raw.shared(ApiKey::ListOffsets), &[4, 6]) {
        let mut request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(name(&plain)))
                .with_partitions(
                    (0..3)
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(if p == 0 { -2 } else { -1 })
                        })
                        .collect(),
                )]);
        if version >= 2 {
            request.isolation_level = 1;
        }
        let body = raw.call(&request, version);
        corpus.response(ApiKey::ListOffsets, version, "", &body);
    }

    // Fetch: every topic at the newest version (its record batches seed the batch target), the
    // transactional one (aborted transactions, last stable offset) at every version, the plain one
    // at the oldest too.
    let fetch_versions: Vec<i16> = raw.shared(ApiKey::Fetch).collect();
    let newest = *fetch_versions.last().expect("a Fetch version");
    for (topic, partitions, source, committed) in &topics {
        let versions: Vec<i16> = if *committed {
            fetch_versions.clone()
        } else if topic == &plain {
            layouts(raw.shared(ApiKey::Fetch), &[])
        } else {
            vec![newest]
        };
        for &version in &versions {
            let body = raw.call(&fetch_request(topic, *partitions, *committed), version);
            let tag = format!("-{source}");
            corpus.response(ApiKey::Fetch, version, &tag, &body);
            if version != newest {
                continue;
            }
            let response: FetchResponse = decode(
                &body,
                ApiKey::Fetch,
                FetchResponse::header_version(version),
                version,
            );
            for p in response.responses.iter().flat_map(|t| &t.partitions) {
                let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) else {
                    continue;
                };
                let mut control = BATCH_CONTROL;
                let mut seed = Vec::new();
                if *committed {
                    // read_committed with the broker's aborted list and last stable offset.
                    let aborted = p.aborted_transactions.as_deref().unwrap_or_default();
                    let n = aborted.len().min(3);
                    control[0] |= 1 | ((n as u8) << 2);
                    control[2] = u8::try_from(p.last_stable_offset).unwrap_or(254);
                    seed.extend_from_slice(&control);
                    for a in &aborted[..n] {
                        seed.push(u8::try_from(a.producer_id.0).unwrap_or(0));
                        seed.push(u8::try_from(a.first_offset).unwrap_or(0));
                    }
                } else {
                    seed.extend_from_slice(&control);
                }
                seed.extend_from_slice(records);
                corpus.save(
                    "record_batches",
                    &format!("{source}-p{}", p.partition_index),
                    &seed,
                );
            }
        }
    }

    // The group APIs, as a member that leads its own group: at the oldest and the newest versions
    // the broker and we share.
    let apis = [
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::LeaveGroup,
    ];
    for newest in [false, true] {
        let v = |api: ApiKey| {
            let r = raw.shared(api);
            if newest {
                *r.end()
            } else {
                *r.start()
            }
        };
        let versions: BTreeMap<i16, i16> = apis.iter().map(|&a| (a as i16, v(a))).collect();
        member_session(&mut raw, &mut corpus, &plain, &versions);
    }
    for version in raw.shared(ApiKey::FindCoordinator) {
        let body = raw.group(
            GroupRequest::FindCoordinator(
                FindCoordinatorRequest::default().with_key(name("fuzz-find")),
            ),
            version,
        );
        corpus.response(ApiKey::FindCoordinator, version, "", &body);
    }

    // Other clients' subscriptions and assignments, as the broker keeps them: a group of the Java
    // client (rack-aware), kafka-python and librdkafka at their default assignors (range is the one
    // they share), and a Java group at cooperative-sticky (its generation rides in user data).
    let mixed = unique("fuzz-mixed");
    let sticky = unique("fuzz-sticky");
    let _peers = [
        Peer::start("java", &addr, &mixed, &plain, &["--rack", "rack-a"]),
        Peer::start("kafka-python", &addr, &mixed, &plain, &[]),
        Peer::start("confluent", &addr, &mixed, &plain, &[]),
        Peer::start(
            "java",
            &addr,
            &sticky,
            &plain,
            &["--assignors", "cooperative-sticky"],
        ),
        Peer::start(
            "java",
            &addr,
            &sticky,
            &plain,
            &["--assignors", "cooperative-sticky"],
        ),
    ];
    let describe_versions: Vec<i16> = raw.shared(ApiKey::DescribeGroups).collect();
    let newest_describe = *describe_versions.last().expect("a DescribeGroups version");
    for (group, members) in [(&mixed, 3), (&sticky, 2)] {
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(name(group))]);
        let described: DescribeGroupsResponse = wait_for(
            &format!("{members} members of {group} with assignments"),
            Duration::from_secs(90),
            Duration::from_millis(500),
            || {
                let body = raw.group(
                    GroupRequest::DescribeGroups(request.clone()),
                    newest_describe,
                );
                let r: DescribeGroupsResponse = decode(
                    &body,
                    ApiKey::DescribeGroups,
                    DescribeGroupsResponse::header_version(newest_describe),
                    newest_describe,
                );
                let g = r.groups.first()?;
                (g.group_state.as_str() == "Stable"
                    && g.members.len() == members
                    && g.members.iter().all(|m| !m.member_assignment.is_empty()))
                .then_some(r)
            },
        );
        // The mixed group at every version, the sticky one at the newest.
        let versions = if members == 3 {
            describe_versions.clone()
        } else {
            vec![newest_describe]
        };
        for &version in &versions {
            let body = raw.group(GroupRequest::DescribeGroups(request.clone()), version);
            corpus.response(
                ApiKey::DescribeGroups,
                version,
                &format!("-{members}"),
                &body,
            );
        }
        for (i, m) in described.groups[0].members.iter().enumerate() {
            let client = m
                .client_id
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or("member");
            let kind = if members == 3 { "range" } else { "sticky" };
            let tag = format!("{kind}-{client}-{i}");
            corpus.save("consumer_protocol_subscription", &tag, &m.member_metadata);
            corpus.save("consumer_protocol_assignment", &tag, &m.member_assignment);
        }
    }
    for version in raw.shared(ApiKey::ListGroups) {
        let body = raw.call(&ListGroupsRequest::default(), version);
        corpus.response(ApiKey::ListGroups, version, "", &body);
    }
    for version in raw.shared(ApiKey::OffsetFetch) {
        // The mixed group's committed offsets, as admin's exporter (v8) and members (v1-7) ask.
        let request = if version >= 8 {
            OffsetFetchRequest::default()
                .with_topics(Some(Vec::new()))
                .with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(name(&mixed)))
                    .with_topics(None)])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(name(&mixed)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(name(&plain)))
                    .with_partition_indexes(vec![0, 1, 2])]))
        };
        let body = raw.call(&request, version);
        corpus.response(ApiKey::OffsetFetch, version, "-mixed", &body);
    }
    let newest_create = *raw.shared(ApiKey::CreateTopics).end();
    for version in raw.shared(ApiKey::CreateTopics) {
        let topic = unique("fuzz-created");
        let request = |t: &str| {
            CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(name(t)))
                    .with_num_partitions(2)
                    .with_replication_factor(1)])
                .with_timeout_ms(30_000)
        };
        let body = raw.call(&request(&topic), version);
        corpus.response(ApiKey::CreateTopics, version, "", &body);
        if version == newest_create {
            // And the answer for a topic that exists: an error code and message.
            let body = raw.call(&request(&topic), version);
            corpus.response(ApiKey::CreateTopics, version, "-exists", &body);
        }
    }

    let total = corpus.bytes;
    eprintln!(
        "recorded {} seeds, {total} bytes, in {}",
        corpus.files,
        corpus.root.display()
    );
    assert!(
        total < 1 << 20,
        "the corpus must stay well under 1 MiB: {total}"
    );
}

/// One member's life in its own group, recording every response: FindCoordinator, JoinGroup (twice
/// from v4: the first answer asks for a member id), SyncGroup as leader, Heartbeat, OffsetCommit,
/// OffsetFetch, LeaveGroup.
fn member_session(raw: &mut Raw, corpus: &mut Corpus, topic: &str, versions: &BTreeMap<i16, i16>) {
    let group = unique("fuzz-member");
    let v = |api: ApiKey| versions[&(api as i16)];
    let body = raw.group(
        GroupRequest::FindCoordinator(FindCoordinatorRequest::default().with_key(name(&group))),
        v(ApiKey::FindCoordinator),
    );
    corpus.response(
        ApiKey::FindCoordinator,
        v(ApiKey::FindCoordinator),
        "-member",
        &body,
    );

    let subscription = codec::encode_subscription(&Subscription {
        topics: vec![topic.to_string()],
        user_data: None,
        owned_partitions: vec![TopicPartition::new(topic, 1)],
        generation_id: 3,
        rack_id: Some("rack-b".into()),
    });
    corpus.save("consumer_protocol_subscription", "ours-v3", &subscription);
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(name(&group)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(name(member))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(subscription.clone())])
            .with_reason(Some(StrBytes::from_static_str("fuzz corpus")))
    };
    let version = v(ApiKey::JoinGroup);
    let header = JoinGroupResponse::header_version(version);
    // A fresh broker loads the offsets topic first: COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE and
    // NOT_COORDINATOR (14, 15, 16) until it has.
    let (mut body, mut response) = wait_for(
        "the group coordinator",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let body = raw.group(GroupRequest::JoinGroup(join("")), version);
            let response: JoinGroupResponse = decode(&body, ApiKey::JoinGroup, header, version);
            (![14, 15, 16].contains(&response.error_code)).then_some((body, response))
        },
    );
    if !response.member_id.is_empty() && response.members.is_empty() {
        corpus.response(ApiKey::JoinGroup, version, "-member-id-required", &body);
        body = raw.group(
            GroupRequest::JoinGroup(join(response.member_id.as_str())),
            version,
        );
        response = decode(&body, ApiKey::JoinGroup, header, version);
    }
    corpus.response(ApiKey::JoinGroup, version, "-leader", &body);
    let member = response.member_id.as_str().to_string();
    let generation = response.generation_id;

    let assignment = codec::encode_assignment(&[
        TopicPartition::new(topic, 0),
        TopicPartition::new(topic, 1),
        TopicPartition::new(topic, 2),
    ]);
    let version = v(ApiKey::SyncGroup);
    let body = raw.group(
        GroupRequest::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(name(&group)))
                .with_generation_id(generation)
                .with_member_id(name(&member))
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(Some(StrBytes::from_static_str("range")))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(name(&member))
                    .with_assignment(assignment)]),
        ),
        version,
    );
    let synced: SyncGroupResponse = decode(
        &body,
        ApiKey::SyncGroup,
        SyncGroupResponse::header_version(version),
        version,
    );
    corpus.response(ApiKey::SyncGroup, version, "", &body);
    corpus.save(
        "consumer_protocol_assignment",
        "ours-v3",
        &synced.assignment,
    );

    let heartbeat = |generation| {
        GroupRequest::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(name(&group)))
                .with_generation_id(generation)
                .with_member_id(name(&member)),
        )
    };
    let body = raw.group(heartbeat(generation), v(ApiKey::Heartbeat));
    corpus.response(ApiKey::Heartbeat, v(ApiKey::Heartbeat), "", &body);
    let body = raw.group(heartbeat(generation + 7), v(ApiKey::Heartbeat));
    corpus.response(
        ApiKey::Heartbeat,
        v(ApiKey::Heartbeat),
        "-illegal-generation",
        &body,
    );

    let version = v(ApiKey::OffsetCommit);
    let body = raw.group(
        GroupRequest::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(name(&group)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(name(&member))
                .with_retention_time_ms(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(name(topic)))
                    .with_partitions(
                        (0..3)
                            .map(|p| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(i64::from(p) + 1)
                                    .with_committed_leader_epoch(-1)
                                    .with_committed_metadata(Some(name("fuzz")))
                            })
                            .collect(),
                    )]),
        ),
        version,
    );
    corpus.response(ApiKey::OffsetCommit, version, "", &body);

    let version = v(ApiKey::OffsetFetch).min(7);
    let body = raw.group(
        GroupRequest::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(name(&group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(name(topic)))
                    .with_partition_indexes(vec![0, 1, 2, 3])])),
        ),
        version,
    );
    corpus.response(ApiKey::OffsetFetch, version, "-member", &body);

    let version = v(ApiKey::LeaveGroup);
    let body = raw.group(
        GroupRequest::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(name(&group)))
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(name(&member))
                    .with_reason(Some(StrBytes::from_static_str("fuzz corpus")))]),
        ),
        version,
    );
    corpus.response(ApiKey::LeaveGroup, version, "", &body);
}
