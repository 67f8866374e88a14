"""archc: compile one declarative YAML architecture spec into verified Keras and PyTorch models.

Installed, everything archc imports lives under this package: `archc.compiler` (spec -> IR,
no framework), `archc.backends` (IR -> Keras and PyTorch source, the proof tools), `archc.cli`
and `archc.graph` (the command line and the pictures). In a checkout, archc/compiler and
archc/backends are symbolic links to the repository's compiler/ and backends/
(docs/ARCHITECTURE.md, "Layout").
"""

from archc.compiler import __version__

__all__ = ["__version__"]
