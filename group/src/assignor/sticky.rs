//! `cooperative-sticky` (KIP-429): a port of Java's `CooperativeStickyAssignor` (kafka-clients 4.4),
//! step for step, so a group gets the same assignment whichever client leads.
//!
//! Java's `AbstractStickyAssignor` first resolves who owns what (`allSubscriptionsEqual`: the highest
//! generation wins a partition claimed twice, two claims in one generation void it), then runs one of
//! two builders:
//! - every member subscribes to the same topics: [`constrained`] keeps each member's owned
//!   partitions up to its quota and deals out the rest round-robin;
//! - otherwise: [`general`] keeps what is still valid, gives each free partition to the least loaded
//!   member that can take it, and moves partitions until the loads differ by at most one.
//!
//! The cooperative step then withholds every partition that changes owner: the new owner gets it in the
//! next rebalance, after the old owner has revoked it. Java iterates `HashMap`s in a few places where
//! it matters; [`super::java_hash`] reproduces that order. Rack-aware assignment (KIP-881) needs replica
//! racks, which `assign` is not given, so it is never on here — as in Java when no partition's replicas
//! are confined to some racks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{java_hash::JavaHashSet, Assignment, Member};
use crate::{codec::Subscription, TopicPartition};

/// Java's `DEFAULT_GENERATION`.
const NO_GENERATION: i32 = -1;

/// The `user_data` Java's `CooperativeStickyAssignor` puts in its subscription: its last generation,
/// an INT32 (big-endian). Readers before ConsumerProtocol v2 take the generation from here.
pub fn user_data(generation: i32) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(&generation.to_be_bytes())
}

/// Java's `CooperativeStickyAssignor.memberData`: the subscription's generation (v2+) if it has one,
/// else the one in `user_data`; unreadable `user_data` counts as generation -1 (but present).
fn member_generation(sub: &Subscription) -> Option<i32> {
    if sub.generation_id >= 0 {
        return Some(sub.generation_id);
    }
    let data = sub.user_data.as_ref()?;
    Some(match data.get(..4) {
        Some(b) => i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => NO_GENERATION,
    })
}

/// `Subscription.generationId().orElse(-1)`: what Java compares a rival claimant with (it does not look
/// at `user_data` there).
fn subscription_generation(sub: &Subscription) -> i32 {
    sub.generation_id.max(NO_GENERATION)
}

pub(super) fn assign(members: &[Member], partitions: &BTreeMap<String, i32>) -> Assignment {
    // Java's leader keeps the subscriptions in a HashMap filled in JoinGroup order; a repeated member
    // id keeps its first place and its last subscription.
    let ids = JavaHashSet::from_inserts(members.iter().map(|m| m.member_id.clone()));
    let subs: HashMap<&str, &Subscription> = members
        .iter()
        .map(|m| (m.member_id.as_str(), &m.subscription))
        .collect();
    let order: Vec<(&str, &Subscription)> = ids
        .iter()
        .filter_map(|id| Some((id.as_str(), *subs.get(id.as_str())?)))
        .collect();
    // Java's partitionsPerTopic: subscribed topics the metadata knows, with at least one partition.
    let counts: BTreeMap<String, i32> = partitions
        .iter()
        .filter(|(t, n)| **n > 0 && order.iter().any(|(_, s)| s.topics.contains(t)))
        .map(|(t, n)| (t.clone(), *n))
        .collect();

    let claims = resolve_claims(&counts, &order);
    let (mut assignment, transferring) = if claims.all_equal {
        let (assignment, transferring) = constrained(&counts, &order, claims);
        (assignment, transferring)
    } else {
        let assignment = general(&counts, &order, claims);
        let transferring = transferring_ownership(&order, &assignment);
        (assignment, transferring)
    };
    // The cooperative step: a partition changing owner is only revoked this round.
    for (tp, consumer) in transferring {
        if let Some(parts) = assignment.get_mut(&consumer) {
            if let Some(at) = parts.iter().position(|p| *p == tp) {
                parts.remove(at);
            }
        }
    }
    assignment.into_iter().collect()
}

/// What `allSubscriptionsEqual` works out.
struct Claims {
    all_equal: bool,
    /// Each member's valid owned partitions (Java's `consumerToOwnedPartitions`).
    owned: HashMap<String, Vec<TopicPartition>>,
    /// Partitions two members claimed in the same generation: no one keeps them.
    multiple_owners: HashSet<TopicPartition>,
    max_generation: i32,
}

fn resolve_claims(counts: &BTreeMap<String, i32>, order: &[(&str, &Subscription)]) -> Claims {
    let mut all_equal = true;
    let mut topics: HashSet<&str> = HashSet::new();
    let mut owner_of: HashMap<TopicPartition, &str> = HashMap::new();
    let mut owned: HashMap<String, Vec<TopicPartition>> = HashMap::new();
    let mut multiple_owners = HashSet::new();
    let mut max_generation = NO_GENERATION;
    let gen_of: HashMap<&str, i32> = order
        .iter()
        .map(|(id, s)| (*id, subscription_generation(s)))
        .collect();
    for &(consumer, sub) in order {
        if topics.is_empty() {
            topics.extend(sub.topics.iter().map(String::as_str));
        } else if all_equal
            && !(sub.topics.len() == topics.len()
                && sub.topics.iter().all(|t| topics.contains(t.as_str())))
        {
            all_equal = false;
        }
        let generation = member_generation(sub).unwrap_or(NO_GENERATION);
        max_generation = max_generation.max(generation);
        owned.insert(consumer.to_string(), Vec::new());
        for tp in &sub.owned_partitions {
            if !counts.contains_key(&tp.topic) {
                continue;
            }
            let Some(&other) = owner_of.get(tp) else {
                push(&mut owned, consumer, tp.clone());
                owner_of.insert(tp.clone(), consumer);
                continue;
            };
            let other_generation = gen_of.get(other).copied().unwrap_or(NO_GENERATION);
            if generation == other_generation {
                multiple_owners.insert(tp.clone());
                remove_first(owned.get_mut(other), tp);
                owner_of.insert(tp.clone(), consumer);
            } else if generation > other_generation {
                push(&mut owned, consumer, tp.clone());
                remove_first(owned.get_mut(other), tp);
                owner_of.insert(tp.clone(), consumer);
            }
        }
    }
    Claims {
        all_equal,
        owned,
        multiple_owners,
        max_generation,
    }
}

fn push(map: &mut HashMap<String, Vec<TopicPartition>>, key: &str, tp: TopicPartition) {
    map.entry(key.to_string()).or_default().push(tp);
}

/// `List.remove(Object)`: the first occurrence.
fn remove_first(list: Option<&mut Vec<TopicPartition>>, tp: &TopicPartition) {
    if let Some(list) = list {
        if let Some(at) = list.iter().position(|p| p == tp) {
            list.remove(at);
        }
    }
}

/// Every partition, topics in `topics` order, partitions ascending.
fn all_partitions<'a>(
    topics: impl IntoIterator<Item = &'a String>,
    counts: &BTreeMap<String, i32>,
) -> Vec<TopicPartition> {
    topics
        .into_iter()
        .flat_map(|t| {
            let n = counts.get(t).copied().unwrap_or(0);
            (0..n).map(move |p| TopicPartition::new(t.clone(), p))
        })
        .collect()
}

/// Java's two-pointer difference `all \ assigned` (both in `all`'s order once `assigned` is sorted).
fn unassigned(all: &[TopicPartition], assigned: &[TopicPartition]) -> Vec<TopicPartition> {
    let mut next = assigned.iter();
    let Some(mut pending) = next.next() else {
        return all.to_vec();
    };
    let mut rest_directly = false;
    let mut out = Vec::with_capacity(all.len().saturating_sub(assigned.len()));
    for tp in all {
        if rest_directly || tp != pending {
            out.push(tp.clone());
        } else {
            match next.next() {
                Some(p) => pending = p,
                None => rest_directly = true,
            }
        }
    }
    out
}

type Transfers = HashMap<TopicPartition, String>;

/// Java's `ConstrainedAssignmentBuilder` (without racks).
fn constrained(
    counts: &BTreeMap<String, i32>,
    order: &[(&str, &Subscription)],
    claims: Claims,
) -> (HashMap<String, Vec<TopicPartition>>, Transfers) {
    let total: usize = counts.values().map(|&n| n as usize).sum();
    let members = order.len().max(1);
    let (min_quota, max_quota) = (total / members, total.div_ceil(members));
    let expected_over_min = total % members;
    let mut over_min = 0usize;

    let mut assignment: HashMap<String, Vec<TopicPartition>> = order
        .iter()
        .map(|(id, _)| (id.to_string(), Vec::new()))
        .collect();
    let mut assigned: Vec<TopicPartition> = Vec::new();
    let mut maybe_revoked: HashMap<TopicPartition, String> = HashMap::new();
    let mut under_min: Vec<String> = Vec::new();
    let mut exactly_min: Vec<String> = Vec::new();

    // Owned partitions, in Java's HashMap order of members: which owners keep maxQuota depends on it.
    for &(consumer, _) in order {
        let mut owned = claims.owned.get(consumer).cloned().unwrap_or_default();
        owned.sort_by(|a, b| a.partition.cmp(&b.partition).then(a.topic.cmp(&b.topic)));
        for tp in &claims.multiple_owners {
            remove_first(Some(&mut owned), tp);
        }
        let mine = assignment.entry(consumer.to_string()).or_default();
        let keep = if owned.len() < min_quota {
            under_min.push(consumer.to_string());
            owned.len()
        } else if owned.len() >= max_quota && over_min < expected_over_min {
            over_min += 1;
            if over_min == expected_over_min {
                exactly_min.clear();
            }
            max_quota
        } else {
            if over_min < expected_over_min {
                exactly_min.push(consumer.to_string());
            }
            min_quota
        };
        mine.extend_from_slice(&owned[..keep]);
        assigned.extend_from_slice(&owned[..keep]);
        for tp in &owned[keep..] {
            maybe_revoked.insert(tp.clone(), consumer.to_string());
        }
    }

    assigned.sort();
    let topics: Vec<&String> = counts.keys().collect();
    let unassigned = unassigned(&all_partitions(topics, counts), &assigned);
    under_min.sort();
    exactly_min.sort();

    let mut transferring = Transfers::new();
    // assignRoundRobin, with Java's LinkedList iterator over the under-minQuota members as a cursor.
    // (Java also counts members reaching maxQuota here, only to log an inconsistency.)
    let mut cursor = 0usize;
    for tp in unassigned {
        // `from`: the under-minQuota index the member came from, for the iterator's `remove()`.
        let (consumer, from) = if cursor < under_min.len() {
            cursor += 1;
            (under_min[cursor - 1].clone(), Some(cursor - 1))
        } else if under_min.is_empty() {
            if exactly_min.is_empty() {
                // Java throws here ("No more unfilled consumers"); the quotas make it unreachable.
                break;
            }
            (exactly_min.remove(0), None)
        } else {
            cursor = 1;
            (under_min[0].clone(), Some(0))
        };
        let mine = assignment.entry(consumer.clone()).or_default();
        mine.push(tp.clone());
        let count = mine.len();
        if maybe_revoked
            .get(&tp)
            .is_some_and(|owner| *owner != consumer)
            || claims.multiple_owners.contains(&tp)
        {
            transferring.insert(tp, consumer.clone());
        }
        if count == min_quota {
            if let Some(at) = from {
                under_min.remove(at);
                cursor = at;
            }
            exactly_min.push(consumer);
        }
    }
    (assignment, transferring)
}

/// Java's `CooperativeStickyAssignor.computePartitionsTransferringOwnership`: partitions assigned to a
/// member that did not own them while another member that owned them lost them.
fn transferring_ownership(
    order: &[(&str, &Subscription)],
    assignment: &HashMap<String, Vec<TopicPartition>>,
) -> Transfers {
    let mut added = Transfers::new();
    let mut revoked: HashSet<&TopicPartition> = HashSet::new();
    for &(consumer, sub) in order {
        let Some(assigned) = assignment.get(consumer) else {
            continue;
        };
        let owned: HashSet<&TopicPartition> = sub.owned_partitions.iter().collect();
        for tp in assigned {
            if !owned.contains(tp) {
                added.insert(tp.clone(), consumer.to_string());
            }
        }
        let assigned: HashSet<&TopicPartition> = assigned.iter().collect();
        revoked.extend(
            sub.owned_partitions
                .iter()
                .filter(|tp| !assigned.contains(tp)),
        );
    }
    added.retain(|tp, _| revoked.contains(tp));
    added
}

/// Java's `ConsumerPair`: a partition moved from `.0` to `.1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pair(String, String);

/// Java's `PartitionMovements`: where each moved partition came from, so that moving one back undoes a
/// move instead of adding another. Which partition a reversed move picks is the first of a Java
/// `HashSet`, hence [`JavaHashSet`].
#[derive(Default)]
struct Movements {
    by_topic: HashMap<String, HashMap<Pair, JavaHashSet<TopicPartition>>>,
    of_partition: HashMap<TopicPartition, Pair>,
}

impl Movements {
    fn remove_record(&mut self, tp: &TopicPartition) -> Option<Pair> {
        let pair = self.of_partition.remove(tp)?;
        if let Some(topic) = self.by_topic.get_mut(&tp.topic) {
            if let Some(set) = topic.get_mut(&pair) {
                set.remove(tp);
                if set.is_empty() {
                    topic.remove(&pair);
                }
            }
            if topic.is_empty() {
                self.by_topic.remove(&tp.topic);
            }
        }
        Some(pair)
    }

    fn add_record(&mut self, tp: TopicPartition, pair: Pair) {
        self.of_partition.insert(tp.clone(), pair.clone());
        self.by_topic
            .entry(tp.topic.clone())
            .or_default()
            .entry(pair)
            .or_default()
            .insert(tp);
    }

    fn move_partition(&mut self, tp: &TopicPartition, old: &str, new: &str) {
        if let Some(existing) = self.remove_record(tp) {
            if existing.0 != new {
                self.add_record(tp.clone(), Pair(existing.0, new.to_string()));
            }
        } else {
            self.add_record(tp.clone(), Pair(old.to_string(), new.to_string()));
        }
    }

    fn actual_partition_to_move(
        &self,
        tp: &TopicPartition,
        old: &str,
        new: &str,
    ) -> TopicPartition {
        let Some(topic) = self.by_topic.get(&tp.topic) else {
            return tp.clone();
        };
        let old = self.of_partition.get(tp).map_or(old, |p| p.0.as_str());
        topic
            .get(&Pair(new.to_string(), old.to_string()))
            .and_then(|set| set.iter().next().cloned())
            .unwrap_or_else(|| tp.clone())
    }
}

/// Java's `TreeSet<String>` ordered by (assigned count, member id). Java removes a member before its
/// count changes and adds it back after; so do the callers here.
#[derive(Default)]
struct ByLoad(BTreeSet<(usize, String)>);

impl ByLoad {
    fn add(&mut self, id: &str, current: &HashMap<String, Vec<TopicPartition>>) {
        if let Some(parts) = current.get(id) {
            self.0.insert((parts.len(), id.to_string()));
        }
    }
    fn remove(&mut self, id: &str, current: &HashMap<String, Vec<TopicPartition>>) {
        if let Some(parts) = current.get(id) {
            self.0.remove(&(parts.len(), id.to_string()));
        }
    }
    fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, id)| id.as_str())
    }
    fn first(&self) -> Option<&str> {
        self.0.first().map(|(_, id)| id.as_str())
    }
    fn last(&self) -> Option<&str> {
        self.0.last().map(|(_, id)| id.as_str())
    }
}

/// Java's `GeneralAssignmentBuilder` (without racks).
struct General<'a> {
    counts: &'a BTreeMap<String, i32>,
    total: usize,
    topic_consumers: HashMap<String, Vec<String>>,
    consumer_topics: HashMap<String, Vec<String>>,
    current: HashMap<String, Vec<TopicPartition>>,
    partition_consumer: HashMap<TopicPartition, String>,
    by_load: ByLoad,
    movements: Movements,
}

fn general(
    counts: &BTreeMap<String, i32>,
    order: &[(&str, &Subscription)],
    claims: Claims,
) -> HashMap<String, Vec<TopicPartition>> {
    let mut topic_consumers: HashMap<String, Vec<String>> =
        counts.keys().map(|t| (t.clone(), Vec::new())).collect();
    let mut consumer_topics: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = claims.owned;
    for &(consumer, sub) in order {
        let mine = consumer_topics.entry(consumer.to_string()).or_default();
        for t in sub.topics.iter().filter(|t| counts.contains_key(*t)) {
            mine.push(t.clone());
            if let Some(list) = topic_consumers.get_mut(t) {
                list.push(consumer.to_string());
            }
        }
        current.entry(consumer.to_string()).or_default();
    }
    let mut partition_consumer: HashMap<TopicPartition, String> = HashMap::new();
    for (consumer, parts) in &current {
        for tp in parts {
            partition_consumer.insert(tp.clone(), consumer.clone());
        }
    }
    let mut topics: Vec<&String> = topic_consumers.keys().collect();
    topics.sort_by(|a, b| {
        topic_consumers[*a]
            .len()
            .cmp(&topic_consumers[*b].len())
            .then(a.cmp(b))
    });
    let topic_rank: HashMap<&str, usize> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut sorted_all = all_partitions(topics.iter().copied(), counts);

    // prepopulateCurrentAssignments: claims of older generations, the newest of them per partition.
    let mut prev: HashMap<TopicPartition, (String, i32)> = HashMap::new();
    for &(consumer, sub) in order {
        let generation = match member_generation(sub) {
            Some(g) if g < claims.max_generation => g,
            None if claims.max_generation > NO_GENERATION => NO_GENERATION,
            _ => continue,
        };
        for tp in &sub.owned_partitions {
            if prev.get(tp).is_none_or(|(_, g)| generation > *g) {
                prev.insert(tp.clone(), (consumer.to_string(), generation));
            }
        }
    }

    // assignOwnedPartitions: keep what is still valid.
    let mut revocation_required = false;
    let mut assigned: Vec<TopicPartition> = Vec::new();
    let subs: HashMap<&str, &Subscription> = order.iter().copied().collect();
    current.retain(|consumer, parts| {
        let Some(sub) = subs.get(consumer.as_str()) else {
            for tp in parts.iter() {
                partition_consumer.remove(tp);
            }
            return false;
        };
        parts.retain(|tp| {
            if !topic_consumers.contains_key(&tp.topic) {
                partition_consumer.remove(tp);
                false
            } else if !sub.topics.contains(&tp.topic) {
                revocation_required = true;
                false
            } else {
                assigned.push(tp.clone());
                true
            }
        });
        true
    });
    assigned.sort_by(|a, b| {
        let rank = |tp: &TopicPartition| topic_rank.get(tp.topic.as_str()).copied();
        rank(a)
            .cmp(&rank(b))
            .then(a.topic.cmp(&b.topic))
            .then(a.partition.cmp(&b.partition))
    });
    let shares_list = assigned.is_empty();
    let mut unassigned_list = unassigned(&sorted_all, &assigned);

    let total = counts.values().map(|&n| n as usize).sum();
    let mut g = General {
        counts,
        total,
        topic_consumers,
        consumer_topics,
        current,
        partition_consumer,
        by_load: ByLoad::default(),
        movements: Movements::default(),
    };
    let ids: Vec<String> = g.current.keys().cloned().collect();
    for id in &ids {
        g.by_load.add(id, &g.current);
    }
    g.balance(
        &prev,
        &mut sorted_all,
        &mut unassigned_list,
        shares_list,
        revocation_required,
    );
    g.current
}

impl General<'_> {
    fn size(&self, consumer: &str) -> Option<usize> {
        self.current.get(consumer).map(Vec::len)
    }

    fn subscribes(&self, consumer: &str, topic: &str) -> bool {
        self.consumer_topics
            .get(consumer)
            .is_some_and(|ts| ts.iter().any(|t| t == topic))
    }

    fn max_assignment_size(&self, consumer: &str) -> usize {
        let topics = self.consumer_topics.get(consumer).map_or(&[][..], |t| t);
        if topics.len() == self.counts.len() {
            self.total
        } else {
            topics
                .iter()
                .map(|t| self.counts.get(t).copied().unwrap_or(0) as usize)
                .sum()
        }
    }

    fn topic_can_move(&self, topic: &str) -> bool {
        self.topic_consumers
            .get(topic)
            .is_some_and(|c| c.len() >= 2)
    }

    fn consumer_can_move(&self, consumer: &str) -> bool {
        let Some(parts) = self.current.get(consumer) else {
            return false;
        };
        parts.len() < self.max_assignment_size(consumer)
            || parts.iter().any(|tp| self.topic_can_move(&tp.topic))
    }

    fn is_balanced(&self) -> bool {
        let (Some(first), Some(last)) = (self.by_load.first(), self.by_load.last()) else {
            return true;
        };
        let (min, max) = (self.size(first).unwrap_or(0), self.size(last).unwrap_or(0));
        if min + 1 >= max {
            return true;
        }
        for consumer in self.by_load.iter() {
            let Some(mine) = self.current.get(consumer) else {
                continue;
            };
            if mine.len() == self.max_assignment_size(consumer) {
                continue;
            }
            for topic in self.consumer_topics.get(consumer).into_iter().flatten() {
                for p in 0..self.counts.get(topic).copied().unwrap_or(0) {
                    let tp = TopicPartition::new(topic.clone(), p);
                    if mine.contains(&tp) {
                        continue;
                    }
                    let other = self.partition_consumer.get(&tp).and_then(|o| self.size(o));
                    if other.is_some_and(|o| mine.len() + 1 < o) {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn balance_score(assignment: &HashMap<String, Vec<TopicPartition>>) -> usize {
        let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
        let mut score = 0;
        for (i, a) in sizes.iter().enumerate() {
            for b in &sizes[i + 1..] {
                score += a.abs_diff(*b);
            }
        }
        score
    }

    /// `maybeAssignPartition`: to the least loaded member that subscribes to its topic.
    fn assign_free(&mut self, tp: &TopicPartition) {
        let Some(consumer) = self
            .by_load
            .iter()
            .find(|c| self.subscribes(c, &tp.topic))
            .map(str::to_string)
        else {
            return;
        };
        self.by_load.remove(&consumer, &self.current);
        self.current
            .entry(consumer.clone())
            .or_default()
            .push(tp.clone());
        self.partition_consumer.insert(tp.clone(), consumer.clone());
        self.by_load.add(&consumer, &self.current);
    }

    fn balance(
        &mut self,
        prev: &HashMap<TopicPartition, (String, i32)>,
        sorted_all: &mut Vec<TopicPartition>,
        unassigned: &mut Vec<TopicPartition>,
        shares_list: bool,
        revocation_required: bool,
    ) {
        let initializing = self
            .by_load
            .last()
            .and_then(|c| self.size(c))
            .is_none_or(|n| n == 0);
        for tp in unassigned.iter() {
            if self
                .topic_consumers
                .get(&tp.topic)
                .is_some_and(|c| !c.is_empty())
            {
                self.assign_free(tp);
            }
        }

        let fixed_topics: HashSet<String> = self
            .topic_consumers
            .keys()
            .filter(|t| !self.topic_can_move(t))
            .cloned()
            .collect();
        sorted_all.retain(|tp| !fixed_topics.contains(&tp.topic));
        if shares_list {
            // Java's unassignedPartitions is then the same list as sortedAllPartitions.
            unassigned.clone_from(sorted_all);
        } else {
            unassigned.retain(|tp| !fixed_topics.contains(&tp.topic));
        }

        let mut fixed: Vec<(String, Vec<TopicPartition>)> = Vec::new();
        let consumers: Vec<String> = self.consumer_topics.keys().cloned().collect();
        for consumer in consumers {
            if !self.consumer_can_move(&consumer) {
                self.by_load.remove(&consumer, &self.current);
                if let Some(parts) = self.current.remove(&consumer) {
                    fixed.push((consumer, parts));
                }
            }
        }

        let pre_balance = self.current.clone();
        let pre_balance_owners = self.partition_consumer.clone();
        if !revocation_required {
            self.perform_reassignments(unassigned, prev);
        }
        let performed = self.perform_reassignments(sorted_all, prev);
        if !initializing
            && performed
            && Self::balance_score(&self.current) >= Self::balance_score(&pre_balance)
        {
            self.current = pre_balance;
            self.partition_consumer = pre_balance_owners;
        }
        for (consumer, parts) in fixed {
            self.current.insert(consumer, parts);
        }
    }

    fn perform_reassignments(
        &mut self,
        partitions: &[TopicPartition],
        prev: &HashMap<TopicPartition, (String, i32)>,
    ) -> bool {
        let mut performed = false;
        // Each pass either moves a partition or ends the loop; a pass over n partitions cannot move
        // more than the total imbalance allows, and Java has the same bound-free loop. Cap it anyway.
        for _ in 0..=partitions.len().max(1) * 64 {
            let mut modified = false;
            for tp in partitions {
                if self.is_balanced() {
                    break;
                }
                let Some(consumer) = self.partition_consumer.get(tp).cloned() else {
                    continue;
                };
                let Some(mine) = self.size(&consumer) else {
                    continue;
                };
                if let Some((previous, _)) = prev.get(tp) {
                    if self.size(previous).is_some_and(|p| mine > p + 1) {
                        let previous = previous.clone();
                        self.reassign(tp, &previous);
                        performed = true;
                        modified = true;
                        continue;
                    }
                }
                let better = self.topic_consumers.get(&tp.topic).is_some_and(|others| {
                    others
                        .iter()
                        .any(|o| self.size(o).is_some_and(|n| mine > n + 1))
                });
                if better {
                    let Some(target) = self
                        .by_load
                        .iter()
                        .find(|c| self.subscribes(c, &tp.topic))
                        .map(str::to_string)
                    else {
                        continue;
                    };
                    self.reassign(tp, &target);
                    performed = true;
                    modified = true;
                }
            }
            if !modified {
                break;
            }
        }
        performed
    }

    fn reassign(&mut self, tp: &TopicPartition, new: &str) {
        let Some(old) = self.partition_consumer.get(tp).cloned() else {
            return;
        };
        let tp = self.movements.actual_partition_to_move(tp, &old, new);
        let Some(old) = self.partition_consumer.get(&tp).cloned() else {
            return;
        };
        self.by_load.remove(&old, &self.current);
        self.by_load.remove(new, &self.current);
        self.movements.move_partition(&tp, &old, new);
        remove_first(self.current.get_mut(&old), &tp);
        self.current
            .entry(new.to_string())
            .or_default()
            .push(tp.clone());
        self.partition_consumer.insert(tp, new.to_string());
        self.by_load.add(new, &self.current);
        self.by_load.add(&old, &self.current);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Assignor;
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)], generation: i32) -> Member {
        Member {
            member_id: id.into(),
            instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                owned_partitions: owned
                    .iter()
                    .map(|(t, p)| TopicPartition::new(*t, *p))
                    .collect(),
                generation_id: generation,
                ..Subscription::default()
            },
        }
    }

    fn parts(topic: &str, ps: &[i32]) -> Vec<TopicPartition> {
        ps.iter().map(|&p| TopicPartition::new(topic, p)).collect()
    }

    fn nine() -> BTreeMap<String, i32> {
        [("t".to_string(), 9)].into_iter().collect()
    }

    #[test]
    fn a_new_group_is_dealt_round_robin_by_member_id() {
        let members: Vec<Member> = ["c", "a", "b"]
            .iter()
            .map(|id| member(id, &["t"], &[], -1))
            .collect();
        let a = Assignor::CooperativeSticky.assign(&members, &nine());
        assert_eq!(a["a"], parts("t", &[0, 3, 6]));
        assert_eq!(a["b"], parts("t", &[1, 4, 7]));
        assert_eq!(a["c"], parts("t", &[2, 5, 8]));
    }

    #[test]
    fn owners_keep_their_quota_and_moved_partitions_wait_one_round() {
        let owned_a: Vec<(&str, i32)> = (0..5).map(|p| ("t", p)).collect();
        let owned_b: Vec<(&str, i32)> = (5..9).map(|p| ("t", p)).collect();
        let members = vec![
            member("a", &["t"], &owned_a, 1),
            member("b", &["t"], &owned_b, 1),
            member("c", &["t"], &[], -1),
        ];
        let first = Assignor::CooperativeSticky.assign(&members, &nine());
        assert_eq!(first["a"], parts("t", &[0, 1, 2]));
        assert_eq!(first["b"], parts("t", &[5, 6, 7]));
        assert!(first["c"].is_empty(), "3, 4 and 8 are revoked first");

        // The second round: the old owners report what they kept; c gets the rest.
        let members = vec![
            member("a", &["t"], &[("t", 0), ("t", 1), ("t", 2)], 2),
            member("b", &["t"], &[("t", 5), ("t", 6), ("t", 7)], 2),
            member("c", &["t"], &[], 2),
        ];
        let second = Assignor::CooperativeSticky.assign(&members, &nine());
        assert_eq!(second["a"], first["a"]);
        assert_eq!(second["b"], first["b"]);
        assert_eq!(second["c"], parts("t", &[3, 4, 8]));
    }

    #[test]
    fn the_newer_generation_wins_a_partition_claimed_twice() {
        let members = vec![
            member("a", &["t"], &[("t", 0)], 3),
            member("b", &["t"], &[("t", 0)], 2),
        ];
        let a = Assignor::CooperativeSticky.assign(&members, &[("t".into(), 2)].into());
        assert_eq!(a["a"], parts("t", &[0]));
        assert_eq!(a["b"], parts("t", &[1]));
    }

    #[test]
    fn user_data_carries_the_generation_for_old_subscriptions() {
        let mut sub = Subscription {
            generation_id: -1,
            user_data: Some(user_data(7)),
            ..Subscription::default()
        };
        assert_eq!(member_generation(&sub), Some(7));
        sub.user_data = Some(bytes::Bytes::from_static(&[1]));
        assert_eq!(member_generation(&sub), Some(NO_GENERATION));
        sub.generation_id = 4;
        assert_eq!(member_generation(&sub), Some(4));
    }
}
