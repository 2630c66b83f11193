"""The seed's consumer with a Python client: a group member with the client's defaults (earliest reset,
auto commit) that decodes each value as JSON and prints `Received message: <value>` on stdout, the
seed's per-message work. Each assignment is printed on stderr as `assigned <count>`, so the harness can time a
scale-up, and each revocation as `revoked`. Stops on SIGTERM/SIGINT or after --deadline seconds.

    python3 consumer.py --client confluent-kafka --brokers 127.0.0.1:9092 --topic t --group g
"""
import argparse
import json
import sys
import time


def assigned(partitions):
    print(f"assigned {len(partitions)}", file=sys.stderr, flush=True)


def revoked_all():
    print("revoked", file=sys.stderr, flush=True)


def run_kafka_python(args, end):
    from kafka import KafkaConsumer, ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            revoked_all()

        def on_partitions_assigned(self, partitions):
            assigned(partitions)

    consumer = KafkaConsumer(bootstrap_servers=args.brokers.split(","), group_id=args.group,
                             auto_offset_reset="earliest",
                             value_deserializer=lambda x: json.loads(x.decode("utf-8")))
    consumer.subscribe([args.topic], listener=Listener())
    while time.monotonic() < end:
        # The seed's per-message work (json.loads in the deserializer, one print per message); the
        # lines are flushed after each poll's batch, as ours flushes after each batch, so the last
        # lines are not held in Python's stdout buffer.
        for records in consumer.poll(timeout_ms=1000).values():
            for message in records:
                print(f"Received message: {message.value}")
        sys.stdout.flush()


def run_confluent(args, end):
    from confluent_kafka import Consumer

    config = {"bootstrap.servers": args.brokers, "group.id": args.group, "auto.offset.reset": "earliest"}
    if args.protocol == "consumer":
        # KIP-848: assignments arrive incrementally; the count printed is the whole assignment.
        config["group.protocol"] = "consumer"
        owned = set()

        def on_assign(_c, partitions):
            owned.update(p.partition for p in partitions)
            print(f"assigned {len(owned)}", file=sys.stderr, flush=True)

        def on_revoke(_c, partitions):
            owned.difference_update(p.partition for p in partitions)
            print(f"assigned {len(owned)}", file=sys.stderr, flush=True)
    else:
        def on_assign(_c, partitions):
            assigned(partitions)

        def on_revoke(_c, _partitions):
            revoked_all()
    consumer = Consumer(config)
    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    while time.monotonic() < end:
        # Flush only when the next poll would wait, so the lines are not held in the buffer.
        msg = consumer.poll(0)
        if msg is None:
            sys.stdout.flush()
            msg = consumer.poll(1.0)
            if msg is None:
                continue
        if msg.error():
            print(f"consumer error: {msg.error()}", file=sys.stderr, flush=True)
            continue
        value = json.loads(msg.value().decode("utf-8"))
        print(f"Received message: {value}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", choices=["kafka-python", "confluent-kafka"], required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--deadline", type=float, default=900.0)
    ap.add_argument("--protocol", choices=["classic", "consumer"], default="classic",
                    help="group.protocol (consumer: KIP-848, confluent-kafka only)")
    args = ap.parse_args()
    end = time.monotonic() + args.deadline
    (run_kafka_python if args.client == "kafka-python" else run_confluent)(args, end)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
