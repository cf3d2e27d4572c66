"""The pure git rules: which remotes are allowed, which paths stay inside a clone, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.gitrules import (
    confine_path,
    has_trailers,
    redact,
    trailer_block,
    validate_branch,
    validate_git_url,
)

ALWAYS_ALLOWED = [
    "https://git.example.com/team/tvhub-gitops.git",
    "https://user@git.example.com/team/repo.git",
    "https://git.example.com:8443/team/repo",
    "ssh://git@git.example.com/team/tvhub-gitops.git",
    "ssh://git@git.example.com:2222/team/repo.git",
    "ssh://git.example.com/srv/repo.git",
    "SSH://git@git.example.com/team/repo.git",
    "git@github.com:team/repo.git",
    "git@10.0.0.5:/srv/git/repo.git",
    "git@[::1]:team/repo.git",
]
LOCAL_ONLY = [
    "file:///srv/git/repo.git",
    "file://localhost/srv/git/repo.git",
    "http://127.0.0.1:8080/repo.git",
]
NEVER = [
    "",
    "ext::sh -c touch% /tmp/pwned",
    "ext::ssh",
    "fd::17",
    "-oProxyCommand=touch /tmp/pwned",
    "--upload-pack=touch /tmp/pwned",
    "https://example.com/repo.git --upload-pack=evil",
    "https://example.com/re\npo.git",
    "https://example.com/re\tpo.git",
    "https://example.com/repo\x00.git",
    "git://example.com/repo.git",
    "ftp://example.com/repo.git",
    "/srv/git/repo.git",
    "../repo.git",
    "repo.git",
    "host:path",  # scp-like without a user: not the documented form
    "ssh://-oProxyCommand=evil/repo.git",
    "ssh://git@-oProxyCommand=evil/repo.git",
    "git@-oProxyCommand=evil:repo.git",
    "-git@host:repo.git",
    "git@host:-repo.git",
    "https://user:hunter2@example.com/repo.git",
    "https:///repo.git",
    "https://example.com",
    "https://example.com/",
    "https://example.com:notaport/repo.git",
    "file:relative/path",
    "file://otherhost/srv/repo.git",
]


@pytest.mark.parametrize("url", ALWAYS_ALLOWED)
@pytest.mark.parametrize("allow_file", [False, True])
def test_allowed_forms_pass_with_or_without_the_local_flag(url: str, allow_file: bool) -> None:
    validate_git_url(url, allow_file=allow_file)


@pytest.mark.parametrize("url", LOCAL_ONLY)
def test_file_and_plain_http_need_the_local_flag(url: str) -> None:
    validate_git_url(url, allow_file=True)
    with pytest.raises(PermanentError) as caught:
        validate_git_url(url, allow_file=False)
    assert caught.value.reason is Reason.INVALID_GIT_URL
    assert "local-use flag" in caught.value.message


@pytest.mark.parametrize("url", NEVER)
@pytest.mark.parametrize("allow_file", [False, True])
def test_dangerous_or_unknown_forms_are_rejected(url: str, allow_file: bool) -> None:
    with pytest.raises(PermanentError) as caught:
        validate_git_url(url, allow_file=allow_file)
    error = caught.value
    assert error.reason is Reason.INVALID_GIT_URL
    assert not error.retryable
    # The message tells the user what would be accepted.
    assert "https://" in error.message
    assert "ssh://" in error.message
    assert "user@host:path" in error.message


def test_ext_transport_is_named_in_the_message() -> None:
    with pytest.raises(PermanentError, match="ext::"):
        validate_git_url("ext::sh -c id", allow_file=True)


def test_leading_dash_is_named_in_the_message() -> None:
    with pytest.raises(PermanentError, match="starts with '-'"):
        validate_git_url("--upload-pack=id", allow_file=True)


def test_a_password_in_the_url_is_not_echoed_back() -> None:
    with pytest.raises(PermanentError) as caught:
        validate_git_url("https://robot:hunter2@example.com/repo.git", allow_file=False)
    assert "hunter2" not in str(caught.value)
    assert "Secret" in caught.value.message


@given(st.text(min_size=1).map(lambda s: "-" + s))
def test_anything_starting_with_a_dash_is_rejected(url: str) -> None:
    with pytest.raises(PermanentError):
        validate_git_url(url, allow_file=True)


@given(st.text())
def test_validation_raises_only_permanent_errors(url: str) -> None:
    try:
        validate_git_url(url, allow_file=True)
    except PermanentError as error:
        assert error.reason is Reason.INVALID_GIT_URL


# --- branch names ---


@pytest.mark.parametrize("branch", ["main", "release/2025", "feature-x", "v1.2"])
def test_plain_branch_names_are_accepted(branch: str) -> None:
    validate_branch(branch)


@pytest.mark.parametrize(
    "branch",
    ["", "-main", "--upload-pack=x", "a..b", "a b", "x~1", "x^", "a:b", "x.lock", "/x", "x/", "@"],
)
def test_odd_branch_names_are_rejected(branch: str) -> None:
    with pytest.raises(PermanentError) as caught:
        validate_branch(branch)
    assert caught.value.reason is Reason.INVALID_SPEC


# --- confine_path ---

ROOT = Path("/cache/clone")


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("k8s/overlays/prod", ROOT / "k8s/overlays/prod"),
        ("k8s/overlays/prod/kustomization.yaml", ROOT / "k8s/overlays/prod/kustomization.yaml"),
        ("./k8s/./overlays/prod/", ROOT / "k8s/overlays/prod"),
        ("a..b/c", ROOT / "a..b/c"),  # dots inside a name are fine
        (".github/workflows", ROOT / ".github/workflows"),
    ],
)
def test_relative_paths_join_the_root(relative: str, expected: Path) -> None:
    assert confine_path(ROOT, relative) == expected


@pytest.mark.parametrize(
    "relative",
    [
        "",
        "   ",
        ".",
        "./",
        "/etc/passwd",
        "../outside",
        "k8s/../../outside",
        "k8s/overlays/..",
        "..",
        ".git/hooks/pre-commit",
        ".GIT/config",
        "a\\..\\b",
        "a\x00b",
    ],
)
def test_paths_that_could_leave_the_clone_are_rejected(relative: str) -> None:
    with pytest.raises(PermanentError) as caught:
        confine_path(ROOT, relative)
    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert not caught.value.retryable


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "k8s"]), min_size=1, max_size=6))
def test_a_confined_path_never_leaves_the_root(parts: list[str]) -> None:
    relative = "/".join(parts)
    try:
        joined = confine_path(ROOT, relative)
    except PermanentError:
        return
    assert joined.is_relative_to(ROOT)
    assert ".." not in joined.parts


# --- redact ---


def test_redact_replaces_each_secret() -> None:
    text = "auth failed for robot with s3cret and tok-123"
    assert redact(text, ["s3cret", "tok-123"]) == "auth failed for robot with *** and ***"


def test_redact_hides_a_longer_secret_whole_even_when_it_contains_a_shorter_one() -> None:
    assert redact("value abcdef end", ["abc", "abcdef"]) == "value *** end"


def test_redact_ignores_empty_secrets() -> None:
    assert redact("nothing to hide", ["", ""]) == "nothing to hide"


def test_redact_hides_userinfo_in_urls() -> None:
    text = "fatal: unable to access 'https://robot:tok3n@git.example.com/repo.git/'"
    redacted = redact(text, [])
    assert "tok3n" not in redacted
    assert "https://***@git.example.com/repo.git/" in redacted


def test_redact_keeps_a_user_only_url() -> None:
    assert redact("ssh://git@host/repo", []) == "ssh://git@host/repo"


def test_redact_hides_a_private_key_and_each_of_its_lines() -> None:
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
        "QyNTUxOQAAACBQ0xWcXbXyJ3Nuwl9Ayj5lc1A9kOb4iqRDrRQk6t0T4gAAAJi1cO6htXDu\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    whole = redact(f"before {key} after", [key])
    assert "b3BlbnNz" not in whole
    partial = redact(
        "echoed: QyNTUxOQAAACBQ0xWcXbXyJ3Nuwl9Ayj5lc1A9kOb4iqRDrRQk6t0T4gAAAJi1cO6htXDu", [key]
    )
    assert "QyNTUx" not in partial


@given(st.text(min_size=1), st.text(), st.text())
def test_redact_never_leaves_the_secret(secret: str, before: str, after: str) -> None:
    # the mask is opaque: no piece between masks may still hold the secret
    pieces = redact(before + secret + after, [secret]).split("***")
    assert all(secret not in piece for piece in pieces)


# --- trailers ---

MESSAGE = """Promote tvhub-prod to v20250819-f3b8541

Previous: v20250812-a1b2c3d
Reason: color button fix, checked in dev

Promotion: tvhub/tvhub-prod-v20250819-f3b8541
Promotion-UID: 0b6c-uid
Promotion-Generation: 3
Requested-By: alice
"""


def test_trailer_block_reads_the_last_paragraph() -> None:
    assert trailer_block(MESSAGE) == [
        ("Promotion", "tvhub/tvhub-prod-v20250819-f3b8541"),
        ("Promotion-UID", "0b6c-uid"),
        ("Promotion-Generation", "3"),
        ("Requested-By", "alice"),
    ]


def test_has_trailers_needs_every_pair() -> None:
    assert has_trailers(MESSAGE, {"Promotion-UID": "0b6c-uid", "Promotion-Generation": "3"})
    assert has_trailers(MESSAGE, {"promotion-uid": "0b6c-uid"})  # keys ignore case
    assert not has_trailers(MESSAGE, {"Promotion-UID": "0b6c-uid", "Promotion-Generation": "4"})
    assert not has_trailers(MESSAGE, {"Promotion-UID": "0b6c"})


def test_lines_in_the_body_are_not_trailers() -> None:
    # A user-written reason quoting a trailer must not look like proof of a promotion.
    spoof = "Subject\n\nPromotion-UID: victim\nsee above\n\nPromotion-UID: mine\n"
    assert not has_trailers(spoof, {"Promotion-UID": "victim"})
    assert has_trailers(spoof, {"Promotion-UID": "mine"})


def test_a_subject_alone_has_no_trailers() -> None:
    assert trailer_block("Promotion-UID: x") == []
