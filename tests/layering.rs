//! The layering rules of ARCHITECTURE.md, checked over the sources: each top-level module
//! of `src/` (and each API wing under `src/api/`) may refer to modules listed above it in
//! the `layers` block only. This keeps the module graph free of cycles: data flows down.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The ordered module list of ARCHITECTURE.md's ```layers block.
fn layers() -> Vec<String> {
    let doc = fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).unwrap();
    let start = doc
        .find("```layers\n")
        .expect("ARCHITECTURE.md has a ```layers block");
    let body = &doc[start + "```layers\n".len()..];
    let end = body.find("```").expect("the layers block is closed");
    body[..end]
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a file belongs to: its top-level module, or `api/<wing>` under src/api/.
fn module_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let first = parts.first()?.trim_end_matches(".rs").to_owned();
    match first.as_str() {
        // The crate root and the binaries sit above everything.
        "lib" | "main" | "bin" => None,
        "api" if parts.len() > 2 => Some(format!("api/{}", parts[1].trim_end_matches(".rs"))),
        _ => Some(first),
    }
}

fn strip_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first two segments of each path that follows `crate::`, including every item of a
/// `crate::{a::x, b}` group.
fn crate_paths(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = 0;
            let mut items = Vec::new();
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            items.push(&group[item_start..j]);
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        items.push(&group[item_start..j]);
                        item_start = j + 1;
                    }
                    _ => {}
                }
            }
            for item in items {
                let item = item.trim();
                let first = ident_at(item);
                let second = item
                    .get(first.len()..)
                    .and_then(|s| s.strip_prefix("::"))
                    .map(ident_at)
                    .unwrap_or("");
                if !first.is_empty() {
                    out.push((first.to_owned(), second.to_owned()));
                }
            }
        } else {
            let first = ident_at(rest);
            let second = rest[first.len()..]
                .strip_prefix("::")
                .map(ident_at)
                .unwrap_or("");
            out.push((first.to_owned(), second.to_owned()));
        }
    }
    out
}

#[test]
fn modules_refer_only_to_layers_below_them() {
    let order = layers();
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let src = Path::new(ROOT).join("src");
    let api_wings: BTreeSet<String> = fs::read_dir(src.join("api"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    let mut problems = Vec::new();
    let mut edges = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let Some(module) = module_of(relative) else {
            continue;
        };
        let Some(&own) = rank.get(module.as_str()) else {
            problems.push(format!(
                "{}: module `{module}` is not in ARCHITECTURE.md's layers",
                relative.display()
            ));
            continue;
        };
        let source = strip_comments(&fs::read_to_string(file).unwrap());
        for (first, second) in crate_paths(&source) {
            let target = if first == "api" && api_wings.contains(&second) {
                format!("api/{second}")
            } else {
                first
            };
            if target == module || target == "self" || target.is_empty() {
                continue;
            }
            edges += 1;
            match rank.get(target.as_str()) {
                Some(&theirs) if theirs < own => {}
                Some(_) => problems.push(format!(
                    "{}: `{module}` refers to `{target}`, which is not below it",
                    relative.display()
                )),
                None => problems.push(format!(
                    "{}: `{module}` refers to `{target}`, which is not in the layers",
                    relative.display()
                )),
            }
        }
    }
    // The checker must see the graph it checks (a parser that finds nothing passes all).
    assert!(
        edges > 100,
        "only {edges} references found: is the parser broken?"
    );
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layering violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_parser_sees_grouped_and_inline_paths() {
    let paths =
        crate_paths("use crate::{a::x, b::{c, d}, e};\nfn f() { crate::g::h(); }\n// crate::z\n");
    let firsts: Vec<&str> = paths.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(firsts, ["a", "b", "e", "g", "z"]);
    assert_eq!(strip_comments("x // crate::z"), "x ");
}
