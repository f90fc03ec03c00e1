"""Zips the download and unpacking tests build: the real data sets' layouts, and helpers.

`COCO_FILES` / `COLA_FILES` hold small stand-ins for the files of the course's
`coco_captioning.zip` and CoLA's `cola_public_1.1.zip`; `make_zip` writes them (with the
directory entries real archivers add).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

COCO_FILES = {
    "coco2014_captions.h5": b"HDF-captions" * 50,
    "coco2014_vocab.json": b'{"idx_to_word": ["<NULL>", "<START>", "<END>", "<UNK>"]}',
    "train2014_vgg16_fc7.h5": b"",  # filled below with incompressible bytes
    "train2014_vgg16_fc7_pca.h5": b"train-pca" * 200,
    "val2014_vgg16_fc7.h5": b"val-fc7" * 300,
    "val2014_vgg16_fc7_pca.h5": b"val-pca" * 200,
    "train2014_urls.txt": b"http://images.cocodataset.org/train2014/a.jpg\n",
    "val2014_urls.txt": b"http://images.cocodataset.org/val2014/b.jpg\n",
}

COLA_FILES = {
    "cola_public/README": b"CoLA public release 1.1\n",
    "cola_public/raw/in_domain_train.tsv": b"gj04\t1\t\tOur friends won't buy this analysis.\n",
    "cola_public/raw/in_domain_dev.tsv": b"gj04\t0\t*\tThey drank the pub.\n",
    "cola_public/raw/out_of_domain_dev.tsv": b"clc95\t1\t\tSomebody just left.\n",
    "cola_public/tokenized/in_domain_train.tsv": b"gj04\t1\t\tour friends wo n't buy this .\n",
    "cola_public/tokenized/in_domain_dev.tsv": b"gj04\t0\t*\tthey drank the pub .\n",
    "cola_public/tokenized/out_of_domain_dev.tsv": b"clc95\t1\t\tsomebody just left .\n",
}


def big_payload(size: int = 300_000) -> bytes:
    # Deterministic, incompressible bytes, so that offsets and sizes are meaningful.
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


COCO_FILES["train2014_vgg16_fc7.h5"] = big_payload(40_000)


def make_zip(files: dict[str, bytes], *, dirs: bool = True,
             compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip with `files` (name -> bytes), plus directory entries as real archivers write."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        if dirs:
            folders = sorted({name.rsplit("/", i)[0] + "/" for name in files
                              for i in range(1, name.count("/") + 1)})
            for folder in folders:
                zf.writestr(folder, b"")
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def coco_zip(top_folder: bool = True) -> bytes:
    prefix = "coco_captioning/" if top_folder else ""
    return make_zip({prefix + name: data for name, data in COCO_FILES.items()})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def set_declared_size(blob: bytes, name: str, declared: int) -> bytes:
    """`blob` with member `name`'s uncompressed size set to `declared` in both its headers
    (local and central directory): a zip whose headers lie about what a member unpacks to."""
    out = bytearray(blob)
    encoded = name.encode()
    for signature, size_at, name_length_at, name_at in ((b"PK\x03\x04", 22, 26, 30),
                                                          (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (start := out.find(signature, start)) >= 0:
            length = int.from_bytes(out[start + name_length_at: start + name_length_at + 2], "little")
            if out[start + name_at: start + name_at + length] == encoded:
                out[start + size_at: start + size_at + 4] = declared.to_bytes(4, "little")
                break
            start += 4
        else:
            raise AssertionError(f"no {signature!r} header for {name}")
    return bytes(out)


def zip_with_symlink(files: dict[str, bytes], link: str, points_to: str) -> bytes:
    """A zip of `files` plus a member `link` marked as a Unix symbolic link to `points_to`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo(link)
        info.create_system = 3  # Unix
        info.external_attr = (0o120777 << 16)  # S_IFLNK | rwxrwxrwx
        zf.writestr(info, points_to)
    return buffer.getvalue()
