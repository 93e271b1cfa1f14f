/* Keras's weight constraints at psd (tf.keras.constraints in TF 1.15): validation at creation and
 * the in-place projection applied after each optimizer step. The norm of MaxNorm, UnitNorm and
 * MinMaxNorm is sqrt(reduce_sum(square(w), axis, keepdims=True)); every element is then scaled by
 * desired / (epsilon + norm) with Keras's epsilon 1e-7, in the variable's dtype. Sums accumulate in
 * double (TensorFlow's Eigen reduction order differs, so the last bit of a float32 norm may too).
 */
#include "constraint.h"

#include <math.h>
#include <string.h>

#include <ps/dtype.h>

#define KERAS_EPSILON 1e-7

int psd_constraint_check(const ps_constraint_spec_t *c,
                         const char *name,
                         int dtype,
                         unsigned rank,
                         ps_constraint_spec_t *out,
                         ps_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (c->kind > PS_CKIND_MIN_MAX_NORM)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown constraint kind %d for %s",
                            (int) c->kind, name);
    if (c->kind == PS_CKIND_NONE)
        return 0;
    if (dtype != PS_DTYPE_FLOAT32 && dtype != PS_DTYPE_FLOAT64)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a constraint needs a floating-point variable: %s is %s", name,
                            ps_dtype_name(dtype));
    out->kind = c->kind;
    if (c->kind == PS_CKIND_NON_NEG)
        return 0; /* elementwise: no axis, no values */
    out->max_value = c->max_value;
    out->min_value = c->min_value;
    out->rate = c->rate;
    if (c->kind == PS_CKIND_UNIT_NORM) {
        out->max_value = out->min_value = out->rate = 0.0;
    } else if (c->kind == PS_CKIND_MAX_NORM) {
        out->min_value = out->rate = 0.0;
    }
    if (c->all_axes) {
        out->all_axes = 1;
        return 0;
    }
    if (c->naxes > PS_MAX_RANK)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a constraint of %s names %d axes; at most %d", name, (int) c->naxes,
                            PS_MAX_RANK);
    unsigned seen = 0;
    for (unsigned i = 0; i < c->naxes; i++) {
        int32_t a = c->axes[i];
        if (a < -(int32_t) rank || a >= (int32_t) rank)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Invalid reduction dimension %d for input with %u dimensions.", a,
                                rank);
        unsigned d = (unsigned) (a < 0 ? a + (int32_t) rank : a);
        if (seen & (1u << d))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Invalid reduction arguments: Axes contains duplicate dimension: "
                                "%u",
                                d);
        seen |= 1u << d;
        out->axes[i] = a;
    }
    out->naxes = c->naxes;
    return 0;
}

/* The reduced dimensions as a bit mask over [0, rank). */
static unsigned reduced_mask(const ps_constraint_spec_t *c, unsigned rank)
{
    if (c->all_axes)
        return rank ? (1u << rank) - 1u : 0u;
    unsigned m = 0;
    for (unsigned i = 0; i < c->naxes; i++) {
        int32_t a = c->axes[i];
        m |= 1u << (unsigned) (a < 0 ? a + (int32_t) rank : a);
    }
    return m;
}

/* Walks a tensor as groups: each group is one position of the kept dimensions, its members the
 * positions of the reduced ones (the elements one norm covers). Offsets in elements. */
typedef struct walk {
    unsigned nk, nr;
    int64_t kd[PS_MAX_RANK], ks[PS_MAX_RANK]; /* kept dims and strides */
    int64_t rd[PS_MAX_RANK], rs[PS_MAX_RANK]; /* reduced dims and strides */
    uint64_t kcount, rcount;
} walk_t;

static void walk_init(walk_t *w, const int64_t *dims, unsigned rank, unsigned mask)
{
    memset(w, 0, sizeof *w);
    w->kcount = w->rcount = 1;
    int64_t stride = 1;
    for (unsigned i = rank; i-- > 0;) {
        if (mask & (1u << i)) {
            w->rd[w->nr] = dims[i];
            w->rs[w->nr++] = stride;
            w->rcount *= (uint64_t) dims[i];
        } else {
            w->kd[w->nk] = dims[i];
            w->ks[w->nk++] = stride;
            w->kcount *= (uint64_t) dims[i];
        }
        stride *= dims[i];
    }
}

/* Advance an odometer over dims d (n of them, innermost first); returns the offset change. */
static int64_t step(int64_t *idx, const int64_t *d, const int64_t *s, unsigned n)
{
    int64_t delta = 0;
    for (unsigned i = 0; i < n; i++) {
        if (++idx[i] < d[i])
            return delta + s[i];
        delta -= (d[i] - 1) * s[i];
        idx[i] = 0;
    }
    return delta;
}

static double clip(double x, double lo, double hi)
{
    if (hi < lo) /* backend.clip: max_value below min_value becomes min_value */
        hi = lo;
    return x < lo ? lo : (x > hi ? hi : x);
}

#define DEFINE_APPLY(SUFFIX, T)                                                        \
    static void apply_##SUFFIX(const ps_constraint_spec_t *c, const walk_t *w, T *x)   \
    {                                                                                  \
        int64_t kidx[PS_MAX_RANK] = {0};                                               \
        int64_t base = 0;                                                              \
        const T eps = (T) KERAS_EPSILON;                                               \
        for (uint64_t k = 0; k < w->kcount; k++) {                                     \
            int64_t ridx[PS_MAX_RANK] = {0};                                           \
            int64_t off = base;                                                        \
            double sum = 0.0;                                                          \
            for (uint64_t r = 0; r < w->rcount; r++) {                                 \
                double e = (double) x[off];                                            \
                sum += e * e;                                                          \
                off += step(ridx, w->rd, w->rs, w->nr);                                \
            }                                                                          \
            T norm = (T) sqrt((double) (T) sum);                                       \
            T factor;                                                                  \
            if (c->kind == PS_CKIND_UNIT_NORM) {                                       \
                factor = (T) 1 / (eps + norm);                                         \
            } else {                                                                   \
                T desired;                                                             \
                if (c->kind == PS_CKIND_MAX_NORM) {                                    \
                    desired = (T) clip((double) norm, 0.0, (double) (T) c->max_value); \
                } else {                                                               \
                    T rate = (T) c->rate;                                              \
                    T clipped = (T) clip((double) norm, (double) (T) c->min_value,     \
                                         (double) (T) c->max_value);                   \
                    desired = rate * clipped + ((T) 1 - rate) * norm;                  \
                }                                                                      \
                factor = desired / (eps + norm);                                       \
            }                                                                          \
            memset(ridx, 0, sizeof ridx);                                              \
            off = base;                                                                \
            for (uint64_t r = 0; r < w->rcount; r++) {                                 \
                if (c->kind == PS_CKIND_UNIT_NORM)                                     \
                    x[off] = x[off] / (eps + norm);                                    \
                else                                                                   \
                    x[off] = x[off] * factor;                                          \
                off += step(ridx, w->rd, w->rs, w->nr);                                \
            }                                                                          \
            base += step(kidx, w->kd, w->ks, w->nk);                                   \
        }                                                                              \
    }

DEFINE_APPLY(f32, float)
DEFINE_APPLY(f64, double)

void psd_constraint_apply(
    const ps_constraint_spec_t *c, int dtype, const int64_t *dims, unsigned rank, void *data)
{
    if (!c || c->kind == PS_CKIND_NONE)
        return;
    uint64_t n = 1;
    for (unsigned i = 0; i < rank; i++)
        n *= (uint64_t) dims[i];
    if (n == 0)
        return;
    if (c->kind == PS_CKIND_NON_NEG) {
        /* w * cast(w >= 0, floatx): a multiplication, so NaN stays NaN and -x becomes -0. */
        if (dtype == PS_DTYPE_FLOAT32) {
            float *x = data;
            for (uint64_t i = 0; i < n; i++)
                x[i] = x[i] * (x[i] >= 0.0f ? 1.0f : 0.0f);
        } else {
            double *x = data;
            for (uint64_t i = 0; i < n; i++)
                x[i] = x[i] * (x[i] >= 0.0 ? 1.0 : 0.0);
        }
        return;
    }
    walk_t w;
    walk_init(&w, dims, rank, reduced_mask(c, rank));
    if (dtype == PS_DTYPE_FLOAT32)
        apply_f32(c, &w, data);
    else
        apply_f64(c, &w, data);
}
