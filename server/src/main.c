/* psd's entry point: argv and the option table into a configuration, then psd_server_run (or, for
 * --check-log / --repair-log, the offline log tool). Nothing else happens here; everything is in
 * psd_core. */
#include <stdio.h>
#include <string.h>

#include <ps/status.h>

#include "config.h"
#include "logcheck.h"
#include "server.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--check-log") == 0 || strcmp(argv[1], "--repair-log") == 0))
        return psd_logcheck_main(argc, argv, stdin, stdout);
    psd_config_t cfg;
    ps_error_t err;
    ps_error_clear(&err);
    psd_config_defaults(&cfg);
    int rc = psd_config_parse_argv(&cfg, argc, argv, &err);
    if (rc == PSD_CONFIG_HELP) {
        psd_config_usage(stdout, "psd");
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "psd: %s\nTry 'psd --help' for the options.\n", err.msg);
        return 2;
    }
    return psd_server_run(&cfg);
}
