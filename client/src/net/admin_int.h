/* Client-private: the admin session's one-call runner, for the RPC modules beside admin.c that
 * serve admin tools (workers.c: psctl workers). */
#ifndef PSC_ADMIN_INT_H
#define PSC_ADMIN_INT_H

#include <ps/admin.h>

#include "conn.h"

/**
 * Run h as one read-only call on a's connection (resent after a transport failure, as admin.c's
 * own read calls are). 0 with call->reply set (psc_call_reset it), psd's error, or the transport
 * error.
 */
int psc_admin_run(ps_admin_t *a, Pscope__V1__Header *h, psc_call_t *call, ps_error_t *err);

#endif /* PSC_ADMIN_INT_H */
