/* Unit tests of psd's retry table (server/src/dedup.c): new, repeated and older sequence numbers
 * with their exact messages, the LRU bound, reservation before applying, and the visit order that
 * checkpoints rely on. */
#include <criterion/criterion.h>

#include <ps/internal/alloc.h>

#include "dedup.h"

static void collect(void *ctx, const psd_dedup_entry_t *e)
{
    uint64_t **out = ctx;
    *(*out)++ = e->client_id;
}

Test(dedup, new_repeat_and_older_seq)
{
    psd_dedup_t *d = psd_dedup_new(0);
    cr_assert_not_null(d);
    const psd_dedup_entry_t *rep;
    ps_error_t err;
    cr_assert_eq(psd_dedup_check(d, "update", "items", 7, 1, 2, &rep, &err), 0);
    cr_assert_null(rep);
    uint64_t v[2] = {11, 12};
    cr_assert_eq(psd_dedup_record(d, 7, 3, -5, v, 2), 0);

    cr_assert_eq(psd_dedup_check(d, "update", "items", 7, 3, 2, &rep, &err), 0);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->versions[0], 11);
    cr_assert_eq(rep->versions[1], 12);
    cr_assert_eq(rep->aux, -5);

    cr_assert_eq(psd_dedup_check(d, "update", "items", 7, 4, 2, &rep, &err), 0);
    cr_assert_null(rep);

    cr_assert_eq(psd_dedup_check(d, "update", "items", 7, 2, 2, &rep, &err),
                 PS_ERR_FAILED_PRECONDITION);
    cr_assert_str_eq(err.msg, "update seq 2 of client 7 is older than its last applied seq 3");
    cr_assert_eq(psd_dedup_check(d, "apply_gradients", "gradients", 7, 3, 5, &rep, &err),
                 PS_ERR_FAILED_PRECONDITION);
    cr_assert_str_eq(
        err.msg, "apply_gradients seq 3 of client 7 repeats one of 2 gradients with 5 gradients");
    psd_dedup_free(d);
}

Test(dedup, bounded_by_least_recently_used)
{
    psd_dedup_t *d = psd_dedup_new(3);
    for (uint64_t c = 1; c <= 3; c++)
        cr_assert_eq(psd_dedup_record(d, c, 1, 0, NULL, 0), 0);
    const psd_dedup_entry_t *rep;
    ps_error_t err;
    /* Touch client 1, so client 2 is now the least recently used and goes first. */
    cr_assert_eq(psd_dedup_check(d, "update", "items", 1, 1, 0, &rep, &err), 0);
    cr_assert_not_null(rep);
    cr_assert_eq(psd_dedup_record(d, 4, 1, 0, NULL, 0), 0);

    uint64_t ids[8], *p = ids;
    psd_dedup_foreach(d, collect, &p);
    cr_assert_eq(p - ids, 3);
    cr_assert_eq(ids[0], 3); /* least recently used first */
    cr_assert_eq(ids[1], 1);
    cr_assert_eq(ids[2], 4);
    cr_assert_eq(psd_dedup_check(d, "update", "items", 2, 1, 0, &rep, &err), 0);
    cr_assert_null(rep, "client 2 was evicted, so its seq 1 counts as new");
    psd_dedup_free(d);
}

Test(dedup, reserve_makes_record_allocation_free)
{
    psd_dedup_t *d = psd_dedup_new(0);
    cr_assert_eq(psd_dedup_reserve(d, 9, 4), 0);
    /* A reserved client has applied nothing yet: it is not visited and any seq is new. */
    uint64_t ids[4], *p = ids;
    psd_dedup_foreach(d, collect, &p);
    cr_assert_eq(p - ids, 0);
    uint64_t v[4] = {1, 2, 3, 4};
    ps_alloc_fail_after(0, 1);
    int rc = psd_dedup_record(d, 9, 1, 0, v, 4);
    ps_alloc_fail_after(-1, 0);
    cr_assert_eq(rc, 0);
    const psd_dedup_entry_t *rep;
    ps_error_t err;
    cr_assert_eq(psd_dedup_check(d, "update", "items", 9, 1, 4, &rep, &err), 0);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->versions[3], 4);
    psd_dedup_free(d);
}

Test(dedup, allocation_failure_leaves_table_usable)
{
    psd_dedup_t *d = psd_dedup_new(0);
    ps_alloc_fail_after(0, 1);
    int rc = psd_dedup_record(d, 5, 1, 0, NULL, 0);
    ps_alloc_fail_after(-1, 0);
    cr_assert_eq(rc, PS_ERR_RESOURCE_EXHAUSTED);
    cr_assert_eq(psd_dedup_record(d, 5, 1, 0, NULL, 0), 0);
    psd_dedup_free(d);
}
