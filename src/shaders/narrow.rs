//! The narrow kernels' per-element blocks (layout in `shaders/narrow.wgsl`): straight-line code for
//! one row length, written once in WGSL with three block directives, each on a line of its own:
//!
//! - `//#vec4s` … `//#end`: the block once per vec4 of a lane's pack, with k = 0 … NV−1;
//! - `//#rows` … `//#end`: the block once per row of the pack, with i = 0 … PR−1;
//! - `//#columns` … `//#end`: the block once per column, with c = 0 … N−1, and inside a rows block
//!   the element's place e = i·N + c in the pack's registers.
//!
//! The placeholders are ordinary WGSL identifiers, so a block's lines are WGSL: `K_`, `I_`, `C_` are
//! the index (`K_u`, `I_u`, `C_u` the same as a u32 literal), a name ending in `_K`, `_I` or `_C` is
//! that name with the index (`lp_C` → `lp3`), and a name ending in `_E` is that name with the
//! element's register (`v_E` → `v2.z`). A whole block is written out for one value before the next,
//! so a block may span any number of lines; a placeholder outside the block that defines it is an
//! error naming the file and line.

use super::compose::{Composed, Origin};

/// One parsed line: a plain line or a block.
enum Node {
    Line(String, Origin),
    Block(Kind, Vec<Node>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vec4s,
    Rows,
    Columns,
}

/// The values the enclosing blocks give the placeholders.
#[derive(Clone, Copy, Default)]
struct Scope {
    k: Option<u32>,
    i: Option<u32>,
    c: Option<u32>,
}

/// The pack geometry of one row length.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Row length N.
    pub cols: u32,
    /// Rows per lane, PR = 4 / gcd(N, 4).
    pub rows: u32,
    /// vec4s per pack, NV = PR·N / 4.
    pub vec4s: u32,
}

impl Shape {
    /// The pack of rows of `cols` elements.
    pub fn of(cols: u32) -> Self {
        let rows = super::narrow_pack(cols);
        Self {
            cols,
            rows,
            vec4s: rows * cols / 4,
        }
    }

    /// The generated module `narrow_shape`: NC, PR and NV as WGSL constants.
    pub fn module(self) -> String {
        format!(
            "const NC: u32 = {}u;\nconst PR: u32 = {}u;\nconst NV: u32 = {}u;\n",
            self.cols, self.rows, self.vec4s
        )
    }
}

fn parse(
    lines: &mut std::iter::Peekable<impl Iterator<Item = (String, Origin)>>,
    open: Option<&Origin>,
) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some((line, origin)) = lines.next() {
        let kind = match line.trim() {
            "//#vec4s" => Kind::Vec4s,
            "//#rows" => Kind::Rows,
            "//#columns" => Kind::Columns,
            "//#end" => {
                return match open {
                    Some(_) => Ok(nodes),
                    None => Err(format!("{origin}: //#end without a block")),
                };
            }
            _ => {
                nodes.push(Node::Line(line, origin));
                continue;
            }
        };
        let body = parse(lines, Some(&origin))?;
        nodes.push(Node::Block(kind, body));
    }
    match open {
        Some(o) => Err(format!("{o}: block without //#end")),
        None => Ok(nodes),
    }
}

fn expand(nodes: &[Node], shape: Shape, scope: Scope, out: &mut Composed) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Line(line, origin) => {
                out.push(&substitute(line, shape, scope, origin)?, origin.clone())
            }
            Node::Block(kind, body) => {
                let count = match kind {
                    Kind::Vec4s => shape.vec4s,
                    Kind::Rows => shape.rows,
                    Kind::Columns => shape.cols,
                };
                for v in 0..count {
                    let mut s = scope;
                    match kind {
                        Kind::Vec4s => s.k = Some(v),
                        Kind::Rows => s.i = Some(v),
                        Kind::Columns => s.c = Some(v),
                    }
                    expand(body, shape, s, out)?;
                }
            }
        }
    }
    Ok(())
}

/// What one identifier of a block line stands for, if it is a placeholder: `K_`, `I_`, `C_` (the
/// index, `K_u` etc. as a u32 literal), or a name ending in `_K`, `_I`, `_C` (the name with the index)
/// or `_E` (the name with the element's register, `v_E` → `v2.z`). Plain WGSL identifiers all.
fn placeholder(word: &str, shape: Shape, scope: Scope) -> Option<Result<String, &'static str>> {
    let index = |v: Option<u32>, block| v.ok_or(block);
    let (stem, mark) = match word.len() {
        2 | 3 if word.as_bytes()[1] == b'_' && (word.len() == 2 || word.ends_with('u')) => {
            let v = match word.as_bytes()[0] {
                b'K' => index(scope.k, "vec4s"),
                b'I' => index(scope.i, "rows"),
                b'C' => index(scope.c, "columns"),
                _ => return None,
            };
            let unit = if word.len() == 3 { "u" } else { "" };
            return Some(v.map(|v| format!("{v}{unit}")));
        }
        n if n > 2 && word.as_bytes()[n - 2] == b'_' => (&word[..n - 2], word.as_bytes()[n - 1]),
        _ => return None,
    };
    let v = match mark {
        b'K' => index(scope.k, "vec4s").map(|k| k.to_string()),
        b'I' => index(scope.i, "rows").map(|i| i.to_string()),
        b'C' => index(scope.c, "columns").map(|c| c.to_string()),
        b'E' => match (scope.i, scope.c) {
            (Some(i), Some(c)) => {
                let e = i * shape.cols + c;
                Ok(format!(
                    "{}.{}",
                    e / 4,
                    ["x", "y", "z", "w"][e as usize % 4]
                ))
            }
            _ => Err("columns block inside a //#rows"),
        },
        _ => return None,
    };
    Some(v.map(|v| format!("{stem}{v}")))
}

/// A block line with its placeholders replaced (identifiers only: comments are left alone).
fn substitute(line: &str, shape: Shape, scope: Scope, origin: &Origin) -> Result<String, String> {
    let (code, comment) = match line.find("//") {
        Some(at) => line.split_at(at),
        None => (line, ""),
    };
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| -> Result<(), String> {
        match placeholder(word, shape, scope) {
            Some(Ok(v)) => out.push_str(&v),
            Some(Err(block)) => {
                return Err(format!("{origin}: `{word}` outside a //#{block} block"));
            }
            None => out.push_str(word),
        }
        word.clear();
        Ok(())
    };
    for ch in code.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out)?;
            out.push(ch);
        }
    }
    flush(&mut word, &mut out)?;
    out.push_str(comment);
    Ok(out)
}

/// Expands the per-element blocks of a composed narrow kernel for `shape`.
pub fn expand_blocks(composed: Composed, shape: Shape) -> Result<Composed, String> {
    let mut lines = composed
        .source
        .lines()
        .map(str::to_string)
        .zip(composed.origins)
        .peekable();
    let nodes = parse(&mut lines, None)?;
    let mut out = Composed::default();
    expand(&nodes, shape, Scope::default(), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::compose::{Composed, Origin};
    use super::*;

    fn composed(text: &str) -> Composed {
        let mut c = Composed::default();
        for (i, l) in text.lines().enumerate() {
            c.push(
                l,
                Origin {
                    module: "t".into(),
                    line: i as u32 + 1,
                },
            );
        }
        c
    }

    #[test]
    fn blocks_expand_whole_per_value_and_placeholders_need_their_block() {
        // N = 3: PR = 4 rows per lane, NV = 3 vec4s.
        let shape = Shape::of(3);
        let out = expand_blocks(
            composed(
                "//#vec4s\nv_K;\n//#end\n//#rows\n//#columns\na C_ w_c(C_u)\nb v_E\n//#end\n//#end",
            ),
            shape,
        )
        .unwrap();
        let lines: Vec<&str> = out.source.lines().collect();
        assert_eq!(&lines[..3], ["v0;", "v1;", "v2;"]);
        // Each column's two lines together, in column order; row 1 starts at pack element 3 (v0.w);
        // a lowercase `_c` is no placeholder.
        assert_eq!(
            &lines[3..7],
            ["a 0 w_c(0u)", "b v0.x", "a 1 w_c(1u)", "b v0.y"]
        );
        assert_eq!(&lines[9..11], ["a 0 w_c(0u)", "b v0.w"]);
        assert_eq!(lines.len(), 3 + 4 * 3 * 2);
        assert_eq!(out.origins[4].line, 7);
        let e = expand_blocks(composed("x\ny C_"), shape).unwrap_err();
        assert!(e.contains("t (generated):2") && e.contains("C_"), "{e}");
        let e = expand_blocks(composed("//#columns\nb v_E\n//#end"), shape).unwrap_err();
        assert!(e.contains("v_E"), "{e}");
        assert!(expand_blocks(composed("//#rows\nx"), shape).is_err());
        // A placeholder in a comment is not code.
        assert!(expand_blocks(composed("x // about K_"), shape).is_ok());
    }
}
