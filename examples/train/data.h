/* Fashion-MNIST loading for the training demo: the four gzip IDX files of Debian's
 * dataset-fashion-mnist package, read with zlib into float images in [0, 1] and int32 labels. */
#ifndef TRAIN_DATA_H
#define TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

#define DATA_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define DATA_PACKAGE     "dataset-fashion-mnist"
#define DATA_ROWS        28
#define DATA_COLS        28
#define DATA_PIXELS      (DATA_ROWS * DATA_COLS)
#define DATA_CLASSES     10

/* One split: n images of DATA_PIXELS floats (row-major, NHWC with one channel) and n labels. */
typedef struct data_set {
    size_t n;
    float *images;
    int32_t *labels;
} data_set_t;

/**
 * Load split "train" or "t10k" from dir ("<dir>/<split>-images-idx3-ubyte.gz" and the labels file),
 * keeping at most limit examples (0 = all). Returns 0, or NOT_FOUND naming the missing file and the
 * Debian package that provides it, DATA_LOSS for a corrupt or truncated file, RESOURCE_EXHAUSTED.
 */
int data_load(const char *dir, const char *split, size_t limit, data_set_t *out, ps_error_t *err);

/** Free what data_load allocated (the struct itself is the caller's). */
void data_free(data_set_t *d);

#endif /* TRAIN_DATA_H */
