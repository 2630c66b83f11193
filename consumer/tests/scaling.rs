//! Scaling the group on a real broker, as `kubectl scale` does: members added, stopped, killed.

mod common;

use std::time::{Duration, Instant};

use common::{assignment, broker, consumer, covers_exactly, heavy, printed, tally, HEARTBEAT};
use testkit::{produce, unique, wait_for, Spawned};

const POLL: Duration = Duration::from_millis(20);

#[test]
fn scale_1_to_9_then_9_to_1_by_sigterm_without_processing_anything_twice() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("scale"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    let producer = produce::RateProducer::start(
        &broker.addr(),
        &topic,
        9,
        "rate",
        100,
        Duration::from_secs(120),
    );

    let first = consumer(broker, &topic, &group, "c0", &[]);
    wait_for("c0 owns all 9", Duration::from_secs(30), POLL, || {
        (assignment(&first).map(|a| a.len()) == Some(9)).then_some(())
    });

    // 1 -> 9
    let scaled = Instant::now();
    let mut members: Vec<Spawned> = vec![first];
    for i in 1..9 {
        members.push(consumer(broker, &topic, &group, &format!("c{i}"), &[]));
    }
    wait_for("one partition each", Duration::from_secs(60), POLL, || {
        let refs: Vec<&Spawned> = members.iter().collect();
        covers_exactly(&refs, 9).filter(|a| a.iter().all(|p| p.len() == 1))
    });
    let settle = scaled.elapsed();
    let before: Vec<usize> = members.iter().map(|m| printed(m).len()).collect();
    wait_for("all nine consuming", Duration::from_secs(30), POLL, || {
        members
            .iter()
            .zip(&before)
            .all(|(m, n)| printed(m).len() > *n)
            .then_some(())
    });
    eprintln!("scale 1 -> 9 settled in {settle:?}");

    // 9 -> 1: SIGTERM eight of them; each commits and leaves.
    let mut survivor = members.remove(0);
    for m in &mut members {
        assert_eq!(
            m.terminate(Duration::from_secs(15)),
            Some(0),
            "{}: {}",
            m.name,
            m.stderr()
        );
    }
    let last_left = Instant::now();
    wait_for(
        "the survivor owns all 9",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || (assignment(&survivor).map(|a| a.len()) == Some(9)).then_some(()),
    );
    let took = last_left.elapsed();
    eprintln!("9 -> 1: the survivor owned all 9 partitions {took:?} after the last leave");
    assert!(
        took <= HEARTBEAT * 2,
        "{took:?} is more than two heartbeat intervals"
    );

    let sent = producer.stop();
    wait_for(
        "the survivor to catch up",
        Duration::from_secs(30),
        POLL,
        || {
            let all: Vec<&Spawned> = std::iter::once(&survivor).chain(members.iter()).collect();
            (tally(&all).len() as u64 >= sent).then_some(())
        },
    );
    assert_eq!(survivor.terminate(Duration::from_secs(15)), Some(0));
    let all: Vec<&Spawned> = std::iter::once(&survivor).chain(members.iter()).collect();
    let seen = tally(&all);
    let missing: Vec<u64> = (1..=sent)
        .filter(|s| !seen.contains_key(&("rate".to_string(), *s)))
        .collect();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "lost {} messages: {missing:?}",
        missing.len()
    );
    assert!(
        twice.is_empty(),
        "graceful scaling processed {} messages twice: {twice:?}",
        twice.len()
    );
}

#[test]
fn a_killed_member_s_partitions_move_after_the_session_timeout_and_resume_from_commits() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("kill"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    let rate = 100;
    let producer = produce::RateProducer::start(
        &broker.addr(),
        &topic,
        9,
        "rate",
        rate,
        Duration::from_secs(120),
    );
    let mut members: Vec<Spawned> = (0..3)
        .map(|i| consumer(broker, &topic, &group, &format!("k{i}"), &[]))
        .collect();
    wait_for(
        "three members, three partitions each",
        Duration::from_secs(60),
        POLL,
        || {
            let refs: Vec<&Spawned> = members.iter().collect();
            covers_exactly(&refs, 9).filter(|a| a.iter().all(|p| p.len() == 3))
        },
    );
    std::thread::sleep(Duration::from_secs(2));

    let victim_partitions = assignment(&members[2]).unwrap_or_default();
    members[2].kill();
    let killed = Instant::now();
    wait_for(
        "the survivors to own all 9",
        Duration::from_secs(30),
        POLL,
        || {
            let refs: Vec<&Spawned> = members[..2].iter().collect();
            covers_exactly(&refs, 9)
        },
    );
    let moved = killed.elapsed();
    eprintln!(
        "SIGKILL: partitions {victim_partitions:?} moved after {moved:?} (session timeout 6 s)"
    );
    assert!(
        moved >= Duration::from_secs(4),
        "moved before the session timeout could expire: {moved:?}"
    );

    std::thread::sleep(Duration::from_secs(2));
    let sent = producer.stop();
    let everyone: Vec<&Spawned> = members.iter().collect();
    wait_for(
        "every message consumed",
        Duration::from_secs(30),
        POLL,
        || (tally(&everyone).len() as u64 >= sent).then_some(()),
    );
    let seen = tally(&everyone);
    let missing: Vec<u64> = (1..=sent)
        .filter(|s| !seen.contains_key(&("rate".to_string(), *s)))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} messages: {missing:?}",
        missing.len()
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    // At most what the victim's three partitions received in one commit interval (1 s), plus the
    // batch in flight when it died.
    let bound = (rate as usize) * 3 / 9 + 50;
    eprintln!("SIGKILL: {duplicates} duplicates (bound {bound})");
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than one commit interval's worth ({bound})"
    );
}
