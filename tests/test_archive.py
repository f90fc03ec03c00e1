"""Unpacking zips: atomic, bounded, unsafe members refused, the data set's layout checked,
stale staging folders of killed runs cleaned up, the usual permissions."""

from __future__ import annotations

import io
import os
import re
import socket
import stat
import subprocess
import sys
import time
import zipfile

import pytest

from jaxseq.data import archive
from jaxseq.data import download as dl
from tests.conftest import REPO_ROOT
from tests.zip_files import (COCO_FILES, COLA_FILES, big_payload, coco_zip, leftovers, make_zip,
                             set_declared_size, zip_with_symlink)


@pytest.mark.parametrize("evil", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt",
                                  "C:/evil.txt", "..\\evil.txt"])
def test_zip_slip_rejected(tmp_path, evil):
    zip_path = tmp_path / "evil.zip"
    zip_path.write_bytes(make_zip({"ok.txt": b"fine", evil: b"gotcha"}, dirs=False))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError) as info:
        archive.unpack_zip(zip_path, out / "target")
    assert evil in str(info.value)
    assert leftovers(out) == []
    assert not (tmp_path / "evil.txt").exists()


def test_corrupt_zip(tmp_path):
    zip_path = tmp_path / "broken.zip"
    zip_path.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(ValueError, match=re.escape(str(zip_path))):
        archive.unpack_zip(zip_path, tmp_path / "target")
    assert leftovers(tmp_path) == ["broken.zip"]


def test_truncated_zip(tmp_path):
    zip_path = tmp_path / "cut.zip"
    zip_path.write_bytes(coco_zip()[:-100])  # central directory cut off
    with pytest.raises(ValueError, match=re.escape(str(zip_path))):
        archive.unpack_zip(zip_path, tmp_path / "target")
    assert leftovers(tmp_path) == ["cut.zip"]


def test_atomic_unpack_failure_midway_leaves_no_target(tmp_path):
    # Stored (uncompressed) members, so flipping bytes in the second member's data gives a
    # CRC error after the first member has been extracted.
    files = {"a.txt": b"A" * 1000, "b.txt": b"B" * 1000, "c.txt": b"C" * 1000}
    blob = bytearray(make_zip(files, dirs=False, compression=zipfile.ZIP_STORED))
    where = blob.find(b"B" * 1000)
    blob[where + 10: where + 20] = b"X" * 10
    zip_path = tmp_path / "bad.zip"
    zip_path.write_bytes(bytes(blob))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"b\.txt"):
        archive.unpack_zip(zip_path, out / "target")
    assert leftovers(out) == []  # no target, no staging folder


def test_atomic_unpack_interrupted_keeps_old_target(tmp_path, monkeypatch):
    zip_path = tmp_path / "coco.zip"
    zip_path.write_bytes(coco_zip())
    target = tmp_path / "out" / "coco_captioning"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old data")

    real_copy = archive.copy_bounded
    calls = []

    def flaky_copy(*args, **kwargs):
        calls.append(args)
        if len(calls) == 4:
            raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of unpacking
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(archive, "copy_bounded", flaky_copy)
    with pytest.raises(KeyboardInterrupt):
        archive.unpack_zip(zip_path, target, top_folder="coco_captioning")
    assert leftovers(target.parent) == ["coco_captioning"]
    assert leftovers(target) == ["old.txt"]


def test_unpack_replaces_existing_target(tmp_path):
    zip_path = tmp_path / "coco.zip"
    zip_path.write_bytes(coco_zip())
    target = tmp_path / "out" / "coco_captioning"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old data")
    archive.unpack_zip(zip_path, target, top_folder="coco_captioning")
    assert leftovers(target) == sorted(COCO_FILES)
    assert leftovers(target.parent) == ["coco_captioning"]


def test_missing_required_files(tmp_path):
    zip_path = tmp_path / "other.zip"
    zip_path.write_bytes(make_zip({"something/else.txt": b"x"}))
    with pytest.raises(ValueError, match="coco2014_captions.h5"):
        archive.unpack_zip(zip_path, tmp_path / "coco_captioning", top_folder="coco_captioning",
                      required=dl.DATASETS["coco"].required)
    assert leftovers(tmp_path) == ["other.zip"]


def test_macos_junk_is_skipped(tmp_path):
    files = dict(COLA_FILES)
    files["__MACOSX/cola_public/._README"] = b"resource fork"
    files["cola_public/.DS_Store"] = b"finder"
    zip_path = tmp_path / "cola.zip"
    zip_path.write_bytes(make_zip(files))
    target = archive.unpack_zip(zip_path, tmp_path / "cola", top_folder="cola_public",
                           keep_top_folder=True)
    assert leftovers(target) == ["cola_public"]
    assert not (target / "cola_public" / ".DS_Store").exists()


def test_symlink_members_become_plain_files(tmp_path):
    zip_path = tmp_path / "links.zip"
    zip_path.write_bytes(zip_with_symlink({"a.txt": b"A"}, "passwd", "/etc/passwd"))
    target = archive.unpack_zip(zip_path, tmp_path / "out")
    link = target / "passwd"
    assert not link.is_symlink() and link.read_text() == "/etc/passwd"


@pytest.mark.parametrize("names", [["data", "data/inner.txt"], ["data/inner.txt", "data"]])
def test_a_file_and_a_folder_of_the_same_name_are_refused(tmp_path, names):
    zip_path = tmp_path / "clash.zip"
    zip_path.write_bytes(make_zip({name: b"x" for name in names}, dirs=False))
    with pytest.raises(ValueError, match=r"clash\.zip: cannot unpack member '.*': another member "
                                         r"has the same path"):
        archive.unpack_zip(zip_path, tmp_path / "target")
    assert leftovers(tmp_path) == ["clash.zip"]


# --------------------------------------------------------------------------------------
# Bounds: total size, compression ratio, member count; declared and actually written
# --------------------------------------------------------------------------------------


def incompressible_files(count: int, size: int) -> dict[str, bytes]:
    return {f"data/{i}.bin": big_payload(size + i) for i in range(count)}


def test_declared_total_over_the_limit_is_refused_before_writing(tmp_path, monkeypatch):
    zip_path = tmp_path / "big.zip"
    zip_path.write_bytes(make_zip(incompressible_files(3, 200_000)))
    written = []
    monkeypatch.setattr(archive, "copy_bounded", lambda *args, **kwargs: written.append(args))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError) as info:
        archive.unpack_zip(zip_path, out / "target", limits=archive.UnpackLimits(max_bytes=500_000))
    message = str(info.value)
    assert str(zip_path) in message and "\n" not in message
    assert "would unpack to 600,003 bytes, more than the limit of 500,000 bytes" in message
    assert written == []  # refused from the zip's headers, before writing anything
    assert leftovers(out) == []


def test_a_compression_bomb_member_is_refused(tmp_path):
    zip_path = tmp_path / "bomb.zip"
    zip_path.write_bytes(make_zip({"ok.txt": b"fine", "bomb.bin": bytes(2 << 20)}))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"member 'bomb\.bin': it would expand [\d,]+ times "
                                         r"\(from [\d,]+ to 2,097,152 bytes\), more than the "
                                         r"limit of 100 times"):
        archive.unpack_zip(zip_path, out / "target")
    assert leftovers(out) == []


def test_many_small_members_that_expand_too_much_together_are_refused(tmp_path):
    # Each member is below the size from which single members are ratio-checked (1 MiB),
    # the archive as a whole expands far more than 100 times.
    zip_path = tmp_path / "many.zip"
    zip_path.write_bytes(make_zip({f"part{i}.bin": bytes(64 << 10) for i in range(40)}))
    with pytest.raises(ValueError, match=r"would expand the [\d,]+-byte archive [\d,]+ times, "
                                         r"more than the limit of 100 times"):
        archive.unpack_zip(zip_path, tmp_path / "target")
    assert leftovers(tmp_path) == ["many.zip"]


def test_too_many_members_are_refused(tmp_path):
    zip_path = tmp_path / "many.zip"
    zip_path.write_bytes(make_zip({f"f{i}.txt": b"x" for i in range(12)}, dirs=False))
    with pytest.raises(ValueError, match=r"has 12 members, more than the limit of 10"):
        archive.unpack_zip(zip_path, tmp_path / "target",
                           limits=archive.UnpackLimits(max_bytes=10**6, max_members=10))
    assert leftovers(tmp_path) == ["many.zip"]


def test_a_header_that_understates_a_member_is_caught_while_writing(tmp_path):
    # The headers say 1,000 bytes (under the limit); the member really holds 300,000.
    blob = make_zip({"a.txt": b"fine", "big.bin": big_payload(300_000)}, dirs=False)
    zip_path = tmp_path / "lying.zip"
    zip_path.write_bytes(set_declared_size(blob, "big.bin", 1_000))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"lying\.zip.*member 'big\.bin'") as info:
        archive.unpack_zip(zip_path, out / "target", limits=archive.UnpackLimits(max_bytes=100_000))
    assert "\n" not in str(info.value)
    assert leftovers(out) == []


def test_a_header_that_overstates_the_total_is_refused(tmp_path):
    blob = make_zip(COLA_FILES)
    zip_path = tmp_path / "cola.zip"
    zip_path.write_bytes(set_declared_size(blob, "cola_public/README", 2**31))
    with pytest.raises(ValueError, match=r"would unpack to 2,147,4[\d,]+ bytes, more than the limit"):
        archive.unpack_zip(zip_path, tmp_path / "cola", limits=dl.DATASETS["cola"].unpack_limits)
    assert leftovers(tmp_path) == ["cola.zip"]


def test_copy_bounded_counts_what_it_writes_and_stops_at_the_limit():
    destination = io.BytesIO()
    assert archive.copy_bounded(io.BytesIO(b"x" * 4096), destination, 4096, chunk_size=1000) == 4096
    destination = io.BytesIO()
    with pytest.raises(archive.ByteLimitExceeded) as info:
        archive.copy_bounded(io.BytesIO(b"x" * 10_000), destination, 4096, chunk_size=1000)
    assert info.value.limit == 4096
    assert len(destination.getvalue()) <= 4096  # nothing past the limit reached the file


def test_dataset_limits_come_from_their_known_sizes():
    for spec in dl.DATASETS.values():
        assert spec.unpack_limits.max_bytes == 2 * spec.unpacked_size
        assert spec.unpack_limits.max_ratio == 100
    assert dl.DATASETS["cola"].unpack_limits.max_bytes == 3_000_000


# --------------------------------------------------------------------------------------
# Required entries: regular, non-empty files
# --------------------------------------------------------------------------------------

REQUIRED_TSV = "cola_public/raw/in_domain_train.tsv"


@pytest.mark.parametrize("kind, problem", [
    ("directory", f"{REQUIRED_TSV} is a directory, not a file"),
    ("directory with a file", f"{REQUIRED_TSV} is a directory, not a file"),
    ("empty", f"{REQUIRED_TSV} is empty"),
])
def test_required_entries_must_be_non_empty_files(tmp_path, kind, problem):
    files = dict(COLA_FILES)
    del files[REQUIRED_TSV]
    if kind == "directory":
        files[REQUIRED_TSV + "/"] = b""
    elif kind == "directory with a file":
        files[REQUIRED_TSV + "/x.tsv"] = b"gj04\t1\t\tA.\n"
    else:
        files[REQUIRED_TSV] = b""
    zip_path = tmp_path / "cola.zip"
    zip_path.write_bytes(make_zip(files, dirs=False))
    spec = dl.DATASETS["cola"]
    with pytest.raises(ValueError, match=re.escape(problem)):
        archive.unpack_zip(zip_path, tmp_path / "cola", top_folder=spec.top_folder,
                           keep_top_folder=True, required=spec.required)
    assert leftovers(tmp_path) == ["cola.zip"]


# --------------------------------------------------------------------------------------
# Stale staging folders; permissions
# --------------------------------------------------------------------------------------

HANG_WHILE_UNPACKING = """
import sys, time
from jaxseq.data import archive
real_copy = archive.copy_bounded
def copy_then_hang(*args, **kwargs):
    real_copy(*args, **kwargs)
    print("unpacking", flush=True)
    time.sleep(600)
archive.copy_bounded = copy_then_hang
archive.unpack_zip(sys.argv[1], sys.argv[2], top_folder="cola_public", keep_top_folder=True)
"""


def unpack_cola(zip_path, target):
    return archive.unpack_zip(zip_path, target, top_folder="cola_public", keep_top_folder=True)


def test_staging_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    zip_path = tmp_path / "cola.zip"
    zip_path.write_bytes(make_zip(COLA_FILES))
    target = tmp_path / "data" / "cola"
    target.parent.mkdir()
    child = subprocess.Popen([sys.executable, "-c", HANG_WHILE_UNPACKING, str(zip_path), str(target)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "unpacking"
        [staging] = target.parent.iterdir()
        assert staging.name.startswith(".cola.unpacking-")
        unpack_cola(zip_path, target)  # a concurrent run leaves the live run's folder alone
        assert staging.is_dir()
    finally:
        child.kill()
        child.wait()
    unpack_cola(zip_path, target)  # its owner is gone now: removed
    assert leftovers(target.parent) == ["cola"]


def test_staging_folders_without_a_known_owner_go_once_untouched_for_an_hour(tmp_path):
    target = tmp_path / "cola"
    old_style = tmp_path / ".cola.unpacking-k3j4h5g6"  # as jaxseq named them before they held a PID
    recent = tmp_path / ".cola.unpacking-a1b2c3d4"
    other_host = tmp_path / f".cola.unpacking-{os.getpid()}-elsewhere.example.org-x1y2z3"
    other_dataset = tmp_path / ".coco_captioning.unpacking-q9w8e7r6"
    for folder in (old_style, recent, other_host, other_dataset):
        (folder / "cola_public").mkdir(parents=True)
        (folder / "cola_public" / "README").write_text("half")
    two_hours_ago = time.time() - 7200
    for folder in (old_style, other_host, other_dataset):
        for path in (folder / "cola_public" / "README", folder / "cola_public", folder):
            os.utime(path, (two_hours_ago, two_hours_ago))
    zip_path = tmp_path / "cola.zip"
    zip_path.write_bytes(make_zip(COLA_FILES))
    unpack_cola(zip_path, target)
    assert leftovers(tmp_path) == sorted([".coco_captioning.unpacking-q9w8e7r6", recent.name,
                                          "cola", "cola.zip"])


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_previous_data_of_a_run_killed_between_its_renames_is_restored(tmp_path):
    # Replacing the data renames the old folder aside, then the new one into place; a kill
    # between the two leaves the user's data only in the aside folder.
    aside = tmp_path / f".cola.old-{dead_pid()}-{socket.gethostname()}-abc123"
    (aside / "cola_public").mkdir(parents=True)
    (aside / "cola_public" / "mine.txt").write_text("the user's data")
    archive.remove_stale_staging(tmp_path / "cola")
    assert leftovers(tmp_path) == ["cola"]
    assert (tmp_path / "cola" / "cola_public" / "mine.txt").read_text() == "the user's data"


@pytest.mark.parametrize("umask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
@pytest.mark.parametrize("top_folder", [True, False], ids=["with-top-folder", "flat"])
def test_unpacked_data_has_the_usual_permissions(tmp_path, umask, folder_mode, file_mode, top_folder):
    files = COLA_FILES if top_folder else {name.removeprefix("cola_public/"): data
                                           for name, data in COLA_FILES.items()}
    zip_path = tmp_path / "cola.zip"
    zip_path.write_bytes(make_zip(files))
    previous = os.umask(umask)
    try:
        target = unpack_cola(zip_path, tmp_path / "cola")
    finally:
        os.umask(previous)
    paths = [target, *target.rglob("*")]
    assert len(paths) == 11  # the folder, cola_public, raw, tokenized and 7 files
    for path in paths:
        expected = folder_mode if path.is_dir() else file_mode
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
