"""Optional integrations with other training frameworks.

* :mod:`causalprune.integrations.lightning`: ``CausalPruning``, a Lightning callback
  (``pip install 'causalprune[lightning]'``).

Each submodule imports its framework when it is imported itself, so ``import causalprune`` never
needs them.
"""

__all__: list[str] = []
