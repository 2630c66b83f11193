//! `docs/configuration.md` against the code, so the reference cannot drift: every variable a binary
//! reads (its config struct's fields, listed by serde itself through `runtime::config::variables`)
//! has a row in that binary's section, every row is something the code reads, and every variable
//! read outside the structs (`std::env::var` in Rust, `${NAME:-…}` in scripts, the Makefile's
//! inputs) has a row somewhere, usually under "Developer-only".

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use doccheck::{makefile_env_reads, rust_env_reads, shell_env_reads, variable_sections, Section};

const DOC: &str = "docs/configuration.md";
/// The section whose rows every binary reads (through `runtime::telemetry::init`).
const EVERY_BINARY: &str = "Every binary";
const DEVELOPER: &str = "Developer-only";
/// The section whose rows every Kafka client reads (through `runtime::security::from_env`).
const SECURE: &str = "Secure clusters";
/// Read but not ours to document: the system's own.
const NOT_DOCUMENTED: &[(&str, &str)] = &[
    ("PATH", "where programs are found"),
    ("HOME", "the user's home"),
    ("ENGINE_READY", "scripts/images.sh's own once-only guard"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn doc() -> Vec<Section> {
    let path = root().join(DOC);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    variable_sections(&text)
}

fn listed<T: serde::de::DeserializeOwned>() -> Vec<String> {
    runtime::config::variables::<T>().unwrap_or_else(|e| panic!("{e}"))
}

/// What one binary (or one subcommand) reads through envy: its section, the struct and where it
/// is defined, the variables, and its `--help` text.
struct Reader {
    section: &'static str,
    structure: &'static str,
    file: &'static str,
    variables: Vec<String>,
    help: (&'static str, &'static str),
}

fn readers() -> Vec<Reader> {
    const ADMIN_HELP: (&str, &str) = ("admin/src/main.rs", include_str!("../../admin/src/main.rs"));
    vec![
        Reader {
            section: EVERY_BINARY,
            structure: "runtime::telemetry::LogSettings",
            file: "runtime/src/telemetry.rs",
            variables: listed::<runtime::telemetry::LogSettings>(),
            help: (
                "consumer/src/usage.txt",
                include_str!("../../consumer/src/usage.txt"),
            ),
        },
        Reader {
            section: "admin create-topic",
            structure: "admin::create_topic::Config",
            file: "admin/src/create_topic.rs",
            variables: listed::<admin::create_topic::Config>(),
            help: ADMIN_HELP,
        },
        Reader {
            section: "admin lag",
            structure: "admin::lag::Env",
            file: "admin/src/lag.rs",
            variables: listed::<admin::lag::Env>(),
            help: ADMIN_HELP,
        },
        Reader {
            section: "admin exporter",
            structure: "admin::exporter::Config",
            file: "admin/src/exporter/mod.rs",
            variables: listed::<admin::exporter::Config>(),
            help: ADMIN_HELP,
        },
        Reader {
            section: "producer",
            structure: "producer::Config",
            file: "producer/src/lib.rs",
            variables: listed::<producer::Config>(),
            help: (
                "producer/src/usage.txt",
                include_str!("../../producer/src/usage.txt"),
            ),
        },
        Reader {
            section: "consumer",
            structure: "consumer::Config",
            file: "consumer/src/config.rs",
            variables: listed::<consumer::Config>(),
            help: (
                "consumer/src/usage.txt",
                include_str!("../../consumer/src/usage.txt"),
            ),
        },
        Reader {
            section: SECURE,
            structure: "runtime::security::SecurityEnv",
            file: "runtime/src/security.rs",
            variables: listed::<runtime::security::SecurityEnv>(),
            help: (
                "consumer/src/usage.txt",
                include_str!("../../consumer/src/usage.txt"),
            ),
        },
        Reader {
            section: "demo",
            structure: "demo::config::Env",
            file: "demo/src/config.rs",
            variables: listed::<demo::config::Env>(),
            help: (
                "demo/src/usage.txt",
                include_str!("../../demo/src/usage.txt"),
            ),
        },
    ]
}

fn section<'a>(doc: &'a [Section], heading: &str) -> &'a Section {
    doc.iter()
        .find(|s| s.heading == heading)
        .unwrap_or_else(|| {
            panic!(
            "{DOC} has no section `## {heading}`; the check reads each binary's variables from \
             the tables under its own heading"
        )
        })
}

/// Every Rust file of the workspace and the bench harness, without build output, the bench's
/// client peers (the harness sets their variables) and this crate (its tests quote variables).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = path.strip_prefix(root()).unwrap_or(&path).to_path_buf();
        let skipped = name.starts_with('.')
            || name == "target"
            || name == "out"
            || relative == Path::new("bench/src/bin")
            || relative == Path::new("doccheck");
        if skipped {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Variables read outside the config structs, each with the files that read it.
fn read_directly() -> Vec<(String, BTreeSet<String>)> {
    let root = root();
    let mut reads: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let mut add = |names: Vec<String>, file: &Path| {
        let file = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for name in names {
            reads.entry(name).or_default().insert(file.clone());
        }
    };
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 20,
        "found only {files:?} under {}",
        root.display()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        add(rust_env_reads(&text), &file);
    }
    let scripts = std::fs::read_dir(root.join("scripts")).expect("scripts/");
    for script in scripts.flatten().map(|e| e.path()) {
        let text = std::fs::read_to_string(&script).unwrap_or_default();
        add(shell_env_reads(&text), &script);
    }
    let makefile = root.join("Makefile");
    add(
        makefile_env_reads(&std::fs::read_to_string(&makefile).expect("Makefile")),
        &makefile,
    );
    reads
        .into_iter()
        .filter(|(name, _)| !NOT_DOCUMENTED.iter().any(|(n, _)| n == name))
        .collect()
}

#[test]
fn every_variable_a_binary_reads_is_documented_in_its_section() {
    let doc = doc();
    let mut missing = Vec::new();
    for reader in readers() {
        let documented = &section(&doc, reader.section).variables;
        for var in &reader.variables {
            if !documented.iter().any(|(v, _)| v == var) {
                missing.push(format!(
                    "{var} is read by {} ({}) but not documented: add a row \
                     `| `{var}` | <default> | <rule> |` to the table under `## {}` in {DOC}",
                    reader.structure, reader.file, reader.section
                ));
            }
        }
    }
    assert!(missing.is_empty(), "\n{}\n", missing.join("\n"));
}

#[test]
fn every_documented_variable_is_read() {
    let doc = doc();
    let direct: Vec<String> = read_directly().into_iter().map(|(n, _)| n).collect();
    let mut stale = Vec::new();
    for reader in readers() {
        for (var, line) in &section(&doc, reader.section).variables {
            if !reader.variables.contains(var) && !direct.contains(var) {
                stale.push(format!(
                    "{DOC}:{line}: {var} is documented under `## {}`, but neither {} ({}) nor \
                     any code outside the config structs reads it: remove the row, or read it",
                    reader.section, reader.structure, reader.file
                ));
            }
        }
    }
    let in_structs: Vec<String> = readers().into_iter().flat_map(|r| r.variables).collect();
    for (var, line) in &section(&doc, DEVELOPER).variables {
        if !direct.contains(var) && !in_structs.contains(var) {
            stale.push(format!(
                "{DOC}:{line}: {var} is documented under `## {DEVELOPER}`, but no source file, \
                 script or the Makefile reads it: remove the row"
            ));
        }
    }
    assert!(stale.is_empty(), "\n{}\n", stale.join("\n"));
}

#[test]
fn every_variable_read_outside_the_config_structs_is_documented() {
    let doc = doc();
    let documented: Vec<&str> = doc
        .iter()
        .flat_map(|s| s.variables.iter().map(|(v, _)| v.as_str()))
        .collect();
    let reads = read_directly();
    // The scan must see what it is known to read, or it has gone blind.
    for known in [
        "NISSHI_BIN",
        "TEST_BROKER",
        "BENCH_WINDOW",
        "IMAGE_REGISTRY",
        "HOSTNAME",
    ] {
        assert!(
            reads.iter().any(|(n, _)| n == known),
            "the scan no longer finds {known}: {reads:?}"
        );
    }
    let missing: Vec<String> = reads
        .iter()
        .filter(|(name, _)| !documented.contains(&name.as_str()))
        .map(|(name, files)| {
            format!(
                "{name} is read by {} but not documented: add a row `| `{name}` | <default> | \
                 <what it does> |` to `## {DEVELOPER}` in {DOC} (or to a binary's section, if \
                 a binary reads it)",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(missing.is_empty(), "\n{}\n", missing.join("\n"));
}

/// `--help` is the other place a person looks: it names every variable too.
#[test]
fn each_binary_s_help_names_its_variables() {
    let logging = listed::<runtime::telemetry::LogSettings>();
    let mut missing = Vec::new();
    for reader in readers().into_iter().filter(|r| r.section != EVERY_BINARY) {
        let (file, text) = reader.help;
        for var in reader.variables.iter().chain(&logging) {
            let named = text.match_indices(var.as_str()).any(|(at, _)| {
                let before = text[..at].chars().next_back();
                let after = text[at + var.len()..].chars().next();
                let word =
                    |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                !word(before) && !word(after)
            });
            if !named {
                missing.push(format!(
                    "{var} ({}) is not named in {file}, the help text: add it there too",
                    reader.structure
                ));
            }
        }
    }
    assert!(missing.is_empty(), "\n{}\n", missing.join("\n"));
}

/// The security variables are read by every client, so every client's help names them (the
/// [`SECURE`] reader checks the consumer's).
#[test]
fn every_client_s_help_names_the_security_variables() {
    let helps = [
        ("admin/src/main.rs", include_str!("../../admin/src/main.rs")),
        (
            "producer/src/usage.txt",
            include_str!("../../producer/src/usage.txt"),
        ),
        (
            "demo/src/usage.txt",
            include_str!("../../demo/src/usage.txt"),
        ),
    ];
    let mut missing = Vec::new();
    for var in listed::<runtime::security::SecurityEnv>() {
        for (file, text) in helps {
            if !text.contains(var.as_str()) {
                missing.push(format!(
                    "{var} is not named in {file}, the help text: add it"
                ));
            }
        }
    }
    assert!(missing.is_empty(), "\n{}\n", missing.join("\n"));
}

/// A config struct read anywhere through `runtime::config::from_env` must be in [`readers`], or its
/// variables would escape every check above: the call sites are counted against the readers.
#[test]
fn every_config_struct_read_from_the_environment_is_checked() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut calls = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("config::from_env") && !code.contains("fn from_env") {
                let shown = file
                    .strip_prefix(&root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                calls.push(format!("{shown}:{}", i + 1));
            }
        }
    }
    let readers = readers();
    assert_eq!(
        calls.len(),
        readers.len(),
        "{} calls of runtime::config::from_env ({calls:?}) but {} readers in \
         doccheck/tests/configuration.rs ({:?}): a struct read from the environment needs a `Reader` \
         there and a section in {DOC}",
        calls.len(),
        readers.len(),
        readers.iter().map(|r| r.structure).collect::<Vec<_>>()
    );
}
