//! Reading and writing NumPy `.npy` files (through `npyz`), with the dtype and rank checks the CLI
//! and the PyTorch fixtures need.

use std::path::Path;

use crate::error::{Result, XentError};

fn io_err(path: &Path, reason: impl std::fmt::Display) -> XentError {
    XentError::Io {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn open(path: &Path) -> Result<npyz::NpyFile<std::io::BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).map_err(|e| io_err(path, e))?;
    if npy.order() != npyz::Order::C {
        return Err(io_err(
            path,
            "Fortran-ordered arrays are not supported; save with C order",
        ));
    }
    Ok(npy)
}

fn dtype_of(npy: &npyz::NpyFile<impl std::io::Read>) -> String {
    match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => format!("{other:?}"),
    }
}

/// An f32 array and its shape; any other dtype is an error naming it.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let npy = open(path)?;
    let dtype = dtype_of(&npy);
    if dtype != "<f4" {
        return Err(io_err(
            path,
            format!("dtype {dtype}: expected float32 (<f4)"),
        ));
    }
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let data = npy.into_vec::<f32>().map_err(|e| io_err(path, e))?;
    Ok((shape, data))
}

/// Class labels stored as int64 or int32, widened to i64.
pub fn read_labels(path: &Path) -> Result<(Vec<usize>, Vec<i64>)> {
    let npy = open(path)?;
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
    Ok((shape, data))
}

/// Writes an f32 array of the given shape (`&[]` for a scalar).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    use npyz::WriterBuilder;
    let expected: usize = shape.iter().product();
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
