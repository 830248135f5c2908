//! The bounds check of the resolved path: before `apache_avro` builds a value
//! tree from a body, the writer schema is walked over the bytes without
//! building anything, and the body is refused when decoding it would cost
//! more than its size allows.
//!
//! Why: `apache_avro` reserves room for a block's items as soon as it reads
//! the block's count, and checks that count only against its process-wide
//! `max_allocation_bytes`, a number of items while each item is a 56-byte
//! `Value`. A 10-byte message claiming 5×10⁸ nulls asked for 28 GB and the
//! process aborted. Nulls and empty records take no bytes at all, so no
//! count of them is ever "longer than the message".
//!
//! The walk reads exactly what the decoder will read (same schema, same
//! order, same varints) and refuses:
//! - a block count or a length larger than the bytes left: every item of a
//!   type that takes bytes takes at least one (undecodable);
//! - more values than one per byte of the body plus
//!   [`Limits::max_zero_byte_values`] (over_limit);
//! - values nested deeper than [`MAX_DEPTH`]: a recursive schema nests one
//!   level per byte, and decoding, resolving and dropping the tree all
//!   recurse (over_limit);
//! - a body that ends early, or has bytes after the value (undecodable).
//!
//! A body that passes decodes into at most `body.len() + max_zero_byte_values`
//! values, so no block can reserve room for more, and the walk itself does
//! work in proportion to the same number.

use apache_avro::schema::{NamesRef, Namespace, ResolvedSchema};
use apache_avro::Schema;

use super::direct::Reader;
use super::R;
use crate::events::{DecodeError, Limits};

/// Deepest nesting of values accepted (the contract's events nest 6 deep).
pub const MAX_DEPTH: usize = 64;

/// What the walk names when the bytes are wrong (field names of a foreign
/// writer schema are not worth echoing).
const BODY: &str = "the body";

/// Checks that `body`, written with `schema`, decodes within `limits`.
pub fn check(schema: &Schema, body: &[u8], limits: &Limits) -> R<()> {
    let resolved = ResolvedSchema::try_from(schema).map_err(|e| DecodeError::Malformed(format!("avro: {e}")))?;
    let zero = limits.max_zero_byte_values as u64;
    let mut walk = Walk {
        bytes: Reader::new(body),
        names: resolved.get_names(),
        values: 0,
        budget: (body.len() as u64).saturating_add(zero),
        body_len: body.len(),
        zero,
    };
    walk.value(schema, &None, 0)?;
    match walk.bytes.left() {
        0 => Ok(()),
        n => Err(DecodeError::Malformed(format!("{n} bytes after the record"))),
    }
}

struct Walk<'b, 'n, 's> {
    bytes: Reader<'b>,
    names: &'n NamesRef<'s>,
    /// Values the decoder would have built so far.
    values: u64,
    budget: u64,
    body_len: usize,
    zero: u64,
}

impl Walk<'_, '_, '_> {
    /// Counts `n` more values, refusing the body once they exceed the budget.
    fn spend(&mut self, n: u64) -> R<()> {
        self.values = self.values.saturating_add(n);
        if self.values > self.budget {
            return Err(DecodeError::OverLimit(format!(
                "avro: a {}-byte body would decode into more than {} values (one per byte plus \
                 max_zero_byte_values {})",
                self.body_len, self.budget, self.zero
            )));
        }
        Ok(())
    }

    /// One value of `schema`, in the namespace `ns`, `depth` levels down.
    fn value(&mut self, schema: &Schema, ns: &Namespace, depth: usize) -> R<()> {
        // A reference is its named schema: no value of its own (as in `apache_avro`).
        if let Schema::Ref { name } = schema {
            let name = name.fully_qualified_name(ns);
            let named = *self
                .names
                .get(&name)
                .ok_or_else(|| DecodeError::Malformed(format!("avro: unknown type {}", name.fullname(None))))?;
            return self.value(named, &name.namespace, depth);
        }
        if depth > MAX_DEPTH {
            return Err(DecodeError::OverLimit(format!("avro: values nested deeper than {MAX_DEPTH}")));
        }
        self.spend(1)?;
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.bytes.skip(1, BODY),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.bytes.varint(BODY).map(drop),
            Schema::Float => self.bytes.skip(4, BODY),
            Schema::Double => self.bytes.skip(8, BODY),
            Schema::Duration => self.bytes.skip(12, BODY),
            // `apache_avro` reads a uuid and a big decimal as bytes.
            Schema::Bytes | Schema::String | Schema::Uuid | Schema::BigDecimal => self.length_prefixed(),
            Schema::Fixed(f) => self.bytes.skip(f.size, BODY),
            Schema::Decimal(d) => match &*d.inner {
                Schema::Fixed(f) => self.bytes.skip(f.size, BODY),
                Schema::Bytes => self.length_prefixed(),
                other => Err(DecodeError::Malformed(format!("avro: a decimal over {other:?}"))),
            },
            Schema::Enum(e) => {
                let i = self.bytes.varint(BODY)?;
                if usize::try_from(i).map_or(true, |i| i >= e.symbols.len()) {
                    return Err(DecodeError::Malformed(format!("avro: enum index {i} of {}", e.symbols.len())));
                }
                Ok(())
            }
            Schema::Union(u) => {
                let i = self.bytes.varint(BODY)?;
                let branch = usize::try_from(i).ok().and_then(|i| u.variants().get(i)).ok_or_else(|| {
                    DecodeError::Malformed(format!("avro: union branch {i} of {}", u.variants().len()))
                })?;
                self.value(branch, ns, depth + 1)
            }
            Schema::Record(r) => {
                let name = r.name.fully_qualified_name(ns);
                r.fields.iter().try_for_each(|f| self.value(&f.schema, &name.namespace, depth + 1))
            }
            Schema::Array(a) => self.blocks(&a.items, ns, depth, false),
            Schema::Map(m) => self.blocks(&m.types, ns, depth, true),
            Schema::Ref { .. } => unreachable!("resolved above"),
        }
    }

    /// A length, then that many bytes.
    fn length_prefixed(&mut self) -> R<()> {
        let len = self.bytes.varint(BODY)?;
        let left = self.bytes.left();
        match usize::try_from(len) {
            Ok(len) if len <= left => self.bytes.skip(len, BODY),
            _ => Err(DecodeError::Malformed(format!("avro: a length of {len} with {left} bytes left"))),
        }
    }

    /// The blocks of an array or a map: a count (negative when the block's
    /// size in bytes follows), that many items, until an empty block.
    fn blocks(&mut self, items: &Schema, ns: &Namespace, depth: usize, map: bool) -> R<()> {
        // Items that take no bytes are counted, not walked: there is nothing to read.
        let weight = if map { None } else { zero_byte_weight(items, self.names, ns, 0) };
        loop {
            let count = match self.bytes.varint(BODY)? {
                0 => return Ok(()),
                n if n < 0 => {
                    self.bytes.varint(BODY)?;
                    n.unsigned_abs()
                }
                n => n as u64,
            };
            match weight {
                Some(w) => self.spend(count.saturating_mul(w))?,
                None => {
                    let left = self.bytes.left();
                    if count > left as u64 {
                        return Err(DecodeError::Malformed(format!(
                            "avro: a block of {count} items with {left} bytes left"
                        )));
                    }
                    for _ in 0..count {
                        if map {
                            self.spend(1)?;
                            self.length_prefixed()?;
                        }
                        self.value(items, ns, depth + 1)?;
                    }
                }
            }
        }
    }
}

/// How many values one value of `schema` decodes into when its encoding is
/// always empty (null, fixed(0), records of nothing else); None when it
/// takes at least one byte. Unknown references and recursion past
/// [`MAX_DEPTH`] count as taking bytes: the walk then reaches them and
/// refuses them itself.
fn zero_byte_weight(schema: &Schema, names: &NamesRef<'_>, ns: &Namespace, depth: usize) -> Option<u64> {
    if depth > MAX_DEPTH {
        return None;
    }
    match schema {
        Schema::Null => Some(1),
        Schema::Fixed(f) => (f.size == 0).then_some(1),
        Schema::Decimal(d) => matches!(&*d.inner, Schema::Fixed(f) if f.size == 0).then_some(1),
        Schema::Record(r) => {
            let name = r.name.fully_qualified_name(ns);
            r.fields.iter().try_fold(1u64, |sum, f| {
                Some(sum.saturating_add(zero_byte_weight(&f.schema, names, &name.namespace, depth + 1)?))
            })
        }
        Schema::Ref { name } => {
            let name = name.fully_qualified_name(ns);
            zero_byte_weight(names.get(&name)?, names, &name.namespace, depth + 1)
        }
        _ => None,
    }
}
