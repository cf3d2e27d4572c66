"""`kubectl promote`: the promote-to-prod workflow as a kubectl plugin.

One module per command (`versions`, `promote`, `history`, `rollback`, `status`), each
exposing a click command; `main.COMMANDS` registers them. Shared parts: `session` (kubectl's
flags, exit codes), `kube` (the API with the user's kubeconfig), `flow` (dry run, confirm,
create, follow), `views` (pure rows) and `render` (rich output).
"""
