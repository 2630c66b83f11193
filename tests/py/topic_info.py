"""Prints a topic's partition count as the broker reports it to kafka-python: {"partitions": N}.

    python3 topic_info.py --brokers 127.0.0.1:9092 --topic t
"""
import argparse
import json

from kafka import KafkaAdminClient


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    admin = KafkaAdminClient(bootstrap_servers=args.brokers.split(","))
    [topic] = admin.describe_topics([args.topic])
    print(json.dumps({"error_code": topic["error_code"], "partitions": len(topic["partitions"])}))
    admin.close()


if __name__ == "__main__":
    main()
