"""``python -m orcha.demo``: orcha's main job, shown end to end.

Starts ``orcha serve`` in the background (in a private temporary directory, so it never
touches a service you already run), sends a hello-world petition and a ``run`` petition
whose output streams live, then stops the service. Exits non-zero if any step fails.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile


def _step(title: str, argv: list[str], env: dict[str, str]) -> int:
    print(f"\n$ orcha {shlex.join(argv)}    # {title}", flush=True)
    return subprocess.call([sys.executable, "-m", "orcha", *argv], env=env)


def main() -> int:
    root = tempfile.mkdtemp(prefix="orcha-demo-")
    env = {**os.environ, "ORCHA_RUNTIME_DIR": f"{root}/run", "ORCHA_STATE_DIR": f"{root}/state"}
    env.pop("ORCHA_ADDRESS", None)
    env.pop("ORCHA_KEY", None)
    print("$ orcha serve --max-running 2 &", flush=True)
    service = subprocess.Popen(
        [sys.executable, "-m", "orcha", "serve", "--max-running", "2"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    failures = 0
    try:
        assert service.stdout is not None
        banner = service.stdout.readline()
        if "listening on" not in banner:
            print("orcha demo: the service did not start", file=sys.stderr)
            return 1
        print(banner, end="", flush=True)
        failures += _step("the plugins orcha found", ["ls"], env) != 0
        failures += (
            _step(
                "a hello-world petition; lines arrive as they are produced",
                ["send", "hello-1", "--counter", "3", "--sleep-time", "0.5"],
                env,
            )
            != 0
        )
        script = (
            'for i in 1 2 3; do echo "step $i of 3 in $PWD"; sleep 0.5; done; '
            'echo "stderr stays stderr" >&2'
        )
        failures += (
            _step(
                "a command run by the service, streamed live",
                ["run", "build-1", "--", "sh", "-c", script],
                env,
            )
            != 0
        )
        code = _step(
            "its exit code is the command's", ["run", "fails", "--", "sh", "-c", "exit 3"], env
        )
        print(f"(exit code {code})")
        failures += code != 3
    finally:
        print("\n$ kill -TERM <service>    # stop the service", flush=True)
        service.send_signal(signal.SIGTERM)
        try:
            code = service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            code = service.wait()
        print(f"service exited with code {code}")
        shutil.rmtree(root, ignore_errors=True)
    if failures or code != 0:
        print("orcha demo: some steps failed", file=sys.stderr)
        return 1
    print("\norcha demo: all steps succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
