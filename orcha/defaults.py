"""Every default and protocol constant of orcha, named and documented in one place.

Imports nothing, so any process can read it cheaply.
"""

#: Name used for the runtime, state and config directories (platformdirs).
APP_NAME = "orcha"

#: File name of the unix socket inside the runtime directory.
SOCKET_NAME = "orcha.sock"

#: File name of the per-user authentication key inside the state directory.
KEY_FILE_NAME = "key"

#: Bytes of randomness in a generated key (stored hex-encoded, so twice as many characters).
KEY_BYTES = 32

#: Host used when ``--address`` gives only a port: TCP is loopback unless asked otherwise.
DEFAULT_TCP_HOST = "127.0.0.1"

#: Environment variables that override the defaults (command-line options win over them).
ENV_ADDRESS = "ORCHA_ADDRESS"
ENV_KEY = "ORCHA_KEY"
ENV_RUNTIME_DIR = "ORCHA_RUNTIME_DIR"
ENV_STATE_DIR = "ORCHA_STATE_DIR"

#: Set in the environment of every process a petition starts; its value identifies the
#: petition to the service, so the whole tree is found even after setsid or a double fork.
ENV_PETITION_TOKEN = "ORCHA_PETITION_TOKEN"

#: Set in the environment of every process a petition starts: the petition's ID, for the user.
ENV_PETITION_ID = "ORCHA_PETITION_ID"

#: Seconds between SIGTERM and SIGKILL when a petition's tree is stopped (``--grace``).
DEFAULT_GRACE = 5.0

#: Seconds a client or the service waits for the other side of the authentication handshake.
HANDSHAKE_TIMEOUT = 5.0

#: Seconds a client waits to connect before saying the service is not answering.
CONNECT_TIMEOUT = 5.0

#: Pending connections the listening socket queues (a burst of clients must not be refused).
LISTEN_BACKLOG = 512

#: Largest read from a petition's stdout/stderr pipe, and the pipe size orcha asks for.
PIPE_CHUNK = 1 << 20

#: Output a running petition may have buffered for its client before it is made to wait,
#: so a slow reader slows the command rather than filling the service's memory.
OUTPUT_BUFFER_BYTES = 8 << 20

#: Longest petition ID accepted.
MAX_ID_LENGTH = 128

#: Priorities run from -MAX_PRIORITY to MAX_PRIORITY (lower first); the bound keeps them
#: exact in the effective-priority arithmetic and in the records.
MAX_PRIORITY = 1_000_000_000

#: Largest request frame the service accepts from a client, in bytes.
MAX_REQUEST_BYTES = 16 << 20

#: Most bytes of output one batched read of a petition's stream returns (more waits for
#: the next read; the bigger the batch, the fewer round trips per megabyte).
STREAM_BATCH_BYTES = 4 << 20

#: Bytes of a petition's output kept in its log file (``serve --log-cap``); past it the log
#: says it was capped and later output is only streamed to attached clients.
DEFAULT_LOG_CAP = 64 << 20

#: File name of the petition database inside the state directory.
DATABASE_NAME = "orcha.db"

#: File name, inside the state directory, of the lock the service holds for its whole
#: life: one service per database (orcha.service.lock.StateLock).
STATE_LOCK_NAME = "orcha.lock"

#: Folder of petition output logs inside the state directory.
LOGS_DIR_NAME = "logs"

#: Set in the environment of every process a petition starts: the GPU indices it was given,
#: comma-separated (also as ``CUDA_VISIBLE_DEVICES``, empty when it was given none and the
#: service has GPUs, so it cannot use GPUs other petitions hold).
ENV_GPUS = "ORCHA_GPUS"

#: Set in the environment of every process a petition starts: which attempt this is (1, 2,
#: ...; see ``--retries``).
ENV_ATTEMPT = "ORCHA_ATTEMPT"

#: Seconds of waiting that improve a petition's effective priority by one step (aging;
#: ``serve --aging``, 0 turns it off), so low priorities are never starved by a stream of
#: higher ones.
DEFAULT_AGING = 600.0

#: Longest a petition blocked waiting for resources may be delayed by later, smaller
#: petitions that start ahead of it (backfill; ``serve --backfill-bound``, 0 turns it off).
DEFAULT_BACKFILL_BOUND = 300.0

#: Seconds between two looks (one stat) at the service's unix socket: one deleted (its
#: runtime directory removed at logout) is made again (orcha.service.socket_keeper). Each
#: look wakes an idle service: every 5 s cost 0.007 % of a CPU (issue 14 wants 0 %).
SOCKET_CHECK_SECONDS = 30.0

#: Seconds between admission checks while a petition waits for something that changes
#: without an event orcha sees (free memory, a plugin's predicate). No checks otherwise.
RECHECK_SECONDS = 1.0

#: Seconds a plugin's load, start or stop hook may take before the service goes on
#: without waiting for it (it is logged).
PLUGIN_HOOK_TIMEOUT = 10.0

#: Seconds a plugin's health check may take before it counts as unhealthy.
HEALTH_TIMEOUT = 5.0
#: Seconds a plugin predicate may run before 'orcha health' reports the scheduler stuck.
PREDICATE_STUCK_SECONDS = 3.0
#: Seconds (at least) a stopped petition's action may take to return; then it is abandoned.
ABANDON_WAIT_SECONDS = 1.0

#: Webhooks (``--notify``, ``notify:``): seconds a POST may take, how many tries (the
#: first and 3 retries), the first pause between tries (doubling each time), receivers
#: (URLs, each with its queue) delivered to at once, seconds an idle delivery thread
#: stays, and how many 307/308 redirects a POST follows (as a POST of the same body).
WEBHOOK_TIMEOUT, WEBHOOK_ATTEMPTS, WEBHOOK_BACKOFF = 5.0, 4, 0.5
WEBHOOK_THREADS, WEBHOOK_IDLE_SECONDS, WEBHOOK_REDIRECTS = 8, 5.0, 5

#: Seconds an ``on_finish`` hook command may run before it is stopped.
HOOK_TIMEOUT = 60.0

#: Deliveries (webhook POSTs, hook runs) waiting at most; older ones are dropped beyond.
DELIVERY_QUEUE = 10000

#: Seconds a cleanly stopping service waits for queued webhooks, hooks and event sinks.
DELIVERY_DRAIN_SECONDS = 10.0

#: Events POSTed by default (state changes; output and progress are too chatty).
DEFAULT_EVENTS = frozenset({"submitted", "started", "attempt", "finished", "paused", "resumed"})

#: Events sent only to webhooks that name them.
STREAM_EVENTS = frozenset({"output", "progress"})

#: Fields an ``on_finish`` template may use, e.g. ``notify-send "orcha: {id} {state} ({code})"``.
HOOK_FIELDS = (
    "id",
    "kind",
    "state",
    "code",
    "message",
    "group",
    "started",
    "ended",
    "cwd",
    "command",
    "log",
    "tail",
)

# --- Issue 12 sections: each keeps its constants under its own heading. ---

# The guard process that outlives the service (reliability, point 3a).

#: Set to 1 in ``orcha serve``'s environment to run the service without its guard (the
#: parent process that stops the petitions' trees if the service dies): one process, as
#: before; a service killed with ``kill -9`` then leaves its petitions running until the
#: next ``orcha serve`` at its address stops them.
ENV_NO_GUARD = "ORCHA_NO_GUARD"

#: Seconds, beyond the grace period, ``orcha cancel`` waits for the running petitions it
#: stopped to end before it replies.
CANCEL_REPLY_WAIT_SECONDS = 5.0
#: Seconds, beyond the grace period, the guard gives the service to stop after passing it
#: a stop signal (time for its sessions, webhooks and hooks); then it SIGKILLs it.
GUARD_STOP_MARGIN = 15.0

# Leftover processes, per-petition cgroups and memory limits (points 3b, 3c, 4).

#: Seconds the output of a petition whose main process has exited is still read, for
#: what it wrote last; a leftover that keeps the pipe open does not hold it longer.
DRAIN_SECONDS = 1.0

#: Seconds between two looks at the running petitions' processes when orcha cannot give
#: each petition a cgroup: new descendants (orphans included) are attributed, and the
#: memory of a petition that asked for some (``--mem``) is measured.
TRACK_SECONDS = 0.25

#: How petitions are isolated: "auto" (a cgroup v2 each where the service may create
#: them, else the fallback), "cgroup" (cgroups or refuse to start), "none" (fallback).
DEFAULT_ISOLATION = "auto"
ISOLATIONS = ("auto", "cgroup", "none")

#: Names of the cgroups the service creates under its own cgroup.
CGROUP_SERVICE_LEAF = "orcha-service"
CGROUP_PETITION_PREFIX = "orcha-p-"
#: Emptied petition cgroups kept for the next petitions where no controller keeps
#: per-cgroup state that cannot be reset (the memory controller's peak): making and
#: removing one cost the machine about 0.2 ms per petition (the kernel's own work on
#: them included), a seventh of a short petition's whole cost.
CGROUP_SPARES = 32

# Saving state and petition logs under faults (points 1, 7).

#: A change of a record that cannot be committed (disk full, database locked by another
#: process) is kept in memory and tried again: first after STORE_RETRY_FIRST seconds,
#: the pause doubling up to STORE_RETRY_MAX, for as long as it fails.
STORE_RETRY_FIRST = 0.1
STORE_RETRY_MAX = 2.0

#: Milliseconds a write waits for another process's lock on the database before that
#: try counts as failed (SQLite's busy timeout on the service's writing connection).
STORE_WRITE_BUSY_MS = 2000

#: Milliseconds opening the database waits for another process's lock (the service
#: serves nothing yet); beyond it, 'orcha serve' exits with a line saying so.
STORE_OPEN_BUSY_MS = 5000

#: Free bytes below which a disk I/O error of the database is taken as a full disk
#: (SQLite says "disk I/O error" when it cannot grow its shared-memory file, not "full").
STORE_FULL_DISK_BYTES = 1 << 20

#: Milliseconds a read (status, wait, logs, clean) waits for a lock. Reads have their own
#: connection (WAL): they never wait for the service's own writes.
STORE_READ_BUSY_MS = 2000

#: Seconds a new record (a submit) may wait for the service's writer before the submit is
#: refused with exit code 212 (NOT_SAVED) rather than taken unrecorded.
STORE_SYNC_WAIT = 5.0

#: Seconds a petition's start is retried to be recorded before the petition is failed
#: with 212 instead of run (a start that is not recorded could run twice after a crash).
STORE_START_WAIT = 5.0

#: Seconds a stopping service gives changes not yet saved before it exits without them.
STORE_CLOSE_WAIT = 2.0

#: Seconds 'orcha clean' waits for changes not yet saved (a petition that has just
#: ended) before it deletes, so what the user saw end is cleaned.
STORE_CLEAN_FLUSH_WAIT = 1.0

# Connections before authentication and slow subscribers (points 5, 6).

#: Connections accepted but not yet authenticated, at most (each has a thread): beyond
#: it the oldest is closed. The whole handshake must end within HANDSHAKE_TIMEOUT.
MAX_UNAUTHENTICATED = 64

#: Seconds between two log lines about connections closed before authentication (the
#: ones in between are counted in the next line), so a flood cannot flood the log.
REFUSAL_LOG_INTERVAL = 10.0

#: Seconds the service pauses accepting when it has no file descriptor left.
ACCEPT_BACKOFF = 0.1

#: Bytes buffered at most for one client that follows or watches: a client that reads
#: slower is told it fell behind (followers catch up from the log; watchers get a
#: ``dropped`` event), so it cannot grow the service's memory.
SUBSCRIBER_BUFFER_BYTES = 8 << 20

# ---------------------------------------------------------------------------------------
# Issue 13 (daily use). One heading per part; each part adds its constants under its own.

# Restart, hold/delay/at, edit, durations, scheduling past blocked petitions (3-5, 10, 24).
#: How many waiting petitions behind a blocked one an admission walk looks at for one that
#: may pass it because it takes nothing the blocked one waits for (Slurm's bf_max_job_test:
#: a bound on what one walk costs with a long queue).
BACKFILL_LOOKAHEAD = 500

# stdin and the attached client's output (points 6, 12-16).

#: Bytes of its stdin an attached client may send ahead of what the petition has read
#: (``orcha run`` with piped input): the most the service buffers for one petition's
#: stdin, whatever the input's size or the petition's pace.
STDIN_WINDOW_BYTES = 1 << 20

#: Bytes the client reads from its stdin and sends in one request, at most.
#: Small enough that a connection the client finds writable takes it without blocking.
STDIN_CHUNK_BYTES = 16 << 10

#: Seconds an attached petition waits before its client is told why (one that starts
#: sooner is not announced as queued), and between two looks at whether the reason
#: changed.
QUEUED_NOTICE_SECONDS = 0.5

# Arrays and bulk operations (points 7, 8).

#: Most members one array ('run --array', 'run --each') may have: all of them are
#: recorded in one transaction and sent in one request.
MAX_ARRAY_MEMBERS = 10_000

#: Highest index an '--array' range may name (as Slurm's MaxArraySize bounds it).
MAX_ARRAY_INDEX = 1_000_000

#: Environment of an array's member: its index (for '--each', the line's number), the
#: array's name and how many members the array has.
ENV_ARRAY_INDEX = "ORCHA_ARRAY_INDEX"
ENV_ARRAY_NAME = "ORCHA_ARRAY_NAME"
ENV_ARRAY_COUNT = "ORCHA_ARRAY_COUNT"

#: What a member's command says in place of its index (or, for '--each', its line).
ARRAY_PLACEHOLDER = "{}"

#: Separates an array's name from a member's index in the member's ID (NAME_INDEX, as
#: Slurm's JOBID_INDEX).
ARRAY_SEPARATOR = "_"

# Status, --json, --color and the rough edges of the CLI (points 9, 17, 18, 20, 22).

#: Ended petitions 'orcha status' shows without --all (the most recently ended; queued
#: and running ones are always shown), as 'pueue status' keeps a screenful.
STATUS_ENDED_SHOWN = 20

# Reload on SIGHUP, hooks and signed webhooks, docs and man pages (points 11, 21, 23).

#: What ``orcha serve`` re-reads from its configuration file on SIGHUP (``orcha config
#: reload``), and what only a restart changes (a reload names these but leaves them).
RELOADABLE_SETTINGS = (
    "max_running",
    "gpus",
    "groups",
    "aging",
    "backfill_bound",
    "grace",
    "log_cap",
    "notify",
    "notify_secret",
    "notify_secret_file",
    "hooks",
    "ordered_output",
)
RESTART_SETTINGS = ("address", "isolation", "executor", "plugins")

#: Lines of a petition's output an ``on_finish`` hook gets as ``{tail}`` and
#: ``ORCHA_TAIL`` (pueue's callback_log_lines), and the most bytes they may take.
HOOK_TAIL_LINES = 10
HOOK_TAIL_BYTES = 4096

#: The header carrying a webhook body's signature, ``sha256=<hex HMAC-SHA256 of the body
#: under the secret>`` (as GitHub's ``X-Hub-Signature-256``, which is sent too, so
#: receivers written for GitHub verify it unchanged); the event's name; and a unique ID per
#: delivery (the same on each retry of it), so a receiver can drop a replayed one.
WEBHOOK_SIGNATURE_HEADER = "X-Orcha-Signature-256"
WEBHOOK_GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
WEBHOOK_EVENT_HEADER = "X-Orcha-Event"
WEBHOOK_DELIVERY_HEADER = "X-Orcha-Delivery"

# orcha top (point 25).

#: Seconds between two ``usage`` events to a watcher that asked for them (``orcha top``
#: refreshes at this rate unless told otherwise with ``--interval``).
TOP_INTERVAL = 2.0

#: The shortest and longest interval a watcher may ask ``usage`` events at: each tick
#: measures every running petition's tree, so a watcher cannot make the service spin.
USAGE_MIN_INTERVAL = 0.5
USAGE_MAX_INTERVAL = 3600.0

#: How many waiting petitions (the head of the queue) a ``usage`` event describes.
USAGE_QUEUE_HEAD = 50

#: How many of the last ended petitions a watch with ``usage`` starts with.
USAGE_RECENT = 20

#: Longest command text a ``usage`` event carries per petition (longer is cut, with …).
USAGE_COMMAND_CHARS = 200

# -- issue 14: service CPU per petition, refill, idle (helper I) --

#: Seconds the record writer lets changes queued after a first one gather before it
#: commits them in one transaction (a stream of short petitions then costs one commit
#: per batch, not three per petition). Only for changes nobody waits for: a new record
#: and a start are committed at once.
STORE_BATCH_SECONDS = 0.005

# -- issue 14: queue scale (helper J) --
#: Distinct environments (and whole environments of older records) the service keeps one
#: shared copy of in memory; beyond that the cache starts again.
ENV_CACHE_SIZE = 4096
#: Queued petitions 'orcha status' shows without --all (the first submitted; a line
#: says how many more there are): a table of a long queue's every row helps nobody.
STATUS_QUEUED_SHOWN = 100
#: Records a page of 'orcha status --json' (every record, in pages) carries: few enough
#: to be looked up by their numbers in one query (SQLite's oldest limit: 999).
STATUS_PAGE = 500

# -- issue 14: streaming --

#: An attached petition's consecutive output chunks of one stream are joined into one
#: item until they hold this many bytes; larger chunks travel as read, never copied.
JOIN_BELOW_BYTES = 64 << 10

#: The service asks glibc to serve memory blocks up to this size from its heap (not a
#: fresh mmap each), so the buffers of output chunks are reused (PIPE_CHUNK fits)...
OUTPUT_MALLOC_MMAP_BYTES = 4 << 20
#: ... and to give free heap memory back to the system only beyond this much.
OUTPUT_MALLOC_TRIM_BYTES = 32 << 20

# -- issue 13 point 14: ordered output --

#: Ordered capture (orcha.service.capture) emits a message once the service has read both
#: streams at least this long after the kernel stamped it (nanoseconds).
ORDERED_SETTLE_NS = 1_000_000

# -- issue 15: Dask scale-out (docs/dask.rst) --

#: Where ``orcha serve`` finds a Dask scheduler when no option says (an address, or the
#: path of a scheduler file).
ENV_DASK = "ORCHA_DASK"

#: Output a worker keeps per running petition until the service has acknowledged it
#: (sent or not): a full buffer stops reading the petition's pipes, so it blocks as on a
#: full pipe (backpressure).
DASK_BUFFER_BYTES = 8 * 1024 * 1024

#: Most bytes of a petition's output in one message from its worker.
DASK_READ_BYTES = 1024 * 1024

#: Seconds between two looks, while waiting on a worker's answer, at whether the worker
#: is known lost (a host that vanished never closes its connections).
DASK_POLL_SECONDS = 1.0

#: Seconds between two looks at the cluster's workers (their reports arrive with Dask's
#: heartbeats; a worker's death is heard at once through the scheduler's events).
DASK_REFRESH_SECONDS = 0.5

#: Times in a row a broken output stream from a worker is resumed (from the last byte
#: received) before its petition is taken as lost with its worker; seconds the worker
#: waits for it before it takes the service as dead and stops the petition's tree.
DASK_RECONNECTS, DASK_ORPHAN_SECONDS = 5, 2.0

#: Seconds to wait for the Dask scheduler at start-up; once lost, seconds to the first
#: try to reach it again (each waits as long), doubled each time up to the former.
DASK_CONNECT_SECONDS, DASK_RECONNECT_SECONDS = 10.0, 2.0

#: Seconds a worker keeps an ended petition's unread output (its service died or
#: restarted meanwhile and will never read it), so nothing grows on the worker.
DASK_FORGET_SECONDS = 300.0

#: Seconds between two measures of a remote petition's tree on its worker (``top``,
#: usage events); one held to a ``--mem`` is looked at every TRACK_SECONDS.
DASK_MEASURE_SECONDS = 1.0

# -- systemd notifications --

#: Seconds a READY/STOPPING/RELOADING notification may wait for room on systemd's notify
#: socket (the main loop, which accepts clients, sends it); pings and status updates
#: never wait: one that finds the socket full is sent again at the next turn.
NOTIFY_SEND_TIMEOUT = 1.0

# -- issue 14: service CPU per petition (helper T) --

#: Seconds the end of a petition may wait before it reaches a client that waits for
#: others too (``orcha wait`` on an array): ends that come meanwhile go with it, in one
#: answer, instead of one wake-up of the client's session each. The last end a client
#: waits for goes at once, so a wait returns as soon as before; only what a ``wait
#: --timeout`` that gives up reports as ended may be this much older.
WAIT_BATCH_SECONDS = 0.1

# -- issue 14: status --all --json (helper X) --

#: Records a page of 'orcha status --json' carries when it travels as JSON text (the
#: records already encoded by the service, written by the client as they come): fewer
#: round trips than STATUS_PAGE, and a page's text (about 0.6 KB a record) stays small.
STATUS_TEXT_PAGE = 2000
#: The most records the service puts in one such page, whatever a client asks for: what
#: a listing holds in the service's memory at once stays bounded.
STATUS_TEXT_PAGE_MAX = 5000

# -- issue 14: spawn and refill (target 5) --

#: Seconds the service waits for its process spawner (orcha.service.zygote) to come up,
#: or to exit once told to at shutdown; one that does not come up is given up for good
#: (petitions then join their cgroups through a shell).
SPAWNER_READY_SECONDS = 10.0
#: Whether petitions' processes are started by orcha's compiled clone3 helper
#: (orcha.service.native: born in their cgroups, no shell, no spawner) where it was
#: built; False, or where it was not: as described below.
NATIVE_SPAWN = True
#: Whether a service with a cgroup per petition starts their processes through its
#: spawner (orcha.service.spawner: no shell on each start; a freed slot refills faster)
#: or, False, through ``/bin/sh -c`` joining the cgroup before it execs the command.
SPAWNER_ENABLED = True
#: With the spawner: a petition's process is started through it only when no other
#: started in the last this many seconds; in a stream of starts, through the shell.
#: Moving a process into a cgroup (the shell's way) waits for an RCU grace period unless
#: another move came within ~10-20 ms (measured here: 2 ms with starts 10 ms apart,
#: 8-22 ms with 20 ms or more); the spawner's clone3 never moves one, but its two extra
#: hand-offs per petition halved an array's rate (299/s against 483/s, same run).
SPAWNER_QUIET_SECONDS = 0.01

# -- durations and start times far ahead --

#: The longest duration orcha takes (``--timeout``, ``--retry-delay``, ``--delay``, ``wait
#: --timeout``, the configuration's durations), and the furthest ahead ``--at`` may name:
#: 10 years. Far beyond any real job, so "practically never" still fits; near enough that
#: every clock sum and wait stays representable (Python's thread waits end at ~292 years,
#: a 32-bit time_t in 2038, datetime in year 9999).
MAX_DURATION_SECONDS = 10 * 365 * 86400.0
#: Its wording in messages.
MAX_DURATION_TEXT = "3650d (10 years)"

#: The longest one wait of a loop or a thread blocks before it looks again: epoll takes
#: at most INT_MAX milliseconds (~24.8 days), and waking once a day costs nothing.
MAX_WAIT_SECONDS = 86400.0
