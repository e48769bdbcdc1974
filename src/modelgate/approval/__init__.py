"""Approvals: signed links (``links``) and what approvers read (``page``: the mail and the pages)."""
