"""k8s/overlays/monitoring: the alerts pass `promtool test rules`, every dashboard query parses, and
the overlay renders the exporter like the other long-running pods.

    python3 -m unittest discover -s tests/k8s -v

promtool comes with Debian's `prometheus` package (apt-get install prometheus); without it the
promtool tests are skipped, saying so. That every metric used here is one the exporter serves is
checked against a live exporter in admin/tests/exporter.rs.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

from test_manifests import ROOT, Rendering, env_of

HERE = os.path.join(ROOT, "k8s", "overlays", "monitoring")
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed (apt-get install prometheus): alert unit tests and query parsing not run"


def rule_spec():
    with open(os.path.join(HERE, "prometheus-rule.yaml")) as f:
        return yaml.safe_load(f)["spec"]


def dashboard():
    with open(os.path.join(HERE, "dashboard.json")) as f:
        return json.load(f)


def dashboard_queries():
    """Every panel target's expression, with Grafana's variables replaced by what they expand to."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            expr = re.sub(r"\$(consumergroup|topic|deployment)\b", ".*", expr)
            expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            out.append((panel["title"], expr))
    return out


def promtool(*args, cwd):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True)


@unittest.skipUnless(PROMTOOL, NO_PROMTOOL)
class Promtool(unittest.TestCase):
    def test_every_alert_passes_its_unit_tests(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "rules.yaml"), "w") as f:
                yaml.safe_dump(rule_spec(), f)
            shutil.copy(os.path.join(HERE, "rules-test.yaml"), d)
            checked = promtool("check", "rules", "rules.yaml", cwd=d)
            self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
            tested = promtool("test", "rules", "rules-test.yaml", cwd=d)
            self.assertEqual(tested.returncode, 0, tested.stdout + tested.stderr)

    def test_every_alert_has_a_unit_test(self):
        with open(os.path.join(HERE, "rules-test.yaml")) as f:
            tests = yaml.safe_load(f)["tests"]
        tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])
                  if t.get("exp_alerts")}
        alerts = {r["alert"] for g in rule_spec()["groups"] for r in g["rules"] if "alert" in r}
        self.assertEqual(alerts - tested, set(), "alerts with no test that makes them fire")

    def test_every_dashboard_query_parses(self):
        # promtool has no "parse this query"; a rule file with each query as a recording rule is
        # parsed by `promtool check rules`.
        queries = dashboard_queries()
        self.assertGreaterEqual(len(queries), 8)
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]}]}
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "queries.yaml"), "w") as f:
                yaml.safe_dump(rules, f)
            checked = promtool("check", "rules", "queries.yaml", cwd=d)
            self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)

    def test_a_broken_query_is_caught(self):
        # The check above can fail: an unbalanced query is refused.
        rules = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(kafka_consumergroup_lag"}]}]}
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "bad.yaml"), "w") as f:
                yaml.safe_dump(rules, f)
            self.assertNotEqual(promtool("check", "rules", "bad.yaml", cwd=d).returncode, 0)


class Dashboard(unittest.TestCase):
    def test_it_shows_what_the_issue_asks_for(self):
        exprs = " ".join(expr for _, expr in dashboard_queries())
        for metric in ("kafka_consumergroup_lag{", "kafka_consumergroup_lag_seconds",
                       "kafka_consumergroup_drain_eta_seconds", "kafka_consumergroup_consumers_needed",
                       "kube_deployment_status_replicas", "kafka_consumergroup_produce_messages_per_second",
                       "kafka_consumergroup_consume_messages_per_second"):
            self.assertIn(metric, exprs)


class Monitoring(Rendering, unittest.TestCase):
    target = "k8s/overlays/monitoring"

    def test_the_experiment_is_unchanged(self):
        self.assertExperimentClients()

    def test_the_exporter_runs_from_the_admin_image_and_is_scraped(self):
        c = self.container("Deployment", "kafka-lag-exporter")
        self.assertEqual(c["args"], ["exporter"])
        self.assertEqual(c["image"], self.container("Job", "create-topic")["image"], "the topic Job's image")
        port = c["ports"][0]["containerPort"]
        self.assertEqual(env_of(c)["METRICS_ADDR"], f"0.0.0.0:{port}")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        # The forecast's reset position is the consumer's.
        consumer = env_of(self.container("Deployment", "kafka-consumer"))
        self.assertEqual(env_of(c)["EXPORTER_RESET"], consumer["AUTO_OFFSET_RESET"])
        service = self.get("Service", "kafka-lag-exporter")
        monitor = self.get("ServiceMonitor", "kafka-lag-exporter")
        self.assertEqual(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        self.assertEqual(monitor["spec"]["endpoints"][0]["port"], service["spec"]["ports"][0]["name"])
        self.assertEqual(monitor["spec"]["endpoints"][0]["interval"], env_of(c)["EXPORTER_INTERVAL"])

    def test_kube_prometheus_stack_picks_up_the_rules_and_the_dashboard(self):
        for kind, name in (("ServiceMonitor", "kafka-lag-exporter"), ("PrometheusRule", "kafka-lag")):
            self.assertIn("release", self.get(kind, name)["metadata"]["labels"])
        cm = self.get("ConfigMap", "kafka-lag-dashboard")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(json.loads(cm["data"]["kafka-lag.json"])["uid"], "kafka-lag-lab")
