/* The psctl binary against a real psd: human output (exact tables), --json output (validated and
 * compared), exit codes 0/1/2/3, colour only on a terminal and never with NO_COLOR, rm's
 * confirmation (required --yes without a terminal, a prompt on one), and the .npy round trip with
 * the bytes compared to the file and to the tensor psd stores. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/require.h"
#include "support/wire_client.h"

#define RUN_TIMEOUT_MS 30000

static ps_psd_t psd;
static ps_wc_t wc;
static char addr[64];
static char dir[64];

/* ---- running psctl ---- */

typedef struct run {
    int status; /* exit code, or 128 + signal */
    char *out;
    size_t outlen;
    char *err;
    size_t errlen;
} run_t;

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static const char *psctl_bin(void)
{
    const char *b = getenv("PSCTL_BIN");
    cr_assert(b && *b, "PSCTL_BIN is not set");
    return b;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
    char *nb = realloc(*buf, *len + n + 1);
    cr_assert_not_null(nb);
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

/* The child's environment: PS_SERVER = this test's psd, NO_COLOR unset, then env ("K=V" sets,
 * "K" unsets). */
static void child_env(const char *const *env)
{
    setenv("PS_SERVER", addr, 1);
    unsetenv("NO_COLOR");
    for (size_t i = 0; env && env[i]; i++) {
        const char *eq = strchr(env[i], '=');
        if (eq) {
            char k[64];
            snprintf(k, sizeof k, "%.*s", (int) (eq - env[i]), env[i]);
            setenv(k, eq + 1, 1);
        } else {
            unsetenv(env[i]);
        }
    }
}

static int wait_status(pid_t pid, int64_t deadline)
{
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            cr_assert_fail("psctl did not exit in time");
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void check_clean(const run_t *r)
{
    const char *e = r->err ? r->err : "";
    const char *o = r->out ? r->out : "";
    cr_assert(!strstr(e, "Sanitizer") && !strstr(e, "runtime error") && !strstr(o, "Sanitizer"),
              "psctl reported a sanitizer error:\n%s%s", o, e);
}

/* Run psctl with argv (NULL-terminated), stdin from input (NULL: /dev/null), stdout and stderr
 * captured separately through pipes (so neither is a terminal). */
static void run_psctl(run_t *r, const char *const *env, const char *input, const char *const *argv)
{
    memset(r, 0, sizeof *r);
    append(&r->out, &r->outlen, "", 0);
    append(&r->err, &r->errlen, "", 0);
    int po[2], pe[2], pi[2];
    cr_assert_eq(pipe(po), 0);
    cr_assert_eq(pipe(pe), 0);
    cr_assert_eq(pipe(pi), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(pi[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(pi[0]);
        close(pi[1]);
        close(po[0]);
        close(po[1]);
        close(pe[0]);
        close(pe[1]);
        child_env(env);
        const char *args[32];
        size_t n = 0;
        args[n++] = "psctl";
        for (size_t i = 0; argv[i] && n < 31; i++)
            args[n++] = argv[i];
        args[n] = NULL;
        execv(psctl_bin(), (char *const *) args);
        _exit(127);
    }
    close(pi[0]);
    close(po[1]);
    close(pe[1]);
    if (input) {
        ssize_t w = write(pi[1], input, strlen(input));
        (void) w;
    }
    close(pi[1]);
    int64_t deadline = now_ms() + RUN_TIMEOUT_MS;
    int open_o = 1, open_e = 1;
    while ((open_o || open_e) && now_ms() < deadline) {
        struct pollfd p[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        int rc = poll(p, 2, 200);
        if (rc < 0 && errno == EINTR)
            continue;
        char buf[4096];
        for (int k = 0; k < 2; k++) {
            if (!(k == 0 ? open_o : open_e) || !(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(p[k].fd, buf, sizeof buf);
            if (n > 0) {
                if (k == 0)
                    append(&r->out, &r->outlen, buf, (size_t) n);
                else
                    append(&r->err, &r->errlen, buf, (size_t) n);
            } else if (n == 0 || errno != EINTR) {
                if (k == 0)
                    open_o = 0;
                else
                    open_e = 0;
            }
        }
    }
    close(po[0]);
    close(pe[0]);
    r->status = wait_status(pid, deadline);
    check_clean(r);
}

#define ARGV(...)     ((const char *const[]){__VA_ARGS__, NULL})
#define PSCTL(r, ...) run_psctl((r), NULL, NULL, ARGV(__VA_ARGS__))

/*
 * Run psctl on a pseudo-terminal (stdin, stdout and stderr all the terminal). When answer is not
 * NULL it is typed once prompt appears in the output. r->out gets everything psctl wrote.
 */
static void run_pty_prompt(run_t *r,
                           const char *const *env,
                           const char *prompt,
                           const char *answer,
                           const char *const *argv)
{
    memset(r, 0, sizeof *r);
    append(&r->out, &r->outlen, "", 0);
    append(&r->err, &r->errlen, "", 0);
    int master = -1;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    cr_assert(pid >= 0, "forkpty: %s", strerror(errno));
    if (pid == 0) {
        child_env(env);
        const char *args[32];
        size_t n = 0;
        args[n++] = "psctl";
        for (size_t i = 0; argv[i] && n < 31; i++)
            args[n++] = argv[i];
        args[n] = NULL;
        execv(psctl_bin(), (char *const *) args);
        _exit(127);
    }
    int64_t deadline = now_ms() + RUN_TIMEOUT_MS;
    int answered = 0;
    while (now_ms() < deadline) {
        struct pollfd p = {master, POLLIN, 0};
        int rc = poll(&p, 1, 200);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0)
            continue;
        char buf[4096];
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0)
            break; /* EIO once the child has exited and closed the terminal */
        append(&r->out, &r->outlen, buf, (size_t) n);
        if (answer && !answered && strstr(r->out, prompt)) {
            ssize_t w = write(master, answer, strlen(answer));
            cr_assert_eq(w, (ssize_t) strlen(answer));
            answered = 1;
        }
    }
    close(master);
    r->status = wait_status(pid, deadline);
    check_clean(r);
}

/* run_pty_prompt answering rm's "[y/N] " question. */
static void run_pty(run_t *r, const char *const *env, const char *answer, const char *const *argv)
{
    run_pty_prompt(r, env, "[y/N] ", answer, argv);
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The first n numbers after the word that starts a line of a table ("STATS   1   0   0 ..."). */
static int table_row(const char *text, const char *first, unsigned long long *v, int n)
{
    char key[64];
    snprintf(key, sizeof key, "\n%s ", first);
    const char *p = strstr(text, key);
    if (!p)
        return 0;
    p += strlen(key);
    int got = 0;
    for (; got < n; got++) {
        char *end;
        while (*p == ' ')
            p++;
        v[got] = strtoull(p, &end, 10);
        if (end == p)
            break;
        p = end;
    }
    return got == n && (*p == '\n' || *p == ' '); /* more columns may follow */
}

/* ---- a minimal JSON validator (RFC 8259 grammar, no semantics) ---- */

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *json_value(const char *p, int depth);

static const char *json_string(const char *p)
{
    if (*p != '"')
        return NULL;
    for (p++; *p != '"'; p++) {
        if ((unsigned char) *p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++) {
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
                        return NULL;
                }
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return p + 1;
}

static const char *json_number(const char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

static const char *json_value(const char *p, int depth)
{
    if (depth > 64)
        return NULL;
    p = json_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int obj = *p == '{';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                p = json_string(json_ws(p));
                if (!p)
                    return NULL;
                p = json_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            p = json_value(p, depth + 1);
            if (!p)
                return NULL;
            p = json_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == close ? p + 1 : NULL;
        }
    }
    if (*p == '"')
        return json_string(p);
    if (strncmp(p, "true", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    if (strncmp(p, "null", 4) == 0)
        return p + 4;
    return json_number(p);
}

/* 1 when s is exactly one JSON value followed by a newline. */
static int json_doc_valid(const char *s)
{
    const char *end = json_value(s, 0);
    return end && strcmp(end, "\n") == 0;
}

/* ---- fixtures ---- */

static void setup_with(const char *const *extra)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&wc, psd.port, 20000), 0, "connect: %s", strerror(errno));
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    snprintf(dir, sizeof dir, "/tmp/test_psctl_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void setup(void)
{
    setup_with(NULL);
}

static void teardown(void)
{
    ps_wc_close(&wc);
    int rc = ps_psd_finish(&psd, SIGTERM, 20000);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(rc, 0, "psd did not exit cleanly (status %d)", rc);
}

TestSuite(psctl, .init = setup, .fini = teardown, .timeout = 120);

static const char *path_in_dir(char *out, size_t cap, const char *file)
{
    snprintf(out, cap, "%s/%s", dir, file);
    return out;
}

/* Write a .npy file with the given header dictionary, version 1.0, padded to 16 bytes as old
 * numpy did (psctl pads to 64, so the files differ in their headers but not their data). */
static void write_npy(const char *path, const char *dict, const void *data, size_t n)
{
    char h[512];
    size_t dl = strlen(dict);
    size_t total = (10 + dl + 1 + 15) / 16 * 16;
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (char) ((total - 10) & 0xff);
    h[9] = (char) ((total - 10) >> 8);
    memcpy(h + 10, dict, dl);
    memset(h + 10 + dl, ' ', total - 10 - dl - 1);
    h[total - 1] = '\n';
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(h, 1, total, f), total);
    if (n)
        cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    uint8_t *buf = NULL;
    size_t n = 0;
    char tmp[4096];
    size_t got;
    while ((got = fread(tmp, 1, sizeof tmp, f)) > 0) {
        char *nb = realloc(buf, n + got);
        cr_assert_not_null(nb);
        memcpy(nb + n, tmp, got);
        buf = (uint8_t *) nb;
        n += got;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* The data part of a .npy image: after 10 + header length bytes (version 1.0). */
static const uint8_t *npy_data(const uint8_t *img, size_t len, size_t *dlen)
{
    cr_assert(len >= 10 && memcmp(img, "\x93NUMPY\x01\x00", 8) == 0);
    size_t off = 10 + (size_t) (img[8] | img[9] << 8);
    cr_assert(off <= len);
    *dlen = len - off;
    return img + off;
}

/* Create a variable through the wire (psctl is not involved) with collections and creator. */
static void wire_create(const char *name,
                        int dtype,
                        size_t rank,
                        const int64_t *dims,
                        int trainable,
                        const char *const *cols,
                        size_t ncols,
                        const char *creator)
{
    Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
    init.kind = PSCOPE__V1__INIT_KIND__INIT_CONSTANT;
    init.value =
        dtype == PSCOPE__V1__DTYPE__DT_FLOAT || dtype == PSCOPE__V1__DTYPE__DT_DOUBLE ? 0.5 : 3;
    ps_wc_getvar_t g;
    memset(&g, 0, sizeof g);
    g.name = name;
    g.mode = PSCOPE__V1__LOOKUP_MODE__CREATE_EXCLUSIVE;
    g.dtype = dtype;
    g.rank = rank;
    g.dims = dims;
    g.init = &init;
    g.trainable = trainable;
    g.collections = cols;
    g.ncollections = ncols;
    g.creator = creator;
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_get_variable(&wc, &g, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "create %s: %s", name, r.h->message);
    ps_wc_reply_free(&r);
}

/* The stored tensor's bytes, pulled through the wire. */
static uint8_t *wire_pull(const char *name, size_t *len, uint64_t *version)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_pull(&wc, &name, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "pull %s: %s", name, r.h->message);
    cr_assert_eq(r.h->n_tensors, 1);
    *version = r.h->tensors[0]->version;
    *len = (size_t) r.payload_len;
    uint8_t *copy = malloc(*len ? *len : 1);
    cr_assert_not_null(copy);
    if (*len)
        memcpy(copy, r.payload, *len);
    ps_wc_reply_free(&r);
    return copy;
}

static int wire_exists(const char *name)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_describe(&wc, name, &r), PS_WC_OK);
    int code = (int) r.h->code;
    ps_wc_reply_free(&r);
    cr_assert(code == 0 || code == PSCOPE__V1__CODE__NOT_FOUND, "describe %s: code %d", name, code);
    return code == 0;
}

static const char *const train_cols[] = {"trainable_variables", "variables"};
static const char *const var_cols[] = {"variables"};

static void create_model(void)
{
    int64_t w[] = {5, 5, 1, 32}, b[] = {32}, k[] = {512, 512};
    wire_create("conv1/weights", PSCOPE__V1__DTYPE__DT_FLOAT, 4, w, 1, train_cols, 2, "worker 0");
    wire_create("conv1/biases", PSCOPE__V1__DTYPE__DT_FLOAT, 1, b, 1, train_cols, 2, "worker 0");
    wire_create("fc/dense/kernel", PSCOPE__V1__DTYPE__DT_FLOAT, 2, k, 1, train_cols, 2, "worker 1");
    wire_create("global_step", PSCOPE__V1__DTYPE__DT_INT64, 0, NULL, 0, var_cols, 1, "worker 0");
}

/* ---- ping, addresses, exit codes ---- */

Test(psctl, ping_prints_version_in_text_and_json)
{
    run_t r;
    PSCTL(&r, "ping");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    char want[128];
    snprintf(want, sizeof want, "pong from %s: psd 0.1.0, server id ", addr);
    cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "got: %s", r.out);
    cr_assert_str_eq(r.err, "");
    run_free(&r);
    PSCTL(&r, "--json", "ping");
    cr_assert_eq(r.status, 0);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    snprintf(want, sizeof want, "{\"server\":\"%s\",\"version\":\"0.1.0\",\"server_id\":", addr);
    cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "got: %s", r.out);
    cr_assert(strstr(r.out, ",\"rtt_ms\":"));
    run_free(&r);
}

/* A loopback port with nothing listening: bind, read the port, close. */
static unsigned closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

Test(psctl, server_comes_from_flag_then_env)
{
    char bad[64], flag[80];
    snprintf(bad, sizeof bad, "PS_SERVER=127.0.0.1:%u", closed_port());
    run_t r;
    /* PS_SERVER pointing nowhere: exit 3; --server overrides it, in both spellings. */
    run_psctl(&r, ARGV(bad), NULL, ARGV("ping"));
    cr_assert_eq(r.status, 3, "stderr: %s", r.err);
    run_free(&r);
    run_psctl(&r, ARGV(bad), NULL, ARGV("--server", addr, "ping"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    run_free(&r);
    snprintf(flag, sizeof flag, "--server=%s", addr);
    run_psctl(&r, ARGV(bad), NULL, ARGV(flag, "ping"));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    run_free(&r);
    /* Global options may also follow the command. */
    run_psctl(&r, ARGV(bad), NULL, ARGV("ping", "--json", "-s", addr));
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert(json_doc_valid(r.out));
    run_free(&r);
}

Test(psctl, cannot_connect_is_exit_3)
{
    unsigned port = closed_port();
    char a[64], want[160];
    snprintf(a, sizeof a, "127.0.0.1:%u", port);
    run_t r;
    PSCTL(&r, "--server", a, "ls");
    cr_assert_eq(r.status, 3);
    snprintf(want, sizeof want, "error: UNAVAILABLE: failed to connect to %s: Connection refused\n",
             a);
    cr_assert_str_eq(r.err, want);
    cr_assert_str_eq(r.out, "");
    run_free(&r);
    PSCTL(&r, "--server", a, "--json", "stats");
    cr_assert_eq(r.status, 3);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    snprintf(want, sizeof want,
             "{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"failed to connect to %s: "
             "Connection refused\"}}\n",
             a);
    cr_assert_str_eq(r.out, want);
    run_free(&r);
}

/* A peer that accepts, reads the request and hangs up: the command fails in transport, exit 3. */
Test(psctl, connection_lost_mid_command_is_exit_3)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(lfd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(lfd, (struct sockaddr *) &sa, sizeof sa), 0);
    cr_assert_eq(listen(lfd, 4), 0);
    socklen_t sl = sizeof sa;
    cr_assert_eq(getsockname(lfd, (struct sockaddr *) &sa, &sl), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        alarm(20); /* bounded even if psctl never connects */
        int c = accept(lfd, NULL, NULL);
        char buf[4096];
        if (c >= 0 && read(c, buf, sizeof buf) > 0)
            close(c);
        _exit(0);
    }
    close(lfd);
    char a[64];
    snprintf(a, sizeof a, "127.0.0.1:%u", (unsigned) ntohs(sa.sin_port));
    run_t r;
    PSCTL(&r, "--server", a, "stats");
    int st = 0;
    waitpid(pid, &st, 0);
    cr_assert_eq(r.status, 3, "stderr: %s", r.err);
    cr_assert(starts_with(r.err, "error: UNAVAILABLE: connection to "), "%s", r.err);
    run_free(&r);
}

Test(psctl, usage_errors_are_exit_2)
{
    static const struct {
        const char *argv[5];
        const char *first_line;
    } cases[] = {
        {{NULL}, "psctl: no command given\n"},
        {{"frobnicate"}, "psctl: unknown command 'frobnicate'\n"},
        {{"--bogus", "ls"}, "psctl: unknown option '--bogus'\n"},
        {{"ls", "--bogus"}, "psctl: unknown option '--bogus' for ls\n"},
        {{"ls", "a/", "b/"}, "psctl: ls takes at most 1 argument (2 given)\n"},
        {{"show"}, "psctl: show needs 1 argument\n"},
        {{"stats", "extra"}, "psctl: stats takes no arguments ('extra' given)\n"},
        {{"get", "w"}, "psctl: get needs -o FILE.npy\n"},
        {{"set", "w"}, "psctl: set needs -i FILE.npy\n"},
        {{"get", "w", "-o"}, "psctl: --output needs a value (FILE.npy)\n"},
        {{"rm"}, "psctl: rm needs variable names or --prefix SCOPE/\n"},
        {{"rm", "--prefix", "conv1", "--yes"},
         "psctl: --prefix takes a scope ending in '/' (for example conv1/), got 'conv1'\n"},
        {{"rm", "--yes=1", "w"}, "psctl: --yes takes no value\n"},
        {{"--server", "nocolon", "ping"}, "psctl: bad psd address 'nocolon': expected host:port\n"},
        {{"--server"}, "psctl: --server needs a value (HOST:PORT)\n"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_t r;
        const char *argv[6] = {NULL};
        for (size_t k = 0; k < 5 && cases[i].argv[k]; k++)
            argv[k] = cases[i].argv[k];
        run_psctl(&r, NULL, NULL, argv);
        cr_assert_eq(r.status, 2, "case %zu: status %d, stderr: %s", i, r.status, r.err);
        size_t fl = strlen(cases[i].first_line);
        cr_assert(strncmp(r.err, cases[i].first_line, fl) == 0, "case %zu: got %s", i, r.err);
        cr_assert_str_eq(r.out, "", "case %zu", i);
        run_free(&r);
    }
}

Test(psctl, help_for_psctl_and_every_command)
{
    static const char *const cmds[] = {"ping", "ls", "show", "get", "set", "rm", "stats", "help"};
    run_t r;
    PSCTL(&r, "--help");
    cr_assert_eq(r.status, 0);
    cr_assert(starts_with(r.out, "usage: psctl [--server HOST:PORT] [--json] COMMAND"), "%s",
              r.out);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char line[32];
        snprintf(line, sizeof line, "\n  %-7s ", cmds[i]);
        cr_assert(strstr(r.out, line), "command %s missing from --help", cmds[i]);
    }
    run_free(&r);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        run_t a, b;
        PSCTL(&a, "help", cmds[i]);
        PSCTL(&b, cmds[i], "--help");
        cr_assert_eq(a.status, 0);
        cr_assert_eq(b.status, 0);
        cr_assert_str_eq(a.out, b.out);
        char want[64];
        snprintf(want, sizeof want, "usage: psctl [--server HOST:PORT] [--json] %s", cmds[i]);
        cr_assert(strncmp(a.out, want, strlen(want)) == 0, "got %s", a.out);
        run_free(&a);
        run_free(&b);
    }
    PSCTL(&r, "help", "ls");
    cr_assert(strstr(r.out, "  -c, --collection C     only variables in collection C\n"), "%s",
              r.out);
    run_free(&r);
    PSCTL(&r, "help", "nope");
    cr_assert_eq(r.status, 2);
    run_free(&r);
    /* Output that cannot be written is a failure (exit 1), not a silent success. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' --help > /dev/full 2> /dev/null", psctl_bin());
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
    /* --json: the command table as JSON, for psctl and for one command, however help is asked. */
    PSCTL(&r, "--json", "help");
    cr_assert_eq(r.status, 0);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    cr_assert(starts_with(r.out, "{\"commands\":[{\"name\":\"ping\","), "%s", r.out);
    run_free(&r);
    PSCTL(&r, "rm", "--help", "--json");
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out, "{\"name\":\"rm\",\"usage\":\"NAME... | --prefix SCOPE/ [--yes]\","
                            "\"summary\":\"delete variables by name or by scope\",\"options\":"
                            "[{\"name\":\"--prefix\",\"alias\":\"-p\",\"value\":\"SCOPE/\","
                            "\"help\":\"delete every variable under SCOPE/ (must end in '/')\"},"
                            "{\"name\":\"--yes\",\"alias\":\"-y\",\"value\":null,"
                            "\"help\":\"do not ask for confirmation\"}]}\n");
    run_free(&r);
}

/* ---- ls ---- */

Test(psctl, ls_prints_scopes_as_a_tree)
{
    create_model();
    run_t r;
    PSCTL(&r, "ls");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(
        r.out, "NAME         SHAPE          DTYPE       SIZE  VERSION  TRAINABLE  COLLECTIONS\n"
               "conv1/\n"
               "  biases     (32,)          float32    128 B        1  yes        "
               "trainable_variables,variables\n"
               "  weights    (5, 5, 1, 32)  float32  3.1 KiB        1  yes        "
               "trainable_variables,variables\n"
               "fc/\n"
               "  dense/\n"
               "    kernel   (512, 512)     float32  1.0 MiB        1  yes        "
               "trainable_variables,variables\n"
               "global_step  ()             int64        8 B        1  no         variables\n"
               "4 variables, 1.0 MiB\n");
    cr_assert(!strchr(r.out, '\033'), "colour without a terminal");
    run_free(&r);
    /* A prefix keeps the tree from the root; a collection filters. */
    PSCTL(&r, "ls", "fc/");
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out,
                     "NAME        SHAPE       DTYPE       SIZE  VERSION  TRAINABLE  COLLECTIONS\n"
                     "fc/\n"
                     "  dense/\n"
                     "    kernel  (512, 512)  float32  1.0 MiB        1  yes        "
                     "trainable_variables,variables\n"
                     "1 variable, 1.0 MiB\n");
    run_free(&r);
    PSCTL(&r, "ls", "--collection", "trainable_variables");
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "3 variables, "), "%s", r.out);
    cr_assert(!strstr(r.out, "global_step"));
    run_free(&r);
    PSCTL(&r, "ls", "nothing/", "-c", "variables");
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out, "no variables under 'nothing/' in collection variables\n");
    run_free(&r);
}

Test(psctl, ls_json_lists_every_field)
{
    create_model();
    run_t r;
    PSCTL(&r, "--json", "ls", "global");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    const char *want_head =
        "{\"count\":1,\"bytes\":8,\"variables\":[{\"name\":\"global_step\",\"dtype\":\"int64\","
        "\"shape\":[],\"elements\":1,\"bytes\":8,\"version\":1,\"trainable\":false,"
        "\"kind\":\"get_variable\",\"collections\":[\"variables\"],\"initializer\":\"constant\","
        "\"constraint\":\"-\",\"synchronization\":\"AUTO\",\"aggregation\":\"NONE\","
        "\"creator\":\"worker 0\",\"created_unix_ms\":";
    cr_assert_eq(strncmp(r.out, want_head, strlen(want_head)), 0, "got: %s", r.out);
    run_free(&r);
    PSCTL(&r, "ls", "--json");
    cr_assert_eq(r.status, 0);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    cr_assert_eq(strncmp(r.out, "{\"count\":4,\"bytes\":1051912,", 27), 0, "got: %s", r.out);
    cr_assert(strstr(r.out, "\"shape\":[5,5,1,32]"));
    run_free(&r);
    PSCTL(&r, "ls", "--json", "zzz");
    cr_assert_str_eq(r.out, "{\"count\":0,\"bytes\":0,\"variables\":[]}\n");
    run_free(&r);
}

Test(psctl, json_escapes_every_string)
{
    int64_t d[] = {1};
    const char *const cols[] = {"c\"q"};
    wire_create("odd", PSCOPE__V1__DTYPE__DT_FLOAT, 1, d, 1, cols, 1,
                "a \"quoted\" \\ back\tslash\nnew \x01 caf\xc3\xa9");
    run_t r;
    PSCTL(&r, "--json", "ls", "odd");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    cr_assert(strstr(r.out, "\"collections\":[\"c\\\"q\"]"), "%s", r.out);
    cr_assert(strstr(r.out, "\"creator\":\"a \\\"quoted\\\" \\\\ back\\tslash\\nnew \\u0001 "
                            "caf\xc3\xa9\""),
              "%s", r.out);
    run_free(&r);
}

/* Ten variables and a psd that answers at most 3 per LIST: ls must page through all of them. */
static void setup_small_pages(void)
{
    setup_with(ARGV("--max-vars-per-request", "3"));
}

TestSuite(psctl_paging, .init = setup_small_pages, .fini = teardown, .timeout = 120);

Test(psctl_paging, ls_pages_until_the_listing_is_complete)
{
    int64_t d[] = {2};
    char names[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "p/v%02d", 9 - i); /* created out of order */
        wire_create(names[i], PSCOPE__V1__DTYPE__DT_FLOAT, 1, d, 1, NULL, 0, "t");
    }
    run_t r;
    PSCTL(&r, "--json", "ls");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert(json_doc_valid(r.out));
    cr_assert_eq(strncmp(r.out, "{\"count\":10,", 12), 0, "got: %s", r.out);
    const char *p = r.out;
    for (int i = 0; i < 10; i++) {
        char want[32];
        snprintf(want, sizeof want, "\"name\":\"p/v%02d\"", i);
        const char *q = strstr(p, want);
        cr_assert_not_null(q, "%s missing or out of order", want);
        p = q + 1;
    }
    run_free(&r);
}

/* ---- show ---- */

Test(psctl, show_prints_statistics_with_nan_and_inf_counted)
{
    float v[6] = {1.5f, -2.0f, 0.0f, 3.25f, 0.0f, 0.0f};
    uint32_t nan = 0x7fc00000u, inf = 0x7f800000u;
    memcpy(&v[2], &nan, 4);
    memcpy(&v[5], &inf, 4);
    char f[128];
    write_npy(path_in_dir(f, sizeof f, "v.npy"),
              "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", v, sizeof v);
    run_t r;
    PSCTL(&r, "set", "stats/v", "-i", f);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    run_free(&r);
    PSCTL(&r, "show", "stats/v");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    static const char *const rows[] = {
        "name         stats/v\n",
        "shape        (2, 3)\n",
        "dtype        float32\n",
        "size         24 B (6 elements)\n",
        "version      1\n",
        "trainable    yes\n",
        "collections  -\n",
        "initializer  from_value\n",
        "constraint   -\n",
        "sync         AUTO\n",
        "aggregation  NONE\n",
        "creator      psctl\n",
        "min          -2\n",
        "max          3.25\n",
        "mean         0.6875\n",
        "std          1.93144\n",
        "l2 norm      4.1003\n",
        "nan          1\n",
        "inf          1 (+inf 1, -inf 0)\n",
        "first 6      [1.5, -2, nan, 3.25, 0, inf]\n",
        "note: min, max, mean, std and l2 norm are over the 4 finite elements\n",
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        cr_assert(strstr(r.out, rows[i]), "missing row %s in:\n%s", rows[i], r.out);
    run_free(&r);
    PSCTL(&r, "--json", "show", "stats/v");
    cr_assert_eq(r.status, 0);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    cr_assert(strstr(r.out, "\"stats\":{\"finite\":4,\"nan\":1,\"pos_inf\":1,\"neg_inf\":0,"
                            "\"min\":-2,\"max\":3.25,\"mean\":0.6875,\"std\":1.9314"),
              "%s", r.out);
    cr_assert(strstr(r.out, "\"first\":[1.5,-2,null,3.25,0,null]}\n"), "%s", r.out);
    run_free(&r);
}

Test(psctl, show_integers_and_first_values_truncated)
{
    int64_t v[12];
    for (int i = 0; i < 12; i++)
        v[i] = (int64_t) i * 1000000000000LL - 3;
    char f[128];
    write_npy(path_in_dir(f, sizeof f, "i.npy"),
              "{'descr': '<i8', 'fortran_order': False, 'shape': (12,), }", v, sizeof v);
    run_t r;
    PSCTL(&r, "set", "ints", "-i", f);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    run_free(&r);
    PSCTL(&r, "show", "ints");
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "min          -3\n"), "%s", r.out);
    cr_assert(strstr(r.out, "max          10999999999997\n"), "%s", r.out);
    cr_assert(strstr(r.out, "first 10     [-3, 999999999997, 1999999999997, 2999999999997, "
                            "3999999999997, 4999999999997, 5999999999997, 6999999999997, "
                            "7999999999997, 8999999999997, ...]\n"),
              "%s", r.out);
    cr_assert(!strstr(r.out, "nan "), "integers have no NaN row");
    run_free(&r);
    PSCTL(&r, "show", "nope");
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "error: NOT_FOUND: Variable nope does not exist\n");
    run_free(&r);
    PSCTL(&r, "--json", "show", "nope");
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.out, "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"Variable nope does "
                            "not exist\"}}\n");
    run_free(&r);
}

/* ---- set / get: the .npy round trip ---- */

Test(psctl, npy_round_trip_keeps_bytes_for_every_dtype)
{
    static const struct {
        const char *descr;
        size_t esize;
    } kinds[] = {{"<f4", 4}, {"<f8", 8}, {"<i4", 4}, {"<i8", 8}};

    for (size_t k = 0; k < 4; k++) {
        uint8_t data[3 * 4 * 8];
        size_t n = 12 * kinds[k].esize;
        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t) (i * 37 + k * 11 + 1);
        if (kinds[k].descr[1] == 'f') {
            /* Keep the float patterns finite but arbitrary; NaN payloads would survive too. */
            for (size_t i = kinds[k].esize - 1; i < n; i += kinds[k].esize)
                data[i] = 0x3f;
        }
        char dict[128], in[128], out[128], name[32];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (3, 4), }",
                 kinds[k].descr);
        snprintf(name, sizeof name, "rt/v%zu", k);
        write_npy(path_in_dir(in, sizeof in, "in.npy"), dict, data, n);
        run_t r;
        PSCTL(&r, "set", name, "-i", in);
        cr_assert_eq(r.status, 0, "stderr: %s", r.err);
        char want[256];
        snprintf(want, sizeof want, "created %s (3, 4) %s (%zu B) from %s, version 1\n", name,
                 kinds[k].descr[1] == 'f' ? (kinds[k].esize == 4 ? "float32" : "float64")
                                          : (kinds[k].esize == 4 ? "int32" : "int64"),
                 n, in);
        cr_assert_str_eq(r.out, want);
        run_free(&r);
        /* The stored tensor is the file's data, byte for byte. */
        size_t slen;
        uint64_t ver;
        uint8_t *stored = wire_pull(name, &slen, &ver);
        cr_assert_eq(slen, n);
        cr_assert_eq(memcmp(stored, data, n), 0);
        cr_assert_eq(ver, 1);
        free(stored);
        /* get writes it back out: same data, a header that parses to the same dtype and shape. */
        PSCTL(&r, "get", name, "-o", path_in_dir(out, sizeof out, "out.npy"));
        cr_assert_eq(r.status, 0, "stderr: %s", r.err);
        run_free(&r);
        size_t ilen, olen, idl, odl;
        uint8_t *iimg = read_file(in, &ilen);
        uint8_t *oimg = read_file(out, &olen);
        const uint8_t *id = npy_data(iimg, ilen, &idl);
        const uint8_t *od = npy_data(oimg, olen, &odl);
        cr_assert_eq(idl, odl);
        cr_assert_eq(memcmp(id, od, idl), 0);
        cr_assert_eq((olen - odl) % 64, 0, "psctl's data starts 64-byte aligned");
        cr_assert(olen - odl >= 10 + strlen(dict) && memcmp(oimg + 10, dict, strlen(dict)) == 0,
                  "header %.*s", (int) (olen - odl), oimg);
        free(iimg);
        free(oimg);
        /* The file psctl wrote is accepted by psctl set: an assign, version 2. */
        PSCTL(&r, "--json", "set", name, "-i", out);
        cr_assert_eq(r.status, 0, "stderr: %s", r.err);
        cr_assert(json_doc_valid(r.out));
        cr_assert(strstr(r.out, "\"created\":false,"), "%s", r.out);
        cr_assert(strstr(r.out, "\"version\":2}"), "%s", r.out);
        run_free(&r);
        stored = wire_pull(name, &slen, &ver);
        cr_assert_eq(memcmp(stored, data, n), 0);
        cr_assert_eq(ver, 2);
        free(stored);
    }
}

/* A python3 that imports numpy (Debian's python3-numpy), or NULL. */
static const char *numpy_python(void)
{
    static const char *const cands[] = {"/usr/bin/python3", "python3"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy' > /dev/null 2>&1", cands[i]);
        if (system(cmd) == 0)
            return cands[i];
    }
    return NULL;
}

/* Run a python script (written to the test directory) with the directory as argv[1]. */
static int run_python(const char *python, const char *name, const char *code)
{
    char path[128], cmd[512];
    FILE *f = fopen(path_in_dir(path, sizeof path, name), "w");
    cr_assert_not_null(f);
    fputs(code, f);
    cr_assert_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "%s %s %s", python, path, dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Interoperability with NumPy itself: files numpy.save wrote (format 1.0 and 2.0, every dtype,
 * scalar) go in with psctl set, come out with psctl get, and numpy.load reads them back equal;
 * the layouts psctl refuses (Fortran order, big-endian) are refused with their message. */
Test(psctl, numpy_round_trip)
{
    const char *python = numpy_python();
    if (!python)
        PS_SKIP_OR_FAIL("no python3 with numpy (Debian package python3-numpy)");
    static const char *const names[] = {"f4", "f8", "i4", "i8", "scalar", "v2"};
    cr_assert_eq(run_python(python, "save.py",
                            "import os, sys\n"
                            "import numpy as np\n"
                            "os.chdir(sys.argv[1])\n"
                            "rng = np.random.default_rng(7)\n"
                            "np.save('f4.npy', np.arange(12, dtype='<f4').reshape(3, 4) * 0.5)\n"
                            "np.save('f8.npy', rng.standard_normal((2, 3, 4)))\n"
                            "np.save('i4.npy', np.arange(-3, 4, dtype='<i4'))\n"
                            "np.save('i8.npy', np.array([[2**40, -1]], dtype='<i8'))\n"
                            "np.save('scalar.npy', np.float32(-0.25))\n"
                            "with open('v2.npy', 'wb') as f:\n"
                            "    np.lib.format.write_array(f, np.ones((2, 2)), version=(2, 0))\n"
                            "np.save('fortran.npy', np.asfortranarray(np.ones((2, 3), 'f4')))\n"
                            "np.save('big.npy', np.ones(3, dtype='>f4'))\n"),
                 0, "numpy could not write the files");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char in[128], out[128], file[32], name[32];
        snprintf(file, sizeof file, "%s.npy", names[i]);
        snprintf(name, sizeof name, "np/%s", names[i]);
        run_t r;
        PSCTL(&r, "set", name, "-i", path_in_dir(in, sizeof in, file));
        cr_assert_eq(r.status, 0, "%s: %s", file, r.err);
        run_free(&r);
        snprintf(file, sizeof file, "out_%s.npy", names[i]);
        PSCTL(&r, "get", name, "-o", path_in_dir(out, sizeof out, file));
        cr_assert_eq(r.status, 0, "%s: %s", file, r.err);
        run_free(&r);
    }
    /* The stored bytes of f4 are numpy's float32 values. */
    float want[12];
    for (int i = 0; i < 12; i++)
        want[i] = (float) i * 0.5f;
    size_t len;
    uint64_t ver;
    uint8_t *stored = wire_pull("np/f4", &len, &ver);
    cr_assert_eq(len, sizeof want);
    cr_assert_eq(memcmp(stored, want, sizeof want), 0);
    free(stored);
    cr_assert_eq(run_python(python, "load.py",
                            "import os, sys\n"
                            "import numpy as np\n"
                            "os.chdir(sys.argv[1])\n"
                            "for n in ['f4', 'f8', 'i4', 'i8', 'scalar', 'v2']:\n"
                            "    a = np.load(n + '.npy')\n"
                            "    b = np.load('out_' + n + '.npy')\n"
                            "    assert a.dtype == b.dtype and a.shape == b.shape, n\n"
                            "    assert a.tobytes() == b.tobytes(), n\n"
                            "    assert b.flags['C_CONTIGUOUS'], n\n"),
                 0, "numpy.load disagrees with the files psctl wrote");
    char f[128], msg[512];
    run_t r;
    PSCTL(&r, "set", "np/bad", "-i", path_in_dir(f, sizeof f, "fortran.npy"));
    cr_assert_eq(r.status, 1);
    snprintf(msg, sizeof msg,
             "error: INVALID_ARGUMENT: %s: unsupported .npy layout: fortran_order is True (psctl "
             "reads C order; save numpy.ascontiguousarray(a))\n",
             f);
    cr_assert_str_eq(r.err, msg);
    run_free(&r);
    PSCTL(&r, "set", "np/bad", "-i", path_in_dir(f, sizeof f, "big.npy"));
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "unsupported .npy dtype '>f4': big-endian data is not supported"), "%s",
              r.err);
    run_free(&r);
    cr_assert(!wire_exists("np/bad"));
}

Test(psctl, get_json_and_scalar)
{
    double v = -0.25;
    char in[128], out[128];
    write_npy(path_in_dir(in, sizeof in, "s.npy"),
              "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", &v, sizeof v);
    run_t r;
    PSCTL(&r, "set", "lr", "-i", in);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    run_free(&r);
    PSCTL(&r, "--json", "get", "lr", "-o", path_in_dir(out, sizeof out, "lr.npy"));
    cr_assert_eq(r.status, 0);
    char want[256];
    snprintf(want, sizeof want,
             "{\"name\":\"lr\",\"file\":\"%s\",\"dtype\":\"float64\",\"shape\":[],\"bytes\":8,"
             "\"version\":1}\n",
             out);
    cr_assert_str_eq(r.out, want);
    run_free(&r);
    size_t len, dl;
    uint8_t *img = read_file(out, &len);
    const uint8_t *d = npy_data(img, len, &dl);
    cr_assert_eq(dl, 8);
    cr_assert_eq(memcmp(d, &v, 8), 0);
    free(img);
    /* A missing variable: exit 1 and no file. */
    PSCTL(&r, "get", "missing", "-o", path_in_dir(out, sizeof out, "m.npy"));
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "error: NOT_FOUND: Variable missing does not exist\n");
    struct stat st;
    cr_assert_neq(stat(out, &st), 0);
    run_free(&r);
}

Test(psctl, set_checks_shape_and_dtype_exactly)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    double b[6] = {1, 2, 3, 4, 5, 6};
    char fa[128], ft[128], fd[128];
    write_npy(path_in_dir(fa, sizeof fa, "a.npy"),
              "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", a, sizeof a);
    write_npy(path_in_dir(ft, sizeof ft, "t.npy"),
              "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", a, sizeof a);
    write_npy(path_in_dir(fd, sizeof fd, "d.npy"),
              "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", b, sizeof b);
    run_t r;
    PSCTL(&r, "set", "m", "-i", fa);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    run_free(&r);
    PSCTL(&r, "set", "m", "-i", ft);
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "error: INVALID_ARGUMENT: cannot assign to m: it has shape (2, 3) and "
                            "dtype float32, the value has shape (3, 2) and dtype float32\n");
    run_free(&r);
    PSCTL(&r, "set", "m", "-i", fd);
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "error: INVALID_ARGUMENT: cannot assign to m: it has shape (2, 3) and "
                            "dtype float32, the value has shape (2, 3) and dtype float64\n");
    run_free(&r);
    size_t len;
    uint64_t ver;
    uint8_t *stored = wire_pull("m", &len, &ver);
    cr_assert_eq(ver, 1, "a refused set must not touch the variable");
    cr_assert_eq(memcmp(stored, a, sizeof a), 0);
    free(stored);
}

Test(psctl, set_rejects_bad_files_before_touching_psd)
{
    char f[128], want[512];
    int64_t x = 7;
    write_npy(path_in_dir(f, sizeof f, "be.npy"),
              "{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }", &x, sizeof x);
    run_t r;
    PSCTL(&r, "set", "bad", "-i", f);
    cr_assert_eq(r.status, 1);
    snprintf(want, sizeof want,
             "error: INVALID_ARGUMENT: %s: unsupported .npy dtype '>i8': big-endian data is not "
             "supported (psctl supports '<f4', '<f8', '<i4', '<i8')\n",
             f);
    cr_assert_str_eq(r.err, want);
    run_free(&r);
    write_npy(f, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", &x, sizeof x);
    PSCTL(&r, "set", "bad", "-i", f);
    cr_assert_eq(r.status, 1);
    snprintf(want, sizeof want,
             "error: INVALID_ARGUMENT: %s: truncated .npy file: 8 data bytes, the shape needs "
             "16\n",
             f);
    cr_assert_str_eq(r.err, want);
    run_free(&r);
    PSCTL(&r, "--json", "set", "bad", "-i", path_in_dir(f, sizeof f, "none.npy"));
    cr_assert_eq(r.status, 1);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    snprintf(want, sizeof want, "error: NOT_FOUND: cannot open %s: No such file or directory\n", f);
    cr_assert_str_eq(r.err, want);
    run_free(&r);
    cr_assert(!wire_exists("bad"));
}

/* ---- rm ---- */

Test(psctl, rm_needs_yes_without_a_terminal)
{
    create_model();
    run_t r;
    PSCTL(&r, "rm", "global_step");
    cr_assert_eq(r.status, 2);
    cr_assert(starts_with(r.err, "psctl: refusing to delete without confirmation: standard input "
                                 "is not a terminal; pass --yes to delete without asking\n"),
              "%s", r.err);
    run_free(&r);
    /* Even with "y" piped in: a pipe is not a terminal. */
    run_psctl(&r, NULL, "y\n", ARGV("rm", "global_step"));
    cr_assert_eq(r.status, 2);
    run_free(&r);
    cr_assert(wire_exists("global_step"));
    /* An unknown name fails the whole delete: nothing is removed. */
    PSCTL(&r, "rm", "--yes", "global_step", "nope");
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "error: NOT_FOUND: Variable nope does not exist\n");
    run_free(&r);
    cr_assert(wire_exists("global_step"));
    PSCTL(&r, "rm", "-y", "global_step");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "deleted 1 variable\n");
    run_free(&r);
    cr_assert(!wire_exists("global_step"));
    PSCTL(&r, "--json", "rm", "--prefix", "conv1/", "--yes");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "{\"deleted\":2}\n");
    run_free(&r);
    cr_assert(!wire_exists("conv1/weights"));
    cr_assert(!wire_exists("conv1/biases"));
    cr_assert(wire_exists("fc/dense/kernel"));
}

Test(psctl, rm_asks_on_a_terminal)
{
    create_model();
    run_t r;
    run_pty(&r, NULL, "n\n", ARGV("rm", "--prefix", "conv1/"));
    cr_assert_eq(r.status, 1, "output: %s", r.out);
    char want[160];
    snprintf(want, sizeof want, "Delete 2 variables under conv1/ from %s? [y/N] ", addr);
    cr_assert(strstr(r.out, want), "output: %s", r.out);
    cr_assert(strstr(r.out, "aborted; nothing deleted"), "output: %s", r.out);
    run_free(&r);
    cr_assert(wire_exists("conv1/weights"));
    run_pty(&r, NULL, "yes\n", ARGV("rm", "global_step", "--prefix", "conv1/"));
    cr_assert_eq(r.status, 0, "output: %s", r.out);
    snprintf(want, sizeof want, "Delete global_step and 2 variables under conv1/ from %s? [y/N] ",
             addr);
    cr_assert(strstr(r.out, want), "output: %s", r.out);
    cr_assert(strstr(r.out, "deleted 3 variables"), "output: %s", r.out);
    run_free(&r);
    cr_assert(!wire_exists("conv1/weights"));
    cr_assert(!wire_exists("global_step"));
    /* --yes skips the question on a terminal too. */
    run_pty(&r, NULL, NULL, ARGV("rm", "--yes", "fc/dense/kernel"));
    cr_assert_eq(r.status, 0, "output: %s", r.out);
    cr_assert(!strstr(r.out, "[y/N]"));
    run_free(&r);
}

/* ---- stats and colour ---- */

Test(psctl, stats_in_text_and_json)
{
    run_t r;
    PSCTL(&r, "stats");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    char want[128];
    snprintf(want, sizeof want, "server           psd 0.1.0 at %s\n", addr);
    cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s", r.out);
    cr_assert(strstr(r.out, "\nstate            ready (recovery took "), "%s", r.out);
    cr_assert(strstr(r.out, "\nconnections      "));
    cr_assert(strstr(r.out, "\nbytes            in "));
    cr_assert(strstr(r.out, "\nvariables        0 (0 B)\n"), "%s", r.out);
    cr_assert(strstr(r.out, "\nmemory           "));
    cr_assert(strstr(r.out, "\npayload budget   0 B in flight of 2.0 GiB, 0 refused\n"), "%s",
              r.out);
    cr_assert(strstr(r.out, "\nwrite-ahead log  0 records, 0 B, 0 writes; fsync 0, p50 -, p99 -\n"),
              "%s", r.out);
    cr_assert(strstr(r.out, "\ncheckpoints      0 written, 0 failed; none since start\n"), "%s",
              r.out);
    cr_assert(strstr(r.out, "\nMETHOD "), "%s", r.out);
    unsigned long long v[3];
    cr_assert(table_row(r.out, "STATS", v, 3), "%s", r.out);
    cr_assert(v[0] == 1 && v[1] == 0 && v[2] == 0, "%s", r.out);
    cr_assert(table_row(r.out, "DESCRIBE", v, 3), "%s", r.out);
    cr_assert(v[0] == 0 && v[1] == 0 && v[2] == 0, "%s", r.out);
    run_free(&r);
    PSCTL(&r, "show", "nope"); /* one DESCRIBE error */
    run_free(&r);
    PSCTL(&r, "stats");
    cr_assert(strstr(r.out, "  NOT_FOUND=1\n"), "error replies by code: %s", r.out);
    run_free(&r);
    PSCTL(&r, "--json", "stats");
    cr_assert_eq(r.status, 0);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    cr_assert(strstr(r.out, "\"variables\":0,\"variable_bytes\":0,"), "%s", r.out);
    cr_assert(strstr(r.out, "\"DESCRIBE\":{\"calls\":1,\"errors\":1,\"rejected\":0,"
                            "\"replies\":{\"NOT_FOUND\":1},\"latency\":{\"count\":1,"),
              "%s", r.out);
    cr_assert(strstr(r.out, "\"state\":\"ready\","), "%s", r.out);
    cr_assert(strstr(r.out, "\"payload_budget_bytes\":2147483648,"), "%s", r.out);
    cr_assert(strstr(r.out, "\"STATS\":{\"calls\":3,"), "%s", r.out);
    run_free(&r);
}

Test(psctl, colour_only_on_a_terminal_and_never_with_no_color)
{
    create_model();
    run_t r;
    /* Pipes: no colour, NO_COLOR or not. */
    PSCTL(&r, "ls");
    cr_assert(!strchr(r.out, '\033') && !strchr(r.err, '\033'));
    run_free(&r);
    PSCTL(&r, "show", "nope");
    cr_assert(!strchr(r.err, '\033'), "%s", r.err);
    run_free(&r);
    /* A terminal: colour (bold header, blue scopes). */
    run_pty(&r, NULL, NULL, ARGV("ls"));
    cr_assert_eq(r.status, 0, "output: %s", r.out);
    cr_assert(strstr(r.out, "\033[1mNAME"), "output: %s", r.out);
    cr_assert(strstr(r.out, "\033[34mconv1/"), "output: %s", r.out);
    run_free(&r);
    /* A terminal with NO_COLOR: none. An empty NO_COLOR does not count (no-color.org). */
    run_pty(&r, ARGV("NO_COLOR=1"), NULL, ARGV("ls"));
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "NAME") && !strchr(r.out, '\033'), "output: %s", r.out);
    run_free(&r);
    run_pty(&r, ARGV("NO_COLOR=1"), NULL, ARGV("show", "nope"));
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.out, "error: NOT_FOUND") && !strchr(r.out, '\033'), "output: %s", r.out);
    run_free(&r);
    run_pty(&r, ARGV("NO_COLOR="), NULL, ARGV("stats"));
    cr_assert(strstr(r.out, "\033[1mMETHOD"), "output: %s", r.out);
    run_free(&r);
}

/* A checkpoint path the caller got wrong is the caller's error (NOT_FOUND, INVALID_ARGUMENT), never
 * INTERNAL, which PROTOCOL.md keeps for psd's own bugs; psctl exits 1 either way. */
Test(psctl, save_and_restore_paths_the_caller_got_wrong_are_not_internal)
{
    create_model();
    run_t r;
    PSCTL(&r, "save", "/nonexistent/x.ckpt");
    cr_assert_eq(r.status, 1, "stderr: %s", r.err);
    cr_assert(starts_with(r.err, "error: NOT_FOUND: cannot create checkpoint /nonexistent/x.ckpt "),
              "%s", r.err);
    run_free(&r);
    PSCTL(&r, "save", dir); /* a directory: the file cannot be renamed over it */
    cr_assert_eq(r.status, 1, "stderr: %s", r.err);
    cr_assert(starts_with(r.err, "error: INVALID_ARGUMENT: checkpoint "), "%s", r.err);
    cr_assert(strstr(r.err, "Is a directory"), "%s", r.err);
    run_free(&r);
    char p[128];
    PSCTL(&r, "save", path_in_dir(p, sizeof p, "no/such/dir/x.ckpt"));
    cr_assert_eq(r.status, 1);
    cr_assert(starts_with(r.err, "error: NOT_FOUND: "), "%s", r.err);
    run_free(&r);
    PSCTL(&r, "restore", "/nonexistent/x.ckpt"); /* TensorFlow's ValueError text */
    cr_assert_eq(r.status, 1);
    cr_assert(starts_with(r.err, "error: INVALID_ARGUMENT: ") &&
                  strstr(r.err, "/nonexistent/x.ckpt"),
              "%s", r.err);
    run_free(&r);
    PSCTL(&r, "--json", "save", "/nonexistent/x.ckpt");
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.out, "{\"error\":{\"code\":\"NOT_FOUND\","), "%s", r.out);
    run_free(&r);
}

/* psd's messages carry the caller's bytes back (here a name): what a terminal would act on is
 * escaped (as redis-cli does), printable UTF-8 is kept; JSON output escapes as JSON. */
Test(psctl, control_characters_in_messages_are_escaped)
{
    run_t r;
    PSCTL(&r, "show",
          "a\x1b[2Jb\tc\\d\xc2\x9b"
          "e\xc3\xa9");
    cr_assert_eq(r.status, 1, "stderr: %s", r.err);
    cr_assert(strchr(r.err, 0x1b) == NULL, "no raw ESC reaches the terminal: %s", r.err);
    cr_assert(strchr(r.err, '\t') == NULL, "no raw TAB: %s", r.err);
    cr_assert(strstr(r.err, "'a\\x1b[2Jb\\tc\\\\d\\xc2\\x9be\xc3\xa9'"), "escaped: %s", r.err);
    cr_assert_eq(strchr(r.err, '\n'), r.err + strlen(r.err) - 1, "one line: %s", r.err);
    run_free(&r);
    PSCTL(&r, "save", "/nonexistent/\x1b]0;title\x07x.ckpt");
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "/nonexistent/\\x1b]0;title\\x07x.ckpt"), "%s", r.err);
    cr_assert(strchr(r.err, 0x07) == NULL && strchr(r.err, 0x1b) == NULL, "%s", r.err);
    run_free(&r);
    PSCTL(&r, "--json", "show", "a\x1b[2Jb");
    cr_assert_eq(r.status, 1);
    cr_assert(json_doc_valid(r.out), "not JSON: %s", r.out);
    cr_assert(strstr(r.out, "a\\u001b[2Jb"), "%s", r.out);
    run_free(&r);
}

/* ---- top ---- */

typedef struct puller {
    uint16_t port;
    volatile int stop;
    int pulls;
} puller_t;

/* Pull conv1/weights over its own connection until told to stop (at most 20 s). */
static void *pull_loop(void *arg)
{
    puller_t *p = arg;
    ps_wc_t c;
    if (ps_wc_connect(&c, p->port, 5000) != 0)
        return NULL;
    const char *names[] = {"conv1/weights"};
    int64_t end = now_ms() + 20000;
    while (!p->stop && now_ms() < end) {
        ps_wc_reply_t r;
        if (ps_wc_pull(&c, names, 1, &r) != PS_WC_OK)
            break;
        ps_wc_reply_free(&r);
        p->pulls++;
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ps_wc_close(&c);
    return NULL;
}

Test(psctl, top_prints_plain_reports_when_not_a_terminal)
{
    create_model();
    puller_t pl = {.port = psd.port};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, pull_loop, &pl), 0);
    run_t r;
    PSCTL(&r, "top", "--count", "2", "--interval", "0.5", "--rows", "3");
    pl.stop = 1;
    pthread_join(th, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_null(strchr(r.out, '\033'), "no escape sequences off a terminal: %s", r.out);
    /* Two reports, each a header, a method table and the busiest variables. */
    char head[128];
    snprintf(head, sizeof head, "psd 0.1.0 at %s  state ready  uptime ", addr);
    const char *first = strstr(r.out, head);
    cr_assert_not_null(first, "%s", r.out);
    cr_assert_not_null(strstr(first + 1, head), "a second report: %s", r.out);
    cr_assert(strstr(r.out, "\nMETHOD  REQ/S  ERR/S"), "%s", r.out);
    const char *pull = strstr(r.out, "\nPULL ");
    cr_assert_not_null(pull, "PULL has a rate: %s", r.out);
    cr_assert_gt(strtod(pull + 5, NULL), 0.0, "%s", r.out);
    const char *busy = strstr(r.out, "BUSIEST VARIABLES");
    cr_assert_not_null(busy, "%s", r.out);
    const char *row = strstr(busy, "\nconv1/weights ");
    cr_assert_not_null(row, "the pulled variable is the busiest: %s", r.out);
    cr_assert_gt(strtod(row + 14, NULL), 0.0, "its reads per second: %s", r.out);
    run_free(&r);
    PSCTL(&r, "top", "--interval", "0");
    cr_assert_eq(r.status, 2, "a bad interval is a usage error");
    run_free(&r);
    PSCTL(&r, "--json", "top");
    cr_assert_eq(r.status, 2, "top has no JSON output");
    run_free(&r);
}

Test(psctl, top_redraws_a_terminal_screen_until_q)
{
    run_t r;
    run_pty_prompt(&r, NULL, "BUSIEST VARIABLES", "q", ARGV("top", "--interval", "0.3"));
    cr_assert_eq(r.status, 0, "output: %s", r.out);
    cr_assert(strstr(r.out, "\033[H\033[2J"), "the screen is cleared and redrawn: %s", r.out);
    cr_assert(strstr(r.out, "(q to quit)"), "%s", r.out);
    run_free(&r);
}
