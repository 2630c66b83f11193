"""Scrapes a /metrics endpoint and parses it with the official Prometheus Python client's parser.

Prints one JSON object: {"name{label=value,...}": value, ...} for every sample; exits non-zero if the
text does not parse.

    python3 scrape.py http://127.0.0.1:9090/metrics
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode("utf-8")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    print(json.dumps(samples, sort_keys=True))


if __name__ == "__main__":
    main()
