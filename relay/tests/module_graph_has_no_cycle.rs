//! The files of `relay/src` import each other without a cycle.
//!
//! Two files that import each other are one concern or a missing third file, and a cycle is
//! how a hot path ends up needing the whole per-core state to be tested. The graph: one node
//! per file of the library (`main.rs` is another crate), an edge wherever a file names another
//! through `crate::`, `super::`, `self::` or one of its own child modules, in a `use` or inline
//! in code. A path goes to the deepest file module it names (`crate::vors::room::RoomCell` is
//! `vors/room.rs`, `crate::vors::VorsCore` is `vors/mod.rs`). Comments and the unit tests at
//! the bottom of a file (`#[cfg(test)] mod tests`) are not part of the graph, nor is a folder's
//! `pub use` of its own children's items (`pub use file::load` in `config/mod.rs`): that is
//! the folder's public face, not something its `mod.rs` depends on.

mod rust_source;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rust_source::{paths_in, without_comments_and_strings, without_tests};

/// A module path inside the crate: `[]` is `lib.rs`, `["vors", "room"]` is `vors/room.rs`.
type Module = Vec<String>;

#[test]
fn module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_sources(&src);
    let graph = import_graph(&sources);
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    // A parser that saw nothing would find no cycle either.
    assert!(
        edges > 40,
        "only {edges} imports found in {} files",
        sources.len()
    );
    assert!(
        graph[&module("shard")].contains(&module("config")),
        "shard.rs imports config"
    );
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "relay/src imports in a circle:\n{}",
        cycles
            .iter()
            .map(|(cycle, group)| format!(
                "  {}\n    (the whole group: {})",
                cycle.join(" -> "),
                group.join(", ")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_parser_sees_grouped_nested_inline_and_child_imports() {
    let sources = BTreeMap::from([
        (module(""), String::new()),
        (
            module("a"),
            "pub mod b;\nuse b::X;\npub use c::V;\n".to_owned(),
        ),
        (
            module("f"),
            "mod g;\npub(crate) use self::g::U;\n".to_owned(),
        ),
        (module("f/g"), "use super::T;".to_owned()),
        (
            module("a/b"),
            "use super::{self as up, c::{Y, Z as W}};\n// use crate::d;\n".to_owned(),
        ),
        (
            module("a/c"),
            "fn f() { crate::d::g(\"crate::e\") }".to_owned(),
        ),
        (
            module("d"),
            "const Q: [char; 2] = ['\\'', '\"'];\npub(crate) use crate::e::*;".to_owned(),
        ),
        (
            module("e"),
            "fn h() {}\n#[cfg(test)]\nmod tests {\n    use crate::a::b;\n}\n".to_owned(),
        ),
    ]);
    let graph = import_graph(&sources);
    let names =
        |m: &str| -> Vec<String> { graph[&module(m)].iter().map(display).collect::<Vec<_>>() };
    assert_eq!(names("a"), ["a/b"], "a re-export of a child is no import");
    assert!(names("f").is_empty());
    assert_eq!(names("f/g"), ["f"]);
    assert_eq!(names("a/b"), ["a", "a/c"]);
    assert_eq!(names("a/c"), ["d"], "a string is no path");
    assert_eq!(names("d"), ["e"]);
    assert!(
        names("e").is_empty(),
        "unit tests are not part of the graph"
    );
    let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        cycles(&graph),
        [(strings(&["a", "a/b", "a"]), strings(&["a", "a/b"]))]
    );
}

/// `"vors/room"` as a [`Module`].
fn module(path: &str) -> Module {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn display(module: &Module) -> String {
    if module.is_empty() {
        "lib".to_owned()
    } else {
        module.join("/")
    }
}

/// Every file of the library under `src`, by module, without comments and unit tests.
fn read_sources(src: &Path) -> BTreeMap<Module, String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(src).expect("under src");
            let mut parts: Module = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let file = parts.pop().expect("a file name");
            match file.as_str() {
                "main.rs" if parts.is_empty() => return None,
                "lib.rs" if parts.is_empty() => {}
                "mod.rs" => {}
                _ => parts.push(file.trim_end_matches(".rs").to_owned()),
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            Some((parts, text))
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Which files each file imports.
fn import_graph(sources: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    sources
        .iter()
        .map(|(module, text)| {
            let code = without_tests(&without_comments_and_strings(text));
            let targets = paths_in(&code)
                .into_iter()
                .filter(|(path, reexport)| !(*reexport && names_a_child(module, path, sources)))
                .filter_map(|(path, _)| resolve(module, &path, sources))
                .filter(|target| target != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// Whether `path`, named in `from`, starts with one of `from`'s child modules.
fn names_a_child(from: &Module, path: &[String], sources: &BTreeMap<Module, String>) -> bool {
    let first = match path {
        [this, first, ..] if this == "self" => first,
        [first, ..] => first,
        [] => return false,
    };
    let mut child = from.clone();
    child.push(first.clone());
    sources.contains_key(&child)
}

/// The file that `path`, named in `from`, leads to; `None` for another crate.
fn resolve(from: &Module, path: &[String], sources: &BTreeMap<Module, String>) -> Option<Module> {
    let mut base: Module;
    let mut segments = path.iter().peekable();
    match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            base = Vec::new();
            segments.next();
        }
        Some("super") => {
            base = from.clone();
            while segments.peek().is_some_and(|s| *s == "super") {
                base.pop();
                segments.next();
            }
        }
        Some("self") => {
            base = from.clone();
            segments.next();
        }
        Some(first) => {
            let mut child = from.clone();
            child.push(first.to_owned());
            if !sources.contains_key(&child) {
                return None;
            }
            base = from.clone();
        }
        None => return None,
    }
    for segment in segments {
        base.push(segment.clone());
        if !sources.contains_key(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}

/// Every group of files that import each other (a strongly connected component of more than
/// one file): its shortest cycle through its first file, from that file back to itself, and
/// every file of the group.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<(Vec<String>, Vec<String>)> {
    let mut found = Vec::new();
    let mut seen: BTreeSet<&Module> = BTreeSet::new();
    for start in graph.keys() {
        if seen.contains(start) {
            continue;
        }
        // The files on a cycle through `start`: those it reaches that also reach it.
        let reach = reachable(graph, start);
        if !reach.contains(start) {
            continue;
        }
        let component: BTreeSet<&Module> = reach
            .into_iter()
            .filter(|m| reachable(graph, m).contains(start))
            .collect();
        seen.extend(component.iter().copied());
        let group = component.iter().copied().map(display).collect();
        found.push((shortest_cycle(graph, start, &component), group));
    }
    found
}

fn reachable<'a>(
    graph: &'a BTreeMap<Module, BTreeSet<Module>>,
    from: &Module,
) -> BTreeSet<&'a Module> {
    let mut reached = BTreeSet::new();
    let mut stack: Vec<&Module> = graph[from].iter().collect();
    while let Some(next) = stack.pop() {
        if reached.insert(next) {
            stack.extend(graph.get(next).into_iter().flatten());
        }
    }
    reached
}

/// The shortest way from `start` back to itself within `component` (breadth first).
fn shortest_cycle(
    graph: &BTreeMap<Module, BTreeSet<Module>>,
    start: &Module,
    component: &BTreeSet<&Module>,
) -> Vec<String> {
    let mut came_from: BTreeMap<&Module, &Module> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for next in &graph[at] {
            if !component.contains(next) || came_from.contains_key(next) {
                continue;
            }
            came_from.insert(next, at);
            if next == start {
                let mut cycle = vec![display(start)];
                let mut back = came_from[start];
                while back != start {
                    cycle.push(display(back));
                    back = came_from[back];
                }
                cycle.push(display(start));
                cycle.reverse();
                return cycle;
            }
            queue.push_back(next);
        }
    }
    unreachable!("a component with a cycle through its start")
}
