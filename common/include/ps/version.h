/* pscope's version and wire protocol version. */
#ifndef PS_VERSION_H
#define PS_VERSION_H

#include <ps/export.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PS_VERSION_MAJOR  0
#define PS_VERSION_MINOR  1
#define PS_VERSION_PATCH  0
#define PS_VERSION_STRING "0.1.0"

/** Version byte carried in every frame prefix (docs/PROTOCOL.md). */
#define PS_WIRE_VERSION 1

/** "0.1.0": the version of the library actually linked. */
PS_EXTERN const char *ps_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* PS_VERSION_H */
