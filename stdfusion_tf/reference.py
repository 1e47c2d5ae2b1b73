"""An upstream-style TF1 graph of STDFusionNet, for validation and benchmarks.

This re-states the authors' released test graph in ``tf.compat.v1`` terms:
placeholders ``[1, None, None, 1]``, explicit zero padding followed by
``VALID`` convolutions (their ``feature_padding``), ``tf.nn.leaky_relu`` /
``tf.nn.elu`` / ``tf.nn.tanh``, and ``Session.run``.  It shares nothing with
the Keras model but the block table, so agreement between the two checks the
Keras layers, the variable mapping and the converter.

Parameters come from a callable ``param(name) -> tensor`` (TF1 names without
root), so the same builder serves constants (inference) and
``tf.compat.v1`` variables (the training-equivalence tests).
"""

import numpy as np

from .model import EXTRACTION_BLOCKS, RECONSTRUCTION_BLOCKS


def _tf():
    import tensorflow as tf
    return tf


def _conv(x, scope, param, pad, bias=True):
    tf = _tf()
    if pad:
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    y = tf.nn.conv2d(x, param(f"{scope}/w"), strides=[1, 1, 1, 1],
                     padding="VALID")
    return y + param(f"{scope}/b") if bias else y


def _block(x, scope, param, activation, identity_conv=True):
    tf = _tf()
    y = tf.nn.leaky_relu(_conv(x, f"{scope}/conv1", param, 0))
    y = tf.nn.leaky_relu(_conv(y, f"{scope}/conv2", param, 1))
    y = _conv(y, f"{scope}/conv3", param, 0)
    shortcut = (_conv(x, f"{scope}/identity_conv", param, 0, bias=False)
                if identity_conv else x)
    act = {"lrelu": tf.nn.leaky_relu, "elu": tf.nn.elu,
           "tanh": tf.nn.tanh}[activation]
    return act(y + shortcut)


def _extraction(x, scope, param):
    tf = _tf()
    x = tf.nn.leaky_relu(_conv(x, f"{scope}/conv1", param, 2))
    for name, _, act in EXTRACTION_BLOCKS:
        x = _block(x, f"{scope}/{name}", param, act,
                   identity_conv=(name != "block1"))
    return x


def fusion_graph(ir, vi, param):
    """Build the fused-image tensor in the current graph."""
    tf = _tf()
    feature = tf.concat([_extraction(vi, "vi_extraction_network", param),
                         _extraction(ir, "ir_extraction_network", param)],
                        axis=-1)
    for name, _, act in RECONSTRUCTION_BLOCKS:
        feature = _block(feature, f"reconstruction_network/{name}", param, act)
    return feature


class ReferenceGraph:
    """The upstream test path: one graph, constant weights, ``Session.run``.

    ``ReferenceGraph(arrays)(ir, vi)`` with ``[H, W]`` or ``[1, H, W, 1]``
    float arrays in [-1, 1] returns the fused ``[1, H, W, 1]`` array.
    """

    def __init__(self, arrays, batch=1):
        tf = _tf()
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1 = tf.compat.v1
            self.ir = v1.placeholder(tf.float32, [batch, None, None, 1],
                                     name="ir_images")
            self.vi = v1.placeholder(tf.float32, [batch, None, None, 1],
                                     name="vi_images")
            consts = {k: tf.constant(np.asarray(v, np.float32), name=None)
                      for k, v in arrays.items()}
            self.fused = fusion_graph(self.ir, self.vi, consts.__getitem__)
            self.session = v1.Session(graph=self.graph)

    def __call__(self, ir, vi):
        ir, vi = (np.asarray(a, np.float32) for a in (ir, vi))
        if ir.ndim == 2:
            ir, vi = ir[None, :, :, None], vi[None, :, :, None]
        return self.session.run(self.fused, {self.ir: ir, self.vi: vi})

    def close(self):
        self.session.close()


def max_abs_diff(model, arrays, shape=(2, 75, 61), seed=0):
    """Run the Keras model and the TF1 reference graph on the same random
    pair (batch, H, W) in [-1, 1]; returns their max abs difference."""
    rng = np.random.default_rng(seed)
    batch, h, w = shape
    ir, vi = (rng.uniform(-1, 1, (batch, h, w, 1)).astype(np.float32)
              for _ in range(2))
    graph = ReferenceGraph(arrays, batch=batch)
    try:
        expected = graph(ir, vi)
    finally:
        graph.close()
    got = np.asarray(model((ir, vi), training=False))
    return float(np.abs(got - expected).max())


class ReferenceTraining:
    """Upstream's training graph: tf.compat.v1 variables initialised from
    ``init`` arrays, the loss of Eq. (2)-(6) written with tf ops, and
    ``tf.compat.v1.train.AdamOptimizer(learning_rate).minimize``.

    Independent of the Keras model and of ``losses.py`` (only the block
    table and the Sobel kernels are shared), for the training-equivalence
    test and the training-step benchmark.
    """

    TERMS = ("total", "vi_pixel", "ir_pixel", "vi_grad", "ir_grad")

    def __init__(self, init, learning_rate=1e-3, patch=128):
        tf = _tf()
        from .losses import SOBEL_X, SOBEL_Y

        v1 = tf.compat.v1
        self.graph = tf.Graph()
        with self.graph.as_default():
            shape = [None, patch, patch, 1]
            self.ir, self.vi, self.mask = (v1.placeholder(tf.float32, shape)
                                           for _ in range(3))
            self.variables = {}
            with v1.variable_scope("STDFusion_model"):
                def param(name):
                    if name not in self.variables:
                        self.variables[name] = v1.get_variable(
                            name, initializer=tf.constant(
                                np.asarray(init[name], np.float32)))
                    return self.variables[name]

                fused = fusion_graph(self.ir, self.vi, param)

            def gradient(x):
                f1 = tf.reshape(tf.constant(SOBEL_X), [3, 3, 1, 1])
                f2 = tf.reshape(tf.constant(SOBEL_Y), [3, 3, 1, 1])
                return (tf.abs(tf.nn.conv2d(x, f1, [1, 1, 1, 1], "SAME"))
                        + tf.abs(tf.nn.conv2d(x, f2, [1, 1, 1, 1], "SAME")))

            m = (self.mask + 1) / 2.0
            t = {"ir_pixel": tf.reduce_mean(m * tf.abs(fused - self.ir)),
                 "vi_pixel": tf.reduce_mean((1 - m) * tf.abs(fused - self.vi)),
                 "ir_grad": tf.reduce_mean(
                     m * tf.abs(gradient(fused) - gradient(self.ir))),
                 "vi_grad": tf.reduce_mean(
                     (1 - m) * tf.abs(gradient(fused) - gradient(self.vi)))}
            t["total"] = (t["vi_pixel"] + t["vi_grad"]
                          + 7 * t["ir_pixel"] + 7 * t["ir_grad"])
            self.terms = t
            self.train_op = v1.train.AdamOptimizer(learning_rate).minimize(
                t["total"])
            self.session = v1.Session(graph=self.graph)
            self.session.run(v1.global_variables_initializer())

    def step(self, ir, vi, mask):
        """One optimizer step; the loss terms before the update."""
        out, _ = self.session.run([self.terms, self.train_op], {
            self.ir: ir, self.vi: vi, self.mask: mask})
        return {k: float(v) for k, v in out.items()}

    def weights(self):
        return self.session.run(self.variables)

    def close(self):
        self.session.close()
