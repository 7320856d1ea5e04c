"""The documentation runs as written.

docs/walkthrough.md: every ```bash and ```python block, in order, in a fresh folder. Bash blocks
may hold only `bayes-spill` commands. A `bayes-spill fit` line is parsed by the real argument
parser and its output folder is then filled with the shared tiny fit of the same model
(tests/tiny_fits.py: a small simulated industry, few draws), which the other check tests reuse;
every other command runs through the CLI's main() with a few options appended so that it finishes
in seconds (argparse keeps the last value of a repeated option). Python blocks run unchanged,
sharing one namespace, as a user would paste them.

README.md: every `bayes-spill` line of its quick-start blocks is a valid command line (parsed by
the real parser, nothing run), the `--help` of each command it names works, and its Python
quick start compiles. Its links, and those between the pages of docs/, point at files that exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from tiny_fits import fit_copy

from bayes_spill.cli.main import build_parser, main
from bayes_spill.inference.fitting import resolve_model_and_data

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
WALKTHROUGH = REPO / "docs" / "walkthrough.md"
QUICK_START = "## Quick start"


def code_blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(bash|python)\n(.*?)^```", text, flags=re.M | re.S)


def walkthrough_blocks() -> list[tuple[str, str]]:
    return code_blocks(WALKTHROUGH.read_text(encoding="utf-8"))


def command_lines(body: str) -> list[list[str]]:
    """The words of each non-empty line of a bash block, comments dropped, continuations joined."""
    return [words for line in body.replace("\\\n", " ").splitlines() if (words := shlex.split(line, comments=True))]


def quick_start_blocks() -> list[tuple[str, str]]:
    sections = re.split(r"^(?=## )", README.read_text(encoding="utf-8"), flags=re.M)
    quick = [s for s in sections if s.startswith(QUICK_START)]
    assert quick, f"README.md has no '{QUICK_START}' section"
    return [block for section in quick for block in code_blocks(section)]


def quick_start_commands() -> list[list[str]]:
    return [words for kind, body in quick_start_blocks() if kind == "bash" for words in command_lines(body)]


def speed_options() -> dict[str, list[str]]:
    return {
        "check": ["--ppc-draws", "20", "--bootstrap", "10"],
        "compare": [],
    }


def test_walkthrough_has_the_whole_loop():
    blocks = walkthrough_blocks()
    code = "\n".join(body for _, body in blocks)
    steps = (
        "bayes-spill fit",
        "bayes_spill.load",
        "fit.summary()",
        "azs.summary",
        "plot_rank",
        "halflife_km",
        "bayes-spill check",
        "fit.counterfactual",
        "bayes-spill compare",
    )
    for step in steps:
        assert step in code, step
    assert [kind for kind, _ in blocks].count("python") >= 3


def test_walkthrough_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    options = speed_options()
    namespace: dict = {"__name__": "__walkthrough__"}
    for kind, body in walkthrough_blocks():
        if kind == "python":
            exec(compile(body, str(WALKTHROUGH), "exec"), namespace)
            continue
        for words in command_lines(body):
            assert words[0] == "bayes-spill", f"a walkthrough bash line that the test cannot run: {' '.join(words)!r}"
            command = words[1]
            if command == "fit":
                args = build_parser().parse_args(words[1:])  # the line is a valid command
                assert args.out, "walkthrough fits name their --out folder (the next steps load it)"
                config, _, _ = resolve_model_and_data(args.model, args.data, args.counties)  # as `fit` would choose
                fit_copy(config.name, Path(args.out))
                continue
            assert command in options, f"add speed options for 'bayes-spill {command}' to this test"
            code = main([*words[1:], *options[command]])
            assert code == 0, f"{' '.join(words)} exited with {code}: {capsys.readouterr().err}"
    out = capsys.readouterr().out
    assert "Verdicts" in out or "Sampler" in out  # the checks' verdicts were printed and read back
    assert "elpd_diff" in out  # the comparison table
    assert (tmp_path / "rank.png").is_file()
    assert (tmp_path / "posterior" / "walkthrough" / "report.md").is_file()


def test_readme_quick_start_commands_parse():
    lines = quick_start_commands()
    assert lines, "README's quick start has no bayes-spill commands"
    parser = build_parser()
    for words in lines:
        assert words[0] == "bayes-spill", f"a quick-start line that is not a bayes-spill command: {' '.join(words)!r}"
        parser.parse_args(words[1:])  # argparse exits (SystemExit 2) on an unknown command or option


def test_readme_quick_start_python_compiles():
    # It names files a reader has (firms.csv), so it is compiled, not run; the walkthrough runs.
    blocks = [body for kind, body in quick_start_blocks() if kind == "python"]
    assert blocks
    for body in blocks:
        compile(body, str(README), "exec")


@pytest.mark.parametrize("command", sorted({words[1] for words in quick_start_commands()}))
def test_readme_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"bayes-spill {command}" in capsys.readouterr().out


def test_readme_links_exist():
    links = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    assert links
    for docs_page in sorted(REPO.glob("docs/*.md")):
        links += [
            str(Path("docs") / link)
            for link in re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", docs_page.read_text(encoding="utf-8"))
        ]
    missing = sorted({link for link in links if not (REPO / link).exists()})
    assert not missing, f"links to files that do not exist: {missing}"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
