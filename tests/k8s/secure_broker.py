"""One Apache Kafka broker on this machine with k8s/overlays/secure's settings as rendered: what
test_secure.py's SecureBroker connects librdkafka and Kafka's Java client to, and what
tests/images/secure_image.py runs the admin image against (`make images-check`).

server.properties is made from the kafka container's KAFKA_* variables the way the image's
KafkaDockerWrapper makes it, the data directory is formatted by the format-storage init
container's script (with Kafka's StorageTool from the jars scripts/ensure-kafka.sh caches), and the
keystore is joined as the start script joins it, with the certificates and passwords of
scripts/make-kafka-secrets.sh --san localhost. Only what a single node on localhost needs differs:
ports, node id, quorum, replication factors.

    with Broker() as kafka:
        kafka.bootstrap   # localhost:<port>, the CLIENT listener (SASL_SSL)
        kafka.secrets     # make-kafka-secrets.sh's output: ca.crt, client.crt, password-admin, secrets.yaml...
"""
import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from test_kafka_logging import JAVA, kafka_jars
from test_manifests import ROOT, env_of, render

SCRIPT = os.path.join(ROOT, "scripts", "make-kafka-secrets.sh")
OPENSSL = shutil.which("openssl")
OVERLAY = "k8s/overlays/secure"

# Variables the image's scripts use themselves; KafkaDockerWrapper leaves them out of server.properties.
NOT_PROPERTIES = ("KAFKA_HEAP_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS",
                  "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_LOG4J_LOGGERS", "KAFKA_LOG4J_ROOT_LOGLEVEL")


def run_script(out, *args, check=True):
    return subprocess.run([SCRIPT, "--out", out, *args], capture_output=True, text=True, check=check)


def script_users():
    with open(SCRIPT) as f:
        (line,) = [line for line in f if line.startswith("users=(")]
    return shlex.split(line.strip()[len("users=("):-1])


def docker_property(name):
    """KafkaDockerWrapper's name for a KAFKA_* variable: _ -> ., then ... -> -, then .. -> _."""
    return name.removeprefix("KAFKA_").lower().replace("_", ".").replace("...", "-").replace("..", "_")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def _die_with_parent():
    """In the broker's process before exec: SIGKILL it when its parent dies (Linux's
    PR_SET_PDEATHSIG), so that a killed test or check leaves no broker behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def missing():
    """Why a broker cannot be started here (None when it can)."""
    if not JAVA:
        return "no java on PATH"
    if not kafka_jars():
        return "the Kafka jars are not cached (make deps)"
    if not OPENSSL:
        return "openssl is not installed (scripts/make-kafka-secrets.sh needs it)"
    return None


class Broker:
    """Starts the broker (in a temporary directory, removed by stop()); raises RuntimeError, with
    the end of the broker's log, when it does not start within `start_timeout` seconds."""

    def __init__(self, start_timeout=120):
        started = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix="secure-broker-")
        self.process = None
        self.log = None
        try:
            self._start(start_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _start(self, start_timeout):
        self.docs = docs = render(OVERLAY)
        (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
        pod = sts["spec"]["template"]["spec"]
        (self.init,) = pod["initContainers"]
        kafka = pod["containers"][0]
        self.secrets = os.path.join(self.dir, "secrets")
        run_script(self.secrets, "--san", "localhost")
        # The Secret files where the pods mount them, here under the temporary directory.
        self.tls = os.path.join(self.dir, "etc", "kafka-tls")
        os.makedirs(self.tls)
        for key, name in (("ca.crt", "ca.crt"), ("tls.crt", "broker.crt"), ("tls.key", "broker.key")):
            shutil.copy(os.path.join(self.secrets, name), os.path.join(self.tls, key))
        client, controller, internal = free_ports(3)
        self.bootstrap = f"localhost:{client}"
        env = env_of(kafka)
        props = {docker_property(k): v for k, v in env.items() if k.startswith("KAFKA_") and k not in NOT_PROPERTIES}
        logs = os.path.join(self.dir, "data")
        voters = f"0@localhost:{controller}"
        listeners = env["KAFKA_LISTENERS"].replace(":9092", f":{client}").replace(":9093", f":{controller}") \
            .replace(":9094", f":{internal}")
        script = kafka["args"][0]
        (advertised,) = re.findall(r'KAFKA_ADVERTISED_LISTENERS="([^"]+)"', script)
        advertised = re.sub(r"\$\{HOSTNAME\}\.kafka-headless\.\$\{POD_NAMESPACE\}\.svc", "localhost", advertised)
        advertised = advertised.replace(":9092", f":{client}").replace(":9094", f":{internal}")
        keystore = os.path.join(self.dir, "etc", "kafka-keystore", "keystore.pem")
        os.makedirs(os.path.dirname(keystore))
        props.update({
            "node.id": "0", "controller.quorum.voters": voters, "listeners": listeners,
            "advertised.listeners": advertised, "log.dirs": logs, "ssl.keystore.location": keystore,
            "ssl.truststore.location": os.path.join(self.tls, "ca.crt"),
            "offsets.topic.replication.factor": "1", "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1", "default.replication.factor": "1",
        })
        assert props["ssl.keystore.type"] == "PEM" and props["listener.security.protocol.map"].startswith("CLIENT:SASL_SSL")
        self.properties = os.path.join(self.dir, "server.properties")
        with open(self.properties, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in sorted(props.items()))
        # The start script's keystore line, on these paths.
        (join,) = [line for line in script.splitlines() if "keystore.pem" in line]
        subprocess.run(["bash", "-c", join.replace("/etc/kafka-tls", self.tls)
                        .replace(env["KAFKA_SSL_KEYSTORE_LOCATION"], keystore)], check=True)
        # format-storage, with the users' Secret files and Kafka's StorageTool.
        scram = os.path.join(self.dir, "scram")
        self.passwords = {}
        for user in script_users():
            os.makedirs(os.path.join(scram, user))
            with open(os.path.join(self.secrets, f"password-{user}")) as f:
                self.passwords[user] = f.read()
            for key, value in (("username", user), ("password", self.passwords[user])):
                with open(os.path.join(scram, user, key), "w") as f:
                    f.write(value)
        tool = os.path.join(self.dir, "kafka-storage.sh")
        with open(tool, "w") as f:
            f.write(f'#!/bin/sh\nexec {shlex.quote(JAVA)} -Xmx256m -cp {shlex.quote(kafka_jars())}/"*" kafka.tools.StorageTool "$@"\n')
        os.chmod(tool, 0o755)
        init = (self.init["args"][0].replace("/opt/kafka/bin/kafka-storage.sh", tool).replace("/etc/kafka-scram", scram)
                .replace("/tmp/format.properties", os.path.join(self.dir, "format.properties")))
        subprocess.run(["bash", "-c", init], check=True, capture_output=True, timeout=120,
                       env=dict(os.environ, HOSTNAME="kafka-0", CLUSTER_ID=env["CLUSTER_ID"],
                                KAFKA_CONTROLLER_QUORUM_VOTERS=voters, KAFKA_LOG_DIRS=logs))
        self.log = open(os.path.join(self.dir, "broker.log"), "w+")
        self.process = subprocess.Popen([JAVA, "-Xmx384m", "-cp", os.path.join(kafka_jars(), "*"), "kafka.Kafka",
                                         self.properties], stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            with open(self.log.name) as f:
                if "Kafka Server started" in f.read():
                    return
            time.sleep(0.5)
        with open(self.log.name) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"the broker did not start (exit {self.process.poll()}); the end of its log:\n{tail}")

    def stop(self):
        """Stops the broker (SIGTERM, SIGKILL after 30 s) and removes its directory. Idempotent."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
