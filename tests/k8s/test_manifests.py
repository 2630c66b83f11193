"""The experiment's facts, asserted on what `kubectl kustomize` renders for the base and each overlay.

    python3 -m unittest discover -s tests/k8s -v

scripts/check-manifests.sh validates the same renderings against Kubernetes' schemas and checkov's
policies; this file checks what those cannot know: names, counts, settings that must agree with each
other (partitions, replication factor, brokers, node ids, group, topic), with the binaries, and with
the Apache Kafka release localkafka/pom.xml pins (the image tag).
"""
import functools
import os
import re
import socket
import subprocess
import unittest
import xml.etree.ElementTree as ET

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMESPACE = "kafka-lag-lab"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


@functools.lru_cache(maxsize=None)
def render(target="k8s"):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, target)], check=True,
                         capture_output=True, text=True).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


@functools.lru_cache(maxsize=None)
def pinned_kafka_version():
    """The Apache Kafka release localkafka/pom.xml pins (<kafka.version>) for the tests, demo and bench."""
    pom = os.path.join(ROOT, "localkafka", "pom.xml")
    # The POM's elements are in Maven's namespace: match the property by its local name.
    versions = [e.text.strip() for e in ET.parse(pom).getroot().iter()
                if e.tag.rsplit("}", 1)[-1] == "kafka.version" and e.text]
    assert len(versions) == 1, f"one <kafka.version> property in {pom}, found {versions}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions[0]), f"a release version in {pom}: {versions[0]!r}"
    return versions[0]


def mebibytes(quantity):
    """A Kubernetes memory quantity (8Mi, 1Gi, 1536Mi) in MiB."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", str(quantity))
    assert m, f"unexpected memory quantity {quantity!r}"
    return int(m.group(1)) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[m.group(2)]


def millicores(quantity):
    q = str(quantity)
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def selects(policy, labels):
    """Whether a NetworkPolicy's podSelector (matchLabels only, as ours are) selects these labels."""
    return set(policy["spec"]["podSelector"].get("matchLabels", {}).items()) <= set(labels.items())


def jvm_heap_mib(java_opts, limit_mib):
    """The heap a JVM takes from its flags: -Xmx, else MaxRAMPercentage of the memory limit, else
    the JVM's default of a quarter."""
    m = re.search(r"-Xmx(\d+)([mg])\b", java_opts)
    if m:
        return int(m.group(1)) * (1024 if m.group(2) == "g" else 1)
    m = re.search(r"-XX:MaxRAMPercentage=(\d+(?:\.\d+)?)", java_opts)
    return limit_mib * (float(m.group(1)) if m else 25.0) / 100


class Rendering:
    """Loads one rendering; with the checks that hold for every one (each TestCase below mixes it in)."""
    target = "k8s"

    @classmethod
    def setUpClass(cls):
        cls.docs = render(cls.target)
        cls.by_name = {(d["kind"], d["metadata"]["name"]): d for d in cls.docs}

    def get(self, kind, name):
        self.assertIn((kind, name), self.by_name, f"{kind}/{name} is rendered for {self.target}")
        return self.by_name[(kind, name)]

    def container(self, kind, name, index=0):
        return self.get(kind, name)["spec"]["template"]["spec"]["containers"][index]

    def config(self):
        """The kafka-clients ConfigMap (its name carries kustomize's hash suffix)."""
        maps = [d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("kafka-clients-")]
        self.assertEqual(len(maps), 1)
        return maps[0]

    def workloads(self):
        for d in self.docs:
            if d["kind"] in WORKLOADS:
                yield d

    def test_every_pod_is_locked_down(self):
        for d in self.workloads():
            spec = d["spec"]["template"]["spec"]
            with self.subTest(d["metadata"]["name"]):
                pod = spec["securityContext"]
                self.assertTrue(pod["runAsNonRoot"])
                self.assertEqual(pod["seccompProfile"]["type"], "RuntimeDefault")
                self.assertFalse(spec["automountServiceAccountToken"])
                self.assertFalse(spec["enableServiceLinks"])
                for c in spec["containers"] + spec.get("initContainers", []):
                    sc = c["securityContext"]
                    uid = sc.get("runAsUser", pod.get("runAsUser"))
                    self.assertIsInstance(uid, int, "a numeric uid, so runAsNonRoot can be checked")
                    self.assertGreater(uid, 0)
                    self.assertTrue(sc["readOnlyRootFilesystem"])
                    self.assertFalse(sc["allowPrivilegeEscalation"])
                    self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                    for kind in ("requests", "limits"):
                        self.assertEqual(set(c["resources"][kind]), {"cpu", "memory"}, kind)

    def test_every_pod_has_a_network_policy(self):
        policies = [d["spec"]["podSelector"].get("matchLabels", {}) for d in self.docs if d["kind"] == "NetworkPolicy"]
        for d in self.workloads():
            labels = d["spec"]["template"]["metadata"]["labels"]
            with self.subTest(d["metadata"]["name"]):
                self.assertTrue(any(set(sel.items()) <= set(labels.items()) for sel in policies))

    def test_everything_lands_in_one_namespace(self):
        for d in self.docs:
            if d["kind"] != "Namespace":
                self.assertEqual(d["metadata"]["namespace"], NAMESPACE, d["metadata"]["name"])

    def test_probes_get_past_the_network_policies(self):
        # A policy whose every rule names its sources (`from`) would, on an engine that does not
        # exempt the pod's own node (kind's kube-network-policies, kubernetes-sigs/kind#3875), drop
        # the kubelet's httpGet and tcpSocket probes: such pods must use exec probes, and any other
        # probe's port must be open to every source.
        policies = [d for d in self.docs if d["kind"] == "NetworkPolicy"
                    and "Ingress" in d["spec"].get("policyTypes", ["Ingress"])]
        for d in self.workloads():
            template = d["spec"]["template"]
            selecting = [p for p in policies if selects(p, template["metadata"]["labels"])]
            for c in template["spec"]["containers"]:
                names = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                    probe = c.get(kind)
                    if not probe or "exec" in probe:
                        continue
                    with self.subTest(f'{d["metadata"]["name"]} {kind}'):
                        action = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                        self.assertIsNotNone(action, probe)
                        port = names.get(action["port"], action["port"])
                        open_to_all = [
                            r for p in selecting for r in p["spec"].get("ingress", [])
                            if not r.get("from") and (not r.get("ports") or any(
                                rp.get("port") in (port, *[n for n, v in names.items() if v == port])
                                for rp in r["ports"]))]
                        self.assertTrue(not selecting or open_to_all,
                                        f"port {port} is open only to named sources: use an exec probe")

    def test_kafka_ui_heap_leaves_room_outside_it(self):
        if ("Deployment", "kafka-ui") not in self.by_name:
            self.skipTest("no Kafka UI in this rendering")
        c = self.container("Deployment", "kafka-ui")
        limit = mebibytes(c["resources"]["limits"]["memory"])
        heap = jvm_heap_mib(env_of(c)["JAVA_OPTS"], limit)
        # Spring Boot with Netty and the Kafka clients: metaspace, code cache, direct buffers,
        # threads and GC structures live outside the heap; 70 % of 512 MiB left 150 MiB for them.
        self.assertGreaterEqual(limit - heap, 256, f"{heap:.0f} MiB heap of a {limit:.0f} MiB limit")
        self.assertGreaterEqual(heap, 256, "heap for the UI itself")
        self.assertGreaterEqual(mebibytes(c["resources"]["requests"]["memory"]), heap)

    def test_checkov_skips_say_why(self):
        for d in self.docs:
            for key, value in d["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    with self.subTest(f'{d["kind"]}/{d["metadata"]["name"]} {key}'):
                        check, _, reason = value.partition("=")
                        self.assertRegex(check, r"^CKV2?_K8S_\d+$")
                        self.assertGreater(len(reason.split()), 5, "a reason, not a word")

    def assertExperimentClients(self):
        """200 producers and 1 consumer in my-group, and the Job making my_new_topic (9 x RF 2)."""
        self.assertEqual(self.get("Deployment", "kafka-producer")["spec"]["replicas"], 200)
        self.assertEqual(self.get("Deployment", "kafka-consumer")["spec"].get("replicas", 1), 1)
        job = self.container("Job", "create-topic")
        self.assertEqual(job["args"], ["create-topic"])
        env = env_of(job)
        self.assertEqual((env["PARTITIONS"], env["REPLICATION_FACTOR"]), ("9", "2"))
        self.assertEqual(self.config()["data"]["TOPIC"], "my_new_topic")
        self.assertEqual(env_of(self.container("Deployment", "kafka-consumer"))["GROUP_ID"], "my-group")


class Base(Rendering, unittest.TestCase):
    def test_the_seed_experiment_200_producers_1_consumer_and_the_topic(self):
        self.assertExperimentClients()

    def test_the_consumer_joins_my_group_from_earliest_and_falls_behind_alone(self):
        spec = self.get("Deployment", "kafka-consumer")["spec"]["template"]["spec"]
        env = env_of(spec["containers"][0])
        self.assertEqual(env["AUTO_OFFSET_RESET"], "earliest")
        # 20 ms a message is 50 msg/s: one consumer falls behind 200 msg/s, nine keep up.
        self.assertEqual(env["PROCESS_DELAY_MS"], "20")
        # The grace period covers SHUTDOWN_TIMEOUT (commit and LeaveGroup), with room for the SIGTERM.
        shutdown = int(env["SHUTDOWN_TIMEOUT"].removesuffix("s"))
        self.assertGreaterEqual(spec["terminationGracePeriodSeconds"], shutdown + 5)

    def test_images(self):
        images = {d["metadata"]["name"]: [c["image"] for c in d["spec"]["template"]["spec"]["containers"]]
                  for d in self.workloads()}
        self.assertEqual(images, {
            "create-topic": ["kafka-lag-lab/admin:dev"],
            "kafka-producer": ["kafka-lag-lab/producer:dev"],
            "kafka-consumer": ["kafka-lag-lab/consumer:dev"],
            # The release the tests, demo and bench run (localkafka/pom.xml): the two cannot drift.
            "kafka": [f"apache/kafka:{pinned_kafka_version()}"],
            "kafka-ui": ["kafbat/kafka-ui:v1.5.0"],
        })

    def test_kafka_is_three_kraft_nodes_with_ids_from_their_ordinals(self):
        sts = self.get("StatefulSet", "kafka")
        self.assertEqual(sts["spec"]["replicas"], 3)
        # The quorum needs two controllers up before any pod is ready: start all three at once.
        self.assertEqual(sts["spec"]["podManagementPolicy"], "Parallel")
        self.assertEqual(sts["spec"]["serviceName"], "kafka-headless")
        c = sts["spec"]["template"]["spec"]["containers"][0]
        env = env_of(c)
        self.assertEqual(env["KAFKA_PROCESS_ROLES"], "broker,controller")
        self.assertRegex(env["CLUSTER_ID"], r"^[A-Za-z0-9_-]{22}$")  # a base64 UUID
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        self.assertEqual(voters, [f"{n}@kafka-{n}.kafka-headless:9093" for n in range(3)])
        # The node id is the pod's ordinal and each broker advertises its own stable name.
        script = c["args"][0]
        self.assertIn('KAFKA_NODE_ID="${HOSTNAME##*-}"', script)
        self.assertIn("PLAINTEXT://${HOSTNAME}.kafka-headless.${POD_NAMESPACE}.svc:9092", script)
        self.assertIn("exec /etc/kafka/docker/run", script)
        self.assertNotIn("KAFKA_NODE_ID", env, "set per pod by the script, not once for all")
        self.assertEqual(env["KAFKA_LISTENERS"], "PLAINTEXT://:9092,CONTROLLER://:9093")
        self.assertEqual(env["KAFKA_CONTROLLER_LISTENER_NAMES"], "CONTROLLER")
        # The image turns every KAFKA_* variable into a property: no service-link variables allowed.
        self.assertFalse(sts["spec"]["template"]["spec"]["enableServiceLinks"])

    def test_kafka_settings_suit_the_experiment(self):
        env = env_of(self.container("StatefulSet", "kafka"))
        brokers = self.get("StatefulSet", "kafka")["spec"]["replicas"]
        topic_rf = int(env_of(self.container("Job", "create-topic"))["REPLICATION_FACTOR"])
        # Clients never create topics (rskafka's metadata requests would, with 1 partition).
        self.assertEqual(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false")
        for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_DEFAULT_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            self.assertLessEqual(int(env[key]), brokers, key)
            self.assertGreaterEqual(int(env[key]), 2, key)
        self.assertLessEqual(topic_rf, brokers)
        # One broker down (the PDB allows it) must not stop writes to the RF-2 topic.
        self.assertLess(int(env["KAFKA_MIN_INSYNC_REPLICAS"]), topic_rf)

    def test_kafka_writes_only_to_its_volumes(self):
        spec = self.get("StatefulSet", "kafka")["spec"]
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        # What /etc/kafka/docker/run and kafka-run-class.sh write, besides the data; LOG_DIR
        # (which kafka-run-class.sh creates if missing) must exist or be writable.
        for path in ("/opt/kafka/config", "/tmp", env_of(c)["LOG_DIR"]):
            self.assertIn(mounts.get(path), empty_dirs, path)
        claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
        data_mount = next(p for p, n in mounts.items() if n in claims)
        self.assertTrue(env_of(c)["KAFKA_LOG_DIRS"].startswith(data_mount + "/"))
        self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
        # The data volume is writable by the image's user.
        self.assertEqual(pod["securityContext"]["fsGroup"], pod["securityContext"]["runAsUser"])

    def test_kafka_logs_to_the_console_only(self):
        # The image's log4j2.yaml writes six hourly-rolled files under /opt/kafka/logs that are never
        # deleted: under an emptyDir's sizeLimit the broker is evicted in the end.
        pod = self.get("StatefulSet", "kafka")["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = env_of(c)
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        self.assertNotIn("/opt/kafka/logs", mounts, "nothing for log files to fill")
        # KAFKA_LOG4J_OPTS names a log4j2 file mounted from a rendered ConfigMap.
        m = re.fullmatch(r"-Dlog4j2\.configurationFile=(/\S+)/([^/\s]+\.yaml)", env["KAFKA_LOG4J_OPTS"])
        self.assertTrue(m, env["KAFKA_LOG4J_OPTS"])
        directory, key = m.groups()
        self.assertTrue(mounts[directory]["readOnly"])
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[directory]["name"])
        config = self.get("ConfigMap", volume["configMap"]["name"])
        log4j2 = yaml.safe_load(config["data"][key])["Configuration"]
        appenders = log4j2["Appenders"]
        self.assertEqual(set(appenders), {"Console"}, "console appenders only, no (Rolling)File")
        consoles = appenders["Console"] if isinstance(appenders["Console"], list) else [appenders["Console"]]
        names = {a["name"] for a in consoles}
        self.assertTrue(all(a.get("target", "SYSTEM_OUT") in ("SYSTEM_OUT", "SYSTEM_ERR") for a in consoles))
        loggers = log4j2["Loggers"]
        refs = []
        for lg in [loggers["Root"], *loggers.get("Logger", [])]:
            ref = lg.get("AppenderRef") or []
            refs += ref if isinstance(ref, list) else [ref]
        self.assertTrue(refs, "the root logger writes somewhere")
        self.assertTrue({r["ref"] for r in refs} <= names, refs)
        self.assertEqual(loggers["Root"]["level"], "INFO")
        # Loggers that had a file of their own and additivity false would now be silent.
        for lg in loggers.get("Logger", []):
            self.assertNotEqual(lg.get("additivity"), False, lg["name"])
        levels = {lg["name"]: lg["level"] for lg in loggers["Logger"]}
        self.assertEqual(levels["kafka.request.logger"], "WARN")
        self.assertEqual(levels["state.change.logger"], "INFO")
        # The GC log goes to the console too.
        self.assertNotIn("file=", env["KAFKA_GC_LOG_OPTS"])
        self.assertRegex(env["KAFKA_GC_LOG_OPTS"], r"^-Xlog:gc[^:]*:(stdout|stderr)(:|$)")

    def test_kafka_probes_are_exec_probes_that_connect_to_the_listener(self):
        c = self.container("StatefulSet", "kafka")
        port = next(p["containerPort"] for p in c["ports"] if p["name"] == "kafka")
        self.assertIn(f"PLAINTEXT://:{port}", env_of(c)["KAFKA_LISTENERS"], "it listens on loopback too")
        commands = set()
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c[kind]
            self.assertEqual(set(probe) & {"exec", "httpGet", "tcpSocket", "grpc"}, {"exec"}, kind)
            self.assertGreaterEqual(probe["timeoutSeconds"], 2, kind)
            commands.add(tuple(probe["exec"]["command"]))
        (command,) = commands
        self.assertEqual(command[:2], ("/bin/bash", "-c"), "bash ships in apache/kafka")
        self.assertIn(f"/dev/tcp/127.0.0.1/{port}", command[2])
        # The command itself: 0 against a listening port, non-zero against a closed one.
        with socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            open_port = listening.getsockname()[1]
            ok = subprocess.run(["bash", "-c", command[2].replace(str(port), str(open_port))], timeout=10)
            self.assertEqual(ok.returncode, 0)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        refused = subprocess.run(["bash", "-c", command[2].replace(str(port), str(closed_port))],
                                 capture_output=True, timeout=10)
        self.assertNotEqual(refused.returncode, 0)

    def test_brokers_prefer_separate_nodes_and_zones(self):
        pod = self.get("StatefulSet", "kafka")["spec"]["template"]
        labels = pod["metadata"]["labels"]
        anti = pod["spec"]["affinity"]["podAntiAffinity"]
        # Soft: a one-node kind cluster must still run all three.
        self.assertNotIn("requiredDuringSchedulingIgnoredDuringExecution", anti)
        for c in pod["spec"].get("topologySpreadConstraints", []):
            self.assertEqual(c["whenUnsatisfiable"], "ScheduleAnyway")
        terms = {t["podAffinityTerm"]["topologyKey"]: t for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]}
        self.assertIn("kubernetes.io/hostname", terms)
        for key, t in terms.items():
            with self.subTest(key):
                self.assertLessEqual(t["podAffinityTerm"]["labelSelector"]["matchLabels"].items(), labels.items())
        self.assertGreater(terms["kubernetes.io/hostname"]["weight"],
                           terms.get("topology.kubernetes.io/zone", {"weight": 0})["weight"])

    def test_kafka_heap_fits_its_memory_limit(self):
        c = self.container("StatefulSet", "kafka")
        heap = int(re.search(r"-Xmx(\d+)m", env_of(c)["KAFKA_HEAP_OPTS"]).group(1))
        # Heap plus page-cache-free off-heap (direct buffers, metaspace, threads): limit >= 1.5 x heap.
        self.assertGreaterEqual(mebibytes(c["resources"]["limits"]["memory"]), 1.5 * heap)
        self.assertGreaterEqual(mebibytes(c["resources"]["requests"]["memory"]), heap)

    def test_services_address_brokers_individually_and_through_a_bootstrap(self):
        labels = self.get("StatefulSet", "kafka")["spec"]["template"]["metadata"]["labels"]
        headless = self.get("Service", "kafka-headless")["spec"]
        self.assertEqual(headless["clusterIP"], "None")
        self.assertTrue(headless["publishNotReadyAddresses"])
        bootstrap = self.get("Service", "kafka")["spec"]
        for svc in (headless, bootstrap):
            self.assertTrue(set(svc["selector"].items()) <= set(labels.items()))
        self.assertIn(9092, [p["port"] for p in bootstrap["ports"]])
        self.assertEqual({p["port"] for p in headless["ports"]}, {9092, 9093})
        # Our clients bootstrap from it.
        self.assertEqual(self.config()["data"]["KAFKA_BROKERS"], "kafka:9092")

    def test_kafka_survives_one_voluntary_disruption(self):
        pdb = self.get("PodDisruptionBudget", "kafka")["spec"]
        self.assertEqual(pdb["maxUnavailable"], 1)
        labels = self.get("StatefulSet", "kafka")["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(set(pdb["selector"]["matchLabels"].items()) <= set(labels.items()))

    def test_kafka_ui_points_at_the_bootstrap_service(self):
        ui = self.container("Deployment", "kafka-ui")
        env = {e["name"]: e for e in ui["env"]}
        ref = env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]["valueFrom"]["configMapKeyRef"]
        self.assertEqual(ref["name"], self.config()["metadata"]["name"])
        self.assertEqual(self.config()["data"][ref["key"]], "kafka:9092")
        self.assertTrue(env["KAFKA_CLUSTERS_0_NAME"]["value"])
        self.assertIn(("Service", "kafka-ui"), self.by_name)

    def test_200_producers_fit_a_small_cluster(self):
        c = self.container("Deployment", "kafka-producer")
        replicas = self.get("Deployment", "kafka-producer")["spec"]["replicas"]
        requests, limits = c["resources"]["requests"], c["resources"]["limits"]
        # Measured 1.71 MiB peak RSS at 1 Hz (BENCHMARKS.md): 1.9 leaves headroom in the request, the limit more.
        self.assertGreaterEqual(mebibytes(requests["memory"]), 2 * 1.9)
        self.assertGreaterEqual(mebibytes(limits["memory"]), 4 * mebibytes(requests["memory"]))
        self.assertLessEqual(replicas * millicores(requests["cpu"]), 1000)
        self.assertLessEqual(replicas * mebibytes(requests["memory"]), 2048)

    def test_long_running_pods_have_probes_and_scrape_annotations(self):
        for d in self.workloads():
            if d["kind"] == "Job":
                continue
            template = d["spec"]["template"]
            with self.subTest(d["metadata"]["name"]):
                for c in template["spec"]["containers"]:
                    self.assertIn("livenessProbe", c)
                    self.assertIn("readinessProbe", c)
                self.assertIn("prometheus.io/scrape", template["metadata"]["annotations"])
        for name in ("kafka-producer", "kafka-consumer"):
            with self.subTest(name):
                d = self.get("Deployment", name)
                c = d["spec"]["template"]["spec"]["containers"][0]
                self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
                self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
                self.assertEqual(c["livenessProbe"]["httpGet"]["port"], "metrics")
                annotations = d["spec"]["template"]["metadata"]["annotations"]
                self.assertEqual(annotations["prometheus.io/scrape"], "true")
                self.assertEqual(annotations["prometheus.io/port"], str(c["ports"][0]["containerPort"]))
                self.assertEqual(env_of(c)["METRICS_ADDR"], f"0.0.0.0:{c['ports'][0]['containerPort']}")

    def test_the_job_waits_for_kafka_instead_of_failing_at_once(self):
        job = self.get("Job", "create-topic")
        env = env_of(job["spec"]["template"]["spec"]["containers"][0])
        self.assertRegex(env["ADMIN_TIMEOUT"], r"^\d+m$")
        self.assertGreaterEqual(int(env["ADMIN_TIMEOUT"][:-1]), 3)
        self.assertGreaterEqual(job["spec"]["backoffLimit"], 3)


class Local(Rendering, unittest.TestCase):
    target = "k8s/overlays/local"

    def test_the_experiment_is_unchanged(self):
        self.assertExperimentClients()
        self.assertEqual(self.get("StatefulSet", "kafka")["spec"]["replicas"], 3, "RF 2 stays valid")

    def test_kafka_is_smaller_than_in_the_base(self):
        base = {(d["kind"], d["metadata"]["name"]): d for d in render("k8s")}
        local = self.container("StatefulSet", "kafka")
        big = base[("StatefulSet", "kafka")]["spec"]["template"]["spec"]["containers"][0]
        self.assertLess(mebibytes(local["resources"]["requests"]["memory"]),
                        mebibytes(big["resources"]["requests"]["memory"]))
        heap = int(re.search(r"-Xmx(\d+)m", env_of(local)["KAFKA_HEAP_OPTS"]).group(1))
        self.assertGreaterEqual(mebibytes(local["resources"]["limits"]["memory"]), 1.5 * heap)
        # Strategic merge replaced the heap, it did not add a second variable.
        self.assertEqual([e["name"] for e in local["env"]].count("KAFKA_HEAP_OPTS"), 1)

    def test_the_kind_node_may_run_every_pod(self):
        with open(os.path.join(ROOT, "k8s/overlays/local/kind-config.yaml")) as f:
            cluster = yaml.safe_load(f)
        kubelet = [yaml.safe_load(p) for p in cluster["kubeadmConfigPatches"]]
        (max_pods,) = [p["maxPods"] for p in kubelet if p["kind"] == "KubeletConfiguration"]
        ours = sum(d["spec"].get("replicas", 1) for d in self.workloads()) + 8  # 9 consumers at most, + the lag pod
        self.assertGreaterEqual(max_pods, ours + 15)  # kind's own pods
        self.assertLessEqual(max_pods, 254)  # the node's /24 of pod addresses
        self.assertEqual([n["role"] for n in cluster["nodes"]], ["control-plane"])

    def test_the_readme_raises_the_hosts_inotify_limits_for_that_many_pods(self):
        # About 215 pods on one kind node exhaust a host's default inotify limits (128 instances per
        # user: every pod's containerd shim and the kubelet take some), and pods then fail with
        # "too many open files". README.md's kind walkthrough says how to raise them, before
        # `kind create cluster`, with at least kind's own suggested values.
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        kind_section = readme[readme.index("## On a cluster: kind"):]
        wanted = {"fs.inotify.max_user_instances": 512, "fs.inotify.max_user_watches": 524288}
        for key, least in wanted.items():
            with self.subTest(key):
                m = re.search(rf"sysctl -w {re.escape(key)}=(\d+)", kind_section)
                self.assertTrue(m, f"README.md's kind section sets {key}")
                self.assertGreaterEqual(int(m.group(1)), least)
                self.assertLess(m.start(), kind_section.index("kind create cluster"),
                                "raised before the cluster is created")
        with open(os.path.join(ROOT, "k8s", "README.md")) as f:
            self.assertTrue("fs.inotify.max_user_instances" in f.read(), "k8s/README.md says so too")


class External(Rendering, unittest.TestCase):
    target = "k8s/overlays/external"

    def test_the_in_cluster_kafka_is_gone(self):
        kinds = {(d["kind"], d["metadata"]["name"]) for d in self.docs}
        for gone in (("StatefulSet", "kafka"), ("Service", "kafka"), ("Service", "kafka-headless"),
                     ("PodDisruptionBudget", "kafka"), ("NetworkPolicy", "kafka")):
            self.assertNotIn(gone, kinds)
        self.assertFalse([d for d in self.docs if d["metadata"]["name"].startswith("kafka-log4j2")],
                         "the brokers' log4j2 ConfigMap went with them")

    def test_clients_and_kafka_ui_use_the_external_brokers(self):
        self.assertExperimentClients()
        brokers = self.config()["data"]["KAFKA_BROKERS"]
        self.assertNotIn("kafka:9092", brokers)
        self.assertRegex(brokers, r"^[a-z0-9.-]+:\d+(,[a-z0-9.-]+:\d+)*$")
        ui = {e["name"]: e for e in self.container("Deployment", "kafka-ui")["env"]}
        ref = ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]["valueFrom"]["configMapKeyRef"]
        self.assertEqual(ref["name"], self.config()["metadata"]["name"])


if __name__ == "__main__":
    unittest.main()
