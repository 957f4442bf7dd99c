//! The import structure, enforced: arrows only run downward.
//!
//! 1. In `nines-gateway`, every top-level module is a layer, listed below from the bottom up; a
//!    file may name (`crate::…`, `super::…`, in `use` lines or inline) only modules of its own
//!    layer or lower ones. A wrong-way import fails this test with the file, the module it names
//!    and both layers.
//! 2. In every crate of the workspace, no two source files import each other, directly or in a
//!    circle.
//!
//! Tests (`tests.rs`, `tests/`, `#[cfg(test)] mod … { }`) are left out: a test may reach
//! anywhere. Comments are left out too. `docs/ARCHITECTURE.md` explains the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `nines-gateway`'s layers, bottom first. A module may import its own layer and those before it.
const LAYERS: &[&str] = &[
    "clock",
    "config",
    "tracecontext",
    "providers",
    "translate",
    "resilience",
    "replicas",
    "router",
    "telemetry",
    "store",
    "auth",
    "limits",
    "access",
    "relay",
    "state",
    "request",
    "pipeline",
    "videos",
    "status",
    "api",
    "server",
];

/// A crate's source files by module path (`resilience::attempt`; the root is empty).
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    stack.push(path);
                }
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".rs") || name == "tests.rs" {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("lib" | "main" | "mod")
            ) {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The text with comments and `#[cfg(test)] mod … { … }` blocks removed.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        match (is_mod, trimmed.find(['{', ';'])) {
            (true, Some(open)) if trimmed.as_bytes()[open] == b'{' => {
                let body = &trimmed[open + 1..];
                let mut depth = 1;
                let mut end = body.len();
                for (i, c) in body.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                rest = &body[end..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` / `super::a` path in `code`, `use` groups (`a::{b, c::d}`) expanded,
/// resolved against the file's own module path.
fn paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(root) {
            let at = from + found;
            from = at + root.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let base: Vec<String> = if root == "super::" {
                module[..module.len().saturating_sub(1)].to_vec()
            } else {
                Vec::new()
            };
            expand(&code[from..], base, &mut out);
        }
    }
    out
}

/// Reads one path (and, for a `{…}` group, every path in it) from the start of `text`.
fn expand(text: &str, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut rest = text;
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        rest = &rest[ident.len()..];
        if ident != "self" {
            prefix.push(ident);
        }
        match rest.strip_prefix("::") {
            Some(after) => rest = after,
            None => break,
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut part = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (depth == 1 && c == ',') {
                    let item = part.trim().to_owned();
                    if !item.is_empty() {
                        expand(&item, prefix.clone(), out);
                    }
                    part.clear();
                    if depth == 0 {
                        return;
                    }
                } else {
                    part.push(c);
                }
            }
            return;
        }
    }
    out.push(prefix);
}

/// The files a file imports, as module paths of the crate (the longest that exists), without a
/// parent naming its own descendants (that is how modules are declared).
fn imports(
    modules: &BTreeMap<Vec<String>, PathBuf>,
) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut edges = BTreeMap::new();
    for (module, path) in modules {
        let code = code_of(&std::fs::read_to_string(path).unwrap());
        let mut targets = BTreeSet::new();
        for p in paths(&code, module) {
            let Some(target) = (1..=p.len())
                .rev()
                .map(|k| p[..k].to_vec())
                .find(|t| modules.contains_key(t))
            else {
                continue;
            };
            if &target != module && !target.starts_with(module) {
                targets.insert(target);
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The circles (strongly connected components of more than one file), Tarjan's algorithm.
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let Some((w, _)) = self.edges.get_key_value(w) else {
                    continue;
                };
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    component.push(w.join("::"));
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn gateway_imports_only_run_down_the_layers() {
    let src = crates_dir().join("nines-gateway/src");
    let modules = modules(&src);
    let layer = |m: &Vec<String>| {
        m.first()
            .and_then(|top| LAYERS.iter().position(|l| l == top))
    };
    let mut wrong = Vec::new();
    for (module, targets) in imports(&modules) {
        if module.is_empty() {
            continue; // lib.rs declares and re-exports: it is the top.
        }
        let Some(own) = layer(&module) else {
            wrong.push(format!("{}: not in the layer table", module.join("::")));
            continue;
        };
        for target in targets {
            if target.is_empty() {
                wrong.push(format!("{} imports the crate root", module.join("::")));
                continue;
            }
            match layer(&target) {
                Some(theirs) if theirs <= own => {}
                theirs => wrong.push(format!(
                    "{} ({}) imports {} ({}), which is above it",
                    module.join("::"),
                    LAYERS[own],
                    target.join("::"),
                    theirs.map_or("not in the layer table", |t| LAYERS[t]),
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run up the layers:\n{}",
        wrong.join("\n")
    );
    // Every layer exists: a renamed module must be renamed here too.
    for l in LAYERS {
        assert!(
            modules
                .keys()
                .any(|m| m.first().map(String::as_str) == Some(*l)),
            "layer '{l}' has no module"
        );
    }
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut found = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(crates_dir()).unwrap().flatten() {
        let src = entry.path().join("src");
        if !src.is_dir() {
            continue;
        }
        crates += 1;
        for circle in circles(&imports(&modules(&src))) {
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                circle.join(", ")
            ));
        }
    }
    assert!(crates >= 4, "found only {crates} crates");
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    // A `use` group, `super::` and an inline path are all read; a test module and comments are
    // not.
    let code = code_of(
        "use crate::a::{b, c::{d, e}};\nfn f() { super::g::h(); } // crate::x\n\
         #[cfg(test)]\nmod tests { use crate::y; }\nuse crate::z as w;",
    );
    let found = paths(&code, &["m".into(), "n".into()]);
    let found: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(found, ["a::b", "a::c::d", "a::c::e", "z", "m::g::h"]);
    // A circle of two is found; a chain is not.
    let edge = |a: &str, b: &str| (vec![a.to_owned()], BTreeSet::from([vec![b.to_owned()]]));
    let circle = BTreeMap::from([edge("a", "b"), edge("b", "a"), edge("c", "a")]);
    assert_eq!(circles(&circle), [vec!["a".to_owned(), "b".to_owned()]]);
    let chain = BTreeMap::from([edge("a", "b"), edge("c", "a")]);
    assert!(circles(&chain).is_empty());
}
