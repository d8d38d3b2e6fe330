"""The only package that reads or writes dataset files (JSONL, JSON, CSV, Parquet, text lines).

Reading streams: `iter_table` hands the file over in chunks and reads no further than the caller
takes, so a `limit` reads only the rows it needs. `scan_file` / `check_file` go through a whole file
in constant memory (nothing is kept but the column names) and report each kind of problem once, as
`FILE:LINE: what is wrong. How to fix it.`, so that bad input is found before any model call.
`TableWriter` / `append_jsonl` write a table chunk by chunk.

Modules: formats (extensions, encodings, first-bytes sniffing), lines (numbered lines, input
files), values (JSON values, JSONL objects), jsonstream (a JSON list element by element), scan
(checking a whole file), readers (iter_table, read_table), writers (whole tables), table_writer
(chunk by chunk).
"""

from selfalign.io.formats import FORMATS, detect_format, encoding_problem
from selfalign.io.readers import iter_table, read_table
from selfalign.io.scan import Scan, check_file, scan_file
from selfalign.io.table_writer import TableWriter, append_jsonl, read_jsonl_parts
from selfalign.io.values import _clean, short, value_type
from selfalign.io.writers import (
    arrow_table,
    jsonl_line,
    jsonl_rows,
    read_jsonl,
    records,
    write_json,
    write_jsonl,
    write_parquet,
)

__all__ = [
    "FORMATS",
    "Scan",
    "TableWriter",
    "_clean",
    "append_jsonl",
    "arrow_table",
    "check_file",
    "detect_format",
    "encoding_problem",
    "iter_table",
    "jsonl_line",
    "jsonl_rows",
    "read_jsonl",
    "read_jsonl_parts",
    "read_table",
    "records",
    "scan_file",
    "short",
    "value_type",
    "write_json",
    "write_jsonl",
    "write_parquet",
]
