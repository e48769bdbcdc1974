"""Cold start: each handler's cold import from the built layer, against python + boto3 + one client.

    python bench/cold_start.py                     # builds the layer if needed, 11 repeats
    python bench/cold_start.py --repeats 21 --handlers gate intake
    python bench/cold_start.py --without-bytecode  # the same layer with its bytecode removed
    python bench/cold_start.py --instructions      # instruction counts under valgrind, once each

What is timed, in fresh CPython 3.12 processes (pyenv's is used when ``python3.12`` is not on
PATH), wall clock from spawn to exit:
- baseline: ``import boto3; boto3.client("s3")``, the least any function here does;
- each handler: ``import app`` from ``functions/<name>/`` with ``sys.path`` as the Lambda
  Python runtime orders it (the function's code, then the layer's ``python/``, then the
  runtime's boto3), i.e. what a cold start runs before the first event; a code folder that
  holds one handler module per function (``functions/batch_evaluation/poll_batch.py``) gives
  one more handler each, named ``<folder>/<module>``.
Each repeat runs the baseline and every handler once, in a shuffled order, so drift on a
busy machine hits all of them alike; a handler's figure is the median over repeats of
(handler time / that repeat's baseline time), where time is the process's CPU time (user +
system: what the import costs, and nearly independent of other load on the machine); the
wall-clock ratio is printed beside it. The last line printed is one JSON object:
``{"worst": {"handler", "ratio"}, "handlers": {name: {"ratio", "median_cpu_ms", "wall_ratio"}}, ...}``.

``--instructions`` counts each program's instructions instead, once, under valgrind
(``cachegrind --cache-sim=no``: its ``I refs``, the process's instructions executed) with a fixed
hash seed: nearly independent of the machine's load (±1% between runs: the hash seed fixes
dict and set order, not addresses), so handlers a few percent apart can be told apart on a busy
machine where CPU-time ratios move by 0.1. ``ratio`` is then the instruction count's ratio and
``median_cpu_ms`` is absent (``instructions_m``: millions).

The layer is the one ``sam build`` lays out: ``src/Makefile``'s ``build-ModelgateLayer``
target (what ``sam build`` runs for ``BuildMethod: makefile``), run here with this machine's
platform for the binary wheels (the deployed layer is built for arm64, which this machine
can't import) into ``.aws-sam/bench/layer``; it is rebuilt when a file under ``src/`` is
newer than the build. The runtime's boto3 (the Lambda runtime ships its own; the project's
pinned version stands in) goes to ``.aws-sam/bench/runtime``, compiled the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
WORK = ROOT / ".aws-sam" / "bench"
BASELINE = "baseline"


def find_python312(explicit: str | None) -> str:
    """CPython 3.12: the functions' runtime (bytecode is per minor version)."""
    candidates = [explicit] if explicit else [shutil.which("python3.12")]
    if not explicit:
        candidates += sorted((Path.home() / ".pyenv" / "versions").glob("3.12*/bin/python3.12"), reverse=True)
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            version = subprocess.run(
                [str(candidate), "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if version == "True":
                return str(candidate)
    raise SystemExit("cold_start: no CPython 3.12 found (put python3.12 on PATH or pass --python)")


def host_platform() -> str:
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return f"manylinux2014_{arch}"


def _newest_mtime(directory: Path) -> float:
    return max((p.stat().st_mtime for p in directory.rglob("*") if "__pycache__" not in p.parts), default=0.0)


def build_layer(python: str, *, rebuild: bool = False) -> Path:
    """``src/Makefile``'s layer build into WORK/layer (for this machine's platform)."""
    artifacts = WORK / "layer"
    stamp = artifacts / ".built"
    if not rebuild and stamp.exists() and stamp.stat().st_mtime >= _newest_mtime(SRC):
        return artifacts / "python"
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(SRC),
            "build-ModelgateLayer",
            f"ARTIFACTS_DIR={artifacts}",
            f"LAYER_PYTHON={python}",
            f"LAYER_PLATFORM={host_platform()}",
        ],
        check=True,
        stdout=sys.stderr,
    )
    stamp.touch()
    return artifacts / "python"


def build_runtime(python: str) -> Path:
    """boto3 as the runtime provides it (the project's pinned version), compiled like the layer."""
    from importlib.metadata import version

    boto3_version = version("boto3")
    target = WORK / f"runtime-boto3-{boto3_version}"
    if not (target / ".built").exists():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--target",
                str(target),
                f"boto3=={boto3_version}",
            ],
            check=True,
            stdout=sys.stderr,
        )
        subprocess.run(
            [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(target)],
            check=True,
            stdout=sys.stderr,
        )
        (target / ".built").touch()
    return target


def strip_bytecode(layer: Path) -> Path:
    """A copy of the layer without its bytecode (what the layer shipped before)."""
    copy = WORK / "layer-without-bytecode" / "python"
    shutil.rmtree(copy.parent, ignore_errors=True)
    shutil.copytree(layer, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _program(paths: list[Path], body: str) -> str:
    return f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n{body}"


def _environment() -> dict[str, str]:
    """What a function's process has (no credentials or settings of this shell leak in)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        # template.yaml's Globals
        "POWERTOOLS_SERVICE_NAME": "modelgate",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }


def _timed(python: str, program: str, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fresh process running ``program``.

    CPU time (user + system, from ``wait4``) is what the import costs; unlike wall time it
    barely moves when other processes compete for the cores."""
    start = time.perf_counter()
    # -B: nothing is written, so every run is as cold as the first (-I ignores PYTHON* variables)
    process = subprocess.Popen(
        [python, "-I", "-B", "-c", program], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"cold_start: the import failed:\n{program}\n{stderr.decode(errors='replace').strip()}")
    return usage.ru_utime + usage.ru_stime, wall


def _instructions(python: str, program: str, env: dict[str, str]) -> float:
    """Instructions (millions) one fresh process executes running ``program``, under valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("cold_start: --instructions needs valgrind on PATH")
    process = subprocess.run(
        [
            valgrind,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            python,
            "-I",
            "-B",
            "-c",
            program,
        ],
        env={**env, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if process.returncode != 0:
        raise SystemExit(f"cold_start: the import failed under valgrind:\n{program}\n{process.stderr.strip()[-2000:]}")
    counted = [line for line in process.stderr.splitlines() if "I" in line and "refs:" in line]
    if not counted:
        raise SystemExit(f"cold_start: valgrind printed no instruction count:\n{process.stderr.strip()[-2000:]}")
    return int(counted[-1].split("refs:")[1].strip().replace(",", "")) / 1e6


def all_handlers() -> list[str]:
    """Every handler module under functions/: ``<folder>`` for its app.py, ``<folder>/<module>``
    for another module of a folder that gives each of its functions its own (template.yaml's Handler)."""
    return sorted(
        path.parent.name if path.stem == "app" else f"{path.parent.name}/{path.stem}"
        for path in (ROOT / "functions").glob("*/*.py")
    )


def _programs(layer: Path, runtime: Path, handlers: list[str]) -> dict[str, str]:
    programs = {BASELINE: _program([runtime], 'import boto3; boto3.client("s3")')}
    for name in handlers:
        folder, _, module = name.partition("/")
        code = ROOT / "functions" / folder
        if not (code / f"{module or 'app'}.py").is_file():
            raise SystemExit(f"cold_start: no handler functions/{folder}/{module or 'app'}.py")
        programs[name] = _program([code, layer, runtime], f"import {module or 'app'}")
    return programs


def count_instructions(python: str, layer: Path, runtime: Path, handlers: list[str]) -> dict:
    env = _environment()
    counts = {
        name: _instructions(python, program, env) for name, program in _programs(layer, runtime, handlers).items()
    }
    results = {
        name: {"ratio": round(counts[name] / counts[BASELINE], 3), "instructions_m": round(counts[name], 1)}
        for name in handlers
    }
    worst = max(handlers, key=lambda n: results[n]["ratio"])
    return {
        "baseline_instructions_m": round(counts[BASELINE], 1),
        "handlers": results,
        "worst": {"handler": worst, "ratio": results[worst]["ratio"]},
    }


def measure(python: str, layer: Path, runtime: Path, handlers: list[str], repeats: int, seed: int) -> dict:
    if repeats < 1:
        raise SystemExit("cold_start: --repeats must be at least 1")
    env = _environment()
    programs = _programs(layer, runtime, handlers)
    rng = random.Random(seed)
    cpu: dict[str, list[float]] = {name: [] for name in programs}
    wall: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(repeats):
        order = list(programs)
        rng.shuffle(order)
        for name in order:
            used, elapsed = _timed(python, programs[name], env)
            cpu[name].append(used)
            wall[name].append(elapsed)
    results = {}
    for name in handlers:
        ratios = [t / b for t, b in zip(cpu[name], cpu[BASELINE], strict=True)]
        wall_ratios = [t / b for t, b in zip(wall[name], wall[BASELINE], strict=True)]
        results[name] = {
            "ratio": round(statistics.median(ratios), 3),
            "median_cpu_ms": round(statistics.median(cpu[name]) * 1000, 1),
            "wall_ratio": round(statistics.median(wall_ratios), 3),
        }
    worst = max(handlers, key=lambda n: results[n]["ratio"])
    return {
        "python": subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
        "repeats": repeats,
        "baseline_median_cpu_ms": round(statistics.median(cpu[BASELINE]) * 1000, 1),
        "baseline_median_wall_ms": round(statistics.median(wall[BASELINE]) * 1000, 1),
        "handlers": results,
        "worst": {"handler": worst, "ratio": results[worst]["ratio"]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument(
        "--handlers", nargs="*", help="functions/<name> (its app.py) or <name>/<module> to time (default: all)"
    )
    parser.add_argument("--python", help="CPython 3.12 to run (default: python3.12 on PATH, else pyenv's)")
    parser.add_argument("--layer", type=Path, help="a built layer's python/ folder (default: build it)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the layer even if it is up to date")
    parser.add_argument("--without-bytecode", action="store_true", help="time the layer with its bytecode removed")
    parser.add_argument("--seed", type=int, default=7, help="seed of the run order")
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind, once each")
    args = parser.parse_args(argv)

    python = find_python312(args.python)
    layer = args.layer or build_layer(python, rebuild=args.rebuild)
    if not layer.is_dir():
        raise SystemExit(f"cold_start: no layer at {layer}")
    if args.without_bytecode:
        layer = strip_bytecode(layer)
    runtime = build_runtime(python)
    handlers = args.handlers or all_handlers()
    width = max(len(h) for h in handlers)
    if args.instructions:
        result = count_instructions(python, layer, runtime, handlers)
        result["bytecode"] = not args.without_bytecode
        print(f"baseline (python + import boto3 + one client): {result['baseline_instructions_m']:,.1f} M instructions")
        for name, figures in sorted(result["handlers"].items(), key=lambda kv: -kv[1]["ratio"]):
            print(f"  {name:<{width}}  {figures['instructions_m']:9,.1f} M  ratio {figures['ratio']:.3f}")
        print(json.dumps(result, sort_keys=True))
        return 0
    result = measure(python, layer, runtime, handlers, args.repeats, args.seed)
    result["bytecode"] = not args.without_bytecode
    print(f"baseline (python + import boto3 + one client): {result['baseline_median_cpu_ms']} ms CPU median")
    for name, figures in sorted(result["handlers"].items(), key=lambda kv: -kv[1]["ratio"]):
        print(
            f"  {name:<{width}}  {figures['median_cpu_ms']:7.1f} ms CPU  ratio {figures['ratio']:.3f}"
            f"  (wall ratio {figures['wall_ratio']:.3f})"
        )
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
