"""blindmatch: stop known abuse images spreading through E2EE messaging.

The public API is what ``__all__`` lists; everything else is private.
"""

from blindmatch._version import __version__

__all__ = ["__version__"]
