//! The server's layering, checked on its own sources.
//!
//! Reads every file under `src/` (but `main.rs`, a separate crate), finds
//! the module paths each names (`crate::…`, `$crate::…`, `super::…`,
//! `self::…`, a child module by its bare name, and names a `use` brought
//! in, with `use` trees expanded; comments and string literals are not
//! code and are skipped), and asserts:
//!
//! (a) `db` and `storage` (and their submodules) name only `domain`,
//!     `error` and their own folder;
//! (b) `domain` names nothing of the server but `error`;
//! (c) the policy modules (`entitlement`, `selection`, `warranty`,
//!     `publish_check`) name only `domain`, `error` and each other;
//! (d) the graph among the top-level modules has no cycle.
//!
//! A folder's files are its submodules (`db/devices.rs` is `db::devices`);
//! inline modules (`mod tests { … }`) count as the file they are in, but
//! `super::` inside them is resolved from the inline module.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A module path, `["db", "devices"]`; the crate root is empty.
type ModPath = Vec<String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// Tokens of Rust source, without comments, string, byte-string and char
/// literals (lifetimes are dropped too). Enough to find paths; not a full
/// lexer (numbers come out as identifiers, which are never modules).
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Skips a "…" string whose opening quote is at `i`.
    let skip_string = |mut i: usize| -> usize {
        i += 1;
        while i < c.len() {
            match c[i] {
                '\\' => i += 2,
                '"' => return i + 1,
                _ => i += 1,
            }
        }
        i
    };
    // Skips a raw string r#…#"…"#…# whose first '#' or '"' is at `i`.
    let skip_raw = |mut i: usize| -> usize {
        let mut hashes = 0;
        while i < c.len() && c[i] == '#' {
            hashes += 1;
            i += 1;
        }
        i += 1; // the opening quote
        while i < c.len() {
            if c[i] == '"' && (0..hashes).all(|h| c.get(i + 1 + h) == Some(&'#')) {
                return i + 1 + hashes;
            }
            i += 1;
        }
        i
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(i);
        } else if ch == '\'' {
            if c.get(i + 1) == Some(&'\\') {
                // An escaped char literal: '\n', '\'', '\u{1F}'.
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                // A lifetime or label: drop the quote, keep the name out.
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let next = c.get(i).copied();
            match (word.as_str(), next) {
                ("r" | "br" | "cr", Some('"' | '#'))
                    if next == Some('"') || matches!(c.get(i + 1), Some('"' | '#')) =>
                {
                    i = skip_raw(i);
                }
                ("b" | "c", Some('"')) => i = skip_string(i),
                ("b", Some('\'')) => {
                    // A byte literal: let the char-literal rule skip it.
                }
                _ => out.push(Tok::Ident(word)),
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok::Sep);
            i += 2;
        } else {
            if !ch.is_whitespace() {
                out.push(Tok::Punct(ch));
            }
            i += 1;
        }
    }
    out
}

/// One path as written: its segments, and whether it sits in a `use`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    segments: Vec<String>,
    /// The name a `use` binds it to (the last segment, or the `as` name).
    binds: Option<String>,
    /// Where it was written: the (possibly inline) module.
    scope: ModPath,
}

/// The paths in one file whose module is `file_mod`.
fn paths(toks: &[Tok], file_mod: &ModPath) -> Vec<Written> {
    let mut out = Vec::new();
    // Inline modules: (module, brace depth inside it).
    let mut scopes: Vec<(ModPath, usize)> = vec![(file_mod.clone(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    let mut in_use = false;
    while i < toks.len() {
        let scope = scopes.last().unwrap().0.clone();
        match &toks[i] {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if scopes.len() > 1 && scopes.last().unwrap().1 == depth {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Punct(';') => {
                in_use = false;
                i += 1;
            }
            Tok::Ident(w) if w == "use" => {
                in_use = true;
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                // `mod name;` (a file, found on disk) or `mod name { … }`.
                if let (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    depth += 1;
                    let mut inner = scope.clone();
                    inner.push(name.clone());
                    scopes.push((inner, depth));
                    i += 3;
                } else {
                    i += 2;
                }
            }
            Tok::Punct('$') if matches!(toks.get(i + 1), Some(Tok::Ident(w)) if w == "crate") => {
                i += 1;
            }
            // `pub(crate)`, `pub(super)`: a visibility, not a path.
            Tok::Ident(w)
                if matches!(w.as_str(), "crate" | "super" | "self")
                    && toks.get(i + 1) != Some(&Tok::Sep) =>
            {
                i += 1;
            }
            Tok::Ident(_) if i == 0 || toks[i - 1] != Tok::Sep => {
                let mut prefix = Vec::new();
                i = tree(toks, i, &mut prefix, in_use, &scope, &mut out);
            }
            _ => i += 1,
        }
    }
    out
}

/// Reads a path (or a `use` tree) starting at `i` under `prefix`; returns
/// the index after it.
fn tree(
    toks: &[Tok],
    mut i: usize,
    prefix: &mut Vec<String>,
    in_use: bool,
    scope: &ModPath,
    out: &mut Vec<Written>,
) -> usize {
    let base = prefix.len();
    let mut glob = false;
    loop {
        match toks.get(i) {
            Some(Tok::Ident(w)) => {
                prefix.push(w.clone());
                i += 1;
            }
            Some(Tok::Punct('*')) => {
                glob = true;
                i += 1;
                break;
            }
            Some(Tok::Punct('{')) if in_use => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Punct('}')) => {
                            i += 1;
                            break;
                        }
                        Some(Tok::Punct(',')) => i += 1,
                        Some(_) => i = tree(toks, i, prefix, in_use, scope, out),
                        None => break,
                    }
                }
                prefix.truncate(base);
                return i;
            }
            _ => break,
        }
        if toks.get(i) == Some(&Tok::Sep) {
            i += 1;
        } else {
            break;
        }
    }
    let mut binds = None;
    if in_use && !glob {
        binds = prefix.last().cloned();
        if let (Some(Tok::Ident(a)), Some(Tok::Ident(name))) = (toks.get(i), toks.get(i + 1))
            && a == "as"
        {
            binds = Some(name.clone());
            i += 2;
        }
    }
    let mut segments = prefix.clone();
    // `use a::{self, b}`: `self` names `a`.
    if segments.last().is_some_and(|s| s == "self") && segments.len() > 1 {
        segments.pop();
        if in_use && binds.as_deref() == Some("self") {
            binds = segments.last().cloned();
        }
    }
    if !segments.is_empty() {
        out.push(Written {
            segments,
            binds,
            scope: scope.clone(),
        });
    }
    prefix.truncate(base);
    i
}

/// The server's modules and what each file names.
struct Sources {
    /// Every file module.
    modules: BTreeSet<ModPath>,
    /// file module -> its tokens.
    files: BTreeMap<ModPath, Vec<Tok>>,
}

fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    match (parts.is_empty(), stem) {
        (true, "main") => None,
        (true, "lib") => Some(vec![]),
        (_, "mod") => Some(parts),
        _ => {
            parts.push(stem.to_string());
            Some(parts)
        }
    }
}

fn read_sources(src: &Path) -> Sources {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(src, &mut found);
    let mut sources = Sources {
        modules: BTreeSet::new(),
        files: BTreeMap::new(),
    };
    for file in found {
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        sources.modules.insert(module.clone());
        sources.files.insert(module, tokens(&text));
    }
    sources
}

/// module -> the modules it names (itself excluded).
fn graph(sources: &Sources) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut graph = BTreeMap::new();
    for (module, toks) in &sources.files {
        let written = paths(toks, module);
        let targets = resolve(&sources.modules, module, &written);
        graph.insert(module.clone(), targets);
    }
    graph
}

/// The modules `written` (in the file of `module`) names.
fn resolve(
    modules: &BTreeSet<ModPath>,
    module: &ModPath,
    written: &[Written],
) -> BTreeSet<ModPath> {
    // Absolute form of a path as written, if it is the server's own.
    let absolute = |w: &Written, aliases: &HashMap<String, Vec<String>>| -> Option<Vec<String>> {
        let s = &w.segments;
        let mut rest = s.as_slice();
        let mut base: Vec<String> = match s[0].as_str() {
            "crate" => {
                rest = &s[1..];
                vec![]
            }
            "self" => {
                rest = &s[1..];
                w.scope.clone()
            }
            "super" => {
                let mut base = w.scope.clone();
                while rest.first().is_some_and(|x| x == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                base
            }
            first => {
                let mut child = w.scope.clone();
                child.push(first.to_string());
                if modules.contains(&child) {
                    rest = &s[1..];
                    child
                } else if let Some(target) = aliases.get(first) {
                    rest = &s[1..];
                    target.clone()
                } else {
                    return None;
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    };
    // The module a path names: its longest prefix that is a module.
    let target = |abs: &[String]| -> Option<ModPath> {
        (1..=abs.len())
            .rev()
            .map(|n| abs[..n].to_vec())
            .find(|p| modules.contains(p))
    };
    // Names `use` lines bind to modules (`use crate::db;` then `db::x`).
    let mut aliases = HashMap::new();
    for w in written.iter().filter(|w| w.binds.is_some()) {
        if let Some(abs) = absolute(w, &HashMap::new())
            && modules.contains(&abs)
        {
            aliases.insert(w.binds.clone().unwrap(), abs);
        }
    }
    written
        .iter()
        .filter_map(|w| absolute(w, &aliases))
        .filter_map(|abs| target(&abs))
        .filter(|t| t != module && !t.is_empty())
        .collect()
}

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// The graph among top-level modules (the crate root left out).
fn top_level(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in graph {
        let Some(a) = from.first() else { continue };
        let entry = top.entry(a.clone()).or_default();
        for b in targets.iter().filter_map(|t| t.first()) {
            if b != a {
                entry.insert(b.clone());
            }
        }
    }
    top
}

/// Every cycle's strongly connected component, each shown with one cycle
/// through it (`a -> b -> a`).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // Tarjan's algorithm, recursive (the graph is small).
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<Vec<&'g str>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let mut s = State {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    let mut found = Vec::new();
    for mut component in s.components {
        let self_loop = component.len() == 1
            && graph
                .get(component[0])
                .is_some_and(|t| t.contains(component[0]));
        if component.len() < 2 && !self_loop {
            continue;
        }
        component.sort();
        let members: BTreeSet<&str> = component.iter().copied().collect();
        // A shortest way back to the first member, inside the component.
        let start = component[0];
        let mut previous: HashMap<&str, &str> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut back = None;
        'search: while let Some(v) = queue.pop_front() {
            for w in graph.get(v).into_iter().flatten().map(String::as_str) {
                if w == start {
                    back = Some(v);
                    break 'search;
                }
                if members.contains(w) && !previous.contains_key(w) {
                    previous.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut cycle = vec![start];
        let mut v = back.expect("a component has a cycle");
        while v != start {
            cycle.push(v);
            v = previous[v];
        }
        cycle[1..].reverse();
        cycle.push(start);
        let edges: Vec<String> = component
            .iter()
            .flat_map(|&a| {
                graph[a]
                    .iter()
                    .filter(|b| members.contains(b.as_str()))
                    .map(move |b| format!("{a} -> {b}"))
            })
            .collect();
        found.push(format!(
            "{} (component: {}; its edges: {})",
            cycle.join(" -> "),
            component.join(", "),
            edges.join(", ")
        ));
    }
    found
}

/// Which of `graph`'s modules under `layer` name a module outside
/// `allowed` (each allowed entry admits that module and its submodules).
fn violations(
    graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    layer: &[&str],
    allowed: &[&str],
) -> Vec<String> {
    let inside = |m: &ModPath, of: &[&str]| m.first().is_some_and(|f| of.contains(&f.as_str()));
    let mut found = Vec::new();
    for (from, targets) in graph.iter().filter(|(m, _)| inside(m, layer)) {
        for t in targets.iter().filter(|t| !inside(t, allowed)) {
            found.push(format!("{} -> {}", show(from), show(t)));
        }
    }
    found
}

fn server_graph() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_sources(&src);
    assert!(
        sources.modules.len() > 20,
        "found only {:?} under {}",
        sources.modules,
        src.display()
    );
    graph(&sources)
}

fn m(path: &str) -> ModPath {
    if path.is_empty() {
        vec![]
    } else {
        path.split("::").map(str::to_string).collect()
    }
}

#[test]
fn db_and_storage_name_only_domain_error_and_themselves() {
    let graph = server_graph();
    let mut found = violations(&graph, &["db"], &["db", "domain", "error"]);
    found.extend(violations(
        &graph,
        &["storage"],
        &["storage", "domain", "error"],
    ));
    assert!(found.is_empty(), "upward references:\n{}", found.join("\n"));
}

#[test]
fn domain_names_nothing_of_the_server_but_error() {
    let graph = server_graph();
    let found = violations(&graph, &["domain"], &["domain", "error"]);
    assert!(found.is_empty(), "upward references:\n{}", found.join("\n"));
}

#[test]
fn policy_modules_name_only_domain_error_and_each_other() {
    const POLICY: &[&str] = &["entitlement", "selection", "warranty", "publish_check"];
    let graph = server_graph();
    let mut allowed = POLICY.to_vec();
    allowed.extend(["domain", "error"]);
    let found = violations(&graph, POLICY, &allowed);
    assert!(found.is_empty(), "upward references:\n{}", found.join("\n"));
}

#[test]
fn top_level_modules_have_no_cycle() {
    let top = top_level(&server_graph());
    let found = cycles(&top);
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

/// The checks above rest on the reader; these make sure it sees what is
/// there (a reader that found nothing would pass them all).
mod reader {
    use super::*;

    fn names(modules: &[&str], file: &str, src: &str) -> Vec<String> {
        let modules: BTreeSet<ModPath> = modules.iter().map(|p| m(p)).collect();
        let toks = tokens(src);
        let written = paths(&toks, &m(file));
        resolve(&modules, &m(file), &written)
            .iter()
            .map(show)
            .collect()
    }

    const MODULES: &[&str] = &[
        "",
        "app",
        "auth",
        "db",
        "db::devices",
        "db::error",
        "domain",
        "error",
        "snapshot",
    ];

    #[test]
    fn use_trees_absolute_relative_and_aliased_paths_are_found() {
        let src = r#"
            use crate::{app::App, db::{self, devices::Row}};
            use super::Tx;
            pub use error::Error;
            fn f() { let x = db::devices::load(); crate::snapshot::current(); }
            macro_rules! m { () => { $crate::auth::Role::Admin } }
        "#;
        assert_eq!(
            names(MODULES, "db", src),
            ["app", "auth", "db::devices", "db::error", "snapshot"]
        );
        assert_eq!(
            names(MODULES, "db::devices", "use super::{Db, Tx};"),
            ["db"]
        );
    }

    #[test]
    fn comments_strings_and_chars_are_not_code() {
        let src = r##"
            //! See [`crate::app::App`].
            /* crate::auth /* nested crate::auth */ crate::auth */
            const A: &str = "crate::app";
            const B: &str = r#"crate::snapshot "quoted" crate::app"#;
            const C: char = '"';
            const D: u8 = b'"';
            fn g<'a>(x: &'a str) -> &'a str { x }
            use crate::domain::Name;
        "##;
        assert_eq!(names(MODULES, "db::devices", src), ["domain"]);
    }

    #[test]
    fn super_in_an_inline_module_is_its_file() {
        let src = "mod tests { use super::*; fn t() { super::super::app::f(); } }";
        assert_eq!(names(MODULES, "db::devices", src), ["db"]);
        assert_eq!(names(MODULES, "snapshot", src), ["app"]);
    }

    #[test]
    fn cycles_are_found_and_shown() {
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a", &["b"][..]),
            ("b", &["c"]),
            ("c", &["a", "d"]),
            ("d", &[]),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.iter().map(|s| s.to_string()).collect()))
        .collect();
        assert_eq!(
            cycles(&graph),
            ["a -> b -> c -> a (component: a, b, c; its edges: a -> b, b -> c, c -> a)"]
        );
        let mut acyclic = graph.clone();
        acyclic.get_mut("c").unwrap().remove("a");
        assert!(cycles(&acyclic).is_empty());
    }

    #[test]
    fn a_forbidden_edge_is_named_and_allowed_ones_pass() {
        let graph: BTreeMap<ModPath, BTreeSet<ModPath>> = [
            ("db::devices", &["db", "domain::facts", "snapshot"][..]),
            ("db", &["error"]),
            ("domain", &["error"]),
            ("snapshot", &["db"]),
        ]
        .into_iter()
        .map(|(k, v)| (m(k), v.iter().map(|p| m(p)).collect()))
        .collect();
        assert_eq!(
            violations(&graph, &["db"], &["db", "domain", "error"]),
            ["db::devices -> snapshot"]
        );
        assert!(violations(&graph, &["domain"], &["domain", "error"]).is_empty());
    }

    #[test]
    fn the_server_graph_has_the_edges_everyone_knows() {
        let graph = server_graph();
        for (from, to) in [("router", "controllers"), ("app", "db"), ("serve", "app")] {
            assert!(
                graph[&m(from)].contains(&m(to)),
                "{from} -> {to} not found: {:?}",
                graph[&m(from)]
            );
        }
        let top = top_level(&graph);
        assert!(top["controllers"].contains("app"));
    }
}
