"""A consumer-group member of another client, for mixed-group tests.

Joins --group on --topic with kafka-python or confluent-kafka (each with its default assignors, which
include range), prints one JSON line per assignment change {"assigned": [partitions]} and one per
message {"partition": p, "offset": o}, commits automatically, and leaves cleanly after --seconds or on
SIGTERM. Timers are shortened for tests unless --defaults is given. --protocol consumer (confluent only)
sets group.protocol=consumer (KIP-848): the broker assigns and times heartbeats, assignments arrive
incrementally, and each line still carries the whole assignment.

    python3 group_member.py --client kafka-python --brokers 127.0.0.1:9092 --group g --topic t --seconds 30
"""
import argparse
import json
import signal
import sys
import time

stop = False


def on_term(*_):
    global stop
    stop = True


def emit(obj):
    print(json.dumps(obj), flush=True)


def run_kafka_python(args):
    from kafka import KafkaConsumer, ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit({"revoked": sorted(tp.partition for tp in revoked)})

        def on_partitions_assigned(self, assigned):
            emit({"assigned": sorted(tp.partition for tp in assigned)})

    timers = {} if args.defaults else {"auto_commit_interval_ms": 1000, "heartbeat_interval_ms": 500,
                                       "session_timeout_ms": 6000}
    consumer = KafkaConsumer(bootstrap_servers=args.brokers.split(","), group_id=args.group,
                             auto_offset_reset="earliest", enable_auto_commit=True,
                             client_id="kafka-python-member", **timers)
    consumer.subscribe([args.topic], listener=Listener())
    deadline = time.monotonic() + args.seconds
    while not stop and time.monotonic() < deadline:
        for _tp, records in consumer.poll(timeout_ms=200).items():
            for r in records:
                emit({"partition": r.partition, "offset": r.offset})
    consumer.close()


def run_confluent(args):
    from confluent_kafka import Consumer

    kip848 = args.protocol == "consumer"
    owned = set()

    def on_assign(_consumer, partitions):
        if kip848:
            owned.update(p.partition for p in partitions)
            emit({"assigned": sorted(owned)})
        else:
            emit({"assigned": sorted(p.partition for p in partitions)})

    def on_revoke(_consumer, partitions):
        owned.difference_update(p.partition for p in partitions)
        emit({"revoked": sorted(p.partition for p in partitions)})

    config = {"bootstrap.servers": args.brokers, "group.id": args.group,
              "auto.offset.reset": "earliest", "enable.auto.commit": True, "client.id": "librdkafka-member"}
    if kip848:
        config["group.protocol"] = "consumer"
    if not args.defaults:
        config["auto.commit.interval.ms"] = 1000
        if not kip848:
            config.update({"heartbeat.interval.ms": 500, "session.timeout.ms": 6000})
    consumer = Consumer(config)
    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    deadline = time.monotonic() + args.seconds
    while not stop and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            emit({"partition": msg.partition(), "offset": msg.offset()})
    consumer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=["kafka-python", "confluent"], required=True)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--protocol", choices=["classic", "consumer"], default="classic",
                        help="group.protocol (consumer: KIP-848; confluent only)")
    parser.add_argument("--defaults", action="store_true",
                        help="keep the client's default timers (otherwise: 500 ms heartbeats, 6 s session)")
    args = parser.parse_args()
    if args.protocol == "consumer" and args.client != "confluent":
        parser.error("--protocol consumer needs --client confluent (kafka-python has no KIP-848 support)")
    signal.signal(signal.SIGTERM, on_term)
    (run_kafka_python if args.client == "kafka-python" else run_confluent)(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
