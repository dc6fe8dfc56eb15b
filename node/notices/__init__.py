"""Notices to hosters: build, approve, send (XARF v4), re-check, measure time to removal.

See docs/notices.md.
"""
