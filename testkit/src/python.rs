//! The independent clients: kafka-python (the seed's client) and confluent-kafka (librdkafka), run as
//! scripts from `tests/py/`. What they report is the ground truth our code is checked against.

use std::process::{Command, Output};

/// How to get the Python clients when they are missing.
pub const INSTALL_HINT: &str =
    "the Python Kafka clients are missing; install them with `pip install -r tests/py/requirements.txt`";

/// The interpreter: `PYTHON`, else `python3`.
pub fn interpreter() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `tests/py/<script>` with `args` and returns its stdout; panics with its stderr (and the install
/// hint when an import failed) if it exits non-zero.
pub fn run(script: &str, args: &[&str]) -> String {
    let path = crate::workspace_root()
        .join("tests")
        .join("py")
        .join(script);
    let out: Output = Command::new(interpreter())
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {}: {e}", interpreter(), path.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let hint = if stderr.contains("ModuleNotFoundError") {
            INSTALL_HINT
        } else {
            ""
        };
        panic!(
            "{script} {args:?} failed with {}:\n{stderr}\n{hint}",
            out.status
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
