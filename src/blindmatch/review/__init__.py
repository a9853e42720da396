"""The operator's workflow after a block or a report (issue 13): library code, no HTTP."""

from blindmatch.review.types import ConfirmedCase, EvidenceFile

__all__ = ["ConfirmedCase", "EvidenceFile"]
