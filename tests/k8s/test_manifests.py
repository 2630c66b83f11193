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
        # What /etc/kafka/docker/run and kafka-run-class.sh write, besides the data.
        for path in ("/opt/kafka/config", "/opt/kafka/logs", "/tmp"):
            self.assertIn(mounts.get(path), empty_dirs, path)
        claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
        data_mount = next(p for p, n in mounts.items() if n in claims)
        self.assertTrue(env_of(c)["KAFKA_LOG_DIRS"].startswith(data_mount + "/"))
        self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
        # The data volume is writable by the image's user.
        self.assertEqual(pod["securityContext"]["fsGroup"], pod["securityContext"]["runAsUser"])

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


class Keda(Rendering, unittest.TestCase):
    target = "k8s/overlays/keda"

    def scaled_object(self):
        return self.get("ScaledObject", "kafka-consumer")

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

    def test_the_trigger_watches_my_group_on_my_new_topic(self):
        (trigger,) = self.scaled_object()["spec"]["triggers"]
        self.assertEqual(trigger["type"], "kafka")
        meta = trigger["metadata"]
        consumer = env_of(self.container("Deployment", "kafka-consumer"))
        self.assertEqual(meta["consumerGroup"], consumer["GROUP_ID"])
        self.assertEqual(meta["topic"], self.config()["data"]["TOPIC"])
        self.assertEqual(meta["offsetResetPolicy"], consumer["AUTO_OFFSET_RESET"])
        self.assertEqual(meta["allowIdleConsumers"], "false")
        # KEDA's operator runs in its own namespace: the bootstrap name must say ours.
        self.assertEqual(meta["bootstrapServers"], f"kafka.{NAMESPACE}.svc:9092")
        # Between one message and a minute of one consumer's work (50 msg/s).
        self.assertTrue(1 < int(meta["lagThreshold"]) < 3000)

    def test_scale_down_is_stabilised(self):
        behavior = self.scaled_object()["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        self.assertGreaterEqual(behavior["scaleDown"]["stabilizationWindowSeconds"], 300)

    def test_the_hpa_owns_the_consumers_replica_count(self):
        self.assertNotIn("replicas", self.get("Deployment", "kafka-consumer")["spec"])

    def test_keda_may_reach_the_brokers(self):
        rules = self.get("NetworkPolicy", "kafka")["spec"]["ingress"]
        namespaces = [f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                      for r in rules for f in r.get("from", []) if "namespaceSelector" in f]
        self.assertIn("keda", namespaces)


class LocalKeda(Keda):
    """The kind profile with the KEDA component: the same scaling, on the smaller Kafka."""
    target = "k8s/overlays/local-keda"

    def test_it_is_the_local_profile(self):
        local = {(d["kind"], d["metadata"]["name"]): d for d in render("k8s/overlays/local")}
        kafka = self.get("StatefulSet", "kafka")["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(kafka["resources"],
                         local[("StatefulSet", "kafka")]["spec"]["template"]["spec"]["containers"][0]["resources"])


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


class External(Rendering, unittest.TestCase):
    target = "k8s/overlays/external"

    def test_the_in_cluster_kafka_is_gone(self):
        kinds = {(d["kind"], d["metadata"]["name"]) for d in self.docs}
        for gone in (("StatefulSet", "kafka"), ("Service", "kafka"), ("Service", "kafka-headless"),
                     ("PodDisruptionBudget", "kafka"), ("NetworkPolicy", "kafka")):
            self.assertNotIn(gone, kinds)

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
