"""What a test's portal has stored, whichever store it uses, looked at from outside.

Local: the files under the blob folder. S3: the objects in the bucket,
read with a client of the test's own, and the multipart uploads in it.
``BOTH_STORES`` runs a test module's tests once on each store.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from flask import Flask

from app.settings import Storage

BOTH_STORES = pytest.mark.parametrize("blob_backend", ["local", "s3"], indirect=True)


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
    """Every blob, pending blob and tail: local file names, S3 object names."""
    settings = _settings(app)
    if settings.backend == "local":
        return sorted(p.name for p in _root(app).rglob("*") if p.is_file())
    pages = _client(settings).get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def multipart_uploads(app: Flask) -> list[str]:
    """The object names of unfinished multipart uploads (S3 only; none on disk)."""
    settings = _settings(app)
    if settings.backend == "local":
        return []
    answer = _client(settings).list_multipart_uploads(Bucket=settings.s3_bucket)
    return sorted(upload["Key"] for upload in answer.get("Uploads", []))


def leftovers(app: Flask) -> list[str]:
    """Everything the store holds: for "nothing is left" checks."""
    return names(app) + multipart_uploads(app)


def _object(app: Flask, name: str) -> tuple[Storage, Path]:
    return _settings(app), _root(app) / name[:2] / name


def read(app: Flask, name: str) -> bytes:
    settings, path = _object(app, name)
    if settings.backend == "local":
        return path.read_bytes()
    return _client(settings).get_object(Bucket=settings.s3_bucket, Key=name)["Body"].read()


def write(app: Flask, name: str, data: bytes) -> None:
    """Replace a blob's bytes, as someone with access to the store could."""
    settings, path = _object(app, name)
    if settings.backend == "local":
        path.write_bytes(data)
    else:
        _client(settings).put_object(Bucket=settings.s3_bucket, Key=name, Body=data)


def contents(app: Flask) -> dict[str, bytes]:
    return {name: read(app, name) for name in names(app)}


def leave_orphans(app: Flask, key: str) -> list[str]:
    """What a resumable upload whose row never got committed leaves under
    ``key``, and (in a bucket) an object of someone else's; returns the
    names that are not the portal's."""
    settings, path = _object(app, key)
    if settings.backend == "local":
        path.parent.mkdir(exist_ok=True)
        path.with_suffix(".partial").write_bytes(b"half an upload")
        return []
    client = _client(settings)
    upload_id = client.create_multipart_upload(Bucket=settings.s3_bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"a part")
    client.put_object(Bucket=settings.s3_bucket, Key=f"{key}.tail-0123456789abcdef", Body=b"a tail")
    client.put_object(Bucket=settings.s3_bucket, Key="someone-else/notes.txt", Body=b"not ours")
    return ["someone-else/notes.txt"]
