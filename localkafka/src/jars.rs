//! The cached jars of the pinned release, and Java programs run on them: the broker, Kafka's own
//! command-line tools (classes in `kafka-tools`), and small Java clients compiled with `javac`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use crate::{version, Error};

/// JVM flags that keep Kafka's logging at warn: the jars' only SLF4J binding is slf4j-simple
/// (`localkafka/pom.xml`), configured by system properties. Log4j's status logger stays quiet too.
pub const QUIET: [&str; 3] = [
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dlog4j2.statusLoggerLevel=OFF",
];

/// The directory of the cached jars: `KAFKA_LIBS`, else
/// `${XDG_CACHE_HOME:-~/.cache}/kafka-lag-lab/kafka-<version>`, where `scripts/ensure-kafka.sh`
/// puts them.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KAFKA_LIBS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache
        .join("kafka-lag-lab")
        .join(format!("kafka-{}", version()))
}

/// `dir()/*`, after making sure the jars are there. When they are not, and this is a checkout with
/// `scripts/ensure-kafka.sh`, runs it once (Maven, about 30 s); otherwise says how to get them.
pub fn classpath() -> Result<String, Error> {
    // One download per process, however many tests start brokers at once.
    static FETCH: Mutex<()> = Mutex::new(());
    let _once = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = dir();
    if !complete(&dir) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-kafka.sh");
        if std::env::var_os("KAFKA_LIBS").is_none() && script.is_file() {
            let status = Command::new("bash")
                .arg(&script)
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|source| Error::Io {
                    what: format!("running {}", script.display()),
                    source,
                })?;
            if !status.success() {
                return Err(Error::Jars(format!(
                    "{} failed ({status}): see its output above",
                    script.display()
                )));
            }
        }
    }
    if !complete(&dir) {
        return Err(Error::Jars(format!(
            "the Apache Kafka {} jars are not in {}: run `make kafka-jars` (scripts/ensure-kafka.sh, \
             Maven and Java 17+), or point KAFKA_LIBS at a directory holding them",
            version(),
            dir.display()
        )));
    }
    Ok(format!("{}/*", dir.display()))
}

/// Whether `dir` holds the broker jar of the pinned version.
fn complete(dir: &Path) -> bool {
    let v = version();
    dir.join(format!("kafka_2.13-{v}.jar")).is_file()
        && dir.join(format!("kafka-tools-{v}.jar")).is_file()
}

/// `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else `java` from `PATH`.
pub fn java_binary() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| Path::new(&home).join("bin").join("java"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// `java` with the quiet logging flags and `-cp classpath`, ready for a main class and arguments.
pub fn java(classpath: &str) -> Command {
    let mut cmd = Command::new(java_binary());
    cmd.args(QUIET).arg("-cp").arg(classpath);
    cmd
}

/// One of Kafka's command-line tools, e.g.
/// `tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")` for `kafka-consumer-groups`.
pub fn tool(class: &str) -> Result<Command, Error> {
    let classpath = classpath()?;
    let mut cmd = java(&classpath);
    // The tools are short-lived: C1 alone starts them faster.
    cmd.arg("-XX:TieredStopAtLevel=1").arg(class);
    Ok(cmd)
}

/// Compiles `sources` with `javac` against the cached jars into `out`, unless `out` already holds
/// classes newer than every source. Returns the classpath to run them with (`out` plus the jars).
pub fn compile(sources: &[PathBuf], out: &Path) -> Result<String, Error> {
    static COMPILE: Mutex<()> = Mutex::new(());
    let _one = COMPILE.lock().unwrap_or_else(|p| p.into_inner());
    let jars = classpath()?;
    let stamp = out.join(".compiled");
    let newest_source = sources
        .iter()
        .filter_map(|s| s.metadata().and_then(|m| m.modified()).ok())
        .max();
    let compiled = stamp.metadata().and_then(|m| m.modified()).ok();
    let fresh = matches!((compiled, newest_source), (Some(c), Some(s)) if c >= s);
    if !fresh {
        let io = |what: String| move |source| Error::Io { what, source };
        // Compile beside, then rename: a concurrent run never sees half a directory.
        let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        let javac = std::env::var_os("JAVA_HOME")
            .map(|home| Path::new(&home).join("bin").join("javac"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("javac"));
        let output = Command::new(&javac)
            .args(["-nowarn", "-encoding", "UTF-8", "-cp", &jars, "-d"])
            .arg(&tmp)
            .args(sources)
            .output()
            .map_err(io(format!("running {}", javac.display())))?;
        if !output.status.success() {
            return Err(Error::Jars(format!(
                "javac failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        std::fs::write(tmp.join(".compiled"), b"")
            .map_err(io(format!("writing a stamp in {}", tmp.display())))?;
        let _ = std::fs::remove_dir_all(out);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::rename(&tmp, out).map_err(io(format!("moving classes to {}", out.display())))?;
    }
    Ok(format!("{}:{jars}", out.display()))
}
