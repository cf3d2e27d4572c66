"""Promotion Operator: promote a tested version from one GitOps environment to the next."""

__version__ = "0.1.0"

API_GROUP = "promotion.gitops.dev"
API_VERSION = "v1alpha1"
REQUESTED_BY_ANNOTATION = f"{API_GROUP}/requested-by"
"""Who asked for a Promotion: the commit's Requested-By (stamped by the chart's policy)."""
