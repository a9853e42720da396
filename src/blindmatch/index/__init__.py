"""Exact Hamming-radius indexes over 256-bit PDQ hashes.

``MultiIndexHash`` is the one to use; ``BruteForceIndex`` is the plain numpy
scan it is tested against. Both implement :class:`PDQIndex`, and
``PDQIndex.load`` reads either kind back from ``save``.
"""

from blindmatch.index._base import PDQIndex, SearchResult
from blindmatch.index.brute import BruteForceIndex
from blindmatch.index.mih import MultiIndexHash

__all__ = ["BruteForceIndex", "MultiIndexHash", "PDQIndex", "SearchResult"]
