"""Shared data for the git integration tests."""

PASSWORD = "tok-9f2c4e1-Sup3rSecret"  # checked against every error message and commit
OVERLAY = "k8s/overlays/prod/kustomization.yaml"
SEED = {
    "k8s/base/kustomization.yaml": "resources:\n  - deployment.yaml\n",
    OVERLAY: (
        "# prod overlay: bumped by the promotion operator\n"
        "resources:\n  - ../../base\n"
        "images:\n"
        "  - name: registry.example.com/team/tvhub-frontend\n"
        "    newTag: v20250812-a1b2c3d  # keep this comment\n"
    ),
}
