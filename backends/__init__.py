"""Backends turn a compiled spec into generated source, the models it builds, and proofs.

Each backend module imports its framework lazily, inside functions, so that importing
`backends` costs nothing and `archc check` never pays for TensorFlow or PyTorch.
"""
