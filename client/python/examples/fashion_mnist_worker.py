#!/usr/bin/env python3
"""A Fashion-MNIST training worker in Python: the demo's CNN (examples/train: conv 5x5x32 + relu +
max-pool, conv 5x5x64 + relu + max-pool, dense 1024 + relu, dense 10) declared with TensorFlow 1's
names through pscope.compat.v1, computed with NumPy. Each step pulls every weight in one request,
runs forward and backward on a batch of this worker's shard, and pushes the gradients in one
request (v += -lr * grad, atomic per variable at psd). Any number of workers share the one stored
copy of the model: the first one creates it, the others attach.

    PS_SERVER=127.0.0.1:7070 python3 fashion_mnist_worker.py --steps 200 --worker 0 --workers 2
"""
import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np

import pscope
import pscope.compat.v1 as tf

DATASET = os.environ.get("PS_DATASET_DIR", "/usr/share/datasets/fashion-mnist")


def load(kind):
    """Images (N, 28, 28, 1) in [0, 1] and int labels of the 'train' or 't10k' split."""
    with gzip.open(os.path.join(DATASET, "%s-images-idx3-ubyte.gz" % kind), "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise ValueError("%s: not an idx3 image file" % f.name)
        x = np.frombuffer(f.read(n * rows * cols), np.uint8).reshape(n, rows, cols, 1)
    with gzip.open(os.path.join(DATASET, "%s-labels-idx1-ubyte.gz" % kind), "rb") as f:
        magic, m = struct.unpack(">II", f.read(8))
        if magic != 2049 or m != n:
            raise ValueError("%s: not the labels of %d images" % (f.name, n))
        y = np.frombuffer(f.read(m), np.uint8).astype(np.int64)
    return x.astype(np.float32) / 255.0, y


def conv_relu(kernel_shape, bias_shape, seed):
    """The seed articles' conv_relu: its variables in the current variable scope."""
    weights = tf.get_variable("weights", kernel_shape, initializer=tf.glorot_uniform_initializer(seed=seed))
    biases = tf.get_variable("biases", bias_shape, initializer=tf.constant_initializer(0.0))
    return weights, biases


def dense(n_in, n_out, seed):
    weights = tf.get_variable("weights", [n_in, n_out], initializer=tf.glorot_uniform_initializer(seed=seed))
    biases = tf.get_variable("biases", [n_out], initializer=tf.zeros_initializer())
    return weights, biases


def declare_model(seed):
    """Every worker runs the same declarations and so shares the same variables."""
    with tf.variable_scope("conv1"):
        c1 = conv_relu([5, 5, 1, 32], [32], seed)
    with tf.variable_scope("conv2"):
        c2 = conv_relu([5, 5, 32, 64], [64], seed)
    with tf.variable_scope("fc1"):
        f1 = dense(7 * 7 * 64, 1024, seed)
    with tf.variable_scope("fc2"):
        f2 = dense(1024, 10, seed)
    return [*c1, *c2, *f1, *f2]


# ---- NumPy forward and backward (NHWC, HWIO, SAME padding, 2x2 max-pool) --------------------------


def im2col(x, k):
    """(B, H, W, C) -> (B*H*W, k*k*C) patches of a SAME k x k convolution with stride 1."""
    b, h, w, c = x.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, k - 1 - p), (p, k - 1 - p), (0, 0)))
    s = xp.strides
    cols = np.lib.stride_tricks.as_strided(xp, (b, h, w, k, k, c), (s[0], s[1], s[2], s[1], s[2], s[3]))
    return cols.reshape(b * h * w, k * k * c)


def col2im(cols, shape, k):
    b, h, w, c = shape
    p = k // 2
    out = np.zeros((b, h + k - 1, w + k - 1, c), cols.dtype)
    cols = cols.reshape(b, h, w, k, k, c)
    for i in range(k):
        for j in range(k):
            out[:, i : i + h, j : j + w, :] += cols[:, :, :, i, j, :]
    return out[:, p : p + h, p : p + w, :]


def maxpool(x):
    b, h, w, c = x.shape
    r = x.reshape(b, h // 2, 2, w // 2, 2, c)
    out = r.max(axis=(2, 4))
    mask = r == out[:, :, None, :, None, :]
    return out, mask


def unpool(d, mask):
    g = mask * d[:, :, None, :, None, :]
    return g.reshape(mask.shape[0], mask.shape[1] * 2, mask.shape[3] * 2, mask.shape[5])


def forward_backward(params, x, y):
    w1, b1, w2, b2, w3, b3, w4, b4 = params
    bsz = x.shape[0]
    c1 = im2col(x, 5)
    a1 = np.maximum(c1 @ w1.reshape(-1, 32) + b1, 0).reshape(bsz, 28, 28, 32)
    p1, m1 = maxpool(a1)
    c2 = im2col(p1, 5)
    a2 = np.maximum(c2 @ w2.reshape(-1, 64) + b2, 0).reshape(bsz, 14, 14, 64)
    p2, m2 = maxpool(a2)
    f = p2.reshape(bsz, -1)
    h = np.maximum(f @ w3 + b3, 0)
    logits = h @ w4 + b4
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    loss = float(-np.log(prob[np.arange(bsz), y] + 1e-12).mean())
    acc = float((logits.argmax(axis=1) == y).mean())
    d = prob
    d[np.arange(bsz), y] -= 1
    d /= bsz
    g4, gb4 = h.T @ d, d.sum(0)
    dh = (d @ w4.T) * (h > 0)
    g3, gb3 = f.T @ dh, dh.sum(0)
    dp2 = (dh @ w3.T).reshape(p2.shape)
    da2 = unpool(dp2, m2) * (a2 > 0)
    da2f = da2.reshape(-1, 64)
    g2, gb2 = (c2.T @ da2f).reshape(w2.shape), da2f.sum(0)
    dp1 = col2im(da2f @ w2.reshape(-1, 64).T, p1.shape, 5)
    da1 = (unpool(dp1, m1) * (a1 > 0)).reshape(-1, 32)
    g1, gb1 = (c1.T @ da1).reshape(w1.shape), da1.sum(0)
    grads = [g1, gb1, g2, gb2, g3, gb3, g4, gb4]
    return loss, acc, [g.astype(np.float32) for g in grads]


def evaluate(params, x, y):
    loss, acc, _ = forward_backward(params, x, y)
    return loss, acc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=None, help="psd address (default: $PS_SERVER)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-examples", type=int, default=256)
    ap.add_argument("--log-every", type=int, default=10)
    a = ap.parse_args(argv)
    if a.server:
        pscope.connect(a.server)
    x, y = load("train")
    xs, ys = x[a.worker :: a.workers], y[a.worker :: a.workers]
    xt, yt = load("t10k")
    xt, yt = xt[: a.eval_examples], yt[: a.eval_examples]
    variables = declare_model(a.seed)
    params = [np.empty(v.shape.as_list(), np.float32) for v in variables]
    rng = np.random.default_rng(a.seed * 1000 + a.worker)
    pscope.pull(variables, out=params)
    loss0, acc0 = evaluate(params, xt, yt)
    print("worker %d: %d examples; eval before: loss %.4f accuracy %.3f" % (a.worker, len(xs), loss0, acc0), flush=True)
    t0 = time.monotonic()
    for step in range(1, a.steps + 1):
        idx = rng.integers(0, len(xs), a.batch)
        pscope.pull(variables, out=params)  # one request: every weight, into the same arrays
        loss, acc, grads = forward_backward(params, xs[idx], ys[idx])
        pscope.scaled_add(variables, grads, -a.lr)  # one request: every gradient
        if step % a.log_every == 0 or step == a.steps:
            print("step %d: batch loss %.4f accuracy %.3f (%.2f s/step)" % (step, loss, acc, (time.monotonic() - t0) / step), flush=True)
    pscope.pull(variables, out=params)
    loss1, acc1 = evaluate(params, xt, yt)
    print("worker %d: eval after %d steps: loss %.4f accuracy %.3f" % (a.worker, a.steps, loss1, acc1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
