"""Corpora: pinned public sources, their download, and the rules that turn them into train/val text.

Submodules are imported on demand (``textgen.data.sources``, ``.download``, ``.builders``,
``.prepare``) so that importing this package costs nothing.
"""
