/* psd's identities and rights (docs/security.md): the users file (one user per line: name, role,
 * an argon2id password hash from libsodium's crypto_pwhash_str, optional name patterns), its
 * reload, password checks that take the same time whether or not the user exists, the role x method
 * table and the name-prefix rules. A connection's identity is a psd_session_t; nothing here does
 * I/O on a connection. */
#ifndef PSD_AUTH_H
#define PSD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

#define PSD_AUTH_USER_MAX     256  /* bytes of a user name */
#define PSD_AUTH_PASSWORD_MAX 1024 /* bytes of a password */
#define PSD_AUTH_PATTERNS_MAX 64   /* name patterns per user */
#define PSD_AUTH_HASH_MAX     128  /* bytes of a password hash string, NUL included */

typedef enum {
    PSD_ROLE_READER = 1, /* lookups of existing variables, pulls, list, describe, stats */
    PSD_ROLE_WORKER = 2, /* reader + creation, updates, optimizer steps */
    PSD_ROLE_ADMIN = 3,  /* everything: delete, save, restore, config too */
} psd_role_t;

typedef struct psd_auth psd_auth_t;
typedef struct psd_user psd_user_t;

/* One connection's identity. The connection owns it; rpc.c reads and sets it. */
typedef struct psd_session {
    const char *peer; /* "host:port", for logs */
    uint64_t conn_id;
    int authed;
    char user[PSD_AUTH_USER_MAX + 1];
    const psd_user_t *u; /* valid while gen equals the table's generation */
    uint64_t gen;
} psd_session_t;

/**
 * Read a users file. Lines: "NAME ROLE HASH [PATTERN...]", '#' comments and blank lines ignored;
 * ROLE is admin, worker or reader; HASH a crypto_pwhash_str string ($argon2id$...); a PATTERN is a
 * full name, or a prefix ending in a star (fc1/ then a star); no pattern (or "*") = every name.
 * Returns 0, or INVALID_ARGUMENT naming the file and line (the hash is never echoed).
 */
int psd_auth_load(const char *path, psd_auth_t **out, ps_error_t *err);

/** Replace a's users with those of path (a's path when NULL); a is unchanged on error. */
int psd_auth_reload(psd_auth_t *a, const char *path, ps_error_t *err);

void psd_auth_free(psd_auth_t *a);

/** Number of users. */
size_t psd_auth_count(const psd_auth_t *a);

/** The users file a was read from. */
const char *psd_auth_path(const psd_auth_t *a);

/**
 * The first step of a login that verifies elsewhere (authq.c, on a worker thread): copy into hash
 * the hash user's password is checked against (the user's, or a fixed dummy when there is no such
 * user, so the check costs the same). Returns 1 when the user exists, 0 when not.
 */
int psd_auth_prepare(const psd_auth_t *a, const char *user, char hash[PSD_AUTH_HASH_MAX]);

/** Does password match hash (argon2id, constant time in the password)? 1 or 0. Thread-safe. */
int psd_auth_verify(const char *hash, const uint8_t *password, size_t password_len);

/**
 * After a successful verify against hash: bind s to user. -1 (s unchanged) when the users table
 * changed meanwhile so that user is gone or has another hash.
 */
int psd_auth_bind(psd_auth_t *a, psd_session_t *s, const char *user, const char *hash);

/** UNAUTHENTICATED for a failed login of user, with a message that does not say why. */
int psd_auth_fail(const char *user, ps_error_t *err);

/**
 * Check a password and, on success, bind s to the user, all on the calling thread. A missing user
 * costs the same argon2id verification as a wrong password (against a fixed dummy hash), so timing
 * tells nothing. Returns 0, or UNAUTHENTICATED with a message that does not say which part was
 * wrong; *why (for psd's log only) says "unknown user" or "wrong password".
 */
int psd_auth_login(psd_auth_t *a,
                   psd_session_t *s,
                   const char *user,
                   const uint8_t *password,
                   size_t password_len,
                   const char **why,
                   ps_error_t *err);

/**
 * The session's current user (re-found by name after a reload), or NULL when it is not
 * authenticated or its user was removed from the file.
 */
const psd_user_t *psd_auth_user(psd_auth_t *a, psd_session_t *s);

psd_role_t psd_auth_user_role(const psd_user_t *u);

/** 1 when the user has name patterns (may touch only some names). */
int psd_auth_user_restricted(const psd_user_t *u);

/** The user's patterns (count in *n). */
const char *const *psd_auth_user_patterns(const psd_user_t *u, size_t *n);

/**
 * May a user of role call method (lookup_mode: GET_VARIABLE's LookupMode)? Returns 0, or
 * PERMISSION_DENIED naming the user, the role and the method.
 */
int psd_auth_check_method(const psd_user_t *u,
                          const char *user,
                          uint32_t method,
                          const char *method_name,
                          int lookup_mode,
                          ps_error_t *err);

/** May u touch the variable name? 0 or PERMISSION_DENIED naming the user and the variable. */
int psd_auth_check_name(const psd_user_t *u, const char *user, const char *name, ps_error_t *err);

/**
 * May u list or delete everything under prefix (the prefix lies inside one of its patterns)? 0 or
 * PERMISSION_DENIED.
 */
int psd_auth_check_prefix(
    const psd_user_t *u, const char *user, const char *prefix, const char *what, ps_error_t *err);

const char *psd_role_name(psd_role_t r);

/**
 * Hash a password for the users file with crypto_pwhash_str (argon2id, libsodium's interactive
 * limits). out must hold 128 bytes. 0 or INTERNAL / INVALID_ARGUMENT.
 */
int psd_auth_hash_password(const uint8_t *pw, size_t len, char out[128], ps_error_t *err);

/** libsodium's one-time setup; 0 or INTERNAL. Called by psd_auth_load and hash_password. */
int psd_auth_crypto_init(ps_error_t *err);

#endif /* PSD_AUTH_H */
