"""The build steps honour CARGO_TARGET_DIR: `make build` (and the targets that run what it built),
scripts/check-static.sh and scripts/images.sh read the binaries where cargo wrote them, not from a
hard-coded target/ (it used to fail after compiling: "missing: target/x86_64-unknown-linux-musl/
release/admin").

    python3 -m unittest discover -s tests/k8s -v
"""
import os
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASE = os.path.join("x86_64-unknown-linux-musl", "release")
BINARIES = ("admin", "producer", "consumer")


def run(args, target_dir, cwd=ROOT, check=False):
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=check)


class TargetDir(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cargo-target-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_make_uses_cargos_target_directory(self):
        # -n prints the recipes without running them: the paths they would use.
        out = run(["make", "-n", "build", "demo", "kafka"], self.dir, check=True).stdout
        check = [line for line in out.splitlines() if "check-static.sh" in line]
        self.assertEqual(len(check), 1, out)
        for binary in BINARIES:
            self.assertIn(os.path.join(self.dir, RELEASE, binary), check[0])
        self.assertNotIn(" target/", out, "a path under the hard-coded target/")
        self.assertIn(os.path.join(self.dir, "demo", "demo"), out)
        self.assertIn(os.path.join(self.dir, "debug", "localkafka"), out)

    def test_check_static_without_arguments_looks_under_cargo_target_dir(self):
        done = run(["./scripts/check-static.sh"], self.dir)
        self.assertEqual(done.returncode, 1, done.stderr)
        for binary in BINARIES:
            self.assertIn(f"missing: {os.path.join(self.dir, RELEASE, binary)}", done.stderr)
        self.assertIn(f"CARGO_TARGET_DIR={self.dir}", done.stderr)

    def test_images_take_host_binaries_from_cargo_target_dir(self):
        done = run(["./scripts/images.sh", "binaries"], self.dir, check=True)
        self.assertEqual(done.stdout.strip(), os.path.join(self.dir, RELEASE))

    def test_images_stage_the_host_binaries_where_the_dockerfile_reads_them(self):
        # A throwaway project next to the script, so the workspace's own target/ is left alone.
        project = tempfile.mkdtemp(prefix="images-context-")
        self.addCleanup(shutil.rmtree, project, ignore_errors=True)
        os.makedirs(os.path.join(project, "scripts"))
        os.makedirs(os.path.join(project, "src"))
        shutil.copy(os.path.join(ROOT, "scripts", "images.sh"), os.path.join(project, "scripts"))
        shutil.copy(os.path.join(ROOT, "Dockerfile"), project)
        with open(os.path.join(project, "Cargo.toml"), "w") as f:
            f.write('[package]\nname = "context"\nversion = "0.1.0"\nedition = "2021"\n\n[workspace]\n')
        open(os.path.join(project, "src", "lib.rs"), "w").close()
        os.makedirs(os.path.join(self.dir, RELEASE))
        for binary in BINARIES:
            with open(os.path.join(self.dir, RELEASE, binary), "w") as f:
                f.write(f"the {binary} binary")
        run(["./scripts/images.sh", "stage"], self.dir, cwd=project, check=True)
        for binary in BINARIES:
            # The Dockerfile's BINARIES=host stage copies target/x86_64-unknown-linux-musl/release/*.
            with open(os.path.join(project, "target", RELEASE, binary)) as f:
                self.assertEqual(f.read(), f"the {binary} binary")


if __name__ == "__main__":
    unittest.main()
