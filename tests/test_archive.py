"""Unpacking zips: atomic, unsafe member names refused, the data set's layout checked."""

from __future__ import annotations

import re
import zipfile

import pytest

from jaxseq.data import download as dl
from tests.zip_files import COCO_FILES, COLA_FILES, coco_zip, leftovers, make_zip


@pytest.mark.parametrize("evil", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt",
                                  "C:/evil.txt", "..\\evil.txt"])
def test_zip_slip_rejected(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"ok.txt": b"fine", evil: b"gotcha"}, dirs=False))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError) as info:
        dl.unpack_zip(archive, out / "target")
    assert evil in str(info.value)
    assert leftovers(out) == []
    assert not (tmp_path / "evil.txt").exists()


def test_corrupt_zip(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(ValueError, match=re.escape(str(archive))):
        dl.unpack_zip(archive, tmp_path / "target")
    assert leftovers(tmp_path) == ["broken.zip"]


def test_truncated_zip(tmp_path):
    archive = tmp_path / "cut.zip"
    archive.write_bytes(coco_zip()[:-100])  # central directory cut off
    with pytest.raises(ValueError, match=re.escape(str(archive))):
        dl.unpack_zip(archive, tmp_path / "target")
    assert leftovers(tmp_path) == ["cut.zip"]


def test_atomic_unpack_failure_midway_leaves_no_target(tmp_path):
    # Stored (uncompressed) members, so flipping bytes in the second member's data gives a
    # CRC error after the first member has been extracted.
    files = {"a.txt": b"A" * 1000, "b.txt": b"B" * 1000, "c.txt": b"C" * 1000}
    blob = bytearray(make_zip(files, dirs=False, compression=zipfile.ZIP_STORED))
    where = blob.find(b"B" * 1000)
    blob[where + 10: where + 20] = b"X" * 10
    archive = tmp_path / "bad.zip"
    archive.write_bytes(bytes(blob))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"b\.txt"):
        dl.unpack_zip(archive, out / "target")
    assert leftovers(out) == []  # no target, no staging folder


def test_atomic_unpack_interrupted_keeps_old_target(tmp_path, monkeypatch):
    archive = tmp_path / "coco.zip"
    archive.write_bytes(coco_zip())
    target = tmp_path / "out" / "coco_captioning"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old data")

    real_extract = zipfile.ZipFile.extract
    calls = []

    def flaky_extract(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == 4:
            raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of unpacking
        return real_extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", flaky_extract)
    with pytest.raises(KeyboardInterrupt):
        dl.unpack_zip(archive, target, top_folder="coco_captioning")
    assert leftovers(target.parent) == ["coco_captioning"]
    assert leftovers(target) == ["old.txt"]


def test_unpack_replaces_existing_target(tmp_path):
    archive = tmp_path / "coco.zip"
    archive.write_bytes(coco_zip())
    target = tmp_path / "out" / "coco_captioning"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old data")
    dl.unpack_zip(archive, target, top_folder="coco_captioning")
    assert leftovers(target) == sorted(COCO_FILES)
    assert leftovers(target.parent) == ["coco_captioning"]


def test_missing_required_files(tmp_path):
    archive = tmp_path / "other.zip"
    archive.write_bytes(make_zip({"something/else.txt": b"x"}))
    with pytest.raises(ValueError, match="coco2014_captions.h5"):
        dl.unpack_zip(archive, tmp_path / "coco_captioning", top_folder="coco_captioning",
                      required=dl.DATASETS["coco"].required)
    assert leftovers(tmp_path) == ["other.zip"]


def test_macos_junk_is_skipped(tmp_path):
    files = dict(COLA_FILES)
    files["__MACOSX/cola_public/._README"] = b"resource fork"
    files["cola_public/.DS_Store"] = b"finder"
    archive = tmp_path / "cola.zip"
    archive.write_bytes(make_zip(files))
    target = dl.unpack_zip(archive, tmp_path / "cola", top_folder="cola_public",
                           keep_top_folder=True)
    assert leftovers(target) == ["cola_public"]
    assert not (target / "cola_public" / ".DS_Store").exists()
