//! Decoding straight from the Avro binary body into the model, for messages
//! whose writer schema is the contract's own (the common case: every producer
//! of this repository writes with `schemas/avro`).
//!
//! The generic path builds an `apache_avro::Value` tree, resolves it against
//! the reader schema and then walks it by field name: about 400 allocations and
//! 20 µs an order event. When the writer's Parsing Canonical Form and logical
//! types equal the reader's (`super::Layout`), the bytes are laid out exactly
//! as the reader schema says (same fields, same order, same types, same units),
//! so they can be read in that order with no tree and no resolution. Any other
//! writer schema takes the generic path.
//!
//! The fields are read by the builders in [`super::fields`], in schema order;
//! the unit tests decode generated events both ways and compare.

use super::fields::{self, Fields};
use super::{DecodeError, R};
use crate::events::Stream;
use crate::model::*;

/// Decodes one body written with the reader schema of `stream`.
pub fn decode(stream: Stream, body: &[u8]) -> R<Event> {
    let mut r = Reader::new(body);
    let event = fields::event(stream, &mut r)?;
    if !r.buf.is_empty() {
        return Err(DecodeError::Malformed(format!("{} bytes after the record", r.buf.len())));
    }
    Ok(event)
}

/// The Avro binary encoding, read front to back. Every read is bounds-checked
/// and names the field it was reading when the bytes run out or are malformed.
/// Also the cursor of the resolved path's bounds check (`super::bounds`).
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

/// Most items of a block room is made for before they are read.
const RESERVE_AHEAD: usize = 64;

fn truncated(field: &'static str) -> DecodeError {
    DecodeError::Malformed(format!("avro: the message ends inside {field}"))
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub(super) fn left(&self) -> usize {
        self.buf.len()
    }

    /// Steps over `n` bytes.
    pub(super) fn skip(&mut self, n: usize, field: &'static str) -> R<()> {
        self.buf = self.buf.get(n..).ok_or_else(|| truncated(field))?;
        Ok(())
    }

    /// A zig-zag variable-length long (at most 10 bytes).
    pub(super) fn varint(&mut self, field: &'static str) -> R<i64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or_else(|| truncated(field))?;
            self.buf = rest;
            // The tenth byte may carry only the top bit of the 64.
            if i == 9 && b > 1 {
                return Err(DecodeError::Malformed(format!("avro: {field} overflows a long")));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(DecodeError::Malformed(format!("avro: {field} overflows a long")))
    }

    /// The branch of a `["null", T]` union: false for null.
    fn present(&mut self, field: &'static str) -> R<bool> {
        match self.varint(field)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(DecodeError::Malformed(format!("avro: {field} has union branch {n}, expected 0 or 1"))),
        }
    }
}

impl Fields for Reader<'_> {
    fn long(&mut self, field: &'static str) -> R<i64> {
        self.varint(field)
    }

    fn int(&mut self, field: &'static str) -> R<i32> {
        let n = self.varint(field)?;
        i32::try_from(n).map_err(|_| DecodeError::Malformed(format!("avro: {field} = {n} overflows an int")))
    }

    fn ts(&mut self, field: &'static str) -> R<Timestamp> {
        self.varint(field).map(Timestamp)
    }

    fn boolean(&mut self, field: &'static str) -> R<bool> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| truncated(field))?;
        self.buf = rest;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed(format!("avro: {field} is byte {b}, not a boolean"))),
        }
    }

    fn string(&mut self, field: &'static str) -> R<String> {
        let len = self.varint(field)?;
        let len = usize::try_from(len)
            .map_err(|_| DecodeError::Malformed(format!("avro: {field} has a negative length {len}")))?;
        if len > self.buf.len() {
            return Err(truncated(field));
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError::Malformed(format!("avro: {field} is not valid UTF-8")))
    }

    fn opt_string(&mut self, field: &'static str) -> R<Option<String>> {
        if self.present(field)? {
            self.string(field).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_ts(&mut self, field: &'static str) -> R<Option<Timestamp>> {
        if self.present(field)? {
            self.ts(field).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A record's fields follow inline.
    fn record<T>(&mut self, _field: &'static str, read: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        read(self)
    }

    fn opt_record<T>(&mut self, field: &'static str, read: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        if self.present(field)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Blocks of items, each a count (negative when followed by the block's
    /// size in bytes), ended by an empty block.
    fn array<T>(&mut self, field: &'static str, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let count = self.varint(field)?;
            if count == 0 {
                return Ok(out);
            }
            if count < 0 {
                self.varint(field)?; // the block's byte size, not needed to read it
            }
            let count = count.unsigned_abs();
            // Every item takes at least one byte: a count beyond what is left is a lie.
            if count > self.buf.len() as u64 {
                return Err(DecodeError::Malformed(format!(
                    "avro: the message ends inside {field}: a block of {count} items with {} bytes left",
                    self.buf.len()
                )));
            }
            // Room for the items as they come, not for the count: an item
            // takes one byte at least but tens in memory, so a count no
            // larger than the body could still ask for many times its size.
            out.reserve((count as usize).min(RESERVE_AHEAD));
            for _ in 0..count {
                out.push(item(self)?);
            }
        }
    }
}
