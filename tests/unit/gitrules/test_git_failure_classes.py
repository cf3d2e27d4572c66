"""How git/ssh/curl output is sorted into typed errors (samples copied from real runs)."""

from __future__ import annotations

import pytest

from promotion_operator.domain.errors import Reason
from promotion_operator.domain.gitfailures import classify_git_failure

SAMPLES = [
    (
        "No ED25519 host key is known for [127.0.0.1]:52407 and you have requested strict "
        "checking.\nHost key verification failed.\nfatal: Could not read from remote "
        "repository.\n\nPlease make sure you have the correct access rights\nand the "
        "repository exists.",
        Reason.GIT_AUTH_FAILED,
        "known_hosts",
    ),
    (
        "git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote "
        "repository.",
        Reason.GIT_AUTH_FAILED,
        "refused the private key",
    ),
    (
        'Load key "/tmp/promotion-ssh-x/id": invalid format\ngit@127.0.0.1: Permission denied',
        Reason.GIT_AUTH_FAILED,
        "could not be loaded",
    ),
    (
        "fatal: Authentication failed for 'https://127.0.0.1:43191/app.git/'",
        Reason.GIT_AUTH_FAILED,
        "rejected the username/password",
    ),
    (
        "fatal: could not read Username for 'https://127.0.0.1:43191': terminal prompts disabled",
        Reason.GIT_AUTH_FAILED,
        "none was given",
    ),
    (
        "fatal: unable to access 'https://h/app.git/': The requested URL returned error: 403",
        Reason.GIT_AUTH_FAILED,
        "rejected",
    ),
    (
        "fatal: unable to access 'https://127.0.0.1:43191/app.git/': server certificate "
        "verification failed. CAfile: /etc/ssl/certs/ca-certificates.crt CRLfile: none",
        Reason.GIT_AUTH_FAILED,
        "TLS certificate",
    ),
    (
        "warning: Could not find remote branch nob to clone.\nfatal: Remote branch nob not "
        "found in upstream origin",
        Reason.GIT_NOT_FOUND,
        "branch",
    ),
    ("fatal: couldn't find remote ref refs/heads/gone", Reason.GIT_NOT_FOUND, "branch"),
    (
        "fatal: '/srv/none.git' does not appear to be a git repository\nfatal: Could not "
        "read from remote repository.\n\nPlease make sure you have the correct access "
        "rights\nand the repository exists.",
        Reason.GIT_NOT_FOUND,
        "repository",
    ),
    (
        "fatal: repository 'https://127.0.0.1:43191/nope.git/' not found",
        Reason.GIT_NOT_FOUND,
        "repository",
    ),
    (
        "ssh: connect to host 127.0.0.1 port 1: Connection refused\nfatal: Could not read "
        "from remote repository.",
        Reason.GIT_UNREACHABLE,
        "reached",
    ),
    (
        "fatal: unable to access 'https://127.0.0.1:1/x.git/': Failed to connect to "
        "127.0.0.1 port 1 after 0 ms: Couldn't connect to server",
        Reason.GIT_UNREACHABLE,
        "reached",
    ),
    (
        "ssh: Could not resolve hostname nowhere: Name or service not known",
        Reason.GIT_UNREACHABLE,
        "",
    ),
    ("Connection timed out during banner exchange", Reason.GIT_UNREACHABLE, ""),
    ("no answer within 60 s (timed out)", Reason.GIT_UNREACHABLE, ""),
    ("The requested URL returned error: 503", Reason.GIT_UNREACHABLE, ""),
    ("fatal: bad object HEAD", Reason.GIT_ERROR, ""),
]


@pytest.mark.parametrize(("output", "reason", "words"), SAMPLES)
def test_git_output_is_sorted(output: str, reason: Reason, words: str) -> None:
    kind, explanation = classify_git_failure(output)
    error = kind(explanation)
    assert error.reason is reason
    assert error.retryable is (reason in {Reason.GIT_UNREACHABLE, Reason.GIT_ERROR})
    assert words in explanation
