"""Lightning training: the :class:`LanguageModelTask`, its data module and LR schedules.

Importing this package imports Lightning; sampling and serving never do.
"""
