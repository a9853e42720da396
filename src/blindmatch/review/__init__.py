"""The operator's workflow after a block or a report (issue 13): library code, no HTTP.

``enforcement`` (policy, Synapse's admin API, statements of reasons, the DSA Transparency
Database export) and ``appeals`` (EU DSA Art. 20). The lead's ``types``, ``audit``,
``reviewers`` and ``cases`` join them here.
"""
