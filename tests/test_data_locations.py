"""The one data-location rule (`jaxseq.data.locations`): `--data-dir` / `data_dir`, then
`$JAXSEQ_DATA`, then `~/.cache/jaxseq` (where `jaxseq data download` writes), then
`../shared/data`; followed by `load_cola()`, `cola train`, the COCO loader and `caption train`,
and what is downloaded is found.

Every test points HOME, $JAXSEQ_DATA, the working directory and the repository's own
`../shared/data` at tmp_path: nothing reads or writes the real ~/.cache or shared data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jaxseq import cli
from jaxseq.data import locations
from jaxseq.data.cola import find_cola_dir, load_cola
from jaxseq.data.download import DATASETS
from tests.bracket_task import write_tsv
from tests.test_download import server  # noqa: F401  (the local HTTP server fixture)
from tests.zip_files import COLA_FILES, make_zip


@pytest.fixture
def places(tmp_path, monkeypatch):
    """{"env", "cache", "shared", "repo_shared"}: the four roots, all under tmp_path, none
    existing yet; $JAXSEQ_DATA is set to "env"."""
    home, work, repo = tmp_path / "home", tmp_path / "work" / "jaxseq", tmp_path / "elsewhere" / "jaxseq"
    for folder in (home, work, repo):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("JAXSEQ_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(work)
    monkeypatch.setattr(locations, "REPOSITORY", repo)
    return {"env": tmp_path / "env", "cache": home / ".cache" / "jaxseq",
            "shared": tmp_path / "work" / "shared" / "data", "repo_shared": tmp_path / "elsewhere" / "shared" / "data"}


def write_cola(folder: Path, sentences: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_tsv(folder / "train.tsv", sentences, 1)
    write_tsv(folder / "dev.tsv", 10, 2)
    return folder


def test_the_roots_in_order_each_once(places, monkeypatch):
    assert locations.candidate_dirs("cola") == [places[k] / "cola" for k in ("env", "cache", "shared", "repo_shared")]
    monkeypatch.delenv("JAXSEQ_DATA")
    assert locations.download_root() == places["cache"]
    monkeypatch.setattr(locations, "REPOSITORY", Path.cwd())  # run from the repository's root: one shared folder
    assert locations.data_roots() == [places["cache"], places["shared"]]


def test_cola_is_taken_from_the_first_folder_that_holds_it(places, tmp_path):
    write_cola(places["repo_shared"] / "cola")
    (places["env"] / "cola").mkdir(parents=True)  # an empty folder first in line is passed over
    assert find_cola_dir() == places["repo_shared"] / "cola"
    for key in ("shared", "cache", "env"):
        write_cola(places[key] / "cola")
        assert find_cola_dir() == places[key] / "cola"
    given = write_cola(tmp_path / "given", sentences=40)
    assert find_cola_dir(given) == given
    assert len(load_cola(given, val_size=5).train) == 35
    assert len(load_cola(val_size=5).train) == 25  # no argument: the rule ($JAXSEQ_DATA's, 30 sentences)


def test_not_found_lists_every_folder_once_and_how_to_get_it(places, tmp_path, monkeypatch, capsys):
    (places["cache"] / "cola").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as info:
        load_cola()
    message = str(info.value)
    assert "\n" not in message and "Pass data_dir or set $JAXSEQ_DATA" in message
    assert "`jaxseq data download cola`" in message
    for folder in locations.candidate_dirs("cola"):
        assert message.count(f"{folder} (") == 1, folder
    assert f"{places['env'] / 'cola'} (no such folder)" in message
    assert f"{places['cache'] / 'cola'} (no CoLA training file" in message
    monkeypatch.setattr(locations, "REPOSITORY", Path.cwd())
    assert cli.main(["cola", "train", "--checkpoint-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Pass --data-dir or set $JAXSEQ_DATA" in err and err.count(str(places["shared"] / "cola")) == 1
    assert cli.main(["cola", "train", "--data-dir", str(tmp_path / "none"), "--checkpoint-dir",
                     str(tmp_path / "run")]) == 2
    assert "CoLA not found in" in capsys.readouterr().err


def test_what_data_download_writes_is_what_load_cola_finds(places, server, monkeypatch, capsys):  # noqa: F811
    monkeypatch.delenv("JAXSEQ_DATA")
    train = "".join(f"src\t{i % 2}\t{'' if i % 2 else '*'}\tSentence number {i}.\n" for i in range(20))
    url = server.add("/cola.zip", make_zip({**COLA_FILES, "cola_public/raw/in_domain_train.tsv": train.encode()}))
    assert cli.main(["data", "download", "cola", "--url", url, "--no-progress"]) == 0
    target = places["cache"] / DATASETS["cola"].target
    assert f"cola data is in {target}" in capsys.readouterr().out
    assert find_cola_dir() == target
    assert len(load_cola(val_size=4).train) == 16


def test_coco_errors_name_the_option_on_the_command_line_and_the_keyword_in_the_library(places, tmp_path, capsys):
    from jaxseq.data.coco import find_coco_dir, load_coco_data
    from tests.coco_files import write_course_files

    with pytest.raises(FileNotFoundError, match=r"^COCO captioning not found; looked in .*Pass base_dir or set "
                                                r"\$JAXSEQ_DATA, or fetch it with `jaxseq data download coco`$"):
        load_coco_data()
    assert cli.main(["caption", "train", "--data", "coco", "--checkpoint-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Pass --data-dir or set $JAXSEQ_DATA" in err and "base_dir" not in err
    assert err.count(str(places["cache"] / "coco_captioning")) == 1
    coco = write_course_files(places["cache"] / "coco_captioning")
    assert find_coco_dir() == coco and load_coco_data()["train_captions"].shape[0] > 0
    (coco / "val2014_urls.txt").unlink()
    assert cli.main(["caption", "train", "--data", "coco", "--data-dir", str(coco)]) == 2
    err = capsys.readouterr().err
    assert "val2014_urls.txt not found; pass the folder that holds it as --data-dir" in err
    assert "base_dir" not in err
