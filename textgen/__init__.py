"""textgen: character-level recurrent text generation.

The layout follows the data path: ``data`` -> ``tokenizer`` -> ``models`` -> ``training`` ->
``export`` -> ``sampling`` -> (``server/`` at the top level).  Importing :mod:`textgen` stays cheap:
sampling and serving never import Lightning.
"""

__version__ = "0.1.0"
