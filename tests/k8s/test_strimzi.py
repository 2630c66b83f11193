"""k8s/overlays/strimzi: our clients, Kafka UI and the lag exporter against a Strimzi-managed Kafka
cluster, with the topic as a Strimzi KafkaTopic instead of our create-topic Job.

    python3 -m unittest discover -s tests/k8s -v
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

from test_manifests import NAMESPACE, ROOT, Rendering, env_of, render

OVERLAY = os.path.join("k8s", "overlays", "strimzi")


def base():
    return {(d["kind"], d["metadata"]["name"]): d for d in render("k8s")}


def render_with_brokers(brokers):
    """The overlay rendered from a copy of k8s/ whose KAFKA_BROKERS literal says `brokers`."""
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "k8s")
        shutil.copytree(os.path.join(ROOT, "k8s"), copy)
        path = os.path.join(copy, "overlays", "strimzi", "kustomization.yaml")
        with open(path) as f:
            text = f.read()
        changed, n = re.subn(r"^(\s+- KAFKA_BROKERS=).*$", lambda m: m.group(1) + brokers, text, flags=re.M)
        assert n == 1, "one KAFKA_BROKERS literal"
        with open(path, "w") as f:
            f.write(changed)
        out = subprocess.run(["kubectl", "kustomize", os.path.join(copy, "overlays", "strimzi")], check=True,
                             capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


class Strimzi(Rendering, unittest.TestCase):
    target = OVERLAY

    def topic(self):
        return self.get("KafkaTopic", "my-new-topic")

    def test_our_kafka_and_the_topic_job_are_gone(self):
        kinds = {(d["kind"], d["metadata"]["name"]) for d in self.docs}
        for gone in (("StatefulSet", "kafka"), ("Service", "kafka"), ("Service", "kafka-headless"),
                     ("PodDisruptionBudget", "kafka"), ("NetworkPolicy", "kafka"), ("Job", "create-topic"),
                     ("NetworkPolicy", "create-topic")):
            self.assertNotIn(gone, kinds)
        self.assertFalse([d for d in self.docs if d["metadata"]["name"].startswith("kafka-log4j2")])

    def test_the_clients_and_the_exporter_run_as_in_the_experiment(self):
        ours = base()
        self.assertEqual(self.get("Deployment", "kafka-producer")["spec"]["replicas"], 200)
        self.assertEqual(self.get("Deployment", "kafka-consumer")["spec"]["replicas"], 1)
        for name in ("kafka-producer", "kafka-consumer", "kafka-ui"):
            with self.subTest(name):
                # Unchanged but for the ConfigMap's hash suffix.
                strip = lambda d: re.sub(r"kafka-clients-[a-z0-9]+", "kafka-clients", str(d))  # noqa: E731
                self.assertEqual(strip(self.get("Deployment", name)), strip(ours[("Deployment", name)]))
        exporter = self.container("Deployment", "kafka-lag-exporter")
        self.assertEqual(exporter["envFrom"][0]["configMapRef"]["name"], self.config()["metadata"]["name"])
        self.assertEqual(env_of(self.container("Deployment", "kafka-consumer"))["GROUP_ID"], "my-group")

    def test_the_topic_is_a_strimzi_kafkatopic_with_the_jobs_settings(self):
        topic = self.topic()
        self.assertEqual(topic["apiVersion"], "kafka.strimzi.io/v1beta2")
        self.assertEqual(topic["metadata"]["namespace"], NAMESPACE)
        # A resource name cannot hold "_": the topic's own name is spec.topicName.
        self.assertRegex(topic["metadata"]["name"], r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
        self.assertEqual(topic["spec"]["topicName"], self.config()["data"]["TOPIC"])
        job = env_of(base()[("Job", "create-topic")]["spec"]["template"]["spec"]["containers"][0])
        self.assertEqual(topic["spec"]["partitions"], int(job["PARTITIONS"]))
        self.assertEqual(topic["spec"]["replicas"], int(job["REPLICATION_FACTOR"]))
        self.assertEqual((topic["spec"]["partitions"], topic["spec"]["replicas"]), (9, 2))
        # The in-cluster brokers' retention, per topic.
        brokers = env_of(base()[("StatefulSet", "kafka")]["spec"]["template"]["spec"]["containers"][0])
        self.assertEqual(topic["spec"]["config"]["retention.ms"], int(brokers["KAFKA_LOG_RETENTION_HOURS"]) * 3_600_000)
        self.assertEqual(topic["spec"]["config"]["retention.bytes"], int(brokers["KAFKA_LOG_RETENTION_BYTES"]))

    def test_clients_bootstrap_from_the_clusters_bootstrap_service(self):
        cluster = self.topic()["metadata"]["labels"]["strimzi.io/cluster"]
        self.assertEqual(cluster, "my-cluster")
        self.assertEqual(self.config()["data"]["KAFKA_BROKERS"], f"{cluster}-kafka-bootstrap:9092")
        ui = {e["name"]: e for e in self.container("Deployment", "kafka-ui")["env"]}
        ref = ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]["valueFrom"]["configMapKeyRef"]
        self.assertEqual((ref["name"], ref["key"]), (self.config()["metadata"]["name"], "KAFKA_BROKERS"))

    def test_the_cluster_name_is_changed_in_one_place(self):
        for brokers, cluster in (("prod-eu-1-kafka-bootstrap:9092", "prod-eu-1"),
                                 ("events-kafka-bootstrap.kafka.svc:9092", "events")):
            with self.subTest(brokers):
                docs = render_with_brokers(brokers)
                (topic,) = [d for d in docs if d["kind"] == "KafkaTopic"]
                self.assertEqual(topic["metadata"]["labels"]["strimzi.io/cluster"], cluster)
                (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("kafka-clients-")]
                self.assertEqual(cm["data"]["KAFKA_BROKERS"], brokers)

    def test_the_cluster_name_appears_nowhere_else(self):
        # The KafkaTopic's label is a placeholder the replacement overwrites.
        with open(os.path.join(ROOT, OVERLAY, "kafka-topic.yaml")) as f:
            self.assertNotIn("my-cluster", f.read())
        with open(os.path.join(ROOT, OVERLAY, "kustomization.yaml")) as f:
            literal_lines = [line for line in f if "my-cluster" in line and not line.lstrip().startswith("#")]
        self.assertEqual(len(literal_lines), 1, literal_lines)


if __name__ == "__main__":
    unittest.main()
