"""Task outputs: the parser (core/outputs.py) as tables, the loader's refusal of task ids that
name the same variables, the local runner's PETIT_OUTPUT file (private, bounded, always
removed), and the engine handing the values to every task downstream (real processes, a real
Store in tmp_path)."""

from __future__ import annotations

import os
import subprocess

import pytest
from test_config import job, only_error
from test_engine_local import execute, make_job, sh

from petit.core import outputs as outputs_module
from petit.core.model import RunStatus, TaskStatus
from petit.core.outputs import (
    OUTPUT_LIMIT,
    RECEIVE_LIMIT,
    RUN_LIMIT,
    OutputError,
    RunOutputs,
    output_environment,
    parse_outputs,
    task_part,
)
from petit.core.retry import RetryPolicy
from petit.execution.runners.base import AttemptSpec
from petit.execution.runners.local import LocalRunner
from petit.storage.store import Store


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "petit.db"))


@pytest.fixture
def stamps(tmp_path) -> str:
    (tmp_path / "stamps").mkdir()
    return str(tmp_path / "stamps")


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"", {}),
        (b"version=1.2\n", {"version": "1.2"}),
        (b"a=1\nb=x=y\nc=\n", {"a": "1", "b": "x=y", "c": ""}),
        (b"a=1\n\n   \na=2", {"a": "2"}),
        (
            b"note<<EOF\nline 1\n\nline=3\nEOF\nafter=yes\n",
            {"note": "line 1\n\nline=3", "after": "yes"},
        ),
        (b"empty<<END\nEND\n", {"empty": ""}),
        (b"a=b<<c\n", {"a": "b<<c"}),
        (b"crlf=1\r\nh<<E\r\nx\r\nE\r\n", {"crlf": "1", "h": "x"}),
        ("name=caf\u00e9 \u2603\n".encode(), {"name": "caf\u00e9 \u2603"}),
        (b"_k9=$(reboot)\n", {"_k9": "$(reboot)"}),
    ],
    ids=[
        "empty-file",
        "one-pair",
        "equals-in-value-and-empty-value",
        "last-value-wins-blank-lines-skipped",
        "heredoc",
        "empty-heredoc",
        "equals-before-markers-is-a-pair",
        "crlf-lines",
        "utf-8",
        "values-are-data",
    ],
)
def test_parse_outputs(text, expected):
    assert parse_outputs(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        (
            b"a=1\nb=2\njust words\n",
            "PETIT_OUTPUT line 3: expected key=value or key<<DELIMITER, got 'just words'",
        ),
        (
            b"9lives=1\n",
            "PETIT_OUTPUT line 1: '9lives' is not a valid key: expected letters, "
            "digits and _, not starting with a digit",
        ),
        (b"a-b=1\n", "PETIT_OUTPUT line 1: 'a-b' is not a valid key"),
        (b"=1\n", "PETIT_OUTPUT line 1: '' is not a valid key"),
        (
            b"ok=1\nnote<<EOF\nnever closed\n",
            "PETIT_OUTPUT line 2: note<<'EOF' is never closed by a line 'EOF'",
        ),
        (b"note<<\nx\n", "PETIT_OUTPUT line 1: note<< needs a delimiter"),
        (b"a=1\nb=\xff\n", "PETIT_OUTPUT line 2: not valid UTF-8"),
        (b"a=1\nb=x\x00y\n", "PETIT_OUTPUT line 2: contains a NUL byte"),
        (b"a=" + b"x" * OUTPUT_LIMIT, f"PETIT_OUTPUT: more than the limit of {OUTPUT_LIMIT} bytes"),
    ],
    ids=[
        "not-a-pair-names-the-line",
        "key-starts-with-a-digit",
        "key-with-a-dash",
        "empty-key",
        "unterminated-heredoc-names-its-start",
        "heredoc-without-delimiter",
        "invalid-utf-8",
        "nul-byte",
        "over-64-kib",
    ],
)
def test_parse_outputs_errors(text, message):
    with pytest.raises(OutputError) as info:
        parse_outputs(text)
    assert str(info.value).startswith(message), str(info.value)


def test_output_variables_name_task_and_key():
    assert task_part("build.linux-x86") == "build_linux_x86"
    assert output_environment({"a-b": {"version": "1"}, "c": {"K": "v"}}) == {
        "PETIT_OUT_a_b_version": "1",
        "PETIT_OUT_c_K": "v",
    }


def test_two_pairs_that_name_one_variable_are_refused_whatever_their_order():
    for first, second in [("a", "a_b"), ("a_b", "a")]:
        given = {first: {"b_c" if first == "a" else "c": "1"}}
        given[second] = {"b_c" if second == "a" else "c": "2"}
        with pytest.raises(OutputError) as info:
            output_environment(given)
        message = str(info.value)
        assert message == (
            "PETIT_OUT_a_b_c would be both task 'a' key 'b_c' and task 'a_b' key 'c': rename a "
            "key (or a task)"
        )


def test_what_a_task_receives_is_bounded_in_all():
    # names, values, "=" and NUL: what the kernel counts against ARG_MAX
    value = "x" * (RECEIVE_LIMIT // 4)
    names = {f"t{n}": {"k": value} for n in range(3)}
    output_environment(names)  # 3/4 of the limit
    names["t3"] = {"k": value}
    total = sum(len(f"PETIT_OUT_t{n}_k") + len(value) + 2 for n in range(4))
    with pytest.raises(OutputError) as info:
        output_environment(names)
    assert str(info.value) == (
        f"the outputs of its upstream tasks total {total} bytes, over the 1 MiB a task may receive"
    )


def test_what_a_run_stores_is_bounded_in_all():
    stored = RunOutputs()
    half = {"k": "x" * (RUN_LIMIT // 2 - 1)}
    stored.add("a", half)
    stored.check(half)
    stored.add("b", half)
    assert stored.size == RUN_LIMIT and stored.of({"b", "c"}) == {"b": half}
    with pytest.raises(OutputError) as info:
        stored.check({"k": "x"})
    assert str(info.value) == (
        f"PETIT_OUTPUT: these outputs would bring the run's to {RUN_LIMIT + 2} bytes, over "
        "the 2 MiB a run may store"
    )


def test_task_ids_that_name_the_same_variables_are_refused(tmp_path):
    tasks = [{"id": "a-b", "command": "true"}, {"id": "a.b", "command": "true"}]
    error, path = only_error(tmp_path, job(tasks=tasks))
    assert error == (
        f"{path}: job 'demo': task 'a.b': its id and task 'a-b' both name outputs "
        "PETIT_OUT_a_b_<KEY>: rename one"
    )


# -- the local runner's file ----------------------------------------------------------------------


def attempt(tmp_path, script: str, timeout: float | None = None, cwd: str | None = None):
    spec = AttemptSpec(
        job_id="j",
        run_id="j-1",
        task_id="t",
        attempt=1,
        argv=("/bin/sh", "-c", script),
        env={"PETIT_JOB_ID": "j"},
        cwd=cwd,
        timeout_secs=timeout,
    )
    return LocalRunner().start(spec)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The runner's temp dir, to prove nothing is left in it."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def leftovers(temp) -> list[str]:
    """The files left in the runner's folders (one per process, kept while it lives)."""
    return [str(path) for path in temp.rglob("*") if not path.is_dir()]


def test_each_attempt_gets_a_private_file_removed_after_reading(tmp_path, private_tmp):
    info = tmp_path / "info"
    script = (
        f'stat -c %a "$PETIT_OUTPUT" "$(dirname "$PETIT_OUTPUT")" > {info}; '
        f'echo "$PETIT_OUTPUT" >> {info}; '
        'echo k=v >> "$PETIT_OUTPUT"'
    )
    result = attempt(tmp_path, script).collect()
    assert result.exit_code == 0 and result.output == b"k=v\n"
    file_mode, folder_mode, path = info.read_text().split()
    assert (file_mode, folder_mode) == ("600", "700")
    assert os.path.dirname(os.path.dirname(path)) == str(private_tmp)
    assert leftovers(private_tmp) == []


def test_the_read_is_bounded_to_one_byte_past_the_limit(tmp_path, private_tmp):
    result = attempt(tmp_path, f'head -c {OUTPUT_LIMIT * 3} /dev/zero > "$PETIT_OUTPUT"').collect()
    assert len(result.output) == OUTPUT_LIMIT + 1
    assert leftovers(private_tmp) == []


@pytest.mark.parametrize(
    "script, timeout, cancel, cwd",
    [
        ('echo a=1 > "$PETIT_OUTPUT"; sleep 30', 0.3, False, None),
        ('echo a=1 > "$PETIT_OUTPUT"; sleep 30', None, True, None),
        ("true", None, False, "/nonexistent-dir"),
        ('rm "$PETIT_OUTPUT"; mkfifo "$PETIT_OUTPUT"', None, False, None),
    ],
    ids=["timeout", "cancel", "start-failure", "replaced-by-a-fifo"],
)
def test_no_file_is_left_behind(tmp_path, private_tmp, script, timeout, cancel, cwd):
    handle = attempt(tmp_path, script, timeout, cwd)
    if cancel:
        handle.cancel()
    result = handle.collect()
    assert result.output is None or result.error is not None
    assert leftovers(private_tmp) == []


def test_an_unusable_temp_dir_is_a_failed_attempt_the_retry_policy_decides(
    store, marker, stamps, monkeypatch
):
    import tempfile

    # a path under a regular file: no directory can be made there, not even by root
    monkeypatch.setattr(tempfile, "tempdir", "/etc/hostname/x")
    job_ = make_job(marker, stamps, sh("a", 'touch "$STAMPS/a"', retry=RetryPolicy(1, 0.0)))
    run = execute(store, job_)
    a = run.task("a")
    assert a.status is TaskStatus.FAILED and a.attempts == 2, a.attempt_history
    error = "cannot create the PETIT_OUTPUT file: Not a directory"
    assert a.error == error and [entry["error"] for entry in a.attempt_history] == [error] * 2
    assert a.exit_code is None and a.handle is None
    assert not os.path.exists(os.path.join(stamps, "a"))


# -- through the engine ---------------------------------------------------------------------------


def test_outputs_reach_every_task_downstream(store, marker, stamps):
    write = (
        'echo version=1.2 >> "$PETIT_OUTPUT"; '
        'printf "notes<<EOF\\nx\\ny\\nEOF\\n" >> "$PETIT_OUTPUT"'
    )
    seen = 'printf "%s|%s" "$PETIT_OUT_a_version" "$PETIT_OUT_a_notes" > "$STAMPS/$PETIT_TASK_ID"'
    job_ = make_job(
        marker,
        stamps,
        sh("a", write),
        sh("b", seen, depends_on=("a",)),
        sh("c", seen, depends_on=("b",)),
        sh("lone", seen),  # not downstream of a
    )
    run = execute(store, job_)
    assert run.status is RunStatus.COMPLETED, [(t.task_id, t.error) for t in run.tasks]
    assert run.task("a").outputs == {"version": "1.2", "notes": "x\ny"}
    assert run.task("b").outputs == {}
    for task_id in ("b", "c"):
        assert open(os.path.join(stamps, task_id)).read() == "1.2|x\ny"
    assert open(os.path.join(stamps, "lone")).read() == "|"
    stored = store.get_run(run.id)
    assert stored.task("a").outputs == {"version": "1.2", "notes": "x\ny"}


def test_malformed_output_fails_the_attempt_and_the_retry_policy_decides(store, marker, stamps):
    script = (
        'n=$(cat "$STAMPS/n" 2>/dev/null || echo 0); echo $((n + 1)) > "$STAMPS/n"; '
        'if [ "$n" = 0 ]; then echo "ok=1" > "$PETIT_OUTPUT"; echo oops >> "$PETIT_OUTPUT"; '
        'else echo "ok=2" > "$PETIT_OUTPUT"; fi'
    )
    job_ = make_job(marker, stamps, sh("a", script, retry=RetryPolicy(1, 0.0)))
    run = execute(store, job_)
    a = run.task("a")
    assert a.status is TaskStatus.COMPLETED and a.attempts == 2 and a.outputs == {"ok": "2"}
    first = a.attempt_history[0]
    assert first["exit_code"] == 0
    assert first["error"].startswith("PETIT_OUTPUT line 2: expected key=value")


def test_output_over_the_limit_fails_the_task(store, marker, stamps):
    job_ = make_job(
        marker,
        stamps,
        sh("a", f'head -c {OUTPUT_LIMIT + 1024} /dev/zero | tr "\\0" x > "$PETIT_OUTPUT"'),
    )
    run = execute(store, job_)
    a = run.task("a")
    assert a.status is TaskStatus.FAILED and a.exit_code == 0 and a.outputs is None
    assert a.error == f"PETIT_OUTPUT: more than the limit of {OUTPUT_LIMIT} bytes"


def test_an_ambiguous_variable_fails_the_downstream_task_before_it_starts(store, marker, stamps):
    started = 'touch "$STAMPS/$PETIT_TASK_ID"'
    job_ = make_job(
        marker,
        stamps,
        sh("a", 'echo b_c=1 > "$PETIT_OUTPUT"'),
        sh("a_b", 'echo c=2 > "$PETIT_OUTPUT"'),
        sh("down", started, depends_on=("a", "a_b"), retry=RetryPolicy(2, 0.0)),
        sh("only_a", started, depends_on=("a",)),
    )
    run = execute(store, job_)
    down = run.task("down")
    assert down.status is TaskStatus.FAILED and down.attempts == 1  # no retry could help
    assert down.exit_code is None and down.handle is None
    assert down.error.startswith("PETIT_OUT_a_b_c would be both task ")
    assert "task 'a' key 'b_c'" in down.error and "task 'a_b' key 'c'" in down.error
    assert not os.path.exists(os.path.join(stamps, "down"))
    assert os.path.exists(os.path.join(stamps, "only_a"))  # one upstream task: no ambiguity
    assert run.status is RunStatus.FAILED


def test_too_much_upstream_output_fails_the_task_before_it_starts(
    store, marker, stamps, monkeypatch
):
    monkeypatch.setattr(outputs_module, "RECEIVE_LIMIT", 100)
    write = 'echo k=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx > "$PETIT_OUTPUT"'
    job_ = make_job(
        marker,
        stamps,
        sh("a", write),
        sh("b", write),
        sh("one", 'touch "$STAMPS/one"', depends_on=("a",)),
        sh("both", 'touch "$STAMPS/both"', depends_on=("a", "b")),
    )
    run = execute(store, job_)
    both = run.task("both")
    assert both.status is TaskStatus.FAILED and both.attempts == 1
    assert both.error == (
        "the outputs of its upstream tasks total 114 bytes, over the 100 bytes a task may receive"
    )
    assert not os.path.exists(os.path.join(stamps, "both"))
    assert run.task("one").status is TaskStatus.COMPLETED


def test_outputs_over_what_a_run_may_store_fail_the_task(store, marker, stamps, monkeypatch):
    monkeypatch.setattr(outputs_module, "RUN_LIMIT", 60)
    write = 'echo k=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx > "$PETIT_OUTPUT"'
    job_ = make_job(marker, stamps, sh("a", write), sh("b", write, depends_on=("a",)))
    run = execute(store, job_)
    a, b = run.task("a"), run.task("b")
    assert a.status is TaskStatus.COMPLETED and len(a.outputs["k"]) == 42
    assert b.status is TaskStatus.FAILED and b.exit_code == 0 and b.outputs is None
    assert b.error.startswith("PETIT_OUTPUT: these outputs would bring the run's to 86 bytes")


def test_the_folder_of_a_dead_petit_goes_and_a_removed_folder_is_made_again(tmp_path, private_tmp):
    # a pid that is surely not running: a child that already exited and was reaped
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = private_tmp / f"petit-output-{gone.pid}-abc"
    dead.mkdir()
    (dead / "left-by-a-kill").write_text("x")
    alive = private_tmp / f"petit-output-{os.getpid()}-other"  # a live process's: kept
    alive.mkdir()
    assert attempt(tmp_path, 'echo a=1 > "$PETIT_OUTPUT"').collect().output == b"a=1\n"
    assert not dead.exists() and alive.exists()
    (ours,) = [p for p in private_tmp.iterdir() if p != alive]
    ours.rmdir()  # a cleaner of /tmp took it while petit ran
    assert attempt(tmp_path, 'echo b=2 > "$PETIT_OUTPUT"').collect().output == b"b=2\n"
    assert leftovers(private_tmp) == []
