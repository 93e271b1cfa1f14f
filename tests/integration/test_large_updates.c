/* Large pushes reuse freed blocks (server/src/blob.c's pool): once warm, an ASSIGN of a 36 MiB
 * tensor lands in a block a previous value gave back, so psd does not fault in the pages of a fresh
 * allocation on every push (36 MiB is over glibc's largest mmap threshold, so without the pool each
 * push would map, fault in and unmap 9,216 pages). psd's minor page faults are read from
 * /proc/PID/stat. With --max-memory set the pool is off, and the same pushes fault every page: the
 * measurement can see the difference. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32    PSCOPE__V1__DTYPE__DT_FLOAT
#define ELEMS  (9 << 20) /* 36 MiB of float32 */
#define PAGES  ((size_t) ELEMS * 4 / 4096)
#define WARM   3
#define PUSHES 8

static ps_psd_t psd;

static void teardown(void)
{
    ps_psd_cleanup(&psd);
}

TestSuite(large_updates, .fini = teardown, .timeout = 120);

static unsigned long long minflt(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long v = 0;
    cr_assert(p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu", &v) == 1);
    return v;
}

/* Faults per push over PUSHES assigns after WARM ones. */
static double faults_per_push(const char *const *extra)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0, "psd did not start");
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 60000), 0, "connect: %s", strerror(errno));
    int64_t d[1] = {ELEMS};
    cr_assert_eq(ps_wc_create_const(&c, "big", F32, 1, d, 0.0), 0);
    float *x = malloc((size_t) ELEMS * 4);
    cr_assert_not_null(x);
    unsigned long long f0 = 0;
    for (int k = 0; k < WARM + PUSHES; k++) {
        if (k == WARM)
            f0 = minflt(psd.pid);
        for (size_t i = 0; i < ELEMS; i += 1024)
            x[i] = (float) k;
        ps_wc_update_t u = {.x = {.name = "big",
                                  .dtype = F32,
                                  .rank = 1,
                                  .dims = d,
                                  .data = x,
                                  .len = (size_t) ELEMS * 4},
                            .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_update(&c, &u, 1, 0, 0, &r), PS_WC_OK);
        cr_assert_eq(r.h->code, 0, "%s", r.h->message);
        ps_wc_reply_free(&r);
    }
    double per = (double) (minflt(psd.pid) - f0) / PUSHES;
    /* The data is intact: the last value is there. */
    const char *names[1] = {"big"};
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_pull(&c, names, 1, &r), PS_WC_OK);
    cr_assert_eq(r.payload_len, (uint64_t) ELEMS * 4);
    float last;
    memcpy(&last, r.payload, 4);
    cr_assert_eq(last, (float) (WARM + PUSHES - 1));
    ps_wc_reply_free(&r);
    free(x);
    ps_wc_close(&c);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
    return per;
}

Test(large_updates, pushes_reuse_freed_blocks_instead_of_faulting_in_fresh_pages)
{
    double per = faults_per_push(NULL);
    cr_log_info("%.0f minor faults per 36 MiB push (%zu pages)", per, PAGES);
    cr_assert_lt(per, PAGES / 8.0, "%.0f page faults per push of %zu pages", per, PAGES);
}

Test(large_updates, without_the_pool_every_push_faults_in_its_pages)
{
    /* --max-memory turns the pool off: this is what the test above would see without it. */
    const char *extra[] = {"--max-memory", "1G", NULL};
    double per = faults_per_push(extra);
    cr_log_info("%.0f minor faults per 36 MiB push without the pool (%zu pages)", per, PAGES);
    cr_assert_gt(per, PAGES / 2.0, "only %.0f page faults per push of %zu pages", per, PAGES);
}
