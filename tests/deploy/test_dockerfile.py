"""docker/Dockerfile: pinned base, two stages, non-root runtime, installs pinned by constraints.txt; and the builder
stage's own steps (venv, pip install, compiled book check), run as written in a fresh virtual environment."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.references import LAUNCHER, REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
VENV = "/opt/orderflow"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(ARG defaults before the first FROM, stages) of a Dockerfile; continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in filter(None, (raw.strip() for raw in joined.splitlines())):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            stages.append(Stage(name.strip(), re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.strip())))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for arg in stage.all("ENV"):
        for item in shlex.split(arg):
            key, _, value = item.partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


@pytest.mark.unit
def test_base_images_are_pinned_to_exact_releases(stages: list[Stage]) -> None:
    bases = {stage.name: stage.base for stage in stages}

    assert list(bases) == ["webdeps", "builder", "runtime"]
    assert bases["builder"] == bases["runtime"], "one Python base, so the venv's interpreter path holds"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", bases["runtime"])
    assert re.fullmatch(r"node:\d+\.\d+\.\d+-\w+-slim(@sha256:[0-9a-f]{64})?", bases["webdeps"])


@pytest.mark.unit
def test_runtime_stage_copies_the_built_venv_and_runs_as_an_unprivileged_user(stages: list[Stage]) -> None:
    runtime = stages[-1]

    assert f"--from=builder {VENV} {VENV}" in runtime.all("COPY")
    assert f"docker/expose.py {LAUNCHER}" in runtime.all("COPY"), "the launcher the compose file and manifests run"
    user = runtime.all("USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) >= 1000
    assert not runtime.all("RUN") or all("apt-get" not in r and "pip" not in r for r in runtime.all("RUN")[1:])


@pytest.mark.unit
def test_installs_are_pinned_by_lock_files_and_the_copied_sources_exist(stages: list[Stage]) -> None:
    webdeps, builder, runtime = stages
    pip_runs = [r for r in builder.all("RUN") if "pip install" in r]
    ignore = (REPO / "docker" / "Dockerfile.dockerignore").read_text().split()

    assert pip_runs and all("-c constraints.txt" in r for r in pip_runs)
    assert env_of(builder)["PIP_CONSTRAINT"].endswith("/constraints.txt")
    assert any("import processors.book._fastbook" in r for r in builder.all("RUN")), "compiled engine checked"
    assert webdeps.all("RUN") == ["npm ci --omit=dev --no-audit --no-fund"], "npm installs from package-lock.json"
    for copy in webdeps.all("COPY") + builder.all("COPY") + runtime.all("COPY"):
        if copy.startswith("--from"):
            continue
        *sources, _ = shlex.split(copy)
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
            kept = any(source.startswith(entry[1:]) for entry in ignore if entry.startswith("!"))
            assert kept, f"COPY {source}: excluded from the build context by Dockerfile.dockerignore"


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def copy_sources(stage: Stage, workdir: Path, built: dict[str, tuple[Path, str]]) -> None:
    """A stage's COPY steps: from a clean checkout (tracked files only, as a fresh clone has them), or from an
    earlier stage (``built``: stage name -> (the folder it ran in here, its WORKDIR in the image))."""
    files = tracked_files()
    for copy in stage.all("COPY"):
        *sources, dest = shlex.split(copy)
        if sources[0].startswith("--from="):
            stage_dir, image_workdir = built[sources[0].split("=", 1)[1]]
            shutil.copytree(stage_dir / Path(sources[1]).relative_to(image_workdir), workdir / dest)
            continue
        for source in sources:
            if (REPO / source).is_file():
                targets = {source: workdir / dest / Path(source).name}
            else:
                folder = source.rstrip("/") + "/"
                targets = {name: workdir / dest / name[len(folder):] for name in files if name.startswith(folder)}
            for name, target in targets.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, target)


def run_steps(stage: Stage, workdir: Path, replace: dict[str, str], env: dict[str, str]) -> None:
    for step in stage.all("RUN"):
        if "apt-get" in step:
            continue  # system packages: ops/bootstrap.sh provides them on this machine
        command = step
        for old, new in replace.items():
            command = command.replace(old, new)
        result = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, f"RUN {step}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.integration
@pytest.mark.slow
def test_install_steps_succeed_in_a_fresh_virtual_environment(stages: list[Stage], tmp_path: Path) -> None:
    for program in ("g++", "npm"):
        if shutil.which(program) is None:
            pytest.skip(f"no {program}: ops/bootstrap.sh installs it (the image's stages get it from a base or apt)")
    webdeps, builder, _ = stages
    web, workdir, venv = tmp_path / "web", tmp_path / "src", tmp_path / "venv"
    src_dir = builder.all("WORKDIR")[0]
    env = {k: v.replace(src_dir, str(workdir)) for k, v in env_of(builder).items()}
    env.pop("PIP_NO_CACHE_DIR", None)  # the image keeps no cache; here the machine's pip cache only saves downloads
    env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)

    copy_sources(webdeps, web, {})
    run_steps(webdeps, web, {}, env)
    copy_sources(builder, workdir, {"webdeps": (web, webdeps.all("WORKDIR")[0])})
    run_steps(builder, workdir, {VENV: str(venv), src_dir: str(workdir), "cd / ": f"cd {tmp_path} "}, env)

    help_text = subprocess.run([str(venv / "bin" / "orderflow"), "--help"], capture_output=True, text=True,
                               timeout=120, cwd=tmp_path)
    assert help_text.returncode == 0 and "worker" in help_text.stdout
    installed = list((venv / "lib").glob("python3.11/site-packages/streams/static/node_modules/uplot/dist/*.js"))
    assert installed, "the web view's library is not in the installed package"
