/* Name rules shared by psd and the client (SPEC §5, TF_SEMANTICS §1.10): TF1 op-name regexes for
 * scope and variable names, and psd's stricter checks on every full name it receives. */
#ifndef PS_INTERNAL_NAMES_H
#define PS_INTERNAL_NAMES_H

#include <stddef.h>

#include <ps/status.h>

/* Longest full name psd accepts, in bytes. */
#define PS_NAME_MAX 1024

/**
 * TF's check for a scope or op name: at the root `^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$`, nested
 * `^[A-Za-z0-9_.\-/]*$`. Returns 0 or INVALID_ARGUMENT with TF's message
 * "'<name>' is not a valid scope name".
 */
int ps_name_check_scope(const char *name, int at_root, ps_error_t *err);

/**
 * psd's check of a full variable name given as len bytes (not NUL-terminated; it may contain NUL):
 * non-empty, at most PS_NAME_MAX bytes, no NUL, valid UTF-8, no leading or trailing '/', no empty
 * component ("//"), and the root op-name regex. Returns 0 or INVALID_ARGUMENT naming what was
 * wrong.
 */
int ps_name_check_full(const char *name, size_t len, ps_error_t *err);

/** 1 when s[0..len) is valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
int ps_utf8_valid(const char *s, size_t len);

#endif /* PS_INTERNAL_NAMES_H */
