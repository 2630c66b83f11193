//! On a 3-broker Apache Kafka cluster: the broker that coordinates the group is killed (SIGKILL)
//! while our consumer works. It must find the new coordinator, keep or rebuild its membership, and
//! resume from the committed offsets with nothing lost.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{consumer, printed};
use testkit::{produce, unique, wait_for, Broker};

const POLL: Duration = Duration::from_millis(100);

/// The coordinator's node id, from `kafka-consumer-groups --describe --state` (`host:port (id)`).
fn coordinator(bootstrap: &str, group: &str) -> Option<i32> {
    let (code, out, _) =
        testkit::java::consumer_groups(bootstrap, &["--describe", "--group", group, "--state"]);
    if code != Some(0) {
        return None;
    }
    let row = out.lines().find(|l| l.starts_with(group))?;
    let id = row.split('(').nth(1)?.split(')').next()?;
    id.trim().parse().ok()
}

#[test]
fn the_coordinators_broker_killed_mid_run_loses_nothing() {
    let mut cluster = Broker::cluster();
    let (topic, group) = (unique("coord"), unique("g"));
    testkit::create_replicated_topic(&cluster.addr(), &topic, 9, 2);
    let total = 3000;
    produce::produce_seq(&cluster.addr(), &topic, 9, "p", total);
    // 5 ms a message: about 15 s of work, so the kill lands in the middle.
    let mut c = consumer(
        &cluster,
        &topic,
        &group,
        "survivor",
        &[("PROCESS_DELAY_MS", "5")],
    );
    wait_for("a fifth of the work", Duration::from_secs(60), POLL, || {
        (printed(&c).len() >= total as usize / 5).then_some(())
    });
    let addr = cluster.addr();
    let dead = wait_for(
        "the group's coordinator",
        Duration::from_secs(30),
        POLL,
        || coordinator(&addr, &group),
    );
    let kafka = cluster.kafka().expect("a Kafka cluster");
    kafka.kill(dead).expect("killing the coordinator");
    let survivors = kafka.bootstrap_except(dead);

    let seen = wait_for(
        "every message after the coordinator died",
        Duration::from_secs(120),
        POLL,
        || {
            let seen: BTreeSet<u64> = printed(&c).into_iter().map(|(_, s)| s).collect();
            (seen.len() as u64 == total).then_some(seen)
        },
    );
    assert_eq!(seen, (1..=total).collect(), "nothing lost");
    let moved = wait_for("a new coordinator", Duration::from_secs(30), POLL, || {
        coordinator(&survivors, &group).filter(|&id| id != dead)
    });
    // Printed is not committed: if the member's session ran out while the coordinator moved, it lost
    // its partitions and, rejoined, reads again from the last commits (at-least-once). Either way the
    // group must come to be committed at the log end of every partition at the new coordinator.
    let at_end = |rows: &[testkit::java::DescribedPartition]| {
        rows.len() == 9
            && rows
                .iter()
                .all(|r| r.current.is_some() && r.current == r.log_end)
    };
    wait_for(
        "every partition committed at its end",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let rows = testkit::java::describe_group(&survivors, &group);
            at_end(&rows).then_some(())
        },
    );
    assert_eq!(
        c.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        c.stderr()
    );
    // The final commit and the leave went to the new coordinator too.
    let rows = testkit::java::describe_group(&survivors, &group);
    assert!(at_end(&rows), "{rows:?}\n{}", c.stderr());
    let duplicates = printed(&c).len() as u64 - total;
    let lost = c.stderr().contains("partitions lost");
    eprintln!(
        "coordinator {dead} killed, {moved} took over; partitions lost and re-read: {lost}; \
         {duplicates} messages printed twice"
    );
}
