//! Every command in README.md, docs/ and k8s/README.md runs as written. Each shell block is marked
//! in its fence's info string:
//!
//! - ```` ```sh runnable ````: run here, as written, with bash (`-e -o pipefail`) from the repository
//!   root, without `KAFKA_BROKERS` (so `make demo` starts its own Kafka) unless also marked
//!   `broker`: then `KAFKA_BROKERS` is a test broker's address, as the text before such a block
//!   asks the reader to set it;
//! - ```` ```sh checked ````: needs a cluster, a registry or too long a time (a kind cluster, a
//!   push, `make bench`): bash parses it, then runs it with `kubectl` pointed at a port nothing
//!   listens on (a command is accepted once kubectl has rendered its kustomization, parsed its
//!   flags and tried to connect; `kubectl apply --dry-run=client` needs a server too, for the API's
//!   discovery), `make` as `make -n`, and `kind`, `helm`, `kustomize`, `podman` and `docker` with
//!   `--help` appended (flags and subcommands parsed, nothing done) where they are installed;
//!   `sudo` runs its command as is, and `sysctl` only reads each key it is given (the key must exist
//!   on this kernel; nothing is set).
//!
//! A shell block with neither mark fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use doccheck::{fenced_blocks, run_bounded, Block};

const SHELLS: &[&str] = &["sh", "bash", "shell", "console"];
/// The bound on one runnable block: `make demo QUICK=1` with its first build of the demo profile.
const RUNNABLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const CHECKED_TIMEOUT: Duration = Duration::from_secs(5 * 60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// README.md, BENCHMARKS.md, k8s/README.md and docs/*.md, with their shell blocks.
fn documents() -> Vec<(String, Vec<Block>)> {
    let root = root();
    let mut paths = vec![
        PathBuf::from("README.md"),
        PathBuf::from("BENCHMARKS.md"),
        PathBuf::from("k8s/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(&root).unwrap_or(&p).to_path_buf())
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .filter(|p| root.join(p).is_file())
        .map(|p| {
            let text = std::fs::read_to_string(root.join(&p)).unwrap_or_default();
            let blocks = fenced_blocks(&text)
                .into_iter()
                .filter(|b| SHELLS.contains(&b.lang.as_str()))
                .collect();
            (p.display().to_string(), blocks)
        })
        .collect()
}

fn marked(block: &Block, mark: &str) -> bool {
    block.marks.iter().any(|m| m == mark)
}

#[test]
fn every_shell_block_is_marked_runnable_or_checked() {
    let docs = documents();
    assert!(
        docs.iter().any(|(p, _)| p == "README.md"),
        "README.md not found"
    );
    let unmarked: Vec<String> = docs
        .iter()
        .flat_map(|(path, blocks)| {
            blocks
                .iter()
                .filter(|b| !marked(b, "runnable") && !marked(b, "checked"))
                .map(move |b| {
                    format!(
                        "{path}:{}: a ```{} block without a mark: write ```sh runnable (it runs \
                         here, no cluster needed) or ```sh checked (needs a cluster or too long; \
                         syntax-checked)",
                        b.line, b.lang
                    )
                })
        })
        .collect();
    assert!(unmarked.is_empty(), "\n{}\n", unmarked.join("\n"));
}

/// A user's shell: what `cargo test` and `make test` put in the environment is not theirs (and
/// `OUT_DIR`, cargo's for build scripts, is also the demo's output directory).
fn shell(body: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-e", "-o", "pipefail", "-c", body])
        .current_dir(root());
    for var in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "OUT_DIR",
        "KAFKA_BROKERS",
        "DEMO_BROKER",
    ] {
        command.env_remove(var);
    }
    command
}

#[test]
fn runnable_blocks_run_as_written() {
    let mut failed = Vec::new();
    let mut ran = 0;
    for (path, blocks) in documents() {
        for block in blocks.iter().filter(|b| marked(b, "runnable")) {
            let mut command = shell(&block.body);
            if marked(block, "broker") {
                command.env("KAFKA_BROKERS", testkit::Broker::shared().addr());
            }
            ran += 1;
            match run_bounded(command, RUNNABLE_TIMEOUT) {
                Ok(done) if done.code == Some(0) => {
                    eprintln!(
                        "{path}:{}: ran in {:.1} s",
                        block.line,
                        done.took.as_secs_f64()
                    )
                }
                Ok(done) => failed.push(format!(
                    "{path}:{}: exited {:?} after {:.1} s:\n{}\n{}",
                    block.line,
                    done.code,
                    done.took.as_secs_f64(),
                    block.body,
                    tail(&done.output)
                )),
                Err(err) => failed.push(format!("{path}:{}: {}", block.line, tail(&err))),
            }
        }
    }
    assert!(
        ran >= 2,
        "only {ran} runnable blocks: the README's are gone"
    );
    assert!(failed.is_empty(), "\n{}\n", failed.join("\n\n"));
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// bash functions standing in front of the tools a checked block uses: see the module's comment.
const CHECKED_PRELUDE: &str = r#"
kubectl() {
  local out rc=0
  out=$(command kubectl --request-timeout=5s "$@" 2>&1 </dev/null) || rc=$?
  [ "$rc" = 0 ] && return 0
  case "$out" in *"connection refused"*|*"was refused"*) return 0 ;; esac
  printf 'kubectl %s\n%s\n' "$*" "$out" >&2
  return 1
}
make() { command make -n "$@" >/dev/null; }
sudo() { "$@"; }
sysctl() {
  if ! type -P sysctl >/dev/null; then echo "not checked (sysctl is not installed): sysctl $*" >&2; return 0; fi
  local arg
  for arg in "$@"; do
    case "$arg" in
      -*) ;;
      *) command sysctl -n "${arg%%=*}" >/dev/null || { echo "sysctl $*: rejected" >&2; return 1; } ;;
    esac
  done
}
for tool in kind helm kustomize podman docker; do
  eval "$tool() {
    if type -P $tool >/dev/null; then
      command $tool \"\$@\" --help >/dev/null || { echo \"$tool \$*: rejected\" >&2; return 1; }
    else
      echo \"not checked ($tool is not installed): $tool \$*\" >&2
    fi
  }"
done
"#;

/// A kubeconfig for a server that is not there (a loopback port nothing listens on): kubectl gets
/// as far as connecting.
fn write_kubeconfig(path: &Path) {
    let config = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n\
         clusters:\n- name: none\n  cluster: {{server: 'https://127.0.0.1:{}'}}\n\
         contexts:\n- name: none\n  context: {{cluster: none, user: none}}\n\
         users:\n- name: none\n  user: {{token: none}}\n",
        testkit::closed_port()
    );
    std::fs::write(path, config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn checked_blocks_parse_and_their_commands_are_accepted() {
    let dir = std::env::temp_dir().join(format!("doccheck-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("config");
    write_kubeconfig(&kubeconfig);
    let mut failed = Vec::new();
    let mut checked = 0;
    for (path, blocks) in documents() {
        for block in blocks.iter().filter(|b| marked(b, "checked")) {
            checked += 1;
            let mut parse = Command::new("bash");
            parse.args(["-n", "-c", &block.body]);
            match run_bounded(parse, Duration::from_secs(10)) {
                Ok(done) if done.code == Some(0) => {}
                Ok(done) => {
                    failed.push(format!("{path}:{}: bash -n: {}", block.line, done.output));
                    continue;
                }
                Err(err) => {
                    failed.push(format!("{path}:{}: bash -n: {err}", block.line));
                    continue;
                }
            }
            let mut command = shell(&format!("{CHECKED_PRELUDE}\n{}", block.body));
            command.env("KUBECONFIG", &kubeconfig);
            match run_bounded(command, CHECKED_TIMEOUT) {
                Ok(done) if done.code == Some(0) => {
                    for skipped in done.output.lines().filter(|l| l.starts_with("not checked")) {
                        eprintln!("{path}:{}: {skipped}", block.line);
                    }
                }
                Ok(done) => failed.push(format!(
                    "{path}:{}: a command was rejected (exit {:?}):\n{}\n{}",
                    block.line,
                    done.code,
                    block.body,
                    tail(&done.output)
                )),
                Err(err) => failed.push(format!("{path}:{}: {}", block.line, tail(&err))),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        checked >= 2,
        "only {checked} checked blocks: the walkthrough's are gone"
    );
    assert!(failed.is_empty(), "\n{}\n", failed.join("\n\n"));
}

/// The check itself can fail: a misspelt flag and a missing overlay are caught.
#[test]
fn the_checked_block_harness_rejects_a_bad_flag_and_a_missing_overlay() {
    let kubeconfig = std::env::temp_dir().join(format!("doccheck-kube-bad-{}", std::process::id()));
    write_kubeconfig(&kubeconfig);
    for (body, good) in [
        (
            "kubectl -n kafka-lag-lab scale deployment kafka-consumer --replicas=9",
            true,
        ),
        (
            "kubectl -n kafka-lag-lab scale deployment kafka-consumer --replica=9",
            false,
        ),
        ("kubectl apply -k k8s/overlays/local", true),
        ("kubectl apply -k k8s/overlays/nowhere", false),
        ("make demo QUICK=1", true),
        ("make no-such-target", false),
        ("sudo sysctl -w fs.inotify.max_user_instances=1024", true),
        ("sudo sysctl -w fs.inotify.max_user_instancez=1024", false),
    ] {
        let mut command = shell(&format!("{CHECKED_PRELUDE}\n{body}"));
        command.env("KUBECONFIG", &kubeconfig);
        let done = run_bounded(command, Duration::from_secs(60)).expect("runs");
        assert_eq!(done.code == Some(0), good, "{body}: {}", done.output);
    }
    let _ = std::fs::remove_file(&kubeconfig);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).expect("readable").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        }
    }
}

/// kustomize itself is not installed here, so what the README's `kustomize edit set image` writes
/// (an `images:` list in `k8s/kustomization.yaml`) is written by hand into a copy, rendered, and
/// every one of our images must then come from the registry: a name that matches nothing (the
/// base's short `admin` instead of the rendered `kafka-lag-lab/admin`) would change nothing.
#[test]
fn the_readme_s_kustomize_edit_points_every_image_at_the_registry() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let block = fenced_blocks(&readme)
        .into_iter()
        .find(|b| b.body.contains("kustomize edit set image"))
        .expect("the README's block with `kustomize edit set image`");
    let joined = block.body.replace("\\\n", " ");
    let command = joined
        .lines()
        .find(|l| l.contains("kustomize edit set image"))
        .expect("the command");
    let after = command.split("set image").nth(1).unwrap_or("");
    let images: Vec<(String, String, String)> = after
        .split_whitespace()
        .map(|w| w.trim_end_matches(')'))
        .filter_map(|w| {
            let (name, new) = w.split_once('=')?;
            let (new_name, tag) = new.rsplit_once(':')?;
            Some((name.into(), new_name.into(), tag.into()))
        })
        .collect();
    assert_eq!(images.len(), 3, "three images in: {command}");

    let copy = std::env::temp_dir().join(format!("doccheck-k8s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(&root().join("k8s"), &copy);
    let mut stanza = String::from("images:\n");
    for (name, new_name, tag) in &images {
        stanza.push_str(&format!(
            "  - name: {name}\n    newName: {new_name}\n    newTag: {tag}\n"
        ));
    }
    let kustomization = copy.join("kustomization.yaml");
    let mut text = std::fs::read_to_string(&kustomization).expect("k8s/kustomization.yaml");
    assert!(
        !text.contains("images:"),
        "k8s/kustomization.yaml has images already"
    );
    text.push_str(&stanza);
    std::fs::write(&kustomization, text).expect("write");
    let mut render = Command::new("kubectl");
    render.arg("kustomize").arg(&copy);
    let done = run_bounded(render, Duration::from_secs(60)).expect("kubectl kustomize runs");
    let _ = std::fs::remove_dir_all(&copy);
    assert_eq!(done.code, Some(0), "{}", done.output);
    let rendered: Vec<&str> = done
        .output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    for binary in ["admin", "producer", "consumer"] {
        let (_, new_name, tag) = images
            .iter()
            .find(|(_, new_name, _)| new_name.ends_with(&format!("/{binary}")))
            .unwrap_or_else(|| panic!("no image for {binary} in: {command}"));
        let want = format!("{new_name}:{tag}");
        assert!(
            rendered.contains(&want.as_str()),
            "{want} not in {rendered:?}"
        );
    }
    assert!(
        !rendered.iter().any(|i| i.starts_with("kafka-lag-lab/")),
        "an image still points at kafka-lag-lab/: {rendered:?}"
    );
}
