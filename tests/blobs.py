"""What a test's portal has stored, whichever store it uses, looked at from outside.

Local: the files under the blob folder. S3: the objects in the bucket,
read with a client of the test's own, and the multipart uploads in it.
``BOTH_STORES`` marks tests that run once on each store: the local folder
in the embedded setup, S3 in the distributed one.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from flask import Flask

from app.settings import Storage

# The local store in the embedded setup, S3 in the distributed one (tests/conftest.py).
BOTH_STORES = pytest.mark.both_stores


def _settings(app: Flask) -> Storage:
    return app.config["KOERIER"].storage


def _client(settings: Storage):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id, aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(s3={"addressing_style": settings.s3_addressing_style}),
    )


def _root(app: Flask) -> Path:
    return app.extensions["koerier"].instance_path / _settings(app).blob_dir


def names(app: Flask) -> list[str]:
    """Every blob, pending blob and tail: local file names; S3 object names,
    the portal's without its prefix, anything else in the bucket as it is."""
    settings = _settings(app)
    if settings.backend == "local":
        return sorted(p.name for p in _root(app).rglob("*") if p.is_file())
    pages = _client(settings).get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket)
    return sorted(_key(settings, obj["Key"]) for page in pages for obj in page.get("Contents", []))


def _key(settings: Storage, name: str) -> str:
    return name.removeprefix(settings.s3_prefix)


def multipart_uploads(app: Flask) -> list[str]:
    """The object names of unfinished multipart uploads (S3 only; none on disk)."""
    settings = _settings(app)
    if settings.backend == "local":
        return []
    answer = _client(settings).list_multipart_uploads(Bucket=settings.s3_bucket)
    return sorted(_key(settings, upload["Key"]) for upload in answer.get("Uploads", []))


def leftovers(app: Flask) -> list[str]:
    """Everything the store holds: for "nothing is left" checks."""
    return names(app) + multipart_uploads(app)


def _object(app: Flask, name: str) -> tuple[Storage, Path]:
    return _settings(app), _root(app) / name[:2] / name


def read(app: Flask, name: str) -> bytes:
    settings, path = _object(app, name)
    if settings.backend == "local":
        return path.read_bytes()
    return _client(settings).get_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + name)["Body"].read()


def write(app: Flask, name: str, data: bytes) -> None:
    """Replace a blob's bytes, as someone with access to the store could."""
    settings, path = _object(app, name)
    if settings.backend == "local":
        path.write_bytes(data)
    else:
        _client(settings).put_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + name, Body=data)


def contents(app: Flask) -> dict[str, bytes]:
    return {name: read(app, name) for name in names(app)}


def leave_orphans(app: Flask, key: str) -> list[str]:
    """What a resumable upload whose row never got committed leaves under
    ``key``, and (in a bucket) objects of someone else's, one of them named
    as the portal names its own; returns the names that are not the portal's."""
    settings, path = _object(app, key)
    if settings.backend == "local":
        path.parent.mkdir(exist_ok=True)
        path.with_suffix(".partial").write_bytes(b"half an upload")
        return []
    client, bucket, name = _client(settings), settings.s3_bucket, settings.s3_prefix + key
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=name)["UploadId"]
    client.upload_part(Bucket=bucket, Key=name, UploadId=upload_id, PartNumber=1, Body=b"a part")
    client.put_object(Bucket=bucket, Key=f"{name}.tail-0123456789abcdef", Body=b"a tail")
    foreign = ["someone-else/notes.txt", "0123456789abcdef0123456789abcdef"]
    for other in foreign:
        client.put_object(Bucket=bucket, Key=other, Body=b"not ours")
    return foreign
