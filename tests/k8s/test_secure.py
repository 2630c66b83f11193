"""Secure Kafka (issue #15): components/secure on the base (overlays/secure), with KEDA's Kafka scaler
(overlays/secure-keda-kafka) and with cert-manager's certificates (overlays/secure-cert-manager);
and scripts/make-kafka-secrets.sh, which makes the Secrets they mount.

    python3 -m unittest discover -s tests/k8s -v

What the renderings must say: every client of ours (the create-topic Job, producers, consumer,
exporter) has SECURITY_PROTOCOL=SASL_SSL and SCRAM-SHA-512, reads its password from a file of a
Secret volume (SASL_PASSWORD_FILE) and its CA, certificate and key from another; no container has a
secret in its environment; the brokers' client listener is SASL_SSL with SCRAM-SHA-512, every
listener TLS from PEM files of Secret kafka-broker-tls; the SCRAM users the brokers are formatted
with are the users the clients, Kafka UI and KEDA log in as. The script's output is checked with
openssl (the chain, the SANs, hostname verification) and against the Secrets the renderings mount.
With Java and the cached Kafka jars (make deps), the init container's format script is run with
Kafka's own StorageTool.
"""
import glob
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import unittest

import yaml

import secure_broker
from secure_broker import OPENSSL, run_script, script_users
from test_kafka_logging import JAVA, kafka_jars
from test_manifests import NAMESPACE, Rendering, env_of, render

OURS = ("kafka-lag-lab/admin", "kafka-lag-lab/producer", "kafka-lag-lab/consumer")


def openssl(*args, check=True):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=check)


def sans(cert):
    text = openssl("x509", "-in", cert, "-noout", "-ext", "subjectAltName").stdout
    return set(re.findall(r"DNS:([^,\s]+)", text))


def secrets_in(path):
    with open(path) as f:
        return {d["metadata"]["name"]: d for d in yaml.safe_load_all(f) if d}


def listener_map(env):
    """{listener name: (port, security protocol)} from KAFKA_LISTENERS and the protocol map."""
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    out = {}
    for listener in env["KAFKA_LISTENERS"].split(","):
        name, _, port = re.fullmatch(r"([A-Z_]+)://([^:]*):(\d+)", listener).groups()
        out[name] = (int(port), protocols[name])
    return out


class SecureChecks(Rendering):
    """What every rendering with components/secure shares."""

    def pod(self, kind, name):
        return self.get(kind, name)["spec"]["template"]["spec"]

    def resolved_env(self, container):
        """The container's environment as the kubelet builds it: envFrom ConfigMaps, then env."""
        env = {}
        for source in container.get("envFrom", []):
            self.assertNotIn("secretRef", source, f'{container["name"]}: a Secret as environment')
            env.update(self.get("ConfigMap", source["configMapRef"]["name"])["data"])
        env.update(env_of(container))
        return env

    def secret_file(self, pod, container, path):
        """(Secret name, key) of the file at `path` in `container`, which must come from a Secret volume."""
        volumes = {v["name"]: v for v in pod["volumes"]}
        for m in container.get("volumeMounts", []):
            directory = m["mountPath"].rstrip("/") + "/"
            if path.startswith(directory):
                volume = volumes[m["name"]]
                self.assertIn("secret", volume, f"{path} is in a Secret volume")
                self.assertTrue(m.get("readOnly"), f"{path}: mounted read-only")
                relative = path[len(directory):]
                items = volume["secret"].get("items")
                keys = {i["path"]: i["key"] for i in items} if items else {relative: relative}
                self.assertIn(relative, keys, f"{path} is a key of Secret {volume['secret']['secretName']}")
                # Readable by the pod's uid: group-readable, the group being the pod's fsGroup.
                self.assertEqual(volume["secret"].get("defaultMode", 0o644) & 0o007, 0, f"{path}: not world-readable")
                self.assertIsNotNone(pod["securityContext"].get("fsGroup"), f"{path}: an fsGroup owns the files")
                return volume["secret"]["secretName"], keys[relative]
        self.fail(f"{path} is not under any of {container['name']}'s mounts")

    def clients(self):
        """Every container of ours (our images), with its pod: the Job, producers, consumer, exporter."""
        for d in self.workloads():
            pod = d["spec"]["template"]["spec"]
            for c in pod["containers"]:
                if c["image"].split(":")[0] in OURS:
                    yield d["metadata"]["name"], pod, c

    def brokers(self):
        return env_of(self.container("StatefulSet", "kafka"))

    def test_the_experiment_is_unchanged(self):
        self.assertExperimentClients()

    def test_every_client_of_ours_speaks_sasl_ssl_with_a_password_file(self):
        names = [name for name, _, _ in self.clients()]
        self.assertTrue({"create-topic", "kafka-producer", "kafka-consumer"} <= set(names), names)
        for name, pod, c in self.clients():
            with self.subTest(name):
                env = self.resolved_env(c)
                self.assertEqual(env["SECURITY_PROTOCOL"], "SASL_SSL")
                self.assertEqual(env["SASL_MECHANISM"], "SCRAM-SHA-512")
                self.assertEqual(env["SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"], "https")
                self.assertNotIn("SASL_PASSWORD", env, "the password is a file, never a value")
                user = env["SASL_USERNAME"]
                self.assertEqual(env["SASL_PASSWORD_FILE"], "/etc/kafka-sasl/password")
                self.assertEqual(self.secret_file(pod, c, env["SASL_PASSWORD_FILE"]), (f"kafka-user-{user}", "password"))
                for var, path, key in (("SSL_CA_LOCATION", "/etc/kafka-tls/ca.crt", "ca.crt"),
                                       ("SSL_CERTIFICATE_LOCATION", "/etc/kafka-tls/tls.crt", "tls.crt"),
                                       ("SSL_KEY_LOCATION", "/etc/kafka-tls/tls.key", "tls.key")):
                    self.assertEqual(env[var], path)
                    self.assertEqual(self.secret_file(pod, c, path), ("kafka-client-tls", key))
                # They bootstrap from the client listener.
                port = int(env["KAFKA_BROKERS"].rsplit(":", 1)[1])
                self.assertEqual(listener_map(self.brokers())["CLIENT"], (port, "SASL_SSL"))

    def test_the_job_and_the_exporter_are_admin_the_others_their_own_user(self):
        users = {name: self.resolved_env(c)["SASL_USERNAME"] for name, _, c in self.clients()}
        expected = {"create-topic": "admin", "kafka-producer": "producer", "kafka-consumer": "consumer",
                    "kafka-lag-exporter": "admin"}
        self.assertEqual(users, {k: v for k, v in expected.items() if k in users})

    def test_no_secret_in_any_environment(self):
        # Names that would hold a secret are allowed only as paths (_FILE, _LOCATION) or, for a JAAS
        # line, with placeholders in place of the password.
        secretish = re.compile(r"PASSWORD|SECRET|TOKEN|JAAS|CREDENTIAL", re.I)
        for d in self.workloads():
            pod = d["spec"]["template"]["spec"]
            for c in pod["containers"] + pod.get("initContainers", []):
                for name, value in self.resolved_env(c).items():
                    with self.subTest(f'{d["metadata"]["name"]}/{c["name"]} {name}'):
                        entry = next((e for e in c.get("env", []) if e["name"] == name), {})
                        self.assertNotIn("secretKeyRef", entry.get("valueFrom", {}))
                        if not secretish.search(name) or name.endswith(("_FILE", "_LOCATION")):
                            continue
                        self.assertIsNotNone(value)
                        for m in re.finditer(r'password="([^"]*)"', value):
                            self.assertRegex(m.group(1), r"^\$\{[a-z0-9.-]+\}$", "a placeholder, not a password")
                        self.assertNotRegex(value, r'password=(?!")', value)

    def test_brokers_client_listener_is_sasl_ssl_with_scram(self):
        env = self.brokers()
        listeners = listener_map(env)
        self.assertEqual(listeners["CLIENT"], (9092, "SASL_SSL"))
        self.assertEqual(env["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"], "SCRAM-SHA-512")
        self.assertEqual(env["KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___512_SASL_JAAS_CONFIG"],
                         "org.apache.kafka.common.security.scram.ScramLoginModule required;")
        # Nothing in the clear: the quorum and replication are TLS too, with client certificates.
        self.assertEqual({p for _, p in listeners.values()}, {"SASL_SSL", "SSL"})
        self.assertEqual(listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]][1], "SSL")
        self.assertEqual(listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]][1], "SSL")
        self.assertEqual(env["KAFKA_SSL_CLIENT_AUTH"], "required")
        # A SASL_SSL listener asks for certificates only when told so itself (KIP-684).
        self.assertEqual(env["KAFKA_LISTENER_NAME_CLIENT_SSL_CLIENT_AUTH"], "required")
        self.assertEqual(env["KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"], "https")
        # The Service our clients bootstrap from is the client listener.
        (svc_port,) = [p for p in self.get("Service", "kafka")["spec"]["ports"]]
        self.assertEqual(svc_port["port"], listeners["CLIENT"][0])
        headless = {p["port"] for p in self.get("Service", "kafka-headless")["spec"]["ports"]}
        self.assertEqual(headless, {port for port, _ in listeners.values()})
        c = self.container("StatefulSet", "kafka")
        self.assertEqual({p["containerPort"] for p in c["ports"]}, headless)

    def test_brokers_advertise_named_listeners_only(self):
        # The image's configure script takes "SSL://" in KAFKA_ADVERTISED_LISTENERS for its JKS
        # set-up (keystore password files), which a PEM keystore cannot satisfy.
        script = self.container("StatefulSet", "kafka")["args"][0]
        (advertised,) = re.findall(r'KAFKA_ADVERTISED_LISTENERS="([^"]+)"', script)
        self.assertNotIn("SSL://", advertised)
        self.assertNotIn("PLAINTEXT", advertised)
        names = {a.split("://")[0] for a in advertised.split(",")}
        self.assertEqual(names, {"CLIENT", env_of(self.container("StatefulSet", "kafka"))["KAFKA_INTER_BROKER_LISTENER_NAME"]})
        self.assertIn("${HOSTNAME}.kafka-headless.${POD_NAMESPACE}.svc", advertised)
        self.assertIn('KAFKA_NODE_ID="${HOSTNAME##*-}"', script)
        self.assertTrue(script.rstrip().endswith("exec /etc/kafka/docker/run"))

    def test_brokers_pem_keystore_and_truststore_come_from_the_broker_secret(self):
        pod = self.pod("StatefulSet", "kafka")
        c = pod["containers"][0]
        env = env_of(c)
        self.assertEqual((env["KAFKA_SSL_KEYSTORE_TYPE"], env["KAFKA_SSL_TRUSTSTORE_TYPE"]), ("PEM", "PEM"))
        self.assertEqual(self.secret_file(pod, c, env["KAFKA_SSL_TRUSTSTORE_LOCATION"]), ("kafka-broker-tls", "ca.crt"))
        # The keystore file is the key and the chain of that Secret, written by the start script
        # into a memory emptyDir (Kafka's PEM keystore is one file).
        keystore = env["KAFKA_SSL_KEYSTORE_LOCATION"]
        script = c["args"][0]
        m = re.search(r"cat (\S+) (\S+) >" + re.escape(keystore), script)
        self.assertTrue(m, f"the start script writes {keystore}")
        self.assertEqual([self.secret_file(pod, c, p) for p in m.groups()],
                         [("kafka-broker-tls", "tls.key"), ("kafka-broker-tls", "tls.crt")])
        self.assertIn("umask 077", script)
        self.assertLess(script.index(keystore), script.index("exec /etc/kafka/docker/run"))
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[os.path.dirname(keystore)])
        self.assertEqual(volume["emptyDir"]["medium"], "Memory")
        self.assertNotIn("KAFKA_SSL_KEYSTORE_PASSWORD", env)
        self.assertNotIn("KAFKA_SSL_KEY_PASSWORD", env)

    def test_brokers_are_formatted_with_every_users_scram_credentials(self):
        pod = self.pod("StatefulSet", "kafka")
        (init,) = [i for i in pod["initContainers"] if i["name"] == "format-storage"]
        kafka = pod["containers"][0]
        self.assertEqual(init["image"], kafka["image"])
        init_env, env = env_of(init), env_of(kafka)
        for key in ("CLUSTER_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_LOG_DIRS"):
            self.assertEqual(init_env[key], env[key], key)
        # The same data volume at the same place.
        data = {m["name"]: m["mountPath"] for m in kafka["volumeMounts"]}["data"]
        self.assertEqual({m["name"]: m["mountPath"] for m in init["volumeMounts"]}["data"], data)
        script = init["args"][0]
        self.assertIn("kafka-storage.sh format", script)
        self.assertIn("--ignore-formatted", script)
        self.assertIn('--add-scram "SCRAM-SHA-512=[name=', script)
        self.assertIn("node.id=${HOSTNAME##*-}", script)
        # The users: one directory of the projected volume per kafka-user-* Secret.
        mount = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}["scram-users"]
        self.assertIn(f"for user in {mount}/*/", script)
        self.assertNotIn("scram-users", {m["name"] for m in kafka["volumeMounts"]}, "the broker never sees them")
        volume = next(v for v in pod["volumes"] if v["name"] == "scram-users")
        users = {}
        for source in volume["projected"]["sources"]:
            items = {i["key"]: i["path"] for i in source["secret"]["items"]}
            user = source["secret"]["name"].removeprefix("kafka-user-")
            self.assertEqual(items, {"username": f"{user}/username", "password": f"{user}/password"})
            users[user] = source["secret"]["name"]
        # Every user a client logs in as, Kafka UI's and KEDA's too.
        self.assertEqual(set(users), set(script_users()))
        for _, _, c in self.clients():
            self.assertIn(self.resolved_env(c)["SASL_USERNAME"], users)

    def test_the_quorum_and_replication_ports_admit_only_the_brokers(self):
        policy = self.get("NetworkPolicy", "kafka")["spec"]
        brokers = self.get("StatefulSet", "kafka")["spec"]["template"]["metadata"]["labels"]
        for rule in policy["ingress"]:
            ports = {p["port"] for p in rule["ports"]}
            if ports & {9093, 9094}:
                with self.subTest(str(rule)):
                    (source,) = rule["from"]
                    self.assertEqual(set(source), {"podSelector"})
                    self.assertLessEqual(source["podSelector"]["matchLabels"].items(), brokers.items())
        self.assertTrue(any({p["port"] for p in r["ports"]} == {9092} and r["from"] == [{"podSelector": {}}]
                            for r in policy["ingress"]), "the namespace's pods reach the client listener")

    def test_kafka_ui_logs_in_like_our_clients(self):
        pod = self.pod("Deployment", "kafka-ui")
        c = pod["containers"][0]
        env = env_of(c)
        prop = lambda key: env["KAFKA_CLUSTERS_0_PROPERTIES_" + key.upper().replace(".", "_")]  # noqa: E731
        self.assertEqual(prop("security.protocol"), "SASL_SSL")
        self.assertEqual(prop("sasl.mechanism"), self.brokers()["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"])
        self.assertEqual(prop("ssl.endpoint.identification.algorithm"), "https")
        self.assertEqual(prop("ssl.truststore.type"), "PEM")
        self.assertEqual(self.secret_file(pod, c, prop("ssl.truststore.location")), ("kafka-client-tls", "ca.crt"))
        # The JAAS line names Spring properties read from files of Secret kafka-user-kafka-ui.
        jaas = prop("sasl.jaas.config")
        m = re.fullmatch(r'org\.apache\.kafka\.common\.security\.scram\.ScramLoginModule required '
                         r'username="\$\{([a-z.-]+)\}" password="\$\{([a-z.-]+)\}";', jaas)
        self.assertTrue(m, jaas)
        tree = re.fullmatch(r"configtree:(/\S+/)", env["SPRING_CONFIG_IMPORT"]).group(1)
        for placeholder, key in zip(m.groups(), ("username", "password")):
            path = tree + placeholder.replace(".", "/")
            self.assertEqual(self.secret_file(pod, c, path), ("kafka-user-kafka-ui", key))
        # The client certificate: a PEM keystore file the init container writes from Secret
        # kafka-client-tls into a memory emptyDir.
        self.assertEqual(prop("ssl.keystore.type"), "PEM")
        keystore = prop("ssl.keystore.location")
        (init,) = pod["initContainers"]
        self.assertEqual(init["image"], c["image"])
        m = re.search(r"cat (\S+) (\S+) >" + re.escape(keystore), init["command"][-1])
        self.assertTrue(m, init["command"])
        self.assertEqual([self.secret_file(pod, init, p) for p in m.groups()],
                         [("kafka-client-tls", "tls.key"), ("kafka-client-tls", "tls.crt")])
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[os.path.dirname(keystore)])
        self.assertEqual(volume["emptyDir"]["medium"], "Memory")

    def test_every_secret_mounted_is_one_the_script_makes(self):
        made = script_secrets()
        for d in self.workloads():
            for v in d["spec"]["template"]["spec"].get("volumes", []):
                refs = [v["secret"]] if "secret" in v else [
                    {"secretName": s["secret"]["name"], "items": s["secret"].get("items")}
                    for s in v.get("projected", {}).get("sources", []) if "secret" in s]
                for ref in refs:
                    with self.subTest(f'{d["metadata"]["name"]} {v["name"]}'):
                        self.assertIn(ref["secretName"], made)
                        for item in ref.get("items") or []:
                            self.assertIn(item["key"], made[ref["secretName"]]["data"])


@unittest.skipUnless(OPENSSL, "openssl is not installed")
class SecretsScript(unittest.TestCase):
    """scripts/make-kafka-secrets.sh, run into a temporary directory: no cluster, no network."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="kafka-secrets-")
        cls.out = os.path.join(cls.dir, "out")
        cls.made = run_script(cls.out, "--namespace", "team-a", "--brokers", "4", "--san", "kafka.example.org")
        cls.secrets = secrets_in(os.path.join(cls.out, "secrets.yaml"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.out, name)

    def test_both_certificates_are_signed_by_the_ca(self):
        done = openssl("verify", "-CAfile", self.path("ca.crt"), self.path("broker.crt"), self.path("client.crt"))
        self.assertEqual(done.stdout.count(": OK"), 2, done.stdout)
        # And not by another CA.
        other = os.path.join(self.dir, "other")
        run_script(other)
        self.assertNotEqual(openssl("verify", "-CAfile", os.path.join(other, "ca.crt"), self.path("broker.crt"),
                                    check=False).returncode, 0)

    def test_the_broker_certificate_names_every_broker_and_the_bootstrap(self):
        names = sans(self.path("broker.crt"))
        for host in ["kafka", *[f"kafka-{n}.kafka-headless" for n in range(4)]]:
            for suffix in ("", ".team-a", ".team-a.svc", ".team-a.svc.cluster.local"):
                self.assertIn(host + suffix, names)
        self.assertIn("kafka.example.org", names)
        self.assertNotIn("kafka-4.kafka-headless.team-a.svc", names)
        self.assertEqual(len(names), 5 * 4 + 1)

    def test_hostname_verification_passes_for_the_brokers_names_only(self):
        for name, ok in (("kafka-3.kafka-headless.team-a.svc", True), ("kafka-0.kafka-headless", True),
                         ("kafka.team-a.svc", True), ("kafka-4.kafka-headless.team-a.svc", False),
                         ("kafka-0.kafka-headless.kafka-lag-lab.svc", False)):
            with self.subTest(name):
                done = openssl("verify", "-CAfile", self.path("ca.crt"), "-verify_hostname", name,
                               self.path("broker.crt"), check=False)
                self.assertEqual(done.returncode == 0, ok, done.stdout + done.stderr)

    def test_purposes_and_keys(self):
        def ext(cert):
            return openssl("x509", "-in", self.path(cert), "-noout", "-ext",
                           "extendedKeyUsage,basicConstraints").stdout
        self.assertIn("TLS Web Server Authentication", ext("broker.crt"))
        self.assertIn("TLS Web Client Authentication", ext("broker.crt"))  # brokers dial brokers
        self.assertIn("TLS Web Client Authentication", ext("client.crt"))
        self.assertNotIn("TLS Web Server Authentication", ext("client.crt"))
        self.assertIn("CA:TRUE", ext("ca.crt"))
        self.assertIn("CA:FALSE", ext("broker.crt"))
        for who in ("broker", "client"):
            with self.subTest(who):
                # PKCS#8, unencrypted: what Kafka's PEM keystore reads without a key password.
                with open(self.path(f"{who}.key")) as f:
                    self.assertTrue(f.read().startswith("-----BEGIN PRIVATE KEY-----"))
                key_pub = openssl("pkey", "-in", self.path(f"{who}.key"), "-pubout").stdout
                cert_pub = openssl("x509", "-in", self.path(f"{who}.crt"), "-noout", "-pubkey").stdout
                self.assertEqual(key_pub, cert_pub, "the key is the certificate's")

    def test_the_secrets(self):
        self.assertEqual(set(self.secrets), set(script_secrets()))
        for name, s in self.secrets.items():
            with self.subTest(name):
                self.assertEqual(s["metadata"]["namespace"], "team-a")
        for name in ("kafka-broker-tls", "kafka-client-tls"):
            s = self.secrets[name]
            self.assertEqual(s["type"], "kubernetes.io/tls")
            self.assertEqual(set(s["data"]), {"ca.crt", "tls.crt", "tls.key"})
        import base64
        decoded = lambda s, k: base64.b64decode(self.secrets[s]["data"][k]).decode()  # noqa: E731
        with open(self.path("broker.crt")) as f:
            self.assertEqual(decoded("kafka-broker-tls", "tls.crt"), f.read())
        with open(self.path("ca.crt")) as f:
            self.assertEqual(decoded("kafka-client-tls", "ca.crt"), f.read())
        with open(self.path("ca.key")) as f:
            ca_key = f.read()
        for name, s in self.secrets.items():
            for key in s["data"]:
                self.assertNotEqual(decoded(name, key), ca_key, "the CA's key stays out of the Secrets")
        passwords = set()
        for user in script_users():
            with self.subTest(user):
                self.assertEqual(decoded(f"kafka-user-{user}", "username"), user)
                password = decoded(f"kafka-user-{user}", "password")
                self.assertRegex(password, r"^[0-9a-f]{32}$")
                passwords.add(password)
        self.assertEqual(len(passwords), len(script_users()), "one password per user")

    def test_passwords_are_random(self):
        other = os.path.join(self.dir, "again")
        run_script(other)
        again = secrets_in(os.path.join(other, "secrets.yaml"))
        for user in script_users():
            self.assertNotEqual(again[f"kafka-user-{user}"]["data"]["password"],
                                self.secrets[f"kafka-user-{user}"]["data"]["password"])

    def test_files_are_private(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.out).st_mode), 0o700)
        for name in os.listdir(self.out):
            with self.subTest(name):
                self.assertEqual(stat.S_IMODE(os.stat(self.path(name)).st_mode) & 0o077, 0)

    def test_a_second_run_keeps_the_first_runs_secrets_unless_forced(self):
        # The brokers are formatted with the first passwords: a re-run must not change them.
        out = os.path.join(self.dir, "twice")
        run_script(out)
        with open(os.path.join(out, "secrets.yaml")) as f:
            before = f.read()
        done = run_script(out)
        self.assertIn("keeping", done.stderr)
        with open(os.path.join(out, "secrets.yaml")) as f:
            self.assertEqual(f.read(), before)
        run_script(out, "--force")
        with open(os.path.join(out, "secrets.yaml")) as f:
            self.assertNotEqual(f.read(), before)

    def test_passwords_only_for_cert_manager(self):
        out = os.path.join(self.dir, "passwords")
        run_script(out, "--passwords-only")
        made = secrets_in(os.path.join(out, "secrets.yaml"))
        self.assertEqual(set(made), {f"kafka-user-{u}" for u in script_users()})
        self.assertFalse(os.path.exists(os.path.join(out, "ca.key")))

    def test_bad_arguments_fail(self):
        for args in (["--brokers", "0"], ["--namespace", "Team_A"], ["--nonsense"]):
            with self.subTest(args):
                self.assertNotEqual(run_script(os.path.join(self.dir, "bad"), *args, check=False).returncode, 0)


_SCRIPT_SECRETS = {}


def script_secrets():
    """The Secrets the script makes (by name), from one run into a temporary directory."""
    if not _SCRIPT_SECRETS:
        with tempfile.TemporaryDirectory() as d:
            run_script(os.path.join(d, "out"))
            _SCRIPT_SECRETS.update(secrets_in(os.path.join(d, "out", "secrets.yaml")))
    return _SCRIPT_SECRETS


class Secure(SecureChecks, unittest.TestCase):
    target = "k8s/overlays/secure"

    def test_it_is_the_base_plus_the_component(self):
        base = {(d["kind"], d["metadata"]["name"]) for d in render("k8s")}
        ours = {(d["kind"], d["metadata"]["name"]) for d in self.docs}
        strip = lambda names: {(k, re.sub(r"-[a-z0-9]{10}$", "", n)) for k, n in names}  # noqa: E731
        self.assertEqual(strip(ours), strip(base), "no resource added or lost: the Secrets come from outside")


class SecureKedaKafka(SecureChecks, unittest.TestCase):
    target = "k8s/overlays/secure-keda-kafka"

    def trigger(self):
        (trigger,) = self.get("ScaledObject", "kafka-consumer")["spec"]["triggers"]
        return trigger

    def test_the_exporter_is_a_client_too(self):
        self.assertIn("kafka-lag-exporter", [name for name, _, _ in self.clients()])

    def test_the_kafka_scaler_logs_in_with_scram_and_tls(self):
        trigger = self.trigger()
        self.assertEqual(trigger["type"], "kafka")
        meta = trigger["metadata"]
        # KEDA's names for the brokers' SCRAM-SHA-512 over SASL_SSL.
        mechanism = self.brokers()["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"]
        self.assertEqual(meta["sasl"], mechanism.lower().replace("-", "_").replace("sha_", "sha"))
        self.assertEqual(meta["sasl"], "scram_sha512")
        self.assertEqual(meta["tls"], "enable")
        self.assertEqual(int(meta["bootstrapServers"].rsplit(":", 1)[1]), listener_map(self.brokers())["CLIENT"][0])
        auth = self.get("TriggerAuthentication", trigger["authenticationRef"]["name"])
        self.assertEqual(auth["apiVersion"], "keda.sh/v1alpha1")
        self.assertEqual(auth["metadata"]["namespace"], NAMESPACE)
        refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
        self.assertEqual(refs, {
            "username": ("kafka-user-keda", "username"), "password": ("kafka-user-keda", "password"),
            "ca": ("kafka-client-tls", "ca.crt"), "cert": ("kafka-client-tls", "tls.crt"),
            "key": ("kafka-client-tls", "tls.key"),
        })
        made = script_secrets()
        for name, key in refs.values():
            self.assertIn(key, made[name]["data"])
        self.assertIn("keda", script_users())

    def test_otherwise_it_is_overlays_keda_kafka(self):
        plain = {(d["kind"], d["metadata"]["name"]): d for d in render("k8s/overlays/keda-kafka")}
        (so,) = [d for d in self.docs if d["kind"] == "ScaledObject"]
        theirs = plain[("ScaledObject", "kafka-consumer")]
        self.assertEqual({k: v for k, v in so["spec"].items() if k != "triggers"},
                         {k: v for k, v in theirs["spec"].items() if k != "triggers"})
        (their_trigger,) = theirs["spec"]["triggers"]
        ours = self.trigger()
        self.assertEqual({k: v for k, v in ours["metadata"].items() if k not in ("sasl", "tls")},
                         their_trigger["metadata"])

    def test_keda_reaches_the_client_listener_only(self):
        rules = self.get("NetworkPolicy", "kafka")["spec"]["ingress"]
        keda = [r for r in rules if any("namespaceSelector" in f for f in r.get("from", []))]
        self.assertEqual(len(keda), 1)
        self.assertEqual([p["port"] for p in keda[0]["ports"]], [9092])


class SecureCertManager(SecureChecks, unittest.TestCase):
    target = "k8s/overlays/secure-cert-manager"

    def certificate(self, secret):
        (cert,) = [d for d in self.docs if d["kind"] == "Certificate" and d["spec"]["secretName"] == secret]
        return cert

    def test_cert_manager_makes_the_tls_secrets_the_pods_mount(self):
        for secret, usages in (("kafka-broker-tls", {"server auth", "client auth"}), ("kafka-client-tls", {"client auth"})):
            with self.subTest(secret):
                spec = self.certificate(secret)["spec"]
                self.assertEqual(spec["privateKey"]["encoding"], "PKCS8", "what Kafka's PEM keystore reads")
                self.assertLessEqual(usages, set(spec["usages"]))
                self.assertNotIn("server auth", set(spec["usages"]) - ({"server auth"} if "server auth" in usages else set()))
                issuer = self.get("Issuer", spec["issuerRef"]["name"])
                # A CA issuer, from a CA certificate: it writes ca.crt into the Secret.
                ca = self.certificate(issuer["spec"]["ca"]["secretName"])
                self.assertTrue(ca["spec"]["isCA"])

    @unittest.skipUnless(OPENSSL, "openssl is not installed")
    def test_the_broker_names_are_the_scripts(self):
        with tempfile.TemporaryDirectory() as d:
            run_script(os.path.join(d, "out"))
            names = sans(os.path.join(d, "out", "broker.crt"))
        self.assertEqual(set(self.certificate("kafka-broker-tls")["spec"]["dnsNames"]), names)
        replicas = self.get("StatefulSet", "kafka")["spec"]["replicas"]
        for n in range(replicas):
            self.assertIn(f"kafka-{n}.kafka-headless.{NAMESPACE}.svc", names)


@unittest.skipUnless(JAVA and kafka_jars(), "no java or no cached Kafka jars (make deps): the format script is not run")
class FormatStorage(unittest.TestCase):
    """The brokers' format-storage init container, run here with Kafka's StorageTool from the jars."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="format-storage-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        (sts,) = [d for d in render("k8s/overlays/secure") if d["kind"] == "StatefulSet"]
        pod = sts["spec"]["template"]["spec"]
        (self.init,) = pod["initContainers"]
        self.env = env_of(self.init)
        # The Secrets' files, laid out as the projected volume lays them out.
        run_script(os.path.join(self.dir, "secrets"), "--passwords-only")
        self.scram = os.path.join(self.dir, "scram")
        self.passwords = {}
        for user in script_users():
            os.makedirs(os.path.join(self.scram, user))
            with open(os.path.join(self.dir, "secrets", f"password-{user}")) as f:
                self.passwords[user] = f.read()
            for key, value in (("username", user), ("password", self.passwords[user])):
                with open(os.path.join(self.scram, user, key), "w") as f:
                    f.write(value)
        os.symlink(".", os.path.join(self.scram, "..data"))  # as a Secret volume has
        # kafka-storage.sh: Kafka's StorageTool from the cached jars.
        self.tool = os.path.join(self.dir, "kafka-storage.sh")
        with open(self.tool, "w") as f:
            f.write(f'#!/bin/sh\nexec {shlex.quote(JAVA)} -Xmx256m -cp {shlex.quote(kafka_jars())}/"*" kafka.tools.StorageTool "$@"\n')
        os.chmod(self.tool, 0o755)
        self.logs = os.path.join(self.dir, "data", "kraft")

    def run_init(self, hostname="kafka-1"):
        script = (self.init["args"][0].replace("/opt/kafka/bin/kafka-storage.sh", self.tool)
                  .replace("/etc/kafka-scram", self.scram).replace("/tmp/format.properties",
                                                                   os.path.join(self.dir, "format.properties")))
        env = dict(os.environ, HOSTNAME=hostname, CLUSTER_ID=self.env["CLUSTER_ID"],
                   KAFKA_CONTROLLER_QUORUM_VOTERS=self.env["KAFKA_CONTROLLER_QUORUM_VOTERS"], KAFKA_LOG_DIRS=self.logs)
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)

    def test_it_formats_once_with_the_users_and_the_images_own_format_then_carries_on(self):
        first = self.run_init()
        self.assertEqual(first.returncode, 0, first.stdout + first.stderr)
        with open(os.path.join(self.logs, "meta.properties")) as f:
            meta = dict(line.strip().split("=", 1) for line in f if "=" in line and not line.startswith("#"))
        self.assertEqual(meta["node.id"], "1")
        self.assertEqual(meta["cluster.id"], self.env["CLUSTER_ID"])
        # The SCRAM records are in the metadata log's first checkpoint; the log shows neither them nor a password.
        (checkpoint_path,) = glob.glob(os.path.join(self.logs, "__cluster_metadata-0", "*.checkpoint"))
        with open(checkpoint_path, "rb") as f:
            checkpoint = f.read()
        for user in script_users():
            self.assertIn(user.encode(), checkpoint)
        for output in (first.stdout, first.stderr):
            self.assertNotIn("UserScramCredentialRecord", output)
            for password in self.passwords.values():
                self.assertNotIn(password, output)
        # A restart: formatted already, and fine.
        again = self.run_init()
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertIn("already formatted", again.stdout + again.stderr)
        # Then the image's own format (KafkaDockerWrapper: format --cluster-id=... -c ..., no
        # --ignore-formatted) fails with the message its launch script accepts.
        wrapper = subprocess.run([self.tool, "format", f"--cluster-id={self.env['CLUSTER_ID']}", "-c",
                                  os.path.join(self.dir, "format.properties")], capture_output=True, text=True,
                                 timeout=120)
        self.assertIn("already formatted", (wrapper.stdout + wrapper.stderr).lower())

    def test_without_users_it_fails(self):
        shutil.rmtree(self.scram)
        os.makedirs(self.scram)
        done = self.run_init()
        self.assertNotEqual(done.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(self.logs, "meta.properties")))


try:
    import confluent_kafka
    import confluent_kafka.admin
except ImportError:  # scripts/ensure-python-clients.sh installs it (make deps)
    confluent_kafka = None

@unittest.skipUnless(JAVA and kafka_jars() and confluent_kafka and OPENSSL,
                     "needs java, the cached Kafka jars and confluent-kafka (make deps), and openssl")
class SecureBroker(unittest.TestCase):
    """One broker on this machine with overlays/secure's settings as rendered (server.properties
    made from the kafka container's KAFKA_* variables the way KafkaDockerWrapper makes it, the data
    directory formatted by the format-storage script, the keystore joined as the start script joins
    it), with the certificates and passwords of make-kafka-secrets.sh (secure_broker.Broker, which
    `make images-check` runs the admin image against too); then librdkafka (the client library
    whose names the contract borrows) connects with the clients' rendered settings. Only what a
    single node on localhost needs differs: ports, node id, quorum, replication factors."""

    @classmethod
    def setUpClass(cls):
        cls.kafka = secure_broker.Broker()
        for name in ("dir", "secrets", "tls", "bootstrap", "properties", "passwords"):
            setattr(cls, name, getattr(cls.kafka, name))
        # The clients' rendered settings: the kafka-clients ConfigMap and a producer's own variables.
        cls.client_env = {}
        for d in cls.kafka.docs:
            if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("kafka-clients-"):
                cls.client_env.update(d["data"])
        (producer,) = [d for d in cls.kafka.docs if d["metadata"]["name"] == "kafka-producer" and d["kind"] == "Deployment"]
        cls.client_env.update(env_of(producer["spec"]["template"]["spec"]["containers"][0]))

    @classmethod
    def tearDownClass(cls):
        cls.kafka.stop()

    def client_config(self, **overrides):
        """librdkafka's settings from the clients' rendered variables, the files at their paths here."""
        env = self.client_env
        here = lambda path: path.replace("/etc/kafka-tls", os.path.join(self.dir, "client-tls"))  # noqa: E731
        os.makedirs(os.path.join(self.dir, "client-tls"), exist_ok=True)
        for key, name in (("ca.crt", "ca.crt"), ("tls.crt", "client.crt"), ("tls.key", "client.key")):
            shutil.copy(os.path.join(self.secrets, name), os.path.join(self.dir, "client-tls", key))
        self.assertEqual(env["SASL_PASSWORD_FILE"], "/etc/kafka-sasl/password")
        config = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": env["SECURITY_PROTOCOL"], "sasl.mechanism": env["SASL_MECHANISM"],
            "sasl.username": env["SASL_USERNAME"], "sasl.password": self.passwords[env["SASL_USERNAME"]],
            "ssl.ca.location": here(env["SSL_CA_LOCATION"]),
            "ssl.certificate.location": here(env["SSL_CERTIFICATE_LOCATION"]),
            "ssl.key.location": here(env["SSL_KEY_LOCATION"]),
            "ssl.endpoint.identification.algorithm": env["SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"],
        }
        config.update(overrides)
        return {k: v for k, v in config.items() if v is not None}

    def connects(self, **overrides):
        # log_level 0: librdkafka's own complaints about the refused connections stay quiet.
        admin = confluent_kafka.admin.AdminClient(self.client_config(log_level=0, **overrides))
        try:
            admin.list_topics(timeout=4)
            return True
        except confluent_kafka.KafkaException:
            return False

    def test_a_client_with_the_rendered_settings_produces_and_the_broker_replies(self):
        config = self.client_config(log_level=0)
        admin = confluent_kafka.admin.AdminClient(config)
        (future,) = admin.create_topics([confluent_kafka.admin.NewTopic("secure_check", 1, 1)]).values()
        future.result(timeout=30)
        producer = confluent_kafka.Producer(config)
        delivered = []
        producer.produce("secure_check", b"over SASL_SSL", on_delivery=lambda err, msg: delivered.append(err))
        producer.flush(30)
        self.assertEqual(delivered, [None])

    def test_every_user_logs_in_with_its_own_password(self):
        for user in script_users():
            with self.subTest(user):
                self.assertTrue(self.connects(**{"sasl.username": user, "sasl.password": self.passwords[user]}))
        self.assertFalse(self.connects(**{"sasl.password": self.passwords["consumer"]}), "another user's password")

    def test_a_wrong_password_is_refused(self):
        self.assertFalse(self.connects(**{"sasl.password": "0" * 32}))

    def test_a_client_without_a_certificate_is_refused(self):
        self.assertFalse(self.connects(**{"ssl.certificate.location": None, "ssl.key.location": None}))

    def test_a_client_that_does_not_trust_the_ca_is_refused(self):
        other = os.path.join(self.dir, "other-ca")
        run_script(other)
        self.assertFalse(self.connects(**{"ssl.ca.location": os.path.join(other, "ca.crt")}))

    def test_kafka_uis_java_client_properties_connect(self):
        # Kafka UI's KAFKA_CLUSTERS_0_PROPERTIES_* as the Java client gets them from Spring: the
        # JAAS placeholders filled from the config tree's files, the keystore joined by its init
        # container. Kafka's TopicCommand stands in for the UI's admin client.
        (ui,) = [d for d in render("k8s/overlays/secure") if d["kind"] == "Deployment" and d["metadata"]["name"] == "kafka-ui"]
        pod = ui["spec"]["template"]["spec"]
        env = env_of(pod["containers"][0])
        prefix = "KAFKA_CLUSTERS_0_PROPERTIES_"
        props = {k[len(prefix):].lower().replace("_", "."): v for k, v in env.items() if k.startswith(prefix)}
        values = {"kafka-sasl.username": "kafka-ui", "kafka-sasl.password": self.passwords["kafka-ui"]}
        props["sasl.jaas.config"] = re.sub(r"\$\{([a-z.-]+)\}", lambda m: values[m.group(1)], props["sasl.jaas.config"])
        tls = os.path.join(self.dir, "ui-tls")
        os.makedirs(os.path.join(tls, "keystore"), exist_ok=True)
        for key, name in (("ca.crt", "ca.crt"), ("tls.crt", "client.crt"), ("tls.key", "client.key")):
            shutil.copy(os.path.join(self.secrets, name), os.path.join(tls, key))
        keystore = props["ssl.keystore.location"]
        (init,) = pod["initContainers"]
        subprocess.run(["sh", "-c", init["command"][-1].replace("/etc/kafka-tls", tls)
                        .replace(keystore, os.path.join(tls, "keystore", "keystore.pem"))], check=True)
        props["ssl.keystore.location"] = os.path.join(tls, "keystore", "keystore.pem")
        props["ssl.truststore.location"] = props["ssl.truststore.location"].replace("/etc/kafka-tls", tls)
        config = os.path.join(tls, "client.properties")
        with open(config, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in props.items())
        done = subprocess.run([JAVA, "-Xmx128m", "-cp", os.path.join(kafka_jars(), "*"), "org.apache.kafka.tools.TopicCommand",
                               "--bootstrap-server", self.bootstrap, "--command-config", config, "--list"],
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stdout[-2000:] + done.stderr[-2000:])

    def test_plaintext_is_refused(self):
        self.assertFalse(self.connects(**{"security.protocol": "SASL_PLAINTEXT"}))


if __name__ == "__main__":
    unittest.main()
