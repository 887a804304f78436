"""recipes/speech16k/tables.py: the committed README's tables agree with the recipe's CSVs,
and --check names a table whose figure was altered."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "recipes" / "speech16k" / "tables.py"
spec = importlib.util.spec_from_file_location("tables", SCRIPT)
tables = importlib.util.module_from_spec(spec)
sys.modules["tables"] = tables
spec.loader.exec_module(tables)


def test_committed_readme_agrees_with_the_csvs(capsys):
    assert tables.main(["--check"]) == 0, capsys.readouterr().out


def test_check_names_the_table_with_an_altered_figure(tmp_path, capsys):
    text = (SCRIPT.parent / "README.md").read_text()
    assert text.count("| 0.762 |") == 1  # the ceiling table's unquantized STOI
    readme = tmp_path / "README.md"
    readme.write_text(text.replace("| 0.762 |", "| 0.763 |"))
    assert tables.main(["--check", "--readme", str(readme)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert "table ceiling" in line
    assert tables.main(["--write", "--readme", str(readme)]) == 0
    assert readme.read_text() == text


def test_a_missing_results_file_is_one_line_naming_it(tmp_path, capsys):
    assert tables.main(["--check", "--results", str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert str(tmp_path / "rows.csv") in line and "No such file" in line
