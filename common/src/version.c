/* The version of the pscope library actually linked (which may differ from the headers a program
 * was compiled against). */
#include <ps/version.h>

const char *ps_version_string(void)
{
    return PS_VERSION_STRING;
}
