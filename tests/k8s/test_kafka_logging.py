"""The brokers' log4j2 configuration (the kafka-log4j2 ConfigMap that KAFKA_LOG4J_OPTS names) loaded
by the log4j2 release Apache Kafka ships, from the jars scripts/ensure-kafka.sh caches (make deps):
it parses, logs to stdout with the levels of Kafka's own config/log4j2.yaml, and writes no file under
kafka.logs.dir.

    python3 -m unittest discover -s tests/k8s -v

Without Java 11+ or the cached jars these tests are skipped, saying so; test_manifests.py checks
the same file's structure on the rendering either way.
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

from test_manifests import pinned_kafka_version, render

JAVA = shutil.which("java")

PROBE = """
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LoggerContext;

public class Probe {
    public static void main(String[] args) {
        LoggerContext ctx = (LoggerContext) LogManager.getContext(false);
        var config = ctx.getConfiguration();
        System.err.println("CONFIG " + config.getName() + " " + config.getAppenders().keySet());
        LogManager.getLogger("kafka.server.BrokerServer").info("root-info");
        LogManager.getLogger("state.change.logger").info("state-change-info");
        LogManager.getLogger("org.apache.kafka.controller.QuorumController").info("controller-info");
        LogManager.getLogger("org.apache.kafka.storage.internals.log.LogCleaner").info("cleaner-info");
        LogManager.getLogger("kafka.request.logger").info("request-info");
        LogManager.getLogger("kafka.request.logger").warn("request-warn");
        LogManager.getLogger("kafka.network.RequestChannel$").info("channel-info");
    }
}
"""


def kafka_jars():
    """Where scripts/ensure-kafka.sh caches the pinned release's jars (KAFKA_LIBS overrides)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    version = pinned_kafka_version()
    d = os.environ.get("KAFKA_LIBS") or os.path.join(cache, "kafka-lag-lab", f"kafka-{version}")
    return d if os.path.isfile(os.path.join(d, ".complete")) else None


def brokers_log4j2():
    """The log4j2.yaml the brokers read, as rendered."""
    (cm,) = [d for d in render("k8s") if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("kafka-log4j2-")]
    return cm["data"]["log4j2.yaml"]


def run_probe(config_text):
    """Logs through `config_text` in a JVM; returns (stdout, stderr, files written under kafka.logs.dir)."""
    with tempfile.TemporaryDirectory() as d:
        logs = os.path.join(d, "logs")
        os.mkdir(logs)
        with open(os.path.join(d, "log4j2.yaml"), "w") as f:
            f.write(config_text)
        with open(os.path.join(d, "Probe.java"), "w") as f:
            f.write(PROBE)
        done = subprocess.run(
            [JAVA, "-cp", os.path.join(kafka_jars(), "*"),
             f"-Dlog4j2.configurationFile={os.path.join(d, 'log4j2.yaml')}", f"-Dkafka.logs.dir={logs}",
             "Probe.java"],
            cwd=d, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr, sorted(os.listdir(logs))


@unittest.skipUnless(JAVA and kafka_jars(), "no java, or Apache Kafka's jars are not cached (make deps): "
                                           "the brokers' log4j2.yaml is not loaded")
class BrokersLog4j2(unittest.TestCase):
    def test_it_loads_and_logs_every_logger_to_stdout_only(self):
        out, err, files = run_probe(brokers_log4j2())
        self.assertIn("CONFIG kafka-lag-lab-console [STDOUT]", err)
        self.assertNotRegex(err, r"ERROR|WARN StatusLogger", "log4j2 took the file without complaint")
        for line in ("INFO root-info", "INFO state-change-info", "INFO controller-info", "INFO cleaner-info",
                     "WARN request-warn"):
            self.assertIn(line, out)
        # As Kafka's own config: request logging only from WARN.
        self.assertNotIn("request-info", out)
        self.assertNotIn("channel-info", out)
        # Kafka's own pattern, "[%d] %p %m (%c)%n".
        self.assertRegex(out, r"(?m)^\[\d{4}-\d\d-\d\d [\d:,]+\] INFO root-info \(kafka\.server\.BrokerServer\)$")
        self.assertEqual(files, [], "nothing written under kafka.logs.dir")

    def test_a_file_appender_would_be_caught(self):
        # The check above can fail: the same configuration with a file appender on the root logger.
        config = yaml.safe_load(brokers_log4j2())
        config["Configuration"]["Appenders"]["File"] = {
            "name": "FILE", "fileName": "${sys:kafka.logs.dir}/server.log",
            "PatternLayout": {"pattern": "%m%n"}}
        config["Configuration"]["Loggers"]["Root"]["AppenderRef"].append({"ref": "FILE"})
        _, _, files = run_probe(yaml.safe_dump(config))
        self.assertEqual(files, ["server.log"])


class Jars(unittest.TestCase):
    def test_the_cache_path_is_the_scripts(self):
        # kafka_jars() mirrors scripts/ensure-kafka.sh's default directory.
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                               "scripts", "ensure-kafka.sh")) as f:
            script = f.read()
        self.assertTrue(re.search(r'\$\{XDG_CACHE_HOME:-\$HOME/\.cache\}/kafka-lag-lab/kafka-\$version', script))
        self.assertIn(".complete", script)


if __name__ == "__main__":
    unittest.main()
