/* psd's offline log check and repair (`psd --check-log DIR`, `psd --repair-log DIR [--yes]`,
 * docs/persistence.md): reports the intact records of a data directory's write-ahead log and what a
 * repair would cut, and cuts only with consent, keeping the cut bytes beside the log. */
#ifndef PSD_LOGCHECK_H
#define PSD_LOGCHECK_H

#include <stdio.h>

/**
 * Check (repair = 0) or repair the log in dir, locked against a running psd. Consent to cut is
 * yes, or a line starting with 'y' read from in (NULL: no consent). Reports go to out. Returns 0
 * when the log is intact or was repaired, 1 when damage was found and not (or not safely) cut, or
 * the directory is in use, 2 for a bad directory.
 */
int psd_logcheck_run(const char *dir, int repair, int yes, FILE *in, FILE *out);

/** main()'s entry when argv[1] is --check-log or --repair-log: parses the rest. Exit status. */
int psd_logcheck_main(int argc, char **argv, FILE *in, FILE *out);

#endif /* PSD_LOGCHECK_H */
