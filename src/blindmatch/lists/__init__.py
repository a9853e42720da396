"""Hash lists: the entries a source publishes, and the files they come in.

Pure parsers and writers; see :mod:`blindmatch.lists.formats` for the formats.
"""

from blindmatch.lists.formats import (
    CSV_COLUMNS,
    FORMATS,
    MAX_XML_BYTES,
    MAX_XML_DEPTH,
    TE_SIGNAL_TYPES,
    WRITABLE_FORMATS,
    ParsedList,
    detect_format,
    dump_list,
    parse_list,
)
from blindmatch.lists.model import (
    CATEGORIES,
    MAX_PDQ_HOT,
    MAX_SOURCE_ID_LENGTH,
    ListEntry,
    VpdqFrame,
    normalise_category,
    normalise_md5,
    normalise_pdq,
    normalise_pdq_companion,
    normalise_pdq_hot,
    normalise_sha256,
    validate_list_name,
    validate_list_text,
    validate_source_id,
)

__all__ = [
    "CATEGORIES",
    "CSV_COLUMNS",
    "FORMATS",
    "MAX_PDQ_HOT",
    "MAX_SOURCE_ID_LENGTH",
    "MAX_XML_BYTES",
    "MAX_XML_DEPTH",
    "TE_SIGNAL_TYPES",
    "WRITABLE_FORMATS",
    "ListEntry",
    "ParsedList",
    "VpdqFrame",
    "detect_format",
    "dump_list",
    "normalise_category",
    "normalise_md5",
    "normalise_pdq",
    "normalise_pdq_companion",
    "normalise_pdq_hot",
    "normalise_sha256",
    "parse_list",
    "validate_list_name",
    "validate_list_text",
    "validate_source_id",
]
