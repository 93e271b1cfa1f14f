/*
 * shards.c - several real psd processes for the suites that spread variables over shards
 * (see shards.h).
 */
#include "support/shards.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <criterion/criterion.h>

void ps_shards_start_one(ps_shards_t *s, size_t i, const char *listen)
{
    const char *extra[16] = {"--data-dir", s->datadir[i]};
    size_t k = 2;
    for (size_t j = 0; s->extra && s->extra[j] && k < 13; j++)
        extra[k++] = s->extra[j];
    if (listen) {
        extra[k++] = "--listen";
        extra[k++] = listen;
    }
    extra[k] = NULL;
    cr_assert_eq(ps_psd_start(&s->psd[i], NULL, "warning", extra), 0, "psd %zu did not start", i);
    snprintf(s->addr[i], sizeof s->addr[i], "127.0.0.1:%u", (unsigned) s->psd[i].port);
}

void ps_shards_start(ps_shards_t *s, size_t n, const char *tag)
{
    cr_assert_leq(n, PS_SHARDS_MAX, "at most %d shards", PS_SHARDS_MAX);
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(s->datadir[i], sizeof s->datadir[i], "/tmp/ps-%s-XXXXXX", tag);
        cr_assert_not_null(mkdtemp(s->datadir[i]));
        ps_shards_start_one(s, i, NULL);
    }
}

void ps_shards_stop(ps_shards_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->psd[i].pid) {
            int rc = ps_psd_finish(&s->psd[i], SIGTERM, 10000);
            cr_expect_eq(rc, 0, "psd %zu did not exit cleanly (%d)", i, rc);
        }
        ps_psd_cleanup(&s->psd[i]);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->datadir[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", s->datadir[i]);
    }
    s->n = 0;
}
