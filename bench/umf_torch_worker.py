"""The upstream side of ``bench/umf.py``: UMF-CMGR's own PyTorch code, timed.

Started by ``bench/umf.py`` with a Python that has PyTorch (never a project
dependency, and this file imports nothing of the project)::

    <torch python> bench/umf_torch_worker.py UPSTREAM_SRC REG_PTH FUS_PTH \
        INPUTS_NPZ THREADS

It imports ``models/deformable_net.py`` ``DeformableNet`` and
``models/fusion_net.py`` ``FusionNet`` from ``UPSTREAM_SRC`` (through
``sys.path``; the code is read in place, never copied), loads the weights as
upstream's ``Test/`` scripts do (``torch.load(..., map_location='cpu')``;
``DeformableNet.load_state_dict`` pops its grid buffers itself; a ``{'net':
...}`` wrapping is unwrapped), ``torch.set_num_threads(THREADS)``, and runs
under ``torch.no_grad()`` on the arrays of ``INPUTS_NPZ`` (float32 [N, H, W]:
``target``, ``source`` for registration, ``ir``, ``vi`` for fusion) --
exactly the inputs the TensorFlow side gets.

Line protocol on stdin / stdout (one JSON object per answer), so that the
parent can interleave blocks of ours and of upstream while both stay
loaded and warm:

* at start: ``{"torch": version, "threads": n, "omp_wait_policy": ...}``;
* ``run``: every pair registered, then every pair fused, each call timed
  (``time.perf_counter``, tensors in -> numpy out, as the TF side's
  ``Registrar`` / ``DIFNFuser`` calls) -> ``{"reg": [s, ...], "fuse": [...]}``;
* ``save PATH``: the outputs of the last ``run`` -> ``PATH`` (.npz:
  ``registered``, ``flow`` [N, 2, H, W] channel 0 = rows/dy, ``fused``)
  -> ``{"saved": PATH}``;
* ``quit`` (or end of input).
"""

import json
import os
import sys
import time
import types
import warnings


def main(upstream_src, reg_pth, fus_pth, inputs, threads):
    import numpy as np
    import torch

    warnings.filterwarnings("ignore")  # torch.meshgrid's indexing warning
    torch.set_num_threads(int(threads))
    sys.path.insert(0, upstream_src)
    # models/layers.py imports matplotlib.pyplot without using it.
    for name in ("matplotlib", "matplotlib.pyplot"):
        sys.modules.setdefault(name, types.ModuleType(name))
    import models.layers

    models.layers.gpu_use = False  # upstream puts its grids on CUDA otherwise
    from models.deformable_net import DeformableNet
    from models.fusion_net import FusionNet

    def state(path):
        sd = torch.load(path, map_location="cpu")
        return sd["net"] if isinstance(sd, dict) and "net" in sd else sd

    reg_net, fus_net = DeformableNet(), FusionNet(nfeats=64)
    reg_net.load_state_dict(state(reg_pth))
    fus_net.load_state_dict(state(fus_pth))
    reg_net.eval()
    fus_net.eval()

    data = np.load(inputs)
    target, source, ir, vi = (data[k] for k in ("target", "source", "ir",
                                                "vi"))

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x))[None, None]

    def register(t, s):
        with torch.no_grad():
            m_warp, _, flow = reg_net(tensor(t), tensor(s))[:3]
        return m_warp[0, 0].numpy(), flow[0].numpy()

    def fuse(a, b):
        with torch.no_grad():
            return fus_net(tensor(a), tensor(b))[0, 0].numpy()

    def timed(fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        return out, time.perf_counter() - start

    def say(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    say({"torch": torch.__version__, "threads": torch.get_num_threads(),
         "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")})
    last = None
    for line in sys.stdin:
        command = line.split(maxsplit=1)
        if not command or command[0] == "quit":
            break
        if command[0] == "run":
            regs, reg_s = zip(*(timed(register, t, s)
                                for t, s in zip(target, source)))
            fused, fuse_s = zip(*(timed(fuse, a, b) for a, b in zip(ir, vi)))
            last = regs, fused
            say({"reg": reg_s, "fuse": fuse_s})
        elif command[0] == "save" and last is not None:
            regs, fused = last
            np.savez(command[1].strip(),
                     registered=np.stack([r for r, _ in regs]),
                     flow=np.stack([f for _, f in regs]),
                     fused=np.stack(fused))
            say({"saved": command[1].strip()})
        else:
            say({"error": f"unknown command {line.strip()!r}"})


if __name__ == "__main__":
    main(*sys.argv[1:])
