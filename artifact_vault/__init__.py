"""Artifact Vault: a caching proxy for pip, container images, apt and plain HTTP."""

__version__ = "0.1.0"
