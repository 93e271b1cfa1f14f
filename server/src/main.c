/* psd's entry point: argv and the option table into a configuration, then psd_server_run; `psd
 * hash-password`, which turns a password read from stdin into a users-file hash; and --check-log /
 * --repair-log, the offline log tool (logcheck.c). Nothing else happens here; everything is in
 * psd_core. */
#include <stdio.h>
#include <string.h>

#include <ps/status.h>

#include "auth.h"
#include "config.h"
#include "logcheck.h"
#include "server.h"

/* psd hash-password: one password on stdin (a trailing newline is dropped), its argon2id hash on
 * stdout. Reading stdin keeps the password out of argv and the shell history. */
static int hash_password(void)
{
    char pw[PSD_AUTH_PASSWORD_MAX + 2];
    size_t n = fread(pw, 1, sizeof pw - 1, stdin);
    if (n == sizeof pw - 1) {
        fprintf(stderr, "psd hash-password: the password is longer than %d bytes\n",
                PSD_AUTH_PASSWORD_MAX);
        return 2;
    }
    if (n > 0 && pw[n - 1] == '\n')
        n--;
    if (n > 0 && pw[n - 1] == '\r')
        n--;
    char out[128];
    ps_error_t err;
    ps_error_clear(&err);
    int rc = psd_auth_hash_password((const uint8_t *) pw, n, out, &err);
    memset(pw, 0, sizeof pw);
    if (rc) {
        fprintf(stderr, "psd hash-password: %s\n", err.msg);
        return 2;
    }
    printf("%s\n", out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "hash-password") == 0)
        return hash_password();
    if (argc >= 2 && (strcmp(argv[1], "--check-log") == 0 || strcmp(argv[1], "--repair-log") == 0))
        return psd_logcheck_main(argc, argv, stdin, stdout);
    psd_config_t cfg;
    ps_error_t err;
    ps_error_clear(&err);
    psd_config_defaults(&cfg);
    int rc = psd_config_parse_argv(&cfg, argc, argv, &err);
    if (rc == PSD_CONFIG_HELP) {
        psd_config_usage(stdout, "psd");
        printf("\n  psd hash-password   read a password on stdin, print its hash for --users\n");
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "psd: %s\nTry 'psd --help' for the options.\n", err.msg);
        return 2;
    }
    return psd_server_run(&cfg);
}
