"""The library's modules import each other without a loop, function-level
imports included: the command lines on top, the model, formats and errors at
the bottom.  (A loop once ran model -> presets -> checkpoints -> model; the
preset and checkpoint modules are now handed the model class instead.)"""

import ast

from conftest import ROOT

PACKAGE = ROOT / "stdfusion_tf"


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """Package modules that ``path`` imports anywhere in its body."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names
                      if a.name.startswith("stdfusion_tf")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module
                                          else []))
            else:
                module = node.module or ""
            if not module.startswith("stdfusion_tf"):
                continue
            found.add(module)
            # ``from . import presets`` names a module, not an attribute
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def graph():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = {m for m in imports_of(path)
                       if m in modules and m != name
                       and not name.startswith(m + ".")}  # own package
    return edges


def test_the_reader_sees_the_known_arrows():
    edges = graph()
    assert "stdfusion_tf.presets" in edges["stdfusion_tf.model"]
    assert "stdfusion_tf.checkpoints" in edges["stdfusion_tf.presets"]
    assert "stdfusion_tf.model" in edges["stdfusion_tf.loading"]


def test_no_import_loop():
    edges = graph()
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                loop = trail[trail.index(nxt):] + [nxt]
                raise AssertionError("import loop: " + " -> ".join(loop))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_formats_presets_and_downloads_do_not_know_the_model():
    """They are handed the model class, so that ``STDFusionNet.from_preset``
    can call down into them."""
    edges = graph()
    for low in ("checkpoints", "presets", "assets", "errors", "fileio"):
        assert not edges[f"stdfusion_tf.{low}"] & {
            "stdfusion_tf.model", "stdfusion_tf.loading"}, low


# The floors: command lines on top (stdfusion_tf.commands, cli), the library
# in the middle, and at the bottom what every floor uses and which imports
# nothing above it: errors, file writes, progress, image files, metrics.
BOTTOM = {f"stdfusion_tf.{m}" for m in ("errors", "fileio", "progress",
                                        "images", "metrics")}


def _rooms(edges, prefix):
    return {n: e for n, e in edges.items()
            if n == prefix or n.startswith(prefix + ".")}


def test_the_bottom_floor_imports_nothing_above_it():
    edges = graph()
    for name in BOTTOM:
        assert edges[name] <= BOTTOM, (name, edges[name] - BOTTOM)


def test_the_library_does_not_import_the_command_lines():
    edges = graph()
    for name, imported in edges.items():
        if name.startswith("stdfusion_tf.commands"):
            continue
        assert not {m for m in imported
                    if m.startswith("stdfusion_tf.commands")}, name


def test_the_engine_knows_no_network():
    """Every trainer runs on stdfusion_tf.engine; it is handed a model
    builder and imports only the bottom floor."""
    edges = graph()
    assert edges["stdfusion_tf.engine"] <= BOTTOM, edges["stdfusion_tf.engine"]
    for task in ("training", "umf.reg_training", "umf.fuse_training",
                 "umf.cpstn_training"):
        assert "stdfusion_tf.engine" in edges[f"stdfusion_tf.{task}"], task


def test_weights_io_and_registration_know_no_network_or_program():
    """The weights I/O layer (TF1, Keras, PyTorch files) sits on the bottom
    floor only; registration (where present) imports no command line and
    no fuser."""
    edges = graph()
    for name, imported in _rooms(edges, "stdfusion_tf.checkpoints").items():
        outside = {m for m in imported
                   if not m.startswith("stdfusion_tf.checkpoints")}
        assert outside <= BOTTOM, (name, outside - BOTTOM)
    for name, imported in _rooms(edges, "stdfusion_tf.registration").items():
        assert not {m for m in imported if m.startswith(
            ("stdfusion_tf.commands", "stdfusion_tf.cli",
             "stdfusion_tf.fusion", "stdfusion_tf.umf.fusers",
             "stdfusion_tf.umf.pipeline"))}, name


def test_umf_pipeline_rooms():
    """UMF-CMGR's folder runs: image I/O, colour and the flow picture know
    no network; only the fusers and the orchestration do."""
    edges = graph()
    networks = {f"stdfusion_tf.umf.{m}" for m in ("mrrn", "difn", "cpstn",
                                                  "fusers", "pipeline")}
    for room in ("image_io", "ycrcb", "flow_picture"):
        imported = edges[f"stdfusion_tf.umf.{room}"]
        assert not imported & networks, (room, imported & networks)
        assert "stdfusion_tf.fusion" not in imported, room
