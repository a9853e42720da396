"""Private matching's I/O edge, shared by the CLI, the Matrix integration and the demo.

:mod:`blindmatch.protocol` is pure (no files, no images); this package is what sits around
it: the query hashes a client computes from a picture (:mod:`.query`), trust files and
table directories (:mod:`.trust`).
"""

from blindmatch.private.query import VARIANT_PRIORS, query_hashes
from blindmatch.private.trust import load_records, load_trust_file, trust_json, write_table_dir

__all__ = [
    "VARIANT_PRIORS",
    "load_records",
    "load_trust_file",
    "query_hashes",
    "trust_json",
    "write_table_dir",
]
