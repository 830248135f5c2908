#!/usr/bin/env python3
"""A small in-memory schema registry speaking the Confluent Schema Registry REST API,
for the native dev stack (stand-in for Apicurio Registry, whose runnable build cannot
be assembled from Maven Central alone). Standard library only.

Usage: registry.py [--host 127.0.0.1] [--port 8081]

Served under both "/" and "/apis/ccompat/v7" (Apicurio's Confluent-compat prefix),
so clients configured with either base URL work.

Implemented (Confluent semantics):
  GET    /subjects                                  list subjects
  GET    /subjects/{s}/versions                     list versions
  GET    /subjects/{s}/versions/{v|latest|-1}       {subject,id,version,schema[,schemaType,references]}
  GET    /subjects/{s}/versions/{v}/schema          the schema text only
  POST   /subjects/{s}/versions                     register -> {"id": N}; same schema text anywhere -> same id
  POST   /subjects/{s}                              look up a schema under a subject
  DELETE /subjects/{s}                              -> [versions]
  DELETE /subjects/{s}/versions/{v|latest}          -> version
  GET    /schemas/ids/{id}                          {"schema": ...[, "schemaType", "references"]}
  GET    /schemas/ids/{id}/schema                   the schema text only
  GET    /schemas/ids/{id}/subjects | /versions
  GET    /schemas/types                             ["AVRO","JSON","PROTOBUF"]
  GET/PUT/DELETE /config[/{s}]                      compatibility level (stored, not enforced)
  POST   /compatibility/subjects/{s}/versions/{v}   always {"is_compatible": true} (no checking)
  GET/PUT /mode[/{s}]                               always READWRITE
Not implemented: compatibility checking, schema references resolution, contexts,
soft-delete listing (?deleted=true is accepted and ignored), normalization beyond
JSON re-serialisation of AVRO/JSON schemas. Errors use Confluent's error codes.
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
PREFIXES = ("/apis/ccompat/v7", "/apis/ccompat/v6")
LEVELS = {"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
          "FULL", "FULL_TRANSITIVE"}


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def subject_not_found(s):
    return ApiError(404, 40401, "Subject '%s' not found." % s)


def version_not_found(v):
    return ApiError(404, 40402, "Version %s not found." % v)


def schema_not_found(i=None):
    return ApiError(404, 40403, "Schema %snot found" % ("%s " % i if i is not None else ""))


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.schemas = {}      # id -> {"schema", "schemaType", "references"}
        self.by_key = {}       # canonical key -> id
        self.subjects = {}     # subject -> list of {"version", "id"} (live versions only)
        self.next_version = {}  # subject -> next version number (never reused)
        self.config = {"": "BACKWARD"}

    @staticmethod
    def canonical(schema, schema_type):
        if schema_type in ("AVRO", "JSON"):
            try:
                parsed = json.loads(schema)
            except ValueError as exc:
                raise ApiError(422, 42201, "Invalid schema: %s" % exc)
            return json.dumps(parsed, separators=(",", ":"), sort_keys=False)
        return schema.strip()

    def key(self, schema, schema_type, references):
        return json.dumps([schema_type, self.canonical(schema, schema_type), references or []])

    def register(self, subject, body):
        schema, stype, refs = self._parse_body(body)
        with self.lock:
            k = self.key(schema, stype, refs)
            sid = self.by_key.get(k)
            if sid is None:
                sid = len(self.schemas) + 1
                self.schemas[sid] = {"schema": schema, "schemaType": stype, "references": refs}
                self.by_key[k] = sid
            versions = self.subjects.setdefault(subject, [])
            if not any(v["id"] == sid for v in versions):
                n = self.next_version.get(subject, 1)
                versions.append({"version": n, "id": sid})
                self.next_version[subject] = n + 1
            return sid

    def lookup(self, subject, body):
        schema, stype, refs = self._parse_body(body)
        with self.lock:
            if subject not in self.subjects:
                raise subject_not_found(subject)
            sid = self.by_key.get(self.key(schema, stype, refs))
            for v in self.subjects[subject]:
                if v["id"] == sid:
                    return self._version_doc(subject, v)
            raise schema_not_found()

    @staticmethod
    def _parse_body(body):
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise ApiError(422, 42201, "Invalid schema: request body needs a \"schema\" string")
        stype = body.get("schemaType") or "AVRO"
        if stype not in ("AVRO", "JSON", "PROTOBUF"):
            raise ApiError(422, 42201, "Invalid schema type %s" % stype)
        refs = body.get("references") or []
        return body["schema"], stype, refs

    def _version_doc(self, subject, v):
        s = self.schemas[v["id"]]
        doc = {"subject": subject, "version": v["version"], "id": v["id"], "schema": s["schema"]}
        if s["schemaType"] != "AVRO":
            doc["schemaType"] = s["schemaType"]
        if s["references"]:
            doc["references"] = s["references"]
        return doc

    def find_version(self, subject, version):
        versions = self.subjects.get(subject)
        if not versions:
            raise subject_not_found(subject)
        if version in ("latest", "-1"):
            return versions[-1]
        try:
            n = int(version)
        except ValueError:
            raise ApiError(422, 42202, "The specified version '%s' is not a valid version id." % version)
        for v in versions:
            if v["version"] == n:
                return v
        raise version_not_found(version)

    def schema_doc(self, sid):
        s = self.schemas.get(sid)
        if s is None:
            raise schema_not_found(sid)
        doc = {"schema": s["schema"]}
        if s["schemaType"] != "AVRO":
            doc["schemaType"] = s["schemaType"]
        if s["references"]:
            doc["references"] = s["references"]
        return doc


STORE = Store()


def parse_id(text):
    try:
        return int(text)
    except ValueError:
        raise schema_not_found(text)


def route(method, parts, body):
    """Returns (status, json-able document). parts: the path split on "/", decoded."""
    st = STORE
    n = len(parts)
    if n == 0:
        return 200, {}
    head = parts[0]
    if head == "subjects":
        if n == 1 and method == "GET":
            with st.lock:
                return 200, sorted(s for s, v in st.subjects.items() if v)
        subject = parts[1]
        if n == 2 and method == "POST":
            return 200, st.lookup(subject, body)
        if n == 2 and method == "DELETE":
            with st.lock:
                versions = st.subjects.pop(subject, None)
                if not versions:
                    raise subject_not_found(subject)
                return 200, [v["version"] for v in versions]
        if n >= 3 and parts[2] == "versions":
            if n == 3 and method == "GET":
                with st.lock:
                    versions = st.subjects.get(subject)
                    if not versions:
                        raise subject_not_found(subject)
                    return 200, [v["version"] for v in versions]
            if n == 3 and method == "POST":
                return 200, {"id": st.register(subject, body)}
            if n in (4, 5) and method == "GET":
                with st.lock:
                    v = st.find_version(subject, parts[3])
                    doc = st._version_doc(subject, v)
                if n == 5 and parts[4] == "schema":
                    return 200, RawSchema(doc["schema"])
                if n == 5 and parts[4] == "referencedby":
                    return 200, []
                if n == 4:
                    return 200, doc
            if n == 4 and method == "DELETE":
                with st.lock:
                    v = st.find_version(subject, parts[3])
                    st.subjects[subject].remove(v)
                    return 200, v["version"]
    elif head == "schemas":
        if n == 2 and parts[1] == "types" and method == "GET":
            return 200, ["AVRO", "JSON", "PROTOBUF"]
        if n >= 3 and parts[1] == "ids" and method == "GET":
            sid = parse_id(parts[2])
            with st.lock:
                doc = st.schema_doc(sid)
                if n == 3:
                    return 200, doc
                if n == 4 and parts[3] == "schema":
                    return 200, RawSchema(doc["schema"])
                if n == 4 and parts[3] in ("subjects", "versions"):
                    pairs = [(s, v["version"]) for s, vs in sorted(st.subjects.items())
                             for v in vs if v["id"] == sid]
                    if parts[3] == "subjects":
                        return 200, sorted({s for s, _ in pairs})
                    return 200, [{"subject": s, "version": ver} for s, ver in pairs]
    elif head == "config":
        key = parts[1] if n == 2 else ""
        if n <= 2 and method == "GET":
            with st.lock:
                level = st.config.get(key)
                if level is None:
                    raise ApiError(404, 40408, "Subject '%s' does not have subject-level compatibility configured" % key)
                return 200, {"compatibilityLevel": level}
        if n <= 2 and method == "PUT":
            level = (body or {}).get("compatibility") if isinstance(body, dict) else None
            if level not in LEVELS:
                raise ApiError(422, 42203, "Invalid compatibility level. Valid values are %s" % ", ".join(sorted(LEVELS)))
            with st.lock:
                st.config[key] = level
            return 200, {"compatibility": level}
        if n <= 2 and method == "DELETE":
            with st.lock:
                old = st.config.get(key, st.config[""])
                if key:
                    st.config.pop(key, None)
                else:
                    st.config[""] = "BACKWARD"
            return 200, {"compatibilityLevel": old}
    elif head == "compatibility":
        if n == 5 and parts[1] == "subjects" and parts[3] == "versions" and method == "POST":
            Store._parse_body(body)
            with st.lock:
                if parts[4] not in ("latest", "-1"):
                    st.find_version(parts[2], parts[4])
            return 200, {"is_compatible": True}
        if n == 4 and parts[1] == "subjects" and parts[3] == "versions" and method == "POST":
            Store._parse_body(body)
            return 200, {"is_compatible": True}
    elif head == "mode":
        if method == "GET":
            return 200, {"mode": "READWRITE"}
        if method == "PUT":
            return 200, {"mode": "READWRITE"}
    raise ApiError(404, 404, "HTTP 404 Not Found")


class RawSchema(str):
    """A response that is the schema text itself, not a JSON document."""


class Handler(BaseHTTPRequestHandler):
    server_version = "stack-schema-registry/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def _send(self, status, doc):
        if isinstance(doc, RawSchema):
            data = str(doc).encode("utf-8")
            ctype = "application/json" if doc.lstrip()[:1] in ("{", "[", '"') else "text/plain"
        else:
            data = json.dumps(doc).encode("utf-8")
            ctype = CONTENT_TYPE
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, 400, "Unrecognized request body: not JSON")
            path = urlsplit(self.path).path
            for prefix in PREFIXES:
                if path == prefix or path.startswith(prefix + "/"):
                    path = path[len(prefix):]
                    break
            parts = [unquote(p) for p in path.split("/") if p]
            method = "GET" if self.command == "HEAD" else self.command
            status, doc = route(method, parts, body)
            self._send(status, doc)
        except ApiError as err:
            self._send(err.status, {"error_code": err.code, "message": err.message})
        except Exception as exc:  # keep serving; report like Confluent's 500
            self._send(500, {"error_code": 50001, "message": "Error in the backend data store: %r" % exc})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("schema registry (Confluent API, in memory) on http://%s:%d and %s"
          % (args.host, args.port, "/apis/ccompat/v7"), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
