/* Client-private: what the Saver (saver.c) and the checkpoint reader (reader.c) share. */
#ifndef PSC_CKPT_INT_H
#define PSC_CKPT_INT_H

#include <ps/status.h>

/**
 * tf.train.latest_checkpoint(dir) into a new string (*out, ps_free; NULL for TensorFlow's None).
 * Returns 0 or RESOURCE_EXHAUSTED.
 */
int psc_ckpt_latest(const char *dir, char **out, ps_error_t *err);

#endif /* PSC_CKPT_INT_H */
