"""UMF-CMGR registration and fusion per 256x256 pair: ours against the
upstream PyTorch code, same run, same inputs, same weights, same threads.

    python bench/umf.py [--runs 7] [--pairs 3] [--torch_python PATH]

Ours: ``stdfusion_tf.umf.pipeline.Registrar`` (MRRN) and ``DIFNFuser``
(DIFN), weights ``reg_0800.pth`` / ``fus_0200.pth`` read by
``stdfusion_tf.umf.weights.load_network`` (converted on the fly, no torch).
Upstream: ``models/deformable_net.py`` ``DeformableNet`` and
``models/fusion_net.py`` ``FusionNet`` imported from
``../shared/umf-cmgr/upstream_src`` (never copied), same ``.pth`` files
through ``torch.load``, ``torch.no_grad()``, run by
``bench/umf_torch_worker.py`` in a subprocess of ``--torch_python`` (default:
this interpreter when it can import torch).  PyTorch is never a project
dependency: without it the upstream side is skipped with a message and
only ours is timed.

Inputs: the first ``--pairs`` RoadScene pairs of the pinned asset groups
``umf_weights`` / ``umf_roadscene`` (``--mirror``, default
``../shared/umf-cmgr`` beside the project, else GitHub): registration of
``ir_warp`` onto ``pseudo_ir`` (as upstream's ``test_reg.py``), fusion of the
stored ``ir_reg`` with ``vi_256`` (as ``test_fuse.py``), all read once, as
upstream reads them (``cv2`` gray, ``u8 / 255.``), and handed to both
sides as the same float32 arrays.

Timing: a run registers every pair, then fuses every pair, each call timed
(numpy in, numpy out); the seconds per pair of a run is its mean over the
pairs.  Ours and upstream run in alternating blocks (ours first on even
runs, upstream first on odd ones) after 2 warm-up runs each, so machine
load drift hits both alike.  Both use every core (TF's default intra-op
pool; ``torch.set_num_threads(cores)``).  Prints median [min-max] over
``--runs`` of seconds per pair, the ratios upstream / ours (> 1: ours is
faster), the thread counts and the upstream process's ``OMP_WAIT_POLICY``,
and the max |ours - upstream| of the outputs of the last run (registered
image, flow, fused image) -- proof that both time the same computation.

``OMP_WAIT_POLICY=PASSIVE`` by default for the upstream process: PyTorch's
OpenMP threads otherwise spin at every barrier, and on a shared, loaded CPU
(more runnable threads than cores) a spinning thread holds the core its
partner needs -- measured here at load ~10 on 2 cores, one MRRN call took
0.4-2 s spinning against 0.05 s passive (0.14 s on one thread).  TF's
thread pool already sleeps when idle.  ``--omp_wait_policy inherit`` times
PyTorch as this process's environment leaves it.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from stdfusion_tf import cli  # noqa: E402,F401  (quiet TensorFlow)

FLAGS = flags.FLAGS
HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "umf_torch_worker.py")
SHARED_UMF = os.path.join(os.path.dirname(HERE), os.pardir, "shared",
                          "umf-cmgr")
SKIPPED = "upstream PyTorch not importable: skipped"
WARMUP = 2
# The pinned asset folders: registration (target, source), fusion (ir, vi).
FOLDERS = ("pseudo_ir", "ir_warp", "ir_reg", "vi_256")


def define_flags():
    flags.DEFINE_integer("runs", 7, "Timed runs (after 2 warm-ups); each "
                         "run registers and fuses every pair once.")
    flags.DEFINE_integer("pairs", 3, "RoadScene pairs per run (the first "
                         "ones in name order).")
    flags.DEFINE_string("torch_python", None, "A Python that has PyTorch "
                        "(e.g. /work/torchvenv/bin/python) to run the "
                        "upstream code; default: this interpreter when it "
                        "can import torch, else the upstream side is "
                        "skipped.")
    flags.DEFINE_string("upstream_src", os.path.join(SHARED_UMF,
                                                     "upstream_src"),
                        "The upstream UMF-CMGR code (wdhudiekou/UMF-CMGR).")
    flags.DEFINE_string("mirror", None, "Folder laid out like ../shared/"
                        "umf-cmgr to fetch the weights and RoadScene pairs "
                        "from (default: ../shared/umf-cmgr beside the "
                        "project when present, else GitHub).")
    flags.DEFINE_enum("omp_wait_policy", "passive",
                      ["passive", "active", "inherit"],
                      "OMP_WAIT_POLICY of the upstream (PyTorch) process. "
                      "passive (default): its OpenMP threads sleep at "
                      "barriers, as TF's thread pool does -- on a loaded, "
                      "shared CPU the default spinning makes PyTorch up to "
                      "~40x slower for reasons unrelated to the code; "
                      "inherit: leave this process's environment as it is.")


class Unavailable(Exception):
    """The upstream side cannot run here (the message says why)."""


def upstream_python(torch_python=None):
    """The Python that runs the upstream code, or None (skip): the given
    one, else this interpreter when torch is importable in it."""
    if torch_python:
        return torch_python
    return sys.executable if importlib.util.find_spec("torch") else None


class Upstream:
    """``umf_torch_worker.py`` in a subprocess, kept loaded between blocks
    (it waits on its stdin, so it takes no CPU while ours runs)."""

    def __init__(self, python, upstream_src, reg_pth, fus_pth, inputs,
                 threads, env=None):
        if not os.path.isdir(os.path.join(upstream_src, "models")):
            raise Unavailable(f"no upstream code in {upstream_src}")
        self._stderr = tempfile.TemporaryFile("w+")
        try:
            self.proc = subprocess.Popen(
                [python, WORKER, upstream_src, reg_pth, fus_pth, inputs,
                 str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, text=True, env=env)
        except OSError as exc:
            raise Unavailable(f"cannot start {python} ({exc})")
        self.info = self._answer()

    def _answer(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self._stderr.seek(0)
            lines = self._stderr.read().strip().splitlines()
            raise Unavailable(lines[-1] if lines else
                              f"worker exited with {self.proc.returncode}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait(timeout=60)
        self._stderr.close()


def worker_env(omp_wait_policy):
    """The upstream process's environment: this one's, with
    ``OMP_WAIT_POLICY`` set unless ``inherit``."""
    env = dict(os.environ)
    if omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    return env


def inputs(pairs, mirror):
    """(names, {folder: float32 [N, H, W]}, reg .pth, fus .pth)."""
    import numpy as np

    from stdfusion_tf import assets
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.umf import pipeline

    reg_pth, fus_pth = assets.fetch("umf_weights", mirror=mirror)
    files = assets.fetch("umf_roadscene", mirror=mirror)
    by_folder = {}
    for path in files:
        folder = os.path.basename(os.path.dirname(path))
        by_folder.setdefault(folder, {})[
            os.path.splitext(os.path.basename(path))[0]] = path
    available = sorted(by_folder["ir_warp"])
    if not 1 <= pairs <= len(available):
        raise InputError(None, f"--pairs must be 1..{len(available)}")
    names = available[:pairs]
    arrays = {f: np.stack([pipeline.read_unit(by_folder[f][n]) for n in names])
              for f in FOLDERS}
    return names, arrays, reg_pth, fus_pth


def ours_block(registrar, fuser, arrays):
    """One run of ours: ({'reg': [s...], 'fuse': [s...]}, outputs)."""
    reg_s, fuse_s, regs, fused = [], [], [], []
    for t, s in zip(arrays["pseudo_ir"], arrays["ir_warp"]):
        start = time.perf_counter()
        regs.append(registrar(t, s))
        reg_s.append(time.perf_counter() - start)
    for a, b in zip(arrays["ir_reg"], arrays["vi_256"]):
        start = time.perf_counter()
        fused.append(fuser(a, b))
        fuse_s.append(time.perf_counter() - start)
    return {"reg": reg_s, "fuse": fuse_s}, (regs, fused)


def per_pair(blocks, key):
    """Median, min, max over runs of a run's mean seconds per pair."""
    if key == "both":
        t = [(sum(b["reg"]) + sum(b["fuse"])) / len(b["reg"]) for b in blocks]
    else:
        t = [sum(b[key]) / len(b[key]) for b in blocks]
    return statistics.median(t), min(t), max(t)


def cell(stats):
    return f"{stats[0]:8.4f} s [{stats[1]:.4f}-{stats[2]:.4f}]"


def tf_threads():
    """(TF's intra-op thread count, how it was found)."""
    import tensorflow as tf

    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count())
    set_to = tf.config.threading.get_intra_op_parallelism_threads()
    if set_to:
        return set_to, f"TF intra-op {set_to}"
    return cores, f"TF intra-op default (all {cores} cores)"


def differences(ours_out, theirs_npz):
    """Max |ours - upstream| over the timed pairs, and the uint8 levels as
    upstream saves them."""
    import numpy as np

    from stdfusion_tf.umf import difn, pipeline

    regs, fused = ours_out
    theirs = np.load(theirs_npz)
    reg = np.stack([r for r, _ in regs])
    flow = np.stack([f for _, f in regs])
    fused = np.stack(fused)

    def diff(a, b, to_u8):
        saved = np.abs(to_u8(a).astype(int) - to_u8(b).astype(int)).max()
        return f"{np.abs(a - b).max():.2e} (saved: max {saved} gray level)"

    return (f"max |ours - upstream| on the timed pairs: registered "
            f"{diff(reg, theirs['registered'], pipeline.to_uint8)}, flow "
            f"{np.abs(flow - theirs['flow']).max():.2e} px, fused "
            f"{diff(fused, theirs['fused'], difn.to_uint8)}")


def benchmark(runs, pairs, torch_python=None, upstream_src=None, mirror=None,
              omp_wait_policy="passive", out=print):
    """Time ours (and upstream where it runs); ``out`` gets each line."""
    from stdfusion_tf.umf import pipeline, weights

    if runs < 1:
        from stdfusion_tf.errors import InputError
        raise InputError(None, "--runs must be at least 1")
    if mirror is None and os.path.isdir(SHARED_UMF):
        mirror = os.path.normpath(SHARED_UMF)
    names, arrays, reg_pth, fus_pth = inputs(pairs, mirror)
    registrar = pipeline.Registrar(weights.load_network(reg_pth, "mrrn")[1])
    fuser = pipeline.DIFNFuser(weights.load_network(fus_pth, "difn")[1])
    threads, tf_note = tf_threads()

    python = upstream_python(torch_python)
    upstream = None
    with tempfile.TemporaryDirectory() as tmp:
        if python is None:
            out(SKIPPED)
        else:
            import numpy as np

            npz = os.path.join(tmp, "inputs.npz")
            np.savez(npz, target=arrays["pseudo_ir"], source=arrays["ir_warp"],
                     ir=arrays["ir_reg"], vi=arrays["vi_256"])
            try:
                upstream = Upstream(python, upstream_src or os.path.join(
                    SHARED_UMF, "upstream_src"), reg_pth, fus_pth, npz,
                    threads, env=worker_env(omp_wait_policy))
            except Unavailable as exc:
                if torch_python:  # asked for explicitly: an error
                    from stdfusion_tf.errors import InputError
                    raise InputError(torch_python, f"cannot run the upstream "
                                     f"code ({exc})")
                out(f"{SKIPPED} ({exc})")
        try:
            mine, theirs, last = [], [], None
            for i in range(WARMUP + runs):
                sides = ["ours", "upstream"] if i % 2 == 0 else [
                    "upstream", "ours"]
                for side in sides:
                    if side == "ours":
                        block, last = ours_block(registrar, fuser, arrays)
                        if i >= WARMUP:
                            mine.append(block)
                    elif upstream is not None:
                        block = upstream.ask("run")
                        if i >= WARMUP:
                            theirs.append(block)
            h, w = arrays["ir_warp"].shape[1:]
            out(f"UMF-CMGR per {h}x{w} pair: {pairs} RoadScene pair(s) "
                f"({', '.join(names)}), {runs} "
                f"{'' if upstream is None else 'interleaved '}runs after "
                f"{WARMUP} warm-ups, seconds per pair median [min-max]")
            head = f"{'':<14} {'ours (TF)':>29}"
            if upstream is not None:
                head += f" {'upstream (PyTorch)':>29} {'upstream/ours':>14}"
            out(head)
            for key, label in (("reg", "registration"), ("fuse", "fusion"),
                               ("both", "reg + fusion")):
                a = per_pair(mine, key)
                line = f"{label:<14} {cell(a):>29}"
                if upstream is not None:
                    b = per_pair(theirs, key)
                    line += f" {cell(b):>29} {b[0] / a[0]:14.2f}"
                out(line)
            note = f"threads: {tf_note}"
            if upstream is not None:
                note += (f"; torch.set_num_threads({threads}) -> "
                         f"{upstream.info['threads']}, OMP_WAIT_POLICY="
                         f"{upstream.info['omp_wait_policy']} (torch "
                         f"{upstream.info['torch']}, {python})")
                saved = os.path.join(tmp, "upstream_out.npz")
                upstream.ask(f"save {saved}")
                out(note)
                out(differences(last, saved))
            else:
                out(note)
        finally:
            if upstream is not None:
                upstream.close()


def main(argv):
    del argv
    benchmark(FLAGS.runs, FLAGS.pairs, FLAGS.torch_python,
              FLAGS.upstream_src, FLAGS.mirror, FLAGS.omp_wait_policy,
              out=lambda line: print(line, flush=True))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
