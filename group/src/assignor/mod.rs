//! Partition assignors: the group leader runs one to split the partitions among all members.
//!
//! Each computes exactly what Java's assignor of the same name computes (kafka-clients 4.4:
//! `RangeAssignor`, `RoundRobinAssignor`, `CooperativeStickyAssignor`), so the split does not depend
//! on which client leads; `group/tests/java_oracle.rs` checks it against Java itself. Range and
//! roundrobin order members the Java way: static members (with a `group.instance.id`) first by instance
//! id, then the rest by member id. Every member appears in the result, with an empty list when it gets
//! nothing; each list is in the order Java's assignor builds it, so that
//! [`crate::codec::encode_assignment`] writes the very bytes a Java leader writes.

mod java_hash;
mod sticky;

pub use sticky::user_data as cooperative_sticky_user_data;

use std::collections::BTreeMap;

use crate::{codec::Subscription, TopicPartition};

/// A group member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Broker-assigned member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// What it subscribed to.
    pub subscription: Subscription,
}

/// member id -> its partitions, in the order Java's assignor lists them.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// The assignors we implement, by their protocol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// `range`: per topic, contiguous blocks; Java's default (with cooperative-sticky).
    Range,
    /// `roundrobin`: all partitions dealt out one by one.
    RoundRobin,
    /// `cooperative-sticky` (KIP-429): members keep what they own as far as balance allows, and a
    /// partition changing owner is withheld until its old owner has revoked it (a second rebalance).
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name sent in JoinGroup, as every client spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::RoundRobin => "roundrobin",
            Self::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Parses a protocol name (`range`, `roundrobin`, `cooperative-sticky`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim() {
            "range" => Some(Self::Range),
            "roundrobin" => Some(Self::RoundRobin),
            "cooperative-sticky" => Some(Self::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether the assignor follows the cooperative protocol (KIP-429): members keep their partitions
    /// through a rebalance and revoke only those the new assignment takes away. The eager ones revoke
    /// everything before rejoining.
    pub const fn is_cooperative(self) -> bool {
        matches!(self, Self::CooperativeSticky)
    }

    /// Splits the partitions of the subscribed topics (`partitions[topic]` = partition count; topics
    /// missing from it are unknown to the cluster and skipped) among `members`.
    ///
    /// `members` must be in the JoinGroup response's order: `cooperative-sticky` follows Java's
    /// iteration over a `HashMap` filled in that order, which decides ties (which of two owners keeps
    /// an extra partition). It reads each member's owned partitions and generation.
    pub fn assign(self, members: &[Member], partitions: &BTreeMap<String, i32>) -> Assignment {
        if self == Self::CooperativeSticky {
            let mut out: Assignment = members
                .iter()
                .map(|m| (m.member_id.clone(), Vec::new()))
                .collect();
            out.extend(sticky::assign(members, partitions));
            return out;
        }
        let mut sorted: Vec<&Member> = members.iter().collect();
        sorted.sort_by(|a, b| java_order(a, b));
        let mut out: Assignment = members
            .iter()
            .map(|m| (m.member_id.clone(), Vec::new()))
            .collect();
        match self {
            Self::Range => range(&sorted, &java_topic_order(members, partitions), &mut out),
            // Dealt in topic, then partition order: each list comes out sorted, as Java's does.
            Self::RoundRobin => round_robin(&sorted, partitions, &mut out),
            Self::CooperativeSticky => {}
        }
        out
    }
}

/// Java's `MemberInfo` order: static members first (by instance id), then dynamic ones by member id.
fn java_order(a: &Member, b: &Member) -> std::cmp::Ordering {
    match (&a.instance_id, &b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

fn subscribes(member: &Member, topic: &str) -> bool {
    member.subscription.topics.iter().any(|t| t == topic)
}

/// The subscribed topics with partitions, in the order of Java's `partitionsPerTopic`: a HashMap
/// filled from a HashSet of every member's topics, members taken in the leader's HashMap order.
/// Range hands out topic by topic in this order, so each member's list follows it.
fn java_topic_order(members: &[Member], partitions: &BTreeMap<String, i32>) -> Vec<(String, i32)> {
    let ids = java_hash::JavaHashSet::from_inserts(members.iter().map(|m| m.member_id.clone()));
    let by_id: BTreeMap<&str, &Member> =
        members.iter().map(|m| (m.member_id.as_str(), m)).collect();
    let subscribed = java_hash::JavaHashSet::from_inserts(
        ids.iter()
            .filter_map(|id| by_id.get(id.as_str()))
            .flat_map(|m| m.subscription.topics.iter().cloned()),
    );
    let existing = java_hash::JavaHashSet::from_inserts(
        subscribed
            .iter()
            .filter(|t| partitions.get(*t).is_some_and(|&n| n > 0))
            .cloned(),
    );
    existing
        .iter()
        .filter_map(|t| Some((t.clone(), *partitions.get(t)?)))
        .collect()
}

fn range(sorted: &[&Member], topics: &[(String, i32)], out: &mut Assignment) {
    for (topic, count) in topics {
        let count = *count;
        let consumers: Vec<&&Member> = sorted.iter().filter(|m| subscribes(m, topic)).collect();
        if consumers.is_empty() || count <= 0 {
            continue;
        }
        let n = consumers.len() as i32;
        let (per, extra) = (count / n, count % n);
        for (i, member) in consumers.iter().enumerate() {
            let i = i as i32;
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            if let Some(parts) = out.get_mut(&member.member_id) {
                parts.extend((start..start + len).map(|p| TopicPartition::new(topic.clone(), p)));
            }
        }
    }
}

fn round_robin(sorted: &[&Member], partitions: &BTreeMap<String, i32>, out: &mut Assignment) {
    if sorted.is_empty() {
        return;
    }
    let mut next = 0usize;
    for (topic, &count) in partitions {
        if !sorted.iter().any(|m| subscribes(m, topic)) {
            continue;
        }
        for p in 0..count.max(0) {
            // Deal to the next member (in circular order) that subscribes to this topic.
            while !subscribes(sorted[next % sorted.len()], topic) {
                next += 1;
            }
            let member = sorted[next % sorted.len()];
            next += 1;
            if let Some(parts) = out.get_mut(&member.member_id) {
                parts.push(TopicPartition::new(topic.clone(), p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> Member {
        Member {
            member_id: id.into(),
            instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                generation_id: -1,
                ..Subscription::default()
            },
        }
    }

    fn parts(topic: &str, ps: &[i32]) -> Vec<TopicPartition> {
        ps.iter().map(|&p| TopicPartition::new(topic, p)).collect()
    }

    fn topics(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn range_matches_java_for_9_partitions_over_2_to_9_members() {
        let members: Vec<Member> = ["c", "a", "b"]
            .iter()
            .map(|id| member(id, &["t"]))
            .collect();
        let a = Assignor::Range.assign(&members, &topics(&[("t", 9)]));
        assert_eq!(a["a"], parts("t", &[0, 1, 2]));
        assert_eq!(a["b"], parts("t", &[3, 4, 5]));
        assert_eq!(a["c"], parts("t", &[6, 7, 8]));

        let members: Vec<Member> = ["a", "b"].iter().map(|id| member(id, &["t"])).collect();
        let a = Assignor::Range.assign(&members, &topics(&[("t", 9)]));
        assert_eq!(
            a["a"],
            parts("t", &[0, 1, 2, 3, 4]),
            "the first members get the remainder"
        );
        assert_eq!(a["b"], parts("t", &[5, 6, 7, 8]));
    }

    #[test]
    fn more_members_than_partitions_leaves_some_empty_but_present() {
        let members: Vec<Member> = (0..12)
            .map(|i| member(&format!("m{i:02}"), &["t"]))
            .collect();
        let a = Assignor::Range.assign(&members, &topics(&[("t", 9)]));
        assert_eq!(a.len(), 12);
        assert_eq!(a.values().filter(|p| p.len() == 1).count(), 9);
        assert_eq!(a.values().filter(|p| p.is_empty()).count(), 3);
    }

    #[test]
    fn roundrobin_deals_over_topics_skipping_unsubscribed_members() {
        let members = vec![member("a", &["t", "u"]), member("b", &["t"])];
        let a = Assignor::RoundRobin.assign(&members, &topics(&[("t", 3), ("u", 2)]));
        assert_eq!(a["a"], [parts("t", &[0, 2]), parts("u", &[0, 1])].concat());
        assert_eq!(a["b"], parts("t", &[1]));
    }

    #[test]
    fn static_members_sort_first_like_java() {
        let mut s = member("zzz", &["t"]);
        s.instance_id = Some("pod-0".into());
        let members = vec![member("aaa", &["t"]), s];
        let a = Assignor::Range.assign(&members, &topics(&[("t", 2)]));
        assert_eq!(a["zzz"], parts("t", &[0]));
        assert_eq!(a["aaa"], parts("t", &[1]));
    }

    #[test]
    fn every_partition_is_assigned_exactly_once() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            for n in 1..=10 {
                let members: Vec<Member> = (0..n)
                    .map(|i| member(&format!("m{i}"), &["t", "u"]))
                    .collect();
                let a = assignor.assign(&members, &topics(&[("t", 9), ("u", 4)]));
                let mut all: Vec<_> = a.values().flatten().cloned().collect();
                all.sort();
                let expected: Vec<_> = [
                    parts("t", &(0..9).collect::<Vec<_>>()),
                    parts("u", &[0, 1, 2, 3]),
                ]
                .concat();
                assert_eq!(all, expected, "{assignor:?} with {n} members");
                let sizes: Vec<usize> = a.values().map(Vec::len).collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                if assignor == Assignor::RoundRobin {
                    assert!(
                        max.zip(min).is_some_and(|(x, y)| x - y <= 1),
                        "balanced: {sizes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_topics_are_skipped() {
        let members = vec![member("a", &["missing"])];
        let a = Assignor::Range.assign(&members, &topics(&[("t", 3)]));
        assert!(a["a"].is_empty());
    }
}
