//! Reading and writing NumPy `.npy` files (through `npyz`), with the dtype and rank checks the CLI
//! and the PyTorch fixtures need.

use std::path::Path;

use crate::error::{Result, XentError};
use crate::shaders::Elem;

fn io_err(path: &Path, reason: impl std::fmt::Display) -> XentError {
    XentError::Io {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// An open array and the element count its header claims, checked: the shape's product must not
/// overflow and must fit in the file (at the dtype's size), so a lying header is an error before any
/// read or allocation.
fn open(path: &Path) -> Result<(npyz::NpyFile<std::io::BufReader<std::fs::File>>, usize)> {
    let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let file_len = file.metadata().map_err(|e| io_err(path, e))?.len();
    check_shape_product(&mut file).map_err(|e| io_err(path, e))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).map_err(|e| io_err(path, e))?;
    let elem = match dtype_of(&npy).as_str() {
        "<i8" | "<f8" => 8,
        "<f4" | "<i4" => 4,
        "<f2" => 2,
        _ => 1,
    };
    let count = npy
        .shape()
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&c| c.checked_mul(elem).is_some_and(|b| b <= file_len))
        .and_then(|c| usize::try_from(c).ok())
        .ok_or_else(|| {
            io_err(
                path,
                format!(
                    "shape {:?} claims more than the file's {file_len} bytes hold",
                    npy.shape()
                ),
            )
        })?;
    if npy.order() != npyz::Order::C {
        return Err(io_err(
            path,
            "Fortran-ordered arrays are not supported; save with C order",
        ));
    }
    Ok((npy, count))
}

/// Reads the header's `shape` before npyz sees it (npyz multiplies the dimensions unchecked: a
/// panic in debug builds, a wrapped count in release) and refuses a product past u64; rewinds.
fn check_shape_product(file: &mut std::fs::File) -> std::result::Result<(), String> {
    use std::io::{Read, Seek};
    let mut head = [0u8; 12];
    let got = file.read(&mut head).map_err(|e| e.to_string())?;
    file.rewind().map_err(|e| e.to_string())?;
    if got < 10 || &head[..6] != b"\x93NUMPY" {
        return Ok(()); // not an .npy: npyz says why
    }
    let (len, start) = match head[6] {
        1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
            12,
        ),
    };
    let mut header = vec![0u8; start + len.min(1 << 20)];
    let got = file.read(&mut header).map_err(|e| e.to_string())?;
    file.rewind().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&header[start.min(got)..got]);
    // The key in either quote style, its value a tuple or a list (npyz's literal parser takes both).
    let Some(at) = text.find("'shape'").or_else(|| text.find("\"shape\"")) else {
        return Ok(());
    };
    let value = &text[at + 7..];
    let open = value.find(['(', '[']).unwrap_or(value.len());
    let tuple = value[open..]
        .get(1..)
        .and_then(|rest| rest.split_once([')', ']']))
        .map_or("", |(t, _)| t);
    let mut product: Option<u64> = Some(1);
    for dim in tuple.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: Option<u64> = dim.trim_end_matches('L').parse().ok();
        product = product.zip(d).and_then(|(p, d)| p.checked_mul(d));
    }
    match product {
        Some(_) => Ok(()),
        None => Err(format!(
            "shape ({tuple}) claims more elements than fit in 64 bits"
        )),
    }
}

/// `Err` unless the array read has the length its header claims (a truncated file).
fn expect_count<T>(path: &Path, data: Vec<T>, count: usize) -> Result<Vec<T>> {
    if data.len() != count {
        return Err(io_err(
            path,
            format!("holds {} elements where its shape says {count}", data.len()),
        ));
    }
    Ok(data)
}

fn dtype_of(npy: &npyz::NpyFile<impl std::io::Read>) -> String {
    match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => format!("{other:?}"),
    }
}

/// A float32 or float16 array as f32 values (float16 widened, exactly) and its shape; any other
/// dtype is an error naming it.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    read_floats(path).map(|(s, d, _)| (s, d))
}

/// [`read_f32`], with the file's element type ([`Elem::F32`] for `<f4`, [`Elem::F16`] for `<f2`).
pub fn read_floats(path: &Path) -> Result<(Vec<usize>, Vec<f32>, Elem)> {
    let (npy, count) = open(path)?;
    let dtype = dtype_of(&npy);
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let (data, elem) = match dtype.as_str() {
        "<f4" => (
            npy.into_vec::<f32>().map_err(|e| io_err(path, e))?,
            Elem::F32,
        ),
        "<f2" => {
            let h = npy.into_vec::<half::f16>().map_err(|e| io_err(path, e))?;
            (h.into_iter().map(half::f16::to_f32).collect(), Elem::F16)
        }
        _ => {
            return Err(io_err(
                path,
                format!("dtype {dtype}: expected float32 (<f4) or float16 (<f2)"),
            ));
        }
    };
    Ok((shape, expect_count(path, data, count)?, elem))
}

/// Class labels stored as int64 or int32, widened to i64.
pub fn read_labels(path: &Path) -> Result<(Vec<usize>, Vec<i64>)> {
    let (npy, count) = open(path)?;
    let dtype = dtype_of(&npy);
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let data = match dtype.as_str() {
        "<i8" => npy.into_vec::<i64>().map_err(|e| io_err(path, e))?,
        "<i4" => npy
            .into_vec::<i32>()
            .map_err(|e| io_err(path, e))?
            .into_iter()
            .map(i64::from)
            .collect(),
        other => {
            return Err(io_err(
                path,
                format!("dtype {other}: expected int64 or int32 labels"),
            ));
        }
    };
    Ok((shape, expect_count(path, data, count)?))
}

/// Writes an f32 array of the given shape (`&[]` for a scalar).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write(path, shape, data)
}

/// Writes f32 values as a float16 array (each rounded to nearest even; exact for f16 values).
pub fn write_f16(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let h: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
    write(path, shape, &h)
}

/// Writes an int64 array (labels) of the given shape.
pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    write(path, shape, data)
}

fn write<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    use npyz::WriterBuilder;
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            io_err(
                path,
                format!("shape {shape:?}: the element count overflows"),
            )
        })?;
    if expected != data.len() {
        return Err(XentError::LengthMismatch {
            what: "npy data",
            expected,
            got: data.len(),
        });
    }
    let file = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| io_err(path, e))?;
    w.extend(data.iter().copied())
        .map_err(|e| io_err(path, e))?;
    w.finish().map_err(|e| io_err(path, e))
}

/// `Err` unless `shape` has the given rank; returns the shape.
pub fn expect_rank<'a>(path: &Path, shape: &'a [usize], rank: usize) -> Result<&'a [usize]> {
    if shape.len() != rank {
        return Err(io_err(
            path,
            format!("shape {shape:?}: expected {rank} dimensions"),
        ));
    }
    Ok(shape)
}
