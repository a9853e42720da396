"""The operator's side of blindmatch (issue 13): reviewers, the case workflow, the audit
log, and what acts on a decision. Library code over the store's database; the console
(``blindmatch.service.console``) and the CLI are thin layers over it."""

from blindmatch.review.audit import AuditCheck, AuditEntry, AuditLog
from blindmatch.review.cases import CaseDetail, CaseSummary, Review
from blindmatch.review.reviewers import ROLES, Reviewer, Reviewers
from blindmatch.review.types import CONFIRM_CATEGORIES, ConfirmedCase, EvidenceFile

__all__ = [
    "CONFIRM_CATEGORIES",
    "ROLES",
    "AuditCheck",
    "AuditEntry",
    "AuditLog",
    "CaseDetail",
    "CaseSummary",
    "ConfirmedCase",
    "EvidenceFile",
    "Review",
    "Reviewer",
    "Reviewers",
]
