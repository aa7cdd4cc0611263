"""Cast a batch as read from disk to the format's types, finding the offending row when it fails.

Everything here is vectorised (Arrow compute); the exact row of a failed cast is
found by bisection, so a bad value costs O(n) extra work once and nothing when
the data is clean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from distillguard.traffic._schema import TS, Table

_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError)
# An ISO-8601 string that ends in a zone designator: Z, +HH, +HH:MM or +HHMM.
_HAS_ZONE = r"(?i)(z|[+-]\d\d(:?\d\d)?)$"


class CellError(Exception):
    """A value in one row cannot be read as the format's type (index is within the batch)."""

    def __init__(self, index: int, column: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.column = column
        self.message = message


class ColumnError(Exception):
    """A whole column is missing or stored with a type the format does not allow."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def _kind(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    return str(t)


# Which stored kinds may be read as each format kind. Anything else is a wrong type:
# an account id stored as an integer is a bug in the writer, not something to guess at.
_ACCEPTS = {
    "string": {"string"},
    "int": {"int"},
    "float": {"int", "float"},
    "bool": {"bool"},
    "timestamp": {"timestamp", "string"},
}


def check_type(column: str, stored: pa.DataType, target: pa.DataType) -> None:
    """Raise ColumnError when a stored type can never be read as the format's type."""
    have, want = _kind(stored), _kind(target)
    if have == "null" or have in _ACCEPTS.get(want, {want}):
        return
    what = "ISO-8601 strings or timestamps" if want == "timestamp" else want
    raise ColumnError(
        column,
        f"column is stored as {stored}, but the format says {what}; "
        f"rewrite the file with {what} values in this column",
    )


def _strings_to_ts(arr: pa.Array) -> pa.Array:
    arr = pc.cast(arr, pa.string())
    try:  # the common case: every string has its zone (what our writers produce)
        return pc.cast(arr, TS)
    except _CAST_ERRORS:
        pass
    # Strings without a zone are UTC (the format says every timestamp is UTC); 'z' is 'Z'.
    arr = pc.replace_substring_regex(arr, "z$", "Z")
    zoned = pc.match_substring_regex(arr, _HAS_ZONE)
    fixed = pc.if_else(pc.fill_null(zoned, True), arr, pc.binary_join_element_wise(arr, "Z", ""))
    return pc.cast(fixed, TS)


def to_timestamp(arr: pa.Array) -> pa.Array:
    """Any accepted stored timestamp as `timestamp[us, tz=UTC]` (naive values are UTC)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if pa.types.is_timestamp(t) and t.tz is None:
            return pc.cast(arr, pa.timestamp("us")).cast(TS)
        return pc.cast(arr, TS)
    return _strings_to_ts(arr)


def _first_failure(arr: pa.Array, fn: Callable[[pa.Array], object]) -> int:
    """Index of the first value of `arr` for which `fn` fails (it fails on the whole array)."""
    lo, hi = 0, len(arr)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            fn(arr.slice(lo, mid - lo))
            lo = mid
        except _CAST_ERRORS:
            hi = mid
    return lo


def _show(value: object) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


def cast_column(name: str, arr: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    """Cast one column to the format type; CellError names the first value that will not go."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type == target:
        return arr
    check_type(name, arr.type, target)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target)

    def fn(a: pa.Array) -> pa.Array:
        if target == TS:
            return to_timestamp(a)
        return pc.cast(a, target, safe=True)

    try:
        return fn(arr)
    except _CAST_ERRORS:
        i = _first_failure(arr, fn)
        value = arr[i].as_py()
        if target == TS:
            hint = "an ISO-8601 time such as '2026-03-01T12:00:00Z'"
        else:
            hint = f"a {target} value"
        raise CellError(i, name, f"value {_show(value)} is not {hint}") from None


def conform_batch(
    spec: Table, batch: pa.RecordBatch, columns: Sequence[str] | None = None
) -> pa.RecordBatch:
    """`batch` with the format's columns (in order, typed), then its extra columns.

    Missing optional columns become nulls; a missing required column raises
    ColumnError; a bad value or a null in a required column raises CellError.
    With `columns`, only those columns are returned (extras included if present).
    """
    names = batch.schema.names
    wanted = list(columns) if columns is not None else None
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for field in spec.schema:
        if wanted is not None and field.name not in wanted:
            continue
        if field.name in names:
            arr = cast_column(field.name, batch.column(field.name), field.type)
        elif field.name in spec.required:
            raise ColumnError(field.name, "required column is missing; every row needs it")
        else:
            arr = pa.nulls(batch.num_rows, field.type)
        if field.name in spec.required and arr.null_count:
            i = pc.index(pc.is_null(arr), True).as_py()
            raise CellError(i, field.name, "required value is null or absent")
        arrays.append(arr)
        fields.append(pa.field(field.name, field.type))
    for n in names:
        if n in spec.schema.names or (wanted is not None and n not in wanted):
            continue
        arrays.append(batch.column(n))
        fields.append(batch.schema.field(n))
    if wanted is not None:
        known = set(spec.schema.names) | set(names)
        missing = [c for c in wanted if c not in known]
        if missing:
            raise ColumnError(missing[0], "column is neither in the format nor in the file")
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    try:
        return pc.cast(col, pa.string())
    except _CAST_ERRORS:  # nested values: as JSON text
        import json

        return pa.array(
            [
                v if v is None or isinstance(v, str) else json.dumps(v, default=str)
                for v in col.to_pylist()
            ],
            pa.string(),
        )


def concat_unified(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables whose extra columns may differ in presence or type.

    Missing columns become nulls and types are promoted (null to anything, int
    to float...); an extra column whose types cannot be reconciled (a JSONL key
    holding numbers in some rows and text in others) becomes text.
    """
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    seen: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            seen.setdefault(f.name, set()).add(f.type)
    mixed = {n for n, ts in seen.items() if len(ts - {pa.null()}) > 1}
    fixed = []
    for t in tables:
        for n in mixed & set(t.column_names):
            t = t.set_column(t.schema.get_field_index(n), n, _as_text(t.column(n)))
        fixed.append(t)
    return pa.concat_tables(fixed, promote_options="permissive")


def align_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch | None:
    """`batch` with exactly `schema` (missing columns as nulls), or None if it cannot be."""
    if batch.schema == schema:
        return batch
    if any(n not in schema.names for n in batch.schema.names):
        return None
    arrays = []
    for f in schema:
        if f.name not in batch.schema.names:
            arrays.append(pa.nulls(batch.num_rows, f.type))
            continue
        col = batch.column(f.name)
        if col.type == f.type:
            arrays.append(col)
        elif pa.types.is_null(col.type):
            arrays.append(pa.nulls(batch.num_rows, f.type))
        else:
            try:
                arrays.append(pc.cast(col, f.type, safe=True))
            except _CAST_ERRORS:
                return None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
