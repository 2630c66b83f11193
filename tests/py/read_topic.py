"""Reads every record of a topic from the beginning with an independent client, no consumer group.

Prints one JSON object per record: {"partition", "offset", "value", "timestamp_ms"}, value decoded as
UTF-8 text. Exits 0 once --expect records were read, 1 if --timeout passes first (after printing what it
got), so the Rust test sees both the data and the shortfall.

    python3 read_topic.py --brokers 127.0.0.1:9092 --topic t --expect 45 [--client kafka-python|confluent]
"""
import argparse
import json
import sys
import time


def read_kafka_python(args):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=args.brokers.split(","), enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=500)
    deadline = time.monotonic() + args.timeout
    parts = None
    while parts is None and time.monotonic() < deadline:
        parts = consumer.partitions_for_topic(args.topic)
        if parts is None:
            time.sleep(0.2)
    if parts is None:
        sys.exit(f"topic {args.topic} not found")
    consumer.assign([TopicPartition(args.topic, p) for p in sorted(parts)])
    consumer.seek_to_beginning()
    got = 0
    while got < args.expect and time.monotonic() < deadline:
        for msg in consumer:
            yield msg.partition, msg.offset, msg.value, msg.timestamp
            got += 1
            if got >= args.expect:
                break
    consumer.close()


def read_confluent(args):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": "read-topic-unused",
                         "enable.auto.commit": False})
    deadline = time.monotonic() + args.timeout
    meta = None
    while time.monotonic() < deadline:
        meta = consumer.list_topics(args.topic, timeout=5).topics.get(args.topic)
        if meta is not None and meta.error is None and meta.partitions:
            break
        time.sleep(0.2)
    if meta is None or not meta.partitions:
        sys.exit(f"topic {args.topic} not found")
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)])
    got = 0
    while got < args.expect and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        yield msg.partition(), msg.offset(), msg.value(), msg.timestamp()[1]
        got += 1
    consumer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--client", choices=["kafka-python", "confluent"], default="kafka-python")
    args = parser.parse_args()
    reader = read_kafka_python if args.client == "kafka-python" else read_confluent
    got = 0
    for partition, offset, value, ts in reader(args):
        text = value.decode("utf-8") if value is not None else None
        print(json.dumps({"partition": partition, "offset": offset, "value": text, "timestamp_ms": ts}))
        got += 1
    sys.stdout.flush()
    if got < args.expect:
        print(f"read {got} of {args.expect} records before the timeout", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
