"""The STDFusionNet loss, Eq. (2)-(6) of the paper, in ``keras.ops``.

With the salient (infrared target) mask ``I_m`` in [0, 1]:

* Eq. (2)/(3), pixel loss: ``L_pixel^ir = mean(I_m * |I_f - I_ir|)``,
  ``L_pixel^vi = mean((1 - I_m) * |I_f - I_vi|)``;
* Eq. (4)/(5), gradient loss: the same on ``grad(I) = |Sobel_x * I| +
  |Sobel_y * I|`` (3x3, zero padding);
* Eq. (6): ``L = L_pixel^vi + L_grad^vi + alpha (L_pixel^ir + L_grad^ir)``,
  ``alpha = 7``.

The mask patches are stored in [-1, 1] like the images and mapped to [0, 1]
by ``(m + 1) / 2``.  The released training code applies that mapping twice
(once in its training loop, again in its graph), so as literally coded the
salient weight is ``0.5 + 0.5 m`` in [0.5, 1] and background pixels weigh
the infrared image 3.5 : 0.5 against the visible one.  The released weights
were not trained that way (they follow the visible image in background
regions) and the paper's equations use the binary mask and its complement,
so ``mask_norm="once"`` is the default; ``"twice"`` reproduces the code.
"""

from keras import ops

ALPHA = 7.0
MASK_NORMS = ("once", "twice")
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))


def gradient(x):
    """|Sobel_x| + |Sobel_y| (cross-correlation, SAME zero padding), as
    upstream's ``utils.gradient``."""
    kx = ops.reshape(ops.convert_to_tensor(SOBEL_X, x.dtype), (3, 3, 1, 1))
    ky = ops.reshape(ops.convert_to_tensor(SOBEL_Y, x.dtype), (3, 3, 1, 1))
    return (ops.abs(ops.conv(x, kx, padding="same"))
            + ops.abs(ops.conv(x, ky, padding="same")))


def salient_mask(mask_patch, mask_norm="once"):
    """Stored mask in [-1, 1] -> weight in [0, 1] (see module docstring)."""
    if mask_norm not in MASK_NORMS:
        raise ValueError(f"mask_norm must be one of {MASK_NORMS}")
    mask = (mask_patch + 1.0) / 2.0
    if mask_norm == "twice":  # as coded upstream (train loop + graph)
        mask = (mask + 1.0) / 2.0
    return mask


def fusion_loss(fused, ir, vi, mask_patch, mask_norm="once", alpha=ALPHA,
                global_batch_size=None):
    """The 5 loss terms: ``{"total", "vi_pixel", "ir_pixel", "vi_grad",
    "ir_grad"}``, each a mean over all elements.

    Under ``tf.distribute`` each replica passes the global batch size so that
    its terms are its share of the global mean (the sum over replicas is then
    the single-device loss).
    """
    mask = salient_mask(mask_patch, mask_norm)
    per_image = ops.cast(ops.prod(ops.shape(fused)[1:]), fused.dtype)
    batch = (ops.cast(ops.shape(fused)[0], fused.dtype)
             if global_batch_size is None
             else ops.cast(global_batch_size, fused.dtype))
    count = batch * per_image

    def mean(x):
        return ops.sum(x) / count

    grad_f = gradient(fused)
    terms = {
        "ir_pixel": mean(mask * ops.abs(fused - ir)),
        "vi_pixel": mean((1.0 - mask) * ops.abs(fused - vi)),
        "ir_grad": mean(mask * ops.abs(grad_f - gradient(ir))),
        "vi_grad": mean((1.0 - mask) * ops.abs(grad_f - gradient(vi))),
    }
    terms["total"] = (terms["vi_pixel"] + terms["vi_grad"]
                      + alpha * (terms["ir_pixel"] + terms["ir_grad"]))
    return terms
