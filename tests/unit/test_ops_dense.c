/* matmul (all transpose combinations), bias_add, relu and softmax cross-entropy (dense and sparse
 * labels), with their gradients, against naive double-precision references and finite differences;
 * the OpenBLAS thread-count wrapper; exact error texts. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/ops.h>

#include "test_ops_util.h"

/* A stored matrix and the view op() gives of it. */
static float at(const float *m, int64_t cols, int trans, int64_t i, int64_t j)
{
    return trans ? m[j * cols + i] : m[i * cols + j];
}

typedef struct mm_case {
    int64_t m, k, n;
    int ta, tb;
    int64_t ar, ac, br, bc;
} mm_case_t;

static mm_case_t mm_make(int64_t m, int64_t k, int64_t n, int ta, int tb)
{
    mm_case_t c = {m, k, n, ta, tb, ta ? k : m, ta ? m : k, tb ? n : k, tb ? k : n};
    return c;
}

static double *ref_matmul(const mm_case_t *c, const float *a, const float *b)
{
    double *out = alloc_doubles((size_t) (c->m * c->n));
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t j = 0; j < c->n; j++)
            for (int64_t p = 0; p < c->k; p++)
                out[i * c->n + j] += (double) at(a, c->ac, c->ta, i, p) * at(b, c->bc, c->tb, p, j);
    return out;
}

Test(matmul, all_transpose_combinations_match_reference)
{
    rng_t r = {11};
    for (int t = 0; t < 40; t++) {
        mm_case_t c =
            mm_make(rng_int(&r, 1, 9), rng_int(&r, 1, 9), rng_int(&r, 1, 9), t & 1, (t >> 1) & 1);
        float *a = random_floats(&r, (size_t) (c.ar * c.ac));
        float *b = random_floats(&r, (size_t) (c.br * c.bc));
        float *out = random_floats(&r, (size_t) (c.m * c.n));
        const float alpha = 0.5f + (float) (t % 3), beta = (t % 4) == 0 ? 0.0f : 0.25f;
        double *want = ref_matmul(&c, a, b);
        for (int64_t i = 0; i < c.m * c.n; i++)
            want[i] = alpha * want[i] + (double) beta * out[i];
        ps_error_t err;
        cr_assert_eq(
            ps_ops_matmul(a, c.ar, c.ac, c.ta, b, c.br, c.bc, c.tb, alpha, beta, out, &err), 0,
            "%s", err.msg);
        expect_close("matmul", out, want, (size_t) (c.m * c.n), 1e-5);
        free(a);
        free(b);
        free(out);
        free(want);
    }
}

Test(matmul, beta_zero_does_not_read_c)
{
    float a[2] = {1, 2}, b[2] = {3, 4}, c[1] = {NAN};
    cr_assert_eq(ps_ops_matmul(a, 1, 2, 0, b, 2, 1, 0, 1.0f, 0.0f, c, NULL), 0);
    cr_expect_eq(c[0], 11.0f);
}

/* da and db against references, then against finite differences of L = sum(w * op(a) op(b)). */
static void check_matmul_grad(const mm_case_t *c, rng_t *r)
{
    const size_t na = (size_t) (c->ar * c->ac), nb = (size_t) (c->br * c->bc),
                 nc = (size_t) (c->m * c->n);
    float *a = random_floats(r, na), *b = random_floats(r, nb), *w = random_floats(r, nc);
    float *da = alloc_floats(na), *db = alloc_floats(nb), *out = alloc_floats(nc);
    ps_error_t err;
    cr_assert_eq(
        ps_ops_matmul_grad(a, c->ar, c->ac, c->ta, b, c->br, c->bc, c->tb, w, da, db, &err), 0,
        "%s", err.msg);
    double *want_a = alloc_doubles(na), *want_b = alloc_doubles(nb);
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t j = 0; j < c->n; j++)
            for (int64_t p = 0; p < c->k; p++) {
                double g = w[i * c->n + j];
                want_a[c->ta ? p * c->ac + i : i * c->ac + p] += g * at(b, c->bc, c->tb, p, j);
                want_b[c->tb ? j * c->bc + p : p * c->bc + j] += g * at(a, c->ac, c->ta, i, p);
            }
    expect_close("da", da, want_a, na, 1e-5);
    expect_close("db", db, want_b, nb, 1e-5);
    /* L is bilinear, so central differences are exact up to rounding for any step. */
    const float h = 0.5f;
    for (size_t i = 0; i < na; i++) {
        float keep = a[i];
        a[i] = keep + h;
        ps_ops_matmul(a, c->ar, c->ac, c->ta, b, c->br, c->bc, c->tb, 1, 0, out, NULL);
        double lp = weighted_sum(w, out, nc);
        a[i] = keep - h;
        ps_ops_matmul(a, c->ar, c->ac, c->ta, b, c->br, c->bc, c->tb, 1, 0, out, NULL);
        want_a[i] = (lp - weighted_sum(w, out, nc)) / (2.0 * h);
        a[i] = keep;
    }
    for (size_t i = 0; i < nb; i++) {
        float keep = b[i];
        b[i] = keep + h;
        ps_ops_matmul(a, c->ar, c->ac, c->ta, b, c->br, c->bc, c->tb, 1, 0, out, NULL);
        double lp = weighted_sum(w, out, nc);
        b[i] = keep - h;
        ps_ops_matmul(a, c->ar, c->ac, c->ta, b, c->br, c->bc, c->tb, 1, 0, out, NULL);
        want_b[i] = (lp - weighted_sum(w, out, nc)) / (2.0 * h);
        b[i] = keep;
    }
    expect_close("da vs finite difference", da, want_a, na, 1e-4);
    expect_close("db vs finite difference", db, want_b, nb, 1e-4);
    free(a);
    free(b);
    free(w);
    free(da);
    free(db);
    free(out);
    free(want_a);
    free(want_b);
}

Test(matmul_grad, matches_reference_and_finite_differences)
{
    rng_t r = {12};
    for (int t = 0; t < 16; t++) {
        mm_case_t c =
            mm_make(rng_int(&r, 1, 7), rng_int(&r, 1, 7), rng_int(&r, 1, 7), t & 1, (t >> 1) & 1);
        check_matmul_grad(&c, &r);
    }
}

Test(matmul_grad, either_gradient_may_be_skipped)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {1, 0, -1}, dc[2] = {1, 1}, da[6], db[3];
    cr_assert_eq(ps_ops_matmul_grad(a, 2, 3, 0, b, 3, 1, 0, dc, NULL, db, NULL), 0);
    cr_expect(db[0] == 5 && db[1] == 7 && db[2] == 9);
    cr_assert_eq(ps_ops_matmul_grad(a, 2, 3, 0, b, 3, 1, 0, dc, da, NULL, NULL), 0);
    cr_expect(da[0] == 1 && da[1] == 0 && da[2] == -1 && da[3] == 1 && da[5] == -1);
}

Test(bias_add, forward_in_place_and_gradient)
{
    rng_t r = {13};
    const int64_t rows = 37, ch = 5;
    float *x = random_floats(&r, (size_t) (rows * ch)), *bias = random_floats(&r, (size_t) ch);
    float *y = alloc_floats((size_t) (rows * ch)), *db = alloc_floats((size_t) ch);
    ps_error_t err;
    cr_assert_eq(ps_ops_bias_add(x, rows, ch, bias, y, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < rows * ch; i++)
        cr_assert_eq(y[i], x[i] + bias[i % ch]);
    cr_assert_eq(ps_ops_bias_add(x, rows, ch, bias, x, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(x, y, (size_t) (rows * ch) * sizeof(float)), 0);
    /* Gradient of L = sum(w * bias_add(x, bias)) with respect to bias: reference and finite
     * differences (L is linear in bias). */
    float *w = random_floats(&r, (size_t) (rows * ch));
    cr_assert_eq(ps_ops_bias_add_grad(w, rows, ch, db, &err), 0, "%s", err.msg);
    double want[5] = {0}, num[5];
    for (int64_t i = 0; i < rows * ch; i++)
        want[i % ch] += w[i];
    expect_close("d_bias", db, want, (size_t) ch, 1e-6);
    for (int64_t q = 0; q < ch; q++) {
        float keep = bias[q];
        bias[q] = keep + 0.5f;
        ps_ops_bias_add(x, rows, ch, bias, y, NULL);
        double lp = weighted_sum(w, y, (size_t) (rows * ch));
        bias[q] = keep - 0.5f;
        ps_ops_bias_add(x, rows, ch, bias, y, NULL);
        num[q] = (lp - weighted_sum(w, y, (size_t) (rows * ch))) / 1.0;
        bias[q] = keep;
    }
    expect_close("d_bias vs finite difference", db, num, (size_t) ch, 1e-4);
    free(x);
    free(bias);
    free(y);
    free(db);
    free(w);
}

Test(relu, forward_keeps_nan_and_works_in_place)
{
    float x[5] = {-1.5f, 0.0f, 2.0f, NAN, -0.0f}, y[5];
    cr_assert_eq(ps_ops_relu(x, 5, y, NULL), 0);
    cr_expect(y[0] == 0.0f && y[1] == 0.0f && y[2] == 2.0f && isnan(y[3]) && y[4] == 0.0f);
    cr_assert_eq(ps_ops_relu(x, 5, x, NULL), 0);
    cr_expect(x[0] == 0.0f && x[2] == 2.0f);
}

Test(relu_grad, matches_definition_and_finite_differences)
{
    rng_t r = {14};
    const int64_t n = 200;
    float *x = random_floats(&r, (size_t) n), *w = random_floats(&r, (size_t) n);
    /* Keep every input at least 0.1 from the kink so a step of 0.01 never crosses it. */
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] < 0 ? x[i] - 0.1f : x[i] + 0.1f;
    x[0] = 0.0f; /* at the kink TensorFlow's gradient is 0 */
    float *y = alloc_floats((size_t) n), *dx = alloc_floats((size_t) n);
    cr_assert_eq(ps_ops_relu_grad(w, x, n, dx, NULL), 0);
    cr_expect_eq(dx[0], 0.0f);
    double *num = alloc_doubles((size_t) n);
    const float h = 0.01f;
    for (int64_t i = 1; i < n; i++) {
        float keep = x[i];
        x[i] = keep + h;
        ps_ops_relu(x, n, y, NULL);
        double lp = weighted_sum(w, y, (size_t) n);
        x[i] = keep - h;
        ps_ops_relu(x, n, y, NULL);
        num[i] = (lp - weighted_sum(w, y, (size_t) n)) / (2.0 * h);
        x[i] = keep;
    }
    expect_close("relu_grad vs finite difference", dx, num, (size_t) n, 1e-4);
    /* features may be the relu's output; in-place on d_output is allowed. */
    ps_ops_relu(x, n, y, NULL);
    cr_assert_eq(ps_ops_relu_grad(w, y, n, w, NULL), 0);
    cr_assert_eq(memcmp(w, dx, (size_t) n * sizeof(float)), 0);
    free(x);
    free(w);
    free(y);
    free(dx);
    free(num);
}

/* Reference loss of one row in long double, labels dense. */
static double ref_row_loss(const float *z, const float *y, int64_t classes)
{
    long double m = z[0], s = 0, loss = 0;
    for (int64_t j = 1; j < classes; j++)
        m = z[j] > m ? z[j] : m;
    for (int64_t j = 0; j < classes; j++)
        s += expl((long double) z[j] - m);
    for (int64_t j = 0; j < classes; j++)
        loss -= (long double) y[j] * ((long double) z[j] - m - logl(s));
    return (double) loss;
}

Test(softmax_cross_entropy, losses_mean_and_gradient)
{
    rng_t r = {15};
    const int64_t batch = 7, classes = 10, n = batch * classes;
    float *z = random_floats(&r, (size_t) n), *y = alloc_floats((size_t) n);
    for (int64_t i = 0; i < n; i++)
        z[i] *= 4.0f;
    for (int64_t i = 0; i < batch; i++) {
        double s = 0;
        for (int64_t j = 0; j < classes; j++)
            s += y[i * classes + j] = (float) (rng_float(&r) + 1.0);
        for (int64_t j = 0; j < classes; j++)
            y[i * classes + j] = (float) (y[i * classes + j] / s);
    }
    float *losses = alloc_floats((size_t) batch), mean, *d = alloc_floats((size_t) n);
    ps_error_t err;
    cr_assert_eq(ps_ops_softmax_cross_entropy(z, y, batch, classes, losses, &mean, d, &err), 0,
                 "%s", err.msg);
    double want[7], want_mean = 0;
    for (int64_t i = 0; i < batch; i++) {
        want[i] = ref_row_loss(z + i * classes, y + i * classes, classes);
        want_mean += want[i] / batch;
    }
    expect_close("losses", losses, want, (size_t) batch, 1e-6);
    expect_close("mean", &mean, &want_mean, 1, 1e-6);
    /* Finite differences of the mean loss (smooth): step 1e-2, error O(h^2). */
    double *num = alloc_doubles((size_t) n);
    for (int64_t i = 0; i < n; i++) {
        float keep = z[i], lp, lm;
        z[i] = keep + 0.01f;
        ps_ops_softmax_cross_entropy(z, y, batch, classes, NULL, &lp, NULL, NULL);
        z[i] = keep - 0.01f;
        ps_ops_softmax_cross_entropy(z, y, batch, classes, NULL, &lm, NULL, NULL);
        z[i] = keep;
        num[i] = ((double) lp - lm) / 0.02;
    }
    expect_close("d_logits vs finite difference", d, num, (size_t) n, 2e-3);
    free(z);
    free(y);
    free(losses);
    free(d);
    free(num);
}

Test(softmax_cross_entropy, stable_for_huge_logits)
{
    float z[3] = {1000.0f, -1000.0f, 999.0f}, y[3] = {0, 0, 1}, loss, d[3];
    cr_assert_eq(ps_ops_softmax_cross_entropy(z, y, 1, 3, &loss, NULL, d, NULL), 0);
    cr_expect(fabs(loss - 1.3132616875) < 1e-5, "loss %g", (double) loss); /* log(1 + e) */
    cr_expect(isfinite(d[0]) && isfinite(d[1]) && isfinite(d[2]));
    cr_expect(fabs(d[0] + d[2]) < 1e-6 && d[1] == 0.0f);
}

Test(sparse_softmax_cross_entropy, equals_dense_with_one_hot_labels)
{
    rng_t r = {16};
    const int64_t batch = 9, classes = 10, n = batch * classes;
    float *z = random_floats(&r, (size_t) n), *y = calloc((size_t) n, sizeof(float));
    int32_t labels[9];
    for (int64_t i = 0; i < batch; i++) {
        labels[i] = (int32_t) rng_int(&r, 0, classes - 1);
        y[i * classes + labels[i]] = 1.0f;
    }
    float l1[9], l2[9], m1, m2, d1[90], d2[90];
    cr_assert_eq(ps_ops_softmax_cross_entropy(z, y, batch, classes, l1, &m1, d1, NULL), 0);
    cr_assert_eq(ps_ops_sparse_softmax_cross_entropy(z, labels, batch, classes, l2, &m2, d2, NULL),
                 0);
    cr_expect_eq(memcmp(l1, l2, sizeof l1), 0);
    cr_expect_eq(m1, m2);
    cr_expect_eq(memcmp(d1, d2, sizeof d1), 0);
    /* Finite differences on the sparse op as well. */
    double num[90];
    for (int64_t i = 0; i < n; i++) {
        float keep = z[i], lp, lm;
        z[i] = keep + 0.01f;
        ps_ops_sparse_softmax_cross_entropy(z, labels, batch, classes, NULL, &lp, NULL, NULL);
        z[i] = keep - 0.01f;
        ps_ops_sparse_softmax_cross_entropy(z, labels, batch, classes, NULL, &lm, NULL, NULL);
        z[i] = keep;
        num[i] = ((double) lp - lm) / 0.02;
    }
    expect_close("sparse d_logits vs finite difference", d2, num, (size_t) n, 2e-3);
    free(z);
    free(y);
}

Test(threads, set_and_get_wrap_openblas)
{
    int before = ps_ops_get_num_threads();
    cr_assert_geq(before, 1);
    cr_assert_eq(ps_ops_set_num_threads(1, NULL), 0);
    cr_expect_eq(ps_ops_get_num_threads(), 1);
    ps_error_t err;
    cr_expect_eq(ps_ops_set_num_threads(0, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "set_num_threads: thread count 0 must be >= 1");
    cr_expect_eq(ps_ops_get_num_threads(), 1);
    cr_assert_eq(ps_ops_set_num_threads(before, NULL), 0);
    cr_expect_eq(ps_ops_get_num_threads(), before);
}

/* One call that must fail with INVALID_ARGUMENT and exactly this message. */
#define EXPECT_INVALID(call, text)                                              \
    do {                                                                        \
        ps_error_t e_;                                                          \
        memset(&e_, 0, sizeof e_);                                              \
        int rc_ = (call);                                                       \
        cr_expect_eq(rc_, PS_ERR_INVALID_ARGUMENT, "rc %d for %s", rc_, #call); \
        cr_expect_str_eq(e_.msg, (text));                                       \
    } while (0)

/* The err argument inside an EXPECT_INVALID call: the ps_error_t the macro declares. */
#define ERR_ &e_

Test(dense_ops, invalid_arguments_have_exact_messages)
{
    float buf[64] = {0};
    int32_t labels[2] = {3, 10};
    EXPECT_INVALID(ps_ops_matmul(buf, 2, 3, 0, buf, 4, 5, 0, 1, 0, buf, ERR_),
                   "matmul: matrix size-incompatible: op(a) is [2,3], op(b) is [4,5] "
                   "(trans_a=0, trans_b=0)");
    EXPECT_INVALID(ps_ops_matmul_grad(buf, 2, 3, 1, buf, 2, 5, 1, buf, buf, buf, ERR_),
                   "matmul_grad: matrix size-incompatible: op(a) is [3,2], op(b) is [5,2] "
                   "(trans_a=1, trans_b=1)");
    EXPECT_INVALID(ps_ops_matmul(buf, 2, 3, 2, buf, 3, 5, 0, 1, 0, buf, ERR_),
                   "matmul: transpose flags must be 0 or 1, got trans_a=2 trans_b=0");
    EXPECT_INVALID(ps_ops_matmul(buf, 0, 3, 0, buf, 3, 5, 0, 1, 0, buf, ERR_),
                   "matmul: a shape [0,3] has a dimension < 1");
    EXPECT_INVALID(ps_ops_matmul(buf, 2, 3, 0, buf, 3, 5000000000LL, 0, 1, 0, buf, ERR_),
                   "matmul: b shape [3,5000000000] is too large");
    EXPECT_INVALID(ps_ops_matmul(buf, 2, 3, 0, buf, 3, 5, 0, 1, 0, NULL, ERR_),
                   "matmul: c is NULL");
    EXPECT_INVALID(ps_ops_bias_add(buf, 4, 0, buf, buf, ERR_),
                   "bias_add: input shape [4,0] has a dimension < 1");
    EXPECT_INVALID(ps_ops_bias_add_grad(buf, 4, 2, NULL, ERR_), "bias_add_grad: d_bias is NULL");
    EXPECT_INVALID(ps_ops_relu(buf, -1, buf, ERR_), "relu: input shape [-1,1] has a dimension < 1");
    EXPECT_INVALID(ps_ops_relu_grad(buf, NULL, 4, buf, ERR_), "relu_grad: features is NULL");
    EXPECT_INVALID(ps_ops_softmax_cross_entropy(buf, buf, 2, 0, NULL, NULL, NULL, ERR_),
                   "softmax_cross_entropy: logits shape [2,0] has a dimension < 1");
    float loss = -1.0f;
    EXPECT_INVALID(ps_ops_sparse_softmax_cross_entropy(buf, labels, 2, 10, NULL, &loss, NULL, ERR_),
                   "sparse_softmax_cross_entropy: Received a label value of 10 which is outside "
                   "the valid range of [0, 10).");
    cr_expect_eq(loss, -1.0f, "no output written on failure");
    labels[1] = -1;
    EXPECT_INVALID(ps_ops_sparse_softmax_cross_entropy(buf, labels, 2, 10, NULL, &loss, NULL, ERR_),
                   "sparse_softmax_cross_entropy: Received a label value of -1 which is outside "
                   "the valid range of [0, 10).");
}
