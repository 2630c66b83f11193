"""Writes committed and aborted transactions, interleaved in the log, with librdkafka's (confluent-kafka)
transactional API: what a read_committed consumer must filter and a read_uncommitted one must not.

Two transactional producers run their transactions at the same time, their batches alternating in
each partition; in every round one commits and the other aborts. A last transaction commits alone, so
every partition's log ends with transaction markers. Values are JSON:
{"cnt": "cnt: N", "txn": "commit-3", "fate": "commit"}. Prints {"committed": N, "aborted": M}.

    python3 produce_transactional.py --brokers 127.0.0.1:9092 --topic t --partitions 3 --rounds 4
"""
import argparse
import json

from confluent_kafka import Producer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-txn", type=int, default=6)
    args = parser.parse_args()

    def producer(name):
        p = Producer({"bootstrap.servers": args.brokers, "transactional.id": f"{args.topic}-{name}",
                      "linger.ms": 5})
        p.init_transactions(30)
        return p

    committing, aborting = producer("committing"), producer("aborting")
    counts = {"commit": 0, "abort": 0}
    n = 0

    def send(p, fate, txn, i):
        nonlocal n
        n += 1
        counts[fate] += 1
        p.produce(args.topic, partition=i % args.partitions,
                  value=json.dumps({"cnt": f"cnt: {n}", "txn": f"{fate}-{txn}", "fate": fate}))
        # One batch per message: the two transactions' batches alternate in the log.
        p.flush(30)

    for r in range(args.rounds):
        committing.begin_transaction()
        aborting.begin_transaction()
        for i in range(args.per_txn):
            send(committing, "commit", r, i)
            send(aborting, "abort", r, i)
        aborting.abort_transaction(30)
        committing.commit_transaction(30)
    committing.begin_transaction()
    for i in range(args.per_txn):
        send(committing, "commit", args.rounds, i)
    committing.commit_transaction(30)
    print(json.dumps({"committed": counts["commit"], "aborted": counts["abort"]}))


if __name__ == "__main__":
    main()
