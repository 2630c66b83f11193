//! Our assignors against Java's own (kafka-clients 4.4 through `tests/java/AssignorOracle.java`, no
//! broker): for random groups — 1 to 12 members, static and dynamic, several topics with differing
//! subscriptions and partition counts, and for cooperative-sticky prior ownership with stale
//! generations, departed owners and partitions claimed twice — every member must get exactly the
//! partitions Java gives it, and our assignment bytes must be the bytes Java encodes for them.
//!
//! Cases come from a seeded generator: `ORACLE_SEED=<n>` replays a run, `ORACLE_CASES=<n>` sizes it.
//! A failure prints the seed, the case and both assignments.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::Write as _,
    process::Stdio,
    sync::mpsc,
    time::Duration,
};

use group::{
    assignor::{cooperative_sticky_user_data, Assignor, Member},
    codec::{self, Subscription},
    TopicPartition,
};

/// One group to assign.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    /// Partition counts of the topics the cluster has.
    topics: BTreeMap<String, i32>,
    /// In JoinGroup order, each with the subscription bytes it sends.
    members: Vec<(Member, Vec<u8>)>,
}

/// What Java answered for one case.
#[derive(Debug, Default)]
struct JavaCase {
    /// assignor -> member -> (Java's bytes, Java's bytes for the sorted list).
    assignments: BTreeMap<String, BTreeMap<String, (String, String)>>,
    /// assignor -> exception text.
    errors: BTreeMap<String, String>,
    /// member -> Java's re-encoding of our subscription bytes.
    subscriptions: BTreeMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("oracle prints hex"))
        .collect()
}

/// Runs the oracle over `input` (its line format) and returns its stdout, within a deadline.
fn oracle(input: String) -> String {
    let mut child = testkit::java::assignor_oracle()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the Java assignor oracle");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(240)) {
        Ok(out) => out.expect("waiting for the oracle"),
        Err(_) => {
            // Ours to end: the JVM this test started, by its pid.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            panic!("the Java assignor oracle did not finish in 240 s");
        }
    };
    let _ = writer.join();
    assert!(
        out.status.success(),
        "the oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the oracle prints UTF-8")
}

fn run_cases(cases: &[Case]) -> Vec<JavaCase> {
    let mut input = String::new();
    for case in cases {
        let _ = writeln!(input, "case {}", case.name);
        for (topic, count) in &case.topics {
            let _ = writeln!(input, "topic {topic} {count}");
        }
        for (m, bytes) in &case.members {
            let instance = m.instance_id.as_deref().unwrap_or("-");
            let _ = writeln!(input, "member {} {instance} {}", m.member_id, hex(bytes));
        }
        input.push_str("end\n");
    }
    let out = oracle(input);
    let mut answers = Vec::new();
    let mut current = JavaCase::default();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "case" => current = JavaCase::default(),
            "assignment" => {
                current
                    .assignments
                    .entry(f[1].to_string())
                    .or_default()
                    .insert(f[2].to_string(), (f[3].to_string(), f[4].to_string()));
            }
            "error" => {
                current.errors.insert(f[1].to_string(), f[2..].join(" "));
            }
            "subscription" => {
                current
                    .subscriptions
                    .insert(f[1].to_string(), f[2].to_string());
            }
            "end" => answers.push(std::mem::take(&mut current)),
            other => panic!("unexpected oracle line {other:?}: {line}"),
        }
    }
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    answers
}

/// Java's assignment bytes as the list Java built (our decoder sorts; this keeps the order).
fn java_order(bytes: &[u8]) -> Vec<TopicPartition> {
    use kafka_protocol::{messages::ConsumerProtocolAssignment, protocol::Decodable};
    if bytes.is_empty() {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut body = bytes::Bytes::copy_from_slice(&bytes[2..]);
    let msg = ConsumerProtocolAssignment::decode(&mut body, version).expect("Java's bytes decode");
    msg.assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.0.as_str(), p))
        })
        .collect()
}

const TOPIC_POOL: &[&str] = &["t", "my_new_topic", "orders", "a.b", "x-9", "events_v2"];

fn random_id(rng: &mut fastrand::Rng) -> String {
    let len = rng.usize(4..=36);
    (0..len)
        .map(|_| {
            let c = rng.u8(0..36);
            char::from(if c < 10 { b'0' + c } else { b'a' + c - 10 })
        })
        .collect()
}

/// How the members' previous ownership is made up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    None,
    /// Each partition owned by a random current or departed member (or no one); random generations;
    /// some partitions claimed by a second member.
    Random,
    /// A previous, balanced cooperative-sticky assignment among some of these members and some that
    /// left: the scale-up and scale-down a running group sees.
    Previous,
}

fn gen_case(rng: &mut fastrand::Rng, name: String, ownership: Ownership) -> Case {
    let mut pool: Vec<&str> = TOPIC_POOL.to_vec();
    rng.shuffle(&mut pool);
    let n_topics = rng.usize(1..=4);
    let topics: BTreeMap<String, i32> = pool[..n_topics]
        .iter()
        .map(|t| (t.to_string(), rng.i32(1..=12)))
        .collect();
    let names: Vec<String> = topics.keys().cloned().collect();
    let n_members = rng.usize(1..=12);
    let static_share = [0.0, 0.5, 1.0][rng.usize(0..3)];
    let equal = rng.bool();
    let common: Vec<String> = {
        let mut t = names.clone();
        t.truncate(rng.usize(1..=names.len()));
        t
    };
    let mut members: Vec<Member> = Vec::new();
    let mut instances = BTreeSet::new();
    for k in 0..n_members {
        let instance_id = if rng.f64() < static_share {
            let mut inst = format!("pod-{}", rng.u32(0..100));
            while !instances.insert(inst.clone()) {
                inst = format!("pod-{}", rng.u32(0..1000));
            }
            Some(inst)
        } else {
            None
        };
        let member_id = match &instance_id {
            Some(i) => format!("{i}-{}", random_id(rng)),
            None => format!("consumer-g-{}-{}", k + 1, random_id(rng)),
        };
        let mut subscribed = if equal {
            common.clone()
        } else {
            let mut t: Vec<String> = names.iter().filter(|_| rng.bool()).cloned().collect();
            if t.is_empty() {
                t.push(names[rng.usize(0..names.len())].clone());
            }
            t
        };
        // Topics the cluster does not know are skipped by both.
        if !equal && rng.u8(0..8) == 0 {
            subscribed.push("ghost".into());
        }
        rng.shuffle(&mut subscribed);
        members.push(Member {
            member_id,
            instance_id,
            subscription: Subscription {
                topics: subscribed,
                generation_id: -1,
                rack_id: (rng.u8(0..4) == 0).then(|| format!("rack-{}", rng.u8(0..3))),
                ..Subscription::default()
            },
        });
    }
    match ownership {
        Ownership::None => {}
        Ownership::Random => random_ownership(rng, &topics, &mut members),
        Ownership::Previous => previous_ownership(rng, &topics, &mut members),
    }
    let members = members
        .into_iter()
        .map(|mut m| {
            let bytes = codec::encode_subscription(&m.subscription).to_vec();
            // The leader sees what the bytes say (owned partitions regrouped by topic).
            m.subscription = codec::decode_subscription(&bytes).expect("our own bytes decode");
            (m, bytes)
        })
        .collect();
    Case {
        name,
        topics,
        members,
    }
}

/// A generation as a member may report it: in the subscription (v2+), or only in `user_data` as
/// readers before v2 find it, or not at all.
fn set_generation(rng: &mut fastrand::Rng, sub: &mut Subscription, generation: i32) {
    match rng.u8(0..8) {
        0 => {
            sub.generation_id = -1;
            sub.user_data = Some(cooperative_sticky_user_data(generation));
        }
        1 => sub.generation_id = -1,
        _ => {
            sub.generation_id = generation;
            if rng.bool() {
                sub.user_data = Some(cooperative_sticky_user_data(generation));
            }
        }
    }
}

fn random_ownership(
    rng: &mut fastrand::Rng,
    topics: &BTreeMap<String, i32>,
    members: &mut [Member],
) {
    let current = rng.i32(3..30);
    for m in members.iter_mut() {
        let generation = if rng.u8(0..4) == 0 {
            current - rng.i32(1..=3)
        } else {
            current
        };
        set_generation(rng, &mut m.subscription, generation);
    }
    let departed = rng.usize(0..=3);
    for (topic, &count) in topics {
        for p in 0..count {
            if rng.u8(0..5) == 0 {
                continue; // nobody owned it
            }
            let owner = rng.usize(0..members.len() + departed);
            let Some(m) = members.get_mut(owner) else {
                continue; // a member that left the group owned it
            };
            m.subscription
                .owned_partitions
                .push(TopicPartition::new(topic.clone(), p));
            // A second claimant, of the same or another generation.
            if rng.u8(0..10) == 0 {
                let other = rng.usize(0..members.len());
                if other != owner {
                    members[other]
                        .subscription
                        .owned_partitions
                        .push(TopicPartition::new(topic.clone(), p));
                }
            }
        }
    }
    if rng.u8(0..6) == 0 {
        // A claim on a topic that no longer exists.
        let m = rng.usize(0..members.len());
        members[m]
            .subscription
            .owned_partitions
            .push(TopicPartition::new("deleted", 0));
    }
    for m in members.iter_mut() {
        rng.shuffle(&mut m.subscription.owned_partitions);
    }
}

fn previous_ownership(
    rng: &mut fastrand::Rng,
    topics: &BTreeMap<String, i32>,
    members: &mut [Member],
) {
    // Who was in the previous generation: some of today's members, and up to three that left.
    let mut before: Vec<Member> = members
        .iter()
        .filter(|_| rng.u8(0..4) != 0)
        .cloned()
        .collect();
    for k in 0..rng.usize(0..=3) {
        let mut gone = members[0].clone();
        gone.member_id = format!("consumer-g-gone{k}-{}", random_id(rng));
        gone.instance_id = None;
        before.push(gone);
    }
    rng.shuffle(&mut before);
    let generation = rng.i32(1..30);
    let previous = Assignor::CooperativeSticky.assign(&before, topics);
    for m in members.iter_mut() {
        match previous.get(&m.member_id) {
            Some(parts) => {
                m.subscription.owned_partitions = parts.clone();
                set_generation(rng, &mut m.subscription, generation);
            }
            None => set_generation(rng, &mut m.subscription, -1),
        }
    }
}

/// Generates `count` cases, asks Java, and compares `assignor`'s answers with ours.
fn check(assignor: Assignor, ownerships: &[Ownership], count: usize) {
    let seed: u64 = std::env::var("ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_201);
    let count = std::env::var("ORACLE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(count);
    let mut rng = fastrand::Rng::with_seed(seed);
    let cases: Vec<Case> = (0..count)
        .map(|i| gen_case(&mut rng, format!("c{i}"), ownerships[i % ownerships.len()]))
        .collect();
    let answers = run_cases(&cases);
    let mut compared = 0;
    let mut java_failed = Vec::new();
    for (case, java) in cases.iter().zip(&answers) {
        if let Some(e) = java.errors.get(assignor.name()) {
            java_failed.push(format!("{}: {e}", case.name));
            continue;
        }
        let members: Vec<Member> = case.members.iter().map(|(m, _)| m.clone()).collect();
        // Compared as the bytes carry them: grouped by topic in order of first appearance.
        let ours: BTreeMap<String, Vec<TopicPartition>> = assignor
            .assign(&members, &case.topics)
            .into_iter()
            .map(|(m, parts)| (m, java_order(&codec::encode_assignment(&parts))))
            .collect();
        let theirs = &java.assignments[assignor.name()];
        let java_lists: BTreeMap<String, Vec<TopicPartition>> = theirs
            .iter()
            .map(|(m, (bytes, _))| (m.clone(), java_order(&unhex(bytes))))
            .collect();
        let context = || {
            format!(
                "seed {seed}, case {} ({} members, topics {:?})\nmembers: {:#?}\nours: {ours:#?}\njava: {java_lists:#?}",
                case.name,
                members.len(),
                case.topics,
                members
            )
        };
        assert_eq!(
            ours,
            java_lists,
            "{} differs from Java: {}",
            assignor.name(),
            context()
        );
        for (member, parts) in &ours {
            let (java_bytes, java_sorted) = &theirs[member];
            // The bytes a Java leader sends: same partitions in the same order.
            assert_eq!(
                hex(&codec::encode_assignment(parts)),
                *java_bytes,
                "assignment bytes of {member} differ: {}",
                context()
            );
            let mut sorted = parts.clone();
            sorted.sort();
            assert_eq!(hex(&codec::encode_assignment(&sorted)), *java_sorted);
        }
        for (m, bytes) in &case.members {
            assert_eq!(
                hex(bytes),
                java.subscriptions[&m.member_id],
                "Java re-encodes {}'s subscription differently",
                m.member_id
            );
        }
        compared += 1;
    }
    eprintln!(
        "{}: {compared} of {count} cases equal Java's (seed {seed}); Java threw on {}: {java_failed:?}",
        assignor.name(),
        java_failed.len()
    );
    assert!(
        java_failed.len() * 20 <= count,
        "Java threw on too many cases to call this a comparison: {java_failed:?}"
    );
}

#[test]
fn range_equals_java() {
    check(Assignor::Range, &[Ownership::None], 300);
}

#[test]
fn roundrobin_equals_java() {
    check(Assignor::RoundRobin, &[Ownership::None], 300);
}

#[test]
fn cooperative_sticky_equals_java() {
    check(
        Assignor::CooperativeSticky,
        &[Ownership::None, Ownership::Random, Ownership::Previous],
        450,
    );
}

/// What a Java cooperative-sticky member sends in JoinGroup: our encoding of the same member, with
/// [`cooperative_sticky_user_data`], is the same bytes.
#[test]
fn cooperative_sticky_subscription_bytes_equal_javas() {
    // (generation, topics, owned partitions, rack)
    type Member<'a> = (i32, Vec<&'a str>, Vec<TopicPartition>, Option<&'a str>);
    let cases: Vec<Member<'_>> = vec![
        (-1, vec!["t"], vec![], None),
        (
            7,
            vec!["my_new_topic", "orders"],
            vec![
                TopicPartition::new("my_new_topic", 0),
                TopicPartition::new("my_new_topic", 4),
                TopicPartition::new("orders", 2),
            ],
            Some("rack-a"),
        ),
    ];
    let mut input = String::new();
    for (generation, topics, owned, rack) in &cases {
        let owned_s: Vec<String> = owned
            .iter()
            .map(|tp| format!("{}:{}", tp.topic, tp.partition))
            .collect();
        let owned_s = if owned_s.is_empty() {
            "-".to_string()
        } else {
            owned_s.join(",")
        };
        let _ = writeln!(
            input,
            "javasub {generation} {} {owned_s} {}",
            topics.join(","),
            rack.unwrap_or("-")
        );
    }
    let out = oracle(input);
    let java: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("javasub "))
        .collect();
    assert_eq!(java.len(), cases.len());
    for ((generation, topics, owned, rack), java) in cases.iter().zip(java) {
        let ours = codec::encode_subscription(&Subscription {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            user_data: Some(cooperative_sticky_user_data(*generation)),
            owned_partitions: owned.clone(),
            generation_id: *generation,
            rack_id: rack.map(str::to_string),
        });
        assert_eq!(
            hex(&ours),
            java,
            "generation {generation}, topics {topics:?}"
        );
    }
}
