/* SPEC §6 over the wire: assign, assign_add, assign_sub and scaled add on every dtype with the new
 * versions returned, all-or-nothing batched updates, mismatch messages naming both shapes or
 * dtypes, retry deduplication by (client_id, seq), and NaN/Inf stored exactly as given. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32 PSCOPE__V1__DTYPE__DT_FLOAT
#define F64 PSCOPE__V1__DTYPE__DT_DOUBLE
#define I32 PSCOPE__V1__DTYPE__DT_INT32
#define I64 PSCOPE__V1__DTYPE__DT_INT64

#define ASSIGN     PSCOPE__V1__UPDATE_OP__ASSIGN
#define ASSIGN_ADD PSCOPE__V1__UPDATE_OP__ASSIGN_ADD
#define ASSIGN_SUB PSCOPE__V1__UPDATE_OP__ASSIGN_SUB
#define SCALED_ADD PSCOPE__V1__UPDATE_OP__SCALED_ADD

static ps_psd_t psd;
static ps_wc_t wc;

static void setup(void)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", NULL), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&wc, psd.port, 20000), 0, "connect: %s", strerror(errno));
}

static void teardown(void)
{
    ps_wc_close(&wc);
    ps_psd_cleanup(&psd);
}

static void finish(void)
{
    ps_wc_close(&wc);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

TestSuite(updates, .init = setup, .fini = teardown, .timeout = 60);

/* n elements of dtype from doubles, into out (8 * n bytes room). Returns the byte length. */
static size_t pack(int dtype, const double *v, size_t n, void *out)
{
    for (size_t i = 0; i < n; i++) {
        switch (dtype) {
        case F32: {
            float x = (float) v[i];
            memcpy((char *) out + 4 * i, &x, 4);
            break;
        }
        case F64:
            memcpy((char *) out + 8 * i, &v[i], 8);
            break;
        case I32: {
            int32_t x = (int32_t) v[i];
            memcpy((char *) out + 4 * i, &x, 4);
            break;
        }
        default: {
            int64_t x = (int64_t) v[i];
            memcpy((char *) out + 8 * i, &x, 8);
            break;
        }
        }
    }
    return n * ps_wc_dtype_size(dtype);
}

static double elem(const uint8_t *p, int dtype, size_t i)
{
    switch (dtype) {
    case F32: {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    case F64: {
        double v;
        memcpy(&v, p + 8 * i, 8);
        return v;
    }
    case I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    default: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        return (double) v;
    }
    }
}

/* Pull name and compare it element by element with want (n elements). Returns the version. */
static uint64_t expect_values(const char *name, int dtype, const double *want, size_t n)
{
    ps_wc_reply_t r;
    const char *names[1] = {name};
    cr_assert_eq(ps_wc_pull(&wc, names, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "pull %s: %s", name, r.h->message);
    cr_assert_eq(r.payload_len, n * ps_wc_dtype_size(dtype));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(elem(r.payload, dtype, i), want[i], "%s[%zu] = %g, want %g", name, i,
                     elem(r.payload, dtype, i), want[i]);
    uint64_t v = r.h->tensors[0]->version;
    ps_wc_reply_free(&r);
    return v;
}

/* One update item on name; returns the reply (caller frees). */
static void update1(const char *name,
                    int op,
                    double alpha,
                    int dtype,
                    size_t rank,
                    const int64_t *dims,
                    const void *data,
                    size_t len,
                    ps_wc_reply_t *r)
{
    ps_wc_update_t u = {
        .x = {.name = name, .dtype = dtype, .rank = rank, .dims = dims, .data = data, .len = len},
        .op = op,
        .alpha = alpha};
    cr_assert_eq(ps_wc_update(&wc, &u, 1, 0, 0, r), PS_WC_OK);
    cr_assert_eq(r->h->method, PSCOPE__V1__METHOD__UPDATE);
}

static uint64_t
update_ok(const char *name, int op, double alpha, int dtype, const double *v, size_t n)
{
    uint8_t buf[8 * 16];
    int64_t dims[1] = {(int64_t) n};
    size_t len = pack(dtype, v, n, buf);
    ps_wc_reply_t r;
    update1(name, op, alpha, dtype, 1, dims, buf, len, &r);
    cr_assert_eq(r.h->code, 0, "update %s op %d: %s", name, op, r.h->message);
    cr_assert_eq(r.h->body_case, PSCOPE__V1__HEADER__BODY_UPDATE_REPLY);
    cr_assert_eq(r.h->update_reply->n_versions, 1);
    cr_assert_eq(r.h->update_reply->duplicate, 0);
    uint64_t ver = r.h->update_reply->versions[0];
    ps_wc_reply_free(&r);
    return ver;
}

Test(updates, every_op_on_every_dtype)
{
    static const int dtypes[] = {F32, F64, I32, I64};
    for (size_t t = 0; t < 4; t++) {
        int dt = dtypes[t];
        char name[32];
        snprintf(name, sizeof name, "upd/%d", dt);
        int64_t d[1] = {3};
        cr_assert_eq(ps_wc_create_const(&wc, name, dt, 1, d, 2.0), 0);
        double a[3] = {1, -2, 30};
        cr_assert_eq(update_ok(name, ASSIGN, 0, dt, a, 3), 2);
        double want1[3] = {1, -2, 30};
        cr_assert_eq(expect_values(name, dt, want1, 3), 2);
        double add[3] = {10, 20, 30};
        cr_assert_eq(update_ok(name, ASSIGN_ADD, 0, dt, add, 3), 3);
        double want2[3] = {11, 18, 60};
        expect_values(name, dt, want2, 3);
        double sub[3] = {1, 8, 100};
        cr_assert_eq(update_ok(name, ASSIGN_SUB, 0, dt, sub, 3), 4);
        double want3[3] = {10, 10, -40};
        expect_values(name, dt, want3, 3);
        /* v += alpha * x; alpha = -2 keeps integer results exact. */
        double x[3] = {1, 2, 3};
        cr_assert_eq(update_ok(name, SCALED_ADD, -2.0, dt, x, 3), 5);
        double want4[3] = {8, 6, -46};
        cr_assert_eq(expect_values(name, dt, want4, 3), 5);
    }
    /* A fractional alpha on floats. */
    int64_t d[1] = {2};
    cr_assert_eq(ps_wc_create_const(&wc, "upd/frac", F64, 1, d, 1.0), 0);
    double x[2] = {0.5, -4};
    update_ok("upd/frac", SCALED_ADD, 0.25, F64, x, 2);
    double want[2] = {1.125, 0};
    expect_values("upd/frac", F64, want, 2);
    finish();
}

Test(updates, batched_update_returns_a_version_per_item)
{
    int64_t d[1] = {2};
    cr_assert_eq(ps_wc_create_const(&wc, "b/a", F32, 1, d, 0.0), 0);
    cr_assert_eq(ps_wc_create_const(&wc, "b/b", F64, 1, d, 0.0), 0);
    float xa[2] = {1, 2};
    double xb[2] = {3, 4};
    ps_wc_update_t u[2] = {
        {.x = {.name = "b/a", .dtype = F32, .rank = 1, .dims = d, .data = xa, .len = sizeof xa},
         .op = ASSIGN_ADD},
        {.x = {.name = "b/b", .dtype = F64, .rank = 1, .dims = d, .data = xb, .len = sizeof xb},
         .op = ASSIGN},
    };
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_update(&wc, u, 2, 0, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    cr_assert_eq(r.h->update_reply->n_versions, 2);
    cr_assert_eq(r.h->update_reply->versions[0], 2);
    cr_assert_eq(r.h->update_reply->versions[1], 2);
    ps_wc_reply_free(&r);
    double wa[2] = {1, 2}, wb[2] = {3, 4};
    expect_values("b/a", F32, wa, 2);
    expect_values("b/b", F64, wb, 2);
    finish();
}

Test(updates, batched_update_is_all_or_nothing)
{
    int64_t d[1] = {2}, d3[1] = {3};
    cr_assert_eq(ps_wc_create_const(&wc, "aon/a", F32, 1, d, 5.0), 0);
    cr_assert_eq(ps_wc_create_const(&wc, "aon/b", F32, 1, d, 5.0), 0);
    float x2[2] = {1, 1}, x3[3] = {1, 1, 1};
    /* Second item has the wrong shape: nothing is applied, the first item included. */
    ps_wc_update_t u[2] = {
        {.x = {.name = "aon/a", .dtype = F32, .rank = 1, .dims = d, .data = x2, .len = sizeof x2},
         .op = ASSIGN_ADD},
        {.x = {.name = "aon/b", .dtype = F32, .rank = 1, .dims = d3, .data = x3, .len = sizeof x3},
         .op = ASSIGN_ADD},
    };
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_update(&wc, u, 2, 0, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__INVALID_ARGUMENT, "%s", r.h->message);
    cr_assert(strstr(r.h->message, "aon/b") != NULL, "names the variable: %s", r.h->message);
    ps_wc_reply_free(&r);
    /* Second item names a missing variable. */
    u[1].x.name = "aon/missing";
    u[1].x.dims = d;
    u[1].x.data = x2;
    u[1].x.len = sizeof x2;
    cr_assert_eq(ps_wc_update(&wc, u, 2, 0, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__NOT_FOUND, "%s", r.h->message);
    cr_assert(strstr(r.h->message, "aon/missing") != NULL, "%s", r.h->message);
    ps_wc_reply_free(&r);
    /* Second item has an unknown op. */
    u[1].x.name = "aon/b";
    u[1].op = 99;
    cr_assert_eq(ps_wc_update(&wc, u, 2, 0, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__INVALID_ARGUMENT, "%s", r.h->message);
    ps_wc_reply_free(&r);
    double want[2] = {5, 5};
    cr_assert_eq(expect_values("aon/a", F32, want, 2), 1, "aon/a was not updated");
    cr_assert_eq(expect_values("aon/b", F32, want, 2), 1, "aon/b was not updated");
    finish();
}

Test(updates, mismatches_name_both_shapes_and_dtypes)
{
    int64_t d[2] = {2, 3}, t[2] = {3, 2}, flat[1] = {6};
    cr_assert_eq(ps_wc_create_const(&wc, "mm/v", F32, 2, d, 0.0), 0);
    float x[6] = {0};
    ps_wc_reply_t r;
    update1("mm/v", ASSIGN, 0, F32, 2, t, x, sizeof x, &r);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__INVALID_ARGUMENT);
    cr_assert(strstr(r.h->message, "mm/v") && strstr(r.h->message, "(2, 3)") &&
                  strstr(r.h->message, "(3, 2)"),
              "shape mismatch names both shapes: %s", r.h->message);
    ps_wc_reply_free(&r);
    update1("mm/v", ASSIGN_ADD, 0, F32, 1, flat, x, sizeof x, &r);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__INVALID_ARGUMENT);
    cr_assert(strstr(r.h->message, "(2, 3)") && strstr(r.h->message, "(6,)"),
              "same byte length, other shape: %s", r.h->message);
    ps_wc_reply_free(&r);
    double xd[6] = {0};
    update1("mm/v", ASSIGN, 0, F64, 2, d, xd, sizeof xd, &r);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__INVALID_ARGUMENT);
    cr_assert(strstr(r.h->message, "float32") && strstr(r.h->message, "float64"),
              "dtype mismatch names both dtypes: %s", r.h->message);
    ps_wc_reply_free(&r);
    int32_t xi[6] = {0};
    update1("mm/v", ASSIGN, 0, I32, 2, d, xi, sizeof xi, &r);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__INVALID_ARGUMENT);
    cr_assert(strstr(r.h->message, "float32") && strstr(r.h->message, "int32"),
              "same byte length, other dtype: %s", r.h->message);
    ps_wc_reply_free(&r);
    double want[6] = {0};
    cr_assert_eq(expect_values("mm/v", F32, want, 6), 1);
    finish();
}

Test(updates, retried_update_is_applied_once)
{
    int64_t d[1] = {1};
    cr_assert_eq(ps_wc_create_const(&wc, "dd/v", I64, 1, d, 0.0), 0);
    int64_t one = 1;
    ps_wc_update_t u = {
        .x = {.name = "dd/v", .dtype = I64, .rank = 1, .dims = d, .data = &one, .len = 8},
        .op = ASSIGN_ADD};
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_update(&wc, &u, 1, 42, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    cr_assert_eq(r.h->update_reply->duplicate, 0);
    cr_assert_eq(r.h->update_reply->versions[0], 2);
    ps_wc_reply_free(&r);
    /* The retry (same client_id and seq) is answered with the original versions, not applied. */
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(ps_wc_update(&wc, &u, 1, 42, 1, &r), PS_WC_OK);
        cr_assert_eq(r.h->code, 0, "%s", r.h->message);
        cr_assert_eq(r.h->update_reply->duplicate, 1, "a retry is reported as duplicate");
        cr_assert_eq(r.h->update_reply->n_versions, 1);
        cr_assert_eq(r.h->update_reply->versions[0], 2);
        ps_wc_reply_free(&r);
    }
    double want1[1] = {1};
    cr_assert_eq(expect_values("dd/v", I64, want1, 1), 2);
    /* Another client with the same seq is independent; the next seq applies. */
    cr_assert_eq(ps_wc_update(&wc, &u, 1, 43, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->update_reply->duplicate, 0);
    cr_assert_eq(r.h->update_reply->versions[0], 3);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_update(&wc, &u, 1, 42, 2, &r), PS_WC_OK);
    cr_assert_eq(r.h->update_reply->duplicate, 0);
    cr_assert_eq(r.h->update_reply->versions[0], 4);
    ps_wc_reply_free(&r);
    /* seq 0 means no deduplication: both are applied. */
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(ps_wc_update(&wc, &u, 1, 42, 0, &r), PS_WC_OK);
        cr_assert_eq(r.h->update_reply->duplicate, 0);
        cr_assert_eq(r.h->update_reply->versions[0], (uint64_t) (5 + k));
        ps_wc_reply_free(&r);
    }
    double want2[1] = {5};
    cr_assert_eq(expect_values("dd/v", I64, want2, 1), 6);
    /* An older seq than the last applied one is refused and not applied. */
    cr_assert_eq(ps_wc_update(&wc, &u, 1, 42, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__FAILED_PRECONDITION, "older seq: %u %s", r.h->code,
                 r.h->message);
    ps_wc_reply_free(&r);
    cr_assert_eq(expect_values("dd/v", I64, want2, 1), 6);
    /* A failed update is not recorded: retrying seq 3 after fixing it applies it. */
    int64_t bad_dims[1] = {2};
    int64_t two[2] = {1, 1};
    ps_wc_update_t bad = {
        .x = {.name = "dd/v", .dtype = I64, .rank = 1, .dims = bad_dims, .data = two, .len = 16},
        .op = ASSIGN_ADD};
    cr_assert_eq(ps_wc_update(&wc, &bad, 1, 42, 3, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__INVALID_ARGUMENT);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_update(&wc, &u, 1, 42, 3, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    cr_assert_eq(r.h->update_reply->duplicate, 0);
    cr_assert_eq(r.h->update_reply->versions[0], 7);
    ps_wc_reply_free(&r);
    finish();
}

Test(updates, nan_and_inf_are_stored_as_given)
{
    int64_t d[1] = {4};
    cr_assert_eq(ps_wc_create_const(&wc, "nan/f", F32, 1, d, 0.0), 0);
    cr_assert_eq(ps_wc_create_const(&wc, "nan/d", F64, 1, d, 0.0), 0);
    /* A NaN with a payload, +Inf, -Inf, -0.0: assign keeps the bits. */
    uint32_t fb[4] = {0x7fc12345u, 0x7f800000u, 0xff800000u, 0x80000000u};
    uint64_t db[4] = {0x7ff8000000abcdefull, 0x7ff0000000000000ull, 0xfff0000000000000ull,
                      0x8000000000000000ull};
    ps_wc_reply_t r;
    update1("nan/f", ASSIGN, 0, F32, 1, d, fb, sizeof fb, &r);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    ps_wc_reply_free(&r);
    update1("nan/d", ASSIGN, 0, F64, 1, d, db, sizeof db, &r);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    ps_wc_reply_free(&r);
    const char *names[2] = {"nan/f", "nan/d"};
    cr_assert_eq(ps_wc_pull(&wc, names, 2, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0);
    cr_assert_eq(r.h->n_tensors, 2);
    cr_assert_eq(r.payload_len, sizeof fb + sizeof db);
    cr_assert(memcmp(r.payload, fb, sizeof fb) == 0, "float32 bits changed");
    cr_assert(memcmp(r.payload + sizeof fb, db, sizeof db) == 0, "float64 bits changed");
    ps_wc_reply_free(&r);
    /* Arithmetic with NaN and Inf follows IEEE: inf + 1 = inf, nan stays nan. */
    float one[4] = {1, 1, 1, 1};
    update1("nan/f", ASSIGN_ADD, 0, F32, 1, d, one, sizeof one, &r);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    ps_wc_reply_free(&r);
    const char *nf[1] = {"nan/f"};
    cr_assert_eq(ps_wc_pull(&wc, nf, 1, &r), PS_WC_OK);
    float got[4];
    memcpy(got, r.payload, sizeof got);
    cr_assert(isnan(got[0]));
    cr_assert(isinf(got[1]) && got[1] > 0);
    cr_assert(isinf(got[2]) && got[2] < 0);
    cr_assert_eq(got[3], 1.0f);
    ps_wc_reply_free(&r);
    finish();
}

Test(updates, pull_of_many_variables_in_one_request)
{
    int64_t d[1] = {3};
    char names_buf[8][16];
    const char *names[8];
    for (int i = 0; i < 8; i++) {
        snprintf(names_buf[i], sizeof names_buf[i], "many/v%d", i);
        names[i] = names_buf[i];
        cr_assert_eq(ps_wc_create_const(&wc, names[i], i % 2 ? F64 : F32, 1, d, (double) i), 0);
    }
    /* In request order, not creation or name order. */
    const char *order[8] = {names[5], names[0], names[7], names[2],
                            names[1], names[6], names[3], names[4]};
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_pull(&wc, order, 8, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    cr_assert_eq(r.h->n_tensors, 8);
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        Pscope__V1__TensorDesc *t = r.h->tensors[i];
        cr_assert(ps_wc_bytes_eq(t->name, order[i]));
        int idx = order[i][6] - '0';
        cr_assert_eq(t->dtype, idx % 2 ? F64 : F32);
        cr_assert_eq(t->n_dims, 1);
        cr_assert_eq(t->dims[0], 3);
        for (size_t k = 0; k < 3; k++)
            cr_assert_eq(elem(r.payload + off, t->dtype, k), (double) idx);
        off += 3 * ps_wc_dtype_size(t->dtype);
    }
    cr_assert_eq(off, r.payload_len);
    ps_wc_reply_free(&r);
    /* One missing name fails the whole pull with NOT_FOUND naming it. */
    const char *bad[2] = {names[0], "many/none"};
    cr_assert_eq(ps_wc_pull(&wc, bad, 2, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__NOT_FOUND);
    cr_assert(strstr(r.h->message, "many/none") != NULL, "%s", r.h->message);
    cr_assert_eq(r.payload_len, 0);
    ps_wc_reply_free(&r);
    finish();
}
