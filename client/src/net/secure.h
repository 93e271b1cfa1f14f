/* Client-private: the security settings of a client (user and password for AUTH, the TLS context
 * with the CA, client certificate and key), resolved once from ps_client_opts_t and the PS_USER,
 * PS_PASSWORD_FILE, PS_PASSWORD, PS_TLS_CA, PS_TLS_CERT, PS_TLS_KEY environment variables, shared
 * by every connection of the client (reference counted). conn.c runs the handshake and AUTH. */
#ifndef PSC_SECURE_H
#define PSC_SECURE_H

#include <ps/client.h>
#include <ps/status.h>

typedef struct psc_secure psc_secure_t;

/**
 * Resolve the options (fields first, then the environment). *out is NULL when there is nothing to
 * do (no user, no TLS): connections stay plaintext and send no AUTH. 0, or INVALID_ARGUMENT naming
 * the file or option that is wrong (unreadable password file, bad certificate, key mismatch).
 */
int psc_secure_new(const ps_client_opts_t *o, psc_secure_t **out, ps_error_t *err);

psc_secure_t *psc_secure_ref(psc_secure_t *s);
void psc_secure_unref(psc_secure_t *s);

/** The OpenSSL client context (SSL_CTX *), or NULL for plaintext. */
void *psc_secure_tls(const psc_secure_t *s);

/** The name psd's certificate must carry (NULL: the address's host). */
const char *psc_secure_server_name(const psc_secure_t *s);

/** The user to AUTH as (NULL: none) and its password. */
const char *psc_secure_user(const psc_secure_t *s);
const char *psc_secure_password(const psc_secure_t *s, size_t *len);

#endif /* PSC_SECURE_H */
