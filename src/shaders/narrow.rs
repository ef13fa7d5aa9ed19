//! The narrow kernels' per-element blocks (layout in `shaders/narrow.wgsl`): straight-line code for
//! one row length, written once in WGSL with three block directives, each on a line of its own:
//!
//! - `//#vec4s` … `//#end`: the block once per vec4 of a lane's pack, `$k` = 0 … NV−1;
//! - `//#rows` … `//#end`: the block once per row of the pack, `$i` = 0 … PR−1;
//! - `//#columns` … `//#end`: the block once per column, `$c` = 0 … N−1, and inside a rows block `$e`
//!   names the element's place in the pack's registers (`v$e` becomes e.g. `v2.z`).
//!
//! A whole block is written out for one value before the next, so a block may span any number of
//! lines; a placeholder outside the block that defines it is an error naming the file and line.

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

fn substitute(line: &str, shape: Shape, scope: Scope, origin: &Origin) -> Result<String, String> {
    let mut out = line.to_string();
    let missing = |p: &str, block: &str| format!("{origin}: `{p}` outside a //#{block} block");
    // Placeholders count in code, not in comments (which may describe them).
    let code = line.split("//").next().unwrap_or("");
    if !code.contains('$') {
        return Ok(out);
    }
    if out.contains("$e") {
        let (Some(i), Some(c)) = (scope.i, scope.c) else {
            return Err(missing("$e", "columns block inside a //#rows"));
        };
        let e = i * shape.cols + c;
        out = out.replace(
            "$e",
            &format!("{}.{}", e / 4, ["x", "y", "z", "w"][e as usize % 4]),
        );
    }
    for (p, v, block) in [
        ("$c", scope.c, "columns"),
        ("$i", scope.i, "rows"),
        ("$k", scope.k, "vec4s"),
    ] {
        if out.contains(p) {
            out = out.replace(p, &v.ok_or_else(|| missing(p, block))?.to_string());
        }
    }
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
            composed("//#vec4s\nv$k;\n//#end\n//#rows\n//#columns\na $c\nb $e\n//#end\n//#end"),
            shape,
        )
        .unwrap();
        let lines: Vec<&str> = out.source.lines().collect();
        assert_eq!(&lines[..3], ["v0;", "v1;", "v2;"]);
        // Each column's two lines together, in column order; row 1 starts at pack element 3 (0.w).
        assert_eq!(&lines[3..7], ["a 0", "b 0.x", "a 1", "b 0.y"]);
        assert_eq!(&lines[9..11], ["a 0", "b 0.w"]);
        assert_eq!(lines.len(), 3 + 4 * 3 * 2);
        assert_eq!(out.origins[4].line, 7);
        let e = expand_blocks(composed("x\ny $c"), shape).unwrap_err();
        assert!(e.contains("t (generated):2") && e.contains("$c"), "{e}");
        let e = expand_blocks(composed("//#columns\nb $e\n//#end"), shape).unwrap_err();
        assert!(e.contains("$e"), "{e}");
        assert!(expand_blocks(composed("//#rows\nx"), shape).is_err());
        // A placeholder in a comment is not code.
        assert!(expand_blocks(composed("// about $k"), shape).is_ok());
    }
}
