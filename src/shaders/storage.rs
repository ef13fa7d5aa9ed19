//! Storage element types, and the `#matrix` bindings that read and write through them.
//!
//! A kernel declares each n×N operand with one directive instead of a WGSL `var`:
//!
//! ```text
//! #matrix 1 x: read
//! #matrix 2 y: read_write
//! ```
//!
//! and the composer expands it, for the element type the launch binds there ([`Elems`]) and the
//! kernel's vector width (def `VEC4`), into the binding and three functions:
//! - `x_base(row) -> u32`: the index of the row's first item in this binding (the chunk's `shift`
//!   for this element width: `p.shift` for f32, `p.shift16` for 16-bit types);
//! - `x_ld(j) -> T`: the item at index `j` (`T` is `vec4<f32>` under `VEC4`, else `f32`), widened to f32;
//! - `x_st(j, v)` (read_write only): stores `v`, rounded to the storage type.
//!
//! f32 is stored as `array<T>` (the loads and stores are the plain ones). bf16 and f16 are 16-bit
//! pairs in u32 words (`shaders/half.wgsl`): a vec4 is two whole words (`array<vec2<u32>>`; a
//! vectorised launch has N a multiple of 4, a narrow one packs rows into whole vec4s, and chunks
//! start on whole vec4s, so no word is shared between invocations); a scalar item is half a word. A row may then start in the middle of a word
//! (odd N) and two invocations may own the two halves of one word, so a written 16-bit scalar
//! binding is `array<atomic<u32>>` and each store clears and sets only its own half with
//! `atomicAnd` / `atomicOr` — the two halves never race, and the word's other half is never touched.

/// The storage element type of an n×N operand. Arithmetic is f32 whatever the storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Elem {
    /// 32-bit IEEE floats.
    #[default]
    F32,
    /// IEEE binary16 (5 exponent bits: ±65504, subnormals from 2^-24).
    F16,
    /// bfloat16 (f32's 8 exponent bits, 8 significant bits).
    Bf16,
}

impl Elem {
    /// Every type, for tests and `--dtype` lists.
    pub const ALL: [Elem; 3] = [Elem::F32, Elem::F16, Elem::Bf16];

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::Bf16 => 2,
        }
    }

    /// The name PyTorch and NumPy use (`float32`, `float16`, `bfloat16`).
    pub fn name(self) -> &'static str {
        match self {
            Elem::F32 => "float32",
            Elem::F16 => "float16",
            Elem::Bf16 => "bfloat16",
        }
    }

    /// The short name of the CLI's `--dtype` (`f32`, `f16`, `bf16`).
    pub fn short(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::F16 => "f16",
            Elem::Bf16 => "bf16",
        }
    }

    /// The type of a short or long name (`f32`/`float32`, `f16`/`float16`/`half`, `bf16`/`bfloat16`).
    pub fn parse(s: &str) -> Option<Elem> {
        match s {
            "f32" | "float32" | "float" => Some(Elem::F32),
            "f16" | "float16" | "half" => Some(Elem::F16),
            "bf16" | "bfloat16" => Some(Elem::Bf16),
            _ => None,
        }
    }

    /// `v` rounded to this type (nearest, ties to even; NaN stays NaN; f16 overflow is ±inf) and
    /// widened back: the value a matrix of this type holds after storing `v`.
    pub fn round(self, v: f32) -> f32 {
        match self {
            Elem::F32 => v,
            Elem::F16 => half::f16::from_f32(v).to_f32(),
            Elem::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// The 16-bit pattern of `v` in this type (`None` for f32).
    pub fn bits16(self, v: f32) -> Option<u16> {
        match self {
            Elem::F32 => None,
            Elem::F16 => Some(half::f16::from_f32(v).to_bits()),
            Elem::Bf16 => Some(half::bf16::from_f32(v).to_bits()),
        }
    }

    /// The value of a 16-bit pattern of this type (exact); f32 has none (NaN).
    pub fn from_bits16(self, b: u16) -> f32 {
        match self {
            Elem::F32 => f32::NAN,
            Elem::F16 => half::f16::from_bits(b).to_f32(),
            Elem::Bf16 => half::bf16::from_bits(b).to_f32(),
        }
    }

    /// The prefix of its functions in `half.wgsl`.
    fn wgsl(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::F16 => "f16",
            Elem::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Elem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short())
    }
}

/// The element type bound at each binding of a launch (f32 where nothing else is said).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Elems(pub [Elem; 8]);

impl Elems {
    /// Every binding f32.
    pub const F32: Elems = Elems([Elem::F32; 8]);

    /// The type at `binding`.
    pub fn at(&self, binding: u32) -> Elem {
        self.0.get(binding as usize).copied().unwrap_or_default()
    }
}

/// A parsed `#matrix BINDING NAME: ACCESS [flat]` line (`flat`: the kernel computes its own
/// element indices, as the matmul's tiles do; no `NAME_base`).
pub(crate) struct MatrixDecl<'a> {
    pub binding: u32,
    pub name: &'a str,
    pub writable: bool,
    pub flat: bool,
}

/// Parses the text after `#matrix `.
pub(crate) fn parse(rest: &str) -> Result<MatrixDecl<'_>, String> {
    let bad =
        || format!("`#matrix {rest}`: expected `#matrix BINDING NAME: read|read_write [flat]`");
    let (head, access) = rest.split_once(':').ok_or_else(bad)?;
    let mut words = head.split_whitespace();
    let binding = words.next().and_then(|b| b.parse().ok()).ok_or_else(bad)?;
    let name = words.next().ok_or_else(bad)?;
    if words.next().is_some() {
        return Err(bad());
    }
    let mut access = access.split_whitespace();
    let writable = match access.next() {
        Some("read") => false,
        Some("read_write") => true,
        _ => return Err(bad()),
    };
    let flat = match access.next() {
        None => false,
        Some("flat") => true,
        Some(_) => return Err(bad()),
    };
    if access.next().is_some() {
        return Err(bad());
    }
    Ok(MatrixDecl {
        binding,
        name,
        writable,
        flat,
    })
}

/// The WGSL of a `#matrix` binding for `elem`, read `vec4` items at a time or not.
pub(crate) fn expand(d: &MatrixDecl<'_>, elem: Elem, vec4: bool) -> Vec<String> {
    let MatrixDecl {
        binding,
        name: n,
        writable,
        flat,
    } = *d;
    let access = if writable { "read_write" } else { "read" };
    let t = if vec4 { "vec4<f32>" } else { "f32" };
    let shift = if elem == Elem::F32 {
        "p.shift"
    } else {
        "p.shift16"
    };
    let base = if vec4 {
        format!("({shift} + row * p.cols) / 4u")
    } else {
        format!("{shift} + row * p.cols")
    };
    let atomic = elem != Elem::F32 && !vec4 && writable;
    let store = match (elem, vec4) {
        (Elem::F32, _) => "array<T>".replace('T', t),
        (_, true) => "array<vec2<u32>>".into(),
        (_, false) if atomic => "array<atomic<u32>>".into(),
        (_, false) => "array<u32>".into(),
    };
    let h = elem.wgsl();
    let (ld, st) = match (elem, vec4) {
        (Elem::F32, _) => (format!("return {n}[j];"), format!("{n}[j] = v;")),
        (_, true) => (
            format!(
                "let w = {n}[j]; return vec4<f32>({h}_get(w.x, 0u), {h}_get(w.x, 1u), \
                 {h}_get(w.y, 0u), {h}_get(w.y, 1u));"
            ),
            format!("{n}[j] = vec2<u32>({h}_pack(v.x, v.y), {h}_pack(v.z, v.w));"),
        ),
        (_, false) if atomic => (
            format!("return {h}_get(atomicLoad(&{n}[j >> 1u]), j & 1u);"),
            format!(
                "let s = 16u * (j & 1u); atomicAnd(&{n}[j >> 1u], ~(0xffffu << s)); \
                 atomicOr(&{n}[j >> 1u], {h}_bits(v) << s);"
            ),
        ),
        (_, false) => (
            format!("return {h}_get({n}[j >> 1u], j & 1u);"),
            String::new(),
        ),
    };
    let mut lines = vec![format!(
        "@group(0) @binding({binding}) var<storage, {access}> {n}: {store};"
    )];
    if !flat {
        lines.push(format!("fn {n}_base(row: u32) -> u32 {{ return {base}; }}"));
    }
    lines.push(format!("fn {n}_ld(j: u32) -> {t} {{ {ld} }}"));
    if writable {
        lines.push(format!("fn {n}_st(j: u32, v: {t}) {{ {st} }}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse_and_expand() {
        let d = parse("2 y: read_write").unwrap();
        assert_eq!((d.binding, d.name, d.writable), (2, "y", true));
        assert!(parse("y: read").is_err() && parse("1 y: write").is_err());
        assert!(parse("1 y: read flat").unwrap().flat && parse("1 y: read wide").is_err());
        let flat = expand(&parse("1 a: read flat").unwrap(), Elem::Bf16, false).join("\n");
        assert!(!flat.contains("a_base") && flat.contains("fn a_ld"));
        let f32v4 = expand(&d, Elem::F32, true).join("\n");
        assert!(f32v4.contains("var<storage, read_write> y: array<vec4<f32>>;"));
        assert!(f32v4.contains("(p.shift + row * p.cols) / 4u"));
        let bf = expand(&d, Elem::Bf16, false).join("\n");
        assert!(bf.contains("array<atomic<u32>>") && bf.contains("atomicOr"));
        assert!(bf.contains("p.shift16 + row * p.cols"));
        let r = expand(&parse("1 x: read").unwrap(), Elem::F16, false).join("\n");
        assert!(r.contains("array<u32>") && !r.contains("x_st"));
    }

    #[test]
    fn names_round_trip() {
        for e in Elem::ALL {
            assert_eq!(Elem::parse(e.short()), Some(e));
            assert_eq!(Elem::parse(e.name()), Some(e));
        }
        assert_eq!(Elem::Bf16.round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(Elem::F16.round(65520.0), f32::INFINITY);
        assert!(Elem::Bf16.round(f32::NAN).is_nan());
    }
}
