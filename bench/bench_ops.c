/* Throughput of the compute ops at the training demo's layer shapes (batch 64), forward and
 * backward, each as a ratio to cblas_sgemm doing the same number of FLOPs in the same run, at each
 * requested OpenBLAS thread count. Writes a CSV and a Markdown table (bench/run_ops.sh drives it).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include <ps/ops.h>

#define MAX_THREADS 8

typedef enum kind {
    K_CONV,
    K_CONV_DIN,
    K_CONV_DF,
    K_MATMUL,
    K_MATMUL_DA,
    K_MATMUL_DB,
    K_BIAS,
    K_BIAS_GRAD,
    K_RELU,
    K_RELU_GRAD,
    K_POOL,
    K_POOL_GRAD,
    K_LOSS
} kind_t;

/* One benchmarked call: an op at one layer's shapes. */
typedef struct bench_op {
    const char *layer, *op;
    kind_t kind;
    ps_ops_nhwc_t in;
    ps_ops_hwio_t f;
    ps_ops_conv2d_params_t cp;
    ps_ops_pool_params_t pp;
    int64_t m, k, n;    /* matmul op(a) m x k, op(b) k x n; elementwise: m rows x n channels */
    double flops;       /* nominal FLOPs of one call */
    int64_t gm, gk, gn; /* the sgemm the op lowers to (0 for elementwise ops) */
} bench_op_t;

/* Buffers large enough for any op: sized at setup from the shapes. */
typedef struct bufs {
    float *a, *b, *c, *d;
    int32_t *labels;
    size_t cap;
} bufs_t;

typedef struct result {
    double op_s, sq_s, lowered_s; /* median seconds: the op, square sgemm, lowered-shape sgemm */
    /* Paired ratios: per call pair, sgemm's time over the op's (op and sgemm back to back), then
     * the median [min, max] -- wall clock, and the calling thread's CPU time (1-thread runs). */
    double r_med, r_min, r_max;
    double rc_med, rc_min, rc_max;
    double rl_med; /* the same, against the lowered-shape sgemm (0 when none) */
} result_t;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of the calling thread: with one thread all the work runs here, and time spent preempted
 * by other processes on a shared machine does not count. */
static double cpu_now(void)
{
    return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t) n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static ps_ops_workspace_t *ws;

static void die(const char *what, int rc, const ps_error_t *err)
{
    fprintf(stderr, "bench_ops: %s failed: %d %s\n", what, rc, err->msg);
    exit(1);
}

static void run_op(const bench_op_t *o, bufs_t *B)
{
    ps_error_t err;
    int rc = 0;
    ps_ops_nhwc_t out;
    switch (o->kind) {
    case K_CONV:
    case K_CONV_DIN:
    case K_CONV_DF:
        ps_ops_conv2d_output_shape(&o->in, &o->f, &o->cp, &out, NULL);
        if (o->kind == K_CONV)
            rc = ps_ops_conv2d(ws, B->a, &o->in, B->b, &o->f, &o->cp, B->c, &out, &err);
        else if (o->kind == K_CONV_DIN)
            rc = ps_ops_conv2d_backprop_input(ws, &o->in, B->b, &o->f, &o->cp, B->c, &out, B->a,
                                              &err);
        else
            rc = ps_ops_conv2d_backprop_filter(ws, B->a, &o->in, &o->f, &o->cp, B->c, &out, B->b,
                                               &err);
        break;
    case K_MATMUL:
        rc = ps_ops_matmul(B->a, o->m, o->k, 0, B->b, o->k, o->n, 0, 1.0f, 0.0f, B->c, &err);
        break;
    case K_MATMUL_DA:
        rc = ps_ops_matmul_grad(B->a, o->m, o->k, 0, B->b, o->k, o->n, 0, B->c, B->d, NULL, &err);
        break;
    case K_MATMUL_DB:
        rc = ps_ops_matmul_grad(B->a, o->m, o->k, 0, B->b, o->k, o->n, 0, B->c, NULL, B->d, &err);
        break;
    case K_BIAS:
        rc = ps_ops_bias_add(B->a, o->m, o->n, B->b, B->a, &err);
        break;
    case K_BIAS_GRAD:
        rc = ps_ops_bias_add_grad(B->a, o->m, o->n, B->b, &err);
        break;
    case K_RELU:
        rc = ps_ops_relu(B->a, o->m * o->n, B->c, &err);
        break;
    case K_RELU_GRAD:
        rc = ps_ops_relu_grad(B->a, B->c, o->m * o->n, B->d, &err);
        break;
    case K_POOL:
    case K_POOL_GRAD:
        ps_ops_max_pool_output_shape(&o->in, &o->pp, &out, NULL);
        if (o->kind == K_POOL)
            rc = ps_ops_max_pool(B->a, &o->in, &o->pp, B->c, &out, &err);
        else
            rc = ps_ops_max_pool_grad(B->a, &o->in, &o->pp, B->c, &out, B->d, &err);
        break;
    case K_LOSS: {
        float mean;
        rc = ps_ops_sparse_softmax_cross_entropy(B->a, B->labels, o->m, o->n, NULL, &mean, B->d,
                                                 &err);
        break;
    }
    }
    if (rc != 0)
        die(o->op, rc, &err);
}

static void sgemm(const bufs_t *B, int64_t m, int64_t k, int64_t n)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) m, (int) n, (int) k, 1.0f, B->a,
                (int) k, B->b, (int) n, 0.0f, B->c, (int) n);
}

/* Interleave op and reference calls so load from other processes hits both alike. */
static result_t measure(const bench_op_t *o, bufs_t *B, int reps)
{
    double t_op[64], t_sq[64], t_lo[64], c_op[64], c_sq[64];
    int64_t sq = (int64_t) llround(cbrt(o->flops / 2.0));
    if (sq < 1)
        sq = 1;
    run_op(o, B); /* warm-up: grows the workspace, faults pages in */
    sgemm(B, sq, sq, sq);
    for (int r = 0; r < reps; r++) {
        const double scale = o->flops / (2.0 * (double) sq * sq * sq); /* to equal FLOPs */
        double c0 = cpu_now(), t0 = now();
        run_op(o, B);
        double t1 = now(), c1 = cpu_now();
        sgemm(B, sq, sq, sq);
        double t2 = now(), c2 = cpu_now();
        t_op[r] = t1 - t0;
        t_sq[r] = (t2 - t1) * scale;
        c_op[r] = c1 - c0;
        c_sq[r] = (c2 - c1) * scale;
        t_lo[r] = 0;
        if (o->gm > 0) {
            double t3 = now();
            sgemm(B, o->gm, o->gk, o->gn);
            t_lo[r] = now() - t3;
        }
    }
    double r_w[64], r_c[64], r_l[64];
    for (int r = 0; r < reps; r++) {
        r_w[r] = t_sq[r] / t_op[r];
        r_c[r] = c_op[r] > 0 ? c_sq[r] / c_op[r] : 0;
        r_l[r] = t_lo[r] / t_op[r];
    }
    result_t res;
    res.op_s = median(t_op, reps);
    res.sq_s = median(t_sq, reps);
    res.lowered_s = median(t_lo, reps);
    res.r_med = median(r_w, reps); /* median() sorts: [0] and [reps - 1] are min and max */
    res.r_min = r_w[0];
    res.r_max = r_w[reps - 1];
    res.rc_med = median(r_c, reps);
    res.rc_min = r_c[0];
    res.rc_max = r_c[reps - 1];
    res.rl_med = o->gm > 0 ? median(r_l, reps) : 0;
    return res;
}

static bench_op_t
conv_op(const char *layer, const char *op, kind_t kind, ps_ops_nhwc_t in, ps_ops_hwio_t f)
{
    bench_op_t o = {.layer = layer, .op = op, .kind = kind, .in = in, .f = f};
    o.cp = (ps_ops_conv2d_params_t){1, 1, PS_OPS_PADDING_SAME};
    ps_ops_nhwc_t out;
    ps_ops_conv2d_output_shape(&in, &f, &o.cp, &out, NULL);
    const double rows = (double) (out.n * out.h * out.w), k = (double) (f.h * f.w * f.in);
    o.flops = 2.0 * rows * k * (double) f.out;
    /* The sgemm each lowers to: forward [rows x k][k x cout]; input grad [rows x cout][cout x k];
     * filter grad [k x rows][rows x cout]. */
    if (kind == K_CONV) {
        o.gm = (int64_t) rows, o.gk = (int64_t) k, o.gn = f.out;
    } else if (kind == K_CONV_DIN) {
        o.gm = (int64_t) rows, o.gk = f.out, o.gn = (int64_t) k;
    } else {
        o.gm = (int64_t) k, o.gk = (int64_t) rows, o.gn = f.out;
    }
    return o;
}

static bench_op_t
mm_op(const char *layer, const char *op, kind_t kind, int64_t m, int64_t k, int64_t n)
{
    bench_op_t o = {.layer = layer, .op = op, .kind = kind, .m = m, .k = k, .n = n};
    o.flops = 2.0 * (double) m * (double) k * (double) n;
    if (kind == K_MATMUL)
        o.gm = m, o.gk = k, o.gn = n;
    else if (kind == K_MATMUL_DA)
        o.gm = m, o.gk = n, o.gn = k;
    else
        o.gm = k, o.gk = m, o.gn = n;
    return o;
}

static bench_op_t elt_op(
    const char *layer, const char *op, kind_t kind, int64_t rows, int64_t ch, double flops_per_elem)
{
    bench_op_t o = {.layer = layer, .op = op, .kind = kind, .m = rows, .n = ch};
    o.flops = flops_per_elem * (double) rows * (double) ch;
    return o;
}

static bench_op_t pool_op(const char *layer, const char *op, kind_t kind, ps_ops_nhwc_t in)
{
    bench_op_t o = {.layer = layer, .op = op, .kind = kind, .in = in};
    o.pp = (ps_ops_pool_params_t){2, 2, 2, 2, PS_OPS_PADDING_SAME};
    /* One comparison per window element beyond the first: 3 per output. */
    o.flops = 3.0 * (double) (in.n * ((in.h + 1) / 2) * ((in.w + 1) / 2) * in.c);
    return o;
}

int main(int argc, char **argv)
{
    const char *csv_path = "ops.csv", *md_path = "ops.md";
    int threads[MAX_THREADS] = {1, 2}, nthreads = 2, reps = 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--csv") && i + 1 < argc)
            csv_path = argv[++i];
        else if (!strcmp(argv[i], "--md") && i + 1 < argc)
            md_path = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nthreads = 0;
            for (char *s = strtok(argv[++i], ","); s && nthreads < MAX_THREADS;
                 s = strtok(NULL, ","))
                threads[nthreads++] = atoi(s);
        } else {
            fprintf(stderr, "usage: %s [--threads 1,2] [--reps N] [--csv F] [--md F]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 64)
        reps = 15;
    const int64_t N = 64;
    const ps_ops_nhwc_t in1 = {N, 28, 28, 1}, in2 = {N, 14, 14, 32};
    const ps_ops_hwio_t f1 = {5, 5, 1, 32}, f2 = {5, 5, 32, 64};
    const bench_op_t ops[] = {
        conv_op("conv1 5x5x1x32 SAME 28x28", "conv2d", K_CONV, in1, f1),
        conv_op("conv1 5x5x1x32 SAME 28x28", "conv2d_backprop_input", K_CONV_DIN, in1, f1),
        conv_op("conv1 5x5x1x32 SAME 28x28", "conv2d_backprop_filter", K_CONV_DF, in1, f1),
        conv_op("conv2 5x5x32x64 SAME 14x14", "conv2d", K_CONV, in2, f2),
        conv_op("conv2 5x5x32x64 SAME 14x14", "conv2d_backprop_input", K_CONV_DIN, in2, f2),
        conv_op("conv2 5x5x32x64 SAME 14x14", "conv2d_backprop_filter", K_CONV_DF, in2, f2),
        mm_op("dense1 3136x1024", "matmul", K_MATMUL, N, 3136, 1024),
        mm_op("dense1 3136x1024", "matmul_grad da", K_MATMUL_DA, N, 3136, 1024),
        mm_op("dense1 3136x1024", "matmul_grad db", K_MATMUL_DB, N, 3136, 1024),
        mm_op("dense2 1024x10", "matmul", K_MATMUL, N, 1024, 10),
        mm_op("dense2 1024x10", "matmul_grad da", K_MATMUL_DA, N, 1024, 10),
        mm_op("dense2 1024x10", "matmul_grad db", K_MATMUL_DB, N, 1024, 10),
        elt_op("conv1 out 64x28x28x32", "bias_add", K_BIAS, N * 28 * 28, 32, 1),
        elt_op("conv1 out 64x28x28x32", "bias_add_grad", K_BIAS_GRAD, N * 28 * 28, 32, 1),
        elt_op("conv1 out 64x28x28x32", "relu", K_RELU, N * 28 * 28, 32, 1),
        elt_op("conv1 out 64x28x28x32", "relu_grad", K_RELU_GRAD, N * 28 * 28, 32, 1),
        elt_op("conv2 out 64x14x14x64", "bias_add", K_BIAS, N * 14 * 14, 64, 1),
        elt_op("conv2 out 64x14x14x64", "bias_add_grad", K_BIAS_GRAD, N * 14 * 14, 64, 1),
        elt_op("conv2 out 64x14x14x64", "relu", K_RELU, N * 14 * 14, 64, 1),
        elt_op("conv2 out 64x14x14x64", "relu_grad", K_RELU_GRAD, N * 14 * 14, 64, 1),
        elt_op("dense1 out 64x1024", "bias_add", K_BIAS, N, 1024, 1),
        elt_op("dense1 out 64x1024", "bias_add_grad", K_BIAS_GRAD, N, 1024, 1),
        elt_op("dense1 out 64x1024", "relu", K_RELU, N, 1024, 1),
        elt_op("dense1 out 64x1024", "relu_grad", K_RELU_GRAD, N, 1024, 1),
        elt_op("dense2 out 64x10", "bias_add", K_BIAS, N, 10, 1),
        elt_op("dense2 out 64x10", "bias_add_grad", K_BIAS_GRAD, N, 10, 1),
        pool_op("pool1 2x2/2 SAME 28x28x32", "max_pool", K_POOL, (ps_ops_nhwc_t){N, 28, 28, 32}),
        pool_op("pool1 2x2/2 SAME 28x28x32", "max_pool_grad", K_POOL_GRAD,
                (ps_ops_nhwc_t){N, 28, 28, 32}),
        pool_op("pool2 2x2/2 SAME 14x14x64", "max_pool", K_POOL, (ps_ops_nhwc_t){N, 14, 14, 64}),
        pool_op("pool2 2x2/2 SAME 14x14x64", "max_pool_grad", K_POOL_GRAD,
                (ps_ops_nhwc_t){N, 14, 14, 64}),
        elt_op("logits 64x10", "sparse_softmax_xent", K_LOSS, N, 10, 5),
    };
    const size_t nops = sizeof ops / sizeof ops[0];

    /* Every buffer holds the largest operand of any op and of its reference sgemms. */
    size_t cap = (size_t) (N * 28 * 28 * 32); /* conv1's output, the largest activation */
    for (size_t i = 0; i < nops; i++) {
        const bench_op_t *o = &ops[i];
        size_t sq = (size_t) llround(cbrt(o->flops / 2.0)) + 1;
        const size_t need[] = {sq * sq,
                               (size_t) (o->gm * o->gk),
                               (size_t) (o->gk * o->gn),
                               (size_t) (o->gm * o->gn),
                               (size_t) (o->m * o->k),
                               (size_t) (o->k * o->n),
                               (size_t) (o->m * o->n)};
        for (size_t j = 0; j < sizeof need / sizeof need[0]; j++)
            cap = need[j] > cap ? need[j] : cap;
    }
    bufs_t B = {malloc(cap * 4),
                malloc(cap * 4),
                malloc(cap * 4),
                malloc(cap * 4),
                malloc((size_t) N * sizeof(int32_t)),
                cap};
    if (!B.a || !B.b || !B.c || !B.d || !B.labels) {
        fprintf(stderr, "bench_ops: out of memory\n");
        return 1;
    }
    srand(1);
    for (size_t i = 0; i < cap; i++) {
        B.a[i] = (float) rand() / (float) RAND_MAX - 0.5f;
        B.b[i] = (float) rand() / (float) RAND_MAX - 0.5f;
        B.c[i] = (float) rand() / (float) RAND_MAX - 0.5f;
        B.d[i] = 0;
    }
    for (int64_t i = 0; i < N; i++)
        B.labels[i] = (int32_t) (i % 10);
    ws = ps_ops_workspace_new();

    FILE *csv = fopen(csv_path, "w"), *md = fopen(md_path, "w");
    if (!csv || !md) {
        fprintf(stderr, "bench_ops: cannot open %s or %s\n", csv_path, md_path);
        return 1;
    }
    fprintf(csv, "threads,layer,op,mflop,op_ms,op_gflops,sgemm_sq_gflops,ratio_vs_sgemm_sq,"
                 "ratio_vs_sgemm_sq_min,ratio_vs_sgemm_sq_max,ratio_vs_sgemm_sq_cpu,"
                 "sgemm_lowered_gflops,ratio_vs_sgemm_lowered\n");
    fprintf(md, "# Compute ops at the training demo's shapes (batch 64)\n\n");
    fprintf(md,
            "Measured by bench_ops (Release, no sanitizers); the command, commit and load are at "
            "the end. Each op call is followed by its reference sgemm call, %d pairs after one "
            "warm-up call; times are medians of the %d calls.\n\n",
            reps, reps);
    fprintf(md,
            "- **vs sgemm (same FLOPs)**: per pair, the time of a square `cblas_sgemm` (m = n = "
            "k = cbrt(FLOPs/2), scaled to the op's FLOPs) over the op's time; the median "
            "[min-max] of those paired ratios (1.0: the op runs at sgemm's GFLOP/s).\n"
            "- **CPU time** (1 thread only): the same paired ratio from the calling thread's "
            "CPU time, which leaves out time spent preempted by other processes.\n"
            "- **vs lowered sgemm**: the paired ratio against one `cblas_sgemm` of exactly the "
            "GEMM shape the op lowers to (for conv: the im2col matrix); 1.0 means the lowering "
            "costs nothing.\n"
            "- Conv FLOPs = 2 x N x OH x OW x KH x KW x Cin x Cout (padding taps counted, "
            "TensorFlow's convention); element-wise ops count 1 FLOP per element (pool: 3 "
            "compares per output, loss: 5 per logit) and are memory-bound, so their ratio "
            "says little: read their time.\n\n");
    for (int t = 0; t < nthreads; t++) {
        ps_error_t err;
        if (ps_ops_set_num_threads(threads[t], &err) != 0)
            die("set_num_threads", err.code, &err);
        fprintf(md, "## OpenBLAS threads: %d\n\n", ps_ops_get_num_threads());
        fprintf(md, "| layer | op | MFLOP | ms | GFLOP/s | sgemm GFLOP/s (same FLOPs) | vs sgemm "
                    "[min-max] | vs sgemm, CPU time | vs lowered sgemm |\n"
                    "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        double total_ms = 0, unneeded_ms = 0;
        for (size_t i = 0; i < nops; i++) {
            const bench_op_t *o = &ops[i];
            result_t r = measure(o, &B, reps);
            double gf = o->flops / r.op_s * 1e-9, sq = o->flops / r.sq_s * 1e-9;
            double lo = r.lowered_s > 0 ? o->flops / r.lowered_s * 1e-9 : 0;
            total_ms += r.op_s * 1e3;
            if (o->kind == K_CONV_DIN && o->in.c == 1)
                unneeded_ms += r.op_s * 1e3;
            const double cpu_ratio = ps_ops_get_num_threads() == 1 ? r.rc_med : 0;
            fprintf(csv, "%d,%s,%s,%.2f,%.4f,%.2f,%.2f,%.3f,%.3f,%.3f,%.3f,%.2f,%.3f\n",
                    ps_ops_get_num_threads(), o->layer, o->op, o->flops * 1e-6, r.op_s * 1e3, gf,
                    sq, r.r_med, r.r_min, r.r_max, cpu_ratio, lo, r.rl_med);
            char lowered[32] = "n/a", cpu[48] = "n/a";
            if (lo > 0)
                snprintf(lowered, sizeof lowered, "%.2f", r.rl_med);
            if (cpu_ratio > 0)
                snprintf(cpu, sizeof cpu, "%.2f [%.2f-%.2f]", r.rc_med, r.rc_min, r.rc_max);
            fprintf(md, "| %s | %s | %.1f | %.3f | %.1f | %.1f | %.2f [%.2f-%.2f] | %s | %s |\n",
                    o->layer, o->op, o->flops * 1e-6, r.op_s * 1e3, gf, sq, r.r_med, r.r_min,
                    r.r_max, cpu, lowered);
            fprintf(stderr, "threads=%d %-28s %-24s %8.3f ms %7.1f GFLOP/s  x%.2f sgemm\n",
                    ps_ops_get_num_threads(), o->layer, o->op, r.op_s * 1e3, gf, r.r_med);
        }
        fprintf(md,
                "\nOne training step's compute at batch 64 (every row except conv1's input "
                "gradient, which training does not need): %.2f ms, i.e. %.0f examples/s.\n\n",
                total_ms - unneeded_ms, 64.0 / ((total_ms - unneeded_ms) * 1e-3));
    }
    fclose(csv);
    fclose(md);
    ps_ops_workspace_free(ws);
    free(B.a);
    free(B.b);
    free(B.c);
    free(B.d);
    free(B.labels);
    return 0;
}
