"""pip install . into a fresh venv: console scripts, import outside the tree.

The venv reuses the test interpreter's installed dependencies (TensorFlow,
Keras, ...) through a .pth line instead of reinstalling them, and the
project is installed with ``--no-deps --no-build-isolation``, so this runs
offline in well under a minute.  It is built from a copy of the files git
would ship (tracked and untracked, not ignored), so the build never writes
build/ or *.egg-info into the checkout.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT

SCRIPTS = ("stdfusion-fuse", "stdfusion-train", "stdfusion-evaluate",
           "stdfusion-convert", "stdfusion-umf", "stdfusion-masks",
           "stdfusion-assets", "stdfusion-register", "stdfusion-export",
           "stdfusion-web")
UMF_SUBCOMMANDS = ("test_reg", "test_fuse", "test_reg_fusion", "evaluate_reg",
                   "make_misaligned", "make_svs_maps", "train_reg",
                   "train_fuse", "train_cpstn")
CONVERT_SUBCOMMANDS = ("from_tf1", "to_tf1", "from_torch")
# What a clone's shims are called: an installed --help never says these.
CLONE_NAMES = ("python test.py", "python train.py", "python evaluate.py",
               "make_masks.py --", "python -m umf", "python -m convert")


def project_files():
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], cwd=ROOT, capture_output=True,
            check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the project's files")
    return [f for f in out.decode().split("\0")
            if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    for name in project_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip",
                    str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], capture_output=True, text=True,
        check=True).stdout.strip()
    # The test interpreter's packages (TF, pip, setuptools, ...) after the
    # venv's own: what `pip install .` adds must come from the venv.
    theirs = {sysconfig.get_paths()["purelib"],
              sysconfig.get_paths()["platlib"]}
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write("".join(p + "\n" for p in sorted(theirs)))
    proc = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--no-input", "--quiet", str(src)],
        cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outside = tmp / "elsewhere"
    outside.mkdir()
    return env_dir, site, outside


def run(venv, *args, env=None):
    env_dir, _, outside = venv
    env = {**{k: v for k, v in os.environ.items()
              if k not in ("PYTHONPATH", "STDFUSION_MIRROR")}, **(env or {})}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(map(str, args)), cwd=outside, env=env,
                          capture_output=True, text=True, timeout=300)


def test_installed_package_imports_outside_the_tree(venv):
    env_dir, site, _ = venv
    proc = run(venv, env_dir / "bin" / "python", "-c",
               "import importlib.util as u, stdfusion_tf, "
               "stdfusion_tf.umf.weights, stdfusion_tf.assets as a; "
               "print(stdfusion_tf.__file__); print(len(a.groups())); "
               "print(u.find_spec('convert'), u.find_spec('umf'))")
    assert proc.returncode == 0, proc.stderr
    where, groups, generic = proc.stdout.splitlines()
    assert where.startswith(site) and str(ROOT) not in where
    assert int(groups) >= 4  # assets.json shipped as package data
    assert generic == "None None"  # no top-level convert/ or umf/
    # runtime dependencies and the optional extras, as declared
    proc = run(venv, env_dir / "bin" / "python", "-c",
               "from importlib import metadata as m; d = m.metadata("
               "'stdfusion-tf'); print(sorted(d.get_all('Provides-Extra')));"
               " print(*m.requires('stdfusion-tf'), sep='|')")
    assert proc.returncode == 0, proc.stderr
    extras, requires = proc.stdout.splitlines()
    assert extras == "['jax', 'litert', 'onnx', 'test', 'web']"
    requires = requires.split("|")
    for name in ("tensorflow", "keras", "numpy", "scipy", "pillow", "h5py",
                 "absl-py", "tensorboard", "matplotlib", "imageio",
                 "opencv-python-headless"):
        assert any(r.startswith(name + ">=") and "extra" not in r
                   for r in requires), name
    assert not any(r.startswith(("pytest", "jax")) and "extra" not in r
                   for r in requires), requires
    installed = sorted(os.listdir(site))
    assert "stdfusion_tf" in installed
    assert not {"convert", "umf", "tests", "bench"} & set(installed)


def test_console_scripts(venv):
    env_dir = venv[0]
    for script in SCRIPTS:
        assert (env_dir / "bin" / script).is_file(), script
    # absl's --help exits with status 1, as `python test.py --help` does
    proc = run(venv, "stdfusion-fuse", "--help")
    assert proc.returncode == 1 and not proc.stderr, proc.stderr
    assert "Fuse infrared/visible pairs" in proc.stdout
    for flag in ("--checkpoint", "--ir_dir", "--save_mode", "--mirror"):
        assert flag in proc.stdout, flag
    proc = run(venv, "stdfusion-convert")
    assert proc.returncode == 1
    assert all(s in proc.stdout for s in ("from_tf1", "to_tf1",
                                          "from_torch"))
    proc = run(venv, "stdfusion-convert", "to_tf1", "--help")
    assert "--root" in proc.stdout and "Export Keras" in proc.stdout
    # one-line errors name the program (and subcommand)
    proc = run(venv, "stdfusion-convert", "to_tf1", "--src", "x.weights.h5",
               "--dst", "out/m")
    assert proc.returncode == 1
    assert "stdfusion-convert to_tf1: error: x.weights.h5: no such file" \
        in proc.stderr, proc.stderr
    for script in ("stdfusion-train", "stdfusion-evaluate"):
        proc = run(venv, script, "--help")
        assert "--ir_dir" in proc.stdout, script


def test_every_program_is_a_console_script_with_help(venv):
    """Every program and subcommand answers --help from another folder,
    its usage naming the installed command, never a clone's script."""
    env_dir = venv[0]
    for script in SCRIPTS:
        assert (env_dir / "bin" / script).is_file(), script
    commands = [[s] for s in SCRIPTS if s not in ("stdfusion-umf",
                                                  "stdfusion-convert")]
    commands += [["stdfusion-umf", s] for s in UMF_SUBCOMMANDS]
    commands += [["stdfusion-convert", s] for s in CONVERT_SUBCOMMANDS]
    for command in commands:
        proc = run(venv, *command, "--help")
        assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, \
            (command, proc.stderr)
        assert " ".join(command) in proc.stdout, command
        assert "--" in proc.stdout, command
        for name in CLONE_NAMES:
            assert name not in proc.stdout, (command, name)
    proc = run(venv, "stdfusion-umf", "test_reg_fusion", "--help")
    for flag in ("--target_dir", "--target:", "--cpstn", "--checkpoint_reg",
                 "umfcmgr_retrain_reg_0800", "STDFUSION_UMF_MIRROR"):
        assert flag in proc.stdout, flag
    proc = run(venv, "stdfusion-umf")
    assert proc.returncode == 1
    assert all(f"  {s} " in proc.stdout for s in UMF_SUBCOMMANDS)


def test_installed_presets_and_default_weights_use_the_keras_cache(venv,
                                                                   upstream):
    """From an installed package: the shipped retrain presets load;
    the default checkpoint goes to $KERAS_HOME, not the working folder."""
    env_dir, site, outside = venv
    home = outside.parent / "keras_home"
    proc = run(venv, env_dir / "bin" / "python", "-c",
               "from stdfusion_tf import STDFusionNet, presets; "
               "m = STDFusionNet.from_preset('stdfusionnet_retrained_30ep'); "
               "b = STDFusionNet.from_preset('stdfusionnet_bf16_30ep'); "
               "print('P', m.count_params()); print('B', b.count_params()); "
               "print('D', presets.PACKAGE_DIR);"
               " from stdfusion_tf.loading import default_checkpoint as d; "
               "print('C', d('checkpoint/Fusion.model-29'))",
               env={"KERAS_HOME": str(home), "STDFUSION_MIRROR": str(upstream)})
    assert proc.returncode == 0, proc.stderr
    tagged = dict(l.split(" ", 1) for l in proc.stdout.splitlines()
                  if l[:2] in ("P ", "B ", "D ", "C "))
    params, package, checkpoint = tagged["P"], tagged["D"], tagged["C"]
    assert int(params) > 0 and tagged["B"] == params
    assert package.startswith(site)
    assert checkpoint == str(home / "stdfusion_tf" / "checkpoint" /
                             "Fusion.model-29")
    assert sorted(p.name for p in outside.iterdir()) == []


def test_lean_requirements_and_ci_run_readme_command_2():
    """requirements.txt: the pinned runtime set only; the test pins live in
    requirements-test.txt (and the [test] extra); .ci/run runs the README's
    test command as written."""
    runtime = (ROOT / "requirements.txt").read_text()
    pins = [l.split("==")[0] for l in runtime.splitlines()
            if l and not l.startswith("#")]
    assert "tensorflow" in pins and not {"pytest", "jax", "jax[cpu]"} & \
        set(pins), pins
    test = (ROOT / "requirements-test.txt").read_text()
    assert "-r requirements.txt" in test and "pytest==" in test \
        and "jax[cpu]==" in test
    readme = (ROOT / "README.md").read_text().splitlines()
    command_2 = [l for l in readme if "pytest" in l
                 and l.startswith(".venv/bin/")]
    assert len(command_2) == 1, command_2
    assert "requirements-test.txt" in command_2[0]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command_2[0] in ci
    command_1 = [l for l in readme if "pip install -r requirements.txt" in l]
    assert command_1 and "test" not in command_1[0].split("&&")[1]
