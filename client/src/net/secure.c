/* A client's security settings: where the user, password and TLS files come from (options, then
 * environment), reading the password file (first line, at most 1024 bytes), and the OpenSSL client
 * context (TLS 1.2+, psd's certificate verified against the CA, or the system store with tls = 1,
 * and an optional client certificate). The password is wiped when the settings are freed. */
#include "secure.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/internal/alloc.h>

#define PSC_PASSWORD_MAX 1024

struct psc_secure {
    int refs;
    char *user;
    char *password;
    size_t password_len;
    char *server_name;
    SSL_CTX *ctx;
};

static const char *pick(const char *opt, const char *env)
{
    if (opt && *opt)
        return opt;
    const char *e = getenv(env);
    return e && *e ? e : NULL;
}

static const char *ssl_err(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "unknown TLS error");
    ERR_clear_error();
    return buf;
}

static void wipe_free(char *p, size_t n)
{
    if (!p)
        return;
    volatile char *v = p;
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
    ps_free(p);
}

static int read_password_file(const char *path, psc_secure_t *s, ps_error_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "password file %s: %s", path,
                            strerror(errno));
    char buf[PSC_PASSWORD_MAX + 2];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t len = strcspn(buf, "\r\n");
    int rc = 0;
    if (len == 0)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "password file %s: empty first line", path);
    else if (len > PSC_PASSWORD_MAX)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "password file %s: the password is longer than %d bytes", path,
                          PSC_PASSWORD_MAX);
    else if (!(s->password = ps_strndup(buf, len)))
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    s->password_len = rc ? 0 : len;
    volatile char *v = buf;
    for (size_t i = 0; i < sizeof buf; i++)
        v[i] = 0;
    return rc;
}

static int
make_ctx(const char *ca, const char *cert, const char *key, psc_secure_t *s, ps_error_t *err)
{
    char eb[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "TLS: %s", ssl_err(eb, sizeof eb));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int rc = 0;
    if (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
           : SSL_CTX_set_default_verify_paths(ctx) != 1)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "TLS CA %s: %s", ca ? ca : "(system store)",
                          ssl_err(eb, sizeof eb));
    else if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "TLS client certificate %s: %s", cert,
                          ssl_err(eb, sizeof eb));
    else if (cert && SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "TLS client key %s: %s", key ? key : cert,
                          ssl_err(eb, sizeof eb));
    else if (cert && SSL_CTX_check_private_key(ctx) != 1)
        rc =
            ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                         "TLS client key %s does not match certificate %s", key ? key : cert, cert);
    if (rc) {
        SSL_CTX_free(ctx);
        return rc;
    }
    s->ctx = ctx;
    return 0;
}

int psc_secure_new(const ps_client_opts_t *o, psc_secure_t **out, ps_error_t *err)
{
    *out = NULL;
    const char *user = pick(o->user, "PS_USER");
    const char *ca = pick(o->tls_ca, "PS_TLS_CA");
    const char *cert = pick(o->tls_cert, "PS_TLS_CERT");
    const char *key = pick(o->tls_key, "PS_TLS_KEY");
    int tls = o->tls || ca || cert;
    if (!user && !tls)
        return 0;
    if (key && !cert)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a TLS client key needs its certificate (tls_cert / PS_TLS_CERT)");
    psc_secure_t *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    s->refs = 1;
    int rc = 0;
    if (user) {
        const char *pwfile = o->password ? NULL : pick(o->password_file, "PS_PASSWORD_FILE");
        const char *pw = o->password ? o->password : pwfile ? NULL : getenv("PS_PASSWORD");
        if (!(s->user = ps_strdup(user)))
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        else if (pwfile)
            rc = read_password_file(pwfile, s, err);
        else if (!pw || !*pw)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "user %s has no password: set password or password_file, or "
                              "PS_PASSWORD_FILE / PS_PASSWORD",
                              user);
        else if (strlen(pw) > PSC_PASSWORD_MAX)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "the password is longer than %d bytes",
                              PSC_PASSWORD_MAX);
        else if (!(s->password = ps_strdup(pw)))
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        else
            s->password_len = strlen(pw);
    }
    if (!rc && o->tls_server_name && !(s->server_name = ps_strdup(o->tls_server_name)))
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (!rc && tls)
        rc = make_ctx(ca, cert, key, s, err);
    if (rc) {
        psc_secure_unref(s);
        return rc;
    }
    *out = s;
    return 0;
}

psc_secure_t *psc_secure_ref(psc_secure_t *s)
{
    if (s)
        s->refs++;
    return s;
}

void psc_secure_unref(psc_secure_t *s)
{
    if (!s || --s->refs > 0)
        return;
    ps_free(s->user);
    wipe_free(s->password, s->password_len);
    ps_free(s->server_name);
    SSL_CTX_free(s->ctx);
    ps_free(s);
}

void *psc_secure_tls(const psc_secure_t *s)
{
    return s ? s->ctx : NULL;
}

const char *psc_secure_server_name(const psc_secure_t *s)
{
    return s ? s->server_name : NULL;
}

const char *psc_secure_user(const psc_secure_t *s)
{
    return s ? s->user : NULL;
}

const char *psc_secure_password(const psc_secure_t *s, size_t *len)
{
    *len = s ? s->password_len : 0;
    return s ? s->password : NULL;
}
