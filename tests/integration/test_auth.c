/* Authentication and roles against a real psd started with --users (docs/security.md): every role
 * against every method (a table: allowed, or PERMISSION_DENIED with the store checked unchanged),
 * name-pattern users, the AUTH bad-input cases (request before AUTH, wrong password, unknown user,
 * AUTH twice, oversized and malformed AUTH) with the connection closed where it must be and a
 * control connection unaffected, the STATS counters, users-file rotation by SIGHUP and by CONFIG,
 * and a psd without --users that says it is open. psd must stop clean after each. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "auth.h"
#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32                 PSCOPE__V1__DTYPE__DT_FLOAT
#define OK                  0
#define DENIED              PSCOPE__V1__CODE__PERMISSION_DENIED
#define UNAUTHENTICATED     PSCOPE__V1__CODE__UNAUTHENTICATED
#define INVALID_ARGUMENT    PSCOPE__V1__CODE__INVALID_ARGUMENT
#define FAILED_PRECONDITION PSCOPE__V1__CODE__FAILED_PRECONDITION

static ps_psd_t psd;
static char dir[256];
static char users_path[320];

static ProtobufCBinaryData bytes_of(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *) s};
    return b;
}

static void hash_of(const char *pw, char out[128])
{
    ps_error_t err;
    cr_assert_eq(psd_auth_hash_password((const uint8_t *) pw, strlen(pw), out, &err), 0, "%s",
                 err.msg);
}

/* Write the users file: lines of "name role password [patterns]" become name role HASH patterns. */
static void write_users(const char *const *lines, size_t n)
{
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", users_path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fprintf(f, "# test users\n");
    for (size_t i = 0; i < n; i++) {
        char name[64], role[32], pw[64], rest[256] = "";
        int k = sscanf(lines[i], "%63s %31s %63s %255[^\n]", name, role, pw, rest);
        cr_assert(k >= 3);
        char h[128];
        hash_of(pw, h);
        fprintf(f, "%s %s %s %s\n", name, role, h, rest);
    }
    fclose(f);
    chmod(tmp, 0600);
    cr_assert_eq(rename(tmp, users_path), 0);
}

static const char *const base_users[] = {
    "alice admin apw",
    "wendy worker wpw",
    "rita reader rpw",
    "pat worker ppw fc1/* shared/exact",
};

static void start_psd(void)
{
    snprintf(dir, sizeof dir, "/tmp/ps_auth_XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(users_path, sizeof users_path, "%s/users", dir);
    write_users(base_users, 4);
    const char *extra[] = {"--users", users_path, "--read-timeout-ms", "2000", NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "verbose", extra), 0, "psd did not start");
}

static void stop_psd(void)
{
    ps_psd_cleanup(&psd);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void) system(cmd);
}

/* A connection authenticated as user (password pw); the reply must be OK with role. */
static void login(ps_wc_t *c, const char *user, const char *pw, const char *role)
{
    cr_assert_eq(ps_wc_connect(c, psd.port, 20000), 0, "connect: %s", strerror(errno));
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_auth(c, user, pw, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "AUTH %s: %s", user, r.h->message);
    cr_assert_eq(r.h->body_case, PSCOPE__V1__HEADER__BODY_AUTH_REPLY);
    cr_assert_str_eq(r.h->auth_reply->role, role);
    cr_assert_not(r.h->auth_reply->open);
    ps_wc_reply_free(&r);
}

static void create_const(ps_wc_t *c, const char *name, float v)
{
    int64_t d[1] = {4};
    cr_assert_eq(ps_wc_create_const(c, name, F32, 1, d, v), 0, "create %s", name);
}

/* What the store holds, as the admin sees it: every name with its version, and m/a's bytes. */
typedef struct snapshot {
    char text[4096];
    float a[4];
} snapshot_t;

static void snap(ps_wc_t *adm, snapshot_t *s)
{
    memset(s, 0, sizeof *s);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_list(adm, NULL, NULL, NULL, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK);
    size_t off = 0;
    for (size_t i = 0; i < r.h->list_reply->n_vars; i++) {
        const Pscope__V1__VarInfo *v = r.h->list_reply->vars[i];
        off +=
            (size_t) snprintf(s->text + off, sizeof s->text - off, "%.*s@%llu ", (int) v->name.len,
                              (const char *) v->name.data, (unsigned long long) v->version);
        cr_assert(off < sizeof s->text);
    }
    ps_wc_reply_free(&r);
    const char *names[1] = {"m/a"};
    cr_assert_eq(ps_wc_pull(adm, names, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK);
    cr_assert_eq(r.payload_len, 16);
    memcpy(s->a, r.payload, 16);
    ps_wc_reply_free(&r);
}

enum {
    M_PING,
    M_CREATE,
    M_LOOKUP,
    M_PULL,
    M_UPDATE,
    M_LIST,
    M_DESCRIBE,
    M_DELETE,
    M_STATS,
    M_APPLY,
    M_SAVE,
    M_RESTORE,
    M_CONFIG_GET,
    M_CONFIG_SET,
    M_COUNT
};

static const char *const row_names[M_COUNT] = {
    "PING",
    "GET_VARIABLE create",
    "GET_VARIABLE must-exist",
    "PULL",
    "UPDATE",
    "LIST",
    "DESCRIBE",
    "DELETE",
    "STATS",
    "APPLY_GRADIENTS",
    "SAVE",
    "RESTORE",
    "CONFIG get",
    "CONFIG set",
};

/* Expected code per role (admin, worker, reader) and row. */
static const int expect[3][M_COUNT] = {
    /* admin */ {OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK},
    /* worker */
    {OK, OK, OK, OK, OK, OK, OK, DENIED, OK, OK, DENIED, DENIED, DENIED, DENIED},
    /* reader */
    {OK, DENIED, OK, OK, DENIED, OK, OK, DENIED, OK, DENIED, DENIED, DENIED, DENIED, DENIED},
};

/* Issue row as role ri on c; returns the reply code. */
static int run_row(ps_wc_t *c, int row, int ri)
{
    static const char *const roles[3] = {"admin", "worker", "reader"};
    ps_wc_reply_t r;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    float zeros[4] = {0};
    int64_t d4[1] = {4};
    char name[128], path[400];
    int rc = -1;
    switch (row) {
    case M_PING:
        rc = ps_wc_ping(c, &r);
        break;
    case M_CREATE: {
        snprintf(name, sizeof name, "t/new_%s", roles[ri]);
        ps_wc_getvar_t g = {.name = name,
                            .mode = PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE,
                            .dtype = F32,
                            .rank = 1,
                            .dims = d4};
        rc = ps_wc_get_variable(c, &g, &r);
        break;
    }
    case M_LOOKUP: {
        ps_wc_getvar_t g = {.name = "m/a",
                            .mode = PSCOPE__V1__LOOKUP_MODE__MUST_EXIST,
                            .dtype = F32,
                            .rank = 1,
                            .dims = d4};
        rc = ps_wc_get_variable(c, &g, &r);
        break;
    }
    case M_PULL: {
        const char *names[1] = {"m/a"};
        rc = ps_wc_pull(c, names, 1, &r);
        break;
    }
    case M_UPDATE: {
        ps_wc_update_t u = {
            .x = {.name = "m/a", .dtype = F32, .rank = 1, .dims = d4, .data = zeros, .len = 16},
            .op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD};
        rc = ps_wc_update(c, &u, 1, 0, 0, &r);
        break;
    }
    case M_LIST:
        rc = ps_wc_list(c, NULL, NULL, NULL, 0, &r);
        break;
    case M_DESCRIBE:
        rc = ps_wc_describe(c, "m/a", &r);
        break;
    case M_DELETE: {
        snprintf(name, sizeof name, "t/del_%s", roles[ri]);
        const char *names[1] = {name};
        rc = ps_wc_delete(c, names, 1, NULL, &r);
        break;
    }
    case M_STATS:
        rc = ps_wc_stats(c, &r);
        break;
    case M_APPLY: {
        Pscope__V1__ApplyGradientsRequest a = PSCOPE__V1__APPLY_GRADIENTS_REQUEST__INIT;
        a.optimizer = PSCOPE__V1__OPTIMIZER_KIND__OPTIMIZER_SGD;
        a.learning_rate = 0.5;
        Pscope__V1__TensorDesc t = PSCOPE__V1__TENSOR_DESC__INIT, *tp = &t;
        t.name = bytes_of("m/a");
        t.dtype = F32;
        t.n_dims = 1;
        t.dims = d4;
        h.method = PSCOPE__V1__METHOD__APPLY_GRADIENTS;
        h.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
        h.apply_gradients = &a;
        h.n_tensors = 1;
        h.tensors = &tp;
        rc = ps_wc_request(c, &h, zeros, 16, &r);
        break;
    }
    case M_SAVE:
    case M_RESTORE: {
        snprintf(path, sizeof path, "%s/ckpt_%s", dir, row == M_SAVE ? roles[ri] : "admin");
        Pscope__V1__SaveRequest s = PSCOPE__V1__SAVE_REQUEST__INIT;
        Pscope__V1__RestoreRequest re = PSCOPE__V1__RESTORE_REQUEST__INIT;
        s.path = bytes_of(path);
        re.path = s.path;
        if (row == M_SAVE) {
            h.method = PSCOPE__V1__METHOD__SAVE;
            h.body_case = PSCOPE__V1__HEADER__BODY_SAVE;
            h.save = &s;
        } else {
            h.method = PSCOPE__V1__METHOD__RESTORE;
            h.body_case = PSCOPE__V1__HEADER__BODY_RESTORE;
            h.restore = &re;
        }
        rc = ps_wc_request(c, &h, NULL, 0, &r);
        break;
    }
    case M_CONFIG_GET:
    case M_CONFIG_SET: {
        Pscope__V1__ConfigRequest cf = PSCOPE__V1__CONFIG_REQUEST__INIT;
        if (row == M_CONFIG_SET) {
            cf.set_name = (char *) "log-level";
            cf.set_value = (char *) "verbose";
        }
        h.method = PSCOPE__V1__METHOD__CONFIG;
        h.body_case = PSCOPE__V1__HEADER__BODY_CONFIG;
        h.config = &cf;
        rc = ps_wc_request(c, &h, NULL, 0, &r);
        break;
    }
    }
    cr_assert_eq(rc, PS_WC_OK, "%s as %s: no reply", row_names[row], roles[ri]);
    int code = (int) r.h->code;
    if (code == DENIED) {
        /* The refusal names the user and the method or the rule. */
        cr_assert(strstr(r.h->message, "may not") || strstr(r.h->message, "may only"), "%s",
                  r.h->message);
    } else if (code != OK) {
        cr_log_error("%s as %s: %s", row_names[row], roles[ri], r.h->message);
    }
    ps_wc_reply_free(&r);
    return code;
}

static uint64_t stat_of(ps_wc_t *c, int which)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_stats(c, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK);
    uint64_t v = which ? r.h->stats_reply->permission_denied : r.h->stats_reply->unauthenticated;
    ps_wc_reply_free(&r);
    return v;
}

TestSuite(auth, .init = start_psd, .fini = stop_psd, .timeout = 120);

Test(auth, every_role_against_every_method)
{
    ps_wc_t adm, obs, conns[3];
    login(&adm, "alice", "apw", "admin");
    login(&obs, "alice", "apw", "admin");
    login(&conns[0], "alice", "apw", "admin");
    login(&conns[1], "wendy", "wpw", "worker");
    login(&conns[2], "rita", "rpw", "reader");
    create_const(&adm, "m/a", 1.0f);
    for (int ri = 0; ri < 3; ri++) {
        static const char *const dels[3] = {"t/del_admin", "t/del_worker", "t/del_reader"};
        create_const(&adm, dels[ri], 2.0f);
    }
    uint64_t denied_before = stat_of(&obs, 1);
    uint64_t ndenied = 0;
    for (int ri = 0; ri < 3; ri++) {
        for (int row = 0; row < M_COUNT; row++) {
            snapshot_t before, after;
            snap(&obs, &before);
            int code = run_row(&conns[ri], row, ri);
            cr_assert_eq(code, expect[ri][row], "%s as role %d: code %d, expected %d",
                         row_names[row], ri, code, expect[ri][row]);
            if (code == DENIED) {
                ndenied++;
                snap(&obs, &after);
                cr_assert_str_eq(after.text, before.text, "%s as role %d changed the store",
                                 row_names[row], ri);
                cr_assert_arr_eq(after.a, before.a, sizeof after.a);
            }
        }
    }
    /* A refused SAVE wrote nothing. */
    char path[400];
    snprintf(path, sizeof path, "%s/ckpt_worker", dir);
    cr_assert_neq(access(path, F_OK), 0, "a refused SAVE wrote %s", path);
    cr_assert_eq(stat_of(&obs, 1) - denied_before, ndenied);
    for (int i = 0; i < 3; i++)
        ps_wc_close(&conns[i]);
    ps_wc_close(&adm);
    ps_wc_close(&obs);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(auth, name_patterns)
{
    ps_wc_t adm, pat;
    login(&adm, "alice", "apw", "admin");
    login(&pat, "pat", "ppw", "worker");
    create_const(&adm, "fc2/w", 3.0f);
    create_const(&adm, "shared/exact", 3.0f);
    create_const(&adm, "shared/other", 3.0f);
    ps_wc_reply_t r;
    int64_t d4[1] = {4};
    /* Inside the patterns: allowed. */
    ps_wc_getvar_t g = {.name = "fc1/w",
                        .mode = PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE,
                        .dtype = F32,
                        .rank = 1,
                        .dims = d4};
    cr_assert_eq(ps_wc_get_variable(&pat, &g, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "%s", r.h->message);
    ps_wc_reply_free(&r);
    const char *ok_names[2] = {"fc1/w", "shared/exact"};
    cr_assert_eq(ps_wc_pull(&pat, ok_names, 2, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "%s", r.h->message);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_list(&pat, "fc1/", NULL, NULL, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "%s", r.h->message);
    cr_assert_eq(r.h->list_reply->n_vars, 1);
    ps_wc_reply_free(&r);
    /* Outside: refused, whole request, nothing created or changed. */
    g.name = "fc2/new";
    cr_assert_eq(ps_wc_get_variable(&pat, &g, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, DENIED);
    cr_assert(strstr(r.h->message, "fc2/new"), "%s", r.h->message);
    ps_wc_reply_free(&r);
    const char *mixed[2] = {"fc1/w", "shared/other"};
    cr_assert_eq(ps_wc_pull(&pat, mixed, 2, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, DENIED);
    ps_wc_reply_free(&r);
    float x[4] = {1, 1, 1, 1};
    ps_wc_update_t u[2] = {
        {.x = {.name = "fc1/w", .dtype = F32, .rank = 1, .dims = d4, .data = x, .len = 16},
         .op = PSCOPE__V1__UPDATE_OP__ASSIGN},
        {.x = {.name = "fc2/w", .dtype = F32, .rank = 1, .dims = d4, .data = x, .len = 16},
         .op = PSCOPE__V1__UPDATE_OP__ASSIGN}};
    cr_assert_eq(ps_wc_update(&pat, u, 2, 0, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, DENIED);
    ps_wc_reply_free(&r);
    /* Listing everything, or a prefix wider than fc1/: refused. */
    cr_assert_eq(ps_wc_list(&pat, NULL, NULL, NULL, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, DENIED);
    cr_assert(strstr(r.h->message, "prefix"), "%s", r.h->message);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_list(&pat, "fc", NULL, NULL, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, DENIED);
    ps_wc_reply_free(&r);
    /* Nothing of fc1/w changed by the refused two-item update, fc2/new does not exist. */
    const char *names[1] = {"fc1/w"};
    cr_assert_eq(ps_wc_pull(&adm, names, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK);
    cr_assert_eq(r.h->tensors[0]->version, 1);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_describe(&adm, "fc2/new", &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__NOT_FOUND);
    ps_wc_reply_free(&r);
    ps_wc_close(&pat);
    ps_wc_close(&adm);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* The connection is closed by psd (EOF within 5 s). */
static void expect_closed(ps_wc_t *c, const char *what)
{
    cr_assert_eq(ps_wc_wait_eof(c, 5000), PS_WC_EOF, "%s: connection not closed", what);
    ps_wc_close(c);
}

static void expect_reply(ps_wc_t *c, int code, const char *words, const char *what)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_recv(c, &r), PS_WC_OK, "%s: no reply", what);
    cr_assert_eq(r.h->code, (uint32_t) code, "%s: code %u (%s)", what, r.h->code, r.h->message);
    cr_assert(strstr(r.h->message, words), "%s: message '%s' lacks '%s'", what, r.h->message,
              words);
    ps_wc_reply_free(&r);
}

static void control_ok(ps_wc_t *ctl, const char *after)
{
    ps_wc_reply_t r;
    cr_assert(ps_psd_alive(&psd), "psd died after %s", after);
    const char *names[1] = {"m/a"};
    cr_assert_eq(ps_wc_pull(ctl, names, 1, &r), PS_WC_OK, "control after %s", after);
    cr_assert_eq(r.h->code, OK, "control after %s: %s", after, r.h->message);
    ps_wc_reply_free(&r);
}

Test(auth, bad_input)
{
    ps_wc_t ctl, c;
    login(&ctl, "alice", "apw", "admin");
    create_const(&ctl, "m/a", 1.0f);
    uint64_t unauth0 = stat_of(&ctl, 0);
    ps_wc_buf_t b = {0};

    /* A request before AUTH: UNAUTHENTICATED, closed; its payload is never read. */
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_add_ping(&b, 1), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    expect_reply(&c, UNAUTHENTICATED, "send AUTH", "request before AUTH");
    expect_closed(&c, "request before AUTH");
    control_ok(&ctl, "request before AUTH");

    /* Wrong password and unknown user: the same answer, closed. */
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_add_auth(&b, 1, "rita", "nope", 4), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    expect_reply(&c, UNAUTHENTICATED, "unknown user or wrong password", "wrong password");
    expect_closed(&c, "wrong password");
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_add_auth(&b, 1, "mallory", "rpw", 3), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    expect_reply(&c, UNAUTHENTICATED, "unknown user or wrong password", "unknown user");
    expect_closed(&c, "unknown user");
    control_ok(&ctl, "failed AUTH");

    /* AUTH twice: refused, the first identity stays, the connection goes on. */
    login(&c, "rita", "rpw", "reader");
    cr_assert_eq(ps_wc_add_auth(&b, 2, "alice", "apw", 3), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    expect_reply(&c, FAILED_PRECONDITION, "already authenticated as 'rita'", "AUTH twice");
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_delete(&c, (const char *const[]){"m/a"}, 1, NULL, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, DENIED, "still a reader after a second AUTH");
    ps_wc_reply_free(&r);
    ps_wc_close(&c);

    /* An oversized password, an empty user, AUTH with a tensor: INVALID_ARGUMENT, closed. */
    static char big[PSD_AUTH_PASSWORD_MAX + 100];
    memset(big, 'x', sizeof big);
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_add_auth(&b, 1, "rita", big, sizeof big), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    expect_reply(&c, INVALID_ARGUMENT, "password is 1 to", "huge password");
    expect_closed(&c, "huge password");
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_add_auth(&b, 1, NULL, "rpw", 3), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    expect_reply(&c, INVALID_ARGUMENT, "user name is 1 to", "no user");
    expect_closed(&c, "no user");
    {
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__AuthRequest a = PSCOPE__V1__AUTH_REQUEST__INIT;
        a.user = (char *) "rita";
        a.password = bytes_of("rpw");
        Pscope__V1__TensorDesc t = PSCOPE__V1__TENSOR_DESC__INIT, *tp = &t;
        int64_t d1[1] = {1};
        t.name = bytes_of("x");
        t.dtype = F32;
        t.n_dims = 1;
        t.dims = d1;
        h.id = 1;
        h.method = PSCOPE__V1__METHOD__AUTH;
        h.body_case = PSCOPE__V1__HEADER__BODY_AUTH;
        h.auth = &a;
        h.n_tensors = 1;
        h.tensors = &tp;
        float one = 1;
        cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
        cr_assert_eq(ps_wc_add_frame(&b, &h, &one, 4), 0);
        cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
        expect_reply(&c, INVALID_ARGUMENT, "no tensors", "AUTH with a tensor");
        expect_closed(&c, "AUTH with a tensor");
    }
    /* A header too large for psd's limit, sent before AUTH: refused at the frame, closed. */
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    uint8_t prefix[16];
    ps_wc_prefix(prefix, 0xffffffffu, 0xffffffffu);
    cr_assert_eq(ps_wc_send_raw(&c, prefix, sizeof prefix), 0);
    expect_reply(&c, PSCOPE__V1__CODE__RESOURCE_EXHAUSTED, "exceeds limit", "huge AUTH header");
    expect_closed(&c, "huge AUTH header");
    control_ok(&ctl, "bad AUTH frames");

    /* Failed AUTHs and the request before AUTH were counted. */
    cr_assert_eq(stat_of(&ctl, 0) - unauth0, 3);
    ps_wc_close(&ctl);
    ps_wc_buf_free(&b);
    /* Refusals are in the log with peer and user, the passwords never are. */
    char cmd[700];
    snprintf(cmd, sizeof cmd,
             "grep -q 'authentication failed conn=.* peer=127.0.0.1:.* user=rita' %s",
             psd.log_file);
    cr_assert_eq(system(cmd), 0, "failed AUTH not logged with peer and user");
    snprintf(cmd, sizeof cmd, "grep -q -e nope -e rpw -e apw %s", psd.log_file);
    cr_assert_neq(system(cmd), 0, "a password reached psd's log");
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(auth, users_file_rotation)
{
    ps_wc_t adm, rita, c;
    ps_wc_reply_t r;
    login(&adm, "alice", "apw", "admin");
    login(&rita, "rita", "rpw", "reader");
    create_const(&adm, "m/a", 1.0f);
    /* New password for rita, wendy removed, SIGHUP. */
    const char *const v2[] = {"alice admin apw", "rita worker rpw2"};
    write_users(v2, 2);
    cr_assert_eq(ps_psd_signal(&psd, SIGHUP), 0);
    /* Wait (bounded) until the new file is in force: the new password works. */
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
        cr_assert_eq(ps_wc_auth(&c, "rita", "rpw2", &r), PS_WC_OK);
        ok = r.h->code == OK;
        ps_wc_reply_free(&r);
        ps_wc_close(&c);
        if (!ok)
            usleep(50000);
    }
    cr_assert(ok, "rita's new password not accepted after SIGHUP");
    /* The old password fails; wendy is gone. */
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_auth(&c, "rita", "rpw", &r), PS_WC_OK);
    cr_assert_eq(r.h->code, UNAUTHENTICATED);
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_auth(&c, "wendy", "wpw", &r), PS_WC_OK);
    cr_assert_eq(r.h->code, UNAUTHENTICATED);
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    /* rita's open session keeps its identity and takes her new role at once. */
    float zeros[4] = {0};
    int64_t d4[1] = {4};
    ps_wc_update_t u = {
        .x = {.name = "m/a", .dtype = F32, .rank = 1, .dims = d4, .data = zeros, .len = 16},
        .op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD};
    cr_assert_eq(ps_wc_update(&rita, &u, 1, 0, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "rita is a worker now: %s", r.h->message);
    ps_wc_reply_free(&r);
    /* Through CONFIG (what `psctl reload-users` sends): rita removed; a bad file changes nothing.
     */
    const char *const v3[] = {"alice admin apw"};
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad_users", dir);
    FILE *f = fopen(bad, "w");
    cr_assert(f);
    fprintf(f, "eve superuser $argon2id$v=19$m=65536,t=2,p=1$x$y\n");
    fclose(f);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ConfigRequest cf = PSCOPE__V1__CONFIG_REQUEST__INIT;
    cf.set_name = (char *) "users";
    cf.set_value = bad;
    h.method = PSCOPE__V1__METHOD__CONFIG;
    h.body_case = PSCOPE__V1__HEADER__BODY_CONFIG;
    h.config = &cf;
    cr_assert_eq(ps_wc_request(&adm, &h, NULL, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, INVALID_ARGUMENT);
    cr_assert(strstr(r.h->message, "role 'superuser'"), "%s", r.h->message);
    ps_wc_reply_free(&r);
    write_users(v3, 1);
    cf.set_value = users_path;
    cr_assert_eq(ps_wc_request(&adm, &h, NULL, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "%s", r.h->message);
    ps_wc_reply_free(&r);
    /* rita's session ends at her next request. */
    const char *names[1] = {"m/a"};
    cr_assert_eq(ps_wc_pull(&rita, names, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, UNAUTHENTICATED);
    cr_assert(strstr(r.h->message, "no longer in the users file"), "%s", r.h->message);
    ps_wc_reply_free(&r);
    expect_closed(&rita, "removed user");
    /* The store is intact. */
    control_ok(&adm, "rotation");
    ps_wc_close(&adm);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(auth_open, without_users_psd_is_open_and_says_so)
{
    ps_psd_t p;
    cr_assert_eq(ps_psd_start(&p, NULL, "notice", NULL), 0);
    ps_wc_t c;
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_connect(&c, p.port, 20000), 0);
    cr_assert_eq(ps_wc_ping(&c, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_auth(&c, "anyone", "x", &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK);
    cr_assert(r.h->auth_reply->open);
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "grep -q 'psd is OPEN' %s", p.log_file);
    cr_assert_eq(system(cmd), 0, "psd did not say it is open");
    PS_ASSERT_PSD_STOPS_CLEAN(&p);
}
