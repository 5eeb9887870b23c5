//! Arrays of plain numbers that either own their memory or borrow it from a shared, immutable
//! byte buffer: a memory-mapped index file, or the bytes of a verified hash set. This is what
//! lets an index load without copying ([`super::store`]) and lets exact tables use a set's
//! sorted hash column in place.
//!
//! The one `unsafe` operation here is creating the memory map (see [`MappedFile::open`]).

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use bytemuck::Pod;

use crate::hashset::format::HashSetFile;

/// An immutable byte buffer that columns can borrow from.
pub trait Backing: Send + Sync + fmt::Debug {
    fn bytes(&self) -> &[u8];
}

impl Backing for HashSetFile {
    fn bytes(&self) -> &[u8] {
        HashSetFile::bytes(self)
    }
}

/// A read-only memory map of a file.
#[derive(Debug)]
pub struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> std::io::Result<MappedFile> {
        let file = std::fs::File::open(path)?;
        // SAFETY: a map is undefined behaviour only if the file changes while mapped. Index
        // files and the state dir's sets, the only files mapped, are written once to a
        // temporary name and renamed into place (never modified in place: a rewrite is a new
        // inode, and this map keeps the old one), in directories only this service writes.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MappedFile { map })
    }
}

impl Backing for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// A `[T]` that is owned or borrowed from a [`Backing`].
#[derive(Clone)]
pub enum Column<T: Pod> {
    Owned(Vec<T>),
    /// `len` values starting `offset` bytes into the backing; range and alignment were
    /// checked when the column was made ([`Column::shared`]).
    Shared {
        backing: Arc<dyn Backing>,
        offset: usize,
        len: usize,
    },
}

/// Why a shared column cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    #[error("{len} values at offset {offset} run past the end of a {size}-byte buffer")]
    OutOfBounds {
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error("offset {offset} is not aligned for {align}-byte values")]
    Misaligned { offset: usize, align: usize },
}

impl<T: Pod> Column<T> {
    /// `len` values of `T` starting `offset` bytes into `backing`.
    pub fn shared(
        backing: Arc<dyn Backing>,
        offset: usize,
        len: usize,
    ) -> Result<Column<T>, ColumnError> {
        let bytes = backing.bytes();
        let end = len
            .checked_mul(size_of::<T>())
            .and_then(|n| n.checked_add(offset))
            .filter(|&end| end <= bytes.len())
            .ok_or(ColumnError::OutOfBounds {
                offset,
                len,
                size: bytes.len(),
            })?;
        if bytemuck::try_cast_slice::<u8, T>(&bytes[offset..end]).is_err() {
            return Err(ColumnError::Misaligned {
                offset,
                align: align_of::<T>(),
            });
        }
        Ok(Column::Shared {
            backing,
            offset,
            len,
        })
    }
}

impl<T: Pod> Deref for Column<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            Column::Owned(v) => v,
            Column::Shared {
                backing,
                offset,
                len,
            } => {
                // In bounds and aligned: checked in `Column::shared`, and the backing is
                // immutable, so this cannot fail.
                bytemuck::cast_slice(&backing.bytes()[*offset..*offset + *len * size_of::<T>()])
            }
        }
    }
}

impl<T: Pod> fmt::Debug for Column<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Column::Owned(_) => "owned",
            Column::Shared { .. } => "shared",
        };
        write!(f, "Column({kind}, {} values)", self.len())
    }
}

impl<T: Pod> From<Vec<T>> for Column<T> {
    fn from(v: Vec<T>) -> Column<T> {
        Column::Owned(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Buf(Vec<u8>);
    impl Backing for Buf {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
    }

    #[test]
    fn shared_columns_check_range_and_alignment() {
        // A Vec<u64>'s allocation is 8-aligned; view it as bytes through a backing.
        let words: Vec<u64> = vec![1, 2, 3, 4];
        let bytes: Vec<u8> = bytemuck::cast_slice(&words).to_vec();
        let backing: Arc<dyn Backing> = Arc::new(Buf(bytes));
        let base = backing.bytes().as_ptr() as usize;
        let c = Column::<u8>::shared(Arc::clone(&backing), 8, 8).unwrap();
        assert_eq!(&c[..], &2u64.to_ne_bytes());
        assert!(matches!(
            Column::<u8>::shared(Arc::clone(&backing), 30, 3),
            Err(ColumnError::OutOfBounds { .. })
        ));
        assert!(matches!(
            Column::<u8>::shared(Arc::clone(&backing), usize::MAX, 2),
            Err(ColumnError::OutOfBounds { .. })
        ));
        if base.is_multiple_of(4) {
            let c = Column::<u32>::shared(Arc::clone(&backing), 4, 3).unwrap();
            assert_eq!(c.len(), 3);
            assert!(matches!(
                Column::<u32>::shared(backing, 2, 1),
                Err(ColumnError::Misaligned { .. })
            ));
        }
    }
}
