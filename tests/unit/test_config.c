/* Unit tests of psd's option table (server/src/config.c): defaults, both flag forms, size suffixes,
 * bounds with their messages, cross-option checks, run-time mutability and the generated --help. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/internal/log.h>

#include "config.h"

static int parse(psd_config_t *c, ps_error_t *err, int argc, char **argv)
{
    psd_config_defaults(c);
    ps_error_clear(err);
    return psd_config_parse_argv(c, argc, argv, err);
}

Test(config, defaults)
{
    psd_config_t c;
    psd_config_defaults(&c);
    cr_assert_str_eq(c.listen, "127.0.0.1:7070");
    cr_assert_str_eq(c.port_file, "");
    cr_assert_eq(c.log_level, PS_LOG_NOTICE);
    cr_assert_eq(c.max_header_bytes, 4u << 20);
    cr_assert_eq(c.max_payload_bytes, 1u << 30);
    cr_assert_eq(c.max_vars_per_request, 65536);
    cr_assert_eq(c.read_timeout_ms, 30000);
    cr_assert_eq(c.out_hard_limit, 0);
    cr_assert_eq(c.max_memory, 0);
    ps_error_t err;
    cr_assert_eq(psd_config_check(&c, &err), 0, "%s", err.msg);
}

Test(config, both_flag_forms_and_suffixes)
{
    char *argv[] = {"psd",
                    "--listen",
                    "127.0.0.1:0",
                    "--port-file=/tmp/pf",
                    "--log-level",
                    "debug",
                    "--max-payload-bytes=16M",
                    "--out-high-water",
                    "1K",
                    "--out-low-water=512",
                    "--max-memory",
                    "2GiB",
                    "--read-timeout-ms",
                    "250"};
    psd_config_t c;
    ps_error_t err;
    cr_assert_eq(parse(&c, &err, sizeof argv / sizeof argv[0], argv), 0, "%s", err.msg);
    cr_assert_str_eq(c.listen, "127.0.0.1:0");
    cr_assert_str_eq(c.port_file, "/tmp/pf");
    cr_assert_eq(c.log_level, PS_LOG_DEBUG);
    cr_assert_eq(c.max_payload_bytes, 16u << 20);
    cr_assert_eq(c.out_high_water, 1024);
    cr_assert_eq(c.out_low_water, 512);
    cr_assert_eq(c.max_memory, (uint64_t) 2 << 30);
    cr_assert_eq(c.read_timeout_ms, 250);
}

static void expect_bad(const char *msg, int argc, char **argv)
{
    psd_config_t c;
    ps_error_t err;
    cr_assert_eq(parse(&c, &err, argc, argv), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, msg);
}

Test(config, errors_name_the_flag)
{
    expect_bad("unknown option '--bogus'", 2, (char *[]){"psd", "--bogus"});
    expect_bad("unexpected argument 'x'", 2, (char *[]){"psd", "x"});
    expect_bad("--listen needs a value (HOST:PORT)", 2, (char *[]){"psd", "--listen"});
    expect_bad("--max-header-bytes: 1 is out of range [64, 4294967295]", 3,
               (char *[]){"psd", "--max-header-bytes", "1"});
    expect_bad("--max-vars-per-request: '-1' is not a non-negative integer", 3,
               (char *[]){"psd", "--max-vars-per-request", "-1"});
    expect_bad("--max-vars-per-request: '12K' is not a non-negative integer", 3,
               (char *[]){"psd", "--max-vars-per-request", "12K"});
    expect_bad("--max-payload-bytes: '1X' is not a byte size (e.g. 4096, 64K, 16M, 1G)", 2,
               (char *[]){"psd", "--max-payload-bytes=1X"});
    expect_bad("--max-memory: '99999999999999999999' is not a byte size (e.g. 4096, 64K, 16M, 1G)",
               3, (char *[]){"psd", "--max-memory", "99999999999999999999"});
    expect_bad("--log-level: 'loud' is not one of debug, verbose, notice, warning", 3,
               (char *[]){"psd", "--log-level", "loud"});
    expect_bad("--max-connections: 0 is out of range [1, 1048576]", 2,
               (char *[]){"psd", "--max-connections=0"});
}

Test(config, cross_option_rules)
{
    expect_bad("--out-low-water (2048) must not exceed --out-high-water (1024)", 5,
               (char *[]){"psd", "--out-high-water", "1K", "--out-low-water", "2K"});
    expect_bad(
        "--out-hard-limit (10) must be 0 or at least --out-high-water (1024)", 6,
        (char *[]){"psd", "--out-high-water", "1K", "--out-low-water=0", "--out-hard-limit", "10"});
}

Test(config, inflight_payload_budget_holds_at_least_one_payload)
{
    psd_config_t c;
    psd_config_defaults(&c);
    cr_assert_eq(c.max_inflight_payload, (uint64_t) 2 << 30);
    expect_bad(
        "--max-inflight-payload (8388608) must be at least --max-payload-bytes (16777216): a "
        "request of the largest payload could never be received",
        5, (char *[]){"psd", "--max-payload-bytes", "16M", "--max-inflight-payload", "8M"});
    /* Raising only the payload limit past the default budget is refused the same way. */
    expect_bad("--max-inflight-payload (2147483648) must be at least --max-payload-bytes "
               "(4294967296): a request of the largest payload could never be received",
               2, (char *[]){"psd", "--max-payload-bytes=4G"});
    ps_error_t err;
    cr_assert_eq(parse(&c, &err, 4,
                       (char *[]){"psd", "--max-payload-bytes", "8M", "--max-inflight-payload=8M"}),
                 0, "%s", err.msg);
    cr_assert_eq(c.max_inflight_payload, 8u << 20);
    expect_bad("--max-inflight-payload: 0 is out of range [1, 18446744073709551615]", 3,
               (char *[]){"psd", "--max-inflight-payload", "0"});
    /* Mutable at run time, within the same rule. */
    cr_assert_eq(psd_config_set(&c, "max-inflight-payload", "32M", 1, &err), 0, "%s", err.msg);
    cr_assert_eq(c.max_inflight_payload, 32u << 20);
    cr_assert_eq(psd_config_set(&c, "max-inflight-payload", "4M", 1, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(c.max_inflight_payload, 32u << 20, "a refused change leaves the value");
}

Test(config, help_is_reported)
{
    psd_config_t c;
    ps_error_t err;
    cr_assert_eq(parse(&c, &err, 3, (char *[]){"psd", "--listen=1.2.3.4:5", "--help"}),
                 PSD_CONFIG_HELP);
    cr_assert_eq(parse(&c, &err, 2, (char *[]){"psd", "-h"}), PSD_CONFIG_HELP);
}

Test(config, usage_lists_every_option_with_default)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    psd_config_usage(f, "psd");
    fclose(f);
    const char *want[] = {"--listen HOST:PORT",       "[default: 127.0.0.1:7070]",
                          "--port-file FILE",         "--log-level LEVEL",
                          "--max-header-bytes BYTES", "--max-payload-bytes",
                          "--max-vars-per-request N", "[default: 65536]",
                          "--max-connections N",      "--out-high-water",
                          "--out-low-water",          "--out-hard-limit",
                          "--max-pending-requests",   "--read-timeout-ms MS",
                          "[default: 30000]",         "--max-memory",
                          "--shutdown-timeout-ms",    "--help"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_not_null(strstr(buf, want[i]), "usage lacks '%s'", want[i]);
    cr_assert_not_null(strstr(buf, "--max-inflight-payload BYTES"));
    cr_assert_not_null(strstr(buf, "[default: 2G]"));
    free(buf);
}

Test(config, get_and_runtime_set)
{
    psd_config_t c;
    psd_config_defaults(&c);
    ps_error_t err;
    char out[64];
    cr_assert_eq(psd_config_get(&c, "max-vars-per-request", out, sizeof out, &err), 0);
    cr_assert_str_eq(out, "65536");
    cr_assert_eq(psd_config_get(&c, "log-level", out, sizeof out, &err), 0);
    cr_assert_str_eq(out, "notice");
    cr_assert_eq(psd_config_set(&c, "log-level", "warning", 1, &err), 0, "%s", err.msg);
    cr_assert_eq(c.log_level, PS_LOG_WARNING);
    cr_assert_eq(psd_config_set(&c, "listen", "0.0.0.0:1", 1, &err), PS_ERR_FAILED_PRECONDITION);
    cr_assert_str_eq(err.msg, "option 'listen' cannot be changed at run time");
    /* A run-time change that breaks a cross-option rule leaves the config as it was. */
    cr_assert_eq(psd_config_set(&c, "out-low-water", "1G", 1, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(c.out_low_water, 16u << 20);
    cr_assert_eq(psd_config_get(&c, "nope", out, sizeof out, &err), PS_ERR_NOT_FOUND);
}

Test(config, config_file_applies_where_it_appears)
{
    char path[] = "/tmp/psd-test-config-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(
        f,
        "# psd options\n\nlisten 127.0.0.1:9999\nlog-level = debug\n  max-vars-per-request 7  \n");
    fclose(f);
    char *argv[] = {"psd",    "--max-vars-per-request", "3", "--config", path, "--log-level",
                    "warning"};
    psd_config_t c;
    ps_error_t err;
    cr_assert_eq(parse(&c, &err, 7, argv), 0, "%s", err.msg);
    cr_assert_str_eq(c.listen, "127.0.0.1:9999");
    cr_assert_eq(c.max_vars_per_request, 7, "the file overrides earlier flags");
    cr_assert_eq(c.log_level, PS_LOG_WARNING, "later flags override the file");
    f = fopen(path, "w");
    fprintf(f, "listen 127.0.0.1:1\nmax-header-bytes 1\n");
    fclose(f);
    char msg[512];
    snprintf(msg, sizeof msg, "%s:2: --max-header-bytes: 1 is out of range [64, 4294967295]", path);
    char *argv2[] = {"psd", "--config", path};
    expect_bad(msg, 3, argv2);
    f = fopen(path, "w");
    fprintf(f, "bogus 1\n");
    fclose(f);
    snprintf(msg, sizeof msg, "%s:1: unknown option 'bogus'", path);
    expect_bad(msg, 3, argv2);
    unlink(path);
    expect_bad("--config: cannot open /nonexistent/psd.conf: No such file or directory", 2,
               (char *[]){"psd", "--config=/nonexistent/psd.conf"});
}
