"""What a promotion notification says, pure: the notice, the diff link and the two bodies.

The lifecycle builds a `Notice` when a generation ends (Succeeded, Failed, Superseded),
without I/O; the sender (`promotion_operator.notify`) resolves where it goes and POSTs the
body built here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from promotion_operator.domain.models import NotificationFormat

# A notice is small; what a tenant controls in it (a reason, a message) is cut to this.
_MAX_TEXT = 1024


@dataclass(frozen=True)
class Notice:
    """One ended promotion, as a notification tells it."""

    event: str  # the phase: Succeeded, Failed or Superseded
    namespace: str
    promotion: str
    environment: str
    from_version: str | None
    to_version: str
    who: str | None
    why: str | None
    commit: str | None
    reason: str  # the Ready reason: Promoted, WouldRollBack, TagMissing, ...
    message: str
    uid: str = ""  # of the Promotion, for an Event about the notice; never sent


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def diff_link(template: str | None, notice: Notice) -> str | None:
    """The template with its placeholders filled in; None without a template or a commit.

    Plain replacement of the named placeholders (no `str.format`: a tenant's template must
    not reach into objects), linear in the template's length.
    """
    if not template or not notice.commit:
        return None
    values = {
        "{commit}": notice.commit,
        "{shortCommit}": notice.commit[:7],
        "{environment}": notice.environment,
        "{namespace}": notice.namespace,
        "{from}": notice.from_version or "",
        "{to}": notice.to_version,
    }
    link = template
    for key, value in values.items():
        link = link.replace(key, value)
    return link


def body(notice: Notice, form: NotificationFormat, template: str | None) -> bytes:
    """The JSON body to POST: the notice's fields, or a Slack-compatible `{text}`."""
    link = diff_link(template, notice)
    if form == NotificationFormat.SLACK:
        return json.dumps({"text": slack_text(notice, link)}).encode()
    fields = {
        key: _cut(value) if isinstance(value, str) else value
        for key, value in asdict(notice).items()
        if key != "uid"
    }
    document = {
        "event": fields.pop("event"),
        "namespace": fields.pop("namespace"),
        "promotion": fields.pop("promotion"),
        "environment": fields.pop("environment"),
        "from": fields.pop("from_version"),
        "to": fields.pop("to_version"),
        **fields,
        "diffUrl": link,
    }
    return json.dumps(document).encode()


_ICONS = {"Succeeded": ":white_check_mark:", "Failed": ":x:", "Superseded": ":fast_forward:"}


def _escape(text: str) -> str:
    """Slack's three control characters, so user text cannot make links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(notice: Notice, link: str | None) -> str:
    """One Slack message: what happened to which Environment, who asked and why."""
    icon = _ICONS.get(notice.event, ":information_source:")
    head = (
        f"{icon} *{_escape(notice.environment)}* ({_escape(notice.namespace)}): "
        f"{_escape(notice.from_version or '(none)')} → {_escape(notice.to_version)} "
        f"*{notice.event}* ({notice.reason})"
    )
    lines = [head, _escape(_cut(notice.message) or "")]
    if notice.who or notice.why:
        lines.append(f"by {_escape(notice.who or 'unknown')}: {_escape(_cut(notice.why) or '')}")
    if notice.commit:
        commit = notice.commit[:12]
        linkable = link and not any(ch in link for ch in "<>|")
        lines.append(f"commit <{link}|{commit}>" if linkable else f"commit `{commit}`")
    return "\n".join(line for line in lines if line)
