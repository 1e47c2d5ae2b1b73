"""A learned dense refinement: a small correlation network (PWC-Net's
cost volume on learned features) that predicts the residual field between an infrared image already warped into the visible frame (by
the global stage) and the visible image.

Trained with ground-truth fields of synthetic deformations of aligned
pairs (``scripts/train_registration_net.py``): the weight-free dense stage
(:mod:`.dense`) is limited by the noise of cross-modal patch matching, and a
network that has seen many infrared-visible pairs can use context that one
patch correlation cannot.

    model = load("weights/registration_refine/last.weights.h5")
    field = predict_field(model, moving, fixed)   # [2, H, W] dy, dx px

``moving(p + field(p))`` then matches ``fixed(p)``.

The network sees six channels per pixel: both images standardised (zero
mean, unit deviation), and both images' doubled-angle orientation features
(:func:`.features.orientation`, real and imaginary parts), which do not
depend on edge polarity.  It predicts the field at a quarter of the
resolution, upsampled bilinearly (the residual fields are smooth).
"""

import pathlib

import numpy as np

from ..errors import InputError
from . import features

_LOADED = {}

OUT_STRIDE = 4
MULTIPLE = 16
CHANNELS = 6


def inputs(moving, fixed):
    """float32 [H, W, 6] network input of two gray images of one size."""
    out = []
    for x in (moving, fixed):
        x = np.asarray(x, np.float32)
        out.append((x - x.mean()) / (x.std() + 1e-3))
    for x in (moving, fixed):
        c = features.orientation(x, 1.0)
        out += [c.real, c.imag]
    return np.stack(out, -1).astype(np.float32)


# per image: (name, filters, stride) down to a quarter of the resolution
FEATURES = (("f1", 16, 1), ("f2", 32, 2), ("f3", 32, 1), ("f4", 48, 2),
            ("f5", 48, 1))
RADIUS = 4          # correlation range, quarter-resolution cells (+-16 px)
# (filters, dilation) of the estimator on the correlation volume
ESTIMATOR = ((96, 1), (64, 2), (64, 4), (48, 8), (32, 1))


def _correlation_layer():
    import keras
    from keras import ops

    class Correlation(keras.layers.Layer):
        """[B, H, W, (2R+1)^2]: the product (cosine, unit features) of the fixed features at
        p and the moving features at p + (dy, dx), |dy|, |dx| <= R."""

        def __init__(self, radius, **kwargs):
            super().__init__(**kwargs)
            self.radius = radius

        def call(self, fixed, moving):
            r = self.radius
            h, w = ops.shape(fixed)[1], ops.shape(fixed)[2]
            padded = ops.pad(moving, ((0, 0), (r, r), (r, r), (0, 0)))
            out = []
            for dy in range(2 * r + 1):
                for dx in range(2 * r + 1):
                    shifted = ops.slice(padded, (0, dy, dx, 0),
                                        (ops.shape(moving)[0], h, w,
                                         ops.shape(moving)[3]))
                    out.append(ops.sum(fixed * shifted, -1))
            return ops.stack(out, -1)

        def get_config(self):
            return {**super().get_config(), "radius": self.radius}

    return Correlation


def build():
    """The refinement network (Keras functional model): [B, H, W, 6] ->
    field [B, H, W, 2] (dy, dx px), H and W multiples of 16.  Each image
    has its own feature encoder (the modalities differ) down to a quarter
    of the resolution; a correlation volume of the two (PWC-Net's) over
    +-RADIUS cells and the visible features go through dilated
    convolutions (the context) to the field."""
    import keras
    from keras import layers, ops

    x_in = keras.Input((None, None, CHANNELS), name="pair")
    # channels: moving std, fixed std, moving Re, Im, fixed Re, Im
    moving = layers.Lambda(lambda t: ops.take(t, [0, 2, 3], axis=-1),
                           name="moving_channels")(x_in)
    fixed = layers.Lambda(lambda t: ops.take(t, [1, 4, 5], axis=-1),
                          name="fixed_channels")(x_in)
    feats = {}
    for role, x in (("moving", moving), ("fixed", fixed)):
        for name, filters, s in FEATURES:
            x = layers.Conv2D(filters, 3, strides=s, padding="same",
                              name=f"{role}_{name}")(x)
            x = layers.LeakyReLU(0.1, name=f"{role}_{name}_act")(x)
        feats[role] = layers.UnitNormalization(axis=-1,
                                               name=f"{role}_norm")(x)
    corr = _correlation_layer()(RADIUS, name="correlation")(
        feats["fixed"], feats["moving"])
    x = layers.Concatenate(name="estimator_in")([corr, feats["fixed"]])
    for i, (filters, rate) in enumerate(ESTIMATOR):
        x = layers.Conv2D(filters, 3, padding="same", dilation_rate=rate,
                          name=f"estimator{i + 1}")(x)
        x = layers.LeakyReLU(0.1, name=f"estimator{i + 1}_act")(x)
    flow = layers.Conv2D(2, 3, padding="same", name="flow",
                         kernel_initializer=keras.initializers.RandomNormal(
                             stddev=1e-3))(x)
    flow = layers.UpSampling2D(OUT_STRIDE, interpolation="bilinear",
                               name="flow_up")(flow)
    return keras.Model(x_in, flow, name="registration_refine")


def load(weights):
    """The refinement network with the weights of a ``.weights.h5`` file
    (``scripts/train_registration_net.py`` writes ``last.weights.h5``).
    Cached per path.  A missing or foreign file raises a one-line
    InputError naming it."""
    key = str(weights)
    if key in _LOADED:
        return _LOADED[key]
    path = pathlib.Path(weights)
    if not path.is_file():
        raise InputError(str(path), "no such weights file")
    model = build()
    try:
        model.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - a file the user gave
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(str(path), "not the registration network's "
                         f"weights: {first}") from exc
    _LOADED[key] = model
    return model


def _pad(a, multiple=MULTIPLE):
    h, w = a.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return a
    return np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="reflect")


def predict_field(model, moving, fixed):
    """float32 [2, H, W] field (dy, dx px): ``moving(p + field(p))``
    matches ``fixed(p)``; any size (padded to multiples of 16)."""
    h, w = np.shape(fixed)
    x = _pad(inputs(moving, fixed))[None]
    y = np.asarray(model(x, training=False))[0, :h, :w]
    return np.ascontiguousarray(np.moveaxis(y, -1, 0)).astype(np.float32)
