"""`petit ctl`: the control-socket client, with human output by default and --json for scripts."""

from __future__ import annotations

import json
import time

from ..errors import PetitError
from ..ipc.control import call_socket

VERBS = ("status", "pause", "resume", "reload", "shutdown", "trigger", "cancel")


def run_ctl(args: dict, socket: str) -> int:
    verb = next(v for v in VERBS if args.get(v))
    call_args = {}
    if verb == "trigger":
        call_args = {"job_id": args["JOB_ID"]}
    elif verb == "cancel":
        call_args = {"run_id": args["RUN_ID"]}
    try:
        result = call_socket(socket, verb, call_args, timeout=30.0 if verb == "cancel" else 10.0)
    except PetitError as exc:
        if args.get("--json"):  # scripts read the code from stdout; cli prints the message
            print(json.dumps(exc.to_wire(), indent=2))
        raise
    print(json.dumps(result, indent=2) if args.get("--json") else _human(verb, result))
    return 0


def _human(verb: str, result: dict) -> str:
    if verb == "status":
        return _status_text(result)
    if verb == "trigger":
        return f"triggered job {result['job_id']}: run {result['run_id']}"
    if verb == "cancel":
        return f"run {result['run_id']} {result['status']}"
    if verb == "reload":
        return (
            f"reloaded {result['jobs']} job(s); added: {', '.join(result['added']) or 'none'}; "
            f"removed: {', '.join(result['removed']) or 'none'}"
        )
    return result.get("message", "ok")


def _status_text(status: dict) -> str:
    sup = status["supervisor"]
    lines = [
        f"petit supervisor pid {sup['pid']}, up {sup['uptime_secs']:.0f}s, db {sup['db']}",
        f"jobs from {sup['jobs_dir']}" + ("  (shutting down)" if sup["shutting_down"] else ""),
    ]
    for child in status["children"]:
        up = f"up {child['uptime_secs']:.0f}s" if child["uptime_secs"] is not None else "down"
        lines.append(
            f"  {child['name']:<10} {child['state']:<9} pid {child['pid'] or '-'}  {up}, "
            f"{child['restarts']} restart(s)"
        )
    scheduler = status.get("scheduler")
    if scheduler is None:
        lines.append("scheduler: not answering")
        return "\n".join(lines)
    lines.append(
        f"scheduler: {scheduler['state']}, {scheduler['jobs']} job(s), "
        f"{len(scheduler['running_runs'])} run(s) in flight"
    )
    for run in scheduler["running_runs"]:
        lines.append(f"  running {run['run_id']} ({run['trigger']})")
    now_ms = time.time() * 1000
    for job_id, due in scheduler["next_fires"].items():
        lines.append(f"  next {job_id} in {max(0.0, (due - now_ms) / 1000):.1f}s")
    return "\n".join(lines)
