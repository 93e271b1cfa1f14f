# Seed 001, first example (the TF guide's conv_relu / my_image_filter); the article has no import
# line, so one is added. tf.nn.conv2d and tf.nn.relu run eagerly in pscope (NumPy).
import pscope.compat.v1 as tf  # was: import tensorflow as tf
import numpy as np  # pscope: for the images below


def conv_relu(input, kernel_shape, bias_shape):
  # Create variable named "weights".
  weights = tf.get_variable("weights", kernel_shape,
    initializer=tf.random_normal_initializer())
  # Create variable named "biases".
  biases = tf.get_variable("biases", bias_shape,
    initializer=tf.constant_initializer(0.0))
  conv = tf.nn.conv2d(input, weights,
    strides=[1, 1, 1, 1], padding='SAME')
  return tf.nn.relu(conv + biases)

def my_image_filter(input_images):
  with tf.variable_scope("conv1"):
    # Variables created here will be named "conv1/weights", "conv1/biases".
    relu1 = conv_relu(input_images, [5, 5, 32, 32], [32])
  with tf.variable_scope("conv2"):
    # Variables created here will be named "conv2/weights", "conv2/biases".
    return conv_relu(relu1, [5, 5, 32, 32], [32])

# pscope: the article leaves image1 and image2 undefined; one 8x8x32 image, as in the C seed.
image1 = image2 = ((np.arange(8 * 8 * 32) % 17 - 8) / 8.0).astype(np.float32).reshape(1, 8, 8, 32)

with tf.variable_scope("image_filters") as scope:
  result1 = my_image_filter(image1)
  scope.reuse_variables()
  result2 = my_image_filter(image2)
