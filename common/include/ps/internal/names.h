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
 * "'<name>' is not a valid scope name". The regexes apply literally: "" fails at the root and
 * passes nested (TF skips the check for an empty or None name; callers do the same). name NULL is
 * treated as "".
 */
int ps_name_check_scope(const char *name, int at_root, ps_error_t *err);

/**
 * psd's check of a full variable name given as len bytes (not NUL-terminated; it may contain NUL):
 * non-empty, at most PS_NAME_MAX bytes, no NUL, valid UTF-8, no leading or trailing '/', no empty
 * component ("//"), and the root op-name regex. Returns 0 or INVALID_ARGUMENT naming what was
 * wrong, checked in this order, with these texts (names longer than 256 bytes are quoted in part,
 * ending "..."):
 *   "variable name is empty"
 *   "variable name is N bytes long, over the limit of 1024 bytes"
 *   "variable name contains a NUL byte at offset I"
 *   "variable name is not valid UTF-8 (bad byte 0xXX at offset I)"
 *   "variable name '<name>' starts with '/'" / "... ends with '/'"
 *   "variable name '<name>' has an empty component ('//' at offset I)"
 *   "'<name>' is not a valid scope name (invalid character 'c' at offset I)" (TF's sentence first;
 *   "invalid byte 0xXX" for a non-printable or non-ASCII byte).
 */
int ps_name_check_full(const char *name, size_t len, ps_error_t *err);

/**
 * The shard SPEC §8's default placement puts a full name on among nshards: FNV-1a (64-bit) of the
 * name's bytes modulo nshards (0 when nshards <= 1). Clients place with it and psd (a restore over
 * several shards) finds a missing variable's owner with it, so both agree.
 */
size_t ps_name_shard(const char *name, size_t nshards);

/** 1 when s[0..len) is valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
int ps_utf8_valid(const char *s, size_t len);

#endif /* PS_INTERNAL_NAMES_H */
