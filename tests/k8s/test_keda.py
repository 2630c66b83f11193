"""Autoscaling the consumer with KEDA: overlays/keda and overlays/local-keda (the lag exporter's
consumers_wanted through KEDA's metrics-api scaler), overlays/keda-prometheus (the same number
through Prometheus) and overlays/keda-kafka (KEDA's own Kafka scaler, for comparison).

    python3 -m unittest discover -s tests/k8s -v

The metrics-api trigger's GJSON path is run, with the gjson release KEDA links (tests/k8s/gjson, built
with Go; without Go those tests are skipped, saying so), on /forecast bodies of the shape the exporter
serves: admin/src/exporter/mod.rs (Forecasts::json: groups, each with its topics) and
admin/src/lag.rs (render_json: the topic's forecast, consumers_needed as lag::Needed serialises it,
tagged by "kind"), plus the exporter's consumers_wanted beside it (lag::scale::Planner: a number, or
null while it cannot be told).
"""
import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

from test_manifests import NAMESPACE, ROOT, Rendering, env_of, render

GO = shutil.which("go")
NO_GO = "go is not installed: the GJSON path is not run through KEDA's gjson release"
PROMTOOL = shutil.which("promtool")


@functools.lru_cache(maxsize=None)
def gjson_binary():
    """tests/k8s/gjson built once per run, into a temporary directory removed at exit."""
    build = tempfile.mkdtemp(prefix="gjson-")
    atexit.register(shutil.rmtree, build, ignore_errors=True)
    out = os.path.join(build, "gjson")
    subprocess.run([GO, "build", "-mod=readonly", "-o", out, "."], cwd=os.path.join(ROOT, "tests", "k8s", "gjson"),
                   check=True, capture_output=True, text=True)
    return out


def gjson(body, path):
    """(gjson type, number or None) for `path` on `body`, as KEDA's metrics-api scaler reads it."""
    done = subprocess.run([gjson_binary(), path], input=json.dumps(body), capture_output=True, text=True,
                          check=True)
    out = json.loads(done.stdout)
    return out["type"], out["value"]


def topic_view(group, topic, needed, members=1, wanted=None):
    """One group on one topic as the exporter writes it (the fields the path could trip over)."""
    return {
        "group": group, "topic": topic, "group_state": "Stable", "members": members, "total_lag": 1200,
        "consumers_wanted": wanted,
        "partitions": [{"partition": p, "lag": 130, "state": "FALLING_BEHIND", "consumer_id": "m0"} for p in range(9)],
        "forecast": None if needed is None else {
            "state": "FALLING_BEHIND", "members": members, "growth_per_sec": 150.0, "produce_rate": 200.0,
            "consume_rate": 50.0, "eta": {"kind": "never", "reason": "falling behind"},
            "consumers_needed": needed,
        },
    }


def forecast_body(*groups):
    """The /forecast body: groups is (group, [topic views]) pairs."""
    return {
        "sampled_at_ms": 1767225600000, "sample_seconds": 0.05, "reset": "earliest",
        "groups": [{"group": g, "group_state": "Stable", "members": 1, "topics": topics} for g, topics in groups],
    }


COUNT = {"kind": "count", "count": 5, "capacity_per_consumer": 49.8, "limited_by_partitions": False}
SUFFICE = {"kind": "suffice", "members": 3}
UNKNOWN = {"kind": "unknown", "reason": "the group is rebalancing"}


def render_in_namespace(target, namespace):
    """The target (k8s/overlays/...) rendered from a copy of the repository's k8s/ in which its
    kustomization's `namespace:` line says another namespace."""
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "k8s")
        shutil.copytree(os.path.join(ROOT, "k8s"), copy)
        overlay = os.path.relpath(target, "k8s")
        path = os.path.join(copy, overlay, "kustomization.yaml")
        with open(path) as f:
            text = f.read()
        changed = re.sub(rf"^namespace: {NAMESPACE}$", f"namespace: {namespace}", text, flags=re.M)
        assert changed != text, f"{overlay} sets namespace: {NAMESPACE}"
        with open(path, "w") as f:
            f.write(changed)
        out = subprocess.run(["kubectl", "kustomize", os.path.join(copy, overlay)], check=True,
                             capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


class ScaledObjectChecks(Rendering):
    """What every KEDA overlay shares: components/keda's bounds, behaviour and replica ownership."""

    def scaled_object(self):
        return self.get("ScaledObject", "kafka-consumer")

    def trigger(self):
        (trigger,) = self.scaled_object()["spec"]["triggers"]
        return trigger

    def test_the_experiment_is_unchanged(self):
        self.assertExperimentClients()

    def test_it_scales_the_consumer_between_1_and_the_partition_count(self):
        so = self.scaled_object()
        self.assertEqual(so["apiVersion"], "keda.sh/v1alpha1")
        self.assertEqual(so["metadata"]["namespace"], NAMESPACE)
        self.assertEqual(so["spec"]["scaleTargetRef"]["name"], "kafka-consumer")
        self.get("Deployment", "kafka-consumer")
        partitions = int(env_of(self.container("Job", "create-topic"))["PARTITIONS"])
        self.assertEqual(so["spec"]["minReplicaCount"], 1)
        self.assertEqual(so["spec"]["maxReplicaCount"], partitions)
        self.assertEqual(so["spec"]["maxReplicaCount"], 9)

    def test_scale_down_is_stabilised(self):
        behavior = self.scaled_object()["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        self.assertGreaterEqual(behavior["scaleDown"]["stabilizationWindowSeconds"], 300)
        (policy,) = behavior["scaleDown"]["policies"]
        self.assertEqual((policy["type"], policy["value"]), ("Pods", 1))

    def test_the_hpa_owns_the_consumers_replica_count(self):
        self.assertNotIn("replicas", self.get("Deployment", "kafka-consumer")["spec"])

    def test_the_exporter_is_the_monitoring_overlays(self):
        # components/exporter: one definition for every overlay that runs it.
        monitoring = {(d["kind"], d["metadata"]["name"]): d for d in
                      render("k8s/overlays/monitoring")}
        for kind in ("Deployment", "Service", "NetworkPolicy"):
            with self.subTest(kind):
                self.assertEqual(self.get(kind, "kafka-lag-exporter"), monitoring[(kind, "kafka-lag-exporter")])

    def assertSameScalingAsTheForecast(self):
        """Everything but the trigger is overlays/keda's ScaledObject, so the two compare fairly."""
        keda = next(d for d in render("k8s/overlays/keda") if d["kind"] == "ScaledObject")
        ours = self.scaled_object()
        self.assertEqual({k: v for k, v in ours["spec"].items() if k != "triggers"},
                         {k: v for k, v in keda["spec"].items() if k != "triggers"})


class Keda(ScaledObjectChecks, unittest.TestCase):
    """The forecast, read from the exporter's /forecast by KEDA's metrics-api scaler."""
    target = "k8s/overlays/keda"

    def test_the_trigger_is_the_exporters_consumers_wanted(self):
        trigger = self.trigger()
        self.assertEqual(trigger["type"], "metrics-api")
        # AverageValue with target 1: desired replicas = ceil(consumers_wanted / 1).
        self.assertEqual(trigger.get("metricType", "AverageValue"), "AverageValue")
        meta = trigger["metadata"]
        self.assertEqual(meta["targetValue"], "1")
        self.assertEqual(meta.get("format", "json"), "json")
        consumer = env_of(self.container("Deployment", "kafka-consumer"))
        path = meta["valueLocation"]
        self.assertIn(f'#(group=="{consumer["GROUP_ID"]}")', path)
        self.assertIn(f'#(topic=="{self.config()["data"]["TOPIC"]}")', path)
        self.assertTrue(path.endswith(".consumers_wanted"), path)

    def test_the_url_is_the_exporters_forecast_in_this_namespace(self):
        url = self.trigger()["metadata"]["url"]
        service = self.get("Service", "kafka-lag-exporter")
        (port,) = service["spec"]["ports"]
        # KEDA's operator resolves it from its own namespace: the name must say ours.
        self.assertEqual(url, f'http://kafka-lag-exporter.{service["metadata"]["namespace"]}.svc:{port["port"]}/forecast')
        exporter = self.container("Deployment", "kafka-lag-exporter")
        named = {p["name"]: p["containerPort"] for p in exporter["ports"]}
        self.assertEqual(env_of(exporter)["METRICS_ADDR"], f'0.0.0.0:{named[port["targetPort"]]}')

    def test_the_url_follows_the_overlays_namespace(self):
        docs = render_in_namespace(self.target, "team-a")
        (so,) = [d for d in docs if d["kind"] == "ScaledObject"]
        self.assertEqual(so["metadata"]["namespace"], "team-a")
        self.assertIn("http://kafka-lag-exporter.team-a.svc:", so["spec"]["triggers"][0]["metadata"]["url"])

    def test_keda_reaches_the_exporter_and_not_the_brokers(self):
        exporter = self.get("NetworkPolicy", "kafka-lag-exporter")["spec"]
        self.assertTrue(any(not r.get("from") and any(p["port"] == 9090 for p in r["ports"])
                            for r in exporter["ingress"]), "9090 open to KEDA's namespace")
        brokers = self.get("NetworkPolicy", "kafka")["spec"]["ingress"]
        self.assertFalse([f for r in brokers for f in r.get("from", []) if "namespaceSelector" in f],
                         "the forecast's scaler never talks to the brokers")

    @unittest.skipUnless(GO, NO_GO)
    def test_the_path_reads_consumers_wanted_from_the_forecast(self):
        path = self.trigger()["metadata"]["valueLocation"]
        other = ("other-group", [topic_view("other-group", "my_new_topic", COUNT, wanted=8)])

        def ours(*views):
            return forecast_body(other, ("my-group", list(views)))

        side = topic_view("my-group", "another_topic", SUFFICE, wanted=7)
        cases = [
            # A backlog: enough to clear it within the drain target (here more than keep up).
            ("backlog", ours(side, topic_view("my-group", "my_new_topic", COUNT, wanted=9)), ("Number", 9)),
            # Drained: what keeps up, from the capacity measured earlier, fewer than it has.
            ("drained", ours(topic_view("my-group", "my_new_topic", SUFFICE, members=9, wanted=5), side),
             ("Number", 5)),
            # Not known: null, so KEDA reports an error and the HPA keeps its replicas.
            ("unknown", ours(topic_view("my-group", "my_new_topic", UNKNOWN)), ("Null", None)),
            ("no forecast", ours(topic_view("my-group", "my_new_topic", None)), ("Null", None)),
            ("topic missing", ours(side), ("Null", None)),
            ("group missing", forecast_body(other), ("Null", None)),
        ]
        for name, body, expected in cases:
            with self.subTest(name):
                self.assertEqual(gjson(body, path), expected)

    @unittest.skipUnless(GO, NO_GO)
    def test_the_gjson_helper_can_fail(self):
        # The check above can tell a wrong path: the members when something falls behind.
        body = forecast_body(("my-group", [topic_view("my-group", "my_new_topic", COUNT, wanted=9)]))
        wrong = 'groups.#(group=="my-group").topics.0.forecast.members'
        self.assertEqual(gjson(body, wrong), ("Number", 1))
        self.assertNotEqual(gjson(body, wrong), gjson(body, self.trigger()["metadata"]["valueLocation"]))


class LocalKeda(Keda):
    """The kind profile with the same forecast-driven scaling, on the smaller Kafka."""
    target = "k8s/overlays/local-keda"

    def test_it_is_the_local_profile(self):
        local = {(d["kind"], d["metadata"]["name"]): d for d in render("k8s/overlays/local")}
        kafka = self.get("StatefulSet", "kafka")["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(kafka["resources"],
                         local[("StatefulSet", "kafka")]["spec"]["template"]["spec"]["containers"][0]["resources"])

    def test_it_scales_like_overlays_keda(self):
        self.assertSameScalingAsTheForecast()
        keda = next(d for d in render("k8s/overlays/keda") if d["kind"] == "ScaledObject")
        self.assertEqual(self.trigger(), keda["spec"]["triggers"][0])


class KedaPrometheus(ScaledObjectChecks, unittest.TestCase):
    """The same consumers_needed, from Prometheus (overlays/monitoring scrapes the exporter)."""
    target = "k8s/overlays/keda-prometheus"

    def test_the_trigger_queries_consumers_needed_for_my_group_on_my_new_topic(self):
        trigger = self.trigger()
        self.assertEqual(trigger["type"], "prometheus")
        self.assertEqual(trigger.get("metricType", "AverageValue"), "AverageValue")
        meta = trigger["metadata"]
        self.assertEqual(meta["threshold"], "1")
        consumer = env_of(self.container("Deployment", "kafka-consumer"))
        query = meta["query"]
        self.assertIn("kafka_consumergroup_consumers_wanted{", query)
        self.assertIn(f'consumergroup="{consumer["GROUP_ID"]}"', query)
        self.assertIn(f'topic="{self.config()["data"]["TOPIC"]}"', query)
        # An absent gauge (the forecast cannot tell) is an error, not 0 (which would scale down).
        self.assertEqual(meta["ignoreNullValues"], "false")
        self.assertRegex(meta["serverAddress"], r"^http://[a-z0-9-]+\.[a-z0-9-]+\.svc:\d+$")

    def test_prometheus_scrapes_the_exporter(self):
        self.get("ServiceMonitor", "kafka-lag-exporter")

    def test_it_scales_like_overlays_keda(self):
        self.assertSameScalingAsTheForecast()

    @unittest.skipUnless(PROMTOOL, "promtool is not installed (apt-get install prometheus): query not parsed")
    def test_the_query_parses(self):
        rules = {"groups": [{"name": "keda", "rules": [{"record": "keda:query", "expr": self.trigger()["metadata"]["query"]}]}]}
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "q.yaml"), "w") as f:
                yaml.safe_dump(rules, f)
            done = subprocess.run([PROMTOOL, "check", "rules", "q.yaml"], cwd=d, capture_output=True, text=True)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)


class KedaKafka(ScaledObjectChecks, unittest.TestCase):
    """KEDA's own Kafka scaler on the lag, with the same bounds, to compare with the forecast."""
    target = "k8s/overlays/keda-kafka"

    def test_the_trigger_watches_my_group_on_my_new_topic(self):
        trigger = self.trigger()
        self.assertEqual(trigger["type"], "kafka")
        meta = trigger["metadata"]
        consumer = env_of(self.container("Deployment", "kafka-consumer"))
        self.assertEqual(meta["consumerGroup"], consumer["GROUP_ID"])
        self.assertEqual(meta["topic"], self.config()["data"]["TOPIC"])
        self.assertEqual(meta["offsetResetPolicy"], consumer["AUTO_OFFSET_RESET"])
        self.assertEqual(meta["allowIdleConsumers"], "false")
        # Between one message and a minute of one consumer's work (50 msg/s).
        self.assertTrue(1 < int(meta["lagThreshold"]) < 3000)

    def test_the_bootstrap_address_names_the_brokers_namespace(self):
        # KEDA's operator runs in its own namespace: the bootstrap name must say ours.
        service = self.get("Service", "kafka")
        port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "kafka")
        self.assertEqual(self.trigger()["metadata"]["bootstrapServers"],
                         f'kafka.{service["metadata"]["namespace"]}.svc:{port}')

    def test_the_bootstrap_address_follows_the_overlays_namespace(self):
        docs = render_in_namespace(self.target, "team-a")
        (so,) = [d for d in docs if d["kind"] == "ScaledObject"]
        self.assertEqual(so["spec"]["triggers"][0]["metadata"]["bootstrapServers"], "kafka.team-a.svc:9092")
        (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
        self.assertEqual(sts["metadata"]["namespace"], "team-a")

    def test_keda_may_reach_the_brokers(self):
        rules = self.get("NetworkPolicy", "kafka")["spec"]["ingress"]
        namespaces = [f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                      for r in rules for f in r.get("from", []) if "namespaceSelector" in f]
        self.assertEqual(namespaces, ["keda"])

    def test_it_scales_like_overlays_keda(self):
        self.assertSameScalingAsTheForecast()
        # The exporter runs too, so its forecast can be watched next to what KEDA does.
        self.get("Deployment", "kafka-lag-exporter")


if __name__ == "__main__":
    unittest.main()
