"""Reading and writing the files longhaul gives a step, on one machine or on AWS.

A file input arrives as {"object", "uri"}: `file:///...` under `longhaul serve`, `s3://bucket/key`
on AWS. The job's `outputUri` names where large result files go; every file written there
is a result file of the job.
"""

from urllib.parse import unquote, urlparse


def read_bytes(uri):
    u = urlparse(uri)
    if u.scheme == "file":
        with open(unquote(u.path), "rb") as f:
            return f.read()
    if u.scheme == "s3":
        import boto3  # in the Lambda Python runtime

        return boto3.client("s3").get_object(Bucket=u.netloc, Key=u.path.lstrip("/"))["Body"].read()
    raise ValueError(f"cannot read {uri}")


def write_bytes(folder_uri, name, data, content_type="application/octet-stream"):
    u = urlparse(folder_uri)
    if u.scheme == "file":
        import os

        path = os.path.join(unquote(u.path), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return
    if u.scheme == "s3":
        import boto3

        key = u.path.lstrip("/") + name
        boto3.client("s3").put_object(Bucket=u.netloc, Key=key, Body=data, ContentType=content_type)
        return
    raise ValueError(f"cannot write to {folder_uri}")
