/* Small-window conv2d kernels (AVX-512): forward, input gradient and filter gradient for windows of
 * few taps (the demo's 5x5x1 conv1), which read the padded input in place instead of going through
 * im2col + sgemm, with the image rows split over the OpenBLAS thread count. */
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include <ps/ops.h>

#include "ops_conv.h"
#include "ops_internal.h"

/*
 * Why: with k = 25 taps the lowered GEMM is thin, and the im2col copy plus OpenBLAS's packing cost
 * as much as the arithmetic. The forward pass keeps 8 output pixels x 16 channels in registers and
 * broadcasts each input value against a filter row; the filter gradient keeps up to 16 taps x 16
 * channels in registers and streams the output gradient; the input gradient computes 16 taps of
 * d_col per pixel block and adds them onto the source (or, for one channel at stride 1, gathers
 * whole 16-float source tiles). Threads are created per call (a call at these sizes takes
 * milliseconds, thread creation microseconds); the input gradient's jobs own whole images since its
 * windows overlap. CPUs without AVX-512F use the lowering in ops_conv.c.
 */

#if PSC_CONV_SMALL_AVAILABLE
#    include <immintrin.h>
#    include <pthread.h>

#    define SMALLK_MAX_TAPS    64  /* kh * kw * c at most */
#    define SMALLK_MAX_COUT    512 /* output channels at most (a multiple of 16) */
#    define SMALLK_MAX_THREADS 8
#    define SMALLK_MIN_FMAS    200000 /* per thread: below this a second thread does not pay */
#    define SMALLK_PIXELS      8      /* output pixels per register block in the forward kernel */

int psc_conv_small_usable(const psc_conv_geom_t *g)
{
    /* __builtin_cpu_supports reads flags libgcc fills in at start-up: cheap, and thread-safe. */
    return __builtin_cpu_supports("avx512f") && !g->direct && g->k <= SMALLK_MAX_TAPS &&
           g->c <= 4 && g->cout % 16 == 0 && g->cout <= SMALLK_MAX_COUT;
}

/* How many threads to split (b, oy) rows over: OpenBLAS's count, bounded by the work. */
static int smallk_threads(const psc_conv_geom_t *g)
{
    int t = openblas_get_num_threads();
    const double fmas = (double) g->rows * (double) g->k * (double) g->cout;
    if (t > SMALLK_MAX_THREADS)
        t = SMALLK_MAX_THREADS;
    while (t > 1 && (fmas / t < SMALLK_MIN_FMAS || g->n * g->oh < t))
        t--;
    return t < 1 ? 1 : t;
}

typedef struct smallk_job {
    const psc_conv_geom_t *g;
    const float *src; /* padded source (pitches src_h, src_w) */
    const float
        *f; /* forward: the filter; input gradient: the filter, or transposed for din_rows */
    const float *dy;    /* gradients: the output gradient */
    float *out;         /* forward: output; filter gradient: this thread's k x cout sums; input
                         * gradient: the padded source's gradient (accumulated into) */
    int64_t row0, row1; /* (b, oy) rows [row0, row1) */
    void (*run)(const struct smallk_job *);
} smallk_job_t;

/* One block of np <= SMALLK_PIXELS pixels x 16 channels; np is a constant after inlining. */
__attribute__((target("avx512f"), always_inline)) static inline void
fwd_block(const psc_conv_geom_t *g, const float *s0, const float *f, float *o, const int np)
{
    const int64_t c = g->c, cout = g->cout, pitch = g->src_w * c, step = g->sw * c;
    __m512 acc[SMALLK_PIXELS];
#    pragma GCC unroll 8
    for (int p = 0; p < np; p++)
        acc[p] = _mm512_setzero_ps();
    for (int64_t di = 0; di < g->kh; di++) {
        const float *s = s0 + di * pitch;
        for (int64_t t = 0; t < g->kw * c; t++, f += cout) {
            const __m512 w = _mm512_loadu_ps(f);
#    pragma GCC unroll 8
            for (int p = 0; p < np; p++)
                acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(s[p * step + t]), w, acc[p]);
        }
    }
#    pragma GCC unroll 8
    for (int p = 0; p < np; p++)
        _mm512_storeu_ps(o + p * cout, acc[p]);
}

__attribute__((target("avx512f"))) static void fwd_rows(const smallk_job_t *j)
{
    const psc_conv_geom_t *g = j->g;
    const int64_t c = g->c, cout = g->cout, pitch = g->src_w * c;
    for (int64_t r = j->row0; r < j->row1; r++) {
        const int64_t b = r / g->oh, oy = r % g->oh;
        const float *srow = j->src + (b * g->src_h + oy * g->sh) * pitch;
        float *orow = j->out + r * g->ow * cout;
        int64_t ox = 0;
        for (; ox + SMALLK_PIXELS <= g->ow; ox += SMALLK_PIXELS)
            for (int64_t ob = 0; ob < cout; ob += 16)
                fwd_block(g, srow + ox * g->sw * c, j->f + ob, orow + ox * cout + ob,
                          SMALLK_PIXELS);
        /* The row's last pixels in blocks of 4, 2, 1: independent accumulators hide the FMA
         * latency that a pixel-at-a-time tail would expose. */
        for (int np = 4; np >= 1; np /= 2) {
            if (ox + np > g->ow)
                continue;
            for (int64_t ob = 0; ob < cout; ob += 16) {
                const float *s = srow + ox * g->sw * c;
                float *o = orow + ox * cout + ob;
                if (np == 4)
                    fwd_block(g, s, j->f + ob, o, 4);
                else if (np == 2)
                    fwd_block(g, s, j->f + ob, o, 2);
                else
                    fwd_block(g, s, j->f + ob, o, 1);
            }
            ox += np;
        }
    }
}

/* Add into sums[tap][16 channels] for nt taps (a constant after inlining) over one row's pixels. */
__attribute__((target("avx512f"), always_inline)) static inline void
dfilter_taps(const psc_conv_geom_t *g,
             const float *srow,
             const int64_t *off,
             const float *dyrow,
             float *sums,
             const int nt)
{
    const int64_t cout = g->cout, step = g->sw * g->c;
    __m512 acc[16];
#    pragma GCC unroll 16
    for (int i = 0; i < nt; i++)
        acc[i] = _mm512_loadu_ps(sums + i * cout);
    for (int64_t ox = 0; ox < g->ow; ox++) {
        const __m512 d = _mm512_loadu_ps(dyrow + ox * cout);
        const float *s = srow + ox * step;
#    pragma GCC unroll 16
        for (int i = 0; i < nt; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(s[off[i]]), d, acc[i]);
    }
#    pragma GCC unroll 16
    for (int i = 0; i < nt; i++)
        _mm512_storeu_ps(sums + i * cout, acc[i]);
}

__attribute__((target("avx512f"))) static void dfilter_rows(const smallk_job_t *j)
{
    const psc_conv_geom_t *g = j->g;
    const int64_t c = g->c, cout = g->cout, pitch = g->src_w * c;
    int64_t off[SMALLK_MAX_TAPS]; /* source offset of each tap (di, dj, q) from the window origin */
    for (int64_t di = 0, t = 0; di < g->kh; di++)
        for (int64_t dj = 0; dj < g->kw; dj++)
            for (int64_t q = 0; q < c; q++)
                off[t++] = di * pitch + dj * c + q;
    memset(j->out, 0, (size_t) (g->k * cout) * sizeof(float));
    for (int64_t r = j->row0; r < j->row1; r++) {
        const int64_t b = r / g->oh, oy = r % g->oh;
        const float *srow = j->src + (b * g->src_h + oy * g->sh) * pitch;
        const float *dyrow = j->dy + r * g->ow * cout;
        for (int64_t ob = 0; ob < cout; ob += 16) {
            /* Taps in register groups of 16, then 8, 4, 2, 1 for the remainder. */
            int64_t t = 0;
            for (; t + 16 <= g->k; t += 16)
                dfilter_taps(g, srow, off + t, dyrow + ob, j->out + t * cout + ob, 16);
            if (t + 8 <= g->k) {
                dfilter_taps(g, srow, off + t, dyrow + ob, j->out + t * cout + ob, 8);
                t += 8;
            }
            if (t + 4 <= g->k) {
                dfilter_taps(g, srow, off + t, dyrow + ob, j->out + t * cout + ob, 4);
                t += 4;
            }
            if (t + 2 <= g->k) {
                dfilter_taps(g, srow, off + t, dyrow + ob, j->out + t * cout + ob, 2);
                t += 2;
            }
            if (t < g->k)
                dfilter_taps(g, srow, off + t, dyrow + ob, j->out + t * cout + ob, 1);
        }
    }
}

/*
 * Input gradient: for np pixels (a constant after inlining) and nt <= 16 taps, d_col[p][t] =
 * d_output[p] . filter[t] (ft is the filter transposed, cout rows of kp taps, zero-padded to a
 * multiple of 16), then each value is added onto the source position tap t reads from pixel p.
 */
__attribute__((target("avx512f"), always_inline)) static inline void
din_block(const psc_conv_geom_t *g,
          const float *dyp,
          const float *ft,
          int64_t kp,
          const int64_t *off,
          int64_t nt,
          float *d0,
          const int np)
{
    const int64_t cout = g->cout, step = g->sw * g->c;
    __m512 acc[SMALLK_PIXELS];
#    pragma GCC unroll 8
    for (int p = 0; p < np; p++)
        acc[p] = _mm512_setzero_ps();
    for (int64_t o = 0; o < cout; o++) {
        const __m512 f = _mm512_loadu_ps(ft + o * kp);
#    pragma GCC unroll 8
        for (int p = 0; p < np; p++)
            acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(dyp[p * cout + o]), f, acc[p]);
    }
    for (int p = 0; p < np; p++) {
        float v[16];
        _mm512_storeu_ps(v, acc[p]);
        float *d = d0 + p * step;
        for (int64_t i = 0; i < nt; i++)
            d[off[i]] += v[i];
    }
}

__attribute__((target("avx512f"))) static void din_rows(const smallk_job_t *j)
{
    const psc_conv_geom_t *g = j->g;
    const int64_t c = g->c, cout = g->cout, pitch = g->src_w * c, step = g->sw * c;
    const int64_t kp = (g->k + 15) & ~(int64_t) 15;
    int64_t off[SMALLK_MAX_TAPS];
    for (int64_t di = 0, t = 0; di < g->kh; di++)
        for (int64_t dj = 0; dj < g->kw; dj++)
            for (int64_t q = 0; q < c; q++)
                off[t++] = di * pitch + dj * c + q;
    for (int64_t r = j->row0; r < j->row1; r++) {
        const int64_t b = r / g->oh, oy = r % g->oh;
        float *drow = j->out + (b * g->src_h + oy * g->sh) * pitch;
        const float *dyrow = j->dy + r * g->ow * cout;
        int64_t ox = 0;
        for (int np = SMALLK_PIXELS; np >= 1; np /= 2) {
            /* Full blocks of 8, then the row's last pixels in blocks of 4, 2, 1. */
            while (ox + np <= g->ow) {
                for (int64_t t0 = 0; t0 < g->k; t0 += 16) {
                    const int64_t nt = g->k - t0 < 16 ? g->k - t0 : 16;
                    const float *dyp = dyrow + ox * cout;
                    float *d0 = drow + ox * step;
                    if (np == 8)
                        din_block(g, dyp, j->f + t0, kp, off + t0, nt, d0, 8);
                    else if (np == 4)
                        din_block(g, dyp, j->f + t0, kp, off + t0, nt, d0, 4);
                    else if (np == 2)
                        din_block(g, dyp, j->f + t0, kp, off + t0, nt, d0, 2);
                    else
                        din_block(g, dyp, j->f + t0, kp, off + t0, nt, d0, 1);
                }
                ox += np;
                if (np < SMALLK_PIXELS)
                    break;
            }
        }
    }
}

/*
 * Input gradient when consecutive output pixels read consecutive source floats (one input channel,
 * stride 1 across: the demo's conv1), gathered instead of scattered: for one output row, each
 * 16-float tile of a source row it reaches is the sum over taps (dj) and output channels of
 * filter[di][dj][o] * d_output[row][x - dj][o], read as unaligned vectors from the row's output
 * gradient transposed (dyt: cout rows of zero-padded pixels). All kh source rows of a tile
 * accumulate at once (independent chains sharing each load) and are written with one add each, so
 * no two overlapping read-modify-writes follow each other. kh is a constant after inlining.
 */
#    define DIN_MAX_KH     8
#    define DIN_DYT_FLOATS 8192 /* cout * (ow + 2 * kw + 16) at most: the stack buffer */

__attribute__((target("avx512f"), always_inline)) static inline void
din_unit_tile(const psc_conv_geom_t *g,
              const float *dyt,
              int64_t dyt_w,
              const float *f,
              float *d0,
              int64_t pitch,
              int64_t xd,
              __mmask16 m,
              const int kh)
{
    const int64_t cout = g->cout, kw = g->kw;
    __m512 acc[DIN_MAX_KH];
#    pragma GCC unroll 8
    for (int di = 0; di < kh; di++)
        acc[di] = _mm512_setzero_ps();
    for (int64_t dj = 0; dj < kw; dj++) {
        /* dyt column (ox + kw - 1) holds pixel ox, so pixel xd - dj sits at xd - dj + kw - 1. */
        const float *col = dyt + xd - dj + kw - 1;
        for (int64_t o = 0; o < cout; o++) {
            const __m512 v = _mm512_loadu_ps(col + o * dyt_w);
#    pragma GCC unroll 8
            for (int di = 0; di < kh; di++)
                acc[di] = _mm512_fmadd_ps(_mm512_set1_ps(f[(di * kw + dj) * cout + o]), v, acc[di]);
        }
    }
#    pragma GCC unroll 8
    for (int di = 0; di < kh; di++) {
        float *d = d0 + di * pitch + xd;
        _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), acc[di]));
    }
}

/* Transpose a 16 x 16 block held as 16 rows: afterwards v[c] holds column c. */
__attribute__((target("avx512f"), always_inline)) static inline void transpose16(__m512 v[16])
{
    __m512 t[16], u[16];
    /* Within each 128-bit lane: interleave pairs of rows, then pairs of pairs, which leaves u[4g +
     * k] holding, in lane L, column 4L + k of rows 4g .. 4g + 3. */
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    /* Across lanes: column 4L + k gathers lane L of u[k], u[4 + k], u[8 + k], u[12 + k]. */
    for (int k = 0; k < 4; k++) {
        const __m512 x0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x44);
        const __m512 x1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xEE);
        const __m512 y0 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x44);
        const __m512 y1 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xEE);
        v[k] = _mm512_shuffle_f32x4(x0, y0, 0x88);
        v[4 + k] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
        v[8 + k] = _mm512_shuffle_f32x4(x1, y1, 0x88);
        v[12 + k] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
    }
}

/* 1 when din_unit_rows handles g: one channel, stride 1 across, kh <= 8, dyt fits on the stack. */
static int din_unit_usable(const psc_conv_geom_t *g)
{
    return g->c == 1 && g->sw == 1 && g->kh <= DIN_MAX_KH &&
           g->cout * (g->ow + 2 * g->kw + 16) <= DIN_DYT_FLOATS;
}

__attribute__((target("avx512f"))) static void din_unit_rows(const smallk_job_t *j)
{
    const psc_conv_geom_t *g = j->g;
    const int64_t cout = g->cout, pitch = g->src_w, kw = g->kw;
    const int64_t dyt_w = g->ow + 2 * kw + 16;
    float dyt[DIN_DYT_FLOATS];
    for (int64_t i = 0; i < cout * dyt_w; i++)
        dyt[i] = 0.0f;
    for (int64_t r = j->row0; r < j->row1; r++) {
        const int64_t b = r / g->oh, oy = r % g->oh;
        float *d0 = j->out + (b * g->src_h + oy * g->sh) * pitch;
        const float *dyrow = j->dy + r * g->ow * cout;
        /* 16 pixels x 16 channels at a time, transposed in registers; missing pixels are zero. */
        for (int64_t ox = 0; ox < g->ow; ox += 16) {
            const int64_t np = g->ow - ox < 16 ? g->ow - ox : 16;
            for (int64_t o = 0; o < cout; o += 16) {
                __m512 v[16];
                for (int64_t p = 0; p < 16; p++)
                    v[p] =
                        p < np ? _mm512_loadu_ps(dyrow + (ox + p) * cout + o) : _mm512_setzero_ps();
                transpose16(v);
                for (int64_t q = 0; q < 16; q++)
                    _mm512_storeu_ps(dyt + (o + q) * dyt_w + kw - 1 + ox, v[q]);
            }
        }
        /* The source columns this row's windows cover: [0, wp) of the padded row. */
        for (int64_t xd = 0; xd < g->wp; xd += 16) {
            const int64_t n = g->wp - xd < 16 ? g->wp - xd : 16;
            const __mmask16 m = (__mmask16) ((1u << n) - 1u);
            switch (g->kh) {
#    define DIN_CASE(K)                                          \
    case K:                                                      \
        din_unit_tile(g, dyt, dyt_w, j->f, d0, pitch, xd, m, K); \
        break;
                DIN_CASE(1)
                DIN_CASE(2)
                DIN_CASE(3)
                DIN_CASE(4)
                DIN_CASE(5)
                DIN_CASE(6)
                DIN_CASE(7)
                DIN_CASE(8)
#    undef DIN_CASE
            }
        }
    }
}

static void *smallk_thread(void *arg)
{
    const smallk_job_t *j = arg;
    j->run(j);
    return NULL;
}

/*
 * Run jobs[0..n) (row ranges of one kernel): jobs 1.. on new threads, job 0 on the caller's. A
 * thread that cannot be created runs its job on the caller's thread instead, so this cannot fail.
 */
static void smallk_run(smallk_job_t *jobs, int n)
{
    pthread_t tid[SMALLK_MAX_THREADS];
    int started[SMALLK_MAX_THREADS] = {0};
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&tid[i], NULL, smallk_thread, &jobs[i]) == 0;
    jobs[0].run(&jobs[0]);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            jobs[i].run(&jobs[i]);
    }
}

/* Split the n * oh image rows evenly into nt jobs. */
static void smallk_split(const psc_conv_geom_t *g, smallk_job_t *jobs, int nt)
{
    const int64_t rows = g->n * g->oh;
    for (int i = 0; i < nt; i++) {
        jobs[i].row0 = rows * i / nt;
        jobs[i].row1 = rows * (i + 1) / nt;
    }
}

/* Workspace: the padded source (if any), then extra_floats (64-byte aligned each). */
static float *smallk_workspace(ps_ops_workspace_t *ws,
                               const char *op,
                               const psc_conv_geom_t *g,
                               size_t extra_floats,
                               float **extra,
                               ps_error_t *err)
{
    const size_t pad = (g->pad_floats + 15) & ~(size_t) 15;
    float *base = psc_ops_ws_floats(ws, op, pad + extra_floats, err);
    if (base != NULL)
        *extra = base + pad;
    return base;
}

int psc_conv_small_forward(ps_ops_workspace_t *ws,
                           const char *op,
                           const psc_conv_geom_t *g,
                           const float *input,
                           const float *filter,
                           float *output,
                           ps_error_t *err)
{
    float *extra, *base = smallk_workspace(ws, op, g, 0, &extra, err);
    if (base == NULL)
        return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
    const float *src = input;
    if (g->padded) {
        psc_conv_pad_input(g, input, base);
        src = base;
    }
    smallk_job_t jobs[SMALLK_MAX_THREADS];
    const int nt = smallk_threads(g);
    for (int i = 0; i < nt; i++)
        jobs[i] = (smallk_job_t){.g = g, .src = src, .f = filter, .out = output, .run = fwd_rows};
    smallk_split(g, jobs, nt);
    smallk_run(jobs, nt);
    return 0;
}

int psc_conv_small_filter(ps_ops_workspace_t *ws,
                          const char *op,
                          const psc_conv_geom_t *g,
                          const float *input,
                          const float *d_output,
                          float *d_filter,
                          ps_error_t *err)
{
    const int nt = smallk_threads(g);
    const size_t part = (size_t) (g->k * g->cout); /* <= 64 * 512 */
    float *extra, *base = smallk_workspace(ws, op, g, part * (size_t) (nt - 1), &extra, err);
    if (base == NULL)
        return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
    const float *src = input;
    if (g->padded) {
        psc_conv_pad_input(g, input, base);
        src = base;
    }
    smallk_job_t jobs[SMALLK_MAX_THREADS];
    for (int i = 0; i < nt; i++)
        jobs[i] = (smallk_job_t){.g = g,
                                 .src = src,
                                 .dy = d_output,
                                 .out = i == 0 ? d_filter : extra + part * (size_t) (i - 1),
                                 .run = dfilter_rows};
    smallk_split(g, jobs, nt);
    smallk_run(jobs, nt);
    for (int i = 1; i < nt; i++)
        for (size_t e = 0; e < part; e++)
            d_filter[e] += jobs[i].out[e];
    return 0;
}

/* The input gradient scatters into overlapping windows, so its jobs own whole images. */
int psc_conv_small_input(ps_ops_workspace_t *ws,
                         const char *op,
                         const psc_conv_geom_t *g,
                         const float *filter,
                         const float *d_output,
                         float *d_input,
                         ps_error_t *err)
{
    int nt = smallk_threads(g);
    if (nt > g->n)
        nt = (int) g->n;
    const int64_t kp = (g->k + 15) & ~(int64_t) 15;
    float *ft, *base = smallk_workspace(ws, op, g, (size_t) (g->cout * kp), &ft, err);
    if (base == NULL)
        return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
    for (int64_t o = 0; o < g->cout; o++)
        for (int64_t t = 0; t < kp; t++)
            ft[o * kp + t] = t < g->k ? filter[t * g->cout + o] : 0.0f;
    float *dsrc = g->padded ? base : d_input;
    memset(dsrc, 0,
           (g->padded ? g->pad_floats : (size_t) (g->n * g->h * g->w * g->c)) * sizeof(float));
    smallk_job_t jobs[SMALLK_MAX_THREADS];
    /* One input channel and stride 1 across: the vector-add kernel, which reads the filter as is.
     */
    const int unit = din_unit_usable(g);
    for (int i = 0; i < nt; i++) {
        jobs[i] = (smallk_job_t){.g = g,
                                 .f = unit ? filter : ft,
                                 .dy = d_output,
                                 .out = dsrc,
                                 .run = unit ? din_unit_rows : din_rows};
        jobs[i].row0 = g->n * i / nt * g->oh;
        jobs[i].row1 = g->n * (i + 1) / nt * g->oh;
    }
    smallk_run(jobs, nt);
    if (g->padded)
        psc_conv_crop_input(g, dsrc, d_input);
    return 0;
}
#endif /* PSC_CONV_SMALL_AVAILABLE */
