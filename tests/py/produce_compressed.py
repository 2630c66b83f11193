"""Produces with librdkafka (confluent-kafka) using a compression codec, with keys, headers and a null
value, the way real producers write: what our consumer must read.

Writes --count JSON messages {"cnt": "cnt: N"} with key "k-N" and a header, then one null value.

    python3 produce_compressed.py --brokers 127.0.0.1:9092 --topic t --compression zstd --count 20
"""
import argparse
import json

from confluent_kafka import Producer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--compression", required=True)
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    producer = Producer({"bootstrap.servers": args.brokers, "compression.type": args.compression,
                         "linger.ms": 50})
    for n in range(1, args.count + 1):
        producer.produce(args.topic, key=f"k-{n}", value=json.dumps({"cnt": f"cnt: {n}", "codec": args.compression}),
                         headers=[("source", b"librdkafka")])
    producer.produce(args.topic, key="tombstone", value=None)
    remaining = producer.flush(30)
    if remaining:
        raise SystemExit(f"{remaining} messages not delivered")


if __name__ == "__main__":
    main()
