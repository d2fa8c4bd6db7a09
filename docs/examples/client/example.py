"""orcha.Client at work: submit, stream, wait, status, watch, cancel, errors."""

import orcha
from orcha.errors import NoPetitionError

with orcha.Client() as client:
    # A command, tied to this client as 'orcha run' is: its output streams here, live.
    job = client.submit("count", ["sh", "-c", "echo one; echo two; echo oops >&2"])
    seen = {"stdout": b"", "stderr": b""}
    for stream, data in job.output():
        seen[stream] += data
    print("stdout:", seen["stdout"].decode().split())
    print("stderr:", seen["stderr"].decode().split())
    print("count exited", job.wait())

    # A failing command: wait() returns its exit code, as 'orcha run' would exit.
    print("fail exited", client.submit("fail", ["sh", "-c", "exit 3"]).wait())

    # Detached petitions run whether or not this client stays. The options are
    # 'orcha run's: priority, cpus, mem, gpus, group, after, timeout, retries, cwd, env.
    client.submit("a", ["true"], detach=True, timeout="1m")
    client.submit(
        "b", ["sh", "-c", 'test "$STEP" = 2'], detach=True, after=["a"], env={"STEP": "2"}
    )
    print(client.wait(["a", "b"]))

    # Records as 'orcha status --json' prints them.
    (record,) = client.status("b")
    print(record["id"], record["state"], record["schedule"])

    # Events as 'orcha watch --json' prints them: first the state of each petition,
    # then what happens to them. Cancelling a petition stops its whole process tree;
    # what runs after it fails.
    sleeper = client.submit("sleeper", ["sleep", "600"], detach=True)
    client.submit("then", ["true"], detach=True, after=["sleeper"])
    finished = []
    for event in client.watch(["sleeper", "then"]):
        if event["event"] == "state" and event["petition"] == "then":
            client.cancel("sleeper")  # the watch has both: now make something happen
        if event["event"] == "finished":
            finished.append((event["petition"], event["data"]["state"]))
    print(sorted(finished))
    print("sleeper exited", sleeper.wait())

    # Errors are those of orcha.errors, each with the exit code the CLI would end with.
    try:
        client.cancel("count")
    except NoPetitionError as e:
        print(e.exit_code, e)
