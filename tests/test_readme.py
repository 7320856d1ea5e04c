"""The README's "## Walkthrough" runs as written: every ```bash and ```python block of that section,
in order, in a fresh folder.

Bash blocks may hold only `bayes-spill` commands. A `bayes-spill fit` line is parsed by the real
argument parser and its output folder is then filled with the shared tiny fit of the same model
(tests/tiny_fits.py: a small simulated industry, few draws), which the other check tests reuse;
every other command runs through the CLI's main() with a few options appended so that it finishes
in seconds (argparse keeps the last value of a repeated option). Python blocks run unchanged,
sharing one namespace, as a user would paste them.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from tiny_fits import fit_copy

from bayes_spill.cli.main import build_parser, main
from bayes_spill.inference.fitting import resolve_model_and_data

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Walkthrough"


def walkthrough_blocks() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no '{SECTION}' section"
    section = text.split(SECTION, 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    return re.findall(r"^```(bash|python)\n(.*?)^```", section, flags=re.M | re.S)


def speed_options() -> dict[str, list[str]]:
    return {
        "check": ["--ppc-draws", "20", "--bootstrap", "10"],
        "compare": [],
    }


def test_walkthrough_has_the_whole_loop():
    blocks = walkthrough_blocks()
    code = "\n".join(body for _, body in blocks)
    for step in ("bayes-spill fit", "bayes_spill.load", "azs.summary", "plot_rank", "halflife_km", "bayes-spill check", "bayes-spill compare"):
        assert step in code, step
    assert [kind for kind, _ in blocks].count("python") >= 3


def test_walkthrough_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    options = speed_options()
    namespace: dict = {"__name__": "__readme__"}
    for kind, body in walkthrough_blocks():
        if kind == "python":
            exec(compile(body, "README.md (Walkthrough)", "exec"), namespace)
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            assert words[0] == "bayes-spill", f"a Walkthrough bash line that the test cannot run: {line!r}"
            command = words[1]
            if command == "fit":
                args = build_parser().parse_args(words[1:])  # the line is a valid command
                assert args.out, "Walkthrough fits name their --out folder (the next steps load it)"
                config, _, _ = resolve_model_and_data(args.model, args.data, args.counties)  # as `fit` would choose
                fit_copy(config.name, Path(args.out))
                continue
            assert command in options, f"add speed options for 'bayes-spill {command}' to this test"
            code = main([*words[1:], *options[command]])
            assert code == 0, f"{line} exited with {code}: {capsys.readouterr().err}"
    out = capsys.readouterr().out
    assert "Verdicts" in out or "Sampler" in out  # the checks' verdicts were printed and read back
    assert "elpd_diff" in out  # the comparison table
    assert (tmp_path / "rank.png").is_file()
    assert (tmp_path / "posterior" / "walkthrough" / "report.md").is_file()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
