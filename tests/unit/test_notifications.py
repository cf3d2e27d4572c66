"""What a notification says: the JSON body, the Slack text, the diff link."""

from __future__ import annotations

import json

from promotion_operator.domain.models import NotificationFormat
from promotion_operator.domain.notifications import Notice, body, diff_link

NOTICE = Notice(
    event="Succeeded",
    namespace="shop",
    promotion="p1",
    environment="prod",
    from_version="v20250101-aaaaaaa",
    to_version="v20250819-f3b8541",
    who="alice",
    why="button fix <@channel>",
    commit="9f2c4e1aa5b6c7d8e9f00112233445566778899a",
    reason="Promoted",
    message="prod promoted to v20250819-f3b8541 in 9f2c4e1aa5b6",
)
TEMPLATE = "https://git.example/team/gitops/-/commit/{commit}?env={environment}&from={from}"


def test_the_json_body_has_every_field_and_the_diff_link() -> None:
    document = json.loads(body(NOTICE, NotificationFormat.JSON, TEMPLATE))
    assert document == {
        "event": "Succeeded",
        "namespace": "shop",
        "promotion": "p1",
        "environment": "prod",
        "from": "v20250101-aaaaaaa",
        "to": "v20250819-f3b8541",
        "who": "alice",
        "why": "button fix <@channel>",
        "commit": NOTICE.commit,
        "reason": "Promoted",
        "message": NOTICE.message,
        "diffUrl": f"https://git.example/team/gitops/-/commit/{NOTICE.commit}"
        "?env=prod&from=v20250101-aaaaaaa",
    }


def test_no_template_or_no_commit_means_no_link() -> None:
    assert diff_link(None, NOTICE) is None
    failed = Notice(**{**NOTICE.__dict__, "event": "Failed", "commit": None})
    assert diff_link(TEMPLATE, failed) is None
    assert json.loads(body(failed, NotificationFormat.JSON, TEMPLATE))["diffUrl"] is None


def test_the_template_is_not_str_format() -> None:
    # a tenant's template must not reach into objects: only the named placeholders change
    sneaky = "https://x/{commit.__class__}/{0}/{shortCommit}"
    assert diff_link(sneaky, NOTICE) == "https://x/{commit.__class__}/{0}/9f2c4e1"


def test_the_slack_body_is_one_text_with_user_text_escaped() -> None:
    document = json.loads(body(NOTICE, NotificationFormat.SLACK, TEMPLATE))
    assert set(document) == {"text"}
    text = document["text"]
    assert "*prod* (shop): v20250101-aaaaaaa → v20250819-f3b8541 *Succeeded* (Promoted)" in text
    assert "by alice: button fix &lt;@channel&gt;" in text  # no mention injected
    assert f"commit <https://git.example/team/gitops/-/commit/{NOTICE.commit}" in text


def test_long_user_text_is_cut() -> None:
    long = Notice(**{**NOTICE.__dict__, "why": "x" * 5000})
    assert len(json.loads(body(long, NotificationFormat.JSON, None))["why"]) == 1024
