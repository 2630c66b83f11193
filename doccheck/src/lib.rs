//! Keeps the documentation true. The checks are this crate's tests; the library is what they share:
//!
//! - [`variable_sections`]: the variables `docs/configuration.md` documents, per `##` section (the
//!   first cell of each table row, in backticks);
//! - [`fenced_blocks`]: the shell blocks of a Markdown file with their marks (```` ```sh runnable ````);
//! - [`relative_links`], [`heading_anchors`]: links between the pages, and what they may point at;
//! - [`rust_env_reads`], [`shell_env_reads`], [`makefile_env_reads`]: the variables code reads
//!   outside the config structs, found by scanning its text;
//! - [`run_bounded`]: a command in its own process group, killed whole at its deadline.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::{
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The variables documented under one `##` heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The heading's text, without the `## `.
    pub heading: String,
    /// Each documented variable with its 1-based line.
    pub variables: Vec<(String, usize)>,
}

/// Every `##` section of `markdown` with the variables its tables document: a table row whose first
/// cell is one name in backticks, like ``| `KAFKA_BROKERS` | required | … |``. Header and separator
/// rows, and rows whose first cell is anything else, are not variables.
pub fn variable_sections(markdown: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut current = Section {
        heading: String::new(),
        variables: Vec::new(),
    };
    let mut in_fence = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            sections.push(std::mem::replace(
                &mut current,
                Section {
                    heading: heading.trim().to_string(),
                    variables: Vec::new(),
                },
            ));
            continue;
        }
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if let Some(name) = first
            .strip_prefix('`')
            .and_then(|f| f.strip_suffix('`'))
            .filter(|n| is_variable_name(n))
        {
            current.variables.push((name.to_string(), index + 1));
        }
    }
    sections.push(current);
    sections.retain(|s| !s.heading.is_empty() || !s.variables.is_empty());
    sections
}

/// `NAME`: an upper-case letter, then upper-case letters, digits and underscores.
pub fn is_variable_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The relative links of `markdown` outside code: `(target, anchor, line)` for each `](target#anchor)`,
/// web addresses left out. `target` is empty for a link within the page.
pub fn relative_links(markdown: &str) -> Vec<(String, Option<String>, usize)> {
    let mut links = Vec::new();
    let mut in_fence = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Inline code may show link syntax without being a link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for (at, _) in prose.match_indices("](") {
            let rest = &prose[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let link = &rest[..end];
            if link.contains("://") || link.starts_with("mailto:") || link.contains(' ') {
                continue;
            }
            let (target, anchor) = match link.split_once('#') {
                Some((t, a)) => (t, Some(a.to_string())),
                None => (link, None),
            };
            links.push((target.to_string(), anchor, index + 1));
        }
    }
    links
}

/// The anchors GitHub gives a page's headings: lower case, punctuation other than `-` and `_`
/// dropped, spaces to `-` (`## On a cluster: kind` is `on-a-cluster-kind`).
pub fn heading_anchors(markdown: &str) -> Vec<String> {
    let mut anchors = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let Some(text) = line.strip_prefix('#').map(|t| t.trim_start_matches('#')) else {
            continue;
        };
        if in_fence || !text.starts_with(' ') {
            continue;
        }
        let slug: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c),
                _ => None,
            })
            .collect();
        anchors.push(slug);
    }
    anchors
}

/// A fenced code block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The language, the info string's first word (`sh`).
    pub lang: String,
    /// The info string's other words: the marks (`runnable`, `checked`, `broker`).
    pub marks: Vec<String>,
    /// The lines between the fences.
    pub body: String,
    /// The 1-based line of the opening fence.
    pub line: usize,
}

/// Every fenced block of `markdown` (```` ``` ```` fences, not indented code).
pub fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(info)) => {
                let mut words = info.split_whitespace().map(str::to_string);
                open = Some(Block {
                    lang: words.next().unwrap_or_default(),
                    marks: words.collect(),
                    body: String::new(),
                    line: index + 1,
                });
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                blocks.extend(open.take());
            }
            (Some(block), _) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The names in `source` (Rust) read with `env::var("NAME")`, `env::var_os("NAME")` or the bench
/// harness's `env_or("NAME", …)`: literal names only, which is how this workspace reads them.
pub fn rust_env_reads(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for call in ["env::var(", "env::var_os(", "env_or("] {
        for (at, _) in source.match_indices(call) {
            let rest = source[at + call.len()..].trim_start();
            if let Some(name) = rest
                .strip_prefix('"')
                .and_then(|r| r.split('"').next())
                .filter(|n| is_variable_name(n))
            {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The names a shell script reads with a default or a test: `${NAME:-…}`, `${NAME-…}`, `${NAME:+…}`,
/// `${NAME:?…}`, `${NAME:=…}`. A plain `$NAME` or `${NAME}` is usually the script's own variable and
/// is not counted.
pub fn shell_env_reads(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in source.match_indices("${") {
        let rest = &source[at + 2..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        let defaulted = after.starts_with(':')
            || after.starts_with('-')
            || after.starts_with('+')
            || after.starts_with('=')
            || after.starts_with('?');
        if defaulted && is_variable_name(name) {
            names.push(name.to_string());
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The names a Makefile takes from its environment or command line: `NAME ?= …` defaults,
/// `$(NAME)` that the Makefile never assigns, and `$$NAME`/`$${NAME…}` in recipes (the shell's
/// environment). make's own variables (`MAKEFILE_LIST`, `SHELL`…) are left out.
pub fn makefile_env_reads(source: &str) -> Vec<String> {
    let mut assigned = Vec::new();
    let mut names = Vec::new();
    for line in source.lines() {
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((left, _)) = line.split_once('=') else {
            continue;
        };
        let (name, op) = match left.strip_suffix('?').or_else(|| left.strip_suffix(':')) {
            Some(name) => (name.trim(), &left[name.len()..]),
            None => (left.trim(), ""),
        };
        if is_variable_name(name) && !line.starts_with('\t') {
            if op == "?" {
                names.push(name.to_string());
            } else {
                assigned.push(name.to_string());
            }
        }
    }
    let mut used = |prefix: &str| {
        for (at, _) in source.match_indices(prefix) {
            let rest = &source[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            if is_variable_name(name) {
                names.push(name.to_string());
            }
        }
    };
    used("$$");
    used("$${");
    for (at, _) in source.match_indices("$(") {
        let rest = &source[at + 2..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        // `$(NAME)` and `$(NAME:…)` are references; `$(shell …)` and friends are lower case.
        if is_variable_name(name) && !assigned.iter().any(|a| a == name) {
            names.push(name.to_string());
        }
    }
    names.retain(|n| !n.starts_with("MAKE") && n != "SHELL" && n != "CURDIR");
    names.sort();
    names.dedup();
    names
}

/// What [`run_bounded`] saw.
#[derive(Debug)]
pub struct Ran {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output and standard error, interleaved as they came.
    pub output: String,
    /// How long it took.
    pub took: Duration,
}

/// Runs `command` in a process group of its own, stdout and stderr into one file, and stops the
/// whole group (every child it started) at `timeout`: SIGINT, then SIGKILL. Errors: it could not
/// start, or it timed out (the message carries its output so far).
pub fn run_bounded(mut command: Command, timeout: Duration) -> Result<Ran, String> {
    // A file rather than a pipe: nothing blocks on a reader, and a grandchild that outlives the
    // kill cannot hold the collection open.
    let path = std::env::temp_dir().join(format!(
        "doccheck-{}-{}.out",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file_err = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file_err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {command:?}: {e}"))?;
    let deadline = started + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => break None,
        }
    };
    let group = format!("-{}", child.id());
    let signal = |name: &str| {
        let _ = Command::new("kill")
            .args([name, "--", &group])
            .stderr(Stdio::null())
            .status();
    };
    if status.is_none() {
        // Timed out: a Ctrl-C first, so a demo stops the children it put in process groups of
        // their own; then, 30 s later at most, the whole group by force.
        signal("-INT");
        let grace = Instant::now() + Duration::from_secs(30);
        while Instant::now() < grace && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Whatever it left behind in its group (a background process) goes with it.
    signal("-KILL");
    let _ = child.wait();
    let output = std::fs::read(&path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    match status {
        Some(status) => Ok(Ran {
            code: status.code(),
            output,
            took: started.elapsed(),
        }),
        None => Err(format!(
            "timed out after {timeout:?}; its output:\n{output}"
        )),
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_list_the_first_cell_of_table_rows_and_skip_code() {
        let md = "# T\n\n## consumer\n\n| variable | default |\n|---|---|\n| `GROUP_ID` | `my-group` |\n\
                  | `not a name` | x |\n\n```sh\n| `FAKE` | in a block |\n```\n\n## Developer-only\n\n\
                  | `NISSHI_BIN` | unset |\n";
        let sections = variable_sections(md);
        let names: Vec<(&str, Vec<&str>)> = sections
            .iter()
            .map(|s| {
                (
                    s.heading.as_str(),
                    s.variables.iter().map(|(v, _)| v.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("consumer", vec!["GROUP_ID"]),
                ("Developer-only", vec!["NISSHI_BIN"])
            ]
        );
        assert_eq!(sections[0].variables[0].1, 7);
    }

    #[test]
    fn links_and_anchors_are_found_as_github_makes_them() {
        let md = "## On a cluster: kind\n\nSee [c](docs/configuration.md#demo), [here](#on-a-cluster-kind),\n\
                  [web](https://example.com/x) and `[not](a-link)`.\n```sh\n[no](link)\n```\n## `admin lag`\n";
        assert_eq!(
            relative_links(md),
            [
                (
                    "docs/configuration.md".to_string(),
                    Some("demo".to_string()),
                    3
                ),
                (String::new(), Some("on-a-cluster-kind".to_string()), 3),
            ]
        );
        assert_eq!(heading_anchors(md), ["on-a-cluster-kind", "admin-lag"]);
    }

    #[test]
    fn blocks_carry_their_marks_and_line() {
        let md = "text\n```sh runnable broker\nmake demo\n```\n\n```yaml\na: 1\n```\n";
        let blocks = fenced_blocks(md);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].lang, "sh");
        assert_eq!(blocks[0].marks, ["runnable", "broker"]);
        assert_eq!(blocks[0].body, "make demo\n");
        assert_eq!(blocks[0].line, 2);
        assert_eq!(blocks[1].lang, "yaml");
    }

    #[test]
    fn rust_reads_are_literal_env_calls() {
        let src = r#"std::env::var("NISSHI_LOG"); std::env::var_os( "KAFKA_LIBS" );
            env_or("BENCH_WINDOW", 30); std::env::var(name); env::var("lower");"#;
        assert_eq!(
            rust_env_reads(src),
            ["BENCH_WINDOW", "KAFKA_LIBS", "NISSHI_LOG"]
        );
    }

    #[test]
    fn shell_reads_are_defaulted_expansions() {
        let src =
            r#"x="${TAG:-dev}" ${PLATFORMS:+--platform} ${STORAGE_DRIVER-} ${local} ${OWN} $HOME"#;
        assert_eq!(shell_env_reads(src), ["PLATFORMS", "STORAGE_DRIVER", "TAG"]);
    }

    #[test]
    fn makefile_reads_are_defaults_unassigned_references_and_recipe_variables() {
        let src = "TARGET := x\nTAG ?= dev\nexport CC_X ?= musl-gcc\nARGS = $(if $(KAFKA_DATA),--data $(KAFKA_DATA))\n\
                   t:\n\t@echo $(TARGET) $(MAKEFILE_LIST) $$KAFKA_BROKERS $${PYTHON:-python3} $$1\n";
        assert_eq!(
            makefile_env_reads(src),
            ["CC_X", "KAFKA_BROKERS", "KAFKA_DATA", "PYTHON", "TAG"]
        );
    }

    #[test]
    fn a_bounded_run_reports_output_and_kills_at_its_deadline() {
        let mut ok = Command::new("bash");
        ok.args(["-c", "echo out; echo err >&2; exit 3"]);
        let ran = run_bounded(ok, Duration::from_secs(10)).expect("runs");
        assert_eq!(ran.code, Some(3));
        assert!(
            ran.output.contains("out") && ran.output.contains("err"),
            "{}",
            ran.output
        );

        let mut slow = Command::new("bash");
        slow.args(["-c", "echo started; sleep 30 & wait"]);
        let started = Instant::now();
        let err = run_bounded(slow, Duration::from_millis(500)).expect_err("times out");
        assert!(
            err.contains("timed out") && err.contains("started"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sleep was killed too"
        );
    }
}
