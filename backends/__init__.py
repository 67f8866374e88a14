"""Backends turn a checked IR Graph into framework models, generated source, and proofs.

Each backend module imports its framework lazily, inside functions, so that importing
`backends` costs nothing and `archc check` never pays for TensorFlow or PyTorch.
"""
