"""The cluster client the tests use: the sandbox's `Kube` (kept here under its old name)."""

from promotion_sandbox.kube import Kube

__all__ = ["Kube"]
