//! A small shader composer with the contract of naga_oil's and vello's: each WGSL file names what it
//! uses, conditional pieces hang on named defs, and every line of the composed module remembers the
//! file and line it came from, so that an error points into `shaders/`, not into the assembled text.
//!
//! Directives, each on a line of its own at column 0:
//! - `#import NAME: a, b, c` — the module `NAME` (`shaders/NAME.wgsl`, or a generated one: `prelude`,
//!   `narrow_shape`) is included once, at its first import, its own imports first. The names after the
//!   colon are what the importer uses from it; each must be declared in that module or in one it
//!   imports (checked), so a reader sees where every shared name comes from. Cycles are allowed (a
//!   module already being included is skipped): WGSL declarations may come in any order.
//! - `#if DEF`, `#else`, `#endif` — keep lines when `DEF` is (or is not) among the defs; they nest.
//! - `#matrix BINDING NAME: read|read_write` — an n×N operand, expanded for the element type bound
//!   there and the vector width (see [`super::storage`]); a 16-bit type brings in `half.wgsl`.
//!
//! Everything else is WGSL, copied as is. Narrow kernels' per-element blocks are expanded after
//! composition (see [`super::narrow`]).

use std::collections::HashSet;

use super::storage::{self, Elem, Elems};

/// The WGSL files of `shaders/`, by module name.
const FILES: &[(&str, &str)] = &[
    ("ce_common", include_str!("../../shaders/ce_common.wgsl")),
    ("ce_denom", include_str!("../../shaders/ce_denom.wgsl")),
    ("ce_fwd_bwd", include_str!("../../shaders/ce_fwd_bwd.wgsl")),
    ("ce_narrow", include_str!("../../shaders/ce_narrow.wgsl")),
    ("ce_reduce", include_str!("../../shaders/ce_reduce.wgsl")),
    ("common", include_str!("../../shaders/common.wgsl")),
    (
        "copy_narrow",
        include_str!("../../shaders/copy_narrow.wgsl"),
    ),
    ("copy_rows", include_str!("../../shaders/copy_rows.wgsl")),
    (
        "gather_rows",
        include_str!("../../shaders/gather_rows.wgsl"),
    ),
    ("exact_sum", include_str!("../../shaders/exact_sum.wgsl")),
    ("half", include_str!("../../shaders/half.wgsl")),
    ("info_rows", include_str!("../../shaders/info_rows.wgsl")),
    (
        "listed_rows",
        include_str!("../../shaders/listed_rows.wgsl"),
    ),
    ("loop_probe", include_str!("../../shaders/loop_probe.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    (
        "matmul_reduce",
        include_str!("../../shaders/matmul_reduce.wgsl"),
    ),
    ("narrow", include_str!("../../shaders/narrow.wgsl")),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    (
        "reduce_subgroup",
        include_str!("../../shaders/reduce_subgroup.wgsl"),
    ),
    (
        "reduce_workgroup",
        include_str!("../../shaders/reduce_workgroup.wgsl"),
    ),
    ("sgd_update", include_str!("../../shaders/sgd_update.wgsl")),
    (
        "softmax_bwd",
        include_str!("../../shaders/softmax_bwd.wgsl"),
    ),
    (
        "softmax_bwd_narrow",
        include_str!("../../shaders/softmax_bwd_narrow.wgsl"),
    ),
    (
        "softmax_fwd",
        include_str!("../../shaders/softmax_fwd.wgsl"),
    ),
    (
        "softmax_narrow",
        include_str!("../../shaders/softmax_narrow.wgsl"),
    ),
    ("vec1", include_str!("../../shaders/vec1.wgsl")),
    ("vec4", include_str!("../../shaders/vec4.wgsl")),
    ("vector", include_str!("../../shaders/vector.wgsl")),
];

/// The text of a file module, if there is one of that name.
pub fn file(name: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Where a line of a composed module came from: the module (`softmax_fwd` for shaders/softmax_fwd.wgsl,
/// `prelude` for a generated one) and its 1-based line there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Module name.
    pub module: String,
    /// Line in that module, from 1.
    pub line: u32,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if file(&self.module).is_some() {
            write!(f, "shaders/{}.wgsl:{}", self.module, self.line)
        } else {
            write!(f, "{} (generated):{}", self.module, self.line)
        }
    }
}

/// A composed module: its WGSL, and the origin of each of its lines.
#[derive(Clone, Debug, Default)]
pub struct Composed {
    /// The WGSL handed to naga / wgpu.
    pub source: String,
    /// `origins[i]` is where line `i + 1` of `source` came from.
    pub origins: Vec<Origin>,
}

impl Composed {
    pub(crate) fn push(&mut self, line: &str, origin: Origin) {
        self.source.push_str(line);
        self.source.push('\n');
        self.origins.push(origin);
    }

    /// Where line `line` (1-based) of the composed source came from.
    pub fn locate(&self, line: usize) -> Option<&Origin> {
        line.checked_sub(1).and_then(|i| self.origins.get(i))
    }

    /// `msg` (naga's or wgpu's report on this module) with every `wgsl:LINE:COL` it names followed by
    /// the file and line it came from.
    pub fn annotate(&self, msg: &str) -> String {
        let mut out = String::with_capacity(msg.len());
        let mut rest = msg;
        while let Some(at) = rest.find("wgsl:") {
            let (before, after) = rest.split_at(at + 5);
            out.push_str(before);
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            rest = after;
            if let Some(origin) = digits.parse().ok().and_then(|l| self.locate(l)) {
                let tail = after[digits.len()..].strip_prefix(':').map_or(0, |t| {
                    t.chars().take_while(char::is_ascii_digit).count() + 1
                });
                out.push_str(&after[..digits.len() + tail]);
                out.push_str(&format!(" ({origin})"));
                rest = &after[digits.len() + tail..];
            }
        }
        out.push_str(rest);
        out
    }
}

/// Source of a module: a file, or one of the generated modules `generated` holds.
fn module_text<'a>(name: &str, generated: &'a [(&str, String)]) -> Option<&'a str> {
    if let Some((_, t)) = generated.iter().find(|(n, _)| *n == name) {
        return Some(t);
    }
    file(name)
}

/// Whether `text` declares `name` at module scope (`fn`, `const`, `override`, `alias`, `struct`, or
/// a `var` of any address space).
fn declares(text: &str, name: &str) -> bool {
    text.lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("//"))
        .any(|line| {
            let mut words = line
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .peekable();
            while let Some(w) = words.next() {
                if matches!(w, "fn" | "const" | "override" | "alias" | "struct" | "var") {
                    // `var<storage, read> x`: skip the address space and access mode.
                    let mut next = words.next();
                    while w == "var"
                        && matches!(
                            next,
                            Some(
                                "storage"
                                    | "uniform"
                                    | "workgroup"
                                    | "private"
                                    | "read"
                                    | "read_write"
                            )
                        )
                    {
                        next = words.next();
                    }
                    return next == Some(name);
                }
            }
            false
        })
}

/// Composes `root` under `defs`, with the generated modules `generated` (name, text) and the element
/// types `elems` of its `#matrix` bindings.
pub fn compose(
    root: &str,
    defs: &[&str],
    generated: &[(&str, String)],
    elems: &Elems,
) -> Result<Composed, String> {
    let mut out = Composed::default();
    let mut seen = HashSet::new();
    let cx = Cx {
        defs,
        generated,
        elems,
    };
    include(root, &cx, &mut seen, &mut out, None)?;
    Ok(out)
}

/// What every module of one composition is composed under.
struct Cx<'a> {
    defs: &'a [&'a str],
    generated: &'a [(&'a str, String)],
    elems: &'a Elems,
}

enum Directive<'a> {
    Import(&'a str, Vec<&'a str>),
    Matrix(&'a str),
    If(&'a str),
    Else,
    Endif,
}

fn directive(line: &str) -> Option<Directive<'_>> {
    let code = line.split("//").next().unwrap_or("").trim_end();
    if let Some(rest) = code.strip_prefix("#import ") {
        let (module, names) = rest.split_once(':').unwrap_or((rest, ""));
        let names = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        return Some(Directive::Import(module.trim(), names));
    }
    if let Some(rest) = code.strip_prefix("#matrix ") {
        return Some(Directive::Matrix(rest));
    }
    if let Some(def) = code.strip_prefix("#if ") {
        return Some(Directive::If(def.trim()));
    }
    match code {
        "#else" => Some(Directive::Else),
        "#endif" => Some(Directive::Endif),
        _ => None,
    }
}

fn include(
    name: &str,
    cx: &Cx<'_>,
    seen: &mut HashSet<String>,
    out: &mut Composed,
    from: Option<&Origin>,
) -> Result<(), String> {
    let (defs, generated) = (cx.defs, cx.generated);
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let text = module_text(name, generated).ok_or_else(|| {
        let at = from.map_or(String::new(), |o| format!("{o}: "));
        format!("{at}no shader module `{name}`")
    })?;
    // (keeping lines, whether an #else was seen) per open #if.
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let live = |stack: &[(bool, bool)]| stack.iter().all(|&(keep, _)| keep);
    for (i, line) in text.lines().enumerate() {
        let origin = Origin {
            module: name.to_string(),
            line: i as u32 + 1,
        };
        match directive(line) {
            Some(Directive::If(def)) => stack.push((defs.contains(&def), false)),
            Some(Directive::Else) => match stack.last_mut() {
                Some((keep, seen_else @ false)) => {
                    *keep = !*keep;
                    *seen_else = true;
                }
                _ => return Err(format!("{origin}: #else without #if")),
            },
            Some(Directive::Endif) => {
                stack
                    .pop()
                    .ok_or_else(|| format!("{origin}: #endif without #if"))?;
            }
            Some(Directive::Import(module, names)) => {
                if !live(&stack) {
                    continue;
                }
                include(module, cx, seen, out, Some(&origin))?;
                let mut reach = Vec::new();
                closure_of(module, defs, generated, &mut reach);
                for n in names {
                    let found = reach
                        .iter()
                        .filter_map(|m| module_text(m, generated))
                        .any(|t| declares(t, n));
                    if !found {
                        return Err(format!(
                            "{origin}: `{n}` is not declared by module `{module}` (nor by what it imports)"
                        ));
                    }
                }
            }
            Some(Directive::Matrix(rest)) => {
                if !live(&stack) {
                    continue;
                }
                let decl = storage::parse(rest).map_err(|e| format!("{origin}: {e}"))?;
                let elem = cx.elems.at(decl.binding);
                if elem != Elem::F32 {
                    include("half", cx, seen, out, Some(&origin))?;
                }
                for l in storage::expand(&decl, elem, defs.contains(&"VEC4")) {
                    out.push(&l, origin.clone());
                }
            }
            None if live(&stack) => out.push(line, origin),
            None => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!("shaders/{name}.wgsl: #if without #endif"));
    }
    Ok(())
}

/// Every module `name` includes (itself first), for the check of imported names.
fn closure_of(name: &str, defs: &[&str], generated: &[(&str, String)], acc: &mut Vec<String>) {
    if acc.iter().any(|a| a == name) {
        return;
    }
    acc.push(name.to_string());
    let Some(text) = module_text(name, generated) else {
        return;
    };
    let mut stack: Vec<bool> = Vec::new();
    for line in text.lines() {
        match directive(line) {
            Some(Directive::If(d)) => stack.push(defs.contains(&d)),
            Some(Directive::Else) => {
                if let Some(k) = stack.last_mut() {
                    *k = !*k;
                }
            }
            Some(Directive::Endif) => {
                stack.pop();
            }
            Some(Directive::Import(m, _)) if stack.iter().all(|&k| k) => {
                closure_of(m, defs, generated, acc);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(mods: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        mods.iter().map(|(n, t)| (*n, t.to_string())).collect()
    }

    #[test]
    fn imports_defs_cycles_and_origins() {
        let g = modules(&[
            (
                "root",
                "#import a: f, K\n#if X\nfn x() {}\n#else\nfn y() {}\n#endif\nfn main() {}",
            ),
            ("a", "#import root: main\nconst K: u32 = 1u;\nfn f() {}"),
        ]);
        let f = Elems::F32;
        let c = compose("root", &["X"], &g, &f).unwrap();
        assert_eq!(
            c.source,
            "const K: u32 = 1u;\nfn f() {}\nfn x() {}\nfn main() {}\n"
        );
        assert_eq!(c.locate(2).unwrap().module, "a");
        assert_eq!(c.locate(4).unwrap().line, 7);
        let c = compose("root", &[], &g, &f).unwrap();
        assert!(c.source.contains("fn y()") && !c.source.contains("fn x()"));
        // A name the imported module does not declare, an unknown module, an unclosed #if.
        let g = modules(&[("root", "#import a: g"), ("a", "fn f() {}")]);
        let e = compose("root", &[], &g, &f).unwrap_err();
        assert!(e.contains("`g` is not declared by module `a`"), "{e}");
        let e = compose("root", &[], &modules(&[("root", "#import nowhere")]), &f).unwrap_err();
        assert!(
            e.contains("root (generated):1") && e.contains("nowhere"),
            "{e}"
        );
        assert!(compose("root", &[], &modules(&[("root", "#if X\nfn f() {}")]), &f).is_err());
    }

    #[test]
    fn errors_are_pointed_into_the_files() {
        use crate::shaders::{ReducePath, RowWalk, prelude};
        let walk = RowWalk::for_policy(2048);
        let generated = [("prelude", prelude(ReducePath::Workgroup, walk, false))];
        let c = compose("softmax_fwd", &["VEC4"], &generated, &Elems::F32).unwrap();
        let last = c.origins.len();
        let msg = format!("error at wgsl:{last}:5 here");
        let note = c.annotate(&msg);
        assert!(note.contains("shaders/softmax_fwd.wgsl:"), "{note}");
    }
}
