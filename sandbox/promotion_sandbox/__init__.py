"""Local, real stand-ins for a cluster, a git remote and a registry: for tests and the demo."""
