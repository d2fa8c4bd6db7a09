"""One client of the load test: submits petitions one after another through the client
library and checks each one's output and exit code. Prints a summary line; exits 1 on any
mismatch."""

from __future__ import annotations

import os
import sys

from orcha import settings
from orcha.client.session import Session
from orcha.protocol.messages import SubmitRequest


def run_one(request: SubmitRequest) -> tuple[bytes, bytes, int]:
    session = Session.open(settings.current())
    try:
        queue = session.call("submit", request.to_wire())["queue"]
        out, err = bytearray(), bytearray()
        while True:
            for item in session.get_batch(queue):
                if isinstance(item, tuple):
                    (out if item[0] == "stdout" else err).extend(item[1])
                elif item.get("event") == "end":
                    return bytes(out), bytes(err), int(item["code"])
    finally:
        session.close()


def main() -> int:
    client, count = int(sys.argv[1]), int(sys.argv[2])
    failures = []
    for n in range(count):
        pid = f"c{client}-p{n}"
        if n % 2:
            code = (client + n) % 4
            request = SubmitRequest(
                "shell",
                pid,
                {"argv": ["sh", "-c", f"echo $ORCHA_PETITION_ID; echo e >&2; exit {code}"]},
                None,
                os.getcwd(),
                dict(os.environ),
            )
            want = (f"{pid}\n".encode(), b"e\n", code)
        else:
            lines = n % 4 + 1
            request = SubmitRequest(
                "hello", pid, {"counter": lines, "sleep_time": 0}, None, "/", {}
            )
            want = ("".join(f"Hello world! {i}\n" for i in range(lines)).encode(), b"", 0)
        got = run_one(request)
        if got != want:
            failures.append(f"{pid}: got {got!r}, want {want!r}")
    print(f"client {client}: {count - len(failures)}/{count} ok")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
