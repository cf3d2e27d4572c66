"""Git, in three jobs: the lock (`locks`), the hermetic git process (`runner`) and the
promotion workflow over a persistent clone (`repository`). What a failed git run means is
decided in `domain.gitfailures`.
"""

from promotion_operator.gitops.credentials import GitAuth, HTTPSAuth, SSHAuth
from promotion_operator.gitops.repository import (
    CommitRecord,
    Edit,
    GitRepository,
    Message,
    PushResult,
    Reader,
)

__all__ = [
    "CommitRecord",
    "Edit",
    "GitAuth",
    "GitRepository",
    "HTTPSAuth",
    "Message",
    "PushResult",
    "Reader",
    "SSHAuth",
]
