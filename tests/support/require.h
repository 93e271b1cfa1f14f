/* A dependency a test needs that a developer's machine may lack (the Fashion-MNIST dataset, NumPy,
 * a high enough open-file limit): the test is skipped there, but where every test must run -- the
 * README's test command (scripts/test.sh exports PS_REQUIRE_ALL=1) and CI (CI=true) -- a missing
 * dependency fails the test instead of letting it pass as skipped. Criterion must be included. */
#ifndef PS_TEST_REQUIRE_H
#define PS_TEST_REQUIRE_H

#include <stdlib.h>
#include <string.h>

/** 1 when a missing dependency must fail the test: PS_REQUIRE_ALL=1 or CI=true. */
static inline int ps_require_all(void)
{
    const char *all = getenv("PS_REQUIRE_ALL");
    const char *ci = getenv("CI");
    return (all != NULL && strcmp(all, "1") == 0) || (ci != NULL && strcmp(ci, "true") == 0);
}

/* Skip the test with the message (printf arguments), or fail it when every test must run. */
#define PS_SKIP_OR_FAIL(...)                                                     \
    do {                                                                         \
        if (ps_require_all()) {                                                  \
            cr_log_error("a dependency is missing and every test must run here " \
                         "(PS_REQUIRE_ALL=1 or CI=true):");                      \
            cr_assert_fail(__VA_ARGS__);                                         \
        }                                                                        \
        cr_skip_test(__VA_ARGS__);                                               \
    } while (0)

#endif /* PS_TEST_REQUIRE_H */
