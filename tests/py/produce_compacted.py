"""Creates a compacted topic and writes it so that the log cleaner leaves gaps a consumer must step
over: batches whose last records were removed (their header still ends at the old last offset) and
whole batches removed. Waits, bounded, until the cleaner has run, then prints what survived:
{"end": N, "offsets": [...], "values": [...]}, read back with confluent-kafka.

Each round writes keys k0..k4 as one batch; the last round writes only k2..k4, so in the round before
it k0 and k1 survive and k2..k4 are removed from the end of the batch. A filler in a newer segment
makes every written segment cleanable (the cleaner never reads the active one). With --pad, a batch
is larger than a small fetch size, so a fetch starting in a gap returns the gap's batch whole and the
next one cut off: a consumer that only looks at records gets nothing it can use, every time.

    python3 produce_compacted.py --brokers 127.0.0.1:9092 --topic t --rounds 20
"""
import argparse
import json
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def read_all(brokers, topic, end):
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"{topic}-check",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    offsets, values = [], []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        offsets.append(msg.offset())
        values.append(msg.value().decode())
        if msg.offset() >= end - 1:
            break
    consumer.close()
    return offsets, values


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=90)
    parser.add_argument("--pad", type=int, default=0, help="bytes of padding in each value")
    args = parser.parse_args()

    admin = AdminClient({"bootstrap.servers": args.brokers})
    config = {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
              "min.compaction.lag.ms": "0", "delete.retention.ms": "100"}
    for future in admin.create_topics([NewTopic(args.topic, 1, 1, config=config)]).values():
        future.result(30)

    producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 20, "enable.idempotence": False})
    offsets = {}

    def sent(err, msg):
        if err is None:
            offsets[(msg.key().decode(), json.loads(msg.value())["round"])] = msg.offset()

    def write(keys, r):
        for k in keys:
            producer.produce(args.topic, partition=0, key=k,
                             value=json.dumps({"cnt": f"cnt: {r}-{k}", "key": k, "round": r, "pad": "x" * args.pad}),
                             callback=sent)
        producer.flush(30)

    keys = [f"k{i}" for i in range(5)]
    for r in range(args.rounds):
        write(keys, r)
        time.sleep(0.15)  # past segment.ms: the next append rolls a new segment
    write(keys[2:], args.rounds)
    time.sleep(0.3)
    write(["filler"], args.rounds + 1)
    time.sleep(0.3)
    write(["filler"], args.rounds + 2)
    end = offsets[("filler", args.rounds + 2)] + 1
    # The cleaner wakes every log.cleaner.backoff.ms (15 s by default): wait until it removed the
    # trailing records of the round before the last.
    gone = offsets[("k2", args.rounds - 1)]
    deadline = time.monotonic() + args.timeout
    while True:
        read, values = read_all(args.brokers, args.topic, end)
        if read and gone not in read and offsets[("k0", 0)] not in read:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"no compaction within {args.timeout} s: {read}")
        time.sleep(1)
    print(json.dumps({"end": end, "offsets": read, "values": values,
                      "batch_end": offsets[("k4", args.rounds - 1)], "last_kept": offsets[("k1", args.rounds - 1)]}))


if __name__ == "__main__":
    main()
