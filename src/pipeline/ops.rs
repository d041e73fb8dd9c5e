//! Operators: the [`Operator`] trait and the built-in ones.
//!
//! Every built-in works on whole batches. Those that transform bytes write one new contiguous
//! column per batch; a filter only narrows the selection; what an operator does not touch
//! stays the consumed bytes, uncopied.

use std::sync::Arc;

use memchr::memmem;

use super::batch::{Batch, ColumnBuilder};
use super::kernels;
use crate::error::Error;

/// A step of a pipeline: batches are pushed in, and what comes out is pulled.
///
/// The pipeline pulls until `None` after every push, and treats the pushed batch as done
/// then: its source offsets may be committed once what was pulled is written. So an operator
/// must hand out everything derived from a batch before the next push (it may keep state
/// across batches, such as counts, but not records).
pub trait Operator: Send {
    /// Takes a batch in.
    fn push(&mut self, batch: Batch) -> Result<(), Error>;
    /// Hands a batch out, if one is ready.
    fn pull(&mut self) -> Option<Batch>;
    /// Called once when the input ends.
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A boxed operator.
pub type BoxOperator = Box<dyn Operator>;

/// An operator made of a function from one batch to at most one batch.
struct Step<F> {
    f: F,
    ready: Option<Batch>,
}

impl<F> Operator for Step<F>
where
    F: FnMut(Batch) -> Result<Option<Batch>, Error> + Send,
{
    fn push(&mut self, batch: Batch) -> Result<(), Error> {
        self.ready = (self.f)(batch)?;
        Ok(())
    }

    fn pull(&mut self) -> Option<Batch> {
        self.ready.take()
    }
}

/// An operator from a function over whole batches (`None`: drop the batch).
pub fn from_fn(
    f: impl FnMut(Batch) -> Result<Option<Batch>, Error> + Send + 'static,
) -> BoxOperator {
    Box::new(Step { f, ready: None })
}

/// Upper-cases the ASCII letters of every value (the seed job's map). A batch with no
/// lowercase letter anywhere passes through uncopied.
pub fn uppercase() -> BoxOperator {
    from_fn(|mut batch| {
        if let Some(values) = kernels::map_values_in_place(
            &batch,
            |value| !kernels::has_ascii_lowercase(value),
            kernels::ascii_uppercase,
        ) {
            batch.set_values(values);
        }
        Ok(Some(batch))
    })
}

/// Maps every selected value with `f`, which writes the new value into the buffer it is given
/// (or returns `false` for a null value). The new values sit in one contiguous buffer.
pub fn map_values(
    f: impl FnMut(Option<&[u8]>, &mut Vec<u8>) -> bool + Send + 'static,
) -> BoxOperator {
    map_column(f, false)
}

/// Maps every selected key with `f`, as [`map_values`] does values: re-keys records for the
/// sink's partitioner.
pub fn map_keys(
    f: impl FnMut(Option<&[u8]>, &mut Vec<u8>) -> bool + Send + 'static,
) -> BoxOperator {
    map_column(f, true)
}

fn map_column(
    mut f: impl FnMut(Option<&[u8]>, &mut Vec<u8>) -> bool + Send + 'static,
    keys: bool,
) -> BoxOperator {
    from_fn(move |mut batch| {
        let mut scratch = Vec::new();
        let column = batch.column_over_selected(0, |row, column| {
            let input = if keys {
                batch.key(row)
            } else {
                batch.value(row)
            };
            scratch.clear();
            if f(input, &mut scratch) {
                column.push(&scratch);
            } else {
                column.push_null();
            }
        });
        let column = column.finish();
        if keys {
            batch.set_keys(column);
        } else {
            batch.set_values(column);
        }
        Ok(Some(batch))
    })
}

/// Keeps the records for which `keep(key, value)` is true. Only the selection changes.
pub fn filter(
    mut keep: impl FnMut(Option<&[u8]>, Option<&[u8]>) -> bool + Send + 'static,
) -> BoxOperator {
    from_fn(move |mut batch| {
        batch.retain(|b, row| keep(b.key(row), b.value(row)));
        Ok(Some(batch))
    })
}

/// Keeps the records whose value contains `needle` (memchr's SIMD substring search).
pub fn filter_contains(needle: &[u8]) -> BoxOperator {
    let finder = memmem::Finder::new(needle).into_owned();
    from_fn(move |mut batch| {
        kernels::retain_containing(&mut batch, &finder);
        Ok(Some(batch))
    })
}

/// Replaces each value with its JSON object's top-level `field` (a string's contents, or
/// another value's text); null where the value is not an object with that field.
pub fn json_field(field: &str) -> BoxOperator {
    let field = field.to_owned();
    let mut scratch = Vec::new();
    map_values(move |value, out| {
        let Some(value) = value else { return false };
        match kernels::json_field(value, &field, &mut scratch) {
            Some(v) => {
                out.extend_from_slice(v);
                true
            }
            None => false,
        }
    })
}

/// Sets each key to the value's top-level JSON `field`, so the sink's partitioner groups
/// records by it.
pub fn key_from_json(field: &str) -> BoxOperator {
    let field = field.to_owned();
    from_fn(move |mut batch| {
        let mut scratch = Vec::new();
        let mut keys = ColumnBuilder::with_capacity(batch.rows(), 0);
        for row in 0..batch.rows() {
            match batch
                .value(row)
                .and_then(|v| kernels::json_field(v, &field, &mut scratch))
            {
                Some(k) => keys.push(k),
                None => keys.push_null(),
            }
        }
        batch.set_keys(keys.finish());
        Ok(Some(batch))
    })
}

/// What [`flat_map`] emits for one record.
pub struct Emit<'a> {
    keys: &'a mut ColumnBuilder,
    values: &'a mut ColumnBuilder,
    origin: &'a mut Vec<u32>,
    row: u32,
}

impl Emit<'_> {
    /// Emits a record with this key and value; it keeps its source record's offset,
    /// timestamp and headers.
    pub fn emit(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        match key {
            Some(k) => self.keys.push(k),
            None => self.keys.push_null(),
        }
        match value {
            Some(v) => self.values.push(v),
            None => self.values.push_null(),
        }
        self.origin.push(self.row);
    }
}

/// Zero or more records out for each record in: `f(key, value, emit)`.
pub fn flat_map(
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>, &mut Emit<'_>) + Send + 'static,
) -> BoxOperator {
    from_fn(move |mut batch| {
        let mut keys = ColumnBuilder::with_capacity(batch.len(), 0);
        let mut values = ColumnBuilder::with_capacity(batch.len(), 0);
        let mut origin = Vec::with_capacity(batch.len());
        for row in batch.selected() {
            let mut emit = Emit {
                keys: &mut keys,
                values: &mut values,
                origin: &mut origin,
                row: batch.origin(row) as u32,
            };
            f(batch.key(row), batch.value(row), &mut emit);
        }
        batch.replace_rows(origin, keys.finish(), values.finish());
        Ok(Some(batch))
    })
}

/// Calls `f` with every batch and passes it on unchanged (metrics, logging, tests).
pub fn inspect(f: impl Fn(&Batch) + Send + Sync + 'static) -> BoxOperator {
    let f = Arc::new(f);
    from_fn(move |batch| {
        f(&batch);
        Ok(Some(batch))
    })
}

/// Operators run one after the other.
#[derive(Default)]
pub struct Chain {
    ops: Vec<BoxOperator>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("operators", &self.ops.len())
            .finish()
    }
}

impl Chain {
    /// An empty chain (batches pass through unchanged).
    pub fn new() -> Self {
        Chain::default()
    }

    /// Appends an operator.
    pub fn then(mut self, op: BoxOperator) -> Self {
        self.ops.push(op);
        self
    }

    /// Runs `batch` through every operator; `out` receives what comes out of the last.
    pub fn run(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), Error> {
        self.run_from(0, batch, out)
    }

    fn run_from(&mut self, at: usize, batch: Batch, out: &mut Vec<Batch>) -> Result<(), Error> {
        let Some(op) = self.ops.get_mut(at) else {
            out.push(batch);
            return Ok(());
        };
        op.push(batch)?;
        self.pass_on(at, out)
    }

    /// Pulls everything operator `at` has ready and runs it through the rest of the chain.
    fn pass_on(&mut self, at: usize, out: &mut Vec<Batch>) -> Result<(), Error> {
        let mut pulled = Vec::new();
        while let Some(b) = self.ops[at].pull() {
            pulled.push(b);
        }
        for b in pulled {
            self.run_from(at + 1, b, out)?;
        }
        Ok(())
    }

    /// Tells every operator the input ended; what they still hand out goes to `out`.
    pub fn finish(&mut self, out: &mut Vec<Batch>) -> Result<(), Error> {
        for at in 0..self.ops.len() {
            self.ops[at].finish()?;
            self.pass_on(at, out)?;
        }
        Ok(())
    }
}
