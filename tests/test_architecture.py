"""The shape of the code: every module imports alone, the modules of `pipeline` import each other
without a circle (imports inside functions count), functions and classes stay short, lines stay
within 100 columns as ruff formats them, and no module reassigns another module's globals."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
# a function's body: its signature is a declaration (a typer command's options)
MAX_FUNCTION_LINES = 40
MAX_CLASS_LINES = 150
MAX_LINE = 100
SOURCES = ("pipeline", "cli", "benchmarks", "tests", "samples")


def pipeline_imports(path: Path) -> set[str]:
    """The `pipeline` modules that `path` imports anywhere: at the top, inside functions, or under
    TYPE_CHECKING. "pipeline" stands for the package's own __init__."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .x import y
                base = "pipeline" + (f".{base}" if base else "")
            names = [
                f"{base}.{alias.name}"
                if (PACKAGE / f"{alias.name}.py").is_file() and base == "pipeline"
                else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "pipeline":
                found.add(parts[1] if len(parts) > 1 else "pipeline")
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {
        path.stem if path.stem != "__init__" else "pipeline": pipeline_imports(path)
        for path in PACKAGE.glob("*.py")
    }
    return {
        module: {target for target in targets if target != module}
        for module, targets in graph.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # "open" while on the stack, "done" after
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


# One interpreter loads the libraries (torch alone takes seconds), then forks a child per module:
# each child starts with no `pipeline` module loaded, so none has done the imports another forgot.
# A library in sys.modules puts no name into a module that forgot to import it.
IMPORT_EACH_ALONE = """
import json, os, sys, traceback
import cv2, numpy, PIL.Image, torch, torchvision
results = {}
for module in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            __import__("pipeline." + module)
            message = "imported ray" if "ray" in sys.modules else ""
        except BaseException:
            message = traceback.format_exc()[-2000:]
        os.write(write, message.encode() or b"ok")
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        results[module] = answer.read().decode()
    os.waitpid(pid, 0)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_ALONE, *MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_and_without_ray(module, imported_alone):
    """Ray comes in only with --ray, inside the executor it makes."""
    assert imported_alone[module] == "ok", imported_alone[module]


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    # the walk found the modules
    assert {"batch", "gallery", "executor", "cluster", "video_job"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_executors_and_reports_know_no_job():
    """The executors run any job's items; the report is plain data: none of them imports a job."""
    jobs = {
        "batch",
        "gallery",
        "video_job",
        "chunks",
        "frames",
        "work_folder",
        "image_job",
        "engine",
    }
    graph = import_graph()
    for module in ("executor", "device_pool", "cluster", "report"):
        assert not graph[module] & jobs, (module, graph[module] & jobs)
    assert "batch" not in graph["gallery"]


def code_files() -> list[Path]:
    return sorted([*PACKAGE.glob("*.py"), *(ROOT / "cli").glob("*.py")])


def all_python_files() -> list[Path]:
    return sorted(path for folder in SOURCES for path in (ROOT / folder).rglob("*.py"))


def long_definitions() -> dict[str, int]:
    """'file:name' -> lines of every function body over MAX_FUNCTION_LINES and every class over
    MAX_CLASS_LINES (from its `class` line to its last)."""
    found = {}
    for path in code_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines, limit = node.end_lineno - node.body[0].lineno + 1, MAX_FUNCTION_LINES
            elif isinstance(node, ast.ClassDef):
                lines, limit = node.end_lineno - node.lineno + 1, MAX_CLASS_LINES
            else:
                continue
            if lines > limit:
                found[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    return found


def test_no_function_or_class_is_longer_than_the_limit():
    offenders = long_definitions()
    assert not offenders, (
        f"over {MAX_FUNCTION_LINES} (function) or {MAX_CLASS_LINES} (class) lines: {offenders}"
    )


def test_no_line_is_longer_than_the_limit_and_ruff_formats_every_file():
    long_lines = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in all_python_files()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if len(line) > MAX_LINE
    ]
    assert not long_lines, long_lines
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.is_file():
        pytest.skip("ruff is not installed (make install brings it with the dev extras)")
    check = subprocess.run(
        [str(ruff), "format", "--check", *SOURCES], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def foreign_global_assignments(tree: ast.AST, modules: set[str]) -> list[str]:
    """`module.NAME = ...` (or +=) in `tree`, for the modules named, however imported."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update({alias.asname or alias.name: alias.name for alias in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(
                {alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names}
            )
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Attribute):
                owner = ast.unparse(target.value)
                if names.get(owner, owner) in modules:
                    found.append(f"{owner}.{target.attr}")
    return found


def test_no_module_global_is_reassigned_from_outside_its_module():
    modules = {f"pipeline.{name}" for name in MODULES} | {"cli.main", "cli.signals"}
    offenders = {}
    for path in all_python_files():
        if path.relative_to(ROOT).parts[0] != "tests":
            found = foreign_global_assignments(ast.parse(path.read_text()), modules)
            if found:
                offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, offenders


def test_the_global_check_finds_one():
    tree = ast.parse(
        "import pipeline.chunks\nfrom pipeline import engine\n"
        "pipeline.chunks.SHOT_HEADS = False\nengine.X += 1\nengine.local = 1"
    )
    found = foreign_global_assignments(tree, {"pipeline.chunks", "pipeline.engine"})
    assert found == ["pipeline.chunks.SHOT_HEADS", "engine.X", "engine.local"]


class RecordingExecutor:
    """Stands in for Ray: pickles what it is handed with the standard pickle (stricter than Ray's
    cloudpickle: lambdas and local functions fail), runs nothing."""

    def __init__(self):
        self.handed = None

    def run(self, setup, work, items, on_result=None, on_start=None):
        self.handed = pickle.loads(pickle.dumps((setup, work, list(items))))
        return []


def test_the_local_executor_sets_up_once_and_keeps_the_order():
    from pipeline.executor import LocalExecutor, make_executor

    calls, results, started = [], [], []
    assert isinstance(make_executor(None), LocalExecutor)
    out = LocalExecutor().run(
        lambda: calls.append("setup") or 10,
        lambda state, item: state + item,
        [1, 2, 3],
        results.append,
        lambda index, item: started.append((index, item)),
    )
    assert (
        out == results == [11, 12, 13]
        and calls == ["setup"]
        and started == [(0, 1), (1, 2), (2, 3)]
    )


def test_a_folder_hands_picklable_work_to_the_executor(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    import pipeline.batch
    from pipeline.settings import ClusterSettings, StyleSettings

    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "style.png")
    executor = RecordingExecutor()
    monkeypatch.setattr(pipeline.batch, "make_executor", lambda cluster, on_workers=None: executor)
    pipeline.batch.stylize_folder(
        tmp_path / "in",
        tmp_path / "out",
        [tmp_path / "style.png"],
        style_settings=StyleSettings(size=16),
        cluster=ClusterSettings(workers=1),
    )
    setup, work, items = executor.handed
    assert [item.source.name for item in items] == [
        "a.png"
    ] and work is pipeline.batch.Batch.run_item


def test_a_chunked_video_hands_picklable_work_to_the_executor(tmp_path, monkeypatch):
    import pipeline.chunks
    from pipeline.settings import ClusterSettings, StyleSettings, VideoSettings
    from pipeline.video_io import probe
    from tests.test_video_io import lavfi_clip

    clip = lavfi_clip(tmp_path / "clip.mp4", frames=12)
    executor = RecordingExecutor()
    monkeypatch.setattr(pipeline.chunks, "make_executor", lambda cluster, *callbacks: executor)
    job = pipeline.chunks.VideoJob(
        clip, (clip,), StyleSettings(size=64), VideoSettings(), (64, 48), tmp_path / "work"
    )
    pipeline.chunks.stylize_chunks(
        job, probe(clip), ClusterSettings(workers=2, chunk_frames=8, overlap_frames=2)
    )
    setup, work, items = executor.handed
    assert [(chunk.start, chunk.stop) for chunk in items] == [(0, 8), (6, 12)]
    assert setup.func is pipeline.chunks.job_stylizer and work.func is pipeline.chunks.stylize_chunk


def test_no_other_installed_distribution_claims_our_top_level_packages():
    """`pipeline` and `cli` are top-level names; another distribution shipping either would
    shadow ours."""
    from importlib.metadata import distributions

    import cli

    ours = {"cli", "pipeline"}
    claims = {}
    for dist in distributions():
        name = dist.metadata["Name"] or "?"
        if name.lower() == "stylize":
            continue
        tops = set((dist.read_text("top_level.txt") or "").split())
        tops |= {file.parts[0] for file in dist.files or () if len(file.parts) > 1}
        claims.update({top: name for top in tops & ours})
    assert not claims, f"other distributions install these top-level packages: {claims}"
    assert Path(cli.__file__).resolve().parent == ROOT / "cli"


def test_a_frame_is_made_grey_once_and_its_result_never_read_back(
    tmp_path, monkeypatch, embedded_weights, starry_night
):
    """One grey conversion per frame serves the cut check and both flow directions; frame t-1's
    result comes from memory, not its PNG (read back only on resume)."""
    import numpy as np

    import pipeline.frames
    import pipeline.shot_memory
    import pipeline.temporal
    from pipeline.engine import Stylizer
    from pipeline.image_io import load_rgb
    from pipeline.settings import StyleSettings, VideoSettings
    from pipeline.work_folder import Checkpoint, write_checkpoint

    greys, reads = [], []
    real_grey, real_read = pipeline.temporal.grey, pipeline.shot_memory.read_frame
    monkeypatch.setattr(
        pipeline.temporal, "grey", lambda frame: greys.append(1) or real_grey(frame)
    )
    monkeypatch.setattr(
        pipeline.shot_memory, "read_frame", lambda path: reads.append(path) or real_read(path)
    )
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frames = [np.roll(base, shift, axis=1) for shift in range(4)]
    video = VideoSettings(iterations_next=2, scene_threshold=1.0)
    stylizer = Stylizer(
        StyleSettings(size=64, iterations=2, precision="fp32"),
        [load_rgb(starry_night)],
        embedded_weights,
    )
    done = pipeline.frames.stylize_frames(
        frames, pipeline.frames.FrameStylizer(stylizer, video), tmp_path / "work", video, 4
    )
    assert done.computed == 4 and len(greys) == 4 and reads == []
    # resume: frame 3 needs frames 2 and 1 (t-1, t-2), and the shot's first (--restore-still),
    # from their PNGs
    (tmp_path / "work" / "000003.png").unlink()
    write_checkpoint(tmp_path / "work", Checkpoint(2))  # as a run killed before frame 3 leaves it
    done = pipeline.frames.stylize_frames(
        frames, pipeline.frames.FrameStylizer(stylizer, video), tmp_path / "work", video, 4
    )
    assert done.computed == 1 and [path.name for path in reads] == [
        "000002.png",
        "000001.png",
        "000000.png",
    ]
