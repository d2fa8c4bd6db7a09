"""Use an orcha service with nothing but ``multiprocessing.managers`` and its key.

Usage: python basemanager.py [SOCKET KEYFILE]; without them, where a service of this user
keeps them: $ORCHA_RUNTIME_DIR/orcha.sock and $ORCHA_STATE_DIR/key.
"""

import os
import sys
from multiprocessing.managers import BaseManager

if len(sys.argv) == 3:
    socket_path, key_file = sys.argv[1], sys.argv[2]
else:
    socket_path = os.path.join(os.environ["ORCHA_RUNTIME_DIR"], "orcha.sock")
    key_file = os.path.join(os.environ["ORCHA_STATE_DIR"], "key")
with open(key_file, "rb") as f:
    key = f.read().strip()


class Orcha(BaseManager):
    """The service's typeids are its operations; register those this program uses."""


for typeid in ("submit", "cancel", "status"):
    Orcha.register(typeid)

manager = Orcha(address=socket_path, authkey=key)
manager.connect()


def read_to_the_end(run):
    """Read a petition's output as it is written; print it and how it ended."""
    output = {"stdout": b"", "stderr": b""}
    while True:
        for item in run.get_batch():  # every item queued so far (waits for one)
            if isinstance(item, tuple):  # ("stdout" or "stderr", bytes)
                stream, data = item
                output[stream] += data
            elif item["event"] == "end":  # the last item
                print("output", output)
                print("ended", item["state"], item["code"])
                return


# Submit a petition (the request is the dict `orcha run` sends) and read its output.
request = {
    "kind": "shell",
    "params": {"argv": ["sh", "-c", "echo hello; echo oops >&2; exit 3"]},
    "cwd": os.getcwd(),
    "env": dict(os.environ),
}
run = manager.submit({**request, "id": "bm-hello"})
print("submitted", run.value()["id"])
read_to_the_end(run)

# Every operation answers with a served result whose value() is the reply.
record = manager.status({"ids": ["bm-hello"]}).value()["petitions"][0]
print("status", record["state"], record["code"])

# Submit one that would run for a minute, and cancel it.
sleeper = manager.submit({**request, "id": "bm-sleep", "params": {"argv": ["sleep", "60"]}})
print(manager.cancel({"ids": ["bm-sleep"]}).value())
read_to_the_end(sleeper)

# A refusal is a RuntimeError: (error name, message).
try:
    manager.submit({**request, "id": "bm hello"})
except RuntimeError as e:
    print("refused:", e.args[0])
