"""Tabular splits: pandas / polars DataFrames, pyarrow Tables, Parquet files and pyarrow datasets.

Every form is read as pyarrow record batches (pandas and polars frames slice
by slice, Parquet and datasets streamed by pyarrow's own scanner, so memory is
one batch). Each batch becomes one float64 row per sample, one column per
feature, where equal values give equal numbers whatever their type or
encoding:

- numbers as their values (ints beyond 2**53 keep a hash of their exact value),
  bools as 0/1, nulls as NaN;
- strings and binaries as a 53-bit hash of their bytes (eight-byte words keyed
  by their place and mixed, see ``string_codes``; two different strings share a code with
  probability about 2**-53);
- categoricals (pandas ``category``, arrow dictionaries) by value: the codes of
  their categories' values, so code numbering and category order do not matter;
- datetimes as seconds since the epoch in UTC (float64: sub-microsecond
  differences of present-day times are not told apart), dates as midnight.

Those rows are what ``no_leakage`` matches (exact copies, repeats, conflicting
labels, target columns by name). Near copies need a distance, so they are
searched only when every feature column is numeric or bool. Training checks
take the numeric and bool columns as float32 in column order and name every
other column in one error; ``inputs_normalized`` judges the numeric columns and
names the ones it skipped. pyarrow is imported only when a table arrives.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Iterator

import numpy as np

from ..errors import SetupError
from .batches import PAIR, BatchForm
from ..threads import read_ahead
from .splits import ArraySplit, Block, Split, as_numpy

TABLE_ROWS = 65_536  # rows per record batch read from Parquet / a dataset
_SEED = 0x7AB1E
_NUMERIC, _BOOL, _CATEGORY, _STRING, _DATETIME, _OTHER = "numeric", "bool", "categorical", "string", "datetime", "other"


def is_table(source: Any) -> bool:
    """A DataFrame / Table / dataset, or a path that names Parquet data."""
    module = type(source).__module__.split(".")[0]
    name = type(source).__name__
    if module in ("pandas", "polars") and name == "DataFrame":
        return True
    if module == "pyarrow" and (name in ("Table", "RecordBatch") or "Dataset" in name):
        return True
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        return text.endswith(".parquet") or any(c in text for c in "*?[") or os.path.isdir(text)
    return False


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise SetupError("Tabular splits (DataFrames, Parquet) are read with pyarrow: pip install 'pytest-trainsanity[tables]' "
                         "(or pip install pyarrow).") from None
    return pyarrow


# ---------------------------------------------------------------------- reading


def _batches_of(source: Any, rows: int) -> Iterator[Any]:
    """pyarrow RecordBatches of ``source``, at most ``rows`` rows each."""
    pa = _pa()
    module, name = type(source).__module__.split(".")[0], type(source).__name__
    if module == "pandas":
        for start in range(0, len(source), rows):
            yield from pa.Table.from_pandas(source.iloc[start: start + rows], preserve_index=False).to_batches()
    elif module == "polars":
        for start in range(0, source.height, rows):
            yield from source.slice(start, rows).to_arrow().to_batches()
    elif name == "RecordBatch":
        for start in range(0, source.num_rows, rows):
            yield source.slice(start, rows)
    elif name == "Table":
        yield from source.to_batches(max_chunksize=rows)
    else:
        # read-ahead of one file and two batches: ~60% of the memory of pyarrow's default (4 and 16)
        yield from _dataset(source).to_batches(batch_size=rows, fragment_readahead=1, batch_readahead=2)
        pa.default_memory_pool().release_unused()  # the scan's buffers back to the system, not kept for the next


def _dataset(source: Any) -> Any:
    """A pyarrow dataset of ``source``; local paths and globs are memory-mapped (pyarrow reads the page
    cache in place instead of copying every file into its buffers: 20M Parquet rows, ~0.5 s and ~0.9
    CPU-s less, same peak RSS; a file is mapped only while its fragment is read). As with any mapped
    read (polars maps Parquet files by default too), a file truncated by another process while it is
    read stops the process with SIGBUS instead of raising: do not rewrite the files during the check."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    if not isinstance(source, (str, os.PathLike)):
        return source
    text = os.fspath(source)
    local = pafs.LocalFileSystem(use_mmap=True)
    if any(c in text for c in "*?["):
        files = sorted(glob.glob(text, recursive=True))
        if not files:
            raise SetupError(f"The Parquet glob {text!r} matches no file.")
        return ds.dataset([os.path.abspath(f) for f in files], format="parquet", filesystem=local)
    if not os.path.exists(text):
        raise SetupError(f"The Parquet path {text!r} does not exist.")
    return ds.dataset(os.path.abspath(text), format="parquet", filesystem=local)


def _schema(source: Any) -> Any:
    return next(_batches_of(source, 1), None).schema if not _is_dataset(source) else _dataset(source).schema


def _is_dataset(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) or "Dataset" in type(source).__name__


def _rows(source: Any) -> int:
    module, name = type(source).__module__.split(".")[0], type(source).__name__
    if module == "pandas":
        return len(source)
    if module == "polars":
        return int(source.height)
    if name in ("Table", "RecordBatch"):
        return int(source.num_rows)
    return int(_dataset(source).count_rows())


# ---------------------------------------------------------------------- coding values


def kind_of_type(t: Any) -> str:
    pa = _pa()
    types = pa.types
    if types.is_boolean(t):
        return _BOOL
    if types.is_integer(t) or types.is_floating(t) or types.is_decimal(t):
        return _NUMERIC
    if types.is_dictionary(t):
        return _CATEGORY
    if types.is_string(t) or types.is_large_string(t) or types.is_binary(t) or types.is_large_binary(t):
        return _STRING
    if types.is_timestamp(t) or types.is_date(t):
        return _DATETIME
    return _OTHER


_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise and in place: ``h`` (an array the caller owns, uint64:
    the arithmetic wraps) is overwritten and returned. One scratch array for the shifts instead of a
    temporary per step: 4x faster on the few hundred KB a string step hashes."""
    t = np.empty_like(h)
    np.right_shift(h, _S30, out=t)
    h ^= t
    h *= _M1
    np.right_shift(h, _S27, out=t)
    h ^= t
    h *= _M2
    np.right_shift(h, _S31, out=t)
    h ^= t
    return h


_WORD_KEYS = np.random.default_rng(_SEED).integers(0, 2**63, 4096, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _code(h: np.ndarray) -> np.ndarray:
    """A 64-bit hash as a float64 code: its top 53 bits, exactly representable (``h`` is overwritten)."""
    return np.right_shift(_mix(h), _S11, out=h).astype(np.float64)


STRING_CHUNK = 1 << 18  # bytes hashed per step: the temporaries stay in L2 (1 MB); 64 KB steps cost 20% more in calls, 1 MB 2x


def string_codes(arr: Any) -> np.ndarray:
    """A code per string / binary value (NaN for null): equal bytes, equal code.

    Eight bytes at a time: each value's bytes, from its own start, are read as little-endian 64-bit
    words (the last one zero-padded), each word is keyed by its place in the value and mixed
    (splitmix64), and a value's code is the sum of its mixed words and of its mixed length. Where
    a value starts in the buffer does not matter; a word that differs changes its mixed term
    completely, so two different values share a code with probability about 2**-53."""
    pa = _pa()
    t = arr.type
    if not (pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t)):
        arr = arr.cast(pa.large_binary())  # string views and the like: plain offsets and bytes
        t = arr.type
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()[:3]
    wide = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    offsets = np.frombuffer(offsets_buf, dtype=np.int64 if wide else np.int32)[arr.offset: arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    h = _length_terms(lengths)
    total = int(offsets[-1] - offsets[0]) if n else 0
    if total:
        cuts = np.unique(np.r_[np.searchsorted(offsets, offsets[0] + np.arange(0, total, STRING_CHUNK), side="right") - 1, n])
        for a, b in zip(cuts[:-1], cuts[1:]):  # rows a..b, whose bytes are contiguous
            h[a:b] += _word_sums(data[offsets[a]: offsets[b]], offsets[a:b] - offsets[a], lengths[a:b])
    out = _code(h)
    if arr.null_count:
        out[np.asarray(arr.is_null())] = np.nan
    return out


def _length_terms(lengths: np.ndarray) -> np.ndarray:
    """Each value's mixed length, its code's first term: for short values, a table of the mixed lengths
    up to the longest and one gather (instead of eight passes over the column)."""
    def mixed(ls: np.ndarray) -> np.ndarray:  # in place
        ls *= np.uint64(0x9E3779B97F4A7C15)
        ls += np.uint64(_SEED)
        return _mix(ls)

    longest = int(lengths.max(initial=0))
    if longest < 4 * len(lengths):
        return mixed(np.arange(longest + 1, dtype=np.uint64)).take(lengths)
    return mixed(lengths.astype(np.uint64))


def _word_sums(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per value (``starts``/``lengths`` into ``data``), the sum of its mixed, place-keyed 64-bit words."""
    fixed = _fixed_width_sums(data, lengths)
    if fixed is not None:
        return fixed
    m = len(data) // 8 + 1
    buf = np.zeros(8 * m + 8, np.uint8)  # zero padding: a value's last word may read past its bytes
    buf[: len(data)] = data
    shifted = np.empty((8, m), np.uint64)  # shifted[r, j]: the 8 bytes from byte 8 * j + r (aligned copies)
    for r in range(8):
        shifted[r] = buf[r: r + 8 * m].view("<u8")
    count = (lengths + 7) >> 3  # words per value
    first = np.cumsum(count) - count
    # each word's index into shifted: its value's first word, then the next ones
    index = np.arange(int(first[-1] + count[-1]) if len(count) else 0) + np.repeat((starts & 7) * m + (starts >> 3) - first, count)
    words = shifted.reshape(-1).take(index)
    place = np.arange(len(index)) - np.repeat(first, count)  # each word's place in its value
    tail = lengths & 7  # the last word of a value whose length is not a multiple of 8 keeps only its bytes
    cut = np.flatnonzero(tail)
    last = first[cut] + count[cut] - 1
    words[last] &= (np.uint64(1) << (tail[cut].astype(np.uint64) << np.uint64(3))) - np.uint64(1)
    if int(count.max(initial=0)) <= len(_WORD_KEYS):
        keys = _WORD_KEYS.take(place)
    else:  # values longer than 32 KB: the keys repeat with an odd multiplier per lap
        keys = _WORD_KEYS[place % len(_WORD_KEYS)] * (place // len(_WORD_KEYS) * 2 + 1).astype(np.uint64)
    words ^= keys
    sums = np.zeros(len(lengths), np.uint64)
    some = np.flatnonzero(count)
    if len(some):  # empty values have no words (and keep 0)
        sums[some] = np.add.reduceat(_mix(words), first[some])
    return sums


def _fixed_width_sums(data: np.ndarray, lengths: np.ndarray) -> np.ndarray | None:
    """``_word_sums`` of values that are all ``L`` bytes long or empty (ids, codes, hashes, fixed
    formats: common in tables), or None for other values. The non-empty values lie back to back, so
    they are one (values, L) array: zero-padded to whole words it is read as (values, words) in place
    of a gather per word. The same sums as the general path, bit for bit."""
    filled = lengths > 0
    k = int(np.count_nonzero(filled))
    if not k or len(data) % k:
        return None
    width = len(data) // k
    words = (width + 7) >> 3
    if words > len(_WORD_KEYS) or not (lengths[filled] == width).all():
        return None
    padded = np.zeros((k, 8 * words), np.uint8)
    padded[:, :width] = data.reshape(k, width)
    keyed = padded.view("<u8")
    keyed ^= _WORD_KEYS[:words]
    mixed = _mix(keyed)
    total = mixed[:, 0].copy()
    for w in range(1, words):  # column by column (uint64 wraps mod 2**64, as the general path's reduceat):
        total += mixed[:, w]  # a sum along rows of a few words is several times slower in numpy
    if k == len(lengths):
        return total
    sums = np.zeros(len(lengths), np.uint64)
    sums[filled] = total
    return sums


def column_codes(arr: Any, out: np.ndarray | None = None) -> np.ndarray:
    """float64 per value, equal exactly when the values are (see the module docstring); written into
    ``out`` (a float64 array of the column's length) when given: numbers are converted in place there."""
    if out is not None:
        if _is_numeric(arr):
            return _numeric_codes(arr, out)
        out[...] = column_codes(arr)
        return out
    pa = _pa()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_null(arr.type):  # every value missing (an object column of None in one partition): as nulls are
        return np.full(len(arr), np.nan)
    kind = kind_of_type(arr.type)
    if kind == _CATEGORY:
        values = column_codes(arr.dictionary)
        idx = np.asarray(arr.indices.fill_null(0)).astype(np.int64)
        out = values[idx] if len(values) else np.full(len(arr), np.nan)
        if arr.null_count:
            out[np.asarray(arr.is_null())] = np.nan
        return out
    if kind == _STRING:
        return string_codes(arr)
    if kind == _DATETIME:
        if pa.types.is_date(arr.type):
            arr = arr.cast(pa.timestamp("s"))
        unit = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[arr.type.unit]
        ints = np.asarray(arr.cast(pa.int64()).fill_null(0))
        out = ints.astype(np.float64) * unit
        if arr.null_count:
            out[np.asarray(arr.is_null())] = np.nan
        return out
    if kind == _BOOL:
        out = np.asarray(arr.fill_null(False)).astype(np.float64)
        if arr.null_count:
            out[np.asarray(arr.is_null())] = np.nan
        return out
    if kind == _NUMERIC:
        return _numeric_codes(arr, np.empty(len(arr)))
    raise SetupError(f"a column of type {arr.type} cannot be compared by value (nested or unsupported type)")


def _is_numeric(arr: Any) -> bool:
    return not isinstance(arr, _pa().ChunkedArray) and kind_of_type(arr.type) == _NUMERIC


def _numeric_codes(arr: Any, out: np.ndarray) -> np.ndarray:
    """A numeric column's values as float64 in ``out`` (one conversion pass: no temporary column)."""
    pa = _pa()
    if pa.types.is_decimal(arr.type):
        arr = arr.cast(pa.float64())
    values = np.asarray(arr.fill_null(0)) if arr.null_count else np.asarray(arr)
    np.add(values, 0.0, out=out, casting="unsafe")  # as float64; -0.0 + 0.0 == +0.0
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8:  # beyond 2**53 a float64 is not the value
        big = np.flatnonzero(np.abs(out) >= 2.0**53)
        if len(big):
            out[big] = _code(values[big].view(np.uint64)) + 2.0**60  # exact by value, far from ordinary numbers
    if arr.null_count:
        out[np.asarray(arr.is_null())] = np.nan
    return out


# ---------------------------------------------------------------------- the split


class TableSplit(Split):
    """A tabular split read as pyarrow record batches; in memory (a frame) or streamed (Parquet)."""

    def __init__(self, name: str, source: Any, target: str | None, y: Any = None) -> None:
        super().__init__(name, source)
        self.target, self._y = target, y
        schema = _schema(source)
        if schema is None:
            raise SetupError(f"TrainSetup({name}=...) is an empty table (0 rows).")
        names = list(schema.names)
        if y is None:
            if target is None:
                raise SetupError(
                    f"TrainSetup({name}=...) is a table without labels: give (features, y), or name the label "
                    f"column with TrainSetup(target='column'). Its columns: {', '.join(names[:12])}"
                    f"{', ...' if len(names) > 12 else ''}.")
            if target not in names:
                raise SetupError(f"TrainSetup(target={target!r}) is not a column of the {name} split; its columns: "
                                 f"{', '.join(names[:12])}{', ...' if len(names) > 12 else ''}.")
            names.remove(target)
        if not names:
            raise SetupError(f"TrainSetup({name}=...) has no feature column (only the target {target!r}).")
        self.columns = names
        self.kinds = {c: kind_of_type(schema.field(c).type) for c in names}
        self.types = {c: schema.field(c).type for c in names}
        bad = [c for c, k in self.kinds.items() if k == _OTHER]
        if bad:
            raise SetupError(f"TrainSetup({name}=...) column(s) {', '.join(bad)} are nested or of an unsupported type "
                             f"({', '.join(str(schema.field(c).type) for c in bad)}); drop them or flatten them first.")
        self.in_memory = not _is_dataset(source)
        self.kind = "table" if self.in_memory else "table stream"
        self._n = _rows(source)
        if y is not None and _length_of(y) != self._n:
            raise SetupError(f"TrainSetup({name}=...) has {self._n} rows but {_length_of(y)} labels.")
        if not self._n:
            raise SetupError(f"TrainSetup({name}=...) is empty (0 rows).")

    @property
    def numeric_only(self) -> bool:
        return all(k in (_NUMERIC, _BOOL) for k in self.kinds.values())

    def n_samples(self) -> int:
        return self._n

    def describe(self) -> str:
        return f"a table of {self._n:,} rows x {len(self.columns)} columns"

    def record_batches(self, rows: int = TABLE_ROWS) -> Iterator[tuple[Any, np.ndarray]]:
        """(feature columns as a RecordBatch, labels as numpy) in order."""
        start = 0
        y_all = None if self._y is None else as_numpy(self._y, f"TrainSetup({self.name}=(X, y)) y")
        for batch in self._guard(_batches_of(self.source, rows)):
            n = batch.num_rows
            if not n:
                continue
            if y_all is None:
                y = _labels(batch.column(batch.schema.get_field_index(self.target)), self.target)
            else:
                y = y_all[start: start + n]
            start += n
            yield batch.select(self.columns), y

    def blocks(self) -> Iterator[Block]:
        """Every row once as float64 value codes of every feature column (``no_leakage``), read and coded
        in a thread two batches ahead of the caller, whose hashing and matching of one batch overlap the
        decoding and coding of the next (both are numpy and pyarrow work that releases the GIL; 20M-row
        Parquet on 2 cores: 9.5 -> 7.8 s). 65,536-row slices: a frame converts 6x faster than in 4,096s."""
        coded = ((self._codes(batch), y) for batch, y in self.record_batches())
        for X, y in read_ahead(coded, depth=2):
            yield {"x": X}, y

    def column_values(self, column: str) -> np.ndarray:
        """One feature column's values as numpy (group ids or times named by column): only that column is
        read (a Parquet stream reads it alone); nulls become NaN / NaT / None, times keep their unit."""
        source, module = self.source, type(self.source).__module__.split(".")[0]
        if module == "pandas":
            arr = _pa().Array.from_pandas(source[column])
        elif module == "polars":
            arr = source[column].to_arrow()
        elif type(source).__name__ in ("Table", "RecordBatch"):
            arr = source.column(column)
        else:
            arr = _dataset(source).to_table(columns=[column]).column(column)
        if hasattr(arr, "combine_chunks"):
            arr = arr.combine_chunks()
        if kind_of_type(arr.type) == _CATEGORY:
            arr = arr.dictionary_decode()
        return arr.to_numpy(zero_copy_only=False)

    def numeric_blocks(self) -> Iterator[Block]:
        """The numeric (not bool) columns only, as float64 (``inputs_normalized``)."""
        keep = [c for c in self.columns if self.kinds[c] == _NUMERIC]
        if not keep:
            return
        for batch, y in self.record_batches():
            yield {"x": np.column_stack([column_codes(batch.column(c)) for c in keep])}, y

    def numeric_dtype(self) -> str:
        """The numpy name of the numeric columns' type ("float32"), or each type with its column count when
        they differ; ``numeric_blocks`` reads them all as float64."""
        counts: dict[str, int] = {}
        for c in self.columns:
            if self.kinds[c] == _NUMERIC:
                try:
                    name = np.dtype(self.types[c].to_pandas_dtype()).name
                except Exception:  # noqa: BLE001 - a type numpy has no name for: arrow's own
                    name = "object"
                if name == "object":  # decimal128(10, 2) and the like: arrow's name says more
                    name = str(self.types[c])
                counts[name] = counts.get(name, 0) + 1
        if len(counts) == 1:
            return next(iter(counts))
        return "mixed (" + ", ".join(f"{n} x{k}" for n, k in counts.items()) + " columns)"

    def skipped(self) -> dict[str, str]:
        """Columns a numeric check leaves out, with their kind."""
        return {c: k for c, k in self.kinds.items() if k not in (_NUMERIC,)}

    def _codes(self, batch: Any) -> np.ndarray:
        """(rows, columns) float64 codes in Fortran order: each column written whole (a row-major stack
        writes 8 bytes at a stride: 5x slower), and the row hashes read it column by column."""
        out = np.empty((batch.num_columns, batch.num_rows))
        for i in range(batch.num_columns):
            column_codes(batch.column(i), out[i])
        return out.T

    def numeric_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """(float32 numeric and bool columns in column order, labels) for training; one paragraph naming
        every other column otherwise. Reads the table once (it is in memory already)."""
        other = {c: k for c, k in self.kinds.items() if k not in (_NUMERIC, _BOOL)}
        if other:
            raise SetupError(
                f"Training checks need numeric or bool feature columns; TrainSetup({self.name}=...) also has "
                + ", ".join(f"{c!r} ({k})" for c, k in other.items())
                + ". Encode them first (one-hot or ordinal codes for categoricals and strings, numbers for dates) or "
                  "drop them; no_leakage and inputs_normalized take the table as it is.")
        if not self.in_memory:
            raise SetupError(f"TrainSetup({self.name}=...) is streamed from Parquet; training checks need the rows "
                             f"in memory (a DataFrame) or a DataLoader / tf.data pipeline over them.")
        parts, ys = [], []
        for batch, y in self.record_batches():
            parts.append(self._codes(batch).astype(np.float32))
            ys.append(y)
        return np.concatenate(parts), np.concatenate(ys)

    def as_arrays(self) -> ArraySplit:
        X, y = self.numeric_pair()
        split = ArraySplit(self.name, (X, y))
        split.column_names = tuple(self.columns)  # every column is numeric or bool here, in this order
        return split

    def form(self, batch: Any = None) -> BatchForm:
        return BatchForm(PAIR, ("x",))

    def _read_sample(self, n: int, seed: int) -> Any:
        return self.as_arrays().sample(n, seed)


def _length_of(y: Any) -> int:
    shape = getattr(y, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(y)


def _labels(column: Any, name: str) -> np.ndarray:
    kind = kind_of_type(column.type)
    if kind in (_NUMERIC, _BOOL):
        if column.null_count:
            raise SetupError(f"the target column {name!r} holds {column.null_count} null label(s); drop those rows.")
        return np.asarray(column).astype(np.float64 if kind == _NUMERIC and "float" in str(column.type) else np.int64)
    return column_codes(column)  # string / categorical labels: compared by value
