//! Every relative link in README.md, BENCHMARKS.md, k8s/README.md and docs/ points at a file that
//! exists and, with `#anchor`, at one of its headings.

use std::path::{Path, PathBuf};

use doccheck::{heading_anchors, relative_links};

/// Pages other work is writing now, linked to ahead of their arrival. The test fails once one
/// exists, so the entry is removed when it lands.
const PENDING: &[&str] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages: Vec<PathBuf> = ["README.md", "BENCHMARKS.md", "k8s/README.md"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(&root).unwrap_or(&p).to_path_buf())
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let root = root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(root.join(&page))
            .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        for (target, anchor, line) in relative_links(&text) {
            checked += 1;
            let file = if target.is_empty() {
                page.clone()
            } else {
                normalize(&page.parent().unwrap_or(Path::new("")).join(&target))
            };
            let shown = file.display().to_string();
            if PENDING.contains(&shown.as_str()) {
                continue;
            }
            let Ok(linked) = std::fs::read_to_string(root.join(&file)) else {
                if !root.join(&file).exists() {
                    broken.push(format!(
                        "{}:{line}: {target} does not exist",
                        page.display()
                    ));
                }
                continue;
            };
            if let Some(anchor) = anchor {
                if file.extension().is_some_and(|e| e == "md")
                    && !heading_anchors(&linked).contains(&anchor)
                {
                    broken.push(format!(
                        "{}:{line}: {shown} has no heading for #{anchor}",
                        page.display()
                    ));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(broken.is_empty(), "\n{}\n", broken.join("\n"));
}

#[test]
fn pending_pages_are_removed_from_the_list_once_they_exist() {
    let arrived: Vec<&&str> = PENDING.iter().filter(|p| root().join(p).exists()).collect();
    assert!(
        arrived.is_empty(),
        "{arrived:?} now exist: remove them from PENDING in doccheck/tests/links.rs, so links to \
         them are checked"
    );
}
