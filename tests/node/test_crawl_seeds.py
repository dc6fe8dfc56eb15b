"""Seed files (node/crawl/seeds.py) and the lab's reasons for refusing a URL
(node/crawl/setup.py destination_problems): the pieces `libra node crawl` explains itself with.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import NodeSettings
from node.crawl.seeds import SeedsFileError, parse_seeds, read_seeds_file
from node.crawl.setup import destination_problems


def test_comments_blank_lines_and_spaces_are_ignored() -> None:
    text = "# seeds\n\n  http://a.test/  \n\t# indented comment\nhttps://b.test/x#frag\n"
    assert parse_seeds(text) == ["http://a.test/", "https://b.test/x#frag"]


def test_every_bad_line_is_named_up_to_ten_then_counted() -> None:
    text = "\n".join(["http://ok.test/"] + [f"bad{n}" for n in range(12)])
    with pytest.raises(SeedsFileError) as caught:
        parse_seeds(text, "s.txt")
    message = str(caught.value)
    assert message.startswith("s.txt: 12 line(s) are not http(s) URLs: line 2: 'bad0'; ")
    assert "line 11: 'bad9'" in message and "'bad10'" not in message
    assert message.endswith("; and 2 more")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_a_file_without_a_url_is_refused(text: str) -> None:
    with pytest.raises(SeedsFileError, match="no seed URL in it"):
        parse_seeds(text, "s.txt")


def test_an_unreadable_file_is_a_seeds_file_error(tmp_path: Path) -> None:
    with pytest.raises(SeedsFileError, match="cannot read the seeds file"):
        read_seeds_file(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"http://a.test/\n\xff\xfe\n")
    with pytest.raises(SeedsFileError, match="cannot read the seeds file"):
        read_seeds_file(binary)


def test_the_lab_names_why_it_refuses_a_url(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(
        'allow_ports = [8080]\nallow_ranges = ["127.0.1.0/24"]\n'
        '[hosts]\n"ok.test" = "127.0.1.1"\n"far.test" = "127.0.9.9"\n'
    )
    settings = NodeSettings(node_id="node-a", country="DE", lab=lab)
    urls = [
        "http://ok.test:8080/",
        "http://ok.test:9090/",
        "http://nowhere.test:8080/",
        "http://far.test/",
        "https://ok.test/",
    ]
    where = f" (lab file {lab})"
    assert destination_problems(settings, urls) == {
        "http://ok.test:9090/": f"port 9090 is not allowed in the lab{where}",
        "http://nowhere.test:8080/": f"host 'nowhere.test' is not in the lab map{where}",
        "http://far.test/": f"address 127.0.9.9 is outside the lab's allowed ranges{where}",
        "https://ok.test/": f"scheme 'https' is not allowed in the lab{where}",
    }


def test_outside_the_lab_nothing_is_resolved() -> None:
    settings = NodeSettings(node_id="node-a", country="DE")
    assert destination_problems(settings, ["http://example.invalid:1/"]) == {}
