"""Runs the Autobahn WebSocket cases against a server under test and writes one line per case.

kosoku (PyPI) is the client: it drives Autobahn's own case files on Python 3. Its command
line does not read Autobahn's JSON config yet, so this driver reads `cases` and
`exclude-cases` from fuzzingclient.json itself and calls kosoku's Python API.

Writes to OUTDIR:
  results.txt   `case-id behavior behaviorClose`, sorted by case id; spaces in Autobahn's
                labels become underscores ("WRONG CODE" -> "WRONG_CODE") so each line has
                exactly three fields;
  failures.txt  what each case that did not pass expected, received and concluded;
  reports/      Autobahn's usual HTML and JSON reports (index.html to browse).

Exit status: 0 when every selected case produced a result (whatever the verdicts: comparing
them is .ci/autobahn.sh's job), 2 when the run itself broke or timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from kosoku import FailureError, run_fuzzingclient

# The verdicts Autobahn counts as a pass, for behavior and behaviorClose alike.
PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})


def sort_key(case_id: str) -> list[int]:
    """Numeric order: 1.1.10 after 1.1.9."""
    return [int(part) for part in case_id.split(".")]


def label(value: str) -> str:
    return value.replace(" ", "_")


def load_config(path: Path) -> tuple[list[str], list[str]]:
    config = json.loads(path.read_text())
    unknown = set(config) - {"cases", "exclude-cases"}
    if unknown:
        raise SystemExit(f"{path}: unsupported keys {sorted(unknown)}")
    return list(config.get("cases", ["*"])), list(config.get("exclude-cases", []))


async def run(url: str, cases: list[str], exclude: list[str], timeout: float) -> list[Any]:
    try:
        # One case at a time: the 9.x cases time round trips and should not compete.
        return await asyncio.wait_for(
            run_fuzzingclient(url, cases, exclude, concurrency=1), timeout
        )
    except FailureError as failure:
        # Raised when some case did not pass; it carries every case's result all the same.
        return list(failure.results)


def describe(result: Any) -> str:
    lines = [
        f"case {result.case_id}: behavior={result.behavior.value}"
        f" behaviorClose={result.behavior_close.value}",
        f"  description: {' '.join(result.description.split())}",
        f"  expectation: {' '.join(result.expectation.split())}",
        f"  result:      {result.result}",
        f"  resultClose: {result.result_close}",
        f"  expected:    {str(result.expected)[:600]}",
        f"  received:    {str(result.received)[:600]}",
        f"  close:       remote code {result.remote_close_code}"
        f" reason {result.remote_close_reason!r}, local code {result.local_close_code},"
        f" clean {result.was_clean} ({result.was_not_clean_reason})",
    ]
    return "\n".join(lines)


def write_reports(results: list[Any], outdir: Path) -> None:
    # Autobahn-style HTML for a person digging into a failure. This helper is not part of
    # kosoku's documented API: the version is pinned, and losing the HTML must not lose the
    # verdicts, so any failure here is only reported.
    try:
        from kosoku._report import write_reports as kosoku_reports

        kosoku_reports(results, str(outdir))
    except Exception as e:  # noqa: BLE001
        print(f"autobahn: HTML reports not written: {e!r}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="server under test, e.g. ws://127.0.0.1:9001")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole run")
    args = parser.parse_args()

    cases, exclude = load_config(args.config)
    try:
        results = asyncio.run(run(args.url, cases, exclude, args.timeout))
    except asyncio.TimeoutError:
        print(f"autobahn: the run did not finish within {args.timeout:.0f} s", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - whatever broke, the script must say so and fail
        print(f"autobahn: the run failed: {e!r}", file=sys.stderr)
        return 2
    if not results:
        print("autobahn: no case ran", file=sys.stderr)
        return 2

    results.sort(key=lambda r: sort_key(r.case_id))
    args.outdir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{r.case_id} {label(r.behavior.value)} {label(r.behavior_close.value)}\n"
        for r in results
    ]
    (args.outdir / "results.txt").write_text("".join(lines))
    failing = [
        r
        for r in results
        if r.behavior.value not in PASSING or r.behavior_close.value not in PASSING
    ]
    (args.outdir / "failures.txt").write_text("".join(describe(r) + "\n\n" for r in failing))
    write_reports(results, args.outdir / "reports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
