//! The audit: what the producers had acknowledged, what the topic holds, and what each consumer
//! printed (each line stamped by the harness when it arrived), checked against each other. Pure, so
//! every rule is a unit test.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Milliseconds since the Unix epoch.
pub type Ms = i64;

/// How a consumer's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// SIGKILL from the schedule.
    Kill,
    /// SIGTERM from the schedule (a replaced member).
    Term,
    /// SIGTERM because the group was scaled down.
    ScaleDown,
    /// Stopped (SIGTERM) at the end of the run, after the audit's drain.
    Finished,
    /// Exited on its own (a crash: always reported).
    Exited,
}

/// One consumer process.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// When and how it ended (`None`: still running, which the harness never leaves).
    pub ended: Option<(Ms, End)>,
}

/// What a printed line names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// Our consumer and Java's `seed` output: the value, so producer and sequence.
    Value { producer: String, seq: u64 },
    /// The Java and Python members' `{"partition": p, "offset": o}`.
    Position { partition: i32, offset: i64 },
    /// `Received message: null`: a null value (poison).
    Null,
}

/// One printed line.
#[derive(Debug, Clone)]
pub struct Print {
    pub member: usize,
    pub at: Ms,
    pub key: Key,
}

/// One record of the topic, read back at the end.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// The producer's timestamp.
    pub at: Ms,
    /// `None`: poison (not one of the producers' messages).
    pub payload: Option<(String, u64)>,
}

/// A scheduled fault as it happened.
#[derive(Debug, Clone)]
pub struct Fault {
    pub at: Ms,
    pub kind: FaultKind,
    pub what: String,
}

/// The kinds of fault, as the report groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    ConsumerKill,
    ConsumerTerm,
    ScaleUp,
    ScaleDown,
    PeerJoin,
    PeerLeave,
    BrokerKill,
    RollingRestart,
    NetworkCut,
    Poison,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::ConsumerKill => "consumer SIGKILL",
            Self::ConsumerTerm => "consumer SIGTERM",
            Self::ScaleUp => "scale up",
            Self::ScaleDown => "scale down",
            Self::PeerJoin => "peer join",
            Self::PeerLeave => "peer leave",
            Self::BrokerKill => "broker SIGKILL",
            Self::RollingRestart => "rolling restart",
            Self::NetworkCut => "network cut",
            Self::Poison => "poison",
        }
    }
}

/// Why a message was printed more than once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// The member that printed it first was SIGKILLed before the copy (fault index).
    HardKill(usize),
    /// The member that printed it first was SIGTERMed or scaled down before the copy: never allowed.
    Graceful(usize),
    /// The first printer lived on; the latest fault before the copy (index), if any.
    After(Option<usize>),
}

/// How long after a fault every partition was flowing again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Every partition printed a message produced after the fault, at most this many ms later.
    After(Ms),
    /// A partition written to after the fault never printed any of those messages.
    Never,
    /// Nothing was produced after it (the producers had stopped).
    NoLaterMessages,
}

/// The audit's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Our consumers' AUTO_COMMIT_INTERVAL.
    pub commit_interval: Ms,
    /// Added to it for a commit's round trip and the per-batch flush of printed lines.
    pub slack: Ms,
}

/// Everything the run recorded.
pub struct Input<'a> {
    pub members: &'a [Member],
    pub prints: &'a [Print],
    pub records: &'a [Record],
    pub faults: &'a [Fault],
    /// Producer -> its last acknowledged sequence (it acknowledged 1..=last, one at a time).
    pub acked: &'a BTreeMap<String, u64>,
    pub partitions: i32,
}

/// The audit's findings.
#[derive(Debug, Default)]
pub struct Report {
    pub acknowledged: u64,
    /// Acknowledged but never printed by any consumer.
    pub lost: Vec<(String, u64)>,
    /// Acknowledged but not in the topic (the brokers lost an acks=all write).
    pub lost_by_kafka: Vec<(String, u64)>,
    /// Messages written more than once by a producer's retry (not a consumer duplicate).
    pub producer_duplicates: u64,
    pub duplicates: BTreeMap<Cause, u64>,
    /// Per hard kill (fault index): (duplicates, allowed).
    pub kill_bounds: BTreeMap<usize, (u64, u64)>,
    /// Poison records in the topic and how often consumers printed `null`.
    pub poison_records: u64,
    pub null_prints: u64,
    /// A producer's sequence going backwards along a partition's offsets.
    pub log_order_violations: u64,
    /// A member printing a producer's message for the first time after a later one of the same
    /// partition.
    pub print_order_violations: u64,
    /// Per fault: ms until every partition had printed a message produced after it.
    pub recovery: Vec<Recovery>,
    /// The first ordering violations, described.
    pub order_samples: Vec<String>,
    /// Members that exited on their own.
    pub crashed: Vec<String>,
    /// Printed lines naming no record of the topic.
    pub unknown_prints: u64,
}

impl Report {
    pub fn graceful_duplicates(&self) -> u64 {
        self.duplicates
            .iter()
            .filter(|(c, _)| matches!(c, Cause::Graceful(_)))
            .map(|(_, n)| n)
            .sum()
    }

    /// Hard kills that duplicated more than one commit interval of the member's messages.
    pub fn kills_over_bound(&self) -> Vec<usize> {
        (self.kill_bounds.iter())
            .filter(|(_, (d, allowed))| d > allowed)
            .map(|(i, _)| *i)
            .collect()
    }

    /// Why the run failed (empty: it passed).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if !self.lost.is_empty() {
            f.push(format!(
                "{} acknowledged messages never consumed",
                self.lost.len()
            ));
        }
        if !self.lost_by_kafka.is_empty() {
            f.push(format!(
                "{} acknowledged messages missing from the topic",
                self.lost_by_kafka.len()
            ));
        }
        let graceful = self.graceful_duplicates();
        if graceful > 0 {
            f.push(format!(
                "{graceful} duplicates after a SIGTERM or scale-down"
            ));
        }
        for i in self.kills_over_bound() {
            let (d, a) = self.kill_bounds[&i];
            f.push(format!(
                "fault #{i}: a hard kill duplicated {d} messages, more than one commit interval ({a})"
            ));
        }
        if self.log_order_violations + self.print_order_violations > 0 {
            f.push(format!(
                "ordering: {} in the topic, {} in the consumers' output",
                self.log_order_violations, self.print_order_violations
            ));
        }
        if !self.crashed.is_empty() {
            f.push(format!("members exited on their own: {:?}", self.crashed));
        }
        if self.acknowledged == 0 {
            f.push("nothing was acknowledged".into());
        }
        f
    }
}

/// Runs every check.
pub fn audit(input: &Input<'_>, bounds: Bounds) -> Report {
    let mut report = Report::default();
    let by_position: HashMap<(i32, i64), &Record> = input
        .records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    let mut copies: HashMap<(&str, u64), Vec<&Record>> = HashMap::new();
    for r in input.records {
        match &r.payload {
            Some((p, s)) => copies.entry((p.as_str(), *s)).or_default().push(r),
            None => report.poison_records += 1,
        }
    }
    report.producer_duplicates = copies.values().map(|c| c.len() as u64 - 1).sum();

    // Each print resolved to the message it names (producer, seq) and that message's partition.
    let mut printed: HashMap<(String, u64), Vec<(Ms, usize)>> = HashMap::new();
    // (partition, print time, produce time) per printed record, for recovery.
    let mut flow: Vec<Vec<(Ms, Ms)>> = vec![Vec::new(); input.partitions.max(0) as usize];
    // Per member, per (partition, producer): highest seq printed and every seq printed.
    let mut seen: HashMap<(usize, i32, String), (u64, HashSet<u64>)> = HashMap::new();
    let mut prints: Vec<&Print> = input.prints.iter().collect();
    prints.sort_by_key(|p| p.at);
    for p in prints {
        let record: Option<(String, u64, i32, Ms)> = match &p.key {
            Key::Null => {
                report.null_prints += 1;
                continue;
            }
            Key::Value { producer, seq } => copies
                .get(&(producer.as_str(), *seq))
                .and_then(|c| c.first())
                .map(|r| (producer.clone(), *seq, r.partition, r.at)),
            Key::Position { partition, offset } => match by_position.get(&(*partition, *offset)) {
                Some(r) => match &r.payload {
                    Some((producer, seq)) => Some((producer.clone(), *seq, r.partition, r.at)),
                    None => continue, // a poison record, skipped by the member's format
                },
                None => None,
            },
        };
        let Some((producer, seq, partition, produced)) = record else {
            report.unknown_prints += 1;
            continue;
        };
        if let Some(f) = flow.get_mut(partition as usize) {
            f.push((p.at, produced));
        }
        // A message written twice by a producer's retry may reappear after later ones; and when its
        // copies sit on different partitions, a printed line (which names no partition) cannot be
        // placed on one: such messages are left out of the ordering check, both ways.
        let retried = copies
            .get(&(producer.as_str(), seq))
            .is_some_and(|c| c.len() > 1);
        let placed = !retried || matches!(p.key, Key::Position { .. });
        if !placed {
            printed
                .entry((producer, seq))
                .or_default()
                .push((p.at, p.member));
            continue;
        }
        let entry = seen
            .entry((p.member, partition, producer.clone()))
            .or_insert_with(|| (0, HashSet::new()));
        if seq < entry.0 && !entry.1.contains(&seq) {
            report.print_order_violations += 1;
            if report.order_samples.len() < 10 {
                report.order_samples.push(format!(
                    "{} printed {producer} seq {seq} (partition {partition}) after seq {}",
                    input.members[p.member].name, entry.0
                ));
            }
        }
        entry.0 = entry.0.max(seq);
        entry.1.insert(seq);
        printed
            .entry((producer, seq))
            .or_default()
            .push((p.at, p.member));
    }

    for (producer, &last) in input.acked {
        report.acknowledged += last;
        for seq in 1..=last {
            if !printed.contains_key(&(producer.clone(), seq)) {
                report.lost.push((producer.clone(), seq));
            }
            if !copies.contains_key(&(producer.as_str(), seq)) {
                report.lost_by_kafka.push((producer.clone(), seq));
            }
        }
    }

    let mut faults: Vec<(usize, &Fault)> = input.faults.iter().enumerate().collect();
    faults.sort_by_key(|(_, f)| f.at);
    let kill_fault = |member: usize, end_at: Ms| {
        // The fault that ended this member: the one logged at its end time naming it.
        input
            .faults
            .iter()
            .position(|f| f.at == end_at && names(f, &input.members[member].name))
    };
    for ((producer, seq), mut list) in printed {
        let n = copies.get(&(producer.as_str(), seq)).map_or(1, |c| c.len());
        if list.len() <= n {
            continue;
        }
        list.sort();
        let (first_at, first) = list[0];
        for &(at, _) in &list[n..] {
            let ended = input.members[first]
                .ended
                .filter(|&(end, _)| end >= first_at && end <= at);
            let cause = match ended {
                Some((end, End::Kill)) => match kill_fault(first, end) {
                    Some(i) => Cause::HardKill(i),
                    None => Cause::After(None),
                },
                Some((end, End::Term | End::ScaleDown)) => match kill_fault(first, end) {
                    Some(i) => Cause::Graceful(i),
                    None => Cause::After(None),
                },
                _ => Cause::After(
                    faults
                        .iter()
                        .rev()
                        .find(|(_, f)| f.at <= at && f.kind != FaultKind::Poison)
                        .map(|(i, _)| *i),
                ),
            };
            if let Cause::HardKill(i) = cause {
                report.kill_bounds.entry(i).or_insert((0, 0)).0 += 1;
            }
            *report.duplicates.entry(cause).or_insert(0) += 1;
        }
    }
    // What each hard kill may duplicate: the victim's prints in the last commit interval.
    for (i, f) in input.faults.iter().enumerate() {
        if f.kind != FaultKind::ConsumerKill {
            continue;
        }
        let Some(m) = input.members.iter().position(|m| names(f, &m.name)) else {
            continue;
        };
        let window = f.at - bounds.commit_interval - bounds.slack;
        let allowed = input
            .prints
            .iter()
            .filter(|p| p.member == m && p.at >= window && p.at <= f.at)
            .count() as u64;
        report.kill_bounds.entry(i).or_insert((0, 0)).1 = allowed;
    }

    // Ordering in the log: along each partition's offsets, each producer's seq only grows.
    let mut by_partition: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for r in input.records {
        by_partition.entry(r.partition).or_default().push(r);
    }
    for records in by_partition.values_mut() {
        records.sort_by_key(|r| r.offset);
        let mut last: HashMap<&str, u64> = HashMap::new();
        for r in records.iter() {
            if let Some((p, s)) = &r.payload {
                let prev = last.entry(p.as_str()).or_insert(0);
                // Equal: a retried send that reached this partition twice (a producer duplicate).
                if *s < *prev {
                    report.log_order_violations += 1;
                    if report.order_samples.len() < 10 {
                        report.order_samples.push(format!(
                            "partition {} offset {}: {p} seq {s} after seq {prev}",
                            r.partition, r.offset
                        ));
                    }
                }
                *prev = (*prev).max(*s);
            }
        }
    }

    for f in &mut flow {
        f.sort();
    }
    let mut last_produced: HashMap<i32, Ms> = HashMap::new();
    for r in input.records.iter().filter(|r| r.payload.is_some()) {
        let e = last_produced.entry(r.partition).or_insert(r.at);
        *e = (*e).max(r.at);
    }
    report.recovery = input
        .faults
        .iter()
        .map(|fault| {
            let mut worst = None;
            for (p, f) in flow.iter().enumerate() {
                // A partition nothing was written to after the fault proves nothing either way.
                if last_produced.get(&(p as i32)).is_none_or(|&t| t < fault.at) {
                    continue;
                }
                match f.iter().find(|(_, produced)| *produced >= fault.at) {
                    Some(first) => worst = Some(worst.unwrap_or(0).max(first.0 - fault.at)),
                    None => return Recovery::Never,
                }
            }
            worst.map_or(Recovery::NoLaterMessages, Recovery::After)
        })
        .collect();

    report.crashed = (input.members.iter())
        .filter(|m| matches!(m.ended, Some((_, End::Exited)) | None))
        .map(|m| m.name.clone())
        .collect();
    report.lost.sort();
    report
}

/// Whether `fault`'s description names member `name` (a word of it: `consumer-1` is not `consumer-12`).
fn names(fault: &Fault, name: &str) -> bool {
    fault.what.split_whitespace().any(|w| w == name)
}

/// Reads one harness-stamped output line (`<ms> <line>`) of a member.
pub fn parse_line(line: &str) -> Option<(Ms, Key)> {
    let (at, text) = line.split_once(' ')?;
    let at: Ms = at.parse().ok()?;
    if let Some(value) = text.strip_prefix("Received message: ") {
        if value.trim() == "null" {
            return Some((at, Key::Null));
        }
        let v: serde_json::Value = serde_json::from_str(value).ok()?;
        let producer = v.get("producer")?.as_str()?.to_string();
        let seq = v.get("seq")?.as_u64()?;
        return Some((at, Key::Value { producer, seq }));
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let partition = i32::try_from(v.get("partition")?.as_i64()?).ok()?;
    let offset = v.get("offset")?.as_i64()?;
    Some((at, Key::Position { partition, offset }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64, at: Ms, producer: &str, seq: u64) -> Record {
        Record {
            partition,
            offset,
            at,
            payload: Some((producer.into(), seq)),
        }
    }

    fn print(member: usize, at: Ms, producer: &str, seq: u64) -> Print {
        Print {
            member,
            at,
            key: Key::Value {
                producer: producer.into(),
                seq,
            },
        }
    }

    fn member(name: &str, ended: Option<(Ms, End)>) -> Member {
        Member {
            name: name.into(),
            ended,
        }
    }

    const BOUNDS: Bounds = Bounds {
        commit_interval: 1000,
        slack: 1000,
    };

    fn run(
        members: &[Member],
        prints: &[Print],
        records: &[Record],
        faults: &[Fault],
        acked: &[(&str, u64)],
    ) -> Report {
        let acked = acked.iter().map(|(p, s)| (p.to_string(), *s)).collect();
        audit(
            &Input {
                members,
                prints,
                records,
                faults,
                acked: &acked,
                partitions: 2,
            },
            BOUNDS,
        )
    }

    #[test]
    fn an_acknowledged_message_nobody_printed_is_lost() {
        let records = [rec(0, 0, 10, "p", 1), rec(1, 0, 20, "p", 2)];
        let members = [member("c-1", Some((100, End::Finished)))];
        let r = run(
            &members,
            &[print(0, 30, "p", 1)],
            &records,
            &[],
            &[("p", 2)],
        );
        assert_eq!(r.lost, vec![("p".to_string(), 2)]);
        assert!(r.lost_by_kafka.is_empty());
        assert!(!r.failures().is_empty());
        let r = run(
            &members,
            &[print(0, 30, "p", 1), print(0, 31, "p", 2)],
            &records,
            &[],
            &[("p", 2)],
        );
        assert!(r.failures().is_empty(), "{:?}", r.failures());
    }

    #[test]
    fn duplicates_are_split_by_what_happened_to_the_first_printer() {
        let records = [
            rec(0, 0, 10, "p", 1),
            rec(1, 0, 11, "p", 2),
            rec(1, 1, 12, "p", 3),
        ];
        let members = [
            member("c-1", Some((1000, End::Kill))),
            member("c-2", Some((2000, End::Term))),
            member("c-3", Some((5000, End::Finished))),
        ];
        let faults = [
            Fault {
                at: 1000,
                kind: FaultKind::ConsumerKill,
                what: "SIGKILL c-1".into(),
            },
            Fault {
                at: 2000,
                kind: FaultKind::ConsumerTerm,
                what: "SIGTERM c-2".into(),
            },
        ];
        let prints = [
            print(0, 500, "p", 1),
            print(2, 1500, "p", 1), // after c-1's kill: allowed (c-1 printed 1 line in the window)
            print(1, 600, "p", 3),
            print(2, 2500, "p", 3), // after c-2's SIGTERM: never allowed
            print(2, 700, "p", 2),
        ];
        let r = run(&members, &prints, &records, &faults, &[("p", 3)]);
        assert_eq!(r.duplicates.get(&Cause::HardKill(0)), Some(&1));
        assert_eq!(r.duplicates.get(&Cause::Graceful(1)), Some(&1));
        assert_eq!(r.kill_bounds.get(&0), Some(&(1, 1)));
        assert!(r.kills_over_bound().is_empty());
        assert_eq!(r.graceful_duplicates(), 1);
        assert_eq!(r.failures().len(), 1, "{:?}", r.failures());
    }

    #[test]
    fn a_kill_may_duplicate_only_its_last_commit_interval() {
        let records: Vec<Record> = (1..=3).map(|s| rec(0, s as i64, 0, "p", s)).collect();
        let members = [
            member("c-1", Some((10_000, End::Kill))),
            member("c-2", Some((20_000, End::Finished))),
        ];
        let faults = [Fault {
            at: 10_000,
            kind: FaultKind::ConsumerKill,
            what: "SIGKILL c-1".into(),
        }];
        // c-1 printed 1 and 2 long before its kill and 3 just before: only 3 was uncommitted.
        let prints = [
            print(0, 1000, "p", 1),
            print(0, 2000, "p", 2),
            print(0, 9500, "p", 3),
            print(1, 11_000, "p", 1),
            print(1, 11_001, "p", 2),
            print(1, 11_002, "p", 3),
        ];
        let r = run(&members, &prints, &records, &faults, &[("p", 3)]);
        assert_eq!(r.kill_bounds.get(&0), Some(&(3, 1)));
        assert_eq!(r.kills_over_bound(), vec![0]);
    }

    #[test]
    fn a_producer_retry_is_not_a_consumer_duplicate_and_order_is_checked() {
        // Seq 1 written twice (a timed-out send retried on another partition), printed twice.
        let records = [
            rec(0, 0, 10, "p", 1),
            rec(1, 0, 11, "p", 1),
            rec(1, 1, 12, "p", 2),
        ];
        let members = [member("c-1", Some((100, End::Finished)))];
        let prints = [
            print(0, 20, "p", 1),
            print(0, 21, "p", 1),
            print(0, 22, "p", 2),
        ];
        let r = run(&members, &prints, &records, &[], &[("p", 2)]);
        assert_eq!(r.producer_duplicates, 1);
        assert!(r.duplicates.is_empty());
        assert_eq!(r.log_order_violations, 0);
        // Out of order in the log: seq 2 before seq 1 on partition 1.
        let records = [rec(1, 0, 10, "p", 2), rec(1, 1, 11, "p", 1)];
        let r = run(&members, &[], &records, &[], &[]);
        assert_eq!(r.log_order_violations, 1);
        // A member printing 2 then (for the first time) 1 of the same partition.
        let records = [rec(0, 0, 10, "p", 1), rec(0, 1, 11, "p", 2)];
        let r = run(
            &members,
            &[print(0, 20, "p", 2), print(0, 21, "p", 1)],
            &records,
            &[],
            &[("p", 2)],
        );
        assert_eq!(r.print_order_violations, 1);
    }

    #[test]
    fn a_retried_copy_on_another_partition_is_not_placed_on_the_first_one() {
        // Seq 3 written to partition 0, its retry to partition 1, then 4 there. A member reads
        // partition 1 first: its 3 must not count as partition 0's, or 1 and 2 look out of order.
        let records = [
            rec(0, 0, 10, "p", 1),
            rec(0, 1, 11, "p", 2),
            rec(0, 2, 12, "p", 3),
            rec(1, 0, 13, "p", 3),
            rec(1, 1, 14, "p", 4),
        ];
        let members = [member("c-1", Some((100, End::Finished)))];
        let prints = [
            print(0, 20, "p", 3),
            print(0, 21, "p", 4),
            print(0, 22, "p", 1),
            print(0, 23, "p", 2),
            print(0, 24, "p", 3),
        ];
        let r = run(&members, &prints, &records, &[], &[("p", 4)]);
        assert_eq!(r.print_order_violations, 0, "{:?}", r.order_samples);
        assert_eq!(r.producer_duplicates, 1);
        assert!(r.duplicates.is_empty(), "{:?}", r.duplicates);
    }

    #[test]
    fn recovery_is_until_every_partition_printed_a_message_produced_after_the_fault() {
        let records = [rec(0, 0, 1000, "p", 1), rec(1, 0, 1200, "p", 2)];
        let members = [member("c-1", Some((9000, End::Finished)))];
        let faults = [Fault {
            at: 900,
            kind: FaultKind::BrokerKill,
            what: "broker 1".into(),
        }];
        let prints = [print(0, 1500, "p", 1), print(0, 4000, "p", 2)];
        let r = run(&members, &prints, &records, &faults, &[("p", 2)]);
        assert_eq!(r.recovery, vec![Recovery::After(3100)]);
    }

    #[test]
    fn reads_every_members_line_format() {
        assert_eq!(
            parse_line(r#"5 Received message: {"cnt":"cnt: 3","producer":"p-1","seq":3}"#),
            Some((
                5,
                Key::Value {
                    producer: "p-1".into(),
                    seq: 3
                }
            ))
        );
        assert_eq!(parse_line("6 Received message: null"), Some((6, Key::Null)));
        assert_eq!(
            parse_line(r#"7 {"partition": 4, "offset": 12}"#),
            Some((
                7,
                Key::Position {
                    partition: 4,
                    offset: 12
                }
            ))
        );
        assert_eq!(parse_line(r#"8 {"assigned": [1, 2]}"#), None);
        assert_eq!(parse_line("garbage"), None);
    }
}
