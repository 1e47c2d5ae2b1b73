"""CPSTN generator and PatchGAN discriminator against upstream's PyTorch.

The fixtures (``tests/fixtures/make_cpstn_fixture.py``): upstream's
``networks.py`` at width 8 (``define_G(3, 1, 8, 'resnet_9blocks',
'instance')``, ``define_D(1, 8, 'basic', norm='instance')``, seed 0),
saved with ``torch.save``, and PyTorch's outputs on a fixed 256 x 256 input.
"""

import pathlib

import numpy as np
import pytest

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
TOLERANCE = 1e-4  # max abs


def fixture_input(size=256):
    """The fixture script's input: [1, size, size, 3] float32 in [-1, 1]
    (pseudo-random bytes scaled as CPSTN's ToTensor + Normalize(0.5, 0.5),
    which the script does in NumPy float32 and ``cpstn.scale_in`` here)."""
    from stdfusion_tf.umf.cpstn import scale_in

    i = np.arange(size * size * 3, dtype=np.uint64)
    u8 = ((i * np.uint64(2654435761)) % np.uint64(2 ** 32)) >> np.uint64(24)
    return scale_in(u8.astype(np.uint8).reshape(1, size, size, 3))


@pytest.fixture(scope="module")
def expected():
    return np.load(FIXTURES / "cpstn_ngf8.npz")


def loaded(model, path):
    from stdfusion_tf.checkpoints.pth import load_pth
    from stdfusion_tf.umf.layers import from_torch_layout

    state = load_pth(path)
    variables = model.torch_variables()
    assert list(variables) == list(state)  # same keys, same order
    for key, var in variables.items():
        array = from_torch_layout(state[key])
        assert tuple(var.shape) == array.shape, key
        var.assign(array)
    return model


def test_generator_equals_pytorch(expected):
    from stdfusion_tf.umf.cpstn import CPSTNGenerator

    g = loaded(CPSTNGenerator(ngf=8), FIXTURES / "cpstn_G_ngf8.pth")
    out = np.asarray(g(fixture_input()))
    assert out.shape == expected["g_output"].shape == (1, 256, 256, 1)
    diff = np.abs(out - expected["g_output"]).max()
    print("generator max abs diff", diff)
    assert diff <= TOLERANCE


def test_discriminator_equals_pytorch(expected):
    from stdfusion_tf.umf.cpstn import PatchDiscriminator

    d = loaded(PatchDiscriminator(ndf=8), FIXTURES / "cpstn_D_ndf8.pth")
    # As the fixture script (and training: D(fake_B)): the generator's
    # PyTorch output as the input.
    out = np.asarray(d(expected["g_output"]))
    assert out.shape == expected["d_output"].shape == (1, 30, 30, 1)
    diff = np.abs(out - expected["d_output"]).max()
    print("discriminator max abs diff", diff)
    assert diff <= TOLERANCE


def test_full_size_parameter_counts(expected):
    from stdfusion_tf.umf.cpstn import CPSTNGenerator, PatchDiscriminator

    g, d = CPSTNGenerator(), PatchDiscriminator()
    assert g.count_params_torch() == int(expected["g_params_ngf64"])
    assert d.count_params_torch() == int(expected["d_params_ndf64"])
    # Every Keras variable is a state_dict entry (instance norm without
    # affine has neither parameters nor buffers).
    assert g.count_params() == g.count_params_torch() == 11371905
    assert d.count_params() == d.count_params_torch() == 2762689


def test_state_dict_keys():
    from stdfusion_tf.umf.cpstn import CPSTNGenerator, PatchDiscriminator

    g = CPSTNGenerator(ngf=8).torch_variables()
    # model.0 = ReflectionPad2d, 4 / 7 downsampling, 10-18 resnet blocks
    # (conv_block.1 / .5), 19 / 22 transposed, 26 last conv.
    assert list(g)[:4] == ["model.1.weight", "model.1.bias",
                           "model.4.weight", "model.4.bias"]
    assert "model.18.conv_block.5.bias" in g and "model.19.weight" in g
    assert list(g)[-2:] == ["model.26.weight", "model.26.bias"]
    assert len(g) == 2 * (3 + 2 * 9 + 2 + 1)
    d = PatchDiscriminator(ndf=8).torch_variables()
    assert [k for k in d if k.endswith("weight")] == [
        f"model.{i}.weight" for i in (0, 2, 5, 8, 11)]


def test_to_uint8_truncates_as_tensor2im():
    from stdfusion_tf.umf.cpstn import to_uint8

    x = np.array([-1.0, -0.999, 0.0, 0.5, 0.999, 1.0], np.float32)
    expected = ((x + 1) / 2.0 * 255.0).astype(np.uint8)  # float32 maths
    assert to_uint8(x).tolist() == expected.tolist() == [0, 0, 127, 191,
                                                         254, 255]


def test_sizes():
    from stdfusion_tf.umf.cpstn import CPSTNGenerator, PatchDiscriminator

    g = CPSTNGenerator(ngf=4, n_blocks=1)
    assert tuple(g(np.zeros((1, 300, 516, 3), np.float32)).shape) == (
        1, 300, 516, 1)
    # Not a multiple of 4: 4 * ceil(n / 4), as PyTorch's layers give.
    assert tuple(g(np.zeros((1, 301, 517, 3), np.float32)).shape) == (
        1, 304, 520, 1)
    d = PatchDiscriminator(ndf=4)
    assert tuple(d(np.zeros((2, 256, 128, 1), np.float32)).shape) == (
        2, 30, 14, 1)
