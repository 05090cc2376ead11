"""The pure decisions of core/followups.py and core/hooks.py, as tables: which run ends fire which
hook and tell which webhook, what a recorded url keeps, and the retry rules of a delivery. (The
end-to-end proofs are in test_hooks.py and test_notify.py.)"""

from __future__ import annotations

import pytest

from petit.core.followups import (
    hook_environment,
    hooks_fired,
    is_retryable_status,
    notify_event,
    retry_delay,
    webhook_body,
)
from petit.core.hooks import (
    Hook,
    HookEvent,
    NotifyOn,
    Webhook,
    WebhookFormat,
    expand_webhook,
    safe_url,
)
from petit.core.model import Run, RunStatus, Task, TaskRun, TaskStatus

ALL_HOOKS = tuple(Hook(event, Task(event.log_name, event.log_name)) for event in HookEvent)


def _run(status: RunStatus, started: bool = True) -> Run:
    return Run(
        id="j-1",
        job_id="j",
        seq=1,
        status=status,
        started_at=10 if started else None,
        ended_at=30,
        duration_ms=20 if started else None,
        error="failed tasks: b" if status is RunStatus.FAILED else None,
        tasks=[
            TaskRun("a", "j-1", TaskStatus.COMPLETED),
            TaskRun("b", "j-1", TaskStatus.FAILED),
        ],
    )


@pytest.mark.parametrize(
    "status, started, fired",
    [
        (RunStatus.COMPLETED, True, ["on_success", "on_finish"]),
        (RunStatus.FAILED, True, ["on_failure", "on_finish"]),
        (RunStatus.CANCELLED, True, ["on_finish"]),
        (RunStatus.CANCELLED, False, []),  # a queued run cancelled before it started
        (RunStatus.INTERRUPTED, True, []),  # petit is stopping
    ],
    ids=["completed", "failed", "cancelled", "cancelled-queued", "interrupted"],
)
def test_which_hooks_a_run_end_fires(status, started, fired):
    assert [h.event.value for h in hooks_fired(ALL_HOOKS, _run(status, started))] == fired


@pytest.mark.parametrize(
    "on, status, told",
    [
        ((NotifyOn.FAILURE,), RunStatus.FAILED, "failure"),
        ((NotifyOn.FAILURE,), RunStatus.COMPLETED, None),
        ((NotifyOn.SUCCESS,), RunStatus.COMPLETED, "success"),
        ((NotifyOn.FINISH,), RunStatus.COMPLETED, "finish"),
        ((NotifyOn.FINISH, NotifyOn.FAILURE), RunStatus.FAILED, "failure"),
        ((NotifyOn.FINISH,), RunStatus.CANCELLED, "finish"),
        ((NotifyOn.FAILURE, NotifyOn.SUCCESS), RunStatus.CANCELLED, None),
        ((NotifyOn.FINISH,), RunStatus.INTERRUPTED, None),
    ],
)
def test_which_webhooks_a_run_end_tells(on, status, told):
    event = notify_event(Webhook("http://h/x", on), _run(status))
    assert (event.value if event else None) == told


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://user:pw@hooks.example.com/a/b?token=x#frag", "https://hooks.example.com/a/b"),
        ("http://127.0.0.1:8080/in", "http://127.0.0.1:8080/in"),
        ("http://[::1]:9/x?k=v", "http://[::1]:9/x"),
    ],
)
def test_a_recorded_url_has_no_credentials_nor_query(url, shown):
    assert safe_url(url) == shown


def test_retry_rules_of_a_delivery():
    assert [retry_delay(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 8.0, 30.0]
    assert [is_retryable_status(code) for code in (500, 503, 429, 404, 400, 301)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_a_webhook_takes_variables_from_the_environment_when_sent():
    hook = Webhook(
        "https://hooks.slack.com/services/${SLACK_PATH}",
        headers={"Authorization": "Bearer ${TOKEN}", "X-Plain": "plain"},
    )
    sent = expand_webhook(hook, {"TOKEN": "t0k", "SLACK_PATH": "T0/B0/x"})
    assert sent.problem is None
    assert sent.url == "https://hooks.slack.com/services/T0/B0/x"
    assert sent.headers == {"Authorization": "Bearer t0k", "X-Plain": "plain"}
    # shown, recorded and logged unexpanded
    assert hook.safe_url == "https://hooks.slack.com/services/${SLACK_PATH}"


SECRET = "s3cret"


@pytest.mark.parametrize(
    "environ, problem",
    [
        ({"SLACK_PATH": "x"}, "header Authorization: environment variable TOKEN is not set"),
        (
            {"SLACK_PATH": "x", "TOKEN": f"{SECRET}\r\nX-Evil: 1"},
            "header Authorization: environment variable TOKEN holds control characters",
        ),
        (
            {"SLACK_PATH": "x", "TOKEN": f"{SECRET}\0"},
            "header Authorization: environment variable TOKEN holds control characters",
        ),
        (
            {"SLACK_PATH": "x", "TOKEN": f"{SECRET}\u20ac"},
            "header Authorization: environment variable TOKEN holds characters beyond latin-1",
        ),
        (
            {"SLACK_PATH": f"{SECRET} x", "TOKEN": "t"},
            "url: environment variable SLACK_PATH holds spaces, control characters",
        ),
        (
            {"TOKEN": "t", "HOST": f"user:{SECRET}@evil.example"},
            "url: its environment variables put credentials (@) in its host",
        ),
    ],
    ids=["unset", "crlf", "nul", "non-latin-1", "url-space", "url-userinfo"],
)
def test_a_value_that_cannot_be_sent_is_named_never_quoted(environ, problem):
    hook = Webhook(
        "https://h.example/${SLACK_PATH}" if "HOST" not in environ else "https://${HOST}/x",
        headers={"Authorization": "Bearer ${TOKEN}"},
    )
    sent = expand_webhook(hook, environ)
    assert sent.problem.startswith(problem) and sent.url == "" and sent.headers == {}
    assert SECRET not in sent.problem


def test_the_environment_of_a_hook():
    env = hook_environment(_run(RunStatus.FAILED), HookEvent.ON_FAILURE)
    assert env == {
        "PETIT_RUN_ID": "j-1",
        "PETIT_RUN_STATUS": "failed",
        "PETIT_RUN_ERROR": "failed tasks: b",
        "PETIT_JOB_ID": "j",
        "PETIT_FAILED_TASKS": "b",
        "PETIT_HOOK": "on_failure",
    }


def test_a_slack_body_is_one_line_with_the_link():
    hook = Webhook("http://h/x", format=WebhookFormat.SLACK)
    body = webhook_body(hook, _run(RunStatus.FAILED), NotifyOn.FAILURE, "https://p.example", "1")
    assert body == {
        "text": "petit: run j-1 of job j failed in 0.0s: failed tasks: b "
        "<https://p.example/runs/j-1|open>"
    }
    plain = webhook_body(hook, _run(RunStatus.COMPLETED), NotifyOn.SUCCESS, None, "1")
    assert plain == {"text": "petit: run j-1 of job j completed in 0.0s"}
