"""The emulator's name filter against a pathological wildcard: seconds per request.

    .venv/bin/python bench/emulator_filter.py [--workbooks 300] [--stars 26] [--repeat 3]

An emulator in this process holds `--workbooks` workbooks (names of about 40
characters); a client signs in over HTTP and lists workbooks with
`filter=name:eq:` followed by `--stars` stars and a `!` that no name holds, the
worst case for a matcher that backtracks. While that request runs, every other
request to the emulator waits for its lock, so the figure is also how long the
emulator stands still. Prints the median and the worst of `--repeat` requests,
and the time of one `/serverInfo` sent while the filter runs.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from urllib.parse import quote

import requests

from dbt_tableau_relay.emulators.tableau import Emulator

PAT_NAME, PAT_SECRET = "bench", "bench-secret"
SIGN_IN = (
    '<tsRequest><credentials personalAccessTokenName="{name}"'
    ' personalAccessTokenSecret="{secret}"><site contentUrl="" /></credentials></tsRequest>'
)


def sign_in(url: str) -> tuple[str, str]:
    body = SIGN_IN.format(name=PAT_NAME, secret=PAT_SECRET)
    answer = requests.post(
        f"{url}/api/3.27/auth/signin", data=body, headers={"Accept": "application/json"}, timeout=60
    )
    answer.raise_for_status()
    credentials = answer.json()["credentials"]
    return credentials["token"], credentials["site"]["id"]


def timed_list(url: str, session: tuple[str, str], pattern: str) -> tuple[float, int]:
    token, site = session
    started = time.perf_counter()
    answer = requests.get(
        f"{url}/api/3.27/sites/{site}/workbooks",
        params={"filter": f"name:eq:{pattern}", "pageSize": "1000"},
        headers={"X-Tableau-Auth": token, "Accept": "application/json"},
        timeout=3600,
    )
    answer.raise_for_status()
    found = int(answer.json()["pagination"]["totalAvailable"])
    return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workbooks", type=int, default=300)
    parser.add_argument("--stars", type=int, default=26)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pattern = "*" * args.stars + "!"
    with Emulator(pat_name=PAT_NAME, pat_secret=PAT_SECRET) as emu:
        for n in range(args.workbooks):
            emu.add_workbook(f"Bench/Quarterly revenue by region, edition {n:04d}")
        token = sign_in(emu.url)
        print(f"filter=name:eq:{quote(pattern)} against {args.workbooks} workbooks")
        times = []
        for _ in range(args.repeat):
            seconds, found = timed_list(emu.url, token, pattern)
            times.append(seconds)
            print(f"  {seconds:.4f} s, {found} matched")
        print(f"median {statistics.median(times):.4f} s, worst {max(times):.4f} s")
        print(f"a /serverInfo sent meanwhile: {blocked_call(emu.url, token, pattern):.4f} s")


def blocked_call(url: str, token: tuple[str, str], pattern: str) -> float:
    """How long a cheap call takes while the pathological filter runs beside it."""
    runner = threading.Thread(target=timed_list, args=(url, token, pattern))
    runner.start()
    time.sleep(0.05)  # let the filter take the lock first
    started = time.perf_counter()
    requests.get(f"{url}/api/3.27/serverInfo", timeout=3600).raise_for_status()
    seconds = time.perf_counter() - started
    runner.join()
    return seconds


if __name__ == "__main__":
    main()
