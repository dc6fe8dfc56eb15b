"""The secret files of the notices (webhook key, SMTP password): text, without the whitespace
around it; anything that is not text is refused with a message saying how to make one."""

from __future__ import annotations

import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.notices.delivery import SecretFileError, read_secret_file

# What an operator can put in a key file: printable text (a hex or base64 key, a passphrase).
KEYS = st.text(st.characters(categories=("L", "M", "N", "P", "S", "Zs")), min_size=1).filter(
    lambda t: t.strip() != ""
)
AROUND = st.text(" \t\r\n", max_size=4)


@given(key=KEYS, before=AROUND, after=AROUND)
def test_the_key_is_the_text_without_the_whitespace_around_it(
    key: str, before: str, after: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "hook.key"
        path.write_bytes((before + key + after).encode("utf-8"))
        assert read_secret_file(path, "webhook_secret_file") == key.strip().encode("utf-8")


@given(data=st.binary(min_size=1, max_size=64))
def test_bytes_that_are_not_text_are_refused_never_cut(data: bytes) -> None:
    """Whatever the bytes, the answer is the whole text of the file or a clear refusal:
    never a key silently shortened by a whitespace byte at its edge."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "hook.key"
        path.write_bytes(data)
        try:
            key = read_secret_file(path, "webhook_secret_file")
        except SecretFileError as exc:
            message = str(exc)
            assert str(path) in message
            assert "is not text" in message or "is empty" in message
            return
        text = data.decode("utf-8")
        assert key == text.strip().encode("utf-8")
        assert not any(unicodedata.category(c) == "Cc" for c in key.decode("utf-8"))


def test_missing_unreadable_and_empty_files_say_which(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError, match="webhook_secret_file is not configured"):
        read_secret_file(None, "webhook_secret_file")
    with pytest.raises(SecretFileError, match=r"cannot read smtp\.password_file"):
        read_secret_file(tmp_path / "absent", "smtp.password_file")
    (tmp_path / "blank").write_text(" \n", encoding="utf-8")
    with pytest.raises(SecretFileError, match="is empty"):
        read_secret_file(tmp_path / "blank", "webhook_secret_file")
    (tmp_path / "raw").write_bytes(b"\x00\x01\x02\n")
    with pytest.raises(SecretFileError, match=r"is not text: write the key as text"):
        read_secret_file(tmp_path / "raw", "webhook_secret_file")
