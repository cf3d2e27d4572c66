"""The lifecycle: what the operator does for a Promotion and for an Environment.

Called by `handlers` (the only kopf module); calls the adapters (`k8s`, `gitops`,
`registry`, `health`) and the pure `domain`.
"""
