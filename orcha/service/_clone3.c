/* orcha.service._clone3: start a petition's process born in its cgroup, without a shell.
 *
 * One function, spawn(), does what subprocess.Popen(start_new_session=True,
 * close_fds=True, restore_signals=True) does, with one difference: the child is created
 * by clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP), so it is born in the petition's
 * cgroup. Python cannot make that call itself (the child would run Python code on the
 * parent's memory), and without it every petition's process first ran /bin/sh to move
 * itself into its cgroup: about 1.4 ms of shell start, cgroup move and second exec on
 * every start (issue 14). See orcha/service/native.py for how it is used; where this
 * module cannot be built or loaded, orcha starts processes as before.
 *
 * The child shares the service's memory until it execs (CLONE_VM) and the calling
 * thread waits until then (CLONE_VFORK), as posix_spawn does, so the child only calls
 * async-signal-safe functions, on a stack of its own, and reports a failure through a
 * field of that shared memory (then exits 127 and is reaped here).
 *
 * Only for Linux on x86_64 (the one place where the child's entry needs assembly);
 * elsewhere the module builds but available() is False.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>

#if defined(__linux__) && defined(__x86_64__)
#define ORCHA_CLONE3 1
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define O_CLONE_VM 0x00000100ULL
#define O_CLONE_VFORK 0x00004000ULL
#define O_CLONE_INTO_CGROUP 0x200000000ULL
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* struct clone_args up to its 'cgroup' field (CLONE_ARGS_SIZE_VER2), spelt out so the
 * build does not depend on the kernel headers' age. */
struct orcha_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};

/* How far the child came before it failed (what the caller names in its error). */
enum { STAGE_EXEC = 0, STAGE_CWD = 1, STAGE_FDS = 2, STAGE_SESSION = 3 };

#define CHILD_STACK (64 * 1024)

struct child {
    char *const *paths; /* where to try the executable, in order */
    Py_ssize_t npaths;
    char *const *argv;
    char *const *envp;
    const char *cwd; /* or NULL */
    int fds[3];      /* the child's 0, 1 and 2 */
    int max_fd;      /* for closing fds where close_range is missing */
    sigset_t mask;   /* the caller's signal mask, the child's once it is ready */
    volatile int err;
    volatile int stage;
};

/* The child: runs on its own stack, in the caller's memory, with every signal blocked. */
static int
child_main(void *arg)
{
    struct child *c = arg;
    int sig, i, err = 0, saved = 0;
    struct sigaction sa;

    /* Every handler back to its default (a handler of the service must never run here:
     * it would act on the service's memory); SIGPIPE and SIGXFSZ too, which Python
     * ignores (Popen's restore_signals). Other ignored signals stay ignored, as they do
     * across exec. */
    for (sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &sa) != 0)
            continue; /* one of the C library's own signals */
        if (sa.sa_handler == SIG_DFL)
            continue;
        if (sa.sa_handler == SIG_IGN && sig != SIGPIPE && sig != SIGXFSZ)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(sig, &sa, NULL);
    }
    if (setsid() < 0) {
        c->stage = STAGE_SESSION;
        goto fail;
    }
    /* A source among 0-2 that is not its own target would be overwritten by an earlier
     * dup2: move such ones out of the way first. */
    for (i = 0; i < 3; i++) {
        if (c->fds[i] < 3 && c->fds[i] != i) {
            int moved = fcntl(c->fds[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0) {
                c->stage = STAGE_FDS;
                goto fail;
            }
            c->fds[i] = moved;
        }
    }
    for (i = 0; i < 3; i++) {
        int ok = c->fds[i] == i ? fcntl(i, F_SETFD, 0) : dup2(c->fds[i], i);
        if (ok < 0) {
            c->stage = STAGE_FDS;
            goto fail;
        }
    }
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        for (i = 3; i < c->max_fd; i++)
            close(i);
    }
    if (c->cwd != NULL && chdir(c->cwd) != 0) {
        c->stage = STAGE_CWD;
        goto fail;
    }
    sigprocmask(SIG_SETMASK, &c->mask, NULL);
    /* As Popen: the first error other than "not there" wins, else the last one. */
    for (i = 0; i < c->npaths; i++) {
        execve(c->paths[i], c->argv, c->envp);
        err = errno;
        if (err != ENOENT && err != ENOTDIR && saved == 0)
            saved = err;
    }
    c->stage = STAGE_EXEC;
    c->err = saved ? saved : (err ? err : ENOENT);
    _exit(127);
fail:
    c->err = errno ? errno : EINVAL;
    _exit(127);
    return 0;
}

/* clone3 whose child calls fn(arg) on the stack given in args, then exits: the C
 * library has no wrapper for clone3, and a child that shares the caller's memory must
 * not return through the caller's stack frames. Returns the child's PID or -errno. */
static long
clone3_call(struct orcha_clone_args *args, int (*fn)(void *), void *arg)
{
    long ret;
    register void *r12 __asm__("r12") = (void *)fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        /* The child, on its own stack (16-byte aligned: the call below makes it the
         * frame the ABI expects). */
        "xor %%ebp, %%ebp\n\t"
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $60, %%eax\n\t" /* SYS_exit */
        "syscall\n\t"
        "hlt\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "0"((long)SYS_clone3), "D"(args), "S"(sizeof(*args)), "r"(r12), "r"(r13)
        : "rcx", "r11", "memory", "cc");
    return ret;
}

/* Free a NULL-terminated array of strings made by to_array(). */
static void
free_array(char **array)
{
    char **p;
    if (array == NULL)
        return;
    for (p = array; *p != NULL; p++)
        PyMem_RawFree(*p);
    PyMem_RawFree(array);
}

static char *
copy_bytes(PyObject *bytes)
{
    Py_ssize_t size = PyBytes_GET_SIZE(bytes);
    char *copy = PyMem_RawMalloc(size + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, PyBytes_AS_STRING(bytes), size + 1);
    return copy;
}

/* A NULL-terminated copy of a sequence of str/bytes/path-like (file system encoding);
 * NULL with an exception set. */
static char **
to_array(PyObject *seq, Py_ssize_t *count, const char *what)
{
    PyObject *fast = PySequence_Fast(seq, what);
    Py_ssize_t n, i;
    char **array;
    if (fast == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(fast);
    array = PyMem_RawCalloc(n + 1, sizeof(char *));
    if (array == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (i = 0; i < n; i++) {
        PyObject *encoded = NULL;
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(fast, i), &encoded))
            goto error;
        array[i] = copy_bytes(encoded);
        Py_DECREF(encoded);
        if (array[i] == NULL)
            goto error;
    }
    Py_DECREF(fast);
    if (count != NULL)
        *count = n;
    return array;
error:
    Py_DECREF(fast);
    free_array(array);
    return NULL;
}

/* One "KEY=value" string of a (key, value) pair: a new PyMem_Raw block; NULL with an
 * exception set. */
static char *
env_item(PyObject *pair)
{
    PyObject *key = NULL, *value = NULL;
    Py_ssize_t ksize, vsize;
    char *item = NULL;
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "env items must be pairs");
        return NULL;
    }
    if (!PyUnicode_FSConverter(PyTuple_GET_ITEM(pair, 0), &key))
        return NULL;
    if (!PyUnicode_FSConverter(PyTuple_GET_ITEM(pair, 1), &value))
        goto done;
    ksize = PyBytes_GET_SIZE(key);
    vsize = PyBytes_GET_SIZE(value);
    if (ksize == 0 || memchr(PyBytes_AS_STRING(key), '=', ksize) != NULL) {
        PyErr_SetString(PyExc_ValueError, "illegal environment variable name");
        goto done;
    }
    if ((item = PyMem_RawMalloc(ksize + vsize + 2)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(item, PyBytes_AS_STRING(key), ksize);
    item[ksize] = '=';
    memcpy(item + ksize + 1, PyBytes_AS_STRING(value), vsize + 1);
done:
    Py_XDECREF(key);
    Py_XDECREF(value);
    return item;
}

/* The environment block: "KEY=value" strings of a mapping; or a copy of a list of such
 * bytes; or, of a (list, mapping) pair, the list's then the mapping's (a shared base
 * encoded once, and a petition's own variables). NULL with an exception set. */
static char **
env_array(PyObject *env)
{
    PyObject *block = NULL, *mapping = env, *items = NULL;
    Py_ssize_t nblock = 0, nitems = 0, i;
    char **array = NULL;
    if (PyList_Check(env))
        return to_array(env, NULL, "env must be a mapping or a list");
    if (PyTuple_Check(env)) {
        if (PyTuple_GET_SIZE(env) != 2 || !PyList_Check(PyTuple_GET_ITEM(env, 0))) {
            PyErr_SetString(PyExc_TypeError, "env must be a (list, mapping) pair");
            return NULL;
        }
        block = PyTuple_GET_ITEM(env, 0);
        mapping = PyTuple_GET_ITEM(env, 1);
        nblock = PyList_GET_SIZE(block);
    }
    if ((items = PyMapping_Items(mapping)) == NULL)
        return NULL;
    nitems = PyList_GET_SIZE(items);
    if ((array = PyMem_RawCalloc(nblock + nitems + 1, sizeof(char *))) == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < nblock; i++) {
        PyObject *item = PyList_GET_ITEM(block, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "an env block holds bytes");
            goto error;
        }
        if ((array[i] = copy_bytes(item)) == NULL)
            goto error;
    }
    for (i = 0; i < nitems; i++) {
        if ((array[nblock + i] = env_item(PyList_GET_ITEM(items, i))) == NULL)
            goto error;
    }
    Py_DECREF(items);
    return array;
error:
    Py_XDECREF(items);
    free_array(array);
    return NULL;
}

PyDoc_STRVAR(spawn_doc,
"spawn(paths, argv, env, cwd, cgroup, stdin, stdout, stderr) -> pid\n\n"
"Start argv[0]'s program (the first of paths that execs) in a new session, with\n"
"stdin/stdout/stderr as its fds 0-2 and no other fd, env as its whole environment\n"
"(a mapping; a list of b'KEY=value'; or a (list, mapping) pair: both),\n"
"in cwd (None: ours), born in the cgroup whose directory fd is cgroup (-1: ours).\n"
"Returns its PID once it has exec'd (it is our child: waitpid it). Raises OSError:\n"
"filename 'cwd' when the working directory failed, 'exec' when the program could not\n"
"be executed, 'clone' when the kernel refused the clone itself (then nothing ran).");

static PyObject *
spawn(PyObject *self, PyObject *args)
{
    PyObject *paths_obj, *argv_obj, *env_obj, *cwd_obj, *cwd_bytes = NULL;
    int cgroup, fd0, fd1, fd2;
    struct child c;
    struct orcha_clone_args ca;
    char **paths = NULL, **argv = NULL, **envp = NULL;
    char *stack = NULL;
    sigset_t all;
    long pid;
    int clone_errno = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "OOOOiiii:spawn", &paths_obj, &argv_obj, &env_obj, &cwd_obj,
                          &cgroup, &fd0, &fd1, &fd2))
        return NULL;
    memset(&c, 0, sizeof c);
    if ((paths = to_array(paths_obj, &c.npaths, "paths must be a sequence")) == NULL)
        goto done;
    if ((argv = to_array(argv_obj, NULL, "argv must be a sequence")) == NULL)
        goto done;
    if (argv[0] == NULL) {
        PyErr_SetString(PyExc_ValueError, "argv must not be empty");
        goto done;
    }
    if ((envp = env_array(env_obj)) == NULL)
        goto done;
    if (cwd_obj != Py_None) {
        if (!PyUnicode_FSConverter(cwd_obj, &cwd_bytes))
            goto done;
        c.cwd = PyBytes_AS_STRING(cwd_bytes);
    }
    if ((stack = PyMem_RawMalloc(CHILD_STACK)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    c.paths = paths;
    c.argv = argv;
    c.envp = envp;
    c.fds[0] = fd0;
    c.fds[1] = fd1;
    c.fds[2] = fd2;
    c.max_fd = (int)sysconf(_SC_OPEN_MAX);
    if (c.max_fd < 0 || c.max_fd > 65536)
        c.max_fd = 65536;

    memset(&ca, 0, sizeof ca);
    ca.flags = O_CLONE_VM | O_CLONE_VFORK | (cgroup >= 0 ? O_CLONE_INTO_CGROUP : 0);
    ca.exit_signal = SIGCHLD;
    /* The top of the stack, 16-byte aligned (clone3 takes the lowest address and size). */
    ca.stack = (uint64_t)(uintptr_t)stack;
    ca.stack_size = (CHILD_STACK - 64) & ~(uint64_t)15;
    ca.stack_size -= ((uintptr_t)stack + ca.stack_size) & 15;
    ca.cgroup = cgroup >= 0 ? (uint64_t)cgroup : 0;

    /* Signals stay blocked from before the clone until the child is ready for them
     * (it restores this thread's mask before exec). The calling thread waits until the
     * child has exec'd or exited; other threads go on. */
    Py_BEGIN_ALLOW_THREADS
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &c.mask);
    pid = clone3_call(&ca, child_main, &c);
    pthread_sigmask(SIG_SETMASK, &c.mask, NULL);
    if (pid > 0 && c.err != 0) {
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    Py_END_ALLOW_THREADS

    if (pid < 0) {
        clone_errno = (int)-pid;
        errno = clone_errno;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, "clone");
        goto done;
    }
    if (c.err != 0) {
        errno = c.err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, c.stage == STAGE_CWD ? "cwd" : "exec");
        goto done;
    }
    result = PyLong_FromLong(pid);
done:
    free_array(paths);
    free_array(argv);
    free_array(envp);
    Py_XDECREF(cwd_bytes);
    PyMem_RawFree(stack);
    return result;
}

PyDoc_STRVAR(available_doc, "available() -> bool: whether spawn() can work on this platform.");

static PyObject *
available(PyObject *self, PyObject *unused)
{
    Py_RETURN_TRUE;
}

#else /* not Linux on x86_64 */

PyDoc_STRVAR(spawn_doc, "spawn(...): not available on this platform (OSError ENOSYS).");

static PyObject *
spawn(PyObject *self, PyObject *args)
{
    errno = ENOSYS;
    return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "clone");
}

PyDoc_STRVAR(available_doc, "available() -> bool: whether spawn() can work on this platform.");

static PyObject *
available(PyObject *self, PyObject *unused)
{
    Py_RETURN_FALSE;
}

#endif

static PyMethodDef methods[] = {
    {"spawn", spawn, METH_VARARGS, spawn_doc},
    {"available", available, METH_NOARGS, available_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "orcha.service._clone3",
    "Start a process born in a cgroup (clone3), without a shell.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__clone3(void)
{
    return PyModule_Create(&module);
}
