"""CPSTN's training data as upstream's ``unaligned`` dataset reads it
(``CPSTN/data/unaligned_dataset.py`` + ``base_dataset.get_transform``).
NumPy and Pillow only, so bad input is refused before TensorFlow loads.

Upstream, reproduced:

* ``<dataroot>/trainA`` (domain A, the visible images) and ``trainB``
  (domain B, infrared), each sorted, unpaired: an epoch has ``max(|A|,
  |B|)`` samples; sample ``i`` of the (shuffled) order takes ``A[i % |A|]``
  and a *random* ``B`` (``--serial_batches``: ``B[i % |B|]`` and no
  shuffling);
* both are opened with Pillow and ``.convert('RGB')``; A stays RGB
  (``input_nc`` 3), B goes through ``transforms.Grayscale(1)`` (Pillow's
  ``convert('L')``, ITU-R 601 luma) since ``output_nc`` is 1;
* ``preprocess resize_and_crop``: Pillow bicubic resize to ``load_size``
  square (286; torchvision's ``Resize`` on a PIL image is Pillow's own
  resize, so this is bit-exact), a ``RandomCrop(crop_size)`` (256) drawn
  independently for A and B, a ``RandomHorizontalFlip`` each, then
  ``ToTensor`` + ``Normalize(0.5, 0.5)``: ``(u8 / 255 - 0.5) / 0.5``.

The resize does not depend on the random draws, so it is done once at load.
"""

import os

import numpy as np

from .. import images
from ..errors import InputError

LOAD_SIZE, CROP_SIZE = 286, 256


def _resized(path, mode, load_size):
    from PIL import Image

    im = images.open_image(path).convert("RGB")
    if mode == "L":
        im = im.convert("L")  # transforms.Grayscale(1)
    # transforms.Resize([load, load], BICUBIC) on a PIL image
    return np.asarray(im.resize((load_size, load_size), Image.BICUBIC))


def read_unaligned(dataroot, phase="train", load_size=LOAD_SIZE,
                   crop_size=CROP_SIZE):
    """-> (A names, A uint8 [N_A, L, L, 3], B names, B uint8 [N_B, L, L]),
    every image resized to ``load_size`` square as upstream."""
    dataroot = str(dataroot)
    if not os.path.isdir(dataroot):
        raise InputError(dataroot, "no such folder (--dataroot holds "
                         f"{phase}A/ and {phase}B/)")
    if crop_size > load_size:
        raise InputError(None, f"--crop_size {crop_size} is larger than "
                         f"--load_size {load_size}")
    out = []
    for domain, mode in (("A", "RGB"), ("B", "L")):
        folder = os.path.join(dataroot, phase + domain)
        names = images.list_images(folder)
        out.append(names)
        out.append(np.stack([_resized(os.path.join(folder, n), mode,
                                      load_size) for n in names]))
    return tuple(out)


def scale_in(u8):
    """``ToTensor`` + ``Normalize(0.5, 0.5)`` in float32."""
    x = np.asarray(u8, np.uint8).astype(np.float32) / np.float32(255)
    return (x - np.float32(0.5)) / np.float32(0.5)


def crop_flip(img, top, left, size, flip):
    """``RandomCrop`` at (top, left) then the optional horizontal flip."""
    out = img[top:top + size, left:left + size]
    return out[:, ::-1] if flip else out


def random_crop_flip(rng, img, size, no_flip=False):
    """torchvision's ``RandomCrop(size)`` (top, left uniform over the valid
    positions, both ends included) and ``RandomHorizontalFlip()`` (p 0.5),
    drawn from a NumPy generator."""
    h, w = img.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    flip = (not no_flip) and bool(rng.random() < 0.5)
    return crop_flip(img, top, left, size, flip)


class ImagePool:
    """Upstream's ``util/image_pool.py`` ``ImagePool``: the discriminators
    see a history of generated images.  Until ``pool_size`` images are
    stored each query returns the new image and stores it; then, per image,
    with probability 1/2 a random stored image is returned and replaced by
    the new one, else the new image is returned.  Upstream draws with
    Python's ``random``; here the draws (``uniform``, ``randint``) come from
    a NumPy generator passed in, so a resumed run repeats them.  NumPy
    arrays; the state is the stored list (saved with the training state).
    """

    def __init__(self, pool_size=50):
        self.pool_size = pool_size
        self.images = []

    def query(self, batch, rng):
        if self.pool_size == 0:
            return batch
        out = []
        for image in batch:
            if len(self.images) < self.pool_size:
                self.images.append(image.copy())
                out.append(image)
            elif rng.uniform(0, 1) > 0.5:
                k = int(rng.integers(0, self.pool_size))  # randint inclusive
                out.append(self.images[k])
                self.images[k] = image.copy()
            else:
                out.append(image)
        return np.stack(out)

    def state(self, shape):
        """[n, ...] float32 array of the stored images (n may be 0)."""
        if not self.images:
            return np.zeros((0,) + tuple(shape), np.float32)
        return np.stack(self.images).astype(np.float32)

    def load(self, array):
        if len(array) > self.pool_size:
            raise ValueError("more stored images than the pool size")
        self.images = [np.array(a, np.float32) for a in array]
