"""Prints a group's committed offsets, log-end offsets and lag per partition, as another client sees them.

One JSON object: {"partitions": {"0": {"committed": 12 | null, "end": 15, "lag": 3}, ...}, "total_lag": N}.
`committed` is null for a partition the group never committed (lag then counts from offset 0).

    python3 group_offsets.py --brokers 127.0.0.1:9092 --group g --topic t [--client kafka-python|confluent]
"""
import argparse
import json


def kafka_python(args):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=args.brokers.split(","), group_id=args.group,
                             enable_auto_commit=False)
    parts = sorted(consumer.partitions_for_topic(args.topic) or [])
    tps = [TopicPartition(args.topic, p) for p in parts]
    ends = consumer.end_offsets(tps)
    out = {}
    for tp in tps:
        committed = consumer.committed(tp)
        out[tp.partition] = (committed, ends[tp])
    consumer.close(autocommit=False)
    return out


def confluent(args):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": args.group,
                         "enable.auto.commit": False})
    meta = consumer.list_topics(args.topic, timeout=10).topics[args.topic]
    tps = [TopicPartition(args.topic, p) for p in sorted(meta.partitions)]
    committed = consumer.committed(tps, timeout=10)
    out = {}
    for tp in committed:
        _low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, tp.partition), timeout=10)
        out[tp.partition] = (tp.offset if tp.offset >= 0 else None, high)
    consumer.close()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--client", choices=["kafka-python", "confluent"], default="kafka-python")
    args = parser.parse_args()
    offsets = (kafka_python if args.client == "kafka-python" else confluent)(args)
    result = {}
    for p, (committed, end) in sorted(offsets.items()):
        result[str(p)] = {"committed": committed, "end": end, "lag": max(0, end - (committed or 0))}
    print(json.dumps({"partitions": result, "total_lag": sum(r["lag"] for r in result.values())}))


if __name__ == "__main__":
    main()
