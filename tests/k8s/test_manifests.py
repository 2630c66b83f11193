"""The experiment's facts, asserted on what `kubectl kustomize k8s` renders.

    python3 -m unittest discover -s tests/k8s -v
"""
import os
import subprocess
import unittest

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def render():
    out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, "k8s")], check=True,
                         capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


class Manifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = render()
        cls.by_name = {(d["kind"], d["metadata"]["name"]): d for d in cls.docs}

    def workload(self, kind, name):
        self.assertIn((kind, name), self.by_name, f"{kind}/{name} is rendered")
        return self.by_name[(kind, name)]

    def pod_specs(self):
        for d in self.docs:
            if d["kind"] in ("Deployment", "Job", "StatefulSet"):
                yield d["metadata"]["name"], d["spec"]["template"]["spec"]

    def test_the_seed_experiment_200_producers_and_1_consumer(self):
        self.assertEqual(self.workload("Deployment", "kafka-producer")["spec"]["replicas"], 200)
        self.assertEqual(self.workload("Deployment", "kafka-consumer")["spec"]["replicas"], 1)

    def test_the_topic_job_creates_9_partitions_with_replication_factor_2(self):
        job = self.workload("Job", "create-topic")
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        self.assertEqual(container["args"], ["create-topic"])
        self.assertEqual((env["PARTITIONS"], env["REPLICATION_FACTOR"]), ("9", "2"))
        config = next(d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("kafka-clients"))
        self.assertEqual(config["data"]["TOPIC"], "my_new_topic")

    def test_the_consumer_joins_my_group_from_earliest_and_falls_behind_alone(self):
        spec = self.workload("Deployment", "kafka-consumer")["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        self.assertEqual(env["GROUP_ID"], "my-group")
        self.assertEqual(env["AUTO_OFFSET_RESET"], "earliest")
        # 20 ms a message is 50 msg/s: one consumer falls behind 200 msg/s, nine keep up.
        self.assertEqual(env["PROCESS_DELAY_MS"], "20")
        # The grace period covers SHUTDOWN_TIMEOUT (commit and LeaveGroup).
        self.assertGreater(spec["terminationGracePeriodSeconds"], 20)

    def test_images_are_ours(self):
        images = {name: spec["containers"][0]["image"] for name, spec in self.pod_specs()}
        self.assertEqual(images, {
            "create-topic": "kafka-lag-lab/admin:dev",
            "kafka-producer": "kafka-lag-lab/producer:dev",
            "kafka-consumer": "kafka-lag-lab/consumer:dev",
        })

    def test_every_pod_is_locked_down(self):
        for name, spec in self.pod_specs():
            with self.subTest(name):
                pod = spec["securityContext"]
                self.assertTrue(pod["runAsNonRoot"])
                self.assertEqual(pod["seccompProfile"]["type"], "RuntimeDefault")
                self.assertFalse(spec["automountServiceAccountToken"])
                for c in spec["containers"]:
                    sc = c["securityContext"]
                    self.assertTrue(sc["readOnlyRootFilesystem"])
                    self.assertFalse(sc["allowPrivilegeEscalation"])
                    self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                    self.assertIn("memory", c["resources"]["limits"])
                    self.assertIn("cpu", c["resources"]["requests"])

    def test_long_running_pods_probe_the_health_endpoints_and_are_scraped(self):
        for name in ("kafka-producer", "kafka-consumer"):
            with self.subTest(name):
                d = self.workload("Deployment", name)
                c = d["spec"]["template"]["spec"]["containers"][0]
                self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
                self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
                self.assertEqual(d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"], "true")

    def test_everything_lands_in_one_namespace(self):
        for d in self.docs:
            if d["kind"] != "Namespace":
                self.assertEqual(d["metadata"]["namespace"], "kafka-lag-lab", d["metadata"]["name"])


if __name__ == "__main__":
    unittest.main()
