/* psd's option table and everything it drives: defaults, argv parsing ("--name value" or
 * "--name=value", sizes with K/M/G suffixes), bounds checks, get/set by name (with a mutable flag
 * for run-time changes) and the --help text. Adding an option is one row here plus its field. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <ps/internal/frame.h>
#include <ps/internal/log.h>

typedef enum {
    CFG_STRING,
    CFG_U64,
    CFG_SIZE,
    CFG_LOGLEVEL,
    CFG_THREADS /* a count, or "cores": the number of CPUs psd may run on */
} cfg_type_t;

#define CFG_MUTABLE 1u

typedef struct cfg_desc {
    const char *name;
    cfg_type_t type;
    size_t offset;
    uint64_t min, max;
    const char *def; /* default, as text */
    unsigned flags;
    const char *metavar;
    const char *help;
} cfg_desc_t;

#define OFF(f) offsetof(psd_config_t, f)
#define KiB    ((uint64_t) 1 << 10)
#define MiB    ((uint64_t) 1 << 20)
#define GiB    ((uint64_t) 1 << 30)
#define TiB    ((uint64_t) 1 << 40)

static const cfg_desc_t descs[] = {
    {"listen", CFG_STRING, OFF(listen), 0, 0, "127.0.0.1:7070", 0, "HOST:PORT",
     "address to listen on; port 0 picks a free port"},
    {"port-file", CFG_STRING, OFF(port_file), 0, 0, "", 0, "FILE",
     "after listening, write the port number here (atomically: temp file + rename)"},
    {"log-level", CFG_LOGLEVEL, OFF(log_level), 0, 0, "notice", CFG_MUTABLE, "LEVEL",
     "debug, verbose, notice or warning (stderr)"},
    {"max-header-bytes", CFG_SIZE, OFF(max_header_bytes), 64, UINT32_MAX, "4M", 0, "BYTES",
     "largest frame header accepted or sent"},
    {"max-payload-bytes", CFG_SIZE, OFF(max_payload_bytes), 0, TiB, "1G", 0, "BYTES",
     "largest frame payload accepted (and largest variable)"},
    {"max-vars-per-request", CFG_U64, OFF(max_vars_per_request), 1, (uint64_t) 1 << 24, "65536",
     CFG_MUTABLE, "N", "most names, tensors or update items in one request"},
    {"max-connections", CFG_U64, OFF(max_connections), 1, (uint64_t) 1 << 20, "1024", CFG_MUTABLE,
     "N", "connections beyond this are refused (RESOURCE_EXHAUSTED, then closed)"},
    {"out-high-water", CFG_SIZE, OFF(out_high_water), 1, TiB, "64M", CFG_MUTABLE, "BYTES",
     "stop reading a connection whose unsent reply bytes exceed this"},
    {"out-low-water", CFG_SIZE, OFF(out_low_water), 0, TiB, "16M", CFG_MUTABLE, "BYTES",
     "resume reading once unsent reply bytes fall below this"},
    {"out-hard-limit", CFG_SIZE, OFF(out_hard_limit), 0, UINT64_MAX, "0", CFG_MUTABLE, "BYTES",
     "close a connection whose unsent reply bytes exceed this (0 = off)"},
    {"max-pending-requests", CFG_U64, OFF(max_pending_requests), 1, (uint64_t) 1 << 24, "4096",
     CFG_MUTABLE, "N", "stop reading a connection with this many replies not yet written"},
    {"read-timeout-ms", CFG_U64, OFF(read_timeout_ms), 0, (uint64_t) 1 << 40, "30000", CFG_MUTABLE,
     "MS", "a partial frame followed by this much silence: DEADLINE_EXCEEDED, close (0 = off)"},
    {"max-memory", CFG_SIZE, OFF(max_memory), 0, UINT64_MAX, "0", CFG_MUTABLE, "BYTES",
     "refuse requests that would take psd's allocated bytes past this (0 = off)"},
    {"max-inflight-payload", CFG_SIZE, OFF(max_inflight_payload), 1, UINT64_MAX, "2G", CFG_MUTABLE,
     "BYTES",
     "announced payload bytes psd receives at once over all connections; a request past it waits "
     "(its connection is not read) until it fits (at least --max-payload-bytes)"},
    {"max-inflight-payload-per-peer", CFG_SIZE, OFF(max_inflight_payload_per_peer), 0, UINT64_MAX,
     "0", CFG_MUTABLE, "BYTES",
     "the most of that budget one IP address may hold; 0 = half of it, at least "
     "--max-payload-bytes"},
    {"admission-timeout-ms", CFG_U64, OFF(admission_timeout_ms), 0, (uint64_t) 1 << 40, "10000",
     CFG_MUTABLE, "MS",
     "a request waiting this long for payload budget gets UNAVAILABLE with a retry hint (0 = "
     "waits as long as it takes)"},
    {"min-upload-rate", CFG_SIZE, OFF(min_upload_rate), 0, UINT64_MAX, "64K", CFG_MUTABLE, "BYTES",
     "bytes per second an admitted payload must arrive at, or it loses its reservation "
     "and its connection (DEADLINE_EXCEEDED; 0 = off)"},
    {"upload-rate-window-ms", CFG_U64, OFF(upload_rate_window_ms), 100, (uint64_t) 1 << 40, "10000",
     CFG_MUTABLE, "MS", "the window --min-upload-rate is measured over"},
    {"shutdown-timeout-ms", CFG_U64, OFF(shutdown_timeout_ms), 0, (uint64_t) 1 << 32, "5000", 0,
     "MS", "on SIGINT/SIGTERM, how long unsent replies may take to flush"},
    {"io-threads", CFG_THREADS, OFF(io_threads), 0, 256, "cores", 0, "N",
     "threads beside the loop thread that send large replies and receive large payloads (64 KiB "
     "and more), so the loop "
     "thread's time goes to requests; \"cores\" = one per CPU, 0 = the loop does all its I/O"},
    {"metrics-listen", CFG_STRING, OFF(metrics_listen), 0, 0, "", 0, "HOST:PORT",
     "serve /metrics (Prometheus), /healthz and /readyz over HTTP here (\"\" = off; port 0 picks "
     "one)"},
    {"metrics-port-file", CFG_STRING, OFF(metrics_port_file), 0, 0, "", 0, "FILE",
     "after the metrics port listens (before recovery), write its number here"},
    {"data-dir", CFG_STRING, OFF(data_dir), 0, 0, "", 0, "DIR",
     "keep a write-ahead log and checkpoints here and recover from them at start (\"\" = none)"},
    {"fsync", CFG_STRING, OFF(fsync), 0, 0, "everysec", 0, "POLICY",
     "log fsync policy: always (before each reply), everysec, or no (Redis appendfsync)"},
    {"checkpoint-interval", CFG_U64, OFF(checkpoint_interval_s), 0, (uint64_t) 1 << 32, "300", 0,
     "SECONDS", "write a checkpoint and truncate the log this often (0 = not on a timer)"},
    {"checkpoint-log-bytes", CFG_SIZE, OFF(checkpoint_log_bytes), 0, UINT64_MAX, "256M", 0, "BYTES",
     "write a checkpoint once the log grows past this (0 = not on size)"},
    {"everysec-max-lag-ms", CFG_U64, OFF(everysec_max_lag_ms), 1000, (uint64_t) 1 << 32, "2000",
     CFG_MUTABLE, "MS",
     "--fsync everysec: once the oldest unsynced record is this old, replies wait for the sync "
     "(Redis's delayed write), so a power loss loses at most this much"},
    {"users", CFG_STRING, OFF(users), 0, 0, "", CFG_MUTABLE, "FILE",
     "users file (NAME ROLE HASH [PATTERN...] per line): every connection must AUTH first; "
     "re-read on SIGHUP or when set at run time (\"\" = open to anyone who can connect)"},
    {"auth-concurrency", CFG_U64, OFF(auth_concurrency), 1, 64, "2", CFG_MUTABLE, "N",
     "AUTH password checks (argon2id: tens of ms and 64 MiB each) run on worker threads, at most "
     "this many at once; later ones wait, their connections paused"},
    {"tls-cert", CFG_STRING, OFF(tls_cert), 0, 0, "", 0, "FILE",
     "PEM certificate (chain) of psd: the listener speaks TLS 1.2+ only (with --tls-key)"},
    {"tls-key", CFG_STRING, OFF(tls_key), 0, 0, "", 0, "FILE", "PEM private key of --tls-cert"},
    {"tls-ca", CFG_STRING, OFF(tls_ca), 0, 0, "", 0, "FILE",
     "PEM CA certificates that client certificates must chain to"},
    {"tls-client-auth", CFG_STRING, OFF(tls_client_auth), 0, 0, "", 0, "MODE",
     "client certificates: none, optional (checked when sent) or required; \"\" = required when "
     "--tls-ca is given, else none"},
};

#define NDESCS (sizeof descs / sizeof descs[0])

static const cfg_desc_t *find_desc(const char *name, size_t len)
{
    for (size_t i = 0; i < NDESCS; i++) {
        if (strlen(descs[i].name) == len && strncmp(descs[i].name, name, len) == 0)
            return &descs[i];
    }
    return NULL;
}

size_t psd_config_count(void)
{
    return NDESCS;
}

const char *psd_config_name_at(size_t i, int *is_mutable)
{
    if (i >= NDESCS)
        return NULL;
    if (is_mutable)
        *is_mutable = (descs[i].flags & CFG_MUTABLE) != 0;
    return descs[i].name;
}

static int parse_u64(const char *s, int suffixes, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    uint64_t mul = 1;
    if (suffixes && *end) {
        switch (*end) {
        case 'k':
        case 'K':
            mul = KiB;
            break;
        case 'm':
        case 'M':
            mul = MiB;
            break;
        case 'g':
        case 'G':
            mul = GiB;
            break;
        case 't':
        case 'T':
            mul = TiB;
            break;
        default:
            return -1;
        }
        end++;
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
    }
    if (*end)
        return -1;
    uint64_t r;
    if (__builtin_mul_overflow((uint64_t) v, mul, &r))
        return -1;
    *out = r;
    return 0;
}

static int set_desc(psd_config_t *c, const cfg_desc_t *d, const char *value, ps_error_t *err)
{
    char *base = (char *) c;
    switch (d->type) {
    case CFG_STRING: {
        size_t n = strlen(value);
        if (n >= PSD_CONFIG_STR_MAX)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--%s: value longer than %d bytes",
                                d->name, PSD_CONFIG_STR_MAX - 1);
        memcpy(base + d->offset, value, n + 1);
        return 0;
    }
    case CFG_LOGLEVEL: {
        int lvl = ps_log_level_parse(value);
        if (lvl < 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "--%s: '%s' is not one of debug, verbose, notice, warning", d->name,
                                value);
        *(int64_t *) (void *) (base + d->offset) = lvl;
        return 0;
    }
    case CFG_THREADS:
    case CFG_U64:
    case CFG_SIZE: {
        uint64_t v = 0;
        if (d->type == CFG_THREADS && strcmp(value, "cores") == 0) {
            v = uv_available_parallelism();
            if (v > d->max)
                v = d->max;
        } else if (parse_u64(value, d->type == CFG_SIZE, &v) != 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--%s: '%s' is not %s", d->name,
                                value,
                                d->type == CFG_SIZE  ? "a byte size (e.g. 4096, 64K, 16M, 1G)"
                                : d->type == CFG_U64 ? "a non-negative integer"
                                                     : "a non-negative integer or \"cores\"");
        if (v < d->min || v > d->max)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "--%s: %" PRIu64 " is out of range [%" PRIu64 ", %" PRIu64 "]",
                                d->name, v, d->min, d->max);
        *(uint64_t *) (void *) (base + d->offset) = v;
        return 0;
    }
    }
    return ps_error_set(err, PS_ERR_INTERNAL, "--%s: bad option type", d->name);
}

void psd_config_defaults(psd_config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NDESCS; i++) {
        ps_error_t err;
        /* The defaults are constants of this table; a unit test checks that each one parses. */
        (void) set_desc(c, &descs[i], descs[i].def, &err);
    }
}

int psd_config_set(
    psd_config_t *c, const char *name, const char *value, int runtime, ps_error_t *err)
{
    const cfg_desc_t *d = find_desc(name, strlen(name));
    if (!d)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown option '%s'", name);
    if (runtime && !(d->flags & CFG_MUTABLE))
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "option '%s' cannot be changed at run time", name);
    psd_config_t tmp = *c;
    int rc = set_desc(&tmp, d, value, err);
    if (rc)
        return rc;
    if (runtime && (rc = psd_config_check(&tmp, err)) != 0)
        return rc;
    *c = tmp;
    return 0;
}

int psd_config_get(const psd_config_t *c, const char *name, char *out, size_t cap, ps_error_t *err)
{
    const cfg_desc_t *d = find_desc(name, strlen(name));
    if (!d)
        return ps_error_set(err, PS_ERR_NOT_FOUND, "unknown option '%s'", name);
    const char *base = (const char *) c;
    switch (d->type) {
    case CFG_STRING:
        snprintf(out, cap, "%s", base + d->offset);
        break;
    case CFG_LOGLEVEL:
        snprintf(out, cap, "%s",
                 ps_log_level_name((int) *(const int64_t *) (const void *) (base + d->offset)));
        break;
    default:
        snprintf(out, cap, "%" PRIu64, *(const uint64_t *) (const void *) (base + d->offset));
        break;
    }
    return 0;
}

int psd_config_check(const psd_config_t *c, ps_error_t *err)
{
    if (c->out_low_water > c->out_high_water)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--out-low-water (%" PRIu64
                            ") must not exceed --out-high-water (%" PRIu64 ")",
                            c->out_low_water, c->out_high_water);
    if (c->out_hard_limit && c->out_hard_limit < c->out_high_water)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--out-hard-limit (%" PRIu64 ") must be 0 or at least --out-high-water "
                            "(%" PRIu64 ")",
                            c->out_hard_limit, c->out_high_water);
    if (c->max_inflight_payload < c->max_payload_bytes)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--max-inflight-payload (%" PRIu64
                            ") must be at least --max-payload-bytes (%" PRIu64
                            "): a request of the largest payload could never be received",
                            c->max_inflight_payload, c->max_payload_bytes);
    if (c->max_inflight_payload_per_peer && c->max_inflight_payload_per_peer < c->max_payload_bytes)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--max-inflight-payload-per-peer (%" PRIu64
                            ") must be 0 or at least --max-payload-bytes (%" PRIu64 ")",
                            c->max_inflight_payload_per_peer, c->max_payload_bytes);
    if (!c->listen[0])
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--listen: empty address");
    if (!c->tls_cert[0] != !c->tls_key[0])
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--tls-cert and --tls-key go together: give both or neither");
    if ((c->tls_ca[0] || c->tls_client_auth[0]) && !c->tls_cert[0])
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--tls-ca and --tls-client-auth need --tls-cert and --tls-key");
    if (c->tls_client_auth[0] && strcmp(c->tls_client_auth, "none") != 0 &&
        strcmp(c->tls_client_auth, "optional") != 0 && strcmp(c->tls_client_auth, "required") != 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--tls-client-auth: '%s' is not one of none, optional, required",
                            c->tls_client_auth);
    if ((strcmp(c->tls_client_auth, "optional") == 0 ||
         strcmp(c->tls_client_auth, "required") == 0) &&
        !c->tls_ca[0])
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--tls-client-auth %s needs --tls-ca to check client certificates",
                            c->tls_client_auth);
    if (strcmp(c->fsync, "always") != 0 && strcmp(c->fsync, "everysec") != 0 &&
        strcmp(c->fsync, "no") != 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--fsync: '%s' is not one of always, everysec, no", c->fsync);
    return 0;
}

int psd_config_load_file(psd_config_t *c, const char *path, ps_error_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--config: cannot open %s: %s", path,
                            strerror(errno));
    char line[PSD_CONFIG_STR_MAX + 128];
    int rc = 0;
    for (unsigned lineno = 1; !rc && fgets(line, sizeof line, f); lineno++) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s:%u: line too long", path, lineno);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                           line[len - 1] == '\t'))
            line[--len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        /* "name value" or "name = value"; the value runs to the end of the line. */
        char *name = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '=')
            p++;
        size_t nlen = (size_t) (p - name);
        while (*p == ' ' || *p == '\t' || *p == '=')
            p++;
        const cfg_desc_t *d = find_desc(name, nlen);
        if (!d) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s:%u: unknown option '%.*s'", path,
                              lineno, (int) nlen, name);
            break;
        }
        ps_error_t e2;
        if (set_desc(c, d, p, &e2) != 0)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s:%u: %s", path, lineno, e2.msg);
    }
    fclose(f);
    return rc;
}

int psd_config_parse_argv(psd_config_t *c, int argc, char **argv, ps_error_t *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return PSD_CONFIG_HELP;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unexpected argument '%s'", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t) (eq - name) : strlen(name);
        const char *value = eq ? eq + 1 : NULL;
        if (nlen == 6 && strncmp(name, "config", 6) == 0) {
            /* A file of "name value" lines, applied where it appears: later flags override it. */
            if (!value) {
                if (i + 1 >= argc)
                    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                        "--config needs a value (FILE)");
                value = argv[++i];
            }
            int rc = psd_config_load_file(c, value, err);
            if (rc)
                return rc;
            continue;
        }
        const cfg_desc_t *d = find_desc(name, nlen);
        if (!d)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown option '--%.*s'", (int) nlen,
                                name);
        if (!value) {
            if (i + 1 >= argc)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--%s needs a value (%s)",
                                    d->name, d->metavar);
            value = argv[++i];
        }
        int rc = set_desc(c, d, value, err);
        if (rc)
            return rc;
    }
    return psd_config_check(c, err);
}

void psd_config_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [--OPTION VALUE]...\n"
            "psd: the pscope parameter server. Serves the scoped variable store over TCP\n"
            "(docs/PROTOCOL.md). Logs go to stderr; SIGINT/SIGTERM shut it down cleanly.\n\n"
            "options:\n",
            prog);
    for (size_t i = 0; i < NDESCS; i++) {
        char opt[64];
        snprintf(opt, sizeof opt, "--%s %s", descs[i].name, descs[i].metavar);
        fprintf(out, "  %-30s %s", opt, descs[i].help);
        if (descs[i].def[0])
            fprintf(out, " [default: %s]", descs[i].def);
        fprintf(out, "\n");
    }
    fprintf(out, "  %-30s %s\n", "--config FILE",
            "read options from FILE (\"name value\" lines, # comments) where it appears");
    fprintf(out, "  %-30s %s\n", "--help", "print this text and exit");
    fprintf(out,
            "\nsizes take K, M, G or T suffixes (powers of 1024). Exit codes: 0 clean shutdown, "
            "1 runtime failure, 2 usage error.\n");
}
