/* Deterministic initializers (SPEC §4): the values are a pure function of (spec, seed, full name,
 * shape, dtype). A splitmix64 stream keyed by an FNV-1a hash of the seed and the full name feeds
 * polar-method normals and uniforms; fans and scaling follow TensorFlow 1.15's init_ops. */
#include <math.h>
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/init.h>
#include <ps/internal/shape.h>

/* TF's truncated-normal correction: the stddev of a standard normal truncated to [-2, 2]. */
#define TRUNC_STDDEV 0.87962566103423978

#ifdef __clang__
/* Keep a * b + c as two roundings (GCC in strict C11 mode already does): see rng_normal. */
#    pragma STDC FP_CONTRACT OFF
#endif

typedef struct rng {
    uint64_t state;
    int have_spare;
    double spare;
} rng_t;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_next(rng_t *r)
{
    r->state += 0x9E3779B97F4A7C15ull;
    return mix64(r->state);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(rng_t *r)
{
    return (double) (rng_next(r) >> 11) * 0x1.0p-53;
}

/* Natural log of x > 0 from IEEE-754 basic operations only (exactly rounded everywhere), so the
 * same bits come out on every machine, unlike libm's log, whose last bit may differ between
 * libraries. log(x) = e ln 2 + 2 atanh(t), t = (m - 1) / (m + 1), m in [sqrt(1/2), sqrt(2)), where
 * |t| <= 0.1716 and the series below is accurate to about 1e-17 relative. */
static double det_log(double x)
{
    int e;
    double m = frexp(x, &e); /* x = m * 2^e, m in [0.5, 1) */
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e--;
    }
    double t = (m - 1.0) / (m + 1.0);
    double t2 = t * t;
    double p = 1.0 / 25.0;
    for (int k = 11; k >= 0; k--)
        p = p * t2 + 1.0 / (2.0 * k + 1.0);
    /* ln 2 split so that e * LN2_HI is exact for |e| < 2^11. */
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    return ((double) e * LN2_HI + 2.0 * t * p) + (double) e * LN2_LO;
}

/* Standard normal by Marsaglia's polar method (both values of a pair are used). Only +, -, *, /,
 * sqrt (exactly rounded in IEEE-754) and det_log are involved: the values are the same bits on
 * every machine that does IEEE-754 double arithmetic without fused multiply-add contraction. */
static double rng_normal(rng_t *r)
{
    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    for (;;) {
        double u = 2.0 * rng_uniform(r) - 1.0;
        double v = 2.0 * rng_uniform(r) - 1.0;
        double s = u * u + v * v;
        if (s >= 1.0 || s == 0.0)
            continue;
        double f = sqrt(-2.0 * det_log(s) / s);
        r->spare = v * f;
        r->have_spare = 1;
        return u * f;
    }
}

/* Standard normal redrawn while its magnitude is over 2 (TF's truncated_normal). */
static double rng_truncated(rng_t *r)
{
    for (;;) {
        double z = rng_normal(r);
        if (fabs(z) <= 2.0)
            return z;
    }
}

/* Uniform integer in [0, range), range >= 1, without modulo bias. */
static uint64_t rng_below(rng_t *r, uint64_t range)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % range; /* accept x < limit */
    for (;;) {
        uint64_t x = rng_next(r);
        if (x < limit || limit == 0)
            return x % range;
    }
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

static void rng_seed(rng_t *r, int64_t seed, const char *full_name)
{
    unsigned char le[8];
    uint64_t s = (uint64_t) seed;
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char) (s >> (8 * i));
    uint64_t h = 0xCBF29CE484222325ull;
    h = fnv1a(h, "pscope-init-1", 13);
    h = fnv1a(h, le, sizeof le);
    h = fnv1a(h, full_name, strlen(full_name));
    r->state = mix64(h);
    r->have_spare = 0;
    r->spare = 0;
}

static const char *kind_name(ps_init_kind_t k)
{
    switch (k) {
    case PS_INIT_DEFAULT:
        return "default";
    case PS_INIT_ZEROS:
        return "zeros";
    case PS_INIT_ONES:
        return "ones";
    case PS_INIT_CONSTANT:
        return "constant";
    case PS_INIT_RANDOM_NORMAL:
        return "random_normal";
    case PS_INIT_TRUNCATED_NORMAL:
        return "truncated_normal";
    case PS_INIT_RANDOM_UNIFORM:
        return "random_uniform";
    case PS_INIT_GLOROT_UNIFORM:
        return "glorot_uniform";
    case PS_INIT_GLOROT_NORMAL:
        return "glorot_normal";
    case PS_INIT_VARIANCE_SCALING:
        return "variance_scaling";
    case PS_INIT_FROM_VALUE:
        return "from_value";
    }
    return "unknown";
}

const char *ps_init_kind_name(int kind)
{
    return kind_name((ps_init_kind_t) kind);
}

void ps_init_spec_default(ps_init_spec_t *spec, ps_init_kind_t kind)
{
    memset(spec, 0, sizeof *spec);
    spec->kind = kind;
    switch (kind) {
    case PS_INIT_ONES:
        spec->value = 1.0;
        break;
    case PS_INIT_RANDOM_NORMAL:
    case PS_INIT_TRUNCATED_NORMAL:
        spec->mean = 0.0;
        spec->stddev = 1.0;
        break;
    case PS_INIT_RANDOM_UNIFORM:
        spec->minval = 0.0;
        spec->maxval = 1.0;
        break;
    case PS_INIT_GLOROT_UNIFORM:
        spec->scale = 1.0;
        spec->mode = PS_FAN_AVG;
        spec->distribution = PS_DIST_UNIFORM;
        break;
    case PS_INIT_GLOROT_NORMAL:
        spec->scale = 1.0;
        spec->mode = PS_FAN_AVG;
        spec->distribution = PS_DIST_TRUNCATED_NORMAL;
        break;
    case PS_INIT_VARIANCE_SCALING:
        spec->scale = 1.0;
        spec->mode = PS_FAN_IN;
        spec->distribution = PS_DIST_TRUNCATED_NORMAL;
        break;
    default:
        break;
    }
}

void ps_init_compute_fans(const int64_t *dims, size_t rank, double *fan_in, double *fan_out)
{
    double in, out;
    if (rank == 0) {
        in = out = 1.0;
    } else if (rank == 1) {
        in = out = (double) dims[0];
    } else if (rank == 2) {
        in = (double) dims[0];
        out = (double) dims[1];
    } else {
        /* Convolution kernels: the receptive field is every dimension but the last two. */
        double rf = 1.0;
        for (size_t i = 0; i + 2 < rank; i++)
            rf *= (double) dims[i];
        in = (double) dims[rank - 2] * rf;
        out = (double) dims[rank - 1] * rf;
    }
    *fan_in = in;
    *fan_out = out;
}

/* The effective kind: DEFAULT resolves by dtype (TF_SEMANTICS §1.6). */
static ps_init_kind_t resolve_kind(ps_init_kind_t kind, int dtype)
{
    if (kind == PS_INIT_DEFAULT)
        return ps_dtype_is_float(dtype) ? PS_INIT_GLOROT_UNIFORM : PS_INIT_ZEROS;
    return kind;
}

/* 1 when v is a whole number that the integer dtype can hold. */
static int fits_int(double v, int dtype)
{
    if (!isfinite(v) || v != floor(v))
        return 0;
    if (dtype == PS_DTYPE_INT32)
        return v >= -2147483648.0 && v <= 2147483647.0;
    return v >= -9223372036854775808.0 && v < 9223372036854775808.0;
}

int ps_init_check(const ps_init_spec_t *spec, int dtype, ps_error_t *err)
{
    if (!ps_dtype_valid(dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "initializer for an invalid dtype %d",
                            dtype);
    if ((int) spec->kind < PS_INIT_DEFAULT || (int) spec->kind > PS_INIT_FROM_VALUE)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown initializer kind %d",
                            (int) spec->kind);
    ps_init_kind_t kind = resolve_kind(spec->kind, dtype);
    int is_float = ps_dtype_is_float(dtype);
    switch (kind) {
    case PS_INIT_ZEROS:
    case PS_INIT_ONES:
    case PS_INIT_FROM_VALUE:
    case PS_INIT_DEFAULT:
        return 0;
    case PS_INIT_CONSTANT:
        if (!is_float && !fits_int(spec->value, dtype))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "constant initializer value %g is not a valid %s", spec->value,
                                ps_dtype_name(dtype));
        return 0;
    case PS_INIT_RANDOM_UNIFORM:
        if (!(spec->minval < spec->maxval) || !isfinite(spec->minval) || !isfinite(spec->maxval))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "random_uniform initializer needs finite minval < maxval, got "
                                "[%g, %g)",
                                spec->minval, spec->maxval);
        if (!is_float && (!fits_int(spec->minval, dtype) || !fits_int(spec->maxval, dtype) ||
                          spec->maxval - spec->minval < 1.0))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "random_uniform initializer for %s needs whole minval < maxval "
                                "within the dtype's range, got [%g, %g)",
                                ps_dtype_name(dtype), spec->minval, spec->maxval);
        if (dtype == PS_DTYPE_FLOAT32 && !((float) spec->minval < (float) spec->maxval))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "random_uniform initializer range [%g, %g) is empty in float32",
                                spec->minval, spec->maxval);
        return 0;
    case PS_INIT_RANDOM_NORMAL:
    case PS_INIT_TRUNCATED_NORMAL:
    case PS_INIT_GLOROT_UNIFORM:
    case PS_INIT_GLOROT_NORMAL:
    case PS_INIT_VARIANCE_SCALING:
        if (!is_float)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Expected floating point type, got <dtype: '%s'>. (the %s "
                                "initializer fills float32 or float64 only)",
                                ps_dtype_name(dtype), kind_name(kind));
        break;
    }
    if (kind == PS_INIT_RANDOM_NORMAL || kind == PS_INIT_TRUNCATED_NORMAL) {
        if (!isfinite(spec->mean) || !isfinite(spec->stddev) || spec->stddev < 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "%s initializer needs a finite mean and a finite stddev >= 0, got "
                                "mean %g stddev %g",
                                kind_name(kind), spec->mean, spec->stddev);
        return 0;
    }
    if (kind == PS_INIT_VARIANCE_SCALING) {
        if (!(spec->scale > 0) || !isfinite(spec->scale))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "`scale` must be positive float. (got %g)", spec->scale);
        if ((int) spec->mode < PS_FAN_IN || (int) spec->mode > PS_FAN_AVG)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Invalid `mode` argument: %d",
                                (int) spec->mode);
        if ((int) spec->distribution < PS_DIST_TRUNCATED_NORMAL ||
            (int) spec->distribution > PS_DIST_UNIFORM)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Invalid `distribution` argument: %d",
                                (int) spec->distribution);
    }
    return 0;
}

/* Writes element i of out as dtype from a double (floats) or an integer (ints). */
static void put_float(void *out, int dtype, uint64_t i, double v)
{
    if (dtype == PS_DTYPE_FLOAT32)
        ((float *) out)[i] = (float) v;
    else
        ((double *) out)[i] = v;
}

static void put_int(void *out, int dtype, uint64_t i, int64_t v)
{
    if (dtype == PS_DTYPE_INT32)
        ((int32_t *) out)[i] = (int32_t) v;
    else
        ((int64_t *) out)[i] = v;
}

/* Uniform in [lo, hi) that stays below hi after rounding to the dtype. */
static void fill_uniform(rng_t *r, void *out, int dtype, uint64_t n, double lo, double hi)
{
    for (uint64_t i = 0; i < n; i++) {
        double v = lo + (hi - lo) * rng_uniform(r);
        if (dtype == PS_DTYPE_FLOAT32) {
            float f = (float) v;
            if (f >= (float) hi)
                f = nextafterf((float) hi, -INFINITY);
            if (f < (float) lo)
                f = (float) lo;
            ((float *) out)[i] = f;
        } else {
            if (v >= hi)
                v = nextafter(hi, -INFINITY);
            ((double *) out)[i] = v;
        }
    }
}

int ps_init_fill(const ps_init_spec_t *spec,
                 const char *full_name,
                 const int64_t *dims,
                 size_t rank,
                 int dtype,
                 void *out,
                 uint64_t nelems,
                 ps_error_t *err)
{
    int rc = ps_init_check(spec, dtype, err);
    if (rc != 0)
        return rc;
    uint64_t count;
    rc = ps_shape_check(dims, rank, ps_dtype_size(dtype), UINT64_MAX, "initializer", &count, NULL,
                        err);
    if (rc != 0)
        return rc;
    if (count != nelems)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "initializer output holds %llu elements but the shape has %llu",
                            (unsigned long long) nelems, (unsigned long long) count);
    if (nelems > 0 && out == NULL)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "initializer output buffer is NULL");
    ps_init_kind_t kind = resolve_kind(spec->kind, dtype);
    int is_float = ps_dtype_is_float(dtype);
    rng_t r;
    rng_seed(&r, spec->seed, full_name != NULL ? full_name : "");

    switch (kind) {
    case PS_INIT_FROM_VALUE:
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a from_value initializer has no generator: its value travels in the "
                            "request payload");
    case PS_INIT_ZEROS:
    case PS_INIT_ONES:
    case PS_INIT_CONSTANT: {
        double v = kind == PS_INIT_ZEROS ? 0.0 : kind == PS_INIT_ONES ? 1.0 : spec->value;
        for (uint64_t i = 0; i < nelems; i++) {
            if (is_float)
                put_float(out, dtype, i, v);
            else
                put_int(out, dtype, i, (int64_t) v);
        }
        return 0;
    }
    case PS_INIT_RANDOM_UNIFORM:
        if (is_float) {
            fill_uniform(&r, out, dtype, nelems, spec->minval, spec->maxval);
        } else {
            int64_t lo = (int64_t) spec->minval;
            uint64_t range = (uint64_t) ((int64_t) spec->maxval) - (uint64_t) lo;
            for (uint64_t i = 0; i < nelems; i++)
                put_int(out, dtype, i, (int64_t) ((uint64_t) lo + rng_below(&r, range)));
        }
        return 0;
    case PS_INIT_RANDOM_NORMAL:
        for (uint64_t i = 0; i < nelems; i++)
            put_float(out, dtype, i, spec->mean + spec->stddev * rng_normal(&r));
        return 0;
    case PS_INIT_TRUNCATED_NORMAL:
        for (uint64_t i = 0; i < nelems; i++)
            put_float(out, dtype, i, spec->mean + spec->stddev * rng_truncated(&r));
        return 0;
    default:
        break;
    }

    /* The variance-scaling family (glorot_* are fixed instances of it). */
    double scale = spec->scale;
    ps_fan_mode_t mode = spec->mode;
    ps_distribution_t dist = spec->distribution;
    if (kind == PS_INIT_GLOROT_UNIFORM || kind == PS_INIT_GLOROT_NORMAL) {
        scale = 1.0;
        mode = PS_FAN_AVG;
        dist = kind == PS_INIT_GLOROT_UNIFORM ? PS_DIST_UNIFORM : PS_DIST_TRUNCATED_NORMAL;
    }
    double fan_in, fan_out;
    ps_init_compute_fans(dims, rank, &fan_in, &fan_out);
    double n = mode == PS_FAN_IN ? fan_in : mode == PS_FAN_OUT ? fan_out : (fan_in + fan_out) / 2.0;
    scale /= n > 1.0 ? n : 1.0;
    if (dist == PS_DIST_UNIFORM) {
        double limit = sqrt(3.0 * scale);
        fill_uniform(&r, out, dtype, nelems, -limit, limit);
    } else if (dist == PS_DIST_TRUNCATED_NORMAL) {
        double stddev = sqrt(scale) / TRUNC_STDDEV;
        for (uint64_t i = 0; i < nelems; i++)
            put_float(out, dtype, i, stddev * rng_truncated(&r));
    } else {
        double stddev = sqrt(scale);
        for (uint64_t i = 0; i < nelems; i++)
            put_float(out, dtype, i, stddev * rng_normal(&r));
    }
    return 0;
}
