"""gcp-storage-emulator, made to answer like Cloud Storage where tensorstore depends on it.

  python -m tests.gcs_emulator --port=P --bucket=B [--stock]

Tensorstore's GCS driver (orbax writes arrays through it) builds its read-modify-write
transactions on object generations. The stock emulator (2026.7.19) breaks that contract in
two ways, both fixed here by wrapping its handlers in this process (site-packages is never
edited):
- a media download (alt=media, every tensorstore read of bytes) carries no x-goog-generation
  header, so tensorstore stamps what it read with generation 0, a generation its own GCS
  driver then refuses as a write condition ("Malformed StorageGeneration"; every time, with
  tensorstore 0.1.86 against the stock emulator: KvStore write, read, then a write with
  if_equal=the read's stamp raises it; OCDBT conditions on a read stamp only when it re-reads
  its manifest, hence an orbax save failing ~1 time in 100);
- generation preconditions (ifGenerationMatch / ifGenerationNotMatch) are ignored on reads,
  uploads and deletes; Cloud Storage answers a failed one with 412 (304 for a read whose
  ifGenerationNotMatch matches), and ifGenerationMatch=0 means "no live object".
The semantics follow Cloud Storage's JSON API documentation and tensorstore's own GCS mock
(gcs_mock.cc): a read conditioned on ifGenerationMatch=0 of a missing object is 204, of a
present one 412. Generations also become strictly increasing (the stock ones are
time.time_ns(), which two writes in the same tick could share). The server stays
single-threaded, which keeps each check-and-write atomic, as in Cloud Storage.

`--stock` serves the unmodified emulator from the same entry point, for comparisons
(benchmarks/gcs_emulator_faults.py).
"""

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from http import HTTPStatus

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _precondition_status(request, obj, read):
  """None when the request's generation preconditions hold on `obj` (None: no live object).

  Otherwise the status Cloud Storage answers: 412, or 304 for a read whose
  ifGenerationNotMatch / ifMetagenerationNotMatch names the current object. On a missing
  object a read's conditions other than ifGenerationMatch hold (the handler answers 404, or
  204 for ifGenerationMatch=0), while a write's fail unless ifGenerationMatch=0.
  """
  def arg(name):
    values = request.query.get(name)
    return int(values[0]) if values else None

  gen_match, gen_not = arg("ifGenerationMatch"), arg("ifGenerationNotMatch")
  meta_match, meta_not = arg("ifMetagenerationMatch"), arg("ifMetagenerationNotMatch")
  if obj is None:
    if gen_match not in (None, 0) or (
        not read and (gen_not, meta_match, meta_not) != (None, None, None)):
      return HTTPStatus.PRECONDITION_FAILED
    return None
  generation, metageneration = int(obj["generation"]), int(obj["metageneration"])
  if gen_match not in (None, generation) or meta_match not in (None, metageneration):
    return HTTPStatus.PRECONDITION_FAILED
  if gen_not == generation or meta_not == metageneration:
    return HTTPStatus.NOT_MODIFIED if read else HTTPStatus.PRECONDITION_FAILED
  return None


def install():
  """Wraps the emulator's object handlers in this process (call before it starts)."""
  # pylint: disable=g-import-not-at-top  # Only the emulator's process needs these.
  from gcp_storage_emulator import server
  from gcp_storage_emulator.exceptions import NotFound
  from gcp_storage_emulator.handlers import objects

  names = ("get", "download", "insert", "upload_partial", "delete", "_make_object_resource")
  missing = [name for name in names if not hasattr(objects, name)] + \
      ([] if hasattr(server, "HANDLERS") else ["server.HANDLERS"])
  if missing:  # Another emulator version: say what to look at instead of serving unwrapped.
    raise AssertionError(f"gcp-storage-emulator has no {', '.join(missing)}; "
                         "tests/gcs_emulator.py wraps the 2026.7.19 handlers")
  stock = {name: getattr(objects, name) for name in names}
  last = [0]

  def live(request, storage, object_id):
    try:
      return storage.get_file_obj(request.params["bucket_name"], object_id)
    except NotFound:
      return None

  def refuse(response, status):
    response.status = status
    if status != HTTPStatus.NOT_MODIFIED:  # A 304 has no body.
      response.json({"error": {"code": status.value, "message": status.phrase}})

  def make_object_resource(*args, **kwargs):
    obj = stock["_make_object_resource"](*args, **kwargs)
    last[0] = max(int(obj["generation"]), last[0] + 1)  # Strictly increasing, as in GCS.
    obj["generation"] = str(last[0])
    obj["id"] = "{}/{}/{}".format(obj["bucket"], obj["name"], last[0])
    obj["mediaLink"] = obj["mediaLink"].rsplit("?", 1)[0] + \
        "?generation={}&alt=media".format(last[0])
    return obj

  def read(name):
    def handler(request, response, storage, *args, **kwargs):
      obj = live(request, storage, request.params["object_id"])
      status = _precondition_status(request, obj, read=True)
      if status is not None:
        return refuse(response, status)
      if obj is None and request.query.get("ifGenerationMatch") == ["0"]:
        response.status = HTTPStatus.NO_CONTENT  # "No live object" held: nothing to send.
        return None
      result = stock[name](request, response, storage, *args, **kwargs)
      if obj is not None and response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
        response["x-goog-generation"] = obj["generation"]
        response["x-goog-metageneration"] = obj["metageneration"]
        response["x-goog-stored-content-length"] = str(obj["size"])
      return result
    return handler

  def write(name, object_id_of):
    def handler(request, response, storage, *args, **kwargs):
      object_id = object_id_of(request, storage)
      if object_id is not None:
        status = _precondition_status(request, live(request, storage, object_id), read=False)
        if status is not None:
          return refuse(response, status)
      return stock[name](request, response, storage, *args, **kwargs)
    return handler

  def insert_name(request, storage):
    if "name" in request.query:
      return request.query["name"][0]
    data = request.data  # Multipart: the name is in the metadata part.
    return data.get("meta", data).get("name") if isinstance(data, dict) else None

  def upload_name(request, storage):
    # The upload's Location repeats the first request's query, preconditions included:
    # they are checked again on every chunk, so the final one decides, as in GCS.
    try:
      return storage.get_resumable_file_obj(request.query["upload_id"][0])["name"]
    except (NotFound, KeyError):
      return None

  wrapped = {
      "get": read("get"),
      "download": read("download"),
      "insert": write("insert", insert_name),
      "upload_partial": write("upload_partial", upload_name),
      "delete": write("delete", lambda request, storage: request.params["object_id"]),
  }
  # `get` hands alt=media on to `download`: the stock one, so a read is checked once.
  objects.download = stock["download"]
  objects.insert = wrapped["insert"]  # The router's fallback for uploads without /upload.
  objects._make_object_resource = make_object_resource  # pylint: disable=protected-access
  # Tensorstore opens up to 32 connections at once; the stock listen backlog of 5 would
  # leave the rest retrying their connect (GCS accepts them all).
  server.server.HTTPServer.request_queue_size = 128
  by_stock = {stock[name]: handler for name, handler in wrapped.items()}
  server.HANDLERS = tuple(
      (regex, {method: by_stock.get(handler, handler) for method, handler in handlers.items()})
      for regex, handlers in server.HANDLERS)


def serve(port: int, bucket: str, stock: bool = False) -> None:
  """Runs the emulator in memory on 127.0.0.1:`port` until killed."""
  from gcp_storage_emulator import server  # pylint: disable=g-import-not-at-top
  logging.getLogger("").setLevel(logging.CRITICAL)  # Its request log would fill a pipe.
  if not stock:
    install()
  server.create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket).run()


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(bucket: str, stock: bool = False, timeout: float = 60) -> tuple:
  """(process, url) of an emulator serving `bucket`; AssertionError when it does not answer."""
  try:
    import gcp_storage_emulator  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise AssertionError(
        "gcp-storage-emulator is not installed: pip install -e '.[test]'") from None
  port = free_port()
  args = [sys.executable, "-m", "tests.gcs_emulator", f"--port={port}", f"--bucket={bucket}"]
  env = dict(os.environ, PYTHONPATH=_ROOT)
  proc = subprocess.Popen(args + (["--stock"] if stock else []), cwd=_ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f"http://127.0.0.1:{port}"
  deadline = time.time() + timeout
  while True:
    try:
      with urllib.request.urlopen(url + "/", timeout=1) as answer:  # The health check.
        if answer.read() == b"OK":
          return proc, url
    except OSError:
      pass
    if proc.poll() is not None or time.time() > deadline:
      proc.kill()
      proc.wait()
      raise AssertionError(f"the Cloud Storage emulator did not start on port {port}")
    time.sleep(0.2)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--port", type=int, required=True)
  parser.add_argument("--bucket", required=True)
  parser.add_argument("--stock", action="store_true", help="the unmodified emulator")
  args = parser.parse_args()
  serve(args.port, args.bucket, stock=args.stock)


if __name__ == "__main__":
  main()
