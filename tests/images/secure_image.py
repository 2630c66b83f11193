"""`make images-check`'s secure run (scripts/images.sh): one image's exported root filesystem run as
the Job of k8s/overlays/secure that uses it would run it, against a real Apache Kafka broker with
that overlay's settings (SASL_SSL, SCRAM-SHA-512, client certificates required).

    tests/images/secure_image.py <rootfs> <entrypoint>      # as root; e.g. /tmp/x/admin /usr/local/bin/admin

Everything comes from `kubectl kustomize k8s/overlays/secure`: the Job whose container is our image
(create-topic for admin), its arguments, its environment (the kafka-clients ConfigMap, then its own
variables), its user, group and fsGroup, its read-only root filesystem, and its Secret volumes, whose
files are written from the Secrets of scripts/make-kafka-secrets.sh --san localhost as the kubelet
writes them (`..data`, the volume's defaultMode, group fsGroup) and bind-mounted read-only onto the
mountPath in the root filesystem. The broker is tests/k8s/secure_broker.py's. Then, with chroot as
the pod's uid:

- the Job's command exits 0 ("topic created"), and again ("already exists as requested");
- `admin lag --format json` reads the topic's partitions (admin only);
- without SSL_CA_LOCATION (the image's system CA bundle) it exits 1, the broker's certificate "not
  signed by a CA in SSL_CA_LOCATION": the mounted CA is what made TLS work;
- with SSL_CA_LOCATION where nothing is mounted it exits 78 naming the variable and the path.

Only what one broker on localhost needs is changed: KAFKA_BROKERS, REPLICATION_FACTOR (1), and
ADMIN_TIMEOUT (30s, so a failure does not wait the Job's minutes). Needs no Kafka client library:
our binary is the only client. Exit 0 when every check passes, 1 when one fails, 2 when something
it needs (java, the cached Kafka jars, openssl, kubectl) is missing.
"""
import base64
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "k8s"))

import yaml  # noqa: E402

import secure_broker  # noqa: E402
from test_manifests import env_of, pinned_kafka_version  # noqa: E402

CHROOT = shutil.which("chroot")
# Where make-kafka-secrets.sh writes the Secret manifests, in its --out directory.
SECRETS_YAML = "secrets.yaml"
# A single broker: a replication factor above 1 cannot be placed.
REPLICATION_FACTOR = "1"
ADMIN_TIMEOUT = "30s"
RUN_TIMEOUT = 90
RETRY_SECONDS = 20
# The kubelet gives every pod an /etc/hosts (the image has none); the broker is `localhost`, the name
# its certificate carries (make-kafka-secrets.sh --san localhost).
HOSTS = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
"""


class Failed(Exception):
    pass


def say(line):
    print(f"secure {line}", flush=True)


def workload_of(docs, image):
    """The one Job running `image` (its name without the tag), and that container."""
    found = [(d, c) for d in docs if d["kind"] == "Job"
             for c in d["spec"]["template"]["spec"]["containers"] if c["image"].split(":")[0] == image]
    if len(found) != 1:
        raise Failed(f"expected one Job running {image} in {secure_broker.OVERLAY}, found {len(found)}")
    return found[0]


def resolved_env(docs, container):
    """The container's environment as the kubelet builds it: envFrom ConfigMaps, then env."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" not in source:
            raise Failed(f"{container['name']}: envFrom {source} is not a ConfigMap")
        env.update(maps[source["configMapRef"]["name"]])
    for entry in container.get("env", []):
        if "value" not in entry:
            raise Failed(f"{container['name']}: {entry['name']} is not a plain value: not run here")
    env.update(env_of(container))
    return env


def secret_volumes(pod, container):
    """[(mountPath, Secret name, [(path, key, mode)] or None for every key, defaultMode)] for the
    container's mounts, which must all be read-only Secret volumes."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = []
    for m in container.get("volumeMounts", []):
        volume = volumes[m["name"]]
        if "secret" not in volume or m.get("subPath") or not m.get("readOnly"):
            raise Failed(f"{container['name']}: mount {m['mountPath']} is not a read-only Secret volume")
        secret = volume["secret"]
        default_mode = secret.get("defaultMode", 0o644)
        items = secret.get("items")
        files = [(i["path"], i["key"], i.get("mode", default_mode)) for i in items] if items else None
        out.append((m["mountPath"], secret["secretName"], files, default_mode))
    return out


def write_volume(directory, data, files, gid):
    """A Secret volume's files as the kubelet's atomic writer lays them out: the keys in a timestamped
    directory that `..data` points to, each path a link through `..data`; mode and group applied."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    os.makedirs(os.path.join(directory, stamp))
    for path, key, mode in files:
        target = os.path.join(directory, stamp, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data[key])
        os.chown(target, 0, gid)
        os.chmod(target, mode)
    os.symlink(stamp, os.path.join(directory, "..data"))
    for top in sorted({p.split("/")[0] for p, _, _ in files}):
        os.symlink(os.path.join("..data", top), os.path.join(directory, top))
    for root, dirs, _ in os.walk(directory):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    os.chmod(directory, 0o755)


class Mounts:
    """Read-only bind mounts, undone in reverse order by release() (also on SIGTERM, SIGINT, SIGHUP)."""

    def __init__(self):
        self.targets = []

    def bind_ro(self, source, target):
        subprocess.run(["mount", "--bind", source, target], check=True, capture_output=True, text=True)
        self.targets.append(target)
        subprocess.run(["mount", "-o", "remount,ro,bind", target], check=True, capture_output=True, text=True)
        options = subprocess.run(["findmnt", "-no", "OPTIONS", "--mountpoint", target], capture_output=True,
                                 text=True).stdout.split("\n")[0]
        if not options.split(",")[0] == "ro":
            raise Failed(f"{target} is not mounted read-only: {options}")

    def release(self):
        while self.targets:
            target = self.targets.pop()
            if subprocess.run(["umount", target], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", target], capture_output=True)


def can_bind_mount(scratch):
    """Whether this machine lets us bind-mount (not, say, in a container without CAP_SYS_ADMIN)."""
    source, target = os.path.join(scratch, "probe-source"), os.path.join(scratch, "probe-target")
    os.makedirs(source)
    os.makedirs(target)
    if subprocess.run(["mount", "--bind", source, target], capture_output=True).returncode != 0:
        return False
    subprocess.run(["umount", target], check=True)
    return True


def line_with(output, words):
    """The first line of `output` holding every one of `words`, without its timestamp, shortened; or None."""
    for line in output.splitlines():
        if all(w in line for w in words):
            line = re.sub(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\s+", "", line.strip())
            return line if len(line) <= 200 else line[:197] + "..."
    return None


def main(rootfs, entrypoint):
    rootfs = os.path.abspath(rootfs)
    binary = os.path.basename(entrypoint)
    if os.geteuid() != 0:
        raise Failed("needs root (chroot, mount)")
    why = secure_broker.missing() or (None if shutil.which("kubectl") else "no kubectl on PATH (it renders the overlay)")
    if why:
        print(f"secure_image: {why}", file=sys.stderr)
        return 2
    if not os.access(os.path.join(rootfs, entrypoint.lstrip("/")), os.X_OK):
        raise Failed(f"{entrypoint} is not an executable in {rootfs}")

    docs = secure_broker.render(secure_broker.OVERLAY)
    job, container = workload_of(docs, f"kafka-lag-lab/{binary}")
    pod = job["spec"]["template"]["spec"]
    security = pod.get("securityContext", {})
    uid, gid, fs_group = security["runAsUser"], security.get("runAsGroup", 0), security.get("fsGroup")
    read_only_root = container.get("securityContext", {}).get("readOnlyRootFilesystem", False)
    args = container.get("args", [])
    rendered = resolved_env(docs, container)
    volumes = secret_volumes(pod, container)

    mounts = Mounts()
    broker = None
    scratch = tempfile.mkdtemp(prefix="secure-image-")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        broker = secure_broker.Broker()
        say(f"broker: Apache Kafka {pinned_kafka_version()} with {secure_broker.OVERLAY}'s settings "
            f"(SASL_SSL, SCRAM-SHA-512, client certificates) on {broker.bootstrap}, "
            f"started in {broker.startup_seconds:.1f} s")
        with open(os.path.join(broker.secrets, SECRETS_YAML)) as f:
            secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(f) if d}

        # The Secret volumes, bind-mounted read-only where the pod mounts them (copied in when this
        # machine allows no bind mount).
        binding = can_bind_mount(scratch)
        for mount_path, _, _, _ in volumes:
            os.makedirs(os.path.join(rootfs, mount_path.lstrip("/")), exist_ok=True)
        hosts = os.path.join(rootfs, "etc", "hosts")
        if binding:
            open(hosts, "a").close()
        if read_only_root and binding:
            mounts.bind_ro(rootfs, rootfs)
        if binding:
            with open(os.path.join(scratch, "hosts"), "w") as f:
                f.write(HOSTS)
            os.chmod(os.path.join(scratch, "hosts"), 0o644)
            mounts.bind_ro(os.path.join(scratch, "hosts"), hosts)
        else:
            with open(hosts, "w") as f:
                f.write(HOSTS)
        described = []
        for n, (mount_path, name, files, default_mode) in enumerate(volumes):
            data = {k: base64.b64decode(v) for k, v in secrets[name]["data"].items()}
            files = files or [(k, k, default_mode) for k in sorted(data)]
            target = os.path.join(rootfs, mount_path.lstrip("/"))
            if binding:
                source = os.path.join(scratch, f"volume-{n}")
                write_volume(source, data, files, fs_group or 0)
                mounts.bind_ro(source, target)
            else:
                write_volume(target, data, files, fs_group or 0)
            modes = sorted({f"{mode:04o}" for _, _, mode in files})
            described.append(f"Secret {name} at {mount_path} ({', '.join(p for p, _, _ in files)}; "
                             f"{'/'.join(modes)} root:{fs_group or 0})")
        how = "read-only bind mounts" if binding else "COPIED into the root filesystem (no bind mount possible here)"
        say(f"job {job['metadata']['name']}: {entrypoint} {' '.join(args)} as {uid}:{gid} (fsGroup {fs_group}), "
            f"{'read-only root, ' if read_only_root and binding else ''}the kubelet's /etc/hosts, "
            f"{'; '.join(described)}: {how}")

        # The files the client settings name must be those mounted.
        mounted = [m for m, _, _, _ in volumes]
        for var in ("SASL_PASSWORD_FILE", "SSL_CA_LOCATION", "SSL_CERTIFICATE_LOCATION", "SSL_KEY_LOCATION"):
            path = rendered.get(var)
            if not path or not any(path.startswith(m.rstrip("/") + "/") for m in mounted):
                raise Failed(f"{var}={path!r} is not a file of the Job's Secret mounts {mounted}")
        env = dict(rendered, KAFKA_BROKERS=broker.bootstrap, REPLICATION_FACTOR=REPLICATION_FACTOR,
                   ADMIN_TIMEOUT=ADMIN_TIMEOUT)
        say(f"env: the Job's as rendered ({len(rendered)} variables; SSL_CA_LOCATION={rendered['SSL_CA_LOCATION']}, "
            f"SASL_PASSWORD_FILE={rendered['SASL_PASSWORD_FILE']}), but KAFKA_BROKERS={broker.bootstrap} "
            f"REPLICATION_FACTOR={REPLICATION_FACTOR} ADMIN_TIMEOUT={ADMIN_TIMEOUT}")

        def run(what, run_args, run_env, status, words, quiet=False, retry_on=()):
            """Runs the entrypoint; again, for up to RETRY_SECONDS, while its output holds a word of `retry_on`."""
            started = time.monotonic()
            groups = [f"--groups={fs_group}"] if fs_group is not None else []
            retried = []
            while True:
                try:
                    done = subprocess.run([CHROOT, f"--userspec={uid}:{gid}", *groups, rootfs, entrypoint, *run_args],
                                          env=run_env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
                except subprocess.TimeoutExpired as e:
                    raise Failed(f"{what}: still running after {RUN_TIMEOUT} s:\n{e.stdout or ''}{e.stderr or ''}")
                output = done.stdout + done.stderr
                transient = [w for w in retry_on if w in output]
                if done.returncode == 0 or not transient or time.monotonic() - started > RETRY_SECONDS:
                    break
                retried += transient
                time.sleep(1)
            if retried:
                say(f"    {what}: retried {len(retried)} time(s) after {', '.join(sorted(set(retried)))}")
            said = line_with(output, words)
            if done.returncode != status or said is None:
                raise Failed(f"{what}: expected exit {status} saying {words}, got exit {done.returncode}:\n{output}")
            took = time.monotonic() - started
            if not quiet:
                say(f"ok  {what}: exit {done.returncode} in {took:.1f} s: {said}")
            return done, took

        topic = env.get("TOPIC", "my_new_topic")
        run(" ".join(args), args, env, 0, ["topic created"])
        run(f"{' '.join(args)} again", args, env, 0, ["already exists as requested"])
        if binary == "admin":
            group = "secure-image-check"
            what = f"lag --group {group} --topic {topic} --format json"
            # A broker's first FindCoordinator creates __consumer_offsets: until its partitions have a
            # leader the coordinator lookup answers NotCoordinator or CoordinatorNotAvailable.
            done, took = run(what, what.split(), env, 0, ['"partitions"'], quiet=True,
                             retry_on=("NotCoordinator", "CoordinatorNotAvailable", "CoordinatorLoadInProgress"))
            samples = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            partitions = sorted(p["partition"] for s in samples if s.get("topic") == topic for p in s["partitions"])
            if partitions != list(range(int(env["PARTITIONS"]))):
                raise Failed(f"{what}: expected {topic}'s {env['PARTITIONS']} partitions, got:\n{done.stdout}")
            say(f"ok  {what}: exit 0 in {took:.1f} s: {topic}, partitions {partitions[0]}-{partitions[-1]}, "
                f"total_lag {samples[0]['total_lag']}")
        # The negatives: without the mounted CA the same run fails on the broker's certificate.
        no_ca = {k: v for k, v in env.items() if k != "SSL_CA_LOCATION"}
        run("without SSL_CA_LOCATION (the image's system CAs)", args, no_ca, 1,
            ["not signed by a CA in SSL_CA_LOCATION"])
        elsewhere = os.path.dirname(rendered["SSL_CA_LOCATION"]).rstrip("/") + "-unmounted/" + \
            os.path.basename(rendered["SSL_CA_LOCATION"])
        run(f"SSL_CA_LOCATION={elsewhere} (nothing mounted there)", args, dict(env, SSL_CA_LOCATION=elsewhere), 78,
            ["SSL_CA_LOCATION", elsewhere])
        return 0
    finally:
        mounts.release()
        if broker is not None:
            broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    try:
        sys.exit(main(sys.argv[1], sys.argv[2]))
    except (Failed, RuntimeError, subprocess.CalledProcessError) as e:
        detail = f"\n{e.stderr}" if getattr(e, "stderr", None) else ""
        print(f"secure_image: FAILED: {e}{detail}", file=sys.stderr)
        sys.exit(1)
