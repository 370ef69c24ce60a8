"""log_lines.py: every line of the log is bounded, and a mount's log file is capped.

Attack round 58c (5) (tests/unit/test_attack_58c.py's docstring; the scene in a real shared mount:
tests/mount/test_attack_58c.py::test_58c_5_a_failed_import_of_a_deep_file_writes_a_bounded_log_line):
a failed import of a file 256 folders deep, each folder named with 255 bytes no UTF-8, wrote its
whole location (~390 KB shown) to root's mount log at every retry, and the file had no cap."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest

from fusevault import log_lines
from fusevault.encoding import cut, shown
from fusevault.log_lines import INDENT, LINE_LIMIT, DefusedFormatter
from fusevault.systemd import JournalFormatter

# 58c (5)'s location: 256 folders of 255 bytes not UTF-8 (``\udcff`` written out: six characters each).
DEEP = "/".join(f"{step:03d}" + "\udcff" * 252 for step in range(256)) + "/000001" + "\udcff" * 249
FORMATS = (logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
           JournalFormatter("%(message)s"))


def test_58c_5_a_log_line_quoting_a_deep_location_is_cut_its_ends_and_length_said() -> None:
    record = logging.LogRecord("fusevault.imports.watcher", logging.WARNING, __file__, 1,
                               "import: %s failed: %s; trying again every %d s", (shown(DEEP), "denied", 60),
                               None)
    for inner in FORMATS:
        line = DefusedFormatter(inner).format(record)
        assert len(line) <= LINE_LIMIT and len(line.splitlines()) == 1, len(line)  # was 389,7xx
        assert "import: '000\\udcff" in line  # its start, and the file's own name whole at its end:
        assert line.endswith("/000001" + "\\udcff" * 249 + "' failed: denied; trying again every 60 s")
        said = re.search(r"\[\.\.\. cut: ([\d,]+) characters in all \.\.\.\]", line)
        assert said and int(said.group(1).replace(",", "")) > len(shown(DEEP))  # its whole length said


def test_a_line_within_the_limit_is_written_whole() -> None:
    message = "import: " + "a" * (LINE_LIMIT - 200)
    record = logging.LogRecord("fusevault", logging.INFO, __file__, 1, message, (), None)
    assert DefusedFormatter(logging.Formatter("%(message)s")).format(record) == message


def test_each_line_of_a_traceback_quoting_a_deep_location_is_cut_and_stays_indented() -> None:
    try:
        raise FileNotFoundError(2, "gone", DEEP)
    except FileNotFoundError:
        record = logging.LogRecord("fusevault", logging.ERROR, __file__, 1, "the import service failed", (),
                                   sys.exc_info())
    text = DefusedFormatter(FORMATS[0]).format(record)
    first, *rest = text.splitlines()
    assert first.endswith("the import service failed") and rest
    assert all(len(line) <= LINE_LIMIT and line.startswith(INDENT) for line in rest), max(map(len, rest))


def test_cut_keeps_both_ends_and_says_the_length() -> None:
    text = "start-" + "x" * 10_000 + "-end"
    shorter = cut(text, 200)
    assert len(shorter) == 200 and shorter.startswith("start-") and shorter.endswith("-end")
    assert "10,010 characters in all" in shorter
    assert cut("short", 200) == "short"


def test_58c_5_the_mount_log_file_is_capped_one_older_file_kept(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_lines, "FILE_LIMIT", 64 * 1024)
    path = tmp_path / "mount-x.log"
    handler = log_lines.to_file(path)
    logger = logging.getLogger("fusevault.test_58c_5")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        for number in range(200):  # ~800 KB asked, each line cut to LINE_LIMIT
            logger.warning("import: %s failed", shown(DEEP[:4000 + number]))
    finally:
        logger.removeHandler(handler)
        handler.close()
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    print(sizes)
    assert set(sizes) == {"mount-x.log", "mount-x.log.1"}  # seen: one file of ~5 MB, growing
    assert all(size <= 64 * 1024 for size in sizes.values())
