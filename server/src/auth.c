/* psd's identities and rights: parsing the users file into a table (reloaded in place, with a
 * generation so sessions re-find their user by name), argon2id verification through libsodium with
 * a dummy hash for unknown users, the role x method table of docs/security.md and the name-pattern
 * rules. */
#include "auth.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

#include "pb.h"

struct psd_user {
    char *name;
    psd_role_t role;
    char hash[crypto_pwhash_STRBYTES];
    size_t npatterns;
    char *patterns[PSD_AUTH_PATTERNS_MAX];
};

struct psd_auth {
    char *path;
    psd_user_t *users;
    size_t nusers;
    uint64_t gen;
    char dummy[crypto_pwhash_STRBYTES]; /* verified against when the user does not exist */
};

const char *psd_role_name(psd_role_t r)
{
    switch (r) {
    case PSD_ROLE_READER:
        return "reader";
    case PSD_ROLE_WORKER:
        return "worker";
    case PSD_ROLE_ADMIN:
        return "admin";
    }
    return "?";
}

int psd_auth_crypto_init(ps_error_t *err)
{
    if (sodium_init() < 0)
        return ps_error_set(err, PS_ERR_INTERNAL, "libsodium failed to initialise");
    return 0;
}

int psd_auth_hash_password(const uint8_t *pw, size_t len, char out[128], ps_error_t *err)
{
    int rc = psd_auth_crypto_init(err);
    if (rc)
        return rc;
    if (len == 0 || len > PSD_AUTH_PASSWORD_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "a password is 1 to %d bytes, not %zu",
                            PSD_AUTH_PASSWORD_MAX, len);
    _Static_assert(crypto_pwhash_STRBYTES <= 128, "hash buffer");
    if (crypto_pwhash_str(out, (const char *) pw, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "out of memory hashing the password (argon2id needs %zu MiB)",
                            (size_t) crypto_pwhash_MEMLIMIT_INTERACTIVE >> 20);
    return 0;
}

static void users_free(psd_user_t *users, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ps_free(users[i].name);
        for (size_t k = 0; k < users[i].npatterns; k++)
            ps_free(users[i].patterns[k]);
        sodium_memzero(users[i].hash, sizeof users[i].hash);
    }
    ps_free(users);
}

static int parse_role(const char *s, psd_role_t *out)
{
    if (strcmp(s, "admin") == 0)
        *out = PSD_ROLE_ADMIN;
    else if (strcmp(s, "worker") == 0)
        *out = PSD_ROLE_WORKER;
    else if (strcmp(s, "reader") == 0)
        *out = PSD_ROLE_READER;
    else
        return -1;
    return 0;
}

/* A pattern: a name, or a prefix followed by one final '*'; "*" alone = everything. */
static int pattern_ok(const char *p)
{
    const char *star = strchr(p, '*');
    return !star || star[1] == '\0';
}

static int parse_file(const char *path, psd_user_t **out, size_t *nout, ps_error_t *err)
{
    *out = NULL;
    *nout = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--users: cannot open %s: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
        PS_LOG(PS_LOG_WARNING, "auth",
               "users file %s is readable by group or others (mode %03o); chmod 600 it", path,
               (unsigned) (st.st_mode & 0777));
    psd_user_t *users = NULL;
    size_t n = 0, cap = 0;
    char line[4096];
    int rc = 0;
    for (unsigned lineno = 1; !rc && fgets(line, sizeof line, f); lineno++) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s:%u: line too long", path, lineno);
            break;
        }
        char *fields[3 + PSD_AUTH_PATTERNS_MAX + 1];
        size_t nf = 0;
        char *save = NULL;
        for (char *tok = strtok_r(line, " \t\r\n", &save);
             tok && nf < sizeof fields / sizeof *fields; tok = strtok_r(NULL, " \t\r\n", &save))
            fields[nf++] = tok;
        if (nf == 0 || fields[0][0] == '#')
            continue;
        if (nf < 3) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "%s:%u: expected NAME ROLE HASH [PATTERN...], got %zu field(s)", path,
                              lineno, nf);
            break;
        }
        if (nf > 3 + PSD_AUTH_PATTERNS_MAX) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s:%u: more than %d name patterns",
                              path, lineno, PSD_AUTH_PATTERNS_MAX);
            break;
        }
        if (strlen(fields[0]) > PSD_AUTH_USER_MAX) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s:%u: user name longer than %d bytes",
                              path, lineno, PSD_AUTH_USER_MAX);
            break;
        }
        psd_role_t role;
        if (parse_role(fields[1], &role) != 0) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "%s:%u: user %s: role '%s' is not admin, worker or reader", path,
                              lineno, fields[0], fields[1]);
            break;
        }
        if (strncmp(fields[2], crypto_pwhash_STRPREFIX, strlen(crypto_pwhash_STRPREFIX)) != 0 ||
            strlen(fields[2]) >= crypto_pwhash_STRBYTES) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "%s:%u: user %s: the password hash is not a %s... string (make one "
                              "with `psd hash-password`)",
                              path, lineno, fields[0], crypto_pwhash_STRPREFIX);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(users[i].name, fields[0]) == 0) {
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s:%u: user %s is listed twice",
                                  path, lineno, fields[0]);
                break;
            }
        }
        if (rc)
            break;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            psd_user_t *nu = ps_realloc(users, nc * sizeof *nu);
            if (!nu) {
                rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
            users = nu;
            cap = nc;
        }
        psd_user_t *u = &users[n];
        memset(u, 0, sizeof *u);
        n++;
        u->role = role;
        snprintf(u->hash, sizeof u->hash, "%s", fields[2]);
        if (!(u->name = ps_strdup(fields[0]))) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
        for (size_t k = 3; k < nf && !rc; k++) {
            if (!pattern_ok(fields[k])) {
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "%s:%u: user %s: pattern '%s': '*' may only end a pattern", path,
                                  lineno, fields[0], fields[k]);
                break;
            }
            if (strcmp(fields[k], "*") == 0) {
                /* Everything: no restriction at all. */
                for (size_t j = 0; j < u->npatterns; j++)
                    ps_free(u->patterns[j]);
                u->npatterns = 0;
                break;
            }
            if (!(u->patterns[u->npatterns] = ps_strdup(fields[k])))
                rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            else
                u->npatterns++;
        }
    }
    if (!rc && ferror(f))
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--users: reading %s failed", path);
    fclose(f);
    sodium_memzero(line, sizeof line);
    if (rc) {
        users_free(users, n);
        return rc;
    }
    *out = users;
    *nout = n;
    return 0;
}

/* The hash checked when a user does not exist: a random password nobody knows, hashed with the
 * first user's argon2id limits, so an unknown user costs what a real one costs. */
static int make_dummy(psd_auth_t *a, ps_error_t *err)
{
    unsigned long long mem_kib = crypto_pwhash_MEMLIMIT_INTERACTIVE >> 10;
    unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    if (a->nusers > 0) {
        unsigned long long m = 0, t = 0;
        if (sscanf(a->users[0].hash, "$argon2id$v=19$m=%llu,t=%llu,", &m, &t) == 2 && m >= 8 &&
            m <= (1ull << 22) && t >= 1 && t <= 64) {
            mem_kib = m;
            ops = t;
        }
    }
    uint8_t junk[32];
    randombytes_buf(junk, sizeof junk);
    if (crypto_pwhash_str(a->dummy, (const char *) junk, sizeof junk, ops,
                          (size_t) mem_kib << 10) != 0)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "out of memory hashing (argon2id needs %llu KiB)", mem_kib);
    return 0;
}

int psd_auth_load(const char *path, psd_auth_t **out, ps_error_t *err)
{
    *out = NULL;
    int rc = psd_auth_crypto_init(err);
    if (rc)
        return rc;
    psd_auth_t *a = ps_calloc(1, sizeof *a);
    if (!a || !(a->path = ps_strdup(path))) {
        ps_free(a);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    rc = parse_file(path, &a->users, &a->nusers, err);
    if (!rc)
        rc = make_dummy(a, err);
    if (rc) {
        psd_auth_free(a);
        return rc;
    }
    a->gen = 1;
    *out = a;
    return 0;
}

int psd_auth_reload(psd_auth_t *a, const char *path, ps_error_t *err)
{
    psd_user_t *users = NULL;
    size_t n = 0;
    const char *p = path ? path : a->path;
    int rc = parse_file(p, &users, &n, err);
    if (rc)
        return rc;
    if (path && strcmp(path, a->path) != 0) {
        char *np = ps_strdup(path);
        if (!np) {
            users_free(users, n);
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        }
        ps_free(a->path);
        a->path = np;
    }
    users_free(a->users, a->nusers);
    a->users = users;
    a->nusers = n;
    a->gen++;
    ps_error_t derr;
    if (make_dummy(a, &derr) != 0)
        PS_LOG(PS_LOG_WARNING, "auth", "the unknown-user hash keeps its old cost: %s", derr.msg);
    return 0;
}

void psd_auth_free(psd_auth_t *a)
{
    if (!a)
        return;
    users_free(a->users, a->nusers);
    ps_free(a->path);
    ps_free(a);
}

size_t psd_auth_count(const psd_auth_t *a)
{
    return a->nusers;
}

const char *psd_auth_path(const psd_auth_t *a)
{
    return a->path;
}

static const psd_user_t *find_user(const psd_auth_t *a, const char *name)
{
    for (size_t i = 0; i < a->nusers; i++) {
        if (strcmp(a->users[i].name, name) == 0)
            return &a->users[i];
    }
    return NULL;
}

int psd_auth_prepare(const psd_auth_t *a, const char *user, char hash[PSD_AUTH_HASH_MAX])
{
    const psd_user_t *u = find_user(a, user);
    _Static_assert(crypto_pwhash_STRBYTES <= PSD_AUTH_HASH_MAX, "hash buffer");
    /* An unknown user is checked against the dummy: it costs what a wrong password costs. */
    memcpy(hash, u ? u->hash : a->dummy, crypto_pwhash_STRBYTES);
    return u != NULL;
}

int psd_auth_verify(const char *hash, const uint8_t *password, size_t password_len)
{
    return crypto_pwhash_str_verify(hash, (const char *) password, password_len) == 0;
}

int psd_auth_bind(psd_auth_t *a, psd_session_t *s, const char *user, const char *hash)
{
    const psd_user_t *u = find_user(a, user);
    /* The table may have been reloaded while the hash was checked: the user must still be there
     * with the same hash (a password changed meanwhile makes the old one fail). */
    if (!u || strcmp(u->hash, hash) != 0)
        return -1;
    s->authed = 1;
    snprintf(s->user, sizeof s->user, "%s", user);
    s->u = u;
    s->gen = a->gen;
    return 0;
}

int psd_auth_fail(const char *user, ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_UNAUTHENTICATED,
                        "authentication failed for user '%s' (unknown user or wrong "
                        "password); the connection is closed",
                        user);
}

int psd_auth_login(psd_auth_t *a,
                   psd_session_t *s,
                   const char *user,
                   const uint8_t *password,
                   size_t password_len,
                   const char **why,
                   ps_error_t *err)
{
    char hash[PSD_AUTH_HASH_MAX];
    int known = psd_auth_prepare(a, user, hash);
    /* Always one argon2id verification: an unknown user costs what a wrong password costs. */
    int ok = psd_auth_verify(hash, password, password_len);
    int rc = known && ok ? psd_auth_bind(a, s, user, hash) : -1;
    sodium_memzero(hash, sizeof hash);
    if (rc != 0) {
        *why = known ? "wrong password" : "unknown user";
        return psd_auth_fail(user, err);
    }
    *why = NULL;
    return 0;
}

const psd_user_t *psd_auth_user(psd_auth_t *a, psd_session_t *s)
{
    if (!s || !s->authed)
        return NULL;
    if (s->gen != a->gen) {
        s->u = find_user(a, s->user);
        s->gen = a->gen;
    }
    return s->u;
}

psd_role_t psd_auth_user_role(const psd_user_t *u)
{
    return u->role;
}

int psd_auth_user_restricted(const psd_user_t *u)
{
    return u->npatterns > 0;
}

const char *const *psd_auth_user_patterns(const psd_user_t *u, size_t *n)
{
    *n = u->npatterns;
    return (const char *const *) u->patterns;
}

int psd_auth_check_method(const psd_user_t *u,
                          const char *user,
                          uint32_t method,
                          const char *method_name,
                          int lookup_mode,
                          ps_error_t *err)
{
    int ok = 0;
    switch (method) {
    case PSCOPE__V1__METHOD__PING:
    case PSCOPE__V1__METHOD__AUTH:
    case PSCOPE__V1__METHOD__PULL:
    case PSCOPE__V1__METHOD__LIST:
    case PSCOPE__V1__METHOD__DESCRIBE:
    case PSCOPE__V1__METHOD__STATS:
    case PSCOPE__V1__METHOD__GATHER:
    case PSCOPE__V1__METHOD__WORKERS:
        ok = 1;
        break;
    case PSCOPE__V1__METHOD__GET_VARIABLE:
        /* A reader may look up what exists; creating (or attach-or-create) needs a worker. */
        ok = u->role >= PSD_ROLE_WORKER || lookup_mode == PSCOPE__V1__LOOKUP_MODE__MUST_EXIST;
        if (!ok)
            return ps_error_set(err, PS_ERR_PERMISSION_DENIED,
                                "user '%s' (role %s) may only look up existing variables "
                                "(GET_VARIABLE mode MUST_EXIST)",
                                user, psd_role_name(u->role));
        break;
    case PSCOPE__V1__METHOD__UPDATE:
    case PSCOPE__V1__METHOD__APPLY_GRADIENTS:
    case PSCOPE__V1__METHOD__SCATTER:
    case PSCOPE__V1__METHOD__SYNC_APPLY:
    case PSCOPE__V1__METHOD__SYNC_PREPARE:
    case PSCOPE__V1__METHOD__SYNC_COMMIT:
    case PSCOPE__V1__METHOD__WORKER_JOIN:
    case PSCOPE__V1__METHOD__WORKER_LEAVE:
    case PSCOPE__V1__METHOD__WORKER_CLOCK:
        ok = u->role >= PSD_ROLE_WORKER;
        break;
    case PSCOPE__V1__METHOD__SAVE:
    case PSCOPE__V1__METHOD__RESTORE:
        /* They cover the whole store: not for a user limited to some names. */
        ok = u->role >= PSD_ROLE_ADMIN && u->npatterns == 0;
        if (!ok && u->role >= PSD_ROLE_ADMIN)
            return ps_error_set(err, PS_ERR_PERMISSION_DENIED,
                                "user '%s' is limited to some names and may not call %s, which "
                                "covers the whole store",
                                user, method_name);
        break;
    default: /* DELETE, CONFIG, and anything added later: admins only */
        ok = u->role >= PSD_ROLE_ADMIN;
        break;
    }
    if (!ok)
        return ps_error_set(err, PS_ERR_PERMISSION_DENIED, "user '%s' (role %s) may not call %s",
                            user, psd_role_name(u->role), method_name);
    return 0;
}

static int pattern_match(const char *pat, const char *name)
{
    size_t pl = strlen(pat);
    if (pl && pat[pl - 1] == '*')
        return strncmp(pat, name, pl - 1) == 0;
    return strcmp(pat, name) == 0;
}

int psd_auth_check_name(const psd_user_t *u, const char *user, const char *name, ps_error_t *err)
{
    if (u->npatterns == 0)
        return 0;
    for (size_t i = 0; i < u->npatterns; i++) {
        if (pattern_match(u->patterns[i], name))
            return 0;
    }
    return ps_error_set(err, PS_ERR_PERMISSION_DENIED,
                        "user '%s' may not touch variable %s: outside its name patterns (%s%s)",
                        user, name, u->patterns[0], u->npatterns > 1 ? ", ..." : "");
}

int psd_auth_check_prefix(
    const psd_user_t *u, const char *user, const char *prefix, const char *what, ps_error_t *err)
{
    if (u->npatterns == 0)
        return 0;
    for (size_t i = 0; i < u->npatterns; i++) {
        const char *pat = u->patterns[i];
        size_t pl = strlen(pat);
        /* Every name starting with prefix matches "stem*" when prefix starts with stem. */
        if (pl && pat[pl - 1] == '*' && strncmp(pat, prefix, pl - 1) == 0)
            return 0;
    }
    return ps_error_set(err, PS_ERR_PERMISSION_DENIED,
                        "user '%s' may not %s prefix '%s': it reaches outside its name patterns "
                        "(%s%s); give a prefix inside them",
                        user, what, prefix, u->patterns[0], u->npatterns > 1 ? ", ..." : "");
}
