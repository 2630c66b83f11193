"""The seed's producer with a Python client: one JSON message per --interval, no key, each flushed
(acknowledged) before the next, the client's default settings otherwise.

Prints `acked <seq>` on stdout after each acknowledgement (the harness times the first one). Stops on
SIGTERM/SIGINT or after --deadline seconds.

    python3 producer.py --client kafka-python --brokers 127.0.0.1:9092 --topic t --id p1
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", choices=["kafka-python", "confluent-kafka"], required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--id", default="py")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--deadline", type=float, default=900.0)
    args = ap.parse_args()
    end = time.monotonic() + args.deadline

    if args.client == "kafka-python":
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=args.brokers.split(","),
                                 value_serializer=lambda v: json.dumps(v).encode("utf-8"))

        def send(value):
            producer.send(args.topic, value=value)
            producer.flush()
    else:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": args.brokers})

        def send(value):
            producer.produce(args.topic, value=json.dumps(value).encode("utf-8"))
            producer.flush()

    seq = 1
    next_at = time.monotonic()
    while time.monotonic() < end:
        send({"cnt": f"cnt: {seq}", "producer": args.id, "seq": seq})
        print(f"acked {seq}", flush=True)
        seq += 1
        next_at += args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
