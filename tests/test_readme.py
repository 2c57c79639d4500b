"""Every command the README and the docs show runs as written: each console-script line of their code blocks is
parsed by that command's own parser (no training, no data read), so a flag or positional argument a command does
not take, or a command that does not exist, fails here."""

import re
import shlex
import sys
from pathlib import Path

import pytest
import tomllib
import tyro

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NERFSTUDIO = {"ns-render": "nerfstudio.scripts.render", "ns-process-data": "nerfstudio.scripts.process_data",
              "ns-export": "nerfstudio.scripts.exporter"}
OURS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def command_lines(page: Path):
    """(page, line) of every command in the page's fenced code blocks: continuation lines joined, comments cut."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            first = line.split()[0] if line.split() else ""
            if first in OURS or first in NERFSTUDIO or first == "ns-train":
                yield page.name, shlex.split(line, comments=True)


LINES = [(page, words) for page_path in PAGES for page, words in command_lines(page_path)]


def parse_ns_train(args):
    from nerf_edit_methods.configs import method_config

    method_config(args[0], args[1:])


def parse_ours(name: str, args, monkeypatch):
    """The command's own entry point, with `cli.run` parsing only (presets included): what the user's line gives
    tyro, checked by tyro, nothing run."""
    import importlib

    from nerf_edit_scripts import cli

    module = importlib.import_module(OURS[name].split(":")[0])

    def parse_only(command, presets=None):
        argv, default = list(args), None
        if presets:
            preset, argv = cli.take_preset(argv, presets)
            default = presets[preset][1]() if preset else None
        tyro.cli(command, args=argv, default=default)

    monkeypatch.setattr(module, "run", parse_only)
    getattr(module, OURS[name].split(":")[1])()


@pytest.mark.parametrize("page, words", LINES, ids=[f"{page}:{' '.join(words)[:60]}" for page, words in LINES])
def test_a_documented_command_parses(page, words, monkeypatch, capsys):
    name, args = words[0], words[1:]
    try:
        if name == "ns-train":
            parse_ns_train(args)
        elif name in NERFSTUDIO:
            import importlib

            tyro.cli(importlib.import_module(NERFSTUDIO[name]).Commands, args=args)
        else:
            parse_ours(name, args, monkeypatch)
    except SystemExit as exit_:  # tyro's way of refusing a flag: its message is on stderr
        pytest.fail(f"{page}: `{' '.join(words)}` does not parse (exit {exit_.code}): {capsys.readouterr().err[-800:]}")


def test_the_check_finds_the_commands_and_fails_on_a_flag_no_command_takes(monkeypatch, capsys):
    names = {words[0] for _, words in LINES}
    assert {"ns-train", "ns-process-data", "ns-render", "nerf-edit-preview", "nerf-edit-image"} <= names
    with pytest.raises(SystemExit):
        parse_ns_train(["wys", "--data", "x", "--pipeline.no-such-flag", "1"])
    with pytest.raises(SystemExit):
        parse_ours("nerf-edit-report", ["outputs/scene/wys/C"], monkeypatch)  # a positional the command lacks
    sys.stdout.flush()
